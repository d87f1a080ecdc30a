"""Reload (SIGHUP) and stop signals.

Reloads under load lose no request; a broken file changes nothing and is
reported with file:line:col; a routing change takes effect for new
requests; in-flight requests finish across a reload and a graceful stop
(SIGQUIT); SIGTERM stops promptly.
"""

import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import sgtest
from sgtest import (HttpConn, free_port, get, http_conf, port_accepts, run_streamgate,
                    wait_for, SLOW)


def conf(port, backend_port, location="proxy_pass http://backend;", extra=""):
    return http_conf("""
  upstream backend {
    server 127.0.0.1:%d;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:%d;
    %s
    location / {
      %s
    }
  }
""" % (backend_port, port, extra, location), main="worker_processes 2;")


@pytest.fixture
def setup(start_backend, start_proxy):
    b = start_backend(threads=2)
    port = free_port()
    p = start_proxy(conf(port, b.port))
    return p, port, b


def wait_pid_file(p):
    """`-s SIGNAL` reads the pid file: wait until it names the running process."""
    def ok():
        try:
            return p.pid_file.read_text().strip() == str(p.pid)
        except OSError:
            return False
    wait_for(ok, 5, what="pid file %s" % p.pid_file)


def in_thread(fn, *args):
    """Run fn(*args) in a thread; returns a function that joins and returns its result."""
    out = {}

    def run():
        try:
            out["r"] = fn(*args)
        except BaseException as e:        # re-raised in the test thread
            out["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()

    def result(timeout=15):
        t.join(timeout * SLOW)
        assert not t.is_alive(), "request thread did not finish"
        if "e" in out:
            raise out["e"]
        return out["r"]
    return result


def load_python(port, seconds, stop_evt):
    """Fallback load generator (no wrk): 8 threads of keep-alive GETs until
    stop_evt is set or `seconds` pass. Returns (ok, failures)."""
    counts = {"ok": 0, "bad": []}
    lock = threading.Lock()

    def worker():
        c = None
        while not stop_evt.is_set():
            try:
                if c is None:
                    c = HttpConn(port, timeout=5)
                r = c.request("GET", "/")
                with lock:
                    if r.status == 200:
                        counts["ok"] += 1
                    else:
                        counts["bad"].append(r.status)
                if (r.header("Connection") or "").lower() == "close":
                    c.close()
                    c = None
            except Exception as e:
                with lock:
                    counts["bad"].append(repr(e))
                if c:
                    c.close()
                c = None
        if c:
            c.close()
    with ThreadPoolExecutor(8) as ex:
        for _ in range(8):
            ex.submit(worker)
        stop_evt.wait(seconds)      # until the test sets it, at most `seconds`
        stop_evt.set()
    return counts["ok"], counts["bad"]


def test_reloads_under_load_lose_nothing(setup):
    """20 reloads while wrk keeps 20 connections busy: each generation
    serves (a new request sees its header) while load flows through it
    (the backend's count moves on), and wrk, stopped after the last one
    (SIGINT: it prints its summary), saw no error and no non-2xx answer."""
    p, port, b = setup
    texts = [conf(port, b.port, extra="add_header X-Gen a;"),
             conf(port, b.port, extra="add_header X-Gen b; keepalive_timeout 70s;")]
    wrk = shutil.which("wrk")
    load_requests = sgtest.SgbackRequests(b.port)
    if wrk:
        load = subprocess.Popen([wrk, "-t2", "-c20", "-d600s", "http://127.0.0.1:%d/" % port],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    else:
        stop_evt = threading.Event()
        load_result = in_thread(load_python, port, 600, stop_evt)
    try:
        wait_for(lambda: load_requests() >= 200, 30, 0.05, "the load to flow")
        for i in range(20):
            assert p.reload(texts[i % 2]), "reload %d failed:\n%s" % (i, p.error_log[-2000:])
            gen = "ab"[i % 2]
            wait_for(lambda: get(port, "/").header("X-Gen") == gen, 10, 0.02,
                     "generation %d to serve" % i)
            before = load_requests()
            wait_for(lambda: load_requests() >= before + 200, 30, 0.02,
                     "load through generation %d" % i)
        if wrk:
            load.send_signal(signal.SIGINT)
            out, _ = load.communicate(timeout=30)
        else:
            stop_evt.set()
    finally:
        if wrk and load.poll() is None:
            load.kill()
            load.wait()
    assert p.running()
    if wrk:
        assert load.returncode == 0, out
        assert "Socket errors" not in out, out
        assert "Non-2xx or 3xx responses" not in out, out
        m = re.search(r"(\d+) requests in", out)
        assert m and int(m.group(1)) >= 20 * 200, out
    else:
        ok, bad = load_result(30)
        assert not bad, bad[:10]
        assert ok >= 20 * 200
    assert p.error_log.count("reloaded configuration") >= 20
    # The last generation (texts[1]) serves.
    r = get(port, "/")
    assert r.status == 200 and r.header("X-Gen") == "b"


def test_broken_reload_keeps_old_config(setup):
    p, port, b = setup
    good = p.conf_path.read_text()
    lines = good.split("\n")
    # An unknown directive on a known line and column inside the server block.
    idx = next(i for i, l in enumerate(lines) if "listen" in l)
    lines.insert(idx + 1, "    bogus_directive on;")
    bad = "\n".join(lines)
    assert p.reload(bad) is False
    log = p.error_log
    assert "reload failed" in log
    m = re.search(r"streamgate\.conf:(\d+):(\d+)", log[log.index("reload failed") - 400:])
    assert m, log[-2000:]
    assert int(m.group(1)) == idx + 2, "wrong line in %r" % m.group(0)
    assert int(m.group(2)) == 5, "wrong column in %r" % m.group(0)
    assert 'unknown directive "bogus_directive"' in log
    # The old generation keeps serving, on new and on kept-alive connections.
    for _ in range(5):
        r = get(port, "/")
        assert r.status == 200 and r.text.startswith("sgback ")
    # And a later good reload works.
    assert p.reload(good) is True
    assert get(port, "/").status == 200


@pytest.mark.parametrize("bad_text", [
    pytest.param("events {}\nhttp {\n  server {\n    listen 127.0.0.1:1;\n", id="unclosed-block"),
    pytest.param("events {}\nhttp {\n  keepalive_timeout;\n}\n", id="bad-arg-count"),
    pytest.param("http {}\n", id="no-events-block"),
    pytest.param("", id="empty-file"),
])
def test_other_broken_reloads(setup, bad_text):
    """Whatever is wrong with the new file, the running proxy keeps serving."""
    p, port, b = setup
    assert p.reload(bad_text) is False
    assert p.running()
    for _ in range(3):
        assert get(port, "/").status == 200
    assert p.reload(conf(port, b.port)) is True
    assert get(port, "/").status == 200


def test_reload_changes_routing(setup):
    p, port, b = setup
    with HttpConn(port, timeout=5) as kept:
        r = kept.request("GET", "/")
        assert r.status == 200 and r.text.startswith("sgback ")
        assert p.reload(conf(port, b.port, location="return 200 v2;")) is True
        r = get(port, "/anything")
        assert r.status == 200
        assert r.body == b"v2"
        assert r.header("X-Backend") is None
        # A connection kept alive across the reload still works (old or new routing).
        r = kept.request("GET", "/")
        assert r.status == 200
        assert r.body == b"v2" or r.text.startswith("sgback ")


def test_inflight_request_survives_reload(setup):
    p, port, b = setup
    arrived = sgtest.SgbackRequests(b.port)
    res = in_thread(get, port, "/delay/1500")
    wait_for(lambda: arrived() >= 1, 5, what="the request at the backend")
    assert p.reload(conf(port, b.port, location="return 200 v2;")) is True
    assert get(port, "/").body == b"v2"
    r = res()
    assert r.status == 200
    assert r.header("X-Backend") == str(b.port)


def test_reload_via_command_line(setup):
    p, port, b = setup
    wait_pid_file(p)
    p.conf_path.write_text(conf(port, b.port, location="return 200 cli;"))
    res = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "reload"])
    assert res.returncode == 0, res.stderr
    wait_for(lambda: get(port, "/").body == b"cli", 5, what="reload via -s reload")
    # the new generation serves before the line that says so is written
    wait_for(lambda: "reloaded configuration" in p.error_log, 5, what="the reload's log line")


