"""sgback's h2c side (`-2 ADDR:PORT`) and its gRPC service chat.Chat, tested
directly (no proxy): the backend the HTTP/2 and gRPC proxy tests will rely on.

- plain HTTP/2 routes with curl --http2-prior-knowledge (/, /bytes/N, /echo,
  /status/N, /delay/MS, /headers, /sink, /rst, /stats), x-backend on each;
- 64 MB both ways, and flow control: a client that does not read its echo
  is held by its window instead of being buffered without limit;
- RST_STREAM cancels the work of a stream and is counted in /stats;
- gRPC with grpcio generic calls: the four kinds, 64 MB messages, errors
  (NOT_FOUND trailers-only with a percent-encoded message and a -bin
  trailer), UNIMPLEMENTED, deadlines, a bidi stream silent for a while;
- h2load: 20000 requests all 2xx, plain and gRPC; sgback's CPU per request
  is measured (utime+stime from /proc/PID/stat) and printed, not asserted
  (see it with `pytest -rP` or `-s`).

Message encoding (tests/integration/chat.proto): requests are protobuf
Msg{text} encoded by hand (msg()); the service echoes bytes unchanged.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from sgtest import (FAIL_DETAIL, FAIL_MESSAGE, MB, SLOW, RawH2, free_ports, get, grpc_bidi, grpc_msg as msg,
                    pattern_bytes, start_h2c_backend, wait_for, _proc_cpu_ticks)

grpc = pytest.importorskip("grpc")
h2events = pytest.importorskip("h2.events")

def grpc_frame(message):
    """One gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


class H2Backend:
    """An sgback with one HTTP/1.1 port and one h2c port."""

    def __init__(self, backend, h2port):
        self.backend = backend
        self.port = h2port
        self.h1port = backend.port
        self.pid = backend.pid

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stats(self):
        r = curl(self.url("/stats"))
        assert r.status == 200, r
        return json.loads(r.body)


@pytest.fixture
def h2back(start_backend):
    h1, h2 = free_ports(2)
    b = start_h2c_backend(start_backend, h2, h1)
    return H2Backend(b, h2)


@pytest.fixture
def channel(h2back):
    ch = grpc.insecure_channel("127.0.0.1:%d" % h2back.port,
                               options=[("grpc.max_receive_message_length", -1),
                                        ("grpc.max_send_message_length", -1)])
    yield ch
    ch.close()


# ---------------------------------------------------------------- curl

class CurlResult:
    def __init__(self, rc, status, headers, body, stderr):
        self.rc, self.status, self.headers, self.body, self.stderr = rc, status, headers, body, stderr

    def __repr__(self):
        return "CurlResult(rc=%s, status=%s, headers=%s, body=%r, stderr=%r)" % (
            self.rc, self.status, self.headers, self.body[:200], self.stderr)


def curl(url, *args, stdin=None, timeout=60):
    """curl --http2-prior-knowledge: status, lowercase headers, body bytes."""
    p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "/dev/stderr",
                        "-o", "-", url] + list(args),
                       capture_output=True, stdin=stdin, timeout=timeout * SLOW)
    err = p.stderr.decode("utf-8", "replace")
    status, headers = None, {}
    for line in err.splitlines():
        m = re.match(r"HTTP/2 (\d+)", line)
        if m:
            status = int(m.group(1))
        elif ":" in line and status is not None:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return CurlResult(p.returncode, status, headers, p.stdout, err)


def test_routes_with_curl(h2back):
    r = curl(h2back.url("/"))
    assert (r.rc, r.status, r.body) == (0, 200, b"sgback %d\n" % h2back.port)
    assert r.headers["x-backend"] == str(h2back.port)
    assert r.headers["content-length"] == str(len(r.body))

    r = curl(h2back.url("/bytes/1000"))
    assert r.status == 200 and r.body == pattern_bytes(1000)
    assert r.headers["content-length"] == "1000"

    r = curl(h2back.url("/status/404"))
    assert (r.status, r.body) == (404, b"status 404\n")
    r = curl(h2back.url("/status/204"))
    assert (r.status, r.body) == (204, b"")
    assert curl(h2back.url("/status/101")).status == 400   # no final 1xx in HTTP/2
    assert curl(h2back.url("/bytes/12x")).status == 400

    r = curl(h2back.url("/echo"), "--data-binary", "hello h2", "-H", "content-type: text/x-chat")
    assert (r.status, r.body) == (200, b"hello h2")
    assert r.headers["content-type"] == "text/x-chat"
    assert r.headers["content-length"] == "8"

    r = curl(h2back.url("/sink"), "--data-binary", "x" * 5000)
    assert r.body == b"received 5000\n"

    r = curl(h2back.url("/headers"), "-H", "X-Chat-Room: 42")
    assert b"x-chat-room: 42\n" in r.body

    r = curl(h2back.url("/bytes/5"), "-I")   # HEAD (curl writes the head to stdout)
    assert r.status == 200 and r.headers["content-length"] == "5" and b"01234" not in r.body

    t0 = time.monotonic()
    r = curl(h2back.url("/delay/300"))
    assert r.body == b"sgback %d\n" % h2back.port
    assert time.monotonic() - t0 >= 0.3

    r = curl(h2back.url("/rst"))
    assert r.rc == 92 and "INTERNAL_ERROR" in r.stderr   # RST_STREAM, no answer

    st = h2back.stats()
    assert set(st) >= {"accepted", "open", "streams", "open_streams", "served", "cancelled", "grpc"}
    assert st["open"] >= 1 and st["streams"] >= 12

    # The HTTP/1.1 side of the same process is unaffected.
    r1 = get(h2back.h1port, "/")
    assert r1.status == 200 and r1.body == b"sgback %d\n" % h2back.h1port


