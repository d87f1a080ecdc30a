"""WebSocket through streamgate (RFC 6455 over HTTP/1.1), with real clients
and servers: python3-websockets on both sides of the real binary.

A request with Upgrade: websocket is forwarded with its Upgrade and
Connection headers (no proxy_set_header needed); a valid 101 turns the
connection into a tunnel, anything else is relayed as a normal response on a
connection that stays usable.  h2c is never forwarded; `proxy_upgrade off`
turns upgrades off.  Raw-socket tests check what the libraries hide: 400s on
bad handshakes, half-close, the exact headers the backend saw.

One test keeps a connection idle for 70 s with the default configuration
(longer than proxy_read_timeout's 60 s default): its connection is opened
when this module starts and checked by the module's last test, so the wait
overlaps the other (light) tests of this file.
"""

import asyncio
import base64
import http
import json
import os
import select
import socket
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest
import websockets
import websockets.exceptions

import sgtest
from sgtest import (HttpConn, Proxy, count_until_eof, free_port, http_conf,
                    wait_for, ws_accept)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
IDLE_SECONDS = 70


def run(coro, timeout=60):
    """Run a client coroutine to completion, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout * sgtest.SLOW))


def connect(port, path="/", **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10 * sgtest.SLOW)
    return websockets.connect("ws://127.0.0.1:%d%s" % (port, path), **kw)


# ---------------------------------------------------------------- backends

class WsBackend:
    """A python3-websockets server on 127.0.0.1:port in a thread of its own.

    Paths: /push sends "push 1..3" first, /close4001 closes with 4001 "bye now"
    after the first message, /who answers {"port", "subprotocol"}, /flood?N
    sends N binary messages of 256 KB; everything else echoes.  /forbidden is
    refused with 403 before the handshake.  `connections` counts WebSocket
    sessions; `heads` keeps (path, headers) of every request it received.
    """

    def __init__(self, port=None, subprotocols=None):
        self.port = port or free_port()
        self.connections = 0
        self.heads = []
        self.subprotocols = subprotocols
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10) or self.error:
            raise sgtest.SgTestError("websocket backend did not start: %r" % self.error)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(websockets.serve(
                self._handler, "127.0.0.1", self.port, max_size=None, ping_interval=None,
                subprotocols=self.subprotocols, process_request=self._process_request,
                backlog=1024))
        except Exception as e:  # reported by __init__
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    async def _process_request(self, path, headers):
        self.heads.append((path, list(headers.raw_items())))
        if path.startswith("/forbidden"):
            return (http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain"), ("X-Refused", "yes")], b"forbidden\n")
        return None

    async def _handler(self, ws):
        self.connections += 1
        path = ws.path
        if path.startswith("/push"):
            for i in range(1, 4):
                await ws.send("push %d" % i)
        elif path.startswith("/close4001"):
            await ws.recv()
            await ws.close(4001, "bye now")
            return
        elif path.startswith("/who"):
            await ws.send(json.dumps({"port": self.port, "subprotocol": ws.subprotocol}))
        elif path.startswith("/flood"):
            n = int(path.split("?")[1])
            block = os.urandom(256 * 1024)
            for _ in range(n):
                await ws.send(block)
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.exceptions.ConnectionClosed:
            pass

    def stop(self):
        async def close():
            self.server.close()
            await self.server.wait_closed()
        if self.error is None:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class RawWsBackend(sgtest._ThreadedListener):
    """A hand-written WebSocket peer: answers the handshake (101 with the
    right Accept, followed in the same write by b"hello"), then reads raw
    bytes until the proxy's FIN, answers b"got N" and closes.  Shows that
    half-closes pass through."""

    def serve(self, c):
        got = sgtest.recv_head(c)
        if got is None:
            return
        head, rest = got
        hdrs = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\nhello"
                   % ws_accept(hdrs["sec-websocket-key"])).encode())
        c.sendall(b"got %d" % count_until_eof(c, len(rest)))
        c.shutdown(socket.SHUT_WR)
        c.close()


@pytest.fixture
def ws_backend():
    started = []

    def start(port=None, subprotocols=None):
        b = WsBackend(port, subprotocols)
        started.append(b)
        return b
    yield start
    for b in started:
        b.stop()


def ws_proxy(start_proxy, ports, location_extra="", extra_locations="", main=""):
    """A proxy on a free port with `location /` proxying to upstream `ws`
    made of `ports` and nothing else (no Upgrade lines)."""
    port = free_port()
    servers = "".join("    server 127.0.0.1:%d;\n" % p for p in ports)
    conf = http_conf("""
  log_format ws '$request $status $upstream_status';
  upstream ws {
%s  }
  server {
    listen 127.0.0.1:%d;
    access_log logs/access.log ws;
    location / {
      proxy_pass http://ws;
      %s
    }
    %s
  }
