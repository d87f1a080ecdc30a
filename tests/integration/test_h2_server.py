"""HTTP/2 server codec: h2 clients (prior knowledge on `listen ... http2`) through
streamgate to an HTTP/1.1 backend (sgback), flow control, graceful GOAWAY, pings,
and the attacks that must cost the attacker its connection and nothing else.

Real clients where they exist (curl, nghttp, h2load); a small raw-frame client
(hyperframe + hpack, from python3-h2's dependencies) where a test needs exact
frames or must keep reading after a GOAWAY (python-h2's state machine stops there).
"""

import hashlib
import socket
import struct
import subprocess
import threading
import time

import hpack
import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from sgtest import SANITIZED, SLOW, HttpConn, free_port, get, http_conf, pattern_bytes, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_conf(backend_port, port, server_extra="", http_extra="", listen_extra="http2"):
    return port, http_conf("""
  %s
  server {
    listen 127.0.0.1:%d %s;
    client_max_body_size 0;
    %s
    location / { proxy_pass http://127.0.0.1:%d; }
    location = /local { return 200 "local answer\\n"; }
  }
""" % (http_extra, port, listen_extra, server_extra, backend_port))


@pytest.fixture
def h2proxy(backend, start_proxy):
    """factory: h2proxy(server_extra="", http_extra="") -> port of an http2 listener
    proxying to the sgback `backend`."""
    def make(server_extra="", http_extra="", listen_extra="http2"):
        port, conf = h2_conf(backend.port, free_port(), server_extra, http_extra, listen_extra)
        start_proxy(conf)
        return port
    return make


def curl(port, path, *args, timeout=30):
    """curl --http2-prior-knowledge; returns CompletedProcess (stdout bytes)."""
    cmd = ["curl", "-sS", "--http2-prior-knowledge", "-m", str(int(timeout * SLOW))]
    cmd += list(args) + ["http://127.0.0.1:%d%s" % (port, path)]
    return subprocess.run(cmd, capture_output=True, timeout=timeout * SLOW + 10)


# ---------------------------------------------------------------- raw client

class Stream:
    def __init__(self):
        self.status = None
        self.headers = []
        self.body = b""
        self.ended = False
        self.reset = None       # RST_STREAM error code

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None


