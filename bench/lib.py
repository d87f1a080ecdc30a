"""Helpers shared by streamgate's benchmarks (bench/*.py).

Everything here is about running child processes safely on one small shared
machine: every child gets its own session (so its whole process group can be
signalled and its CPU summed), dies with us (PR_SET_PDEATHSIG), and is
stopped at exit even when the script fails or is interrupted.

Standard library only: benchmarks run with Debian's /usr/bin/python3.
"""

import atexit
import ctypes
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def die(msg, code=2):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(code)


def warn(msg):
    print(f"bench: warning: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- children

_children = []


def _child_setup(cpus):
    """Runs in the child between fork and exec."""
    # If the bench itself is killed (even with SIGKILL) the child gets SIGTERM,
    # so no proxy is left running to skew the next benchmark.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass
    if cpus:
        os.sched_setaffinity(0, cpus)


class Child:
    """One started program and its process group (nginx's workers included)."""

    def __init__(self, name, argv, logdir, cpus=None, cwd=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(logdir, f"{name}.out")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
            preexec_fn=lambda: _child_setup(cpus))
        self.pid = self.proc.pid
        _children.append(self)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, grace=5.0):
        """SIGTERM the whole group, SIGKILL what is left after `grace` s."""
        if self in _children:
            _children.remove(self)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            if not self._group_pids() and not self.alive():
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.alive():
                    try:
                        self.proc.wait(timeout=0.05)
                    except subprocess.TimeoutExpired:
                        pass
                elif not self._group_pids():
                    break
                else:
                    time.sleep(0.05)
        self._log.close()

    def _group_pids(self):
        return [p for p, _ in _group_stats(self.pid)]

    def cpu(self):
        """(CPU seconds used so far by the whole process group, its pids)."""
        stats = _group_stats(self.pid)
        return sum(t for _, t in stats), sorted(p for p, _ in stats)

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all():
    for c in list(reversed(_children)):
        c.stop(grace=2.0)


def _on_signal(signum, frame):
    # Turn SIGTERM/SIGHUP into a normal exit so try/finally and atexit run.
    raise SystemExit(128 + signum)


def install_cleanup():
    atexit.register(stop_all)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)


# ---------------------------------------------------------------- /proc

def _read_stat(pid):
    """(pgrp, utime+stime in seconds) of a process, including all its threads."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode(errors="replace")
    # comm may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); pgrp is field 5, utime 14, stime 15.
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _group_stats(pgid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            pgrp, cpu = _read_stat(name)
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if pgrp == pgid:
            out.append((int(name), cpu))
    return out


def system_busy():
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    # guest time is already counted in user/nice
    busy = sum(vals[:8]) - idle
    return busy / CLK_TCK


def children_cpu():
    """CPU seconds used by children this process has already waited for."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------- network

def free_port():
    """A loopback port free right now (the kernel's pick; not a guess)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, child, timeout=10.0):
    """Wait until 127.0.0.1:port accepts; fail early if the child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with code "
                               f"{child.proc.returncode}:\n{child.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not listen on 127.0.0.1:{port} "
                       f"within {timeout:.0f} s:\n{child.log_tail()}")


def http_get(port, path="/", timeout=5.0):
    """(status, {lower-case header: value}, body) of one GET on 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, headers, body
    finally:
        conn.close()


def http_json(port, path, timeout=5.0):
    try:
        status, _, body = http_get(port, path, timeout)
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


# ---------------------------------------------------------------- tools

def which_all(names):
    """{name: path or None}."""
    return {n: shutil.which(n) for n in names}


def tool_version(argv, timeout=5.0):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else None


def render(template_path, out_path, values):
    """Copy a template replacing @NAME@ (not $NAME: nginx uses $ for variables)."""
    with open(template_path) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError(f"{template_path}: no value for {', '.join(set(left))}")
    with open(out_path, "w") as f:
        f.write(text)
    return text


# ---------------------------------------------------------------- proxies

ALL_PROXIES = ("streamgate", "nginx", "haproxy")


def proxy_missing(p, streamgate_bin):
    """Why proxy p cannot run here (None when it can), with how to get it."""
    if p == "streamgate":
        if not os.access(streamgate_bin, os.X_OK):
            return f"streamgate: {streamgate_bin} (build it with `make`)"
    elif not shutil.which(p):
        pkg = "nginx-light" if p == "nginx" else p
        return f"{p} (Debian package {pkg}: bash scripts/install-deps.sh bench)"
    return None


def print_missing(missing):
    print("bench: cannot run, missing:", file=sys.stderr)
    for m in missing:
        print(f"  - {m}", file=sys.stderr)


def verify_backend(port, backend_port, name):
    """GET / must come back from *our* backend (its X-Backend header)."""
    try:
        status, headers, _ = http_get(port, "/")
    except OSError as e:
        raise RuntimeError(f"{name}: request to 127.0.0.1:{port} failed: {e}")
    got = headers.get("x-backend")
    if status != 200 or got != str(backend_port):
        raise RuntimeError(f"{name}: GET / on 127.0.0.1:{port} answered "
                           f"{status} with X-Backend {got!r}, expected 200 "
                           f"from the backend on port {backend_port}")


def start_proxy(name, spec, conf, tmp, cpus=None):
    """Check the proxy's configuration, then start it (a Child)."""
    chk = subprocess.run(spec["check"](conf), capture_output=True, timeout=20)
    if chk.returncode != 0:
        out = (chk.stdout + chk.stderr).decode(errors="replace").strip()
        raise RuntimeError(f"{name}: configuration check failed:\n{out}")
    return Child(name, spec["run"](conf), tmp, cpus=cpus)


