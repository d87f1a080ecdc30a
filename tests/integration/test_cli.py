"""streamgate's command line: -v, -t, -T, -p, the pid file, -s SIGNAL, demo mode."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import sgtest
from sgtest import (HttpConn, free_port, get, http_conf, port_accepts,
                    run_streamgate, wait_for)

LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[[a-z]+\] \d+#\d+: ")


def wait_pid_file(path):
    """Wait until the pid file exists and holds a number (it may be written
    just after the listeners open); returns the pid."""
    def read():
        try:
            t = path.read_text().strip()
        except FileNotFoundError:
            return None
        return int(t) if t.isdigit() else None
    return wait_for(read, 5, what="pid file %s" % path)


def return_conf(port, text="hello", extra_http=""):
    return http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
    location / { return 200 "%s\\n"; }
  }
""" % (extra_http, port, text))


def check_fails(tmp_path, text, line, col, *needles, name="bad.conf"):
    """Write text, run -t, assert exit 1 with "PATH:LINE:COL:" and needles in stderr."""
    path = tmp_path / name
    path.write_text(text)
    r = run_streamgate(["-t", "-c", path, "-p", tmp_path])
    assert r.returncode == 1, r.stderr
    where = "%s:%d:%d:" % (path, line, col)
    assert where in r.stderr, "expected %r in:\n%s" % (where, r.stderr)
    for n in needles:
        assert n in r.stderr, "expected %r in:\n%s" % (n, r.stderr)
    assert "test failed" in r.stderr
    return r.stderr


def test_version():
    r = run_streamgate(["-v"])
    assert r.returncode == 0, r.stderr
    assert re.match(r"streamgate version \d+\.\d+\.\d+", r.stdout), r.stdout


def test_t_ok_creates_nothing(tmp_path):
    """-t on a good file: "syntax is ok", "test is successful", exit 0, and no
    log/pid file is opened (the prefix has no logs/ folder at all)."""
    conf = tmp_path / "conf" / "ok.conf"
    conf.parent.mkdir()
    conf.write_text(http_conf("""
  access_log logs/access.log;
  server {
    listen 127.0.0.1:%d;
    location / { return 200 "ok\\n"; }
  }
""" % free_port(), main="error_log logs/error.log;\npid logs/sg.pid;"))
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    before = sorted(os.listdir(tmp_path))
    r = run_streamgate(["-t", "-c", conf, "-p", prefix])
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr
    assert "test is successful" in r.stderr
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(prefix) == []
    assert os.listdir(conf.parent) == ["ok.conf"]


def test_t_unknown_directive(tmp_path):
    text = ("events {}\n"
            "http {\n"
            "    server {\n"
            "        listen 127.0.0.1:8080;\n"
            "        foo bar;\n"
            "    }\n"
            "}\n")
    check_fails(tmp_path, text, 5, 9, 'unknown directive "foo"')


def test_t_directive_not_allowed_here(tmp_path):
    text = ("events {}\n"
            "http {\n"
            "  listen 127.0.0.1:8080;\n"
            "}\n")
    check_fails(tmp_path, text, 3, 3, '"listen" directive is not allowed here')


def test_t_invalid_number_of_arguments(tmp_path):
    text = ("events {}\n"
            "http {\n"
            "  server {\n"
            "    location / {\n"
            "      proxy_pass;\n"
            "    }\n"
            "  }\n"
            "}\n")
    check_fails(tmp_path, text, 5, 7,
                'invalid number of arguments in "proxy_pass" directive')


def test_t_bad_value(tmp_path):
    """A value the directive cannot parse: position is the directive's or the
    argument's; the message names the directive (nginx: "invalid value")."""
    text = ("events {}\n"
            "http {\n"
            "    keepalive_timeout abc;\n"
            "}\n")
    path = tmp_path / "bad.conf"
    path.write_text(text)
    r = run_streamgate(["-t", "-c", path, "-p", tmp_path])
    assert r.returncode == 1
    assert re.search(re.escape(str(path)) + r":3:(5|23):", r.stderr), r.stderr
    assert "keepalive_timeout" in r.stderr and "invalid" in r.stderr, r.stderr
    assert "test failed" in r.stderr


