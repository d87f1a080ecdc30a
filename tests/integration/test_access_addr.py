"""Access control and address-keyed variables with real clients (issue 10):
http allow/deny seen by curl and grpcio, IPv6 CIDR rules on a [::1]
listener, stream allow/deny (a denied client never reaches the backend),
stream set_real_ip_from with PROXY v1/v2 headers built here from the spec,
split_clients buckets computed here from nginx's MurmurHash2 and compared
with the installed nginx, and geo's `proxy`."""

import socket
import struct
import subprocess
import threading
import urllib.parse

import pytest

import sgtest
from sgtest import HttpConn, free_port, free_ports, http_conf, wait_for

grpc = pytest.importorskip("grpc")


def curl_status(url, source=None):
    argv = ["curl", "-g", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]
    if source:
        argv += ["--interface", source]
    r = subprocess.run(argv + [url], capture_output=True, text=True, timeout=20)
    return int(r.stdout or 0)


def curl_body(url, headers=(), source=None):
    argv = ["curl", "-g", "-s", "--max-time", "10"]
    if source:
        argv += ["--interface", source]
    for h in headers:
        argv += ["-H", h]
    return subprocess.run(argv + [url], capture_output=True, text=True, timeout=20).stdout


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- http

def test_deny_is_403_to_curl_and_permission_denied_to_grpc(start_proxy, h2c_backends, grpc_channels):
    (bport,) = h2c_backends(1)
    port = free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass grpc://127.0.0.1:%d; }
    location /chat.Chat/ {
      deny 127.0.0.3;
      allow all;
      grpc_pass grpc://127.0.0.1:%d;
    }
    location /page { deny all; return 200 "never"; }
    location /plain { deny all; grpc_pass grpc://127.0.0.1:%d; }
  }
