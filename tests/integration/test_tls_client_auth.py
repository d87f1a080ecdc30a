"""Server-side TLS as nginx's http ssl module does it, checked with curl and
openssl: client certificates (ssl_verify_client on / optional /
optional_no_ca, ssl_client_certificate, ssl_trusted_certificate) with
nginx's 400 pages over HTTP/1.1 and HTTP/2 and 421 for a Host other than
the verified name, the $ssl_client_* and connection variables in return,
add_header, proxy_set_header, map and the access log, ssl_reject_handshake,
ssl_password_file, ssl_protocols of the server SNI names, and a plain
HTTP request on a TLS port."""
import hashlib
import socket
import ssl
import subprocess

import pytest

import sgtest
from sgtest import free_port, http_conf, run_streamgate


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for a.test/b.test, a client certificate
    the CA signed, one it did not (self-signed), and an encrypted key
    (made once for the file: RSA keys are slow to make)."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=a.test",
            "-addext", "subjectAltName=DNS:a.test,DNS:b.test",
            "-keyout", str(d / "srv.key"), "-out", str(d / "srv.crt"))
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=Acme/CN=alice",
            "-keyout", str(d / "alice.key"), "-out", str(d / "alice.csr"))
    openssl("x509", "-req", "-in", str(d / "alice.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-set_serial", "0x1234AB", "-days", "3", "-out", str(d / "alice.crt"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mallory",
            "-keyout", str(d / "mallory.key"), "-out", str(d / "mallory.crt"))
    openssl("genrsa", "-aes128", "-passout", "pass:s3cret", "-out", str(d / "enc.key"), "2048")
    openssl("req", "-x509", "-new", "-key", str(d / "enc.key"), "-passin", "pass:s3cret", "-days", "2",
            "-subj", "/CN=a.test", "-out", str(d / "enc.crt"))
    (d / "passwords").write_text("wrong\ns3cret\n")
    return d


def curl(port, name, path, *args, host=None):
    """(exit code, status, headers dict, body) of https://name:port/path."""
    cmd = ["curl", "-sS", "-k", "--max-time", str(10 * sgtest.SLOW), "-D", "-",
           "--resolve", "%s:%d:127.0.0.1" % (name, port), *args]
    if host:
        cmd += ["-H", "Host: " + host]
    r = subprocess.run(cmd + ["https://%s:%d%s" % (name, port, path)], capture_output=True,
                       timeout=30 * sgtest.SLOW)
    out = r.stdout.decode(errors="replace")
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return r.returncode, status, hdrs, body


def cert_args(pki, who):
    return ("--cert", str(pki / ("%s.crt" % who)), "--key", str(pki / ("%s.key" % who)))


@pytest.fixture
def mtls(pki, start_proxy, backend, tmp_path):
    port = free_port()
    log = tmp_path / "tls.log"
    start_proxy(http_conf("""
  log_format tls '$ssl_protocol $ssl_cipher $ssl_server_name $ssl_client_verify $https';
  map $ssl_client_s_dn $who { ~CN=alice alice; default nobody; }
  ssl_certificate %(d)s/srv.crt; ssl_certificate_key %(d)s/srv.key;
  ssl_client_certificate %(d)s/ca.crt;
  server {
    listen 127.0.0.1:%(port)d ssl http2;
    server_name on.test;
    ssl_verify_client on;
    access_log %(log)s tls;
    location / {
      return 200 "verify=$ssl_client_verify s=$ssl_client_s_dn i=$ssl_client_i_dn serial=$ssl_client_serial fp=$ssl_client_fingerprint remain=$ssl_client_v_remain who=$who\\n";
    }
    location /raw { return 200 $ssl_client_raw_cert; }
    location /esc { return 200 $ssl_client_escaped_cert; }
    location /up/ {
      proxy_pass http://127.0.0.1:%(bport)d/;
      proxy_set_header X-Client-Verify $ssl_client_verify;
      proxy_set_header X-Client-DN $ssl_client_s_dn;
    }
  }
  server {
    listen 127.0.0.1:%(port)d ssl http2;
    server_name optional.test;
    ssl_verify_client optional;
    location / { return 200 "verify=$ssl_client_verify\\n"; }
  }
  server {
    listen 127.0.0.1:%(port)d ssl http2;
    server_name noca.test;
    ssl_verify_client optional_no_ca;
    location / {
      add_header X-Verify $ssl_client_verify;
      return 200 "verify=$ssl_client_verify\\n";
    }
  }
  server {
    listen 127.0.0.1:%(port)d ssl http2;
    server_name plain.test;
    location / {
      add_header X-Proto $ssl_protocol;
      return 200 "https=$https scheme=$scheme sni=$ssl_server_name alpn=$ssl_alpn_protocol reused=$ssl_session_reused verify=$ssl_client_verify\\n";
    }
  }
""" % {"d": pki, "port": port, "log": log, "bport": backend.port}))
    return port, log


def test_verify_on_requires_a_certificate(mtls, pki):
    port, _ = mtls
    rc, status, _, body = curl(port, "on.test", "/")
    assert (rc, status) == (0, 400)
    assert "No required SSL certificate was sent" in body
    rc, status, _, body = curl(port, "on.test", "/", "--http2")
    assert (rc, status) == (0, 400)
    assert "No required SSL certificate was sent" in body


def test_verify_on_with_a_good_certificate_fills_the_variables(mtls, pki):
    port, _ = mtls
    rc, status, _, body = curl(port, "on.test", "/", *cert_args(pki, "alice"))
    assert (rc, status) == (0, 200), body
    der = subprocess.run(["openssl", "x509", "-in", str(pki / "alice.crt"), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert "verify=SUCCESS " in body
    assert "s=CN=alice,O=Acme " in body
    assert "i=CN=test CA " in body
    assert "serial=1234AB " in body
    assert "fp=%s " % hashlib.sha1(der).hexdigest() in body
    assert "remain=2 " in body or "remain=3 " in body
    assert body.endswith("who=alice\n")
    rc, status, _, raw = curl(port, "on.test", "/raw", *cert_args(pki, "alice"))
    assert raw == (pki / "alice.crt").read_text()
    rc, status, _, esc = curl(port, "on.test", "/esc", *cert_args(pki, "alice"))
    assert esc.startswith("-----BEGIN%20CERTIFICATE-----%0A")


def test_verify_on_refuses_a_certificate_of_another_ca(mtls, pki):
    port, _ = mtls
    rc, status, _, body = curl(port, "on.test", "/", *cert_args(pki, "mallory"))
    assert (rc, status) == (0, 400)
    assert "The SSL certificate error" in body
    rc, status, _, body = curl(port, "on.test", "/", "--http2", *cert_args(pki, "mallory"))
    assert (rc, status) == (0, 400)
    assert "The SSL certificate error" in body


def test_optional_and_optional_no_ca(mtls, pki):
    port, _ = mtls
    assert curl(port, "optional.test", "/")[1:4:2] == (200, "verify=NONE\n")
    assert curl(port, "optional.test", "/", *cert_args(pki, "alice"))[1:4:2] == (200, "verify=SUCCESS\n")
    rc, status, _, body = curl(port, "optional.test", "/", *cert_args(pki, "mallory"))
    assert status == 400 and "The SSL certificate error" in body
    rc, status, hdrs, body = curl(port, "noca.test", "/", *cert_args(pki, "mallory"))
    assert status == 200
    assert body == "verify=FAILED:self-signed certificate\n"
    assert hdrs["x-verify"] == "FAILED:self-signed certificate"


def test_the_client_is_sent_the_ca_names(mtls, pki):
    port, _ = mtls
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "on.test"],
                       input=b"", capture_output=True, timeout=30 * sgtest.SLOW)
    out = r.stdout.decode(errors="replace")
    assert "Acceptable client certificate CA names" in out
    assert "CN = test CA" in out


def test_host_other_than_the_verified_name_is_misdirected(mtls, pki):
    port, _ = mtls
    # the handshake verified for optional.test; Host names on.test (verifies too)
    rc, status, _, _ = curl(port, "optional.test", "/", *cert_args(pki, "alice"), host="on.test")
    assert status == 421
    # a server that verifies nothing is reachable by Host from any SNI name
    rc, status, _, body = curl(port, "on.test", "/", *cert_args(pki, "alice"), host="plain.test")
    assert status == 200 and body.startswith("https=on")


def test_connection_variables(mtls, pki, backend):
    port, log = mtls
    rc, status, hdrs, body = curl(port, "plain.test", "/", "--http2")
    assert status == 200
    assert hdrs["x-proto"] in ("TLSv1.2", "TLSv1.3")
    assert body == "https=on scheme=https sni=plain.test alpn=h2 reused=. verify=NONE\n"
    rc, status, hdrs, body = curl(port, "plain.test", "/", "--http1.1")
    assert "alpn=http/1.1" in body
    # proxy_set_header carries them to the backend (sgback /headers echoes)
    rc, status, _, body = curl(port, "on.test", "/up/headers", *cert_args(pki, "alice"))
    assert status == 200
    low = body.lower()
    assert "x-client-verify: success" in low
    assert "x-client-dn: cn=alice,o=acme" in low
    # the access log line was written by then (before the response ended)
    sgtest.wait_for(lambda: log.exists() and log.read_text().count("\n") >= 1, what="access log")
    first = log.read_text().splitlines()[0].split()
    assert first[0] in ("TLSv1.2", "TLSv1.3") and first[2] == "on.test" and first[3] == "SUCCESS"
    assert first[4] == "on"


def test_plain_connection_has_no_tls_values(start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    location / { return 200 "[$https][$ssl_protocol][$ssl_client_verify][$scheme]"; }
  }
""" % port))
    r = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/" % port], capture_output=True, timeout=30)
    assert r.stdout == b"[][][][http]"


def test_plain_http_on_a_tls_port(mtls):
    port, _ = mtls
    with socket.create_connection(("127.0.0.1", port), timeout=10 * sgtest.SLOW) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"The plain HTTP request was sent to HTTPS port" in data


def tls_handshake(port, sni, **kw):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    with socket.create_connection(("127.0.0.1", port), timeout=10 * sgtest.SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return s.version()


def test_reject_handshake_and_protocols_by_sni(pki, start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%(port)d ssl default_server;
    ssl_reject_handshake on;
  }
  server {
    listen 127.0.0.1:%(port)d ssl;
    server_name old.test;
    ssl_certificate %(d)s/srv.crt; ssl_certificate_key %(d)s/srv.key;
    ssl_protocols TLSv1.2;
  }
  server {
    listen 127.0.0.1:%(port)d ssl;
    server_name new.test;
    ssl_certificate %(d)s/srv.crt; ssl_certificate_key %(d)s/srv.key;
    ssl_protocols TLSv1.3;
  }
""" % {"d": pki, "port": port}))
    for sni in (None, "unknown.test"):
        with pytest.raises(ssl.SSLError) as e:
            tls_handshake(port, sni)
        assert "UNRECOGNIZED_NAME" in str(e.value).upper()
    assert tls_handshake(port, "old.test") == "TLSv1.2"
    assert tls_handshake(port, "new.test") == "TLSv1.3"


