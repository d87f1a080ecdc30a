#!/usr/bin/python3
"""The benchmark report: every scenario against streamgate, nginx and HAProxy,
written up as docs/benchmarks.md with tables and PNG charts.

    bench/run report                      run every benchmark, then write the report
    bench/run report --quick              short runs (checks the tool, not results)
    bench/run report --only h1,tls        some scenarios only
    bench/run report --out /tmp/report    write DIR/benchmarks.md + DIR/benchmarks/*.png
    bench/report.py --from-json FILES...  rebuild the page from result files,
                                          running nothing

It runs the benchmarks one after the other (bench/run h1, h2, ws, grpc-idle,
tls), each writing its JSON results into bench/results/report-DATE/, then
reads those files. The page is made from the JSON files alone, so
`--from-json` gives the same page again. Charts need python3-matplotlib
(Debian); it is installed with apt-get when missing.

See bench/README.md, "The report". A benchmark, not a test: never in CI.
"""

import argparse
import datetime
import glob
import importlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the tree clean (no bench/__pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROXIES = lib.ALL_PROXIES
LABEL = {"streamgate": "streamgate", "nginx": "nginx", "haproxy": "HAProxy"}
COLOR = {"streamgate": "#1f77b4", "nginx": "#2ca02c", "haproxy": "#d62728"}

# Scenario name -> (the benchmark that measures it, its title).
SCENARIOS = {
    "h1": ("h1", "HTTP/1.1 keep-alive"),
    "h2": ("h2", "HTTP/2 plain requests"),
    "grpc-unary": ("h2", "gRPC unary calls"),
    "grpc-bidi": ("h2", "gRPC bidi streams"),
    "ws-echo": ("ws", "WebSocket echo"),
    "ws-idle": ("ws", "Idle memory per WebSocket"),
    "grpc-idle": ("grpc-idle", "Idle memory per gRPC stream"),
    "tls": ("tls", "TLS handshakes"),
}
# Benchmark -> its name in the JSON files ("benchmark" field).
BENCH_KIND = {"h1": "h1_keepalive", "h2": "h2", "ws": "ws_idle",
              "grpc-idle": "grpc_idle", "tls": "tls_handshake"}
KIND_BENCH = {v: k for k, v in BENCH_KIND.items()}
H2_LOAD = {"h2": "plain", "grpc-unary": "unary", "grpc-bidi": "stream"}
# Each benchmark's own time bound (a watchdog: they bound their runs too).
BOUND_S = {"quick": 600, "full": 1200}


def warn(msg):
    lib.warn(msg)


# ---------------------------------------------------------------- matplotlib

def ensure_matplotlib():
    """Import matplotlib (Agg); install Debian's python3-matplotlib when it
    is missing, as the other benchmarks' tools come from Debian too."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        if os.geteuid() != 0:
            lib.die("python3-matplotlib is missing: "
                    "apt-get install python3-matplotlib (as root)")
        print("bench: installing python3-matplotlib (apt-get)",
              file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends",
               "python3-matplotlib"]
        if subprocess.run(cmd, env=env).returncode != 0:
            # a stale package list is the usual reason
            subprocess.run(["apt-get", "update"], env=env)
            if subprocess.run(cmd, env=env).returncode != 0:
                lib.die("apt-get install python3-matplotlib failed")
        importlib.invalidate_caches()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return matplotlib, plt


# ---------------------------------------------------------------- machine

def machine_info():
    info = {"cpus": os.cpu_count(), "kernel": platform.release(),
            "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            info["memory_gib"] = round(kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        info["loadavg_before"] = " ".join(f.read().split()[:3])
    return info


def versions(build):
    sg = os.path.join(build, "streamgate")
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always",
                          "--dirty"], capture_output=True, text=True)
    try:
        import matplotlib
        mpl = matplotlib.__version__
    except ImportError:
        mpl = None
    return {
        "streamgate": lib.tool_version([sg, "-v"]),
        "streamgate_commit": git.stdout.strip() or None,
        "nginx": lib.tool_version(["nginx", "-v"]),
        "haproxy": lib.tool_version(["haproxy", "-v"]),
        "wrk": lib.tool_version(["wrk", "-v"]),
        "h2load": lib.tool_version(["h2load", "--version"]),
        "openssl": lib.tool_version(["openssl", "version"]),
        "curl": lib.tool_version(["curl", "--version"]),
        "python": platform.python_version(),
        "matplotlib": mpl,
    }


# ---------------------------------------------------------------- running

def run_bench(bench, argv, log_path, bound):
    """Run one benchmark (its output shown and kept in log_path); its exit
    code, seconds taken and warning lines. Killed with its process group
    after `bound` seconds."""
    t0 = time.monotonic()
    warnings = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True,
                                # it gets SIGTERM if the report dies
                                preexec_fn=lambda: lib._child_setup(None))
        deadline = t0 + bound

        def kill(signum, frame):
            os.killpg(proc.pid, signal.SIGTERM)
        old = signal.signal(signal.SIGALRM, kill)
        signal.alarm(int(bound))
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                sys.stderr.write(line)
                log.write(line)
                if line.startswith("bench: warning:"):
                    warnings.append(line[len("bench: warning:"):].strip())
            rc = proc.wait()
        except BaseException:  # ^C, SIGTERM (lib.install_cleanup)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        if time.monotonic() >= deadline:
            warnings.append(f"{bench}: stopped after {bound} s")
    return rc, time.monotonic() - t0, warnings


def run_all(args):
    """Run the benchmarks the chosen scenarios need; the JSON files."""
    started = datetime.datetime.now()
    resdir = args.results or os.path.join(
        HERE, "results", f"report-{started:%Y%m%d-%H%M%S}")
    os.makedirs(resdir, exist_ok=True)
    meta = {"benchmark": "report", "started": started.isoformat(),
            "quick": args.quick, "only": args.only,
            "machine": machine_info(), "versions": versions(args.build),
            "argv": ["bench/run", "report", *args.argv], "runs": []}
    if float(meta["machine"]["loadavg_before"].split()[0]) > 0.5:
        warn(f"load average is {meta['machine']['loadavg_before']} before "
             "starting: other programs will skew the numbers")
    benches = []
    for s in args.only:
        b = SCENARIOS[s][0]
        if b not in benches:
            benches.append(b)
    env_build = os.path.relpath(args.build, ROOT) \
        if args.build.startswith(ROOT + os.sep) else args.build
    files = []
    for b in benches:
        path = os.path.join(resdir, f"{b}.json")
        extra = ["--quick"] if args.quick else []
        if b == "h2":
            loads = [H2_LOAD[s] for s in args.only if s in H2_LOAD]
            extra += ["--loads", ",".join(loads)]
        argv = [os.path.join(HERE, "run"), b, *extra, "--build", env_build,
                "--json", path]
        shown = ["bench/run", b, *extra, "--build", env_build, "--json",
                 os.path.relpath(path, ROOT)]
        print(f"\nbench: report: {' '.join(shown)}", file=sys.stderr)
        rc, secs, warns = run_bench(b, argv, os.path.join(resdir, f"{b}.log"),
                                    BOUND_S["quick" if args.quick else "full"])
        meta["runs"].append({"bench": b, "command": shlex.join(shown),
                             "exit": rc, "seconds": round(secs, 1),
                             "json": os.path.basename(path),
                             "warnings": warns})
        if os.path.exists(path):
            files.append(path)
        else:
            warn(f"{b}: no results written (exit {rc}); see "
                 f"{os.path.join(resdir, b + '.log')}")
    meta["finished"] = datetime.datetime.now().isoformat()
    meta["seconds"] = round((datetime.datetime.now() - started)
                            .total_seconds(), 1)
    meta_path = os.path.join(resdir, "report.json")
    lib.write_results(meta_path, meta)
    return [meta_path] + files, resdir


# ---------------------------------------------------------------- figures

class Metric:
    """One figure of a scenario: values per group and proxy."""

    def __init__(self, name, unit, better, fmt):
        self.name, self.unit, self.better, self.fmt = name, unit, better, fmt
        self.values = {}   # (group, proxy) -> float

    def label(self):
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def get(self, group, proxy):
        return self.values.get((group, proxy))

    def ratio(self, group, proxy):
        v, sg = self.get(group, proxy), self.get(group, "streamgate")
        return v / sg if v is not None and sg else None


class Scenario:
    def __init__(self, key, source):
        self.key, self.title = key, SCENARIOS[key][1]
        self.source = source          # the JSON document
        self.groups = [""]            # tls: "TLS 1.2 full", ...
        self.metrics = []             # first = the headline figure
        self.extra = []               # (header, {(group, proxy): text})
        self.notes = {}               # proxy -> why it has no figures
        self.load = ""                # how the load was made
        self.what = ""                # what it measures, how to read it

    def metric(self, *a):
        m = Metric(*a)
        self.metrics.append(m)
        return m

    def column(self, header):
        col = {}
        self.extra.append((header, col))
        return col


def failures_into(sc, doc):
    for p, err in (doc.get("failures") or {}).items():
        sc.notes[p] = "failed: " + first_line(err)


def first_line(text):
    """The start of an error message, on one line (the first lines of a
    failure often only say which step failed)."""
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    line = " ".join(lines[:3]).replace("|", "/")
    return line[:200] + ("..." if len(line) > 200 else "")


def sc_h1(doc):
    sc = Scenario("h1", doc)
    p = doc["params"]
    sc.what = ("CPU time the proxy spends per HTTP/1.1 request over kept-alive "
               "client and upstream connections (lower is better), and the "
               "requests per second wrk reached.")
    sc.load = (f"`wrk -t{p['threads']} -c{p['connections']} "
               f"-d{p['duration']}s --latency http://127.0.0.1:PORT{p['path']}`"
               f" after a {p['warmup']} s warm-up; one proxy worker, upstream "
               f"`keepalive {p['upstream_keepalive']}`, backend `sgback`")
    cpu = sc.metric("CPU per request", "µs", "lower", ".1f")
    rps = sc.metric("requests/s", "", "higher", ".0f")
    p99 = sc.column("p99 ms")
    err = sc.column("errors")
    for r in doc["results"]:
        s = r.get("summary")
        if r["proxy"] not in PROXIES or not s:
            continue
        k = ("", r["proxy"])
        cpu.values[k], rps.values[k] = s["proxy_cpu_us_per_req"], s["rps"]
        p99[k] = lib.fmt(s.get("p99"), ".2f")
        err[k] = str(s["errors"])
    failures_into(sc, doc)
    return sc


def sc_h2(doc, key):
    sc = Scenario(key, doc)
    p = doc["params"]
    lname = H2_LOAD[key]
    grpc = lname != "plain"
    sc.load = (f"`h2load -n N -c {p['connections']} -m {p['streams']} -t 1"
               + (" -d MSG -H 'content-type: application/grpc' -H 'te: "
                  "trailers'" if grpc else "")
               + f" http://127.0.0.1:PORT/...` with N calibrated to about "
               f"{p['duration']} s; h2c on both sides, one proxy worker, "
               f"upstream `keepalive {p['upstream_keepalive']}`, backend "
               "`sgback -2`")
    if lname == "plain":
        sc.what = ("CPU time per plain HTTP/2 `GET /` (h2c to the client and "
                   "to the backend; nginx reaches an h2c backend only through "
                   "`grpc_pass`), and requests per second.")
        cpu = sc.metric("CPU per request", "µs", "lower", ".1f")
        rate = sc.metric("requests/s", "", "higher", ".0f")
    elif lname == "unary":
        sc.what = ("CPU time per gRPC unary call (`/chat.Chat/Echo`, one "
                   "message each way, `grpc-status` trailer), and calls per "
                   "second.")
        cpu = sc.metric("CPU per call", "µs", "lower", ".1f")
        rate = sc.metric("calls/s", "", "higher", ".0f")
    else:
        sc.what = (f"CPU time per gRPC message on bidi streams "
                   f"(`/chat.Chat/Talk`, {p['stream_messages']} small "
                   "messages per stream, each echoed as it arrives), and "
                   "messages per second: streaming throughput.")
        cpu = sc.metric("CPU per message", "ns", "lower", ".1f")
        rate = sc.metric("messages/s", "M", "higher", ".2f")
    conns = sc.column("backend conns")
    err = sc.column("errors")
    gs = sc.column("grpc-status") if grpc else None
    for r in doc["results"]:
        if r["proxy"] not in PROXIES:
            continue
        for x in r.get("loads", []):
            if x["load"] != lname:
                continue
            k = ("", r["proxy"])
            s = x.get("summary")
            if not s:
                sc.notes[r["proxy"]] = "failed: " + first_line(x.get("error"))
                continue
            if lname == "stream":
                cpu.values[k] = None if s.get("proxy_cpu_us_per_msg") is None \
                    else s["proxy_cpu_us_per_msg"] * 1e3
                rate.values[k] = (s.get("msgs_per_s") or 0) / 1e6
            else:
                cpu.values[k], rate.values[k] = (s["proxy_cpu_us_per_req"],
                                                 s["rps"])
            conns[k] = lib.fmt(s.get("backend_conns_opened"), "d")
            err[k] = str(s["errors"] + s["non_2xx"]) + \
                ("" if s.get("data_ok", True) else " (bytes!)")
            if gs is not None:
                gs[k] = s.get("grpc_status") or "-"
    failures_into(sc, doc)
    return sc


def ws_rows(doc, sc):
    out = {}
    for r in doc["results"]:
        if r["proxy"] not in PROXIES:
            continue
        if r.get("summary"):
            out[r["proxy"]] = r["summary"]
        else:
            sc.notes[r["proxy"]] = r.get("status", "failed") + ": " + \
                first_line(r.get("error"))
    failures_into(sc, doc)
    return out


def ws_load(p):
    return (f"`wsload -n {p['connections']} -r {p['rate']:g} -c "
            f"{p['inflight']} -i {p['idle']:g} -e {p['echo_rate']:g} -s "
            f"{p['msg_size']} 127.0.0.1:PORT {p['path']}`: {p['connections']}"
            f" WebSockets opened at {p['rate']:g}/s, idle {p['idle']:g} s, "
            f"then one {p['msg_size']}-byte echo each at {p['echo_rate']:g}/s;"
            f" one proxy worker, backend `{p['backend']}`")


def sc_ws_echo(doc):
    sc = Scenario("ws-echo", doc)
    sc.what = ("Round trip of one small message through the proxy on a "
               "WebSocket that was idle (client → proxy → backend echo → "
               "client), over every connection of the idle-memory run; "
               "lower is better. Sensitive to anything else on the machine.")
    sc.load = ws_load(doc["params"])
    p99 = sc.metric("echo p99", "ms", "lower", ".3f")
    p50 = sc.metric("echo p50", "ms", "lower", ".3f")
    opened = sc.column("echoed")
    for proxy, s in ws_rows(doc, sc).items():
        k = ("", proxy)
        p99.values[k] = s["latency_ms"].get("p99")
        p50.values[k] = s["latency_ms"].get("p50")
        opened[k] = f"{s['echo_ok']}/{s['n']}"
    return sc


def sc_ws_idle(doc):
    sc = Scenario("ws-idle", doc)
    sc.what = ("Memory one idle proxied WebSocket costs: growth of the "
               "proxy's PSS (all its processes) per open WebSocket (user), "
               "and user + the kernel's share for the proxy's two sockets "
               "(total); lower is better.")
    sc.load = ws_load(doc["params"])
    user = sc.metric("user memory per WebSocket", "KiB", "lower", ".1f")
    total = sc.metric("user + kernel per WebSocket", "KiB", "lower", ".1f")
    opened = sc.column("open")
    for proxy, s in ws_rows(doc, sc).items():
        k = ("", proxy)
        user.values[k] = None if s["user_b"] is None else s["user_b"] / 1024
        total.values[k] = None if s.get("total_b") is None \
            else s["total_b"] / 1024
        opened[k] = f"{s['open_at_sample']}/{s['n']}"
    return sc


def sc_grpc_idle(doc):
    sc = Scenario("grpc-idle", doc)
    p = doc["params"]
    sc.what = ("User memory (PSS growth) the proxy holds per idle bidi gRPC "
               "call, client connections left out (user) and included; lower "
               "is better.")
    sc.load = (f"{p['streams']} `POST /chat.Chat/Talk` calls over "
               f"{p['connections']} h2c connections, one message echoed on "
               f"each, {p['idle']:g} s of silence, then a second message "
               "on every call; one proxy worker, backend `sgback -2`")
    user = sc.metric("user memory per idle stream", "B", "lower", ".0f")
    incl = sc.metric("incl. connections", "B", "lower", ".0f")
    ok = sc.column("calls ok")
    for r in doc["results"]:
        if r["proxy"] not in PROXIES or "run" not in r:
            continue
        x, k = r["run"], ("", r["proxy"])
        user.values[k] = x["pss_bytes_per_stream"]
        incl.values[k] = x["pss_bytes_per_stream_with_conns"]
        ok[k] = f"{x['echoed_second']}/{x['n']}"
    failures_into(sc, doc)
    return sc


def sc_tls(doc):
    sc = Scenario("tls", doc)
    p = doc["params"]
    c = doc.get("ciphers", {})
    sc.what = ("CPU time the proxy spends per TLS connection (the handshake "
               "plus one proxied `GET`), full handshakes and resumed "
               "sessions, TLS 1.2 and 1.3; lower is better. Handshakes per "
               "second come from one `openssl s_time` client making one "
               "connection after the other.")
    sc.load = (f"`openssl s_time -connect 127.0.0.1:PORT -new|-reuse -time "
               f"{p['duration']} -www {p['path']} -tls1_2 -cipher "
               f"{c.get('1.2', '?')}|-tls1_3 -ciphersuites {c.get('1.3', '?')}`"
               f"; {p['key']} certificate, one proxy worker, backend `sgback`"
               f"{', pinned' if p.get('pin') else ''}")
    cpu = sc.metric("CPU per handshake", "µs", "lower", ".0f")
    rate = sc.metric("handshakes/s", "", "higher", ".0f")
    resumed = sc.column("resumed")
    sc.groups = [f"TLS {v} {m}" for v in p["versions"] for m in p["modes"]]
    for r in doc["results"]:
        if r["proxy"] not in PROXIES:
            continue
        for run in r.get("runs", []):
            g = f"TLS {run['tls']} {run['mode']}"
            k = (g, r["proxy"])
            if "error" in run:
                resumed[k] = "failed"
                continue
            cpu.values[k] = run["proxy_cpu_us_per_handshake"]
            rate.values[k] = run["handshakes_per_s"]
            resumed[k] = f"{run['reused'] / max(run['handshakes'], 1):.0%}"
    failures_into(sc, doc)
    return sc


def scenarios_from(docs, only):
    """The Scenario objects of the chosen scenarios that the files hold."""
    out = []
    for key in only:
        doc = docs.get(BENCH_KIND[SCENARIOS[key][0]])
        if doc is None:
            continue
        try:
            if key == "h1":
                sc = sc_h1(doc)
            elif key in H2_LOAD:
                if H2_LOAD[key] not in doc["params"].get("loads", H2_LOAD[key]):
                    continue
                sc = sc_h2(doc, key)
            elif key == "ws-echo":
                sc = sc_ws_echo(doc)
            elif key == "ws-idle":
                sc = sc_ws_idle(doc)
            elif key == "grpc-idle":
                sc = sc_grpc_idle(doc)
            else:
                sc = sc_tls(doc)
        except (KeyError, TypeError, ValueError) as e:
            warn(f"{key}: its results file does not read as expected "
                 f"({e!r}); left out")
            continue
        out.append(sc)
    return out


# ---------------------------------------------------------------- charts

def chart(plt, sc, path):
    """One PNG: a panel per figure, a bar per proxy named under it (TLS: a
    group of three bars per case, with a legend); a proxy without a figure
    is named with "no data", so every chart shows all three proxies."""
    n = len(sc.metrics)
    wide = len(sc.groups) > 1
    fig, axes = plt.subplots(1, n, figsize=((7.5 if wide else 5) * n, 4.6),
                             squeeze=False)
    width = 0.8 / len(PROXIES) if wide else 0.6
    for ax, m in zip(axes[0], sc.metrics):
        top = max([v for v in m.values.values() if v is not None] or [1])
        for i, proxy in enumerate(PROXIES):
            xs = [g + (i - (len(PROXIES) - 1) / 2) * width
                  for g in range(len(sc.groups))] if wide else [i]
            vals = [m.get(g, proxy) for g in sc.groups]
            bars = ax.bar(xs, [v or 0 for v in vals], width,
                          label=LABEL[proxy], color=COLOR[proxy])
            for b, v, x in zip(bars, vals, xs):
                if v is None:
                    ax.text(x, top * 0.02, "no data", rotation=90,
                            ha="center", va="bottom", fontsize=8)
                else:
                    ax.text(x, v, format(v, m.fmt), ha="center",
                            va="bottom", fontsize=7 if wide else 9)
        if wide:
            ax.set_xticks(range(len(sc.groups)))
            ax.set_xticklabels(sc.groups, fontsize=8)
            ax.legend(fontsize=8)
        else:
            ax.set_xticks(range(len(PROXIES)))
            ax.set_xticklabels([LABEL[p] for p in PROXIES], fontsize=10)
        ax.set_ylim(0, top * 1.15)
        ax.set_title(f"{m.label()}, {m.better} is better", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(sc.title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- markdown

def cell(m, group, proxy):
    v = m.get(group, proxy)
    return "–" if v is None else format(v, m.fmt)


def ratio_cell(m, group, proxy):
    r = m.ratio(group, proxy)
    return "–" if r is None else f"{r:.2f}x"


def scenario_table(sc):
    wide = len(sc.groups) > 1
    head = (["case"] if wide else []) + ["proxy"]
    for m in sc.metrics:
        head += [m.label(), "÷ streamgate"]
    head += [h for h, _ in sc.extra]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * (1 + wide) + ["---:"] *
                            (len(head) - 1 - wide)) + "|"]
    for g in sc.groups:
        for proxy in PROXIES:
            row = ([g] if wide else []) + [LABEL[proxy]]
            for m in sc.metrics:
                row += [cell(m, g, proxy), ratio_cell(m, g, proxy)]
            row += [col.get((g, proxy), "–") for _, col in sc.extra]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary_table(scs):
    lines = ["| scenario | figure | streamgate | nginx | HAProxy | "
             "nginx ÷ streamgate | HAProxy ÷ streamgate |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for sc in scs:
        m = sc.metrics[0]
        for g in sc.groups:
            name = sc.title + (f", {g}" if g else "")
            lines.append(
                f"| [{name}](#{anchor(sc.title)}) | {m.label()}, {m.better} "
                f"is better | " + " | ".join(cell(m, g, p) for p in PROXIES)
                + f" | {ratio_cell(m, g, 'nginx')} | "
                f"{ratio_cell(m, g, 'haproxy')} |")
    return "\n".join(lines)


def anchor(title):
    out = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return out.replace(" ", "-")


def machine_lines(meta, docs):
    m = (meta or {}).get("machine") or {}
    host = next((d.get("host") for d in docs.values() if d.get("host")), {})
    rows = [("CPUs", f"{m.get('cpus', host.get('cpus', '?'))}"
             + (f" × {m['cpu_model']}" if m.get("cpu_model") else "")
             + (f" ({m['machine']})" if m.get("machine") else "")),
            ("memory", f"{m['memory_gib']} GiB" if "memory_gib" in m else
             "not recorded"),
            ("kernel", m.get("kernel", host.get("kernel", "?"))),
            ("OS", m.get("os", "not recorded")),
            ("load average before (1, 5, 15 min)",
             m.get("loadavg_before", "not recorded"))]
    per = [f"{KIND_BENCH[k]} {d['host']['loadavg_before']:.2f}"
           for k, d in docs.items() if d.get("host", {}).get(
               "loadavg_before") is not None]
    if per:
        rows.append(("load average (1 min) as each benchmark started",
                     ", ".join(per)))
    return "\n".join(["| | |", "|---|---|"] +
                     [f"| {a} | {b} |" for a, b in rows])


def version_lines(meta, docs):
    v = dict((meta or {}).get("versions") or {})
    # what the benchmarks themselves recorded wins: it is what ran
    for d in docs.values():
        for r in d.get("results", []):
            if r.get("proxy") in PROXIES and r.get("version"):
                v[r["proxy"]] = r["version"]
        for tool, text in (d.get("tools") or {}).items():
            if tool in ("wrk", "h2load", "openssl", "curl") and text:
                v[tool] = text
    if v.get("curl"):
        v["curl"] = " ".join(v["curl"].split()[:2])
    rows = [("streamgate", v.get("streamgate")),
            ("streamgate commit", v.get("streamgate_commit")),
            ("nginx", v.get("nginx")), ("HAProxy", v.get("haproxy")),
            ("wrk", v.get("wrk")), ("h2load", v.get("h2load")),
            ("openssl (s_time)", v.get("openssl")), ("curl", v.get("curl")),
            ("wsload, sgback", "built from this repository (tools/)"),
            ("python3", v.get("python")), ("matplotlib", v.get("matplotlib"))]
    return "\n".join(["| program | version |", "|---|---|"] +
                     [f"| {a} | {(b or 'not recorded').replace('|', '/')} |"
                      for a, b in rows])


def write_markdown(path, chart_dir, scs, meta, docs, files, warnings):
    rel_charts = os.path.relpath(chart_dir, os.path.dirname(path))
    readme = os.path.relpath(os.path.join(HERE, "README.md"),
                             os.path.dirname(path))
    started = (meta or {}).get("started") or min(
        (d.get("started", "") for d in docs.values()), default="")
    out = ["# Benchmarks: streamgate, nginx and HAProxy", ""]
    out.append(f"Made by `bench/run report` (bench/report.py); results of "
               f"{started[:16].replace('T', ' ')}"
               + (f", {meta['seconds'] / 60:.1f} min of benchmarks"
                  if meta and meta.get("seconds") else "") + ".")
    if meta and meta.get("quick"):
        out += ["", "**Quick run (`--quick`)**: short runs that check the "
                "tool works. These are not results; do not quote them."]
    out += ["", "Every proxy runs alone, one worker (nginx "
            "`worker_processes 1`, HAProxy `nbthread 1`), on loopback, in "
            "front of the same backend; CPU times are read from "
            "`/proc/PID/stat` (all the proxy's processes and threads) and "
            "memory from `/proc/PID/smaps_rollup`. The ratio columns divide "
            "each proxy's figure by streamgate's: for costs (CPU, memory, "
            "latency) above 1 means streamgate spends less; for rates "
            "(requests/s) above 1 means that proxy served more. How each "
            "benchmark works and how to read it: "
            f"[bench/README.md]({readme}).", ""]
    out += ["## Summary", "", summary_table(scs), ""]
    out += ["## Machine", "", machine_lines(meta, docs), ""]
    out += ["## Versions", "", version_lines(meta, docs), ""]
    for sc in scs:
        out += [f"## {sc.title}", "", sc.what, "",
                f"![{sc.title}]({rel_charts}/{sc.key}.png)", "",
                scenario_table(sc), ""]
        for proxy, why in sc.notes.items():
            out.append(f"- {LABEL.get(proxy, proxy)}: {why}")
        if sc.notes:
            out.append("")
        out += [f"Load: {sc.load}.", ""]
    out += ["## Commands", ""]
    if meta:
        out += ["The report:", "", "    " + shlex.join(meta["argv"]), "",
                "ran, one after the other:", ""]
        for r in meta["runs"]:
            out.append(f"    {r['command']}    # {r['seconds']:.0f} s, "
                       f"exit {r['exit']}")
        out.append("")
    out += ["This page was written from:", ""]
    out += [f"    {os.path.relpath(f, ROOT) if f.startswith(ROOT) else f}"
            for f in files]
    out += ["", "and is rebuilt from them, running nothing, with "
            "`bench/report.py --from-json FILES...`.", ""]
    if warnings:
        out += ["## Warnings the benchmarks printed", ""]
        out += [f"- {w}" for w in warnings]
        out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


# ---------------------------------------------------------------- main

def load_docs(files):
    docs, meta = {}, None
    for path in files:
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            lib.die(f"{path}: {e}")
        kind = doc.get("benchmark")
        if kind == "report":
            meta = doc
        elif kind in KIND_BENCH:
            if kind in docs:
                warn(f"two {kind} result files: using {path}")
            docs[kind] = doc
        else:
            warn(f"{path}: not a result file of the report's benchmarks "
                 f"({kind!r}); ignored")
    return docs, meta


def make_report(args, files):
    _, plt = ensure_matplotlib()
    docs, meta = load_docs(files)
    only = args.only
    if args.from_json and meta and meta.get("only") and not args.only_given:
        only = [s for s in SCENARIOS if s in meta["only"]]
    scs = scenarios_from(docs, only)
    if not scs:
        lib.die("no scenario's results in the files given")
    os.makedirs(args.out, exist_ok=True)
    chart_dir = os.path.join(args.out, "benchmarks")
    os.makedirs(chart_dir, exist_ok=True)
    for sc in scs:
        chart(plt, sc, os.path.join(chart_dir, f"{sc.key}.png"))
    warnings = [f"{r['bench']}: {w}" for r in (meta or {}).get("runs", [])
                for w in r.get("warnings", [])]
    md = os.path.join(args.out, "benchmarks.md")
    write_markdown(md, chart_dir, scs, meta, docs,
                   [os.path.abspath(f) for f in files], warnings)
    missing = [SCENARIOS[s][1] for s in only
               if s not in {sc.key for sc in scs}]
    if missing and (args.only_given or not args.from_json):
        warn(f"no results for: {', '.join(missing)}")
    print(f"bench: report: {os.path.relpath(md)} and "
          f"{len(scs)} charts in {os.path.relpath(chart_dir)}/",
          file=sys.stderr)
    return scs


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Run every benchmark scenario against streamgate, nginx "
        "and HAProxy and write docs/benchmarks.md with tables and PNG charts "
        "(see bench/README.md, 'The report').")
    ap.add_argument("--quick", action="store_true",
                    help="short runs of every benchmark (checks the tool; "
                    "the page says so)")
    ap.add_argument("--only", help="comma-separated scenarios: "
                    + ", ".join(SCENARIOS))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"),
                    help="folder for benchmarks.md and benchmarks/*.png "
                    "(default docs/)")
    ap.add_argument("--from-json", nargs="+", metavar="FILE",
                    help="write the page from these result files (a "
                    "report-DATE folder's *.json), running nothing")
    ap.add_argument("--results", help="folder for the benchmarks' JSON files "
                    "and logs (default bench/results/report-DATE/)")
    ap.add_argument("--build", default=os.environ.get("SG_BUILD", "build"),
                    help="build folder (default $SG_BUILD or build)")
    args = ap.parse_args(argv)
    args.argv = argv
    args.only_given = args.only is not None
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in names if s not in SCENARIOS]
        if bad or not names:
            ap.error(f"unknown scenario {bad}; choose from "
                     f"{', '.join(SCENARIOS)}")
        args.only = [s for s in SCENARIOS if s in names]
    else:
        args.only = list(SCENARIOS)
    args.build = lib.build_dir(args.build, ROOT)
    args.out = os.path.abspath(args.out)
    args.results = args.results and os.path.abspath(args.results)
    return args


def main(argv):
    args = parse_args(argv)
    if args.from_json:
        files = []
        for f in args.from_json:
            files += sorted(glob.glob(os.path.join(f, "*.json"))) \
                if os.path.isdir(f) else [f]
        make_report(args, files)
        return 0
    # matplotlib first: an hour of benchmarks should not end without charts
    ensure_matplotlib()
    for tool in ("nginx", "haproxy"):
        if not shutil.which(tool):
            warn(f"{tool} is not installed (bash scripts/install-deps.sh "
                 "bench): its rows will be missing")
    lib.install_cleanup()
    t0 = time.monotonic()
    files, resdir = run_all(args)
    make_report(args, files)
    print(f"bench: report: results in {os.path.relpath(resdir)}/, "
          f"{(time.monotonic() - t0) / 60:.1f} min in all", file=sys.stderr)
    failed = [r["bench"] for r in json.load(open(files[0]))["runs"]
              if r["exit"] != 0]
    if failed:
        warn(f"these benchmarks exited non-zero: {', '.join(failed)} (their "
             "logs are in the results folder)")
    return 1 if failed or not files[1:] else 0


if __name__ == "__main__":
    lib.run_main(main)
