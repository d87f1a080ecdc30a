"""The request body and the request controls of the proxy, as nginx:
client_body_in_single_buffer, client_body_in_file_only, client_body_buffer_size,
client_body_temp_path, proxy_request_buffering, $request_body,
$request_body_file, $request_length, proxy_set_body, proxy_pass_request_body,
proxy_pass_request_headers and proxy_method.

The EchoServer backend answers with the request head it received followed by
the (de-chunked) body, so each test sees what went upstream.
"""

import os
import subprocess

import sgtest
from sgtest import HttpConn, free_port, get, head_of, http_conf, wait_for


def serve(start_proxy, server_body, http_extra=""):
    port = free_port()
    p = start_proxy(http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
%s
  }
""" % (http_extra, port, server_body)))
    return p, port


def upstream_head(r):
    """(request line, {lower name: value}, body) the EchoServer saw."""
    line, hdrs, body = head_of(r)
    return line, {k.lower(): v for k, v in hdrs}, body


def test_single_buffer_reads_the_body_whole_and_sends_its_length(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location / {
        client_body_in_single_buffer on;
        add_header X-Body "$request_body";
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    # a chunked client body goes upstream with a Content-Length once read whole
    with HttpConn(port) as c:
        r = c.request("POST", "/", body=[b"01234", b"56789"], chunked=True)
    assert r.status == 200
    assert r.header("X-Body") == "0123456789"
    line, h, body = upstream_head(r)
    assert h.get("content-length") == "10"
    assert "transfer-encoding" not in h
    assert body == b"0123456789"


def test_request_body_is_empty_without_a_body(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location / {
        add_header X-Body "[$request_body]";
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    r = get(port, "/")
    assert r.status == 200
    assert r.header("X-Body") == "[]"


def test_body_over_the_buffer_goes_to_a_temp_file_then_is_removed(start_proxy, start_echo, tmp_path):
    e = start_echo()
    temp = tmp_path / "bodies"
    _, port = serve(start_proxy, """
    client_body_temp_path %s 1 2;
    location / {
        client_body_buffer_size 1k;
        add_header X-Body "[$request_body]";
        add_header X-Body-File "$request_body_file";
        proxy_pass http://127.0.0.1:%d;
    }""" % (temp, e.port))
    payload = bytes(range(256)) * 40            # 10 KB, over 1k
    r = get(port, "/", method="POST", body=payload)
    assert r.status == 200
    assert r.header("X-Body") == "[]"           # in a file, not in memory (as nginx)
    name = r.header("X-Body-File")
    assert name and name.startswith(str(temp) + "/")
    _, h, body = upstream_head(r)
    assert body == payload and h["content-length"] == str(len(payload))
    # a temporary file: gone once the request ended
    wait_for(lambda: not os.path.exists(name), what="temp body file removed")


def test_file_only_on_keeps_the_file_and_clean_removes_it(start_proxy, start_echo, tmp_path):
    e = start_echo()
    p, port = serve(start_proxy, """
    location /keep {
        client_body_in_file_only on;
        add_header X-Body-File "$request_body_file";
        proxy_pass http://127.0.0.1:%d;
    }
    location /clean {
        client_body_in_file_only clean;
        add_header X-Body-File "$request_body_file";
        proxy_pass http://127.0.0.1:%d;
    }""" % (e.port, e.port))
    r = get(port, "/keep", method="POST", body=b"small body")
    assert r.status == 200
    name = r.header("X-Body-File")
    # default folder: PREFIX/client_body_temp
    assert os.path.dirname(name) == str(p.prefix / "client_body_temp")
    assert open(name, "rb").read() == b"small body"
    assert upstream_head(r)[2] == b"small body"
    r = get(port, "/clean", method="POST", body=b"cleaned")
    assert r.status == 200
    name = r.header("X-Body-File")
    assert name and upstream_head(r)[2] == b"cleaned"
    wait_for(lambda: not os.path.exists(name), what="clean body file removed")


def test_buffered_body_is_sent_again_to_the_next_upstream(start_proxy, start_echo, start_stub):
    e = start_echo()
    dead = start_stub(mode="close")             # reads the request, closes without answer
    _, port = serve(start_proxy, """
    location / {
        proxy_request_buffering on;
        proxy_pass http://u;
    }""", http_extra="""
  upstream u {
    server 127.0.0.1:%d;
    server 127.0.0.1:%d backup;
  }""" % (dead.port, e.port))
    payload = b"x" * 50000
    r = get(port, "/", method="PUT", body=payload)
    assert r.status == 200
    assert dead.accepted == 1
    assert upstream_head(r)[2] == payload


def test_buffered_body_too_large_is_413(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location / {
        client_body_in_single_buffer on;
        client_max_body_size 10;
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    with HttpConn(port) as c:
        r = c.request("POST", "/", body=[b"0123456789", b"x"], chunked=True)
    assert r.status == 413
    assert e.heads == []                        # nothing reached the backend


def test_unbuffered_body_streams_and_still_sets_request_body(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    proxy_request_buffering off;
    location / {
        add_header X-Body "$request_body";
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    with HttpConn(port) as c:
        r = c.request("POST", "/", body=[b"ab", b"cd"], chunked=True)
    assert r.status == 200
    assert r.header("X-Body") == "abcd"
    _, h, body = upstream_head(r)
    assert h.get("transfer-encoding") == "chunked"   # streamed as it came
    assert body == b"abcd"


def test_proxy_set_body_replaces_the_client_body(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location / {
        proxy_set_body "uri=$uri";
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    with HttpConn(port) as c:
        r = c.request("POST", "/x", body=b"client body dropped")
        assert r.status == 200
        _, h, body = upstream_head(r)
        assert body == b"uri=/x" and h["content-length"] == "6"
        # the client's body was read and dropped: the connection stays in step
        r = c.request("GET", "/y")
        assert r.status == 200 and upstream_head(r)[2] == b"uri=/y"


def test_pass_request_body_and_headers_off(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location /nobody {
        proxy_pass_request_body off;
        proxy_pass http://127.0.0.1:%d;
    }
    location /noheaders {
        proxy_pass_request_headers off;
        proxy_set_header X-Set yes;
        proxy_pass http://127.0.0.1:%d;
    }""" % (e.port, e.port))
    with HttpConn(port) as c:
        r = c.request("POST", "/nobody", headers={"X-Client": "1"}, body=b"0123456789")
        assert r.status == 200
        _, h, body = upstream_head(r)
        assert body == b"" and h.get("x-client") == "1"
        r = c.request("GET", "/noheaders", headers={"X-Client": "1"})
        assert r.status == 200
        _, h, _ = upstream_head(r)
        assert "x-client" not in h and h.get("x-set") == "yes"