class RawH2:
    """A minimal HTTP/2 client on raw frames.

    Acknowledges SETTINGS and PINGs (unless answer_pings=False) and gives
    back flow-control credit for every DATA frame except on streams listed
    in `starve`. Records responses (streams), GOAWAYs and EOF.
    """

    def __init__(self, port, window=None, answer_pings=True, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.streams = {}
        self.goaways = []        # (error_code, last_stream_id)
        self.pings = []          # opaque data of pings received
        self.settings = {}
        self.closed = False
        self.starve = set()
        self.answer_pings = answer_pings
        self.buf = b""
        self.next_id = 1
        self.hblock = None       # (stream id, bytes, end_stream) while CONTINUATIONs come
        self.conn_window = 65535  # our send windows (RFC 9113 6.9)
        self.initial_window = 65535
        self.windows = {}
        settings = SettingsFrame(0)
        if window is not None:
            settings.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: window}
        self.send(PREFACE + settings.serialize())
        # a large connection window: tests starve streams, not the connection
        self.send(WindowUpdateFrame(0, window_increment=1 << 30).serialize())

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- requests
    def headers_frame(self, sid, headers, end_stream=True, end_headers=True):
        """HEADERS (+ CONTINUATION frames when the block exceeds 16 KB)."""
        block = self.enc.encode(headers)
        f = HeadersFrame(sid, data=block[:16384])
        if end_stream:
            f.flags.add("END_STREAM")
        out, rest = [f], block[16384:]
        while rest:
            out.append(ContinuationFrame(sid, data=rest[:16384]))
            rest = rest[16384:]
        if end_headers:
            out[-1].flags.add("END_HEADERS")
        return b"".join(x.serialize() for x in out)

    def request(self, path="/", method="GET", body=None, headers=(), end_stream=None,
                authority="127.0.0.1"):
        sid = self.next_id
        self.next_id += 2
        h = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)]
        h += list(headers)
        if end_stream is None:
            end_stream = body is None
        self.streams[sid] = Stream()
        self.windows[sid] = self.initial_window
        self.send(self.headers_frame(sid, h, end_stream=end_stream))
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid, body, end=True):
        """DATA frames within the server's flow-control windows."""
        off = 0
        while True:
            self.wait(lambda: min(self.conn_window, self.windows[sid]) > 0 or off == len(body),
                      what="send window")
            n = min(16384, len(body) - off, self.conn_window, self.windows[sid])
            last = off + n == len(body)
            f = DataFrame(sid, data=body[off:off + n])
            if end and last:
                f.flags.add("END_STREAM")
            self.send(f.serialize())
            self.conn_window -= n
            self.windows[sid] -= n
            off += n
            if last:
                return

    def data_frames(self, sid, body, end):
        out = b""
        for i in range(0, max(len(body), 1), 16384):
            f = DataFrame(sid, data=body[i:i + 16384])
            if end and i + 16384 >= len(body):
                f.flags.add("END_STREAM")
            out += f.serialize()
        return out

    # ---- input
    def _frame(self, f):
        if isinstance(f, SettingsFrame):
            if "ACK" not in f.flags:
                if SettingsFrame.INITIAL_WINDOW_SIZE in f.settings:
                    new = f.settings[SettingsFrame.INITIAL_WINDOW_SIZE]
                    for k in self.windows:
                        self.windows[k] += new - self.initial_window
                    self.initial_window = new
                self.settings.update(f.settings)
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(f, PingFrame):
            if "ACK" not in f.flags:
                self.pings.append(f.opaque_data)
                if self.answer_pings:
                    self.send(PingFrame(0, opaque_data=f.opaque_data, flags=["ACK"]).serialize())
        elif isinstance(f, WindowUpdateFrame):
            if f.stream_id == 0:
                self.conn_window += f.window_increment
            elif f.stream_id in self.windows:
                self.windows[f.stream_id] += f.window_increment
        elif isinstance(f, GoAwayFrame):
            self.goaways.append((f.error_code, f.last_stream_id))
        elif isinstance(f, RstStreamFrame):
            self.streams.setdefault(f.stream_id, Stream()).reset = f.error_code
        elif isinstance(f, (HeadersFrame, ContinuationFrame)):
            self._header_block(f)
        elif isinstance(f, DataFrame):
            st = self.streams.setdefault(f.stream_id, Stream())
            st.body += f.data
            if "END_STREAM" in f.flags:
                st.ended = True
            n = f.flow_controlled_length
            if n and f.stream_id not in self.starve:
                self.send(WindowUpdateFrame(f.stream_id, window_increment=n).serialize())

    def _header_block(self, f):
        if isinstance(f, HeadersFrame):
            self.hblock = (f.stream_id, f.data, "END_STREAM" in f.flags)
        else:
            sid, data, end = self.hblock
            self.hblock = (sid, data + f.data, end)
        if "END_HEADERS" not in f.flags:
            return
        sid, data, end = self.hblock
        self.hblock = None
        st = self.streams.setdefault(sid, Stream())
        hdrs = [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                for k, v in self.dec.decode(data, raw=True)]
        status = dict(hdrs).get(":status")
        if status and int(status) >= 200:
            st.status = int(status)
            st.headers = [(k, v) for k, v in hdrs if not k.startswith(":")]
        if end:
            st.ended = True

    def pump(self, timeout=1.0):
        """Reads what arrives within `timeout`; False once the connection is closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        while len(self.buf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                break
            f.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            self._frame(f)
        return True

    def wait(self, cond, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout * SLOW
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for " + what)
            if not self.pump(0.2) and not cond():
                raise AssertionError("connection closed while waiting for " + what)
        return True

    def response(self, sid, timeout=10.0):
        st = self.streams[sid]
        self.wait(lambda: st.ended or st.reset is not None, timeout, "stream %d" % sid)
        return st

    def wait_closed(self, timeout=10.0):
        """Reads until EOF (or a reset); True if the peer closed within timeout."""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            try:
                if not self.pump(0.2):
                    return True
            except OSError:
                return True
        return False


class Prober(threading.Thread):
    """Another client making requests on fresh h2 connections while an attack runs."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failures = []
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                c = RawH2(self.port)
                sid = c.request("/")
                st = c.response(sid)
                if st.status == 200 and st.body.startswith(b"sgback"):
                    self.ok += 1
                else:
                    self.failures.append((st.status, st.reset))
                c.close()
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                self.failures.append(repr(e))
            time.sleep(0.02)

    def finish(self):
        # at least a few requests after the attack as well
        n = self.ok
        wait_for(lambda: self.ok >= n + 3 or self.failures, 20, what="requests after the attack")
        self.stop = True
        self.join(10)
        assert not self.failures, self.failures[:5]
        assert self.ok >= 3


