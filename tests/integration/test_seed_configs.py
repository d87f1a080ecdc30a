"""The seed configurations users bring (shared/seed-configs), run unchanged.

-t: every file passes.  The gRPC seeds 01, 04 and 07 run in test_grpc.py,
02, 05 and 06 in test_grpc_calls.py, 03 (grpcs://) in test_upstream_tls.py,
12 in test_tls.py, 13 in test_h2_upstream.py.  Then 08, 09,
10 and 11 run as their comments promise (08's WebSocket side:
test_websocket.py::test_seed_08_websocket).  Their ports are fixed: each
test runs a copy whose ports are free ones (sgtest.seed_with_free_ports;
seed[8080] is the port that stands for 8080), every other byte unchanged.
Every test starts its own proxy so balancer state starts fresh.
"""

import subprocess
import threading
import time

import pytest

import sgtest
from sgtest import HttpConn, build_request, get, wait_for

SUPPORTED = ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13"]


def seed(seed_dir, num):
    files = sorted(seed_dir.glob("%s-*.conf" % num))
    assert files, "no seed file %s-*.conf in %s" % (num, seed_dir)
    return files[0]


def test_every_seed_file_is_classified(seed_dir):
    nums = sorted(p.name[:2] for p in seed_dir.glob("*.conf"))
    assert nums == sorted(SUPPORTED), nums


@pytest.mark.parametrize("num", SUPPORTED)
def test_t_supported_seed_passes(seed_dir, tmp_path, num):
    path = seed(seed_dir, num)
    made = []
    if "ssl_certificate" in path.read_text():   # as certs/README.md says
        certs = tmp_path / "certs"
        certs.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", str(certs / "key.pem"),
                        "-out", str(certs / "cert.pem")], check=True, capture_output=True, timeout=60)
        made = [certs]
    r = sgtest.run_streamgate(["-t", "-c", path, "-p", tmp_path])
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr
    assert list(tmp_path.iterdir()) == made, "-t created files"


def start_seed(start_proxy, tmp_prefix, seed):
    return start_proxy(conf_file=seed.path, prefix=tmp_prefix)


# ---------------------------------------------------------------- 08

def test_08_http_paths_and_logs(seed_conf, tmp_prefix, start_proxy, start_backend, start_echo):
    """The IM front's HTTP side, unchanged: / goes to the API (8080) over
    keep-alive upstream connections, /acc to 8089 with the map's
    Connection: close and no Upgrade (none from the client), Host $host;
    logs go to logs/im.log, and the server's error_log is logs/im.error.log."""
    s = seed_conf("08")
    api = start_backend([s[8080]])
    acc = start_echo(s[8089])
    p = start_seed(start_proxy, tmp_prefix, s)
    assert (tmp_prefix / "logs" / "im.error.log").exists()
    api.reset_stats()
    with HttpConn(s[8000]) as c:
        for i in range(20):
            r = c.request("GET", "/api/%d" % i, headers={"Host": "im.91vh.com"})
            assert (r.status, r.backend) == (200, s[8080])
    assert api.stats()["accepted"] - 1 <= 2  # keepalive 16: connections reused
    r = get(s[8000], "/acc", headers={"Host": "IM.91vh.com"})
    assert r.status == 200
    line, hdrs, _ = sgtest.head_of(r)
    h = {k.lower(): v for k, v in hdrs}
    assert line == "GET /acc HTTP/1.1"
    assert h["host"] == "im.91vh.com"
    assert h.get("connection", "").lower() == "close"
    assert "upgrade" not in h
    log = tmp_prefix / "logs" / "im.log"
    # Each worker thread writes its buffer out once a second: the two
    # requests may have been logged by different threads.
    wait_for(lambda: log.exists() and "/acc" in log.read_text() and "GET /api/0 HTTP/1.1" in log.read_text(),
             5, what="/acc and /api/0 in logs/im.log")


# ---------------------------------------------------------------- 09