def test_t_missing_semicolon(tmp_path):
    """`listen ...` with no ';' before '}': nginx says unexpected "}" at the brace."""
    text = ("events {}\n"
            "http {\n"
            "    server {\n"
            "        listen 127.0.0.1:8080\n"
            "    }\n"
            "}\n")
    check_fails(tmp_path, text, 5, 5, 'unexpected "}"')


def test_t_missing_semicolon_at_eof(tmp_path):
    text = "events {}\nworker_processes 1"
    path = tmp_path / "bad.conf"
    path.write_text(text)
    r = run_streamgate(["-t", "-c", path, "-p", tmp_path])
    assert r.returncode == 1
    assert "%s:2:" % path in r.stderr, r.stderr
    assert "unexpected end of file" in r.stderr, r.stderr


def test_t_not_supported_yet(tmp_path):
    text = ("events {}\n"
            "http {\n"
            "  server {\n"
            "    listen 127.0.0.1:8080;\n"
            "    location / {\n"
            "      ssi on;\n"
            "    }\n"
            "  }\n"
            "}\n")
    check_fails(tmp_path, text, 6, 7, '"ssi" directive is not supported yet')


def test_t_error_in_included_file_names_that_file(tmp_path):
    inc = tmp_path / "inc.conf"
    inc.write_text("# upstreams\nupstream u {\n  server 127.0.0.1:1;\n  bogus_thing 1;\n}\n")
    main = tmp_path / "main.conf"
    main.write_text("events {}\nhttp {\n  include inc.conf;\n}\n")
    r = run_streamgate(["-t", "-c", main, "-p", tmp_path])
    assert r.returncode == 1
    assert "%s:4:3:" % inc in r.stderr, r.stderr
    assert 'unknown directive "bogus_thing"' in r.stderr
    assert "test failed" in r.stderr


def test_t_missing_file(tmp_path):
    r = run_streamgate(["-t", "-c", tmp_path / "nope.conf"])
    assert r.returncode == 1
    assert "nope.conf" in r.stderr
    assert "test failed" in r.stderr


def test_T_prints_every_file(tmp_path):
    (tmp_path / "conf.d").mkdir()
    up = tmp_path / "conf.d" / "up.conf"
    up.write_text("upstream u { server 127.0.0.1:9; }\n")
    main = tmp_path / "main.conf"
    main.write_text(http_conf("""
  include conf.d/*.conf;
  server { listen 127.0.0.1:%d; location / { proxy_pass http://u; } }
""" % free_port()))
    r = run_streamgate(["-T", "-c", main, "-p", tmp_path])
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr
    out = r.stdout
    assert re.search(r"# configuration file \S*main\.conf:", out), out
    assert re.search(r"# configuration file \S*conf\.d/up\.conf:", out), out
    assert main.read_text().strip() in out
    assert up.read_text().strip() in out
    assert out.index("main.conf:") < out.index("up.conf:")


def test_prefix_resolves_relative_include(tmp_path):
    confdir = tmp_path / "etc"
    confdir.mkdir()
    prefix = tmp_path / "prefix"
    (prefix / "inc").mkdir(parents=True)
    (prefix / "inc" / "server.conf").write_text(
        "server { listen 127.0.0.1:%d; location / { return 200; } }\n" % free_port())
    main = confdir / "main.conf"
    main.write_text(http_conf("  include inc/server.conf;\n"))
    r = run_streamgate(["-t", "-c", main, "-p", prefix])
    assert r.returncode == 0, r.stderr
    # Without -p the prefix is the file's own folder, where inc/ does not exist.
    r = run_streamgate(["-t", "-c", main])
    assert r.returncode == 1, r.stderr
    assert "inc/server.conf" in r.stderr
    # ... and a copy beside the file is found by default.
    (confdir / "inc").mkdir()
    (confdir / "inc" / "server.conf").write_text(
        (prefix / "inc" / "server.conf").read_text())
    r = run_streamgate(["-t", "-c", main])
    assert r.returncode == 0, r.stderr


