"""The `metrics;` endpoint (Prometheus text format 0.0.4), read with
python3-prometheus-client's parser, against the real binary and real peers:
sgback's chat.Chat gRPC service (h2c) and its /ws/echo WebSocket (HTTP/1.1),
curl for HTTP/2, raw sockets for HTTP/1.1.

Checked:
- after known traffic (HTTP/1.1 and h2 requests, gRPC calls of three methods
  ending OK, NOT_FOUND and UNAVAILABLE plus two to a method the backend does
  not know, two WebSockets), every counter equals what was sent: requests by
  location and status class, bytes in and out of a location, gRPC calls by
  method and grpc-status, gRPC messages each way; the histograms count every
  request and every call;
- the connection gauges count the open WebSockets and idle HTTP/1.1 and
  HTTP/2 connections, and return to zero once the clients close;
- allow/deny guard the endpoint as any location (403), and it answers GET and
  HEAD only (405);
- 10,000 gRPC calls to invented method names do not grow the process's RSS
  by more than 1 MB: they all fold into method="_other_".
"""

import asyncio
import re
import socket
import subprocess
import time

import pytest

import sgtest
from sgtest import free_port, free_ports, get, http_conf, start_h2c_backend, wait_for

parser = pytest.importorskip("prometheus_client.parser")
grpc = pytest.importorskip("grpc")
websockets = pytest.importorskip("websockets")


def scrape(port, path="/metrics"):
    """{(sample name, frozenset(labels)): value} and the response."""
    r = get(port, path)
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    out = {}
    for fam in parser.text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, r


def val(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0)


def conf_for(port, h2port, h1port, extra_server=""):
    return http_conf("""
  access_log off;
  upstream g { server 127.0.0.1:%d; }
  upstream ws { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d http2;
    server_name metrics.test;
    location / { grpc_pass grpc://g; }
    location /ws/ { proxy_pass http://ws; }
    location = /hello { return 200 "hello\\n"; }
    location = /h2hello { return 200 "h2\\n"; }
    location = /missing { return 404; }
    location = /metrics { metrics; allow 127.0.0.1; deny all; }
    location = /closed { metrics; deny all; }
    %s
  }
""" % (h2port, h1port, port, extra_server))


@pytest.fixture
def setup(start_backend, start_proxy):
    h2port, h1port, port = free_ports(3)
    start_h2c_backend(start_backend, h2port, h1port)
    proxy = start_proxy(conf_for(port, h2port, h1port))
    return port, proxy


