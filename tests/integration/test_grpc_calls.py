"""gRPC calls through streamgate as a gRPC user makes them, with real peers:
grpcio clients, sgback's chat.Chat service (h2c) behind `grpc_pass`.

Checked, each with the default configuration unless said otherwise:
- a 64 MiB unary message comes back byte-identical, and a client stream of
  200 x 1 MB (far over client_max_body_size's 1m: nginx answers 413) succeeds;
- 400 concurrent calls on one client channel all succeed, shared by two
  backends;
- a bidi stream silent for 70 s still echoes and ends OK (nginx's
  grpc_read_timeout would have cut it at 60 s);
- a client's cancel and a client deadline reach the backend as a reset
  stream (sgback's /stats "cancelled"), the deadline within 2 s;
- seed 02 (TLS + ALPN h2 on 1443): unary and bidi; seed 05 (TLS, two
  h2c_backends, error_page 502 -> grpc-status 14): calls spread over both, all
  down -> UNAVAILABLE "unavailable"; seed 06 (plaintext 8080): up, down
  (UNAVAILABLE), up again. Their fixed ports become free ones;
- three reloads and then a graceful stop (SIGQUIT) under a gRPC load: no
  call fails, bidi streams opened before survive both, calls in flight at
  SIGQUIT complete OK, and the process exits 0.
"""

import signal
import threading
import time

import pytest

from sgtest import (MB, SLOW, free_port, grpc_bidi as bidi, grpc_conf,
                    grpc_msg as msg, h2_stats, http_conf, make_seed_certs,
                    pattern_bytes, port_accepts,
                    start_h2c_backend, wait_for)

grpc = pytest.importorskip("grpc")

OK = grpc.StatusCode.OK


def backend_of(call_or_error):
    """The x-backend metadata of a call (initial, or trailing for a trailers-only answer)."""
    md = dict(call_or_error.initial_metadata() or ())
    md.update(dict(call_or_error.trailing_metadata() or ()))
    return md.get("x-backend")


def talk_ok(ch, texts, timeout=30):
    """A bidi Talk: each message echoed before the next is sent; ends OK."""
    outbox, replies = bidi(ch, timeout * SLOW)
    for t in texts:
        outbox.put(msg(t))
        assert next(replies) == msg(t)
    outbox.put(None)
    assert list(replies) == []
    assert replies.code() == OK
    return backend_of(replies)


# ---------------------------------------------------------------- 1. big messages, long streams

def test_64mib_message_and_a_200mb_client_stream(h2c_backends, start_proxy, grpc_channels):
    (bport,) = h2c_backends(1)
    conf, port = grpc_conf([bport])
    start_proxy(conf)
    ch = grpc_channels(port)
    big = msg(pattern_bytes(64 * MB))
    resp, call = ch.unary_unary("/chat.Chat/Echo").with_call(big, timeout=120 * SLOW)
    assert call.code() == OK
    assert len(resp) == len(big) and resp == big

    parts = [msg(pattern_bytes(MB))] * 200
    n = sum(len(p) for p in parts)
    got = ch.stream_unary("/chat.Chat/Collect")(iter(parts), timeout=120 * SLOW)
    assert got == msg("messages=200 bytes=%d" % n)


# ---------------------------------------------------------------- 2. many calls, one channel

def test_400_concurrent_calls_on_one_channel(h2c_backends, start_proxy, grpc_channels):
    ports = h2c_backends(2)
    conf, port = grpc_conf(ports)
    start_proxy(conf)
    ch = grpc_channels(port)
    sleep = ch.unary_unary("/chat.Chat/Sleep")
    t0 = time.monotonic()
    futures = [sleep.future(b"", metadata=[("x-sleep-ms", "200")], timeout=60 * SLOW)
               for _ in range(400)]
    seen = {}
    for f in futures:
        assert f.result() == msg("slept 200 ms")
        assert f.code() == OK
        b = backend_of(f)
        seen[b] = seen.get(b, 0) + 1
    elapsed = time.monotonic() - t0
    assert set(seen) == {str(p) for p in ports}, seen
    assert min(seen.values()) >= 100, seen          # round robin: 200 each
    assert elapsed < 40 * SLOW                      # one after the other: 80 s


