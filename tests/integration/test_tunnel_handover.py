"""Tunnels: the handover from an HTTP exchange to a tunnel (upgrades,
HTTP/2 tunnels), byte by byte; each test is a bug's symptom.

Raw sockets on both sides of the real binary: a hand-written WebSocket peer
(answers the handshake itself, then does what each test needs) so the
handover from HTTP exchange to tunnel can be driven byte by byte.
"""

import os
import socket
import struct
import threading
import time

import sgtest
from sgtest import HttpConn, free_port, http_conf, wait_for

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(path="/", extra=(), key=KEY):
    h = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    return sgtest.build_request("GET", path, h + list(extra))


def parse_head(head):
    hdrs = {}
    lines = head.decode("latin-1").split("\r\n")
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k:
            hdrs.setdefault(k.strip().lower(), v.strip())
    return lines[0], hdrs


class ScriptedWs(sgtest._ThreadedListener):
    """Answers each upgrade with a valid 101, then runs `script(sock, rest)`.
    Requests without Upgrade get `plain` (bytes) and the connection closes."""

    def __init__(self, script, plain=b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"):
        self.script = script
        self.plain = plain
        self.heads = []
        self.done = threading.Event()
        self.result = {}
        super().__init__()

    def serve(self, c):
        got = sgtest.recv_head(c)
        if got is None:
            return
        head, rest = got
        line, hdrs = parse_head(head)
        self.heads.append((line, hdrs, rest))
        if "upgrade" not in hdrs:
            c.sendall(self.plain)
            c.close()
            return
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                   % sgtest.ws_accept(hdrs["sec-websocket-key"])).encode())
        try:
            self.script(self, c, rest)
        finally:
            self.done.set()


def ws_proxy(start_proxy, port_b, location_extra=""):
    port = free_port()
    conf = http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://127.0.0.1:%d;
      %s
    }
  }
