"""nginx's stream modules beyond the proxy itself: `return`, `map`,
`log_format`/`access_log` (a line when the session ends), variables in
`proxy_pass`, TLS termination (`listen ... ssl`, `ssl_alpn`, $ssl_*), TLS
toward the backend (`proxy_ssl*`) and `ssl_preread` (SNI routing of TLS
that is passed through untouched).

Clients are Python sockets and Python's ssl module; backends are Python
echo servers or stream servers of the same streamgate.  Log lines are
waited for (they are written when a session ends), never slept for.
"""

import re
import socket
import ssl
import subprocess

import pytest

import sgtest
from sgtest import SLOW, free_port, free_ports, wait_for


def stream_conf(body):
    return "events {}\nstream {\n%s\n}\n" % body


@pytest.fixture
def run(start_proxy):
    """run(body) -> proxy: streamgate with `stream { body }`, started."""

    def start(body):
        p = start_proxy(stream_conf(body), ports=[])
        wait_for(lambda: "started" in p.stderr or not p.running(), 10, what="streamgate start")
        assert p.running(), p.stderr
        return p
    return start


class TcpEcho(sgtest._ThreadedListener):
    """Sends back every byte it reads; closes when the client does."""

    def serve(self, c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        finally:
            c.close()


@pytest.fixture
def echo():
    servers = []

    def make():
        e = TcpEcho()
        servers.append(e)
        return e
    yield make
    for e in servers:
        e.stop()


def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)


def read_all(s):
    buf = b""
    while True:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return buf
        if not d:
            return buf
        buf += d


def fetch(port):
    with connect(port) as s:
        return read_all(s)


def make_cert(dirpath, name):
    key, crt = dirpath / ("%s.key" % name), dirpath / ("%s.pem" % name)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=%s" % name, "-addext", "subjectAltName=DNS:%s" % name,
                    "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    return crt, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {n: make_cert(d, n) for n in ("a.test", "b.test")}


def tls_fetch(port, server_name=None, alpn=None, send=b""):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with connect(port) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            if send:
                s.sendall(send)
            return read_all(s)


def log_lines(path, n):
    """Waits until the file has n lines; returns them."""
    def ready():
        return path.exists() and len(path.read_text().splitlines()) >= n
    wait_for(ready, 10, what="%d access log line(s) in %s" % (n, path))
    return path.read_text().splitlines()


# ---------------------------------------------------------------- return, map

def test_return_sends_the_value_with_variables_and_closes(run):
    port = free_port()
    run("server { listen 127.0.0.1:%d; return \"$remote_addr:$server_port:$protocol\"; }" % port)
    assert fetch(port) == b"127.0.0.1:%d:TCP" % port


def test_map_exact_regex_captures_and_default(run):
    a, b, c = free_ports(3)
    run("""
  map $server_port $x {
    %d             exact;
    ~^(?<lead>\\d)\\d+%d$  "re-$lead-$1";
    default        other;
  }
  server { listen 127.0.0.1:%d; listen 127.0.0.1:%d; listen 127.0.0.1:%d; return "$x|${x}"; }
""" % (a, b % 10, a, b, c))
    assert fetch(a) == b"exact|exact"
    lead = str(b)[0].encode()
    assert fetch(b) == b"re-" + lead + b"-" + lead + b"|re-" + lead + b"-" + lead
    if c % 10 != b % 10:
        assert fetch(c) == b"other|other"