def test_password_file(pki, start_proxy, tmp_path):
    port = free_port()
    conf = http_conf("""
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_certificate %(d)s/enc.crt; ssl_certificate_key %(d)s/enc.key;
    ssl_password_file %(pw)s;
    location / { return 200 "ok\\n"; }
  }
""" % {"d": pki, "port": port, "pw": pki / "passwords"})
    start_proxy(conf)
    assert curl(port, "a.test", "/")[1:4:2] == (200, "ok\n")
    # without the right password the key does not load, and -t names the line
    (tmp_path / "bad.conf").write_text(conf.replace(str(pki / "passwords"), str(tmp_path / "nopw")))
    (tmp_path / "nopw").write_text("nope\n")
    r = run_streamgate(["-t", "-c", tmp_path / "bad.conf"])
    assert r.returncode != 0
    assert "cannot load certificate key" in r.stderr


def test_verify_without_ca_is_refused(pki, tmp_path):
    (tmp_path / "v.conf").write_text(http_conf("""
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s/srv.crt; ssl_certificate_key %s/srv.key;
    ssl_verify_client on;
  }
""" % (free_port(), pki, pki)))
    r = run_streamgate(["-t", "-c", tmp_path / "v.conf"])
    assert r.returncode != 0
    assert "no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client" in r.stderr


