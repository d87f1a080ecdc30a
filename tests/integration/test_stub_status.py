"""nginx's stub_status page and $connections_* variables, as a monitoring
script that knows nginx's format reads them (the regex below is nginx's
format, byte for byte: the trailing spaces included).

Checked: the first request sees one active, writing connection and counts
itself; idle keep-alive connections are "waiting", a connection sending a
partial head "reading", HTTP/2 streams count as requests; the counts come
back down when clients close; POST is 405; $connections_* in add_header.
"""

import re
import socket
import subprocess

import sgtest
from sgtest import HttpConn, free_port, get, http_conf, wait_for

# nginx's ngx_http_stub_status_module output, exactly.
STUB = re.compile(rb"\AActive connections: (\d+) \n"
                  rb"server accepts handled requests\n"
                  rb" (\d+) (\d+) (\d+) \n"
                  rb"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n\Z")


def status(port):
    r = get(port, "/stub")
    assert r.status == 200
    assert r.header("Content-Type") == "text/plain"
    m = STUB.match(r.body)
    assert m, r.body
    return dict(zip(("active", "accepts", "handled", "requests", "reading", "writing", "waiting"),
                    (int(x) for x in m.groups())))


def settle(port, **want):
    """Reads the page until it shows `want` (a status read's own connection
    closes a moment after its response: the next read may still see it)."""
    settle.reads = 0

    def ok():
        settle.reads += 1
        settle.last = status(port)
        return all(settle.last[k] == v for k, v in want.items())
    wait_for(ok, 10, what="stub_status showing %r (last: %r)" % (want, getattr(settle, "last", None)))
    return settle.last


def conf(port):
    return http_conf("""
  access_log off;
  server {
    listen 127.0.0.1:%d http2;
    add_header X-Active $connections_active;
    add_header X-Reading $connections_reading;
    add_header X-Writing $connections_writing;
    add_header X-Waiting $connections_waiting;
    location = /stub { stub_status; }
    location = /hello { return 200 "hi\\n"; }
  }
""" % port, main="worker_processes 1;   # one accept queue: connections are seen in the order they were made")


def test_counts_and_states(start_proxy):
    port = free_port()
    start_proxy(conf(port))
    # the readiness probe of start_proxy was a connection too: its close may lag
    wait_for(lambda: status(port)["active"] == 1, 10, what="the probe connection gone")
    s = status(port)
    assert (s["active"], s["reading"], s["writing"], s["waiting"]) == (1, 0, 1, 0)
    assert s["accepts"] == s["handled"] and s["requests"] >= 2
    s2 = status(port)
    assert (s2["accepts"] - s["accepts"], s2["requests"] - s["requests"]) == (1, 1)

    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    settle(port, active=3, waiting=2, reading=0, writing=1)

    idle[0].sendall(b"GET /hello HTTP/1.1\r\n")          # a head begun, not ended
    settle(port, active=3, waiting=1, reading=1, writing=1)

    for c in idle:
        c.close()
    before = settle(port, active=1, waiting=0, reading=0, writing=1)

    # HTTP/2: each stream is a request
    for _ in range(2):
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/hello" % port], capture_output=True, timeout=30 * sgtest.SLOW)
        assert p.stdout == b"200", p.stderr
    after = settle(port, active=1)
    # two h2 requests, then the status reads of settle() (the last one counts itself)
    assert after["requests"] - before["requests"] == 2 + settle.reads
    assert after["accepts"] - before["accepts"] == 2 + settle.reads
    assert after["handled"] == after["accepts"]
    assert (after["reading"], after["writing"], after["waiting"]) == (0, 1, 0)


def test_keepalive_requests_and_variables(start_proxy):
    port = free_port()
    start_proxy(conf(port))
    base = status(port)
    with HttpConn(port) as c:
        made = [0]

        def alone():      # the status read's connection may linger a moment
            r = c.request("GET", "/hello")
            made[0] += 1
            return r.header("X-Active") == "1"
        wait_for(alone, 10, what="one connection left")
        for _ in range(3):
            r = c.request("GET", "/hello")
            assert r.status == 200
            assert (r.header("X-Active"), r.header("X-Reading"), r.header("X-Writing"),
                    r.header("X-Waiting")) == ("1", "0", "1", "0")
        r = c.request("GET", "/stub")
        m = STUB.match(r.body)
        assert m and int(m.group(1)) == 1
        assert int(m.group(4)) - base["requests"] == made[0] + 4
    assert get(port, "/stub", method="POST", body=b"x").status == 405
    r = get(port, "/stub", method="HEAD")
    assert r.status == 200 and r.body == b""
