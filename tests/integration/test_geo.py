"""geo (nginx's ngx_http_geo_module): a variable chosen by the client
address, from several loopback source addresses, or by an address another
variable holds; longest network wins, `delete` removes, `ranges` matches
address ranges."""

import pytest

import sgtest
from sgtest import HttpConn, free_port, http_conf


@pytest.fixture
def proxy(start_proxy):
    port = free_port()
    p = start_proxy(http_conf("""
  geo $where {
    default        outside;
    127.0.0.0/8    loopback;
    127.0.5.0/24   five;
    127.0.5.7      seven;
    127.0.6.0/24   six;
    delete         127.0.6.0/24;
    ::1            v6;
  }
  geo $arg_ip $range {
    ranges;
    default        none;
    10.0.0.1-10.0.0.9     low;
    10.0.0.10-10.0.0.200  high;
  }
  server {
    listen 127.0.0.1:%d;
    location / { return 200 "$where|$range"; }
  }
""" % port))
    return p


def answer(port, source, path="/"):
    with HttpConn(port, source=source) as c:
        r = c.request("GET", path)
    assert r.status == 200
    return r.body.decode()


def test_longest_network_wins(proxy):
    assert answer(proxy.port, "127.0.0.2").split("|")[0] == "loopback"
    assert answer(proxy.port, "127.0.5.1").split("|")[0] == "five"
    assert answer(proxy.port, "127.0.5.7").split("|")[0] == "seven"


def test_deleted_network_falls_back_to_the_wider_one(proxy):
    assert answer(proxy.port, "127.0.6.1").split("|")[0] == "loopback"


def test_ranges_on_an_address_from_a_variable(proxy):
    assert answer(proxy.port, "127.0.0.1", "/?ip=10.0.0.5") == "loopback|low"
    assert answer(proxy.port, "127.0.0.1", "/?ip=10.0.0.150") == "loopback|high"
    assert answer(proxy.port, "127.0.0.1", "/?ip=10.0.1.1") == "loopback|none"
    assert answer(proxy.port, "127.0.0.1", "/?ip=not-an-address") == "loopback|none"


@pytest.mark.parametrize("block, message", [
    ("geo $g { 10.0.0.0/33 x; }", 'invalid network "10.0.0.0/33"'),
    ("geo $g { proxy 10.0.0.300; }", 'invalid parameter "10.0.0.300"'),
    ("geo $g { 10.0.0.1 a b; }", "invalid number of the geo parameters"),
    ("geo g { default x; }", 'invalid variable name "g"'),
])
def test_bad_geo_blocks_are_refused(tmp_path, block, message):
    conf = tmp_path / "g.conf"
    conf.write_text(http_conf(block + " server { listen 127.0.0.1:1; return 204; }"))
    r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert r.returncode == 1 and message in r.stderr, r.stderr
