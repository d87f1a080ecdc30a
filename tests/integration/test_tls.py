"""TLS termination (OpenSSL 3) in front of plain backends, checked with curl:
ALPN picks HTTP/2 or HTTP/1.1 on the same port, SNI picks the server block
and its certificate, seed 12 runs unchanged, and a client that sends garbage
instead of a ClientHello costs only its own connection."""
import socket
import ssl
import subprocess
import time

import pytest

import sgtest
from sgtest import free_port, http_conf


def make_cert(dirpath, name):
    key, crt = dirpath / ("%s.key" % name), dirpath / ("%s.pem" % name)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=%s" % name, "-addext",
                    "subjectAltName=DNS:%s,IP:127.0.0.1" % name,
                    "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def curl(port, name, path="/", *args):
    r = subprocess.run(["curl", "-sS", "--max-time", str(10 * sgtest.SLOW),
                        "--resolve", "%s:%d:127.0.0.1" % (name, port),
                        "-w", "\n%{http_version}", *args,
                        "https://%s:%d%s" % (name, port, path)],
                       capture_output=True, timeout=30 * sgtest.SLOW)
    body, _, version = r.stdout.rpartition(b"\n")
    return r.returncode, body, version.decode(), r.stderr.decode()


@pytest.fixture
def two_sites(tmp_path, start_proxy, backend):
    a_crt, a_key = make_cert(tmp_path, "a.test")
    b_crt, b_key = make_cert(tmp_path, "b.test")
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d ssl http2;
    server_name a.test;
    ssl_certificate %s; ssl_certificate_key %s;
    location / { return 200 "site a\\n"; }
    location /up/ { proxy_pass http://127.0.0.1:%d/; }
  }
  server {
    listen 127.0.0.1:%d ssl http2;
    server_name b.test;
    ssl_certificate %s; ssl_certificate_key %s;
    location / { return 200 "site b\\n"; }
  }
""" % (port, a_crt, a_key, backend.port, port, b_crt, b_key)))
    return port, {"a.test": a_crt, "b.test": b_crt}


def test_alpn_h2_and_http11_on_one_port(two_sites):
    port, certs = two_sites
    rc, body, version, err = curl(port, "a.test", "/", "--cacert", str(certs["a.test"]), "--http2")
    assert (rc, body, version) == (0, b"site a\n", "2"), err
    rc, body, version, err = curl(port, "a.test", "/", "--cacert", str(certs["a.test"]), "--http1.1")
    assert (rc, body, version) == (0, b"site a\n", "1.1"), err


def test_sni_picks_the_server_and_its_certificate(two_sites):
    port, certs = two_sites
    rc, body, _, err = curl(port, "b.test", "/", "--cacert", str(certs["b.test"]))
    assert (rc, body) == (0, b"site b\n"), err
    # b.test's certificate does not verify against a.test's: it is b's
    rc, _, _, err = curl(port, "b.test", "/", "--cacert", str(certs["a.test"]))
    assert rc != 0


def test_proxied_over_tls_both_protocols(two_sites):
    port, certs = two_sites
    for proto in ("--http2", "--http1.1"):
        rc, body, _, err = curl(port, "a.test", "/up/bytes/100000", "--cacert",
                                str(certs["a.test"]), proto)
        assert rc == 0 and len(body) == 100000, (proto, err)


def test_garbage_handshake_costs_only_that_connection(two_sites):
    port, certs = two_sites
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n" + b"\x00" * 1000)
        try:
            s.recv(100)
        except OSError:
            pass
    rc, body, _, err = curl(port, "a.test", "/", "--cacert", str(certs["a.test"]))
    assert (rc, body) == (0, b"site a\n"), err


def test_handshake_across_reloads_serves_the_current_generation(tmp_path, start_proxy):
    """A connection accepted before reloads and handshaken after them is
    served by the generation current when the handshake ends, and a
    kept-alive one by the generation of each request."""
    crt, key = make_cert(tmp_path, "a.test")
    port = free_port()

    def conf(gen):
        return http_conf("""
  server {
    listen 127.0.0.1:%d ssl;
    server_name a.test;
    ssl_certificate %s; ssl_certificate_key %s;
    location / { return 200 "gen%d"; }
  }
""" % (port, crt, key, gen), main="worker_processes 1;")

    p = start_proxy(conf(0))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5 * sgtest.SLOW)
    time.sleep(0.2)                        # accepted: the handshake waits for the ClientHello
    assert p.reload(conf(1)) is True
    assert p.reload(conf(2)) is True
    ctx = ssl.create_default_context(cafile=str(crt))
    ctx.set_alpn_protocols(["http/1.1"])
    with ctx.wrap_socket(raw, server_hostname="a.test") as s:
        def ask():
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 4:
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            return data.partition(b"\r\n\r\n")[2]
        assert ask() == b"gen2"
        for gen in (3, 4):
            assert p.reload(conf(gen)) is True
            assert ask() == b"gen%d" % gen


def test_seed_12_http2_tls_to_http1(seed_conf, tmp_prefix, start_proxy, start_backend):
    """Seed 12 unchanged but for its ports (its certificate generated as
    certs/README.md says): curl --http2 on https://127.0.0.1:8443 gets the
    HTTP/1.1 backend's answer."""
    seed = seed_conf("12")
    certs = tmp_prefix / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    start_backend([seed[8008]])
    start_proxy(conf_file=seed.path, prefix=tmp_prefix)
    r = subprocess.run(["curl", "-sS", "-i", "--http2", "--cacert", str(certs / "cert.pem"),
                        "--max-time", "10", "https://127.0.0.1:%d/" % seed[8443]],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head = r.stdout.decode(errors="replace").lower()
    assert head.startswith("http/2 200"), head[:200]
    assert "x-backend: %d" % seed[8008] in head and "access-control-allow-methods: get,post,options" in head
