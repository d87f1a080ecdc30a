"""HTTP/2 server codec (src/http/h2_server.c) requests: :authority checked
as HTTP/1.1 checks Host, request bodies under a small preread window, and
downloads that starved streams must not stall. Each test failed before its
fix.

Uses the raw-frame client of test_h2_server.py (RawH2) so that the exact
frames and flow-control windows are under the test's control.
"""

import time

import pytest

from sgtest import SLOW, HttpConn, free_port, http_conf
from test_h2_server import RawH2, Stream, h2_conf, pattern_bytes


@pytest.fixture
def h2proxy(backend, start_proxy):
    def make(server_extra="", http_extra=""):
        port, conf = h2_conf(backend.port, free_port(), server_extra, http_extra)
        start_proxy(conf)
        return port
    return make


HOST_ECHO = 'location = /host { return 200 "host=$host\\n"; }'


def _request_without_authority(c, path, host):
    sid = c.next_id
    c.next_id += 2
    c.streams[sid] = Stream()
    c.windows[sid] = c.initial_window
    c.send(c.headers_frame(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                 ("host", host)]))
    return sid


# ---------------------------------------------------------------- host validation

@pytest.mark.parametrize("authority", ["..", "a..b", "www..example.com:8080"])
def test_invalid_authority_is_400_like_http1(h2proxy, authority):
    """nginx (ngx_http_validate_host) and our HTTP/1.1 parser answer 400 to a
    host with "..": $host must never carry it (root /srv/$host, map on $host,
    proxy_pass http://$host...). HTTP/2 let it through as $host."""
    port = h2proxy(server_extra=HOST_ECHO)
    with HttpConn(port) as h1:
        r = h1.request("GET", "/host", headers={"Host": authority})
        assert r.status == 400
    c = RawH2(port)
    st = c.response(c.request("/host", authority=authority))
    assert st.status == 400, (st.status, st.body)
    # the same through a Host header when :authority is absent
    st = c.response(_request_without_authority(c, "/host", authority))
    assert st.status == 400, (st.status, st.body)
    # a stream error only: the connection keeps serving
    st = c.response(c.request("/host", authority="Example.COM.:8443"))
    assert st.status == 200 and st.body == b"host=example.com\n"
    c.close()


# ---------------------------------------------------------------- request body windows

@pytest.mark.parametrize("preread", ["0", "16"])
def test_small_body_preread_size_still_reads_bodies(h2proxy, preread):
    """http2_body_preread_size only bounds what is buffered before the body
    is read (nginx: 0 is valid, the window opens when reading starts). With
    0 the client never got any window and the upload hung; with a tiny
    value every few bytes cost a round trip."""
    port = h2proxy(server_extra="http2_body_preread_size %s;" % preread)
    c = RawH2(port)
    c.wait(lambda: 4 in c.settings, what="SETTINGS")      # the client honours them
    assert c.settings[4] == int(preread)
    body = pattern_bytes(300000)
    sid = c.request("/echo", method="POST", end_stream=False,
                    headers=[("content-length", str(len(body)))])
    t0 = time.monotonic()
    c.send_body(sid, body)
    st = c.response(sid, timeout=20)
    assert st.status == 200 and st.body == body
    assert time.monotonic() - t0 < 10 * SLOW
    c.close()


# ---------------------------------------------------------------- response queues

def test_starved_streams_do_not_stall_other_downloads(h2proxy):
    """Two downloads the client does not read (no WINDOW_UPDATE: a paused
    video, say) each fill their queue to the high-water mark. A third
    download that the client reads normally must still complete: its
    queue drains below the low-water mark, so it must be woken even though
    the starved streams keep the connection's total above QUEUE_CAP/2."""
    port = h2proxy()
    c = RawH2(port)
    starved = []
    for _ in range(2):
        sid = c.request("/bytes/50000000")
        c.starve.add(sid)
        starved.append(sid)
    c.wait(lambda: all(len(c.streams[s].body) >= 65535 for s in starved), what="first windows")
    time.sleep(0.5 * SLOW)       # the proxy fills both queues from the backend
    n = 8 * 1000 * 1000
    sid = c.request("/bytes/%d" % n)
    st = c.response(sid, timeout=30)
    assert st.status == 200 and len(st.body) == n and st.body == pattern_bytes(n)
    for s in starved:
        assert not c.streams[s].ended and c.streams[s].reset is None
    c.close()
