"""Keep-alive on both sides of the proxy (nginx semantics).

Client side: keepalive_requests, keepalive_timeout, HTTP/1.0 and
"Connection: close".  Upstream side (`upstream { keepalive N; ... }`): the
proxy reuses idle connections, retires them after keepalive_requests,
closes them after keepalive_timeout, and retries transparently when a pooled
connection turns out to be closed by the backend.
"""

import socket
import threading
import time

import pytest

from sgtest import HttpConn, build_request, get, recv_head, SLOW

MAIN = "worker_processes 1;"


def wait_closed(conn, timeout):
    """Seconds until the peer closed the connection, or None if still open after timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if conn.is_closed(wait=0.05):
            return time.monotonic() - t0
        conn.buf = b""
    return None


def backend_counts(backend):
    """(accepted, open, requests) not counting the /stats call that reads them."""
    s = backend.stats()
    return s["accepted"] - 1, s["open"] - 1, s["requests"] - 1


# ---------------------------------------------------------------- client side

def test_ten_thousand_requests_on_one_connection(backend, simple_proxy):
    """10,000 pipelined requests on one client socket, few backend connections."""
    _, port = simple_proxy([backend.port], main=MAIN,
                           upstream_extra="keepalive 4; keepalive_requests 100000;",
                           server_extra="keepalive_requests 100000;")
    backend.reset_stats()
    batch = build_request("GET", "/") * 100
    with HttpConn(port, timeout=10) as c:
        for _ in range(100):
            c.send(batch)
            for _ in range(100):
                r = c.read_response()
                assert r.status == 200
                assert r.text.startswith("sgback ")
                assert (r.header("Connection") or "").lower() != "close"
        assert not c.is_closed(wait=0.1), "the proxy closed the client connection"
        r = c.request("GET", "/")
        assert r.status == 200
    accepted, _, requests = backend_counts(backend)
    assert requests == 10001
    assert accepted <= 4, "backend accepted %d connections for keepalive 4" % accepted


def test_client_keepalive_requests(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="keepalive_requests 5;")
    with HttpConn(port, timeout=5) as c:
        for i in range(4):
            r = c.request("GET", "/")
            assert r.status == 200
            assert (r.header("Connection") or "").lower() != "close"
        r = c.request("GET", "/")
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close"
        assert wait_closed(c, 2 * SLOW) is not None, "not closed after keepalive_requests"


def test_keepalive_response_header_like_nginx(backend, simple_proxy):
    """nginx marks every kept-alive HTTP/1.1 response with "Connection: keep-alive"."""
    _, port = simple_proxy([backend.port], main=MAIN)
    with HttpConn(port, timeout=5) as c:
        r = c.request("GET", "/")
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "keep-alive"


def test_client_keepalive_timeout(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="keepalive_timeout 1s;")
    with HttpConn(port, timeout=5) as c:
        assert c.request("GET", "/").status == 200
        closed_after = wait_closed(c, 4 * SLOW)
    assert closed_after is not None, "idle connection still open after 4 s"
    assert 0.7 <= closed_after <= 2.5 * SLOW, "closed after %.2f s" % closed_after


def test_keepalive_timeout_restarts_after_each_request(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="keepalive_timeout 1s;")
    with HttpConn(port, timeout=5) as c:
        for _ in range(4):           # 4 x 0.6 s > 1 s in total, never 1 s idle
            assert c.request("GET", "/").status == 200
            time.sleep(0.6)
        assert c.request("GET", "/").status == 200


def test_http10_without_keepalive_gets_close(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN)
    with HttpConn(port, timeout=5) as c:
        r = c.request("GET", "/", version="HTTP/1.0")
        assert r.status == 200
        assert r.version == "HTTP/1.1"
        assert (r.header("Connection") or "").lower() == "close"
        assert wait_closed(c, 2 * SLOW) is not None


def test_http10_with_keepalive_stays_open(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN)
    with HttpConn(port, timeout=5) as c:
        for _ in range(3):
            r = c.request("GET", "/", version="HTTP/1.0", headers={"Connection": "keep-alive"})
            assert r.status == 200
            assert (r.header("Connection") or "").lower() == "keep-alive"
            assert r.header("Content-Length") is not None
        assert not c.is_closed(wait=0.2)


def test_connection_close_from_client(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN)
    with HttpConn(port, timeout=5) as c:
        c.send(build_request("GET", "/", headers={"Connection": "close"}) +
               build_request("GET", "/second"))
        r = c.read_response()
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close"
        assert wait_closed(c, 2 * SLOW) is not None
        assert b"HTTP/1.1" not in c.buf, "answered a request sent after Connection: close"


def test_keepalive_timeout_zero_disables_keepalive(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="keepalive_timeout 0;")
    with HttpConn(port, timeout=5) as c:
        r = c.request("GET", "/")
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close"
        assert wait_closed(c, 2 * SLOW) is not None


# ---------------------------------------------------------------- upstream side

def test_upstream_keepalive_reuses_connections(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, upstream_extra="keepalive 4;")
    backend.reset_stats()
    for _ in range(50):                      # a new client connection each time
        assert get(port, "/").status == 200
    accepted, _, requests = backend_counts(backend)
    assert requests == 50
    assert accepted == 1, "50 sequential requests used %d backend connections" % accepted


@pytest.mark.parametrize("n", [35, 40])
def test_upstream_keepalive_requests(backend, simple_proxy, n):
    _, port = simple_proxy([backend.port], main=MAIN,
                           upstream_extra="keepalive 4; keepalive_requests 10;")
    backend.reset_stats()
    with HttpConn(port, timeout=5) as c:
        for _ in range(n):
            assert c.request("GET", "/").status == 200
    accepted, _, requests = backend_counts(backend)
    assert requests == n
    assert accepted == -(-n // 10), "%d requests: %d backend connections" % (n, accepted)


def test_upstream_keepalive_timeout(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN,
                           upstream_extra="keepalive 4; keepalive_timeout 1s;")
    assert get(port, "/").status == 200
    _, open_now, _ = backend_counts(backend)
    assert open_now == 1, "the idle upstream connection was not kept"
    t0 = time.monotonic()
    deadline = t0 + 4 * SLOW
    while backend_counts(backend)[1] != 0:
        assert time.monotonic() < deadline, "pooled connection still open after 4 s"
        time.sleep(0.1)
    assert time.monotonic() - t0 >= 0.6, "pooled connection closed too early"


def test_default_pool_keeps_connections(backend, simple_proxy):
    """Without `keepalive` streamgate still pools (32 per thread, unlike nginx)."""
    _, port = simple_proxy([backend.port], main=MAIN)
    backend.reset_stats()
    for _ in range(20):
        assert get(port, "/").status == 200
    accepted, _, _ = backend_counts(backend)
    assert accepted == 1


def test_pooled_connection_closed_by_backend_restart(start_backend, simple_proxy, tmp_path):
    b = start_backend()
    _, port = simple_proxy([b.port], main=MAIN, upstream_extra="keepalive 4;")
    with HttpConn(port, timeout=5) as c:
        assert c.request("GET", "/").status == 200
        b.stop()
        b2 = start_backend(ports=[b.port])
        for _ in range(3):
            r = c.request("GET", "/")
            assert r.status == 200, r.text
    assert b2.stats()["requests"] >= 3


class StaleBackend:
    """A backend whose first connection answers one request keep-alive, then
    reads the next request and closes without answering (as a backend does
    when its own keep-alive timeout fires just as the proxy reuses the
    connection).  Every later connection answers normally."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.answered = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections == 1),
                             daemon=True).start()

    def _serve(self, conn, stale):
        buf = b""
        n = 0
        conn.settimeout(10)
        try:
            while True:
                got = recv_head(conn, buf)
                if got is None:
                    return
                _, buf = got
                n += 1
                if stale and n == 2:
                    return
                body = b"fresh" if not stale else b"first"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                self.answered += 1
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_stale_pooled_connection_is_retried(simple_proxy, method):
    sb = StaleBackend()
    try:
        _, port = simple_proxy([sb.port], main=MAIN, upstream_extra="keepalive 4;")
        r = get(port, "/", method=method)
        assert r.status == 200
        r = get(port, "/", method=method)
        assert r.status == 200, "stale pooled connection not retried: %d %r" % (r.status, r.body)
        if method == "GET":
            assert r.text == "fresh"
        assert sb.connections == 2
    finally:
        sb.close()
