"""Strict HTTP/1.1 request parsing through the proxy (RFC 9112, nginx statuses).

Every bad request is sent as exact bytes on a raw socket to streamgate, which
proxies to a Python backend (sgtest.EchoServer: it answers with the request
it got, and counts connections and bytes as read from its sockets, with no
code of the proxy's).  For each case we check what a user (or an attacker)
would see: the exact status, that the proxy closed the connection
afterwards, that the backend received nothing (not a connection, not a
byte: nothing was forwarded, so nothing could be smuggled), and that the
process still serves a normal request on a new connection.
"""

import time

import pytest

import sgtest
from sgtest import HttpConn, get, wait_for, SLOW

MAIN = "worker_processes 1;"
# client_max_body_size is small so that the 413 cases are cheap to trigger.
SERVER_EXTRA = "client_max_body_size 1k;"

H = b"Host: example.com\r\n"


def req(line, *headers, body=b"", host=True):
    """Raw request bytes: request line, Host (unless host=False), headers, body."""
    head = line + b"\r\n" + (H if host else b"") + b"".join(h + b"\r\n" for h in headers)
    return head + b"\r\n" + body


POST_CHUNKED = b"POST /sink HTTP/1.1"
TE_CHUNKED = b"Transfer-Encoding: chunked"

# (id, raw request, expected status)
BAD_REQUESTS = [
    # ---- message framing (request smuggling) ----
    ("cl-and-te", req(POST_CHUNKED, b"Content-Length: 5", TE_CHUNKED,
                      body=b"0\r\n\r\n"), 400),
    ("te-and-cl", req(POST_CHUNKED, TE_CHUNKED, b"Content-Length: 3",
                      body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), 400),
    ("two-different-cl", req(b"POST /sink HTTP/1.1", b"Content-Length: 5",
                             b"Content-Length: 6", body=b"hello!"), 400),
    ("duplicate-identical-cl", req(b"POST /sink HTTP/1.1", b"Content-Length: 5",
                                   b"Content-Length: 5", body=b"hello"), 400),
    ("cl-plus-sign", req(b"POST /sink HTTP/1.1", b"Content-Length: +5", body=b"hello"), 400),
    ("cl-minus", req(b"POST /sink HTTP/1.1", b"Content-Length: -1", body=b"hello"), 400),
    ("cl-hex", req(b"POST /sink HTTP/1.1", b"Content-Length: 0x5", body=b"hello"), 400),
    ("cl-inner-space", req(b"POST /sink HTTP/1.1", b"Content-Length: 1 0",
                           body=b"helloworld"), 400),
    ("cl-comma-list", req(b"POST /sink HTTP/1.1", b"Content-Length: 5, 5",
                          body=b"hello"), 400),
    ("cl-empty", req(b"POST /sink HTTP/1.1", b"Content-Length: ", body=b"hello"), 400),
    ("cl-overflow", req(b"POST /sink HTTP/1.1",
                        b"Content-Length: 99999999999999999999999", body=b"hello"), 400),
    ("te-in-http10", req(b"POST /sink HTTP/1.0", TE_CHUNKED,
                         body=b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("te-chunked-then-gzip", req(POST_CHUNKED, b"Transfer-Encoding: chunked, gzip",
                                 body=b"0\r\n\r\n"), 400),
    ("te-gzip-then-chunked", req(POST_CHUNKED, b"Transfer-Encoding: gzip, chunked",
                                 body=b"0\r\n\r\n"), 501),
    # chunked is not the final coding: RFC 9112 6.3 says 400 (MUST), which
    # outranks 6.1's 501 for an unknown coding (SHOULD); nginx answers 501.
    ("te-unknown-coding", req(POST_CHUNKED, b"Transfer-Encoding: xchunked",
                              body=b"0\r\n\r\n"), 400),
    ("te-chunked-twice-list", req(POST_CHUNKED, b"Transfer-Encoding: chunked, chunked",
                                  body=b"0\r\n\r\n"), 400),
    ("te-chunked-twice-fields", req(POST_CHUNKED, TE_CHUNKED, TE_CHUNKED,
                                    body=b"0\r\n\r\n"), 400),
    ("te-space-before-colon", req(POST_CHUNKED, b"Transfer-Encoding : chunked",
                                  body=b"0\r\n\r\n"), 400),
    ("te-vertical-tab", req(POST_CHUNKED, b"Transfer-Encoding:\x0bchunked",
                            body=b"0\r\n\r\n"), 400),
    # ---- header syntax ----
    ("obs-fold", req(b"GET / HTTP/1.1", b"X-A: one", b" two"), 400),
    ("obs-fold-tab", req(b"GET / HTTP/1.1", b"X-A: one", b"\ttwo"), 400),
    ("nul-in-value", req(b"GET / HTTP/1.1", b"X-A: a\x00b"), 400),
    ("cr-in-value", req(b"GET / HTTP/1.1", b"X-A: a\rb"), 400),
    ("lf-in-value", req(b"GET / HTTP/1.1", b"X-A: a\nb"), 400),
    ("ctl-0x01-in-value", req(b"GET / HTTP/1.1", b"X-A: a\x01b"), 400),
    ("del-in-value", req(b"GET / HTTP/1.1", b"X-A: a\x7fb"), 400),
    ("space-in-name", req(b"GET / HTTP/1.1", b"X A: b"), 400),
    ("at-in-name", req(b"GET / HTTP/1.1", b"X@A: b"), 400),
    ("paren-in-name", req(b"GET / HTTP/1.1", b"X(A): b"), 400),
    ("empty-name", req(b"GET / HTTP/1.1", b": b"), 400),
    ("no-colon", req(b"GET / HTTP/1.1", b"X-A b"), 400),
    ("host-space-before-colon", req(b"GET / HTTP/1.1", b"Host : example.com",
                                    host=False), 400),
    ("missing-host-http11", req(b"GET / HTTP/1.1", host=False), 400),
    ("two-hosts", req(b"GET / HTTP/1.1", b"Host: other.example"), 400),
    ("host-slash", req(b"GET / HTTP/1.1", b"Host: exa/mple.com", host=False), 400),
    ("host-space", req(b"GET / HTTP/1.1", b"Host: exa mple.com", host=False), 400),
    ("host-backslash", req(b"GET / HTTP/1.1", b"Host: exa\\mple.com", host=False), 400),
    ("bare-cr-line-end", b"GET / HTTP/1.1\rHost: example.com\r\n\r\n", 400),
    ("bare-cr-in-head", b"GET / HTTP/1.1\r\nHost: example.com\r\nX-A: b\r\r\n\r\n", 400),
    # ---- chunked body syntax ----
    ("chunk-size-g", req(POST_CHUNKED, TE_CHUNKED, body=b"g\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-negative", req(POST_CHUNKED, TE_CHUNKED,
                                body=b"-1\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", req(POST_CHUNKED, TE_CHUNKED,
                                body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-junk", req(POST_CHUNKED, TE_CHUNKED, body=b"5 x\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-empty", req(POST_CHUNKED, TE_CHUNKED, body=b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-missing-crlf", req(POST_CHUNKED, TE_CHUNKED, body=b"5\r\nhelloXX0\r\n\r\n"), 400),
    ("chunk-lf-only-after-data", req(POST_CHUNKED, TE_CHUNKED,
                                     body=b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk-huge-extension", req(POST_CHUNKED, TE_CHUNKED,
                                 body=b"5;" + b"e" * 65536 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-bad-trailer", req(POST_CHUNKED, TE_CHUNKED,
                              body=b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n"), 400),
    # ---- limits (large_client_header_buffers 4 8k) ----
    ("request-line-too-long", req(b"GET /" + b"a" * 9000 + b" HTTP/1.1"), 414),
    ("header-too-long", req(b"GET / HTTP/1.1", b"X-Long: " + b"v" * 9000), 431),
    # more than max_headers (100): 400, nginx's answer
    ("too-many-headers", req(b"GET / HTTP/1.1",
                             *[b"X-H%d: v" % i for i in range(300)]), 400),
    ("head-too-large", req(b"GET / HTTP/1.1",
                           *[b"X-H%d: " % i + b"v" * 4000 for i in range(12)]), 431),
    # ---- request line ----
    ("version-http2", req(b"GET / HTTP/2.0"), 505),
    ("version-http3", req(b"GET / HTTP/3.0"), 505),
    ("version-garbage", req(b"GET / HTTP/1.x"), 400),
    ("version-lowercase", req(b"GET / http/1.1"), 400),
    ("version-https", req(b"GET / HTTPS/1.1"), 400),
    ("method-bad-char", req(b"GE@T / HTTP/1.1"), 400),
    ("method-ctl", req(b"GE\x01T / HTTP/1.1"), 400),
    ("target-space", req(b"GET /a b HTTP/1.1"), 400),
    ("target-ctl", req(b"GET /a\x01b HTTP/1.1"), 400),
    ("target-del", req(b"GET /a\x7fb HTTP/1.1"), 400),
    ("target-relative", req(b"GET a/b HTTP/1.1"), 400),
    ("target-dotdot-above-root", req(b"GET /../x HTTP/1.1"), 400),
    ("target-dotdot-deep", req(b"GET /a/../../x HTTP/1.1"), 400),
    ("target-encoded-dotdot", req(b"GET /%2e%2e/x HTTP/1.1"), 400),
    ("target-percent-00", req(b"GET /a%00b HTTP/1.1"), 400),
    ("target-bad-escape", req(b"GET /a%zzb HTTP/1.1"), 400),
    ("missing-version", b"GET /\r\n" + H + b"\r\n", 400),
    ("tab-separators", req(b"GET\t/\tHTTP/1.1"), 400),
    # ---- body size ----
    ("cl-over-client-max-body-size", req(b"POST /sink HTTP/1.1",
                                          b"Content-Length: 100000000"), 413),
    ("chunked-over-client-max-body-size",
     req(POST_CHUNKED, TE_CHUNKED, body=b"800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n"), 413),
]

@pytest.fixture
def backend(start_echo):
    """The proxy's backend here: Python, counting what reaches it."""
    return start_echo()


@pytest.fixture
def proxy(backend, simple_proxy):
    p, _ = simple_proxy([backend.port], server_extra=SERVER_EXTRA, main=MAIN)
    return p


@pytest.fixture
def proxy_port(proxy):
    return proxy.port


class Forwarded:
    """Requests that reached the backend since creation, as its own parser
    counted them."""

    def __init__(self, backend):
        self.backend = backend
        self.base = len(backend.heads)

    def __call__(self):
        return len(self.backend.heads) - self.base


def everything_received(proxy, backend):
    """Stops the proxy, waits until each of the backend's connections has
    ended, then returns (request heads, bytes received): all that ever
    reached the backend, counted as read from its sockets."""
    proxy.stop()
    wait_for(lambda: backend.finished == backend.accepted, 10,
             what="the backend's connections to end")
    return backend.heads, backend.received


def only_these_requests_arrived(proxy, backend, *lines):
    """Everything the backend read is the heads of requests without a body,
    with these request lines: not one byte of anything else."""
    heads, received = everything_received(proxy, backend)
    assert [h.split(b"\r\n")[0] for h in heads] == list(lines), heads
    assert received == sum(len(h) for h in heads), (received, heads)


def send_all(conn, data):
    """Send bytes; the proxy may answer and close early (big bad heads): ignore it."""
    try:
        conn.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def wait_closed(conn, timeout=6.0):
    """True if the peer closes the connection within timeout (any late bytes dropped).

    6 s: after an error with body bytes still announced, nginx keeps reading
    for lingering_timeout (5 s) before it closes."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if conn.is_closed(wait=0.2):
            return True
        conn.buf = b""
    return False


def check_still_serving(port):
    r = get(port, "/")
    assert r.status == 200, "a normal request after the bad one got %d" % r.status
    assert sgtest.head_of(r)[0] == "GET / HTTP/1.1", r.text


@pytest.mark.parametrize("raw,status", [pytest.param(r, s, id=i) for i, r, s in BAD_REQUESTS])
def test_bad_request_rejected(backend, proxy, proxy_port, raw, status):
    with HttpConn(proxy_port, timeout=5) as c:
        send_all(c, raw)
        r = c.read_response()
        assert r.status == status, "expected %d, got %d %r" % (status, r.status, r.body[:200])
        assert wait_closed(c), "the proxy kept the connection open after %d" % status
    check_still_serving(proxy_port)
    # Not one byte of the bad request reached the backend (for a bad body the
    # proxy may have opened a connection already: nothing was written on it).
    only_these_requests_arrived(proxy, backend, b"GET / HTTP/1.1")


def test_suite_is_large_enough():
    assert len(BAD_REQUESTS) >= 35
    assert len({i for i, _, _ in BAD_REQUESTS}) == len(BAD_REQUESTS)


# Requests that look odd but are valid: the strictness must not reject them.
GOOD_REQUESTS = [
    ("plain", req(b"GET / HTTP/1.1")),
    ("http10-without-host", req(b"GET / HTTP/1.0", host=False)),
    ("absolute-form", req(b"GET http://example.com/ HTTP/1.1")),
    ("leading-empty-line", b"\r\n" + req(b"GET / HTTP/1.1")),
    ("te-case-insensitive", req(POST_CHUNKED, b"Transfer-Encoding: Chunked",
                                body=b"5\r\nhello\r\n0\r\n\r\n")),
    ("chunk-extension", req(POST_CHUNKED, TE_CHUNKED,
                            body=b"5;name=value\r\nhello\r\n0\r\n\r\n")),
    ("chunk-trailer", req(POST_CHUNKED, TE_CHUNKED,
                          body=b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
    ("cl-zero", req(b"POST /sink HTTP/1.1", b"Content-Length: 0")),
    ("ows-around-value", req(b"GET / HTTP/1.1", b"X-A: \t value \t")),
    ("host-with-port", req(b"GET / HTTP/1.1", b"Host: example.com:8080", host=False)),
    ("dotdot-inside-root", req(b"GET /a/../b HTTP/1.1")),
    ("obs-text-in-value", req(b"GET / HTTP/1.1", b"X-A: caf\xe9")),
    # RFC 9110 2.5 (and nginx): a later HTTP/1.x is processed as HTTP/1.1
    ("version-http12", req(b"GET / HTTP/1.2")),
    ("body-at-limit", req(b"POST /sink HTTP/1.1", b"Content-Length: 1024", body=b"x" * 1024)),
]


@pytest.mark.parametrize("raw", [pytest.param(r, id=i) for i, r in GOOD_REQUESTS])
def test_valid_request_accepted(backend, proxy_port, raw):
    forwarded = Forwarded(backend)
    with HttpConn(proxy_port, timeout=5) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 200, (r.status, r.body[:200])
    assert forwarded() == 1


# ---------------------------------------------------------------- smuggling

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"


@pytest.mark.parametrize("framing", [
    pytest.param([b"Content-Length: %d" % len(b"0\r\n\r\n" + SMUGGLED), TE_CHUNKED], id="cl-te"),
    pytest.param([TE_CHUNKED, b"Content-Length: %d" % len(b"0\r\n\r\n" + SMUGGLED)], id="te-cl"),
    pytest.param([b"Content-Length: 5", b"Content-Length: %d" % len(b"0\r\n\r\n" + SMUGGLED)],
                 id="cl-cl"),
    pytest.param([TE_CHUNKED, b"Transfer-Encoding: identity"], id="te-te"),
])
def test_pipelined_smuggling_never_reaches_backend_twice(backend, proxy, proxy_port, framing):
    """A valid request, then one whose body hides a request behind conflicting framing."""
    first = req(b"GET /first HTTP/1.1")
    attack = req(b"POST /sink HTTP/1.1", *framing, body=b"0\r\n\r\n" + SMUGGLED)
    forwarded = Forwarded(backend)
    with HttpConn(proxy_port, timeout=5) as c:
        c.send(first + attack)
        r1 = c.read_response()
        assert r1.status == 200
        r2 = c.read_response()
        assert r2.status == 400
        assert wait_closed(c)
        assert b"smuggled" not in c.buf
    assert forwarded() == 1, "backend saw more than the first request"
    only_these_requests_arrived(proxy, backend, b"GET /first HTTP/1.1")


def test_request_inside_valid_body_is_just_body(backend, proxy_port):
    """A request hidden in a correctly framed body is body bytes: one backend request."""
    forwarded = Forwarded(backend)
    with HttpConn(proxy_port, timeout=5) as c:
        r = c.request("POST", "/sink", body=SMUGGLED)
        assert r.status == 200
        assert sgtest.head_of(r)[2] == SMUGGLED
        r = c.request("POST", "/sink", body=[SMUGGLED], chunked=True)
        assert r.status == 200
        assert sgtest.head_of(r)[2] == SMUGGLED
        r = c.request("GET", "/")
        assert r.status == 200
    assert forwarded() == 3
    assert [h.split(b"\r\n")[0] for h in backend.heads[-3:]] == [
        b"POST /sink HTTP/1.1", b"POST /sink HTTP/1.1", b"GET / HTTP/1.1"]


def test_smuggled_request_in_bad_chunk_not_forwarded(backend, proxy, proxy_port):
    """A chunk size that a lenient parser would read differently hides a request."""
    body = b"5;\nx\r\nhello\r\n0\r\n\r\n" + SMUGGLED
    with HttpConn(proxy_port, timeout=5) as c:
        send_all(c, req(POST_CHUNKED, TE_CHUNKED, body=body))
        r = c.read_response()
        assert r.status == 400
        assert wait_closed(c)
    only_these_requests_arrived(proxy, backend)


def test_413_is_answered_without_reading_the_body(backend, proxy_port):
    """nginx answers 413 from the head alone: the client need not send the body."""
    with HttpConn(proxy_port, timeout=5) as c:
        c.send(req(b"POST /sink HTTP/1.1", b"Content-Length: 1073741824"))
        t0 = time.monotonic()
        r = c.read_response()
        assert r.status == 413
        assert time.monotonic() - t0 < 2 * SLOW
        assert "413" in r.text
    check_still_serving(proxy_port)


def test_error_response_shape(proxy_port):
    """Error answers look like nginx's: HTML body, Content-Length, Connection: close."""
    with HttpConn(proxy_port, timeout=5) as c:
        c.send(req(b"GET / HTTP/1.1", b"X A: b"))
        r = c.read_response()
    assert r.status == 400
    assert r.reason == "Bad Request"
    assert (r.header("Connection") or "").lower() == "close"
    assert (r.header("Content-Type") or "").startswith("text/html")
    assert int(r.header("Content-Length")) == len(r.body)
    assert "<title>400 Bad Request</title>" in r.text