def test_graceful_quit_finishes_inflight(setup):
    p, port, b = setup
    arrived = sgtest.SgbackRequests(b.port)
    res = in_thread(get, port, "/delay/%d" % (2000 * SLOW))
    wait_for(lambda: arrived() >= 1, 5, what="the request at the backend")
    t0 = time.monotonic()
    p.signal(signal.SIGQUIT)
    # nginx closes its listeners at once on quit, while requests finish.
    wait_for(lambda: not port_accepts(port, timeout=0.3), 5,
             what="the listener closed after SIGQUIT")
    assert p.running(), "exited before the in-flight request finished"
    r = res()
    assert r.status == 200
    assert r.header("X-Backend") == str(b.port)
    assert p.wait(10) == 0
    assert time.monotonic() - t0 >= 0.4, "exited before the in-flight request finished"


def test_graceful_quit_closes_idle_keepalive(setup):
    """An idle kept-alive client connection does not hold up a graceful stop."""
    p, port, b = setup
    with HttpConn(port, timeout=5) as c:
        assert c.request("GET", "/").status == 200
        p.signal(signal.SIGQUIT)
        # keepalive_timeout is 75 s: exiting within a few seconds shows the
        # idle connection did not hold the stop up
        assert p.wait(5) == 0
        assert c.is_closed(wait=1)


