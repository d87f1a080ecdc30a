"""Upstream TLS: `proxy_pass https://` and `grpc_pass grpcs://` against real
TLS peers (Python's ssl HTTP/1.1 server, grpcio with ssl_server_credentials,
nghttpd for HTTP/2 over TLS), checked the way a user would:

- grpcs://: unary and bidi calls through a plaintext `listen ... http2`
  front, many calls on few upstream connections; seed 03 unchanged.
- https:// (HTTP/1.1): GET, POST bodies and large responses; keep-alive
  reuse (one TLS connection for a client's requests); the last session is
  resumed on the next connection (proxy_ssl_session_reuse, off disables);
  `proxy_http_version 2` to nghttpd (ALPN h2).
- proxy_ssl_verify with the right CA -> 200, with another CA or for
  another name -> 502 and the verify error in the error log;
  grpc_ssl_verify failing -> UNAVAILABLE for the gRPC client.
- SNI only with proxy_ssl_server_name on, with proxy_ssl_name (default:
  the proxy_pass host).
- proxy_ssl_certificate/_key: a backend requiring a client certificate.
- a plain backend where TLS is expected: 502 at once, the proxy carries on.
- `-t` names the file:line of TLS mistakes.
"""

import hashlib
import http.server
import json
import socketserver
import ssl
import subprocess
import threading
import time
from concurrent import futures

import pytest

import sgtest
from sgtest import HttpConn, free_port, get, http_conf, run_streamgate, wait_for


# ---------------------------------------------------------------- certificates

def openssl(*args, cwd=None):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


class Pki:
    """A test CA with a server certificate (localhost, backend.test, 127.0.0.1),
    a client certificate, and an unrelated CA (the wrong one to trust)."""

    def __init__(self, d):
        self.dir = d
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ("ca", "other_ca"):
            openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Test %s" % ca,
                    "-keyout", str(d / ("%s.key" % ca)), "-out", str(d / ("%s.pem" % ca)))
        self._leaf("server", "backend.test", "subjectAltName=DNS:localhost,DNS:backend.test,IP:127.0.0.1\n")
        self._leaf("client", "streamgate-client", "extendedKeyUsage=clientAuth\n")

    def _leaf(self, name, cn, ext):
        d = self.dir
        (d / ("%s.ext" % name)).write_text(ext)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=%s" % cn, "-keyout", str(d / ("%s.key" % name)), "-out", str(d / ("%s.csr" % name)))
        openssl("x509", "-req", "-in", str(d / ("%s.csr" % name)), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(d / ("%s.ext" % name)), "-out", str(d / ("%s.pem" % name)))

    def path(self, name):
        return self.dir / name


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------- an HTTP/1.1 server over TLS

class TlsHttpBackend:
    """Python's http.server behind ssl on 127.0.0.1 (threads). Each answer is
    JSON: method, path, body length and sha256, the connection's number, the
    SNI it got, whether its session was resumed and the client certificate's
    CN. /big?N answers N pattern bytes; /close answers with Connection: close;
    /redirect is a 302 to https://HOST/landing."""

    def __init__(self, pki, client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki.path("server.pem")), str(pki.path("server.key")))
        self.ctx.set_alpn_protocols(["http/1.1"])
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(str(client_ca))
        self.sni = {}                 # id(socket) -> the name it was sent (None: none)
        self.ctx.sni_callback = lambda sock, name, ctx: self.sni.__setitem__(id(sock), name)
        self.conns = []               # per TLS connection: (sni, resumed, alpn)
        self.failed_handshakes = 0
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                s = self.request
                backend.conns.append((backend.sni.get(id(s)), s.session_reused, s.selected_alpn_protocol()))
                self.conn_no = len(backend.conns)

            def _answer(self, body_in):
                path = self.path
                if path == "/redirect":   # a Location built from the Host it was sent
                    self.send_response(302)
                    self.send_header("Location", "https://%s/landing" % self.headers.get("Host"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path.startswith("/big?"):
                    n = int(path[5:])
                    out = sgtest.pattern_bytes(n)
                else:
                    cert = self.request.getpeercert() or {}
                    cn = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
                    sni, resumed, alpn = backend.conns[self.conn_no - 1]
                    out = json.dumps({
                        "method": self.command, "path": path, "len": len(body_in),
                        "sha": hashlib.sha256(body_in).hexdigest(), "conn": self.conn_no,
                        "sni": sni, "resumed": resumed, "alpn": alpn, "client_cn": cn[0] if cn else None,
                        "host": self.headers.get("Host"),
                    }).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                if path == "/close":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self):
                self._answer(b"")

            def do_POST(self):
                self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self):
                sock, addr = self.socket.accept()
                return backend.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def finish_request(self, request, client_address):
                try:
                    request.settimeout(10)
                    request.do_handshake()
                except (ssl.SSLError, OSError):
                    backend.failed_handshakes += 1
                    return
                super().finish_request(request, client_address)

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_backend(pki):
    """factory: tls_backend(client_ca=None) -> TlsHttpBackend, stopped at teardown."""
    started = []

    def start(client_ca=None):
        b = TlsHttpBackend(pki, client_ca)
        started.append(b)
        return b
    yield start
    for b in started:
        b.stop()


