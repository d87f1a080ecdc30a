"""Helpers for streamgate's integration tests (imported by conftest.py and tests).

Everything here talks to real processes on 127.0.0.1 only, and every wait is
bounded.  The pytest fixtures in conftest.py wrap these classes so that every
process is killed at teardown even when a test fails; prefer the fixtures
(`backend`, `proxy`, `tmp_prefix`, ...) to constructing these classes by hand.

Main pieces:
  BUILD_DIR, STREAMGATE, SGBACK, REPO, SEED_DIR   paths (SG_BUILD picks the build folder,
                                                 SG_SEED_DIR the seed configs)
  seed_with_free_ports(seed_dir, num, dir)       a seed config's copy on free ports (Seed)
  SANITIZED                                      True when SG_BUILD looks like an ASan build
  free_port(), free_ports(n), port_busy(p)       loopback port helpers
  wait_for(pred, timeout)                        poll until pred() is truthy
  http_conf(body, main="")                       wrap server blocks in events{} + http{}
  run_streamgate(args)                           run the binary to completion (-t, -v, -s ...)
  Backend                                        an sgback process (one or more ports)
  Proxy                                          a streamgate process with its own prefix dir
  HttpConn, Response                             raw-socket HTTP/1.1 client (exact bytes,
                                                 keep-alive, pipelining, close detection)
  get(port, path, ...)                           one request on a fresh connection
  SgbackRequests(port)                           requests that reached an sgback (to wait on)
  EchoServer                                     Python backend echoing the raw request head
  TcpStub                                        a listener that counts connections and
                                                 closes / resets / holds them (failing peers)
"""

import base64
import collections
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = (REPO / os.environ.get("SG_BUILD", "build")).resolve()
STREAMGATE = BUILD_DIR / "streamgate"
SGBACK = BUILD_DIR / "sgback"
# Sanitizer builds are several times slower: scale every timeout with SLOW.
SANITIZED = "asan" in BUILD_DIR.name or os.environ.get("SG_SAN") == "1"
SLOW = 3.0 if SANITIZED else 1.0


# The seed configs: ../shared/seed-configs beside the clone (as in CI), or
# $SG_SEED_DIR.
SEED_DIR = Path(os.environ.get("SG_SEED_DIR") or REPO.parent / "shared" / "seed-configs").resolve()

# Text that means a sanitizer found a bug (checked in stderr at stop).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")


class SgTestError(AssertionError):
    """A helper-level failure (process died, port never opened, bad response)."""


# ---------------------------------------------------------------- ports, waits

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, close),
    and not one handed out recently in this run (see free_ports)."""
    return free_ports(1)[0]


# Ports handed out lately. The kernel may give the port it just gave to
# free_port() again once that socket is closed: two calls in a row
# (`port, h2port = free_port(), free_port()`) returned the same port under
# load and the proxy refused its "duplicate listen".
_recent_ports = collections.deque(maxlen=4096)


def free_ports(n):
    """n distinct free ports (all sockets held open together, then closed),
    none of them handed out by an earlier call of this run lately."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)          # held until the end: the next bind gets another port
            port = s.getsockname()[1]
            if port not in _recent_ports:
                ports.append(port)
                _recent_ports.append(port)
            if len(socks) > n + 1000:
                raise SgTestError("no port that was not handed out lately")
        return ports
    finally:
        for s in socks:
            s.close()


def port_busy(port, host="127.0.0.1"):
    """True if something listens on host:port, or the port cannot be bound."""
    if port_accepts(port, host, timeout=0.3):
        return True
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def port_accepts(port, host="127.0.0.1", timeout=0.5):
    """True if a TCP connect to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value (returned); SgTestError after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SgTestError("timed out waiting for %s" % what)
        time.sleep(interval)


def http_conf(body, main="", events=""):
    """A whole config: `main` lines, events {`events`}, http {`body`}."""
    return "%s\nevents { %s }\nhttp {\n%s\n}\n" % (main, events, body)


def listen_ports(conf_text):
    """Ports named by `listen` directives in a config text (ignores comments)."""
    text = re.sub(r"#[^\n]*", "", conf_text)
    ports = []
    for m in re.finditer(r"(?:^|[;{}\s])listen\s+([^;\s]+)", text):
        addr = m.group(1)
        pm = re.search(r"(\d+)$", addr)
        if pm and not addr.startswith("unix:"):
            p = int(pm.group(1))
            if p not in ports:
                ports.append(p)
    return ports


def run_streamgate(args, timeout=20, cwd=None, env=None):
    """Run build/streamgate ARGS to completion; returns CompletedProcess (text)."""
    return subprocess.run([str(STREAMGATE)] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout * SLOW, stdin=subprocess.DEVNULL)


def _sanitizer_report(text):
    for m in SANITIZER_MARKERS:
        if m in text:
            return m
    return None


def _proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _proc_cpu_ticks(pid):
    """utime + stime (clock ticks) of the whole process, all threads included."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


