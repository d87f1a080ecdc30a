"""Running as a service: one instance per configuration (the pid file is
locked), and nginx's binary upgrade (USR2: a new process on the same
listening sockets; QUIT: the old one drains and exits) under mixed load."""
import asyncio
import http.client
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import sgtest
from sgtest import SLOW, free_port, grpc_bidi, grpc_msg as msg, http_conf, wait_for

grpc = pytest.importorskip("grpc")
websockets = pytest.importorskip("websockets")


def pid_alive(pid):
    """Running (a zombie, left to whoever adopted the orphan, counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def read_pid(path):
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def get_pid_header(port, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    return r.status, r.getheader("X-Pid")


# ---------------------------------------------------------------- one instance

def test_second_instance_refused_first_keeps_serving(start_proxy):
    port = free_port()
    conf = http_conf("""
  access_log off;
  server {
    listen 127.0.0.1:%d;
    location / { add_header X-Pid $pid always; return 200 "ok\\n"; }
  }
""" % port, main="worker_processes 2;")
    a = start_proxy(conf)
    wait_for(lambda: read_pid(a.pid_file) == a.pid, 10, what="A's pid file")
    before = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    assert get_pid_header(port, before) == (200, str(a.pid))   # kept alive across B's attempt

    b = subprocess.run([str(sgtest.STREAMGATE), "-c", str(a.conf_path), "-p", str(a.prefix)],
                       capture_output=True, text=True, timeout=20 * SLOW)
    assert b.returncode != 0
    assert "pid %d" % a.pid in b.stderr, b.stderr
    assert "running" in b.stderr
    assert read_pid(a.pid_file) == a.pid          # B neither wrote nor removed the file

    # -t does not take the lock; -s reload reaches A
    t = subprocess.run([str(sgtest.STREAMGATE), "-t", "-c", str(a.conf_path), "-p", str(a.prefix)],
                       capture_output=True, text=True, timeout=20 * SLOW)
    assert t.returncode == 0, t.stderr
    marks = a.error_log.count("reloaded configuration")
    s = subprocess.run([str(sgtest.STREAMGATE), "-s", "reload", "-c", str(a.conf_path), "-p", str(a.prefix)],
                       capture_output=True, text=True, timeout=20 * SLOW)
    assert s.returncode == 0, s.stderr
    wait_for(lambda: a.error_log.count("reloaded configuration") > marks, 10, what="reload of A")

    # A keeps every connection: the one opened before, and each new one
    assert get_pid_header(port, before) == (200, str(a.pid))
    for _ in range(20):
        assert get_pid_header(port) == (200, str(a.pid))
    before.close()
    a.stop()


def test_stale_pid_file_is_taken_over(start_proxy, tmp_prefix):
    port = free_port()
    conf = http_conf("""
  access_log off;
  server { listen 127.0.0.1:%d; location / { return 200 "ok\\n"; } }
""" % port)
    (tmp_prefix / "streamgate.pid").write_text("999999\n")   # left by a killed process: no lock held
    p = start_proxy(conf, prefix=tmp_prefix)
    wait_for(lambda: read_pid(p.pid_file) == p.pid, 10, what="the pid file rewritten")
    p.stop()
    assert not p.pid_file.exists()


# ---------------------------------------------------------------- binary upgrade

def upgrade_conf(port, grpc_port, backend_port, h2_port):
    return http_conf("""
  access_log off;
  upstream h1 { server 127.0.0.1:%d; keepalive 8; }
  upstream g { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://h1;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      add_header X-Pid $pid always;
    }
    location /ws/ { proxy_pass http://h1; proxy_read_timeout 1h; }
  }
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass grpc://g; }
  }
