"""The balancers of issue 11 against real backends: least_time, random two
(least_conn / least_time=), zone-shared max_fails across worker threads,
and sticky.

Skewed latency: three backends, one answering 10x slower (200 ms against
20 ms). The assertions are about shares (the slow one gets well under a
third), never about exact timings, so a slow machine only makes the skew
larger, not the test flaky.
"""

import socket
import threading
import time

import pytest

import sgtest
from sgtest import HttpConn, free_port, http_conf


class DelayBackend(sgtest._ThreadedListener):
    """HTTP/1.1 keep-alive backend that answers every request after `delay`
    seconds with X-Backend: PORT; `requests` counts what it answered."""

    def __init__(self, delay, set_cookie=None):
        self.delay = delay
        self.set_cookie = set_cookie
        self.requests = 0
        super().__init__()

    def serve(self, c):
        buf = b""
        while not self._stop:
            while b"\r\n\r\n" not in buf:
                more = c.recv(65536)
                if not more:
                    c.close()
                    return
                buf += more
            _, buf = buf.split(b"\r\n\r\n", 1)
            time.sleep(self.delay)
            with self._lock:
                self.requests += 1
            body = b"%d" % self.port
            extra = b"Set-Cookie: %s\r\n" % self.set_cookie.encode() if self.set_cookie else b""
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: %d\r\n%sContent-Length: %d\r\n\r\n%s"
                      % (self.port, extra, len(body), body))


@pytest.fixture
def skewed():
    """Three backends, the second 10x slower: [fast, slow, fast]."""
    bs = [DelayBackend(0.02), DelayBackend(0.2), DelayBackend(0.02)]
    yield bs
    for b in bs:
        b.stop()


def upstream_conf(port, servers, method, extra_main=""):
    lines = "".join("    server %s;\n" % s for s in servers)
    return http_conf("""
  upstream pool {
    %s;
%s  }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://pool;
    }
  }
""" % (method, lines, port), main=extra_main)


