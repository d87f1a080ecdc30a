"""Log writers: syslog: targets of access_log and error_log (http and
stream), gzip members, buffer= / flush= and their flush points (the
flush timer, SIGUSR1, exit), and access_log if= in stream{}.

A syslog collector is a UDP (or unix datagram) socket of the test; every
wait is on the datagram or the file itself, bounded by wait_for.
"""

import gzip
import os
import re
import signal
import socket
import subprocess

import pytest

from sgtest import HttpConn, free_port, get, http_conf, run_streamgate, wait_for

MONTH = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
SYSLOG_TIME = MONTH + r" [ \d]\d \d\d:\d\d:\d\d"
HOST = re.escape(socket.gethostname().lower())


class Collector:
    """A syslog collector on 127.0.0.1 (UDP) or a unix datagram path."""

    def __init__(self, unix_path=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(unix_path))
            self.target = "unix:%s" % unix_path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.target = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.setblocking(False)
        self.got = []

    def messages(self):
        while True:
            try:
                self.got.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except BlockingIOError:
                return self.got

    def wait(self, pred=lambda m: True, what="a syslog message"):
        return wait_for(lambda: [m for m in self.messages() if pred(m)], 10, what=what)

    def close(self):
        self.sock.close()


@pytest.fixture
def collector():
    made = []

    def make(unix_path=None):
        c = Collector(unix_path)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def stream_conf(body, main=""):
    return "%s\nevents {}\nstream {\n%s\n}\n" % (main, body)


def start_stream(start_proxy, body):
    """streamgate with stream{body}, started without probing its ports (a
    probe would be a logged session of its own)."""
    p = start_proxy(stream_conf(body), ports=[])
    wait_for(lambda: "started" in p.stderr or not p.running(), 10, what="streamgate start")
    assert p.running(), p.stderr
    return p


# ---------------------------------------------------------------- syslog, http


def test_access_log_syslog_pri_tag_and_line(start_proxy, collector):
    c = collector()
    port = free_port()
    p = start_proxy(http_conf("""
        log_format f "$uri:$status";
        server {
            listen 127.0.0.1:%d;
            location /a { access_log syslog:server=%s,facility=user,tag=sgtest f; return 204; }
            location /s { access_log syslog:severity=alert,server=%s,nohostname f; return 204; }
        }""" % (port, c.target, c.target)))
    assert get(p.port, "/a/x").status == 204
    (m,) = c.wait(lambda m: "/a/x" in m)
    # user (1) * 8 + info (6) = 14; the line has no newline
    assert re.fullmatch(r"<14>%s %s sgtest: /a/x:204" % (SYSLOG_TIME, HOST), m), m
    assert get(p.port, "/s").status == 204
    (m,) = c.wait(lambda m: "/s:" in m)
    # local7 (23) * 8 + alert (1) = 185, no hostname, nginx's default tag
    assert re.fullmatch(r"<185>%s nginx: /s:204" % SYSLOG_TIME, m), m


def test_access_log_syslog_if_and_two_targets(start_proxy, collector):
    c = collector()
    port = free_port()
    p = start_proxy(http_conf("""
        log_format f "$uri:$status";
        server {
            listen 127.0.0.1:%d;
            location / {
                access_log syslog:server=%s f if=$arg_log;
                access_log syslog:server=%s,tag=second f;
                return 200 ok;
            }
        }""" % (port, c.target, c.target)))
    get(p.port, "/no?log=0")
    get(p.port, "/yes?log=1")
    c.wait(lambda m: "second: /yes:200" in m, what="the second target's line")
    msgs = c.wait(lambda m: "nginx: /yes:200" in m, what="the if= target's line")
    assert len(msgs) == 1
    assert not [m for m in c.messages() if "nginx: /no:" in m]


def test_error_log_syslog_severity_is_the_message_level(start_proxy, collector, tmp_path):
    c = collector()
    port = free_port()
    (tmp_path / "html").mkdir()
    p = start_proxy(http_conf("""
        server {
            listen 127.0.0.1:%d;
            root %s;
            location /e { error_log syslog:server=%s,facility=user,tag=errs warn; }
        }""" % (port, tmp_path / "html", c.target)))
    assert get(p.port, "/e/missing").status == 404
    (m,) = c.wait(lambda m: "missing" in m)
    # user (1) * 8 + err (3) = 11; the message is the error log's whole line
    assert re.fullmatch(r"<11>%s %s errs: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#\d+: "
                        r"open\(\) \".*/e/missing\" failed \(2: No such file or directory\).*"
                        % (SYSLOG_TIME, HOST), m), m


