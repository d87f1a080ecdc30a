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

    def __init__(self, delay):
        self.delay = delay
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
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: %d\r\nContent-Length: %d\r\n\r\n%s"
                      % (self.port, len(body), body))


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
    """A peer that was slow once is not shunned for ever: its average decays
    while it is not picked, and it is tried again."""
    slow_then_fast = DelayBackend(0.3)
    fast = DelayBackend(0.0)
    try:
        port = free_port()
        start_proxy(upstream_conf(port, ["127.0.0.1:%d" % slow_then_fast.port,
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
    """2 worker threads, many client connections (spread over both threads):
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
    # requests on new connections at once, so that both threads take some
    done = []

    def one():
        with HttpConn(port) as c:
            r = c.request("GET", "/")
        done.append(r.status)

    for _ in range(5):
        ts = [threading.Thread(target=one) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    assert done == [200] * 40          # every failure was retried on the live one
    assert stub.accepted == 3, stub.accepted
