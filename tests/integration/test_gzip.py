"""gzip (nginx's ngx_http_gzip_module) on the real binary: proxied answers,
`return`, error pages and static files, over HTTP/1.1 and HTTP/2, checked
with Python's gzip module and curl --compressed.

Which responses are compressed follows nginx: `gzip on`, status 200/403/404,
a type in gzip_types (text/html always), a known length of at least
gzip_min_length, no Content-Encoding yet, and a request that accepts gzip
(Accept-Encoding, gzip_http_version, gzip_disable, gzip_proxied for requests
with Via). Never gRPC or upgraded connections. Compression streams: what
arrives is flushed at once, so an event stream keeps flowing.
"""

import gzip
import socket
import subprocess
import threading
import zlib

import pytest

import sgtest
from sgtest import HttpConn, free_port, get, http_conf, recv_head, wait_for, ws_accept

TEXT = b"".join(b"line %05d: the quick brown fox jumps over the lazy dog\n" % i for i in range(400))
GZ = {"Accept-Encoding": "gzip"}


class Backend(sgtest._ThreadedListener):
    """An HTTP/1.1 backend with fixed routes (one response per connection).

    /stream waits, after its first event, until `release` is set before it
    sends the second one: the client must have seen the first by then."""

    def __init__(self):
        self.release = threading.Event()
        self.stream_done = threading.Event()
        super().__init__()

    def serve(self, c):
        got = recv_head(c)
        if got is None:
            return
        head, _ = got
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, path = line.split(" ")[0], line.split(" ")[1]
        path = path.split("?")[0]
        body_ok = method != "HEAD"

        def reply(status, headers, body=b""):
            h = "".join("%s: %s\r\n" % kv for kv in headers)
            c.sendall(("HTTP/1.1 %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n"
                       % (status, h, len(body))).encode() + (body if body_ok else b""))

        if path == "/text":
            reply("200 OK", [("Content-Type", "text/plain")], TEXT)
        elif path == "/html":
            reply("200 OK", [("Content-Type", "text/html; charset=utf-8")], TEXT)
        elif path == "/binary":
            reply("200 OK", [("Content-Type", "application/octet-stream")], TEXT)
        elif path == "/short":
            reply("200 OK", [("Content-Type", "text/html")], b"tiny")
        elif path == "/encoded":
            reply("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "br")], b"not really brotli" * 10)
        elif path == "/etag":
            reply("200 OK", [("Content-Type", "text/html"), ("ETag", '"v1"'), ("Accept-Ranges", "bytes")], TEXT)
        elif path == "/expired":
            reply("200 OK", [("Content-Type", "text/html"), ("Expires", "Thu, 01 Jan 1970 00:00:01 GMT")], TEXT)
        elif path == "/nocache":
            reply("200 OK", [("Content-Type", "text/html"), ("Cache-Control", "max-age=0, no-cache")], TEXT)
        elif path == "/error":
            reply("500 Internal Server Error", [("Content-Type", "text/html")], TEXT)
        elif path == "/nocontent":
            c.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        elif path == "/chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n")
            if body_ok:
                c.sendall(b"5\r\nhello\r\n0\r\n\r\n")
        elif path == "/trailers":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\nX-Checksum: abc123\r\n\r\n" % (len(TEXT), TEXT))
        elif path == "/stream":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n")
            ev = b"data: one\n\n"
            c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.release.wait(30 * sgtest.SLOW)
            ev = b"data: two\n\n"
            c.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev))
            self.stream_done.set()
        elif path == "/ws":
            key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
                   if l.lower().startswith(b"sec-websocket-key:")][0].decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept(key)).encode())
            while True:   # raw echo: the tunnel must carry bytes untouched
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        else:
            reply("404 Not Found", [("Content-Type", "text/plain")], b"no route")
        c.close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.release.set()
    b.stop()


