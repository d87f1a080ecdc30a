#!/usr/bin/python3
"""limit_req benchmark: the CPU per request that `limit_req` on one zone
keyed by a header with 100,000 distinct keys adds, streamgate vs nginx.

One sgback backend; each proxy in turn (only one running at a time), one
worker, HTTP/1.1 keep-alive on both sides; wrk sends `X-Key: N` with N
cycling over --keys values (a Lua script), first to a location without
limits, then to one with `limit_req zone=k burst=...` (a zone large
enough for every key, and a rate no key reaches: every request passes,
so both locations do the same proxying work). The proxy's CPU time (all
its processes and threads, /proc/PID/stat) is read around each run.

    /usr/bin/python3 bench/limit_req.py [--quick] [-d SECONDS] [--keys N]
    bench/run limit_req [...]

Prints, per proxy, CPU us/req without and with limit_req, the difference
(what limit_req costs) and the ratio; then streamgate's figures against
nginx's. A benchmark, not a test: it never runs in CI.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import shutil

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROXIES = ("streamgate", "nginx")
fmt = lib.fmt

# The same http{} for both proxies; nginx adds its temp paths and workers.
HTTP = """
    access_log off;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    # every key fits (nginx: about 8,000 one-address states per MB; a key
    # here is at most 6 bytes): no state is evicted during the run
    limit_req_zone $http_x_key zone=k:@ZONE@m rate=1000r/s;

    upstream backend {
        server 127.0.0.1:@BACKEND_PORT@;
        keepalive 32;
        keepalive_timeout 60s;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /limited {
            limit_req zone=k burst=100 nodelay;
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
"""

CONFS = {
    "streamgate": """worker_processes 1;
pid @TMP@/streamgate.pid;
error_log @TMP@/streamgate-error.log warn;
events {}
http {""" + HTTP + "}\n",
    "nginx": """daemon off;
master_process on;
worker_processes 1;
pid @TMP@/nginx.pid;
error_log @TMP@/nginx-error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path @TMP@/nginx-body;
    proxy_temp_path @TMP@/nginx-proxy;
    fastcgi_temp_path @TMP@/nginx-fastcgi;
    uwsgi_temp_path @TMP@/nginx-uwsgi;
    scgi_temp_path @TMP@/nginx-scgi;
""" + HTTP + "}\n",
}

LUA = """-- X-Key cycles over @KEYS@ values (each wrk thread from its own offset)
local n = math.random(0, @KEYS@ - 1)
request = function()
    n = (n + 1) % @KEYS@
    return wrk.format(nil, nil, { ["X-Key"] = tostring(n) })
end
"""


def specs(args, tmp):
    sg = args.streamgate_bin
    return {
        "streamgate": {
            "check": lambda c: [sg, "-t", "-c", c, "-p", tmp],
            "run": lambda c: [sg, "-c", c, "-p", tmp],
            "version": [sg, "-v"],
        },
        "nginx": {
            "check": lambda c: ["nginx", "-t", "-q", "-p", tmp, "-c", c, "-e", f"{tmp}/nginx-error.log"],
            "run": lambda c: ["nginx", "-p", tmp, "-c", c, "-e", f"{tmp}/nginx-error.log"],
            "version": ["nginx", "-v"],
        },
    }


def fill(text, values):
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    return text


def measure(args, url, proxy, script):
    p0 = proxy.cpu()
    res = lib.run_wrk(url, args.threads, args.connections, args.duration, extra=["-s", script])
    p1 = proxy.cpu()
    if not proxy.alive():
        raise RuntimeError(f"{proxy.name} died during the run:\n{proxy.log_tail()}")
    n = max(res["requests"], 1)
    bad = res["non_2xx_3xx"] + sum(res["socket_errors"].values())
    if bad:
        lib.warn(f"{proxy.name} {url}: {bad} errors or non-2xx responses: its numbers are suspect")
    return {"requests": res["requests"], "rps": res["rps"], "errors": bad,
            "cpu_us_per_req": (p1[0] - p0[0]) / n * 1e6}


def bench_one(args, name, spec, tmp, backend_port, script):
    port = lib.free_port()
    conf = os.path.join(tmp, f"{name}.conf")
    zone_mb = max(1, args.keys * 128 // (1 << 20) + 2)
    with open(conf, "w") as f:
        f.write(fill(CONFS[name], {"TMP": tmp, "PORT": port, "BACKEND_PORT": backend_port, "ZONE": zone_mb}))
    proxy = lib.start_proxy(name, spec, conf, tmp)
    try:
        lib.wait_port(port, proxy)
        lib.verify_backend(port, backend_port, name)
        out = {"proxy": name, "version": lib.tool_version(spec["version"])}
        for label, path in (("plain", "/"), ("limit_req", "/limited")):
            url = f"http://127.0.0.1:{port}{path}"
            if args.warmup:
                lib.run_wrk(url, args.threads, args.connections, args.warmup, extra=["-s", script])
            out[label] = measure(args, url, proxy, script)
            print(f"  {name} {label}: {out[label]['rps']:.0f} req/s, "
                  f"{out[label]['cpu_us_per_req']:.2f} CPU us/req", file=sys.stderr)
    finally:
        proxy.stop()
    return out


def report(args, results):
    headers = ["proxy", "plain us/req", "limit_req us/req", "added us/req", "limit/plain"]
    rows = []
    for r in results:
        a, b = r["plain"]["cpu_us_per_req"], r["limit_req"]["cpu_us_per_req"]
        r["added_us"], r["ratio"] = b - a, (b / a if a else None)
        rows.append([r["proxy"], fmt(a, ".2f"), fmt(b, ".2f"), fmt(b - a, ".2f"), fmt(r["ratio"], ".3f", "x")])
    print(f"\nlimit_req on one zone keyed by X-Key ({args.keys} keys), GET through one proxy worker: "
          f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s")
    print(lib.table(headers, rows))
    by = {r["proxy"]: r for r in results}
    if "streamgate" in by and "nginx" in by:
        sg, ng = by["streamgate"], by["nginx"]
        for label in ("plain", "limit_req"):
            s, n = sg[label]["cpu_us_per_req"], ng[label]["cpu_us_per_req"]
            print(f"{label}: streamgate / nginx CPU per request = {s / n:.3f}" if n else f"{label}: -")
        if ng["added_us"] > 0:
            print(f"added by limit_req: streamgate / nginx = {sg['added_us'] / ng['added_us']:.3f}")
    print("CPU us/req: the proxy's CPU time (user+sys, all processes and threads) per request; lower is better.")


def parse_args(argv):
    build = os.environ.get("SG_BUILD", "build")
    ap = argparse.ArgumentParser(description="limit_req CPU cost: streamgate vs nginx (see the docstring).")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 s runs, no warm-up")
    ap.add_argument("-d", "--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (default 2)")
    ap.add_argument("-t", "--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("-c", "--connections", type=int, default=50, help="wrk connections (default 50)")
    ap.add_argument("--keys", type=int, default=100000, help="distinct X-Key values (default 100000)")
    ap.add_argument("--proxies", default=",".join(PROXIES), help="streamgate,nginx or one of them")
    ap.add_argument("--build", default=build, help=f"build folder (default $SG_BUILD or build: {build})")
    ap.add_argument("--json", help="results file (default bench/results/limit_req-DATE.json)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2, 0
    args.proxies = [p for p in args.proxies.split(",") if p]
    if any(p not in PROXIES for p in args.proxies) or not args.proxies:
        ap.error("--proxies: streamgate and/or nginx")
    if min(args.duration, args.threads, args.connections, args.keys) < 1 or args.warmup < 0:
        ap.error("durations and counts must be positive")
    b = lib.build_dir(args.build, ROOT)
    args.streamgate_bin = os.path.join(b, "streamgate")
    args.backend_bin = os.path.join(b, "sgback")
    return args


def main(argv):
    args = parse_args(argv)
    missing = [m for m in (lib.proxy_missing(p, args.streamgate_bin) for p in args.proxies) if m]
    if not shutil.which("wrk"):
        missing.append("wrk (bash scripts/install-deps.sh bench)")
    if not os.access(args.backend_bin, os.X_OK):
        missing.append(f"sgback: {args.backend_bin} (build it with `make`)")
    if missing:
        lib.print_missing(missing)
        return 2
    lib.install_cleanup()
    started = datetime.datetime.now()
    load = lib.warn_load("other programs will skew the numbers")
    tmp = tempfile.mkdtemp(prefix="sgbench-limit-")
    results, failures = [], {}
    try:
        script = os.path.join(tmp, "keys.lua")
        with open(script, "w") as f:
            f.write(fill(LUA, {"KEYS": args.keys}))
        bport = lib.free_port()
        backend = lib.Child("sgback", [args.backend_bin, "-l", f"127.0.0.1:{bport}", "-t", "1", "-q"], tmp)
        lib.wait_port(bport, backend)
        lib.verify_backend(bport, bport, "sgback")
        sp = specs(args, tmp)
        lib.bench_each({p: sp[p] for p in args.proxies},
                       lambda name, spec: bench_one(args, name, spec, tmp, bport, script),
                       results, failures, (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired))
        backend.stop()
    finally:
        lib.stop_all()
        lib.remove_tmp(tmp, args.keep_tmp)
    report(args, results)
    for name, err in failures.items():
        print(f"\n{name} FAILED: {err}")
    if not args.no_json:
        path = args.json or os.path.join(HERE, "results", f"limit_req-{started:%Y%m%d-%H%M%S}.json")
        lib.write_results(path, {
            "benchmark": "limit_req", "started": started.isoformat(),
            "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "loadavg_before": load},
            "params": {k: getattr(args, k) for k in ("duration", "warmup", "threads", "connections", "keys", "proxies")},
            "results": results, "failures": failures})
        print(f"\nresults: {os.path.relpath(path)}")
    return 1 if failures else 0


if __name__ == "__main__":
    lib.run_main(main)
