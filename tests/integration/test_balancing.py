"""Load balancing as nginx does it, on free ports with generated configs.

Orders are exact: streamgate shares balancer state across worker threads, so
nginx's smooth weighted round robin, ip_hash and least_conn sequences hold
(ip_hash's choices are compared with the installed nginx's).
Each test starts its own proxy, so state starts fresh.
"""

import threading
import time

import pytest

import sgtest
from sgtest import HttpConn, free_port, free_ports, get, http_conf, smooth_wrr


def upstream_conf(port, servers, upstream_extra="", location_extra="", name="pool"):
    """One server on `port` proxying / to upstream `name` with `servers`
    (strings like "127.0.0.1:9000 weight=2")."""
    lines = "".join("    server %s;\n" % s for s in servers)
    return http_conf("""
  upstream %s {
%s    %s
  }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://%s;
      %s
    }
  }
""" % (name, lines, upstream_extra, port, name, location_extra))


def addr(port, params=""):
    return ("127.0.0.1:%d %s" % (port, params)).strip()


def backends_seen(port, n, path="/", keepalive=False, source=None, expect=200):
    out = []
    if keepalive:
        with HttpConn(port, source=source) as c:
            for _ in range(n):
                r = c.request("GET", path)
                assert r.status == expect, (r.status, r.body[:200])
                out.append(r.backend)
        return out
    for _ in range(n):
        with HttpConn(port, source=source) as c:
            r = c.request("GET", path)
        assert r.status == expect, (r.status, r.body[:200])
        out.append(r.backend)
    return out


@pytest.fixture
def three(start_backend):
    """Three sgback processes, one port each: returns their ports."""
    return [start_backend().port for _ in range(3)]


# ---------------------------------------------------------------- round robin

def test_round_robin_two(start_proxy, three):
    a, b, _ = three
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a), addr(b)]))
    assert backends_seen(port, 6) == [a, b] * 3
    assert backends_seen(port, 6, keepalive=True) == [a, b] * 3


def test_round_robin_three(start_proxy, three):
    port = free_port()
    start_proxy(upstream_conf(port, [addr(p) for p in three]))
    assert backends_seen(port, 6) == three * 2
    assert backends_seen(port, 6, keepalive=True) == three * 2


def test_weighted(start_proxy, three):
    weights = [3, 1, 2]
    port = free_port()
    start_proxy(upstream_conf(port, [addr(p, "weight=%d" % w) for p, w in zip(three, weights)]))
    want = [three[i] for i in smooth_wrr(weights, 18)]
    assert backends_seen(port, 12) + backends_seen(port, 6, keepalive=True) == want


def test_round_robin_many_threads_keeps_exact_order(start_proxy, three):
    """Several worker threads and several client connections: still A B A B."""
    a, b, _ = three
    port = free_port()
    conf = upstream_conf(port, [addr(a), addr(b)]).replace(
        "events", "worker_processes 4;\nevents", 1)
    start_proxy(conf)
    conns = [HttpConn(port) for _ in range(4)]
    try:
        seen = [conns[i % 4].request("GET", "/").backend for i in range(16)]
    finally:
        for c in conns:
            c.close()
    assert seen == [a, b] * 8


# ---------------------------------------------------------------- backup, down

def test_backup_only_when_primaries_down(start_proxy, start_backend):
    a, c = start_backend(), start_backend()
    bk = start_backend()
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a.port), addr(bk.port, "backup"), addr(c.port)]))
    assert backends_seen(port, 4) == [a.port, c.port] * 2
    a.stop()
    # One primary left: the backup still gets nothing.
    assert backends_seen(port, 4) == [c.port] * 4
    c.stop()
    assert backends_seen(port, 4) == [bk.port] * 4
    assert backends_seen(port, 3, keepalive=True) == [bk.port] * 3


def test_down_server_never_used(start_proxy, three):
    a, b, c = three
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a, "down"), addr(b), addr(c)]))
    assert backends_seen(port, 6) == [b, c] * 3


def test_all_backups_and_primaries_down_is_502(start_proxy):
    a, b = free_ports(2)
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a), addr(b, "backup")]))
    assert get(port, "/").status == 502


# ---------------------------------------------------------------- failures