def test_crl_revokes_a_client_certificate(pki, start_proxy, tmp_path):
    d = tmp_path / "ca"
    d.mkdir()
    (d / "index.txt").write_text("")
    (d / "ca.conf").write_text("""[ ca ]
default_ca = myca
[ myca ]
new_certs_dir = %(d)s
database = %(d)s/index.txt
default_md = sha256
policy = pol
serial = %(d)s/serial
default_days = 2
default_crl_days = 2
[ pol ]
commonName = supplied
""" % {"d": d})
    (d / "serial").write_text("1000\n")
    for who in ("bob", "eve"):
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % who,
                "-keyout", str(d / ("%s.key" % who)), "-out", str(d / ("%s.csr" % who)))
        openssl("ca", "-batch", "-config", str(d / "ca.conf"), "-keyfile", str(pki / "ca.key"),
                "-cert", str(pki / "ca.crt"), "-in", str(d / ("%s.csr" % who)), "-out", str(d / ("%s.crt" % who)))
    openssl("ca", "-config", str(d / "ca.conf"), "-keyfile", str(pki / "ca.key"), "-cert", str(pki / "ca.crt"),
            "-revoke", str(d / "eve.crt"))
    openssl("ca", "-gencrl", "-config", str(d / "ca.conf"), "-keyfile", str(pki / "ca.key"),
            "-cert", str(pki / "ca.crt"), "-out", str(d / "ca.crl"))
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_certificate %(p)s/srv.crt; ssl_certificate_key %(p)s/srv.key;
    ssl_verify_client on;
    ssl_client_certificate %(p)s/ca.crt;
    ssl_crl %(d)s/ca.crl;
    location / { return 200 "$ssl_client_verify\\n"; }
  }
