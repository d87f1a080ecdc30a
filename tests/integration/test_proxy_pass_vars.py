"""Variables in proxy_pass / grpc_pass, the resolver, and unix: backends.

nginx's rules (ngx_http_proxy_module, ngx_http_upstream): the value is made
per request; a name without a port that is an upstream{} block uses it; an
address is used as it is; any other name needs a `resolver` (here a tiny DNS
server on 127.0.0.1, sgtest.DnsServer), else the request is 502 and the error
log says "no resolver defined to resolve NAME". A URI part in the value
replaces the request URI as it is. `unix:` addresses work in proxy_pass and
in upstream `server`, for HTTP/1.1 and HTTP/2 backends.
"""

import socket
import threading

import h2.config
import h2.connection
import h2.events

import sgtest
from sgtest import free_port, get, head_of, http_conf, wait_for


class UnixEcho(sgtest.EchoServer):
    """EchoServer (the raw request head as the body) on a unix socket."""

    def __init__(self, path):
        self.heads, self.bodies = [], []
        self.received = self.finished = self.accepted = 0
        self.conns = []
        self._stop = False
        self._lock = threading.Lock()
        self.port = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()


class V6Echo(sgtest.EchoServer):
    """EchoServer on [::1]."""

    def __init__(self):
        self.heads, self.bodies = [], []
        self.received = self.finished = self.accepted = 0
        self.conns = []
        self._stop = False
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.bind(("::1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()


class UnixH2:
    """An h2c server (prior knowledge) on a unix socket: every request gets
    200 and the body "h2 PATH" (its :path)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.requests = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self._serve_conn(c)
        except OSError:
            pass   # the proxy closed the connection

    def _serve_conn(self, c):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        c.sendall(conn.data_to_send())
        while True:
            data = c.recv(65536)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    path = dict((k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                                for k, v in ev.headers)[":path"]
                    self.requests.append(path)
                    body = ("h2 " + path).encode()
                    conn.send_headers(ev.stream_id, [(":status", "200"), ("content-length", str(len(body)))])
                    conn.send_data(ev.stream_id, body, end_stream=True)
            c.sendall(conn.data_to_send())

    def close(self):
        self.sock.close()


def serve(start_proxy, server_body, http_extra=""):
    """One worker thread, so that caches and pools are counted exactly."""
    port = free_port()
    proxy = start_proxy(http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
%s
  }
""" % (http_extra, port, server_body), main="worker_processes 1;"))
    return proxy, port


def request_line(resp):
    assert resp.status == 200, (resp.status, resp.body[:300])
    line, hdrs, _ = head_of(resp)
    return line, {k.lower(): v for k, v in hdrs}


# ---------------------------------------------------------------- addresses and upstream blocks

