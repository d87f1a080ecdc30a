#!/usr/bin/python3
"""HTTP/2 benchmark: streamgate vs nginx vs HAProxy, h2c on both sides.

One sgback h2c backend (`sgback -2 ADDR:PORT -t 1`); each proxy in turn (only
one running at a time, one worker/thread) on its own loopback port, speaking
HTTP/2 with prior knowledge to clients and to the backend; h2load drives three
loads through it:

  plain    GET /                                   (plain HTTP/2 requests)
  unary    POST /chat.Chat/Echo, one gRPC message  (gRPC unary calls)
  stream   POST /chat.Chat/Talk, M gRPC messages   (bidi streams: sgback
           echoes each message as soon as it has arrived)

The proxy's and the backend's CPU time (all their processes and threads, from
/proc/PID/stat) are read before and after each run. Before measuring, one
curl call per gRPC load checks the answer's grpc-status trailer.

    /usr/bin/python3 bench/h2.py [--quick] [--proxies a,b] [--loads a,b] ...
    bench/run h2 [...]

See bench/README.md for how to read the numbers. A benchmark, not a test:
it never runs in CI.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import json

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALL_LOADS = ("plain", "unary", "stream")
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
# One gRPC message: uncompressed flag, 4-byte length, protobuf
# `Msg { string text = 1; }` with text "hello" (0a 05 h e l l o).
GRPC_MESSAGE = b"\x00\x00\x00\x00\x07" + b"\x0a\x05hello"
NO_TRAILERS = "missing: trailers not passed yet"
RUN_ERRORS = (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired)


# ---------------------------------------------------------------- proxies

def proxy_specs(args, tmp):
    """How to configure, check and start each proxy. conf = generated file."""
    sg = args.streamgate_bin
    nginx_common = ["-p", tmp, "-e", f"{tmp}/nginx-error.log",
                    "-g", "daemon off;"]
    specs = {
        "streamgate": {
            "template": "h2-streamgate.conf.tmpl", "conf": "h2-streamgate.conf",
            "check": lambda c: [sg, "-t", "-c", c, "-p", tmp],
            "run": lambda c: [sg, "-c", c, "-p", tmp],
            "version": [sg, "-v"],
        },
        "nginx": {
            "template": "h2-nginx.conf.tmpl", "conf": "h2-nginx.conf",
            # -e: nginx otherwise opens its compiled-in error log first.
            "check": lambda c: ["nginx", "-t", "-q", "-c", c, *nginx_common],
            "run": lambda c: ["nginx", "-c", c, *nginx_common],
            "version": ["nginx", "-v"],
        },
        "haproxy": {
            "template": "h2-haproxy.cfg.tmpl", "conf": "h2-haproxy.cfg",
            "check": lambda c: ["haproxy", "-c", "-q", "-f", c],
            # -db: foreground, no daemon, single process.
            "run": lambda c: ["haproxy", "-f", c, "-db"],
            "version": ["haproxy", "-v"],
        },
    }
    return {p: specs[p] for p in args.proxies}


def nginx_lacks_h2():
    """What nginx lacks for this benchmark (http_v2, grpc), or None."""
    r = subprocess.run(["nginx", "-V"], capture_output=True, timeout=10)
    text = (r.stdout + r.stderr).decode(errors="replace")
    lacks = []
    if "--with-http_v2_module" not in text:
        lacks.append("http_v2 module")
    if "--without-http_grpc_module" in text:
        lacks.append("grpc module")
    return ", ".join(lacks) or None


def check_tools(args):
    """Everything missing, with how to get it; exits when something is."""
    missing, skippable = [], []
    for tool, pkg in (("h2load", "nghttp2-client"), ("curl", "curl")):
        if not shutil.which(tool):
            missing.append(f"{tool} (Debian package {pkg})")
    if not os.access(args.backend_bin, os.X_OK):
        missing.append(f"sgback: {args.backend_bin} (build it with `make`)")
    for p in args.proxies:
        why = lib.proxy_missing(p, args.streamgate_bin)
        if why is None and p == "nginx":
            lacks = nginx_lacks_h2()
            why = f"nginx without {lacks}" if lacks else None
        if why:
            skippable.append(p)
            missing.append(why)
    if not missing:
        return
    lib.print_missing(missing)
    if args.skip_missing and len(skippable) == len(missing):
        args.proxies = [p for p in args.proxies if p not in skippable]
        if args.proxies:
            lib.warn(f"--skip-missing: running only {', '.join(args.proxies)}")
            return
    sys.exit(2)


# ---------------------------------------------------------------- curl

def curl_h2(port, path, body=None, headers=(), timeout=10):
    """One h2c request with curl: (status, headers, trailers, body bytes).
    curl -v prints the response head and, after a blank line, trailers."""
    argv = ["curl", "-sS", "-v", "--http2-prior-knowledge", "-o", "-",
            "--max-time", str(timeout)]
    for h in headers:
        argv += ["-H", h]
    if body is not None:
        argv += ["--data-binary", "@-"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    r = subprocess.run(argv, input=body or b"", capture_output=True,
                       timeout=timeout + 5)
    err = r.stderr.decode(errors="replace")
    if r.returncode != 0:
        raise RuntimeError(f"curl {path} on 127.0.0.1:{port} failed "
                           f"({r.returncode}): {err.strip().splitlines()[-1:]}")
    status, head, trailers, part = None, {}, {}, None
    for line in err.splitlines():
        if not line.startswith("< "):
            continue
        line = line[2:].strip()
        m = re.match(r"HTTP/2 (\d+)", line)
        if m:
            status, part = int(m.group(1)), head
        elif not line and part is head:
            part = trailers
        elif ":" in line and part is not None:
            k, v = line.split(":", 1)
            part[k.strip().lower()] = v.strip()
    return status, head, trailers, r.stdout


def backend_stats(backend_port):
    """sgback's h2 counters (/stats over h2c), or {}."""
    try:
        _, _, _, body = curl_h2(backend_port, "/stats")
        return json.loads(body)
    except RUN_ERRORS:
        return {}


