"""nginx's header controls through streamgate (issue 9): proxy_hide_header
and proxy_pass_header over the fields nginx hides by default, expires in
every form, add_trailer on a chunked HTTP/1.1 body, the Location of the
redirects streamgate makes itself (absolute_redirect, port_in_redirect,
server_name_in_redirect, a proxied prefix's slash), alias, limit_except,
listen port ranges, access_log if= and a log path with variables, and
keepalive_disable.

The backend is a second server of the same streamgate process, reached
over loopback; the client is a raw HTTP/1.1 socket (sgtest.HttpConn), so
the checks read the exact fields on the wire."""

import re
import socket

from sgtest import HttpConn, free_ports, get, http_conf, run_streamgate


def start(start_proxy, server_body, backend_body="", http_extra="", nports=2):
    """A proxy server (first port) and a backend server (second port)."""
    ports = free_ports(nports)
    conf = http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
    server_name front;
%s
  }
  server {
    listen 127.0.0.1:%d;
    server_name back;
%s
  }
""" % (http_extra, ports[0], server_body % {"back": ports[1]}, ports[1], backend_body))
    proxy = start_proxy(conf)
    return ports[0], proxy


BACKEND = """
    location / {
      add_header X-Pad pad;
      add_header X-Secret secret;
      add_header X-Accel-Expires 10;
      add_header X-Kept kept;
      add_header Last-Modified "Mon, 28 Sep 1970 06:00:00 GMT";
      return 200 "backend";
    }
"""


def test_hidden_and_passed_upstream_fields(start_proxy):
    port, _ = start(start_proxy, """
    location / {
      proxy_pass http://127.0.0.1:%(back)d;
      proxy_hide_header X-Secret;
      location /pass {
        proxy_pass http://127.0.0.1:%(back)d;
        proxy_pass_header X-Pad;
      }
    }