def test_64mb_both_ways_with_curl(h2back, tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom(64 * MB)
    big.write_bytes(data)
    want = hashlib.md5(data).hexdigest()

    r = curl(h2back.url("/echo"), "--data-binary", "@%s" % big)
    assert r.status == 200 and r.headers["content-length"] == str(64 * MB)
    assert hashlib.md5(r.body).hexdigest() == want

    # From stdin: no content-length, the echo has none either.
    with open(big, "rb") as f:
        r = curl(h2back.url("/echo"), "-T", "-", stdin=f)
    assert r.status == 200 and "content-length" not in r.headers
    assert hashlib.md5(r.body).hexdigest() == want

    r = curl(h2back.url("/bytes/%d" % (64 * MB)))
    assert len(r.body) == 64 * MB and r.body == pattern_bytes(64 * MB)

    r = curl(h2back.url("/sink"), "--data-binary", "@%s" % big)
    assert r.body == b"received %d\n" % (64 * MB)


# ---------------------------------------------------------------- raw HTTP/2

def test_echo_flow_control_holds_a_client_that_does_not_read(h2back):
    """The echo buffer is bounded by the stream window (1 MB): a client
    that never grants window for the echoed bytes cannot push more than
    ~1 MB + its own 64 KB receive window; once it reads, 16 MB go through
    intact."""
    c = RawH2(h2back.port)
    try:
        c.request(1, "POST", "/echo", end=False)
        block = (bytes(range(256)) * 64)  # 16 KB
        sent = received = 0
        sent_md5, recv_md5 = hashlib.md5(), hashlib.md5()
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2.0 * SLOW:
            room = min(c.conn.local_flow_control_window(1), len(block))
            if room > 0:
                c.conn.send_data(1, block[:room])
                sent_md5.update(block[:room])
                sent += room
                c.flush()
                idle_since = time.monotonic()
                continue
            for ev in c.pump(0.2):
                idle_since = time.monotonic()
                if isinstance(ev, h2events.DataReceived):   # not acknowledged
                    received += len(ev.data)
                    recv_md5.update(ev.data)
        assert received <= 65535
        assert 1 * MB <= sent <= 1 * MB + 65535 + 16384, sent

        # Now read (grant window) and send the rest: 16 MB in all.
        total = 16 * MB
        c.conn.acknowledge_received_data(received, 1)
        c.flush()
        ended = False
        deadline = time.monotonic() + 60 * SLOW
        while not ended and time.monotonic() < deadline:
            if sent < total:
                room = min(c.conn.local_flow_control_window(1), len(block), total - sent)
                if room > 0:
                    c.conn.send_data(1, block[:room], end_stream=sent + room == total)
                    sent_md5.update(block[:room])
                    sent += room
                    c.flush()
                    continue
            for ev in c.pump(0.05 if sent < total else 0.5):
                if isinstance(ev, h2events.DataReceived) and ev.stream_id == 1:
                    received += len(ev.data)
                    recv_md5.update(ev.data)
                    c.conn.acknowledge_received_data(ev.flow_controlled_length, 1)
                    c.flush()
                elif isinstance(ev, h2events.StreamEnded) and ev.stream_id == 1:
                    ended = True
        assert ended and received == total
        assert recv_md5.hexdigest() == sent_md5.hexdigest()
    finally:
        c.close()


def test_rst_stream_cancels_and_is_counted(h2back):
    before = h2back.stats()["cancelled"]
    c = RawH2(h2back.port)
    try:
        # A waiting stream, reset: counted, and the connection goes on.
        c.request(1, "GET", "/delay/10000")
        c.pump(0.2)
        c.conn.reset_stream(1, error_code=8)   # CANCEL
        c.flush()
        c.request(3, "GET", "/")
        assert c.response(3) == (200, b"sgback %d\n" % h2back.port)
        wait_for(lambda: h2back.stats()["cancelled"] == before + 1, 5, what="cancelled count")

        # A 1 GB body, reset after its first bytes: generation stops.
        c.request(5, "GET", "/bytes/%d" % (1 << 30))
        got = 0
        while got == 0:
            for ev in c.pump(1.0):
                if isinstance(ev, h2events.DataReceived) and ev.stream_id == 5:
                    got += len(ev.data)
                    c.conn.acknowledge_received_data(ev.flow_controlled_length, 5)
        c.conn.reset_stream(5, error_code=8)
        c.flush()
        c.request(7, "GET", "/bytes/10")
        assert c.response(7) == (200, b"0123456789")
        wait_for(lambda: h2back.stats()["cancelled"] == before + 2, 5, what="cancelled count")
        assert h2back.stats()["open_streams"] == 1   # only the /stats request itself
    finally:
        c.close()


# ---------------------------------------------------------------- gRPC

def test_grpc_unary_echo(channel, h2back):
    echo = channel.unary_unary("/chat.Chat/Echo")
    resp, call = echo.with_call(msg("你好, chat"), timeout=5 * SLOW)
    assert resp == msg("你好, chat")
    assert call.code() == grpc.StatusCode.OK
    assert dict(call.initial_metadata())["x-backend"] == str(h2back.port)
    assert echo(b"raw bytes \x00\xff", timeout=5 * SLOW) == b"raw bytes \x00\xff"


def test_grpc_server_streaming_repeat(channel):
    repeat = channel.unary_stream("/chat.Chat/Repeat")
    assert list(repeat(msg("x"), timeout=5 * SLOW)) == [msg("x")] * 5
    assert list(repeat(msg("y"), metadata=[("x-repeat", "3")], timeout=5 * SLOW)) == [msg("y")] * 3
    assert list(repeat(msg("z"), metadata=[("x-repeat", "0")], timeout=5 * SLOW)) == []

    # With a pause between copies, each message arrives on its own.
    t0 = time.monotonic()
    arrivals = []
    for m in repeat(msg("tick"), metadata=[("x-repeat", "3"), ("x-interval-ms", "300")],
                    timeout=10 * SLOW):
        assert m == msg("tick")
        arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] >= 0.55   # not held back until the end


