"""DNS discovery for upstreams: `server NAME resolve [service=NAME]` with a
`resolver` (nginx 1.27.3).

A small DNS server started by the test (sgtest.DnsServer, the wire format
written by hand) answers A, AAAA and SRV questions from a dict the test
changes while streamgate runs. The backends are small HTTP servers on
different loopback addresses (127.0.0.2, 127.0.0.3 ...), each answering
with its own name, so the test sees where the traffic goes without looking
at ports. streamgate looks each name up again when its TTL ends: the
traffic moves without a reload and without a failed request, SRV records
set ports and weights, and a resolver that stops answering leaves the last
good set in place (and the error log says so).
"""

import http.client
import http.server
import socket
import threading
import time

import pytest

import sgtest
from sgtest import free_port, http_conf, wait_for


class NamedBackend:
    """HTTP/1.1 on (host, port): every answer is 200 with body `name`."""

    def __init__(self, host, port, name):
        self.name = name
        self.count = 0
        self.holding = 0
        self.release = threading.Event()   # GET /hold answers once it is set
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/hold":
                    backend.holding += 1
                    backend.release.wait(30)
                else:
                    backend.count += 1
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dns():
    servers = []

    def start(records=None, ttl=1):
        d = sgtest.DnsServer(records, ttl)
        servers.append(d)
        return d
    yield start
    for d in servers:
        d.close()


@pytest.fixture
def backends():
    started = []

    def start(host, port, name):
        b = NamedBackend(host, port, name)
        started.append(b)
        return b
    yield start
    for b in started:
        b.close()