""", BACKEND)
    r = get(port, "/")
    assert r.status == 200 and r.body == b"backend"
    assert r.header("X-Kept") == "kept"
    # hidden by proxy_hide_header, and by nginx's defaults (X-Pad, X-Accel-*)
    for name in ("X-Secret", "X-Pad", "X-Accel-Expires"):
        assert r.header(name) is None, name
    r = get(port, "/pass")
    assert r.header("X-Pad") == "pad"
    assert r.header("X-Secret") is None        # the nested location inherits the hidden list


def test_expires_forms(start_proxy):
    port, _ = start(start_proxy, """
    location /epoch { expires epoch; return 200; }
    location /max { expires max; return 200; }
    location /hour { expires 1h; return 200; }
    location /negative { expires -1; return 200; }
    location /off { expires off; return 200; }
    location /var { expires $arg_e; return 200; }
    location /daily { expires @15h30m; return 200; }
    location /error { expires 1h; return 404; }
    location /modified { expires modified 1h; proxy_pass http://127.0.0.1:%(back)d; }
""", BACKEND)
    r = get(port, "/epoch")
    assert r.header("Expires") == "Thu, 01 Jan 1970 00:00:01 GMT"
    assert r.header("Cache-Control") == "no-cache"
    r = get(port, "/max")
    assert r.header("Expires") == "Thu, 31 Dec 2037 23:55:55 GMT"
    assert r.header("Cache-Control") == "max-age=315360000"
    assert get(port, "/hour").header("Cache-Control") == "max-age=3600"
    assert get(port, "/negative").header("Cache-Control") == "no-cache"
    r = get(port, "/off")
    assert r.header("Expires") is None and r.header("Cache-Control") is None
    assert get(port, "/var?e=30").header("Cache-Control") == "max-age=30"
    assert get(port, "/var?e=bad").header("Expires") is None
    assert get(port, "/var").header("Expires") is None
    assert re.search(r" 15:30:00 GMT$|:30:00 GMT$", get(port, "/daily").header("Expires"))
    assert get(port, "/error").header("Expires") is None   # not for a 404
    # modified: the backend's Last-Modified plus an hour
    r = get(port, "/modified")
    assert r.header("Expires") == "Mon, 28 Sep 1970 07:00:00 GMT"
    assert r.header("Cache-Control") == "no-cache"          # long past


def test_add_trailer_on_a_chunked_body(start_proxy):
    port, _ = start(start_proxy, """
    location /t {
      add_trailer X-Trailer one;
      add_trailer X-Trailer two;
      add_trailer X-Sent $sent_trailer_x_trailer;
      return 200 "body";
    }
    location /err { add_trailer X-Trailer one; return 404 "nope"; }
    location /always { add_trailer X-Trailer one always; return 404 "nope"; }
""")
    with HttpConn(port) as c:
        r = c.request("GET", "/t")
        assert r.status == 200 and r.body == b"body" and r.chunked
        assert r.trailers == [("X-Trailer", "one"), ("X-Trailer", "two"), ("X-Sent", "one, two")]
        r = c.request("GET", "/err")          # the connection stays usable
        assert r.status == 404 and not r.trailers
        r = c.request("GET", "/always")
        assert r.trailers == [("X-Trailer", "one")]


def test_redirect_locations(start_proxy):
    ports = free_ports(2)
    port = ports[0]
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    server_name named.example;
    location /abs { return 301 /to; }
    location /rel { absolute_redirect off; return 302 /to; }
    location /noport { port_in_redirect off; return 301 /to; }
    location /name { server_name_in_redirect on; return 301 /to; }
    location /p/ { proxy_pass http://127.0.0.1:%d/; }
    location "/sp ace/" { proxy_pass http://127.0.0.1:%d/; }
  }
  server { listen 127.0.0.1:%d; return 200 "back $uri"; }
""" % (port, ports[1], ports[1], ports[1])))
    host = {"Host": "client.example"}
    assert get(port, "/abs", headers=host).header("Location") == "http://client.example:%d/to" % port
    assert get(port, "/rel", headers=host).header("Location") == "/to"
    assert get(port, "/noport", headers=host).header("Location") == "http://client.example/to"
    assert get(port, "/name", headers=host).header("Location") == "http://named.example:%d/to" % port
    # the prefix of a proxied location, without its slash: 301 to it, arguments kept
    r = get(port, "/p?a=b", headers=host)
    assert r.status == 301
    assert r.header("Location") == "http://client.example:%d/p/?a=b" % port
    # its Location is the request's URI escaped, as nginx's
    r = get(port, "/sp%20ace", headers=host)
    assert r.status == 301
    assert r.header("Location") == "http://client.example:%d/sp%%20ace/" % port
    assert get(port, "/p/x").body == b"back /x"


def test_alias_and_directory_redirect(start_proxy, tmp_path):
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alias file")
    ports = free_ports(1)
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location /i/ { alias %s/; }
  }
""" % (ports[0], root)))
    r = get(ports[0], "/i/a.txt")
    assert r.status == 200 and r.body == b"alias file"
    assert r.header("Last-Modified")
    r = get(ports[0], "/i/sub?x=1")
    assert r.status == 301
    assert r.header("Location").endswith("/i/sub/?x=1")
    assert get(ports[0], "/i/missing").status == 404


def test_limit_except_deny_all(start_proxy):
    port, _ = start(start_proxy, """
    location / {
      limit_except GET { deny all; }
      return 200 "ok";
    }
""")
    assert get(port, "/").status == 200
    assert get(port, "/", method="HEAD").status == 200      # GET allows HEAD
    assert get(port, "/", method="POST", body=b"x").status == 403
    assert get(port, "/", method="DELETE").status == 403


def test_listen_port_range_and_socket_options(start_proxy):
    # two adjacent free ports for the range
    for _ in range(50):
        p = free_ports(1)[0]
        if p < 65535 and not _busy(p + 1):
            break
    conf = http_conf("""
  server {
    listen 127.0.0.1:%d-%d sndbuf=64k rcvbuf=64k so_keepalive=30s:10s:3;
    return 200 "port $server_port";
  }
