"""Logs that tell the whole story (issue 12, item 3: what is logged, when):

- a WebSocket over HTTP/1.1 (python3-websockets client and server) is
  logged when it closes, not at its 101: the line is absent while the
  tunnel is open, then carries $status 101, the tunnel's bytes each way
  ($body_bytes_sent, $bytes_sent, $request_length, $upstream_bytes_*)
  and a $request_time (and $upstream_response_time) at least as long as
  the client held it open; one
  that proxy_read_timeout cuts is logged too;
- the same over HTTP/2 (RFC 8441 extended CONNECT): $status 200, the
  tunnel's bytes, and $http2_stream_id;
- a `stream {}` session with known bytes, ended by the client and ended by
  proxy_timeout, is logged with $bytes_sent, $bytes_received,
  $session_time and the upstream's figures;
- gRPC calls: $grpc_status, $grpc_message and $grpc_method for an OK call,
  a NOT_FOUND from the backend (Trailers-Only) and an UNAVAILABLE the proxy
  made itself (backend down) and one limit_req rejects; "-" for a plain
  HTTP/1.1 request, whose $http2_stream_id is "-" too;
- a fast stop (SIGTERM) that cuts an open WebSocket and an open stream
  session still logs both, with their bytes.
"""

import asyncio
import socket
import time

import pytest
import websockets

import sgtest
from sgtest import (SLOW, free_port, grpc_conf, grpc_msg, http_conf, wait_for)
from test_websocket import H2Client, WsBackend, client_frame, read_frame

FIELDS = ("status bytes_sent body_bytes_sent request_length request_time "
          "upstream_bytes_sent upstream_bytes_received http2_stream_id upstream_response_time").split()
LOG_FORMAT = "log_format t '%s';" % " ".join("$" + f for f in FIELDS)


def log_lines(path):
    try:
        return [l for l in path.read_text().splitlines() if l]
    except FileNotFoundError:
        return []


def wait_lines(path, n, what):
    wait_for(lambda: len(log_lines(path)) >= n, timeout=15 * SLOW, what=what)
    return log_lines(path)


def fields(line, names=FIELDS):
    parts = line.split(" ")
    assert len(parts) == len(names), line
    return dict(zip(names, parts))


def ws_proxy(start_proxy, backend_port, listen_extra="", location_extra=""):
    port = free_port()
    proxy = start_proxy(http_conf("""
  %s
  server {
    listen 127.0.0.1:%d%s;
    access_log logs/t.log t;
    location / { proxy_pass http://127.0.0.1:%d; %s }
  }
""" % (LOG_FORMAT, port, listen_extra, backend_port, location_extra)))
    return proxy, port


def client_len(n):
    """Bytes of one masked client frame with an n-byte payload."""
    return n + 6 + (2 if 126 <= n < 65536 else 8 if n >= 65536 else 0)


def server_len(n):
    return n + 2 + (2 if 126 <= n < 65536 else 8 if n >= 65536 else 0)


# ---------------------------------------------------------------- WebSocket over HTTP/1.1

def test_websocket_logged_at_close_with_bytes_and_duration(start_proxy):
    b = WsBackend()
    try:
        proxy, port = ws_proxy(start_proxy, b.port)
        log = proxy.prefix / "logs" / "t.log"
        sizes = [10, 300, 70000]
        held = {}

        async def session():
            async with websockets.connect("ws://127.0.0.1:%d/echo" % port, compression=None,
                                          max_size=None, ping_interval=None,
                                          open_timeout=10 * SLOW) as ws:
                t0 = time.monotonic()
                for n in sizes:
                    await ws.send(b"x" * n)
                    assert await ws.recv() == b"x" * n
                # every echo came back through the tunnel: still no line
                held["open_lines"] = len(log_lines(log))
                await asyncio.sleep(0.5)       # the time the client holds it open
                held["t"] = time.monotonic() - t0
        asyncio.run(asyncio.wait_for(session(), 60 * SLOW))

        assert held["open_lines"] == 0
        (line,) = wait_lines(log, 1, "the WebSocket's log line")
        f = fields(line)
        # a clean close: the client's close frame (code 1000: 2-byte
        # payload) and the server's answer to it (the same code)
        to_client = sum(server_len(n) for n in sizes) + server_len(2)
        from_client = sum(client_len(n) for n in sizes) + client_len(2)
        assert f["status"] == "101"
        assert int(f["body_bytes_sent"]) == to_client
        head = int(f["bytes_sent"]) - to_client        # the 101's head
        assert 0 < head < 1024
        assert 0 < int(f["request_length"]) - from_client < 2048
        assert float(f["request_time"]) >= held["t"] - 0.002
        assert float(f["upstream_response_time"]) >= held["t"] - 0.002   # as nginx: until the close
        assert 0 < int(f["upstream_bytes_sent"]) - from_client < 2048
        assert 0 < int(f["upstream_bytes_received"]) - to_client < 1024
        assert f["http2_stream_id"] == "-"
    finally:
        b.stop()


