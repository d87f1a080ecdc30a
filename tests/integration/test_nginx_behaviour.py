"""Behaviour that differed from nginx's (issue 9, found by nginx's own test
suite) and now matches it: each test is what an nginx user would check
with a real client, and the nginx-tests file that states it is named."""

import socket
import threading

import pytest

from sgtest import HttpConn, free_port, get, http_conf, wait_for
from test_h2_server import RawH2


class ScriptedBackend(threading.Thread):
    """An HTTP/1.1 backend whose answer to each request head is scripted:
    respond(request_head) -> bytes, sent and then the connection closed."""

    def __init__(self, respond):
        super().__init__(daemon=True)
        self.respond = respond
        self.heads = []
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
        buf = b""
        with c:
            while b"\r\n\r\n" not in buf:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                buf += d
            head = buf.partition(b"\r\n\r\n")[0]
            self.heads.append(head)
            try:
                c.sendall(self.respond(head))
            except OSError:
                pass

    def close(self):
        self.sock.close()


@pytest.fixture
def scripted(start_proxy):
    """scripted(respond, location_extra) -> proxy port in front of a
    ScriptedBackend."""
    backends = []

    def make(respond, location_extra="", server_extra="", http_extra=""):
        b = ScriptedBackend(respond)
        backends.append(b)
        port = free_port()
        start_proxy(http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
    %s
    location / {
      proxy_pass http://127.0.0.1:%d;
      %s
    }
    location = /intercepted { return 200 "intercepted\\n"; }
  }
""" % (http_extra, port, server_extra, b.port, location_extra)))
        return port, b
    yield make
    for b in backends:
        b.close()


def host_echo(start_proxy, http2=False):
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d%s;
    location / { return 200 "host=$host args=$args uri=$uri\\n"; }
  }
""" % (port, " http2" if http2 else "")))
    return port


def raw(port, data):
    """Sends `data` on a fresh connection, returns the parsed response."""
    with HttpConn(port) as c:
        c.send(data)
        return c.read_response()


# ---------------------------------------------------------------- Host (http_host.t, http_uri.t)

