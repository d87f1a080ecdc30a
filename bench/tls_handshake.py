#!/usr/bin/python3
"""TLS handshake benchmark: streamgate vs nginx vs HAProxy terminating TLS.

One sgback backend (plain HTTP/1.1); each proxy in turn (only one running at
a time, one worker/thread) terminates TLS on its own loopback port with the
same certificate and proxies to it. `openssl s_time` makes one connection
after the other, each a TLS handshake plus one `GET /` (HTTP/1.0, so the
proxy closes after the answer):

  full      s_time -new     a full handshake on every connection
  resumed   s_time -reuse   every connection resumes the first one's session
                            (session ID or ticket for TLS 1.2, ticket/PSK
                            for TLS 1.3)

for TLS 1.2 and TLS 1.3 (client-side `-tls1_2` / `-tls1_3`, one fixed cipher
each so every proxy does the same work). The proxy's CPU time (all its
processes and threads, from /proc/PID/stat) is read before and after each
run: CPU per handshake is the number to compare.

    /usr/bin/python3 bench/tls_handshake.py [--quick] [--proxies a,b] ...
    bench/run tls [...]

See bench/README.md for how to read the numbers. A benchmark, not a test:
it never runs in CI.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import ssl
import subprocess
import http.client
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import h1_keepalive as h1bench  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VERSIONS = ("1.2", "1.3")
MODES = ("full", "resumed")
# One cipher per version, chosen by the client: the servers all accept it,
# so no server preference changes the work between proxies.
CIPHERS = {"rsa2048": "ECDHE-RSA-AES128-GCM-SHA256",
           "ec256": "ECDHE-ECDSA-AES128-GCM-SHA256"}
TLS13_SUITE = "TLS_AES_128_GCM_SHA256"
RUN_ERRORS = (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired)


# ---------------------------------------------------------------- setup

def proxy_specs(args, tmp):
    """bench/h1_keepalive.py's start/check commands with TLS configs."""
    specs = h1bench.proxy_specs(args, tmp)
    for s in specs.values():
        s["template"] = "tls-" + s["template"]
        s["conf"] = "tls-" + s["conf"]
    return specs


def check_tools(args):
    missing = []
    if not shutil.which("openssl"):
        missing.append("openssl (Debian package openssl: "
                       "bash scripts/install-deps.sh bench)")
    for p in args.proxies:
        why = lib.proxy_missing(p, args.streamgate_bin)
        if why:
            missing.append(why)
    if not os.access(args.backend_bin, os.X_OK):
        missing.append(f"sgback: {args.backend_bin} (build it with `make`)")
    if missing:
        lib.print_missing(missing)
        sys.exit(2)


def make_certificate(args, tmp):
    """A self-signed certificate for 127.0.0.1, made for this run: (cert, key,
    pem with both for HAProxy)."""
    cert, key, pem = (os.path.join(tmp, n)
                      for n in ("tls.crt", "tls.key", "tls.pem"))
    newkey = ["-newkey", "rsa:2048"] if args.key == "rsa2048" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    r = subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2",
                        "-subj", "/CN=127.0.0.1"],
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl req failed: "
                           + r.stderr.decode(errors="replace"))
    with open(pem, "w") as out:
        for p in (cert, key):
            with open(p) as f:
                out.write(f.read())
    return cert, key, pem


