"""Bandwidth limits (issue 10, item 4), with real clients.

nginx's budget: t seconds after the request (or stream session) started,
rate * (t + 1) bytes may have gone out (plus limit_rate_after), so a
download of SIZE bytes at RATE takes about (SIZE - RATE) / RATE seconds.
Durations are only asserted from below (a fast machine cannot go faster
than the limit) with a tolerance, and from above generously; "nothing else
slows" compares two transfers of the same run, never a wall-clock constant.
"""

import os
import socket
import threading
import time

from sgtest import free_port, get, http_conf, wait_for

KB = 1024
TOL = 0.35            # seconds: timer ticks and the loop's cached clock
GENEROUS = 20.0       # an upper bound that only catches a hang


def expected(size, rate, after=0):
    """The shortest time nginx's budget allows for `size` bytes."""
    return max(0.0, (size - after - rate) / rate)


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


def write_file(root, name, size):
    data = os.urandom(size)
    (root / name).write_bytes(data)
    return data


# ---------------------------------------------------------------- backends

class Sender:
    """An HTTP/1.1 backend that answers every request with `size` bytes
    (Content-Length) and the given extra header lines, writing as fast as
    the proxy reads; `sent` counts the body bytes the socket took."""

    def __init__(self, size, headers=b"", sndbuf=None):
        self.size = size
        self.headers = headers
        self.sndbuf = sndbuf
        self.sent = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if self.sndbuf:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d:
                    return
                buf += d
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n"
                      % (self.size, self.headers))
            chunk = b"x" * 65536
            left = self.size
            while left:
                n = c.send(chunk[:min(left, len(chunk))])
                self.sent += n
                left -= n
        except OSError:
            pass
        finally:
            c.close()


def raw_get(port, path, mark=None):
    """GET over a plain socket: (body, seconds until `mark` body bytes had
    arrived, seconds in all)."""
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    data = b""
    t_mark = None
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
        head_end = data.find(b"\r\n\r\n")
        if mark is not None and t_mark is None and head_end >= 0 and len(data) - head_end - 4 >= mark:
            t_mark = time.monotonic() - t0
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body, t_mark, time.monotonic() - t0


# ---------------------------------------------------------------- http: limit_rate

def test_limit_rate_paces_a_download(start_proxy, tmp_path):
    data = write_file(tmp_path, "f", 300 * KB)
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; root %s;
    location /slow { alias %s/f; limit_rate 100k; }
    location /fast { alias %s/f; }
  }""" % (port, tmp_path, tmp_path, tmp_path)))
    r, took = timed(get, port, "/slow", timeout=GENEROUS)
    assert r.status == 200 and r.body == data
    assert took >= expected(300 * KB, 100 * KB) - TOL
    assert took < GENEROUS
    r, fast = timed(get, port, "/fast")
    assert r.body == data and fast < took / 4


def test_limit_rate_after_lets_the_first_bytes_through(start_proxy, tmp_path):
    data = write_file(tmp_path, "f", 350 * KB)
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d;
    location /dl { alias %s/f; limit_rate 50k; limit_rate_after 200k; }
  }""" % (port, tmp_path)))
    body, first, total = raw_get(port, "/dl", mark=200 * KB)
    assert body == data
    assert total >= expected(350 * KB, 50 * KB, after=200 * KB) - TOL
    # the first 200 KB came at full speed, the rest at the rate
    assert first < total / 4


def test_set_limit_rate_from_a_variable(start_proxy, tmp_path):
    data = write_file(tmp_path, "f", 300 * KB)
    port = free_port()
    start_proxy(http_conf("""
  log_format r "$uri $limit_rate";
  server { listen 127.0.0.1:%d;
    location /v { alias %s/f; set $limit_rate $arg_r; add_header X-Rate $limit_rate; }
    location /conf { alias %s/f; limit_rate $arg_r; }
  }""" % (port, tmp_path, tmp_path)))
    r, took = timed(get, port, "/v?r=100k", timeout=GENEROUS)
    assert r.body == data and r.header("x-rate") == "102400"
    assert took >= expected(300 * KB, 100 * KB) - TOL
    r, fast = timed(get, port, "/v")           # no value: no limit
    assert r.body == data and fast < took / 4
    # limit_rate itself takes variables (nginx 1.17.0+)
    r, took2 = timed(get, port, "/conf?r=100k", timeout=GENEROUS)
    assert r.body == data and took2 >= expected(300 * KB, 100 * KB) - TOL
    r, fast = timed(get, port, "/conf")
    assert r.body == data and fast < took2 / 4


