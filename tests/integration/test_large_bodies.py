"""Large bodies stream through the proxy with bounded memory.

1 GB down and up (Content-Length and chunked), a slow reader (backpressure),
and client_max_body_size (0 = unlimited; nginx's default is 1m).  The
proxy's resident memory (VmRSS) is sampled every 100 ms during each transfer.
"""

import socket
import threading
import time

import pytest

from sgtest import HttpConn, build_request, get, SANITIZED

GB = 1 << 30
MB = 1 << 20
RSS_LIMIT_KB = 64 * 1024
MAIN = "worker_processes 2;"


class RssSampler:
    """Samples a process's VmRSS every 100 ms in a thread; .peak_kb is the maximum."""

    def __init__(self, proc):
        self.proc = proc
        self.peak_kb = proc.rss_kb()
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.1):
            try:
                self.peak_kb = max(self.peak_kb, self.proc.rss_kb())
                self.samples += 1
            except (OSError, ValueError):
                return

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def check(self):
        print("proxy VmRSS peak %d KB over %d samples" % (self.peak_kb, self.samples))
        if SANITIZED:
            return      # ASan's shadow memory and quarantine make RSS meaningless
        assert self.peak_kb < RSS_LIMIT_KB, "proxy RSS peaked at %d KB" % self.peak_kb


@pytest.fixture
def big(backend, simple_proxy):
    proxy, port = simple_proxy([backend.port], main=MAIN,
                               server_extra="client_max_body_size 0;",
                               location_extra="proxy_read_timeout 60s; proxy_send_timeout 60s;")
    return proxy, port


def pattern(port):
    """sgback's /bytes pattern: byte i of any /bytes body is pattern[i % 16]."""
    r = get(port, "/bytes/16")
    assert r.status == 200 and len(r.body) == 16
    return r.body


def download(port, path, total, reader=None):
    """GET path on a raw socket; returns (received byte count, first 64 KB, last 64 KB)."""
    with HttpConn(port, timeout=30) as c:
        c.send(build_request("GET", path))
        r = c.read_head()
        assert r.status == 200
        assert int(r.header("Content-Length")) == total
        got = len(c.buf)
        head, tail = c.buf[:65536], c.buf[-65536:]
        c.buf = b""
        buf = bytearray(MB)
        view = memoryview(buf)
        while got < total:
            if reader:
                reader(got)
            n = c.sock.recv_into(view, min(MB, total - got))
            assert n > 0, "connection closed after %d of %d bytes" % (got, total)
            if len(head) < 65536:
                head += bytes(view[:min(n, 65536 - len(head))])
            got += n
            tail = (tail + bytes(view[max(0, n - 65536):n]))[-65536:]
        # Nothing more must follow the body: the connection stays usable.
        r2 = c.request("GET", "/")
        assert r2.status == 200
        return got, head, tail


