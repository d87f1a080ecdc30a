"""Small nginx compatibility pieces on the real binary (issue 9).

- limit_rate / limit_rate_after are accepted (they limit responses since
  issue 10: tests/integration/test_rate.py); `set $limit_rate VALUE` keeps
  nginx's number, as nginx's own $limit_rate set/get handlers do.
- stream `proxy_protocol on` sends nginx's PROXY v1 header to the upstream
  before the client's bytes, on every try.
- stream `listen ... proxy_protocol` reads the client's PROXY header
  (v1 or v2) and gives $proxy_protocol_addr, $proxy_protocol_port,
  $proxy_protocol_server_addr, $proxy_protocol_server_port.
"""

import socket
import struct
import subprocess
import threading

import pytest

from sgtest import free_port, get, http_conf, run_streamgate, wait_for


def test_limit_rate_accepted(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text(http_conf("""
  limit_rate 10k;
  server { listen 127.0.0.1:1; limit_rate_after 1m;
           location / { limit_rate 100; if ($arg_x) { limit_rate 5; limit_rate_after 0; } } }
"""))
    p = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert p.returncode == 0, p.stderr
    assert "has no effect" not in p.stderr   # no notice: they take effect
    assert "not supported yet" not in p.stderr


def test_set_limit_rate(start_proxy):
    port = free_port()
    proxy = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location /rate { set $limit_rate $arg_l; add_header X-Rate $limit_rate; return 200 "r=$limit_rate"; }
    location /plain { limit_rate 100; return 200 "r=$limit_rate"; }
  }
