#!/usr/bin/python3
"""Idle-WebSocket benchmark: memory per idle proxied WebSocket, streamgate vs
nginx vs HAProxy.

One WebSocket echo backend (sgback's /ws/echo when sgback has it, else
`wsload --serve`); each proxy in turn (one at a time, one worker/thread) on
its own loopback port; build/wsload opens N WebSockets through it at a bounded
rate, holds them idle, samples the proxy's memory (PSS from
/proc/PID/smaps_rollup of all its processes) and the kernel's (slab, TCP
buffers) before and after, then times one echo per connection and closes them.

    /usr/bin/python3 bench/ws_idle.py [--quick] [--proxies a,b] ...
    bench/run ws [...]

See bench/README.md for how to read the numbers. A benchmark, not a test:
it never runs in CI.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALL_PROXIES = lib.ALL_PROXIES
fmt = lib.fmt
GIB = 1 << 30


# ---------------------------------------------------------------- proxies

def proxy_specs(args, tmp):
    """How to configure, check and start each proxy. conf = generated file."""
    sg = args.streamgate_bin
    nginx_common = ["-p", tmp, "-e", f"{tmp}/nginx-error.log",
                    "-g", "daemon off;"]
    specs = {
        "streamgate": {
            "binary": sg, "template": "ws-streamgate.conf.tmpl",
            "conf": "ws-streamgate.conf",
            "check": lambda c: [sg, "-t", "-c", c, "-p", tmp],
            "run": lambda c: [sg, "-c", c, "-p", tmp],
            "version": [sg, "-v"],
        },
        "nginx": {
            "binary": "nginx", "template": "ws-nginx.conf.tmpl",
            "conf": "ws-nginx.conf",
            # -e: nginx otherwise opens its compiled-in error log first.
            "check": lambda c: ["nginx", "-t", "-q", "-c", c, *nginx_common],
            "run": lambda c: ["nginx", "-c", c, *nginx_common],
            "version": ["nginx", "-v"],
        },
        "haproxy": {
            "binary": "haproxy", "template": "ws-haproxy.cfg.tmpl",
            "conf": "ws-haproxy.cfg",
            "check": lambda c: ["haproxy", "-c", "-q", "-f", c],
            # -db: foreground, no daemon, single process.
            "run": lambda c: ["haproxy", "-f", c, "-db"],
            "version": ["haproxy", "-v"],
        },
    }
    return {p: specs[p] for p in args.proxies}


def sgback_has_ws():
    """Whether sgback's sources serve /ws/echo (another change adds it)."""
    for path in glob.glob(os.path.join(ROOT, "tools", "sgback", "*.c")):
        with open(path, errors="replace") as f:
            if "ws/echo" in f.read():
                return True
    return False


def pick_backend(args):
    args.backend_auto = args.backend == "auto"
    if args.backend == "auto":
        args.backend = "sgback" if sgback_has_ws() and \
            os.access(args.backend_bin, os.X_OK) else "wsload"
    elif args.backend == "sgback" and not sgback_has_ws():
        lib.die("sgback has no /ws/echo yet (tools/sgback/*.c): "
                "use --backend wsload")


def check_tools(args):
    """Everything missing, with how to get it; exits when something is."""
    missing = []
    if not os.access(args.wsload_bin, os.X_OK):
        missing.append(f"wsload: {args.wsload_bin} (build it with `make`)")
    if args.backend == "sgback" and not os.access(args.backend_bin, os.X_OK):
        missing.append(f"sgback: {args.backend_bin} (build it with `make`)")
    skippable = []
    for p in args.proxies:
        why = lib.proxy_missing(p, args.streamgate_bin)
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