""" % (port, bport, bport, bport)))
    # an HTTP client gets nginx's HTML 403
    assert curl_status("http://127.0.0.1:%d/plain" % port) == 403
    # a gRPC client: the call from an allowed address goes through ...
    ch = grpc_channels(port)
    echo = ch.unary_unary("/chat.Chat/Echo")
    assert echo(sgtest.grpc_msg("hi"), timeout=10) == sgtest.grpc_msg("hi")
    # ... and the denied one ends with PERMISSION_DENIED, not an HTML page
    # (curl over h2c from the denied address; access is decided on the head)
    r = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
                        "--interface", "127.0.0.3", "-H", "content-type: application/grpc",
                        "-H", "te: trailers", "-X", "POST", "--max-time", "10",
                        "http://127.0.0.1:%d/chat.Chat/Echo" % port],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    head = r.stdout.decode().lower()
    assert head.startswith("http/2 200") and "grpc-status: 7" in head, head
    assert "content-type: application/grpc" in head and "text/html" not in head
    assert "access forbidden by rule" in p.error_log


def test_denied_grpc_call_from_grpcio_gets_permission_denied(start_proxy, h2c_backends, grpc_channels):
    (bport,) = h2c_backends(1)
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / {
      allow 10.0.0.0/8;
      deny all;
      grpc_pass grpc://127.0.0.1:%d;
    }
  }
""" % (port, bport)))
    ch = grpc_channels(port)
    with pytest.raises(grpc.RpcError) as e:
        ch.unary_unary("/chat.Chat/Echo")(sgtest.grpc_msg("hi"), timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "403" in e.value.details()


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_cidr_rules_on_an_ipv6_listener(start_proxy, backend):
    port = free_port()
    start_proxy(http_conf("""
  geo $r { ranges; default other; 255.255.255.255-255.255.255.255 none; }
  geo $n { default other; ::1/128 loopback6; }
  server {
    listen [::1]:%d;
    location /geo/ { return 200 "$r $n"; }
    location /host/ { allow ::1/128; deny all; proxy_pass http://127.0.0.1:%d/; }
    location /net/ { allow 2001:db8::/32; deny all; proxy_pass http://127.0.0.1:%d/; }
    location /deny-net/ { deny ::/64; proxy_pass http://127.0.0.1:%d/; }
    location /v4/ { deny 127.0.0.0/8; proxy_pass http://127.0.0.1:%d/; }
  }
""" % (port, backend.port, backend.port, backend.port, backend.port)), ports=[])
    wait_for(lambda: sgtest.port_accepts(port, "::1"), what="[::1]:%d" % port)
    base = "http://[::1]:%d" % port
    assert curl_status(base + "/host/") == 200          # ::1 is in ::1/128
    assert curl_status(base + "/net/") == 403           # ::1 is not in 2001:db8::/32
    assert curl_status(base + "/deny-net/") == 403      # ::1 is in ::/64
    assert curl_status(base + "/v4/") == 200            # an IPv4 rule never matches ::1
    # geo: networks hold IPv6; ranges are IPv4, so an IPv6 client counts as
    # 255.255.255.255 there, as nginx
    assert curl_body(base + "/geo/") == "none loopback6"


def test_geo_proxy_takes_the_forwarded_address(start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  geo $g {
    default none;
    proxy 127.0.0.1;
    192.0.2.0/24 doc;
    127.0.0.0/8 loop;
  }
  geo $gr {
    default none;
    proxy 127.0.0.1;
    proxy 198.51.100.0/24;
    proxy_recursive;
    192.0.2.0/24 doc;
    198.51.100.0/24 proxies;
    127.0.0.0/8 loop;
  }
  server {
    listen 127.0.0.1:%d;
    location / { return 200 "$g $gr"; }
  }
""" % port))
    url = "http://127.0.0.1:%d/" % port
    assert curl_body(url) == "loop loop"
    assert curl_body(url, ["X-Forwarded-For: 192.0.2.7"]) == "doc doc"
    # not recursive: the nearest hop; recursive: past the trusted ones
    assert curl_body(url, ["X-Forwarded-For: 192.0.2.7, 198.51.100.9"]) == "none doc"
    # a client that is no trusted proxy keeps its own address; so does garbage
    assert curl_body(url, ["X-Forwarded-For: 192.0.2.7"], source="127.0.0.2") == "loop loop"
    assert curl_body(url, ["X-Forwarded-For: garbage"]) == "loop loop"


# ---------------------------------------------------------------- split_clients

def murmur2(data):
    """MurmurHash2 as nginx's ngx_murmur_hash2 (seed = length, little endian)."""
    m = 0x5BD1E995
    n = len(data)
    h = n & 0xFFFFFFFF
    i = 0
    while n >= 4:
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
        i += 4
        n -= 4
    if n == 3:
        h ^= data[i + 2] << 16
    if n >= 2:
        h ^= data[i + 1] << 8
    if n >= 1:
        h ^= data[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


PARTS = [(1000, "a"), (2050, "b"), (5000, "c"), (None, "d")]   # hundredths of a percent; None: "*"


def bucket(key):
    """nginx's split: cumulative bounds of percent * 0xffffffff / 10000."""
    h, last = murmur2(key.encode()), 0
    for pct, name in PARTS:
        if pct is None:
            return name
        last += pct * 0xFFFFFFFF // 10000
        if h < last:
            return name
    return ""


SPLIT = """
  split_clients "${arg_k}salt" $bucket {
    10%%   a;
    20.5%% b;
    50%%   c;
    *     d;
  }
  server {
    listen 127.0.0.1:%d;
    location / { return 200 "$bucket"; }
  }
"""


def test_split_clients_buckets_as_nginx_computes_them(start_proxy, start_nginx):
    port, nport = free_ports(2)
    start_proxy(http_conf(SPLIT % port))
    start_nginx("events {}\nhttp {\n  access_log off;\n%s}\n" % (SPLIT % nport), [nport])
    keys = ["user%d" % i for i in range(200)] + ["", "x", "ab", "abc", "abcd", "\u00e9t\u00e9"]
    seen = {}
    with HttpConn(port) as c, HttpConn(nport) as n:
        for k in keys:
            arg = urllib.parse.quote(k)            # $arg_k is the raw, still encoded, text
            ours = c.request("GET", "/?k=" + arg).body.decode()
            assert ours == bucket(arg + "salt"), k
            assert ours == n.request("GET", "/?k=" + arg).body.decode(), k
            seen[ours] = seen.get(ours, 0) + 1
    # every part is reached, roughly in its proportion
    assert set(seen) == {"a", "b", "c", "d"}
    assert seen["c"] > seen["b"] > seen["a"]


@pytest.mark.parametrize("block, message", [
    ("60% a; 50% b;", "percent total is greater than 100%"),
    ("* a; 10% b;", "percent total is greater than 100%"),
    ("0% a;", 'invalid percent value "0%"'),
    ("ten% a;", 'invalid percent value "ten%"'),
])
def test_bad_split_clients_blocks_are_refused(tmp_path, block, message):
    conf = tmp_path / "a.conf"
    conf.write_text(http_conf("split_clients $remote_addr $v { %s } server { listen 127.0.0.1:1; return 204; }"
                              % block))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 1 and message in r.stderr, r.stderr


# ---------------------------------------------------------------- stream

class CountingEcho:
    """A TCP backend that counts the connections it accepted and echoes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.peers = []
        self._stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.echo, args=(c,), daemon=True).start()

    def echo(self, c):
        with c:
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                c.sendall(d)

    def stop(self):
        self._stop = True
        self.sock.close()


@pytest.fixture
def echo():
    e = CountingEcho()
    yield e
    e.stop()


def talk(port, data, source=None, want=None):
    """Sends data and reads until `want` bytes came (default: as many as
    sent; an echo) or the proxy closed. Without proxy_half_close the client
    must not half-close: the session would end with it."""
    want = len(data) if want is None else want
    with socket.socket() as s:
        s.settimeout(10)
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        while len(out) < want:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
        return out


def test_stream_denied_client_never_reaches_the_backend(start_proxy, echo):
    port = free_port()
    p = start_proxy("""
events {}
stream {
  deny 127.0.0.3;
  server {
    listen 127.0.0.1:%d;
    allow 127.0.0.2;
    deny all;
    proxy_pass 127.0.0.1:%d;
  }
}
""" % (port, echo.port))
    assert talk(port, b"blocked", source="127.0.0.4") == b""
    assert talk(port, b"hello", source="127.0.0.2") == b"hello"
    # the allowed session reached the backend; the denied one never did
    wait_for(lambda: echo.accepted >= 1, what="the allowed session")
    assert echo.accepted == 1
    assert "access forbidden by rule, client: 127.0.0.4" in p.error_log


def test_stream_rules_inherit_from_stream_level(start_proxy, echo):
    port = free_port()
    p = start_proxy("""
events {}
stream {
  deny 127.0.0.3;
  deny 127.0.0.1;        # the harness's readiness probe too: only our sessions count
  server {
    listen 127.0.0.1:%d;
    proxy_pass 127.0.0.1:%d;
  }
}
""" % (port, echo.port))
    assert talk(port, b"no", source="127.0.0.3") == b""
    assert talk(port, b"yes", source="127.0.0.2") == b"yes", p.error_log
    wait_for(lambda: echo.accepted >= 1, what="the allowed session")
    assert echo.accepted == 1


def proxy_v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def proxy_v2(src, dst, sport, dport, tlv=b""):
    """PROXY protocol v2 (spec section 2.2): 12-byte signature, version 2 +
    PROXY command, family/transport, length, addresses, ports, TLVs."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if ":" in src:
        fam, addrs = 0x21, socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam, addrs = 0x11, socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
    body = addrs + struct.pack("!HH", sport, dport) + tlv
    return sig + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


REALIP = """
events {}
stream {
  server {
    listen 127.0.0.1:%d proxy_protocol;
    set_real_ip_from 127.0.0.1;
    set_real_ip_from 10.0.0.0/8;
    return "$remote_addr:$remote_port $realip_remote_addr";
  }
  server {
    listen 127.0.0.1:%d proxy_protocol;
    set_real_ip_from 127.0.0.1;
    deny 192.0.2.66;
    proxy_pass 127.0.0.1:%d;
  }
}
"""


@pytest.mark.parametrize("header", [
    proxy_v1("192.0.2.1", "192.0.2.2", 1234, 80),
    proxy_v2("192.0.2.1", "192.0.2.2", 1234, 80),
    proxy_v2("192.0.2.1", "192.0.2.2", 1234, 80, tlv=b"\x04\x00\x03abc"),   # a NOOP TLV is skipped
], ids=["v1", "v2", "v2-tlv"])
def test_stream_realip_from_proxy_header(start_proxy, echo, header):
    port, dport = free_ports(2)
    start_proxy(REALIP % (port, dport, echo.port))
    assert talk(port, header, want=1 << 20) == b"192.0.2.1:1234 127.0.0.1"
    # a peer not in set_real_ip_from keeps its own address
    out = talk(port, header, source="127.0.0.2", want=1 << 20).decode()
    addr, real = out.split(" ")
    assert addr.startswith("127.0.0.2:") and real == "127.0.0.2"


def test_stream_realip_ipv6_source(start_proxy, echo):
    port, dport = free_ports(2)
    start_proxy(REALIP % (port, dport, echo.port))
    assert talk(port, proxy_v2("2001:db8::5", "2001:db8::1", 4321, 80), want=1 << 20) == b"2001:db8::5:4321 127.0.0.1"
    assert talk(port, proxy_v1("2001:db8::5", "2001:db8::1", 4321, 80), want=1 << 20) == b"2001:db8::5:4321 127.0.0.1"


def test_stream_access_sees_the_real_address(start_proxy, echo):
    port, dport = free_ports(2)
    start_proxy(REALIP % (port, dport, echo.port))
    assert talk(dport, proxy_v1("192.0.2.66", "192.0.2.2", 1, 2) + b"blocked", want=7) == b""
    assert talk(dport, proxy_v2("192.0.2.67", "192.0.2.2", 1, 2) + b"through", want=7) == b"through"
    wait_for(lambda: echo.accepted >= 1, what="the allowed session")
    assert echo.accepted == 1


def test_stream_realip_trusts_a_host_name(start_proxy):
    port = free_port()
    start_proxy("""
events {}
stream {
  server {
    listen 127.0.0.1:%d proxy_protocol;
    set_real_ip_from localhost;
    return "$remote_addr $realip_remote_addr";
  }
}
""" % port)
    assert talk(port, proxy_v1("192.0.2.1", "192.0.2.2", 1, 2), want=1 << 20) == b"192.0.2.1 127.0.0.1"


def test_unknown_host_in_set_real_ip_from_is_refused(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("events {}\nstream { server { listen 127.0.0.1:1; set_real_ip_from no-such-host.invalid;"
                    " return x; } }\n")
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 1 and 'host not found in set_real_ip_from "no-such-host.invalid"' in r.stderr, r.stderr


def test_stream_hash_and_binary_remote_addr_see_the_real_address(start_proxy):
    b1, b2 = CountingEcho(), CountingEcho()
    try:
        port, rport = free_ports(2)
        start_proxy("""
events {}
stream {
  upstream two {
    hash $remote_addr;
    server 127.0.0.1:%d;
    server 127.0.0.1:%d;
  }
  server {
    listen 127.0.0.1:%d proxy_protocol;
    set_real_ip_from 127.0.0.1;
    proxy_pass two;
  }
  server {
    listen 127.0.0.1:%d proxy_protocol;
    set_real_ip_from 127.0.0.1;
    return $binary_remote_addr;
  }
}
""" % (b1.port, b2.port, port, rport))
        assert talk(rport, proxy_v2("192.0.2.1", "192.0.2.2", 1, 2), want=1 << 20) == bytes([192, 0, 2, 1])

        def backend_of(addr):
            before = (b1.accepted, b2.accepted)
            assert talk(port, proxy_v1(addr, "192.0.2.2", 1, 2) + b"ping", want=4) == b"ping"
            after = (b1.accepted, b2.accepted)
            assert sum(after) - sum(before) == 1
            return 0 if after[0] > before[0] else 1

        chosen = {}
        for i in range(1, 21):
            addr = "198.51.100.%d" % i
            chosen[addr] = backend_of(addr)
            assert backend_of(addr) == chosen[addr]      # a real address keeps its backend
        assert set(chosen.values()) == {0, 1}            # the key is the real address, not the proxy's
    finally:
        b1.stop()
        b2.stop()


def test_geo_with_a_large_range_base(start_proxy, tmp_path):
    """A geo base of 100,001 ranges in address order (geo_binary.t's shape)
    loads and answers by binary search; a later line out of order still
    counts."""
    base = tmp_path / "base.conf"
    lines = []
    for i in range(100001):
        a = "127.%d.%d.%d" % (i // 65536 % 256, i // 256 % 256, i % 256)
        lines.append("%s-%s r%d;" % (a, a, i))
    base.write_text("".join(lines))
    port = free_port()
    start_proxy(http_conf("""
  geo $g { ranges; default none; include %s; }
  geo $h { ranges; default none; include %s; 127.0.0.5-127.0.0.5 late; }
  server { listen 127.0.0.1:%d; location / { return 200 "$g $h"; } }
""" % (base, base, port)))
    url = "http://127.0.0.1:%d/" % port
    assert curl_body(url) == "r1 r1"
    assert curl_body(url, source="127.0.0.5") == "r5 late"
    assert curl_body(url, source="127.1.134.160") == "r100000 r100000"
    assert curl_body(url, source="127.1.134.161") == "none none"


def test_stream_udp_datagram_from_a_denied_client_is_dropped(start_proxy):
    port = free_port()
    p = start_proxy("""
events {}
stream {
  server {
    listen 127.0.0.1:%d udp;
    deny 127.0.0.3;
    return "answer";
  }
}
""" % port, ports=[])
    # bound once the start is logged (after the listeners, as test_stream_modules waits)
    wait_for(lambda: "started" in p.stderr or not p.running(), what="streamgate start")
    denied = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    allowed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        denied.bind(("127.0.0.3", 0))
        allowed.bind(("127.0.0.2", 0))
        allowed.settimeout(10)
        allowed.sendto(b"q", ("127.0.0.1", port))
        assert allowed.recvfrom(100)[0] == b"answer"
        denied.sendto(b"q", ("127.0.0.1", port))
        wait_for(lambda: "access forbidden by rule, client: 127.0.0.3" in p.error_log, what="the denial")
        denied.setblocking(False)
        with pytest.raises(BlockingIOError):
            denied.recvfrom(100)
    finally:
        denied.close()
        allowed.close()


def test_limit_except_takes_allow_and_deny(start_proxy, backend):
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / {
      limit_except GET {
        allow 127.0.0.2;
        deny all;
      }
      proxy_pass http://127.0.0.1:%d;
    }
  }
""" % (port, backend.port)))
    url = "http://127.0.0.1:%d/" % port
    assert curl_status(url) == 200                                   # GET: not limited
    for method, source, status in (("POST", "127.0.0.1", 403), ("POST", "127.0.0.2", 200),
                                   ("DELETE", "127.0.0.3", 403)):
        with HttpConn(port, source=source) as c:
            assert c.request(method, "/", body=b"x").status == status, (method, source)
