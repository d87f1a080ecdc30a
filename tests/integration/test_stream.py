"""The L4 `stream {}` proxy, as nginx's ngx_stream_proxy_module behaves.

Python TCP peers on free 127.0.0.1 ports play the backends.  Proxies are
started without probing their stream ports (a probe connection would be a
session and take a balancer turn): they are ready once the log says
"started".  Hash tests use client source addresses 127.0.0.x (the whole
127/8 is loopback) so that $remote_addr varies; they also run Debian's
nginx with its stream module (nginx-light + libnginx-mod-stream, installed
by scripts/install-deps.sh) with the same upstream and expect the same
peers (a missing nginx, or one that does not start, fails them).
"""

import hashlib
import os
import socket
import struct
import threading
import time
import zlib
from bisect import bisect_left

import pytest

import sgtest
from sgtest import SLOW, free_port, free_ports, run_streamgate, smooth_wrr, wait_for


# ---------------------------------------------------------------- peers

class TagServer(sgtest._ThreadedListener):
    """Sends "PORT\\n" on accept, then echoes; closes when the client does.
    `closed` counts connections whose client side has ended."""

    def __init__(self, port=None):
        self.closed = 0
        super().__init__(port)

    def serve(self, c):
        try:
            c.sendall(b"%d\n" % self.port)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        finally:
            with self._lock:
                self.closed += 1
            c.close()


class BulkServer(sgtest._ThreadedListener):
    """Sends `size` random bytes while reading `size` bytes; records the
    sha256 of both, then closes."""

    def __init__(self, size):
        self.size = size
        self.data = os.urandom(size)
        self.received = []
        super().__init__()

    def serve(self, c):
        t = threading.Thread(target=c.sendall, args=(self.data,))
        t.start()
        got = recv_exact(c, self.size)
        t.join()
        self.received.append(hashlib.sha256(got).hexdigest())
        c.close()