# ---------------------------------------------------------------- loads

def load_specs(args, tmp):
    """Path, request body and headers of each load; bodies are files."""
    unary = os.path.join(tmp, "grpc-unary.bin")
    stream = os.path.join(tmp, "grpc-stream.bin")
    with open(unary, "wb") as f:
        f.write(GRPC_MESSAGE)
    with open(stream, "wb") as f:
        f.write(GRPC_MESSAGE * args.stream_messages)
    specs = {
        "plain": {"title": "plain GET /", "path": "/", "body": None,
                  "headers": (), "messages": None, "start_n": 2000},
        "unary": {"title": "gRPC unary Echo", "path": "/chat.Chat/Echo",
                  "body": unary, "headers": GRPC_HEADERS, "messages": None,
                  "start_n": 2000},
        "stream": {"title": f"gRPC bidi Talk x{args.stream_messages}",
                   "path": "/chat.Chat/Talk", "body": stream,
                   "headers": GRPC_HEADERS, "messages": args.stream_messages,
                   "start_n": max(args.connections * args.streams, 20)},
    }
    return {k: specs[k] for k in args.loads}


def check_answer(port, backend_port, load):
    """One request of the load through curl: it must come from our backend,
    echo gRPC bodies; returns (grpc-status text or None, body length)."""
    body = None
    if load["body"]:
        with open(load["body"], "rb") as f:
            body = f.read()
    status, head, trailers, got = curl_h2(port, load["path"], body,
                                          load["headers"])
    where = f"{load['path']} on 127.0.0.1:{port}"
    if status != 200 or head.get("x-backend") != str(backend_port):
        raise RuntimeError(f"{where} answered {status} with x-backend "
                           f"{head.get('x-backend')!r}, expected 200 from "
                           f"the backend on port {backend_port}")
    if body is None:
        return None, len(got)
    if got != body:
        raise RuntimeError(f"{where}: the gRPC echo differs from the request "
                           f"({len(got)} bytes back for {len(body)})")
    code = trailers.get("grpc-status", head.get("grpc-status"))
    if code is None:
        return NO_TRAILERS, len(got)
    return ("0" if code == "0" else f"{code} (not OK)"), len(got)


# ---------------------------------------------------------------- h2load