BAD_HOSTS = ["123.49.0.78:98777", "123.40.56.78:9000:80", "example.com.:1.2", ".",
             "[abcd::ef98:0:7654:321].", "extra[abcd::ef98:0:7654:321]:98", "[abcd::ef98:0:7654:321"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_invalid_host_field_is_400(start_proxy, host):
    """nginx (validate_host, 1.29.4) answers these 400; they were served."""
    port = host_echo(start_proxy)
    r = raw(port, b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
    assert r.status == 400, (host, r.status, r.text)


@pytest.mark.parametrize("host", BAD_HOSTS + ["", "\\e/xample.com"])
def test_invalid_absolute_form_host_is_400(start_proxy, host):
    port = host_echo(start_proxy)
    r = raw(port, b"GET http://%s/ HTTP/1.0\r\nHost: localhost\r\n\r\n" % host.encode())
    assert r.status == 400, (host, r.status, r.text)


@pytest.mark.parametrize("host,want", [
    ("abcd-ef.g02.xyz.:88", "abcd-ef.g02.xyz"),
    ("www.Example.COM.", "www.example.com"),
    ("123.40.56.78:", "123.40.56.78"),
    ("[::FFFF:12.30.67.89]:4321", "[::ffff:12.30.67.89]"),
])
def test_host_trailing_dot_port_and_case(start_proxy, host, want):
    """$host drops the port and one trailing dot, lowercased, from the Host
    field and from an absolute-form target alike."""
    port = host_echo(start_proxy)
    r = raw(port, b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
    assert r.text.startswith("host=%s " % want), r.text
    r = raw(port, b"GET http://%s/ HTTP/1.0\r\nHost: other\r\n\r\n" % host.encode())
    assert r.text.startswith("host=%s " % want), r.text


@pytest.mark.parametrize("target", ["http://localhost?args", "http://localhost:8080?args#frag"])
def test_absolute_form_without_path_keeps_args(start_proxy, target):
    """`GET http://localhost?args`: the authority ends at "?" (it was
    taken whole as $host, $args empty)."""
    port = host_echo(start_proxy)
    r = raw(port, b"GET %s HTTP/1.0\r\n\r\n" % target.encode())
    assert r.status == 200
    assert r.text == "host=localhost args=args uri=/\n", r.text


def test_h2_authority_checked_as_host(start_proxy):
    """HTTP/2 :authority gets the same checks (h2_host.t): 400 on the
    stream, and the connection goes on serving."""
    port = host_echo(start_proxy, http2=True)
    c = RawH2(port)
    for bad in ["123.49.0.78:98777", "example.com.:1.2", "[abcd::ef98:0:7654:321]."]:
        st = c.response(c.request("/", authority=bad))
        assert st.status == 400, (bad, st.status)
    st = c.response(c.request("/", authority="Example.COM.:8443"))
    assert st.status == 200 and st.body.startswith(b"host=example.com "), st.body
    c.close()


# ---------------------------------------------------------------- methods (http_method.t)

def test_trace_is_405(start_proxy):
    port = host_echo(start_proxy)
    r = raw(port, b"TRACE / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert r.status == 405 and r.reason == "Not Allowed"


def test_h2_trace_is_405(start_proxy):
    port = host_echo(start_proxy, http2=True)
    c = RawH2(port)
    st = c.response(c.request("/", method="TRACE"))
    assert st.status == 405
    c.close()


def test_connect_over_http1_is_405_and_bad_target_400(start_proxy):
    """nginx 1.29.3+: CONNECT host:port is 405 (no tunnels over HTTP/1.1);
    a CONNECT target that is not host:port stays 400."""
    port = host_echo(start_proxy)
    r = raw(port, b"CONNECT localhost:8080 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert r.status == 405
    r = raw(port, b"CONNECT / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert r.status == 400
    r = raw(port, b"CONNECT localhost HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert r.status == 400


# ---------------------------------------------------------------- backend framing (proxy_duplicate_headers.t)

@pytest.mark.parametrize("fields", [
    b"Content-Length: 0\r\nContent-Length: 0\r\n",
    b"Transfer-Encoding: foo\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
], ids=["two-lengths", "unknown-coding", "gzip-chunked", "length-then-te", "te-then-length"])
def test_ambiguous_backend_framing_is_502(scripted, fields):
    """A response a client or cache could split differently from us is not
    relayed (it was, as 200)."""
    port, _ = scripted(lambda head: b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + fields +
                       b"\r\n0\r\n\r\n")
    assert get(port, "/").status == 502


def test_duplicate_expires_keeps_the_first(scripted):
    port, _ = scripted(lambda head: b"HTTP/1.1 200 OK\r\nConnection: close\r\nExpires: foo\r\n"
                       b"Expires: bar\r\nContent-Length: 0\r\n\r\n")
    r = get(port, "/")
    assert r.status == 200
    assert r.header_all("Expires") == ["foo"]


# ---------------------------------------------------------------- 100-continue (http_expect_100_continue.t)

@pytest.mark.parametrize("expect", ["100-continue", "100-Continue"])
def test_proxied_expect_100_continue_gets_the_interim_100(scripted, expect):
    port, b = scripted(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    with HttpConn(port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: localhost\r\nExpect: %s\r\nContent-Length: 0\r\n"
               b"Connection: close\r\n\r\n" % expect.encode())
        first = c.read_response(method="POST", skip_interim=False)
        assert first.status == 100
        assert c.read_response(method="POST").text == "ok\n"


def test_no_100_continue_for_http10(scripted):
    port, _ = scripted(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    with HttpConn(port) as c:
        c.send(b"POST / HTTP/1.0\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")
        r = c.read_response(method="POST", skip_interim=False)
        assert r.status == 200


# ---------------------------------------------------------------- Upgrade (proxy_connection_headers.t)

UPGRADE_CONF = """
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
"""
UPGRADE_MAP = """
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
"""


@pytest.mark.parametrize("status", [b"200 OK", b"426 Upgrade Required"])
def test_upgrade_header_of_a_response_reaches_http1_clients(scripted, status):
    port, _ = scripted(lambda head: b"HTTP/1.1 " + status + b"\r\nConnection: Upgrade\r\n"
                       b"Upgrade: websocket\r\nContent-Length: 0\r\n\r\n",
                       location_extra=UPGRADE_CONF, http_extra=UPGRADE_MAP)
    r = raw(port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert r.status == int(status[:3])
    assert r.header("Upgrade") == "websocket"


def test_upgrade_without_websocket_key_gets_the_backends_101(scripted):
    """nginx leaves the handshake to the backend: no Sec-WebSocket-Key, and
    still the backend's 101 (it was answered 400 without asking it)."""
    port, b = scripted(lambda head: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\n\r\n",
                       location_extra=UPGRADE_CONF, http_extra=UPGRADE_MAP)
    r = raw(port, b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert r.status == 101
    assert r.header("Upgrade") == "websocket"
    assert b"upgrade: websocket" in b.heads[0].lower()


# ---------------------------------------------------------------- intercepted 401 (proxy_intercept_errors.t)

def test_intercepted_401_keeps_every_www_authenticate(scripted):
    port, _ = scripted(lambda head: b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: foo\r\n"
                       b"WWW-Authenticate: bar\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                       location_extra="proxy_intercept_errors on; error_page 401 500 /intercepted;")
    r = get(port, "/auth")
    assert r.status == 401
    assert r.header_all("WWW-Authenticate") == ["foo", "bar"]
    assert r.text == "intercepted\n"


# ---------------------------------------------------------------- next upstream (proxy_next_upstream.t)

def test_all_live_peers_404_with_one_down_gives_the_404(start_proxy):
    """A `down` server is not a try: the last 404 is the answer, not 502."""
    b = ScriptedBackend(lambda head: b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n"
                        b"Connection: close\r\n\r\nNot Found\n")
    dead = free_port()
    port = free_port()
    start_proxy(http_conf("""
  upstream u3 { server 127.0.0.1:%d; server 127.0.0.1:%d down; }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://u3; proxy_next_upstream http_404; }
  }
""" % (b.port, dead, port)))
    try:
        r = get(port, "/down/")
        assert r.status == 404 and r.text == "Not Found\n"
        assert len(b.heads) == 1
    finally:
        b.close()


def test_h2_backend_closing_the_stream_unanswered_is_invalid_header(start_proxy):
    """grpc_next_upstream.t, proxy_h2_next_upstream.t: an HTTP/2 backend
    that resets the stream before any response head (here `return 444`) is
    an invalid_header: retried on the next peer when listed, and a fail
    against max_fails (it was an error, not retried)."""
    port, a, b = free_port(), free_port(), free_port()
    start_proxy(http_conf("""
  upstream u { server 127.0.0.1:%d max_fails=1 fail_timeout=60s; server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://u;
      proxy_http_version 2;
      proxy_next_upstream invalid_header;
    }
  }
  server {
    listen 127.0.0.1:%d http2;
    location / { return 444; }
    location /ok { return 200 "A\\n"; }
  }
  server {
    listen 127.0.0.1:%d http2;
    location / { return 200 "B\\n"; }
  }
""" % (a, b, port, a, b)))
    for _ in range(2):
        r = get(port, "/444")
        assert r.status == 200 and r.text == "B\n", (r.status, r.text)
    # whichever of the two picked A first marked it failed: /ok goes to B
    assert [get(port, "/ok").text for _ in range(2)] == ["B\n", "B\n"]


# ---------------------------------------------------------------- reload (worker_shutdown_timeout.t)

@pytest.mark.parametrize("kept_alive", [False, True])
def test_worker_shutdown_timeout_closes_connections_open_at_a_reload(start_proxy, kept_alive):
    """With worker_shutdown_timeout in the configuration a reload replaces,
    a client connection open at the reload (before its first request, or
    kept alive after one) is closed that long after it, as nginx's old
    worker closes it; a connection made after the reload is not."""
    port = free_port()
    text = http_conf("""
  server { listen 127.0.0.1:%d; location / { return 200 "ok\\n"; } }
""" % port, main="worker_shutdown_timeout 10ms;")
    p = start_proxy(text)
    with HttpConn(port, timeout=5) as old:
        if kept_alive:
            assert old.request("GET", "/").text == "ok\n"
        assert p.reload(text) is True
        assert old.is_closed(5), "connection open at the reload was kept"
    with HttpConn(port, timeout=5) as new:
        assert new.request("GET", "/").text == "ok\n"
        assert not new.is_closed(0.3)
        assert new.request("GET", "/").text == "ok\n"


def test_without_worker_shutdown_timeout_kept_connections_survive_reloads(start_proxy):
    port = free_port()
    text = http_conf("""
  server { listen 127.0.0.1:%d; location / { return 200 "ok\\n"; } }
""" % port)
    p = start_proxy(text)
    with HttpConn(port, timeout=5) as kept:
        assert kept.request("GET", "/").text == "ok\n"
        assert p.reload(text) is True
        assert kept.request("GET", "/").text == "ok\n"


# ---------------------------------------------------------------- $bytes_sent (ssl_proxy_upgrade.t, access_log)

def test_bytes_sent_counts_head_and_body(start_proxy, tmp_path):
    """$bytes_sent was always 0: it is every byte sent for the request,
    the head included, $body_bytes_sent the body alone."""
    port = free_port()
    log = tmp_path / "bytes.log"
    start_proxy(http_conf("""
  log_format bytes "$bytes_sent $body_bytes_sent";
  access_log %s bytes;
  server { listen 127.0.0.1:%d; location / { return 200 "0123456789"; } }
""" % (log, port)))
    with HttpConn(port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        assert r.body == b"0123456789"
        while c._fill():
            pass
    wire = len(r.raw_head) + 10
    wait_for(lambda: log.exists() and log.read_text().endswith("\n"), what="access log line")
    assert log.read_text() == "%d 10\n" % wire, (log.read_text(), r.raw_head)


# ---------------------------------------------------------------- index $var, map volatile (map_volatile.t)

def test_index_through_a_map_and_volatile(start_proxy):
    """`index $var` with an absolute value is an internal redirect to it (it
    was a 404: index took no variables). A map keeps its value for the
    request across that redirect; a `volatile` one is computed again."""
    port = free_port()
    start_proxy(http_conf("""
  map $uri $uri_cached { /1/ /1/redirect; /1/redirect uncached; }
  map $uri $uri_uncached { volatile; /2/ /2/redirect; /2/redirect uncached; }
  server {
    listen 127.0.0.1:%d;
    location /1 { index $uri_cached; }
    location /1/redirect { add_header X-URI $uri_cached always; return 204; }
    location /2 { index $uri_uncached; }
    location /2/redirect { add_header X-URI $uri_uncached always; return 204; }
  }
""" % port))
    r = get(port, "/1/")
    assert r.status == 204 and r.header("X-URI") == "/1/redirect"
    r = get(port, "/2/")
    assert r.status == 204 and r.header("X-URI") == "uncached"


def test_index_redirect_cycle_is_500(start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; location / { index /loop/; } }
""" % port))
    assert get(port, "/").status == 500