""" % (backend_port, h2_port, port, grpc_port), main="worker_processes 2;")


class HttpLoad(threading.Thread):
    """GET / in a loop on one kept-alive connection. A request that finds
    its reused connection closed by the server before any byte of an answer
    (the old process closing an idle keep-alive connection as it drains) is
    sent again on a new connection, as HTTP clients do for idempotent
    requests (RFC 9112 9.3.1); anything else is a failure."""

    def __init__(self, port, deadline, max_requests):
        super().__init__(daemon=True)
        self.port, self.deadline, self.max_requests = port, deadline, max_requests
        self.ok, self.failures, self.retries = 0, [], 0
        self.pids = []
        self.stop_flag = threading.Event()

    def run(self):
        conn, used = None, False
        n = 0
        while not self.stop_flag.is_set() and time.monotonic() < self.deadline and n < self.max_requests:
            if conn is None:
                conn, used = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10 * SLOW), False
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read()
                n += 1
                if r.status == 200 and body:
                    self.ok += 1
                    pid = r.getheader("X-Pid")
                    if not self.pids or self.pids[-1] != pid:
                        self.pids.append(pid)
                else:
                    self.failures.append("status %s" % r.status)
                used = True
                if r.will_close:
                    conn.close()
                    conn = None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                conn = None
                if used:
                    self.retries += 1        # the keep-alive race: try again on a new connection
                else:
                    n += 1
                    self.failures.append(repr(e))
            except Exception as e:           # noqa: BLE001 - any other error fails the test
                n += 1
                self.failures.append(repr(e))
                if conn:
                    conn.close()
                conn = None
        if conn:
            conn.close()


class WsEcho(threading.Thread):
    """One WebSocket to sgback's /ws/echo, opened at start(), exchanging a
    message every 50 ms until stop(); then closed normally."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.opened = threading.Event()
        self.exchanged = 0
        self.error = None
        self.close_code = None
        self._halt = threading.Event()

    def run(self):
        async def main():
            async with websockets.connect("ws://127.0.0.1:%d/ws/echo" % self.port, ping_interval=None,
                                          open_timeout=10 * SLOW) as ws:
                self.opened.set()
                while not self._halt.is_set():
                    m = "message %d" % self.exchanged
                    await ws.send(m)
                    got = await asyncio.wait_for(ws.recv(), 10 * SLOW)
                    assert got == m, (got, m)
                    self.exchanged += 1
                    await asyncio.sleep(0.05)
                await ws.close()
                self.close_code = ws.close_code
        try:
            asyncio.run(main())
        except Exception as e:               # noqa: BLE001 - reported by the test
            self.error = repr(e)
            self.opened.set()

    def stop(self):
        self._halt.set()


class GrpcBidi(threading.Thread):
    """One chat.Chat/Talk call, opened at start(), exchanging a message
    every 50 ms until stop(); then its request stream ends normally."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.ch = sgtest.open_grpc_channel(port)
        self.opened = threading.Event()
        self.exchanged = 0
        self.error = None
        self.code = None
        self._halt = threading.Event()

    def run(self):
        try:
            outbox, replies = grpc_bidi(self.ch, 120 * SLOW)
            while not self._halt.is_set():
                m = msg("talk %d" % self.exchanged)
                outbox.put(m)
                assert next(replies) == m
                self.exchanged += 1
                self.opened.set()
                time.sleep(0.05)
            outbox.put(None)
            assert list(replies) == []
            self.code = replies.code()
        except Exception as e:               # noqa: BLE001 - reported by the test
            self.error = repr(e)
            self.opened.set()
        finally:
            self.ch.close()

    def stop(self):
        self._halt.set()


def test_binary_upgrade_under_mixed_load(start_proxy, start_backend):
    h2_port = free_port()
    backend = sgtest.start_h2c_backend(start_backend, h2_port)
    port, grpc_port = free_port(), free_port()
    old = start_proxy(upgrade_conf(port, grpc_port, backend.port, h2_port))
    pid_file = old.pid_file
    oldbin = pid_file.with_name(pid_file.name + ".oldbin")
    new_pid = 0
    deadline = time.monotonic() + 60 * SLOW          # bounds every loop below
    loads = [HttpLoad(port, deadline, 20000) for _ in range(3)]
    ws, talk = WsEcho(port), GrpcBidi(grpc_port)
    try:
        for t in loads + [ws, talk]:
            t.start()
        assert ws.opened.wait(10 * SLOW) and ws.error is None, ws.error
        assert talk.opened.wait(10 * SLOW) and talk.error is None, talk.error
        # about 15 s of load in all, measured in WebSocket messages (one per 50 ms)
        wait_for(lambda: all(t.ok >= 20 for t in loads) and ws.exchanged >= 80, 30,
                 what="load through the old process")

        os.kill(old.pid, signal.SIGUSR2)
        wait_for(lambda: oldbin.exists() and read_pid(pid_file) not in (0, old.pid), 20,
                 what="the new process's pid file")
        new_pid = read_pid(pid_file)
        assert read_pid(oldbin) == old.pid
        wait_for(lambda: "%d#%d: streamgate" % (new_pid, new_pid) in old.error_log
                 and "started" in old.error_log.split("%d#%d: streamgate" % (new_pid, new_pid))[-1],
                 20, what="the new process's start in the log")

        mark = ws.exchanged      # both processes serve for a while
        wait_for(lambda: ws.exchanged >= mark + 60, 30, what="load on both processes")
        ws_before, talk_before = ws.exchanged, talk.exchanged
        os.kill(old.pid, signal.SIGQUIT)
        wait_for(lambda: "gracefully shutting down" in old.error_log, 10, what="old process draining")
        # the old process waits for the tunnel and the stream, which go on
        wait_for(lambda: ws.exchanged >= ws_before + 80 and talk.exchanged >= talk_before + 80, 30,
                 what="WebSocket and gRPC stream still exchanging after QUIT")
        assert old.running()

        # new connections are the new process's
        for _ in range(10):
            assert get_pid_header(port) == (200, str(new_pid))
        ch = sgtest.open_grpc_channel(grpc_port)
        try:
            assert ch.unary_unary("/chat.Chat/Echo")(msg("after"), timeout=10 * SLOW) == msg("after")
        finally:
            ch.close()
        wait_for(lambda: all(t.pids and t.pids[-1] == str(new_pid) for t in loads), 30,
                 what="keep-alive load moved to the new process")

        # the stream and the tunnel end normally, then the old process exits
        ws.stop()
        talk.stop()
        ws.join(20 * SLOW)
        talk.join(20 * SLOW)
        assert ws.error is None and ws.close_code == 1000, (ws.error, ws.close_code)
        assert talk.error is None and talk.code == grpc.StatusCode.OK, (talk.error, talk.code)
        assert old.wait(30) == 0
        assert not oldbin.exists()
        assert read_pid(pid_file) == new_pid and pid_alive(new_pid)

        for t in loads:
            t.stop_flag.set()
        for t in loads:
            t.join(30 * SLOW)
        total = sum(t.ok for t in loads)
        failures = [f for t in loads for f in t.failures]
        assert failures == [], failures[:10]
        assert total > 100
        print("requests %d, keep-alive retries %d" % (total, sum(t.retries for t in loads)))
        for t in loads:
            assert t.pids[0] == str(old.pid) and t.pids[-1] == str(new_pid), t.pids
        assert get_pid_header(port) == (200, str(new_pid))
    finally:
        for t in loads:
            t.stop_flag.set()
        ws.stop()
        talk.stop()
        if new_pid and pid_alive(new_pid):
            os.kill(new_pid, signal.SIGTERM)
            wait_for(lambda: not pid_alive(new_pid), 20, what="the new process's exit")
    assert "[alert]" not in old.error_log and "[crit]" not in old.error_log


def test_failed_new_binary_old_one_keeps_serving(start_proxy, tmp_path):
    """The new process cannot start (here: its configuration no longer
    loads): the old one takes its pid file back and keeps serving."""
    port = free_port()
    conf = http_conf("""
  access_log off;
  server { listen 127.0.0.1:%d; location / { add_header X-Pid $pid always; return 200 "ok\\n"; } }
