"""WebSocket over HTTP/2 (RFC 8441) through streamgate: the same user-visible
checks as test_websocket.py, with an extended-CONNECT client (python3-h2
framing WebSocket by hand) in front and a python3-websockets server behind.
(The 70 s idle check over HTTP/2 rides on test_websocket.py's idle probe.)
A backend that ends its side first half-closes the client's stream
(END_STREAM, no RST_STREAM): the client may still send until it ends too,
with a plain-socket HTTP/1.1 backend and with an RFC 8441 HTTP/2 one."""
import base64
import hashlib
import os
import select
import socket
import ssl
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

import sgtest
from sgtest import HttpConn, free_port, http_conf
from test_websocket import H2Client, WsBackend, client_frame
from test_websocket_tls import make_cert


def frame(payload, opcode, fin=True):
    """A masked client frame; fin=False for all but the last fragment."""
    f = bytearray(client_frame(payload, opcode))
    if not fin:
        f[0] &= 0x7F
    return bytes(f)


def h2_ws_proxy(start_proxy, backend_ports):
    port = free_port()
    servers = "".join("server 127.0.0.1:%d; " % p for p in backend_ports)
    start_proxy(http_conf("""
  upstream ws { %s}
  server {
    listen 127.0.0.1:%d http2;
    location / { proxy_pass http://ws; }
  }
""" % (servers, port)))
    return port


def test_messages_both_ways_over_h2(start_proxy):
    """8 MB message, fragmented message, pushes, ping/pong, close 4001."""
    b = WsBackend()
    try:
        port = h2_ws_proxy(start_proxy, [b.port])
        c = H2Client(port)
        try:
            sid = c.connect("/echo")
            assert c.streams[sid]["headers"][":status"] == "200"
            big = os.urandom(8 * 1024 * 1024)
            c.send(sid, client_frame(big, opcode=0x2))
            assert c.frames(sid, 1) == [(0x2, big)]
            c.streams[sid]["data"] = b""
            c.send(sid, frame(b"frag-", 0x1, fin=False) + frame(b"ment", 0x0, fin=False)
                   + frame(b"ed", 0x0))
            assert c.frames(sid, 1) == [(0x1, b"frag-mented")]
            c.streams[sid]["data"] = b""
            c.send(sid, client_frame(b"are you there", opcode=0x9))
            assert c.frames(sid, 1) == [(0xA, b"are you there")]

            push = c.connect("/push")
            assert c.frames(push, 3) == [(0x1, b"push %d" % i) for i in (1, 2, 3)]

            bye = c.connect("/close4001")
            c.send(bye, client_frame(b"hi"))
            (op, payload), = c.frames(bye, 1)
            assert op == 0x8
            assert struct.unpack("!H", payload[:2])[0] == 4001 and payload[2:] == b"bye now"
        finally:
            c.close()
    finally:
        b.stop()


def test_500_streams_spread_over_two_backends(start_proxy):
    """500 WebSocket streams on 5 HTTP/2 connections: each is balanced on
    its own, so the two backends get 250 each."""
    b1, b2 = WsBackend(), WsBackend()
    try:
        port = h2_ws_proxy(start_proxy, [b1.port, b2.port])
        clients = [H2Client(port) for _ in range(5)]
        try:
            sids = [(c, c.connect("/who")) for c in clients for _ in range(100)]
            assert all(c.streams[s]["headers"][":status"] == "200" for c, s in sids)
            for c, s in sids:
                c.frames(s, 1)
            assert (b1.connections, b2.connections) == (250, 250)
            # every stream is a live tunnel, not just an answered handshake
            c, s = sids[-1]
            c.send(s, client_frame(b"still here"))
            assert c.frames(s, 2)[1] == (0x1, b"still here")
        finally:
            for c in clients:
                c.close()
    finally:
        b1.stop()
        b2.stop()


# ---- proxy_http_version 2: extended CONNECT to an RFC 8441 HTTP/2 backend ----


