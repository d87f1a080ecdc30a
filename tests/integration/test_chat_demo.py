"""The WebSocket chat demo: sgback's /ws/echo, /ws/chat and /chat page, directly
and through streamgate with the built-in demo configuration, and two headless
Chromium pages chatting with each other through the proxy.

sgback side (python3-websockets and raw sockets): RFC 6455 handshake, echo of
text/binary/fragmented messages, ping/pong, close code and reason echoed,
subprotocol choice, protocol errors answered with the right close code, the
chat's JSON commands (login, heartbeat, message, join/leave notices), and the
memory an idle WebSocket costs sgback.

Through the proxy: the demo's own configuration (`streamgate -T` without -c)
with its ports replaced.  An upgrade the proxy does not complete (a 502
included) fails them.
"""

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from sgtest import SANITIZED, SLOW, HttpConn, free_port, get, run_streamgate, wait_for, ws_accept

websockets = pytest.importorskip("websockets", reason="python3-websockets is not installed")
from websockets.exceptions import ConnectionClosed, InvalidStatusCode  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def run(coro, timeout=30):
    """Run one coroutine with a hard time bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout * SLOW))


def connect(port, path, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10 * SLOW)
    kw.setdefault("close_timeout", 5 * SLOW)
    return websockets.connect("ws://127.0.0.1:%d%s" % (port, path), **kw)


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout * SLOW))


async def recv_until(ws, pred, timeout=5):
    """JSON messages until one matches pred (returned); the others are skipped."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching message within %ss" % timeout)
        m = json.loads(await asyncio.wait_for(ws.recv(), left))
        if pred(m):
            return m


# ---------------------------------------------------------------- raw frames

def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def handshake(port, path="/ws/echo", extra=""):
    """A raw socket past the 101 (asserted); returns (socket, response head)."""
    key = ws_key()
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
               % (path, key, extra)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        more = s.recv(4096)
        assert more, "closed during the handshake"
        head += more
    text = head.split(b"\r\n\r\n")[0].decode("latin-1")
    assert text.startswith("HTTP/1.1 101 "), text
    assert "Sec-WebSocket-Accept: %s" % ws_accept(key) in text
    return s, text


