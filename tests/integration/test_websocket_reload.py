"""Reloads do not drop WebSockets: 1,000 connections through streamgate
(two worker threads) to sgback's /ws/echo keep chatting while the
configuration is reloaded 20 times; every message of every connection comes
back, and all 1,000 are still open at the end."""
import asyncio

import websockets

import sgtest
from sgtest import free_port, http_conf

CONNECTIONS = 1000
RELOADS = 20


def conf(port, backend_port, generation):
    return http_conf("""
  server {
    listen 127.0.0.1:%d;
    add_header X-Generation %d;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (port, generation, backend_port), main="worker_processes 2;")


def test_20_reloads_while_1000_websockets_chat(start_proxy, start_backend):
    backend = start_backend(threads=2)
    port = free_port()
    proxy = start_proxy(conf(port, backend.port, 0))

    async def main():
        opened = []
        for i in range(0, CONNECTIONS, 100):   # open in batches, bounded
            opened += await asyncio.gather(*(websockets.connect(
                "ws://127.0.0.1:%d/ws/echo" % port, ping_interval=None, max_size=None,
                open_timeout=20 * sgtest.SLOW) for _ in range(100)))
        stop = asyncio.Event()
        counts = [0] * CONNECTIONS

        async def chat(i, ws):
            n = 0
            while not stop.is_set():
                msg = "c%d m%d" % (i, n)
                await ws.send(msg)
                assert await ws.recv() == msg
                n += 1
                await asyncio.sleep(0.2)
            counts[i] = n

        async def reloads():
            loop = asyncio.get_running_loop()
            for g in range(1, RELOADS + 1):
                ok = await loop.run_in_executor(None, proxy.reload, conf(port, backend.port, g))
                assert ok, proxy.error_log[-2000:]
                await asyncio.sleep(0.1)
            stop.set()

        await asyncio.gather(reloads(), *(chat(i, ws) for i, ws in enumerate(opened)))
        # every message of every connection came back while the reloads ran
        # (chat() asserts each echo) ...
        assert sum(counts) >= CONNECTIONS, sum(counts)
        # ... and every connection is still open and usable after the last one
        for i, ws in enumerate(opened):
            await ws.send("after %d" % i)
            assert await ws.recv() == "after %d" % i
        await asyncio.gather(*(ws.close() for ws in opened))
        return len(opened)

    assert asyncio.run(asyncio.wait_for(main(), 240 * sgtest.SLOW)) == CONNECTIONS
    assert proxy.error_log.count("reloaded configuration") >= RELOADS