class H2ConnectBackend:
    """A threaded h2c (prior knowledge) backend taking RFC 8441 extended
    CONNECT: 200, then every DATA byte of the stream comes back verbatim
    (flow control respected), and the client's END_STREAM is answered with
    END_STREAM once the echo is out. /forbidden gets 403; /bye gets "bye"
    and END_STREAM at once; /reset resets the stream on its first DATA.
    enable_connect=False: SETTINGS_ENABLE_CONNECT_PROTOCOL not announced."""

    def __init__(self, enable_connect=True):
        self.enable_connect = enable_connect
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.heads = []            # request headers (dict) of each stream
        self.ended = []            # paths whose client side ended (END_STREAM)
        self.resets = []           # paths the proxy reset
        self.received = {}         # path -> every DATA byte the stream carried
        self.max_open = 0          # most streams open at once on one connection
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop_ev.is_set():
            if not select.select([self.lsock], [], [], 0.1)[0]:
                continue
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self._serve_safe, args=(s,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve_safe(self, s):
        try:
            self._serve(s)
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            s.close()

    def _serve(self, s):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1 if self.enable_connect else 0,
        })
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        out = {}      # stream id -> bytes to echo
        paths = {}
        finish = set()  # streams to END once their echo is out
        while not self.stop_ev.is_set():
            if not select.select([s], [], [], 0.1)[0]:
                continue
            data = s.recv(65536)
            if not data:
                return
            for e in conn.receive_data(data):
                sid = getattr(e, "stream_id", None)
                if isinstance(e, h2.events.RequestReceived):
                    h = dict(e.headers)
                    paths[sid] = h.get(":path")
                    with self.lock:
                        self.heads.append(h)
                        self.max_open = max(self.max_open, len(paths))
                    if h.get(":path") == "/forbidden":
                        conn.send_headers(sid, [(":status", "403"), ("content-length", "2")])
                        conn.send_data(sid, b"no", end_stream=True)
                        continue
                    hdrs = [(":status", "200")]
                    if "sec-websocket-protocol" in h:
                        hdrs.append(("sec-websocket-protocol", h["sec-websocket-protocol"].split(",")[0].strip()))
                    conn.send_headers(sid, hdrs)
                    out[sid] = b""
                    if h.get(":path") == "/bye":
                        conn.send_data(sid, b"bye", end_stream=True)
                        out.pop(sid)
                elif isinstance(e, h2.events.DataReceived):
                    conn.acknowledge_received_data(e.flow_controlled_length, sid)
                    with self.lock:
                        path = paths.get(sid)
                        self.received[path] = self.received.get(path, b"") + e.data
                    if paths.get(sid) == "/reset":
                        conn.reset_stream(sid, error_code=8)
                        out.pop(sid, None)
                    elif sid in out:
                        out[sid] += e.data
                elif isinstance(e, h2.events.StreamEnded):
                    with self.lock:
                        self.ended.append(paths.get(sid))
                    if sid in out:
                        finish.add(sid)
                elif isinstance(e, h2.events.StreamReset):
                    with self.lock:
                        self.resets.append(paths.get(sid))
                    out.pop(sid, None)
                    paths.pop(sid, None)
                    finish.discard(sid)
            for sid in list(out):
                while out[sid]:
                    n = min(len(out[sid]), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if n <= 0:
                        break
                    conn.send_data(sid, out[sid][:n])
                    out[sid] = out[sid][n:]
                if not out[sid] and sid in finish:
                    conn.end_stream(sid)
                    finish.discard(sid)
                    out.pop(sid)
                    paths.pop(sid, None)
            d = conn.data_to_send()
            if d:
                s.sendall(d)

    def stop(self):
        self.stop_ev.set()
        self.lsock.close()
        for t in self.threads:
            t.join(5)


def h2_upstream_proxy(start_proxy, backend_port, extra=""):
    port = free_port()
    proxy = start_proxy(http_conf("""
  upstream h2b { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d http2;
    location / { proxy_pass http://h2b; proxy_http_version 2; %s }
  }
""" % (backend_port, port, extra)))
    return proxy, port


def wait_bytes(c, sid, n, what="echo"):
    c.wait(lambda: len(c.streams[sid]["data"]) >= n or c.streams[sid]["reset"] is not None
           or c.streams[sid]["ended"], what, timeout=30)
    return c.streams[sid]["data"]


def test_h2_upstream_extended_connect_echo(start_proxy):
    """The CONNECT goes on as an extended CONNECT with the client's
    WebSocket headers; the backend's 200 comes back as 200 and bytes flow
    both ways, 1 MB included; END_STREAM passes each way."""
    b = H2ConnectBackend()
    try:
        proxy, port = h2_upstream_proxy(start_proxy, b.port)
        c = H2Client(port)
        try:
            sid = c.connect("/chat?room=1", headers=[("sec-websocket-protocol", "chat.v2, chat.v1"),
                                                     ("sec-websocket-extensions", "permessage-deflate"),
                                                     ("x-trace", "t1")])
            h = c.streams[sid]["headers"]
            assert h[":status"] == "200", h
            assert h.get("sec-websocket-protocol") == "chat.v2"
            head = b.heads[-1]
            assert head[":method"] == "CONNECT" and head[":protocol"] == "websocket"
            assert head[":scheme"] == "http" and head[":path"] == "/chat?room=1"
            assert head[":authority"]
            assert head["sec-websocket-version"] == "13"
            assert head["sec-websocket-protocol"] == "chat.v2, chat.v1"
            assert head["sec-websocket-extensions"] == "permessage-deflate"
            assert head["x-trace"] == "t1"
            assert "sec-websocket-key" not in head and "upgrade" not in head

            f = client_frame(b"over h2 both ways")
            c.send(sid, f)
            assert wait_bytes(c, sid, len(f)) == f
            c.streams[sid]["data"] = b""
            big = client_frame(os.urandom(1024 * 1024), opcode=0x2)
            c.send(sid, big)
            assert wait_bytes(c, sid, len(big), "1 MB echo") == big
            c.streams[sid]["data"] = b""
            last = client_frame(struct.pack("!H", 1000), opcode=0x8)
            c.send(sid, last, end=True)
            c.wait(lambda: c.streams[sid]["ended"] or c.streams[sid]["reset"] is not None,
                   "the backend's END_STREAM", timeout=20)
            assert c.streams[sid]["reset"] is None
            assert c.streams[sid]["ended"] and c.streams[sid]["data"] == last
            sgtest.wait_for(lambda: "/chat?room=1" in b.ended, timeout=5, what="END_STREAM at the backend")

            # the backend ends first: its END_STREAM reaches the client
            bye = c.connect("/bye")
            c.wait(lambda: c.streams[bye]["ended"], "END_STREAM from /bye")
            assert c.streams[bye]["data"] == b"bye"
            # a reset passes as a reset
            rst = c.connect("/reset")
            c.send(rst, b"x")
            c.wait(lambda: c.streams[rst]["reset"] is not None, "RST_STREAM from /reset")
            # the connection still serves
            again = c.connect("/again")
            c.send(again, b"ping")
            assert wait_bytes(c, again, 4) == b"ping"
            assert b.connections == 1
        finally:
            c.close()
        # the client gone: the backend's stream is reset, not left open
        sgtest.wait_for(lambda: "/again" in b.resets, timeout=5 * sgtest.SLOW, what="RST to the backend")
    finally:
        b.stop()


def test_h2_upstream_connect_refused_status_relayed(start_proxy):
    """A backend's 403 to the CONNECT reaches the client as 403."""
    b = H2ConnectBackend()
    try:
        proxy, port = h2_upstream_proxy(start_proxy, b.port)
        c = H2Client(port)
        try:
            sid = c.connect("/forbidden")
            assert c.streams[sid]["headers"][":status"] == "403"
            c.wait(lambda: c.streams[sid]["ended"] or c.streams[sid]["reset"] is not None, "the 403's end")
            assert c.streams[sid]["data"] == b"no"
            ok = c.connect("/ok")
            assert c.streams[ok]["headers"][":status"] == "200"
        finally:
            c.close()
    finally:
        b.stop()


def test_h2_upstream_without_connect_setting_is_502(start_proxy):
    """A backend that did not announce SETTINGS_ENABLE_CONNECT_PROTOCOL:
    502 with a clear log line, and the proxy keeps serving (the same
    connection, other streams, plain requests)."""
    b = H2ConnectBackend(enable_connect=False)
    try:
        proxy, port = h2_upstream_proxy(start_proxy, b.port)
        c = H2Client(port)
        try:
            for _ in range(3):
                sid = c.connect("/chat")
                st = c.streams[sid]
                assert (st["headers"] or {}).get(":status") == "502", st
            assert not b.heads   # nothing reached the backend
            assert "upstream does not support extended CONNECT (RFC 8441)" in proxy.error_log
        finally:
            c.close()
        # the peer was not marked failed: the next one still tries it
        c = H2Client(port)
        try:
            sid = c.connect("/chat")
            assert c.streams[sid]["headers"][":status"] == "502"
        finally:
            c.close()
        assert proxy.error_log.count("upstream does not support extended CONNECT") == 4
        assert "no live upstreams" not in proxy.error_log
    finally:
        b.stop()


def test_h2_upstream_20_concurrent_connect_streams(start_proxy):
    """20 tunnels on one client connection ride one pooled upstream
    connection, each echoing its own bytes."""
    b = H2ConnectBackend()
    try:
        proxy, port = h2_upstream_proxy(start_proxy, b.port)
        c = H2Client(port)
        try:
            sids = [c.connect("/t%d" % i) for i in range(20)]
            assert all(c.streams[s]["headers"][":status"] == "200" for s in sids)
            msgs = {s: client_frame(os.urandom(20000 + s), opcode=0x2) for s in sids}
            for s in sids:
                c.send(s, msgs[s])
            for s in sids:
                assert wait_bytes(c, s, len(msgs[s])) == msgs[s]
            assert b.connections == 1
            assert b.max_open == 20
        finally:
            c.close()
    finally:
        b.stop()


def test_h1_websocket_to_h2_upstream_is_501(start_proxy):
    """An HTTP/1.1 WebSocket handshake to a proxy_http_version 2 location
    is refused plainly (501 and a log line), not sent as a plain GET."""
    b = H2ConnectBackend()
    try:
        port = free_port()
        proxy = start_proxy(http_conf("""
  upstream h2b { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://h2b; proxy_http_version 2; }
  }
""" % (b.port, port)))
        with HttpConn(port) as conn:
            r = conn.request("GET", "/ws", headers={
                "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
            assert r.status == 501
        assert not b.heads
        assert "cannot be proxied with proxy_http_version 2" in proxy.error_log
    finally:
        b.stop()


def test_h2_upstream_tunnel_timeouts(start_proxy):
    """A tunnel outlives the upstream keepalive_timeout (it holds its stream)
    and is cut only after proxy_tunnel_timeout of silence both ways."""
    b = H2ConnectBackend()
    try:
        port = free_port()
        proxy = start_proxy(http_conf("""
  upstream h2b { server 127.0.0.1:%d; keepalive_timeout 1s; }
  server {
    listen 127.0.0.1:%d http2;
    location / { proxy_pass http://h2b; proxy_http_version 2; proxy_tunnel_timeout 3s; }
  }
""" % (b.port, port)))
        c = H2Client(port)
        try:
            sid = c.connect("/quiet")
            time.sleep(2)   # past keepalive_timeout, within proxy_tunnel_timeout
            c.send(sid, b"still")
            assert wait_bytes(c, sid, 5) == b"still"
            t0 = time.monotonic()
            c.wait(lambda: c.streams[sid]["reset"] is not None or c.streams[sid]["ended"],
                   "the tunnel timeout", timeout=15)
            assert 2.5 <= time.monotonic() - t0 < 10 * sgtest.SLOW
            assert "while proxying upgraded connection to upstream" in proxy.error_log
            assert b.connections == 1
        finally:
            c.close()
    finally:
        b.stop()


# ---- half-close: the backend ends its side first ----


class _PlainSide:
    """The backend's socket as it is."""

    def __init__(self, s):
        self.s = s

    def recv(self):
        return self.s.recv(65536)

    def send(self, data):
        self.s.sendall(data)

    def end(self):
        self.s.shutdown(socket.SHUT_WR)


class _TlsSide:
    """TLS over a socket through memory BIOs, so that the backend sends
    its close_notify and FIN without waiting for the proxy's, and tells a
    clean end (close_notify, then FIN) from a bare FIN."""

    def __init__(self, s, crt, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        self.s, self.inc, self.out = s, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.clean_end = None      # True: close_notify came before the FIN
        self._call(self.obj.do_handshake)

    def _flush(self):
        d = self.out.read()
        if d:
            self.s.sendall(d)

    def _call(self, fn, *args):
        while True:
            try:
                r = fn(*args)
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                d = self.s.recv(65536)
                if d:
                    self.inc.write(d)
                else:
                    self.inc.write_eof()

    def recv(self):
        try:
            d = self._call(self.obj.read, 65536)
        except ssl.SSLZeroReturnError:
            d = b""
        except ssl.SSLEOFError:
            self.clean_end = False
            return b""
        if not d and self.clean_end is None:
            self.clean_end = self.s.recv(1) == b""   # the FIN right after close_notify
        return d

    def send(self, data):
        self._call(self.obj.write, data)

    def end(self):
        try:
            self.obj.unwrap()          # close_notify; the answer is not awaited
        except ssl.SSLWantReadError:
            pass
        self._flush()
        self.s.shutdown(socket.SHUT_WR)


class HalfCloseBackend:
    """A plain-socket HTTP/1.1 WebSocket backend (TLS with `tls=(crt,
    key)`): answers the handshake 101 (Sec-WebSocket-Accept of the proxy's
    key), sends one text frame "bye", then ends its side (FIN, after
    close_notify over TLS) and keeps reading; with `hold`, only once
    go() was called; with `reset`, it resets the connection (RST) at the
    first bytes it reads. For the first connection, `got` is every byte
    that arrives after the handshake and `eof` is set at the proxy's end
    (`clean_end`: over TLS, close_notify came before the FIN); later ones
    are served alike."""

    def __init__(self, hold=False, tls=None, reset=False):
        self.hold, self.tls, self.reset = hold, tls, reset
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # a fixed receive buffer (no autotuning; accepted sockets inherit
        # it): a backend that does not read stops the proxy sooner
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.got = b""
        self.clean_end = None
        self.eof = threading.Event()
        self._go = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def go(self):
        self._go.set()

    def _accept(self):
        first = True
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s, first), daemon=True).start()
            first = False

    def _serve(self, s, first):
        with s:
            side = _TlsSide(s, *self.tls) if self.tls else _PlainSide(s)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = side.recv()
                if not d:
                    return
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
                   if l.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            side.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + b"\x81\x03bye")
            side.end()
            if not first:
                return
            if self.hold:
                self._go.wait(60)
            with self.lock:
                self.got += rest
            while True:
                d = side.recv()
                if not d:
                    break
                with self.lock:
                    self.got += d
                if self.reset:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break                        # the close below is a reset
            if self.tls:
                self.clean_end = side.clean_end
            self.eof.set()

    def stop(self):
        self._go.set()
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)   # wakes the accept()
        except OSError:
            pass
        self.lsock.close()
        self.thread.join(5)