class _Process:
    """A child process with stdout+stderr in one file; killed by kill()."""

    def __init__(self):
        self.proc = None
        self.out_path = None
        self._out = None
        self.killed = False        # kill() was called while it ran
        self.start_failed = False  # exited before its ports opened

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        """Everything the process wrote to stdout/stderr so far."""
        if not self.out_path or not os.path.exists(self.out_path):
            return ""
        with open(self.out_path, "r", errors="replace") as f:
            return f.read()

    def _spawn(self, argv, out_path, cwd=None, env=None):
        self.out_path = str(out_path)
        self._out = open(self.out_path, "ab")
        self.proc = subprocess.Popen([str(a) for a in argv], stdout=self._out,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=env)

    def _wait_ports(self, ports, timeout, what):
        def ready():
            if self.proc.poll() is not None:
                self.start_failed = True
                raise SgTestError("%s exited with %s before listening:\n%s"
                                  % (what, self.proc.returncode, self.output()[-4000:]))
            return all(port_accepts(p) for p in ports)
        wait_for(ready, timeout, 0.02, "%s ports %s" % (what, ports))

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout=10.0):
        """Wait for exit; returns the exit code (SgTestError if still running)."""
        try:
            return self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            raise SgTestError("process %d did not exit within %ss" % (self.pid, timeout))

    def kill(self):
        """SIGKILL if still running; never raises. Safe to call twice.

        A test that kills the process on purpose is not blamed at teardown
        for its exit code (sanitizer reports are still checked)."""
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
        self._reap()

    def _reap(self):
        """SIGKILL if still running, wait, close the output file."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.kill()
                self.proc.wait(10)
            except Exception:
                pass
        if self._out:
            self._out.close()
            self._out = None

    def rss_kb(self):
        """Resident memory of the process, in KiB (VmRSS)."""
        return _proc_rss_kb(self.pid)

    def cpu_ticks(self):
        """CPU time used so far (utime+stime, all threads), in clock ticks."""
        return _proc_cpu_ticks(self.pid)


# ---------------------------------------------------------------- sgback

class Backend(_Process):
    """An sgback process listening on one or more 127.0.0.1 ports.

    Backend(ports=[p1, p2], threads=1, logdir=DIR).start() waits until every
    port accepts.  Every response carries X-Backend: PORT.  Note that /stats is
    per process: use one Backend per port when you need per-port counters.
    """

    def __init__(self, ports=None, threads=1, logdir="/tmp", quiet=True, extra_args=()):
        super().__init__()
        self.ports = list(ports) if ports else [free_port()]
        self.threads = threads
        self.quiet = quiet
        self.extra_args = list(extra_args)
        self.logdir = Path(logdir)

    @property
    def port(self):
        """The first (often only) port."""
        return self.ports[0]

    def start(self, timeout=10.0):
        argv = [SGBACK]
        for p in self.ports:
            argv += ["-l", "127.0.0.1:%d" % p]
        argv += ["-t", str(self.threads)]
        if self.quiet:
            argv.append("-q")
        argv += self.extra_args
        out = self.logdir / ("sgback-%s.log" % "-".join(map(str, self.ports)))
        self._spawn(argv, out)
        self._wait_ports(self.ports, timeout, "sgback")
        return self

    def stats(self, port=None):
        """GET /stats → dict {"accepted", "open", "requests"} (this call counts too)."""
        r = get(port or self.port, "/stats")
        if r.status != 200:
            raise SgTestError("sgback /stats answered %d" % r.status)
        return json.loads(r.body)

    def reset_stats(self, port=None):
        """GET /stats/reset (zeroes accepted/requests)."""
        get(port or self.port, "/stats/reset")

    def stop(self, check=True):
        """SIGTERM and wait; with check, fail on a sanitizer report in its output."""
        if self.proc is None:
            return
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10 * SLOW)
            except subprocess.TimeoutExpired:
                pass
        self._reap()
        if check:
            bad = _sanitizer_report(self.output())
            if bad:
                raise SgTestError("sgback reported %r:\n%s" % (bad, self.output()[-6000:]))


# ---------------------------------------------------------------- streamgate

def conf_text_of(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


class Proxy(_Process):
    """A streamgate process: `streamgate -c CONF -p PREFIX` in the foreground.

    Proxy(conf_text, prefix) writes conf_text to PREFIX/streamgate.conf (PREFIX
    gets a logs/ subfolder); Proxy(conf_file=PATH, prefix=DIR) runs an existing
    file unchanged.  start() waits until every `listen` port accepts (pass
    ports=[...] to override the ports parsed from the text).

    Attributes: pid, prefix (Path), conf_path (Path), ports, stderr (text of
    stderr), error_log (stderr + every PREFIX/logs/*error*.log), pid_file.
    Methods: reload(new_text) -> bool, stop(), quit(), kill(), rss_kb(), cpu_ticks().
    """

    def __init__(self, conf_text=None, prefix=None, conf_file=None, ports=None,
                 extra_args=(), env=None):
        super().__init__()
        if prefix is None:
            raise ValueError("Proxy needs a prefix directory")
        self.prefix = Path(prefix)
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)
        if conf_file is not None:
            self.conf_path = Path(conf_file)
            conf_text = self.conf_path.read_text()
        else:
            self.conf_path = self.prefix / "streamgate.conf"
            self.conf_path.write_text(conf_text)
        self.ports = list(ports) if ports is not None else listen_ports(conf_text)
        self.extra_args = list(extra_args)
        self.env = env
        self.exit_code = None

    @property
    def port(self):
        """The first listen port."""
        return self.ports[0]

    @property
    def pid_file(self):
        return self.prefix / "streamgate.pid"

    def start(self, timeout=10.0):
        argv = [STREAMGATE, "-c", self.conf_path, "-p", self.prefix] + self.extra_args
        self._spawn(argv, self.prefix / "stderr.log", env=self.env)
        self._wait_ports(self.ports, timeout, "streamgate")
        # Started means the pid file is written too (it is, after every
        # listener is bound): a test that counts the process's descriptors
        # from here on must not see that file's appear later.
        if not re.search(r"(^|[;{\s])pid\s", conf_text_of(self.conf_path) + " " + " ".join(map(str, self.extra_args))):
            wait_for(lambda: self._pid_file_written() or not self.running(), timeout, 0.01,
                     "the pid file")
        return self

    def _pid_file_written(self):
        try:
            return self.pid_file.read_text().strip() != ""
        except OSError:
            return False

    @property
    def stderr(self):
        return self.output()

    @property
    def error_log(self):
        """stderr followed by every logs/*error*.log under the prefix."""
        parts = [self.output()]
        logs = self.prefix / "logs"
        if logs.is_dir():
            for p in sorted(logs.glob("*error*.log")):
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def _reload_marks(self):
        t = self.error_log
        return t.count("reloaded configuration") + t.count("reload failed")

    def reload(self, new_text=None, timeout=10.0):
        """Rewrite the config (if new_text), SIGHUP, wait for the outcome in the log.

        Returns True for "reloaded configuration", False for "reload failed".
        """
        before_ok = self.error_log.count("reloaded configuration")
        before = self._reload_marks()
        if new_text is not None:
            self.conf_path.write_text(new_text)
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self._reload_marks() > before or not self.running(),
                 timeout, 0.02, "reload outcome in the error log")
        if not self.running():
            raise SgTestError("streamgate exited during reload:\n" + self.stderr[-4000:])
        return self.error_log.count("reloaded configuration") > before_ok

    def stop(self, sig=signal.SIGTERM, timeout=15.0, check=True):
        """Send sig (SIGTERM), wait for exit; with check assert exit code 0 and no
        sanitizer report.  Returns the exit code.  Safe to call twice.
        (The exit code is not asserted after kill() or a failed start().)"""
        if self.proc is None:
            return None
        if self.exit_code is None:
            if self.running():
                self.proc.send_signal(sig)
                try:
                    self.exit_code = self.proc.wait(timeout * SLOW)
                except subprocess.TimeoutExpired:
                    self._reap()
                    raise SgTestError("streamgate did not exit on signal %s:\n%s"
                                      % (sig, self.stderr[-4000:]))
            else:
                self.exit_code = self.proc.returncode
            self._reap()
        if check:
            bad = _sanitizer_report(self.error_log)
            if bad:
                raise SgTestError("streamgate reported %r:\n%s" % (bad, self.error_log[-8000:]))
            if self.exit_code != 0 and not (self.killed or self.start_failed):
                raise SgTestError("streamgate exited with %s:\n%s"
                                  % (self.exit_code, self.stderr[-4000:]))
        return self.exit_code

    def quit(self, timeout=15.0, check=True):
        """Graceful stop (SIGQUIT): in-flight requests finish first."""
        return self.stop(signal.SIGQUIT, timeout, check)


# ---------------------------------------------------------------- nginx, the reference

NGINX = "/usr/sbin/nginx"
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


class Nginx(_Process):
    """The installed nginx (Debian's nginx-light, installed by
    scripts/install-deps.sh), the reference some tests compare with: one
    process in the foreground (master_process off) with its own prefix.

    Nginx(conf_text, prefix, ports).start() writes PREFIX/nginx.conf and
    waits until every port accepts; it raises SgTestError when nginx is
    missing or does not start (a comparison with nginx is never dropped).
    `conf_text` is a whole configuration: its http{} needs `access_log off;`
    or a log under the prefix (the built-in default is /var/log/nginx)."""

    def __init__(self, conf_text, prefix, ports):
        super().__init__()
        self.prefix = Path(prefix)
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)
        self.conf_path = self.prefix / "nginx.conf"
        self.conf_path.write_text(conf_text)
        self.ports = list(ports)

    @property
    def error_log(self):
        p = self.prefix / "logs" / "error.log"
        return self.output() + (p.read_text(errors="replace") if p.exists() else "")

    def start(self, timeout=10.0):
        if not os.access(NGINX, os.X_OK):
            raise SgTestError("%s is not installed (nginx-light): run scripts/install-deps.sh" % NGINX)
        argv = [NGINX, "-p", str(self.prefix), "-c", str(self.conf_path),
                "-e", str(self.prefix / "logs" / "error.log"),
                "-g", "daemon off; master_process off; pid %s;" % (self.prefix / "nginx.pid")]
        self._spawn(argv, self.prefix / "stderr.log")
        try:
            self._wait_ports(self.ports, timeout, "nginx")
        except SgTestError:
            raise SgTestError("nginx did not start:\n%s" % self.error_log[-3000:])
        return self

    def stop(self):
        if self.proc is not None and self.running():
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10 * SLOW)
            except subprocess.TimeoutExpired:
                pass
        self._reap()


# ---------------------------------------------------------------- raw HTTP/1.1

class Response:
    """One parsed HTTP response.

    status (int), reason, version ("HTTP/1.1"), headers: list of (name, value)
    in order as received, body (bytes), trailers (list), chunked (bool),
    raw_head (bytes).  header(name) → first value (case-insensitive) or None;
    header_all(name) → every value.  text → body decoded as latin-1.
    """

    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw_head = raw_head
        self.body = b""
        self.trailers = []
        self.chunked = False

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def text(self):
        return self.body.decode("latin-1")

    @property
    def backend(self):
        """X-Backend as int (sgback's local port), or None."""
        v = self.header("X-Backend")
        return int(v) if v is not None else None

    def __repr__(self):
        return "<Response %d %r %d bytes>" % (self.status, self.reason, len(self.body))


class ConnectionClosed(SgTestError):
    """The peer closed the connection before a whole response arrived."""


class HttpConn:
    """A raw HTTP/1.1 client connection to 127.0.0.1:port.

    conn = HttpConn(port); r = conn.request("GET", "/x", headers={"A": "b"}, body=b"")
    Keeps the socket open between requests (keep-alive).  For pipelining:
    conn.send(build_request(...) + build_request(...)) then read_response() twice.
    Unread bytes stay in conn.buf.  is_closed() tells whether the peer closed.
    A Host header is added unless headers already have one (host=None: none).
    """

    def __init__(self, port, host="127.0.0.1", timeout=10.0, source=None):
        self.port = port
        self.timeout = timeout * SLOW
        # source="127.0.5.1": connect from another loopback address (ip_hash tests).
        self.sock = socket.create_connection(
            (host, port), timeout=self.timeout,
            source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        """Send raw bytes (str is encoded latin-1)."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method="GET", path="/", headers=None, body=None,
                version="HTTP/1.1", host="127.0.0.1", chunked=False):
        """Send one request and read its response (1xx interim responses skipped)."""
        self.send(build_request(method, path, headers, body, version, host, chunked))
        return self.read_response(method)

    # -- reading

    def _fill(self):
        """Read more bytes into buf; False at EOF."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, marker):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[:i + len(marker)], self.buf[i + len(marker):]
                return out
            if not self._fill():
                raise ConnectionClosed("connection closed while waiting for %r (have %r)"
                                       % (marker, self.buf[:200]))

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionClosed("connection closed after %d of %d body bytes"
                                       % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        """Read one response head (status line + headers) → Response without body."""
        raw = self._read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise SgTestError("bad status line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        return Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "",
                        headers, raw)

    def read_response(self, method="GET", skip_interim=True):
        """Read one whole response framed by Content-Length / chunked / close.

        method="HEAD" (or status 1xx/204/304) means no body.  With
        skip_interim=False a 100 Continue is returned as its own Response.
        """
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101:
                if skip_interim:
                    continue
                return r
            break
        if method == "HEAD" or r.status in (101, 204, 304):
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            r.chunked = True
            r.body, r.trailers = self._read_chunked()
        elif r.header("Content-Length") is not None:
            r.body = self._read_exact(int(r.header("Content-Length")))
        else:
            while self._fill():
                pass
            r.body, self.buf = self.buf, b""
        return r

    def _read_chunked(self):
        body = []
        while True:
            line = self._read_until(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            body.append(self._read_exact(size))
            self._read_exact(2)
        trailers = []
        while True:
            line = self._read_until(b"\r\n")
            if line == b"\r\n":
                break
            k, _, v = line[:-2].decode("latin-1").partition(":")
            trailers.append((k.strip(), v.strip()))
        return b"".join(body), trailers

    def is_closed(self, wait=0.3):
        """True if the peer closed the connection (EOF/RST seen within `wait` s).

        Bytes that arrive meanwhile are kept in buf (so this returns False).
        """
        if self.eof:
            return True
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
                return True
            self.buf += data
            return False
        except (socket.timeout, BlockingIOError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
            return True
        finally:
            self.sock.settimeout(self.timeout)


def recv_head(conn, buf=b""):
    """For Python test backends: read from conn until buf holds a whole
    request head. Returns (head, rest), or None if the peer closed first."""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def build_request(method="GET", path="/", headers=None, body=None,
                  version="HTTP/1.1", host="127.0.0.1", chunked=False):
    """Bytes of one request.  headers: dict or list of (name, value).

    Adds Host (unless host=None or given), Content-Length for a body (unless
    chunked=True: then the body — bytes or a list of chunks — is sent chunked).
    """
    hl = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hl}
    if host is not None and "host" not in names:
        hl.insert(0, ("Host", host))
    payload = b""
    if chunked:
        chunks = body if isinstance(body, (list, tuple)) else ([body] if body else [])
        if "transfer-encoding" not in names:
            hl.append(("Transfer-Encoding", "chunked"))
        for c in chunks:
            c = c.encode("latin-1") if isinstance(c, str) else c
            payload += b"%x\r\n%s\r\n" % (len(c), c)
        payload += b"0\r\n\r\n"
    elif body is not None:
        payload = body.encode("latin-1") if isinstance(body, str) else body
        if "content-length" not in names:
            hl.append(("Content-Length", str(len(payload))))
    head = "%s %s %s\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hl)
    return head.encode("latin-1") + b"\r\n" + payload


def get(port, path="/", headers=None, method="GET", body=None, timeout=10.0, **kw):
    """One request on a fresh connection (closed afterwards) → Response."""
    with HttpConn(port, timeout=timeout) as c:
        return c.request(method, path, headers=headers, body=body, **kw)


class SgbackRequests:
    """Requests an sgback port has parsed since this was made, its own /stats
    calls left out: `arrived = SgbackRequests(port)` before sending, then
    wait_for(lambda: arrived() >= 1) to know a request reached the backend
    (a wait on the event, not a sleep)."""

    def __init__(self, port):
        self.port = port
        self.calls = 0
        self.base = self._read()

    def _read(self):
        self.calls += 1
        r = get(self.port, "/stats")
        if r.status != 200:
            raise SgTestError("sgback /stats answered %d" % r.status)
        return json.loads(r.body)["requests"]

    def __call__(self):
        return self._read() - self.base - (self.calls - 1)


def _private_netns_works():
    try:
        r = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def with_fixed_ports(request, ports):
    """For a test that must bind fixed ports it cannot choose (the built-in
    demo's): returns True when the test body should run here.

    Outside, the test runs again (a pytest of its node id alone) in a
    network namespace of its own (`unshare -rn`: an unprivileged user and
    network namespace whose loopback is up), where no other process holds
    those ports; this returns False once that run passed and fails the
    test with its output when it did not. Inside (SG_PRIVATE_NETNS=1) it
    returns True. Where namespaces are not allowed, the test runs here once
    the ports are free (waiting up to 60 s), and fails if they stay busy."""
    import pytest
    import sys
    if os.environ.get("SG_PRIVATE_NETNS") == "1":
        return True
    if not _private_netns_works():
        wait_for(lambda: not any(port_busy(p) for p in ports), 60, 0.5,
                 "fixed ports %s to be free (no private network namespace here)" % (ports,))
        return True
    env = dict(os.environ, SG_PRIVATE_NETNS="1", SG_BUILD=str(BUILD_DIR))
    cmd = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid]
    r = subprocess.run(cmd, cwd=str(request.config.rootpath), env=env, capture_output=True,
                       text=True, timeout=600 * SLOW)
    out = r.stdout + r.stderr
    if r.returncode != 0 or not re.search(r"(^|\s)1 passed\b", out):
        pytest.fail("in a private network namespace (exit %d):\n%s" % (r.returncode, out[-6000:]),
                    pytrace=False)
    return False


# ---------------------------------------------------------------- Python peers

class _ThreadedListener:
    """Base: a listening socket on 127.0.0.1:port served by threads."""

    def __init__(self, port=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.conns = []
        self._stop = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.conns.append(c)
            c.settimeout(None)
            threading.Thread(target=self._serve_safe, args=(c,), daemon=True).start()

    def _serve_safe(self, c):
        try:
            self.serve(c)
        except OSError:
            pass

    def serve(self, c):
        raise NotImplementedError

    def stop(self):
        """Close the listener and every connection it accepted."""
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        self._thread.join(2)
        with self._lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


class TcpStub(_ThreadedListener):
    """A peer that accepts and then fails: mode "close" (close at once, no
    answer), "rst" (reset), "hold" (keep the connection open, never answer),
    or "raw" (answer the first request head with the bytes `reply`, then close).
    `accepted` counts connections: it tells how often the proxy tried this peer.
    """

    def __init__(self, port=None, mode="close", reply=b""):
        self.mode = mode
        self.reply = reply
        super().__init__(port)

    def serve(self, c):
        if self.mode == "hold":
            while not self._stop:
                try:
                    if not c.recv(65536):
                        break
                except OSError:
                    break
            return
        if self.mode == "rst":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif self.mode == "raw":
            data = b""
            while b"\r\n\r\n" not in data:
                more = c.recv(65536)
                if not more:
                    break
                data += more
            c.sendall(self.reply)
        c.close()


class EchoServer(_ThreadedListener):
    """A Python HTTP/1.1 backend that shows what the proxy sent.

    Every request gets 200 with body = the raw request head exactly as received
    (request line, headers, final CRLF CRLF) followed by the request body
    (chunked bodies are de-chunked; `chunked_raw` keeps the raw chunk bytes).
    The client can ask for response headers with request headers
    `X-Echo-Header: Name: value` (repeatable).  Keep-alive and HEAD work;
    `Connection: close` from the proxy closes after the response.
    heads: every raw request head received, in order.  X-Backend: PORT is set.
    received: how many bytes arrived, all connections together (counted as
    read from the sockets, before any parsing); accepted: connections;
    finished: connections whose serving ended (the peer closed).
    """

    def __init__(self, port=None):
        self.heads = []
        self.bodies = []
        self.received = 0
        self.finished = 0          # connections whose serving has ended
        super().__init__(port)

    def _serve_safe(self, c):
        try:
            super()._serve_safe(c)
        finally:
            with self._lock:
                self.finished += 1

    def _recv(self, c):
        d = c.recv(65536)
        with self._lock:
            self.received += len(d)
        return d

    def serve(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                more = self._recv(c)
                if not more:
                    c.close()
                    return
                buf += more
            i = buf.index(b"\r\n\r\n") + 4
            head, buf = buf[:i], buf[i:]
            lines = head[:-4].decode("latin-1").split("\r\n")
            method = lines[0].split(" ")[0]
            hdrs = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
            h = {k.lower(): v for k, v in hdrs}
            body = b""
            if "chunked" in h.get("transfer-encoding", "").lower():
                body, buf = self._read_chunked(c, buf)
            elif "content-length" in h:
                n = int(h["content-length"])
                while len(buf) < n:
                    more = self._recv(c)
                    if not more:
                        c.close()
                        return
                    buf += more
                body, buf = buf[:n], buf[n:]
            with self._lock:
                self.heads.append(head)
                self.bodies.append(body)
            payload = head + body
            extra = "".join("%s\r\n" % v for k, v in hdrs if k.lower() == "x-echo-header")
            resp = ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: %d\r\n"
                    "Content-Length: %d\r\n%s\r\n" % (self.port, len(payload), extra))
            c.sendall(resp.encode("latin-1") + (b"" if method == "HEAD" else payload))
            if h.get("connection", "").lower() == "close":
                c.close()
                return

    def _read_chunked(self, c, buf):
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += self._recv(c)
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                    buf += self._recv(c)
                if buf.startswith(b"\r\n"):
                    return body, buf[2:]
                return body, buf[buf.index(b"\r\n\r\n") + 4:]
            while len(buf) < size + 2:
                buf += self._recv(c)
            body += buf[:size]
            buf = buf[size + 2:]

    def last_head(self):
        """The last request head received, as text."""
        return self.heads[-1].decode("latin-1")


class RandomBody:
    """`total` bytes of random data, in blocks. A random buffer of 8 MiB + 13
    bytes (a length no block size divides) is read round and round, so a
    block lost, repeated or swapped anywhere in the stream changes its
    SHA-256. blocks(size) yields memoryviews; sha256() is the digest of all."""

    PERIOD = 8 * (1 << 20) + 13

    def __init__(self, total):
        self.total = total
        buf = os.urandom(self.PERIOD)
        self._ring = memoryview(buf + buf)     # any slice up to PERIOD is contiguous
        self._digest = None

    def blocks(self, size=1 << 20):
        off = sent = 0
        while sent < self.total:
            n = min(size, self.total - sent, self.PERIOD)
            yield self._ring[off:off + n]
            off = (off + n) % self.PERIOD
            sent += n

    def sha256(self):
        if self._digest is None:
            h = hashlib.sha256()
            for b in self.blocks(4 << 20):
                h.update(b)
            self._digest = h.hexdigest()
        return self._digest


class HashingBackend(_ThreadedListener):
    """A Python HTTP/1.1 backend for large bodies, with no code of the proxy's:

      GET /random[?chunked=1]  200 with `body` (a RandomBody), Content-Length
                               or chunked in 1 MiB chunks
      POST (any path)          reads the body (Content-Length or chunked) and
                               answers 200 "LENGTH SHA256HEX\n" of it
      GET (anything else)      200 "ok"
    Keep-alive; `answered` lists (request line, status) in order."""

    def __init__(self, body=None):
        self.body = body
        self.answered = []
        super().__init__()

    def serve(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            h = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
            if method == "POST":
                h256 = hashlib.sha256()
                n, buf = self._read_body(c, buf, h, h256)
                self._send(c, lines[0], b"%d %s\n" % (n, h256.hexdigest().encode()))
            elif target.startswith("/random") and self.body is not None:
                chunked = "chunked=1" in target
                c.sendall(b"HTTP/1.1 200 OK\r\n" + (b"Transfer-Encoding: chunked\r\n" if chunked
                          else b"Content-Length: %d\r\n" % self.body.total) + b"\r\n")
                for block in self.body.blocks():
                    if chunked:
                        c.sendall(b"%x\r\n" % len(block))
                    c.sendall(block)
                    if chunked:
                        c.sendall(b"\r\n")
                if chunked:
                    c.sendall(b"0\r\n\r\n")
                self.answered.append((lines[0], 200))
            else:
                self._send(c, lines[0], b"ok")

    def _send(self, c, line, body):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        self.answered.append((line, 200))

    @staticmethod
    def _read_body(c, buf, h, h256):
        def more():
            d = c.recv(1 << 20)
            if not d:
                raise ConnectionError("peer closed inside a body")
            return d
        n = 0
        if "chunked" in h.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in buf:
                    buf += more()
                line, _, buf = buf.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while not buf.startswith(b"\r\n") and b"\r\n\r\n" not in buf:
                        buf += more()
                    return n, buf[2:] if buf.startswith(b"\r\n") else buf.split(b"\r\n\r\n", 1)[1]
                left = size
                while left:
                    if not buf:
                        buf = more()
                    take = buf[:left]
                    h256.update(take)
                    buf = buf[len(take):]
                    left -= len(take)
                    n += len(take)
                while len(buf) < 2:
                    buf += more()
                buf = buf[2:]
        left = int(h.get("content-length", "0"))
        while left:
            if not buf:
                buf = more()
            take = buf[:left]
            h256.update(take)
            buf = buf[len(take):]
            left -= len(take)
            n += len(take)
        return n, buf


def head_of(resp):
    """Split an EchoServer response body: (request line, [(name, value)...], body bytes)."""
    raw = resp.body
    i = raw.index(b"\r\n\r\n")
    lines = raw[:i].decode("latin-1").split("\r\n")
    hdrs = [(k.strip(), v.strip()) for k, _, v in (l.partition(":") for l in lines[1:])]
    return lines[0], hdrs, raw[i + 4:]


# ---------------------------------------------------------------- shared by several test files

MB = 1 << 20
PATTERN = b"0123456789abcdef"


def pattern_bytes(n):
    """n bytes of sgback's body pattern (what /bytes/N answers)."""
    return (PATTERN * (n // 16 + 1))[:n]


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    """The Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def count_until_eof(sock, n=0):
    """Reads until the peer's FIN; n plus the number of bytes read."""
    while True:
        d = sock.recv(65536)
        if not d:
            return n
        n += len(d)


def smooth_wrr(weights, n):
    """nginx's smooth weighted round robin: indices of the first n picks."""
    cw = [0] * len(weights)
    out = []
    for _ in range(n):
        for i, w in enumerate(weights):
            cw[i] += w
        best = max(range(len(weights)), key=lambda i: (cw[i], -i))
        cw[best] -= sum(weights)
        out.append(best)
    return out


def start_h2c_backend(start_backend, h2port, h1port=None):
    """An sgback (conftest's start_backend fixture) with an HTTP/1.1 port and
    an h2c port (-2), returned once the h2c port accepts."""
    b = start_backend(ports=[h1port or free_port()],
                      extra_args=["-2", "127.0.0.1:%d" % h2port])
    wait_for(lambda: port_accepts(h2port), 10, what="h2c port %d" % h2port)
    return b


# ---------------------------------------------------------------- sgback's chat.Chat gRPC service

# What /chat.Chat/Fail answers by default (tools/sgback/grpc.c).
FAIL_MESSAGE = "room not found: \u623f\u95f4 42 (100%)"
FAIL_DETAIL = b"\x00\x01\xfe\xffchat-detail"


def grpc_msg(payload):
    """protobuf Msg{text = payload} (tests/integration/chat.proto): 0x0A, varint length, bytes."""
    if isinstance(payload, str):
        payload = payload.encode()
    n, varint = len(payload), b""
    while True:
        low, n = n & 0x7F, n >> 7
        varint += bytes([low | (0x80 if n else 0)])
        if not n:
            return b"\x0a" + varint + payload


# ---------------------------------------------------------------- gRPC through streamgate

def grpc_conf(backend_ports, location_extra="", server_extra="", http_extra=""):
    """(config text, port): streamgate on a free port, `listen ... http2`,
    location / -> grpc_pass to upstream "g" made of backend_ports."""
    port = free_port()
    servers = "".join("    server 127.0.0.1:%d;\n" % p for p in backend_ports)
    conf = http_conf("""
  access_log off;
  %s
  upstream g {
%s  }
  server {
    listen 127.0.0.1:%d http2;
    %s
    location / {
      grpc_pass grpc://g;
      %s
    }
  }
""" % (http_extra, servers, port, server_extra, location_extra))
    return conf, port


GRPC_UNLIMITED = [("grpc.max_receive_message_length", -1),
                  ("grpc.max_send_message_length", -1)]


def open_grpc_channel(port, host="127.0.0.1", root_cert=None):
    """A grpcio channel without message size limits; TLS when root_cert
    (PEM bytes) is given (ALPN h2, as every gRPC client)."""
    import grpc
    target = "%s:%d" % (host, port)
    if root_cert is None:
        return grpc.insecure_channel(target, options=GRPC_UNLIMITED)
    creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
    return grpc.secure_channel(target, creds, options=GRPC_UNLIMITED)


def grpc_bidi(ch, timeout):
    """A chat.Chat/Talk call: (outbox, replies). Put messages in outbox
    (None ends the request stream); replies is the call's iterator."""
    import queue
    outbox = queue.Queue()

    def requests():
        while True:
            m = outbox.get()
            if m is None:
                return
            yield m
    return outbox, ch.stream_stream("/chat.Chat/Talk")(requests(), timeout=timeout)


def h2_stats(h2port):
    """sgback's h2c /stats as a dict ("open_streams", "served", "cancelled",
    ...), fetched with curl --http2-prior-knowledge. The /stats stream
    itself is one of the "open_streams"."""
    p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", str(10 * SLOW),
                        "http://127.0.0.1:%d/stats" % h2port],
                       capture_output=True, timeout=20 * SLOW)
    if p.returncode != 0:
        raise SgTestError("sgback h2 /stats on %d: %s" % (h2port, p.stderr.decode(errors="replace")))
    return json.loads(p.stdout)


def make_seed_certs(prefix):
    """PREFIX/certs/{cert,key}.pem as the seed configs' certs/README.md makes
    them (CN=localhost, SAN localhost + 127.0.0.1); returns the cert's Path."""
    certs = Path(prefix) / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return certs / "cert.pem"


def seed_path(seed_dir, num):
    """The seed config numbered num ("05" -> SEED_DIR/05-*.conf)."""
    files = sorted(Path(seed_dir).glob("%s-*.conf" % num))
    if not files:
        raise SgTestError("no seed file %s-*.conf in %s" % (num, seed_dir))
    return files[0]


# host:port in a seed configuration (all of them name 127.0.0.1 or localhost)
_SEED_ADDR = re.compile(rb"(127\.0\.0\.1|localhost|\[::1\]):(\d+)\b")


class Seed:
    """A seed configuration copied with its fixed ports replaced by free ones.

    path: the copy; ports: {port written in the seed: port in the copy};
    seed[8080] is ports[8080]."""

    def __init__(self, path, ports):
        self.path = path
        self.ports = ports

    def __getitem__(self, port):
        return self.ports[port]


def seed_with_free_ports(seed_dir, num, dest_dir):
    """Copy seed NUM into dest_dir (same file name) with every port of a
    host:port outside comments replaced by a free port, the same free port
    for each occurrence of a seed port; every other byte is kept. Returns a
    Seed. The seeds' ports are fixed (8080, 50051...): run as they are, a
    test would depend on nobody else using them."""
    src = seed_path(seed_dir, num)
    lines = src.read_bytes().splitlines(keepends=True)
    fixed = []
    for line in lines:
        code = line.partition(b"#")[0]
        for m in _SEED_ADDR.finditer(code):
            if int(m.group(2)) not in fixed:
                fixed.append(int(m.group(2)))
    ports = dict(zip(fixed, free_ports(len(fixed))))

    def swap(m):
        return m.group(1) + b":" + str(ports[int(m.group(2))]).encode()
    out = []
    for line in lines:
        code, mark, comment = line.partition(b"#")
        out.append(_SEED_ADDR.sub(swap, code) + mark + comment)
    dest = Path(dest_dir) / src.name
    dest.write_bytes(b"".join(out))
    return Seed(dest, ports)


class RawH2:
    """A python-h2 client on one socket, for what curl cannot do (not
    reading, resetting streams)."""

    def __init__(self, port):
        import h2.config
        import h2.connection
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                          header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, sid, method, path, end=True):
        self.conn.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"),
                                     (":authority", "127.0.0.1")], end_stream=end)
        self.flush()

    def pump(self, timeout):
        """Events from one read (empty on timeout)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return []
        if not data:
            raise ConnectionError("server closed the connection")
        events = self.conn.receive_data(data)
        self.flush()
        return events

    def response(self, sid, timeout=5.0):
        """(status, body) of stream sid, acknowledging its data."""
        import h2.events as h2events
        status, body = None, b""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            for ev in self.pump(0.2):
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, h2events.ResponseReceived):
                    status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2events.DataReceived):
                    body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    self.flush()
                elif isinstance(ev, h2events.StreamEnded):
                    return status, body
        raise AssertionError("no complete response on stream %d" % sid)

    def close(self):
        self.sock.close()


class DnsServer:
    """A DNS server on 127.0.0.1 (UDP, a free port), its wire format written
    here by hand (RFC 1035, RFC 2782), for tests of streamgate's resolver.
    `records` maps (name, type) to a list: addresses for A (1) and AAAA (28),
    (priority, weight, port, target) for SRV (33); a plain name maps to
    addresses, each answered as A or AAAA by its family. A name not in it at
    all is NXDOMAIN. `queries` lists every (name, type) asked. `silent`:
    questions get no answer (a dead resolver); `hold` (a threading.Event):
    answers wait until it is set."""

    def __init__(self, records=None, ttl=1, hold=None):
        self.ttl = ttl
        self.hold = hold
        self.silent = False
        self.lock = threading.Lock()
        self.queries = []
        self.set(records or {})
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def set(self, records):
        flat = {}
        for k, v in records.items():
            if isinstance(k, tuple):
                flat.setdefault((k[0].lower(), k[1]), []).extend(v)
            else:
                flat.setdefault((k.lower(), 1), []).extend(a for a in v if ":" not in a)
                flat.setdefault((k.lower(), 28), []).extend(a for a in v if ":" in a)
        with self.lock:
            self.records = flat

    def _run(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            with self.lock:
                try:
                    answer = self._answer(data)
                except (struct.error, IndexError):
                    continue      # not a DNS query (a stray datagram on a reused port): no answer
                if self.silent:
                    continue
            try:
                if self.hold is not None:
                    self.hold.wait(30)
                self.sock.sendto(answer, addr)
            except OSError:
                return

    @staticmethod
    def _name(text):
        return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".") if label) + b"\0"

    def _answer(self, q):
        qid = struct.unpack("!H", q[:2])[0]
        off, labels = 12, []
        while q[off]:
            n = q[off]
            labels.append(q[off + 1:off + 1 + n].decode("latin-1"))
            off += 1 + n
        off += 1
        qtype = struct.unpack("!H", q[off:off + 2])[0]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        answers = []
        for v in self.records.get((name, qtype), []):
            if qtype == 1:
                rd = socket.inet_aton(v)
            elif qtype == 28:
                rd = socket.inet_pton(socket.AF_INET6, v)
            elif qtype == 33:
                prio, weight, port, target = v
                rd = struct.pack("!HHH", prio, weight, port) + self._name(target)
            else:
                continue
            answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, self.ttl, len(rd)) + rd)
        known = any(k[0] == name for k in self.records)
        head = struct.pack("!HHHHHH", qid, 0x8180 | (0 if known else 3), 1, len(answers), 0, 0)
        return head + q[12:off + 4] + b"".join(answers)

    def close(self):
        self.sock.close()