def test_max_fails_fail_timeout(start_proxy, start_backend, start_stub):
    """A failing peer (accepts, closes) is tried max_fails=2 times, skipped for
    fail_timeout=1 s, then probed once (nginx counts whole seconds: < 2.5 s)."""
    live = start_backend()
    stub = start_stub(mode="close")
    port = free_port()
    start_proxy(upstream_conf(port, [addr(stub.port, "max_fails=2 fail_timeout=1"),
                                     addr(live.port)]))
    t_fail = time.monotonic()
    assert backends_seen(port, 6) == [live.port] * 6
    assert stub.accepted == 2
    while stub.accepted == 2 and time.monotonic() - t_fail < 3.0:
        assert backends_seen(port, 1) == [live.port]
        time.sleep(0.1)
    waited = time.monotonic() - t_fail
    assert stub.accepted == 3, (stub.accepted, waited)
    assert waited >= 0.9, waited
    assert backends_seen(port, 4) == [live.port] * 4
    assert stub.accepted == 3


def test_max_fails_default_is_one_with_ten_seconds(start_proxy, start_backend, start_stub):
    live = start_backend()
    stub = start_stub(mode="close")
    port = free_port()
    start_proxy(upstream_conf(port, [addr(stub.port), addr(live.port)]))
    assert backends_seen(port, 8) == [live.port] * 8
    assert stub.accepted == 1


def test_max_fails_zero_never_marks_down(start_proxy, start_backend, start_stub):
    live = start_backend()
    stub = start_stub(mode="close")
    port = free_port()
    start_proxy(upstream_conf(port, [addr(stub.port, "max_fails=0"), addr(live.port)]))
    assert backends_seen(port, 6) == [live.port] * 6
    assert stub.accepted >= 3, stub.accepted


def test_peer_back_after_fail_timeout(start_proxy, start_backend):
    a, b = start_backend(), start_backend()
    pa = a.port
    port = free_port()
    start_proxy(upstream_conf(port, [addr(pa, "fail_timeout=1"), addr(b.port)]))
    a.stop()
    assert backends_seen(port, 4) == [b.port] * 4
    start_backend([pa])
    # fail_timeout=1 (whole seconds): within 3 s a request tries it again
    sgtest.wait_for(lambda: pa in backends_seen(port, 1), 3, 0.1, "the peer to be tried again")
    seen = backends_seen(port, 6)
    assert pa in seen and b.port in seen, seen


# ---------------------------------------------------------------- next upstream

def test_next_upstream_on_refused_connection(start_proxy, start_backend):
    live = start_backend()
    closed = free_port()
    port = free_port()
    start_proxy(upstream_conf(port, [addr(closed), addr(live.port)]))
    assert backends_seen(port, 4) == [live.port] * 4


def test_next_upstream_on_reset_and_close(start_proxy, start_backend, start_stub):
    live = start_backend()
    rst, close = start_stub(mode="rst"), start_stub(mode="close")
    port = free_port()
    start_proxy(upstream_conf(port, [addr(rst.port), addr(close.port), addr(live.port)]))
    assert backends_seen(port, 4) == [live.port] * 4
    assert rst.accepted == 1 and close.accepted == 1


def test_all_peers_refuse_is_502(start_proxy):
    a, b, port = free_ports(3)
    start_proxy(upstream_conf(port, [addr(a), addr(b)]))
    r = get(port, "/")
    assert r.status == 502
    assert b"502" in r.body


def test_implicit_upstream_refused_is_502(start_proxy):
    closed, port = free_ports(2)
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, closed)))
    assert get(port, "/").status == 502
    with HttpConn(port) as c:  # an error answer keeps the client connection
        assert c.request("GET", "/").status == 502
        assert c.request("GET", "/").status == 502


def test_next_upstream_off(start_proxy, start_backend):
    live = start_backend()
    closed = free_port()
    port = free_port()
    start_proxy(upstream_conf(port, [addr(closed), addr(live.port)],
                              location_extra="proxy_next_upstream off;"))
    assert get(port, "/").status == 502
    assert backends_seen(port, 3) == [live.port] * 3


def test_next_upstream_tries_1(start_proxy, start_backend):
    live = start_backend()
    closed = free_port()
    port = free_port()
    start_proxy(upstream_conf(port, [addr(closed), addr(live.port)],
                              location_extra="proxy_next_upstream_tries 1;"))
    assert get(port, "/").status == 502
    assert backends_seen(port, 3) == [live.port] * 3


