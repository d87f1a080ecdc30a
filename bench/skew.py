#!/usr/bin/python3
"""Skewed-latency benchmark: how balancing methods cope with one slow backend.

Three sgback backends, two answering after --fast ms and one after --slow ms
(10x slower by default); wrk keeps a bounded keep-alive load on each
configuration in turn (one proxy running at a time):

    streamgate round robin, least_conn, random two least_conn,
    least_time header; nginx least_conn; HAProxy leastconn.

For each: throughput, p50/p99 latency, the slow backend's share of the
requests (its /stats), and ratios against nginx and HAProxy. The latency skew
dominates these numbers, not the proxies' CPU.

    /usr/bin/python3 bench/skew.py [--quick] [-d SECONDS] [-c CONNECTIONS] ...
    bench/run skew [...]

A benchmark, not a test: it never runs in CI (bench/README.md).
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import h1_keepalive  # noqa: E402  (proxy specs and tool checks)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
fmt = lib.fmt

# (label, proxy, balancing method line for streamgate's template)
CONFIGS = [
    ("streamgate round robin", "streamgate", ""),
    ("streamgate least_conn", "streamgate", "least_conn;"),
    ("streamgate random two least_conn", "streamgate", "random two least_conn;"),
    ("streamgate least_time header", "streamgate", "least_time header;"),
    ("nginx least_conn", "nginx", None),
    ("haproxy leastconn", "haproxy", None),
]
TEMPLATES = {"streamgate": "skew-streamgate.conf.tmpl",
             "nginx": "skew-nginx.conf.tmpl", "haproxy": "skew-haproxy.cfg.tmpl"}


def start_backends(args, tmp):
    """{"fast1": (child, port), "fast2": ..., "slow": ...}"""
    out = {}
    for name, delay in (("fast1", args.fast), ("fast2", args.fast), ("slow", args.slow)):
        port = lib.free_port()
        child = lib.Child(f"sgback-{name}",
                          [args.backend_bin, "-l", f"127.0.0.1:{port}",
                           "-d", str(delay), "-q"], tmp)
        lib.wait_port(port, child)
        lib.verify_backend(port, port, f"sgback-{name}")
        out[name] = (child, port)
    return out


def backend_requests(backends):
    """Requests each backend answered since its last /stats/reset (the
    /stats request itself excluded)."""
    out = {}
    for name, (_, port) in backends.items():
        stats = lib.http_json(port, "/stats") or {}
        out[name] = stats["requests"] - 1 if "requests" in stats else None
    return out


def bench_config(args, label, proxy_name, method, spec, tmp, backends):
    port = lib.free_port()
    conf = os.path.join(tmp, spec["conf"])
    values = {"TMP": tmp, "PORT": port,
              "FAST1": backends["fast1"][1], "FAST2": backends["fast2"][1],
              "SLOW": backends["slow"][1]}
    if proxy_name == "streamgate":
        values["METHOD"] = method
    text = lib.render(os.path.join(HERE, "conf", TEMPLATES[proxy_name]), conf, values)
    result = {"config": label, "proxy": proxy_name, "port": port,
              "conf_text": text, "version": lib.tool_version(spec["version"])}
    proxy = lib.start_proxy(proxy_name, spec, conf, tmp)
    try:
        lib.wait_port(port, proxy)
        url = f"http://127.0.0.1:{port}/"
        if args.warmup > 0:
            lib.run_wrk(url, args.threads, args.connections, args.warmup)
        for _, bport in backends.values():
            lib.http_get(bport, "/stats/reset")
        res = lib.run_wrk(url, args.threads, args.connections, args.duration)
        if not proxy.alive():
            raise RuntimeError(f"{label} died during the run:\n{proxy.log_tail()}")
    finally:
        proxy.stop()
    served = backend_requests(backends)
    total = sum(v for v in served.values() if v)
    result.update({
        "rps": res["rps"], "requests": res["requests"], "seconds": res["seconds"],
        "latency_ms": res["latency_ms"], "backend_requests": served,
        "slow_share": served["slow"] / total if total and served["slow"] is not None else None,
        "errors": sum(res["socket_errors"].values()) + res["non_2xx_3xx"],
        "wrk_output": res["raw"]})
    print(f"  {label}: {res['rps']:.0f} req/s, p99 "
          f"{res['latency_ms'].get('p99', float('nan')):.1f} ms", file=sys.stderr)
    return result


def add_ratios(results):
    ref = {r["proxy"]: r for r in results if r["proxy"] in ("nginx", "haproxy")}
    for r in results:
        for name, other in ref.items():
            if r["rps"] and other["rps"]:
                r[f"rps_vs_{name}"] = r["rps"] / other["rps"]
            p, q = r["latency_ms"].get("p99"), other["latency_ms"].get("p99")
            if p and q:
                r[f"p99_vs_{name}"] = p / q


def print_report(args, results, failures):
    headers = ["configuration", "req/s", "p50 ms", "p99 ms", "slow share",
               "req/s vs nginx", "p99 vs nginx", "req/s vs HAProxy",
               "p99 vs HAProxy", "errors"]
    rows = []
    for r in results:
        lat = r["latency_ms"]
        rows.append([r["config"], fmt(r["rps"], ".0f"), fmt(lat.get("p50"), ".2f"),
                     fmt(lat.get("p99"), ".2f"), fmt(r["slow_share"] and r["slow_share"] * 100, ".1f", "%"),
                     fmt(r.get("rps_vs_nginx"), ".2f", "x"),
                     fmt(r.get("p99_vs_nginx"), ".2f", "x"),
                     fmt(r.get("rps_vs_haproxy"), ".2f", "x"),
                     fmt(r.get("p99_vs_haproxy"), ".2f", "x"), str(r["errors"])])
    for label, err in failures.items():
        rows.append([label, "FAILED"] + [""] * (len(headers) - 2))
    print(f"\nSkewed latency, GET /: backends answer after {args.fast}, {args.fast} "
          f"and {args.slow} ms; wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration}s (warm-up {args.warmup}s), one proxy worker, "
          "upstream keepalive 64")
    print(lib.table(headers, rows, right=range(1, len(headers))))
    print("slow share: the slow backend's part of the requests (1/3 = blind to "
          "latency). Ratios: that configuration's number divided by nginx "
          "least_conn's / HAProxy leastconn's (req/s >1 and p99 <1 are better).")
    for label, err in failures.items():
        print(f"\n{label} FAILED: {err}")


def parse_args(argv):
    build = os.environ.get("SG_BUILD", "build")
    ap = argparse.ArgumentParser(description="Skewed-latency benchmark: "
                                 "balancing methods with one slow backend "
                                 "(see bench/README.md).")
    ap.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-up")
    ap.add_argument("-d", "--duration", type=int, default=10,
                    help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds (default 2)")
    ap.add_argument("-t", "--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("-c", "--connections", type=int, default=16,
                    help="wrk connections (default 16)")
    ap.add_argument("--fast", type=int, default=5, help="fast backends' delay, ms")
    ap.add_argument("--slow", type=int, default=50, help="slow backend's delay, ms")
    ap.add_argument("--proxies", default=",".join(lib.ALL_PROXIES),
                    help="subset of streamgate,nginx,haproxy")
    ap.add_argument("--build", default=build)
    ap.add_argument("--streamgate-bin")
    ap.add_argument("--backend-bin")
    ap.add_argument("--skip-missing", action="store_true")
    ap.add_argument("--json", help="default bench/results/skew-DATE.json")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    args.proxies = lib.parse_proxies(ap, args.proxies)
    build = lib.build_dir(args.build, ROOT)
    args.streamgate_bin = args.streamgate_bin or os.path.join(build, "streamgate")
    args.backend_bin = args.backend_bin or os.path.join(build, "sgback")
    if min(args.duration, args.threads, args.connections, args.fast, args.slow) < 1 \
            or args.warmup < 0:
        ap.error("durations, delays and counts must be positive")
    return args


def main(argv):
    args = parse_args(argv)
    h1_keepalive.check_tools(args)
    lib.install_cleanup()
    started = datetime.datetime.now()
    loadavg = lib.warn_load("other programs will skew the numbers")
    tmp = tempfile.mkdtemp(prefix="sgbench-skew-")
    specs = h1_keepalive.proxy_specs(args, tmp)
    results, failures = [], {}
    try:
        backends = start_backends(args, tmp)
        for label, proxy_name, method in CONFIGS:
            if proxy_name not in specs:
                continue
            print(f"bench: {label} ...", file=sys.stderr)
            try:
                results.append(bench_config(args, label, proxy_name, method,
                                            specs[proxy_name], tmp, backends))
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
                failures[label] = str(e)
                lib.warn(f"{label} failed: {e}")
        for child, _ in backends.values():
            child.stop()
    except RuntimeError as e:
        lib.die(str(e))
    finally:
        lib.stop_all()
        lib.remove_tmp(tmp, args.keep_tmp)
    add_ratios(results)
    print_report(args, results, failures)
    if not args.no_json:
        path = args.json or os.path.join(
            HERE, "results", f"skew-{started:%Y%m%d-%H%M%S}.json")
        lib.write_results(path, {
            "benchmark": "skew", "started": started.isoformat(),
            "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                     "loadavg_before": loadavg},
            "params": {k: getattr(args, k) for k in (
                "duration", "warmup", "threads", "connections", "fast", "slow",
                "proxies")},
            "tools": {"wrk": lib.tool_version(["wrk", "-v"])},
            "results": results, "failures": failures})
        print(f"\nresults: {os.path.relpath(path)}")
    return 1 if failures else 0


if __name__ == "__main__":
    lib.run_main(main)