def check_fd_limit(args):
    """The proxy holds 2 fds per WebSocket; the limit is given, never raised."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    args.fd_limit = soft
    need = 2 * args.connections + 200
    if soft != resource.RLIM_INFINITY and need > soft:
        lib.die(f"-n {args.connections}: a proxy needs about {need} open "
                f"files (2 per WebSocket), the limit is {soft}; use -n "
                f"{(soft - 200) // 2} or less")


# ---------------------------------------------------------------- runs

def start_backend(args, tmp):
    """The echo backend, verified; auto falls back from sgback to wsload
    (sgback's sources may have /ws/echo while build/sgback is older)."""
    try:
        return start_backend_once(args, tmp)
    except RuntimeError as e:
        if not (args.backend_auto and args.backend == "sgback"):
            raise
        lib.warn(f"{e}; using `wsload --serve` (rebuild sgback with `make`)")
        lib.stop_all()
        args.backend = "wsload"
        return start_backend_once(args, tmp)


def start_backend_once(args, tmp):
    port = lib.free_port()
    if args.backend == "sgback":
        argv = [args.backend_bin, "-l", f"127.0.0.1:{port}", "-t", "1", "-q"]
    else:
        argv = [args.wsload_bin, "--serve", f"127.0.0.1:{port}"]
    child = lib.Child("backend", argv, tmp)
    lib.wait_port(port, child)
    lib.verify_backend(port, port, "backend")
    why = verify_ws(args, port, "backend")
    if why:
        raise RuntimeError(f"one WebSocket to the backend ({args.backend}) "
                           f"failed: {why}")
    return child, port


def run_wsload(args, port, n, idle, pids, quiet=False):
    """One wsload run (bounded); its parsed JSON line. stderr shows through."""
    argv = [args.wsload_bin, "-n", str(n), "-r", str(args.rate),
            "-c", str(args.inflight), "-i", str(idle),
            "-e", str(args.echo_rate), "-s", str(args.msg_size),
            "-T", str(args.timeout)]
    for pid in pids:
        argv += ["-p", str(pid)]
    if quiet:
        argv.append("-q")
    argv += [f"127.0.0.1:{port}", args.path]
    paced = 2 * n / args.rate if args.rate else 0
    paced += 2 * n / args.echo_rate if args.echo_rate else 0
    bound = paced + idle + 5 * args.timeout + 90  # above wsload's own watchdog
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, timeout=bound)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wsload did not finish within {bound:.0f} s")
    lines = r.stdout.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"wsload ({r.returncode}) printed no JSON line: "
                           f"{' '.join(argv)}")


def verify_ws(args, port, name):
    """One WebSocket through the path; None when fine, else why not."""
    res = run_wsload(args, port, 1, 0, [], quiet=True)
    if res["opened"] == 1 and res["echo"]["ok"] == 1:
        return None
    return res["first_error"] or "echo failed"


def worker_connections(args):
    """As high as the open-files limit allows, as one would configure nginx
    for many WebSockets: 2N + 100 is not enough for nginx (it ran out at
    1000 WebSockets with 2100). Preallocated at start, so not in the delta."""
    if args.fd_limit == resource.RLIM_INFINITY:
        return 2 * args.connections + 2000
    return max(args.fd_limit - 100, 2 * args.connections + 100)


def measured_run(args, port, proxy, backend):
    """The big wsload run, with the CPU time of the proxy, the backend, wsload
    and everything else on the machine over it (from /proc)."""
    p0, pids0 = proxy.cpu() if proxy else (0.0, [])
    b0, bpids = backend.cpu()
    s0, w0 = lib.system_busy(), lib.children_cpu()
    t0 = time.monotonic()
    res = run_wsload(args, port, args.connections, args.idle,
                     pids0 if proxy else bpids)
    secs = time.monotonic() - t0
    s1, w1 = lib.system_busy(), lib.children_cpu()
    b1, _ = backend.cpu()
    p1, pids1 = proxy.cpu() if proxy else (0.0, [])
    if proxy and pids0 != pids1:
        lib.warn(f"{proxy.name}: processes changed during the run "
                 f"({pids0} -> {pids1}): memory may be incomplete")
    cpu = {"seconds": secs, "proxy_s": p1 - p0, "backend_s": b1 - b0,
           "wsload_s": w1 - w0}
    cpu["other_cores"] = max(0.0, (s1 - s0) - cpu["proxy_s"] - cpu["backend_s"]
                             - cpu["wsload_s"]) / max(secs, 0.001)
    res["cpu"] = cpu
    return res, pids0