def test_repeated_error_log_main_file_and_syslog(start_proxy, collector):
    """error_log may repeat: the main log goes to a file and to syslog,
    each with its own level."""
    c = collector()
    port = free_port()
    main = "error_log logs/main.log notice;\nerror_log syslog:server=%s notice;\n" % c.target
    p = start_proxy(http_conf("server { listen 127.0.0.1:%d; return 204; }" % port, main=main))
    c.wait(lambda m: "[notice]" in m, what="a notice of the start in syslog")
    wait_for(lambda: "[notice]" in (p.prefix / "logs/main.log").read_text(), 10, what="the same in the file")
    msg = c.messages()[0]
    assert re.match(r"<189>%s %s nginx: \d{4}/" % (SYSLOG_TIME, HOST), msg), msg   # local7.notice


def test_syslog_over_unix_socket(start_proxy, collector, tmp_path):
    c = collector(tmp_path / "log.sock")
    port = free_port()
    p = start_proxy(http_conf("""
        log_format f "$request_method $uri";
        server { listen 127.0.0.1:%d; access_log syslog:server=%s f; return 204; }""" % (port, c.target)))
    get(p.port, "/via-unix")
    (m,) = c.wait(lambda m: "/via-unix" in m)
    assert m.endswith("nginx: GET /via-unix"), m


def test_syslog_without_collector_never_blocks(start_proxy, collector, tmp_path):
    """Nobody listens (UDP port closed, unix socket missing): every
    message is dropped and every request is still answered."""
    port = free_port()
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    p = start_proxy(http_conf("""
        server {
            listen 127.0.0.1:%d;
            access_log syslog:server=127.0.0.1:%d;
            access_log syslog:server=unix:%s/none.sock;
            return 204;
        }""" % (port, dead_port, tmp_path)))
    for _ in range(200):
        assert get(p.port, "/").status == 204
    # a collector that starts later gets the next messages
    c = collector(tmp_path / "none.sock")
    get(p.port, "/later")
    c.wait(lambda m: "/later" in m)


@pytest.mark.parametrize("spec, message", [
    ("syslog:server=127.0.0.1:99999", "invalid port"),
    ("syslog:server=127.0.0.1,facility=bogus", "unknown syslog facility \"bogus\""),
    ("syslog:server=127.0.0.1,severity=loud", "unknown syslog severity \"loud\""),
    ("syslog:server=127.0.0.1,tag=no-dash", "only allows alphanumeric"),
    ("syslog:facility=user", "no syslog server specified"),
    ("syslog:server=127.0.0.1,bogus", "unknown syslog parameter \"bogus\""),
])
def test_bad_syslog_spec_is_refused(tmp_path, spec, message):
    for directive in ("access_log %s;" % spec, "error_log %s;" % spec):
        conf = tmp_path / "bad.conf"
        conf.write_text(http_conf("server { listen 127.0.0.1:%d; %s }" % (free_port(), directive)))
        r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
        assert r.returncode != 0
        assert message in r.stderr, r.stderr


