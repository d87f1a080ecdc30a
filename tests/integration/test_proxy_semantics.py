"""nginx's HTTP semantics through streamgate: proxy_pass URI rules, headers,
hop-by-hop, location and server_name selection, return, error_page,
add_header, static files, map, and HTTP/1.1 framing through the proxy.

The EchoServer backend (Python) answers with the exact request head it
received, so tests see what the proxy sent byte for byte.
"""

import pytest

import sgtest
from sgtest import HttpConn, build_request, free_port, free_ports, get, head_of, http_conf


def serve(start_proxy, server_body, http_extra="", prefix=None):
    """Start a proxy with one server on a free port; returns the port."""
    port = free_port()
    start_proxy(http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
%s
  }
""" % (http_extra, port, server_body)), prefix=prefix)
    return port


def echoed(port, path="/", headers=None, **kw):
    """GET through the proxy to an EchoServer → (request line, {lower name: [values]}, body)."""
    r = get(port, path, headers=headers, **kw)
    assert r.status == 200, (r.status, r.body[:300])
    line, hdrs, body = head_of(r)
    d = {}
    for k, v in hdrs:
        d.setdefault(k.lower(), []).append(v)
    return line, d, body


# ---------------------------------------------------------------- proxy_pass URI

def test_proxy_pass_with_uri_replaces_matched_prefix(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location /a/ { proxy_pass http://127.0.0.1:%d/x/; }
    location /api/ { proxy_pass http://127.0.0.1:%d/; }
    location /b { proxy_pass http://127.0.0.1:%d/c; }
""" % (e.port, e.port, e.port))
    assert echoed(port, "/a/q?z=1&y=%2F")[0] == "GET /x/q?z=1&y=%2F HTTP/1.1"
    assert echoed(port, "/a/")[0] == "GET /x/ HTTP/1.1"
    assert echoed(port, "/api/v1/users")[0] == "GET /v1/users HTTP/1.1"
    # nginx's well-known rule: the matched part is replaced literally.
    assert echoed(port, "/b/d")[0] == "GET /c/d HTTP/1.1"
    assert echoed(port, "/bee")[0] == "GET /cee HTTP/1.1"


def test_proxy_pass_with_uri_sends_normalized_escaped_uri(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, "location /a/ { proxy_pass http://127.0.0.1:%d/x/; }" % e.port)
    assert echoed(port, "/a/b%20c")[0] == "GET /x/b%20c HTTP/1.1"
    assert echoed(port, "/a/%62/./d")[0] == "GET /x/b/d HTTP/1.1"


def test_proxy_pass_without_uri_passes_request_uri_unchanged(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, "location /a/ { proxy_pass http://127.0.0.1:%d; }" % e.port)
    for uri in ["/a/%7Efoo%20bar/b%2Fc?x=%2F&y=1+2&empty", "/a/", "/a/x?", "/a/%41"]:
        assert echoed(port, uri)[0] == "GET %s HTTP/1.1" % uri


def test_methods_and_body_pass(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, "location / { proxy_pass http://127.0.0.1:%d; }" % e.port)
    for m in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]:
        line, h, body = echoed(port, "/m", method=m, body=b"payload-" + m.encode())
        assert line == "%s /m HTTP/1.1" % m
        assert body == b"payload-" + m.encode()
        assert h["content-length"] == [str(len(body))]


# ---------------------------------------------------------------- request headers