def test_h1_backend_closing_first_half_closes_the_stream(start_proxy):
    """The backend's FIN after its frame: the client gets the frame, then
    END_STREAM (not RST_STREAM); what it sends afterwards, 300 KB
    included (more than a stream window: flow control keeps working),
    still reaches the backend, and its own END_STREAM arrives there as
    the FIN. The connection serves on, with no reset of that stream."""
    b = HalfCloseBackend()
    try:
        port = h2_ws_proxy(start_proxy, [b.port])
        c = H2Client(port)
        try:
            sid = c.connect("/half")
            st = c.streams[sid]
            assert st["headers"][":status"] == "200"
            c.wait(lambda: st["ended"] or st["reset"] is not None, "the backend's end")
            assert st["reset"] is None
            assert st["ended"] and st["data"] == b"\x81\x03bye"
            first = client_frame(b"after your FIN")
            c.send(sid, first)
            sgtest.wait_for(lambda: b.got == first, timeout=10 * sgtest.SLOW, what="the frame at the backend")
            big = client_frame(os.urandom(300 * 1024), opcode=0x2)
            last = client_frame(struct.pack("!H", 1000), opcode=0x8)
            c.send(sid, big)
            c.send(sid, last, end=True)
            assert b.eof.wait(10 * sgtest.SLOW), "no FIN at the backend"
            assert b.got == first + big + last
            # frames on a connection arrive in order: a reset of the old
            # stream would come before this answer
            c2 = c.connect("/again")
            assert c.streams[c2]["headers"][":status"] == "200"
            assert st["reset"] is None
        finally:
            c.close()
    finally:
        b.stop()