# ---------------------------------------------------------------- 3. a silent bidi stream

def test_bidi_stream_silent_for_70s(h2c_backends, start_proxy, grpc_channels):
    """`grpc_pass` and nothing else: nginx's grpc_read_timeout (60 s) would
    cut this stream; streamgate only bounds the wait for the response head."""
    (bport,) = h2c_backends(1)
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass grpc://127.0.0.1:%d; }
  }
""" % (port, bport)))
    ch = grpc_channels(port)
    outbox, replies = bidi(ch, 200 * SLOW)
    outbox.put(msg("before the silence"))
    assert next(replies) == msg("before the silence")
    time.sleep(70)
    outbox.put(msg("after 70 s"))
    assert next(replies) == msg("after 70 s")
    outbox.put(None)
    assert list(replies) == []
    assert replies.code() == OK


# ---------------------------------------------------------------- 4. cancellation

def test_client_cancel_and_deadline_reach_the_backend(h2c_backends, start_proxy, grpc_channels):
    (bport,) = h2c_backends(1)
    conf, port = grpc_conf([bport])
    start_proxy(conf)
    ch = grpc_channels(port)
    sleep = ch.unary_unary("/chat.Chat/Sleep")
    assert sleep(b"", metadata=[("x-sleep-ms", "10")], timeout=10 * SLOW) == msg("slept 10 ms")

    def cancelled():
        return h2_stats(bport)["cancelled"]

    # An explicit cancel of a pending unary call, once the backend has it
    # (open_streams counts the /stats request too).
    before = cancelled()
    f = sleep.future(b"", metadata=[("x-sleep-ms", "5000")], timeout=30 * SLOW)
    time.sleep(0.3)
    wait_for(lambda: h2_stats(bport)["open_streams"] == 2, 5, what="the call at the backend")
    assert f.cancel()
    assert f.cancelled()
    wait_for(lambda: cancelled() >= before + 1, 2, what="the cancel counted by the backend")

    # A server stream cancelled after its first message.
    before = cancelled()
    it = ch.unary_stream("/chat.Chat/Repeat")(
        msg("tick"), metadata=[("x-repeat", "100"), ("x-interval-ms", "200")], timeout=30 * SLOW)
    assert next(it) == msg("tick")
    it.cancel()
    assert it.code() == grpc.StatusCode.CANCELLED
    wait_for(lambda: cancelled() >= before + 1, 2, what="the stream cancel counted by the backend")

    # A client deadline: the call fails fast and the backend's stream is reset.
    before = cancelled()
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        sleep(b"", metadata=[("x-sleep-ms", "3000")], timeout=0.3)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2 * SLOW
    wait_for(lambda: cancelled() >= before + 1, 2, what="the expired call counted by the backend")

    # Nothing left running at the backend but the /stats request itself.
    wait_for(lambda: h2_stats(bport)["open_streams"] == 1, 2, what="no stream left open")
    assert sleep(b"", metadata=[("x-sleep-ms", "10")], timeout=10 * SLOW) == msg("slept 10 ms")


# ---------------------------------------------------------------- 5, 6. seeds

def make_other_cert(tmp_prefix):
    """A second self-signed certificate for localhost (not the proxy's)."""
    other = tmp_prefix / "other"
    make_seed_certs(other)
    return (other / "certs" / "cert.pem").read_bytes()


def test_seed_02_tls_alpn_h2(seed_conf, tmp_prefix, start_proxy, start_backend, grpc_channels):
    """Seed 02 unchanged but for its ports: gRPC over TLS on 1443 (grpcio
    insists on ALPN h2), plaintext to 50051."""
    seed = seed_conf("02")
    cert = make_seed_certs(tmp_prefix).read_bytes()
    start_h2c_backend(start_backend, seed[50051])
    start_proxy(conf_file=seed.path, prefix=tmp_prefix)
    ch = grpc_channels(seed[1443], "localhost", root_cert=cert)
    resp, call = ch.unary_unary("/chat.Chat/Echo").with_call(msg("over TLS"), timeout=10 * SLOW)
    assert resp == msg("over TLS") and call.code() == OK
    assert backend_of(call) == str(seed[50051])
    assert talk_ok(ch, ["one", "two", "三"]) == str(seed[50051])
    # A client that does not trust the certificate gets nothing.
    bad = grpc_channels(seed[1443], "localhost", root_cert=make_other_cert(tmp_prefix))
    with pytest.raises(grpc.RpcError) as ei:
        bad.unary_unary("/chat.Chat/Echo")(msg("x"), timeout=5 * SLOW)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE


def test_seed_05_tls_two_backends_and_all_down(seed_conf, tmp_prefix, start_proxy, start_backend,
                                               grpc_channels):
    """Seed 05 unchanged but for its ports. sgback serves chat.Chat only, so the seed's
    /helloworld.Greeter calls reach a backend and come back UNIMPLEMENTED
    with its x-backend; with both backends down the error_page answers
    grpc-status 14 "unavailable"."""
    seed = seed_conf("05")
    cert = make_seed_certs(tmp_prefix).read_bytes()
    backs = [start_h2c_backend(start_backend, seed[p]) for p in (50051, 50052)]
    start_proxy(conf_file=seed.path, prefix=tmp_prefix)
    ch = grpc_channels(seed[1443], "localhost", root_cert=cert)
    hello = ch.unary_unary("/helloworld.Greeter/SayHello")
    seen = {}
    for _ in range(20):
        with pytest.raises(grpc.RpcError) as ei:
            hello(b"", timeout=10 * SLOW)
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
        b = backend_of(ei.value)
        seen[b] = seen.get(b, 0) + 1
    assert set(seen) == {str(seed[50051]), str(seed[50052])}, seen
    assert min(seen.values()) >= 5, seen

    for b in backs:
        b.stop()
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as ei:
            hello(b"", timeout=10 * SLOW)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ei.value.details() == "unavailable"


def test_seed_06_plaintext_up_down_up(seed_conf, tmp_prefix, start_proxy, start_backend, grpc_channels):
    seed = seed_conf("06")
    oap = seed[31320]
    back = start_h2c_backend(start_backend, oap)
    start_proxy(conf_file=seed.path, prefix=tmp_prefix)
    ch = grpc_channels(seed[8080])
    echo = ch.unary_unary("/chat.Chat/Echo")
    resp, call = echo.with_call(msg("agent"), timeout=10 * SLOW)
    assert resp == msg("agent") and backend_of(call) == str(oap)
    assert talk_ok(ch, ["segment 1", "segment 2"]) == str(oap)

    back.stop()
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as ei:
            echo(msg("agent"), timeout=10 * SLOW)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ei.value.details() == "unavailable"

    start_h2c_backend(start_backend, oap)
    resp, call = echo.with_call(msg("agent again"), timeout=10 * SLOW)
    assert resp == msg("agent again") and backend_of(call) == str(oap)


# ---------------------------------------------------------------- 7. reload and graceful stop

class EchoLoop(threading.Thread):
    """Unary Echo calls one after the other on its own channel until stopped
    (or its first failure); records every outcome."""

    def __init__(self, ch, name):
        super().__init__(daemon=True)
        self.echo = ch.unary_unary("/chat.Chat/Echo")
        self.name_ = name
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []        # (when it failed, error)

    def run(self):
        i = 0
        while not self.stop.is_set():
            m = msg("%s %d" % (self.name_, i))
            try:
                assert self.echo(m, timeout=20 * SLOW) == m
                self.ok += 1
            except Exception as e:
                self.failures.append((time.monotonic(), e))
                return
            i += 1


class Talker(threading.Thread):
    """One bidi Talk stream exchanging messages continuously until stopped,
    then ending its request stream; closed_ok once the call ended OK."""

    def __init__(self, ch, name):
        super().__init__(daemon=True)
        self.outbox, self.replies = bidi(ch, 600 * SLOW)
        self.name_ = name
        self.stop = threading.Event()
        self.count = 0
        self.error = None
        self.closed_ok = False

    def run(self):
        try:
            while not self.stop.is_set():
                m = msg("%s %d" % (self.name_, self.count))
                self.outbox.put(m)
                got = next(self.replies)
                assert got == m, (got[:50], m)
                self.count += 1
                time.sleep(0.01)
            self.outbox.put(None)
            rest = list(self.replies)
            assert rest == [], rest[:3]
            assert self.replies.code() == OK
            self.closed_ok = True
        except Exception as e:
            self.error = e


def grows(threads, attr):
    """A predicate: every thread's counter moved past its value now."""
    marks = [getattr(t, attr) for t in threads]
    return lambda: all(getattr(t, attr) > m for t, m in zip(threads, marks))


def test_reloads_and_graceful_stop_under_grpc_load(h2c_backends, start_proxy, grpc_channels):
    ports = h2c_backends(2)
    conf, port = grpc_conf(ports)
    p = start_proxy(conf)
    loops = [EchoLoop(grpc_channels(port), "unary %d" % i) for i in range(4)]
    talkers = [Talker(grpc_channels(port), "bidi %d" % i) for i in range(2)]
    threads = loops + talkers
    try:
        for t in threads:
            t.start()
        wait_for(lambda: all(t.ok >= 5 for t in loops) and all(t.count >= 5 for t in talkers),
                 10, what="the load running")

        for gen in range(3):
            assert p.reload(conf + "\n# generation %d\n" % gen)
            wait_for(grows(loops, "ok"), 10, what="unary calls after reload %d" % gen)
            wait_for(grows(talkers, "count"), 10, what="bidi streams after reload %d" % gen)
            assert [t.failures for t in loops] == [[]] * 4
            assert [t.error for t in talkers] == [None] * 2

        # Calls in flight at SIGQUIT: slow ones, seen open at the backends.
        slow_ch = grpc_channels(port)
        sleep = slow_ch.unary_unary("/chat.Chat/Sleep")
        slow = [sleep.future(b"", metadata=[("x-sleep-ms", "3000")], timeout=60 * SLOW)
                for _ in range(10)]
        # open_streams counts each backend's /stats request too.
        wait_for(lambda: sum(h2_stats(b)["open_streams"] - 1 for b in ports) >= 10 + len(talkers),
                 5, what="the slow calls open at the backends")

        t_quit = time.monotonic()
        p.signal(signal.SIGQUIT)
        wait_for(lambda: not port_accepts(port), 5, what="the listener closed")
        # Streams opened before go on as before.
        wait_for(grows(talkers, "count"), 10, what="bidi streams after SIGQUIT")
        for t in loops:
            t.stop.set()
        for t in talkers:
            t.stop.set()
        for t in threads:
            t.join(30 * SLOW)
            assert not t.is_alive(), t.name_

        for f in slow:
            assert f.result() == msg("slept 3000 ms")
            assert f.code() == OK
        for t in talkers:
            assert t.error is None and t.closed_ok, (t.name_, t.error)
        # An Echo loop may only fail by not reaching the closed listener
        # once SIGQUIT is sent (a call its channel had not yet put on the
        # connection that got the GOAWAY is tried on a new one).
        for t in loops:
            for failed_at, e in t.failures:
                assert isinstance(e, grpc.RpcError), (t.name_, repr(e))
                assert failed_at > t_quit, (t.name_, e)
                assert e.code() == grpc.StatusCode.UNAVAILABLE, (t.name_, e)
                assert "connect" in e.details().lower(), (t.name_, e.details())
        assert sum(t.ok for t in loops) >= 100
        print("\nunary calls OK: %d; bidi messages: %d; Echo loops that could not reach the "
              "closed listener after SIGQUIT: %d"
              % (sum(t.ok for t in loops), sum(t.count for t in talkers),
                 sum(len(t.failures) for t in loops)))

        assert p.wait(15) == 0      # the teardown also checks for sanitizer reports
    finally:
        for t in threads:
            t.stop.set()
        for t in talkers:
            t.replies.cancel()