def flood(port, data):
    """Sends data(c) on a raw h2 connection c while a Prober checks that
    other clients are still served: the server must close c with GOAWAY
    ENHANCE_YOUR_CALM (11). Returns c."""
    prober = Prober(port)
    prober.start()
    c = RawH2(port)
    try:
        c.send(data(c))
    except OSError:        # closed before the whole flood was written
        pass
    assert c.wait_closed()
    assert c.goaways and c.goaways[-1][0] == 11, c.goaways
    prober.finish()
    return c


def request_burst(c, n, after):
    """n GET /delay/100 requests on streams 1, 3, ..., each followed by after(sid)."""
    burst = b""
    for i in range(n):
        sid = 1 + 2 * i
        burst += c.headers_frame(sid, [(":method", "GET"), (":path", "/delay/100"),
                                       (":scheme", "http"), (":authority", "x")])
        burst += after(sid)
    return burst


# ---------------------------------------------------------------- basics

def test_get_through_h2_to_h1_backend(h2proxy):
    port = h2proxy()
    r = curl(port, "/", "-D", "-")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200")
    assert body == b"sgback %d\n" % int(dict(l.split(b": ", 1) for l in head.split(b"\r\n")[1:])[b"x-backend"])
    names = [l.split(b":", 1)[0] for l in head.split(b"\r\n")[1:]]
    assert all(n == n.lower() for n in names), names
    assert b"connection" not in names and b"transfer-encoding" not in names
    assert b"server" in names and b"date" in names


def test_response_headers_lowercase_and_no_connection_headers(h2proxy):
    port = h2proxy()
    c = RawH2(port)
    # sgback answers /close with Connection: close; /bytes?chunked=1 with chunked
    for path in ("/close", "/bytes/100000?chunked=1"):
        st = c.response(c.request(path))
        assert st.status == 200
        names = [k for k, _ in st.headers]
        assert all(n == n.lower() for n in names), names
        for bad in ("connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"):
            assert bad not in names
    assert st.body == pattern_bytes(100000)
    c.close()


def test_local_answer_and_head(h2proxy):
    port = h2proxy()
    c = RawH2(port)
    st = c.response(c.request("/local"))
    assert st.status == 200 and st.body == b"local answer\n"
    assert st.header("content-length") == "13"
    st = c.response(c.request("/bytes/5000", method="HEAD"))
    assert st.status == 200 and st.body == b"" and st.header("content-length") == "5000"
    c.close()


