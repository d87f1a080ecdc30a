#!/usr/bin/python3
"""Writes the seed corpus of fuzz_h2_client (tests/fuzz/corpus/h2_client/):
valid backend byte streams made with python3-h2 (client_side=False),
each preceded by the target's two option bytes (see sg_h2_client_fuzz).
The reads are the size of the initial SETTINGS: a backend answers only
after the request, which goes out once its SETTINGS are in.
Run from the repository root."""
import os

import h2.config
import h2.connection
import h2.events
import h2.settings

OUT = "tests/fuzz/corpus/h2_client"
# option bits of sg_h2_client_fuzz (byte 0; byte 1 is the read size - 1)
BODY, CONNECT, PAUSE, DROP_DATA, DROP_5XX, EOF = 4, 8, 16, 32, 64, 128


def pair(settings=None):
    cfg = dict(validate_outbound_headers=False, validate_inbound_headers=False,
               normalize_outbound_headers=False)
    cli = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, **cfg))
    srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, **cfg))
    if settings:   # in the first SETTINGS frame
        init = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100}
        init.update(settings)
        srv.local_settings = h2.settings.Settings(client=False, initial_values=init)
    cli.initiate_connection()
    srv.initiate_connection()
    global first
    first = srv.data_to_send()   # read alone: the requests go out once it is in
    return cli, srv


def requests(cli, srv, n, body=False, connect=False):
    for i in range(n):
        sid = 1 + 2 * i
        if connect and i == 0:
            hdrs = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                    (":authority", "backend.test"), (":path", "/fuzz?a=1")]
            cli.send_headers(sid, hdrs)
        else:
            hdrs = [(":method", "POST" if body else "GET"), (":scheme", "http"),
                    (":authority", "backend.test"), (":path", "/fuzz?a=1")]
            cli.send_headers(sid, hdrs, end_stream=not body)
            if body:
                cli.send_data(sid, b"x" * 1000, end_stream=True)
    srv.receive_data(cli.data_to_send())


def write(name, opt, data):
    step = len(first) - 1        # every read the size of the SETTINGS frame
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([opt, step]) + first + data)


def response(srv, sid, status=200, body=b"hello\n", trailers=None, clen=True):
    hdrs = [(":status", str(status)), ("content-type", "text/plain")]
    if clen:
        hdrs.append(("content-length", str(len(body))))
    srv.send_headers(sid, hdrs)
    if trailers:
        srv.send_data(sid, body)
        srv.send_headers(sid, trailers, end_stream=True)
    else:
        srv.send_data(sid, body, end_stream=True)


def main():
    os.makedirs(OUT, exist_ok=True)

    cli, srv = pair()                                   # SETTINGS, 200 + DATA + END_STREAM
    requests(cli, srv, 1)
    response(srv, 1)
    write("get", 0, srv.data_to_send())

    cli, srv = pair()                                   # trailers, small reads
    requests(cli, srv, 1)
    response(srv, 1, body=b"a" * 300, trailers=[("grpc-status", "0"), ("grpc-message", "ok")],
             clen=False)
    write("trailers", PAUSE, srv.data_to_send())

    cli, srv = pair()                                   # GOAWAY before answering: refused
    requests(cli, srv, 1)
    srv.close_connection(last_stream_id=0)
    write("goaway", 0, srv.data_to_send())

    cli, srv = pair()                                   # answer, then GOAWAY
    requests(cli, srv, 1)
    response(srv, 1)
    srv.close_connection(last_stream_id=1)
    write("goaway_after", EOF, srv.data_to_send())

    cli, srv = pair()                                   # RST_STREAM REFUSED_STREAM, then CANCEL
    requests(cli, srv, 2)
    srv.reset_stream(1, error_code=7)
    srv.send_headers(3, [(":status", "200")])
    srv.reset_stream(3, error_code=8)
    write("rst", 1, srv.data_to_send())

    cli, srv = pair({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})   # POST: windows, PING
    requests(cli, srv, 1, body=True)
    srv.ping(b"12345678")
    srv.increment_flow_control_window(100000)
    srv.increment_flow_control_window(100000, stream_id=1)
    response(srv, 1, status=201, body=b"created\n")
    write("post_window", BODY, srv.data_to_send())

    cli, srv = pair({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})    # extended CONNECT
    requests(cli, srv, 1, connect=True)
    srv.send_headers(1, [(":status", "200")])
    srv.send_data(1, b"\x81\x05hello")
    srv.send_data(1, b"", end_stream=True)
    write("connect", CONNECT, srv.data_to_send())

    cli, srv = pair({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})     # 3 requests, limit 2
    requests(cli, srv, 2)
    srv.send_headers(1, [(":status", "103"), ("link", "</a.css>; rel=preload")])
    response(srv, 1, body=b"one")
    response(srv, 3, status=503, body=b"busy")
    write("many", 2 | DROP_5XX, srv.data_to_send())

    cli, srv = pair()                                   # a large body the client drops
    requests(cli, srv, 1)
    srv.send_headers(1, [(":status", "200")])
    srv.send_data(1, b"z" * 10000)
    srv.send_data(1, b"z" * 10000, end_stream=True)
    write("drop", DROP_DATA | 1, srv.data_to_send())


if __name__ == "__main__":
    main()