LOCATIONS = """
    location /b/ { proxy_pass http://127.0.0.1:%(b)d/; }
    location /types/ { gzip_types text/plain text/event-stream; proxy_pass http://127.0.0.1:%(b)d/; }
    location /any/ { gzip_types *; proxy_pass http://127.0.0.1:%(b)d/; }
    location /vary/ { gzip_vary on; proxy_pass http://127.0.0.1:%(b)d/; }
    location /min/ { gzip_min_length 100k; proxy_pass http://127.0.0.1:%(b)d/; }
    location /proxied/ { gzip_proxied expired no-cache no_etag; proxy_pass http://127.0.0.1:%(b)d/; }
    location /anyproxied/ { gzip_proxied any; proxy_pass http://127.0.0.1:%(b)d/; }
    location /disable/ { gzip_disable msie6 "^Bad[ ]?Bot"; proxy_pass http://127.0.0.1:%(b)d/; }
    location /h10/ { gzip_http_version 1.0; proxy_pass http://127.0.0.1:%(b)d/; }
    location /level9/ { gzip_comp_level 9; proxy_pass http://127.0.0.1:%(b)d/; }
    location /off/ { gzip off; proxy_pass http://127.0.0.1:%(b)d/; }
    location /ret { default_type text/html; return 200 "%(ret)s"; }
    location /missing { return 404; }
"""
RET = "returned here, " * 10


@pytest.fixture
def gz(backend, start_proxy, tmp_path):
    """streamgate with gzip on at server level; (HTTP/1.1 port, h2c port, static folder)."""
    port, h2port = free_port(), free_port()
    html = tmp_path / "html"
    html.mkdir()
    (html / "page.html").write_bytes(TEXT)
    (html / "data.bin").write_bytes(TEXT)
    conf = http_conf("""
  server {
    listen 127.0.0.1:%d;
    listen 127.0.0.1:%d http2;
    root %s;
    gzip on;
    location / { }
%s
  }
""" % (port, h2port, html, LOCATIONS % {"b": backend.port, "ret": RET}))
    start_proxy(conf)
    return port, h2port, html


def gunzip(r):
    assert r.header("Content-Encoding") == "gzip", r.headers
    return gzip.decompress(r.body)


# ---------------------------------------------------------------- what is compressed

def test_proxied_response_is_compressed_and_chunked(gz):
    port, _, _ = gz
    r = get(port, "/b/html", headers=GZ)
    assert r.status == 200
    assert gunzip(r) == TEXT
    assert r.header("Content-Length") is None and r.chunked
    assert len(r.body) < len(TEXT) / 4
    assert r.header("Content-Type") == "text/html; charset=utf-8"


def test_without_accept_encoding_the_response_is_untouched(gz):
    port, _, _ = gz
    r = get(port, "/b/html")
    assert r.header("Content-Encoding") is None
    assert r.header("Content-Length") == str(len(TEXT)) and r.body == TEXT


@pytest.mark.parametrize("ae,compressed", [
    ("gzip", True), ("deflate, gzip;q=0.5", True), ("GZIP", True), ("br,gzip", True),
    ("gzip;q=0", False), ("gzip; q=0.000", False), ("deflate", False), ("x-gzip", False),
    ("identity", False),
])
def test_accept_encoding_must_name_gzip_with_a_quality(gz, ae, compressed):
    port, _, _ = gz
    r = get(port, "/b/html", headers={"Accept-Encoding": ae})
    assert (r.header("Content-Encoding") == "gzip") == compressed
    assert (gzip.decompress(r.body) if compressed else r.body) == TEXT