def parse_h2load(text):
    """The numbers of one h2load report."""
    out = {}
    m = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", text)
    if not m:
        raise ValueError("no 'finished in' line in h2load output")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    out["seconds"], out["rps"] = float(m.group(1)) * scale, float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                  r"(\d+) succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", text)
    if not m:
        raise ValueError("no 'requests:' line in h2load output")
    keys = ("total", "started", "done", "succeeded", "failed", "errored",
            "timeout")
    out.update(zip(keys, map(int, m.groups())))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, "
                  r"(\d+) 5xx", text)
    out["status"] = dict(zip(("2xx", "3xx", "4xx", "5xx"),
                             map(int, m.groups()))) if m else {}
    m = re.search(r"traffic: .*?, \S+ \((\d+)\) data", text)
    out["data_bytes"] = int(m.group(1)) if m else None
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    out["request_time"] = dict(zip(("min", "max", "mean"), m.groups())) \
        if m else {}
    return out


def run_h2load(args, port, load, n):
    """One bounded h2load run: its parsed report and raw text."""
    argv = ["h2load", "-n", str(n), "-c", str(args.connections),
            "-m", str(args.streams), "-t", "1"]
    if load["body"]:
        argv += ["-d", load["body"]]
    for h in load["headers"]:
        argv += ["-H", h]
    argv.append(f"http://127.0.0.1:{port}{load['path']}")
    bound = 4 * args.duration + 60
    try:
        r = subprocess.run(argv, capture_output=True, timeout=bound,
                           preexec_fn=lambda: lib._child_setup(None))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"h2load did not finish within {bound} s")
    text = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        raise RuntimeError(f"h2load failed ({r.returncode}): "
                           f"{r.stderr.decode(errors='replace').strip()}\n"
                           f"{text}")
    res = parse_h2load(text)
    res["argv"], res["raw"] = argv, text
    return res