def test_next_upstream_tries_2_of_3(start_proxy, start_backend):
    live = start_backend()
    c1, c2 = free_ports(2)
    port = free_port()
    start_proxy(upstream_conf(port, [addr(c1), addr(c2), addr(live.port)],
                              location_extra="proxy_next_upstream_tries 2;"))
    assert get(port, "/").status == 502
    # Both closed peers are now marked failed: the live one answers.
    assert backends_seen(port, 2) == [live.port] * 2


def test_next_upstream_on_timeout(start_proxy, start_backend, start_stub):
    live = start_backend()
    hold = start_stub(mode="hold")
    port = free_port()
    start_proxy(upstream_conf(port, [addr(hold.port), addr(live.port)],
                              location_extra="proxy_read_timeout 500ms;"))
    t0 = time.monotonic()
    assert backends_seen(port, 1) == [live.port]
    assert time.monotonic() - t0 >= 0.45


def test_post_not_retried_once_sent(start_proxy, start_backend, start_stub):
    """nginx does not pass a POST to the next peer after sending it (not idempotent)."""
    live = start_backend()
    hold = start_stub(mode="hold")
    port = free_port()
    start_proxy(upstream_conf(port, [addr(hold.port), addr(live.port)],
                              location_extra="proxy_read_timeout 500ms;"))
    r = get(port, "/", method="POST", body=b"x")
    assert r.status == 504
    assert hold.accepted == 1


def test_next_upstream_http_503(start_proxy, start_backend, start_stub):
    live = start_backend()
    reply = b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
    s1 = start_stub(mode="raw", reply=reply)
    port = free_port()
    start_proxy(upstream_conf(port, [addr(s1.port), addr(live.port)],
                              location_extra="proxy_next_upstream error timeout http_503;"))
    assert backends_seen(port, 2) == [live.port] * 2
    # Without http_503 the 503 goes to the client as it is.
    s2 = start_stub(mode="raw", reply=reply)
    port2 = free_port()
    start_proxy(upstream_conf(port2, [addr(s2.port), addr(live.port)]))
    r = get(port2, "/")
    assert r.status == 503 and r.body == b"busy"


# ---------------------------------------------------------------- ip_hash

SOURCES = ["127.0.%d.1" % i for i in range(1, 13)]


def test_ip_hash_stable_per_client(start_proxy, three):
    a, b, _ = three
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a), addr(b)], upstream_extra="ip_hash;"))
    mapping = {}
    for src in SOURCES:
        seen = backends_seen(port, 3, source=src) + backends_seen(port, 3, keepalive=True,
                                                                  source=src)
        assert len(set(seen)) == 1, (src, seen)
        mapping[src] = seen[0]
    assert set(mapping.values()) == {a, b}, mapping
    # 127.0.5.1 and 127.0.5.77 share a /24: nginx hashes the first three octets.
    assert backends_seen(port, 2, source="127.0.5.77") == [mapping["127.0.5.1"]] * 2


def nginx_picks(start_nginx, servers, sources):
    """{source address: backend port} as the installed nginx's ip_hash
    picks them, with the same upstream block."""
    port = free_port()
    lines = "".join("    server %s;\n" % s for s in servers)
    start_nginx(http_conf("""
  access_log off;
  upstream pool {
%s    ip_hash;
  }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://pool; }
  }
""" % (lines, port)), [port])
    return {src: backends_seen(port, 1, source=src)[0] for src in sources}


def test_ip_hash_matches_nginx(start_proxy, start_nginx, three):
    a, b, c = three
    servers = [addr(a), addr(b), addr(c, "weight=2")]
    want = nginx_picks(start_nginx, servers, SOURCES)
    assert set(want.values()) == {a, b, c}, want      # every peer is someone's pick
    port = free_port()
    start_proxy(upstream_conf(port, servers, upstream_extra="ip_hash;"))
    for src in SOURCES:
        assert backends_seen(port, 1, source=src) == [want[src]], src


