"""What the proxy itself does to a gRPC call on a grpc_pass location, with
real peers: sgback's chat.Chat service behind streamgate, grpcio clients,
and a python3-h2 client where grpcio would do the proxy's work itself.

- grpc-timeout is the proxy's to enforce: a client that never gives up
  still gets DEADLINE_EXCEEDED when its deadline passes, and the backend
  sees the call cancelled;
- client_max_body_size bounds each gRPC message (RESOURCE_EXHAUSTED),
  never the sum of a stream, and there is no 1 MB default on gRPC;
- a stream the backend resets ends with the status gRPC maps its error
  code to (before or after messages went out); a backend's CANCEL reaches
  an HTTP/2 client as RST_STREAM CANCEL;
- a server-streaming call may wait longer than 60 s for its first message
  with the default configuration (nginx's grpc_read_timeout cuts it).
"""

import queue
import socket
import time

import pytest

from sgtest import (MB, SLOW, RawH2, free_port, free_ports, grpc_conf, grpc_msg as msg, h2_stats, open_grpc_channel,
                    start_h2c_backend, wait_for)

grpc = pytest.importorskip("grpc")
h2events = pytest.importorskip("h2.events")


@pytest.fixture
def setup(start_backend, start_proxy):
    """setup(location_extra) -> (grpc channel to the proxy, proxy port, backend h2c port)."""
    opened = []

    def make(location_extra=""):
        (bport,) = free_ports(1)
        start_h2c_backend(start_backend, bport)
        conf, port = grpc_conf([bport], location_extra)
        start_proxy(conf)
        ch = open_grpc_channel(port)
        opened.append(ch)
        return ch, port, bport
    yield make
    for ch in opened:
        ch.close()


def call_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kw)
    return ei.value


class RawGrpc(RawH2):
    """One gRPC call over python3-h2, which, unlike grpcio, leaves the
    deadline in grpc-timeout to whoever enforces it."""

    def call(self, method, message, metadata=(), end=True, content_type="application/grpc", raw=False):
        headers = [(":method", "POST"), (":path", "/chat.Chat/" + method), (":scheme", "http"),
                   (":authority", "127.0.0.1"), ("content-type", content_type),
                   ("te", "trailers")] + list(metadata)
        self.conn.send_headers(1, headers)
        body = message if raw else b"\0" + len(message).to_bytes(4, "big") + message
        self.conn.send_data(1, body, end_stream=end)
        self.flush()

    def outcome(self, timeout):
        """('status', grpc-status) from the response's fields, or ('reset',
        code); the bytes of DATA received meanwhile are in self.received."""
        fields = {}
        self.received = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                break
            if not data:
                raise ConnectionError("proxy closed the connection")
            for ev in self.conn.receive_data(data):
                if isinstance(ev, (h2events.ResponseReceived, h2events.TrailersReceived)):
                    fields.update(dict(ev.headers))
                elif isinstance(ev, h2events.DataReceived):
                    self.received += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2events.StreamEnded):
                    return "status", fields.get("grpc-status")
                elif isinstance(ev, h2events.StreamReset):
                    return "reset", ev.error_code
            self.flush()
        raise AssertionError("the call did not end within %.1f s" % timeout)

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- grpc-timeout

def test_grpc_timeout_is_enforced_by_the_proxy(setup):
    """A 300 ms grpc-timeout on a 3 s call: DEADLINE_EXCEEDED from the proxy
    in well under 2 s, though this client never gives up by itself, and the
    backend's stream is cancelled (it stops working on the call)."""
    _, port, bport = setup()
    before = h2_stats(bport)["cancelled"]
    c = RawGrpc(port)
    try:
        t0 = time.monotonic()
        c.call("Sleep", msg("zz"), [("x-sleep-ms", "3000"), ("grpc-timeout", "300m")])
        assert c.outcome(5 * SLOW) == ("status", "4")
        assert time.monotonic() - t0 < 2.0 * SLOW
    finally:
        c.close()
    wait_for(lambda: h2_stats(bport)["cancelled"] == before + 1, 5 * SLOW, what="backend cancel")


