"""Access log: log_format variables, escaping, predefined formats, off, reopen.

Lines must be exactly what nginx writes.  Each test states the expected line
and also runs the Debian nginx (nginx-light, installed by
scripts/install-deps.sh; missing, or failing to start, fails the test) with
the same http{} block and the same requests against the same sgback and
compares the lines (after masking the clock: $time_*, $request_time).
"""

import os
import re
import signal
import time

import pytest

from sgtest import (HttpConn, build_request, free_port, get, http_conf,
                    run_streamgate, wait_for, SLOW)

TIME_LOCAL = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"
TIME_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
REQ_TIME = r"\d+\.\d{3}"


def mask(line):
    """Replace clock-dependent fields with fixed tokens."""
    line = re.sub(TIME_LOCAL, "[TIME]", line)
    line = re.sub(TIME_ISO, "ISOTIME", line)
    line = re.sub(r"rt=" + REQ_TIME, "rt=X", line)
    return line


@pytest.fixture
def nginx_peer(start_nginx):
    """nginx_peer(body) -> started sgtest.Nginx running http{body} with @PORT@
    a free port (.port); fails when nginx is missing or does not start."""
    def start(body):
        port = free_port()
        n = start_nginx(http_conf(body.replace("@PORT@", str(port))), [port])
        n.port = port
        return n
    return start


def wait_pid_file(p):
    """`-s SIGNAL` reads the pid file: wait until it names the running process."""
    def ok():
        try:
            return p.pid_file.read_text().strip() == str(p.pid)
        except OSError:
            return False
    wait_for(ok, 5, what="pid file %s" % p.pid_file)


def read_lines(path):
    return path.read_text(errors="surrogateescape").splitlines() if path.exists() else []


def run_case(start_proxy, nginx_peer, body, send, logs):
    """Run `send(port)` against streamgate (then stop it: flush) and nginx.

    body: http{} contents with @PORT@ for the listen port.  Returns
    {log name: (streamgate lines, nginx lines)}.
    """
    port = free_port()
    # One thread: lines of different connections keep their order (each
    # thread has its own buffer, so with several threads they may not).
    p = start_proxy(http_conf(body.replace("@PORT@", str(port)), main="worker_processes 1;"))
    send(port)
    p.stop()
    out = {name: [read_lines(p.prefix / "logs" / name), None] for name in logs}
    n = nginx_peer(body)
    send(n.port)
    n.stop()
    for name in logs:
        out[name][1] = read_lines(n.prefix / "logs" / name)
    return out


def same_as_nginx(out):
    for name, (sg, ng) in out.items():
        assert [mask(l) for l in sg] == [mask(l) for l in ng], \
            "%s differs from nginx:\nstreamgate: %r\nnginx:      %r" % (name, sg, ng)


# ---------------------------------------------------------------- formats

