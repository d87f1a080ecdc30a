"""Regressions for bugs found in review of the runtime: each test is the
user-visible symptom the bug had (a wrong or lost response, a crash, a port
left bound), so it fails if the bug comes back."""

import socket
import threading
import time

from sgtest import HttpConn, free_port, get, http_conf, port_accepts, recv_head, SLOW


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


def test_response_delivered_to_a_client_that_half_closed(start_proxy, backend):
    """`printf 'GET ...' | nc -N`: the client shuts its write side right
    after the request; the response must still arrive."""
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
""" % (port, backend.port)))
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
        s.sendall(b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        assert data.startswith(b"HTTP/1.1 200 "), data[:80]
        assert data.endswith(b"0123456789abcdef" * 6 + b"0123"), data[-40:]


def test_expect_100_answered_locally_closes_the_connection(start_proxy):
    """The client waits for 100 Continue; we answer at once instead, so it
    may or may not send the body: the connection cannot stay in step."""
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; location / { return 200 "local"; } }
""" % port))
    with HttpConn(port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.text == "local"
        assert r.header("Connection") == "close"


def test_failed_reload_leaves_no_new_port_bound(start_proxy, backend):
    port, new_port = free_port(), free_port()
    good = http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
""" % (port, backend.port))
    p = start_proxy(good)
    bad = http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
  server { listen 127.0.0.1:%d; access_log /nonexistent-dir/x.log; location / { return 200; } }
""" % (port, backend.port, new_port))
    assert p.reload(bad) is False
    assert not port_accepts(new_port), "a failed reload left a listening socket nobody serves"
    assert get(port, "/").status == 200


def test_many_reloads_while_requests_pin_old_generations(start_proxy, backend):
    """Each reload leaves a slow request on the previous generation: 20 of
    them at once used to overflow a fixed table and crash."""
    port = free_port()
    conf = http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
""" % (port, backend.port))
    p = start_proxy(conf)
    results = []
    threads = []
    for i in range(20):
        t = threading.Thread(target=lambda: results.append(
            get(port, "/delay/%d" % int(3000 * SLOW), timeout=30 * SLOW).status))
        t.start()
        threads.append(t)
        time.sleep(0.05)
        assert p.reload(conf + "\n# reload %d\n" % i)
    for t in threads:
        t.join(40 * SLOW)
    assert results == [200] * 20
    assert get(port, "/").status == 200


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


# ---------------------------------------------------------------- configuration
# Each checked side by side with nginx 1.22 in review.

def test_types_block_decides_static_content_types(start_proxy, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.pdf").write_bytes(b"%PDF")
    (root / "index.html").write_text("<p>hi</p>")
    port = free_port()
    start_proxy(http_conf("""
  types { application/pdf pdf; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:%d; root %s; }
""" % (port, root)))
    assert get(port, "/a.pdf").header("Content-Type") == "application/pdf"
    # nginx uses only the types block: html is not in it
    assert get(port, "/").header("Content-Type") == "application/octet-stream"


def test_map_regexes_are_not_tried_on_an_empty_value(start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  map $http_x $m1 { default dflt; ~^$ empty-regex; }
  map $http_x $m2 { ~.* any; }
  server { listen 127.0.0.1:%d; location / { return 200 "$m1 [$m2]"; } }
""" % port))
    assert get(port, "/").text == "dflt []"
    assert get(port, "/", headers={"X": "v"}).text == "dflt [any]"


def test_error_page_uri_replaces_the_arguments_and_is_followed_once(start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location /c/ { error_page 404 /t; return 404; }
    location = /t { return 200 "args=[$args]"; }
    location /loop/ { error_page 404 /missing/x; return 404; }
    location /missing/ { error_page 404 /e404; return 404; }
    location = /e404 { return 200 "custom404"; }
  }
""" % port))
    assert get(port, "/c/x?q=1").text == "args=[]"
    r = get(port, "/loop/a")
    assert r.status == 404 and "custom404" not in r.text


def test_directives_that_would_not_be_honoured_are_refused(tmp_path):
    import sgtest
    cases = [
        ("server { listen [::1]:%d ipv6only=off; }" % free_port(),
         '"ipv6only=off" parameter of "listen" is not supported yet'),
        ("log_format x '$request_length'; server { listen 127.0.0.1:%d; access_log logs/x x; }"
         % free_port(), 'variable "$request_length" is not supported yet'),
    ]
    for body, message in cases:
        conf = tmp_path / "t.conf"
        conf.write_text(http_conf(body))
        r = sgtest.run_streamgate(["-t", "-c", conf, "-p", tmp_path])
        assert r.returncode == 1 and message in r.stderr, (body, r.stderr)
        assert "t.conf:" in r.stderr


def test_server_error_log_gets_that_servers_request_errors(start_proxy):
    """error_log in a server (seed 08 has one): a failed upstream connect of
    that server is written there, not to the main log."""
    dead = free_port()
    a, b = free_port(), free_port()
    p = start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; error_log logs/site-a.log; location / { proxy_pass http://127.0.0.1:%d; } }
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
""" % (a, dead, b, dead)))
    assert get(a, "/x").status == 502
    assert get(b, "/y").status == 502
    site = (p.prefix / "logs" / "site-a.log").read_text()
    main = p.output()
    assert site.count("connect() to 127.0.0.1:%d failed" % dead) == 1, site
    assert main.count("connect() to 127.0.0.1:%d failed" % dead) == 1, main


def test_pipelined_request_after_a_static_file_is_answered(start_proxy, tmp_path):
    """A static file is read while the codec still parses pipelined requests
    from the same read: the next request must survive it (found by the
    HTTP/2 work, which hit the same shared-buffer clash)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(b"x" * 100000)
    port = free_port()
    start_proxy(http_conf("server { listen 127.0.0.1:%d; location / { root %s; } }" % (port, root)))
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET /missing HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while b"404 Not Found" not in data:
            chunk = s.recv(65536)
            assert chunk, data[-200:]
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK")