def test_ip_hash_skips_failed_peer(start_proxy, start_nginx, start_backend):
    a, b = start_backend(), start_backend()
    servers = [addr(a.port), addr(b.port)]
    src = next(s for s, p in nginx_picks(start_nginx, servers, SOURCES).items() if p == a.port)
    port = free_port()
    start_proxy(upstream_conf(port, servers, upstream_extra="ip_hash;"))
    assert backends_seen(port, 2, source=src) == [a.port] * 2
    a.stop()
    assert backends_seen(port, 3, source=src) == [b.port] * 3


# ---------------------------------------------------------------- hash KEY [consistent]

HASH_KEYS = ["k%d" % i for i in range(40)]


def nginx_hash_picks(start_nginx, servers, method, keys):
    """{key: backend port} as the installed nginx's `hash $arg_k [consistent]`
    picks them, with the same upstream block."""
    port = free_port()
    lines = "".join("    server %s;\n" % s for s in servers)
    start_nginx(http_conf("""
  access_log off;
  upstream pool {
%s    %s;
  }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://pool; }
  }
""" % (lines, method, port)), [port])
    return {k: backends_seen(port, 1, path="/?k=" + k)[0] for k in keys}


@pytest.mark.parametrize("method", ["hash $arg_k", "hash $arg_k consistent"])
def test_hash_matches_nginx(start_proxy, start_nginx, three, method):
    """An http upstream's `hash` sends each key where nginx sends it, on
    fresh and kept-alive connections alike."""
    a, b, c = three
    servers = [addr(a), addr(b), addr(c, "weight=2")]
    want = nginx_hash_picks(start_nginx, servers, method, HASH_KEYS)
    assert set(want.values()) == {a, b, c}, want      # every peer is some key's pick
    port = free_port()
    start_proxy(upstream_conf(port, servers, upstream_extra=method + ";"))
    got = {k: backends_seen(port, 1, path="/?k=" + k)[0] for k in HASH_KEYS}
    assert got == want
    with HttpConn(port) as conn:
        for k in HASH_KEYS[:10]:
            assert conn.request("GET", "/?k=" + k).backend == want[k], k


def test_hash_moves_a_failed_peers_keys_only(start_proxy, start_nginx, start_backend):
    """With `hash ... consistent`, keys of a stopped server go elsewhere and
    every other key stays where it was."""
    backs = [start_backend() for _ in range(3)]
    servers = [addr(b.port) for b in backs]
    port = free_port()
    start_proxy(upstream_conf(port, servers, upstream_extra="hash $arg_k consistent;"))
    before = {k: backends_seen(port, 1, path="/?k=" + k)[0] for k in HASH_KEYS}
    gone = backs[0].port
    assert gone in before.values(), before
    backs[0].stop()
    after = {k: backends_seen(port, 1, path="/?k=" + k)[0] for k in HASH_KEYS}
    for k in HASH_KEYS:
        if before[k] == gone:
            assert after[k] != gone, k
        else:
            assert after[k] == before[k], k


def test_hash_refuses_backup(tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text(upstream_conf(1, ["127.0.0.1:1", "127.0.0.1:2 backup"],
                                  upstream_extra="hash $arg_k;"))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 1
    assert 'balancing method does not support parameter "backup"' in r.stderr


# ---------------------------------------------------------------- random, max_conns, zone

def hold_request(port, backend_port, held):
    """Starts a slow request through the proxy and returns once
    `backend_port` (sgback) has it; the thread fills held["r"]."""
    def slow():
        held["r"] = get(port, "/delay/%d" % (1500 * sgtest.SLOW), timeout=20)
    arrived = sgtest.SgbackRequests(backend_port)
    t = threading.Thread(target=slow)
    t.start()
    sgtest.wait_for(lambda: arrived() >= 1, 5, what="the slow request at its peer")
    return t


def test_random_uses_every_live_peer_and_never_a_down_one(start_proxy, three):
    a, b, c = three
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a), addr(b), addr(c, "down")],
                              upstream_extra="zone pool 64k; random;"))
    seen = backends_seen(port, 40) + backends_seen(port, 20, keepalive=True)
    assert c not in seen
    assert set(seen) == {a, b}      # 60 draws all on one side: chance 2^-59


