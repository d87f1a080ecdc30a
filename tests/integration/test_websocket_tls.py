"""WebSocket over TLS: after the 101 a TLS connection becomes a side of
the tunnel, the client's (wss:// to an HTTP/1.1 `ssl` listener; sgback's
/ws/echo behind) or the backend's (`proxy_pass https://` to a
python3-websockets server with TLS), or both.

Checked with python3-websockets clients that verify certificates: text and
binary messages both ways, a 4 MB message, a connection silent for a
while, a close with code and reason, 100 wss connections at once, and the
same on a `listen ... ssl http2` port (a client that offers no ALPN gets
HTTP/1.1 there)."""
import asyncio
import ssl
import subprocess
import threading

import pytest
import websockets

import sgtest
from sgtest import MB, free_port, http_conf


def make_cert(dirpath):
    key, crt = dirpath / "ws.key", dirpath / "ws.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    return crt, key


@pytest.fixture(params=["ssl", "ssl http2"])
def wss(request, tmp_path, start_proxy, backend):
    """(port, client ssl context) of a TLS listener proxying to sgback."""
    crt, key = make_cert(tmp_path)
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d %s;
    ssl_certificate %s; ssl_certificate_key %s;
    location /ws/ { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, request.param, crt, key, backend.port)))
    ctx = ssl.create_default_context(cafile=str(crt))
    return port, ctx


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout * sgtest.SLOW))


def connect(port, ctx):
    return websockets.connect("wss://localhost:%d/ws/echo" % port, ssl=ctx, max_size=None,
                              ping_interval=None, open_timeout=10 * sgtest.SLOW)


def test_messages_both_ways(wss):
    port, ctx = wss

    async def go():
        async with connect(port, ctx) as ws:
            await ws.send("hello over wss")
            assert await ws.recv() == "hello over wss"
            blob = sgtest.pattern_bytes(4 * MB)
            await ws.send(blob)
            assert await ws.recv() == blob
            await asyncio.sleep(3)   # silent: the tunnel and its TLS state just wait
            await ws.send(b"\x00\x01after the pause")
            assert await ws.recv() == b"\x00\x01after the pause"
    run(go())


def test_close_with_code_and_reason(wss):
    port, ctx = wss

    async def go():
        ws = await connect(port, ctx)
        await ws.send("x")
        assert await ws.recv() == "x"
        await ws.close(4001, "bye now")
        return ws.close_code, ws.close_reason
    assert run(go()) == (4001, "bye now")


def test_one_hundred_at_once(wss):
    port, ctx = wss

    async def one(i):
        async with connect(port, ctx) as ws:
            await ws.send("client %d" % i)
            return await ws.recv()

    async def go():
        return await asyncio.gather(*(one(i) for i in range(100)))
    assert run(go(), 120) == ["client %d" % i for i in range(100)]


# ---------------------------------------------------------------- TLS toward the backend

class WssBackend:
    """A python3-websockets echo server with TLS on 127.0.0.1, in a thread."""

    def __init__(self, crt, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(crt), str(key))
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(10), "wss backend did not start"

    async def _echo(self, ws, *_):
        async for m in ws:
            await ws.send(m)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.stop_event = asyncio.Event()
            async with websockets.serve(self._echo, "127.0.0.1", self.port, ssl=self.ctx, max_size=None):
                self.ready.set()
                await self.stop_event.wait()
        self.loop.run_until_complete(main())

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_event.set)


@pytest.mark.parametrize("front", ["plain", "ssl"])
def test_websocket_to_an_https_backend(tmp_path, start_proxy, front):
    crt, key = make_cert(tmp_path)
    b = WssBackend(crt, key)
    try:
        port = free_port()
        listen = "127.0.0.1:%d%s" % (port, " ssl" if front == "ssl" else "")
        start_proxy(http_conf("""
  server {
    listen %s;
    ssl_certificate %s; ssl_certificate_key %s;
    location / { proxy_pass https://127.0.0.1:%d; }
  }
""" % (listen, crt, key, b.port)))
        ctx = ssl.create_default_context(cafile=str(crt)) if front == "ssl" else None
        url = "%s://localhost:%d/" % ("wss" if ctx else "ws", port)

        async def go():
            async with websockets.connect(url, ssl=ctx, max_size=None, ping_interval=None,
                                          open_timeout=10 * sgtest.SLOW) as ws:
                await ws.send("to a TLS backend")
                assert await ws.recv() == "to a TLS backend"
                blob = sgtest.pattern_bytes(2 * MB)
                await ws.send(blob)
                assert await ws.recv() == blob
                await ws.close(4001, "bye")
                return ws.close_code
        assert run(go()) == 4001
    finally:
        b.stop()
