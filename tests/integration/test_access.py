"""allow / deny (nginx's access module) with real clients from several
loopback source addresses: the first matching rule decides, a level with
rules replaces the inherited ones, `return` runs before access as in
nginx, and a denied gRPC call ends with PERMISSION_DENIED."""

import pytest

import sgtest
from sgtest import HttpConn, free_port, http_conf

grpc = pytest.importorskip("grpc")


def status_from(port, source, path="/"):
    with HttpConn(port, source=source) as c:
        return c.request("GET", path).status


@pytest.fixture
def proxy(start_proxy, start_backend):
    back = start_backend()
    port = free_port()
    p = start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    deny 127.0.0.9;
    location / { proxy_pass http://127.0.0.1:%d; }
    location /only2/ {
      allow 127.0.0.2;
      deny all;
      proxy_pass http://127.0.0.1:%d;
    }
    location /net/ {
      deny 127.0.5.0/24;
      allow all;
      proxy_pass http://127.0.0.1:%d;
    }
    location /nine/ {
      allow 127.0.0.9;
      proxy_pass http://127.0.0.1:%d;
    }
    location /ret/ {
      deny all;
      return 200 "rewrite phase first";
    }
    location /v6/ {
      allow ::1;
      deny all;
      proxy_pass http://127.0.0.1:%d;
    }
  }
""" % (port, back.port, back.port, back.port, back.port, back.port)))
    return p


def test_first_matching_rule_decides(proxy):
    assert status_from(proxy.port, "127.0.0.2", "/only2/") == 200
    assert status_from(proxy.port, "127.0.0.3", "/only2/") == 403
    assert "access forbidden by rule" in proxy.error_log


def test_cidr_rule(proxy):
    assert status_from(proxy.port, "127.0.5.1", "/net/") == 403
    assert status_from(proxy.port, "127.0.5.200", "/net/") == 403
    assert status_from(proxy.port, "127.0.6.1", "/net/") == 200


def test_a_level_with_rules_replaces_inherited_ones(proxy):
    assert status_from(proxy.port, "127.0.0.9", "/") == 403          # the server's deny
    assert status_from(proxy.port, "127.0.0.8", "/") == 200
    assert status_from(proxy.port, "127.0.0.9", "/nine/") == 200     # its own rules only


def test_return_runs_before_access(proxy):
    with HttpConn(proxy.port) as c:
        r = c.request("GET", "/ret/")
    assert r.status == 200 and r.body == b"rewrite phase first"


def test_ipv6_rule_does_not_match_ipv4_client(proxy):
    assert status_from(proxy.port, "127.0.0.1", "/v6/") == 403


def test_denied_grpc_call_is_permission_denied(start_proxy):
    port = free_port()
    start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d http2;
    location / {
      deny all;
      grpc_pass grpc://127.0.0.1:1;
    }
  }
""" % port))
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        call = ch.unary_unary("/chat.Chat/Echo", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("rule, message", [
    ("allow 300.1.1.1;", 'invalid parameter "300.1.1.1"'),
    ("deny 10.0.0.0/33;", 'invalid parameter "10.0.0.0/33"'),
    ("deny example.com;", 'invalid parameter "example.com"'),
])
def test_bad_rules_are_refused(tmp_path, rule, message):
    conf = tmp_path / "a.conf"
    conf.write_text(http_conf("server { listen 127.0.0.1:1; location / { %s return 204; } }" % rule))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 1 and message in r.stderr, r.stderr


def test_low_address_bits_get_a_notice(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text(http_conf("server { listen 127.0.0.1:1; allow 10.1.2.3/8; return 204; }"))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert "[notice]" in r.stderr and "low address bits of 10.1.2.3/8 are meaningless" in r.stderr