def frame(opcode, payload, fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(s):
    """(opcode, payload) of the next server frame (unmasked, as servers send)."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            more = s.recv(n - len(buf))
            if not more:
                raise EOFError("closed")
            buf += more
        return buf
    b0, b1 = exact(2)
    assert not b1 & 0x80, "a server frame must not be masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    return b0 & 0x0F, exact(n)


def close_code_of(s):
    """The code of the close frame the server sends next (frames before it skipped)."""
    while True:
        op, payload = read_frame(s)
        if op == 8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def eof_follows(s, timeout=5):
    s.settimeout(timeout * SLOW)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, socket.timeout):
        return False


# ---------------------------------------------------------------- sgback: handshake

def test_upgrade_handshake_and_refusals(backend):
    s, head = handshake(backend.port)
    assert "Upgrade: websocket" in head and "Connection: Upgrade" in head
    assert "Sec-WebSocket-Protocol" not in head, "no subprotocol offered, none chosen"
    s.close()
    r = get(backend.port, "/ws/echo")
    assert r.status == 426
    assert r.header("Sec-WebSocket-Version") == "13"
    assert r.header("Upgrade") == "websocket"
    base = {"Upgrade": "websocket", "Connection": "Upgrade"}
    r = get(backend.port, "/ws/echo", headers=dict(base, **{
        "Sec-WebSocket-Key": ws_key(), "Sec-WebSocket-Version": "8"}))
    assert r.status == 426 and r.header("Sec-WebSocket-Version") == "13"
    r = get(backend.port, "/ws/chat", headers=dict(base, **{
        "Sec-WebSocket-Key": "too-short", "Sec-WebSocket-Version": "13"}))
    assert r.status == 400
    # a refused upgrade leaves an ordinary keep-alive HTTP connection
    with HttpConn(backend.port) as c:
        assert c.request("GET", "/ws/echo").status == 426
        assert c.request("GET", "/").status == 200


def test_subprotocol_choice(backend):
    async def go():
        async with connect(backend.port, "/ws/echo", subprotocols=["v9", "superchat", "chat"]) as ws:
            assert ws.subprotocol == "superchat"   # the first offered among the known ones
        async with connect(backend.port, "/ws/echo?proto=v9", subprotocols=["chat", "v9"]) as ws:
            assert ws.subprotocol == "v9"          # ?proto= picks an offered one
        async with connect(backend.port, "/ws/echo", subprotocols=["v9"]) as ws:
            assert ws.subprotocol is None
    run(go())


# ---------------------------------------------------------------- sgback: echo

def test_echo_messages_ping_and_close(backend):
    async def go():
        async with connect(backend.port, "/ws/echo") as ws:
            await ws.send("héllo 😀")
            assert await ws.recv() == "héllo 😀"
            await ws.send("")
            assert await ws.recv() == ""
            big = os.urandom(3 << 20)               # 64-bit length, many reads
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "men", "ted"])   # one message in three frames
            assert await ws.recv() == "fragmented"
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5 * SLOW)
            await ws.close(code=4321, reason="done here")
            assert ws.close_code == 4321 and ws.close_reason == "done here"
    run(go())


def test_echo_in_one_write_and_split_bytes(backend):
    """Frames arriving together, or one byte at a time, are all answered."""
    s, _ = handshake(backend.port)
    s.sendall(b"".join(frame(1, b"m%d" % i) for i in range(50)) + frame(9, b"p"))
    got = [read_frame(s) for _ in range(51)]
    assert got[:50] == [(1, b"m%d" % i) for i in range(50)]
    assert got[50] == (10, b"p")
    data = frame(2, b"x" * 300, fin=False) + frame(9, b"") + frame(0, b"y" * 5)
    for i in range(len(data)):
        s.sendall(data[i:i + 1])
    assert read_frame(s) == (10, b"")
    assert read_frame(s) == (2, b"x" * 300 + b"y" * 5)
    s.sendall(frame(8, struct.pack("!H", 1000) + b"bye"))
    assert read_frame(s) == (8, struct.pack("!H", 1000) + b"bye")
    assert eof_follows(s), "the server closes the TCP connection after the close handshake"
    s.close()


@pytest.mark.parametrize("data, code", [
    (frame(1, b"hello", mask=False), 1002),                 # unmasked client frame
    (frame(3, b"x"), 1002),                                 # unknown opcode
    (frame(1, b"x", rsv=4), 1002),                          # RSV1 without an extension
    (frame(9, b"p" * 126), 1002),                           # control frame > 125 bytes
    (frame(9, b"p", fin=False), 1002),                      # fragmented control frame
    (frame(0, b"x"), 1002),                                 # continuation without a message
    (frame(1, b"\xed\xa0\x80"), 1007),                      # not UTF-8
    (frame(8, struct.pack("!H", 1005)), 1002),              # reserved close code
    (struct.pack("!BBQ", 0x82, 0xFF, (16 << 20) + 1) + b"abcd", 1009),   # > 16 MB
], ids=["unmasked", "opcode", "rsv", "long-control", "frag-control", "lone-cont",
        "utf8", "close-code", "too-big"])
def test_protocol_errors_close_with_the_right_code(backend, data, code):
    s, _ = handshake(backend.port)
    s.sendall(data)
    assert close_code_of(s) == code
    assert eof_follows(s)
    s.close()


# ---------------------------------------------------------------- sgback: chat

async def login(port, user, room=None, path="/ws/chat"):
    ws = await connect(port, path)
    cmd = {"cmd": "login", "user": user}
    if room:
        cmd["room"] = room
    await ws.send(json.dumps(cmd))
    m = await recv_json(ws)
    assert m["cmd"] == "login" and m["ok"] is True, m
    assert m["response"]["code"] == 200
    return ws, m


async def chat_scenario(port):
    alice, m = await login(port, "alice", "lobby")
    assert m["user"] == "alice" and m["room"] == "lobby" and m["online"] == 1
    j = await recv_json(alice)
    assert (j["cmd"], j["user"], j["online"]) == ("join", "alice", 1)
    bob, m = await login(port, "bob")                     # room defaults to lobby
    assert m["room"] == "lobby" and m["online"] == 2
    j = await recv_until(alice, lambda x: x["cmd"] == "join")
    assert j["user"] == "bob" and j["online"] == 2 and isinstance(j["ts"], int)
    await recv_until(bob, lambda x: x["cmd"] == "join")
    # someone in another room sees nothing of the lobby
    carol, _ = await login(port, "carol", "other")
    await recv_until(carol, lambda x: x["cmd"] == "join")

    text = 'hi "bob" \\ <b>&</b>\n\u00e9\U0001F600'
    await alice.send(json.dumps({"cmd": "message", "text": text}))
    for ws in (bob, alice):                               # the sender gets it too
        m = await recv_until(ws, lambda x: x["cmd"] == "message")
        assert (m["user"], m["room"], m["text"]) == ("alice", "lobby", text)
        assert abs(m["ts"] / 1000 - time.time()) < 60
    await bob.send(json.dumps({"cmd": "heartbeat"}))
    m = await recv_json(bob)
    assert m["cmd"] == "heartbeat" and m["ok"] is True and m["online"] == 2

    await bob.close()
    m = await recv_until(alice, lambda x: x["cmd"] == "leave")
    assert (m["user"], m["online"]) == ("bob", 1)
    await carol.send(json.dumps({"cmd": "heartbeat"}))
    m = await recv_json(carol)
    assert m["cmd"] == "heartbeat", "carol must not have seen lobby traffic: %r" % m
    await alice.close()
    await carol.close()


def test_chat_room(start_backend):
    b = start_backend(threads=2)       # members spread over two threads
    run(chat_scenario(b.port))


def test_chat_seed_protocol_and_errors(backend):
    """The seed's message shapes ({"seq","cmd","data":{"userId"}}) and error answers."""
    async def go():
        async with connect(backend.port, "/ws/chat") as ws:
            await ws.send(json.dumps({"cmd": "message", "text": "too early"}))
            m = await recv_json(ws)
            assert m["ok"] is False and m["response"]["code"] == 401
            await ws.send(json.dumps({"seq": "2323", "cmd": "heartbeat", "data": {}}))
            m = await recv_json(ws)
            assert (m["cmd"], m["seq"], m["ok"], m["response"]["code"]) == ("heartbeat", "2323", True, 200)
            await ws.send('{"seq":"1565336219141-266129","cmd":"login","data":{"userId":"\\u9a6c\\u8fdc","appId":101}}')
            m = await recv_json(ws)
            assert (m["cmd"], m["seq"], m["user"], m["room"]) == ("login", "1565336219141-266129", "马远", "lobby")
            await recv_until(ws, lambda x: x["cmd"] == "join")
            await ws.send("not json")
            m = await recv_json(ws)
            assert m["cmd"] == "error" and m["response"]["code"] == 400
            await ws.send(json.dumps({"cmd": "dance"}))
            m = await recv_until(ws, lambda x: x["cmd"] == "dance")
            assert m["ok"] is False and m["response"]["code"] == 404
            await ws.send(b"\x00binary")
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5 * SLOW)
            assert ws.close_code == 1003
    run(go())