def check_pattern(data, offset, pat):
    expect = (pat * (len(data) // 16 + 2))[offset % 16:offset % 16 + len(data)]
    assert data == expect, "body bytes differ from sgback's pattern near offset %d" % offset


def test_download_1gb(big):
    proxy, port = big
    pat = pattern(port)
    with RssSampler(proxy) as rss:
        got, head, tail = download(port, "/bytes/%d" % GB, GB)
    assert got == GB
    check_pattern(head, 0, pat)
    check_pattern(tail, GB - len(tail), pat)
    assert rss.samples > 0
    rss.check()


def test_download_chunked_64mb(big):
    proxy, port = big
    n = 64 * MB
    with RssSampler(proxy) as rss:
        with HttpConn(port, timeout=30) as c:
            r = c.request("GET", "/bytes/%d?chunked=1" % n)
    assert r.status == 200
    assert r.chunked
    assert len(r.body) == n
    rss.check()


def upload(port, total, chunked, block=MB):
    """POST total bytes to /sink in `block`-sized sendall()s; returns the Response."""
    with HttpConn(port, timeout=60) as c:
        if chunked:
            c.send(build_request("POST", "/sink", headers={"Transfer-Encoding": "chunked"}))
        else:
            c.send(build_request("POST", "/sink", headers={"Content-Length": str(total)}))
        data = bytes(range(256)) * (block // 256)
        frame = (b"%x\r\n" % block) + data + b"\r\n" if chunked else data
        sent = 0
        while sent < total:
            c.sock.sendall(frame)
            sent += block
        if chunked:
            c.sock.sendall(b"0\r\n\r\n")
        r = c.read_response()
        r2 = c.request("GET", "/")      # the connection is still in sync
        assert r2.status == 200
        return r


def test_upload_1gb_content_length(big):
    proxy, port = big
    with RssSampler(proxy) as rss:
        r = upload(port, GB, chunked=False)
    assert r.status == 200
    assert r.text == "received %d\n" % GB
    rss.check()


def test_upload_256mb_chunked(big):
    proxy, port = big
    n = 256 * MB
    with RssSampler(proxy) as rss:
        r = upload(port, n, chunked=True)
    assert r.status == 200
    assert r.text == "received %d\n" % n
    rss.check()


def test_echo_16mb_both_directions_at_once(big):
    """/echo streams the body back while it is still being sent (full duplex).

    Four rounds on one keep-alive connection: a lost wake-up or a dropped
    buffer shows up as a stall (the read times out) or a short body."""
    proxy, port = big
    n = 16 * MB
    block = bytes(range(256)) * 256          # 64 KB
    with HttpConn(port, timeout=10) as c:
        for _ in range(4):
            c.send(build_request("POST", "/echo", headers={"Content-Length": str(n)}))
            sent = [0]

            def send():
                for _ in range(n // len(block)):
                    c.sock.sendall(block)
                    sent[0] += len(block)
            t = threading.Thread(target=send, daemon=True)
            t.start()
            r = c.read_head()
            assert r.status == 200
            got, first, last = len(c.buf), c.buf[:len(block)], b""
            c.buf = b""
            try:
                while got < n:
                    d = c.sock.recv(MB)
                    assert d, "connection closed"
                    if len(first) < len(block):
                        first += d[:len(block) - len(first)]
                    last = (last + d)[-len(block):]
                    got += len(d)
            except socket.timeout:
                pytest.fail("echo stalled: %d of %d bytes back, %d sent" % (got, n, sent[0]))
            t.join(10)
            assert got == n
            assert first == block and last == block


def test_slow_reader_backpressure(big, backend):
    """A client that reads slowly: the proxy must not buffer the whole 200 MB."""
    proxy, port = big
    total = 200 * MB
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.connect(("127.0.0.1", port))
    s.settimeout(30)
    slow_until = time.monotonic() + 3.0
    got = 0
    try:
        with RssSampler(proxy) as rss:
            s.sendall(build_request("GET", "/bytes/%d" % total))
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            head, rest = head.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200")
            got = len(rest)
            while time.monotonic() < slow_until:     # ~6 MB/s for 3 s
                got += len(s.recv(65536))
                time.sleep(0.01)
            slow_rss = rss.peak_kb
            slow_got = got
            while got < total:
                n = len(s.recv(MB))
                assert n > 0, "closed after %d bytes" % got
                got += n
    finally:
        s.close()
    assert got == total
    assert slow_got < total / 2, "the slow phase was not slow (%d bytes)" % slow_got
    if not SANITIZED:
        assert slow_rss < RSS_LIMIT_KB, "RSS %d KB while the client read slowly" % slow_rss
    rss.check()


def test_client_max_body_size_default_is_1m(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN)
    r = get(port, "/sink", method="POST", body=b"x" * MB)
    assert r.status == 200
    assert r.text == "received %d\n" % MB
    with HttpConn(port, timeout=10) as c:
        c.send(build_request("POST", "/sink", headers={"Content-Length": str(MB + 1)}))
        r = c.read_response()
    assert r.status == 413


def test_client_max_body_size_chunked_limit(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="client_max_body_size 64k;")
    r = get(port, "/sink", method="POST", body=[b"y" * 65536], chunked=True)
    assert r.status == 200
    assert r.text == "received 65536\n"
    with HttpConn(port, timeout=10) as c:
        try:
            c.send(build_request("POST", "/sink", body=[b"y" * 40000, b"y" * 40000],
                                 chunked=True))
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
    assert r.status == 413