def test_host_defaults_to_proxy_host(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location /direct { proxy_pass http://127.0.0.1:%d; }
    location /group { proxy_pass http://backend_pool; }
""" % e.port, http_extra="upstream backend_pool { server 127.0.0.1:%d; }" % e.port)
    _, h, _ = echoed(port, "/direct", headers={"Host": "client.example"})
    assert h["host"] == ["127.0.0.1:%d" % e.port]
    _, h, _ = echoed(port, "/group", headers={"Host": "client.example"})
    assert h["host"] == ["backend_pool"]


def test_proxy_set_header_host_variables(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location /host { proxy_pass http://127.0.0.1:%d; proxy_set_header Host $host; }
    location /http_host { proxy_pass http://127.0.0.1:%d; proxy_set_header Host $http_host; }
""" % (e.port, e.port))
    _, h, _ = echoed(port, "/host", headers={"Host": "Example.COM:1234"})
    assert h["host"] == ["example.com"]
    _, h, _ = echoed(port, "/http_host", headers={"Host": "Example.COM:1234"})
    assert h["host"] == ["Example.COM:1234"]


def test_forwarded_for_and_real_ip(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location / {
      proxy_pass http://127.0.0.1:%d;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
    }
""" % e.port)
    _, h, _ = echoed(port, "/")
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    _, h, _ = echoed(port, "/", headers={"X-Forwarded-For": "10.1.2.3"})
    assert h["x-forwarded-for"] == ["10.1.2.3, 127.0.0.1"]


def test_empty_proxy_set_header_removes_header(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location / {
      proxy_pass http://127.0.0.1:%d;
      proxy_set_header Accept-Encoding "";
    }
""" % e.port)
    _, h, _ = echoed(port, "/", headers={"Accept-Encoding": "gzip", "X-Keep": "1"})
    assert "accept-encoding" not in h
    assert h["x-keep"] == ["1"]


def test_proxy_set_header_inheritance(start_proxy, start_echo):
    """A location with its own proxy_set_header inherits none from the server."""
    e = start_echo()
    port = serve(start_proxy, """
    proxy_set_header X-From-Server s;
    location /inherit { proxy_pass http://127.0.0.1:%d; }
    location /own { proxy_pass http://127.0.0.1:%d; proxy_set_header X-Own o; }
""" % (e.port, e.port))
    _, h, _ = echoed(port, "/inherit")
    assert h["x-from-server"] == ["s"]
    _, h, _ = echoed(port, "/own")
    assert h["x-own"] == ["o"] and "x-from-server" not in h


def test_hop_by_hop_request_headers_removed(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, "location / { proxy_pass http://127.0.0.1:%d; }" % e.port)
    _, h, _ = echoed(port, "/", headers=[
        ("Connection", "X-Foo, keep-alive"), ("X-Foo", "secret"), ("Keep-Alive", "300"),
        ("TE", "trailers"), ("Upgrade", "foo/1"), ("Proxy-Connection", "keep-alive"),
        ("Trailer", "X-T"), ("X-Other", "stays")])
    for gone in ["connection", "x-foo", "keep-alive", "te", "upgrade",
                 "proxy-connection", "trailer"]:
        assert gone not in h, (gone, h)
    assert h["x-other"] == ["stays"]


def test_hop_by_hop_response_headers_removed(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, "location / { proxy_pass http://127.0.0.1:%d; }" % e.port)
    r = get(port, "/", headers=[
        ("X-Echo-Header", "Connection: X-Bar"), ("X-Echo-Header", "X-Bar: 1"),
        ("X-Echo-Header", "Keep-Alive: timeout=5"),
        ("X-Echo-Header", "Proxy-Connection: keep-alive"),
        ("X-Echo-Header", "X-Kept: yes")])
    assert r.status == 200
    names = {k.lower() for k, _ in r.headers}
    assert "x-bar" not in names and "keep-alive" not in names
    assert "proxy-connection" not in names
    assert "x-bar" not in (r.header("Connection") or "").lower()
    assert r.header("X-Kept") == "yes"


def test_backend_server_and_date_replaced_like_nginx(start_proxy, start_echo):
    """nginx hides the backend's Server and Date and sends its own (checked
    against nginx 1.22: "Server: nginx/1.22.1"); so does streamgate."""
    e = start_echo()
    port = serve(start_proxy, "location / { proxy_pass http://127.0.0.1:%d; }" % e.port)
    r = get(port, "/", headers=[("X-Echo-Header", "Server: echo-srv"),
                                ("X-Echo-Header", "Date: Thu, 01 Jan 1970 00:00:00 GMT")])
    assert r.header_all("Server") == ["streamgate"]
    dates = r.header_all("Date")
    assert len(dates) == 1 and "1970" not in dates[0]


def test_map_variable_in_proxy_set_header(start_proxy, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location / { proxy_pass http://127.0.0.1:%d; proxy_set_header X-Tier $tier; }
""" % e.port, http_extra="""
  map $http_x_tier $tier {
    default std;
    gold    premium;
    ~^s     silver;
  }
""")
    for sent, want in [(None, "std"), ("gold", "premium"), ("silver-ish", "silver"),
                       ("bronze", "std")]:
        hdr = {"X-Tier": sent} if sent else None
        _, h, _ = echoed(port, "/", headers=hdr)
        assert h["x-tier"] == [want], (sent, h.get("x-tier"))


# ---------------------------------------------------------------- routing

LOCATIONS = r"""
    location = /exact { return 200 "exact"; }
    location ^~ /static/ { return 200 "static"; }
    location ~ \.php$ { return 200 "php"; }
    location ~* \.jpg$ { return 200 "jpg"; }
    location /static/long/ { return 200 "long"; }
    location /docs/ {
      location ~ \.txt$ { return 200 "docs-txt"; }
      return 200 "docs";
    }
    location ~ ^/r/ { return 200 "r1"; }
    location ~ ^/r/x { return 200 "r2"; }
    location / { return 200 "root"; }
"""


LOCATION_CASES = [
    ("/exact", "exact"), ("/exact/", "root"), ("/exactly", "root"),
    ("/static/a.php", "static"), ("/static/long/a.php", "php"),
    ("/static/long/a.html", "long"), ("/x/a.php", "php"), ("/x/A.JPG", "jpg"),
    ("/x/a.PHP", "root"), ("/docs/a.txt", "docs-txt"), ("/docs/a.php", "php"),
    ("/docs/a", "docs"), ("/r/x", "r1"), ("/other", "root"), ("/exact?q=1", "exact"),
]


def test_location_matching_order(start_proxy):
    """=, then the longest prefix; ^~ stops regexes; nested regexes first, then
    regexes in file order; else the longest prefix."""
    port = serve(start_proxy, LOCATIONS)
    got = []
    with HttpConn(port) as c:
        for path, _ in LOCATION_CASES:
            r = c.request("GET", path)
            got.append((path, r.text if r.status == 200 else r.status))
    assert got == LOCATION_CASES


def test_no_matching_location_is_404(start_proxy):
    port = serve(start_proxy, 'location /api/ { return 200 "api"; }')
    assert get(port, "/api/x").status == 200
    r = get(port, "/other")
    assert r.status == 404
    assert b"404" in r.body


SERVERS = r"""
  server { listen 127.0.0.1:%(p)d; server_name first.test; return 200 "first"; }
  server { listen 127.0.0.1:%(p)d default_server; server_name _; return 200 "default"; }
  server { listen 127.0.0.1:%(p)d; server_name example.com www.example.com; return 200 "exact"; }
  server { listen 127.0.0.1:%(p)d; server_name *.example.com; return 200 "lead"; }
  server { listen 127.0.0.1:%(p)d; server_name mail.*; return 200 "trail"; }
  server { listen 127.0.0.1:%(p)d; server_name ~^api\d+\.test$; return 200 "regex"; }
  server { listen 127.0.0.1:%(p)d; server_name .dot.test; return 200 "dot"; }
"""


def test_server_name_selection(start_proxy):
    port = free_port()
    start_proxy(http_conf(SERVERS % {"p": port}))
    cases = [("example.com", "exact"), ("EXAMPLE.COM:%d" % port, "exact"),
             ("www.example.com", "exact"), ("a.b.example.com", "lead"),
             ("mail.example.com", "lead"), ("mail.foo.org", "trail"),
             ("api12.test", "regex"), ("dot.test", "dot"), ("x.dot.test", "dot"),
             ("first.test", "first"), ("nothing.test", "default")]
    with HttpConn(port) as c:
        for host, want in cases:
            r = c.request("GET", "/", headers={"Host": host})
            assert (r.status, r.text) == (200, want), host
    # HTTP/1.0 without Host: the default server.
    r = get(port, "/", version="HTTP/1.0", host=None)
    assert (r.status, r.text) == (200, "default")


def test_first_server_is_default_without_default_server(start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; server_name one.test; return 200 "one"; }
  server { listen 127.0.0.1:%d; server_name two.test; return 200 "two"; }
""" % (port, port)))
    assert get(port, "/", headers={"Host": "zzz.test"}).text == "one"
    assert get(port, "/", headers={"Host": "two.test"}).text == "two"


# ---------------------------------------------------------------- return, errors

def test_return(start_proxy):
    port = serve(start_proxy, """
    location /text { return 200 "hello $uri"; }
    location /moved { return 301 https://example.com/x; }
    location /rel { return 302 /target; }
    location /url { return http://example.com/; }
    location /forbidden { return 403; }
""")
    r = get(port, "/text")
    assert (r.status, r.text) == (200, "hello /text")
    r = get(port, "/moved")
    assert r.status == 301 and r.header("Location") == "https://example.com/x"
    r = get(port, "/rel")
    assert r.status == 302
    assert r.header("Location") == "http://127.0.0.1:%d/target" % port
    r = get(port, "/url")
    assert r.status == 302 and r.header("Location") == "http://example.com/"
    r = get(port, "/forbidden")
    assert r.status == 403 and b"403" in r.body


def test_error_page_named_location(start_proxy):
    port = serve(start_proxy, """
    location /missing { error_page 404 = @fallback; return 404; }
    location @fallback { return 200 "fallback"; }
""")
    r = get(port, "/missing")
    assert (r.status, r.text) == (200, "fallback")


def test_error_page_with_code_on_upstream_failure(start_proxy):
    closed = free_port()
    port = serve(start_proxy, """
    location /gone { proxy_pass http://127.0.0.1:%d; error_page 502 =503 /maint; }
    location = /maint { return 200 "maintenance"; }
""" % closed)
    r = get(port, "/gone")
    assert (r.status, r.text) == (503, "maintenance")


def test_error_page_internal_location_like_grpc_seeds(start_proxy):
    """The shape of seeds 05/06 over HTTP/1.1: 502 → internal location → 204."""
    closed = free_port()
    port = serve(start_proxy, """
    location / { proxy_pass http://127.0.0.1:%d; error_page 502 = /err502; }
    location = /err502 {
      internal;
      default_type application/grpc;
      add_header grpc-status 14;
      add_header grpc-message "unavailable";
      return 204;
    }
""" % closed)
    r = get(port, "/svc/Method")
    assert r.status == 204 and r.body == b""
    assert r.header("grpc-status") == "14"
    assert r.header("grpc-message") == "unavailable"
    # internal: not reachable from outside.
    assert get(port, "/err502").status == 404


def test_proxy_intercept_errors(start_proxy, backend):
    port = serve(start_proxy, """
    location /i/ { proxy_pass http://127.0.0.1:%d/; proxy_intercept_errors on;
                   error_page 404 = @nf; }
    location /p/ { proxy_pass http://127.0.0.1:%d/; error_page 404 = @nf; }
    location @nf { return 200 "intercepted"; }
""" % (backend.port, backend.port))
    assert get(port, "/i/status/404").text == "intercepted"
    r = get(port, "/p/status/404")
    assert r.status == 404 and r.text != "intercepted"


def test_add_header(start_proxy):
    port = serve(start_proxy, """
    add_header X-Server-Level s;
    location /ok { add_header X-A 1; add_header X-B 2 always; return 200 "ok"; }
    location /nf { add_header X-A 1; add_header X-B 2 always; return 404; }
    location /inherit { return 200 "i"; }
""")
    r = get(port, "/ok")
    assert r.header("X-A") == "1" and r.header("X-B") == "2"
    assert r.header("X-Server-Level") is None  # location-level add_header replaces
    r = get(port, "/nf")
    assert r.status == 404
    assert r.header("X-A") is None and r.header("X-B") == "2"
    assert get(port, "/inherit").header("X-Server-Level") == "s"


def test_add_header_on_proxied_response(start_proxy, backend):
    port = serve(start_proxy, """
    location / { proxy_pass http://127.0.0.1:%d; add_header X-Proxied yes; }
""" % backend.port)
    assert get(port, "/").header("X-Proxied") == "yes"
    assert get(port, "/status/500").header("X-Proxied") is None


# ---------------------------------------------------------------- static files

def test_root_and_index(start_proxy, tmp_path):
    prefix = tmp_path / "static"
    (prefix / "html" / "sub").mkdir(parents=True)
    (prefix / "html" / "index.html").write_text("<h1>home</h1>\n")
    (prefix / "html" / "sub" / "index.htm").write_text("sub index\n")
    (prefix / "html" / "a.txt").write_text("a" * 1000)
    port = serve(start_proxy, """
    location / { root html; index index.html index.htm; }
""", prefix=prefix)
    assert get(port, "/").body == b"<h1>home</h1>\n"
    assert get(port, "/sub/").body == b"sub index\n"
    r = get(port, "/a.txt")
    assert r.status == 200 and r.body == b"a" * 1000
    r = get(port, "/a.txt", method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "1000" and r.body == b""
    r = get(port, "/sub")
    assert r.status == 301 and r.header("Location").endswith("/sub/")
    assert get(port, "/nope.txt").status == 404
    assert get(port, "/../secret").status in (400, 404)


# ---------------------------------------------------------------- HTTP/1.1 framing

def test_head_through_proxy(start_proxy, backend, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location / { proxy_pass http://127.0.0.1:%d; }
    location /echo/ { proxy_pass http://127.0.0.1:%d; }
""" % (backend.port, e.port))
    with HttpConn(port) as c:
        r = c.request("HEAD", "/bytes/100")
        assert r.status == 200 and r.header("Content-Length") == "100"
        r = c.request("GET", "/bytes/7")  # framing intact after HEAD
        assert len(r.body) == 7
    get(port, "/echo/h", method="HEAD")
    assert e.heads[-1].startswith(b"HEAD /echo/h HTTP/1.1\r\n")


def test_204_and_304_have_no_body(start_proxy, backend):
    port = serve(start_proxy, "location / { proxy_pass http://127.0.0.1:%d; }" % backend.port)
    with HttpConn(port) as c:
        for code in (204, 304, 204):
            r = c.request("GET", "/status/%d" % code)
            assert r.status == code
            assert r.header("Content-Length") in (None, "0")
            assert r.header("Transfer-Encoding") is None
        assert c.buf == b""
        assert len(c.request("GET", "/bytes/3").body) == 3


def test_expect_100_continue(start_proxy, backend):
    port = serve(start_proxy, "location / { proxy_pass http://127.0.0.1:%d; }" % backend.port)
    body = b"z" * 100000
    with HttpConn(port) as c:
        c.send(build_request("POST", "/sink", {"Expect": "100-continue",
                                               "Content-Length": str(len(body))}))
        interim = c.read_response(skip_interim=False)
        assert interim.status == 100
        c.send(body)
        r = c.read_response()
        assert (r.status, r.body) == (200, b"received 100000\n")


def test_chunked_request_forwarded_chunked(start_proxy, start_echo, backend):
    e = start_echo()
    port = serve(start_proxy, """
    location /e/ { proxy_pass http://127.0.0.1:%d; }
    location / { proxy_pass http://127.0.0.1:%d; }
""" % (e.port, backend.port))
    with HttpConn(port) as c:
        r = c.request("POST", "/e/", body=[b"hello ", b"chunked ", b"world"], chunked=True)
        line, hdrs, body = head_of(r)
        names = {k.lower(): v for k, v in hdrs}
        assert names.get("transfer-encoding", "").lower() == "chunked"
        assert "content-length" not in names
        assert body == b"hello chunked world"
        r = c.request("POST", "/echo", body=[b"a" * 70000, b"b" * 3], chunked=True)
        assert r.body == b"a" * 70000 + b"bbb"


def test_chunked_response_with_trailer(start_proxy, backend):
    port = serve(start_proxy, "location / { proxy_pass http://127.0.0.1:%d; }" % backend.port)
    with HttpConn(port) as c:
        r = c.request("GET", "/bytes/100000?chunked=1")
        assert r.status == 200 and len(r.body) == 100000
        assert len(c.request("GET", "/bytes/5").body) == 5


def test_pipelined_requests_answered_in_order(start_proxy, backend, start_echo):
    e = start_echo()
    port = serve(start_proxy, """
    location / { proxy_pass http://127.0.0.1:%d; }
    location /e/ { proxy_pass http://127.0.0.1:%d; }
""" % (backend.port, e.port))
    with HttpConn(port) as c:
        c.send(build_request("GET", "/delay/300") + build_request("GET", "/bytes/5") +
               build_request("GET", "/bytes/7"))
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
        assert [r1.status, r2.status, r3.status] == [200, 200, 200]
        assert (len(r2.body), len(r3.body)) == (5, 7)
        c.send(b"".join(build_request("GET", "/e/%d" % i) for i in range(10)))
        lines = [head_of(c.read_response())[0] for _ in range(10)]
        assert lines == ["GET /e/%d HTTP/1.1" % i for i in range(10)]
        assert not c.is_closed(0.1)


def test_proxy_redirect_default_points_redirects_back_at_the_proxy(start_proxy, start_echo):
    """Checked side by side with nginx 1.22: a Location built from the
    address the proxy used ($proxy_host + the proxy_pass URI) is turned back
    into this location on the proxy; others pass unchanged; `off` keeps all."""
    e = start_echo()
    port = serve(start_proxy, """
    location / { proxy_pass http://127.0.0.1:%d; }
    location /one/ { proxy_pass http://127.0.0.1:%d/two/; }
    location /off/ { proxy_pass http://127.0.0.1:%d; proxy_redirect off; }
""" % (e.port, e.port, e.port))
    be = "http://127.0.0.1:%d" % e.port

    def location(path, value):
        return get(port, path, headers=[("X-Echo-Header", "Location: " + value)]).header("Location")

    assert location("/a", be + "/x/y") == "http://127.0.0.1:%d/x/y" % port
    assert location("/a", "/relative") == "/relative"
    assert location("/one/z", be + "/two/zz") == "http://127.0.0.1:%d/one/zz" % port
    assert location("/a", "http://example.com/elsewhere") == "http://example.com/elsewhere"
    assert location("/off/a", be + "/x") == be + "/x"