def test_random_two_avoids_the_busier_peer(start_proxy, three):
    """`random two` draws two different peers and takes the one with fewer
    open requests: while one peer holds a request, every new one goes to the
    other."""
    a, b, _ = three
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a), addr(b)], upstream_extra="random two least_conn;"))
    held = {}
    # Hold a request on whichever peer gets it (a tie between idle peers is random).
    def slow():
        held["r"] = get(port, "/delay/%d" % (1500 * sgtest.SLOW), timeout=20)
    counts = {p: sgtest.SgbackRequests(p) for p in (a, b)}
    before = {p: counts[p]() for p in (a, b)}
    t = threading.Thread(target=slow)
    t.start()
    sgtest.wait_for(lambda: any(counts[p]() > before[p] for p in (a, b)), 5,
                    what="the slow request at a peer")
    busy = a if counts[a]() > before[a] else b
    free = b if busy == a else a
    during = backends_seen(port, 6)
    t.join(20)
    assert held["r"].status == 200 and held["r"].backend == busy
    assert during == [free] * 6, during


def test_max_conns_caps_open_requests_per_server(start_proxy, three):
    """max_conns=1: while a server holds one request it gets no other; when
    every server is full the request is a 502 (no live upstreams)."""
    a, b, _ = three
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a, "max_conns=1"), addr(b)]))
    held = {}
    t = hold_request(port, a, held)          # round robin: the first request goes to a
    during = backends_seen(port, 4)
    t.join(20)
    assert held["r"].backend == a
    assert during == [b] * 4, during
    assert sorted(backends_seen(port, 2)) == [a, b]     # a takes requests again

    port2 = free_port()
    proxy2 = start_proxy(upstream_conf(port2, [addr(a, "max_conns=1")]))
    held2 = {}
    t2 = hold_request(port2, a, held2)
    r = get(port2, "/")
    t2.join(20)
    assert held2["r"].status == 200
    assert r.status == 502
    assert 'no live upstreams while connecting to upstream "pool"' in proxy2.error_log


def test_random_refuses_backup_and_bad_parameters(tmp_path):
    cases = [("random;", "127.0.0.1:2 backup", 'balancing method does not support parameter "backup"'),
             ("random three;", "127.0.0.1:2", 'invalid parameter "three"'),
             ("random two fastest;", "127.0.0.1:2", 'invalid parameter "fastest"'),
             ("zone z 1q;", "127.0.0.1:2", 'invalid zone size "1q"')]
    for extra, second, needle in cases:
        conf = tmp_path / "r.conf"
        conf.write_text(upstream_conf(1, ["127.0.0.1:1", second], upstream_extra=extra))
        r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
        assert r.returncode == 1, extra
        assert needle in r.stderr, (extra, r.stderr)


# ---------------------------------------------------------------- least_conn

def test_least_conn(start_proxy, three):
    a, b, _ = three
    port = free_port()
    start_proxy(upstream_conf(port, [addr(a), addr(b)], upstream_extra="least_conn;"))
    held = {}

    def slow():
        held["r"] = get(port, "/delay/%d" % (1500 * sgtest.SLOW), timeout=20)
    arrived = sgtest.SgbackRequests(a)
    t = threading.Thread(target=slow)
    t.start()
    sgtest.wait_for(lambda: arrived() >= 1, 5, what="the slow request at the first peer")
    during = backends_seen(port, 4) + backends_seen(port, 3, keepalive=True)
    t.join(20)
    assert held["r"].status == 200
    assert held["r"].backend == a       # tie at start → first peer
    assert during == [b] * 7, during
    assert sorted(backends_seen(port, 4)) == sorted([a, a, b, b])


def test_least_conn_two_held(start_proxy, three):
    """Two long requests occupy two peers: the third peer takes the rest."""
    port = free_port()
    start_proxy(upstream_conf(port, [addr(p) for p in three], upstream_extra="least_conn;"))
    results = []
    threads = []
    hold = "/delay/%d" % (1500 * sgtest.SLOW)
    for i in range(2):
        arrived = sgtest.SgbackRequests(three[i])
        t = threading.Thread(target=lambda: results.append(get(port, hold, timeout=20)))
        t.start()
        threads.append(t)
        sgtest.wait_for(lambda: arrived() >= 1, 5, what="long request %d at its peer" % i)
    during = backends_seen(port, 3)
    for t in threads:
        t.join(20)
    held = sorted(r.backend for r in results)
    assert held == sorted(three[:2]), held
    assert during == [three[2]] * 3, during
