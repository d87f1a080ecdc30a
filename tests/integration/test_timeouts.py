"""Timeouts, as nginx applies them.

proxy_read_timeout → 504; refused upstream → 502 at once; client_header_timeout
and client_body_timeout close slow clients; send_timeout drops a client that
stops reading; keepalive_timeout closes idle connections.  (proxy_connect_timeout
is not tested: without an unroutable network, a hanging connect cannot be
produced reliably on loopback.)
"""

import socket
import time


from sgtest import HttpConn, build_request, free_port, get, SLOW

MAIN = "worker_processes 1;"


def wait_closed(conn, timeout):
    """Seconds until the peer closed (bytes read meanwhile stay in conn.buf), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if conn.is_closed(wait=0.05):
            return time.monotonic() - t0
    return None


def backend_open(backend):
    """Connections open on the backend, not counting the /stats one."""
    return backend.stats()["open"] - 1


def wait_backend_open(backend, n, timeout):
    deadline = time.monotonic() + timeout * SLOW
    while backend_open(backend) != n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_proxy_read_timeout_504(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, location_extra="proxy_read_timeout 500ms;")
    t0 = time.monotonic()
    r = get(port, "/delay/2000")
    dt = time.monotonic() - t0
    assert r.status == 504
    assert "504 Gateway Time-out" in r.text
    assert 0.4 <= dt <= 1.5 * SLOW, "504 after %.2f s" % dt
    # The timed-out upstream connection is not reused: the next request is fine.
    r = get(port, "/")
    assert r.status == 200


def test_proxy_read_timeout_not_hit_by_fast_backend(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, location_extra="proxy_read_timeout 1s;")
    r = get(port, "/delay/300")
    assert r.status == 200


def test_proxy_read_timeout_keeps_client_connection(backend, simple_proxy):
    """After a 504 the client connection stays usable (nginx keeps it alive)."""
    _, port = simple_proxy([backend.port], main=MAIN, location_extra="proxy_read_timeout 300ms;")
    with HttpConn(port, timeout=5) as c:
        assert c.request("GET", "/delay/1000").status == 504
        r = c.request("GET", "/")
        assert r.status == 200


def test_connection_refused_502_quickly(simple_proxy):
    dead = free_port()
    _, port = simple_proxy([dead], main=MAIN)
    t0 = time.monotonic()
    r = get(port, "/")
    dt = time.monotonic() - t0
    assert r.status == 502
    assert "502 Bad Gateway" in r.text
    assert dt < 1.0 * SLOW, "502 took %.2f s" % dt


def test_backend_drop_gives_502(backend, simple_proxy):
    """The backend closes without answering (sgback /drop): 502, as nginx."""
    _, port = simple_proxy([backend.port], main=MAIN)
    r = get(port, "/drop")
    assert r.status == 502


def test_client_header_timeout(start_echo, simple_proxy):
    backend = start_echo()       # Python: counts connections and bytes it reads
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="client_header_timeout 1s;")
    with HttpConn(port, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: exa")
        dt = wait_closed(c, 4 * SLOW)
        assert dt is not None, "half a head kept the connection open for 4 s"
        assert 0.7 <= dt <= 2.5 * SLOW, "closed after %.2f s" % dt
        # nginx closes silently (408 is only logged); an explicit 408 is fine too.
        assert c.buf == b"" or c.buf.startswith(b"HTTP/1.1 408"), c.buf[:100]
    assert (backend.accepted, backend.received) == (0, 0)   # nothing forwarded


def test_client_header_timeout_is_not_per_byte(backend, simple_proxy):
    """A slowloris trickling one byte every 0.3 s still hits the 1 s header timeout."""
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="client_header_timeout 1s;")
    with HttpConn(port, timeout=5) as c:
        t0 = time.monotonic()
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        closed = False
        for ch in head:
            try:
                c.send(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if c.is_closed(wait=0.3):
                closed = True
                break
            if time.monotonic() - t0 > 5 * SLOW:
                break
        dt = time.monotonic() - t0
    assert closed, "a trickling head kept the connection for %.1f s" % dt
    assert dt <= 2.5 * SLOW, "closed only after %.2f s" % dt


def test_client_body_timeout(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="client_body_timeout 1s;")
    with HttpConn(port, timeout=5) as c:
        c.send(build_request("POST", "/sink", headers={"Content-Length": "100"}) + b"x" * 10)
        dt = wait_closed(c, 4 * SLOW)
        assert dt is not None, "a stalled body kept the connection open for 4 s"
        assert 0.7 <= dt <= 2.5 * SLOW, "closed after %.2f s" % dt
        assert c.buf == b"" or c.buf.startswith(b"HTTP/1.1 408"), c.buf[:100]
    # The half-sent request must not stay on the backend either.
    assert wait_backend_open(backend, 0, 3), "backend connection left open"


def test_client_body_timeout_is_between_reads(backend, simple_proxy):
    """client_body_timeout is per read (nginx): a slow but steady body is fine."""
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="client_body_timeout 1s;")
    with HttpConn(port, timeout=10) as c:
        c.send(build_request("POST", "/sink", headers={"Content-Length": "5"}))
        for ch in b"hello":
            time.sleep(0.5)
            c.send(bytes([ch]))
        r = c.read_response()
    assert r.status == 200
    assert r.text == "received 5\n"


def test_send_timeout_drops_stalled_reader(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="send_timeout 1s;")
    total = 200 << 20
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.connect(("127.0.0.1", port))
    s.settimeout(5)
    try:
        s.sendall(build_request("GET", "/bytes/%d" % total))
        time.sleep(3.0)                 # read nothing: the proxy's writes stall
        got = 0
        ended = False
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            try:
                d = s.recv(1 << 20)
            except (ConnectionResetError, socket.timeout):
                ended = True
                break
            if not d:
                ended = True
                break
            got += len(d)
    finally:
        s.close()
    assert ended and got < total, "the stalled client got the whole body (%d bytes)" % got
    assert wait_backend_open(backend, 0, 3), "backend connection left open after send_timeout"


def test_keepalive_idle_timeout(backend, simple_proxy):
    _, port = simple_proxy([backend.port], main=MAIN, server_extra="keepalive_timeout 1s;")
    with HttpConn(port, timeout=5) as c:
        assert c.request("GET", "/").status == 200
        dt = wait_closed(c, 4 * SLOW)
    assert dt is not None and 0.7 <= dt <= 2.5 * SLOW, dt


def test_idle_connection_without_request_uses_header_timeout(backend, simple_proxy):
    """A connection that never sends anything is closed after client_header_timeout."""
    _, port = simple_proxy([backend.port], main=MAIN,
                           server_extra="client_header_timeout 1s; keepalive_timeout 30s;")
    with HttpConn(port, timeout=5) as c:
        dt = wait_closed(c, 4 * SLOW)
    assert dt is not None and 0.7 <= dt <= 2.5 * SLOW, dt