""" % {"p": pki, "d": d, "port": port}))
    assert curl(port, "a.test", "/", *cert_args(d, "bob"))[1:4:2] == (200, "SUCCESS\n")
    rc, status, _, body = curl(port, "a.test", "/", *cert_args(d, "eve"))
    assert status == 400 and "The SSL certificate error" in body


def test_accepted_directives_say_what_they_do(pki, tmp_path):
    (tmp_path / "n.conf").write_text(http_conf("""
  lingering_close always;
  lingering_time 30s;
  lingering_timeout 5s;
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s/srv.crt; ssl_certificate_key %s/srv.key;
    ssl_early_data on;
    ssl_buffer_size 4k;
    ssl_conf_command Options -SessionTicket;
  }
""" % (free_port(), pki, pki)))
    r = run_streamgate(["-t", "-c", tmp_path / "n.conf"])
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert '"lingering_close" is accepted and has no effect' in out
    assert '"ssl_early_data" is accepted' in out
    (tmp_path / "bad.conf").write_text(http_conf("""
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s/srv.crt; ssl_certificate_key %s/srv.key;
    ssl_conf_command NoSuchCommand on;
  }
""" % (free_port(), pki, pki)))
    r = run_streamgate(["-t", "-c", tmp_path / "bad.conf"])
    assert r.returncode != 0 and "NoSuchCommand" in r.stderr
