#!/usr/bin/python3
"""Idle gRPC stream benchmark: user memory per idle bidi gRPC stream through
streamgate, nginx and HAProxy (one worker each, same sgback backend).

For each proxy in turn: C client connections (h2c, prior knowledge) are
opened and their SETTINGS exchanged; then N bidi calls
(`POST /chat.Chat/Talk`, sgback echoes every byte) are opened, spread evenly
over the connections, one gRPC message is sent on each and its echo awaited;
then every call stays silent for --idle seconds. The proxy's PSS (all its
processes, /proc/PID/smaps_rollup) is sampled before the connections, after
them and after the idle time:

    bytes per idle stream = (PSS after idle - PSS after connecting) / N

After the sample every call sends one more message (it must come back
byte-identical: a proxy that dropped state while idle has to rebuild it)
and ends its request; the trailers must end the response.

    /usr/bin/python3 bench/grpc_idle.py [--quick] [-n N] [--proxies a,b] ...
    bench/run grpc-idle [...]

The client is a minimal HTTP/2 speaker written with the standard library
(literal HPACK, no Huffman; response headers are not decoded: the echoed
DATA and END_STREAM say what we need). A benchmark, not a test: it never
runs in CI. See bench/README.md.
"""

import argparse
import datetime
import os
import platform
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import h2 as h2bench  # noqa: E402  (bench/h2.py: backend, proxy specs, tools)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GRPC_MESSAGE = h2bench.GRPC_MESSAGE
# Below every peer's default SETTINGS_MAX_CONCURRENT_STREAMS (nginx and
# streamgate 128, HAProxy 100), so no proxy config needs changing.
MAX_PER_CONN = 100
RUN_ERRORS = (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = \
    0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


# ---------------------------------------------------------------- HTTP/2

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + \
        struct.pack(">BBI", ftype, flags, sid) + payload


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman
    (RFC 7541 6.2.2); lengths below 127 fit the 7-bit prefix."""
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


class Call:
    __slots__ = ("sid", "got", "want", "ended", "error")

    def __init__(self, sid):
        self.sid, self.got, self.want = sid, 0, 0
        self.ended, self.error = False, None


class Conn:
    """One client connection and its calls; reads with a selector."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setblocking(False)
        self.port = port
        self.buf = b""
        self.out = bytearray()
        self.calls = {}
        self.next_sid = 1
        self.settings_acked = False
        self.error = None
        self.queue(PREFACE + frame(SETTINGS, 0, 0))
        self.block = b"".join(hpack_literal(k, v) for k, v in (
            (":method", "POST"), (":scheme", "http"),
            (":path", "/chat.Chat/Talk"), (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"), ("te", "trailers")))

    def queue(self, data):
        self.out += data

    def open_call(self):
        c = Call(self.next_sid)
        self.next_sid += 2
        self.calls[c.sid] = c
        self.queue(frame(HEADERS, END_HEADERS, c.sid, self.block))
        self.send_message(c)
        return c

    def send_message(self, c):
        c.want += len(GRPC_MESSAGE)
        self.queue(frame(DATA, 0, c.sid, GRPC_MESSAGE))

    def end_call(self, c):
        self.queue(frame(DATA, END_STREAM, c.sid))

    def flush(self):
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:n]

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.error = self.error or f"read: {e}"
            return
        if not data:
            self.error = self.error or "connection closed by the proxy"
            return
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            self.on_frame(ftype, flags, sid, payload)

    def on_frame(self, ftype, flags, sid, payload):
        c = self.calls.get(sid)
        if ftype == SETTINGS:
            if flags & ACK:
                self.settings_acked = True
            else:
                self.queue(frame(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            self.queue(frame(PING, ACK, 0, payload))
        elif ftype == GOAWAY:
            code = int.from_bytes(payload[4:8], "big")
            self.error = self.error or f"GOAWAY (error code {code})"
        elif ftype == DATA and c:
            pad = payload[0] if flags & 0x8 else 0
            got = len(payload) - (1 + pad if flags & 0x8 else 0)
            c.got += got
            if got:
                # Give the window back at once: the echoes are tiny, but a
                # long run must not starve the proxy of window.
                inc = struct.pack(">I", len(payload))
                self.queue(frame(WINDOW_UPDATE, 0, sid, inc) +
                           frame(WINDOW_UPDATE, 0, 0, inc))
            if flags & END_STREAM:
                c.ended = True
                if c.got != c.want:
                    c.error = c.error or f"ended after {c.got}/{c.want} bytes"
        elif ftype == HEADERS and c and flags & END_STREAM:
            c.ended = True
            if c.got != c.want:
                c.error = c.error or (f"response ended after {c.got}/"
                                      f"{c.want} echoed bytes")
        elif ftype == RST_STREAM and c:
            code = int.from_bytes(payload[:4], "big")
            c.ended = True
            c.error = c.error or f"RST_STREAM (error code {code})"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def pump(conns, done, timeout, what):
    """Writes and reads on every connection until done() or the timeout
    (what=None: the timeout is the plan, not a failure)."""
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    deadline = time.monotonic() + timeout
    try:
        while True:
            for c in conns:
                c.flush()
            if done():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                if what is None:
                    return True
                lib.warn(f"{what}: not finished within {timeout:g} s")
                return False
            for key, _ in sel.select(min(left, 0.2)):
                key.data.on_readable()
    finally:
        sel.close()


def idle(conns, seconds):
    """Stays silent for `seconds` but answers PINGs and notices drops."""
    if seconds > 0:
        pump(conns, lambda: False, seconds, None)


# ---------------------------------------------------------------- one run

def run_load(args, port, proxy):
    """Connections, calls, idle, samples, second message, ends; the counts
    and memory samples. proxy: a lib.Child (its process group is sampled)."""
    pids = lambda: proxy.cpu()[1]  # noqa: E731
    res = {"n": args.streams, "connections": args.connections}
    res["mem0_kb"] = lib.memory_kb(pids())
    conns = [Conn(port) for _ in range(args.connections)]
    try:
        ok = pump(conns, lambda: all(c.settings_acked or c.error
                                     for c in conns), args.timeout,
                  "SETTINGS exchange")
        res["mem1_kb"] = lib.memory_kb(pids())
        calls = []
        for i in range(args.streams):
            conn = conns[i % len(conns)]
            calls.append((conn, conn.open_call()))
        echoed = lambda: all(c.got >= c.want or c.ended  # noqa: E731
                             for _, c in calls)
        t0 = time.monotonic()
        ok = pump(conns, echoed, args.timeout, "first echoes") and ok
        res["open_s"] = time.monotonic() - t0
        res["echoed_first"] = sum(1 for _, c in calls
                                  if c.got == c.want and not c.ended)
        idle(conns, args.idle)
        res["open_at_sample"] = sum(1 for _, c in calls if not c.ended)
        res["mem2_kb"] = lib.memory_kb(pids())
        res["proxy_pids"] = pids()
        for conn, c in calls:
            if not c.ended:
                conn.send_message(c)
        ok = pump(conns, echoed, args.timeout, "second echoes") and ok
        res["echoed_second"] = sum(1 for _, c in calls
                                   if c.got == c.want and not c.ended)
        for conn, c in calls:
            if not c.ended:
                conn.end_call(c)
        pump(conns, lambda: all(c.ended for _, c in calls), args.timeout,
             "call ends")
        res["ended_ok"] = sum(1 for _, c in calls if c.ended and not c.error)
        res["in_time"] = ok   # every phase finished within --timeout
        errors = [c.error for _, c in calls if c.error] + \
            [c.error for c in conns if c.error]
        res["errors"] = len(errors)
        res["first_error"] = errors[0] if errors else None
    finally:
        for c in conns:
            c.close()
    n = max(res["open_at_sample"], 1)
    res["pss_bytes_per_stream"] = \
        (res["mem2_kb"]["pss"] - res["mem1_kb"]["pss"]) * 1024 / n
    res["rss_bytes_per_stream"] = \
        (res["mem2_kb"]["rss"] - res["mem1_kb"]["rss"]) * 1024 / n
    res["pss_bytes_per_stream_with_conns"] = \
        (res["mem2_kb"]["pss"] - res["mem0_kb"]["pss"]) * 1024 / n
    return res


def bench_one(args, name, spec, tmp, backend_port):
    port = lib.free_port()
    conf = os.path.join(tmp, spec["conf"])
    text = lib.render(os.path.join(HERE, "conf", spec["template"]), conf,
                      {"TMP": tmp, "PORT": port, "BACKEND_PORT": backend_port,
                       "UPSTREAM_KEEPALIVE": args.upstream_keepalive})
    result = {"proxy": name, "port": port, "config": text,
              "version": lib.tool_version(spec["version"])}
    proxy = lib.start_proxy(name, spec, conf, tmp)
    try:
        lib.wait_port(port, proxy)
        grpc, _ = h2bench.check_answer(port, backend_port, {
            "path": "/chat.Chat/Echo", "body": args.unary_file,
            "headers": h2bench.GRPC_HEADERS})
        if grpc != "0":
            lib.warn(f"{name}: a unary call answered grpc-status {grpc}")
        # Memory is sampled after one call went through, so what the first
        # call of a process allocates once (upstream connection, caches) is
        # not counted as per-stream cost.
        result["run"] = run_load(args, port, proxy)
        if not proxy.alive():
            raise RuntimeError(f"{name} died during the run:\n"
                               f"{proxy.log_tail()}")
    finally:
        proxy.stop()
    r = result["run"]
    if r["errors"] or r["echoed_second"] < r["n"] or not r["in_time"]:
        lib.warn(f"{name}: {r['echoed_second']}/{r['n']} calls echoed after "
                 f"the idle time, {r['errors']} errors (first: "
                 f"{r['first_error']}): its numbers are suspect")
    print(f"  {name}: {r['pss_bytes_per_stream']:.0f} B of PSS per idle "
          "stream", file=sys.stderr)
    return result


def proxy_specs(args, tmp):
    """bench/h2.py's start/check commands with this benchmark's configs."""
    specs = h2bench.proxy_specs(args, tmp)
    for s in specs.values():
        s["template"] = s["template"].replace("h2-", "grpc-idle-", 1)
        s["conf"] = s["conf"].replace("h2-", "grpc-idle-", 1)
    return specs


# ---------------------------------------------------------------- report

def print_report(args, results, failures):
    headers = ["proxy", "calls ok", "user B/stream", "RSS B/stream",
               "incl. conns B/stream", "PSS before KiB", "PSS idle KiB"]
    rows = []
    for res in results:
        r = res["run"]
        rows.append([res["proxy"], f"{r['echoed_second']}/{r['n']}",
                     f"{r['pss_bytes_per_stream']:.0f}",
                     f"{r['rss_bytes_per_stream']:.0f}",
                     f"{r['pss_bytes_per_stream_with_conns']:.0f}",
                     r["mem1_kb"]["pss"], r["mem2_kb"]["pss"]])
    for name in failures:
        rows.append([name, "FAILED"] + [""] * (len(headers) - 2))
    print(f"\nIdle bidi gRPC streams: {args.streams} calls over "
          f"{args.connections} h2c connections through each proxy (one "
          f"worker), one {len(GRPC_MESSAGE)}-byte message echoed on each, "
          f"then {args.idle:g} s of silence")
    print(lib.table(headers, rows))
    print("user: PSS growth of the proxy's processes from 'connections open' "
          "to 'all calls open and idle', per call (/proc/PID/smaps_rollup);\n"
          "incl. conns: from before the client connections (their sessions "
          "spread over the calls).\ncalls ok: calls whose second message "
          "came back after the idle time.")
    by = {res["proxy"]: res["run"]["pss_bytes_per_stream"] for res in results}
    sg = by.get("streamgate")
    for other, label in (("nginx", "nginx"), ("haproxy", "HAProxy")):
        if sg is not None and by.get(other):
            print(f"streamgate/{label}: user memory per idle stream "
                  f"{sg / by[other]:.2f}x (<1: streamgate uses less)")
    for name, err in failures.items():
        print(f"\n{name} FAILED: {err}")


def write_json(args, results, failures, started):
    if args.no_json:
        return None
    path = args.json or os.path.join(
        HERE, "results", f"grpc-idle-{started:%Y%m%d-%H%M%S}.json")
    return lib.write_results(path, {
        "benchmark": "grpc_idle", "started": started.isoformat(),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_before": args.loadavg_before},
        "params": {k: getattr(args, k) for k in (
            "streams", "connections", "idle", "timeout", "proxies",
            "upstream_keepalive")},
        "grpc_message_hex": GRPC_MESSAGE.hex(),
        "tools": {"backend": args.backend_bin},
        "results": results, "failures": failures,
    })


# ---------------------------------------------------------------- main

def parse_args(argv):
    build = os.environ.get("SG_BUILD", "build")
    ap = argparse.ArgumentParser(
        description="Idle gRPC stream benchmark: user memory per idle bidi "
        "gRPC stream through streamgate, nginx, HAProxy (see "
        "bench/README.md).")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: -n 400, 1 s idle")
    ap.add_argument("-n", "--streams", type=int, default=2000,
                    help="idle calls per proxy (default 2000, at most 4000)")
    ap.add_argument("-c", "--connections", type=int, default=0,
                    help=f"client connections (default: N/{MAX_PER_CONN} "
                    f"rounded up; at most {MAX_PER_CONN} calls each)")
    ap.add_argument("--idle", type=float, default=5,
                    help="seconds of silence before the sample (default 5)")
    ap.add_argument("--timeout", type=float, default=30,
                    help="seconds for each phase (default 30)")
    ap.add_argument("--proxies", default=",".join(lib.ALL_PROXIES),
                    help="comma-separated subset of streamgate,nginx,haproxy")
    ap.add_argument("--upstream-keepalive", type=int, default=16)
    ap.add_argument("--build", default=build,
                    help=f"build folder (default $SG_BUILD or build: {build})")
    ap.add_argument("--streamgate-bin", help="default BUILD/streamgate")
    ap.add_argument("--backend-bin", help="default BUILD/sgback")
    ap.add_argument("--skip-missing", action="store_true",
                    help="run the proxies that are installed, skip the others")
    ap.add_argument("--json", help="results file (default "
                    "bench/results/grpc-idle-DATE.json)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.streams, args.idle = 400, 1
    if not 1 <= args.streams <= 4000:
        ap.error("-n: 1 to 4000 calls (nginx needs an upstream connection "
                 "per call; 20000 open files per process)")
    if not args.connections:
        args.connections = -(-args.streams // MAX_PER_CONN)
    if args.connections < 1 or \
            -(-args.streams // args.connections) > MAX_PER_CONN:
        ap.error(f"-c: at most {MAX_PER_CONN} calls per connection")
    if args.idle < 0 or args.timeout <= 0:
        ap.error("durations must be positive")
    args.proxies = lib.parse_proxies(ap, args.proxies)
    build = lib.build_dir(args.build, ROOT)
    args.streamgate_bin = args.streamgate_bin or os.path.join(build, "streamgate")
    args.backend_bin = args.backend_bin or os.path.join(build, "sgback")
    args.backend_threads = 1
    return args


def main(argv):
    args = parse_args(argv)
    h2bench.check_tools(args)
    lib.install_cleanup()
    started = datetime.datetime.now()
    args.loadavg_before = lib.loadavg()
    tmp = tempfile.mkdtemp(prefix="sgbench-grpc-idle-")
    args.unary_file = os.path.join(tmp, "grpc-unary.bin")
    with open(args.unary_file, "wb") as f:
        f.write(GRPC_MESSAGE)
    results, failures = [], {}
    try:
        backend, backend_port = h2bench.start_backend(args, tmp)
        print(f"bench: sgback -2 on 127.0.0.1:{backend_port}, temp folder "
              f"{tmp}", file=sys.stderr)
        lib.bench_each(proxy_specs(args, tmp), lambda name, spec: bench_one(
            args, name, spec, tmp, backend_port), results, failures,
            RUN_ERRORS)
        backend.stop()
    except RuntimeError as e:
        lib.die(str(e))
    finally:
        lib.stop_all()
        lib.remove_tmp(tmp, args.keep_tmp)
    print_report(args, results, failures)
    path = write_json(args, results, failures, started)
    if path:
        print(f"\nresults: {os.path.relpath(path)}")
    return 1 if failures else 0


if __name__ == "__main__":
    lib.run_main(main)
