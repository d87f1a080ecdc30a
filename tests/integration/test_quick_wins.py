"""Small nginx compatibility pieces on the real binary (issue 9).

- limit_rate / limit_rate_after are accepted with a notice (responses are
  not rate-limited); `set $limit_rate VALUE` keeps nginx's number, as
  nginx's own $limit_rate set/get handlers do.
"""

import subprocess

from sgtest import free_port, get, http_conf, run_streamgate, wait_for


def test_limit_rate_accepted_with_notice(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text(http_conf("""
  limit_rate 10k;
  server { listen 127.0.0.1:1; limit_rate_after 1m;
           location / { limit_rate 100; if ($arg_x) { limit_rate 5; limit_rate_after 0; } } }
"""))
    p = run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
    assert p.returncode == 0, p.stderr
    assert '"limit_rate" is accepted and has no effect: responses are not rate-limited' in p.stderr
    assert '"limit_rate_after" is accepted and has no effect' in p.stderr
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