def test_websocket_cut_by_read_timeout_is_logged(start_proxy):
    """proxy_read_timeout ends a silent tunnel: it is logged then, with the
    bytes it carried and a duration of at least the timeout."""
    b = WsBackend()
    try:
        proxy, port = ws_proxy(start_proxy, b.port, location_extra="proxy_read_timeout 1s;")
        log = proxy.prefix / "logs" / "t.log"

        async def session():
            async with websockets.connect("ws://127.0.0.1:%d/echo" % port, compression=None,
                                          ping_interval=None, close_timeout=1,
                                          open_timeout=10 * SLOW) as ws:
                await ws.send(b"q" * 20)
                assert await ws.recv() == b"q" * 20
                await asyncio.wait_for(ws.wait_closed(), 15 * SLOW)   # the proxy cut it
        asyncio.run(asyncio.wait_for(session(), 60 * SLOW))
        (line,) = wait_lines(log, 1, "the timed-out WebSocket's line")
        f = fields(line)
        assert f["status"] == "101"
        assert int(f["body_bytes_sent"]) == server_len(20)
        assert float(f["request_time"]) >= 1.0
    finally:
        b.stop()


# ---------------------------------------------------------------- RFC 8441

def test_rfc8441_tunnel_logged_at_close(start_proxy):
    b = WsBackend()
    try:
        proxy, port = ws_proxy(start_proxy, b.port, " http2")
        log = proxy.prefix / "logs" / "t.log"
        c = H2Client(port)
        try:
            sid = c.connect("/echo")
            assert c.streams[sid]["headers"][":status"] == "200"
            sent = 0
            for n in (5, 200):
                fr = client_frame(b"y" * n, opcode=0x2)
                sent += len(fr)
                c.send(sid, fr)
            assert c.frames(sid, 2) == [(0x2, b"y" * 5), (0x2, b"y" * 200)]
            got = len(c.streams[sid]["data"])
            assert log_lines(log) == []        # open: not logged yet
            c.send(sid, b"", end=True)         # the client ends; the backend sees EOF and closes
            c.wait(lambda: c.streams[sid]["ended"] or c.streams[sid]["reset"] is not None,
                   "the end of the tunnel")
            got = len(c.streams[sid]["data"])
        finally:
            c.close()
        (line,) = wait_lines(log, 1, "the RFC 8441 tunnel's log line")
        f = fields(line)
        assert f["status"] == "200"
        assert int(f["body_bytes_sent"]) == got
        assert int(f["request_length"]) >= sent
        assert int(f["upstream_bytes_sent"]) >= sent
        assert int(f["upstream_bytes_received"]) >= got
        assert f["http2_stream_id"] == str(sid)
    finally:
        b.stop()


# ---------------------------------------------------------------- stream {}

class TcpEcho(sgtest._ThreadedListener):
    """Echoes every byte until the peer closes."""

    def serve(self, c):
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)


STREAM_FIELDS = ("status bytes_sent bytes_received session_time upstream_bytes_sent "
                 "upstream_bytes_received upstream_connect_time").split()