class ReplyAfterEof(sgtest._ThreadedListener):
    """Reads until the client's FIN, waits `delay`, then answers
    "got N bytes" and closes (a request/response protocol using half-close)."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.saw_eof = threading.Event()
        super().__init__()

    def serve(self, c):
        n = 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
        self.saw_eof.set()
        time.sleep(self.delay)
        try:
            c.sendall(b"got %d bytes" % n)
        except OSError:
            pass
        c.close()


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(65536, n - len(buf)))
        if not d:
            break
        buf += d
    return bytes(buf)


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d


def closed_port():
    """A port nothing listens on (connects are refused)."""
    return free_port()


def connect(port, source=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout * SLOW)
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def tag_of(port, source=None):
    """The backend port a new session reaches (None if the proxy closed it)."""
    with connect(port, source) as s:
        line = b""
        while not line.endswith(b"\n"):
            d = s.recv(64)
            if not d:
                return None
            line += d
        return int(line)


@pytest.fixture
def peers():
    started = []

    def make(cls=TagServer, *args):
        p = cls(*args)
        started.append(p)
        return p
    yield make
    for p in started:
        p.stop()


def stream_conf(body, http="", main=""):
    conf = "%s\nevents {}\nstream {\n%s\n}\n" % (main, body)
    if http:
        conf += "http {\n%s\n}\n" % http
    return conf


@pytest.fixture
def start_stream(start_proxy):
    """start_stream(body, http="", main="") -> (proxy, listen port): one
    stream server on a free port; `body` is inserted in it and may use
    {port} and upstream blocks (`ups`)."""

    def start(server_body, ups="", http="", main="", port=None):
        port = port or free_port()
        body = "%s\n  server {\n    listen 127.0.0.1:%d;\n    %s\n  }\n" % (ups, port, server_body)
        p = start_proxy(stream_conf(body, http, main), ports=[])
        wait_for(lambda: "started" in p.stderr or not p.running(), 10, what="streamgate start")
        assert p.running(), p.stderr
        return p, port
    return start


def upstream(name, servers, extra=""):
    lines = "".join("    server %s;\n" % s for s in servers)
    return "  upstream %s {\n%s    %s\n  }\n" % (name, lines, extra)


def addr(port, params=""):
    return ("127.0.0.1:%d %s" % (port, params)).strip()


# ---------------------------------------------------------------- bytes

def test_megabyte_each_way_is_exact(peers, start_stream):
    size = 1 << 20
    b = peers(BulkServer, size)
    p, port = start_stream("proxy_pass 127.0.0.1:%d;" % b.port)
    mine = os.urandom(size)
    with connect(port, timeout=20) as s:
        t = threading.Thread(target=s.sendall, args=(mine,))
        t.start()
        got = recv_exact(s, size)
        t.join()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(b.data).hexdigest()
    wait_for(lambda: b.received, 10, what="backend received everything")
    assert b.received[0] == hashlib.sha256(mine).hexdigest()


def test_several_sessions_at_once(peers, start_stream):
    t = peers()
    p, port = start_stream("proxy_pass 127.0.0.1:%d;" % t.port, main="worker_processes 2;")
    socks = [connect(port) for _ in range(20)]
    try:
        for i, s in enumerate(socks):
            assert s.recv(64) == b"%d\n" % t.port
            s.sendall(b"session %d" % i)
        for i, s in enumerate(socks):
            assert recv_exact(s, len(b"session %d" % i)) == b"session %d" % i
    finally:
        for s in socks:
            s.close()


def test_half_close_on_passes_the_fin(peers, start_stream):
    """proxy_half_close on: the client's FIN reaches the backend, whose
    answer still comes back; then both ends close."""
    r = peers(ReplyAfterEof, 0.2)
    p, port = start_stream("proxy_pass 127.0.0.1:%d; proxy_half_close on;" % r.port)
    with connect(port) as s:
        s.sendall(b"x" * 1000)
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"got 1000 bytes"


def test_half_close_off_by_default_ends_the_session(peers, start_stream):
    """nginx's default (proxy_half_close off): the first FIN ends the session
    once the bytes before it are written, so a late answer is not relayed.
    The backend answers 10 s after the FIN: the session must end long before."""
    r = peers(ReplyAfterEof, 10.0)
    p, port = start_stream("proxy_pass 127.0.0.1:%d;" % r.port)
    with connect(port, timeout=20) as s:
        s.sendall(b"y" * 10)
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        assert recv_all(s) == b""
        assert time.monotonic() - t0 < 5.0
    assert r.saw_eof.wait(5)


# ---------------------------------------------------------------- failover

def test_failover_to_the_next_server(peers, start_stream):
    down = closed_port()
    t = peers()
    ups = upstream("pool", [addr(down), addr(t.port)])
    p, port = start_stream("proxy_pass pool;", ups)
    assert tag_of(port) == t.port
    with connect(port) as s:          # the connection works both ways
        assert s.recv(64) == b"%d\n" % t.port
        s.sendall(b"hello")
        assert recv_exact(s, 5) == b"hello"
    log = p.error_log
    assert "connect() failed (111: Connection refused) while connecting to upstream" in log, log
    assert 'upstream: "127.0.0.1:%d"' % down in log


def test_next_upstream_off_closes_the_client(peers, start_stream):
    down = closed_port()
    t = peers()
    ups = upstream("pool", [addr(down), addr(t.port)])
    p, port = start_stream("proxy_pass pool; proxy_next_upstream off;", ups)
    assert tag_of(port) is None       # first pick: the closed port, no retry
    assert tag_of(port) == t.port     # round robin moves on


def test_next_upstream_tries_bounds_the_attempts(peers, start_stream):
    d1, d2 = free_ports(2)
    t = peers()
    ups = upstream("pool", [addr(d1), addr(d2), addr(t.port)])
    p, port = start_stream("proxy_pass pool; proxy_next_upstream_tries 2;", ups)
    assert tag_of(port) is None
    assert p.error_log.count("Connection refused") == 2


def test_connect_timeout_then_next_server(peers, start_stream):
    """A peer whose accept queue is full never completes the handshake:
    proxy_connect_timeout gives up on it and the next server answers."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fill = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(stuck.getsockname())
        except BlockingIOError:
            pass
        fill.append(c)
    try:
        t = peers()
        ups = upstream("pool", [addr(stuck.getsockname()[1]), addr(t.port)])
        p, port = start_stream("proxy_pass pool; proxy_connect_timeout 500ms;", ups)
        t0 = time.monotonic()
        assert tag_of(port) == t.port
        took = time.monotonic() - t0
        assert 0.4 < took < 3 * SLOW, took
        assert "upstream timed out (110: Connection timed out) while connecting to upstream" in p.error_log
    finally:
        for c in fill:
            c.close()
        stuck.close()


