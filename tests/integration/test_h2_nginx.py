"""HTTP/2 server behaviour where nginx (and its test suite, h2*.t) is the
reference rather than the letter of RFC 9113, on the real binary with a
raw-frame client:

- the client's first frame need not be SETTINGS: nginx takes any frame
  and leaves the client's settings at their defaults; a SETTINGS ACK the
  client sends before its own SETTINGS is fine too;
- a client's PUSH_PROMISE is a connection PROTOCOL_ERROR as soon as its
  frame header is in (its payload need not come);
- HEADERS on a stream that is closed is a connection PROTOCOL_ERROR (nginx:
  a HEADERS id that does not grow);
- a header block that does not complete within client_header_timeout
  resets that stream (RST_STREAM PROTOCOL_ERROR), the connection lives on;
- a request body that stops coming for client_body_timeout is reset with
  PROTOCOL_ERROR, the connection lives on.
"""

import socket
import time

import hpack
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, PriorityFrame, SettingsFrame, WindowUpdateFrame

from sgtest import free_port, http_conf
from test_h2_server import PREFACE, RawH2, Stream

PROTOCOL_ERROR, STREAM_CLOSED = 0x1, 0x5


class Client(RawH2):
    """A RawH2 that records PING ACKs and, given `opening`, sends it after
    the preface instead of its SETTINGS; with acked=True the opening has
    acknowledged the server's SETTINGS already."""

    def __init__(self, port, opening=None, acked=False, bytewise=False):
        self._opening = opening
        self._acked = acked
        self._bytewise = bytewise
        self.acks = []
        super().__init__(port)

    def send(self, data):
        if self._opening is None:
            super().send(data)
            return
        assert data.startswith(PREFACE)
        data, self._opening = PREFACE + self._opening(self.enc), None
        if not self._bytewise:
            super().send(data)
            return
        # one byte per write, a little apart, so that the server reads the
        # preface and the first frame header in pieces (where the timing
        # merges writes, the test is only weaker, never wrong)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            super().send(data[i:i + 1])
            time.sleep(0.002)

    def _frame(self, f):
        if isinstance(f, PingFrame) and "ACK" in f.flags:
            self.acks.append(f.opaque_data)
        if isinstance(f, SettingsFrame) and "ACK" not in f.flags and self._acked:
            self._acked = False
            self.settings.update(f.settings)
            return
        super()._frame(f)

    def settle(self):
        """The server's SETTINGS is in and acknowledged: no ACK of ours can
        fall inside a frame sent in pieces from now on."""
        self.wait(lambda: self.settings, what="the server's SETTINGS")

    def expect(self, sid):
        """Stream `sid` is sent by hand (not through request())."""
        self.streams[sid] = Stream()
        self.next_id = sid + 2


@pytest.fixture
def port(backend, start_proxy):
    p = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    client_header_timeout 1s;
    client_body_timeout 1s;
    location / { proxy_pass http://127.0.0.1:%d; }
    location = /local { return 200 "local answer\\n"; }
  }
""" % (p, backend.port)))
    return p


def get_local(c):
    st = c.response(c.request("/local"))
    assert st.status == 200 and st.body == b"local answer\n"


def ping_answered(c):
    c.send(PingFrame(0, opaque_data=b"SEE-THIS").serialize())
    c.wait(lambda: b"SEE-THIS" in c.acks, what="PING ACK")


LOCAL = [(":method", "GET"), (":path", "/local"), (":scheme", "http"), (":authority", "localhost")]


def local_headers(enc, sid=1):
    return HeadersFrame(sid, data=enc.encode(LOCAL), flags=["END_STREAM", "END_HEADERS"]).serialize()


ACK = SettingsFrame(0, flags=["ACK"]).serialize()


@pytest.mark.parametrize("opening, acked", [
    (lambda enc: local_headers(enc), False),
    (lambda enc: WindowUpdateFrame(0, window_increment=1 << 20).serialize() + local_headers(enc), False),
    (lambda enc: ACK + SettingsFrame(0).serialize() + local_headers(enc), True),   # early ACK
    (lambda enc: ACK + local_headers(enc), True),                                  # and no SETTINGS
    (lambda enc: PriorityFrame(1, depends_on=0, stream_weight=15).serialize() + local_headers(enc), False),
], ids=["headers", "window-update", "ack-then-settings", "ack-only", "priority"])
def test_first_frame_need_not_be_settings(port, opening, acked):
    c = Client(port, opening, acked=acked)
    c.expect(1)
    st = c.response(1)
    assert st.status == 200 and st.body == b"local answer\n"
    get_local(c)     # and the connection goes on
    assert c.goaways == []
    c.close()


@pytest.mark.parametrize("opening", [
    lambda enc: local_headers(enc),
    lambda enc: ACK + local_headers(enc),
], ids=["headers", "ack"])
def test_first_frame_in_pieces(port, opening):
    c = Client(port, opening, acked=True, bytewise=True) if opening(hpack.Encoder()).startswith(ACK) \
        else Client(port, opening, bytewise=True)
    c.expect(1)
    st = c.response(1)
    assert st.status == 200 and st.body == b"local answer\n"
    get_local(c)
    assert c.goaways == []
    c.close()


def test_client_push_promise_is_a_protocol_error_on_its_header(port):
    c = Client(port)
    get_local(c)
    # a PUSH_PROMISE header announcing 4 bytes that never come
    c.send(bytes([0, 0, 4, 0x5, 0x4, 0, 0, 0, 1]))
    c.wait(lambda: c.goaways, what="GOAWAY")
    assert c.goaways[0][0] == PROTOCOL_ERROR
    assert c.wait_closed()


def test_headers_on_a_closed_stream_is_a_protocol_error(port):
    c = Client(port)
    get_local(c)     # stream 1, closed both ways now
    c.send(c.headers_frame(1, LOCAL))
    c.wait(lambda: c.goaways, what="GOAWAY")
    assert c.goaways[0] == (PROTOCOL_ERROR, 1)
    assert c.wait_closed()


def test_data_on_a_closed_stream_is_still_stream_closed(port):
    c = Client(port)
    get_local(c)
    c.send(DataFrame(1, data=b"x", flags=["END_STREAM"]).serialize())
    c.wait(lambda: c.goaways, what="GOAWAY")
    assert c.goaways[0][0] == STREAM_CLOSED


def test_header_timeout_resets_only_the_stream(port):
    """A HEADERS frame cut short: after client_header_timeout its stream is
    reset with PROTOCOL_ERROR; the rest of the frame may still come, and
    the connection goes on (PING, and a new request)."""
    c = Client(port)
    c.settle()
    frame = c.headers_frame(1, LOCAL + [("x-pad", "p" * 40)])
    c.expect(1)
    c.send(frame[:20])
    st = c.response(1, timeout=10)
    assert st.reset == PROTOCOL_ERROR and st.status is None
    c.send(frame[20:])
    ping_answered(c)
    get_local(c)
    assert c.goaways == []
    c.close()


def test_body_timeout_resets_the_stream_with_protocol_error(port):
    c = Client(port)
    c.settle()
    sid = c.request("/sink", method="POST", end_stream=False)   # answers at the end of the body
    frame = DataFrame(sid, data=b"TEST").serialize()
    c.send(frame[:11])      # a DATA frame cut short
    st = c.response(sid, timeout=10)
    assert st.reset == PROTOCOL_ERROR
    c.send(frame[11:])      # late: ignored, not a connection error
    ping_answered(c)
    get_local(c)
    assert c.goaways == []
    c.close()