def bench_one(args, name, spec, tmp, backend, backend_port):
    """Configure, check, start, verify, measure, stop one proxy."""
    port = lib.free_port()
    conf = os.path.join(tmp, spec["conf"])
    text = lib.render(os.path.join(HERE, "conf", spec["template"]), conf, {
        "TMP": tmp, "PORT": port, "BACKEND_PORT": backend_port,
        "WORKER_CONNECTIONS": worker_connections(args),
        "MAXCONN": args.connections + 50})
    result = {"proxy": name, "port": port, "config": text,
              "version": lib.tool_version(spec["version"]), "status": "ok"}
    proxy = lib.start_proxy(name, spec, conf, tmp)
    try:
        lib.wait_port(port, proxy)
        lib.verify_backend(port, backend_port, name)
        why = verify_ws(args, port, name)
        if why:
            # streamgate without WebSocket support yet answers 502: a pending
            # row, not a failed benchmark.
            result["status"] = "pending" if name == "streamgate" else "failed"
            result["error"] = f"one WebSocket through {name} failed: {why}"
            if result["status"] == "failed":
                raise RuntimeError(result["error"])
            lib.warn(result["error"])
            return result
        res, pids = measured_run(args, port, proxy, backend)
        if not proxy.alive():
            raise RuntimeError(f"{name} died during the run:\n"
                               f"{proxy.log_tail()}")
        result["pids"] = pids
        result["wsload"] = res
    finally:
        proxy.stop()
    return result


def bench_direct(args, backend, backend_port):
    """wsload straight at the backend: the kernel cost without a proxy."""
    res, _ = measured_run(args, backend_port, None, backend)
    return {"proxy": "(direct)", "port": backend_port, "status": "ok",
            "wsload": res}


# ---------------------------------------------------------------- report

def summarize(args, result):
    """Per-connection figures of one run (bytes), None where unmeasurable."""
    w = result.get("wsload")
    if not w:
        result["summary"] = None
        return None
    k = w["kernel"]
    raw = k["bytes_per_socket"] if k["bytes_per_socket"] >= 0 else None
    s = {
        "n": w["n"], "opened": w["opened"], "open_at_sample": w["open_at_sample"],
        "echo_ok": w["echo"]["ok"], "dropped_idle": w["dropped_idle"],
        "user_b": w["pss_bytes_per_conn"] if w["pss_delta_kb"] >= 0 else None,
        "rss_b": w["rss_bytes_per_conn"] if w["rss_delta_kb"] >= 0 else None,
        "kernel_per_socket_raw_b": raw,
        "kernel_per_socket_b": raw if kernel_clean(result["proxy"], w) else None,
        "kernel_source": "measured",
        "latency_ms": w["echo"]["latency_ms"],
        "handshake_ms": w["handshake_ms"],
        "proxy_cpu_s": w["cpu"]["proxy_s"] if result["proxy"] != "(direct)"
        else w["cpu"]["backend_s"],
        "other_cores": w["cpu"]["other_cores"],
    }
    result["summary"] = s
    warn_run(result["proxy"], w)
    return s


def kernel_clean(name, w):
    """Whether the kernel growth is ours: the expected number of new sockets
    (client, proxy x2, backend) and slab growth matching the socket caches.
    (CPU used by other programs matters less: builds and tests hardly move
    the slab, socket churn is what the two checks catch.)"""
    k = w["kernel"]
    n = w["open_at_sample"]
    expect = (2 if name == "(direct)" else 4) * n
    if not n or abs(k["sockets_opened"] - expect) > 0.02 * expect + 20:
        lib.warn(f"{name}: {k['sockets_opened']} TCP sockets appeared for "
                 f"{n} WebSockets (expected {expect}): other programs open "
                 "or close sockets meanwhile, kernel figure not used")
        return False
    named = k.get("named_caches_bytes_per_socket")
    per = k["bytes_per_socket"]
    if named and named > 0 and not 0.6 < per / named < 1.6:
        lib.warn(f"{name}: slab growth per socket {per:.0f} B vs {named:.0f} B "
                 "in the socket caches: other programs use the kernel "
                 "meanwhile, kernel figure not used")
        return False
    return True


SOCKET_CACHES = ("TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi")