def test_grpc_timeout_units_and_malformed_values(setup):
    """Long deadlines (1S, 2M) let a 200 ms call finish; a malformed value
    is ignored rather than failing the call."""
    _, port, _ = setup()
    for value in ("1S", "2M", "1000000u", "abc", "123456789S"):
        c = RawGrpc(port)
        try:
            c.call("Sleep", msg("zz"), [("x-sleep-ms", "200"), ("grpc-timeout", value)])
            assert c.outcome(10 * SLOW) == ("status", "0"), value
        finally:
            c.close()


def test_grpc_timeout_ends_a_stream_already_flowing(setup):
    """A bidi stream past its 800 ms deadline ends with DEADLINE_EXCEEDED
    after the message it already got back."""
    _, port, _ = setup()
    c = RawGrpc(port)
    try:
        t0 = time.monotonic()
        c.call("Talk", msg("first"), [("grpc-timeout", "800m")], end=False)
        assert c.outcome(5 * SLOW) == ("status", "4")
        assert 0.7 < time.monotonic() - t0 < 3.0 * SLOW
        m = msg("first")
        assert c.received == b"\0" + len(m).to_bytes(4, "big") + m
    finally:
        c.close()


# ---------------------------------------------------------------- client_max_body_size per message

def test_client_max_body_size_bounds_each_message(setup):
    ch, _, _ = setup("client_max_body_size 1k;")
    echo = ch.unary_unary("/chat.Chat/Echo")
    assert echo(msg("a" * 900), timeout=10 * SLOW) == msg("a" * 900)
    err = call_error(echo, msg("b" * 2000), timeout=10 * SLOW)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # 300 messages of 900 bytes: 270 KB in one stream, each message within the limit.
    collect = ch.stream_unary("/chat.Chat/Collect")
    m = msg("c" * 900)
    assert collect(iter([m] * 300), timeout=20 * SLOW) == msg("messages=300 bytes=%d" % (300 * len(m)))


def test_too_large_message_mid_stream_ends_the_stream_with_resource_exhausted(setup):
    ch, _, _ = setup("client_max_body_size 1k;")
    q = queue.Queue()
    replies = ch.stream_stream("/chat.Chat/Talk")(iter(q.get, None), timeout=20 * SLOW)
    q.put(msg("small"))
    assert next(replies) == msg("small")
    q.put(msg("x" * 5000))
    err = call_error(lambda: next(replies))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    q.put(None)


def test_grpc_web_text_is_not_scanned_as_grpc_messages(setup):
    """gRPC-Web text bodies are base64: read as gRPC framing, "AAAAA" would
    be a 1 GB message. The limit is for application/grpc[+proto...] only."""
    _, port, _ = setup("client_max_body_size 1k;")
    c = RawGrpc(port)
    try:
        c.call("Echo", b"AAAAAAhoZWxsbw==", content_type="application/grpc-web-text", raw=True)
        assert c.outcome(5 * SLOW) == ("status", "0")
    finally:
        c.close()
    c = RawGrpc(port)
    try:   # application/grpc+proto is gRPC: its 2 KB message is over the limit
        c.call("Echo", b"x" * 2000, content_type="application/grpc+proto")
        assert c.outcome(5 * SLOW) == ("status", "8")
    finally:
        c.close()


def test_no_1m_default_on_grpc(setup):
    """nginx answers 413 past 1 MB; a grpc_pass location has no default limit."""
    ch, _, _ = setup()
    payload = msg(b"z" * (3 * MB))
    assert ch.unary_unary("/chat.Chat/Echo")(payload, timeout=30 * SLOW) == payload


# ---------------------------------------------------------------- upstream resets

