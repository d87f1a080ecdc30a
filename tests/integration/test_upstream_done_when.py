"""Issue 11's "Done when" items that no other file covers, with real backends.

- `hash $arg_k consistent` with 10,000 keys: adding a fifth server (reload)
  moves at most 1.5/N of the keys, only to the new server, and every choice,
  before and after, is the installed nginx's on the very same upstream block.
- Killing a backend mid-load: with `proxy_next_upstream error timeout` no
  idempotent GET fails; a POST the dead backend had read is not replayed.
- nginx #1431: an upstream HTTP/2 GOAWAY with NO_ERROR is a graceful drain,
  for grpc_pass and proxy_http_version 2 alike: streams in flight complete,
  new ones go on a new connection, and the server (max_fails=1) is not
  marked failed. (Retries only of streams the backend never saw: REFUSED_STREAM,
  a GOAWAY below the stream's id and a refused connect are in
  test_h2_upstream.py.)

Keys map to server positions in the config and nginx hashes the server's
address string, so streamgate is compared with nginx on the same ports, never
with constants.
"""

import socket
import struct
import threading

import pytest

import sgtest
from sgtest import HttpConn, build_request, free_port, http_conf, wait_for
from test_balancing import addr, upstream_conf

KEYS = ["key-%d" % i for i in range(10000)]