def test_idle_websockets_are_cheap(backend):
    """1,000 idle upgraded connections: little memory each, all still answering.

    sgback frees a connection's HTTP buffers at the upgrade; what stays is a
    few hundred bytes. Measured after a warm-up (the first handshakes page
    in libcrypto and the thread's buffers); not under ASan, whose allocator
    keeps freed memory in quarantine on purpose."""
    warm, n = 50, 1000
    socks = []

    def sync():
        # a round trip on the newest one: every earlier upgrade has been processed
        socks[-1].sendall(frame(1, b"sync"))
        assert read_frame(socks[-1]) == (1, b"sync")
    try:
        for _ in range(warm):
            socks.append(handshake(backend.port)[0])
        sync()
        before = backend.rss_kb()
        for _ in range(n):
            socks.append(handshake(backend.port)[0])
        sync()
        grown = backend.rss_kb() - before
        if not SANITIZED:
            assert grown < n, "sgback grew %d KiB for %d idle WebSockets" % (grown, n)
        assert backend.stats()["open"] == warm + n + 1
        for s in socks[::97]:
            s.sendall(frame(1, b"still there"))
            assert read_frame(s) == (1, b"still there")
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: backend.stats()["open"] == 1, 10, what="sgback to see the closes")


def test_chat_page(backend):
    r = get(backend.port, "/chat")
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/html")
    page = r.body.decode()
    assert "new WebSocket(" in page and "ws/chat" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external resources"


# ---------------------------------------------------------------- through the proxy

@pytest.fixture
def demo(start_backend, start_proxy):
    """The built-in demo configuration on free ports: (proxy port, backend)."""
    r = run_streamgate(["-T"])
    assert r.returncode == 0, r.stderr
    conf = r.stdout
    assert "location /ws/" in conf, "the demo proxies the chat's WebSocket"
    b = start_backend(threads=2)
    port = free_port()
    conf = conf.replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
    conf = conf.replace("127.0.0.1:9001", "127.0.0.1:%d" % b.port)
    conf = conf.replace("    server 127.0.0.1:9002;\n", "")
    conf = conf.replace("        server 127.0.0.1:9002;\n", "")
    assert "9002" not in conf and "8080" not in conf
    start_proxy(conf)
    return port, b


def require_proxy_upgrades(port):
    """The proxy upgrades: anything but 101 (a 502 included) fails the test."""
    r = get(port, "/ws/echo", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                       "Sec-WebSocket-Key": ws_key(),
                                       "Sec-WebSocket-Version": "13"})
    assert r.status == 101, "upgrade through the proxy: %d" % r.status