def test_a_map_used_before_its_block_is_fine_and_an_unknown_variable_is_refused(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text(stream_conf("server { listen 127.0.0.1:1; return $late; }\n"
                                "map $remote_addr $late { default x; }"))
    r = sgtest.run_streamgate(["-t", "-c", str(good)])
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text(stream_conf("server { listen 127.0.0.1:1; return $nosuch; }"))
    r = sgtest.run_streamgate(["-t", "-c", str(bad)])
    assert r.returncode != 0 and 'unknown "nosuch" variable' in r.stderr


# ---------------------------------------------------------------- access_log

def test_access_log_line_when_the_session_ends(run, echo, tmp_path):
    e = echo()
    port = free_port()
    log = tmp_path / "s.log"
    run("""
  log_format t "$status $bytes_sent $bytes_received $upstream_addr $upstream_bytes_sent $upstream_bytes_received";
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; access_log %s t; }
""" % (port, e.port, log))
    with connect(port) as s:
        s.sendall(b"hello")
        got = b""
        while len(got) < 5:
            got += s.recv(64)
        assert got == b"hello"
    (line,) = log_lines(log, 1)
    assert line == "200 5 5 127.0.0.1:%d 5 5" % e.port


def test_access_log_lists_each_try_and_502_when_all_fail(run, echo, tmp_path):
    e = echo()
    dead1, dead2 = free_ports(2)
    p1, p2 = free_ports(2)
    log = tmp_path / "s.log"
    run("""
  log_format t "$status $upstream_addr $upstream_connect_time";
  access_log %s t;
  upstream u  { server 127.0.0.1:%d; server 127.0.0.1:%d; }
  upstream ud { server 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; proxy_pass u; }
  server { listen 127.0.0.1:%d; proxy_pass ud; }
""" % (log, dead1, e.port, dead2, p1, p2))
    with connect(p1) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    (line,) = log_lines(log, 1)
    # one entry per try; the refused one has no connect time
    assert re.fullmatch(r"200 127\.0\.0\.1:%d, 127\.0\.0\.1:%d -, \d+\.\d{3}" % (dead1, e.port), line), line
    assert fetch(p2) == b""
    lines = log_lines(log, 2)
    assert lines[1] == "502 127.0.0.1:%d -" % dead2


# ---------------------------------------------------------------- proxy_pass with variables

def test_proxy_pass_with_variables_picks_an_upstream_by_name_or_an_address(run):
    a, b, back_a, back_b = free_ports(4)
    run("""
  map $server_port $target { %d ua; default 127.0.0.1:%d; }
  upstream ua { server 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; listen 127.0.0.1:%d; proxy_pass $target; }
  server { listen 127.0.0.1:%d; listen 127.0.0.1:%d; return "back $server_port"; }
""" % (a, back_b, back_a, a, b, back_a, back_b))
    assert fetch(a) == b"back %d" % back_a
    assert fetch(b) == b"back %d" % back_b


# ---------------------------------------------------------------- TLS

def test_tls_termination_alpn_and_ssl_variables(run, certs):
    port = free_port()
    crt, key = certs["a.test"]
    run("""
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s; ssl_certificate_key %s;
    ssl_alpn first second;
    return "$ssl_protocol|$ssl_alpn_protocol|$ssl_server_name";
  }
""" % (port, crt, key))
    got = tls_fetch(port, "a.test", ["wrong", "second"]).decode()
    proto, alpn, name = got.split("|")
    assert proto.startswith("TLSv1.") and alpn == "second" and name == "a.test"
    assert tls_fetch(port, "a.test").decode().split("|")[1] == ""
    with pytest.raises(ssl.SSLError):
        tls_fetch(port, "a.test", ["wrong"])      # no common protocol: refused, as nginx


def test_tls_termination_proxies_plaintext_to_the_backend(run, echo, certs):
    e = echo()
    port = free_port()
    crt, key = certs["a.test"]
    run("""
  server { listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s;
           proxy_pass 127.0.0.1:%d; }
""" % (port, crt, key, e.port))
    ctx = ssl.create_default_context(cafile=str(crt))
    with connect(port) as raw, ctx.wrap_socket(raw, server_hostname="a.test") as s:
        s.sendall(b"x" * 100000)
        got = b""
        while len(got) < 100000:
            got += s.recv(65536)
        assert got == b"x" * 100000


def test_proxy_ssl_sends_sni_and_verifies_the_backend(run, certs, tmp_path):
    front_ok, front_bad, back = free_ports(3)
    crt, key = certs["a.test"]
    log = tmp_path / "s.log"
    run("""
  log_format t "$server_port $status";
  server { listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s;
           return "name=$ssl_server_name"; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; access_log %s t;
           proxy_ssl on; proxy_ssl_server_name on; proxy_ssl_name a.test;
           proxy_ssl_verify on; proxy_ssl_trusted_certificate %s; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; access_log %s t;
           proxy_ssl on; proxy_ssl_name b.test;
           proxy_ssl_verify on; proxy_ssl_trusted_certificate %s; }
""" % (back, crt, key, front_ok, back, log, crt, front_bad, back, log, crt))
    assert fetch(front_ok) == b"name=a.test"
    assert fetch(front_bad) == b""              # the certificate is not b.test's: no session
    lines = log_lines(log, 2)
    assert "%d 200" % front_ok in lines and "%d 502" % front_bad in lines


# ---------------------------------------------------------------- ssl_preread

def test_ssl_preread_routes_tls_by_sni_untouched(run, certs):
    front, back_a, back_b = free_ports(3)
    (ca, ka), (cb, kb) = certs["a.test"], certs["b.test"]
    run("""
  map $ssl_preread_server_name $to { a.test 127.0.0.1:%d; default 127.0.0.1:%d; }
  server { listen 127.0.0.1:%d; ssl_preread on; proxy_pass $to; }
  server { listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s; return "A $ssl_server_name"; }
  server { listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s; return "B $ssl_server_name"; }
""" % (back_a, back_b, front, back_a, ca, ka, back_b, cb, kb))
    # verified against each backend's own certificate: the TLS is end to end
    for name, cafile, want in (("a.test", ca, b"A a.test"), ("b.test", cb, b"B b.test")):
        ctx = ssl.create_default_context(cafile=str(cafile))
        with connect(front) as raw, ctx.wrap_socket(raw, server_hostname=name) as s:
            assert read_all(s) == want


def test_ssl_preread_passes_a_non_tls_client_through_with_its_first_bytes(run, echo):
    e = echo()
    front = free_port()
    run("""
  map $ssl_preread_protocol $p { "" plain; default tls; }
  map $p $to { plain 127.0.0.1:%d; default 127.0.0.1:1; }
  server { listen 127.0.0.1:%d; ssl_preread on; proxy_pass $to; }
""" % (e.port, front))
    with connect(front) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        got = b""
        while len(got) < 18:
            got += s.recv(64)
        assert got == b"GET / HTTP/1.0\r\n\r\n"


def test_ssl_preread_buffer_full_ends_the_session_with_400(run, tmp_path):
    front = free_port()
    log = tmp_path / "s.log"
    run("""
  log_format t "$status";
  server { listen 127.0.0.1:%d; ssl_preread on; preread_buffer_size 20;
           return never; access_log %s t; }
""" % (front, log))
    with connect(front) as s:
        # a TLS record header announcing more than 20 bytes, then its start
        s.sendall(b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc" + b"\x03\x03" + b"r" * 20)
        assert read_all(s) == b""
    assert log_lines(log, 1) == ["400"]


def test_zone_is_accepted_and_no_live_upstreams_logs_the_upstream_name(run, tmp_path):
    dead, front = free_ports(2)
    log = tmp_path / "s.log"
    run("""
  log_format t "$status $upstream_addr";
  upstream gone { zone gone 64k; server 127.0.0.1:%d down; }
  server { listen 127.0.0.1:%d; proxy_pass gone; access_log %s t; }
""" % (dead, front, log))
    assert fetch(front) == b""
    assert log_lines(log, 1) == ["502 gone"]


# ---------------------------------------------------------------- UDP

def udp_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5 * SLOW)
    return s


def test_udp_return_answers_each_datagram(run):
    port = free_port()
    run('server { listen 127.0.0.1:%d udp; return "$protocol $remote_addr"; }' % port)
    with udp_socket() as s:
        for _ in range(2):
            s.sendto(b"ping", ("127.0.0.1", port))
            assert s.recv(100) == b"UDP 127.0.0.1"


def test_udp_proxy_relays_replies_until_proxy_responses(run, tmp_path):
    back = udp_socket()
    back.bind(("127.0.0.1", 0))
    front = free_port()
    log = tmp_path / "s.log"
    run("""
  log_format t "$protocol $status $bytes_received $bytes_sent $upstream_addr";
  server { listen 127.0.0.1:%d udp; proxy_pass 127.0.0.1:%d; proxy_responses 2; proxy_timeout 10s;
           access_log %s t; }
""" % (front, back.getsockname()[1], log))
    with udp_socket() as c, back:
        c.sendto(b"hello", ("127.0.0.1", front))
        data, proxy_addr = back.recvfrom(100)
        assert data == b"hello"
        back.sendto(b"one", proxy_addr)
        back.sendto(b"two", proxy_addr)
        assert c.recv(100) == b"one"
        assert c.recv(100) == b"two"
        # two replies end the session: the log line is written
        assert log_lines(log, 1) == ["UDP 200 5 6 127.0.0.1:%d" % back.getsockname()[1]]


def test_proxy_ssl_session_reuse_resumes_the_next_handshake(run, certs, tmp_path):
    front, front_off, back = free_ports(3)
    crt, key = certs["a.test"]
    log = tmp_path / "s.log"
    run("""
  log_format t "$server_port";
  server { listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s;
           ssl_session_cache builtin; return $ssl_session_reused; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; proxy_ssl on; access_log %s t; }
  server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; proxy_ssl on; proxy_ssl_session_reuse off;
           access_log %s t; }
""" % (back, crt, key, front, back, log, front_off, back, log))
    # the backend's ticket comes before its reply: kept by the time the client reads
    assert fetch(front) == b"."
    assert fetch(front) == b"r"
    assert fetch(front_off) == b"."
    log_lines(log, 3)
    assert fetch(front_off) == b"."


def test_set_assigns_in_order_and_overrides_a_map(run):
    a, b = free_ports(2)
    run("""
  map $server_port $m { default original; }
  server { listen 127.0.0.1:%d; set $copy $m; set $m "new $remote_addr"; return "$m|$copy"; }
  server { listen 127.0.0.1:%d; return "[$copy]"; }
""" % (a, b))
    assert fetch(a) == b"new 127.0.0.1|original"
    assert fetch(b) == b"[]"


def murmur2(data):
    """nginx's ngx_murmur_hash2."""
    m, h, n = 0x5bd1e995, len(data), len(data)
    i = 0
    while n >= 4:
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xffffffff
        k ^= k >> 24
        k = (k * m) & 0xffffffff
        h = ((h * m) & 0xffffffff) ^ k
        i += 4
        n -= 4
    if n == 3:
        h ^= data[i + 2] << 16
    if n >= 2:
        h ^= data[i + 1] << 8
    if n >= 1:
        h ^= data[i]
        h = (h * m) & 0xffffffff
    h ^= h >> 13
    h = (h * m) & 0xffffffff
    return h ^ (h >> 15)


def test_split_clients_splits_as_nginx(run):
    ports = free_ports(8)
    run("""
  split_clients "k$server_port" $variant { 30%% first; 20.5%% second; * third; }
  server { %s return $variant; }
""" % "".join("listen 127.0.0.1:%d; " % p for p in ports))
    first = 3000 * 0xffffffff // 10000          # nginx adds each part's share in turn
    limits = [first, first + 2050 * 0xffffffff // 10000]
    for p in ports:
        h = murmur2(b"k%d" % p)
        want = b"first" if h < limits[0] else b"second" if h < limits[1] else b"third"
        assert fetch(p) == want


def test_udp_proxy_requests_1_gives_each_datagram_its_own_session(run):
    back = udp_socket()
    back.bind(("127.0.0.1", 0))
    front = free_port()
    run("server { listen 127.0.0.1:%d udp; proxy_pass 127.0.0.1:%d; proxy_requests 1; proxy_timeout 10s; }"
        % (front, back.getsockname()[1]))
    with udp_socket() as c, back:
        c.sendto(b"a", ("127.0.0.1", front))
        _, src1 = back.recvfrom(10)
        c.sendto(b"b", ("127.0.0.1", front))
        _, src2 = back.recvfrom(10)
        assert src1 != src2             # a new upstream socket: a new session
        back.sendto(b"late", src1)      # the first session still relays its reply
        assert c.recv(10) == b"late"


def test_geo_cidr_longest_prefix_and_ranges_last_line_wins(run):
    a, b, c = free_ports(3)
    run("""
  map $server_port $addr { %d 10.1.2.3; %d 10.9.0.1; default junk; }
  geo $addr $net { default none; 10.0.0.0/8 wide; 10.1.0.0/16 narrow; 10.9.0.0/16 gone; delete 10.9.0.0/16; }
  geo $addr $rng { ranges; default none; 10.0.0.0-10.255.255.255 all; 10.1.2.0-10.1.2.255 some; }
  geo $client { 127.0.0.0/8 loopback; }
  server { listen 127.0.0.1:%d; listen 127.0.0.1:%d; listen 127.0.0.1:%d; return "$net $rng $client"; }
""" % (a, b, a, b, c))
    assert fetch(a) == b"narrow some loopback"
    assert fetch(b) == b"wide all loopback"
    assert fetch(c) == b"none none loopback"    # not an address