def test_custom_format_with_variables(backend, start_proxy, nginx_peer):
    body = """
  log_format t '$remote_addr "$request" $status $body_bytes_sent $upstream_addr '
               '$upstream_status rt=$request_time "$http_user_agent" $time_iso8601';
  server {
    listen 127.0.0.1:@PORT@;
    access_log logs/x.log t;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % backend.port

    def send(port):
        with HttpConn(port) as c:
            assert c.request("GET", "/bytes/5?q=1", headers={"User-Agent": "ua-test/1.0"}).status == 200
            assert c.request("GET", "/status/404", headers={"User-Agent": "ua-test/1.0"}).status == 404
    t0 = time.time()
    out = run_case(start_proxy, nginx_peer, body, send, ["x.log"])
    lines = out["x.log"][0]
    assert len(lines) == 2, lines
    b = backend.port
    assert re.fullmatch(r'127\.0\.0\.1 "GET /bytes/5\?q=1 HTTP/1\.1" 200 5 127\.0\.0\.1:%d 200 '
                        r'rt=%s "ua-test/1\.0" (%s)' % (b, REQ_TIME, TIME_ISO), lines[0]), lines[0]
    assert re.fullmatch(r'127\.0\.0\.1 "GET /status/404 HTTP/1\.1" 404 \d+ 127\.0\.0\.1:%d 404 '
                        r'rt=%s "ua-test/1\.0" %s' % (b, REQ_TIME, TIME_ISO), lines[1]), lines[1]
    # $time_iso8601 is the (local) time of the request, with its UTC offset.
    iso = lines[0].rsplit(" ", 1)[1]
    assert abs(iso_to_epoch(iso) - t0) < 5, iso
    same_as_nginx(out)


def iso_to_epoch(iso):
    import datetime
    return datetime.datetime.fromisoformat(iso).timestamp()


def test_request_time_measures_the_request(backend, start_proxy, nginx_peer):
    body = """
  log_format rt 'rt=$request_time';
  server {
    listen 127.0.0.1:@PORT@;
    access_log logs/rt.log rt;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % backend.port
    out = run_case(start_proxy, nginx_peer, body,
                   lambda port: get(port, "/delay/300"), ["rt.log"])
    [line] = out["rt.log"][0]
    assert re.fullmatch("rt=" + REQ_TIME, line), line
    assert 0.29 <= float(line[3:]) < 1.0 * SLOW, line


def test_escape_default_and_json(backend, start_proxy, nginx_peer):
    body = """
  log_format d 'ua=$http_user_agent ref=$http_referer';
  log_format j escape=json '{"ua":"$http_user_agent","ref":"$http_referer","req":"$request"}';
  log_format n escape=none 'ua=$http_user_agent';
  server {
    listen 127.0.0.1:@PORT@;
    access_log logs/d.log d;
    access_log logs/j.log j;
    access_log logs/n.log n;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % backend.port
    ua = 'a"b\\c\xe9~z\tq'

    def send(port):
        r = get(port, "/?x=%22", headers={"User-Agent": ua, "Referer": 'http://r/"x'})
        assert r.status == 200
    out = run_case(start_proxy, nginx_peer, body, send, ["d.log", "j.log", "n.log"])
    assert out["d.log"][0] == ['ua=a\\x22b\\x5Cc\\xE9~z\\x09q ref=http://r/\\x22x']
    assert out["j.log"][0] == ['{"ua":"a\\"b\\\\c\udce9~z\\tq","ref":"http://r/\\"x",'
                               '"req":"GET /?x=%22 HTTP/1.1"}']
    assert out["n.log"][0] == ['ua=a"b\\c\udce9~z\tq']
    same_as_nginx(out)


def test_empty_variables(backend, start_proxy, nginx_peer):
    """A missing header is "-" with default escaping and "" with escape=json."""
    body = """
  log_format d '[$http_referer][$remote_user][$http_x_none]';
  log_format j escape=json '[$http_referer][$remote_user][$http_x_none]';
  server {
    listen 127.0.0.1:@PORT@;
    access_log logs/d.log d;
    access_log logs/j.log j;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % backend.port
    out = run_case(start_proxy, nginx_peer, body, lambda port: get(port, "/"), ["d.log", "j.log"])
    assert out["d.log"][0] == ["[-][-][-]"]
    assert out["j.log"][0] == ["[][][]"]
    same_as_nginx(out)


def test_combined_and_main_are_predefined(backend, start_proxy, nginx_peer):
    body = """
  server {
    listen 127.0.0.1:@PORT@;
    access_log logs/c.log combined;
    access_log logs/m.log main;
    access_log logs/plain.log;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % backend.port
    # nginx itself predefines only "combined"; "main" is the format of nginx's
    # stock nginx.conf, which every seed config that says "main" relies on.
    nginx_body = body.replace("server {", """log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';
  server {""", 1)

    def send(port):
        r = get(port, "/bytes/7", headers={"User-Agent": "ua/2", "Referer": "http://ref/",
                                           "X-Forwarded-For": "10.1.2.3"})
        assert r.status == 200
    port = free_port()
    p = start_proxy(http_conf(body.replace("@PORT@", str(port))))
    send(port)
    p.stop()
    logs = p.prefix / "logs"
    combined = r'127\.0\.0\.1 - - %s "GET /bytes/7 HTTP/1\.1" 200 7 "http://ref/" "ua/2"' % TIME_LOCAL
    [c] = read_lines(logs / "c.log")
    assert re.fullmatch(combined, c), c
    [plain] = read_lines(logs / "plain.log")
    assert re.fullmatch(combined, plain), plain
    [m] = read_lines(logs / "m.log")
    assert re.fullmatch(combined + r' "10\.1\.2\.3"', m), m
    n = nginx_peer(nginx_body)
    send(n.port)
    n.stop()
    for name, line in (("c.log", c), ("m.log", m), ("plain.log", plain)):
        assert [mask(line)] == [mask(l) for l in read_lines(n.prefix / "logs" / name)]


def test_no_access_log_unless_configured(backend, start_proxy):
    """A documented difference from nginx (docs/directives.md): with no
    access_log directive nothing is written, where nginx would write
    PREFIX/logs/access.log and refuse to start if logs/ is missing. The
    predefined "combined" format is what access_log uses without a format."""
    port = free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    assert get(port, "/", headers={"User-Agent": "dflt"}).status == 200
    p.stop()
    assert list((p.prefix / "logs").iterdir()) == []
    port = free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    access_log logs/access.log;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    assert get(port, "/", headers={"User-Agent": "dflt"}).status == 200
    p.stop()
    lines = read_lines(p.prefix / "logs" / "access.log")
    assert len(lines) == 1, lines
    assert re.fullmatch(r'127\.0\.0\.1 - - %s "GET / HTTP/1\.1" 200 \d+ "-" "dflt"' % TIME_LOCAL,
                        lines[0]), lines[0]


def test_upstream_variables_without_and_with_failed_upstream(start_proxy, nginx_peer):
    dead = free_port()
    body = """
  log_format u '$request_uri $status [$upstream_addr] [$upstream_status]';
  server {
    listen 127.0.0.1:@PORT@;
    access_log logs/u.log u;
    location /ret { return 200 "hi"; }
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % dead

    def send(port):
        assert get(port, "/ret").status == 200
        assert get(port, "/down").status == 502
    out = run_case(start_proxy, nginx_peer, body, send, ["u.log"])
    assert out["u.log"][0] == ["/ret 200 [-] [-]",
                               "/down 502 [127.0.0.1:%d] [502]" % dead]
    same_as_nginx(out)


# ---------------------------------------------------------------- off, flush, reopen

def test_access_log_off(backend, start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
  log_format u '$request_uri';
  access_log logs/x.log u;
  server {
    listen 127.0.0.1:%d;
    location /quiet { access_log off; proxy_pass http://127.0.0.1:%d; }
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port, backend.port)))
    assert get(port, "/quiet/1").status == 200
    assert get(port, "/loud").status == 200
    assert get(port, "/quiet/2").status == 200
    p.stop()
    assert read_lines(p.prefix / "logs" / "x.log") == ["/loud"]


def test_access_log_off_everywhere_creates_no_file(backend, start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
  access_log off;
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    assert get(port, "/").status == 200
    p.stop()
    logs = p.prefix / "logs"
    assert not (logs / "access.log").exists() or (logs / "access.log").read_text() == ""


def test_buffered_lines_are_flushed_within_a_second_or_two(backend, start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
  log_format u '$request_uri';
  server {
    listen 127.0.0.1:%d;
    access_log logs/x.log u;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    path = p.prefix / "logs" / "x.log"
    assert get(port, "/one").status == 200
    t0 = time.monotonic()
    wait_for(lambda: read_lines(path) == ["/one"], 3, 0.05, "the line in x.log")
    assert time.monotonic() - t0 < 2.5 * SLOW


def test_reopen_after_rename(backend, start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
  log_format u '$request_uri';
  server {
    listen 127.0.0.1:%d;
    access_log logs/x.log u;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    logs = p.prefix / "logs"
    assert get(port, "/r1").status == 200
    wait_for(lambda: read_lines(logs / "x.log") == ["/r1"], 3, 0.05, "/r1 logged")
    os.rename(logs / "x.log", logs / "x.log.1")
    assert get(port, "/r2").status == 200       # still written to the renamed file
    wait_pid_file(p)
    res = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "reopen"])
    assert res.returncode == 0, res.stderr
    wait_for(lambda: (logs / "x.log").exists(), 3, 0.05, "x.log reopened")
    assert get(port, "/r3").status == 200
    p.stop()
    old, new = read_lines(logs / "x.log.1"), read_lines(logs / "x.log")
    assert old == ["/r1", "/r2"], old
    assert new == ["/r3"], new


def test_sigusr1_reopens(backend, start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
  log_format u '$request_uri';
  server {
    listen 127.0.0.1:%d;
    access_log logs/x.log u;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    logs = p.prefix / "logs"
    assert get(port, "/a").status == 200
    os.rename(logs / "x.log", logs / "x.old")
    p.signal(signal.SIGUSR1)
    wait_for(lambda: (logs / "x.log").exists(), 3, 0.05, "x.log reopened")
    assert get(port, "/b").status == 200
    p.stop()
    # Lines buffered before the signal go to the old file (nginx flushes, then reopens).
    assert read_lines(logs / "x.old") == ["/a"]
    assert read_lines(logs / "x.log") == ["/b"]


def test_keepalive_requests_each_logged_in_order(backend, start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
  log_format u '$request_uri $status';
  server {
    listen 127.0.0.1:%d;
    access_log logs/x.log u;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    with HttpConn(port) as c:
        c.send(b"".join(build_request("GET", "/p%d" % i) for i in range(20)))
        for i in range(20):
            assert c.read_response().status == 200
    p.stop()
    assert read_lines(p.prefix / "logs" / "x.log") == ["/p%d 200" % i for i in range(20)]


def test_concurrent_connections_on_several_threads(backend, start_proxy):
    """Buffers of several threads never mix up lines: every line whole, none lost."""
    from concurrent.futures import ThreadPoolExecutor
    port = free_port()
    p = start_proxy(http_conf("""
  log_format u '$request_uri $status $body_bytes_sent';
  server {
    listen 127.0.0.1:%d;
    access_log logs/x.log u;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port), main="worker_processes 2;"))

    def client(k):
        with HttpConn(port) as c:
            for i in range(100):
                assert c.request("GET", "/bytes/%d?c=%d&i=%d" % (i, k, i)).status == 200
    with ThreadPoolExecutor(6) as ex:
        list(ex.map(client, range(6)))
    p.stop()
    lines = read_lines(p.prefix / "logs" / "x.log")
    assert len(lines) == 600
    for k in range(6):
        mine = [l for l in lines if "?c=%d&" % k in l]
        assert mine == ["/bytes/%d?c=%d&i=%d 200 %d" % (i, k, i, i) for i in range(100)]