def stream_proxy(start_proxy, echo_port, timeout="10s"):
    port = free_port()
    proxy = start_proxy("""
error_log logs/error.log info;
events {}
stream {
  log_format s '%s';
  server {
    listen 127.0.0.1:%d;
    proxy_timeout %s;
    access_log logs/s.log s;
    proxy_pass 127.0.0.1:%d;
  }
}
""" % (" ".join("$" + f for f in STREAM_FIELDS), port, timeout, echo_port))
    return proxy, port


def sessions(log):
    """Lines of sessions that carried bytes (start_proxy's readiness probe
    connects and closes: a session of its own, with none)."""
    return [fields(l, STREAM_FIELDS) for l in log_lines(log) if fields(l, STREAM_FIELDS)["bytes_received"] != "0"]


def wait_sessions(log, what):
    wait_for(lambda: sessions(log), timeout=15 * SLOW, what=what)
    return sessions(log)


def echo_exchange(port, sizes):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    for n in sizes:
        s.sendall(b"z" * n)
        got = 0
        while got < n:
            d = s.recv(65536)
            assert d
            got += len(d)
    return s


def test_stream_session_logged_at_close(start_proxy):
    echo = TcpEcho()
    try:
        proxy, port = stream_proxy(start_proxy, echo.port)
        log = proxy.prefix / "logs" / "s.log"
        t0 = time.monotonic()
        s = echo_exchange(port, [100, 5000, 123])
        assert sessions(log) == []
        time.sleep(0.3)                        # held open
        s.close()
        t = time.monotonic() - t0
        (f,) = wait_sessions(log, "the stream session's line")
        total = 100 + 5000 + 123
        assert f["status"] == "200"
        assert int(f["bytes_sent"]) == total
        assert int(f["bytes_received"]) == total
        assert int(f["upstream_bytes_sent"]) == total
        assert int(f["upstream_bytes_received"]) == total
        assert float(f["session_time"]) >= t - 0.05
        assert float(f["upstream_connect_time"]) >= 0
    finally:
        echo.stop()


def test_stream_session_cut_by_timeout_is_logged(start_proxy):
    echo = TcpEcho()
    try:
        proxy, port = stream_proxy(start_proxy, echo.port, timeout="1s")
        log = proxy.prefix / "logs" / "s.log"
        s = echo_exchange(port, [42])
        try:
            s.settimeout(15 * SLOW)
            assert s.recv(10) == b""           # proxy_timeout closed it
            (f,) = wait_sessions(log, "the timed-out session's line")
        finally:
            s.close()
        assert int(f["bytes_sent"]) == 42 and int(f["bytes_received"]) == 42
        assert float(f["session_time"]) >= 1.0
    finally:
        echo.stop()


# ---------------------------------------------------------------- gRPC

GRPC_FIELDS = "status grpc_status grpc_method http2_stream_id grpc_message".split()
GRPC_FORMAT = "log_format g '%s';" % " ".join("$" + f for f in GRPC_FIELDS)


def grpc_lines(log, n):
    # grpc_message is last: it may hold spaces
    return [dict(zip(GRPC_FIELDS, l.split(" ", 4))) for l in wait_lines(log, n, "%d gRPC log lines" % n)]