def test_all_down_closes_the_client_promptly(start_stream):
    ups = upstream("pool", [addr(closed_port()), addr(closed_port())])
    p, port = start_stream("proxy_pass pool;", ups)
    for _ in range(3):                # refused, then "no live upstreams"
        with connect(port) as s:
            t0 = time.monotonic()
            assert recv_all(s) == b""
            assert time.monotonic() - t0 < 3.0 * SLOW      # not proxy_connect_timeout's 60 s
    assert "no live upstreams while connecting to upstream" in p.error_log


# ---------------------------------------------------------------- balancing

def test_round_robin_with_weights_in_nginx_order(peers, start_stream):
    ts = [peers() for _ in range(3)]
    weights = [1, 3, 2]
    ups = upstream("pool", [addr(t.port, "weight=%d" % w) for t, w in zip(ts, weights)])
    p, port = start_stream("proxy_pass pool;", ups, main="worker_processes 2;")
    seen = [tag_of(port) for _ in range(12)]
    assert seen == [ts[i].port for i in smooth_wrr(weights, 12)]


def test_least_conn_counts_open_sessions(peers, start_stream):
    a, b = peers(), peers()
    ups = upstream("pool", [addr(a.port), addr(b.port)], "least_conn;")
    p, port = start_stream("proxy_pass pool;", ups, main="worker_processes 1;")
    s1 = connect(port)
    assert s1.recv(64) == b"%d\n" % a.port
    s2 = connect(port)                        # a is busy
    assert s2.recv(64) == b"%d\n" % b.port
    s1.close()
    wait_for(lambda: a.closed == 1, 5, what="session on a closed")
    try:
        for n in range(3):                    # b keeps one open, a has none
            assert tag_of(port) == a.port
            wait_for(lambda: a.closed == n + 2, 5, what="session on a closed")
    finally:
        s2.close()


def test_backup_only_when_primaries_fail(peers, start_stream):
    main_, spare = peers(), peers()
    ups = upstream("pool", [addr(main_.port), addr(spare.port, "backup")])
    p, port = start_stream("proxy_pass pool;", ups)
    assert [tag_of(port) for _ in range(4)] == [main_.port] * 4
    down = closed_port()
    ups = upstream("pool2", [addr(down), addr(spare.port, "backup")])
    p2, port2 = start_stream("proxy_pass pool2;", ups)
    assert [tag_of(port2) for _ in range(3)] == [spare.port] * 3


def test_down_server_is_never_used(peers, start_stream):
    a, b = peers(), peers()
    ups = upstream("pool", [addr(a.port, "down"), addr(b.port)])
    p, port = start_stream("proxy_pass pool;", ups)
    assert [tag_of(port) for _ in range(4)] == [b.port] * 4
    assert a.accepted == 0


# ---------------------------------------------------------------- hash

SOURCES = ["127.0.%d.%d" % (i % 5, 10 + i) for i in range(40)]