def bench_each(specs, one, results, failures, errors):
    """one(name, spec) for each proxy in turn; a failure (an exception in
    errors) is recorded in failures and the next proxy still runs."""
    for name, spec in specs.items():
        print(f"bench: {name} ...", file=sys.stderr)
        try:
            results.append(one(name, spec))
        except errors as e:
            failures[name] = str(e)
            warn(f"{name} failed: {e}")


# ---------------------------------------------------------------- arguments

def parse_proxies(ap, text):
    """The --proxies list, checked (ap.error exits on an unknown name)."""
    proxies = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in proxies if p not in ALL_PROXIES]
    if bad or not proxies:
        ap.error(f"unknown proxy {bad}; choose from {', '.join(ALL_PROXIES)}")
    return proxies


def build_dir(build, root):
    """--build as an absolute folder (relative ones are under the repo)."""
    return build if os.path.isabs(build) else os.path.join(root, build)


# ---------------------------------------------------------------- run

def warn_load(consequence):
    """The load average before starting; warns when the machine is busy."""
    load = loadavg()
    if load > 0.5:
        warn(f"load average is {load:.2f} before starting: {consequence}")
    return load


def remove_tmp(tmp, keep):
    if keep:
        print(f"bench: kept {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def write_results(path, doc):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    return path


def run_main(main):
    """Exit with main(argv)'s code; ^C exits 130 (main's finally has
    stopped the children)."""
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)


# ---------------------------------------------------------------- wrk

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"bad wrk duration {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(text):
    """The numbers of one `wrk --latency` report (latencies in ms)."""
    out = {"latency_ms": {}, "socket_errors": {}, "non_2xx_3xx": 0}
    for pct, val in re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+(\S+)\s*$", text, re.M):
        out["latency_ms"][f"p{float(pct):g}"] = _ms(val)
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        out["latency_ms"]["avg"] = _ms(m.group(1))
        out["latency_ms"]["max"] = _ms(m.group(3))
    m = re.search(r"(\d+) requests in ([\d.]+\w+),", text)
    if not m:
        raise ValueError("no 'N requests in T' line in wrk output")
    out["requests"] = int(m.group(1))
    out["seconds"] = _ms(m.group(2)) / 1000.0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else out["requests"] / out["seconds"]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non_2xx_3xx"] = int(m.group(1))
    return out


def run_wrk(url, threads, connections, seconds, cpus=None, extra=()):
    """Run wrk once (bounded in time) and return its parsed report + raw text."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
            "--latency", *extra, url]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=seconds + 30,
                           preexec_fn=lambda: _child_setup(cpus))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {seconds + 30} s")
    text = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): "
                           f"{r.stderr.decode(errors='replace').strip()}\n{text}")
    res = parse_wrk(text)
    res["raw"] = text
    return res


# ---------------------------------------------------------------- output

def fmt(v, spec, suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def table(headers, rows, right=None):
    """A plain-text table; `right` = indexes of right-aligned columns."""
    right = set(range(1, len(headers))) if right is None else set(right)
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in cells[1:]])


# ---------------------------------------------------------------- memory

def memory_kb(pids):
    """{"pss": KiB, "rss": KiB} summed over pids (/proc/PID/smaps_rollup):
    PSS splits shared pages between the processes that map them, so nginx's
    master and worker are not counted twice."""
    out = {"pss": 0, "rss": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("Pss", "Rss"):
                        out[key.lower()] += int(rest.split()[0])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return out