def test_backend_reset_ends_a_half_closed_stream(start_proxy):
    """Half-closed, the backend resets the connection when the client's
    next bytes arrive: the client's stream is reset at once (it need not
    write again to find out), and the connection serves on."""
    b = HalfCloseBackend(reset=True)
    try:
        port = h2_ws_proxy(start_proxy, [b.port])
        c = H2Client(port)
        try:
            sid = c.connect("/reset")
            st = c.streams[sid]
            c.wait(lambda: st["ended"] or st["reset"] is not None, "the backend's end")
            assert st["reset"] is None and st["data"] == b"\x81\x03bye"
            c.send(sid, client_frame(b"are you there"))
            c.wait(lambda: st["reset"] is not None, "RST_STREAM after the backend's reset")
            again = c.connect("/again")
            assert c.streams[again]["headers"][":status"] == "200"
        finally:
            c.close()
    finally:
        b.stop()


def test_h2_backend_ending_first_half_closes_the_stream(start_proxy):
    """RFC 8441 on both sides: the backend's END_STREAM reaches the
    client as END_STREAM without a reset either way, and the client's
    later DATA and END_STREAM still reach the backend."""
    b = H2ConnectBackend()
    try:
        proxy, port = h2_upstream_proxy(start_proxy, b.port)
        c = H2Client(port)
        try:
            bye = c.connect("/bye")
            st = c.streams[bye]
            c.wait(lambda: st["ended"] or st["reset"] is not None, "END_STREAM from /bye")
            assert st["reset"] is None and st["data"] == b"bye"
            c.send(bye, b"still talking", end=True)
            sgtest.wait_for(lambda: "/bye" in b.ended, timeout=10 * sgtest.SLOW, what="END_STREAM at the backend")
            assert b.received.get("/bye") == b"still talking"
            again = c.connect("/again")
            c.send(again, b"ping")
            assert wait_bytes(c, again, 4) == b"ping"
            assert st["reset"] is None and "/bye" not in b.resets
        finally:
            c.close()
    finally:
        b.stop()