def test_post_body_with_and_without_content_length(h2proxy):
    port = h2proxy()
    c = RawH2(port)
    body = b"x" * 100000
    st = c.response(c.request("/echo", method="POST", body=body,
                              headers=[("content-length", str(len(body)))]))
    assert st.status == 200 and st.body == body
    st = c.response(c.request("/echo", method="POST", body=b"no length here"))
    assert st.status == 200 and st.body == b"no length here"
    c.close()


def test_large_upload_and_download_sha256(h2proxy, tmp_path):
    port = h2proxy()
    data = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    r = curl(port, "/echo", "--data-binary", "@%s" % src, "-H", "Content-Type: application/octet-stream")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    n = 10 * 1000 * 1000
    r = curl(port, "/bytes/%d" % n)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(pattern_bytes(n)).hexdigest()


def test_request_headers_reach_the_backend(h2proxy):
    port = h2proxy(server_extra="proxy_set_header Host $host;")
    c = RawH2(port)
    st = c.response(c.request("/headers", authority="Example.COM:8443",
                              headers=[("cookie", "a=1"), ("x-test", "yes"), ("cookie", "b=2"),
                                       ("te", "trailers")]))
    assert st.status == 200
    head = st.body.decode("latin-1")
    lines = head.split("\r\n")
    assert lines[0] == "GET /headers HTTP/1.1"
    hdrs = [tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x]
    names = [k.lower() for k, _ in hdrs]
    assert ("Host", "example.com") in hdrs
    assert names.count("cookie") == 1 and ("cookie", "a=1; b=2") in hdrs
    assert ("x-test", "yes") in hdrs
    assert "te" not in names
    c.close()


def test_many_concurrent_streams_h2load(h2proxy):
    port = h2proxy()
    r = subprocess.run(["h2load", "-n", "2000", "-c", "2", "-m", "50",
                        "http://127.0.0.1:%d/" % port],
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    assert "status codes: 2000 2xx" in r.stdout, r.stdout


def test_slow_reader_does_not_stall_other_streams(h2proxy):
    port = h2proxy()
    c = RawH2(port)
    a = c.request("/bytes/50000000")
    c.starve.add(a)                     # never give stream A any window
    c.wait(lambda: len(c.streams[a].body) >= 65535, what="stream A's first window")
    for _ in range(5):
        b = c.request("/")
        st = c.response(b)
        assert st.status == 200 and st.body.startswith(b"sgback")
    assert not c.streams[a].ended and len(c.streams[a].body) == 65535
    c.close()


def test_zero_window_rss(backend, start_proxy):
    port, conf = h2_conf(backend.port, free_port())
    proxy = start_proxy(conf)
    before = proxy.rss_kb()
    c = RawH2(port, window=0)
    for _ in range(20):
        c.starve.add(c.request("/bytes/100000000"))
    time.sleep(2.0 * SLOW)
    c.pump(0.5)
    grown = proxy.rss_kb() - before
    # 20 streams of 100 MB each: what is held is bounded by the per-connection
    # queue cap and one upstream read per stream, not by the bodies (not
    # under ASan, whose quarantine keeps freed memory on purpose)
    if not SANITIZED:
        assert grown < 48 * 1024, "proxy grew by %d KiB" % grown
    st = RawH2(port)
    s2 = st.response(st.request("/"))
    assert s2.status == 200
    st.close()
    c.close()


def test_static_file_download_and_slow_reader(backend, start_proxy, tmp_path):
    """A local file through the codec's drain path: a whole download, and a
    reader that stalls half way then resumes."""
    root = tmp_path / "www"
    root.mkdir()
    data = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    (root / "big.bin").write_bytes(data)
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / { root %s; }
  }
