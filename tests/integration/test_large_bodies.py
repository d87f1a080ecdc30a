"""Large bodies stream through the proxy with bounded memory.

1 GB down and up (Content-Length and chunked), a slow reader (backpressure),
and client_max_body_size (0 = unlimited; nginx's default is 1m).  The
proxy's resident memory (VmRSS) is sampled every 100 ms during each transfer.
Bodies are random data (sgtest.RandomBody) checked by SHA-256 at the other
end, computed by a Python backend (sgtest.HashingBackend) or by the client:
a block lost, repeated or swapped anywhere fails the test.
"""

import hashlib
import socket
import threading
import time

import pytest

from sgtest import HashingBackend, HttpConn, RandomBody, build_request, get, SANITIZED

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


def big_proxy(simple_proxy, backend_port):
    return simple_proxy([backend_port], main=MAIN,
                        server_extra="client_max_body_size 0;",
                        location_extra="proxy_read_timeout 60s; proxy_send_timeout 60s;")


@pytest.fixture
def big(backend, simple_proxy):
    """(proxy, port) in front of sgback (its /echo and /bytes)."""
    return big_proxy(simple_proxy, backend.port)


@pytest.fixture
def hashing(simple_proxy):
    """hashing(body=None) -> (proxy, port, backend): a proxy in front of a
    sgtest.HashingBackend serving `body` (a RandomBody) at /random."""
    started = []

    def make(body=None):
        b = HashingBackend(body)
        started.append(b)
        proxy, port = big_proxy(simple_proxy, b.port)
        return proxy, port, b
    yield make
    for b in started:
        b.stop()


def download_sha256(port, path, total):
    """GET path on a raw socket, reading a Content-Length body of `total`
    bytes; returns (bytes received, SHA-256 hex of them)."""
    h = hashlib.sha256()
    with HttpConn(port, timeout=30) as c:
        c.send(build_request("GET", path))
        r = c.read_head()
        assert r.status == 200
        assert int(r.header("Content-Length")) == total
        got = len(c.buf)
        h.update(c.buf)
        c.buf = b""
        buf = bytearray(MB)
        view = memoryview(buf)
        while got < total:
            n = c.sock.recv_into(view, min(MB, total - got))
            assert n > 0, "connection closed after %d of %d bytes" % (got, total)
            h.update(view[:n])
            got += n
        # Nothing more must follow the body: the connection stays usable.
        r2 = c.request("GET", "/")
        assert r2.status == 200
        return got, h.hexdigest()


def test_download_1gb(hashing):
    body = RandomBody(GB)
    proxy, port, _ = hashing(body)
    with RssSampler(proxy) as rss:
        got, digest = download_sha256(port, "/random", GB)
    assert got == GB
    assert digest == body.sha256(), "the body differs from what the backend sent"
    assert rss.samples > 0
    rss.check()


def test_download_chunked_64mb(hashing):
    n = 64 * MB
    body = RandomBody(n)
    proxy, port, _ = hashing(body)
    with RssSampler(proxy) as rss:
        with HttpConn(port, timeout=30) as c:
            r = c.request("GET", "/random?chunked=1")
    assert r.status == 200
    assert r.chunked
    assert len(r.body) == n
    assert hashlib.sha256(r.body).hexdigest() == body.sha256()
    rss.check()


def upload(port, body, chunked):
    """POST a RandomBody to /sink in 1 MiB sendall()s; returns the Response."""
    with HttpConn(port, timeout=60) as c:
        if chunked:
            c.send(build_request("POST", "/sink", headers={"Transfer-Encoding": "chunked"}))
        else:
            c.send(build_request("POST", "/sink", headers={"Content-Length": str(body.total)}))
        for block in body.blocks(MB):
            if chunked:
                c.sock.sendall(b"%x\r\n" % len(block))
            c.sock.sendall(block)
            if chunked:
                c.sock.sendall(b"\r\n")
        if chunked:
            c.sock.sendall(b"0\r\n\r\n")
        r = c.read_response()
        r2 = c.request("GET", "/")      # the connection is still in sync
        assert r2.status == 200
        return r


def test_upload_1gb_content_length(hashing):
    proxy, port, _ = hashing()
    body = RandomBody(GB)
    with RssSampler(proxy) as rss:
        r = upload(port, body, chunked=False)
    assert r.status == 200
    assert r.text == "%d %s\n" % (GB, body.sha256())
    rss.check()


def test_upload_256mb_chunked(hashing):
    proxy, port, _ = hashing()
    n = 256 * MB
    body = RandomBody(n)
    with RssSampler(proxy) as rss:
        r = upload(port, body, chunked=True)
    assert r.status == 200
    assert r.text == "%d %s\n" % (n, body.sha256())
    rss.check()


def test_echo_16mb_both_directions_at_once(big):
    """/echo streams the body back while it is still being sent (full duplex).

    Four rounds on one keep-alive connection: a lost wake-up or a dropped
    buffer shows up as a stall (the read times out) or a short body."""
    proxy, port = big
    n = 16 * MB
    with HttpConn(port, timeout=10) as c:
        for _ in range(4):
            body = RandomBody(n)
            c.send(build_request("POST", "/echo", headers={"Content-Length": str(n)}))
            sent = [0]

            def send():
                for block in body.blocks(64 * 1024):
                    c.sock.sendall(block)
                    sent[0] += len(block)
            t = threading.Thread(target=send, daemon=True)
            t.start()
            r = c.read_head()
            assert r.status == 200
            got = len(c.buf)
            h = hashlib.sha256(c.buf)
            c.buf = b""
            try:
                while got < n:
                    d = c.sock.recv(MB)
                    assert d, "connection closed"
                    h.update(d)
                    got += len(d)
            except socket.timeout:
                pytest.fail("echo stalled: %d of %d bytes back, %d sent" % (got, n, sent[0]))
            t.join(10)
            assert got == n
            assert h.hexdigest() == body.sha256(), "the echoed body differs from the one sent"


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