class HeldBackend(sgtest._ThreadedListener):
    """Reads a request head, sets `got_request`, then never answers."""

    def __init__(self):
        self.got_request = threading.Event()
        super().__init__()

    def serve(self, c):
        if sgtest.recv_head(c) is None:
            return
        self.got_request.set()
        while not self._stop and c.recv(65536):
            pass


def test_sigterm_exits_promptly(start_proxy):
    """SIGTERM is a fast stop: a request still waiting for its backend does
    not hold it up, and its client sees the connection closed without a
    response."""
    held = HeldBackend()
    try:
        port = free_port()
        p = start_proxy(conf(port, held.port))
        c = HttpConn(port, timeout=10 * SLOW)
        c.send(sgtest.build_request("GET", "/"))
        assert held.got_request.wait(5 * SLOW), "the request never reached the backend"
        p.signal(signal.SIGTERM)
        # within 5 s, where the backend's silence would hold a graceful
        # stop for proxy_read_timeout (60 s)
        assert p.wait(5) == 0
        # The process is gone, so the kernel has closed its sockets: the
        # client reads to the end at once, and finds no response.
        got = b""
        try:
            while True:
                d = c.sock.recv(65536)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            pass
        c.close()
        assert got == b"", got[:200]
    finally:
        held.stop()


def test_stop_via_command_line(setup):
    p, port, b = setup
    wait_pid_file(p)
    res = run_streamgate(["-c", p.conf_path, "-p", p.prefix, "-s", "stop"])
    assert res.returncode == 0, res.stderr
    assert p.wait(5) == 0


def test_kept_connection_is_routed_by_each_new_generation(setup):
    """A client connection kept alive across reloads is routed by the
    servers its address has in the generation each request starts on,
    also once the generation it was accepted on is gone."""
    p, port, b = setup

    def two_servers(gen):
        text = conf(port, b.port)
        end = text.rstrip().rfind("}")     # of http {}: the first server stays the default
        return text[:end] + """  server {
    listen 127.0.0.1:%d;
    server_name gen%d.test;
    location / { return 200 gen%d; }
  }
""" % (port, gen, gen) + text[end:]

    with HttpConn(port, timeout=5) as kept:
        assert kept.request("GET", "/").text.startswith("sgback ")
        for gen in range(3):
            assert p.reload(two_servers(gen)) is True
            r = kept.request("GET", "/", headers={"Host": "gen%d.test" % gen})
            assert r.status == 200 and r.body == b"gen%d" % gen
            r = kept.request("GET", "/", headers={"Host": "gen%d.test" % (gen + 1)})
            assert r.status == 200 and r.text.startswith("sgback ")