""" % port))
    r = get(port, "/rate?l=40k")
    assert r.status == 200 and r.header("x-rate") == "40960" and r.body == b"r=40960"
    assert get(port, "/rate?l=2m").header("x-rate") == "2097152"
    assert get(port, "/rate?l=123").header("x-rate") == "123"
    # an invalid or empty size leaves the rate as it was (0), and is logged
    r = get(port, "/rate")
    assert r.header("x-rate") == "0" and r.body == b"r=0"
    assert get(port, "/rate?l=fast").header("x-rate") == "0"
    wait_for(lambda: 'invalid $limit_rate "fast"' in proxy.error_log, what="the invalid $limit_rate error")
    assert get(port, "/plain").body == b"r=0"
    # HTTP/2 answers the same
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                          "http://127.0.0.1:%d/rate?l=1k" % port], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "x-rate: 1024" in out.stdout.lower()


# ---------------------------------------------------------------- stream proxy_protocol

class Recorder:
    """A TCP backend on `host` that reads until it has seen `until` (the
    client's last bytes), then sends back everything it received and closes."""

    def __init__(self, host="127.0.0.1", until=b"end"):
        self.until = until
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                data = b""
                while not data.endswith(self.until):
                    more = c.recv(65536)
                    if not more:
                        break
                    data += more
                c.sendall(data)

    def stop(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(2)


def stream_proxy(start_proxy, body):
    p = start_proxy("events {}\nstream {\n%s\n}\n" % body, ports=[])
    wait_for(lambda: "started" in p.stderr or not p.running(), 10, what="streamgate start")
    assert p.running(), p.stderr
    return p


def exchange(port, data=b"hello end", host="127.0.0.1", family=socket.AF_INET):
    """Sends data through the proxy; returns (what came back, our port)."""
    c = socket.socket(family, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect((host, port))
    me = c.getsockname()[1]
    c.sendall(data)
    got = b""
    while True:
        more = c.recv(65536)
        if not more:
            break
        got += more
    c.close()
    return got, me


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.stop()


def test_stream_proxy_protocol_on_and_off(start_proxy, recorder):
    on, off = free_port(), free_port()
    stream_proxy(start_proxy, """
  proxy_protocol on;
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; proxy_protocol off; }
""" % (on, recorder.port, off, recorder.port))
    got, me = exchange(on)
    assert got == b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nhello end" % (me, on)
    got, _ = exchange(off)
    assert got == b"hello end"


def test_stream_proxy_protocol_on_every_try(start_proxy, recorder):
    """The first server refuses the connection: the second try gets the
    header too, once, before the client's bytes (sent before either try)."""
    port, dead = free_port(), free_port()
    proxy = stream_proxy(start_proxy, """
  upstream u { server 127.0.0.1:%d; server 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; proxy_pass u; proxy_protocol on; }
""" % (dead, recorder.port, port))
    c = socket.socket()
    c.settimeout(10)
    c.connect(("127.0.0.1", port))
    me = c.getsockname()[1]
    c.sendall(b"early end")
    got = b""
    while True:
        more = c.recv(65536)
        if not more:
            break
        got += more
    c.close()
    assert got == b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nearly end" % (me, port)
    wait_for(lambda: "connect() failed" in proxy.error_log, what="the refused first try")


def test_stream_proxy_protocol_ipv6(start_proxy):
    r = Recorder("::1")
    try:
        port = free_port()
        stream_proxy(start_proxy, """
  server { listen [::1]:%d; proxy_pass [::1]:%d; proxy_protocol on; }
""" % (port, r.port))
        got, me = exchange(port, host="::1", family=socket.AF_INET6)
        assert got == b"PROXY TCP6 ::1 ::1 %d %d\r\nhello end" % (me, port)
    finally:
        r.stop()


def test_stream_proxy_protocol_flag_checked(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text("events {}\nstream { server { listen 127.0.0.1:1; proxy_pass 127.0.0.1:2; proxy_protocol yes; } }\n")
    p = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert p.returncode != 0
    assert 'invalid value "yes"' in p.stderr


# ---------------------------------------------------------------- stream listen ... proxy_protocol

def v2_header(src, dst, sport, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def send_and_read(port, data, shut=False):
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(data)
    if shut:
        c.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        try:
            more = c.recv(65536)
        except ConnectionResetError:
            break
        if not more:
            break
        got += more
    c.close()
    return got


PP_VARS = "$proxy_protocol_addr:$proxy_protocol_port>$proxy_protocol_server_addr:$proxy_protocol_server_port"


def test_stream_listen_proxy_protocol_variables(start_proxy):
    port = free_port()
    proxy = stream_proxy(start_proxy, """
  server { listen 127.0.0.1:%d proxy_protocol; return "%s|$remote_addr"; }
""" % (port, PP_VARS))
    got = send_and_read(port, b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
    assert got == b"192.0.2.1:56324>198.51.100.2:443|127.0.0.1"
    got = send_and_read(port, b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert got == b"2001:db8::1:1>2001:db8::2:2|127.0.0.1"
    got = send_and_read(port, v2_header("203.0.113.7", "203.0.113.8", 4000, 5000))
    assert got == b"203.0.113.7:4000>203.0.113.8:5000|127.0.0.1"
    # UNKNOWN: a header without addresses; the variables are empty
    assert send_and_read(port, b"PROXY UNKNOWN\r\n") == b":>:|127.0.0.1"
    # not a PROXY header: closed without an answer, and logged as nginx does
    assert send_and_read(port, b"GET / HTTP/1.0\r\n\r\n") == b""
    wait_for(lambda: "broken header" in proxy.error_log, what="the broken header error")


def test_stream_listen_proxy_protocol_relays_what_follows(start_proxy, recorder):
    """The header is taken off: the upstream gets the client's bytes after it
    (and, with proxy_protocol on, a header of its own naming the real peer)."""
    port, port2 = free_port(), free_port()
    stream_proxy(start_proxy, """
  server { listen 127.0.0.1:%d proxy_protocol; proxy_pass 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d proxy_protocol; proxy_pass 127.0.0.1:%d; proxy_protocol on; }
""" % (port, recorder.port, port2, recorder.port))
    assert send_and_read(port, b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nhello end") == b"hello end"
    c = socket.create_connection(("127.0.0.1", port2), timeout=10)
    me = c.getsockname()[1]
    c.sendall(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nhi end")
    got = b""
    while True:
        more = c.recv(65536)
        if not more:
            break
        got += more
    c.close()
    assert got == b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nhi end" % (me, port2)


def test_stream_proxy_protocol_timeout(start_proxy):
    """A client that never sends its header is closed after
    proxy_protocol_timeout."""
    port = free_port()
    stream_proxy(start_proxy, """
  server { listen 127.0.0.1:%d proxy_protocol; proxy_protocol_timeout 100ms; return "x"; }
""" % port)
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert c.recv(100) == b""          # closed, no answer (the timeout of 10 s would raise)
    c.close()


def test_stream_listen_proxy_protocol_udp_refused(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text("events {}\nstream { server { listen 127.0.0.1:1 udp proxy_protocol; return x; } }\n")
    p = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert p.returncode != 0
    assert '"proxy_protocol" parameter is incompatible with "udp"' in p.stderr
