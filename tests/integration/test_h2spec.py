"""HTTP/2 conformance with h2spec 2.6.0 (all 146 cases), on a plain (h2c)
listener and on a TLS listener (ALPN h2), through a location proxied to a
real backend (sgback) and through a `return` location (the response is out
before the client's next frame, so frames that cross it are checked too);
and the rules behind the cases h2spec cannot see: what goes to the
HTTP/1.1 fallback, and frames that cross our RST_STREAM are ignored.

h2spec is not packaged in Debian 12: a build is provided at
../shared/tools/h2spec beside the clone (as in CI), or $SG_H2SPEC. A
missing h2spec fails the run."""

import os
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, SettingsFrame

import sgtest
from sgtest import SLOW, HttpConn, free_port, http_conf
from test_h2_server import PREFACE, RawH2

H2SPEC = Path(os.environ.get("SG_H2SPEC") or sgtest.REPO.parent / "shared" / "tools" / "h2spec").resolve()
PROTOCOL_ERROR, STREAM_CLOSED = 0x1, 0x5


def make_cert(dirpath):
    key, crt = dirpath / "h2spec.key", dirpath / "h2spec.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    return crt, key


@pytest.fixture(scope="module")
def h2spec():
    if not os.access(H2SPEC, os.X_OK):
        pytest.fail("h2spec not found at %s (it lives in ../shared/tools beside the clone; "
                    "SG_H2SPEC names another file)" % H2SPEC, pytrace=False)
    return H2SPEC


@pytest.fixture
def listeners(tmp_path, backend, start_proxy):
    """(h2c port, TLS port) of one streamgate: / proxied to sgback,
    /return answered by streamgate itself."""
    crt, key = make_cert(tmp_path)
    plain, tls = free_port(), free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s; ssl_certificate_key %s;
    location / { proxy_pass http://127.0.0.1:%d; }
    location = /return { return 200 "returned\\n"; }
  }
""" % (plain, tls, crt, key, backend.port)))
    return plain, tls


SUMMARY = re.compile(r"^(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed$", re.M)


def run_h2spec(h2spec, port, path, tls):
    # -o: seconds h2spec waits for an expected frame; a passing case never
    # waits for it, so it only bounds a run that fails.
    cmd = [str(h2spec), "-h", "127.0.0.1", "-p", str(port), "-P", path, "-o", "2"]
    if tls:
        cmd += ["-t", "-k"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    out = r.stdout + r.stderr
    m = SUMMARY.search(out)
    assert m, "no h2spec summary line:\n" + out[-4000:]
    failures = out[out.find("Failures:"):] if "Failures:" in out else ""
    assert (int(m.group(1)), int(m.group(2))) == (146, 146), \
        "%s\nh2spec failing cases:\n%s" % (m.group(0), failures[-12000:])
    assert r.returncode == 0, out[-2000:]


@pytest.mark.parametrize("path", ["/", "/return"], ids=["proxied", "return"])
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2spec_all_cases_pass(h2spec, listeners, backend, path, tls):
    plain, secure = listeners
    before = backend.stats()["requests"]
    run_h2spec(h2spec, secure if tls else plain, path, tls)
    if path == "/":   # the proxied cases did reach the backend
        assert backend.stats()["requests"] > before + 1


# ------------------------------------------- what the first bytes decide

def read_all(sock, timeout=10.0):
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout * SLOW)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            break
        if not chunk:
            break
        data += chunk
    return data


def frames(data):
    out = []
    while len(data) >= 9:
        f, length = Frame.parse_frame_header(memoryview(data[:9]))
        assert len(data) >= 9 + length, "truncated frame"
        f.parse_body(memoryview(data[9:9 + length]))
        out.append(f)
        data = data[9 + length:]
    assert data == b"", "bytes after the last frame: %r" % data[:40]
    return out


def goaway_codes(data):
    return [f.error_code for f in frames(data) if isinstance(f, GoAwayFrame)]


@pytest.mark.parametrize("first", [
    PREFACE[:18] + b"XX\r\n\r\n" + SettingsFrame(0).serialize(),   # a broken preface
    b"PRI * HTTP/1.1\r\n\r\n",                                       # the preface's method
    b"INVALID CONNECTION PREFACE\r\n\r\n",                           # not a request line
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",                 # TLS to a plain port
], ids=["broken-preface", "pri", "no-version", "tls-hello"])
def test_not_http1_gets_goaway_protocol_error(listeners, first):
    """On an `http2` listener, bytes that are not an HTTP/1.x request line
    are an invalid HTTP/2 preface: GOAWAY PROTOCOL_ERROR and close (RFC 9113
    3.4), not the HTTP/1.1 codec's 400."""
    plain, _ = listeners
    with socket.create_connection(("127.0.0.1", plain), timeout=10 * SLOW) as s:
        s.sendall(first)
        data = read_all(s)
    assert not data.startswith(b"HTTP/"), data[:80]
    assert goaway_codes(data) == [PROTOCOL_ERROR]


def test_http1_still_served_on_the_h2c_listener(listeners):
    """Real HTTP/1.1 requests (one split inside its request line, one after
    empty lines) still reach the HTTP/1.1 codec, and a malformed HTTP/1.1
    request still gets its 505."""
    plain, _ = listeners
    with HttpConn(plain) as c:
        c.send(b"GET /ret")
        c.send(b"urn HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"returned\n")
        c.send(b"\r\nGET /return HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().status == 200
    with HttpConn(plain) as c:
        c.send(b"GET /return HTTP/2.0\r\nHost: a\r\n\r\n")
        assert c.read_response().status == 505


def test_tls_h2_connection_never_falls_back_to_http1(listeners):
    """ALPN chose h2: an HTTP/1.1 request line there is a bad preface, and
    the answer is an HTTP/2 GOAWAY inside TLS, never plaintext."""
    _, secure = listeners
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", secure), timeout=10 * SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2"
            s.sendall(b"GET /return HTTP/1.1\r\nHost: a\r\n\r\n")
            data = read_all(s)
    assert goaway_codes(data) == [PROTOCOL_ERROR]


# ------------------------------------------------- frames on closed streams

def test_late_data_after_our_reset_is_ignored(listeners):
    """A client still sending a body when the response is complete is told
    to stop (RST_STREAM NO_ERROR); DATA it had in flight then must be
    ignored (RFC 9113 5.1), not turned into an error: the connection keeps
    serving. Once its last DATA (END_STREAM) is in, nothing more can be in
    flight: another DATA frame is a connection error STREAM_CLOSED."""
    plain, _ = listeners
    c = RawH2(plain)
    try:
        sid = c.request("/return", method="POST", end_stream=False)
        c.send(DataFrame(sid, data=b"x" * 100).serialize())
        st = c.streams[sid]
        c.wait(lambda: st.ended and st.reset is not None, what="response, then RST_STREAM")
        assert (st.status, st.body, st.reset) == (200, b"returned\n", 0)
        # crossed our RST_STREAM
        c.send(DataFrame(sid, data=b"late").serialize())
        c.send(DataFrame(sid, data=b"last", flags=["END_STREAM"]).serialize())
        sid2 = c.request("/return")
        assert c.response(sid2).status == 200
        assert c.goaways == []
        c.send(DataFrame(sid, data=b"after the end").serialize())
        assert c.wait_closed()
        assert [code for code, _ in c.goaways] == [STREAM_CLOSED]
    finally:
        c.close()