def object_sizes(results):
    """Lower bound of a socket's kernel cost: one object of each cache every
    epolled TCP socket has (no slab overhead, no kmalloc'd parts)."""
    for r in results:
        caches = (r.get("wsload") or {}).get("kernel", {}).get("slab_caches")
        if caches:
            return sum(caches[c]["objsize"] for c in SOCKET_CACHES
                       if c in caches) or None
    return None


def finish_summaries(args, results):
    """Kernel cost per connection and the 'on paper' figure. A row whose own
    kernel figure was disturbed borrows the median of the clean rows (a
    socket costs the kernel the same whichever proxy holds it), else the
    sum of the socket caches' object sizes."""
    clean = sorted(r["summary"]["kernel_per_socket_b"] for r in results
                   if r.get("summary") and r["summary"]["kernel_per_socket_b"])
    fallback, source = (statistics.median(clean), "median of clean runs") \
        if clean else (object_sizes(results), "socket cache object sizes")
    for r in results:
        s = r.get("summary")
        if not s:
            continue
        per_sock = s["kernel_per_socket_b"]
        if per_sock is None and fallback:
            per_sock, s["kernel_source"] = fallback, source
        direct = r["proxy"] == "(direct)"
        # A proxied WebSocket is two sockets in the proxy (client side and
        # upstream side); the direct row counts the backend's one.
        s["kernel_b"] = None if per_sock is None else \
            per_sock * (1 if direct else 2)
        s["total_b"] = None if s["user_b"] is None or s["kernel_b"] is None \
            else s["user_b"] + s["kernel_b"]
        s["on_paper"] = None if direct or not s["total_b"] or \
            s["total_b"] <= 0 else args.memory_gib * GIB / s["total_b"]


def warn_run(name, w):
    other = w["cpu"]["other_cores"]
    if other > 0.15:
        lib.warn(f"{name}: other programs used {other:.2f} cores during the "
                 "run: latencies are noisy, rerun on a quiet machine")
    if w["opened"] < w["n"] or w["echo"]["ok"] < w["opened"] \
            or w["dropped_idle"]:
        lib.warn(f"{name}: {w['opened']}/{w['n']} opened, "
                 f"{w['dropped_idle']} dropped while idle, "
                 f"{w['echo']['ok']} echoed (first error: "
                 f"{w['first_error'] or '-'}): its numbers are suspect")


def ratio(a, b):
    return a / b if a is not None and b else None


def kib(v):
    return fmt(None if v is None else v / 1024, ".1f")


def mega(v):
    return fmt(None if v is None else v / 1e6, ".2f", " M")


def print_report(args, results, failures):
    headers = ["proxy", "open", "CPU s", "user KiB/conn", "RSS KiB/conn",
               "kernel KiB/conn", "total KiB/conn", "echo p50 ms", "p90 ms",
               "p99 ms", "max ms", f"on paper ({args.memory_gib:g} GiB)"]
    rows = []
    for r in results:
        s = r.get("summary")
        if not s:
            rows.append([r["proxy"], r["status"].upper()] +
                        [""] * (len(headers) - 2))
            continue
        lat = s["latency_ms"]
        star = "" if s["kernel_source"] == "measured" else "*"
        rows.append([r["proxy"], f"{s['opened']}/{s['n']}",
                     fmt(s["proxy_cpu_s"], ".2f"), kib(s["user_b"]),
                     kib(s["rss_b"]), kib(s["kernel_b"]) + star,
                     kib(s["total_b"]) + star,
                     fmt(lat["p50"], ".3f"), fmt(lat["p90"], ".3f"),
                     fmt(lat["p99"], ".3f"), fmt(lat["max"], ".3f"),
                     mega(s["on_paper"])])
    for name in failures:
        rows.append([name, "FAILED"] + [""] * (len(headers) - 2))
    print(f"\nIdle WebSockets: {args.connections} through each proxy (one "
          f"worker), opened at {args.rate:g}/s, idle {args.idle:g} s, then one "
          f"{args.msg_size}-byte echo each at {args.echo_rate:g}/s; backend "
          f"{args.backend}{' ' + args.path}")
    print(lib.table(headers, rows))
    print("CPU s: the proxy's CPU time (user+sys, all its processes) for the "
          "whole run: handshakes, idle time, echoes, closes.")
    print("user: PSS growth of all the proxy's processes / open WebSockets "
          "(/proc/PID/smaps_rollup, before opening vs after the idle time).")
    print("kernel: (slab + TCP buffer growth) / new TCP sockets, x2 for the "
          "proxy's two sockets per WebSocket (client and upstream side).")
    print(f"on paper: idle proxied WebSockets {args.memory_gib:g} GiB would "
          "hold = memory / (user + kernel per connection); ignores fd limits, "
          "the clients and the backend.")
    sources = {r["summary"]["kernel_source"] for r in results
               if r.get("summary")} - {"measured"}
    if sources:
        print("*: that run's kernel growth was disturbed by other programs; "
              f"kernel figure = {', '.join(sorted(sources))}.")
    print_ratios(results)
    print_on_paper(args, results)
    for r in results:
        if r["status"] == "pending":
            print(f"\n{r['proxy']}: pending ({r['error']})")
    for name, err in failures.items():
        print(f"\n{name} FAILED: {err}")