def proxy_conf(locations, server_extra="", http_extra=""):
    port = free_port()
    return http_conf("""
  access_log off;
  %s
  server {
    listen 127.0.0.1:%d;
    %s
%s
  }
""" % (http_extra, port, server_extra, locations)), port


def answer(resp):
    assert resp.status == 200, (resp.status, resp.body[:300])
    return json.loads(resp.body)


# ---------------------------------------------------------------- proxy_pass https:// (HTTP/1.1)

def test_https_get_post_and_large_bodies(tls_backend, start_proxy):
    b = tls_backend()
    conf, port = proxy_conf("    location / { proxy_pass https://127.0.0.1:%d; }" % b.port)
    start_proxy(conf)
    a = answer(get(port, "/x?y=1"))
    assert (a["method"], a["path"], a["alpn"]) == ("GET", "/x?y=1", "http/1.1")
    assert a["host"] == "127.0.0.1:%d" % b.port, "Host is $proxy_host, as for http://"
    assert a["sni"] is None, "no SNI unless proxy_ssl_server_name on (nginx's default)"
    body = sgtest.pattern_bytes(300000)
    a = answer(get(port, "/up", method="POST", body=body))
    assert (a["method"], a["len"], a["sha"]) == ("POST", len(body), hashlib.sha256(body).hexdigest())
    r = get(port, "/big?3000000")
    assert r.status == 200 and r.body == sgtest.pattern_bytes(3000000)


def test_https_keepalive_reuses_one_tls_connection(tls_backend, start_proxy):
    b = tls_backend()
    conf, port = proxy_conf("    location / { proxy_pass https://127.0.0.1:%d; }" % b.port)
    start_proxy(conf)
    with HttpConn(port) as c:   # one client connection: one worker, one pool
        conns = {answer(c.request("GET", "/n%d" % i))["conn"] for i in range(8)}
        conns.add(answer(c.request("POST", "/p", body=b"x" * 5000))["conn"])
    assert len(conns) == 1, conns
    assert len(b.conns) == 1


def test_https_session_is_resumed_on_the_next_connection(tls_backend, start_proxy):
    b = tls_backend()
    conf, port = proxy_conf("""
    location / { proxy_pass https://127.0.0.1:%d; }
    location /off/ { proxy_pass https://127.0.0.1:%d/; proxy_ssl_session_reuse off; }
""" % (b.port, b.port))
    start_proxy(conf)
    with HttpConn(port) as c:   # /close: the backend ends each connection
        first = answer(c.request("GET", "/close"))
        assert answer(c.request("GET", "/other"))["resumed"], "the next connection resumes the session"
        assert not first["resumed"]
    with HttpConn(port) as c:
        answer(c.request("GET", "/off/close"))
        assert not answer(c.request("GET", "/off/close"))["resumed"], "proxy_ssl_session_reuse off"


def test_https_redirect_points_back_at_the_proxy(tls_backend, start_proxy):
    """proxy_redirect default: the backend's https://$proxy_host/... Location
    becomes the client's own address, as nginx does for http:// backends."""
    b = tls_backend()
    conf, port = proxy_conf("    location / { proxy_pass https://127.0.0.1:%d; }" % b.port)
    start_proxy(conf)
    r = get(port, "/redirect")
    assert r.status == 302
    assert r.header("location") == "http://127.0.0.1:%d/landing" % port