def test_echo_and_chat_through_the_demo_proxy(demo):
    port, _ = demo
    require_proxy_upgrades(port)

    async def go():
        async with connect(port, "/ws/echo", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("through the proxy")
            assert await ws.recv() == "through the proxy"
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.close(code=4000, reason="ok")
            assert ws.close_code == 4000
        await chat_scenario(port)
    run(go())
    assert get(port, "/chat").status == 200


# ---------------------------------------------------------------- two browsers

class Cdp:
    """A minimal Chrome DevTools Protocol client over the browser's WebSocket,
    with flattened sessions (one socket, commands tagged with a sessionId)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, params=None, session=None, timeout=15):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout * SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("DevTools: no answer to %s" % method)
            m = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise AssertionError("DevTools %s: %s" % (method, m["error"]))
                return m["result"]

    async def open_page(self, url):
        t = await self.call("Target.createTarget", {"url": url})
        s = await self.call("Target.attachToTarget", {"targetId": t["targetId"], "flatten": True})
        return s["sessionId"]

    async def js(self, session, expr):
        r = await self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": True}, session)
        if "exceptionDetails" in r:
            raise AssertionError("page error in %r: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    async def wait_js(self, session, expr, timeout=15, what=None):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            try:
                v = await self.js(session, expr)
            except AssertionError:
                v = None   # the page is still loading
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s" % (what or expr))
            await asyncio.sleep(0.05)

    async def type_enter(self, session, text):
        """Types into the focused input and presses Enter, as a user would."""
        await self.call("Input.insertText", {"text": text}, session)
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", {
                "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                "nativeVirtualKeyCode": 13, "text": "\r" if kind == "keyDown" else ""}, session)


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium with a fresh profile; yields the DevTools browser URL."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (%s): apt-get install chromium" % CHROMIUM)
    profile = tempfile.mkdtemp(prefix="sg-chromium-")
    log = open(tmp_path / "chromium.log", "wb")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check", "--remote-allow-origins=*",
         "--user-data-dir=" + profile, "--remote-debugging-port=0", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")

        def endpoint():
            if proc.poll() is not None:
                raise AssertionError("chromium exited with %s:\n%s" % (
                    proc.returncode, (tmp_path / "chromium.log").read_text(errors="replace")[-3000:]))
            try:
                lines = open(port_file).read().split("\n")
            except OSError:
                return None
            return len(lines) >= 2 and lines[1] and "ws://127.0.0.1:%s%s" % (lines[0], lines[1])
        yield wait_for(endpoint, 20, 0.05, "chromium's DevTools port")
    finally:
        try:
            os.killpg(proc.pid, 9)   # the browser and any helper process it left
        except ProcessLookupError:
            pass
        proc.wait(10)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def test_two_browsers_chat_through_the_proxy(demo, chromium):
    port, _ = demo
    require_proxy_upgrades(port)
    url = "http://127.0.0.1:%d/chat" % port

    async def go():
        async with websockets.connect(chromium, max_size=None, ping_interval=None) as b:
            cdp = Cdp(b)
            pages = {}
            for name in ("alice", "bob"):
                s = await cdp.open_page(url)
                await cdp.wait_js(s, "document.readyState === 'complete' && !!document.getElementById('name')",
                                  what="the chat page in %s's tab" % name)
                await cdp.js(s, "document.getElementById('name').value = %s;"
                                "document.getElementById('join').click(); true" % json.dumps(name))
                await cdp.wait_js(s, "document.getElementById('status').textContent"
                                     ".indexOf('connected as %s') >= 0" % name,
                                  what="%s to be logged in" % name)
                pages[name] = s
            log = "document.getElementById('log').textContent"
            await cdp.wait_js(pages["alice"], "%s.indexOf('bob joined') >= 0" % log,
                              what="alice to see bob join")
            # alice types and presses Enter; bob sees it
            await cdp.js(pages["alice"], "document.getElementById('text').focus(); true")
            await cdp.type_enter(pages["alice"], "hello from alice")
            await cdp.wait_js(pages["bob"], "%s.indexOf('hello from alice') >= 0" % log,
                              what="bob to receive alice's message")
            await cdp.wait_js(pages["alice"], "%s.indexOf('hello from alice') >= 0" % log,
                              what="alice to see her own message")
            assert await cdp.js(pages["alice"], "document.getElementById('text').value") == ""
            # and back, with text that must not become markup
            await cdp.js(pages["bob"], "document.getElementById('text').focus(); true")
            await cdp.type_enter(pages["bob"], "<i>hi</i> alice \u00e9")
            await cdp.wait_js(pages["alice"], "%s.indexOf('<i>hi</i> alice \u00e9') >= 0" % log,
                              what="alice to receive bob's answer")
            assert await cdp.js(pages["alice"], "document.querySelectorAll('#log i').length") == 0
            await cdp.call("Browser.close")
    run(go(), timeout=35)   # with chromium's start: under a minute
