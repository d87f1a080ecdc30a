"""`listen ... proxy_protocol`: a balancer in front (HAProxy, LVS setups,
cloud balancers) prefixes each connection with a PROXY protocol header.
Real clients: raw sockets sending v1 and v2 headers, and curl's
--haproxy-protocol over HTTP/1.1, h2c and TLS."""

import socket
import struct
import subprocess

import pytest

import sgtest
from sgtest import free_port, http_conf, wait_for

from test_tls import make_cert

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, dst, sport, dport, cmd=0x21, tlvs=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return SIG + bytes([cmd, 0x11]) + struct.pack("!H", len(body)) + body


def raw_get(port, header, path="/", extra=b""):
    """Sends header + a GET, returns the whole response (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(header + extra + b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d


def closed_by_proxy(s):
    """True once the proxy closed s: EOF, or a reset when it closed with our
    unread bytes in its socket."""
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def body_of(resp):
    return resp.split(b"\r\n\r\n", 1)[1].decode()


@pytest.fixture
def proxy(start_proxy):
    port, real = free_port(), free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d proxy_protocol;
    client_header_timeout 2s;
    location / {
      return 200 "$remote_addr|$proxy_protocol_addr|$proxy_protocol_port|$proxy_protocol_server_addr|$proxy_protocol_server_port";
    }
  }
  server {
    listen 127.0.0.1:%d proxy_protocol;
    set_real_ip_from 127.0.0.1;
    real_ip_header proxy_protocol;
    location / { return 200 "$remote_addr|$realip_remote_addr"; }
    location /deny/ {
      deny 192.0.2.66;
      proxy_pass http://127.0.0.1:1;
    }
  }
""" % (port, real)))
    p.pp_port = port
    p.real_port = real
    return p


def test_v1_header_gives_the_variables(proxy):
    r = raw_get(proxy.pp_port, b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
    assert r.startswith(b"HTTP/1.1 200")
    assert body_of(r) == "127.0.0.1|192.0.2.1|56324|198.51.100.2|443"


def test_v2_header_with_tlvs(proxy):
    r = raw_get(proxy.pp_port, v2("203.0.113.7", "198.51.100.9", 4000, 8443, tlvs=b"\x04\x00\x02ab"))
    assert body_of(r) == "127.0.0.1|203.0.113.7|4000|198.51.100.9|8443"


def test_v1_ipv6_and_unknown(proxy):
    r = raw_get(proxy.pp_port, b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert body_of(r) == "127.0.0.1|2001:db8::1|1|2001:db8::2|2"
    r = raw_get(proxy.pp_port, b"PROXY UNKNOWN\r\n")
    assert body_of(r) == "127.0.0.1||||"


def test_v2_local_is_the_balancers_own_check(proxy):
    r = raw_get(proxy.pp_port, v2("192.0.2.1", "192.0.2.2", 1, 2, cmd=0x20))
    assert body_of(r) == "127.0.0.1||||"


def test_real_ip_header_proxy_protocol(proxy):
    r = raw_get(proxy.real_port, b"PROXY TCP4 192.0.2.5 198.51.100.2 1 2\r\n")
    assert body_of(r) == "192.0.2.5|127.0.0.1"
    r = raw_get(proxy.real_port, b"PROXY TCP4 192.0.2.66 198.51.100.2 1 2\r\n", "/deny/")
    assert r.startswith(b"HTTP/1.1 403")


def test_broken_header_closes_only_that_connection(proxy):
    with socket.create_connection(("127.0.0.1", proxy.pp_port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_proxy(s)
    wait_for(lambda: "broken header" in proxy.error_log, 10, what="the broken-header log line")
    r = raw_get(proxy.pp_port, b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n")
    assert r.startswith(b"HTTP/1.1 200")


def test_header_in_pieces(proxy):
    with socket.create_connection(("127.0.0.1", proxy.pp_port), timeout=10) as s:
        for piece in (b"PROXY TCP4 192.0", b".2.1 198.51.100.2 ", b"1 2\r", b"\nGET / HTTP/1.1\r\n",
                      b"Host: x\r\nConnection: close\r\n\r\n"):
            s.sendall(piece)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    assert body_of(out).split("|")[1] == "192.0.2.1"


def test_silent_client_is_closed_after_the_header_timeout(proxy):
    with socket.create_connection(("127.0.0.1", proxy.pp_port), timeout=30) as s:
        assert closed_by_proxy(s)       # EOF: the proxy closed it (our own timeout would raise)


def test_curl_haproxy_protocol_over_h2c_and_tls(tmp_path, start_proxy):
    crt, key = make_cert(tmp_path, "pp.test")
    p1, p2 = free_port(), free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2 proxy_protocol;
    location / { return 200 "h2c $proxy_protocol_addr $server_protocol"; }
  }
  server {
    listen 127.0.0.1:%d ssl proxy_protocol;
    ssl_certificate %s; ssl_certificate_key %s;
    location / { return 200 "tls $proxy_protocol_addr $scheme"; }
  }
""" % (p1, p2, crt, key)))
    r = subprocess.run(["curl", "-s", "--haproxy-protocol", "--http2-prior-knowledge",
                        "http://127.0.0.1:%d/" % p1], capture_output=True, text=True, timeout=20)
    assert r.stdout == "h2c 127.0.0.1 HTTP/2.0", r
    r = subprocess.run(["curl", "-s", "--haproxy-protocol", "--cacert", str(crt),
                        "--resolve", "pp.test:%d:127.0.0.1" % p2, "https://pp.test:%d/" % p2],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout.startswith("tls 127.0.0.1"), r
