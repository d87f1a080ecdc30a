"""An HTTP/1.1 backend's chunked trailer section, relayed by streamgate:
as a trailing HEADERS frame to an HTTP/2 client (python3-h2), as the
trailer section of a chunked body to an HTTP/1.1 client that sent
`TE: trailers` (a raw socket reads the exact lines), and not at all to a
client that did not. Fields that frame, route or belong to one connection
(Content-Length, Host, Transfer-Encoding, Content-Type...) never pass.

The backend is a plain Python socket server that writes its answers byte
for byte and counts its connections, so the checks do not rely on the
proxy's own HTTP/1.1 code."""

import socket
import threading
import time

import h2.config
import h2.connection
import h2.events

from sgtest import SLOW, HttpConn, build_request, free_port, http_conf, recv_head

BODY = b"hello trailers"

# What the backend sends after the last chunk (the names in mixed case,
# a value with spaces around it, fields that must not pass mixed in).
TRAILER_SECTION = (b"X-Checksum: abc123\r\n"
                   b"Content-Length: 99\r\n"
                   b"X-Multi:   two words  \r\n"
                   b"Host: elsewhere.example\r\n"
                   b"Transfer-Encoding: chunked\r\n"
                   b"Content-Type: text/evil\r\n"
                   b"Grpc-Status: 0\r\n")

# What passes, in order, with names as HTTP/2 carries them.
RELAYED = [("x-checksum", "abc123"), ("x-multi", "two words"), ("grpc-status", "0")]


def chunked_answer():
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\nhello \r\n8\r\ntrailers\r\n0\r\n" + TRAILER_SECTION + b"\r\n")


class TrailerBackend(threading.Thread):
    """Keep-alive HTTP/1.1 backend. /split sends its answer in pieces (the
    trailer section cut mid-line) so the proxy parses it incrementally;
    /length answers with Content-Length (no trailers possible); anything
    else sends the chunked answer with TRAILER_SECTION in one write."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rest = b""
        with c:
            while True:
                got = recv_head(c, rest)
                if got is None:
                    return
                head, rest = got
                with self.lock:
                    self.requests += 1
                path = head.split(b" ")[1]
                if path == b"/length":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
                elif path == b"/split":
                    a = chunked_answer()
                    cut = a.index(b"Host:") + 2
                    for piece in (a[:40], a[40:cut], a[cut:-3], a[-3:]):
                        c.sendall(piece)
                        time.sleep(0.02)   # separate segments (either way must work)
                else:
                    c.sendall(chunked_answer())

    def close(self):
        self.sock.close()


def proxy_ports(start_proxy, backend_port):
    """An HTTP/1.1 listener and an h2c (prior knowledge) listener."""
    p1, p2 = free_port(), free_port()
    while p2 == p1:
        p2 = free_port()
    start_proxy(http_conf("""
  upstream b { server 127.0.0.1:%d; keepalive 4; }
  server {
    listen 127.0.0.1:%d;
    location / { proxy_pass http://b; }
  }
  server {
    listen 127.0.0.1:%d http2;
    location / { proxy_pass http://b; }
  }
""" % (backend_port, p1, p2)))
    return p1, p2


def read_chunked_raw(c):
    """Reads a chunked body from HttpConn c: (body, trailer section bytes
    exactly as sent, without the final CRLF)."""
    body = b""
    while True:
        line = c._read_until(b"\r\n")
        size = int(line[:-2].split(b";")[0], 16)
        if size == 0:
            break
        body += c._read_exact(size)
        assert c._read_exact(2) == b"\r\n"
    section = b""
    while True:
        line = c._read_until(b"\r\n")
        if line == b"\r\n":
            return body, section
        section += line


def h2_get(port, paths):
    """python3-h2 over h2c prior knowledge: GET each path on one
    connection, one after the other. Returns, per path, a dict with the
    response headers, body, trailers (None if no trailing HEADERS came),
    and whether the stream ended cleanly or was reset."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    out = []
    try:
        for path in paths:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":path", path),
                                    (":authority", "127.0.0.1:%d" % port)], end_stream=True)
            s.sendall(conn.data_to_send())
            st = {"headers": None, "body": b"", "trailers": None, "ended": False, "reset": None}
            while not st["ended"] and st["reset"] is None:
                data = s.recv(65536)
                assert data, "the proxy closed the HTTP/2 connection"
                for e in conn.receive_data(data):
                    if getattr(e, "stream_id", None) != sid:
                        continue
                    if isinstance(e, h2.events.ResponseReceived):
                        st["headers"] = dict(e.headers)
                    elif isinstance(e, h2.events.DataReceived):
                        st["body"] += e.data
                        conn.acknowledge_received_data(e.flow_controlled_length, sid)
                    elif isinstance(e, h2.events.TrailersReceived):
                        st["trailers"] = list(e.headers)
                    elif isinstance(e, h2.events.StreamEnded):
                        st["ended"] = True
                    elif isinstance(e, h2.events.StreamReset):
                        st["reset"] = e.error_code
                s.sendall(conn.data_to_send())
            out.append(st)
    finally:
        s.close()
    return out