def picks(port, keys, conns=4, batch=250):
    """{key: X-Backend} for `GET /?k=KEY` through `port`: requests pipelined
    in batches, one connection per batch, from a few threads (10,000 one by
    one would take most of a minute on a shared machine)."""
    out = {}
    errors = []
    lock = threading.Lock()

    def run(part):
        try:
            got = {}
            for i in range(0, len(part), batch):
                chunk = part[i:i + batch]
                # a new connection per batch: nginx closes after
                # keepalive_requests (1000) requests
                with HttpConn(port) as c:
                    c.send(b"".join(build_request("GET", "/?k=" + k) for k in chunk))
                    for k in chunk:
                        r = c.read_response()
                        assert r.status == 200, (k, r.status, r.body[:200])
                        got[k] = r.backend
            with lock:
                out.update(got)
        except Exception as e:      # reported below
            errors.append(e)
    ts = [threading.Thread(target=run, args=(keys[i::conns],)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[0]
    assert len(out) == len(keys)
    return out


def test_consistent_hash_10000_keys_fifth_server_matches_nginx(start_proxy, start_nginx,
                                                               start_backend):
    backs = [start_backend().port for _ in range(5)]
    four = [addr(p) for p in backs[:4]]
    five = [addr(p) for p in backs]
    method = "hash $arg_k consistent;"

    # nginx: the four- and the five-server upstream side by side in one instance
    n4, n5 = free_port(), free_port()
    blocks = "".join(upstream_conf(port, servers, upstream_extra=method, name=name)
                     .split("http {", 1)[1].rsplit("}", 1)[0]
                     for port, servers, name in ((n4, four, "pool4"), (n5, five, "pool5")))
    start_nginx(http_conf("  access_log off;\n" + blocks), [n4, n5])
    want4, want5 = picks(n4, KEYS), picks(n5, KEYS)

    port = free_port()
    p = start_proxy(upstream_conf(port, four, upstream_extra=method))
    before = picks(port, KEYS)
    assert before == want4, sum(before[k] != want4[k] for k in KEYS)
    assert set(before.values()) == set(backs[:4])

    assert p.reload(upstream_conf(port, five, upstream_extra=method))
    # a worker may still serve a key with the old generation for a moment
    wait_for(lambda: picks(port, KEYS[:500]) == {k: want5[k] for k in KEYS[:500]},
             10, 0.05, "the five-server generation answers")
    after = picks(port, KEYS)
    assert after == want5, sum(after[k] != want5[k] for k in KEYS)

    moved = [k for k in KEYS if after[k] != before[k]]
    assert len(moved) <= 1.5 / 5 * len(KEYS), len(moved)
    assert moved, "the fifth server got no key"
    assert {after[k] for k in moved} == {backs[4]}   # keys move only to the new server


# ---------------------------------------------------------------- a backend dies mid-load

def test_killed_backend_mid_load_fails_no_get(start_proxy, start_backend):
    backs = [start_backend() for _ in range(3)]
    port = free_port()
    start_proxy(upstream_conf(port, [addr(b.port) for b in backs],
                              location_extra="proxy_next_upstream error timeout;"))
    victim = backs[1]
    lock = threading.Lock()
    seen = {b.port: 0 for b in backs}
    failures = []
    done = [0]
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                with HttpConn(port) as c:
                    for _ in range(50):
                        r = c.request("GET", "/")
                        with lock:
                            if r.status != 200:
                                failures.append((r.status, r.body[:200]))
                            else:
                                seen[r.backend] += 1
                            done[0] += 1
                        if stop.is_set():
                            break
            except Exception as e:      # a dropped client connection is a failure too
                with lock:
                    failures.append(repr(e))
    ts = [threading.Thread(target=client) for _ in range(6)]
    for t in ts:
        t.start()
    try:
        wait_for(lambda: min(seen.values()) >= 20, 20, 0.01, "every backend answers")
        victim.kill()       # SIGKILL: its connections are reset, mid-request or idle
        at_kill = done[0]
        wait_for(lambda: done[0] >= at_kill + 600, 30, 0.01, "600 more GETs after the kill")
    finally:
        stop.set()
        for t in ts:
            t.join(30)
    assert failures == [], failures[:5]
    assert sum(seen.values()) == done[0]


class DyingBackend(sgtest._ThreadedListener):
    """Reads one whole request (head and Content-Length body), counts it, then
    dies: closes its listener and resets the connection without answering."""

    def __init__(self):
        self.read = 0
        self.died = threading.Event()
        super().__init__()

    def serve(self, c):
        data = b""
        while b"\r\n\r\n" not in data:
            more = c.recv(65536)
            if not more:
                return
            data += more
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            more = c.recv(65536)
            if not more:
                return
            body += more
        with self._lock:
            self.read += 1
        self._stop = True
        self.sock.close()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        self.died.set()


def test_post_read_by_a_dying_backend_is_not_replayed(start_proxy, start_echo):
    dying = DyingBackend()
    live = start_echo()
    port = free_port()
    try:
        start_proxy(upstream_conf(port, [addr(dying.port), addr(live.port)],
                                  location_extra="proxy_next_upstream error timeout;"))
        statuses = []
        for _ in range(4):          # round robin: one of the first two reaches it
            with HttpConn(port) as c:
                statuses.append(c.request("POST", "/", body=b"payment=1").status)
            if dying.died.is_set():
                break
        assert dying.died.is_set(), statuses
    finally:
        dying.stop()
    assert dying.read == 1
    assert statuses.count(502) == 1, statuses
    assert set(statuses) <= {200, 502}, statuses
    posts = [h for h in live.heads if h.startswith(b"POST ")]
    assert len(posts) == statuses.count(200), (statuses, live.heads)


# ---------------------------------------------------------------- nginx #1431: GOAWAY NO_ERROR

GRPC_HEADERS = {"Content-Type": "application/grpc", "TE": "trailers"}
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


@pytest.mark.parametrize("kind", ["grpc_pass", "proxy_http_version 2"])
def test_upstream_goaway_no_error_is_a_graceful_drain(start_proxy, kind):
    from test_h2_upstream import H2Stub
    a, b = H2Stub(), H2Stub()
    try:
        port = free_port()
        if kind == "grpc_pass":
            location = "grpc_pass grpc://b;"
            req = dict(method="POST", headers=GRPC_HEADERS, body=EMPTY_MESSAGE)
        else:
            location = "proxy_pass http://b; proxy_http_version 2;"
            req = dict(method="GET")
        p = start_proxy(http_conf("""
  access_log off;
  upstream b {
    server 127.0.0.1:%d max_fails=1 fail_timeout=60s;
    server 127.0.0.1:%d max_fails=1 fail_timeout=60s;
    keepalive 8;
  }
  server {
    listen 127.0.0.1:%d;
    location / { %s }
  }
""" % (a.port, b.port, port, location)))

        def call(path):
            with HttpConn(port) as c:
                return c.request(path=path, **req)
        held = [None] * 4

        def hold(i):
            held[i] = call("/wait")
        ts = [threading.Thread(target=hold, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        wait_for(lambda: a.waiting + b.waiting == 4 and a.waiting > 0, 10, 0.01,
                 "four streams open on the backends, some on the first")
        in_flight_a = a.waiting
        a.goaway_no_error()       # the answers below follow it on the same connections
        a.release()
        b.release()
        for t in ts:
            t.join(20)
        assert [(r.status, b"ok" in r.body) for r in held] == [(200, True)] * 4, held
        assert len(a.requests) == in_flight_a
        drained = a.connections     # every one of them got the GOAWAY

        after = [call("/") for _ in range(4)]
        assert [r.status for r in after] == [200] * 4, after
        # not marked failed: the first server still takes calls, on a new connection
        assert len(a.requests) > in_flight_a, (len(a.requests), len(b.requests))
        assert a.connections > drained, (a.connections, drained, a.max_open)
        assert "[error]" not in p.error_log, p.error_log
    finally:
        a.stop()
        b.stop()
