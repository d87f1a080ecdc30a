"""Client HTTP/1.1 connections kept in step: a client that half-closes
after its request, Expect: 100-continue answered locally, a pipelined
request behind a static file. Each test is the user-visible symptom a bug
had, so it fails if the bug comes back."""

import socket

from sgtest import HttpConn, free_port, http_conf, SLOW


def test_response_delivered_to_a_client_that_half_closed(start_proxy, backend):
    """`printf 'GET ...' | nc -N`: the client shuts its write side right
    after the request; the response must still arrive."""
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; location / { proxy_pass http://127.0.0.1:%d; } }
""" % (port, backend.port)))
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
        s.sendall(b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        assert data.startswith(b"HTTP/1.1 200 "), data[:80]
        assert data.endswith(b"0123456789abcdef" * 6 + b"0123"), data[-40:]


def test_expect_100_answered_locally_closes_the_connection(start_proxy):
    """The client waits for 100 Continue; we answer at once instead, so it
    may or may not send the body: the connection cannot stay in step."""
    port = free_port()
    start_proxy(http_conf("""
  server { listen 127.0.0.1:%d; location / { return 200 "local"; } }
""" % port))
    with HttpConn(port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.text == "local"
        assert r.header("Connection") == "close"


def test_pipelined_request_after_a_static_file_is_answered(start_proxy, tmp_path):
    """A static file is read while the codec still parses pipelined requests
    from the same read: the next request must survive it (found by the
    HTTP/2 work, which hit the same shared-buffer clash)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(b"x" * 100000)
    port = free_port()
    start_proxy(http_conf("server { listen 127.0.0.1:%d; location / { root %s; } }" % (port, root)))
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET /missing HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while b"404 Not Found" not in data:
            chunk = s.recv(65536)
            assert chunk, data[-200:]
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK")
