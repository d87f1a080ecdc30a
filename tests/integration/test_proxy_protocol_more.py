"""The real client address behind a balancer, beyond test_proxy_protocol.py:
PROXY v1 and v2 headers (bytes built here by hand, per haproxy.org's
proxy-protocol.txt) put the given address in $remote_addr, the access log
and the ip_hash choice; a client without a header, or one that sends
nothing, is closed and logged (http and stream); v2 TLVs are read by
$proxy_protocol_tlv_NAME (http and stream); `proxy_protocol_version 2`
sends a v2 header to a stream backend, which a Python server parses by
the spec."""

import socket
import struct
import pytest

from sgtest import free_port, http_conf, wait_for, _ThreadedListener

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


def v2(src, dst, sport, dport, tlvs=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body


def v1(src, dst="198.51.100.2", sport=40000, dport=443):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def read_all(s):
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return out
        if not d:
            return out
        out += d


def raw_get(port, header, path="/"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(header + b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_all(s)


def body_of(resp):
    return resp.split(b"\r\n\r\n", 1)[1].decode("latin-1")


class IdServer(_ThreadedListener):
    """An HTTP/1.1 backend whose every answer is its own port."""

    def serve(self, c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                c.close()
                return
            buf += d
        body = str(self.port).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        c.close()


@pytest.fixture
def backends():
    bs = [IdServer(), IdServer()]
    yield bs
    for b in bs:
        b.stop()


def test_header_address_reaches_remote_addr_access_log_and_ip_hash(tmp_path, start_proxy, backends):
    port = free_port()
    log = tmp_path / "access.log"
    p = start_proxy(http_conf("""
  log_format pp "$remote_addr $realip_remote_addr $proxy_protocol_addr";
  upstream hashed {
    ip_hash;
    server 127.0.0.1:%d;
    server 127.0.0.1:%d;
  }
  server {
    listen 127.0.0.1:%d proxy_protocol;
    set_real_ip_from 127.0.0.1;
    real_ip_header proxy_protocol;
    access_log %s pp;
    location / { proxy_pass http://hashed; }
    location /addr { return 200 "$remote_addr"; }
  }
""" % (backends[0].port, backends[1].port, port, log)))
    # $remote_addr: v1 and v2 headers alike
    assert body_of(raw_get(port, v1("192.0.2.10"), "/addr")) == "192.0.2.10"
    assert body_of(raw_get(port, v2("203.0.113.5", "198.51.100.1", 1000, 443), "/addr")) == "203.0.113.5"
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 2, 10, what="two access log lines")
    # (each worker thread writes its own lines: the order is not the requests')
    assert sorted(log.read_text().splitlines()) == ["192.0.2.10 127.0.0.1 192.0.2.10",
                                                    "203.0.113.5 127.0.0.1 203.0.113.5"]
    # ip_hash: one backend per announced /24, whichever header carries it;
    # over 24 networks both backends get some (all on one: odds 2**-23)
    chosen = {}
    for net in range(24):
        a = "10.%d.7.1" % net
        first = body_of(raw_get(port, v1(a)))
        again = body_of(raw_get(port, v2("10.%d.7.200" % net, "198.51.100.1", 5, 443)))
        assert first == again, "the same /24 goes to the same backend"
        chosen[net] = first
    assert set(chosen.values()) == {str(backends[0].port), str(backends[1].port)}


@pytest.fixture
def pp_both(tmp_path, start_proxy):
    """An http and a stream listener with proxy_protocol and a 1 s deadline."""
    hport, sport = free_port(), free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d proxy_protocol;
    client_header_timeout 1s;
    location / { return 200 "$proxy_protocol_addr"; }
  }
""" % hport, main="error_log logs/error.log info;") + """
stream {
  server {
    listen 127.0.0.1:%d proxy_protocol;
    proxy_protocol_timeout 1s;
    return "$proxy_protocol_addr";
  }
}
""" % sport)
    p.hport, p.sport = hport, sport
    return p


@pytest.mark.parametrize("kind", ["http", "stream"])
def test_client_without_header_is_closed_and_logged(pp_both, kind):
    port = pp_both.hport if kind == "http" else pp_both.sport
    before = pp_both.error_log.count("broken header")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_all(s) == b""          # closed, nothing answered
    wait_for(lambda: pp_both.error_log.count("broken header") > before, 10, what="the broken-header log line")


@pytest.mark.parametrize("kind", ["http", "stream"])
def test_silent_client_is_closed_after_the_timeout_with_a_log_line(pp_both, kind):
    port = pp_both.hport if kind == "http" else pp_both.sport
    line = "client timed out while reading PROXY protocol header"
    before = pp_both.error_log.count(line)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        assert read_all(s) == b""          # the proxy closed it (our own 30 s timeout would raise)
    wait_for(lambda: pp_both.error_log.count(line) > before, 10, what="the timeout log line")


@pytest.mark.parametrize("kind", ["http", "stream"])
def test_malformed_tlv_closes_the_connection_and_is_logged(pp_both, kind):
    port = pp_both.hport if kind == "http" else pp_both.sport
    good = v2("192.0.2.1", "192.0.2.2", 1, 2, tlv(0x01, b"h2"))
    bad = bytearray(good)
    bad[-3] += 1                           # the ALPN TLV claims one byte more than the header holds
    before = pp_both.error_log.count("broken header")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(bytes(bad) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_all(s) == b""
    wait_for(lambda: pp_both.error_log.count("broken header") > before, 10, what="the broken-header log line")
    # the well-formed twin is served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(good + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = read_all(s)
    assert out.endswith(b"192.0.2.1")


TLVS = (tlv(0x01, b"h2") + tlv(0x02, b"example.org") + tlv(0x05, b"ID-42") +
        tlv(0x20, b"\x01" + struct.pack("!I", 0) + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example") +
            tlv(0x23, b"TLS_AES_128_GCM_SHA256")) +
        tlv(0x30, b"blue") + tlv(0xE0, b"custom"))
VARS = ("$proxy_protocol_tlv_alpn|$proxy_protocol_tlv_authority|$proxy_protocol_tlv_unique_id|"
        "$proxy_protocol_tlv_netns|$proxy_protocol_tlv_ssl_verify|$proxy_protocol_tlv_ssl_version|"
        "$proxy_protocol_tlv_ssl_cn|$proxy_protocol_tlv_ssl_cipher|$proxy_protocol_tlv_0xe0|"
        "$proxy_protocol_tlv_0x0f|$proxy_protocol_tlv_ssl_0x22")
EXPECTED = "h2|example.org|ID-42|blue|0|TLSv1.3|client.example|TLS_AES_128_GCM_SHA256|custom||client.example"


def test_tlv_variables_http_and_stream(start_proxy):
    hport, sport = free_port(), free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d proxy_protocol;
    location / { return 200 "%s"; }
  }
""" % (hport, VARS)) + """
stream {
  server {
    listen 127.0.0.1:%d proxy_protocol;
    return "%s";
  }
}
""" % (sport, VARS))
    header = v2("192.0.2.1", "192.0.2.2", 1, 2, TLVS)
    assert body_of(raw_get(hport, header)) == EXPECTED
    with socket.create_connection(("127.0.0.1", sport), timeout=10) as s:
        s.sendall(header)
        assert read_all(s).decode() == EXPECTED
    # a v1 header has no TLVs: every one is empty, the verify result too
    assert body_of(raw_get(hport, v1("192.0.2.1"))) == "||||||||||"