def test_grpc_client_streaming_collect(channel):
    collect = channel.stream_unary("/chat.Chat/Collect")
    parts = [msg("a"), msg("bb"), b""]
    want = "messages=3 bytes=%d" % sum(len(p) for p in parts)
    assert collect(iter(parts), timeout=5 * SLOW) == msg(want)
    assert collect(iter([]), timeout=5 * SLOW) == msg("messages=0 bytes=0")


def test_grpc_bidi_talk_echoes_each_message_and_tolerates_silence(channel):
    outbox, replies = grpc_bidi(channel, 30 * SLOW)
    outbox.put(msg("hello"))
    assert next(replies) == msg("hello")     # answered before we send more
    time.sleep(3)                            # silence: no idle timeout
    outbox.put(msg("\n"))                    # seed 002's heartbeat
    assert next(replies) == msg("\n")
    outbox.put(msg("结束对话"))
    assert next(replies) == msg("结束对话")
    outbox.put(None)
    assert list(replies) == []
    assert replies.code() == grpc.StatusCode.OK


def test_grpc_errors_trailers_only(channel):
    fail = channel.unary_unary("/chat.Chat/Fail")
    with pytest.raises(grpc.RpcError) as ei:
        fail(msg("room 42"), timeout=5 * SLOW)
    e = ei.value
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == FAIL_MESSAGE
    assert dict(e.trailing_metadata())["x-detail-bin"] == FAIL_DETAIL

    detail = bytes(range(256))
    with pytest.raises(grpc.RpcError) as ei:
        fail(b"", metadata=[("x-want-status", "9"), ("x-want-message", "no room at 50% load"),
                            ("x-detail-bin", detail)], timeout=5 * SLOW)
    e = ei.value
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == "no room at 50% load"
    assert dict(e.trailing_metadata())["x-detail-bin"] == detail

    with pytest.raises(grpc.RpcError) as ei:
        channel.unary_unary("/chat.Chat/Whisper")(b"", timeout=5 * SLOW)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as ei:
        channel.unary_unary("/other.Service/Echo")(b"", timeout=5 * SLOW)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_deadline_and_cancel_counted(channel, h2back):
    sleep = channel.unary_unary("/chat.Chat/Sleep")
    assert sleep(b"", metadata=[("x-sleep-ms", "100")], timeout=5 * SLOW) == msg("slept 100 ms")

    before = h2back.stats()["cancelled"]
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        sleep(b"", metadata=[("x-sleep-ms", "5000")], timeout=0.3)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2 * SLOW
    wait_for(lambda: h2back.stats()["cancelled"] == before + 1, 5, what="cancel counted")

    # An explicit cancel of a server stream is counted the same way.
    it = channel.unary_stream("/chat.Chat/Repeat")(
        msg("slow"), metadata=[("x-repeat", "100"), ("x-interval-ms", "200")], timeout=30 * SLOW)
    assert next(it) == msg("slow")
    it.cancel()
    wait_for(lambda: h2back.stats()["cancelled"] == before + 2, 5, what="cancel counted")
    wait_for(lambda: h2back.stats()["open_streams"] == 1, 5, what="streams closed")