def test_variable_address_uri_part_replaces_the_request_uri(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location /v/ {
      proxy_pass http://$arg_to/fixed$uri;
      add_header X-Addr $upstream_addr always;
      add_header X-Proxy-Host $proxy_host always;
    }
""")
    r = get(port, "/v/a%%20b?to=127.0.0.1:%d&x=1" % e.port)
    line, hdrs = request_line(r)
    # nginx: the URI part is sent as made, without the client's arguments
    assert line == "GET /fixed/v/a%20b HTTP/1.1"
    assert hdrs["host"] == "127.0.0.1:%d" % e.port
    assert r.header("X-Addr") == "127.0.0.1:%d" % e.port
    assert r.header("X-Proxy-Host") == "127.0.0.1:%d" % e.port


def test_variable_ipv6_address(start_proxy):
    e = V6Echo()
    try:
        _, port = serve(start_proxy, """
    location / { proxy_pass http://$arg_to; add_header X-Addr $upstream_addr always; }
""")
        r = get(port, "/six?to=[::1]:%d" % e.port)
        line, hdrs = request_line(r)
        assert line == "GET /six?to=[::1]:%d HTTP/1.1" % e.port
        assert hdrs["host"] == "[::1]:%d" % e.port
        assert r.header("X-Addr") == "[::1]:%d" % e.port
    finally:
        e.stop()


def test_variable_without_uri_part_sends_the_client_uri(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, "location / { proxy_pass http://$http_x_to; }")
    line, hdrs = request_line(get(port, "/p/q?a=1", headers={"X-To": "127.0.0.1:%d" % e.port}))
    assert line == "GET /p/q?a=1 HTTP/1.1"


def test_variable_naming_an_upstream_block_uses_it(start_proxy, start_echo):
    e1, e2 = start_echo(), start_echo()
    _, port = serve(start_proxy, """
    location / { proxy_pass http://$arg_to; add_header X-Addr $upstream_addr always; }
""", http_extra="upstream pool_a { server 127.0.0.1:%d; } upstream pool_b { server 127.0.0.1:%d; }"
                  % (e1.port, e2.port))
    r = get(port, "/x?to=pool_b")
    line, hdrs = request_line(r)
    assert hdrs["host"] == "pool_b"
    assert r.header("X-Addr") == "127.0.0.1:%d" % e2.port
    assert len(e2.heads) == 1 and not e1.heads
    r = get(port, "/x?to=POOL_A")   # names are case-insensitive, as nginx's
    assert r.status == 200 and len(e1.heads) == 1


def test_many_addresses_are_served_and_connections_reused(start_proxy, start_echo):
    """Each address gets a run-time upstream of the worker; requests to one
    address reuse its keep-alive connections, and a stream of distinct
    addresses (more than the per-worker cache holds) keeps working."""
    e = start_echo()
    _, port = serve(start_proxy, "location / { proxy_pass http://$arg_to; }")
    for _ in range(5):
        assert get(port, "/?to=127.0.0.1:%d" % e.port).status == 200
    assert e.accepted == 1
    # closed ports: 502 each, and the cache never grows without bound
    dead = free_port()
    for i in range(2, 150):
        assert get(port, "/?to=127.0.%d.%d:%d" % (i // 250, i % 250 + 1, dead)).status == 502
    assert get(port, "/?to=127.0.0.1:%d" % e.port).status == 200


# ---------------------------------------------------------------- resolver

def test_name_without_resolver_is_502_with_nginx_log_line(start_proxy):
    proxy, port = serve(start_proxy, "location / { proxy_pass http://$arg_to:8080; }")
    assert get(port, "/?to=backend.example").status == 502
    wait_for(lambda: "no resolver defined to resolve backend.example" in proxy.error_log,
             what="the missing resolver in the error log")


def test_invalid_url_prefix_is_500(start_proxy):
    proxy, port = serve(start_proxy, "location / { proxy_pass $arg_u; }")
    assert get(port, "/?u=ftp://127.0.0.1:1/").status == 500
    wait_for(lambda: 'invalid URL prefix in "ftp://127.0.0.1:1/"' in proxy.error_log,
             what="the invalid prefix in the error log")


def test_resolver_answers_and_caches_for_the_ttl(start_proxy, start_echo):
    e = start_echo()
    dns = sgtest.DnsServer({"backend.example": ["127.0.0.1"]}, ttl=3600)
    try:
        _, port = serve(start_proxy, """
    resolver 127.0.0.1:%d ipv6=off;
    location / { proxy_pass http://$arg_to:%d; add_header X-Addr $upstream_addr always; }
""" % (dns.port, e.port))
    except Exception:
        dns.close()
        raise
    try:
        r = get(port, "/r?to=backend.example")
        line, hdrs = request_line(r)
        assert hdrs["host"] == "backend.example:%d" % e.port
        assert r.header("X-Addr") == "127.0.0.1:%d" % e.port
        assert dns.queries == [("backend.example", 1)]   # ipv6=off: A only
        for _ in range(6):
            assert get(port, "/r?to=backend.example").status == 200
        assert dns.queries == [("backend.example", 1)]   # the cached answer
    finally:
        dns.close()


def test_concurrent_requests_share_one_lookup(start_proxy, start_echo):
    e = start_echo()
    gate = threading.Event()
    dns = sgtest.DnsServer({"busy.example": ["127.0.0.1"]}, hold=gate, ttl=3600)
    try:
        _, port = serve(start_proxy, """
    resolver 127.0.0.1:%d ipv6=off;
    location / { proxy_pass http://$arg_to:%d; }
    location /here { return 204; }
""" % (dns.port, e.port))
        # five requests sent before the answer can come
        conns = []
        for _ in range(5):
            c = sgtest.HttpConn(port)
            c.send(sgtest.build_request("GET", "/?to=busy.example"))
            conns.append(c)
        wait_for(lambda: dns.queries, what="the first query")
        # one worker thread, which accepts and reads in order: once a later
        # request is answered, the five are waiting
        assert get(port, "/here").status == 204
        gate.set()
        assert [c.read_response().status for c in conns] == [200] * 5
        for c in conns:
            c.close()
        assert dns.queries == [("busy.example", 1)]
    finally:
        gate.set()
        dns.close()


def test_resolver_asks_again_after_the_ttl(start_proxy, start_echo):
    e = start_echo()
    dns = sgtest.DnsServer({"short.example": ["127.0.0.1"]}, ttl=1)
    try:
        _, port = serve(start_proxy, """
    resolver 127.0.0.1:%d ipv6=off;
    location / { proxy_pass http://$arg_to:%d; }
""" % (dns.port, e.port))
        assert get(port, "/?to=short.example").status == 200
        first = len(dns.queries)
        # the answer lives one second: later requests ask again
        wait_for(lambda: get(port, "/?to=short.example").status == 200 and len(dns.queries) > first,
                 timeout=10, interval=0.2, what="a new query after the TTL")
    finally:
        dns.close()


def test_resolver_valid_overrides_the_ttl(start_proxy, start_echo):
    e = start_echo()
    dns = sgtest.DnsServer({"valid.example": ["127.0.0.1"]}, ttl=0)
    try:
        _, port = serve(start_proxy, """
    resolver 127.0.0.1:%d ipv6=off valid=1h;
    location / { proxy_pass http://$arg_to:%d; }
""" % (dns.port, e.port))
        for _ in range(6):
            assert get(port, "/?to=valid.example").status == 200
        # TTL 0 would ask every time; valid=1h keeps the answer
        assert len(dns.queries) == 1
    finally:
        dns.close()


def test_location_without_resolver_never_uses_another_ones_answer(start_proxy, start_echo):
    e = start_echo()
    dns = sgtest.DnsServer({"shared.example": ["127.0.0.1"]}, ttl=3600)
    try:
        proxy, port = serve(start_proxy, """
    location /r { resolver 127.0.0.1:%d ipv6=off; proxy_pass http://$arg_to:%d; }
    location /n { proxy_pass http://$arg_to:%d; }
""" % (dns.port, e.port, e.port))
        assert get(port, "/r?to=shared.example").status == 200
        assert get(port, "/n?to=shared.example").status == 502
        wait_for(lambda: "no resolver defined to resolve shared.example" in proxy.error_log,
                 what="the missing resolver in the error log")
    finally:
        dns.close()


def test_unknown_name_is_502_and_logged(start_proxy):
    dns = sgtest.DnsServer({}, ttl=3600)
    try:
        proxy, port = serve(start_proxy, """
    resolver 127.0.0.1:%d;
    location / { proxy_pass http://$arg_to; }
""" % dns.port)
        assert get(port, "/?to=nosuch.example").status == 502
        wait_for(lambda: "nosuch.example could not be resolved (3: Host not found)" in proxy.error_log,
                 what="the failed lookup in the error log")
    finally:
        dns.close()


def test_resolver_timeout_is_502(start_proxy):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # never answers
    silent.bind(("127.0.0.1", 0))
    try:
        proxy, port = serve(start_proxy, """
    resolver 127.0.0.1:%d;
    resolver_timeout 300ms;
    location / { proxy_pass http://$arg_to; }
""" % silent.getsockname()[1])
        assert get(port, "/?to=slow.example").status == 502
        wait_for(lambda: "slow.example could not be resolved (110: Operation timed out)" in proxy.error_log, what="the timeout in the log")
    finally:
        silent.close()


def test_client_leaving_during_a_lookup(start_proxy, start_echo):
    """A client that closes while its name is being resolved: the answer
    that comes later finds no request, and the proxy goes on serving."""
    e = start_echo()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        proxy, port = serve(start_proxy, """
    resolver 127.0.0.1:%d;
    resolver_timeout 500ms;
    location / { proxy_pass http://$arg_to; }
    location /ok { proxy_pass http://127.0.0.1:%d; }
""" % (silent.getsockname()[1], e.port))
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /?to=gone.example HTTP/1.1\r\nHost: x\r\n\r\n")
        c.close()
        wait_for(lambda: "gone.example could not be resolved" in proxy.error_log, what="the lookup's end")
        assert get(port, "/ok").status == 200
    finally:
        silent.close()


def test_resolver_directive_checked_by_t(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(http_conf("resolver 127.0.0.1:53 ipv4=off ipv6=off; server { listen 127.0.0.1:%d; }"
                              % free_port()))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode != 0
    assert '"ipv4" and "ipv6" cannot both be "off"' in (r.stdout + r.stderr)


# ---------------------------------------------------------------- unix sockets

def test_unix_socket_backends_http1(start_proxy, tmp_path):
    path = tmp_path / "echo.sock"
    e = UnixEcho(path)
    try:
        _, port = serve(start_proxy, """
    location /direct/ { proxy_pass http://unix:%s:/in/; }
    location /block { proxy_pass http://ux; }
    location /var { proxy_pass http://$arg_b; }
""" % path, http_extra="upstream ux { server unix:%s; }" % path)
        line, hdrs = request_line(get(port, "/direct/a?q=1"))
        assert line == "GET /in/a?q=1 HTTP/1.1"
        assert hdrs["host"] == "localhost"    # nginx's Host for a unix socket
        line, hdrs = request_line(get(port, "/block/x"))
        assert line == "GET /block/x HTTP/1.1" and hdrs["host"] == "ux"
        line, _ = request_line(get(port, "/var?b=unix:%s:/from-var" % path))
        assert line == "GET /from-var HTTP/1.1"
    finally:
        e.stop()


def test_unix_socket_backend_http2(start_proxy, tmp_path):
    path = tmp_path / "h2.sock"
    b = UnixH2(path)
    try:
        _, port = serve(start_proxy, """
    location / { proxy_pass http://unix:%s; proxy_http_version 2; }
""" % path)
        r = get(port, "/over/h2")
        assert r.status == 200 and r.body == b"h2 /over/h2"
        assert b.requests == ["/over/h2"]
    finally:
        b.close()


# ---------------------------------------------------------------- grpc_pass

def test_grpc_pass_with_variables(h2c_backends, start_proxy, grpc_channels):
    """grpc_pass $var: grpc:// or no scheme, an address or an upstream block."""
    b1, b2 = h2c_backends(2)
    port = free_port()
    start_proxy(http_conf("""
  upstream second { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass $http_x_target; }
  }
""" % (b2, port), main="worker_processes 1;"))
    echo = grpc_channels(port).unary_unary("/chat.Chat/Echo")
    for target, backend in (("grpc://127.0.0.1:%d" % b1, b1), ("127.0.0.1:%d" % b1, b1),
                            ("grpc://second", b2), ("second", b2)):
        resp, call = echo.with_call(sgtest.grpc_msg("hi"), metadata=[("x-target", target)], timeout=10)
        assert resp == sgtest.grpc_msg("hi")
        assert dict(call.initial_metadata())["x-backend"] == str(backend), target


# ---------------------------------------------------------------- upgrades

class RawUpgradeBackend(sgtest._ThreadedListener):
    """Answers a WebSocket handshake with 101 and b"hello", then counts the
    bytes until the proxy's FIN and answers b"got N"."""

    def serve(self, c):
        got = sgtest.recv_head(c)
        if got is None:
            return
        head, rest = got
        hdrs = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\nhello"
                   % sgtest.ws_accept(hdrs["sec-websocket-key"])).encode())
        c.sendall(b"got %d" % sgtest.count_until_eof(c, len(rest)))
        c.shutdown(socket.SHUT_WR)
        c.close()


def test_websocket_through_a_variable_address(start_proxy):
    """The tunnel keeps the run-time upstream it came through until it
    closes (under ASan: no use after free, no leak)."""
    b = RawUpgradeBackend()
    try:
        _, port = serve(start_proxy, "location / { proxy_pass http://$arg_to; }")
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(sgtest.build_request("GET", "/ws?to=127.0.0.1:%d" % b.port,
                                       [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        got = b""
        while b"hello" not in got:
            more = c.recv(4096)
            assert more, got
            got += more
        assert got.startswith(b"HTTP/1.1 101 ")
        c.sendall(b"x" * 1000)
        c.shutdown(socket.SHUT_WR)
        tail = b""
        while True:
            more = c.recv(4096)
            if not more:
                break
            tail += more
        c.close()
        assert tail.endswith(b"got 1000")
    finally:
        b.stop()


def test_reload_keeps_serving_and_frees_the_old_generation(start_proxy, start_echo):
    """Run-time upstreams and resolvers belong to a generation: after a
    reload the new one makes its own, and the old one's go with it (ASan:
    nothing leaks, nothing is used after it is freed)."""
    e = start_echo()
    dns = sgtest.DnsServer({"r.example": ["127.0.0.1"]}, ttl=3600)
    try:
        conf = """
    resolver 127.0.0.1:%d ipv6=off;
    location / { proxy_pass http://$arg_to:%d; add_header X-Gen %s always; }
"""
        proxy, port = serve(start_proxy, conf % (dns.port, e.port, "one"))
        assert get(port, "/?to=r.example").header("X-Gen") == "one"
        assert get(port, "/?to=127.0.0.1").header("X-Gen") == "one"
        text = proxy.conf_path.read_text().replace("X-Gen one", "X-Gen two")
        assert proxy.reload(text)
        wait_for(lambda: get(port, "/?to=r.example").header("X-Gen") == "two", what="the new generation")
        assert get(port, "/?to=127.0.0.1").status == 200
        assert len(dns.queries) == 2   # each generation resolved the name once
    finally:
        dns.close()