class V2Backend(_ThreadedListener):
    """A TCP backend that reads a PROXY v2 header by the spec (12-byte
    signature, version/command, family/transport, length, addresses) and
    then answers "ok"; `got` holds what each connection announced."""

    def __init__(self):
        self.got = []
        super().__init__()

    def _read(self, c, n):
        b = b""
        while len(b) < n:
            d = c.recv(n - len(b))
            if not d:
                raise OSError("short header")
            b += d
        return b

    def serve(self, c):
        head = self._read(c, 16)
        if head[:12] != SIG:               # not v2: what came is kept, the connection closed
            with self._lock:
                self.got.append({"other": head})
            c.close()
            return
        ver_cmd, fam, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
        rest = self._read(c, length)
        entry = {"version": ver_cmd >> 4, "command": ver_cmd & 0xF, "family": fam >> 4,
                 "transport": fam & 0xF, "length": length}
        if fam == 0x11:
            entry["src"] = socket.inet_ntop(socket.AF_INET, rest[0:4])
            entry["dst"] = socket.inet_ntop(socket.AF_INET, rest[4:8])
            entry["sport"], entry["dport"] = struct.unpack("!HH", rest[8:12])
        elif fam == 0x21:
            entry["src"] = socket.inet_ntop(socket.AF_INET6, rest[0:16])
            entry["dst"] = socket.inet_ntop(socket.AF_INET6, rest[16:32])
            entry["sport"], entry["dport"] = struct.unpack("!HH", rest[32:36])
        with self._lock:
            self.got.append(entry)
        c.sendall(b"ok")
        c.close()


def test_stream_backend_receives_a_valid_v2_header(start_proxy):
    be = V2Backend()
    try:
        port, v1port = free_port(), free_port()
        start_proxy(http_conf("") + """
stream {
  server {
    listen 127.0.0.1:%d;
    proxy_pass 127.0.0.1:%d;
    proxy_protocol on;
    proxy_protocol_version 2;
  }
  server {
    listen 127.0.0.1:%d;
    proxy_pass 127.0.0.1:%d;
    proxy_protocol on;
  }
}
""" % (port, be.port, v1port, be.port))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            me = s.getsockname()
            assert read_all(s) == b"ok"
        # (the start-up probe of the ports made sessions too: find ours by its port)
        mine = lambda: [e for e in be.got if e.get("sport") == me[1]]
        wait_for(mine, 10, what="the backend's header")
        assert mine()[0] == {"version": 2, "command": 1, "family": 1, "transport": 1, "length": 12,
                             "src": "127.0.0.1", "dst": "127.0.0.1", "sport": me[1], "dport": port}
        # the default stays nginx's v1 text
        with socket.create_connection(("127.0.0.1", v1port), timeout=10) as s:
            v1me = s.getsockname()
            assert read_all(s) == b""
        text = b"PROXY TCP4 127.0"               # the 16 bytes the v2 reader took
        wait_for(lambda: any(e.get("other") == text for e in be.got), 10, what="the v1 header")
        assert v1me[1] != me[1]
    finally:
        be.stop()


def test_proxy_protocol_version_is_checked(start_proxy, tmp_path):
    import sgtest
    conf = tmp_path / "bad.conf"
    conf.write_text(http_conf("") + """
stream { server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:1; proxy_protocol_version 3; } }
""" % free_port())
    r = sgtest.run_streamgate(["-t", "-c", conf])
    assert r.returncode != 0
    assert 'invalid value "3" in "proxy_protocol_version"' in r.stderr