def calibrate(args, port, load):
    """Warm up and pick -n so that a measured run lasts about --duration s
    (--requests fixes it instead)."""
    n = load["start_n"]
    res = run_h2load(args, port, load, n)
    if args.warmup > 0:
        n = max(int(res["rps"] * args.warmup), load["start_n"])
        res = run_h2load(args, port, load, n)
    if args.requests:
        return args.requests
    step = args.connections * args.streams
    return max(step, int(res["rps"] * args.duration) // step * step)


# ---------------------------------------------------------------- runs

def start_backend(args, tmp):
    port = lib.free_port()
    child = lib.Child("sgback", [args.backend_bin, "-2", f"127.0.0.1:{port}",
                                 "-t", str(args.backend_threads), "-q"], tmp)
    lib.wait_port(port, child)
    status, head, _, _ = curl_h2(port, "/")
    if status != 200 or head.get("x-backend") != str(port):
        raise RuntimeError(f"sgback: GET / over h2c answered {status}, "
                           f"x-backend {head.get('x-backend')!r}")
    return child, port


def measure(args, port, load, n, proxy, backend, backend_port):
    """One measured h2load run with CPU deltas of proxy, backend and rest."""
    curl_h2(backend_port, "/stats/reset")
    p0 = proxy.cpu() if proxy else (0.0, [])
    b0, _ = backend.cpu()
    s0, h0 = lib.system_busy(), lib.children_cpu()
    res = run_h2load(args, port, load, n)
    s1, h1 = lib.system_busy(), lib.children_cpu()
    b1, _ = backend.cpu()
    p1 = proxy.cpu() if proxy else (0.0, [])
    if proxy and not proxy.alive():
        raise RuntimeError(f"{proxy.name} died during the run:\n"
                           f"{proxy.log_tail()}")
    if proxy and p0[1] != p1[1]:
        lib.warn(f"{proxy.name}: processes changed during the run "
                 f"({p0[1]} -> {p1[1]}): CPU time may be incomplete")
    stats = backend_stats(backend_port)
    res["proxy_cpu_s"] = p1[0] - p0[0] if proxy else None
    res["backend_cpu_s"] = b1 - b0
    res["h2load_cpu_s"] = h1 - h0
    res["other_cpu_s"] = max((s1 - s0) - (res["proxy_cpu_s"] or 0)
                             - res["backend_cpu_s"] - res["h2load_cpu_s"], 0)
    # the /stats request itself is one connection
    res["backend_conns_opened"] = stats["accepted"] - 1 \
        if "accepted" in stats else None
    res["proxy_pids"] = p1[1]
    return res


def summarize(args, run, load, body_len):
    """Per-request and per-message figures of one run."""
    done = max(run["done"], 1)
    msgs = load["messages"]
    s = {"requests": run["done"], "seconds": run["seconds"], "rps": run["rps"],
         "proxy_cpu_us_per_req": None if run["proxy_cpu_s"] is None
         else run["proxy_cpu_s"] / done * 1e6,
         "backend_cpu_us_per_req": run["backend_cpu_s"] / done * 1e6,
         "backend_conns_opened": run["backend_conns_opened"],
         "errors": (run["total"] - run["succeeded"])
         + sum(v for k, v in run["status"].items() if k != "2xx"),
         "non_2xx": run["total"] - run["status"].get("2xx", 0)}
    if msgs:
        s["msgs_per_s"] = run["done"] * msgs / run["seconds"]
        s["proxy_cpu_us_per_msg"] = None if s["proxy_cpu_us_per_req"] is None \
            else s["proxy_cpu_us_per_req"] / msgs
    want = run["done"] * body_len
    s["data_ok"] = run["data_bytes"] is None or run["data_bytes"] == want
    s["data_expected"] = want
    return s


def warn_run(name, lname, run, s):
    if s["errors"] or s["non_2xx"]:
        lib.warn(f"{name} {lname}: {s['errors']} failed requests, "
                 f"{s['non_2xx']} non-2xx: its numbers are suspect")
    if not s["data_ok"]:
        lib.warn(f"{name} {lname}: h2load received {run['data_bytes']} body "
                 f"bytes, expected {s['data_expected']}")
    busy = run["other_cpu_s"] / max(run["seconds"], 0.001)
    if busy > 0.15:
        lib.warn(f"{name} {lname}: other programs used {busy:.2f} cores "
                 "during the run: numbers are noisy, rerun on a quiet machine")


def bench_load(args, name, port, lname, load, proxy, backend, backend_port):
    grpc, body_len = check_answer(port, backend_port, load)
    if grpc and grpc != "0":
        lib.warn(f"{name} {lname}: grpc-status {grpc}")
    n = calibrate(args, port, load)
    run = measure(args, port, load, n, proxy, backend, backend_port)
    s = summarize(args, run, load, body_len)
    s["grpc_status"] = grpc
    warn_run(name, lname, run, s)
    print(f"  {name} {lname}: n={n}, {s['rps']:.0f} req/s, "
          f"{lib.fmt(s['proxy_cpu_us_per_req'], '.1f')} CPU us/req",
          file=sys.stderr)
    return {"load": lname, "path": load["path"], "n": n, "run": run,
            "summary": s}


def bench_loads(args, name, port, loads, proxy, backend, backend_port):
    """Every load through one running proxy; a failing load is recorded and
    the next one still runs."""
    out = []
    for lname, load in loads.items():
        try:
            out.append(bench_load(args, name, port, lname, load, proxy,
                                  backend, backend_port))
        except RUN_ERRORS as e:
            lib.warn(f"{name} {lname} failed: {e}")
            out.append({"load": lname, "error": str(e)})
    return out


def bench_one(args, name, spec, tmp, loads, backend, backend_port):
    """Configure, check, start, then run every load through one proxy."""
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
        result["loads"] = bench_loads(args, name, port, loads, proxy,
                                      backend, backend_port)
    finally:
        proxy.stop()
    return result


# ---------------------------------------------------------------- report

def rows_of(results):
    """(load, proxy, summary or None, error or None) in load order."""
    out = []
    for lname in ALL_LOADS:
        for r in results:
            for x in r.get("loads", []):
                if x["load"] == lname:
                    out.append((lname, r["proxy"], x.get("summary"),
                                x.get("error")))
    return out


def ratios(results):
    """{load: {"nginx"|"haproxy": {"cpu": sg/them, "rps": sg/them}}}."""
    by = {(l, p): s for l, p, s, _ in rows_of(results) if s}
    out = {}
    for lname in ALL_LOADS:
        sg = by.get((lname, "streamgate"))
        for other in ("nginx", "haproxy"):
            o = by.get((lname, other))
            if not sg or not o:
                continue
            r = out.setdefault(lname, {})[other] = {}
            if sg["proxy_cpu_us_per_req"] and o["proxy_cpu_us_per_req"]:
                r["cpu"] = sg["proxy_cpu_us_per_req"] / o["proxy_cpu_us_per_req"]
            if sg["rps"] and o["rps"]:
                r["rps"] = sg["rps"] / o["rps"]
    return out


def print_report(args, loads, results, failures, rat):
    headers = ["load", "proxy", "requests", "req/s", "CPU us/req", "M msg/s",
               "CPU ns/msg", "backend us/req", "backend conns", "errors",
               "grpc-status"]
    rows = []
    for lname, proxy, s, err in rows_of(results):
        title = loads[lname]["title"]
        if not s:
            rows.append([title, proxy, "FAILED"] + [""] * 8)
            continue
        rows.append([title, proxy, str(s["requests"]), lib.fmt(s["rps"], ".0f"),
                     lib.fmt(s["proxy_cpu_us_per_req"], ".1f"),
                     lib.fmt(s.get("msgs_per_s") and s["msgs_per_s"] / 1e6,
                             ".2f"),
                     lib.fmt(s.get("proxy_cpu_us_per_msg")
                             and s["proxy_cpu_us_per_msg"] * 1e3, ".1f"),
                     lib.fmt(s["backend_cpu_us_per_req"], ".1f"),
                     lib.fmt(s["backend_conns_opened"], "d"),
                     str(s["errors"] + s["non_2xx"])
                     + ("" if s["data_ok"] else " (bytes!)"),
                     s["grpc_status"] or "-"])
    for name in failures:
        rows.append(["(all)", name, "FAILED"] + [""] * 8)
    print(f"\nHTTP/2 h2c on both sides: h2load -c {args.connections} "
          f"-m {args.streams} -t 1, ~{args.duration} s per run, one proxy "
          f"worker/thread, upstream keepalive {args.upstream_keepalive}, "
          f"sgback -2 -t {args.backend_threads}")
    print(lib.table(headers, rows, right=range(2, len(headers) - 1)))
    print_ratios(loads, rat)
    print("CPU us/req: the proxy's CPU time (user+sys, all its processes and "
          "threads) per request (per stream for the bidi load: requests and "
          "req/s count streams); lower is better. Ratios: streamgate / other (<1: streamgate uses less CPU "
          "or serves fewer req/s).")
    for name, err in failures.items():
        print(f"\n{name} FAILED: {err}")
    for lname, proxy, s, err in rows_of(results):
        if err:
            print(f"\n{proxy} {lname} FAILED: {err}")


def print_ratios(loads, rat):
    headers = ["load", "CPU sg/nginx", "CPU sg/haproxy", "req/s sg/nginx",
               "req/s sg/haproxy"]
    rows = []
    for lname, by in rat.items():
        n, h = by.get("nginx", {}), by.get("haproxy", {})
        rows.append([loads[lname]["title"], lib.fmt(n.get("cpu"), ".2f", "x"),
                     lib.fmt(h.get("cpu"), ".2f", "x"),
                     lib.fmt(n.get("rps"), ".2f", "x"),
                     lib.fmt(h.get("rps"), ".2f", "x")])
    if rows:
        print()
        print(lib.table(headers, rows))


def write_json(args, results, failures, rat, started):
    if args.no_json:
        return None
    path = args.json or os.path.join(
        HERE, "results", f"h2-{started:%Y%m%d-%H%M%S}.json")
    return lib.write_results(path, {
        "benchmark": "h2", "started": started.isoformat(),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_before": args.loadavg_before},
        "params": {k: getattr(args, k) for k in (
            "duration", "warmup", "connections", "streams", "requests",
            "stream_messages", "backend_threads", "upstream_keepalive",
            "loads", "proxies", "direct")},
        "grpc_message_hex": GRPC_MESSAGE.hex(),
        "tools": {"h2load": lib.tool_version(["h2load", "--version"]),
                  "curl": lib.tool_version(["curl", "--version"]),
                  "backend": args.backend_bin},
        "results": results, "failures": failures, "ratios": rat,
    })


# ---------------------------------------------------------------- main

def parse_args(argv):
    build = os.environ.get("SG_BUILD", "build")
    ap = argparse.ArgumentParser(
        description="HTTP/2 benchmark (h2c both sides, plain requests, gRPC "
        "unary, gRPC bidi streams): streamgate, nginx, HAProxy behind the "
        "same sgback backend (see bench/README.md).")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: ~3 s runs, 1 s warm-up")
    ap.add_argument("-d", "--duration", type=int, default=10,
                    help="seconds a measured run should last: h2load's -n is "
                    "calibrated in the warm-up (default 10)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of warm-up per load (default 2)")
    ap.add_argument("-n", "--requests", type=int, default=0,
                    help="fixed h2load -n for every run (no calibration)")
    ap.add_argument("-c", "--connections", type=int, default=10,
                    help="h2load clients (-c, default 10)")
    ap.add_argument("-m", "--streams", type=int, default=10,
                    help="h2load concurrent streams per client (-m, default 10)")
    ap.add_argument("--stream-messages", type=int, default=1000,
                    help="gRPC messages per bidi stream (default 1000)")
    ap.add_argument("--loads", default=",".join(ALL_LOADS),
                    help="comma-separated subset of plain,unary,stream")
    ap.add_argument("--proxies", default=",".join(lib.ALL_PROXIES),
                    help="comma-separated subset of streamgate,nginx,haproxy "
                    "(run in that order)")
    ap.add_argument("--direct", action="store_true",
                    help="also run h2load straight at the backend (the ceiling)")
    ap.add_argument("--build", default=build,
                    help=f"build folder (default $SG_BUILD or build: {build})")
    ap.add_argument("--streamgate-bin", help="default BUILD/streamgate")
    ap.add_argument("--backend-bin", help="default BUILD/sgback")
    ap.add_argument("--backend-threads", type=int, default=1)
    ap.add_argument("--upstream-keepalive", type=int, default=16,
                    help="idle upstream connections kept by streamgate and "
                    "nginx (`keepalive N;`, default 16)")
    ap.add_argument("--skip-missing", action="store_true",
                    help="run the proxies that are installed, skip the others")
    ap.add_argument("--json", help="results file (default "
                    "bench/results/h2-DATE.json)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp folder (configs, logs) for inspection")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    args.proxies = lib.parse_proxies(ap, args.proxies)
    args.loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    if not args.loads or any(x not in ALL_LOADS for x in args.loads):
        ap.error(f"--loads: choose from {', '.join(ALL_LOADS)}")
    build = lib.build_dir(args.build, ROOT)
    args.streamgate_bin = args.streamgate_bin or os.path.join(build, "streamgate")
    args.backend_bin = args.backend_bin or os.path.join(build, "sgback")
    if min(args.duration, args.connections, args.streams,
           args.stream_messages, args.backend_threads) < 1 \
            or args.warmup < 0 or args.requests < 0:
        ap.error("durations and counts must be positive")
    return args


def main(argv):
    args = parse_args(argv)
    check_tools(args)
    lib.install_cleanup()
    started = datetime.datetime.now()
    args.loadavg_before = lib.warn_load("other programs will skew the numbers")
    tmp = tempfile.mkdtemp(prefix="sgbench-h2-")
    results, failures = [], {}
    try:
        loads = load_specs(args, tmp)
        backend, backend_port = start_backend(args, tmp)
        print(f"bench: sgback -2 on 127.0.0.1:{backend_port}, temp folder "
              f"{tmp}", file=sys.stderr)
        if args.direct:
            results.append({"proxy": "(direct)", "loads": bench_loads(
                args, "(direct)", backend_port, loads, None, backend,
                backend_port)})
        lib.bench_each(proxy_specs(args, tmp), lambda name, spec: bench_one(
            args, name, spec, tmp, loads, backend, backend_port),
            results, failures, RUN_ERRORS)
        backend.stop()
    except RuntimeError as e:
        lib.die(str(e))
    finally:
        lib.stop_all()
        lib.remove_tmp(tmp, args.keep_tmp)
    rat = ratios(results)
    print_report(args, loads, results, failures, rat)
    path = write_json(args, results, failures, rat, started)
    if path:
        print(f"\nresults: {os.path.relpath(path)}")
    failed = failures or any(e for _, _, _, e in rows_of(results))
    return 1 if failed else 0


if __name__ == "__main__":
    lib.run_main(main)