def nginx_hash(key, weights, down=()):
    """ngx_stream_upstream_hash_module, plain hash: the peer index."""
    total, h = sum(weights), 0
    for rehash in range(21):
        crc = zlib.crc32((str(rehash).encode() if rehash else b"") + key.encode())
        h = (h + ((crc >> 16) & 0x7fff)) & 0xffffffff
        w, i = h % total, 0
        while w >= weights[i]:
            w -= weights[i]
            i += 1
        if i not in down:
            return i
    return None


def nginx_chash(key, names, weights, down=()):
    """hash ... consistent: ketama points (160 per weight unit) of each
    server name as written; the first point >= crc32(key), then onwards."""
    pts = []
    for idx, (name, wt) in enumerate(zip(names, weights)):
        host, _, port = name.rpartition(":")
        base, prev = host.encode() + b"\0" + port.encode(), b"\0\0\0\0"
        for _ in range(wt * 160):
            hv = zlib.crc32(base + prev)
            pts.append((hv, len(pts), idx))
            prev = struct.pack("<I", hv)
    pts.sort()
    uniq = [q for k, q in enumerate(pts) if k == 0 or pts[k - 1][0] != q[0]]
    at = bisect_left([q[0] for q in uniq], zlib.crc32(key.encode()))
    for m in range(21):
        i = uniq[(at + m) % len(uniq)][2]
        if i not in down:
            return i
    return None


def test_hash_remote_addr_is_sticky_and_as_nginx(peers, start_stream):
    ts = [peers() for _ in range(3)]
    weights = [1, 2, 1]
    ups = upstream("h", [addr(t.port, "weight=%d" % w) for t, w in zip(ts, weights)], "hash $remote_addr;")
    p, port = start_stream("proxy_pass h;", ups, main="worker_processes 2;")
    for src in SOURCES:
        want = ts[nginx_hash(src, weights)].port
        assert tag_of(port, src) == want, src
        assert tag_of(port, src) == want, src


def test_hash_failover_follows_nginx_rehash(peers, start_stream):
    """The key's server is down (port closed): the next attempt goes where
    nginx's rehash sends it."""
    ts = [peers() for _ in range(3)]
    ts[1].stop()                      # 127.0.0.1:<ts[1].port> now refuses
    ups = upstream("h", [addr(t.port) for t in ts], "hash $remote_addr;")
    p, port = start_stream("proxy_pass h;", ups)
    for src in SOURCES[:15]:
        first = nginx_hash(src, [1, 1, 1])
        want = nginx_hash(src, [1, 1, 1], down={1}) if first == 1 else first
        assert tag_of(port, src) == ts[want].port, src


def test_consistent_hash_moves_only_the_removed_servers_keys(peers, start_stream, nginx_stream):
    """Before and after a reload that removes one server, every key goes
    where nginx (same upstream, same ports) sends it, and only the removed
    server's keys move. The server removed is the one that holds the most
    keys, so that some keys move whatever ports the servers got."""
    ts = [peers() for _ in range(4)]
    names = [addr(t.port) for t in ts]

    def ups(servers):
        return upstream("ch", servers, "hash $remote_addr consistent;")

    def nginx_choices(servers):
        ngx_port = free_port()
        ngx = nginx_stream("%s  server { listen 127.0.0.1:%d; proxy_pass ch; }\n"
                           % (ups(servers), ngx_port), [ngx_port])
        choices = {src: tag_of(ngx_port, src) for src in SOURCES}
        ngx.stop()
        return choices

    p, port = start_stream("proxy_pass ch;", ups(names))
    before = {src: tag_of(port, src) for src in SOURCES}
    assert before == nginx_choices(names)
    for src in SOURCES:
        assert before[src] == ts[nginx_chash(src, names, [1] * 4)].port, src
        assert tag_of(port, src) == before[src]
    # reload without the server that holds the most keys: only its keys move
    gone = max((t.port for t in ts), key=lambda q: (list(before.values()).count(q), q))
    kept = [n for n in names if not n.endswith(":%d" % gone)]
    body = "%s\n  server {\n    listen 127.0.0.1:%d;\n    proxy_pass ch;\n  }\n" % (ups(kept), port)
    assert p.reload(stream_conf(body))
    after = {src: tag_of(port, src) for src in SOURCES}
    assert after == nginx_choices(kept)
    moved = [s for s in SOURCES if after[s] != before[s]]
    assert moved == [s for s in SOURCES if before[s] == gone]
    assert len(moved) >= len(SOURCES) // 4      # the biggest share of 4


