"""The variables nginx's index lists and proxies use (issue 9), read the
way users do: in add_header, return and access_log lines.

$connection / $connection_requests / $connection_time over a kept-alive
connection, $sent_http_ (fields added so far, several joined), the
upstream's fields, cookies, sizes and timings, $request_port,
$request_id, $pid, $hostname, $nginx_version, $document_root,
$realpath_root, $content_length / $content_type, $remote_user, a named
capture of a server_name regex, and $http_ of repeated fields."""

import os
import re
import socket

from sgtest import HttpConn, free_ports, get, http_conf


def serve(start_proxy, body, backend="", http_extra=""):
    ports = free_ports(2)
    proxy = start_proxy(http_conf("""
  %s
  server {
    listen 127.0.0.1:%d;
    server_name localhost ~^(?<sub>[a-z]+)\\.named\\.example$;
%s
  }
  server {
    listen 127.0.0.1:%d;
%s
  }
""" % (http_extra, ports[0], body % {"back": ports[1]}, ports[1], backend)))
    return ports[0], proxy


def test_connection_counters(start_proxy):
    port, _ = serve(start_proxy, """
    location / { return 200 "$connection $connection_requests $connection_time"; }
""")
    with HttpConn(port) as c:
        a = c.request("GET", "/").text.split()
        b = c.request("GET", "/").text.split()
    with HttpConn(port) as c:
        other = c.request("GET", "/").text.split()
    assert a[0] == b[0] != other[0]
    assert (a[1], b[1], other[1]) == ("1", "2", "1")
    assert re.fullmatch(r"\d+\.\d{3}", a[2])


def test_sent_http_sees_fields_added_before(start_proxy):
    port, _ = serve(start_proxy, """
    location / {
      add_header Link one;
      add_header Link two;
      add_header X-Links $sent_http_link;
      add_header X-Type $sent_http_content_type;
      add_header X-Length $sent_http_content_length;
      return 200 "hello";
    }
""")
    r = get(port, "/")
    assert r.header("X-Links") == "one, two"
    assert r.header("X-Type") == "text/plain"
    assert r.header("X-Length") == "5"


def test_upstream_fields_cookies_and_sizes(start_proxy, tmp_path):
    log = tmp_path / "up.log"
    port, proxy = serve(start_proxy, """
    location / {
      proxy_pass http://127.0.0.1:%(back)d;
      add_header X-Up-Foo $upstream_http_x_foo;
      add_header X-Up-Cookie $upstream_cookie_session;
      add_header X-Proxy-Port $proxy_port;
      access_log """ + str(log) + """ sizes;
    }
""", backend="""
    location / {
      add_header X-Foo a;
      add_header X-Foo b;
      add_header Set-Cookie "other=1; Path=/";
      add_header Set-Cookie "session=abc; HttpOnly";
      return 200 "0123456789";
    }
""", http_extra='log_format sizes "$upstream_response_length $upstream_bytes_received $upstream_bytes_sent '
                '$upstream_connect_time $upstream_header_time $upstream_status";')
    r = get(port, "/")
    assert r.body == b"0123456789"
    assert r.header("X-Up-Foo") == "a, b"
    assert r.header("X-Up-Cookie") == "abc"
    assert r.header("X-Proxy-Port") == str(free_port_of(proxy, 1))
    proxy.stop()
    fields = log.read_text().split()
    assert fields[0] == "10"
    assert int(fields[1]) > 10          # head and body as read
    assert int(fields[2]) > 20          # the request head we sent
    assert re.fullmatch(r"\d+\.\d{3}", fields[3]) and re.fullmatch(r"\d+\.\d{3}", fields[4])
    assert fields[5] == "200"


def free_port_of(proxy, i):
    return proxy.ports[i]


def test_request_port(start_proxy):
    port, _ = serve(start_proxy, """
    location / { return 200 "[$is_request_port$request_port]"; }
""")
    assert get(port, "/", headers={"Host": "localhost"}).body == b"[]"
    assert get(port, "/", headers={"Host": "localhost:8080"}).body == b"[:8080]"
    assert get(port, "http://localhost:9090/", headers={"Host": "localhost:8080"}).body == b"[:9090]"


def test_process_and_request_identity(start_proxy):
    port, proxy = serve(start_proxy, """
    location / { return 200 "$request_id|$pid|$hostname|$nginx_version|$limit_rate|$arg_"; }
""")
    a = get(port, "/").text.split("|")
    b = get(port, "/").text.split("|")
    assert re.fullmatch(r"[0-9a-f]{32}", a[0]) and a[0] != b[0]
    assert a[1] == str(proxy.pid)
    assert a[2] == socket.gethostname()
    assert re.fullmatch(r"\d+\.\d+\.\d+", a[3])
    assert a[4] == "0" and a[5] == ""


def test_roots_and_request_fields(start_proxy, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    link = tmp_path / "link"
    os.symlink(root, link)
    port, _ = serve(start_proxy, """
    location / {
      root %s;
      add_header X-Doc $document_root;
      add_header X-Real $realpath_root;
      add_header X-Len $content_length;
      add_header X-Type $content_type;
      add_header X-User $remote_user;
      return 204;
    }
""" % link)
    r = get(port, "/", method="POST", body=b"abc",
            headers={"Content-Type": "text/x", "Authorization": "Basic dXNlcjpzZWNyZXQ="})
    assert r.header("X-Doc") == str(link)
    assert r.header("X-Real") == str(root)
    assert r.header("X-Len") == "3"
    assert r.header("X-Type") == "text/x"
    assert r.header("X-User") == "user"


def test_named_capture_of_server_name(start_proxy):
    port, _ = serve(start_proxy, """
    location / { return 200 "[$sub]"; }
""")
    assert get(port, "/", headers={"Host": "shop.named.example"}).body == b"[shop]"


def test_repeated_request_fields_joined(start_proxy):
    port, _ = serve(start_proxy, """
    location / { return 200 "[$http_x_multi][$http_cookie]"; }
""")
    r = get(port, "/", headers=[("X-Multi", "a"), ("X-Multi", "b"), ("Cookie", "c=1"), ("Cookie", "d=2")])
    assert r.body == b"[a, b][c=1; d=2]"
