"""charset (nginx's ngx_http_charset_module, without recoding) on the real
binary: proxied answers, `return`, static files, over HTTP/1.1 and HTTP/2.

`charset NAME` adds "; charset=NAME" to a Content-Type whose type is in
charset_types (text/html, text/xml, text/plain, text/vnd.wap.wml,
application/javascript, application/rss+xml by default, or `*`), never to
one that names a charset already unless override_charset is on, and then
(as with source_charset) only when no recoding is needed: recoding between
charsets (charset_map) is not supported, and nginx's "no charset_map"
error is logged. Redirects (301, 302) and responses with a Content-Encoding
get no charset, as in nginx.
"""

import subprocess

import pytest

import sgtest
from sgtest import free_port, get, http_conf, recv_head


class Backend(sgtest._ThreadedListener):
    """An HTTP/1.1 backend answering /TYPE paths with that Content-Type."""

    TYPES = {
        "/plain": "text/plain",
        "/html": "text/html",
        "/js": "application/javascript",
        "/bin": "application/octet-stream",
        "/foo": "text/foo",
        "/params": "text/html; q=1",
        "/koi": "text/html; charset=koi8-r",
        "/utf": 'text/html; charset="UTF-8"',
    }

    def serve(self, c):
        got = recv_head(c)
        if got is None:
            return
        head, _ = got
        path = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[1].split("?")[0]
        if path == "/gz":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
                      b"Content-Length: 4\r\nConnection: close\r\n\r\nbody")
        elif path == "/moved":
            c.sendall(b"HTTP/1.1 301 Moved Permanently\r\nLocation: /html\r\nContent-Type: text/html\r\n"
                      b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            ctype = self.TYPES.get(path, "text/plain")
            c.sendall(("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
                       % ctype).encode())
        c.close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.stop()


@pytest.fixture
def proxy(backend, start_proxy, tmp_path):
    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "page.html").write_text("<p>hi</p>")
    (tmp_path / "www" / "data.bin").write_bytes(b"\x00\x01")
    conf = http_conf("""
  server {
    listen 127.0.0.1:%(p)d http2;
    root %(www)s;
    types { text/html html; application/octet-stream bin; }
    charset utf-8;
    location /b/ { proxy_pass http://127.0.0.1:%(b)d/; }
    location /override/ { override_charset on; proxy_pass http://127.0.0.1:%(b)d/; }
    location /types/ { charset_types text/foo; proxy_pass http://127.0.0.1:%(b)d/; }
    location /any/ { charset_types *; proxy_pass http://127.0.0.1:%(b)d/; }
    location /var/ { charset $arg_c; proxy_pass http://127.0.0.1:%(b)d/; }
    location /same/ { source_charset UTF-8; proxy_pass http://127.0.0.1:%(b)d/; }
    location /recode/ { source_charset koi8-r; proxy_pass http://127.0.0.1:%(b)d/; }
    location /off/ { charset off; proxy_pass http://127.0.0.1:%(b)d/; }
    location /ret { return 200 "text"; }
    location /empty.html { return 200; }
  }
""" % {"p": port, "b": backend.port, "www": tmp_path / "www"})
    return start_proxy(conf)


def ctype(port, path):
    r = get(port, path)
    assert r.status in (200, 301), (r.status, r.body)
    return r.header("content-type")


@pytest.mark.parametrize("path, want", [
    ("/b/plain", "text/plain; charset=utf-8"),
    ("/b/html", "text/html; charset=utf-8"),
    ("/b/js", "application/javascript; charset=utf-8"),
    ("/b/bin", "application/octet-stream"),         # not in charset_types
    ("/b/foo", "text/foo"),
    ("/b/params", "text/html; q=1"),                # parameters: not the type text/html (nginx)
    ("/b/koi", "text/html; charset=koi8-r"),        # a charset already: kept
    ("/types/foo", "text/foo; charset=utf-8"),
    ("/types/html", "text/html"),                   # charset_types replaced the list
    ("/any/bin", "application/octet-stream; charset=utf-8"),
    ("/var/html?c=windows-1251", "text/html; charset=windows-1251"),
    ("/var/html", "text/html"),                     # empty name: nothing added
    ("/same/html", "text/html; charset=utf-8"),     # source and destination are the same charset
    ("/override/utf", "text/html; charset=utf-8"),  # the same charset, named the location's way
    ("/off/html", "text/html"),
    ("/b/gz", "text/html"),                         # Content-Encoding from the backend: left alone
    ("/ret", "text/plain; charset=utf-8"),          # default_type
    ("/empty.html", "text/html; charset=utf-8"),    # `return 200;` has the URI's type, as in nginx
    ("/page.html", "text/html; charset=utf-8"),     # static file
    ("/data.bin", "application/octet-stream"),
])
def test_content_type(proxy, path, want):
    assert ctype(proxy.port, path) == want


def test_redirect_gets_no_charset(proxy):
    r = get(proxy.port, "/b/moved")
    assert r.status == 301
    assert r.header("content-type") == "text/html"


def test_recoding_is_not_done_and_logged(proxy):
    """Different source and destination charsets need a charset_map: the
    head goes unchanged and nginx's error is logged."""
    assert ctype(proxy.port, "/override/koi") == "text/html; charset=koi8-r"
    assert ctype(proxy.port, "/recode/html") == "text/html"
    sgtest.wait_for(lambda: 'no "charset_map" between the charsets "koi8-r" and "utf-8"' in proxy.error_log,
                    what="the charset_map error")


def test_http2(proxy):
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-D", "-",
                          "http://127.0.0.1:%d/b/html" % proxy.port], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/2 200")
    assert "content-type: text/html; charset=utf-8" in out.stdout.lower()


def test_config(tmp_path):
    def check(body, http=""):
        f = tmp_path / "t.conf"
        f.write_text(http_conf(http + " server { listen 127.0.0.1:%d; %s }" % (free_port(), body)))
        return sgtest.run_streamgate(["-t", "-c", str(f), "-p", str(tmp_path)])

    out = check("", http="charset_map koi8-r utf-8 { C0 D18E; }")
    assert out.returncode != 0 and '"charset_map" directive is not supported yet' in out.stderr
    out = check("charset;")
    assert out.returncode != 0 and "invalid number of arguments" in out.stderr
    out = check("override_charset maybe;")
    assert out.returncode != 0 and 'it must be "on" or "off"' in out.stderr
    out = check("output_buffers 0 32k;")
    assert out.returncode != 0 and "invalid value" in out.stderr
    out = check('charset "${unclosed";')
    assert out.returncode != 0
    out = check("charset utf-8; source_charset koi8-r; override_charset on; charset_types text/css *; "
                "location / { charset off; output_buffers 2 1m; }")
    assert out.returncode == 0, out.stderr
    assert "[notice]" in out.stderr and "output_buffers" in out.stderr
