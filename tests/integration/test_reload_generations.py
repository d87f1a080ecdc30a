"""Reload and the generations it leaves: a failed reload binds no new
port, and many reloads while requests pin old generations."""

import threading
import time

from sgtest import free_port, get, http_conf, port_accepts, SLOW


def test_failed_reload_leaves_no_new_port_bound(start_proxy, backend):
    port, new_port = free_port(), free_port()
    good = http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
""" % (port, backend.port))
    p = start_proxy(good)
    bad = http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
  server { listen 127.0.0.1:%d; access_log /nonexistent-dir/x.log; location / { return 200; } }
""" % (port, backend.port, new_port))
    assert p.reload(bad) is False
    assert not port_accepts(new_port), "a failed reload left a listening socket nobody serves"
    assert get(port, "/").status == 200


def test_many_reloads_while_requests_pin_old_generations(start_proxy, backend):
    """Each reload leaves a slow request on the previous generation: 20 of
    them at once used to overflow a fixed table and crash."""
    port = free_port()
    conf = http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
""" % (port, backend.port))
    p = start_proxy(conf)
    results = []
    threads = []
    for i in range(20):
        t = threading.Thread(target=lambda: results.append(
            get(port, "/delay/%d" % int(3000 * SLOW), timeout=30 * SLOW).status))
        t.start()
        threads.append(t)
        time.sleep(0.05)
        assert p.reload(conf + "\n# reload %d\n" % i)
    for t in threads:
        t.join(40 * SLOW)
    assert results == [200] * 20
    assert get(port, "/").status == 200
