"""nginx's rewrite module as a user meets it: `if` with every kind of
condition, `set` variables in responses, headers sent upstream and log
lines, `rewrite` with its flags and argument rules, `break`, `return` in
the rewrite phase's order, the 10-search limit, `if` blocks whose
directives apply when the condition holds, limit_except, and the errors
`-t` gives for a bad block."""

import http.server
import os
import threading

import pytest

import sgtest
from sgtest import HttpConn, free_port, http_conf


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers with the request line's target and the X-Set header."""

    def do_GET(self):
        body = ("target=%s x-set=%s" % (self.path, self.headers.get("X-Set", ""))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def echo():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def req(port, path, method="GET", headers=None):
    with HttpConn(port) as c:
        return c.request(method, path, headers=headers or {})


@pytest.fixture
def proxy(start_proxy, echo, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "file").write_text("x")
    (tmp_path / "docs" / "dir").mkdir()
    port = free_port()
    conf = http_conf("""
  log_format rw '$uri $who';
  server {
    listen 127.0.0.1:%(port)d;
    access_log logs/rw.log rw;
    set $who nobody;
    if ($http_x_block) { return 403; }
    rewrite ^/old/(.*)$ /new/$1;
    location /new/ { return 200 "new:$uri args:$args"; }

    location /cond/var { if ($arg_c) { return 204; } return 200 "false"; }
    location /cond/eq { if ($arg_c = yes) { return 204; } if ($arg_c != yes) { return 200 "ne"; } }
    location /cond/re { if ($arg_c ~ ^(\\w+)-(?<num>\\d+)$) { return 200 "1=$1 num=$num"; } return 200 "no"; }
    location /cond/rei { if ($arg_c ~* ^abc$) { return 204; } return 200 "no"; }
    location /cond/nre { if ($arg_c !~ ^abc$) { return 204; } return 200 "no"; }
    location /cond/file { if (-f %(docs)s/$arg_c) { return 200 "file"; }
                          if (-d %(docs)s/$arg_c) { return 200 "dir"; }
                          if (!-e %(docs)s/$arg_c) { return 200 "none"; } return 200 "other"; }

    location /set { set $who "user-$arg_n"; return 200 "who=$who"; }
    location /setargs { set $args "a=$arg_b"; proxy_pass http://127.0.0.1:%(echo)d; }
    location /set/proxy { set $who "p-$arg_n"; proxy_set_header X-Set $who; proxy_pass http://127.0.0.1:%(echo)d; }

    location /last { rewrite ^/last(.*)$ /new$1 last; return 500; }
    location /brk { rewrite ^/brk/(.*)$ /target/$1 break; proxy_pass http://127.0.0.1:%(echo)d/ignored/; }
    location /noflag { rewrite ^ /new/noflag; set $who after; }
    location /args { rewrite ^ /new/a?x=1; }
    location /dropargs { rewrite ^ /new/d?; }
    location /red { rewrite ^/red/(.*)$ /new/$1 redirect; }
    location /perm { rewrite ^ http://example.com/p permanent; }
    location /abs { rewrite ^ https://example.com/abs; }
    location /loop { rewrite ^ /loop2 last; }
    location /loop2 { rewrite ^ /loop last; }
    location /order { return 200 "first"; rewrite ^ /new/ last; }
    location /brkdir { break; return 200 "not reached"; }

    location /ifblock {
      proxy_pass http://127.0.0.1:%(echo)d;
      if ($arg_h) { add_header X-If yes; }
    }
    location /lim {
      limit_except GET { deny all; }
      proxy_pass http://127.0.0.1:%(echo)d;
    }
    location /err { error_page 404 /errpage; return 404; }
    location /errpage { rewrite ^ /new/from-error last; }
  }
""" % {"port": port, "echo": echo, "docs": tmp_path / "docs"})
    return start_proxy(conf)


def test_variable_condition(proxy):
    assert req(proxy.port, "/cond/var?c=1").status == 204
    assert req(proxy.port, "/cond/var?c=0").text == "false"
    assert req(proxy.port, "/cond/var").text == "false"


def test_comparisons(proxy):
    assert req(proxy.port, "/cond/eq?c=yes").status == 204
    assert req(proxy.port, "/cond/eq?c=no").text == "ne"


def test_regex_conditions_and_captures(proxy):
    assert req(proxy.port, "/cond/re?c=abc-42").text == "1=abc num=42"
    assert req(proxy.port, "/cond/re?c=abc").text == "no"
    assert req(proxy.port, "/cond/rei?c=ABC").status == 204
    assert req(proxy.port, "/cond/nre?c=abd").status == 204
    assert req(proxy.port, "/cond/nre?c=abc").text == "no"


def test_file_conditions(proxy):
    assert req(proxy.port, "/cond/file?c=file").text == "file"
    assert req(proxy.port, "/cond/file?c=dir").text == "dir"
    assert req(proxy.port, "/cond/file?c=missing").text == "none"


def test_set_variable_in_response_header_and_log(proxy):
    assert req(proxy.port, "/set?n=7").text == "who=user-7"
    r = req(proxy.port, "/set/proxy?n=8")
    assert r.status == 200 and r.text.endswith("x-set=p-8")
    log = proxy.prefix / "logs" / "rw.log"
    sgtest.wait_for(lambda: log.exists() and "/set user-7" in log.read_text(), what="access log line")
    # a server-level `set` is the value every location starts with
    req(proxy.port, "/new/plain")
    sgtest.wait_for(lambda: "/new/plain nobody" in log.read_text(), what="server-level set in the log")


def test_set_args_changes_what_is_proxied(proxy):
    r = req(proxy.port, "/setargs?b=2&c=3")
    assert r.status == 200 and r.text.startswith("target=/setargs?a=2 ")


def test_server_level_if_and_rewrite(proxy):
    assert req(proxy.port, "/new/x", headers={"X-Block": "1"}).status == 403
    r = req(proxy.port, "/old/thing?q=1")
    assert r.status == 200 and r.text == "new:/new/thing args:q=1"


def test_last_searches_again(proxy):
    assert req(proxy.port, "/last/abc").text == "new:/new/abc args:"


def test_break_stays_and_proxies_the_new_uri(proxy):
    r = req(proxy.port, "/brk/z?k=v")
    # nginx: after `rewrite ... break`, proxy_pass's URI part no longer replaces the prefix
    assert r.status == 200 and r.text.startswith("target=/target/z?k=v")


def test_rewrite_without_flag_runs_the_rest_then_searches(proxy, tmp_path):
    assert req(proxy.port, "/noflag").text == "new:/new/noflag args:"


def test_args_appended_or_dropped(proxy):
    assert req(proxy.port, "/args?o=2").text == "new:/new/a args:x=1&o=2"
    assert req(proxy.port, "/dropargs?o=2").text == "new:/new/d args:"


def test_redirects(proxy):
    r = req(proxy.port, "/red/q?a=b")
    assert r.status == 302 and r.header("Location").endswith("/new/q?a=b")
    assert r.header("Location").startswith("http://")
    r = req(proxy.port, "/perm?z=1")
    assert r.status == 301 and r.header("Location") == "http://example.com/p?z=1"
    r = req(proxy.port, "/abs")
    assert r.status == 302 and r.header("Location") == "https://example.com/abs"


def test_rewrite_cycle_is_500_with_a_log_line(proxy):
    assert req(proxy.port, "/loop").status == 500
    sgtest.wait_for(lambda: "rewrite or internal redirection cycle" in proxy.error_log, what="cycle error line")


def test_directives_run_in_written_order(proxy):
    assert req(proxy.port, "/order").text == "first"
    # `break` stops the rewrite directives: the return after it never runs
    assert req(proxy.port, "/brkdir").status == 404


def test_if_block_directives_apply_when_true(proxy):
    r = req(proxy.port, "/ifblock?h=1")
    assert r.status == 200 and r.header("X-If") == "yes" and r.text.startswith("target=/ifblock?h=1")
    r = req(proxy.port, "/ifblock")
    assert r.status == 200 and r.header("X-If") is None


def test_limit_except(proxy):
    assert req(proxy.port, "/lim").text.startswith("target=/lim")
    assert req(proxy.port, "/lim", method="HEAD").status == 200
    assert req(proxy.port, "/lim", method="POST").status == 403


def test_error_page_target_runs_the_rewrite_phases(proxy):
    r = req(proxy.port, "/err")
    assert r.status == 404 and r.text == "new:/new/from-error args:"


@pytest.mark.parametrize("body, message", [
    ("location / { if ($a) { location /x {} } }", '"location" directive is not allowed here'),
    ("location / { if ($a) { if ($b) {} } }", '"if" directive is not allowed here'),
    ("location / { if (a) { } }", 'invalid condition "a"'),
    ("location / { if ($a ~ \"(\") { } }", "pcre2_compile() failed"),
    ("location / { rewrite ^ /x bogus; }", 'invalid parameter "bogus"'),
    ("location / { set x 1; }", 'invalid variable name "x"'),
    ("location / { set $uri 1; }", 'the duplicate "uri" variable'),
    ("if ($a) { proxy_pass http://127.0.0.1:1; }", '"proxy_pass" directive is not allowed here'),
    ("location / { limit_except GET { return 403; } }", '"return" directive is not allowed here'),
])
def test_bad_blocks_are_refused(tmp_path, body, message):
    conf = tmp_path / "a.conf"
    conf.write_text(http_conf("server { listen 127.0.0.1:1; set $a 1; set $b 2; %s }" % body))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "a.conf:" in r.stderr