def test_grpc_64mb_messages(channel):
    big = msg(pattern_bytes(64 * MB))
    assert channel.unary_unary("/chat.Chat/Echo")(big, timeout=120 * SLOW) == big
    got = list(channel.unary_stream("/chat.Chat/Repeat")(big, metadata=[("x-repeat", "2")],
                                                         timeout=120 * SLOW))
    assert len(got) == 2 and got[0] == big and got[1] == big
    n = channel.stream_unary("/chat.Chat/Collect")(iter([big, msg("x")]), timeout=120 * SLOW)
    assert n == msg("messages=2 bytes=%d" % (len(big) + 3))
    replies = list(channel.stream_stream("/chat.Chat/Talk")(iter([msg("hi"), big]),
                                                            timeout=120 * SLOW))
    assert replies == [msg("hi"), big]


# ---------------------------------------------------------------- h2load

def h2load(args, timeout=120):
    if not shutil.which("h2load"):
        pytest.skip("h2load not installed")
    p = subprocess.run(["h2load"] + args, capture_output=True, text=True, timeout=timeout * SLOW)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def assert_all_2xx(out, n):
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                  out)
    assert m and int(m.group(3)) == n and int(m.group(4)) == 0, out
    assert re.search(r"status codes: %d 2xx, 0 3xx, 0 4xx, 0 5xx" % n, out), out


def cpu_us_per_request(pid, n, run):
    """Runs run(); sgback's utime+stime per request, in microseconds."""
    t0 = _proc_cpu_ticks(pid)
    run()
    ticks = _proc_cpu_ticks(pid) - t0
    return ticks * 1e6 / os.sysconf("SC_CLK_TCK") / n


def test_h2load_plain(h2back):
    out = h2load(["-n", "20000", "-c", "10", "-m", "10", h2back.url("/")])
    assert_all_2xx(out, 20000)

    n = 100000
    res = {}
    us = cpu_us_per_request(h2back.pid, n, lambda: res.setdefault(
        "out", h2load(["-n", str(n), "-c", "10", "-m", "10", h2back.url("/")])))
    assert_all_2xx(res["out"], n)
    print("\nsgback CPU (h2c GET /, h2load -n %d -c 10 -m 10, 1 thread): %.2f us/request"
          % (n, us))


def test_h2load_grpc_echo(h2back, tmp_path):
    req = tmp_path / "echo.bin"
    req.write_bytes(grpc_frame(msg("hello from h2load")))
    args = ["-c", "10", "-m", "10", "-d", str(req), "-H", "content-type: application/grpc",
            "-H", "te: trailers", h2back.url("/chat.Chat/Echo")]
    out = h2load(["-n", "20000"] + args)
    assert_all_2xx(out, 20000)
    # Every answer carried the message back (the -d body echoed).
    m = re.search(r"traffic: .*\((\d+)\) data", out)
    assert m and int(m.group(1)) == 20000 * len(req.read_bytes()), out

    n = 100000
    res = {}
    us = cpu_us_per_request(h2back.pid, n, lambda: res.setdefault(
        "out", h2load(["-n", str(n)] + args)))
    assert_all_2xx(res["out"], n)
    print("\nsgback CPU (gRPC /chat.Chat/Echo, h2load -n %d -c 10 -m 10, 1 thread): "
          "%.2f us/request" % (n, us))
    st = json.loads(curl(h2back.url("/stats")).body)
    assert st["grpc"] >= 120000