""" % (port, root)))
    r = curl(port, "/big.bin")
    assert r.returncode == 0 and hashlib.sha256(r.stdout).digest() == hashlib.sha256(data).digest()
    # several requests in one segment, the first answered from the file at
    # once, while the rest of the segment is still being parsed
    c = RawH2(port)
    burst = b""
    for sid, path in ((1, "/big.bin"), (3, "/missing"), (5, "/big.bin")):
        c.streams[sid] = Stream()
        burst += c.headers_frame(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                       (":authority", "x")])
    c.next_id = 7
    c.send(burst)
    assert c.response(1, timeout=30).body == data
    assert c.response(3).status == 404
    assert c.response(5, timeout=30).body == data
    c.close()
    c = RawH2(port)
    sid = c.request("/big.bin")
    c.starve.add(sid)
    c.wait(lambda: len(c.streams[sid].body) >= 65535, what="the first window")
    time.sleep(0.3)
    c.starve.discard(sid)
    c.send(WindowUpdateFrame(sid, window_increment=len(c.streams[sid].body)).serialize())
    st = c.response(sid, timeout=30)
    assert st.status == 200 and hashlib.sha256(st.body).digest() == hashlib.sha256(data).digest()
    c.close()


# ---------------------------------------------------------------- extended CONNECT

def test_extended_connect_advertised_and_served(h2proxy):
    port = h2proxy(server_extra='location = /tunnel { return 200 "tunnel ok\\n"; }')
    c = RawH2(port)
    c.wait(lambda: 8 in c.settings, what="SETTINGS")
    assert c.settings[8] == 1, c.settings              # SETTINGS_ENABLE_CONNECT_PROTOCOL
    sid = c.request("/tunnel", method="CONNECT", headers=[(":protocol", "websocket")], end_stream=False)
    c.send_body(sid, b"client bytes", end=False)
    st = c.response(sid)
    assert st.status == 200 and st.body == b"tunnel ok\n"
    # the connection is still fine
    st = c.response(c.request("/"))
    assert st.status == 200
    c.close()


def test_plain_connect_is_405(h2proxy):
    port = h2proxy()
    c = RawH2(port)
    sid = c.next_id
    c.next_id += 2
    c.streams[sid] = Stream()
    c.send(c.headers_frame(sid, [(":method", "CONNECT"), (":authority", "example.com:443")],
                           end_stream=False))
    st = c.response(sid)
    assert st.status == 405
    c.close()


# ---------------------------------------------------------------- limits and attacks

def test_header_list_over_limit_is_431_connection_survives(h2proxy):
    port = h2proxy(server_extra="large_client_header_buffers 4 8k;")
    c = RawH2(port)
    st = c.response(c.request("/", headers=[("x-big", "a" * 9000)]))
    assert st.status == 431
    st = c.response(c.request("/", headers=[("x-%d" % i, "b" * 4000) for i in range(10)]))
    assert st.status == 431
    st = c.response(c.request("/"))
    assert st.status == 200
    c.close()


def test_hpack_bomb_closes_the_connection(h2proxy):
    port = h2proxy()
    prober = Prober(port)
    prober.start()
    c = RawH2(port)
    block = c.enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "http"),
                          (":authority", "x"), ("x-bomb", "z" * 4000)])
    block += b"\xbe" * 2000          # indexed field 62: the 4 KB entry, 2000 more times
    f = HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"])
    c.send(f.serialize())
    assert c.wait_closed()
    assert c.goaways and c.goaways[-1][0] == 11, c.goaways   # ENHANCE_YOUR_CALM
    prober.finish()


def test_continuation_flood_closes_the_connection(h2proxy):
    port = h2proxy()
    prober = Prober(port)
    prober.start()
    c = RawH2(port)
    f = HeadersFrame(1, data=c.enc.encode([(":method", "GET"), (":path", "/"),
                                           (":scheme", "http"), (":authority", "x")]))
    c.send(f.serialize())
    sent = 0
    try:
        for _ in range(20000):
            c.send(ContinuationFrame(1, data=c.enc.encode([("x-a", "b" * 50)])).serialize())
            sent += 1
    except OSError:
        pass
    assert c.wait_closed()
    assert sent < 20000 or c.goaways
    if c.goaways:
        assert c.goaways[-1][0] == 11
    prober.finish()


def test_rapid_reset_closes_the_attacker_only(h2proxy):
    c = flood(h2proxy(), lambda c: request_burst(
        c, 5000, lambda sid: RstStreamFrame(sid, error_code=8).serialize()))
    assert c.goaways[-1][1] < 2 * 5000, "GOAWAY before the end of the flood"


def test_ping_flood_closes_the_connection(h2proxy):
    flood(h2proxy(), lambda c: PingFrame(0, opaque_data=b"12345678").serialize() * 20000)


def test_invalid_frame_flood_closes_the_connection(h2proxy):
    """MadeYouReset: frames that make the server reset the stream itself
    after the request started (a WINDOW_UPDATE overflowing the stream window
    is a stream error, FLOW_CONTROL_ERROR)."""
    flood(h2proxy(), lambda c: request_burst(
        c, 3000, lambda sid: struct.pack(">I", 4)[1:] + bytes([8, 0])
        + struct.pack(">II", sid, 0x7fffffff)))


def test_max_concurrent_streams_advertised_and_served(h2proxy):
    port = h2proxy(server_extra="http2_max_concurrent_streams 4;")
    c = RawH2(port)
    c.wait(lambda: 3 in c.settings, what="SETTINGS")
    assert c.settings[3] == 4
    sids = [c.request("/delay/300") for _ in range(4)]
    for sid in sids:
        assert c.response(sid).status == 200
    c.close()


# ---------------------------------------------------------------- pings, idle, graceful

def test_silent_stream_is_not_cut_by_ping(h2proxy):
    port = h2proxy(server_extra="http2_ping_interval 1s; http2_ping_timeout 1s;")
    c = RawH2(port)
    st = c.response(c.request("/delay/3500"), timeout=20)
    assert st.status == 200 and st.body.startswith(b"sgback")
    assert c.pings, "the proxy pinged the silent connection"
    c.close()
    r = curl(port, "/delay/2500")
    assert r.returncode == 0 and r.stdout.startswith(b"sgback"), r.stderr


def test_dead_client_is_closed_after_ping_timeout(h2proxy):
    port = h2proxy(server_extra="http2_ping_interval 1s; http2_ping_timeout 1s;")
    c = RawH2(port, answer_pings=False)
    sid = c.request("/delay/60000")
    c.wait(lambda: c.pings, timeout=10, what="a PING")
    assert c.wait_closed(timeout=15)
    assert not c.streams[sid].ended


def test_idle_connection_closed_after_keepalive_timeout(h2proxy):
    port = h2proxy(server_extra="keepalive_timeout 1s;")
    c = RawH2(port)
    st = c.response(c.request("/"))
    assert st.status == 200
    assert c.wait_closed(timeout=10)
    assert c.goaways and c.goaways[-1][0] == 0


def test_max_requests_sends_graceful_goaway(h2proxy):
    port = h2proxy(server_extra="http2_max_requests 3;")
    c = RawH2(port)
    for _ in range(3):
        st = c.response(c.request("/"))
        assert st.status == 200
    assert c.wait_closed(timeout=10)
    assert c.goaways[0] == (0, 2 ** 31 - 1), c.goaways     # shutdown notice first
    assert c.goaways[-1] == (0, 5), c.goaways               # then the last stream processed


def test_graceful_quit_finishes_inflight_stream(backend, start_proxy):
    port, conf = h2_conf(backend.port, free_port())
    proxy = start_proxy(conf)
    c = RawH2(port)
    sid = c.request("/delay/1500")
    # the stream is in flight once the proxy has a backend connection for it
    wait_for(lambda: backend.stats()["open"] >= 2, 10, what="the request at the backend")
    t = threading.Thread(target=proxy.quit, daemon=True)
    t.start()
    st = c.response(sid, timeout=20)
    assert st.status == 200 and st.body.startswith(b"sgback")
    assert c.goaways and c.goaways[0] == (0, 2 ** 31 - 1), c.goaways
    assert c.wait_closed(timeout=10)
    assert c.goaways[-1] == (0, 1), c.goaways
    t.join(20 * SLOW)
    assert proxy.exit_code == 0


def test_graceful_quit_with_nghttp(backend, start_proxy):
    port, conf = h2_conf(backend.port, free_port())
    proxy = start_proxy(conf)
    p = subprocess.Popen(["nghttp", "-v", "http://127.0.0.1:%d/delay/1500" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: backend.stats()["open"] >= 2, 10, what="the request at the backend")
    proxy.quit()
    out, _ = p.communicate(timeout=20 * SLOW)
    assert p.returncode == 0, out
    assert "recv GOAWAY frame" in out
    assert ":status: 200" in out and "sgback" in out


# ---------------------------------------------------------------- configuration

def test_http2_on_in_server_enables_h2(backend, start_proxy):
    port = free_port()
    conf = http_conf("""
  server {
    listen 127.0.0.1:%d;
    http2 on;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port))
    start_proxy(conf)
    r = curl(port, "/")
    assert r.returncode == 0 and r.stdout.startswith(b"sgback"), r.stderr