def test_proxy_method_constant_variable_and_inherited(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location /const { proxy_method POST; proxy_pass http://127.0.0.1:%d; }
    location /var { proxy_method $arg_m; proxy_pass http://127.0.0.1:%d; }
    location /parent {
        proxy_method PATCH;
        location /parent/child { proxy_pass http://127.0.0.1:%d; }
    }""" % (e.port, e.port, e.port))
    assert upstream_head(get(port, "/const"))[0].startswith("POST ")
    assert upstream_head(get(port, "/var?m=PUT"))[0].startswith("PUT ")
    assert upstream_head(get(port, "/var"))[0].startswith("GET ")   # empty: the client's
    assert upstream_head(get(port, "/parent/child"))[0].startswith("PATCH ")


def test_request_length_counts_head_and_body(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location / {
        proxy_request_buffering on;
        add_header X-Len $request_length;
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    req = sgtest.build_request("POST", "/len", body=b"x" * 100)
    with HttpConn(port) as c:
        c.send(req)
        r = c.read_response()
    assert r.status == 200
    assert int(r.header("X-Len")) == len(req)


def test_http2_body_is_read_whole_and_proxied(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    http2 on;
    location / {
        client_body_in_single_buffer on;
        add_header X-Body "$request_body";
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    out = subprocess.run(
        ["curl", "-s", "-i", "--http2-prior-knowledge", "-H", "Transfer-Encoding:",
         "--data-binary", "h2 body", "http://127.0.0.1:%d/" % port],
        capture_output=True, timeout=20)
    text = out.stdout.decode("latin-1")
    assert out.returncode == 0, out.stderr
    assert text.startswith("HTTP/2 200")
    assert "x-body: h2 body" in text
    assert "Content-Length: 7" in text and text.endswith("h2 body")


def test_bad_directive_values_are_refused(tmp_path):
    for line, what in (("client_body_in_file_only maybe;", "maybe"),
                       ("proxy_request_buffering sometimes;", "sometimes"),
                       ("client_body_buffer_size 0;", "0")):
        conf = tmp_path / "bad.conf"
        conf.write_text(http_conf("server { listen 127.0.0.1:%d; %s }" % (free_port(), line)))
        r = sgtest.run_streamgate(["-t", "-c", str(conf), "-p", str(tmp_path)])
        assert r.returncode != 0
        assert what in r.stderr


class RawBackend(sgtest._ThreadedListener):
    """Keeps the raw bytes of each request (head and chunked framing as they
    came) and answers 200 once the chunked body's last chunk arrived."""

    def __init__(self):
        self.raw = []
        super().__init__(None)

    def serve(self, c):
        buf = b""
        while not buf.endswith(b"0\r\n\r\n"):
            more = c.recv(65536)
            if not more:
                break
            buf += more
        with self._lock:
            self.raw.append(buf)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        c.close()


def test_chunks_sent_at_once_go_upstream_as_one_chunk(start_proxy):
    b = RawBackend()
    try:
        _, port = serve(start_proxy, """
    location / {
        proxy_request_buffering off;
        proxy_pass http://127.0.0.1:%d;
    }""" % b.port)
        with HttpConn(port) as c:
            r = c.request("POST", "/", body=[b"01234", b"many", b"x"], chunked=True)
        assert r.status == 200
        raw = b.raw[0]
        body = raw[raw.index(b"\r\n\r\n") + 4:]
        assert body == b"a\r\n01234manyx\r\n0\r\n\r\n"
    finally:
        b.stop()


def test_empty_chunked_body_read_whole_goes_with_content_length_0(start_proxy, start_echo):
    e = start_echo()
    _, port = serve(start_proxy, """
    location / {
        client_body_in_file_only clean;
        add_header X-Body-File "$request_body_file";
        proxy_pass http://127.0.0.1:%d;
    }""" % e.port)
    with HttpConn(port) as c:
        r = c.request("POST", "/", body=[], chunked=True)
    assert r.status == 200
    assert r.header("X-Body-File")              # an empty file, as nginx
    _, h, body = upstream_head(r)
    assert h.get("content-length") == "0" and body == b""
    r = get(port, "/")                          # no body at all: no file, no length
    assert r.status == 200 and r.header("X-Body-File") is None
    assert "content-length" not in upstream_head(r)[1]


def test_large_buffered_body_is_sent_from_its_file_with_backpressure(start_proxy, start_echo, start_backend):
    e = start_echo()
    h2port = free_port()
    sgtest.start_h2c_backend(start_backend, h2port)
    _, port = serve(start_proxy, """
    client_max_body_size 20m;
    location /h1/ {
        client_body_in_single_buffer on;
        proxy_pass http://127.0.0.1:%d/;
    }
    location /h2/ {
        client_body_in_single_buffer on;
        proxy_http_version 2;
        proxy_pass http://127.0.0.1:%d/;
    }""" % (e.port, h2port))
    payload = sgtest.pattern_bytes(5 * 1024 * 1024 + 123)
    r = get(port, "/h1/", method="POST", body=payload, timeout=60)
    assert r.status == 200
    _, h, body = upstream_head(r)
    assert h["content-length"] == str(len(payload)) and body == payload
    r = get(port, "/h2/echo", method="POST", body=payload, timeout=60)
    assert r.status == 200 and r.body == payload


def test_body_read_whole_follows_an_error_page_to_another_backend(start_proxy, start_echo, backend):
    e = start_echo()
    _, port = serve(start_proxy, """
    location /a {
        client_body_in_file_only clean;
        proxy_intercept_errors on;
        error_page 404 = /b;
        add_header X-Body-File "$request_body_file";
        proxy_pass http://127.0.0.1:%d/status/404;
    }
    location /b {
        proxy_pass http://127.0.0.1:%d;
    }""" % (backend.port, e.port))
    with HttpConn(port) as c:
        r = c.request("POST", "/a", body=b"kept for the error page")
        assert r.status == 200
        line, h, body = upstream_head(r)
        assert line.startswith("GET /b ")
        assert body == b"kept for the error page"
        assert c.request("GET", "/b").status == 200   # the connection stays in step
