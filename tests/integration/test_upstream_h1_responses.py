"""HTTP/1.1 backends' responses as the proxy reads them: a response that
fills the read buffer with stray bytes behind it, a 101 nobody asked for,
a FIN together with the response, an intercepted error after a request
body. Each test is the user-visible symptom a bug had, so it fails if the
bug comes back."""

import socket
import threading
import time

from sgtest import free_port, get, http_conf, recv_head, SLOW


class _Backend(threading.Thread):
    """A tiny HTTP/1.1 backend whose answers a test scripts byte by byte:
    `respond(request_line) -> bytes` decides what goes back on the socket."""

    def __init__(self, respond):
        super().__init__(daemon=True)
        self.respond = respond
        self.lines = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with c:
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                buf += d
                while b"\r\n\r\n" in buf:
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    line = head.split(b"\r\n")[0]
                    self.lines.append(line)
                    out = self.respond(line)
                    if out is None:
                        return
                    c.sendall(out)

    def close(self):
        self.sock.close()


def test_bytes_after_a_response_never_reach_the_next_client(start_proxy):
    """A backend sends a 64 KiB response (filling the proxy's read buffer
    exactly) plus a stray second response. The pooled connection must not
    be reused, or the next client would get the stray response."""
    def respond(line):
        if b" /big" in line:
            h = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
            n = 65536 - len(h % 0)
            n = 65536 - len(h % n)
            return (h % n) + b"a" * n + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nSMUGGLED\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhonest\n"
    b = _Backend(respond)
    port = free_port()
    start_proxy(http_conf("""
  upstream u { server 127.0.0.1:%d; keepalive 4; }
  server { listen 127.0.0.1:%d; location / { proxy_pass http://u; } }
""" % (b.port, port)))
    try:
        for _ in range(5):
            assert len(get(port, "/big").body) > 65000
            r = get(port, "/small")
            assert r.text == "honest\n", r.text
    finally:
        b.close()


def test_upstream_101_without_upgrade_is_a_bad_gateway(start_proxy):
    """No Upgrade is forwarded yet, so a 101 is the peer speaking out of
    turn: 502, and that connection is never reused."""
    b = _Backend(lambda line: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
                 if b" /a" in line else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    port = free_port()
    start_proxy(http_conf("""
  upstream u { server 127.0.0.1:%d; keepalive 4; }
  server { listen 127.0.0.1:%d; location / { proxy_pass http://u; proxy_next_upstream off; } }
""" % (b.port, port)))
    try:
        assert get(port, "/a", timeout=5 * SLOW).status == 502
        assert get(port, "/b", timeout=5 * SLOW).text == "ok"
    finally:
        b.close()


def test_backend_closing_after_each_response_does_not_fail_posts(start_proxy):
    """The response and the backend's FIN arrive together: that connection
    must not go back to the pool, or the next POST would fail with 502."""
    b = _Backend(lambda line: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    orig = b.serve

    def serve_once(c):
        with c:
            if recv_head(c) is None:
                return
            time.sleep(0.01)   # let the body arrive too
            # Corked, the response and the FIN leave in one segment: the
            # proxy sees them together, whatever the GIL does between
            # sendall() and shutdown() (uncorked, the client could send its
            # next POST before the FIN exists: the keep-alive race no
            # proxy can win for a body it does not keep).
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            c.shutdown(socket.SHUT_WR)
    b.serve = serve_once
    port = free_port()
    start_proxy(http_conf("""
  upstream u { server 127.0.0.1:%d; keepalive 4; }
  server { listen 127.0.0.1:%d; location / { proxy_pass http://u; } }
""" % (b.port, port)))
    try:
        statuses = [get(port, "/p", method="POST", body=b"x" * 100).status for _ in range(10)]
        assert statuses == [200] * 10, statuses
    finally:
        b.serve = orig
        b.close()


def test_intercepted_error_after_a_body_does_not_wait_for_it_again(start_proxy, backend):
    """proxy_intercept_errors sends the request to the error page without
    its body (already spent on the failed peer): it must not hang until
    proxy_read_timeout waiting for a body that never comes."""
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://127.0.0.1:%d;
      proxy_intercept_errors on;
      proxy_read_timeout 3s;
      error_page 500 /bytes/3;
    }
  }
""" % (port, backend.port)))
    t0 = time.monotonic()
    r = get(port, "/status/500", method="POST", body=b"hello", timeout=10 * SLOW)
    took = time.monotonic() - t0
    assert r.status == 500 and r.body == b"012", (r.status, r.body[:80])
    assert took < 2 * SLOW, took