def test_pid_file_default_place_and_removed(start_proxy):
    port = free_port()
    p = start_proxy(return_conf(port))
    pidfile = p.prefix / "streamgate.pid"
    assert wait_pid_file(pidfile) == p.pid
    assert get(port, "/").status == 200
    p.stop()
    assert not pidfile.exists()


def test_pid_directive_relative_to_prefix(start_proxy):
    port = free_port()
    p = start_proxy(return_conf(port).replace("events", "pid logs/sg.pid;\nevents", 1))
    pidfile = p.prefix / "logs" / "sg.pid"
    assert wait_pid_file(pidfile) == p.pid
    r = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "stop"])
    assert r.returncode == 0, r.stderr
    assert p.wait(10) == 0
    assert not pidfile.exists()


def test_s_reload(start_proxy):
    port = free_port()
    p = start_proxy(return_conf(port, "one"))
    wait_pid_file(p.pid_file)
    assert get(port, "/").body == b"one\n"
    p.conf_path.write_text(return_conf(port, "two"))
    r = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "reload"])
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "reloaded configuration" in p.error_log, 10, what="reload")
    assert get(port, "/").body == b"two\n"
    line = [x for x in p.error_log.splitlines() if "reloaded configuration" in x][0]
    assert LOG_LINE.match(line), line
    assert p.running()


def test_s_stop(start_proxy):
    port = free_port()
    p = start_proxy(return_conf(port))
    wait_pid_file(p.pid_file)
    r = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "stop"])
    assert r.returncode == 0, r.stderr
    assert p.wait(10) == 0
    assert not port_accepts(port)
    assert not p.pid_file.exists()


def test_s_quit_finishes_in_flight_request(start_proxy, backend):
    port = free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, backend.port)))
    wait_pid_file(p.pid_file)
    result = {}

    def slow():
        try:
            result["r"] = get(port, "/delay/%d" % (1000 * sgtest.SLOW), timeout=15)
        except Exception as e:  # reported below
            result["e"] = e
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3 * sgtest.SLOW)
    r = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "quit"])
    assert r.returncode == 0, r.stderr
    t.join(20)
    assert "e" not in result, result.get("e")
    assert result["r"].status == 200
    assert p.wait(15) == 0


def test_s_reopen_recreates_access_log(start_proxy):
    port = free_port()
    p = start_proxy(return_conf(port, extra_http="access_log logs/access.log;"))
    wait_pid_file(p.pid_file)
    log = p.prefix / "logs" / "access.log"
    get(port, "/first")
    wait_for(lambda: log.exists() and "/first" in log.read_text(), 5, what="access log")
    log.rename(p.prefix / "logs" / "access.log.1")
    r = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "reopen"])
    assert r.returncode == 0, r.stderr
    wait_for(log.exists, 5, what="reopened access.log")
    get(port, "/second")
    wait_for(lambda: "/second" in log.read_text(), 5, what="/second in new log")
    assert "/second" not in (p.prefix / "logs" / "access.log.1").read_text()
    assert p.running()


def test_s_without_pid_file_fails(tmp_path):
    conf = tmp_path / "x.conf"
    conf.write_text(return_conf(free_port()))
    r = run_streamgate(["-c", conf, "-p", tmp_path, "-s", "reload"])
    assert r.returncode != 0
    assert "streamgate.pid" in r.stderr


def demo_grpc_backends(port):
    """Which backends answered four unary Echo calls (grpcio) through the demo."""
    grpc = pytest.importorskip("grpc")
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        echo = ch.unary_unary("/chat.Chat/Echo")
        seen = set()
        for _ in range(4):
            resp, call = echo.with_call(sgtest.grpc_msg("hi"), timeout=10 * sgtest.SLOW)
            assert resp == sgtest.grpc_msg("hi")
            seen.add(dict(call.initial_metadata())["x-backend"])
    return seen