def test_grpc_status_method_and_message_logged(h2c_backends, start_proxy):
    grpc = pytest.importorskip("grpc")
    (bport,) = h2c_backends(1)
    dead = free_port()                         # nothing listens there
    conf, port = grpc_conf([bport], server_extra="access_log logs/g.log g;", http_extra=GRPC_FORMAT)
    conf = conf.replace("location / {", """location /down. {
      grpc_pass grpc://127.0.0.1:%d;
    }
    location /limited. {
      limit_req zone=one;
      grpc_pass grpc://g;
    }
    location / {""" % dead)
    conf = conf.replace(GRPC_FORMAT, GRPC_FORMAT + " limit_req_zone $server_port zone=one:1m rate=1r/m;")
    proxy = start_proxy(conf)
    log = proxy.prefix / "logs" / "g.log"
    ch = sgtest.open_grpc_channel(port)
    try:
        assert ch.unary_unary("/chat.Chat/Echo")(grpc_msg("hi"), timeout=10 * SLOW) == grpc_msg("hi")
        with pytest.raises(grpc.RpcError) as nf:
            ch.unary_unary("/chat.Chat/Fail")(grpc_msg("x"), timeout=10 * SLOW)
        assert nf.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as down:
            ch.unary_unary("/down.Svc/Call")(grpc_msg("x"), timeout=10 * SLOW)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        # the first passes (sgback: UNIMPLEMENTED), the second is limit_req's
        with pytest.raises(grpc.RpcError) as first:
            ch.unary_unary("/limited.Svc/Call")(grpc_msg("x"), timeout=10 * SLOW)
        with pytest.raises(grpc.RpcError) as limited:
            ch.unary_unary("/limited.Svc/Call")(grpc_msg("x"), timeout=10 * SLOW)
        assert first.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        ch.close()
    ok, notfound, unavail, passed, rejected = grpc_lines(log, 5)
    assert ok["status"] == "200" and ok["grpc_status"] == "0"
    assert ok["grpc_method"] == "/chat.Chat/Echo"
    assert notfound["grpc_status"] == "5" and notfound["grpc_method"] == "/chat.Chat/Fail"
    assert notfound["grpc_message"] not in ("", "-")
    assert unavail["grpc_status"] == "14" and unavail["grpc_method"] == "/down.Svc/Call"
    assert unavail["grpc_message"] not in ("", "-")
    assert passed["grpc_status"] == "12"
    assert rejected["grpc_status"] == str(limited.value.code().value[0]) and rejected["status"] == "200"
    assert rejected["grpc_method"] == "/limited.Svc/Call"
    ids = [int(x["http2_stream_id"]) for x in (ok, notfound, unavail, passed, rejected)]
    assert ids == sorted(ids) and len(set(ids)) == 5 and all(i % 2 == 1 for i in ids)

    # a plain HTTP/1.1 request: no gRPC, no HTTP/2 stream
    r = sgtest.get(port, "/plain")
    assert r.status
    last = log_lines(log)
    wait_for(lambda: len(log_lines(log)) >= 6, timeout=15 * SLOW, what="the HTTP/1.1 line")
    plain = log_lines(log)[5].split(" ")
    assert plain[1:4] == ["-", "-", "-"], last


# ---------------------------------------------------------------- shutdown

def test_tunnels_cut_by_shutdown_are_logged(start_proxy):
    """A fast stop (SIGTERM) ends open tunnels: a WebSocket and a stream
    session still open then are logged with the bytes they carried."""
    b = WsBackend()
    echo = TcpEcho()
    try:
        wport, sport = free_port(), free_port()
        stream = """stream {
  log_format s '%s';
  server {
    listen 127.0.0.1:%d;
    access_log logs/s.log s;
    proxy_pass 127.0.0.1:%d;
  }
}""" % (" ".join("$" + f for f in STREAM_FIELDS), sport, echo.port)
        proxy = start_proxy(http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
    access_log logs/t.log t;
    location / { proxy_pass http://127.0.0.1:%d; }
  }
""" % (LOG_FORMAT, wport, b.port), main=stream))
        wlog, slog = proxy.prefix / "logs" / "t.log", proxy.prefix / "logs" / "s.log"
        s = echo_exchange(sport, [77])
        c = sgtest.HttpConn(wport)
        try:
            c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert c.read_response().status == 101
            c.send(client_frame(b"w" * 30, opcode=0x2))
            assert read_frame(c) == (0x2, b"w" * 30)
            assert log_lines(wlog) == [] and sessions(slog) == []
            proxy.stop()
        finally:
            c.close()
            s.close()
        (w,) = [fields(l) for l in log_lines(wlog)]
        assert w["status"] == "101" and int(w["body_bytes_sent"]) == server_len(30)
        (st,) = sessions(slog)
        assert int(st["bytes_sent"]) == 77 and int(st["bytes_received"]) == 77
    finally:
        b.stop()
        echo.stop()
