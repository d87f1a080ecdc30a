"""gRPC streams that went quiet and speak again, through `grpc_pass` to
sgback's chat.Chat (h2c), with grpcio clients.

A stream whose messages have all gone through holds no buffers and no
pending DATA item in either HTTP/2 session (bench/run grpc-idle measures
the memory); what must not change is what the client sees. Checked:
- on a bidi stream, small messages, then a 3 MiB one (many DATA frames,
  more than a flow-control window each way), then small ones again, come
  back byte-identical in order, and the call ends OK (its trailers reach
  the client after the stream was quiet);
- eight such streams on one channel, their messages interleaved, each
  gets exactly its own messages back;
- a server-streaming call whose request ended early still gets every
  response message and its trailers (the response side is never parked
  once the request side is closed).
"""

import threading

import pytest

from sgtest import (MB, SLOW, grpc_bidi as bidi, grpc_conf, grpc_msg as msg,
                    pattern_bytes)

grpc = pytest.importorskip("grpc")

OK = grpc.StatusCode.OK


def proxied(h2c_backends, start_proxy, grpc_channels):
    (bport,) = h2c_backends(1)
    conf, port = grpc_conf([bport])
    start_proxy(conf)
    return grpc_channels(port)


def converse(ch, tag, rounds, big):
    """A Talk: each message echoed before the next; returns the replies and
    the call's final code."""
    outbox, replies = bidi(ch, 120 * SLOW)
    got = []
    sent = []
    for i in range(rounds):
        for m in (msg("%s small %d" % (tag, i)), msg(big), msg("%s after %d" % (tag, i))):
            outbox.put(m)
            sent.append(m)
            got.append(next(replies))
    outbox.put(None)
    rest = list(replies)
    return sent, got, rest, replies.code()


def test_quiet_bidi_stream_then_large_message(h2c_backends, start_proxy, grpc_channels):
    ch = proxied(h2c_backends, start_proxy, grpc_channels)
    big = pattern_bytes(3 * MB)
    sent, got, rest, code = converse(ch, "one", 2, big)
    assert got == sent
    assert rest == []
    assert code == OK


def test_interleaved_quiet_streams_keep_their_own_messages(h2c_backends, start_proxy, grpc_channels):
    ch = proxied(h2c_backends, start_proxy, grpc_channels)
    results = {}

    def run(k):
        # a different size per stream, so that a message reaching the
        # wrong stream could not go unnoticed
        big = bytes([65 + k]) * (256 * 1024 + 4099 * k)
        try:
            results[k] = converse(ch, "s%d" % k, 3, big)
        except Exception as e:  # reported below, with the stream's number
            results[k] = e

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180 * SLOW)
    assert sorted(results) == list(range(8))
    for k, r in results.items():
        assert not isinstance(r, Exception), "stream %d: %r" % (k, r)
        sent, got, rest, code = r
        assert got == sent, "stream %d" % k
        assert rest == []
        assert code == OK


def test_server_stream_after_the_request_ended(h2c_backends, start_proxy, grpc_channels):
    ch = proxied(h2c_backends, start_proxy, grpc_channels)
    m = msg(pattern_bytes(100 * 1024))
    call = ch.unary_stream("/chat.Chat/Repeat")(m, timeout=60 * SLOW,
                                               metadata=(("x-repeat", "7"),))
    assert list(call) == [m] * 7
    assert call.code() == OK