def print_ratios(results):
    by = {r["proxy"]: r.get("summary") for r in results}
    sg = by.get("streamgate")
    lines = []
    for other, label in (("nginx", "nginx"), ("haproxy", "HAProxy")):
        o = by.get(other)
        if not sg or not o:
            continue
        parts = []
        for key, what in (("user_b", "user memory"), ("total_b", "user+kernel")):
            v = ratio(sg[key], o[key])
            parts.append(f"{what} {fmt(v, '.2f', 'x')}")
        v = ratio(sg["latency_ms"]["p99"], o["latency_ms"]["p99"])
        parts.append(f"echo p99 {fmt(v, '.2f', 'x')}")
        lines.append(f"streamgate/{label}: {', '.join(parts)} "
                     "(<1: streamgate uses less)")
    if lines:
        print("\n" + "\n".join(lines))
    elif "streamgate" in by:
        print("\nstreamgate/nginx, streamgate/HAProxy: - (no streamgate row)")


def print_on_paper(args, results):
    parts = [f"{r['proxy']} {mega(r['summary']['on_paper'])}"
             for r in results if r.get("summary") and r["summary"]["on_paper"]]
    if parts:
        print(f"on paper, {args.memory_gib:g} GiB would hold {', '.join(parts)}"
              " idle proxied WebSockets (memory / (user + kernel bytes per "
              "proxied connection, both sockets)).")


def write_json(args, results, failures, started):
    if args.no_json:
        return None
    path = args.json or os.path.join(
        HERE, "results", f"ws-{started:%Y%m%d-%H%M%S}.json")
    doc = {
        "benchmark": "ws_idle", "started": started.isoformat(),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_before": args.loadavg_before,
                 "fd_limit": args.fd_limit},
        "params": {k: getattr(args, k) for k in (
            "connections", "rate", "inflight", "idle", "echo_rate",
            "msg_size", "timeout", "path", "backend", "memory_gib",
            "proxies")},
        "tools": {"wsload": args.wsload_bin,
                  "backend": args.backend_bin if args.backend == "sgback"
                  else f"{args.wsload_bin} --serve"},
        "results": results, "failures": failures,
    }
    return lib.write_results(path, doc)


# ---------------------------------------------------------------- main