def load(port, total, clients):
    """`total` GETs from `clients` threads, each on its own keep-alive
    connection; returns the X-Backend of each answer."""
    seen = []
    lock = threading.Lock()
    per = total // clients

    def run():
        with HttpConn(port) as c:
            for _ in range(per):
                r = c.request("GET", "/")
                assert r.status == 200, (r.status, r.body[:200])
                with lock:
                    seen.append(r.backend)

    ts = [threading.Thread(target=run) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert len(seen) == per * clients
    return seen


@pytest.mark.parametrize("method", [
    "least_time last_byte",
    "least_time header",
    "least_time last_byte inflight",
    "random two least_conn",
    "random two least_time=last_byte",
    "random two least_time=header",
])
def test_skewed_latency_traffic_goes_elsewhere(start_proxy, skewed, method):
    port = free_port()
    start_proxy(upstream_conf(port, ["127.0.0.1:%d" % b.port for b in skewed], method))
    seen = load(port, 60, 6)
    slow = skewed[1].port
    share = seen.count(slow)
    assert share < len(seen) / 3, (method, share, len(seen))
    # the two fast ones both work
    assert seen.count(skewed[0].port) > 0 and seen.count(skewed[2].port) > 0


def test_round_robin_reference_gives_the_slow_one_its_third(start_proxy, skewed):
    """What the balancers above improve on: round robin ignores latency."""
    port = free_port()
    start_proxy(upstream_conf(port, ["127.0.0.1:%d" % b.port for b in skewed], "keepalive 8"))
    seen = load(port, 30, 3)
    assert seen.count(skewed[1].port) == 10


def test_least_time_probes_a_slow_peer_again_later(start_proxy):
    """A peer that was slow once is not shunned for ever: once fail_timeout
    has passed since it was picked its average decays, and it is tried again."""
    slow_then_fast = DelayBackend(0.3)
    fast = DelayBackend(0.0)
    try:
        port = free_port()
        start_proxy(upstream_conf(port, ["127.0.0.1:%d fail_timeout=1s" % slow_then_fast.port,
                                         "127.0.0.1:%d" % fast.port], "least_time last_byte"))
        with HttpConn(port) as c:
            first = [c.request("GET", "/").backend for _ in range(2)]
            assert sorted(first) == sorted([slow_then_fast.port, fast.port])
            slow_then_fast.delay = 0.0
            # right after, the fast one gets everything
            assert [c.request("GET", "/").backend for _ in range(5)] == [fast.port] * 5
            # later, the once-slow one is probed
            sgtest.wait_for(lambda: c.request("GET", "/").backend == slow_then_fast.port,
                            timeout=15, interval=0.05, what="a probe of the once-slow peer")
    finally:
        slow_then_fast.stop()
        fast.stop()


def test_least_time_refuses_bad_parameters(tmp_path):
    for method, word in [("least_time first_byte", "first_byte"), ("least_time header foo", "foo"),
                         ("random two least_time=connect", "least_time=connect")]:
        conf = tmp_path / "bad.conf"
        conf.write_text(upstream_conf(free_port(), ["127.0.0.1:1"], method))
        r = sgtest.run_streamgate(["-t", "-c", conf])
        assert r.returncode != 0
        assert 'invalid parameter "%s"' % word in r.stderr, r.stderr


# ---------------------------------------------------------------- zone: shared failures

def test_zone_shares_max_fails_across_worker_threads(start_proxy, start_backend, start_stub):
    """2 worker threads, 30 client connections (spread over both threads):
    max_fails=3 takes the failing server out after 3 failures in total, not
    3 per thread."""
    live = start_backend()
    stub = start_stub(mode="close")
    port = free_port()
    conf = http_conf("""
  upstream pool {
    zone pool 64k;
    server 127.0.0.1:%d max_fails=3 fail_timeout=60s;
    server 127.0.0.1:%d;
  }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://pool; }
  }
""" % (stub.port, live.port, port), main="worker_processes 2;")
    start_proxy(conf)
    # one request at a time (so that no pick races a failure being counted),
    # each on a new connection: the kernel spreads them over both threads
    done = []
    for _ in range(30):
        with HttpConn(port) as c:
            done.append(c.request("GET", "/").status)
    assert done == [200] * 30          # every failure was retried on the live one
    assert stub.accepted == 3, stub.accepted


# ---------------------------------------------------------------- sticky

def sticky_conf(port, servers, sticky):
    return upstream_conf(port, servers, sticky)


def cookie_of(r, name):
    """The value the proxy set for cookie `name` (None if it set none)."""
    for v in r.header_all("Set-Cookie"):
        if v.startswith(name + "="):
            return v.split(";", 1)[0][len(name) + 1:]
    return None


def test_sticky_cookie_keeps_a_client_and_repicks_when_its_server_is_down(start_proxy, start_backend):
    bs = [start_backend() for _ in range(3)]
    port = free_port()
    start_proxy(sticky_conf(port, ["127.0.0.1:%d" % b.port for b in bs],
                            "sticky cookie srv expires=1h path=/ httponly"))
    # new clients are spread by round robin and each is told its server
    ids = {}
    for _ in range(3):
        r = sgtest.get(port, "/")
        assert r.status == 200
        v = cookie_of(r, "srv")
        assert v and len(v) == 32
        ids[r.backend] = v
        attrs = r.header("Set-Cookie").lower()
        assert "max-age=3600" in attrs and "path=/" in attrs and "httponly" in attrs
    assert sorted(ids) == sorted(b.port for b in bs)
    assert len(set(ids.values())) == 3
    # a client with the cookie stays on its server
    chosen = bs[1].port
    for _ in range(6):
        r = sgtest.get(port, "/", headers={"Cookie": "a=b; srv=%s" % ids[chosen]})
        assert r.backend == chosen
        assert cookie_of(r, "srv") == ids[chosen]
    # its server goes away: the request is served elsewhere and the cookie moves
    bs[1].stop()
    r = sgtest.get(port, "/", headers={"Cookie": "srv=%s" % ids[chosen]})
    assert r.status == 200 and r.backend != chosen
    assert cookie_of(r, "srv") == ids[r.backend]
    # an unknown cookie is balanced as a new client
    r = sgtest.get(port, "/", headers={"Cookie": "srv=garbage"})
    assert r.status == 200 and cookie_of(r, "srv") == ids[r.backend]


def test_sticky_route_follows_the_variable(start_proxy, start_backend):
    bs = [start_backend() for _ in range(3)]
    port = free_port()
    servers = ["127.0.0.1:%d route=r%d" % (b.port, i) for i, b in enumerate(bs)]
    start_proxy(sticky_conf(port, servers, "sticky route $arg_route $cookie_route"))
    for i, b in enumerate(bs):
        assert {sgtest.get(port, "/?route=r%d" % i).backend for _ in range(4)} == {b.port}
        assert {sgtest.get(port, "/", headers={"Cookie": "route=r%d" % i}).backend
                for _ in range(4)} == {b.port}
    # no route, or one no server has: round robin
    assert sorted(sgtest.get(port, "/?route=zz").backend for _ in range(3)) == sorted(b.port for b in bs)
    r = sgtest.get(port, "/?route=r0")
    assert r.header("Set-Cookie") is None


def test_sticky_learn_from_the_backends_cookie(start_proxy):
    a = DelayBackend(0, set_cookie="sid=from-a")
    b = DelayBackend(0, set_cookie="sid=from-b")
    try:
        port = free_port()
        start_proxy(sticky_conf(port, ["127.0.0.1:%d" % a.port, "127.0.0.1:%d" % b.port],
                                "sticky learn create=$upstream_cookie_sid lookup=$cookie_sid "
                                "zone=client_sessions:1m timeout=1h"))
        first = [sgtest.get(port, "/").backend for _ in range(2)]
        assert sorted(first) == sorted([a.port, b.port])
        for sid, want in (("from-a", a.port), ("from-b", b.port)):
            got = {sgtest.get(port, "/", headers={"Cookie": "sid=" + sid}).backend for _ in range(4)}
            assert got == {want}
        # a session no backend made is balanced as usual
        got = [sgtest.get(port, "/", headers={"Cookie": "sid=unknown"}).backend for _ in range(2)]
        assert sorted(got) == sorted([a.port, b.port])
    finally:
        a.stop()
        b.stop()


def test_sticky_refuses_bad_parameters(tmp_path):
    for sticky, msg in [("sticky cookie", "invalid number of arguments"),
                        ("sticky cookie srv samesite=sometimes", "invalid parameter"),
                        ("sticky cookie srv expires=soon", "invalid expires"),
                        ("sticky learn create=$upstream_cookie_sid lookup=$cookie_sid", '"zone" parameter is missing'),
                        ("sticky route", "invalid number of arguments"),
                        ("sticky bogus x", 'invalid parameter "bogus"')]:
        conf = tmp_path / "bad.conf"
        conf.write_text(sticky_conf(free_port(), ["127.0.0.1:1"], sticky))
        r = sgtest.run_streamgate(["-t", "-c", conf])
        assert r.returncode != 0, sticky
        assert msg in r.stderr, (sticky, r.stderr)


@pytest.mark.parametrize("method", ["least_time last_byte", "least_time connect inflight",
                                    "random two least_time=first_byte"])
def test_stream_least_time_avoids_slow_backend(start_proxy, skewed, method):
    """stream {}: last_byte times the whole session (here one request and
    its answer), so the slow backend gets few sessions."""
    port = free_port()
    lines = "".join("    server 127.0.0.1:%d;\n" % b.port for b in skewed)
    start_proxy("events {}\nstream {\n  upstream pool {\n    %s;\n%s  }\n"
                "  server { listen 127.0.0.1:%d; proxy_pass pool; }\n}\n" % (method, lines, port))
    seen = []
    lock = threading.Lock()

    def run():
        for _ in range(10):
            with HttpConn(port) as c:
                r = c.request("GET", "/")
            with lock:
                seen.append(r.backend)

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert len(seen) == 40
    if "connect" in method:
        # connect times do not see the slow answers: only check that all
        # three take sessions and inflight keeps the busy one from most
        assert seen.count(skewed[1].port) < len(seen) / 2, seen
    else:
        assert seen.count(skewed[1].port) < len(seen) / 3, seen