""" % (p, p + 1))
    start_proxy(conf, ports=[p, p + 1])
    assert get(p, "/").body == b"port %d" % p
    assert get(p + 1, "/").body == b"port %d" % (p + 1)


def _busy(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def test_access_log_if_and_variable_paths(start_proxy, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    ports = free_ports(1)
    proxy = start_proxy(http_conf("""
  log_format short "$uri $status";
  server {
    listen 127.0.0.1:%d;
    location /cond { access_log %s/cond.log short if=$arg_log; return 200; }
    location /var { access_log %s/var_${arg_name}.log short; return 200; }
  }
""" % (ports[0], logs, logs)))
    for q in ("/cond?log=1", "/cond", "/cond?log=0", "/cond?log=yes"):
        assert get(ports[0], q).status == 200
    get(ports[0], "/var?name=a")
    get(ports[0], "/var?name=b")
    # /var opens its file for each line: both are there at once
    assert (logs / "var_a.log").read_text() == "/var 200\n"
    assert (logs / "var_b.log").read_text() == "/var 200\n"
    proxy.stop()                        # the buffered log is written out at exit
    assert (logs / "cond.log").read_text() == "/cond 200\n/cond 200\n"


def test_keepalive_disable(start_proxy):
    port, _ = start(start_proxy, """
    location / { return 200 "ok"; }
    location /safari { keepalive_disable safari; return 200 "ok"; }
""")
    msie = {"User-Agent": "Mozilla/4.0 (compatible; MSIE 5.0)"}
    with HttpConn(port) as c:
        r = c.request("POST", "/", headers=msie, body=b"x")
        assert r.header("Connection") == "close"
    with HttpConn(port) as c:
        assert c.request("GET", "/", headers=msie).header("Connection") == "keep-alive"
    safari = {"User-Agent": "Mozilla/5.0 (Macintosh; Mac OS X 10_7) Safari/7534.48.3"}
    with HttpConn(port) as c:
        assert c.request("GET", "/safari", headers=safari).header("Connection") == "close"


def test_duplicate_unique_fields_and_invalid_names(start_proxy):
    port, _ = start(start_proxy, """
    location / { return 200 "[$http_x_ok]"; }
    location /u { return 200 "[$http_x_ok]"; }
""")
    r = get(port, "/", headers=[("If-Match", "a"), ("If-Match", "b")])
    assert r.status == 400
    r = get(port, "/", headers=[("X-Ok", "1"), ("X.Bad", "2")])
    assert r.status == 200 and r.body == b"[1]"


def test_lingering_and_pool_sizes_accepted_with_notice(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text(http_conf("""
  connection_pool_size 512; request_pool_size 4k;
  server { listen 127.0.0.1:1; lingering_close always; lingering_time 30s; lingering_timeout 5s;
           keepalive_time 1h; early_hints $http2; }
"""))
    p = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert p.returncode == 0, p.stderr
    assert "\"lingering_close\" is accepted and has no effect" in p.stderr
    assert "\"early_hints\" is accepted and has no effect" in p.stderr


def test_grpc_hide_header_and_add_trailer(h2c_backends, start_proxy, grpc_channels):
    """grpc_hide_header takes a field of the backend's head away from a
    real gRPC client; add_trailer joins the backend's grpc-status trailers."""
    import pytest
    grpc = pytest.importorskip("grpc")
    from sgtest import SLOW, grpc_conf, grpc_msg
    (bport,) = h2c_backends(1)
    conf, port = grpc_conf([bport], location_extra="grpc_hide_header X-Backend; add_trailer x-added yes;")
    start_proxy(conf)
    echo = grpc_channels(port).unary_unary("/chat.Chat/Echo")
    resp, call = echo.with_call(grpc_msg("hi"), timeout=5 * SLOW)
    assert resp == grpc_msg("hi") and call.code() == grpc.StatusCode.OK
    assert "x-backend" not in dict(call.initial_metadata())
    assert dict(call.trailing_metadata()).get("x-added") == "yes"