def test_flush_without_buffer_is_refused(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(http_conf("server { listen 127.0.0.1:%d; access_log logs/a.log combined flush=1s; }"
                              % free_port()))
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode != 0 and "no buffer is defined for access_log" in r.stderr, r.stderr


# ---------------------------------------------------------------- buffer=, flush=, gzip


def gunzip_lines(path):
    data = path.read_bytes()
    return gzip.decompress(data).decode().splitlines() if data else []


def test_gzip_members_flushed_by_timer_and_exit(start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
        log_format f "$uri";
        server {
            listen 127.0.0.1:%d;
            access_log logs/a.log.gz f gzip=6 buffer=1m flush=100ms;
            return 204;
        }""" % port))
    log = p.prefix / "logs/a.log.gz"
    for i in range(3):
        get(p.port, "/first%d" % i)
    # flush=100ms writes the buffer without a full buffer or an exit
    wait_for(lambda: len(gunzip_lines(log)) == 3, 10, what="three lines flushed by flush=")
    for i in range(3):
        get(p.port, "/second%d" % i)
    wait_for(lambda: len(gunzip_lines(log)) == 6, 10, what="three more, in another member")
    for i in range(2):
        get(p.port, "/third%d" % i)
    p.stop()
    lines = gunzip_lines(log)
    assert sorted(lines) == sorted(["/first%d" % i for i in range(3)] + ["/second%d" % i for i in range(3)]
                                   + ["/third%d" % i for i in range(2)])
    assert log.read_bytes().count(b"\x1f\x8b\x08") >= 3    # one gzip member per flush
    z = subprocess.run(["zcat", str(log)], capture_output=True, text=True)
    assert z.returncode == 0 and sorted(z.stdout.splitlines()) == sorted(lines)


def test_gzip_member_when_the_buffer_fills(start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
        log_format f "$uri ................................................................";
        server {
            listen 127.0.0.1:%d;
            access_log logs/b.log.gz f gzip buffer=1k;
            return 204;
        }""" % port))
    log = p.prefix / "logs/b.log.gz"
    with_conn = [get(p.port, "/fill%d" % i) for i in range(40)]    # 40 lines of ~90 bytes: > 3 buffers
    assert all(r.status == 204 for r in with_conn)
    p.stop()
    lines = gunzip_lines(log)
    assert len(lines) == 40
    assert log.read_bytes().count(b"\x1f\x8b\x08") >= 3


def test_buffered_lines_go_to_the_old_file_on_reopen(start_proxy):
    """SIGUSR1 writes the buffers before the files are reopened: lines
    logged before the signal are in the rotated file."""
    port = free_port()
    p = start_proxy(http_conf("""
        log_format f "$uri";
        server { listen 127.0.0.1:%d; access_log logs/c.log f buffer=1m; return 204; }""" % port))
    log = p.prefix / "logs/c.log"
    with HttpConn(p.port) as conn:
        conn.request("GET", "/before")
        # a request on the same connection starts after the first one ended,
        # so its line is in the buffer (or written) by the time this returns
        conn.request("GET", "/sync")
    os.rename(log, p.prefix / "logs/c.log.1")
    p.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists(), 10, what="the reopened file")
    assert (p.prefix / "logs/c.log.1").read_text().startswith("/before\n")
    get(p.port, "/after")
    p.stop()
    assert "/after\n" in log.read_text() and "/before" not in log.read_text()


# ---------------------------------------------------------------- stream{}


def test_stream_access_log_if(start_proxy):
    p1, p2 = free_port(), free_port()
    p = start_stream(start_proxy, """
        log_format f "$server_port $status";
        map $server_port $logme { %d 1; default 0; }
        server {
            listen 127.0.0.1:%d;
            listen 127.0.0.1:%d;
            return ok;
            access_log logs/all.log f;
            access_log logs/some.log f if=$logme;
        }""" % (p1, p1, p2))
    for port in (p2, p1, p2):
        with socket.create_connection(("127.0.0.1", port)) as s:
            assert s.recv(16) == b"ok"
    all_log, some = p.prefix / "logs/all.log", p.prefix / "logs/some.log"
    # both logs are written when each session ends: when all.log has the
    # three, some.log is complete
    wait_for(lambda: all_log.exists() and len(all_log.read_text().splitlines()) == 3, 10,
             what="3 sessions in %s" % (all_log.read_text() if all_log.exists() else "(none)"))
    assert some.read_text() == "%d 200\n" % p1


def test_stream_access_log_syslog_and_gzip(start_proxy, collector):
    c = collector()
    port = free_port()
    p = start_stream(start_proxy, """
        log_format f "stream $server_port";
        server {
            listen 127.0.0.1:%d;
            return ok;
            access_log syslog:server=%s,tag=tcp f;
            access_log logs/s.log.gz f gzip flush=100ms;
        }""" % (port, c.target))
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert s.recv(16) == b"ok"
    (m,) = c.wait(lambda m: "stream %d" % port in m)
    assert re.fullmatch(r"<190>%s %s tcp: stream %d" % (SYSLOG_TIME, HOST, port), m), m   # local7.info
    log = p.prefix / "logs/s.log.gz"
    wait_for(lambda: log.exists() and gunzip_lines(log) == ["stream %d" % port], 10, what="the gzip line")


