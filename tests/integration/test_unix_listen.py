"""`listen unix:/path` for http and stream servers, as nginx: the socket
file is made at start (mode 0666) and removed when streamgate stops
listening there; a file already there makes the start fail (EADDRINUSE)
rather than take over another server's socket; $remote_addr is "unix:",
$server_addr "unix:/path", the ports empty. The socket is kept across
reloads (no connection refused or dropped) and works with proxy_protocol,
realip (set_real_ip_from unix:) and allow/deny unix:. Real clients: curl
--unix-socket and Python AF_UNIX sockets."""

import os
import socket
import stat
import subprocess

import pytest

import sgtest
from sgtest import free_port, http_conf, wait_for

VARS = "ra=$remote_addr sa=$server_addr rp=[$remote_port] sp=[$server_port]"


def curl_unix(path, url="http://localhost/"):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", str(path), "-o", "-",
                        "-w", "|%{http_code}", url], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    body, code = r.stdout.rsplit("|", 1)
    return int(code), body


def unix_exchange(path, data):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        if data:
            s.sendall(data)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:   # closed with our bytes unread
                return out
            if not d:
                return out
            out += d


def accepts(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
        return True
    except OSError:
        return False


SOCKETS = ("h.sock", "pp.sock", "ppr.sock", "s.sock")


def wait_sockets(d):
    """The TCP port the harness waits for may be listening before the later
    unix sockets of the same start are: wait until each accepts."""
    for name in SOCKETS:
        wait_for(lambda: accepts(d / name), 10, what="%s accepting" % name)


def conf(tmp_path, tcp_port, text="one"):
    return http_conf("""
  server {
    listen unix:%(d)s/h.sock;
    listen 127.0.0.1:%(p)d;
    location / { return 200 "%(text)s %(vars)s"; }
    # (access runs after `return`'s rewrite phase, as in nginx: the answer comes from a proxied request)
    location /allowed { allow unix:; deny all; proxy_pass http://127.0.0.1:%(p)d/; }
    location /denied { deny unix:; proxy_pass http://127.0.0.1:%(p)d/; }
  }
  server {
    listen unix:%(d)s/pp.sock proxy_protocol;
    location / { return 200 "$remote_addr|$proxy_protocol_addr"; }
  }
  server {
    listen unix:%(d)s/ppr.sock proxy_protocol;
    set_real_ip_from unix:;
    real_ip_header proxy_protocol;
    location / { return 200 "$remote_addr|$realip_remote_addr"; }
  }
""" % {"d": tmp_path, "p": tcp_port, "text": text, "vars": VARS}) + """
stream {
  server {
    listen unix:%(d)s/s.sock;
    return "%(vars)s";
  }
}
""" % {"d": tmp_path, "vars": VARS}


@pytest.fixture
def unix_proxy(tmp_path, start_proxy):
    port = free_port()
    p = start_proxy(conf(tmp_path, port))
    p.tcp_port = port
    p.dir = tmp_path
    wait_sockets(tmp_path)
    return p


def test_http_over_a_unix_socket_with_curl(unix_proxy):
    code, body = curl_unix(unix_proxy.dir / "h.sock")
    assert code == 200
    assert body == "one ra=unix: sa=unix:%s/h.sock rp=[] sp=[]" % unix_proxy.dir
    mode = os.stat(unix_proxy.dir / "h.sock").st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666


def test_stream_over_a_unix_socket(unix_proxy):
    out = unix_exchange(unix_proxy.dir / "s.sock", b"")
    assert out.decode() == "ra=unix: sa=unix:%s/s.sock rp=[] sp=[]" % unix_proxy.dir


def test_allow_and_deny_unix_match_a_unix_client(unix_proxy):
    code, body = curl_unix(unix_proxy.dir / "h.sock", "http://localhost/allowed")
    assert code == 200 and body.startswith("one ra=127.0.0.1 ")
    assert curl_unix(unix_proxy.dir / "h.sock", "http://localhost/denied")[0] == 403
    # the same locations over TCP: `unix:` rules do not match an IP client
    assert sgtest.get(unix_proxy.tcp_port, "/allowed").status == 403
    assert sgtest.get(unix_proxy.tcp_port, "/denied").status == 200
    # the denial is logged
    wait_for(lambda: "access forbidden by rule" in unix_proxy.error_log, 10, what="the access-forbidden log line")


def test_proxy_protocol_on_a_unix_listener(unix_proxy):
    req = b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = unix_exchange(unix_proxy.dir / "pp.sock", b"PROXY TCP4 192.0.2.8 192.0.2.9 1 2\r\n" + req % b"/")
    assert out.split(b"\r\n\r\n", 1)[1] == b"unix:|192.0.2.8"
    out = unix_exchange(unix_proxy.dir / "ppr.sock", b"PROXY TCP4 192.0.2.8 192.0.2.9 1 2\r\n" + req % b"/")
    assert out.split(b"\r\n\r\n", 1)[1] == b"192.0.2.8|unix:"
    # no header: closed, nothing answered
    assert unix_exchange(unix_proxy.dir / "pp.sock", req % b"/") == b""


def test_reload_keeps_the_socket_and_its_connections(unix_proxy, tmp_path):
    path = unix_proxy.dir / "h.sock"
    inode = os.stat(path).st_ino
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as kept:
        kept.settimeout(10)
        kept.connect(str(path))
        kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sgtest.recv_head(kept)[0].startswith(b"HTTP/1.1 200")
        assert unix_proxy.reload(conf(tmp_path, unix_proxy.tcp_port, text="two"))
        assert os.stat(path).st_ino == inode          # the same socket, not a new file
        assert curl_unix(path)[1].startswith("two ")
        # the connection opened before the reload still gets answers
        kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = b""
        while True:
            d = kept.recv(65536)
            if not d:
                break
            rest += d
        assert b"HTTP/1.1 200" in rest
    # a reload without the address closes the socket and removes the file
    only_tcp = http_conf("server { listen 127.0.0.1:%d; location / { return 200 x; } }" % unix_proxy.tcp_port)
    assert unix_proxy.reload(only_tcp)
    wait_for(lambda: not path.exists(), 10, what="the socket file removed")
    assert not (unix_proxy.dir / "s.sock").exists()


def test_socket_files_are_removed_at_stop(tmp_path, start_proxy):
    port = free_port()
    p = start_proxy(conf(tmp_path, port))
    wait_sockets(tmp_path)
    p.stop()
    for name in SOCKETS:
        assert not (tmp_path / name).exists()


def test_a_file_in_the_way_fails_the_start(tmp_path):
    stale = tmp_path / "h.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))                 # a socket file left behind (closed without unlink)
    s.close()
    cf = tmp_path / "sg.conf"
    cf.write_text(conf(tmp_path, free_port()))
    (tmp_path / "logs").mkdir()
    r = sgtest.run_streamgate(["-c", cf, "-p", tmp_path])
    assert r.returncode != 0
    assert "bind() to unix:%s failed (98: Address already in use)" % stale in r.stderr
    assert stale.exists()              # left alone, as nginx does
    # the config test alone binds nothing
    stale.unlink()
    r = sgtest.run_streamgate(["-t", "-c", cf, "-p", tmp_path])
    assert r.returncode == 0, r.stderr
    assert not stale.exists()


@pytest.mark.parametrize("bad, msg", [
    ("listen unix:;", 'no path in the unix domain socket "unix:"'),
    ("listen unix:/%s;" % ("x" * 120), "too long path in the unix domain socket"),
])
def test_bad_unix_listen_is_refused(tmp_path, bad, msg):
    cf = tmp_path / "sg.conf"
    cf.write_text(http_conf("server { %s }" % bad))
    r = sgtest.run_streamgate(["-t", "-c", cf])
    assert r.returncode != 0
    assert msg in r.stderr


def test_stream_unix_udp_is_refused(tmp_path):
    cf = tmp_path / "sg.conf"
    cf.write_text(http_conf("") + "stream { server { listen unix:%s/u.sock udp; return x; } }" % tmp_path)
    r = sgtest.run_streamgate(["-t", "-c", cf])
    assert r.returncode != 0
    assert '"udp" on a "unix:" address is not supported' in r.stderr


def test_http2_over_a_unix_socket(tmp_path, start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen unix:%s/h2.sock http2;
    listen 127.0.0.1:%d;
    location / { return 200 "$server_protocol $http2 $remote_addr"; }
  }
""" % (tmp_path, port)))
    wait_for(lambda: accepts(tmp_path / "h2.sock"), 10, what="h2.sock accepting")
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "--unix-socket",
                        str(tmp_path / "h2.sock"), "http://localhost/"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "HTTP/2.0 h2c unix:"


def test_stream_proxy_pass_to_a_unix_socket(tmp_path, start_proxy):
    import threading
    path = tmp_path / "echo.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(16)

    def one(c):
        with c:
            d = c.recv(100)
            if d:
                c.sendall(b"echo:" + d)

    def serve():                       # a thread per connection: the harness's port probes come too
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    plain, var, ups = free_port(), free_port(), free_port()
    try:
        start_proxy(http_conf("") + """
stream {
  upstream u { server unix:%(p)s; }
  server { listen 127.0.0.1:%(a)d; proxy_pass unix:%(p)s; }
  server { listen 127.0.0.1:%(b)d; set $target unix:%(p)s; proxy_pass $target; }
  server { listen 127.0.0.1:%(c)d; proxy_pass u; }
}
""" % {"p": path, "a": plain, "b": var, "c": ups})
        for port in (plain, var, ups):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"hi")
                assert s.recv(100) == b"echo:hi"
    finally:
        srv.close()