def parse_args(argv):
    build = os.environ.get("SG_BUILD", "build")
    ap = argparse.ArgumentParser(
        description="Idle-WebSocket benchmark: memory per idle proxied "
        "WebSocket and echo latency through streamgate, nginx, HAProxy "
        "(see bench/README.md).")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: -n 1000, 2 s idle")
    ap.add_argument("-n", "--connections", type=int, default=9000,
                    help="WebSockets per proxy (default 9000: the proxy then "
                    "holds 18000 fds, under the 20000 open-files limit)")
    ap.add_argument("--rate", type=float, default=1000,
                    help="new WebSockets per second (default 1000)")
    ap.add_argument("--inflight", type=int, default=200,
                    help="handshakes in flight at most (default 200)")
    ap.add_argument("--idle", type=float, default=10,
                    help="seconds all WebSockets stay idle before the memory "
                    "is sampled (default 10)")
    ap.add_argument("--echo-rate", type=float, default=2000,
                    help="echo messages per second (default 2000; 0 = all "
                    "at once)")
    ap.add_argument("--msg-size", type=int, default=32,
                    help="echo message bytes (default 32)")
    ap.add_argument("--timeout", type=float, default=10,
                    help="seconds for each handshake, echo and the close "
                    "(default 10)")
    ap.add_argument("--path", default="/ws/echo",
                    help="WebSocket path (default /ws/echo)")
    ap.add_argument("--proxies", default=",".join(ALL_PROXIES),
                    help="comma-separated subset of streamgate,nginx,haproxy "
                    "(run in that order)")
    ap.add_argument("--backend", choices=("auto", "sgback", "wsload"),
                    default="auto", help="echo backend: sgback (/ws/echo), "
                    "`wsload --serve`, or auto (sgback once it has /ws/echo)")
    ap.add_argument("--direct", action="store_true",
                    help="also run wsload straight at the backend (kernel "
                    "cost per socket without a proxy)")
    ap.add_argument("--memory-gib", type=float, default=24,
                    help="memory of the 'on paper' line (default 24 GiB)")
    ap.add_argument("--build", default=build,
                    help=f"build folder (default $SG_BUILD or build: {build})")
    ap.add_argument("--streamgate-bin", help="default BUILD/streamgate")
    ap.add_argument("--backend-bin", help="default BUILD/sgback")
    ap.add_argument("--wsload-bin", help="default BUILD/wsload")
    ap.add_argument("--skip-missing", action="store_true",
                    help="run the proxies that are installed, skip the others")
    ap.add_argument("--json", help="results file (default "
                    "bench/results/ws-DATE.json)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp folder (configs, logs) for inspection")
    args = ap.parse_args(argv)
    if args.quick:
        args.connections, args.idle = 1000, 2
    args.proxies = lib.parse_proxies(ap, args.proxies)
    build = lib.build_dir(args.build, ROOT)
    args.streamgate_bin = args.streamgate_bin or os.path.join(build, "streamgate")
    args.backend_bin = args.backend_bin or os.path.join(build, "sgback")
    args.wsload_bin = args.wsload_bin or os.path.join(build, "wsload")
    if min(args.connections, args.inflight, args.msg_size) < 1 \
            or min(args.rate, args.echo_rate, args.idle) < 0 \
            or args.timeout <= 0 or args.memory_gib <= 0:
        ap.error("counts must be positive, rates and durations not negative")
    return args


def main(argv):
    args = parse_args(argv)
    pick_backend(args)
    check_tools(args)
    check_fd_limit(args)
    lib.install_cleanup()
    started = datetime.datetime.now()
    args.loadavg_before = lib.warn_load(
        "other programs will make the kernel figures noisy")
    tmp = tempfile.mkdtemp(prefix="sgbench-ws-")
    results, failures = [], {}
    try:
        backend, backend_port = start_backend(args, tmp)
        print(f"bench: backend {args.backend} on 127.0.0.1:{backend_port}, "
              f"temp folder {tmp}", file=sys.stderr)
        if args.direct:
            print("bench: (direct) ...", file=sys.stderr)
            results.append(bench_direct(args, backend, backend_port))
        lib.bench_each(
            proxy_specs(args, tmp),
            lambda name, spec: bench_one(args, name, spec, tmp, backend,
                                         backend_port),
            results, failures, (RuntimeError, OSError, ValueError, KeyError,
                                subprocess.TimeoutExpired))
        backend.stop()
    except RuntimeError as e:
        lib.die(str(e))
    finally:
        lib.stop_all()
        lib.remove_tmp(tmp, args.keep_tmp)
    for r in results:
        summarize(args, r)
    finish_summaries(args, results)
    print_report(args, results, failures)
    path = write_json(args, results, failures, started)
    if path:
        print(f"\nresults: {os.path.relpath(path)}")
    return 1 if failures else 0


if __name__ == "__main__":
    lib.run_main(main)
