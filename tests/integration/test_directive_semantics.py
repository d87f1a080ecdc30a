"""Directives that behave as nginx's do (each checked side by side with
nginx 1.22 in review): types, map regexes on empty values, error_page URIs,
refusing what would not be honoured, a server's own error_log."""

from sgtest import free_port, get, http_conf


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
        ("log_format x '$tcpinfo_rtt'; server { listen 127.0.0.1:%d; access_log logs/x x; }"
         % free_port(), 'variable "$tcpinfo_rtt" is not supported yet'),
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