""" % (servers, port, location_extra, extra_locations), main=main)
    return start_proxy(conf), port


# ---------------------------------------------------------------- raw helpers

def upgrade_request(path="/", key=KEY, version="13", extra=()):
    h = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if key is not None:
        h.append(("Sec-WebSocket-Key", key))
    if version is not None:
        h.append(("Sec-WebSocket-Version", version))
    return sgtest.build_request("GET", path, h + list(extra))


def client_frame(payload, opcode=0x1):
    """One masked client frame (FIN set)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(conn):
    """(opcode, payload) of one unmasked server frame from an HttpConn."""
    b0, b1 = conn._read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn._read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn._read_exact(8))[0]
    return b0 & 0x0F, conn._read_exact(n)


def header_names(raw_items):
    return {k.lower(): v for k, v in raw_items}


# ---------------------------------------------------------------- the 70 s idle connection

@pytest.fixture(scope="module", autouse=True)
def idle_probe(request, tmp_path_factory):
    """Opens, at module start, a WebSocket through a proxy with the default
    configuration and leaves it silent; test_idle_70s checks it at the end."""
    if not any(i.name == "test_idle_70s_with_defaults_still_echoes" for i in request.session.items):
        yield None
        return
    backend = WsBackend()
    port, h2port = free_port(), free_port()
    prefix = tmp_path_factory.mktemp("idle")
    proxy = Proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    listen 127.0.0.1:%d http2;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, h2port, backend.port)), prefix=prefix)
    loop = asyncio.new_event_loop()
    state = {}
    try:
        proxy.start()

        async def open_idle():
            ws = await connect(port, "/idle")
            await ws.send("before")
            assert await ws.recv() == "before"
            return ws
        state["ws"] = loop.run_until_complete(asyncio.wait_for(open_idle(), 20))
        # the same over HTTP/2 (RFC 8441): a silent extended-CONNECT stream
        h2c = state["h2"] = H2Client(h2port)
        sid = state["sid"] = h2c.connect("/idle-h2")
        h2c.send(sid, client_frame(b"before"))
        assert h2c.frames(sid, 1) == [(0x1, b"before")]
        h2c.streams[sid]["data"] = b""
        # An HTTP/2 client library answers the proxy's PINGs by itself
        # while the application is silent; this thread does that for ours.
        quiet = state["quiet"] = threading.Event()
        state["answering"] = threading.Thread(target=h2c.answer_pings, args=(quiet,), daemon=True)
        state["answering"].start()
        state["since"] = time.monotonic()
        state["loop"] = loop
        yield state
    finally:
        if "answering" in state:
            state["quiet"].set()
            state["answering"].join(5)
        if "h2" in state:
            state["h2"].close()
        if "ws" in state:
            try:
                loop.run_until_complete(asyncio.wait_for(state["ws"].close(), 10))
            except Exception:
                pass
        loop.close()
        try:
            proxy.stop(check=True)
        finally:
            proxy.kill()
            backend.stop()


# ---------------------------------------------------------------- messages both ways

def test_text_and_binary_echo_with_extensions(start_proxy, ws_backend):
    b = ws_backend()
    p, port = ws_proxy(start_proxy, [b.port])

    async def go():
        async with connect(port, "/echo?x=1") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01\xfe\xff")
            assert await ws.recv() == b"\x00\x01\xfe\xff"
            # permessage-deflate was offered by the client and accepted by
            # the backend: Sec-WebSocket-Extensions went through both ways.
            return [e.name for e in ws.extensions]
    assert run(go()) == ["permessage-deflate"]
    path, hdrs = b.heads[-1]
    h = header_names(hdrs)
    assert path == "/echo?x=1"
    assert h["upgrade"].lower() == "websocket"
    assert "upgrade" in h["connection"].lower()
    assert h["sec-websocket-version"] == "13"
    assert "permessage-deflate" in h["sec-websocket-extensions"]
    log = p.prefix / "logs" / "access.log"
    wait_for(lambda: log.exists() and "GET /echo?x=1 HTTP/1.1 101 101" in log.read_text(), 5,
             what="the 101 in the access log")