# ---------------------------------------------------------------- against nginx

@pytest.fixture
def nginx_stream(start_nginx):
    """nginx_stream(body, ports) -> started sgtest.Nginx (stream{body});
    fails without nginx and its stream module (scripts/install-deps.sh
    installs them) or when nginx does not start."""
    def start(body, ports):
        if not os.path.exists(sgtest.NGINX_STREAM_MODULE):
            pytest.fail("nginx's stream module (libnginx-mod-stream) is not installed: "
                        "run scripts/install-deps.sh", pytrace=False)
        return start_nginx("load_module %s;\nevents {}\nstream {\n%s\n}\n"
                           % (sgtest.NGINX_STREAM_MODULE, body), ports)
    return start


@pytest.mark.parametrize("method", ["hash $remote_addr", "hash $remote_addr consistent",
                                    "hash \"$remote_addr-x\" consistent"])
def test_hash_picks_the_same_peers_as_nginx(peers, start_stream, nginx_stream, method):
    ts = [peers() for _ in range(3)]
    ups_body = "".join("    server %s;\n" % addr(t.port, "weight=%d" % w)
                       for t, w in zip(ts, [2, 1, 1]))
    ngx_port = free_port()
    nginx_stream("  upstream h {\n%s    %s;\n  }\n  server { listen 127.0.0.1:%d; proxy_pass h; }\n"
                 % (ups_body, method, ngx_port), [ngx_port])
    ups = "  upstream h {\n%s    %s;\n  }\n" % (ups_body, method)
    p, port = start_stream("proxy_pass h;", ups)
    for src in SOURCES[:25]:
        assert tag_of(port, src) == tag_of(ngx_port, src), src


# ---------------------------------------------------------------- timeouts, reload

def test_proxy_timeout_closes_an_idle_session(peers, start_stream):
    t = peers()
    p, port = start_stream("proxy_pass 127.0.0.1:%d; proxy_timeout 1s;" % t.port)
    with connect(port) as s:
        assert s.recv(64) == b"%d\n" % t.port
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        t0 = time.monotonic()
        assert recv_all(s) == b""
        took = time.monotonic() - t0
    assert 0.8 < took < 3 * SLOW, took


def test_activity_keeps_a_session_open(peers, start_stream):
    t = peers()
    p, port = start_stream("proxy_pass 127.0.0.1:%d; proxy_timeout 1s;" % t.port)
    with connect(port) as s:
        assert s.recv(64) == b"%d\n" % t.port
        for i in range(5):                    # 2.5 s of traffic, never 1 s idle
            time.sleep(0.5)
            s.sendall(b"%d" % i)
            assert recv_exact(s, 1) == b"%d" % i


def test_reload_keeps_an_established_session(peers, start_stream):
    a, b = peers(), peers()
    p, port = start_stream("proxy_pass 127.0.0.1:%d;" % a.port)
    s = connect(port)
    try:
        assert s.recv(64) == b"%d\n" % a.port
        body = "  server {\n    listen 127.0.0.1:%d;\n    proxy_pass 127.0.0.1:%d;\n  }\n" % (port, b.port)
        assert p.reload(stream_conf(body))
        assert tag_of(port) == b.port         # new sessions: the new configuration
        s.sendall(b"still here")              # the old one: untouched
        assert recv_exact(s, 10) == b"still here"
    finally:
        s.close()