def test_curl_compressed_reads_every_kind_of_answer(gz):
    port, _, html = gz
    for path, want in (("/b/html", TEXT), ("/page.html", TEXT), ("/ret", RET.encode())):
        out = subprocess.run(["curl", "-sS", "--compressed", "-D", "-", "--max-time", "10",
                              "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        assert b"content-encoding: gzip" in head.lower(), (path, head)
        assert body == want, path


def test_static_file_and_return_are_compressed(gz):
    port, _, _ = gz
    r = get(port, "/page.html", headers=GZ)
    assert gunzip(r) == TEXT and r.chunked
    r = get(port, "/ret", headers=GZ)
    assert gunzip(r) == RET.encode()


def test_error_pages_404_yes_500_no(gz):
    port, _, _ = gz
    r = get(port, "/missing", headers=GZ)
    assert r.status == 404 and b"404 Not Found" in gunzip(r)
    r = get(port, "/b/error", headers=GZ)
    assert r.status == 500 and r.header("Content-Encoding") is None and r.body == TEXT


def test_gzip_types(gz):
    port, _, _ = gz
    # text/plain is not in the default list (text/html only)
    assert get(port, "/b/text", headers=GZ).header("Content-Encoding") is None
    assert gunzip(get(port, "/types/text", headers=GZ)) == TEXT
    assert gunzip(get(port, "/types/html", headers=GZ)) == TEXT   # text/html always
    assert get(port, "/types/binary", headers=GZ).header("Content-Encoding") is None
    assert gunzip(get(port, "/any/binary", headers=GZ)) == TEXT
    # static files get their type from the extension
    assert get(port, "/data.bin", headers=GZ).header("Content-Encoding") is None


def test_gzip_min_length_applies_to_known_lengths_only(gz):
    port, _, _ = gz
    r = get(port, "/b/short", headers=GZ)   # 4 bytes < the default 20
    assert r.header("Content-Encoding") is None and r.body == b"tiny"
    r = get(port, "/min/html", headers=GZ)  # 20 KB < 100k
    assert r.header("Content-Encoding") is None and r.body == TEXT
    r = get(port, "/min/chunked", headers=GZ)   # length unknown: compressed
    assert gunzip(r) == b"hello"


def test_already_encoded_bodies_are_relayed_as_they_are(gz):
    port, _, _ = gz
    r = get(port, "/any/encoded", headers=GZ)
    assert r.header_all("Content-Encoding") == ["br"]
    assert r.body == b"not really brotli" * 10


def test_gzip_off_and_bodyless_statuses(gz):
    port, _, _ = gz
    r = get(port, "/off/html", headers=GZ)
    assert r.header("Content-Encoding") is None and r.body == TEXT
    r = get(port, "/any/nocontent", headers=GZ)
    assert r.status == 204 and r.header("Content-Encoding") is None


def test_etag_becomes_weak_and_accept_ranges_goes(gz):
    port, _, _ = gz
    r = get(port, "/b/etag", headers=GZ)
    assert gunzip(r) == TEXT
    assert r.header("ETag") == 'W/"v1"'
    assert r.header("Accept-Ranges") is None
    r = get(port, "/b/etag")
    assert r.header("ETag") == '"v1"' and r.header("Accept-Ranges") == "bytes"


def test_head_gets_the_head_get_would_get(gz):
    port, _, _ = gz
    for path in ("/b/html", "/page.html"):
        r = get(port, path, headers=GZ, method="HEAD")
        assert r.status == 200
        assert r.header("Content-Encoding") == "gzip", path
        assert r.header("Content-Length") is None and r.header("Transfer-Encoding") is None, r.headers
    r = get(port, "/page.html", method="HEAD")
    assert r.header("Content-Encoding") is None and r.header("Content-Length") == str(len(TEXT))


def test_gzip_vary_even_when_the_client_takes_no_gzip(gz):
    port, _, _ = gz
    r = get(port, "/vary/html", headers=GZ)
    assert gunzip(r) == TEXT and r.header_all("Vary") == ["Accept-Encoding"]
    r = get(port, "/vary/html")
    assert r.header("Content-Encoding") is None and r.header_all("Vary") == ["Accept-Encoding"]
    # a response gzip could not apply to gets none
    assert get(port, "/vary/text", headers=GZ).header("Vary") is None
    assert get(port, "/b/html", headers=GZ).header("Vary") is None


def test_gzip_proxied_for_requests_with_via(gz):
    port, _, _ = gz
    via = dict(GZ, Via="1.1 cache")
    assert get(port, "/b/html", headers=via).header("Content-Encoding") is None   # default off
    assert gunzip(get(port, "/anyproxied/html", headers=via)) == TEXT
    assert gunzip(get(port, "/proxied/expired", headers=via)) == TEXT
    assert gunzip(get(port, "/proxied/nocache", headers=via)) == TEXT
    # neither Expires nor Cache-Control: no_etag refuses a response with an ETag
    # and allows one without (nginx)
    assert get(port, "/proxied/etag", headers=via).header("Content-Encoding") is None
    assert gunzip(get(port, "/proxied/html", headers=via)) == TEXT
    # without Via gzip_proxied does not matter
    assert gunzip(get(port, "/proxied/html", headers=GZ)) == TEXT


@pytest.mark.parametrize("ua,compressed", [
    ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", False),
    ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)", True),
    ("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)", False),
    ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)", True),
    ("badbot/1.0", False), ("Bad Bot", False), ("curl/8.0", True),
])
def test_gzip_disable(gz, ua, compressed):
    port, _, _ = gz
    r = get(port, "/disable/html", headers=dict(GZ, **{"User-Agent": ua}))
    assert (r.header("Content-Encoding") == "gzip") == compressed