def raw_exchange(port, request):
    """Sends request bytes on a fresh connection, reads until the server
    closes: the response bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * sgtest.SLOW)
    s.sendall(request)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data


def grpc_msg(text):
    return sgtest.grpc_msg(text)


def test_counters_equal_the_traffic_sent(setup):
    port, proxy = setup

    # HTTP/1.1: /hello x4 on raw sockets (bytes known), /missing x2
    req = b"GET /hello HTTP/1.1\r\nHost: metrics.test\r\nConnection: close\r\n\r\n"
    sent_out = 0
    for _ in range(4):
        resp = raw_exchange(port, req)
        assert resp.startswith(b"HTTP/1.1 200")
        sent_out += len(resp)
    for _ in range(2):
        assert get(port, "/missing").status == 404

    # HTTP/2 with prior knowledge: /h2hello x3 (a connection each: curl
    # 7.88 fails a second request on a reused prior-knowledge connection)
    for _ in range(3):
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                            "-w", "%{http_code} %{http_version}", "http://127.0.0.1:%d/h2hello" % port],
                           capture_output=True, timeout=30 * sgtest.SLOW)
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode() == "200 2"

    # gRPC: Echo OK x3, Repeat OK x2 (3 messages back each),
    # Fail NOT_FOUND x2 and UNAVAILABLE x1, Nope (unknown: UNIMPLEMENTED) x2
    ch = sgtest.open_grpc_channel(port)
    try:
        for i in range(3):
            assert ch.unary_unary("/chat.Chat/Echo")(grpc_msg("e%d" % i), timeout=10) == grpc_msg("e%d" % i)
        for i in range(2):
            got = list(ch.unary_stream("/chat.Chat/Repeat")(grpc_msg("r"), metadata=[("x-repeat", "3")], timeout=10))
            assert got == [grpc_msg("r")] * 3
        for want, md in ((grpc.StatusCode.NOT_FOUND, []), (grpc.StatusCode.NOT_FOUND, []),
                         (grpc.StatusCode.UNAVAILABLE, [("x-want-status", "14")])):
            with pytest.raises(grpc.RpcError) as ei:
                ch.unary_unary("/chat.Chat/Fail")(grpc_msg("f"), metadata=md, timeout=10)
            assert ei.value.code() == want
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as ei:
                ch.unary_unary("/chat.Chat/Nope")(grpc_msg("n"), timeout=10)
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        ch.close()

    # two WebSockets, open together: the gauge sees both, then none
    async def two_websockets():
        a = await websockets.connect("ws://127.0.0.1:%d/ws/echo" % port, ping_interval=None)
        b = await websockets.connect("ws://127.0.0.1:%d/ws/echo" % port, ping_interval=None)
        for w in (a, b):
            await w.send("ping")
            assert await w.recv() == "ping"
        m, _ = await asyncio.get_running_loop().run_in_executor(None, scrape, port)
        assert val(m, "streamgate_connections", protocol="websocket", state="active") == 2
        await a.close()
        await b.close()
    asyncio.run(asyncio.wait_for(two_websockets(), 30 * sgtest.SLOW))
    scrapes = 1

    def settled():
        m, _ = scrape(port)
        settled.m = m
        settled.n += 1
        return (val(m, "streamgate_connections", protocol="websocket", state="active") == 0 and
                val(m, "streamgate_connections", protocol="http2", state="active") == 0 and
                val(m, "streamgate_connections", protocol="http2", state="idle") == 0 and
                val(m, "streamgate_connections", protocol="http1", state="idle") == 0)
    settled.n = 0
    wait_for(settled, 10, interval=0.05, what="connection gauges back to zero")
    m = settled.m
    scrapes += settled.n - 1   # the last scrape is not finished when it counts

    # the scraping connection itself is the one active HTTP/1.1 connection
    assert val(m, "streamgate_connections", protocol="http1", state="active") == 1
    assert val(m, "streamgate_http_requests_in_progress", state="writing") == 1
    assert val(m, "streamgate_http_requests_in_progress", state="reading") == 0

    def reqs(location, cls):
        return val(m, "streamgate_http_requests_total", server="metrics.test", location=location, **{"class": cls})

    assert reqs("/hello", "2xx") == 4
    assert reqs("/missing", "4xx") == 2
    assert reqs("/h2hello", "2xx") == 3
    assert reqs("/", "2xx") == 3 + 2 + 3 + 2      # gRPC calls are HTTP 200s
    assert reqs("/ws/", "1xx") == 2
    assert reqs("/metrics", "2xx") == scrapes
    assert val(m, "streamgate_http_received_bytes_total", server="metrics.test", location="/hello") == 4 * len(req)
    assert val(m, "streamgate_http_sent_bytes_total", server="metrics.test", location="/hello") == sent_out

    def calls(service, method, status):
        return val(m, "streamgate_grpc_calls_total", service=service, method=method, grpc_status=str(status))

    assert calls("chat.Chat", "Echo", 0) == 3
    assert calls("chat.Chat", "Repeat", 0) == 2
    assert calls("chat.Chat", "Fail", 5) == 2
    assert calls("chat.Chat", "Fail", 14) == 1
    assert calls("_other_", "_other_", 12) == 2
    assert not [k for k in m if k[0] == "streamgate_grpc_calls_total" and ("method", "Nope") in k[1]]
    total_calls = sum(v for k, v in m.items() if k[0] == "streamgate_grpc_calls_total")
    assert total_calls == 10

    def msgs(direction, method):
        return val(m, "streamgate_grpc_messages_%s_total" % direction, service="chat.Chat", method=method)

    assert (msgs("received", "Echo"), msgs("sent", "Echo")) == (3, 3)
    assert (msgs("received", "Repeat"), msgs("sent", "Repeat")) == (2, 6)
    assert (msgs("received", "Fail"), msgs("sent", "Fail")) == (3, 0)

    # histograms: every call and every finished request once
    assert val(m, "streamgate_grpc_call_duration_seconds_count") == 10
    assert val(m, "streamgate_grpc_call_duration_seconds_bucket", le="+Inf") == 10
    n_requests = 4 + 2 + 3 + 10 + 2 + scrapes
    assert val(m, "streamgate_http_request_duration_seconds_count") == n_requests
    assert val(m, "streamgate_upstream_connect_duration_seconds_count") >= 1
    assert val(m, "streamgate_config_generation") == 1
    assert val(m, "streamgate_reloads_total") == 0
    assert val(m, "process_resident_memory_bytes") > 1e6
    assert val(m, "process_open_fds") >= 3


def test_allow_deny_and_methods(setup):
    port, proxy = setup
    assert get(port, "/closed").status == 403
    assert get(port, "/metrics", method="POST", body=b"x").status == 405
    r = get(port, "/metrics", method="HEAD")
    assert r.status == 200 and r.body == b""
    # each family has its HELP and TYPE lines
    _, r = scrape(port)
    names = re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.M)
    helps = re.findall(r"^# HELP (\S+) ", r.text, re.M)
    assert [n for n, _ in names] == helps
    assert ("streamgate_connections", "gauge") in names
    assert ("streamgate_grpc_calls_total", "counter") in names


def test_reload_counts_and_generation(setup):
    port, proxy = setup
    assert get(port, "/hello").status == 200
    assert proxy.reload(proxy.conf_path.read_text())
    wait_for(lambda: val(scrape(port)[0], "streamgate_reloads_total") == 1, 10, what="reload counted")
    m, _ = scrape(port)
    assert val(m, "streamgate_config_generation") == 2
    # the same location keeps its row across the reload
    assert val(m, "streamgate_http_requests_total", server="metrics.test", location="/hello", **{"class": "2xx"}) == 1


def test_invented_grpc_methods_do_not_grow_memory(setup):
    port, proxy = setup
    ch = sgtest.open_grpc_channel(port)
    stub_msg = grpc_msg("x")

    def burst(first, n, batch=250):
        for b in range(first, first + n, batch):
            futs = [ch.unary_unary("/invented.S%d/M%d" % (i, i)).future(stub_msg, timeout=20 * sgtest.SLOW)
                    for i in range(b, min(b + batch, first + n))]
            for f in futs:
                with pytest.raises(grpc.RpcError) as ei:
                    f.result()
                assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    try:
        burst(0, 2000)                 # warm-up: pools, buffers, allocator arenas
        before = proxy.rss_kb()
        t0 = time.monotonic()
        burst(100000, 10000)
        after = proxy.rss_kb()
        elapsed = time.monotonic() - t0
    finally:
        ch.close()
    if not sgtest.SANITIZED:   # ASan keeps freed memory in quarantine: RSS says nothing there
        assert after - before <= 1024, "RSS grew %d KiB over 10,000 invented methods (%.1f s)" % (
            after - before, elapsed)
    m, _ = scrape(port)
    assert val(m, "streamgate_grpc_calls_total", service="_other_", method="_other_", grpc_status="12") == 12000
    assert not [k for k in m if k[0] == "streamgate_grpc_calls_total" and ("service", "_other_") not in k[1]]


def test_upstream_servers(start_backend, start_proxy):
    """Per upstream server: state, attempts, failures, in-flight, health
    checks, the resolved address."""
    (bport, dead, port) = free_ports(3)
    start_backend(ports=[bport])
    proxy = start_proxy(http_conf("""
  access_log off;
  upstream pool {
    server 127.0.0.1:%d max_fails=1 fail_timeout=30s;
    server 127.0.0.1:%d max_fails=1 fail_timeout=30s;
    server 127.0.0.1:%d down;
  }
  upstream checked { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://pool; }
    location /checked/ { proxy_pass http://checked/; health_check interval=100ms; }
    location = /metrics { metrics; }
  }
""" % (bport, dead, free_port(), bport, port)))
    for _ in range(4):
        assert get(port, "/x").status == 200
    alive, failed = "127.0.0.1:%d" % bport, "127.0.0.1:%d" % dead

    def row(m, name, server, upstream="pool", **extra):
        return val(m, name, upstream=upstream, server=server, address=server, **extra)

    m, _ = scrape(port)
    # the dead one was tried once (a connect error), then skipped for fail_timeout
    assert row(m, "streamgate_upstream_server_failures_total", failed) == 1
    assert row(m, "streamgate_upstream_server_requests_total", failed) == 1
    assert row(m, "streamgate_upstream_server_requests_total", alive) == 4
    assert row(m, "streamgate_upstream_server_failures_total", alive) == 0
    assert row(m, "streamgate_upstream_server_state", failed, state="failed") == 1
    assert row(m, "streamgate_upstream_server_state", alive, state="up") == 1
    assert row(m, "streamgate_upstream_server_in_flight", alive) == 0
    downs = [k for k, v in m.items() if k[0] == "streamgate_upstream_server_state" and ("state", "down") in k[1] and v == 1]
    assert len(downs) == 1
    wait_for(lambda: row(scrape(port)[0], "streamgate_upstream_server_health_checks_total", alive,
                         upstream="checked", result="passed") >= 2, 10, what="health checks counted")


def test_tls_limits_blocks_and_stream_tunnels(start_backend, start_proxy, tmp_path):
    """TLS handshakes and failures, limit_req rejections, an `if` block and
    a named location counted as locations, a stream{} tunnel's gauge."""
    import ssl
    (bport, port, tport, sport) = free_ports(4)
    start_backend(ports=[bport])
    cert = sgtest.make_seed_certs(tmp_path / "tls")
    key = cert.parent / "key.pem"
    start_proxy(http_conf("""
  access_log off;
  limit_req_zone $binary_remote_addr zone=z:1m rate=1r/m;
  server {
    listen 127.0.0.1:%d;
    server_name plain.test;
    location /limited { limit_req zone=z; proxy_pass http://127.0.0.1:%d; }
    location /branch { if ($arg_x) { return 201; } return 200; }
    location /named { error_page 404 = @fallback; return 404; }
    location @fallback { return 202; }
    location = /metrics { metrics; }
  }
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    location / { return 200 "tls\\n"; }
  }
""" % (port, bport, tport, cert, key), main="""
worker_processes 1;   # one accept queue: the readiness probes are handled before the test's connections
stream {
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }
}
""" % (sport, bport)))

    # limit_req: the first passes, the next two are refused (503)
    assert [get(port, "/limited").status for _ in range(3)] == [200, 503, 503]
    assert get(port, "/branch?x=1").status == 201
    assert get(port, "/branch").status == 200
    assert get(port, "/named").status == 202

    # start_proxy's readiness probe of the TLS port was a failed handshake too
    m0, _ = scrape(port)
    ctx = ssl.create_default_context(cafile=str(cert))
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", tport)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                assert s.recv(100).startswith(b"HTTP/1.1 200")
    import warnings
    bad = ssl.create_default_context(cafile=str(cert))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bad.maximum_version = ssl.TLSVersion.TLSv1     # the server does not speak it: the handshake fails
    with socket.create_connection(("127.0.0.1", tport)) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            bad.wrap_socket(raw, server_hostname="localhost")

    # a stream tunnel open: counted, then gone when the client closes
    st = socket.create_connection(("127.0.0.1", sport))
    st.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st.recv(100).startswith(b"HTTP/1.1 ")
    m, _ = scrape(port)
    assert val(m, "streamgate_connections", protocol="stream", state="active") == 1
    st.close()
    wait_for(lambda: val(scrape(port)[0], "streamgate_connections", protocol="stream", state="active") == 0,
             10, what="stream gauge back to zero")

    m, _ = scrape(port)
    assert val(m, "streamgate_limit_req_rejected_total") == 2
    def delta(name):
        return val(m, name) - val(m0, name)
    assert delta("streamgate_tls_handshakes_total") == 2
    assert delta("streamgate_tls_handshake_failures_total") == 1

    def reqs(location, cls):
        return val(m, "streamgate_http_requests_total", server="plain.test", location=location, **{"class": cls})
    assert (reqs("/limited", "2xx"), reqs("/limited", "5xx")) == (1, 2)
    assert (reqs("/branch", "2xx")) == 2                 # the `if` block's 201 counts as its location
    assert reqs("@fallback", "2xx") == 1
    assert not [k for k in m if ("location", "(if)") in k[1]]
