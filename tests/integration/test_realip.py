"""The real client address behind trusted proxies (nginx's realip module):
set_real_ip_from, real_ip_header, real_ip_recursive and
$realip_remote_addr, seen by $remote_addr, allow/deny and the access log."""

import pytest

import sgtest
from sgtest import HttpConn, free_port, http_conf


@pytest.fixture
def proxy(start_proxy, start_backend):
    back = start_backend()
    port = free_port()
    return start_proxy(http_conf("""
  server {
    listen 127.0.0.1:%d;
    set_real_ip_from 127.0.0.1;
    set_real_ip_from 127.0.0.2;
    location / { return 200 "$remote_addr|$remote_port|$realip_remote_addr"; }
    # location-level settings apply after the rewrite phase (nginx's
    # pre-access), so these proxy and show what the backend is told
    location /xff/ {
      real_ip_header X-Forwarded-For;
      proxy_set_header X-Client "$remote_addr|$realip_remote_addr";
      proxy_pass http://127.0.0.1:%d/headers;
    }
    location /rec/ {
      real_ip_header X-Forwarded-For;
      real_ip_recursive on;
      set_real_ip_from 127.0.0.1;
      set_real_ip_from 10.0.0.0/8;
      proxy_set_header X-Client "$remote_addr";
      proxy_pass http://127.0.0.1:%d/headers;
    }
    location /deny/ {
      real_ip_header X-Forwarded-For;
      deny 192.0.2.7;
      proxy_pass http://127.0.0.1:1;
    }
  }
""" % (port, back.port, back.port)))


def told(port, path, headers):
    """The X-Client header the backend received."""
    status, body = answer(port, path, headers)
    assert status == 200, body
    for line in body.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-client":
            return value.strip()
    raise AssertionError("no X-Client in " + body)


def answer(port, path, headers=None, source="127.0.0.1"):
    with HttpConn(port, source=source) as c:
        r = c.request("GET", path, headers=headers or {})
    return r.status, r.body.decode()


def test_x_real_ip_from_a_trusted_peer(proxy):
    assert answer(proxy.port, "/", {"X-Real-IP": "192.0.2.1"}) == (200, "192.0.2.1|0|127.0.0.1")
    assert answer(proxy.port, "/", {"X-Real-IP": "[2001:db8::5]:8080"}) == \
        (200, "2001:db8::5|8080|127.0.0.1")


def test_untrusted_peer_keeps_its_address(proxy):
    status, body = answer(proxy.port, "/", {"X-Real-IP": "192.0.2.1"}, source="127.0.0.3")
    assert status == 200 and body.startswith("127.0.0.3|") and body.endswith("|127.0.0.3")


def test_garbage_header_keeps_the_address(proxy):
    assert answer(proxy.port, "/", {"X-Real-IP": "not-an-address"})[1].startswith("127.0.0.1|")


def test_forwarded_for_takes_the_nearest_hop(proxy):
    h = {"X-Forwarded-For": "198.51.100.1, 10.1.1.1"}
    assert told(proxy.port, "/xff/", h) == "10.1.1.1|127.0.0.1"


def test_recursive_skips_trusted_hops(proxy):
    h = {"X-Forwarded-For": "203.0.113.9, 198.51.100.1, 10.1.1.1, 10.2.2.2"}
    assert told(proxy.port, "/rec/", h) == "198.51.100.1"
    # every hop trusted: the leftmost one
    assert told(proxy.port, "/rec/", {"X-Forwarded-For": "10.0.0.5, 10.0.0.6"}) == "10.0.0.5"


def test_only_the_configured_header_is_read(proxy):
    """The server's header is the default X-Real-IP: an X-Forwarded-For
    there changes nothing."""
    status, body = answer(proxy.port, "/", {"X-Forwarded-For": "192.0.2.9"})
    assert body.startswith("127.0.0.1|")


def test_access_rules_see_the_real_address(proxy):
    assert answer(proxy.port, "/deny/", {"X-Forwarded-For": "192.0.2.7"})[0] == 403
    assert "access forbidden by rule" in proxy.error_log


def test_real_ip_header_proxy_protocol_is_refused_for_now(tmp_path):
    conf = tmp_path / "r.conf"
    conf.write_text(http_conf("server { listen 127.0.0.1:1; real_ip_header proxy_protocol; return 204; }"))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 1 and "not supported yet" in r.stderr