def test_x_accel_limit_rate(start_proxy):
    size = 300 * KB
    limited = Sender(size, b"X-Accel-Limit-Rate: 102400\r\n")
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
    location /ignored { proxy_pass http://127.0.0.1:%d; proxy_ignore_headers X-Accel-Limit-Rate; }
  }""" % (port, limited.port, limited.port)))
    r, took = timed(get, port, "/", timeout=GENEROUS)
    assert r.status == 200 and len(r.body) == size
    assert r.header("x-accel-limit-rate") is None      # never shown to the client
    assert took >= expected(size, 100 * KB) - TOL
    r, fast = timed(get, port, "/ignored")
    assert len(r.body) == size and fast < took / 4


def test_proxy_limit_rate(start_proxy):
    size = 300 * KB
    backend = Sender(size)
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; proxy_limit_rate 100k; }
    location /unbuffered { proxy_pass http://127.0.0.1:%d; proxy_limit_rate 100k; proxy_buffering off; }
  }""" % (port, backend.port, backend.port)))
    r, took = timed(get, port, "/", timeout=GENEROUS)
    assert len(r.body) == size
    assert took >= expected(size, 100 * KB) - TOL
    # nginx applies proxy_limit_rate only while buffering
    r, fast = timed(get, port, "/unbuffered")
    assert len(r.body) == size and fast < took / 4


def test_limited_download_backpressures_the_backend(start_proxy):
    """While the client is held to 100k/s, the backend is read only as far
    as the proxy's bounded queue: a 64 MB answer is not swallowed."""
    size = 64 * 1024 * KB
    backend = Sender(size, sndbuf=64 * KB)
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; limit_rate 100k; }
  }""" % (port, backend.port)))
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        got += len(s.recv(65536))
    sent = backend.sent
    s.close()
    assert got < 1024 * KB                    # the client is paced
    # the queue (256 KB) plus socket buffers, far from the 64 MB on offer
    assert sent < 16 * 1024 * KB, sent


def h2_get_both(port, paths):
    """GETs `paths` as concurrent streams of one HTTP/2 connection (prior
    knowledge); returns {path: (status, body, seconds until its end)}."""
    import h2.config
    import h2.connection
    import h2.events
    s = socket.create_connection(("127.0.0.1", port))
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    t0 = time.monotonic()
    ids = {}
    for path in paths:
        sid = conn.get_next_available_stream_id()
        ids[sid] = path
        conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                (":authority", "x")], end_stream=True)
    s.sendall(conn.data_to_send())
    status, bodies, done = {}, {sid: b"" for sid in ids}, {}
    s.settimeout(GENEROUS)
    while len(done) < len(ids):
        d = s.recv(65536)
        assert d, "connection closed"
        for ev in conn.receive_data(d):
            if isinstance(ev, h2.events.ResponseReceived):
                status[ev.stream_id] = dict(ev.headers)[b":status"]
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                done[ev.stream_id] = time.monotonic() - t0
        s.sendall(conn.data_to_send())
    s.close()
    return {ids[sid]: (status[sid], bodies[sid], done[sid]) for sid in ids}


def test_http2_streams_are_limited_one_by_one(start_proxy, tmp_path):
    data = write_file(tmp_path, "f", 300 * KB)
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d http2;
    location /slow { alias %s/f; limit_rate 100k; }
    location /fast { alias %s/f; }
  }""" % (port, tmp_path, tmp_path)))
    r = h2_get_both(port, ["/slow", "/fast"])
    assert r["/slow"][:2] == (b"200", data) and r["/fast"][:2] == (b"200", data)
    assert r["/slow"][2] >= expected(300 * KB, 100 * KB) - TOL
    # the other stream of the same connection is not held back
    assert r["/fast"][2] < r["/slow"][2] / 4