def test_8mb_message(start_proxy, ws_backend):
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])
    big = os.urandom(8 * 1024 * 1024)

    async def go():
        async with connect(port, compression=None) as ws:
            await ws.send(big)
            return await ws.recv()
    assert run(go()) == big


def test_fragmented_message(start_proxy, ws_backend):
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])

    async def go():
        async with connect(port) as ws:
            await ws.send(["frag-1 ", "frag-2 ", "frag-3"])   # one message, three frames
            return await ws.recv()
    assert run(go()) == "frag-1 frag-2 frag-3"


def test_server_pushes_without_client_messages(start_proxy, ws_backend):
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])

    async def go():
        async with connect(port, "/push") as ws:
            return [await ws.recv() for _ in range(3)]
    assert run(go()) == ["push 1", "push 2", "push 3"]


def test_ping_pong(start_proxy, ws_backend):
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])

    async def go():
        async with connect(port) as ws:
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 10)
            await ws.send("still here")
            return await ws.recv()
    assert run(go()) == "still here"


def test_close_code_and_reason_reach_the_client(start_proxy, ws_backend):
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])

    async def go():
        async with connect(port, "/close4001") as ws:
            await ws.send("please close")
            await ws.wait_closed()
            return ws.close_code, ws.close_reason
    assert run(go()) == (4001, "bye now")


def test_subprotocol_chosen_by_the_backend(start_proxy, ws_backend):
    b = ws_backend(subprotocols=["chat.v2"])
    _, port = ws_proxy(start_proxy, [b.port])

    async def go():
        async with connect(port, "/who", subprotocols=["chat.v1", "chat.v2"]) as ws:
            return ws.subprotocol, json.loads(await ws.recv())
    sub, who = run(go())
    assert sub == "chat.v2"
    assert who["subprotocol"] == "chat.v2"
    h = header_names(b.heads[-1][1])
    assert h["sec-websocket-protocol"] == "chat.v1, chat.v2"


# ---------------------------------------------------------------- refusals

def test_backend_refusal_is_a_normal_response(start_proxy, ws_backend):
    """A 403 instead of 101 reaches the client as 403 (the library raises),
    and the client's connection stays usable for the next request."""
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])

    async def go():
        try:
            async with connect(port, "/forbidden"):
                return None
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
    assert run(go()) == 403
    with HttpConn(port) as c:
        for i in range(2):
            c.send(upgrade_request("/forbidden/%d" % i))
            r = c.read_response()
            assert r.status == 403, r
            assert r.body == b"forbidden\n"
            assert r.header("X-Refused") == "yes"
            assert not c.is_closed(0.2)
        c.send(upgrade_request("/after"))
        r = c.read_response()
        assert r.status == 101
        c.send(client_frame(b"usable"))
        assert read_frame(c) == (0x1, b"usable")


def test_bad_handshakes_are_the_backends_to_answer_and_the_connection_stays_usable(start_proxy, ws_backend):
    """As nginx, the proxy leaves the RFC 6455 checks to the backend (nginx-
    tests proxy_connection_headers.t: a keyless upgrade gets the backend's
    101): each bad handshake reaches it, its refusal is relayed, and the
    client connection goes on."""
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])
    with HttpConn(port) as c:
        c.send(upgrade_request("/nokey", key=None))
        r = c.read_response()
        assert r.status == 400
        assert not c.is_closed(0.2)
        c.send(upgrade_request("/noversion", version=None))
        assert c.read_response().status == 400
        c.send(upgrade_request("/badkey", key="c2hvcnQ="))
        assert c.read_response().status == 400
        c.send(upgrade_request("/v8", version="8"))
        assert c.read_response().status == 400
        assert [p for p, _ in b.heads] == ["/nokey", "/noversion", "/badkey", "/v8"]
        c.send(upgrade_request("/good"))
        r = c.read_response()
        assert r.status == 101
        assert r.header("Sec-WebSocket-Accept") == ws_accept(KEY)
        assert r.header("Upgrade").lower() == "websocket"
        assert r.header("Connection").lower() == "upgrade"
        c.send(client_frame(b"x" * 70000, opcode=0x2))
        assert read_frame(c) == (0x2, b"x" * 70000)