def test_stream_error_log_per_server_file_and_syslog(start_proxy, collector):
    """error_log in a stream server (repeated: a file and syslog) gets that
    server's messages; the main log does not."""
    c = collector()
    port = free_port()
    p = start_stream(start_proxy, """
        server {
            listen 127.0.0.1:%d;
            deny all;
            return ok;
            error_log logs/s_error.log info;
            error_log syslog:server=%s,tag=tcp info;
        }""" % (port, c.target))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(10)
        assert s.recv(16) == b""                       # denied: closed without a byte
    log = p.prefix / "logs/s_error.log"
    wait_for(lambda: log.exists() and "access forbidden by rule" in log.read_text(), 10, what="the denial")
    text = log.read_text()
    assert re.search(r"\[info\] \d+#\d+: \*\d+ client 127\.0\.0\.1:\d+ connected to 127\.0\.0\.1:%d" % port, text)
    (m,) = c.wait(lambda m: "access forbidden" in m)
    assert re.match(r"<187>%s %s tcp: \d{4}/" % (SYSLOG_TIME, HOST), m), m   # local7.err
    c.wait(lambda m: "[info]" in m and "connected to" in m, what="the info line in syslog")
    assert "access forbidden" not in p.stderr


# ---------------------------------------------------------------- open_log_file_cache


def test_open_log_file_cache_keeps_descriptors(start_proxy):
    """A path used min_uses times stays open (it is still written after its
    folder moves away), at most max paths are kept (the least recently
    used is closed), a path that cannot be opened takes no place."""
    port = free_port()
    p = start_proxy(http_conf("""
        log_format f "$uri";
        server {
            listen 127.0.0.1:%d;
            location /c {
                open_log_file_cache max=3 inactive=1m valid=1m min_uses=2;
                access_log logs/dir/c_${arg_n} f;
                return 204;
            }
        }""" % port))
    d = p.prefix / "logs/dir"
    d.mkdir()
    for n in ("lru", "lru", "once", "first", "first", "second", "second"):
        assert get(p.port, "/c?n=" + n).status == 204

    def open_logs():
        names = []
        for fd in os.listdir("/proc/%d/fd" % p.pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (p.pid, fd))
            except FileNotFoundError:                 # a socket closed meanwhile
                continue
            if target.startswith(str(d)):
                names.append(os.path.basename(target))
        return sorted(names)
    # a line is written after its response: wait for the last one
    wait_for(lambda: open_logs() == ["c_first", "c_second"], 10,   # lru was pushed out by second
             what="first and second kept open")
    moved = p.prefix / "logs/moved"
    os.rename(d, moved)
    for n in ("lru", "once", "first", "second"):
        assert get(p.port, "/c?n=" + n).status == 204
    # every line of the four is written (or failed) before the folder comes back
    wait_for(lambda: all("c_%s\" failed (2: No such file or directory)" % n in p.error_log
                         for n in ("lru", "once")), 10, what="the two paths that cannot be opened")
    wait_for(lambda: all((moved / ("c_" + n)).read_text().count("/c") == 3 for n in ("first", "second")), 10,
             what="the kept descriptors written after the move")
    os.rename(moved, d)
    count = {n: (d / ("c_" + n)).read_text().count("/c") for n in ("lru", "once", "first", "second")}
    assert count == {"lru": 2, "once": 1, "first": 3, "second": 3}


def test_open_log_file_cache_bad_values_are_refused(tmp_path):
    for bad, msg in (("open_log_file_cache inactive=10s;", "must have \"max\" parameter"),
                     ("open_log_file_cache max=0;", "invalid \"max\" value"),
                     ("open_log_file_cache max=10 bogus=1;", "invalid parameter \"bogus=1\"")):
        conf = tmp_path / "bad.conf"
        conf.write_text(http_conf("server { listen 127.0.0.1:%d; %s }" % (free_port(), bad)))
        r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
        assert r.returncode != 0 and msg in r.stderr, r.stderr