def test_https_to_an_upstream_block_with_default_name(tls_backend, start_proxy, pki):
    """proxy_pass https://NAME: SNI and verification use the upstream's name
    by default; proxy_ssl_name overrides both."""
    b = tls_backend()
    conf, port = proxy_conf("""
    location /ok/ { proxy_pass https://backend.test/; }
    location /other/ { proxy_pass https://backend.test/; proxy_ssl_name localhost; }
""" % (), http_extra="""
  upstream backend.test { server 127.0.0.1:%d; keepalive 4; }
  proxy_ssl_server_name on;
  proxy_ssl_verify on;
  proxy_ssl_trusted_certificate %s;
""" % (b.port, pki.path("ca.pem")))
    start_proxy(conf)
    assert answer(get(port, "/ok/a"))["sni"] == "backend.test"
    assert answer(get(port, "/other/a"))["sni"] == "localhost"


def test_http2_to_an_h2_tls_server_nghttpd(pki, tmp_path, start_proxy):
    """proxy_http_version 2 with https://: ALPN h2 to nghttpd (HTTP/2 over TLS)."""
    docroot = tmp_path / "htdocs"
    docroot.mkdir()
    (docroot / "hello.txt").write_bytes(b"hello over h2 and TLS\n")
    (docroot / "big.bin").write_bytes(sgtest.pattern_bytes(2000000))
    h2port = free_port()
    nghttpd = subprocess.Popen(["nghttpd", "-a", "127.0.0.1", "-d", str(docroot), str(h2port),
                                str(pki.path("server.key")), str(pki.path("server.pem"))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: sgtest.port_accepts(h2port), 10, what="nghttpd")
        conf, port = proxy_conf("""
    location / { proxy_pass https://127.0.0.1:%d; proxy_http_version 2;
                 proxy_ssl_verify on; proxy_ssl_trusted_certificate %s; }
""" % (h2port, pki.path("ca.pem")))
        p = start_proxy(conf)
        r = get(port, "/hello.txt")
        assert (r.status, r.body) == (200, b"hello over h2 and TLS\n"), p.error_log[-2000:]
        r = get(port, "/big.bin")
        assert r.status == 200 and r.body == sgtest.pattern_bytes(2000000)
        assert get(port, "/missing").status == 404
    finally:
        nghttpd.kill()
        nghttpd.wait(10)


# ---------------------------------------------------------------- verification

def test_verify_with_the_right_ca_and_with_a_wrong_one(tls_backend, start_proxy, pki):
    b = tls_backend()
    conf, port = proxy_conf("""
    location /right/ { proxy_pass https://127.0.0.1:%d/; proxy_ssl_trusted_certificate %s; }
    location /wrong/ { proxy_pass https://127.0.0.1:%d/; proxy_ssl_trusted_certificate %s; }
    location /name/ { proxy_pass https://127.0.0.1:%d/; proxy_ssl_trusted_certificate %s;
                      proxy_ssl_name other.test; }
""" % (b.port, pki.path("ca.pem"), b.port, pki.path("other_ca.pem"), b.port, pki.path("ca.pem")),
        server_extra="proxy_ssl_verify on;")
    p = start_proxy(conf)
    assert answer(get(port, "/right/a"))["path"] == "/a", "verified against 127.0.0.1 (IP SAN)"
    t0 = time.monotonic()
    assert get(port, "/wrong/a").status == 502
    assert time.monotonic() - t0 < 5 * sgtest.SLOW
    wait_for(lambda: "upstream SSL certificate verify error: (" in p.error_log, 5, what="verify error")
    line = [l for l in p.error_log.splitlines() if "certificate verify error" in l][0]
    assert "[error]" in line and "while SSL handshaking to upstream" in line, line
    assert "127.0.0.1:%d" % b.port in line, line
    assert get(port, "/name/a").status == 502, "a certificate for other names is refused"
    wait_for(lambda: "hostname mismatch" in p.error_log, 5, what="name mismatch in the log")
    assert answer(get(port, "/right/b"))["path"] == "/b", "the proxy carries on"


def test_verify_off_accepts_any_certificate(tls_backend, start_proxy, pki):
    b = tls_backend()
    conf, port = proxy_conf("    location / { proxy_pass https://127.0.0.1:%d; "
                            "proxy_ssl_trusted_certificate %s; }" % (b.port, pki.path("other_ca.pem")))
    start_proxy(conf)
    assert answer(get(port, "/"))["method"] == "GET", "proxy_ssl_verify is off by default"


# ---------------------------------------------------------------- SNI

def test_sni_only_when_server_name_on(tls_backend, start_proxy):
    b = tls_backend()
    conf, port = proxy_conf("""
    location /off/ { proxy_pass https://localhost:%d/; }
    location /on/ { proxy_pass https://localhost:%d/; proxy_ssl_server_name on; }
    location /named/ { proxy_pass https://localhost:%d/; proxy_ssl_server_name on;
                       proxy_ssl_name $http_x_name.test; }
    location /ip/ { proxy_pass https://127.0.0.1:%d/; proxy_ssl_server_name on; }
""" % (b.port, b.port, b.port, b.port))
    start_proxy(conf)
    assert answer(get(port, "/off/"))["sni"] is None
    assert answer(get(port, "/on/"))["sni"] == "localhost", "default: the proxy_pass host, no port"
    assert answer(get(port, "/named/", headers={"X-Name": "api"}))["sni"] == "api.test", "proxy_ssl_name"
    assert answer(get(port, "/ip/"))["sni"] is None, "no SNI for an IP address (RFC 6066)"


# ---------------------------------------------------------------- client certificates

def test_client_certificate(tls_backend, start_proxy, pki):
    b = tls_backend(client_ca=pki.path("ca.pem"))
    conf, port = proxy_conf("""
    location /cert/ { proxy_pass https://127.0.0.1:%d/;
                      proxy_ssl_certificate %s; proxy_ssl_certificate_key %s; }
    location /none/ { proxy_pass https://127.0.0.1:%d/; }
""" % (b.port, pki.path("client.pem"), pki.path("client.key"), b.port))
    start_proxy(conf)
    assert answer(get(port, "/cert/x"))["client_cn"] == "streamgate-client"
    assert get(port, "/none/x").status == 502, "the backend refuses a proxy without a certificate"


# ---------------------------------------------------------------- failures

class PlainHttpServer(sgtest._ThreadedListener):
    """A cleartext HTTP server: it answers the ClientHello as it would any
    bytes that are no request, with a 400, and closes (as nginx does)."""

    def serve(self, c):
        c.recv(65536)
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        c.close()


@pytest.fixture
def plain_server():
    s = PlainHttpServer()
    yield s
    s.stop()


def test_plain_backend_where_tls_is_expected(backend, plain_server, tls_backend, start_proxy):
    good = tls_backend()
    conf, port = proxy_conf("""
    location /bad/ { proxy_pass https://127.0.0.1:%d/; }
    location /good/ { proxy_pass https://127.0.0.1:%d/; }
    location /plain/ { proxy_pass http://127.0.0.1:%d/; }
""" % (plain_server.port, good.port, backend.port))
    p = start_proxy(conf)
    for _ in range(3):
        t0 = time.monotonic()
        assert get(port, "/bad/x").status == 502
        assert time.monotonic() - t0 < 3 * sgtest.SLOW, "502 at once, no timeout"
    wait_for(lambda: "SSL_do_handshake() failed" in p.error_log, 5, what="handshake error logged")
    line = [l for l in p.error_log.splitlines() if "SSL_do_handshake() failed" in l][0]
    assert "[error]" in line and "while SSL handshaking to upstream" in line, line
    assert "127.0.0.1:%d" % plain_server.port in line, line
    assert answer(get(port, "/good/y"))["path"] == "/y"
    assert get(port, "/plain/").status == 200
    assert p.running()


def test_tls_handshake_counts_in_proxy_connect_timeout(start_stub, start_proxy):
    """A peer that accepts and never answers the ClientHello: the connect
    timeout ends the attempt (504, as nginx: a timeout, not a refusal)."""
    stub = start_stub(mode="hold")
    conf, port = proxy_conf("    location / { proxy_pass https://127.0.0.1:%d; proxy_connect_timeout 1s; }"
                            % stub.port)
    p = start_proxy(conf)
    t0 = time.monotonic()
    assert get(port, "/").status == 504
    assert 0.8 < time.monotonic() - t0 < 4 * sgtest.SLOW
    assert "while SSL handshaking to upstream" in p.error_log


def test_reload_with_tls_upstreams(tls_backend, start_proxy, pki):
    """A reload builds new client contexts; pooled connections and kept
    sessions of the old generation go with it (ASan build: no leak)."""
    b = tls_backend()
    loc = "    location / { proxy_pass https://127.0.0.1:%d; proxy_ssl_verify on; proxy_ssl_trusted_certificate %s; }"
    conf, port = proxy_conf(loc % (b.port, pki.path("ca.pem")))
    p = start_proxy(conf)
    with HttpConn(port) as c:
        assert answer(c.request("GET", "/close"))["path"] == "/close"
        assert answer(c.request("GET", "/a"))["resumed"]
    assert p.reload(conf.replace("location / {", "location / { proxy_ssl_session_reuse off;"))
    for i in range(4):
        assert not answer(get(port, "/close"))["resumed"], "the new generation's setting"
    assert p.reload(conf)
    assert answer(get(port, "/b"))["path"] == "/b"


# ---------------------------------------------------------------- -t

def check_t_fails(tmp_path, body, line, what):
    conf = tmp_path / "t.conf"
    conf.write_text(http_conf(body))
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode == 1, r.stderr
    assert "%s:%d:" % (conf, line) in r.stderr and what in r.stderr, r.stderr


def test_t_names_tls_mistakes(tmp_path, pki):
    # http_conf puts the body from line 4 on
    check_t_fails(tmp_path, """
  server {
    listen 127.0.0.1:8080;
    location / {
      proxy_ssl_verify on;
      proxy_pass https://127.0.0.1:8443;
    }
  }""", 9, 'no "proxy_ssl_trusted_certificate" for "proxy_ssl_verify"')
    check_t_fails(tmp_path, """
  server {
    listen 127.0.0.1:8080;
    location / {
      proxy_pass https://127.0.0.1:8443;
      proxy_ssl_certificate %s/missing.pem;
      proxy_ssl_certificate_key %s;
    }
  }""" % (tmp_path, pki.path("client.key")), 9, "missing.pem")
    check_t_fails(tmp_path, """
  grpc_ssl_trusted_certificate %s/nope.pem;
  server {
    listen 127.0.0.1:8080 http2;
    location / { grpc_pass grpcs://127.0.0.1:50443; }
  }""" % tmp_path, 5, "cannot load trusted certificate")
    check_t_fails(tmp_path, """
  server {
    listen 127.0.0.1:8080;
    location / {
      proxy_pass https://127.0.0.1:8443;
      proxy_ssl_certificate %s;
    }
  }""" % pki.path("client.pem"), 9, 'no "proxy_ssl_certificate_key" is defined')


def test_t_accepts_tls_passes(tmp_path, pki):
    conf = tmp_path / "ok.conf"
    conf.write_text(http_conf("""
  upstream u { server 127.0.0.1:8443; }
  server {
    listen 127.0.0.1:8080 http2;
    location /a { proxy_pass https://u; proxy_ssl_verify on; proxy_ssl_trusted_certificate %s; }
    location /b { proxy_pass https://localhost; proxy_http_version 2; }
    location /c { grpc_pass grpcs://localhost:50443; grpc_ssl_certificate %s; grpc_ssl_certificate_key %s; }
  }""" % (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"))))
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- grpc_pass grpcs://

def grpc_tls_server(grpc, bind, cert, key, client_ca=None):
    """A grpcio server over TLS with test.Echo/Unary and test.Echo/Bidi
    (bytes echoed); .peers collects the addresses calls came from."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.peers = set()

    def unary(req, ctx):
        server.peers.add(ctx.peer())
        ctx.send_initial_metadata((("x-scheme-ok", "1"),))
        return req

    def bidi(it, ctx):
        server.peers.add(ctx.peer())
        for m in it:
            yield m + b"!"

    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }),))
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())],
                                        root_certificates=client_ca.read_bytes() if client_ca else None,
                                        require_client_auth=client_ca is not None)
    server.port = server.add_secure_port(bind, creds)
    server.start()
    return server


@pytest.fixture
def grpc_servers():
    grpc = pytest.importorskip("grpc")
    started = []

    def start(*args, **kw):
        s = grpc_tls_server(grpc, *args, **kw)
        started.append(s)
        return s
    yield grpc, start
    for s in started:
        s.stop(0)


def grpc_front(server_port, location_extra="", http_extra=""):
    port = free_port()
    return http_conf("""
  access_log off;
  %s
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass grpcs://127.0.0.1:%d; %s }
  }
""" % (http_extra, port, server_port, location_extra)), port


def test_grpcs_unary_and_bidi_share_few_connections(grpc_servers, pki, start_proxy):
    grpc, start = grpc_servers
    srv = start("127.0.0.1:0", pki.path("server.pem"), pki.path("server.key"))
    conf, port = grpc_front(srv.port, "grpc_ssl_verify on; grpc_ssl_trusted_certificate %s;" % pki.path("ca.pem"))
    start_proxy(conf)
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        unary = ch.unary_unary("/test.Echo/Unary")
        resp, call = unary.with_call(b"hello grpcs", timeout=10 * sgtest.SLOW)
        assert resp == b"hello grpcs" and call.code() == grpc.StatusCode.OK
        assert dict(call.initial_metadata()).get("x-scheme-ok") == "1"
        for i in range(30):
            assert unary(b"m%d" % i, timeout=10 * sgtest.SLOW) == b"m%d" % i
        # concurrent calls: streams multiplexed on the TLS connection
        calls = [unary.future(b"c%d" % i * 1000, timeout=20 * sgtest.SLOW) for i in range(100)]
        assert [f.result() for f in calls] == [b"c%d" % i * 1000 for i in range(100)]
        bidi = ch.stream_stream("/test.Echo/Bidi")
        assert list(bidi(iter([b"a", b"bb", b"c" * 100000]), timeout=10 * sgtest.SLOW)) == \
            [b"a!", b"bb!", b"c" * 100000 + b"!"]
    # One client connection lands on one worker: its calls share a connection
    # (or a couple, should the worker count differ).
    assert 1 <= len(srv.peers) <= 2, srv.peers


def test_grpcs_with_client_certificate(grpc_servers, pki, start_proxy):
    grpc, start = grpc_servers
    srv = start("127.0.0.1:0", pki.path("server.pem"), pki.path("server.key"), client_ca=pki.path("ca.pem"))
    conf, port = grpc_front(srv.port, "grpc_ssl_certificate %s; grpc_ssl_certificate_key %s;"
                            % (pki.path("client.pem"), pki.path("client.key")))
    start_proxy(conf)
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        assert ch.unary_unary("/test.Echo/Unary")(b"mtls", timeout=10 * sgtest.SLOW) == b"mtls"


def test_grpcs_verify_failure_is_unavailable(grpc_servers, pki, start_proxy):
    grpc, start = grpc_servers
    srv = start("127.0.0.1:0", pki.path("server.pem"), pki.path("server.key"))
    conf, port = grpc_front(srv.port, "grpc_ssl_verify on; grpc_ssl_trusted_certificate %s;"
                            % pki.path("other_ca.pem"))
    p = start_proxy(conf)
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Unary")(b"x", timeout=10 * sgtest.SLOW)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
    assert "upstream SSL certificate verify error" in p.error_log
    assert not srv.peers


def test_grpcs_to_a_cleartext_server_is_unavailable(plain_server, start_proxy):
    grpc = pytest.importorskip("grpc")
    conf, port = grpc_front(plain_server.port)
    p = start_proxy(conf)
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Unary")(b"x", timeout=10 * sgtest.SLOW)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert p.running()


def test_seed_03_grpcs_backend(seed_conf, tmp_prefix, start_proxy, grpc_servers):
    """Seed 03 unchanged but for its ports (certificate made as
    certs/README.md says): a TLS gRPC client on localhost:1443 reaches the
    TLS backend on localhost:50443."""
    grpc, start = grpc_servers
    seed = seed_conf("03")
    certs = tmp_prefix / "certs"
    certs.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem"))
    r = run_streamgate(["-t", "-c", seed.path, "-p", tmp_prefix])
    assert r.returncode == 0, r.stderr
    srv = start("localhost:%d" % seed[50443], certs / "cert.pem", certs / "key.pem")
    start_proxy(conf_file=seed.path, prefix=tmp_prefix)
    creds = grpc.ssl_channel_credentials(root_certificates=(certs / "cert.pem").read_bytes())
    with grpc.secure_channel("localhost:%d" % seed[1443], creds) as ch:
        assert ch.unary_unary("/test.Echo/Unary")(b"seed 03", timeout=10 * sgtest.SLOW) == b"seed 03"
        bidi = ch.stream_stream("/test.Echo/Bidi")
        assert list(bidi(iter([b"x", b"y"]), timeout=10 * sgtest.SLOW)) == [b"x!", b"y!"]
    assert srv.peers


# ---------------------------------------------------------------- found by review

def test_kept_sessions_are_bounded_when_names_come_from_requests(tls_backend, start_proxy):
    """proxy_ssl_name $http_x_name: every client-chosen name would keep a
    session of its own; only the most recent 64 per worker are kept, so the
    first of 100 names is no longer resumed while the last one is."""
    b = tls_backend()
    conf, port = proxy_conf("""
    location / { proxy_pass https://127.0.0.1:%d; proxy_ssl_server_name on; proxy_ssl_name $http_x_name; }
""" % b.port)
    start_proxy(http_conf_one_worker(conf))
    for i in range(100):   # /close: each request needs a new connection
        assert not answer(get(port, "/close", headers={"X-Name": "n%d.test" % i}))["resumed"]
    assert answer(get(port, "/close", headers={"X-Name": "n99.test"}))["resumed"]
    assert not answer(get(port, "/close", headers={"X-Name": "n0.test"}))["resumed"]


def test_a_bad_name_from_a_request_blames_no_peer(tls_backend, start_proxy):
    """A 300-byte proxy_ssl_name from a header cannot be sent: that request
    gets 500 (as nginx), and the peers stay up for everyone else."""
    b1, b2 = tls_backend(), tls_backend()
    conf, port = proxy_conf("""
    location / { proxy_pass https://be; proxy_ssl_server_name on; proxy_ssl_name $http_x_name; }
""", http_extra="upstream be { server 127.0.0.1:%d; server 127.0.0.1:%d; }" % (b1.port, b2.port))
    p = start_proxy(conf)
    assert get(port, "/evil", headers={"X-Name": "a" * 300}).status == 500
    assert "invalid SSL name" in p.error_log
    assert [get(port, "/ok%d" % i, headers={"X-Name": "ok.test"}).status for i in range(4)] == [200] * 4


def test_failed_handshake_without_verification_logs_its_own_reason(tls_backend, start_proxy, pki):
    """A backend that wants a client certificate we do not have: with
    verification off the log names the handshake failure, not the
    certificate check OpenSSL recorded but did not act on."""
    b = tls_backend(client_ca=pki.path("ca.pem"))
    conf, port = proxy_conf("    location / { proxy_pass https://127.0.0.1:%d; proxy_ssl_protocols TLSv1.2; }"
                            % b.port)
    p = start_proxy(conf)
    assert get(port, "/x").status == 502
    wait_for(lambda: "SSL_do_handshake() failed" in p.error_log, 5, what="the handshake failure logged")
    assert "certificate verify error" not in p.error_log


def test_http2_upstream_tls_errors_go_to_the_location_error_log(tls_backend, start_proxy, pki, tmp_path):
    b = tls_backend()
    log = tmp_path / "h2loc.log"
    conf, port = proxy_conf("""
    location / { proxy_pass https://127.0.0.1:%d; proxy_http_version 2; proxy_ssl_verify on;
                 proxy_ssl_trusted_certificate %s; error_log %s error; }
""" % (b.port, pki.path("other_ca.pem"), log))
    start_proxy(conf)
    assert get(port, "/x").status == 502
    wait_for(lambda: log.exists() and "certificate verify error" in log.read_text(), 5,
             what="the verify error in the location's error_log")


def http_conf_one_worker(conf):
    """Sessions are kept per worker thread: one, so every request sees them."""
    return "worker_processes 1;\n" + conf