def test_http2_directives_accepted_and_checked(tmp_path, backend):
    from sgtest import run_streamgate
    good = http_conf("""
  http2_recv_buffer_size 128k;
  http2_chunk_size 16k;
  server {
    listen 127.0.0.1:%d http2;
    http2_max_concurrent_streams 64;
    http2_body_preread_size 128k;
    http2_max_field_size 8k;
    http2_max_header_size 32k;
    http2_idle_timeout 3m;
    http2_recv_timeout 30s;
    http2_max_requests 1000;
    http2_ping_interval 30s;
    http2_ping_timeout 20s;
    http2_streams_index_size 32;
    location / { http2_chunk_size 8k; proxy_pass http://127.0.0.1:%d; }
  }
""" % (free_port(), backend.port))
    f = tmp_path / "good.conf"
    f.write_text(good)
    r = run_streamgate(["-t", "-c", f])
    assert r.returncode == 0, r.stderr
    for bad, msg in (("http2_push_preload on;", '"http2_push_preload" directive is not supported yet'),
                     ("http2_push /x;", '"http2_push" directive is not supported yet'),
                     ("http2_chunk_size 0;", 'invalid value "0" in "http2_chunk_size"'),
                     ("http2_body_preread_size 4g;", 'invalid value "4g"'),
                     ("http2 maybe;", 'it must be "on" or "off"')):
        f.write_text(http_conf("server { listen 127.0.0.1:%d http2; %s }" % (free_port(), bad)))
        r = run_streamgate(["-t", "-c", f])
        assert r.returncode == 1 and msg in r.stderr, (bad, r.stderr)


def test_http1_client_on_h2_listener(h2proxy):
    """A client without the preface is served as HTTP/1.1 on the same port
    (nginx >= 1.25), keep-alive included; the listener keeps serving h2."""
    port = h2proxy()
    with HttpConn(port) as c:
        for _ in range(3):
            r = c.request("GET", "/local")
            assert r.status == 200 and r.body == b"local answer\n"
    r = curl(port, "/local")
    assert r.returncode == 0 and r.stdout == b"local answer\n"


def test_access_log_shows_http2(backend, start_proxy):
    port = free_port()
    conf = http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    access_log logs/access.log;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port))
    proxy = start_proxy(conf)
    assert curl(port, "/bytes/10").returncode == 0
    log = proxy.prefix / "logs" / "access.log"
    wait_for(lambda: log.exists() and "HTTP/2.0" in log.read_text(), 10, what="access log line")
    assert '"GET /bytes/10 HTTP/2.0" 200 10' in log.read_text()