""" % (port, port_b, location_extra))
    return start_proxy(conf), port


def recv_exact(sock, n, timeout=20):
    sock.settimeout(timeout * sgtest.SLOW)
    out = bytearray()
    while len(out) < n:
        d = sock.recv(min(1 << 20, n - len(out)))
        if not d:
            break
        out += d
    return bytes(out)


# ---------------------------------------------------------------- tunnels

def test_slow_client_is_not_an_upstream_timeout(start_proxy):
    """proxy_read_timeout bounds the backend's silence, not the time the
    proxy itself stops reading the backend because the client is slow: a
    client that pauses longer than the timeout still gets every byte."""
    total = 8 * 1024 * 1024
    payload = os.urandom(total)

    def script(self, c, rest):
        try:
            c.sendall(payload)
            time.sleep(10)       # then silent, connection kept open
        except OSError:
            pass

    b = ScriptedWs(script)
    try:
        _, port = ws_proxy(start_proxy, b.port, "proxy_read_timeout 2s;")
        with HttpConn(port) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send(upgrade_request())
            r = c.read_response()
            assert r.status == 101
            time.sleep(3.5 * sgtest.SLOW)   # not reading: the proxy must stop reading too
            got = c.buf + recv_exact(c.sock, total - len(c.buf))
            assert len(got) == total
            assert got == payload
    finally:
        b.stop()


def test_upgrade_with_a_body_stays_http_and_in_step(start_proxy, start_echo):
    """An Upgrade request with a body is served as plain HTTP: the backend
    sees no Upgrade, the body is a body (not a second request), and the
    client connection stays in step for the next request."""
    echo = start_echo()
    _, port = ws_proxy(start_proxy, echo.port)
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    with HttpConn(port) as c:
        c.send(sgtest.build_request("GET", "/first", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13"),
            ("Content-Length", str(len(smuggled)))], smuggled))
        r = c.read_response()
        assert r.status == 200
        assert r.body.endswith(smuggled)
        c.send(sgtest.build_request("GET", "/second"))
        r2 = c.read_response()
        assert r2.status == 200
        assert r2.body.startswith(b"GET /second ")
    heads = [h.split(b"\r\n")[0] for h in echo.heads]
    assert heads == [b"GET /first HTTP/1.1", b"GET /second HTTP/1.1"]
    first = [l.lower() for l in echo.heads[0].split(b"\r\n")[1:]]
    assert not [l for l in first if l.startswith(b"upgrade:")]
    assert not [l for l in first if l.startswith(b"connection:") and b"upgrade" in l]


def test_client_fin_before_the_101_reaches_the_backend(start_proxy):
    """Bytes and the FIN a client sends while the proxy still waits for
    the 101 are not lost in the handover (the edge was spent before the
    tunnel registered the socket)."""
    def script(self, c, rest):
        c.settimeout(10)
        c.sendall(b"got %d" % sgtest.count_until_eof(c, len(rest)))
        c.close()

    b = ScriptedWs(script)
    orig = b.serve

    def slow_serve(c):
        time.sleep(0.5)      # the client's data and FIN arrive before the 101
        orig(c)
    b.serve = slow_serve
    try:
        _, port = ws_proxy(start_proxy, b.port)
        with HttpConn(port) as c:
            c.send(upgrade_request() + b"x" * 100000)
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            assert r.status == 101
            while c._fill():
                pass
            assert c.buf == b"got 100000"
    finally:
        b.stop()


def test_backend_data_and_fin_with_the_101(start_proxy):
    """A backend that sends its 101, data and FIN in one go (then keeps
    reading): the client gets the data then EOF, and can still send."""
    def script(self, c, rest):
        c.sendall(b"bye")
        c.shutdown(socket.SHUT_WR)
        c.settimeout(10)
        self.result["n"] = sgtest.count_until_eof(c, len(rest))
        c.close()

    b = ScriptedWs(script)
    try:
        _, port = ws_proxy(start_proxy, b.port)
        with HttpConn(port) as c:
            c.send(upgrade_request())
            assert c.read_response().status == 101
            while c._fill():
                pass
            assert c.buf == b"bye"
            c.send(b"y" * 5000)
            c.sock.shutdown(socket.SHUT_WR)
            assert b.done.wait(10)
            assert b.result["n"] == 5000
    finally:
        b.stop()


def test_resets_on_both_sides_around_the_handover(start_proxy):
    """Clients and backends that reset at every point of the handover
    (before, with and right after the 101): the proxy survives (ASan
    clean), leaks no descriptor, and still serves."""
    def script(self, c, rest):
        if self.accepted % 3 == 0:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif self.accepted % 3 == 1:
            c.sendall(b"x" * 70000)
        c.close()

    b = ScriptedWs(script)
    try:
        p, port = ws_proxy(start_proxy, b.port)
        fd_dir = "/proc/%d/fd" % p.pid
        base = len(os.listdir(fd_dir))
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(upgrade_request() + b"y" * (i * 1000))
            if i % 2:
                time.sleep(0.002 * (i % 5))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        wait_for(lambda: len(os.listdir(fd_dir)) <= base, timeout=10, what="descriptors released")
        with HttpConn(port) as c:
            c.send(upgrade_request())
            assert c.read_response().status == 101
    finally:
        b.stop()


def test_http2_tunnel_with_proxy_tunnel_timeout_0_never_times_out(start_proxy):
    """proxy_tunnel_timeout 0 means "never" (as for HTTP/1.1 tunnels): an
    RFC 8441 tunnel must not be cut at once as an upstream timeout."""
    from test_websocket import H2Client

    def script(self, c, rest):
        c.settimeout(10)
        data = rest
        while len(data) < 5:
            d = c.recv(65536)
            if not d:
                return
            data += d
        time.sleep(0.5)
        c.sendall(b"echo:" + data)
        time.sleep(2)

    b = ScriptedWs(script)
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / { proxy_pass http://127.0.0.1:%d; proxy_tunnel_timeout 0; }
  }
""" % (port, b.port)))
    c = H2Client(port)
    try:
        sid = c.connect("/")
        assert c.streams[sid]["headers"][":status"] == "200"
        c.send(sid, b"hello")
        c.wait(lambda: c.streams[sid]["data"] == b"echo:hello" or c.streams[sid]["ended"]
               or c.streams[sid]["reset"] is not None, "the echo")
        assert c.streams[sid]["data"] == b"echo:hello"
    finally:
        c.close()
        b.stop()