def test_h1_backend_trailers_reach_an_h2_client(start_proxy):
    """The trailer section arrives as a trailing HEADERS frame (END_STREAM
    on it), lowercase, forbidden fields dropped; a split section too; the
    pooled backend connection stays in step (one connection for all)."""
    b = TrailerBackend()
    try:
        _, h2port = proxy_ports(start_proxy, b.port)
        whole, split, length = h2_get(h2port, ["/", "/split", "/length"])
        for st in (whole, split):
            assert st["headers"][":status"] == "200", st
            assert st["reset"] is None and st["ended"], st
            assert st["body"] == BODY
            assert st["trailers"] == RELAYED, st["trailers"]
        assert length["body"] == BODY and length["trailers"] is None and length["ended"]
        assert (b.requests, b.connections) == (3, 1)
    finally:
        b.close()


def test_h1_backend_trailers_reach_a_te_trailers_client(start_proxy):
    """An HTTP/1.1 client that sent TE: trailers reads the backend's
    trailer section (allowed fields, lowercase names) as its own; the
    connection and the backend's stay usable."""
    b = TrailerBackend()
    try:
        h1port, _ = proxy_ports(start_proxy, b.port)
        with HttpConn(h1port) as c:
            for path in ("/", "/split"):
                c.send(build_request("GET", path, headers={"TE": "trailers", "Connection": "TE"}))
                head = c.read_head()
                assert head.status == 200
                assert (head.header("Transfer-Encoding") or "").lower() == "chunked"
                body, section = read_chunked_raw(c)
                assert body == BODY
                assert section == b"x-checksum: abc123\r\nx-multi: two words\r\ngrpc-status: 0\r\n"
            # a known length needs no chunked framing: nothing can follow it
            r = c.request("GET", "/length", headers={"TE": "trailers"})
            assert (r.status, r.body, r.chunked) == (200, BODY, False)
        assert (b.requests, b.connections) == (3, 1)
    finally:
        b.close()


def test_trailers_dropped_for_a_client_without_te(start_proxy):
    """Without TE: trailers the chunked body ends with an empty trailer
    section (as nginx); HTTP/1.0 gets the body until close."""
    b = TrailerBackend()
    try:
        h1port, _ = proxy_ports(start_proxy, b.port)
        with HttpConn(h1port) as c:
            c.send(build_request("GET", "/"))
            head = c.read_head()
            assert head.status == 200
            body, section = read_chunked_raw(c)
            assert (body, section) == (BODY, b"")
            r = c.request("GET", "/split")      # still in step
            assert (r.status, r.body, r.trailers) == (200, BODY, [])
        with HttpConn(h1port) as c:
            r = c.request("GET", "/", version="HTTP/1.0", headers={"TE": "trailers"})
            assert (r.status, r.body, r.chunked) == (200, BODY, False)
    finally:
        b.close()