def send_until_held(c, sid):
    """Sends DATA until the proxy stops giving the stream window back (its
    backend reads nothing): two PING round trips in a row bring no
    WINDOW_UPDATE. Returns the bytes sent."""
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # PINGs go at once
    acks = []
    receive = c.conn.receive_data

    def recording(data):
        events = receive(data)
        acks.extend(e for e in events if isinstance(e, h2.events.PingAckReceived))
        return events
    c.conn.receive_data = recording
    sent, quiet = [], 0
    total = 0
    while quiet < 2:
        n = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if n > 0:
            chunk = os.urandom(n)
            c.conn.send_data(sid, chunk)
            c.flush()
            sent.append(chunk)
            total += n
            quiet = 0
            assert total < 64 * 1024 * 1024, "the proxy never stopped taking bytes"
            continue
        before = len(acks)
        c.conn.ping(os.urandom(8))
        c.flush()
        c.wait(lambda: len(acks) > before, "a PING ACK")
        if c.conn.local_flow_control_window(sid) == 0:
            quiet += 1
    c.conn.receive_data = receive
    return b"".join(sent)


def test_client_ending_while_its_bytes_wait_for_the_backend(start_proxy):
    """Half-closed, the client sends until the proxy holds its bytes (the
    backend reads nothing), then ends the stream with an empty DATA frame:
    the stream closes at once, yet every byte it sent and then the FIN
    still reach the backend once it reads."""
    b = HalfCloseBackend(hold=True)
    try:
        port = h2_ws_proxy(start_proxy, [b.port])
        c = H2Client(port)
        try:
            sid = c.connect("/held")
            st = c.streams[sid]
            c.wait(lambda: st["ended"] or st["reset"] is not None, "the backend's end")
            assert st["reset"] is None and st["data"] == b"\x81\x03bye"
            sent = send_until_held(c, sid)
            c.send(sid, b"", end=True)
            again = c.connect("/again")          # the stream is closed: no reset came first
            assert c.streams[again]["headers"][":status"] == "200"
            assert st["reset"] is None
            b.go()
            assert b.eof.wait(20 * sgtest.SLOW), "no FIN at the backend"
            assert len(b.got) == len(sent) and b.got == sent
        finally:
            c.close()
    finally:
        b.stop()