def test_09_ten_thousand_requests_on_one_keepalive_connection(
        seed_conf, tmp_prefix, start_proxy, start_backend, record_property):
    """10,000 requests on ONE client connection: all 200, never closed by the
    proxy, round robin over 8081/8082, and the backends see few connections
    (at most 32 idle per worker thread; 2 threads on CI → ≤ 64)."""
    s = seed_conf("09")
    b1 = start_backend([s[8081]])
    b2 = start_backend([s[8082]])
    start_seed(start_proxy, tmp_prefix, s)
    b1.reset_stats()
    b2.reset_stats()
    n = 10000  # keepalive_requests 10000: the last one closes the connection
    seen = {s[8081]: 0, s[8082]: 0}
    with HttpConn(s[8000], timeout=20) as c:
        batch = 50  # pipelined in small batches: same semantics, less wall time
        for i in range(0, n - batch, batch):
            c.send(b"".join(build_request("GET", "/http/r%d" % (i + k)) for k in range(batch)))
            for _ in range(batch):
                r = c.read_response()
                assert r.status == 200, (i, r.status, r.body[:200])
                assert (r.header("Connection") or "").lower() != "close", i
                seen[r.backend] += 1
            assert not c.eof, "proxy closed the client connection after %d requests" % i
        for i in range(n - batch, n):
            r = c.request("GET", "/http/r%d" % i)
            assert r.status == 200
            seen[r.backend] += 1
            if i < n - 1:
                assert not c.is_closed(0), i
        # The 10000th response ends the connection, as nginx does.
        assert (r.header("Connection") or "").lower() == "close"
        assert c.is_closed(2.0)
    assert seen == {s[8081]: n // 2, s[8082]: n // 2}, seen
    # The stats request itself is one accepted connection on each backend.
    s1, s2 = b1.stats(), b2.stats()
    upstream_conns = (s1["accepted"] - 1) + (s2["accepted"] - 1)
    record_property("upstream_connections", upstream_conns)
    print("09: %d upstream connections for %d requests" % (upstream_conns, n))
    assert s1["requests"] >= n // 2 and s2["requests"] >= n // 2
    assert upstream_conns <= 64, upstream_conns


def test_09_request_uri_passes_unchanged(seed_conf, tmp_prefix, start_proxy, start_echo):
    s = seed_conf("09")
    e1, e2 = start_echo(s[8081]), start_echo(s[8082])
    start_seed(start_proxy, tmp_prefix, s)
    r = get(s[8000], "/http/x/y?z=1")
    assert r.status == 200
    line, hdrs, _ = sgtest.head_of(r)
    assert line == "GET /http/x/y?z=1 HTTP/1.1"
    names = {k.lower(): v for k, v in hdrs}
    assert names.get("connection", "").lower() == "keep-alive"
    assert names.get("host") == "http_backend"
    assert get(s[8000], "/other").status == 404


# ---------------------------------------------------------------- 10

def upload(port, path, total, chunk, pace=0.0, chunked=False):
    """POST `total` bytes in `chunk`-sized writes, sleeping `pace` between them."""
    with HttpConn(port, timeout=60) as c:
        if chunked:
            head = build_request("POST", path, {"Transfer-Encoding": "chunked"})
        else:
            head = build_request("POST", path, {"Content-Length": str(total)})
        c.send(head)
        block = b"x" * chunk
        sent = 0
        while sent < total:
            n = min(chunk, total - sent)
            data = block[:n]
            c.send(b"%x\r\n%s\r\n" % (n, data) if chunked else data)
            sent += n
            if pace:
                time.sleep(pace)
        if chunked:
            c.send(b"0\r\n\r\n")
        return c.read_response()


SEED10_BACKENDS = (18018, 18019, 18020, 18021)


def test_10_slow_100mb_upload(seed_conf, tmp_prefix, start_proxy, start_backend):
    """A 100 MB upload paced over ~2 s reaches /sink whole (the seed promises
    minutes; the timeouts are 120 s, so 2 s proves the relay without waiting)."""
    s = seed_conf("10")
    start_backend([s[q] for q in SEED10_BACKENDS])
    p = start_seed(start_proxy, tmp_prefix, s)
    t0 = time.monotonic()
    r = upload(s[8000], "/sink", 100 * 1024 * 1024, 1024 * 1024, pace=0.02)
    took = time.monotonic() - t0
    assert r.status == 200, (r.status, r.body[:300])
    assert r.body == b"received 104857600\n"
    assert took > 1.5
    if not sgtest.SANITIZED:
        # Streamed, not buffered: the proxy never holds the 100 MB.
        assert p.rss_kb() < 80 * 1024, p.rss_kb()


def test_10_chunked_100mb_upload(seed_conf, tmp_prefix, start_proxy, start_backend):
    s = seed_conf("10")
    start_backend([s[q] for q in SEED10_BACKENDS])
    start_seed(start_proxy, tmp_prefix, s)
    r = upload(s[8000], "/sink", 100 * 1024 * 1024, 256 * 1024, chunked=True)
    assert r.status == 200, (r.status, r.body[:300])
    assert r.body == b"received 104857600\n"


def test_10_body_over_limit_is_413(seed_conf, tmp_prefix, start_proxy, start_backend):
    s = seed_conf("10")
    start_backend([s[q] for q in SEED10_BACKENDS])
    start_seed(start_proxy, tmp_prefix, s)
    with HttpConn(s[8000]) as c:
        c.send(build_request("POST", "/sink", {"Content-Length": str(201 * 1024 * 1024)}))
        r = c.read_response()
    assert r.status == 413


# ---------------------------------------------------------------- 11

A, B = 7878, 3333          # the seed's two backends, in its server order


class Lb11:
    """Seed 11 on free ports: proxy, seed (seed[8002] is the port of the
    seed's 8002 server), a and b (the ports standing for 7878 and 3333) and
    backends {a: Backend, b: Backend}."""

    def __init__(self, proxy, seed, backends):
        self.proxy, self.seed, self.backends = proxy, seed, backends
        self.a, self.b = seed[A], seed[B]


@pytest.fixture
def lb11(seed_conf, tmp_prefix, start_proxy, start_backend):
    """Backends for 7878 and 3333 (one sgback each) and a fresh proxy on
    11's file."""
    s = seed_conf("11")
    backends = {s[A]: start_backend([s[A]]), s[B]: start_backend([s[B]])}
    p = start_seed(start_proxy, tmp_prefix, s)
    return Lb11(p, s, backends)


def order_fresh(port, n, path="/"):
    out = []
    for _ in range(n):
        r = get(port, path)
        assert r.status == 200, r.status
        out.append(r.backend)
    return out


def order_keepalive(port, n, path="/"):
    out = []
    with HttpConn(port) as c:
        for _ in range(n):
            r = c.request("GET", path)
            assert r.status == 200, r.status
            out.append(r.backend)
    return out


def test_11_round_robin_8002(lb11):
    a, b, port = lb11.a, lb11.b, lb11.seed[8002]
    assert order_fresh(port, 6) == [a, b] * 3
    assert order_keepalive(port, 6) == [a, b] * 3


def test_11_weighted_8003(lb11):
    # nginx's smooth weighted round robin, weights 1 (7878) and 2 (3333).
    a, b, port = lb11.a, lb11.b, lb11.seed[8003]
    assert order_fresh(port, 6) == [b, a, b, b, a, b]
    assert order_keepalive(port, 6) == [b, a, b, b, a, b]


def test_11_hot_standby_8001(lb11):
    a, b, port = lb11.a, lb11.b, lb11.seed[8001]
    assert order_fresh(port, 4) == [a] * 4
    assert order_keepalive(port, 4) == [a] * 4
    lb11.backends[a].stop()
    # 7878 is down: every request still succeeds, from the backup.
    assert order_fresh(port, 4) == [b] * 4
    assert order_keepalive(port, 4) == [b] * 4


def test_11_ip_hash_8004(lb11):
    port = lb11.seed[8004]
    first = order_fresh(port, 1)[0]
    assert order_fresh(port, 5) == [first] * 5
    assert order_keepalive(port, 5) == [first] * 5


def test_11_guarded_max_fails_8005(lb11):
    """7878 (weight 2, max_fails=2, fail_timeout=2) stops: requests keep
    succeeding on 3333, and once 7878 is back it gets traffic again after
    its fail_timeout."""
    a, b, port = lb11.a, lb11.b, lb11.seed[8005]
    backends = lb11.backends
    assert sorted(order_fresh(port, 3)) == sorted([a, a, b])
    backends[a].stop()
    assert order_fresh(port, 6) == [b] * 6
    backends[a] = sgtest.Backend([a], logdir=backends[b].logdir).start()
    try:
        time.sleep(3.1)  # fail_timeout=2 (nginx counts whole seconds: up to 3 s)
        got = order_fresh(port, 6)
        assert got.count(a) >= 2, got
    finally:
        backends[a].stop()


def test_11_guarded_skips_failed_peer_for_fail_timeout(seed_conf, tmp_prefix, start_proxy,
                                                         start_backend, start_stub):
    """Counted with a failing 7878 (accepts and closes): it is tried exactly
    max_fails=2 times, then left alone for fail_timeout=2 s, then tried once."""
    s = seed_conf("11")
    b, port = s[B], s[8005]
    start_backend([b])
    stub = start_stub(s[A], "close")
    start_seed(start_proxy, tmp_prefix, s)
    t_fail = time.monotonic()
    assert order_fresh(port, 6) == [b] * 6
    assert stub.accepted == 2, stub.accepted
    time.sleep(1.0)
    assert order_fresh(port, 3) == [b] * 3
    assert stub.accepted == 2, stub.accepted
    # After fail_timeout (2 s; nginx's clock has whole seconds, so < 3.5 s) the
    # peer gets exactly one probe, which fails again and restarts the wait.
    while stub.accepted == 2 and time.monotonic() - t_fail < 4.0:
        assert order_fresh(port, 1) == [b]
        time.sleep(0.1)
    waited = time.monotonic() - t_fail
    assert stub.accepted == 3, (stub.accepted, waited)
    assert waited >= 1.9, waited
    assert order_fresh(port, 3) == [b] * 3
    assert stub.accepted == 3, stub.accepted


def test_11_least_conn_8006(lb11):
    """While a /delay/2000 request holds 7878, least_conn sends the others to 3333."""
    a, b, port = lb11.a, lb11.b, lb11.seed[8006]
    result = {}

    def slow():
        result["r"] = get(port, "/delay/%d" % (2000 * sgtest.SLOW), timeout=20)
    t = threading.Thread(target=slow)
    t.start()
    # 7878 has seen no request but our /stats calls (each counts itself)
    # until the slow one arrives.
    polls = []

    def slow_arrived():
        polls.append(1)
        return lb11.backends[a].stats()["requests"] > len(polls)
    wait_for(slow_arrived, 5, what="the slow request at 7878")
    during = order_fresh(port, 4)
    t.join(20)
    assert result["r"].status == 200
    assert result["r"].backend == a
    assert during == [b] * 4, during
    # Both idle again: they alternate.
    after = order_fresh(port, 4)
    assert sorted(after) == sorted([a, a, b, b]), after