def test_nothing_else_on_the_worker_slows(start_proxy, tmp_path):
    """One worker thread: while a limited download runs, an unlimited one
    on another connection completes at full speed (the limit is a timer
    on the loop, nothing sleeps)."""
    data = write_file(tmp_path, "f", 300 * KB)
    big = write_file(tmp_path, "big", 4 * 1024 * KB)
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d;
    location /slow { alias %s/f; limit_rate 100k; }
    location /big { alias %s/big; }
  }""" % (port, tmp_path, tmp_path), main="worker_processes 1;"))
    result = {}

    def slow():
        r, took = timed(get, port, "/slow", timeout=GENEROUS)
        result["slow"] = (r.body == data, took)

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.3)     # the limited download is under way (its first second's bytes went out)
    r, fast = timed(get, port, "/big")
    assert r.body == big
    still_running = th.is_alive()
    th.join(GENEROUS)
    ok, took = result["slow"]
    assert ok and took >= expected(300 * KB, 100 * KB) - TOL
    assert still_running and fast < took / 4


# ---------------------------------------------------------------- stream

class StreamPeer:
    """A TCP backend: mode "send" writes `size` bytes and closes; mode
    "count" reads until `size` bytes came, then answers b"ok" and closes."""

    def __init__(self, mode, size):
        self.mode, self.size = mode, size
        self.data = os.urandom(size)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if self.mode == "send":
                c.sendall(self.data)
            else:
                got = 0
                while got < self.size:
                    d = c.recv(65536)
                    if not d:
                        break
                    got += len(d)
                c.sendall(b"ok" if got == self.size else b"short")
        except OSError:
            pass
        finally:
            c.close()


def stream_conf(body):
    return "events { }\nstream {\n%s\n}\n" % body


def read_all(port, send=b""):
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    if send:
        s.sendall(send)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return data, time.monotonic() - t0


def test_stream_download_rate(start_proxy):
    size = 300 * KB
    peer = StreamPeer("send", size)
    slow, fast, var = free_port(), free_port(), free_port()
    proxy = start_proxy(stream_conf("""
  map $server_port $down { %d 100k; default 0; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; proxy_download_rate 100k; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; proxy_download_rate 0; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; proxy_download_rate $down; }
""" % (var, slow, peer.port, fast, peer.port, var, peer.port)), ports=[])
    wait_for(lambda: "started" in proxy.stderr or not proxy.running(), what="streamgate start")
    assert proxy.running(), proxy.stderr
    data, took = read_all(slow)
    assert data == peer.data and took >= expected(size, 100 * KB) - TOL
    data, quick = read_all(fast)
    assert data == peer.data and quick < took / 4
    data, took_var = read_all(var)                  # the rate from a variable
    assert data == peer.data and took_var >= expected(size, 100 * KB) - TOL


def test_stream_upload_rate(start_proxy):
    size = 300 * KB
    peer = StreamPeer("count", size)
    slow, fast = free_port(), free_port()
    proxy = start_proxy(stream_conf("""
  proxy_upload_rate 100k;
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; proxy_upload_rate 0; }
""" % (slow, peer.port, fast, peer.port)), ports=[])
    wait_for(lambda: "started" in proxy.stderr or not proxy.running(), what="streamgate start")
    assert proxy.running(), proxy.stderr
    body = os.urandom(size)
    data, took = read_all(slow, body)
    assert data == b"ok" and took >= expected(size, 100 * KB) - TOL
    data, quick = read_all(fast, body)
    assert data == b"ok" and quick < took / 4


def test_rate_config_errors(tmp_path):
    from sgtest import run_streamgate
    conf = tmp_path / "t.conf"
    conf.write_text(http_conf("server { listen 127.0.0.1:1; limit_rate fast; }"))
    p = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert p.returncode != 0 and 'invalid value "fast" in "limit_rate" directive' in p.stderr
    conf.write_text(stream_conf("server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; proxy_download_rate 1x; }"))
    p = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert p.returncode != 0 and 'invalid value "1x" in "proxy_download_rate" directive' in p.stderr


class UdpEcho:
    """A UDP backend that echoes every datagram and notes when it came."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.times = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                d, a = self.sock.recvfrom(65536)
            except OSError:
                return
            self.times.append(time.monotonic())
            self.sock.sendto(d, a)