def test_tls_backend_gets_close_notify_before_the_fin(start_proxy, tmp_path):
    """proxy_pass https://: the backend (TLS) ends first; the client's
    later bytes reach it, and the client's end arrives as close_notify and
    then the FIN, also when the client ended while its bytes still waited
    for the backend (the link outlives its exchange to write them).
    Not checked: the moment the socket is full right when close_notify is
    due (Linux reports a socket writable only with a third of its buffer
    free, and the queue is empty only after a write the socket took whole,
    so a 24-byte alert practically always fits); the retry on EPOLLOUT is
    the same as proxy/tunnel.c's."""
    crt, key = make_cert(tmp_path)
    for hold in (False, True):
        b = HalfCloseBackend(hold=hold, tls=(crt, key))
        try:
            port = free_port()
            start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / { proxy_pass https://127.0.0.1:%d; }
  }
""" % (port, b.port)))
            c = H2Client(port)
            try:
                sid = c.connect("/tls")
                st = c.streams[sid]
                assert st["headers"][":status"] == "200"
                c.wait(lambda: st["ended"] or st["reset"] is not None, "the backend's end")
                assert st["reset"] is None and st["data"] == b"\x81\x03bye"
                if hold:
                    sent = send_until_held(c, sid)
                    c.send(sid, b"", end=True)
                else:
                    sent = client_frame(os.urandom(100000), opcode=0x2)
                    c.send(sid, sent, end=True)
                b.go()
                assert b.eof.wait(20 * sgtest.SLOW), "no end at the backend"
                assert b.got == sent
                assert b.clean_end is True, "FIN without close_notify"
            finally:
                c.close()
        finally:
            b.stop()