def test_graceful_quit_waits_for_sessions(peers, start_stream):
    t = peers()
    p, port = start_stream("proxy_pass 127.0.0.1:%d;" % t.port)
    s = connect(port)
    assert s.recv(64) == b"%d\n" % t.port
    p.signal(sgtest.signal.SIGQUIT)
    wait_for(lambda: "gracefully shutting down" in p.stderr, 5, what="the quit to be taken")
    s.sendall(b"bye")                     # the session is still relayed
    assert recv_exact(s, 3) == b"bye"
    assert p.running()
    s.close()
    assert p.wait(10) == 0


def test_stream_and_http_side_by_side(peers, backend, start_stream):
    t = peers()
    http_port = free_port()
    http = "  server {\n    listen 127.0.0.1:%d;\n    location / { proxy_pass http://127.0.0.1:%d; }\n  }\n" % (
        http_port, backend.port)
    p, port = start_stream("proxy_pass 127.0.0.1:%d;" % t.port, http=http)
    assert tag_of(port) == t.port
    r = sgtest.get(http_port, "/")
    assert r.status == 200 and r.backend == backend.port


# ---------------------------------------------------------------- -t

@pytest.mark.parametrize("body,http,message", [
    ("server { listen 127.0.0.1:9; proxy_pass 127.0.0.1:1;\n  frobnicate on; }", "",
     ':5:3: unknown directive "frobnicate"'),
    ("server { listen 127.0.0.1:9; proxy_pass 127.0.0.1:1;\n  location / { } }", "",
     ':5:3: "location" directive is not allowed here'),
    ("server { listen 127.0.0.1:9; proxy_pass 127.0.0.1:1;\n  proxy_read_timeout 5s; }", "",
     ':5:3: "proxy_read_timeout" directive is not allowed here'),
    ("server {\n  listen 127.0.0.1:9; proxy_pass 127.0.0.1:1; }", "server { listen 127.0.0.1:9; }",
     ':5:3: duplicate "127.0.0.1:9" address and port pair'),
    ("server { listen 127.0.0.1:9; proxy_pass 127.0.0.1:1;\n  ssl_password_file x; }", "",
     ':5:3: "ssl_password_file" directive is not supported yet'),
    ("server {\n  listen 127.0.0.1:9 so_keepalive=on; proxy_pass 127.0.0.1:1; }", "",
     ':5:22: "so_keepalive" parameter of "listen" is not supported yet'),
    ("upstream u {\n  server 127.0.0.1:1; hash $request_uri; }", "",
     ':5:28: unknown "request_uri" variable'),
    ("server { listen 127.0.0.1:9;\n  proxy_pass nowhere; }", "", ':5:14: no port in upstream "nowhere"'),
])
def test_config_errors(tmp_path, body, http, message):
    conf = tmp_path / "s.conf"
    conf.write_text("# streamgate\nevents {}\nstream {\n" + body + "\n}\n" +
                    ("http {\n%s\n}\n" % http if http else ""))
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode == 1, r.stderr
    assert "%s%s" % (conf, message) in r.stderr, r.stderr
    assert "test failed" in r.stderr


def test_proxy_timeout_outside_stream_is_refused(tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text("events {}\nhttp { server { listen 127.0.0.1:9;\n  proxy_timeout 5s; } }\n")
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode == 1
    assert '%s:3:3: "proxy_timeout" directive is not allowed here' % conf in r.stderr, r.stderr


def test_good_stream_config_passes_t(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text(stream_conf("""
  upstream pool {
    server 127.0.0.1:9001 weight=2 max_fails=3 fail_timeout=30s;
    server 127.0.0.1:9002 backup;
    least_conn;
  }
  proxy_timeout 10m;
  proxy_connect_timeout 5s;
  server {
    listen 127.0.0.1:9000 reuseport backlog=1024;
    proxy_pass pool;
    proxy_next_upstream_tries 2;
    proxy_next_upstream_timeout 10s;
    proxy_half_close on;
  }
""", http="server { listen 127.0.0.1:8000; location / { return 200; } }"))
    r = run_streamgate(["-t", "-c", conf, "-p", tmp_path])
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr
