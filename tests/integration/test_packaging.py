"""packaging/: the systemd unit passes `systemd-analyze verify`, the
example configuration passes -t, and sd_notify's protocol (the unit is
Type=notify) tells systemd the truth: READY=1 once the listeners accept,
RELOADING=1 then READY=1 around a reload, STOPPING=1 on stop."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import sgtest
from sgtest import SLOW, free_port, http_conf, port_accepts, wait_for

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    text = (PACKAGING / "streamgate.service").read_text()
    assert "Type=notify" in text and "LimitNOFILE=" in text and "ExecReload=" in text
    assert "ExecStartPre=/usr/sbin/streamgate -t" in text
    # verify checks that each Exec binary exists: point it at the one built here
    unit = tmp_path / "streamgate.service"
    unit.write_text(text.replace("/usr/sbin/streamgate", str(sgtest.STREAMGATE)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "streamgate.service" not in r.stderr, r.stderr   # no warning about our unit


def test_unit_with_an_error_fails_verify(tmp_path):
    """The check above is a real one: a misspelt key is reported."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    text = (PACKAGING / "streamgate.service").read_text().replace("/usr/sbin/streamgate", str(sgtest.STREAMGATE))
    unit = tmp_path / "streamgate.service"
    unit.write_text(text.replace("Type=notify", "Type=notifyy"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60 * SLOW)
    assert "streamgate.service" in r.stderr


def test_example_configuration_and_logrotate():
    r = subprocess.run([str(sgtest.STREAMGATE), "-t", "-c", str(PACKAGING / "streamgate.conf")],
                       capture_output=True, text=True, timeout=20 * SLOW)
    assert r.returncode == 0, r.stderr
    conf = (PACKAGING / "streamgate.conf").read_text()
    assert "include /etc/streamgate/conf.d/*.conf;" in conf and "pid /run/streamgate.pid;" in conf
    rot = (PACKAGING / "streamgate.logrotate").read_text()
    assert "/var/log/streamgate/*.log" in rot and "-s reopen" in rot


def process_alive(pid):
    """Running (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class NotifySocket:
    """systemd's side of sd_notify: a unix datagram socket."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def next(self, timeout=10.0):
        self.sock.settimeout(timeout * SLOW)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if "=" in line)

    def close(self):
        self.sock.close()


def test_sd_notify_ready_reloading_stopping(start_proxy, tmp_path):
    port = free_port()
    conf = http_conf("""
  access_log off;
  server { listen 127.0.0.1:%d; location / { return 200 "ok\\n"; } }
""" % port)
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        env = dict(os.environ, NOTIFY_SOCKET=ns.path)
        p = start_proxy(conf, env=env, start=False)
        argv = [sgtest.STREAMGATE, "-c", p.conf_path, "-p", p.prefix]
        p._spawn(argv, p.prefix / "stderr.log", env=env)   # not waiting for the port: READY=1 says when
        m = ns.next()
        assert m.get("READY") == "1", m
        assert m.get("MAINPID") == str(p.pid)
        assert port_accepts(port)                  # ready means accepting
        assert sgtest.get(port).status == 200

        p.proc.send_signal(signal.SIGHUP)
        m = ns.next()
        assert m.get("RELOADING") == "1" and int(m["MONOTONIC_USEC"]) > 0, m
        m = ns.next()
        assert m == {"READY": "1"}, m
        assert "reloaded configuration" in p.error_log

        p.proc.send_signal(signal.SIGTERM)
        m = ns.next()
        assert m == {"STOPPING": "1"}, m
        assert p.wait(15) == 0
    finally:
        ns.close()


def test_sd_notify_abstract_socket_and_quit(start_proxy, tmp_path):
    """NOTIFY_SOCKET=@name is the abstract namespace; QUIT announces STOPPING too."""
    port = free_port()
    conf = http_conf("""
  access_log off;
  server { listen 127.0.0.1:%d; location / { return 200 "ok\\n"; } }
""" % port)
    name = "streamgate-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(10 * SLOW)
    try:
        p = start_proxy(conf, env=dict(os.environ, NOTIFY_SOCKET="@" + name))
        assert b"READY=1" in s.recv(4096)
        p.proc.send_signal(signal.SIGQUIT)
        assert s.recv(4096) == b"STOPPING=1"
        wait_for(lambda: not p.running(), 15, what="exit after QUIT")
    finally:
        s.close()


def test_sd_notify_across_binary_upgrade(start_proxy, tmp_path):
    """The new binary announces itself (READY=1, MAINPID=new); the old one,
    draining on QUIT, says nothing (its STOPPING=1 would stop the service);
    STOPPING=1 comes from the new one when it stops."""
    port = free_port()
    conf = http_conf("""
  access_log off;
  server { listen 127.0.0.1:%d; location / { return 200 "ok\\n"; } }
""" % port)
    ns = NotifySocket(tmp_path / "notify.sock")
    new_pid = 0
    try:
        p = start_proxy(conf, env=dict(os.environ, NOTIFY_SOCKET=ns.path))
        assert ns.next() == {"READY": "1", "MAINPID": str(p.pid)}
        p.proc.send_signal(signal.SIGUSR2)
        m = ns.next()
        new_pid = int(m["MAINPID"])
        assert m["READY"] == "1" and new_pid != p.pid
        wait_for(lambda: p.pid_file.read_text().strip() == str(new_pid), 10, what="new pid file")
        p.proc.send_signal(signal.SIGQUIT)
        assert p.wait(15) == 0
        os.kill(new_pid, signal.SIGTERM)
        assert ns.next() == {"STOPPING": "1"}      # the first word since: the old one said nothing
        wait_for(lambda: not process_alive(new_pid), 15, what="new process exit")
        new_pid = 0
    finally:
        ns.close()
        if new_pid and process_alive(new_pid):
            os.kill(new_pid, signal.SIGKILL)