def test_gzip_http_version(gz):
    port, _, _ = gz
    with HttpConn(port) as c:   # HTTP/1.0 is not compressed by default
        r = c.request("GET", "/b/html", headers=GZ, version="HTTP/1.0")
    assert r.header("Content-Encoding") is None and r.body == TEXT
    with HttpConn(port) as c:   # with 1.0: compressed, the body ends with the connection
        r = c.request("GET", "/h10/html", headers=GZ, version="HTTP/1.0")
    assert r.header("Transfer-Encoding") is None and r.header("Content-Length") is None
    assert gunzip(r) == TEXT


def test_gzip_comp_level(gz):
    port, _, _ = gz
    fast = get(port, "/b/html", headers=GZ)
    best = get(port, "/level9/html", headers=GZ)
    assert gunzip(best) == TEXT == gunzip(fast)
    assert len(best.body) < len(fast.body)


# ---------------------------------------------------------------- HTTP/2

def test_http2_responses_are_compressed(gz):
    port, h2port, _ = gz
    for path, want in (("/b/html", TEXT), ("/page.html", TEXT), ("/ret", RET.encode()),
                       ("/types/text", TEXT)):
        out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-H", "Accept-Encoding: gzip",
                              "-D", "-", "--max-time", "10", "http://127.0.0.1:%d%s" % (h2port, path)],
                             capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/2 200"), head
        assert b"content-encoding: gzip" in head and b"content-length" not in head, (path, head)
        assert gzip.decompress(body) == want, path
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--compressed", "--max-time", "10",
                          "http://127.0.0.1:%d/b/html" % h2port], capture_output=True, timeout=20)
    assert out.stdout == TEXT


# ---------------------------------------------------------------- streaming

def test_event_stream_flows_while_compressed(gz, backend):
    """The backend sends one event and waits until the client has decoded it:
    the filter must not hold it back waiting for more."""
    port, _, _ = gz
    with HttpConn(port, timeout=10) as c:
        c.send(sgtest.build_request("GET", "/types/stream", headers=GZ))
        r = c.read_head()
        assert r.header("Content-Encoding") == "gzip" and r.header("Transfer-Encoding") == "chunked"
        z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        seen = b""
        while True:
            # de-chunk what arrived so far, whole chunks only
            while True:
                i = c.buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(c.buf[:i], 16)
                if len(c.buf) < i + 2 + size + 2:
                    break
                seen += z.decompress(c.buf[i + 2:i + 2 + size])
                c.buf = c.buf[i + 2 + size + 2:]
            if b"data: one\n\n" in seen:
                break
            assert not backend.stream_done.is_set()
            assert c._fill(), "closed before the first event"
        assert seen == b"data: one\n\n"
        backend.release.set()
        body, _ = c._read_chunked()
        seen += z.decompress(body) + z.flush()
        assert z.eof
    assert seen == b"data: one\n\ndata: two\n\n"