def test_stream_udp_rates(start_proxy):
    """A datagram is never split: it goes while the budget lasts, and the
    next waits the time it was worth (1000 bytes at 1000/s: a second)."""
    echo = UdpEcho()
    down, up, free = free_port(), free_port(), free_port()
    proxy = start_proxy(stream_conf("""
  proxy_requests 2; proxy_responses 1;
  server { listen 127.0.0.1:%d udp; proxy_pass 127.0.0.1:%d; proxy_download_rate 1000; }
  server { listen 127.0.0.1:%d udp; proxy_pass 127.0.0.1:%d; proxy_upload_rate 1000; }
  server { listen 127.0.0.1:%d udp; proxy_pass 127.0.0.1:%d; }
""" % (down, echo.port, up, echo.port, free, echo.port)), ports=[])
    wait_for(lambda: "started" in proxy.stderr or not proxy.running(), what="streamgate start")
    msg = os.urandom(1000)

    def two(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(GENEROUS)
        s.connect(("127.0.0.1", port))
        n0 = len(echo.times)
        s.sendall(msg)
        s.sendall(msg)
        got = []
        for _ in range(2):
            assert s.recv(65536) == msg
            got.append(time.monotonic())
        s.close()
        return got[1] - got[0], echo.times[n0 + 1] - echo.times[n0]

    gap_free, _ = two(free)
    gap_down, _ = two(down)                 # the second reply waits
    assert gap_down >= 1.0 - TOL and gap_free < gap_down / 4
    _, arrived = two(up)                    # the second datagram waits
    assert arrived >= 1.0 - TOL


def test_x_accel_redirect(start_proxy):
    """X-Accel-Redirect (limit_rate.t's companion): the backend's answer is
    dropped and the request goes on internally, as a GET; its
    X-Accel-Limit-Rate still applies there, as in nginx."""
    redirect = Sender(10, b"X-Accel-Redirect: /internal?x=1\r\nContent-Type: text/blah\r\n"
                          b"Set-Cookie: a=b\r\nSomething: other\r\n")
    escaped = Sender(10, b"X-Accel-Redirect: /internal%20x?x=%20\r\n")
    limited = Sender(10, b"X-Accel-Redirect: /file\r\nX-Accel-Limit-Rate: 102400\r\n")
    unsafe = Sender(10, b"X-Accel-Redirect: /a/../internal\r\n")
    port = free_port()
    import tempfile
    d = tempfile.mkdtemp()
    data = os.urandom(300 * KB)
    with open(os.path.join(d, "f"), "wb") as f:
        f.write(data)
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
    location /ignored { proxy_pass http://127.0.0.1:%d; proxy_ignore_headers X-Accel-Redirect; }
    location /limited { proxy_pass http://127.0.0.1:%d; }
    location /unsafe { proxy_pass http://127.0.0.1:%d; }
    location /escaped { proxy_pass http://127.0.0.1:%d; }
    location "/internal x" { internal; return 200 "uri=$uri args=$args"; }
    location /internal { internal; return 200 "redirected $request_method x=$arg_x"; }
    location /file { internal; alias %s/f; }
  }""" % (port, redirect.port, redirect.port, limited.port, unsafe.port, escaped.port, d)))
    r = get(port, "/", method="POST", body=b"abc")
    assert r.status == 200 and r.body == b"redirected GET x=1"
    assert r.header("x-accel-redirect") is None
    # the backend's Content-Type and Set-Cookie stay (nginx's list), other fields go
    assert r.header("content-type") == "text/blah" and r.header("set-cookie") == "a=b"
    assert r.header("something") is None
    # the path is decoded, the arguments are kept as they are
    r = get(port, "/escaped")
    assert r.status == 200 and r.body == b"uri=/internal x args=x=%20"
    r = get(port, "/ignored")
    assert r.status == 200 and r.body == b"x" * 10
    r, took = timed(get, port, "/limited", timeout=GENEROUS)
    assert r.status == 200 and r.body == data
    assert took >= expected(300 * KB, 100 * KB) - TOL
    assert get(port, "/unsafe").status == 404
