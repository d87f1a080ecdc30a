#!/usr/bin/python3
"""HTTP/1.1 keep-alive benchmark: streamgate vs nginx vs HAProxy.

One sgback backend; each proxy in turn (only one running at a time) on its
own loopback port with one worker, keep-alive to clients and a pool of idle
upstream connections; wrk drives it; the proxy's CPU time (all its processes
and threads, from /proc/PID/stat) is read before and after the run.

    /usr/bin/python3 bench/h1_keepalive.py [--quick] [--proxies a,b] ...
    bench/run h1 [...]

See bench/README.md for how to read the numbers. A benchmark, not a test:
it never runs in CI.
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import shutil

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALL_PROXIES = lib.ALL_PROXIES
fmt = lib.fmt


# ---------------------------------------------------------------- proxies

def proxy_specs(args, tmp):
    """How to configure, check and start each proxy. conf = generated file."""
    sg = args.streamgate_bin
    specs = {
        "streamgate": {
            "binary": sg, "template": "streamgate.conf.tmpl",
            "conf": "streamgate.conf",
            "check": lambda c: [sg, "-t", "-c", c, "-p", tmp],
            "run": lambda c: [sg, "-c", c, "-p", tmp],
            "version": [sg, "-v"],
        },
        "nginx": {
            "binary": "nginx", "template": "nginx.conf.tmpl",
            "conf": "nginx.conf",
            # -e: nginx otherwise opens its compiled-in error log first.
            "check": lambda c: ["nginx", "-t", "-q", "-p", tmp, "-c", c,
                                "-e", f"{tmp}/nginx-error.log"],
            "run": lambda c: ["nginx", "-p", tmp, "-c", c,
                              "-e", f"{tmp}/nginx-error.log"],
            "version": ["nginx", "-v"],
        },
        "haproxy": {
            "binary": "haproxy", "template": "haproxy.cfg.tmpl",
            "conf": "haproxy.cfg",
            "check": lambda c: ["haproxy", "-c", "-q", "-f", c],
            # -db: foreground, no daemon, single process.
            "run": lambda c: ["haproxy", "-db", "-f", c],
            "version": ["haproxy", "-v"],
        },
    }
    return {p: specs[p] for p in args.proxies}


def check_tools(args):
    """Everything missing, with how to get it; exits when something is."""
    missing = []
    if not shutil.which("wrk"):
        missing.append("wrk (bash scripts/install-deps.sh bench)")
    for p in args.proxies:
        why = lib.proxy_missing(p, args.streamgate_bin)
        if why:
            missing.append(why)
    if not os.access(args.backend_bin, os.X_OK):
        missing.append(f"sgback: {args.backend_bin} (build it with `make`)")
    if not missing:
        return
    lib.print_missing(missing)
    if args.skip_missing and shutil.which("wrk") \
            and os.access(args.backend_bin, os.X_OK):
        args.proxies = [p for p in args.proxies if not any(
            m.startswith(p) for m in missing)]
        if args.proxies:
            lib.warn(f"--skip-missing: running only {', '.join(args.proxies)}")
            return
    sys.exit(2)


# ---------------------------------------------------------------- runs

def start_backend(args, tmp, cpus):
    port = lib.free_port()
    child = lib.Child("sgback", [args.backend_bin, "-l", f"127.0.0.1:{port}",
                                 "-t", str(args.backend_threads), "-q"],
                      tmp, cpus=cpus)
    lib.wait_port(port, child)
    lib.verify_backend(port, port, "sgback")
    return child, port


def measure(args, url, proxy, backend, backend_port, wrk_cpus):
    """One measured wrk run with CPU deltas of proxy, backend and the rest."""
    lib.http_get(backend_port, "/stats/reset")
    p0 = proxy.cpu() if proxy else (0.0, [])
    b0, _ = backend.cpu()
    s0, w0 = lib.system_busy(), lib.children_cpu()
    res = lib.run_wrk(url, args.threads, args.connections, args.duration,
                      cpus=wrk_cpus, extra=args.wrk_arg)
    s1, w1 = lib.system_busy(), lib.children_cpu()
    b1, _ = backend.cpu()
    p1 = proxy.cpu() if proxy else (0.0, [])
    if proxy and not proxy.alive():
        raise RuntimeError(f"{proxy.name} died during the run:\n"
                           f"{proxy.log_tail()}")
    if proxy and p0[1] != p1[1]:
        lib.warn(f"{proxy.name}: processes changed during the run "
                 f"({p0[1]} -> {p1[1]}): CPU time may be incomplete")
    n = max(res["requests"], 1)
    proxy_cpu, backend_cpu, wrk_cpu = p1[0] - p0[0], b1 - b0, w1 - w0
    other = (s1 - s0) - proxy_cpu - backend_cpu - wrk_cpu
    stats = lib.http_json(backend_port, "/stats") or {}
    return {
        "requests": res["requests"], "seconds": res["seconds"],
        "rps": res["rps"], "latency_ms": res["latency_ms"],
        "socket_errors": res["socket_errors"],
        "non_2xx_3xx": res["non_2xx_3xx"],
        "proxy_cpu_s": proxy_cpu if proxy else None,
        "proxy_cpu_us_per_req": proxy_cpu / n * 1e6 if proxy else None,
        "backend_cpu_s": backend_cpu,
        "backend_cpu_us_per_req": backend_cpu / n * 1e6,
        "wrk_cpu_s": wrk_cpu,
        "other_cpu_s": max(other, 0.0),
        # the /stats request itself is one connection and one request
        "backend_conns_opened": stats["accepted"] - 1
        if "accepted" in stats else None,
        "backend_requests": stats["requests"] - 1
        if "requests" in stats else None,
        "proxy_pids": p1[1],
        "wrk_output": res["raw"],
    }


def warn_run(name, run, args):
    errs = sum(run["socket_errors"].values())
    if errs or run["non_2xx_3xx"]:
        lib.warn(f"{name}: {errs} socket errors, {run['non_2xx_3xx']} "
                 "non-2xx/3xx responses: its numbers are suspect")
    opened = run["backend_conns_opened"]
    if opened is not None and opened > 2 * args.connections:
        lib.warn(f"{name}: the backend accepted {opened} new connections "
                 f"({opened / max(run['requests'], 1):.0%} of requests) for "
                 f"{args.connections} clients: upstream connections are "
                 "closed and reopened (idle pool smaller than the "
                 "concurrency, or no upstream keep-alive)")
    busy = run["other_cpu_s"] / max(run["seconds"], 0.001)
    if busy > 0.15:
        lib.warn(f"{name}: other programs used {busy:.2f} cores during the "
                 "run: numbers are noisy, rerun on a quiet machine")


def bench_one(args, name, spec, tmp, backend, backend_port, cpus):
    """Configure, check, start, verify, warm up, measure, stop one proxy."""
    port = lib.free_port()
    conf = os.path.join(tmp, spec["conf"])
    text = lib.render(os.path.join(HERE, "conf", spec["template"]), conf,
                      {"TMP": tmp, "PORT": port, "BACKEND_PORT": backend_port,
                       "UPSTREAM_KEEPALIVE": args.upstream_keepalive})
    result = {"proxy": name, "port": port, "config": text,
              "version": lib.tool_version(spec["version"]), "runs": []}
    proxy = lib.start_proxy(name, spec, conf, tmp, cpus["proxy"])
    try:
        lib.wait_port(port, proxy)
        lib.verify_backend(port, backend_port, name)
        url = f"http://127.0.0.1:{port}{args.path}"
        if args.warmup > 0:
            lib.run_wrk(url, args.threads, args.connections, args.warmup,
                        cpus=cpus["wrk"], extra=args.wrk_arg)
        for i in range(args.repeat):
            run = measure(args, url, proxy, backend, backend_port, cpus["wrk"])
            warn_run(name, run, args)
            result["runs"].append(run)
            print(f"  {name} run {i + 1}/{args.repeat}: "
                  f"{run['rps']:.0f} req/s, "
                  f"{run['proxy_cpu_us_per_req']:.1f} CPU us/req",
                  file=sys.stderr)
    finally:
        proxy.stop()
    return result


def bench_direct(args, backend, backend_port, cpus):
    """wrk straight at the backend: the ceiling the proxies are measured under."""
    url = f"http://127.0.0.1:{backend_port}{args.path}"
    if args.warmup > 0:
        lib.run_wrk(url, args.threads, args.connections, args.warmup,
                    cpus=cpus["wrk"], extra=args.wrk_arg)
    result = {"proxy": "(direct)", "port": backend_port, "runs": []}
    for _ in range(args.repeat):
        result["runs"].append(
            measure(args, url, None, backend, backend_port, cpus["wrk"]))
    return result


# ---------------------------------------------------------------- report

def summarize(result):
    """Median of each number over the repeated runs."""
    runs = result["runs"]

    def med(key, sub=None):
        vals = [(r[key][sub] if sub else r[key]) for r in runs]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None
    s = {"rps": med("rps"), "proxy_cpu_us_per_req": med("proxy_cpu_us_per_req"),
         "backend_cpu_us_per_req": med("backend_cpu_us_per_req"),
         "backend_conns_opened": med("backend_conns_opened"),
         "errors": sum(sum(r["socket_errors"].values()) + r["non_2xx_3xx"]
                       for r in runs)}
    for p in ("p50", "p90", "p99"):
        s[p] = med("latency_ms", p) if all(
            p in r["latency_ms"] for r in runs) else None
    result["summary"] = s
    return s


def add_ratios(results):
    sg = next((r["summary"] for r in results
               if r["proxy"] == "streamgate" and r.get("summary")), None)
    for r in results:
        s = r.get("summary")
        if not s or not sg or r["proxy"] == "(direct)":
            continue
        if s["proxy_cpu_us_per_req"] and sg["proxy_cpu_us_per_req"]:
            s["cpu_ratio_vs_streamgate"] = (s["proxy_cpu_us_per_req"]
                                            / sg["proxy_cpu_us_per_req"])
        if s["rps"] and sg["rps"]:
            s["rps_ratio_vs_streamgate"] = s["rps"] / sg["rps"]


def print_report(args, results, failures):
    headers = ["proxy", "req/s", "p50 ms", "p90 ms", "p99 ms",
               "CPU us/req", "CPU vs sg", "req/s vs sg",
               "backend us/req", "backend conns", "errors"]
    rows = []
    for r in results:
        s = r["summary"]
        rows.append([r["proxy"], fmt(s["rps"], ".0f"), fmt(s["p50"], ".3f"),
                     fmt(s["p90"], ".3f"), fmt(s["p99"], ".3f"),
                     fmt(s["proxy_cpu_us_per_req"], ".1f"),
                     fmt(s.get("cpu_ratio_vs_streamgate"), ".2f", "x"),
                     fmt(s.get("rps_ratio_vs_streamgate"), ".2f", "x"),
                     fmt(s["backend_cpu_us_per_req"], ".1f"),
                     fmt(s["backend_conns_opened"], ".0f"),
                     str(s["errors"])])
    for name, err in failures.items():
        rows.append([name, "FAILED"] + [""] * (len(headers) - 2))
    reps = f", median of {args.repeat} runs" if args.repeat > 1 else ""
    print(f"\nHTTP/1.1 keep-alive, GET {args.path}: wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration}s, one proxy worker, "
          f"upstream keepalive {args.upstream_keepalive}, "
          f"sgback -t {args.backend_threads}{reps}"
          f"{', pinned' if args.pin else ''}")
    print(lib.table(headers, rows))
    print("CPU us/req: proxy CPU time (user+sys, all its processes and "
          "threads) per request; lower is better.")
    print("backend conns: new connections the backend accepted during the "
          "run (few = upstream keep-alive works).")
    print("CPU vs sg: that proxy's CPU us/req divided by streamgate's "
          "(>1: streamgate uses less CPU); req/s vs sg likewise (<1: "
          "streamgate is faster).")
    for name, err in failures.items():
        print(f"\n{name} FAILED: {err}")


def write_json(args, results, failures, started):
    if args.no_json:
        return None
    path = args.json or os.path.join(
        HERE, "results", f"h1-{started:%Y%m%d-%H%M%S}.json")
    doc = {
        "benchmark": "h1_keepalive", "started": started.isoformat(),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_before": args.loadavg_before},
        "params": {k: getattr(args, k) for k in (
            "duration", "warmup", "threads", "connections", "path",
            "repeat", "backend_threads", "upstream_keepalive", "pin", "wrk_arg", "proxies")},
        "tools": {"wrk": lib.tool_version(["wrk", "-v"]),
                  "backend": args.backend_bin},
        "results": results, "failures": failures,
    }
    return lib.write_results(path, doc)


# ---------------------------------------------------------------- main

def parse_args(argv):
    build = os.environ.get("SG_BUILD", "build")
    ap = argparse.ArgumentParser(
        description="HTTP/1.1 keep-alive benchmark: streamgate, nginx, "
        "HAProxy behind the same sgback backend (see bench/README.md).")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 3 s runs, 1 s warm-up")
    ap.add_argument("-d", "--duration", type=int, default=10,
                    help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of warm-up load before measuring (default 2)")
    ap.add_argument("-t", "--threads", type=int, default=1,
                    help="wrk threads (default 1)")
    ap.add_argument("-c", "--connections", type=int, default=50,
                    help="wrk connections (default 50)")
    ap.add_argument("--path", default="/", help="request path (default /)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measured runs per proxy; the table shows medians")
    ap.add_argument("--proxies", default=",".join(ALL_PROXIES),
                    help="comma-separated subset of streamgate,nginx,haproxy "
                    "(run in that order)")
    ap.add_argument("--direct", action="store_true",
                    help="also run wrk straight at the backend (the ceiling)")
    ap.add_argument("--pin", action="store_true",
                    help="pin the proxy to CPU 0, backend and wrk to CPU 1")
    ap.add_argument("--build", default=build,
                    help=f"build folder (default $SG_BUILD or build: {build})")
    ap.add_argument("--streamgate-bin", help="default BUILD/streamgate")
    ap.add_argument("--backend-bin", help="default BUILD/sgback")
    ap.add_argument("--backend-threads", type=int, default=1)
    ap.add_argument("--upstream-keepalive", type=int, default=32,
                    help="idle upstream connections kept by streamgate and "
                    "nginx (`keepalive N;`, default 32); HAProxy keeps all")
    ap.add_argument("--wrk-arg", action="append", default=[],
                    help="extra wrk argument (repeatable), e.g. --wrk-arg=-H "
                    "--wrk-arg='X-A: b'")
    ap.add_argument("--skip-missing", action="store_true",
                    help="run the proxies that are installed, skip the others")
    ap.add_argument("--json", help="results file (default "
                    "bench/results/h1-DATE.json)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp folder (configs, logs) for inspection")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    args.proxies = lib.parse_proxies(ap, args.proxies)
    build = lib.build_dir(args.build, ROOT)
    args.streamgate_bin = args.streamgate_bin or os.path.join(build, "streamgate")
    args.backend_bin = args.backend_bin or os.path.join(build, "sgback")
    if min(args.duration, args.threads, args.connections, args.repeat) < 1 \
            or args.warmup < 0:
        ap.error("durations, counts and --repeat must be positive")
    return args


def cpu_sets(args):
    if not args.pin:
        return {"proxy": None, "backend": None, "wrk": None}
    if (os.cpu_count() or 1) < 2:
        lib.die("--pin needs at least 2 CPUs")
    return {"proxy": {0}, "backend": {1}, "wrk": {1}}


def main(argv):
    args = parse_args(argv)
    check_tools(args)
    lib.install_cleanup()
    started = datetime.datetime.now()
    args.loadavg_before = lib.warn_load("other programs will skew the numbers")
    cpus = cpu_sets(args)
    tmp = tempfile.mkdtemp(prefix="sgbench-h1-")
    results, failures = [], {}
    try:
        backend, backend_port = start_backend(args, tmp, cpus["backend"])
        print(f"bench: sgback on 127.0.0.1:{backend_port}, temp folder {tmp}",
              file=sys.stderr)
        if args.direct:
            results.append(bench_direct(args, backend, backend_port, cpus))
        lib.bench_each(
            proxy_specs(args, tmp),
            lambda name, spec: bench_one(args, name, spec, tmp, backend,
                                         backend_port, cpus),
            results, failures,
            (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired))
        backend.stop()
    except RuntimeError as e:
        lib.die(str(e))
    finally:
        lib.stop_all()
        lib.remove_tmp(tmp, args.keep_tmp)
    for r in results:
        summarize(r)
    add_ratios(results)
    print_report(args, results, failures)
    path = write_json(args, results, failures, started)
    if path:
        print(f"\nresults: {os.path.relpath(path)}")
    return 1 if failures else 0


if __name__ == "__main__":
    lib.run_main(main)