# ---------------------------------------------------------------- never compressed

def test_websocket_tunnel_is_never_compressed(gz):
    port, _, _ = gz
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with HttpConn(port) as c:
        c.send(sgtest.build_request("GET", "/any/ws", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13", "Accept-Encoding": "gzip"}))
        r = c.read_head()
        assert r.status == 101 and r.header("Content-Encoding") is None
        payload = b"\x81\x05hello" * 100
        c.send(payload)
        while len(c.buf) < len(payload):
            assert c._fill()
        assert c.buf == payload


def test_grpc_is_never_compressed(h2c_backends, start_proxy, grpc_channels):
    grpc = pytest.importorskip("grpc")
    (bport,) = h2c_backends(1)
    conf, port = sgtest.grpc_conf([bport], location_extra="gzip on; gzip_types *; gzip_min_length 0;")
    start_proxy(conf)
    ch = grpc_channels(port)
    msg = sgtest.grpc_msg("x" * 5000)
    resp, call = ch.unary_unary("/chat.Chat/Echo").with_call(msg, timeout=5 * sgtest.SLOW)
    assert resp == msg and call.code() == grpc.StatusCode.OK
    assert "content-encoding" not in dict(call.initial_metadata())
    # a raw h2 look at the head: no Content-Encoding from the proxy
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-H", "Accept-Encoding: gzip",
                          "-H", "Content-Type: application/grpc", "-H", "TE: trailers",
                          "--data-binary", "@-", "-D", "-", "-o", "/dev/null", "--max-time", "10",
                          "http://127.0.0.1:%d/chat.Chat/Echo" % port],
                         input=b"\x00" + len(msg).to_bytes(4, "big") + msg, capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert b"content-type: application/grpc" in out.stdout.lower()
    assert b"content-encoding" not in out.stdout.lower()


# ---------------------------------------------------------------- configuration

def test_config_errors_and_notices(tmp_path):
    def check(body):
        f = tmp_path / "t.conf"
        f.write_text(http_conf("server { listen 127.0.0.1:%d; %s }" % (free_port(), body)))
        return sgtest.run_streamgate(["-t", "-c", str(f), "-p", str(tmp_path)])

    for bad, msg in (("gzip_comp_level 10;", "must be between 1 and 9"),
                     ("gzip_proxied off any;", "cannot be combined"),
                     ("gzip_proxied sometimes;", "invalid value \"sometimes\""),
                     ("gzip_http_version 2.0;", "it must be \"1.0\" or \"1.1\""),
                     ("gzip_disable \"(\";", "pcre2_compile() failed"),
                     ("gzip maybe;", "it must be \"on\" or \"off\""),
                     ("gzip on; gzip on;", "is duplicate")):
        out = check(bad)
        assert out.returncode != 0, bad
        assert msg in out.stderr, (bad, out.stderr)
    out = check("gzip on; gzip_buffers 16 8k; gzip_types text/css application/json; gzip_vary on; "
                "gzip_min_length 1k; gzip_comp_level 5; gzip_http_version 1.0; gzip_disable msie6; "
                "gzip_proxied expired no-cache no-store private no_last_modified no_etag auth;")
    assert out.returncode == 0, out.stderr
    assert "[notice]" in out.stderr and "gzip_buffers" in out.stderr


def test_gzip_ratio_in_the_access_log(backend, start_proxy, tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    conf = http_conf("""
  log_format gz "$request_uri $status $gzip_ratio $body_bytes_sent";
  server {
    listen 127.0.0.1:%d;
    gzip on;
    access_log %s gz;
    location / { proxy_pass http://127.0.0.1:%d/; }
  }
""" % (port, log, backend.port))
    start_proxy(conf)
    r = get(port, "/html", headers=GZ)
    assert gunzip(r) == TEXT
    get(port, "/short", headers=GZ)
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 2, 10, what="two access log lines")
    # worker threads may write the two lines in either order
    lines = {l.split(" ")[0]: l.split(" ")[1:] for l in log.read_text().splitlines()}
    status, ratio, sent = lines["/html"]
    assert (status, sent) == ("200", str(len(r.body)))
    want = len(TEXT) / len(r.body)
    assert abs(float(ratio) - want) < 0.006 and len(ratio.split(".")[1]) == 2, (ratio, want)
    assert lines["/short"] == ["200", "-", "4"]   # not compressed: not found


# ---------------------------------------------------------------- clients that leave

def test_http1_client_gone_mid_stream(gz, backend):
    port, _, _ = gz
    with HttpConn(port) as c:
        c.send(sgtest.build_request("GET", "/types/stream", headers=GZ))
        r = c.read_head()
        assert r.header("Content-Encoding") == "gzip"
        while not c.buf:   # the first event's compressed bytes
            assert c._fill()
    backend.release.set()
    assert backend.stream_done.wait(10 * sgtest.SLOW)
    assert gunzip(get(port, "/b/html", headers=GZ)) == TEXT


def test_http2_stream_reset_mid_stream(gz, backend):
    import h2.connection
    import h2.events
    _, h2port, _ = gz
    s = socket.create_connection(("127.0.0.1", h2port), timeout=10 * sgtest.SLOW)
    conn = h2.connection.H2Connection()
    conn.initiate_connection()

    def request(sid, path):
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"),
                                (":path", path), ("accept-encoding", "gzip")], end_stream=True)
        s.sendall(conn.data_to_send())

    pending = []

    def events_until(pred):
        while True:
            while pending:
                ev = pending.pop(0)
                if pred(ev):
                    return ev
            data = s.recv(65536)
            assert data, "connection closed"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                pending.append(ev)
            s.sendall(conn.data_to_send())

    request(1, "/types/stream")
    ev = events_until(lambda e: isinstance(e, h2.events.ResponseReceived))
    assert (b"content-encoding", b"gzip") in ev.headers
    events_until(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == 1)
    conn.reset_stream(1)
    s.sendall(conn.data_to_send())
    backend.release.set()
    assert backend.stream_done.wait(10 * sgtest.SLOW)
    # the connection goes on: a new stream is answered, compressed
    body = b""
    request(3, "/b/html")
    while True:
        ev = events_until(lambda e: getattr(e, "stream_id", 0) == 3 and
                          isinstance(e, (h2.events.DataReceived, h2.events.StreamEnded)))
        if isinstance(ev, h2.events.StreamEnded):
            break
        body += ev.data
    assert gzip.decompress(body) == TEXT
    s.close()