def ask(port, path="/"):
    """One request on a new connection: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def try_ask(port, path="/"):
    """ask(), with a connection the proxy closed (no server yet) as (0, error)."""
    try:
        return ask(port, path)
    except OSError as e:
        return 0, str(e)


def proxy_conf(listen, dns_port, upstream_body, resolver_extra=""):
    return http_conf("""
    resolver 127.0.0.1:%d ipv6=off %s;
    resolver_timeout 1s;
    upstream u {
        zone u 1m;
        %s
    }
    server {
        listen 127.0.0.1:%d;
        location / { proxy_pass http://u; }
    }
""" % (dns_port, resolver_extra, upstream_body, listen))


def test_a_record_change_moves_traffic_under_load_without_a_failed_request(start_proxy, dns, backends):
    bport = free_port()
    old = backends("127.0.0.2", bport, "old")
    new = backends("127.0.0.3", bport, "new")
    d = dns({("app.example", 1): ["127.0.0.2"]}, ttl=1)
    port = free_port()
    proxy = start_proxy(proxy_conf(port, d.port, "server app.example:%d resolve;" % bport))
    wait_for(lambda: ask(port) == (200, "old"), timeout=20, what="the first answer from the resolved address")

    results = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                results.append(ask(port))
            except OSError as e:
                results.append((0, str(e)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) > 20, timeout=20, what="load running")
        d.set({("app.example", 1): ["127.0.0.3"]})
        moved_at = []

        def moved():
            recent = results[-10:]
            return len(recent) == 10 and all(r == (200, "new") for r in recent)
        wait_for(moved, timeout=30, what="the traffic on the new address")
        moved_at.append(len(results))
        wait_for(lambda: len(results) > moved_at[0] + 20, timeout=20, what="more requests after the move")
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [r for r in results if r[0] != 200]
    assert failed == [], failed[:5]
    assert old.count > 0 and new.count > 0
    # once moved, it stays moved: the old address is out of the set
    before = old.count
    for _ in range(10):
        assert ask(port) == (200, "new")
    assert old.count == before
    assert "now has 1 resolved address" in proxy.error_log


def test_least_conn_keeps_counting_requests_open_across_a_change(start_proxy, dns, backends):
    bport = free_port()
    bs = [backends("127.0.0.%d" % (i + 2), bport, "b%d" % i) for i in range(3)]
    d = dns({("app.example", 1): ["127.0.0.2", "127.0.0.3"]}, ttl=1)
    port = free_port()
    start_proxy(proxy_conf(port, d.port, "least_conn; server app.example:%d resolve;" % bport))
    wait_for(lambda: {try_ask(port)[1] for _ in range(4)} == {"b0", "b1"}, timeout=20, what="both addresses in use")
    held = []
    t = threading.Thread(target=lambda: held.append(try_ask(port, "/hold")))
    t.start()
    try:
        wait_for(lambda: bs[0].holding + bs[1].holding == 1, timeout=10, what="the held request at a backend")
        busy = bs[0] if bs[0].holding else bs[1]
        # a third address joins: the two others stay, one with a request open
        d.set({("app.example", 1): ["127.0.0.2", "127.0.0.3", "127.0.0.4"]})
        wait_for(lambda: try_ask(port) == (200, "b2"), timeout=30, what="the new address in use")
        before = busy.count
        bodies = [try_ask(port)[1] for _ in range(12)]
        # least_conn still sees the open request on the busy one in the new set
        assert busy.count == before, bodies
    finally:
        for b in bs:
            b.release.set()
        t.join()
    assert held == [(200, busy.name)]


def test_srv_records_set_ports_and_weights(start_proxy, dns, backends):
    p1, p2 = free_port(), free_port()
    backends("127.0.0.2", p1, "light")
    backends("127.0.0.3", p2, "heavy")
    d = dns({
        ("_http._tcp.svc.example", 33): [(10, 1, p1, "a.svc.example"), (10, 3, p2, "b.svc.example")],
        ("a.svc.example", 1): ["127.0.0.2"],
        ("b.svc.example", 1): ["127.0.0.3"],
    }, ttl=60)
    port = free_port()
    start_proxy(proxy_conf(port, d.port, "server svc.example service=http resolve;"))

    def both_seen():
        return {ask(port)[1] for _ in range(4)} == {"light", "heavy"}
    wait_for(both_seen, timeout=20, what="both SRV targets in use")
    # smooth weighted round robin: exactly 1:3 over whole rounds
    bodies = [ask(port)[1] for _ in range(40)]
    assert bodies.count("light") == 10 and bodies.count("heavy") == 30, bodies


def test_srv_lower_priority_records_are_backups(start_proxy, dns, backends):
    p1, p2 = free_port(), free_port()
    backends("127.0.0.2", p1, "primary")
    backends("127.0.0.3", p2, "backup")
    d = dns({
        ("_http._tcp.svc.example", 33): [(10, 1, p1, "a.svc.example"), (20, 1, p2, "b.svc.example")],
        ("a.svc.example", 1): ["127.0.0.2"],
        ("b.svc.example", 1): ["127.0.0.3"],
    }, ttl=60)
    port = free_port()
    start_proxy(proxy_conf(port, d.port, "server svc.example service=http resolve;"))
    wait_for(lambda: ask(port) == (200, "primary"), timeout=20, what="the primary SRV target")
    assert [ask(port)[1] for _ in range(6)] == ["primary"] * 6


def test_failing_resolver_keeps_the_last_good_set(start_proxy, dns, backends):
    bport = free_port()
    backends("127.0.0.2", bport, "kept")
    d = dns({("app.example", 1): ["127.0.0.2"]}, ttl=1)
    port = free_port()
    proxy = start_proxy(proxy_conf(port, d.port, "server app.example:%d resolve;" % bport))
    wait_for(lambda: ask(port) == (200, "kept"), timeout=20, what="the first answer")
    d.silent = True
    wait_for(lambda: "app.example could not be resolved" in proxy.error_log, timeout=30,
             what="the failed lookup in the error log")
    assert "keeping its 1 address" in proxy.error_log
    for _ in range(10):
        assert ask(port) == (200, "kept")
    # answering again with a new address: the set follows
    d.silent = False
    d.set({("app.example", 1): []})   # known name, no address: an empty set
    wait_for(lambda: ask(port)[0] == 502, timeout=30, what="the empty set")


def test_name_not_found_empties_only_its_part_of_the_set(start_proxy, dns, backends):
    bport = free_port()
    backends("127.0.0.2", bport, "static")
    backends("127.0.0.3", bport, "dynamic")
    d = dns({("app.example", 1): ["127.0.0.3"]}, ttl=1)
    port = free_port()
    start_proxy(proxy_conf(port, d.port, "server 127.0.0.2:%d; server app.example:%d resolve;" % (bport, bport)))
    wait_for(lambda: {ask(port)[1] for _ in range(4)} == {"static", "dynamic"}, timeout=20,
             what="both servers in use")
    d.set({})   # NXDOMAIN
    def only_static():
        return [ask(port)[1] for _ in range(6)] == ["static"] * 6
    wait_for(only_static, timeout=30, what="the name's addresses gone")


def test_resolver_inside_the_upstream_block(start_proxy, dns, backends):
    bport = free_port()
    backends("127.0.0.2", bport, "inner")
    d = dns({("app.example", 1): ["127.0.0.2"]}, ttl=60)
    port = free_port()
    conf = http_conf("""
    upstream u {
        zone u 1m;
        server app.example:%d resolve;
        resolver 127.0.0.1:%d ipv6=off;
        resolver_timeout 1s;
    }
    server {
        listen 127.0.0.1:%d;
        location / { proxy_pass http://u; }
    }
""" % (bport, d.port, port))
    start_proxy(conf)
    wait_for(lambda: ask(port) == (200, "inner"), timeout=20, what="the answer through the upstream's resolver")


def test_stream_upstream_follows_its_name(start_proxy, dns, backends):
    bport = free_port()
    backends("127.0.0.2", bport, "one")
    backends("127.0.0.3", bport, "two")
    d = dns({("app.example", 1): ["127.0.0.2"]}, ttl=1)
    port = free_port()
    conf = """
events { }
stream {
    resolver 127.0.0.1:%d ipv6=off;
    upstream u {
        zone u 1m;
        server app.example:%d resolve;
    }
    server {
        listen 127.0.0.1:%d;
        proxy_pass u;
    }
}
""" % (d.port, bport, port)
    start_proxy(conf)
    wait_for(lambda: try_ask(port) == (200, "one"), timeout=20, what="the first stream answer")
    d.set({("app.example", 1): ["127.0.0.3"]})
    wait_for(lambda: try_ask(port) == (200, "two"), timeout=30, what="the stream traffic on the new address")


@pytest.mark.parametrize("upstream_body, message", [
    ("server app.example:80 resolve;", 'no resolver defined to resolve names at run time in upstream "u"'),
    ("server app.example:80 resolve service=http; resolver 127.0.0.1;", 'service upstream "app.example:80" may not have port'),
    ("server app.example service=http; resolver 127.0.0.1;", 'requires "resolve" parameter'),
])
def test_bad_resolve_lines_are_refused_by_t(tmp_path, upstream_body, message):
    conf = tmp_path / "bad.conf"
    conf.write_text(http_conf("upstream u { %s } server { listen 127.0.0.1:%d; location / { proxy_pass http://u; } }"
                              % (upstream_body, free_port())))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode != 0
    assert message in (r.stdout + r.stderr)