def test_demo_mode_round_robin(tmp_path, request):
    """No -c: the built-in demo on :8080 balancing sgback :9001 and :9002,
    and gRPC calls (h2c on the same port) over sgback's :9101 and :9102.
    Those ports are fixed: the test runs in a network namespace of its own."""
    if not sgtest.with_fixed_ports(request, (8080, 9001, 9002, 9101, 9102)):
        return
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen([str(sgtest.STREAMGATE)], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def up():
            if proc.poll() is not None:
                raise AssertionError("demo exited: " + (tmp_path / "demo.log").read_text())
            return all(port_accepts(x) for x in (8080, 9001, 9002, 9101, 9102))
        wait_for(up, 15, what="demo ports 8080 9001 9002 9101 9102")
        bodies = [get(8080, "/").body.decode() for _ in range(4)]
        assert set(bodies) == {"sgback 9001\n", "sgback 9002\n"}, bodies
        assert bodies[0] != bodies[1] and bodies[0] == bodies[2] and bodies[1] == bodies[3]
        with HttpConn(8080) as c:
            ka = [c.request("GET", "/").body.decode() for _ in range(4)]
        assert ka[0] != ka[1] and ka[0] == ka[2] and ka[1] == ka[3], ka
        assert demo_grpc_backends(8080) == {"9101", "9102"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15 * sgtest.SLOW) == 0
        # The demo's backends go away with it.
        wait_for(lambda: not port_accepts(9001) and not port_accepts(9002), 10,
                 what="sgback children to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    out = (tmp_path / "demo.log").read_text(errors="replace")
    for m in sgtest.SANITIZER_MARKERS:
        assert m not in out, out


def test_temp_paths_are_accepted_with_a_notice(tmp_path):
    """nginx configurations carry client_body_temp_path/proxy_temp_path
    (nginx-tests writes them into every http{}); streamgate streams
    responses, so -t accepts proxy_temp_path and says so in a [notice] line,
    not an error. client_body_temp_path is used (bodies read whole first)."""
    conf = tmp_path / "t.conf"
    conf.write_text("events {}\nhttp {\n    client_body_temp_path client_body_temp 1 2;\n"
                    "    proxy_temp_path proxy_temp;\n"
                    "    server { listen 127.0.0.1:1; return 204; }\n}\n")
    r = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert '"client_body_temp_path"' not in r.stderr
    assert '[notice] %s:4:5: "proxy_temp_path" is accepted and not used' % conf in r.stderr
    assert "test is successful" in r.stderr


# ---------------------------------------------------------------- nginx's command line (issue 9)

def test_V_lists_tls_and_nginx_modules():
    """-V as nginx's: version, the TLS library, SNI, and "configure
    arguments:" naming the modules streamgate has (--with-...) and the
    default ones it has not (--without-...), which nginx-tests' has() reads."""
    r = run_streamgate(["-V"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.match(r"streamgate version \d+\.\d+\.\d+$", lines[0]), lines
    assert any(re.match(r"built with OpenSSL \d", l) for l in lines), lines
    assert "TLS SNI support enabled" in lines
    conf = [l for l in lines if l.startswith("configure arguments:")]
    assert len(conf) == 1, lines
    args = conf[0].split()[2:]
    for has in ("--with-http_ssl_module", "--with-http_v2_module", "--with-stream"):
        assert has in args, args
    for hasnot in ("--without-http_ssi_module", "--without-http_fastcgi_module",
                   "--without-http_uwsgi_module", "--without-http_scgi_module",
                   "--without-http_memcached_module", "--without-http_mirror_module"):
        assert hasnot in args, args
    # modules streamgate has are not disowned
    for present in ("proxy", "grpc", "map", "upstream_ip_hash", "upstream_keepalive"):
        assert "--without-http_%s_module" % present not in args, args
    # -v stays the short form
    assert run_streamgate(["-v"]).stdout.splitlines() == lines[:1]


def test_h_lists_nginx_flags():
    r = run_streamgate(["-h"])
    assert r.returncode == 0
    for flag in ("-c", "-p", "-e", "-g", "-q", "-t", "-T", "-s", "-v", "-V"):
        assert re.search(r"(^|\s)%s\s" % re.escape(flag), r.stderr), (flag, r.stderr)


def test_c_relative_to_prefix(tmp_path):
    """nginx resolves a relative -c under -p, not the current folder."""
    prefix = tmp_path / "prefix"
    (prefix / "conf").mkdir(parents=True)
    (prefix / "conf" / "nginx.conf").write_text(return_conf(free_port()))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_streamgate(["-p", prefix, "-c", "conf/nginx.conf", "-t"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert str(prefix / "conf" / "nginx.conf") in r.stderr
    r = run_streamgate(["-p%s" % prefix, "-cconf/nginx.conf", "-t"], cwd=elsewhere)   # -pDIR -cFILE
    assert r.returncode == 0, r.stderr


def test_q_quiets_a_good_test_but_not_errors(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text(return_conf(free_port()))
    r = run_streamgate(["-t", "-q", "-c", good])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = run_streamgate(["-tq", "-c", good])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("events {}\nhttp { foo; }\n")
    r = run_streamgate(["-t", "-q", "-c", bad])
    assert r.returncode == 1
    assert 'unknown directive "foo"' in r.stderr and "test failed" in r.stderr


def test_g_adds_main_directives(tmp_path):
    """-g "pid FILE;" as nginx: the directives are read before the file's."""
    conf = tmp_path / "nginx.conf"
    port = free_port()
    conf.write_text(return_conf(port))
    proc = subprocess.Popen([str(sgtest.STREAMGATE), "-p", str(tmp_path), "-c", "nginx.conf",
                             "-g", "pid from-g.pid;"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_pid_file(tmp_path / "from-g.pid") == proc.pid
        assert get(port, "/").text == "hello\n"
    finally:
        proc.terminate()
        proc.wait(10)
    r = run_streamgate(["-t", "-c", conf, "-g", "no_such_thing on;"])
    assert r.returncode == 1
    assert 'command line:1:1: unknown directive "no_such_thing"' in r.stderr, r.stderr


def test_e_writes_startup_errors_and_default_log_to_file(tmp_path):
    """-e FILE (relative to -p): what goes wrong while starting lands there,
    as the default error log; nothing on stderr."""
    port = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", port))
    busy.listen(1)
    try:
        (tmp_path / "nginx.conf").write_text(return_conf(port))
        r = run_streamgate(["-p", tmp_path, "-c", "nginx.conf", "-e", "startup.log"])
        assert r.returncode == 1
        assert r.stderr == ""
        text = (tmp_path / "startup.log").read_text()
        assert "[emerg]" in text and "127.0.0.1:%d" % port in text, text
    finally:
        busy.close()


def test_pid_file_appears_only_once_listeners_are_bound(tmp_path):
    """A script that waits for the pid file may connect at once: every
    listen port accepts by the time the file exists."""
    ports = [free_port() for _ in range(3)]
    conf = tmp_path / "nginx.conf"
    conf.write_text(http_conf("".join("""
  server { listen 127.0.0.1:%d; location / { return 200 "ok\\n"; } }
""" % p for p in ports)))
    proc = subprocess.Popen([str(sgtest.STREAMGATE), "-p", str(tmp_path), "-c", "nginx.conf"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_pid_file(tmp_path / "streamgate.pid")
        for p in ports:
            assert port_accepts(p), p
    finally:
        proc.terminate()
        proc.wait(10)


def test_T_prints_a_file_included_twice_once(tmp_path):
    (tmp_path / "map.conf").write_text("default 1;\n")
    main = tmp_path / "main.conf"
    main.write_text(http_conf("""
  map $uri $a { include map.conf; }
  map $uri $b { include map.conf; }
  server { listen 127.0.0.1:%d; location / { return 200 "$a$b"; } }
""" % free_port()))
    r = run_streamgate(["-T", "-c", main])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("# configuration file %s:" % (tmp_path / "map.conf")) == 1, r.stdout
    assert r.stdout.count("# configuration file ") == 2