# ---------------------------------------------------------------- trailers

def test_trailers_follow_the_compressed_body(gz):
    """A backend's chunked trailer section goes after the gzip stream's end:
    to an HTTP/1.1 client that sent TE: trailers, and to an HTTP/2 client."""
    import h2.connection
    import h2.events
    port, h2port, _ = gz
    with HttpConn(port) as c:
        r = c.request("GET", "/b/trailers", headers=dict(GZ, TE="trailers"))
    assert gunzip(r) == TEXT and r.chunked
    assert [(k.lower(), v.strip()) for k, v in r.trailers] == [("x-checksum", "abc123")]

    s = socket.create_connection(("127.0.0.1", h2port), timeout=10 * sgtest.SLOW)
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"),
                          (":path", "/b/trailers"), ("accept-encoding", "gzip"), ("te", "trailers")],
                      end_stream=True)
    s.sendall(conn.data_to_send())
    body, head, trailers, ended = b"", None, None, False
    while not ended:
        data = s.recv(65536)
        assert data, "connection closed"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                head = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
        s.sendall(conn.data_to_send())
    s.close()
    assert head[b"content-encoding"] == b"gzip"
    assert gzip.decompress(body) == TEXT
    assert trailers == {b"x-checksum": b"abc123"}


# ---------------------------------------------------------------- the reference