def test_invalid_101_is_502(start_proxy, start_stub):
    """A 101 whose Accept does not match the key, or that switches to a
    protocol the client did not offer, is the backend's error: 502."""
    wrong = start_stub(mode="raw", reply=(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"))
    other = start_stub(mode="raw", reply=(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"))
    for stub in (wrong, other):
        _, port = ws_proxy(start_proxy, [stub.port], "proxy_next_upstream off;")
        with HttpConn(port) as c:
            c.send(upgrade_request())
            assert c.read_response().status == 502


# ---------------------------------------------------------------- what is not an upgrade

def test_h2c_upgrade_is_not_forwarded(start_proxy, start_echo):
    """Upgrade: h2c is served as plain HTTP/1.1: neither Upgrade nor
    HTTP2-Settings reaches the backend, even with seed 08's lines."""
    e = start_echo()
    port = free_port()
    p = start_proxy(http_conf("""
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
    location /seed08 {
      proxy_pass http://127.0.0.1:%d;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
    }
  }
""" % (port, e.port, e.port)))
    for path in ("/plain", "/seed08"):
        with HttpConn(port) as c:
            r = c.request("GET", path, headers=[("Connection", "Upgrade, HTTP2-Settings"),
                                                ("Upgrade", "h2c"),
                                                ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
            assert r.status == 200, r
            head = r.body.decode("latin-1").lower()
            assert "upgrade" not in head, head
            assert "http2-settings" not in head, head
            assert not c.is_closed(0.2)


def test_other_upgrade_tokens_are_forwarded_http10_ignored(start_proxy, start_echo):
    """Any protocol other than h2c is offered to the backend (its plain 200
    is relayed as usual); an HTTP/1.0 request's Upgrade is ignored (RFC 9110
    7.8)."""
    e = start_echo()
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, e.port)))
    with HttpConn(port) as c:
        r = c.request("GET", "/foo", headers=[("Connection", "Upgrade"), ("Upgrade", "foo/2, h2c")])
        assert r.status == 200
        h = {k.lower(): v for k, v in (l.split(": ", 1) for l in r.text.split("\r\n")[1:] if ": " in l)}
        assert h["upgrade"] == "foo/2"
        assert h["connection"].lower() == "upgrade"
        r = c.request("GET", "/after")          # still usable
        assert r.status == 200 and "upgrade" not in r.text.lower()
    with HttpConn(port) as c:
        r = c.request("GET", "/old", version="HTTP/1.0",
                      headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
        assert r.status == 200 and "upgrade" not in r.text.lower()


def test_proxy_upgrade_off(start_proxy, ws_backend, start_stub):
    """proxy_upgrade off: Upgrade/Connection: upgrade are not forwarded (the
    WebSocket backend sees a plain GET and refuses it), and a 101 from the
    backend is a 502."""
    b = ws_backend()
    stub = start_stub(mode="raw", reply=(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ws_accept(KEY).encode() + b"\r\n\r\n"))
    _, port = ws_proxy(start_proxy, [b.port], "proxy_upgrade off;", """
    location /stub {
      proxy_upgrade off;
      proxy_pass http://127.0.0.1:%d;
    }""" % stub.port)

    async def go():
        try:
            async with connect(port, "/off"):
                return None
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
    assert run(go()) == 426   # the backend's own answer to a GET without Upgrade
    h = header_names(b.heads[-1][1])
    assert "upgrade" not in h
    assert "upgrade" not in h.get("connection", "").lower()
    with HttpConn(port) as c:
        c.send(upgrade_request("/stub"))
        assert c.read_response().status == 502


# ---------------------------------------------------------------- the tunnel

def test_half_close_passes_through(start_proxy):
    """The client's FIN reaches the backend (shutdown(SHUT_WR) after the
    bytes before it); the backend still answers, and its FIN comes back."""
    raw = RawWsBackend()
    try:
        _, port = ws_proxy(start_proxy, [raw.port])
        with HttpConn(port) as c:
            c.send(upgrade_request())
            assert c.read_response().status == 101
            payload = os.urandom(300000)
            c.send(payload)
            c.sock.shutdown(socket.SHUT_WR)
            while c._fill():
                pass
            assert c.buf == b"hellogot 300000"   # bytes that came with the 101 too
    finally:
        raw.stop()


def test_bytes_sent_right_after_the_upgrade_request(start_proxy, ws_backend):
    """A client that sends its first frame with the handshake (not waiting
    for the 101) has it delivered after the upgrade."""
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port])
    with HttpConn(port) as c:
        c.send(upgrade_request() + client_frame(b"eager"))
        assert c.read_response().status == 101
        assert read_frame(c) == (0x1, b"eager")


def test_500_connections_over_two_backends(start_proxy, ws_backend):
    a, b = ws_backend(), ws_backend()
    _, port = ws_proxy(start_proxy, [a.port, b.port])
    n = 500

    async def go():
        gate = asyncio.Semaphore(50)   # a connect storm would overflow listen backlogs

        async def one(i):
            async with gate:
                ws = await connect(port, "/c%d" % i, compression=None)
            return ws
        socks = await asyncio.gather(*(one(i) for i in range(n)))
        try:
            # all 500 open at once, each still relaying
            for i, ws in enumerate(socks):
                await ws.send("m%d" % i)
            return [await ws.recv() for ws in socks]
        finally:
            await asyncio.gather(*(ws.close() for ws in socks))
    answers = run(go(), timeout=120)
    assert answers == ["m%d" % i for i in range(n)]
    assert (a.connections, b.connections) == (n // 2, n // 2)


def test_slow_reader_keeps_memory_bounded(start_proxy, ws_backend):
    """A backend pushes 64 MB to a client that does not read: the proxy
    stops reading the backend instead of buffering (backpressure)."""
    b = ws_backend()
    p, port = ws_proxy(start_proxy, [b.port])

    async def go():
        async with connect(port, "/flood?256", compression=None, max_queue=1,
                           read_limit=65536) as ws:
            await asyncio.sleep(1.5)
            rss = p.rss_kb()
            total = 0
            for _ in range(256):
                total += len(await ws.recv())
            return rss, total
    rss, total = run(go(), timeout=120)
    assert total == 256 * 256 * 1024
    if not sgtest.SANITIZED:
        assert rss < 40 * 1024, rss


def test_seed_08_websocket(seed_conf, tmp_prefix, start_proxy, ws_backend):
    """Seed 08 with its map and proxy_set_header Upgrade/Connection lines
    (its ports made free ones): ws://127.0.0.1:8000/acc is upgraded and
    relayed both ways to 8089."""
    seed = seed_conf("08")
    acc = ws_backend(seed[8089])
    start_proxy(conf_file=seed.path, prefix=tmp_prefix)

    async def go():
        async with connect(seed[8000], "/acc", extra_headers={"Origin": "http://im.91vh.com"}) as ws:
            await ws.send('{"seq":"1","cmd":"login"}')
            return await ws.recv()
    assert run(go()) == '{"seq":"1","cmd":"login"}'
    h = header_names(acc.heads[-1][1])
    assert h["host"] == "127.0.0.1"          # proxy_set_header Host $host
    assert h["connection"].lower() == "upgrade"
    assert h["upgrade"].lower() == "websocket"
    log = tmp_prefix / "logs" / "im.log"
    wait_for(lambda: log.exists() and '"GET /acc HTTP/1.1" 101' in log.read_text(), 5,
             what="the upgrade in logs/im.log")


def test_reload_keeps_tunnels_until_worker_shutdown_timeout(start_proxy, ws_backend):
    """A reload keeps established tunnels on their generation; with
    worker_shutdown_timeout set, those still open that long after the
    reload are closed (new ones on the new generation are not)."""
    b = ws_backend()
    p, port = ws_proxy(start_proxy, [b.port], main="worker_shutdown_timeout 2s;")

    async def go():
        old = await connect(port, "/old")
        await old.send("a")
        assert await old.recv() == "a"
        assert p.reload(p.conf_path.read_text() + "\n# reloaded\n")
        await old.send("b")                      # still on the old generation
        assert await old.recv() == "b"
        new = await connect(port, "/new")
        t0 = time.monotonic()
        await asyncio.wait_for(old.wait_closed(), 15 * sgtest.SLOW)
        took = time.monotonic() - t0
        await new.send("c")
        ok = await new.recv() == "c"
        await new.close()
        return took, ok
    took, new_ok = run(go())
    assert new_ok
    assert took >= 1.0


def test_graceful_stop_waits_for_tunnels_until_worker_shutdown_timeout(start_proxy, ws_backend):
    """SIGQUIT keeps an open tunnel relaying (nginx waits for upgraded
    connections) and closes it at worker_shutdown_timeout."""
    b = ws_backend()
    p, port = ws_proxy(start_proxy, [b.port], main="worker_shutdown_timeout 2s;")
    with HttpConn(port) as c:
        c.send(upgrade_request())
        assert c.read_response().status == 101
        p.proc.send_signal(__import__("signal").SIGQUIT)
        time.sleep(0.5)
        c.send(client_frame(b"during quit"))
        assert read_frame(c) == (0x1, b"during quit")
        assert c.is_closed(10 * sgtest.SLOW)
    assert p.stop() == 0


@pytest.mark.parametrize("directive", ["proxy_tunnel_timeout 1s;", "proxy_read_timeout 1s;"])
def test_tunnel_timeouts(start_proxy, ws_backend, directive):
    """proxy_tunnel_timeout closes a tunnel silent both ways; a
    proxy_read_timeout the user set closes one whose backend is silent,
    as nginx does (unset, it does not apply: see the 70 s test)."""
    b = ws_backend()
    _, port = ws_proxy(start_proxy, [b.port], directive)
    with HttpConn(port) as c:
        c.send(upgrade_request("/push"))
        assert c.read_response().status == 101
        assert [read_frame(c) for _ in range(3)][-1] == (0x1, b"push 3")
        assert c.is_closed(10 * sgtest.SLOW)


def test_fast_stop_closes_tunnels(start_proxy, ws_backend):
    b = ws_backend()
    p, port = ws_proxy(start_proxy, [b.port])
    with HttpConn(port) as c:
        c.send(upgrade_request())
        assert c.read_response().status == 101
        assert p.stop() == 0
        assert c.is_closed(5)


# ---------------------------------------------------------------- HTTP/2 clients (RFC 8441)

def parse_frames(buf):
    """Complete unmasked frames at the start of buf → ([(opcode, payload)], rest)."""
    out = []
    while len(buf) >= 2:
        n, off = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, off = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, off = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < off + n:
            break
        out.append((buf[0] & 0x0F, buf[off:off + n]))
        buf = buf[off + n:]
    return out, buf


class H2Client:
    """python3-h2 over a socket: extended CONNECT streams and their DATA."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10 * sgtest.SLOW)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.settings = {}
        self.streams = {}
        self.flush()
        self.wait(lambda: 8 in self.settings, "the server's SETTINGS")

    def flush(self):
        d = self.conn.data_to_send()
        if d:
            self.sock.sendall(d)

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise sgtest.ConnectionClosed("h2 connection closed")
        for e in self.conn.receive_data(data):
            st = self.streams.get(getattr(e, "stream_id", None))
            if isinstance(e, h2.events.RemoteSettingsChanged):
                self.settings.update({k: v.new_value for k, v in e.changed_settings.items()})
            elif isinstance(e, h2.events.ResponseReceived):
                st["headers"] = dict(e.headers)
            elif isinstance(e, h2.events.DataReceived):
                st["data"] += e.data
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                st["ended"] = True
            elif isinstance(e, h2.events.StreamReset):
                st["reset"] = e.error_code
        self.flush()

    def wait(self, pred, what="condition", timeout=10):
        deadline = time.monotonic() + timeout * sgtest.SLOW
        while not pred():
            if time.monotonic() > deadline:
                raise sgtest.SgTestError("timed out waiting for " + what)
            self.pump()

    def connect(self, path, protocol="websocket", headers=()):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = {"headers": None, "data": b"", "ended": False, "reset": None}
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", protocol),
                                     (":scheme", "http"), (":path", path),
                                     (":authority", "127.0.0.1:%d" % self.port),
                                     ("sec-websocket-version", "13")] + list(headers))
        self.flush()
        self.wait(lambda: self.streams[sid]["headers"] or self.streams[sid]["reset"] is not None,
                  "the CONNECT's response")
        return sid

    def send(self, sid, data, end=False):
        """DATA within the flow-control windows (waits for WINDOW_UPDATEs)."""
        while True:
            n = min(len(data), self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size)
            if n == 0 and data:
                self.pump()
                continue
            last = n == len(data)
            self.conn.send_data(sid, data[:n], end_stream=end and last)
            self.flush()
            data = data[n:]
            if last:
                return

    def frames(self, sid, count):
        got = []

        def enough():
            frames, rest = parse_frames(self.streams[sid]["data"])
            got[:] = frames
            return len(frames) >= count or self.streams[sid]["ended"]
        self.wait(enough, "%d WebSocket frames" % count)
        return got

    def answer_pings(self, stop):
        """Reads (and so ACKs PINGs, as h2 libraries do) until stop is set."""
        while not stop.is_set():
            if select.select([self.sock], [], [], 0.2)[0]:
                self.pump()

    def close(self):
        self.sock.close()


def test_http2_websocket_rfc8441(start_proxy, ws_backend):
    """An HTTP/2 client's extended CONNECT (:protocol websocket) reaches an
    HTTP/1.1 WebSocket backend as an Upgrade with a fresh key; the 101
    becomes a 200 and the stream carries the frames both ways; the client's
    END_STREAM reaches the backend as a FIN and the backend's close ends
    the stream."""
    b = ws_backend(subprotocols=["chat.v2"])
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, b.port)))
    c = H2Client(port)
    try:
        sid = c.connect("/chat?room=1", headers=[("sec-websocket-protocol", "chat.v1, chat.v2")])
        h = c.streams[sid]["headers"]
        assert h[":status"] == "200", h
        assert h.get("sec-websocket-protocol") == "chat.v2"
        assert "sec-websocket-accept" not in h and "upgrade" not in h
        c.send(sid, client_frame(b"over h2"))
        c.send(sid, client_frame(b"\x00\xffbin", opcode=0x2))
        assert c.frames(sid, 2) == [(0x1, b"over h2"), (0x2, b"\x00\xffbin")]
        big = os.urandom(300000)
        c.send(sid, client_frame(big, opcode=0x2))
        assert c.frames(sid, 3)[2] == (0x2, big)
        # close handshake, then the client ends its side of the stream
        c.send(sid, client_frame(struct.pack("!H", 1000) + b"done", opcode=0x8), end=True)
        c.wait(lambda: c.streams[sid]["ended"] or c.streams[sid]["reset"] is not None, "stream end")
        frames = c.frames(sid, 4)
        assert frames[3][0] == 0x8 and frames[3][1][:2] == struct.pack("!H", 1000)
        path, hdrs = b.heads[-1]
        hh = header_names(hdrs)
        assert path == "/chat?room=1"
        assert hh["upgrade"].lower() == "websocket"
        assert hh["connection"].lower() == "upgrade"
        assert len(base64.b64decode(hh["sec-websocket-key"])) == 16
        assert hh["sec-websocket-version"] == "13"
        # the connection serves more streams: a refusal is a normal response
        sid2 = c.connect("/forbidden")
        assert c.streams[sid2]["headers"][":status"] == "403"
        sid3 = c.connect("/x", protocol="not-websocket")
        st = c.streams[sid3]
        assert (st["headers"] or {}).get(":status") == "501", st
    finally:
        c.close()


def test_idle_70s_with_defaults_still_echoes(idle_probe):
    """A chat client silent for 70 s (nothing either way, no pings) with
    the default configuration is not cut: proxy_read_timeout's 60 s default
    does not apply to tunnels, proxy_tunnel_timeout (1 h) does."""
    st = idle_probe
    left = IDLE_SECONDS - (time.monotonic() - st["since"])
    if left > 0:
        time.sleep(left)

    async def after():
        ws = st["ws"]
        await ws.send("after %d s" % IDLE_SECONDS)
        return await ws.recv()
    assert st["loop"].run_until_complete(asyncio.wait_for(after(), 20)) == "after %d s" % IDLE_SECONDS
    h2c, sid = st["h2"], st["sid"]
    st["quiet"].set()
    st["answering"].join(5)
    assert h2c.streams[sid]["data"] == b"", "the backend said something while idle"
    h2c.send(sid, client_frame(b"after, over h2"))
    assert h2c.frames(sid, 1) == [(0x1, b"after, over h2")]
