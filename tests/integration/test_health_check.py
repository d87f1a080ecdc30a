"""Active health checks (issue 11): nginx Plus's `health_check` and `match`
in http locations (HTTP and gRPC) and stream servers, against real
backends that count what they receive. Intervals are short (200 ms) and
every wait polls for the event with a generous bound."""
import http.server
import socket
import threading
from concurrent import futures

import pytest

from sgtest import free_port, get, http_conf, run_streamgate, wait_for, open_grpc_channel


class HealthBackend:
    """An HTTP/1 backend: /health answers `health_status` with body
    `health_body`; any other path answers 200 with the backend's name.
    Counts requests per kind."""

    def __init__(self, name, health_status=200, health_body=b"ok"):
        self.name = name
        self.health_status = health_status
        self.health_body = health_body
        self.requests = 0
        self.checks = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()       # /health answers only while set
        self.gate.set()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/health":
                    with outer.lock:
                        outer.checks += 1
                    outer.gate.wait(30)
                    body, status = outer.health_body, outer.health_status
                else:
                    with outer.lock:
                        outer.requests += 1
                    body, status = outer.name.encode(), 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backends():
    made = []

    def make(*a, **kw):
        b = HealthBackend(*a, **kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def proxy_conf(a, b, check, extra=""):
    port = free_port()
    return http_conf("""
  access_log off;
  %s
  upstream pool {
    server 127.0.0.1:%d;
    server 127.0.0.1:%d;
  }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://pool;
      %s
    }
  }
""" % (extra, a.port, b.port, port, check)), port


def served_by(port, n):
    """Names of the backends that answered n requests in a row."""
    out = []
    for _ in range(n):
        r = get(port, "/x")
        assert r.status == 200, r.status
        out.append(r.body.decode())
    return out


def test_failing_http_check_takes_server_out_and_back(backends, start_proxy):
    a, b = backends("a"), backends("b")
    conf, port = proxy_conf(a, b, "health_check interval=200ms fails=2 passes=2 uri=/health;")
    p = start_proxy(conf)
    wait_for(lambda: a.checks >= 1 and b.checks >= 1, what="first checks")
    assert set(served_by(port, 6)) == {"a", "b"}

    a.health_status = 500
    wait_for(lambda: "peer is unhealthy" in p.error_log, what="a marked unhealthy")
    assert "127.0.0.1:%d" % a.port in p.error_log
    before = a.requests
    assert served_by(port, 10) == ["b"] * 10
    assert a.requests == before

    a.health_status = 200
    wait_for(lambda: "a" in served_by(port, 2), timeout=20, what="a back in rotation")
    assert "is healthy" in p.error_log


def test_match_on_body(backends, start_proxy):
    a, b = backends("a"), backends("b")
    conf, port = proxy_conf(a, b, "health_check interval=200ms uri=/health match=good;",
                            extra='match good { status 200-399; header Content-Length ~ "^[0-9]+$"; body ~ "^ok"; }')
    p = start_proxy(conf)
    wait_for(lambda: a.checks >= 1 and b.checks >= 1, what="first checks")
    a.health_body = b"broken"               # still 200: only the match sees it
    wait_for(lambda: "checking match" in p.error_log, what="a failing the match")
    before = a.requests
    assert served_by(port, 8) == ["b"] * 8
    assert a.requests == before
    a.health_body = b"ok again"
    wait_for(lambda: "a" in served_by(port, 2), timeout=20, what="a back in rotation")


def test_mandatory_keeps_new_server_out_until_first_pass(backends, start_proxy):
    a, b = backends("a", health_status=503), backends("b")
    conf, port = proxy_conf(a, b, "health_check interval=200ms uri=/health mandatory;")
    start_proxy(conf)
    # b too is out until its first check passes (mandatory): then requests
    # flow, and a stays out since it never passed one
    wait_for(lambda: get(port, "/x").status == 200, what="b's first check passed")
    assert served_by(port, 8) == ["b"] * 8
    assert a.requests == 0
    a.health_status = 200
    wait_for(lambda: "a" in served_by(port, 2), timeout=20, what="a in rotation after its first pass")


def test_lone_unhealthy_server_gets_no_requests(backends, start_proxy):
    a = backends("a", health_status=500)
    port = free_port()
    conf = http_conf("""
  access_log off;
  upstream one { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://one; health_check interval=200ms uri=/health mandatory; }
  }
""" % (a.port, port))
    start_proxy(conf)
    assert get(port, "/x").status == 502
    assert a.requests == 0
    a.health_status = 200
    wait_for(lambda: get(port, "/x").status == 200, timeout=20, what="a healthy")


def test_config_errors(tmp_path):
    for body, msg in [
        ("location / { proxy_pass http://127.0.0.1:1; health_check match=nope; }", 'match "nope" not found'),
        ("location / { return 200; health_check; }", "health check requires"),
        ("location / { proxy_pass http://127.0.0.1:1; health_check interval=0; }", "invalid parameter"),
        ("location / { proxy_pass http://127.0.0.1:1; health_check persistent; }", "requires \"mandatory\""),
    ]:
        conf = tmp_path / "c.conf"
        conf.write_text(http_conf("server { listen 127.0.0.1:%d; %s }" % (free_port(), body)))
        r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
        assert r.returncode != 0 and msg in r.stderr, (body, r.stderr)
    conf = tmp_path / "ok.conf"
    conf.write_text(http_conf("""
  match m { status 200 204; status ! 500-599; header X-A = b; header ! X-Bad; body !~ "fail"; }
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:1; health_check interval=1s jitter=100ms fails=3 passes=2
                 uri=/h port=2 match=m mandatory persistent; }
    location /g { grpc_pass grpc://127.0.0.1:1; health_check type=grpc grpc_service=x grpc_status=12; }
  }""" % free_port()))
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- gRPC

def grpc_backend(grpc, name):
    """A grpcio server: grpc.health.v1.Health/Check answering .serving
    (hand-encoded HealthCheckResponse), test.Echo/Unary answering its
    name, test.Echo/Bidi echoing name + message."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.serving = True
    server.unary_calls = 0
    server.checked = 0

    def check(req, ctx):
        server.checked += 1
        return b"\x08\x01" if server.serving else b"\x08\x02"

    def unary(req, ctx):
        server.unary_calls += 1
        return name.encode()

    def bidi(it, ctx):
        for m in it:
            yield name.encode() + b":" + m

    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(check)}),
        grpc.method_handlers_generic_handler("test.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi)}),
    ))
    server.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server


def test_grpc_not_serving_gets_no_new_calls_open_stream_stays(start_proxy):
    grpc = pytest.importorskip("grpc")
    import queue
    ga, gb = grpc_backend(grpc, "a"), grpc_backend(grpc, "b")
    try:
        port = free_port()
        conf = http_conf("""
  access_log off;
  upstream g { server 127.0.0.1:%d; server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass grpc://g; health_check type=grpc interval=200ms; }
  }
""" % (ga.port, gb.port, port))
        p = start_proxy(conf)
        wait_for(lambda: ga.checked and gb.checked, what="first gRPC checks")
        ch = open_grpc_channel(port)
        unary = ch.unary_unary("/test.Echo/Unary")
        assert {unary(b"", timeout=10) for _ in range(6)} == {b"a", b"b"}

        # a bidi stream on a: open streams until one lands there
        streams = []
        on_a = None
        for _ in range(8):
            box = queue.Queue()
            call = ch.stream_stream("/test.Echo/Bidi")(iter(box.get, None), timeout=60)
            box.put(b"hi")
            first = next(call)
            streams.append((box, call))
            if first.startswith(b"a:"):
                on_a = (box, call)
                break
        assert on_a is not None

        ga.serving = False
        wait_for(lambda: "peer is unhealthy" in p.error_log, what="a NOT_SERVING seen")
        before = ga.unary_calls
        assert [unary(b"", timeout=10) for _ in range(8)] == [b"b"] * 8
        assert ga.unary_calls == before

        box, call = on_a                     # the open stream is left alone
        for i in range(3):
            box.put(b"m%d" % i)
            assert next(call) == b"a:m%d" % i
        for bx, _ in streams:
            bx.put(None)

        ga.serving = True
        wait_for(lambda: b"a" in {unary(b"", timeout=10) for _ in range(2)}, timeout=20,
                 what="a SERVING again")
        ch.close()
    finally:
        ga.stop(0)
        gb.stop(0)


# ---------------------------------------------------------------- stream

class CountingListener:
    """Accepts TCP connections, answers its name and closes; counts them."""

    def __init__(self, name):
        self.name = name
        self.count = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            try:
                c.sendall(self.name.encode())
            except OSError:
                pass
            c.close()

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


def stream_get(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while True:
            d = s.recv(100)
            if not d:
                return data.decode()
            data += d


def test_stream_tcp_check_takes_closed_port_out(start_proxy):
    a, b = CountingListener("a"), CountingListener("b")
    health_a = CountingListener("ha")          # a's check port: closing it takes a out
    try:
        port = free_port()
        conf = """
events {}
stream {
  upstream u { server 127.0.0.1:%d; server 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; proxy_pass u; health_check interval=200ms; }
  server { listen 127.0.0.1:%d; proxy_pass ha; health_check interval=200ms port=%d; }
  upstream ha { server 127.0.0.1:%d; server 127.0.0.1:%d; }
}
""" % (a.port, b.port, port, free_port(), health_a.port, a.port, b.port)
        p = start_proxy(conf, ports=[port])
        wait_for(lambda: health_a.count >= 1, what="TCP checks")
        assert {stream_get(port) for _ in range(6)} == {"a", "b"}

        b.close()                              # the plain TCP check takes b out of u
        wait_for(lambda: "peer is unhealthy" in p.error_log, what="b unhealthy")
        assert [stream_get(port) for _ in range(6)] == ["a"] * 6

        health_a.close()                       # a's check port closes: a leaves ha
        wait_for(lambda: p.error_log.count("peer is unhealthy") >= 3, what="ha's peers unhealthy")
    finally:
        a.close()
        b.close()
        health_a.close()


def test_stream_match_send_expect(start_proxy):
    a, b = CountingListener("good"), CountingListener("bad")
    try:
        port = free_port()
        conf = """
events {}
stream {
  match hello { send "ping\\r\\n"; expect ~ "^go+d"; }
  upstream u { server 127.0.0.1:%d; server 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; proxy_pass u; health_check interval=200ms match=hello; }
}
""" % (a.port, b.port, port)
        p = start_proxy(conf, ports=[port])
        wait_for(lambda: "peer is unhealthy" in p.error_log, what="bad failing expect")
        assert "127.0.0.1:%d" % b.port in p.error_log
        before = b.count
        assert [stream_get(port) for _ in range(6)] == ["good"] * 6
        # only checks reached b since it went out: no tunnel
        assert all(s == "good" for s in [stream_get(port)]) and b.count >= before
    finally:
        a.close()
        b.close()


def test_reload_new_generation_checks_old_one_stops(backends, start_proxy):
    a, b = backends("a"), backends("b")
    conf, port = proxy_conf(a, b, "health_check interval=200ms uri=/health;")
    p = start_proxy(conf)
    wait_for(lambda: a.checks >= 2, what="checks of the first generation")
    # the new generation checks /alt (counted as requests by the backend):
    # once it runs, the old generation's /health checks stop
    assert p.reload(conf.replace("uri=/health", "uri=/alt"))
    wait_for(lambda: a.requests >= 2, what="checks of the new generation")
    settled = a.checks
    start = a.requests
    wait_for(lambda: a.requests >= start + 5, what="more checks of the new generation")
    assert a.checks <= settled + 1
    assert set(served_by(port, 6)) == {"a", "b"}


def test_https_upstream_checked_over_tls(backends, start_proxy, tmp_path):
    import ssl
    import subprocess
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=b.test", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    a, b = backends("a"), backends("b")
    for x in (a, b):
        x.server.socket = ctx.wrap_socket(x.server.socket, server_side=True)
    conf, port = proxy_conf(a, b, "health_check interval=200ms uri=/health;")
    conf = conf.replace("http://pool", "https://pool")
    p = start_proxy(conf)
    wait_for(lambda: a.checks >= 1 and b.checks >= 1, what="checks over TLS")
    assert set(served_by(port, 6)) == {"a", "b"}
    a.health_status = 500
    wait_for(lambda: "peer is unhealthy" in p.error_log, what="a unhealthy")
    assert served_by(port, 6) == ["b"] * 6


def test_grpcs_upstream_checked_over_tls(start_proxy, tmp_path):
    grpc = pytest.importorskip("grpc")
    import subprocess
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=g.test", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
    creds = grpc.ssl_server_credentials([((tmp_path / "k.pem").read_bytes(), (tmp_path / "c.pem").read_bytes())])
    servers = []
    for name in ("a", "b"):
        s = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        s.serving, s.checked = True, 0

        def check(req, ctx, s=s):
            s.checked += 1
            return b"\x08\x01" if s.serving else b"\x08\x02"

        def unary(req, ctx, name=name):
            return name.encode()
        s.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
                "Check": grpc.unary_unary_rpc_method_handler(check)}),
            grpc.method_handlers_generic_handler("test.Echo", {
                "Unary": grpc.unary_unary_rpc_method_handler(unary)}),
        ))
        s.port = s.add_secure_port("127.0.0.1:0", creds)
        s.start()
        servers.append(s)
    ga, gb = servers
    try:
        port = free_port()
        conf = http_conf("""
  access_log off;
  upstream g { server 127.0.0.1:%d; server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass grpcs://g; health_check type=grpc grpc_service=test.Echo interval=200ms; }
  }
""" % (ga.port, gb.port, port))
        p = start_proxy(conf)
        wait_for(lambda: ga.checked and gb.checked, what="gRPC checks over TLS")
        ch = open_grpc_channel(port)
        unary = ch.unary_unary("/test.Echo/Unary")
        assert {unary(b"", timeout=10) for _ in range(6)} == {b"a", b"b"}
        gb.serving = False
        wait_for(lambda: "peer is unhealthy" in p.error_log, what="b NOT_SERVING seen")
        assert [unary(b"", timeout=10) for _ in range(6)] == [b"a"] * 6
        ch.close()
    finally:
        for s in servers:
            s.stop(0)


def test_grpc_status_for_servers_without_health_service(start_proxy):
    """grpc_status=12: a server without the Health service (UNIMPLEMENTED) is
    healthy; without it, such a server is unhealthy."""
    grpc = pytest.importorskip("grpc")
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"x")}),))
    s.port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    try:
        port = free_port()
        conf = http_conf("""
  access_log off;
  upstream g { server 127.0.0.1:%d; }
  upstream h { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d http2;
    location /test.Echo/ { grpc_pass grpc://g; health_check type=grpc grpc_status=12 interval=200ms mandatory; }
    location / { grpc_pass grpc://h; health_check type=grpc interval=200ms; }
  }
""" % (s.port, s.port, port))
        p = start_proxy(conf)
        wait_for(lambda: 'upstream "h"' in p.error_log and "peer is unhealthy" in p.error_log,
                 what="h unhealthy (UNIMPLEMENTED)")
        ch = open_grpc_channel(port)
        wait_for(lambda: "in upstream \"g\" is healthy" in p.error_log, what="g healthy with grpc_status=12")
        assert ch.unary_unary("/test.Echo/Unary")(b"", timeout=10) == b"x"
        assert not [l for l in p.error_log.splitlines() if "peer is unhealthy" in l and 'upstream "g"' in l]
        ch.close()
    finally:
        s.stop(0)


@pytest.mark.parametrize("persistent", [True, False])
def test_mandatory_persistent_across_reload(backends, start_proxy, persistent):
    """After a reload, a `mandatory` server is out until the new
    generation's first check of it passes; with `persistent` it keeps the
    state the previous generation knew (healthy: in at once)."""
    a, b = backends("a"), backends("b")
    check = "health_check interval=200ms uri=/health mandatory%s;" % (" persistent" if persistent else "")
    conf, port = proxy_conf(a, b, check)
    p = start_proxy(conf)
    wait_for(lambda: "a" in served_by(port, 2), what="a healthy")
    a.gate.clear()                          # the new generation's checks of a hang
    assert p.reload(conf + "\n# reloaded\n")
    if persistent:
        assert "a" in served_by(port, 8)
    else:
        # every server waits for its first check in the new generation: b's
        # passes, a's hangs. A worker thread may still accept with the old
        # generation for a moment after the reload is logged, so wait until
        # only b answers, then check that it stays so.
        wait_for(lambda: [get(port, "/x").body for _ in range(4)] == [b"b"] * 4,
                 what="only b, checked by the new generation")
        assert served_by(port, 8) == ["b"] * 8
    a.gate.set()
    wait_for(lambda: "a" in served_by(port, 2), timeout=20, what="a checked by the new generation")


def test_udp_stream_server_check_refused(tmp_path):
    conf = tmp_path / "u.conf"
    conf.write_text("""
events {}
stream {
  upstream u { server 127.0.0.1:1; }
  server { listen 127.0.0.1:%d udp; proxy_pass u; health_check; }
}
""" % free_port())
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode != 0 and "udp" in r.stderr, r.stderr