def test_same_decisions_as_nginx(backend, start_proxy, start_nginx, tmp_path):
    """The same configuration in front of the same backend, run by streamgate
    and by the installed nginx: for every path and request kind, both
    compress or not alike, with the same Vary, ETag, Accept-Ranges and framing
    headers, and bodies that decode to the same bytes."""
    html = tmp_path / "html"
    html.mkdir()
    (html / "page.html").write_bytes(TEXT)
    (html / "data.bin").write_bytes(TEXT)

    def conf(port):
        return http_conf("""
  access_log off;
  proxy_http_version 1.1;
  proxy_temp_path %(t)s/proxy_temp;
  client_body_temp_path %(t)s/body_temp;
  server {
    listen 127.0.0.1:%(p)d;
    root %(h)s;
    gzip on;
    location / { }
%(l)s
  }
""" % {"p": port, "h": html, "t": tmp_path, "l": LOCATIONS % {"b": backend.port, "ret": RET}})

    sg_port, ng_port = free_port(), free_port()
    start_proxy(conf(sg_port))
    start_nginx(conf(ng_port), [ng_port])
    msie6 = "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"
    kinds = [{}, GZ, dict(GZ, Via="1.1 x"), dict(GZ, **{"User-Agent": msie6}), dict(GZ, **{"User-Agent": "BadBot"}),
             {"Accept-Encoding": "gzip;q=0"}, {"Accept-Encoding": "deflate, gzip;q=0.5"}]
    paths = ["/b/html", "/b/text", "/types/text", "/any/binary", "/b/short", "/min/html", "/min/chunked",
             "/any/encoded", "/b/error", "/b/etag", "/vary/html", "/vary/text", "/vary/error",
             "/proxied/expired", "/proxied/nocache", "/proxied/etag", "/proxied/html", "/anyproxied/html",
             "/disable/html", "/h10/html", "/off/html", "/any/nocontent", "/ret", "/missing",
             "/page.html", "/data.bin"]

    def look(port, method, path, headers, version):
        with HttpConn(port) as c:
            r = c.request(method, path, headers=headers, version=version)
        ce = r.header("Content-Encoding")
        body = r.body
        if ce == "gzip" and method == "GET":
            body = gzip.decompress(body)
        static = not path.startswith(("/b/", "/types/", "/any/", "/vary/", "/min/", "/proxied/",
                                      "/anyproxied/", "/disable/", "/h10/", "/off/"))
        return {
            "status": r.status, "content-encoding": ce, "vary": r.header_all("Vary"),
            # nginx's static files carry ETag / Accept-Ranges, streamgate's do not (yet)
            "etag": None if static else r.header("ETag"),
            "accept-ranges": None if static else r.header("Accept-Ranges"),
            "length": r.header("Content-Length") is not None,
            "chunked": r.chunked,
            # error pages name the server
            "body": body if r.status < 400 or not static else None,
        }

    diffs = []
    for path in paths:
        for h in kinds:
            cases = [("GET", "HTTP/1.1")]
            if h is GZ:
                cases += [("HEAD", "HTTP/1.1"), ("GET", "HTTP/1.0")]
            for method, version in cases:
                a = look(sg_port, method, path, h, version)
                b = look(ng_port, method, path, h, version)
                if a != b:
                    diffs.append((method, version, path, h,
                                  {k: (a[k], b[k]) for k in a if a[k] != b[k] and k != "body"} or "body"))
    assert not diffs, "\n".join(map(repr, diffs))