def verify_tls_backend(port, backend_port, name):
    """GET / over TLS must come back from *our* backend (X-Backend)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                       context=ctx)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        got = resp.getheader("X-Backend")
        status = resp.status
    except (OSError, http.client.HTTPException) as e:
        raise RuntimeError(f"{name}: GET / over TLS on 127.0.0.1:{port} "
                           f"failed: {e}")
    finally:
        conn.close()
    if status != 200 or got != str(backend_port):
        raise RuntimeError(f"{name}: GET / over TLS answered {status} with "
                           f"X-Backend {got!r}, expected 200 from the "
                           f"backend on port {backend_port}")


# ---------------------------------------------------------------- runs

def s_time_argv(args, port, version, mode, seconds):
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}",
            "-new" if mode == "full" else "-reuse", "-time", str(seconds),
            "-www", args.path]
    if version == "1.2":
        argv += ["-tls1_2", "-cipher", CIPHERS[args.key]]
    else:
        argv += ["-tls1_3", "-ciphersuites", TLS13_SUITE]
    return argv


def run_s_time(argv, seconds, cpus):
    """Run s_time once (bounded); (its output, wall seconds)."""
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, timeout=seconds + 30,
                           preexec_fn=lambda: lib._child_setup(cpus))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"openssl s_time did not finish within "
                           f"{seconds + 30} s")
    wall = time.monotonic() - t0
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0 or "ERROR" in out:
        raise RuntimeError(f"openssl s_time failed ({r.returncode}): "
                           f"{r.stderr.decode(errors='replace').strip()}\n"
                           f"{out[-800:]}")
    return out, wall


def parse_s_time(out):
    """Counts of one `s_time -new` or `-reuse` run: every connection prints
    one character, 'r' when its session was resumed, '*' (or a version
    digit) when it was a full handshake."""
    m = re.search(r"^(\d+) connections in [\d.]+s;", out, re.M)
    if not m:
        raise ValueError("no 'N connections in' line in s_time output")
    n = int(m.group(1))
    m2 = re.search(r"(\d+) bytes read per connection", out)
    marks = "".join(line for line in out.splitlines()
                    if re.fullmatch(r"[r*0-9]+", line.strip() or "x"))
    reused = marks.count("r")
    # -reuse makes one full handshake first (its own line, counted apart).
    return {"connections": n, "reused": reused,
            "bytes_per_conn": int(m2.group(1)) if m2 else None}


def measure(args, port, version, mode, proxy, backend, cpus):
    argv = s_time_argv(args, port, version, mode, args.duration)
    p0 = proxy.cpu()
    b0, _ = backend.cpu()
    s0, c0 = lib.system_busy(), lib.children_cpu()
    out, wall = run_s_time(argv, args.duration, cpus)
    s1, c1 = lib.system_busy(), lib.children_cpu()
    b1, _ = backend.cpu()
    p1 = proxy.cpu()
    if not proxy.alive():
        raise RuntimeError(f"{proxy.name} died during the run:\n"
                           f"{proxy.log_tail()}")
    if p0[1] != p1[1]:
        lib.warn(f"{proxy.name}: processes changed during the run "
                 f"({p0[1]} -> {p1[1]}): CPU time may be incomplete")
    c = parse_s_time(out)
    n = max(c["connections"], 1)
    proxy_cpu, backend_cpu, client_cpu = p1[0] - p0[0], b1 - b0, c1 - c0
    run = {
        "tls": version, "mode": mode, "command": " ".join(argv),
        "handshakes": c["connections"], "reused": c["reused"],
        "bytes_per_conn": c["bytes_per_conn"], "seconds": wall,
        "handshakes_per_s": c["connections"] / max(wall, 0.001),
        "proxy_cpu_s": proxy_cpu,
        "proxy_cpu_us_per_handshake": proxy_cpu / n * 1e6,
        "backend_cpu_s": backend_cpu, "client_cpu_s": client_cpu,
        "other_cpu_s": max((s1 - s0) - proxy_cpu - backend_cpu - client_cpu,
                           0.0),
        "proxy_pids": p1[1], "s_time_output": out[-2000:],
    }
    warn_run(proxy.name, run)
    return run


def warn_run(name, run):
    what = f"{name} TLS {run['tls']} {run['mode']}"
    n = run["handshakes"]
    if run["mode"] == "resumed" and run["reused"] < 0.99 * n:
        lib.warn(f"{what}: only {run['reused']}/{n} sessions were resumed: "
                 "that row mixes full handshakes in")
    if run["mode"] == "full" and run["reused"]:
        lib.warn(f"{what}: {run['reused']}/{n} sessions were resumed")
    if not run["bytes_per_conn"]:
        lib.warn(f"{what}: s_time read no answer bytes: the proxy did not "
                 "answer the GET")
    busy = run["other_cpu_s"] / max(run["seconds"], 0.001)
    if busy > 0.15:
        lib.warn(f"{what}: other programs used {busy:.2f} cores during the "
                 "run: numbers are noisy, rerun on a quiet machine")


def bench_one(args, name, spec, tmp, cert, backend, backend_port, cpus):
    """Configure, check, start, verify, then every TLS version x mode."""
    port = lib.free_port()
    conf = os.path.join(tmp, spec["conf"])
    text = lib.render(os.path.join(HERE, "conf", spec["template"]), conf,
                      {"TMP": tmp, "PORT": port, "BACKEND_PORT": backend_port,
                       "CERT": cert[0], "KEY": cert[1], "PEM": cert[2]})
    result = {"proxy": name, "port": port, "config": text,
              "version": lib.tool_version(spec["version"]), "runs": []}
    proxy = lib.start_proxy(name, spec, conf, tmp, cpus["proxy"])
    try:
        lib.wait_port(port, proxy)
        verify_tls_backend(port, backend_port, name)
        if args.warmup > 0:
            run_s_time(s_time_argv(args, port, "1.3", "full", args.warmup),
                       args.warmup, cpus["client"])
        for version in args.versions:
            for mode in args.modes:
                try:
                    run = measure(args, port, version, mode, proxy, backend,
                                  cpus["client"])
                except RUN_ERRORS as e:
                    lib.warn(f"{name} TLS {version} {mode} failed: {e}")
                    run = {"tls": version, "mode": mode, "error": str(e)}
                    if not proxy.alive():
                        result["runs"].append(run)
                        raise
                else:
                    print(f"  {name} TLS {version} {mode}: "
                          f"{run['handshakes_per_s']:.0f} handshakes/s, "
                          f"{run['proxy_cpu_us_per_handshake']:.0f} CPU "
                          f"us/handshake, {run['reused']}/"
                          f"{run['handshakes']} resumed", file=sys.stderr)
                result["runs"].append(run)
    finally:
        proxy.stop()
    return result


# ---------------------------------------------------------------- report

def ratios(results):
    """{(tls, mode): {proxy: its CPU us/handshake / streamgate's}}."""
    by = {}
    for r in results:
        for run in r.get("runs", []):
            if "error" not in run:
                by[(run["tls"], run["mode"], r["proxy"])] = run
    out = {}
    for (v, m, p), run in by.items():
        sg = by.get((v, m, "streamgate"))
        if sg and sg["proxy_cpu_us_per_handshake"]:
            out.setdefault(f"{v} {m}", {})[p] = (
                run["proxy_cpu_us_per_handshake"]
                / sg["proxy_cpu_us_per_handshake"])
    return out


def print_report(args, results, failures, rat):
    headers = ["TLS", "handshake", "proxy", "handshakes", "resumed",
               "handshakes/s", "CPU us/handshake", "CPU vs sg",
               "backend us/handshake"]
    rows = []
    for version in args.versions:
        for mode in args.modes:
            for r in results:
                run = next((x for x in r["runs"] if x["tls"] == version
                            and x["mode"] == mode), None)
                if run is None:
                    continue
                if "error" in run:
                    rows.append([version, mode, r["proxy"], "FAILED"]
                                + [""] * 5)
                    continue
                n = max(run["handshakes"], 1)
                rows.append([version, mode, r["proxy"], str(run["handshakes"]),
                             f"{run['reused'] / n:.0%}",
                             lib.fmt(run["handshakes_per_s"], ".0f"),
                             lib.fmt(run["proxy_cpu_us_per_handshake"], ".0f"),
                             lib.fmt(rat.get(f"{version} {mode}", {})
                                     .get(r["proxy"]), ".2f", "x"),
                             lib.fmt(run["backend_cpu_s"] / n * 1e6, ".1f")])
    for name in failures:
        rows.append(["", "", name, "FAILED"] + [""] * 5)
    print(f"\nTLS handshakes: openssl s_time, one connection at a time, "
          f"{args.duration} s per run, each a handshake + GET {args.path} "
          f"(HTTP/1.0) proxied to sgback; {args.key} certificate; "
          f"TLS 1.2 {CIPHERS[args.key]}, TLS 1.3 {TLS13_SUITE}; one proxy "
          f"worker{', pinned' if args.pin else ''}")
    print(lib.table(headers, rows, right=range(3, len(headers))))
    print("CPU us/handshake: the proxy's CPU time (user+sys, all its "
          "processes and threads) per connection (handshake + one proxied "
          "request); lower is better. CPU vs sg: that proxy's divided by "
          "streamgate's (>1: streamgate uses less). resumed: connections "
          "whose session was resumed (100% expected on 'resumed' rows, 0% on "
          "'full').")
    for name, err in failures.items():
        print(f"\n{name} FAILED: {err}")


def write_json(args, results, failures, rat, started):
    if args.no_json:
        return None
    path = args.json or os.path.join(
        HERE, "results", f"tls-{started:%Y%m%d-%H%M%S}.json")
    return lib.write_results(path, {
        "benchmark": "tls_handshake", "started": started.isoformat(),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_before": args.loadavg_before},
        "params": {k: getattr(args, k) for k in (
            "duration", "warmup", "path", "key", "versions", "modes", "pin",
            "backend_threads", "proxies")},
        "ciphers": {"1.2": CIPHERS[args.key], "1.3": TLS13_SUITE},
        "tools": {"openssl": lib.tool_version(["openssl", "version"]),
                  "backend": args.backend_bin},
        "results": results, "failures": failures, "ratios": rat,
    })


# ---------------------------------------------------------------- main

def parse_list(ap, text, allowed, what):
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        ap.error(f"unknown {what} {bad}; choose from {', '.join(allowed)}")
    return [x for x in allowed if x in items]


def parse_args(argv):
    build = os.environ.get("SG_BUILD", "build")
    ap = argparse.ArgumentParser(
        description="TLS handshake benchmark: full and resumed handshakes, "
        "TLS 1.2 and 1.3, through streamgate, nginx and HAProxy "
        "terminating TLS in front of the same sgback (see bench/README.md).")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 s runs, 1 s warm-up")
    ap.add_argument("-d", "--duration", type=int, default=5,
                    help="seconds per measured s_time run (default 5)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="seconds of full handshakes before measuring "
                    "(default 1)")
    ap.add_argument("--versions", default=",".join(VERSIONS),
                    help="TLS versions (default 1.2,1.3)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="full, resumed or both (default)")
    ap.add_argument("--key", choices=sorted(CIPHERS), default="rsa2048",
                    help="certificate key (default rsa2048)")
    ap.add_argument("--path", default="/",
                    help="path s_time asks for (default /)")
    ap.add_argument("--proxies", default=",".join(lib.ALL_PROXIES),
                    help="comma-separated subset of streamgate,nginx,haproxy")
    ap.add_argument("--pin", action="store_true",
                    help="pin the proxy to CPU 0, backend and s_time to CPU 1")
    ap.add_argument("--build", default=build,
                    help=f"build folder (default $SG_BUILD or build: {build})")
    ap.add_argument("--streamgate-bin", help="default BUILD/streamgate")
    ap.add_argument("--backend-bin", help="default BUILD/sgback")
    ap.add_argument("--backend-threads", type=int, default=1)
    ap.add_argument("--json", help="results file (default "
                    "bench/results/tls-DATE.json)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp folder (configs, logs) for inspection")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2, 1
    if args.duration < 1 or args.warmup < 0:
        ap.error("durations must be positive")
    args.versions = parse_list(ap, args.versions, VERSIONS, "TLS version")
    args.modes = parse_list(ap, args.modes, MODES, "mode")
    args.proxies = lib.parse_proxies(ap, args.proxies)
    build = lib.build_dir(args.build, ROOT)
    args.streamgate_bin = args.streamgate_bin or os.path.join(build, "streamgate")
    args.backend_bin = args.backend_bin or os.path.join(build, "sgback")
    # h1_keepalive's proxy_specs reads these
    args.upstream_keepalive = 32
    return args


def cpu_sets(args):
    if not args.pin:
        return {"proxy": None, "backend": None, "client": None}
    if (os.cpu_count() or 1) < 2:
        lib.die("--pin needs at least 2 CPUs")
    return {"proxy": {0}, "backend": {1}, "client": {1}}


def main(argv):
    args = parse_args(argv)
    check_tools(args)
    lib.install_cleanup()
    started = datetime.datetime.now()
    args.loadavg_before = lib.warn_load("other programs will skew the numbers")
    cpus = cpu_sets(args)
    tmp = tempfile.mkdtemp(prefix="sgbench-tls-")
    results, failures = [], {}
    try:
        cert = make_certificate(args, tmp)
        backend, backend_port = h1bench.start_backend(args, tmp,
                                                      cpus["backend"])
        print(f"bench: sgback on 127.0.0.1:{backend_port}, temp folder {tmp}",
              file=sys.stderr)
        lib.bench_each(
            proxy_specs(args, tmp),
            lambda name, spec: bench_one(args, name, spec, tmp, cert, backend,
                                         backend_port, cpus),
            results, failures, RUN_ERRORS)
        backend.stop()
    except RuntimeError as e:
        lib.die(str(e))
    finally:
        lib.stop_all()
        lib.remove_tmp(tmp, args.keep_tmp)
    rat = ratios(results)
    print_report(args, results, failures, rat)
    path = write_json(args, results, failures, rat, started)
    if path:
        print(f"\nresults: {os.path.relpath(path)}")
    return 1 if failures else 0


if __name__ == "__main__":
    lib.run_main(main)