@pytest.mark.parametrize("h2_code,status", [
    (2, grpc.StatusCode.INTERNAL),              # INTERNAL_ERROR
    (11, grpc.StatusCode.RESOURCE_EXHAUSTED),   # ENHANCE_YOUR_CALM
    (12, grpc.StatusCode.PERMISSION_DENIED),    # INADEQUATE_SECURITY
    (8, grpc.StatusCode.CANCELLED),             # CANCEL
])
def test_upstream_reset_before_any_answer_maps_to_its_status(setup, h2_code, status):
    ch, _, _ = setup()
    err = call_error(ch.unary_unary("/chat.Chat/Fail"), msg("x"), metadata=(("x-reset", str(h2_code)),),
                     timeout=10 * SLOW)
    assert err.code() == status


def test_upstream_reset_after_messages_ends_with_its_status(setup):
    """Three messages reach the client, then the backend resets the stream:
    the client gets the three and INTERNAL, not a cut connection."""
    ch, _, _ = setup()
    replies = ch.unary_stream("/chat.Chat/Repeat")(msg("r"), metadata=(("x-repeat", "3"), ("x-reset", "2")),
                                                   timeout=10 * SLOW)
    got = []
    with pytest.raises(grpc.RpcError) as ei:
        for m in replies:
            got.append(m)
    assert got == [msg("r")] * 3
    assert ei.value.code() == grpc.StatusCode.INTERNAL


def test_upstream_cancel_reaches_an_http2_client_as_rst_stream_cancel(setup):
    _, port, _ = setup()
    c = RawGrpc(port)
    try:
        c.call("Fail", msg("x"), [("x-reset", "8")])
        assert c.outcome(5 * SLOW) == ("reset", 8)
    finally:
        c.close()


def test_backend_after_a_reset_serves_the_next_call(setup):
    ch, _, _ = setup()
    call_error(ch.unary_unary("/chat.Chat/Fail"), msg("x"), metadata=(("x-reset", "2"),), timeout=10 * SLOW)
    assert ch.unary_unary("/chat.Chat/Echo")(msg("next"), timeout=10 * SLOW) == msg("next")


# ---------------------------------------------------------------- long waits

def test_first_message_after_65_s_with_the_default_configuration(setup):
    """A watch-style call whose first message comes after 65 s: nginx's
    default grpc_read_timeout (60 s) would cut it with 504."""
    ch, _, _ = setup()
    resp = ch.unary_unary("/chat.Chat/Sleep")(msg("w"), metadata=(("x-sleep-ms", "65000"),), timeout=120)
    assert resp == msg("slept 65000 ms")


def test_grpc_read_timeout_when_set_bounds_the_wait(setup):
    ch, _, _ = setup("grpc_read_timeout 1s;")
    err = call_error(ch.unary_unary("/chat.Chat/Sleep"), msg("w"), metadata=(("x-sleep-ms", "3000"),),
                     timeout=20 * SLOW)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_connect_timeout_is_unavailable_not_deadline_exceeded(start_proxy):
    """A peer that does not accept (its accept queue full, SYNs dropped):
    after grpc_connect_timeout the call is UNAVAILABLE, which clients may
    retry; its own deadline did not pass."""
    lp = free_port()
    ls = socket.socket()
    ls.bind(("127.0.0.1", lp))
    ls.listen(0)
    fill = []
    try:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", lp))
            fill.append(c)
        time.sleep(0.3)
        conf, port = grpc_conf([lp], "grpc_connect_timeout 500ms;")
        start_proxy(conf)
        ch = open_grpc_channel(port)
        t0 = time.monotonic()
        err = call_error(ch.unary_unary("/chat.Chat/Echo"), msg("x"), timeout=30)
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
        assert "504" in err.details()
        assert time.monotonic() - t0 < 10 * SLOW
        ch.close()
    finally:
        for c in fill:
            c.close()
        ls.close()