""" % port)
    p = start_proxy(conf)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    assert get_pid_header(port, conn) == (200, str(p.pid))
    p.conf_path.write_text(conf.replace("location /", "no_such_directive on; location /"))
    os.kill(p.pid, signal.SIGUSR2)
    wait_for(lambda: "the new binary" in p.error_log and "exited" in p.error_log, 20,
             what="the new process's failure")
    wait_for(lambda: read_pid(p.pid_file) == p.pid, 10, what="pid file restored")
    assert not p.pid_file.with_name(p.pid_file.name + ".oldbin").exists()
    assert get_pid_header(port, conn) == (200, str(p.pid))
    assert get_pid_header(port) == (200, str(p.pid))
    conn.close()
    p.conf_path.write_text(conf)
    p.quit()


def test_upgrade_runs_the_replaced_executable(start_proxy, tmp_path):
    """An upgrade installs a new file over the running one's: the kernel
    names the running one's "PATH (deleted)", and USR2 runs what PATH is now."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "streamgate"
    shutil.copy(sgtest.STREAMGATE, exe)
    port = free_port()
    conf = http_conf("""
  access_log off;
  server { listen 127.0.0.1:%d; location / { add_header X-Pid $pid always; return 200 "ok\\n"; } }
""" % port)
    p = start_proxy(conf, start=False)
    p._spawn([exe, "-c", p.conf_path, "-p", p.prefix], p.prefix / "stderr.log")
    p._wait_ports([port], 10, "streamgate")
    wait_for(lambda: read_pid(p.pid_file) == p.pid, 10, what="pid file")
    shutil.copy(sgtest.STREAMGATE, bindir / "streamgate.new")
    os.replace(bindir / "streamgate.new", exe)
    assert os.readlink("/proc/%d/exe" % p.pid).endswith(" (deleted)")
    new_pid = 0
    try:
        os.kill(p.pid, signal.SIGUSR2)
        wait_for(lambda: read_pid(p.pid_file) not in (0, p.pid), 20, what="the new process's pid file")
        new_pid = read_pid(p.pid_file)
        assert os.readlink("/proc/%d/exe" % new_pid) == str(exe)
        # a second USR2, to the new one while the old one runs, is refused
        os.kill(new_pid, signal.SIGUSR2)
        wait_for(lambda: "the old binary (pid %d) still runs" % p.pid in p.error_log, 10,
                 what="the refusal in the log")
        assert read_pid(p.pid_file.with_name(p.pid_file.name + ".oldbin")) == p.pid
        p.quit()
        assert get_pid_header(port) == (200, str(new_pid))
    finally:
        if new_pid and pid_alive(new_pid):
            os.kill(new_pid, signal.SIGTERM)
            wait_for(lambda: not pid_alive(new_pid), 20, what="the new process's exit")
