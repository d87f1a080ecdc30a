/* HTTP/1.1 client codec: connections to upstream peers, kept alive in the
 * worker's pool between exchanges.
 *
 * A connection serves one exchange at a time. It goes back to the pool
 * only when both messages ended cleanly (request fully sent, response fully
 * read with a known length and no stray bytes after it), so a pooled
 * connection never carries half of an old message into a new exchange.
 *
 * Upgrades: a request that asks to switch protocols is never pooled. A
 * 101 answer either hands the socket to a tunnel (link detach: HTTP/1.1
 * clients) or turns the link raw (HTTP/2 clients, RFC 8441): bytes pass
 * unframed both ways and the peer's FIN ends the "response".
 *
 * TLS (proxy_pass https://): once connect() completes the handshake runs
 * under the same proxy_connect_timeout (nginx counts it in the connect
 * phase), then every read and write goes through net/tls.h. A handshake
 * or certificate failure is a connect failure: the next peer is tried.
 * A 101 hands the TLS state to the tunnel with the socket. Pooled
 * connections are keyed by their client context and SNI / verified name
 * (upstream/pool.h: sg_tls_key). */
#include "http/h1_client.h"
#include "http/h1_parser.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/ssl_conf.h"
#include "core/buf.h"
#include "core/log.h"
#include "http/h1_write.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "exchange/exchange.h"
#include "upstream/pool.h"

/* C_HANDSHAKE: connected, TLS handshake in progress (https:// only). */
typedef enum upconn_state { C_CONNECTING, C_HANDSHAKE, C_ACTIVE, C_IDLE, C_CLOSED } upconn_state;

typedef struct sg_h1_upconn {
    sg_upstream_link link;
    sg_io io;
    sg_pool_node node;
    sg_pool *pool;
    sg_loop *loop;
    sg_worker *w;
    const sg_upstream_conf *u;
    sg_inbuf in;
    sg_outq out;
    sg_deferred flush, resume, reap;
    sg_timer timer;                 /* connect, read or idle timeout */
    sg_timer wtimer;                /* send timeout */
    sg_tls_conn *tls;               /* https://: the transport; NULL: plain */
    const sg_ssl_upstream_conf *tls_conf;
    bool session_kept;              /* its TLS session went to the pool for resumption */
    upconn_state state;
    bool readable, writable, processing;
    bool rdhup;                     /* the peer half-closed: read until EOF */
    unsigned requests;
    /* the exchange in progress */
    bool req_chunked, req_done, head_parsed, resp_done, want_resp, got_bytes, no_reuse;
    bool head_queued;               /* the request head is in `out`: body bytes may follow */
    /* A chunked request body's bytes of this loop iteration, sent as one
     * chunk at the flush: what the client sent at once goes as one chunk,
     * as nginx does, however many chunks or frames it came in. */
    sg_strbuf chunk;
    bool is_head, resp_keep_alive;
    bool upgrade_req;               /* the request asks to switch protocols */
    bool raw;                       /* after its 101: no HTTP framing any more */
    bool fin_pending;               /* raw: shutdown(SHUT_WR) once `out` is written */
    bool fin_due;                   /* raw: `out` is written, the FIN (after close_notify) is next */
    bool notify_due;                /* raw over TLS: close_notify waits for EPOLLOUT */
    bool lingering;                 /* raw, let go by the core: close once the FIN is out */
    const char *rest;               /* bytes after the 101 head, for link_detach */
    size_t nrest;
    sg_h1_body_kind body_kind;
    uint64_t body_left;
    sg_chunked_decoder chunked;
    sg_strbuf trailers;             /* a chunked response's raw trailer section */
    size_t scanned;
    uint32_t read_timeout_ms, send_timeout_ms;
    uint32_t tunnel_timeout_ms;     /* after a 101, unless the read timeout was set */
    bool read_timeout_set;
    const sg_log_target *log;       /* the exchange's error_log */
    uint64_t born_ms;               /* keepalive_time: not kept once older (issue 9) */
} sg_h1_upconn;

static const sg_upstream_link_ops h1_link_ops;
static void upconn_close(sg_h1_upconn *c);
static void upconn_read(sg_h1_upconn *c);

#define FROM_NODE(n) ((sg_h1_upconn *)((char *)(n) - offsetof(sg_h1_upconn, node)))

/* proxy_read_timeout (or, after a 101, the tunnel's timeout). A raw
 * link's 0 is proxy_tunnel_timeout 0: never, as for HTTP/1.1 tunnels. */
static void arm_read_timeout(sg_h1_upconn *c)
{
    if (c->raw && c->read_timeout_ms == 0) sg_timer_disarm(&c->timer);
    else sg_timer_arm(c->loop, &c->timer, c->read_timeout_ms);
}

static void report_error(sg_h1_upconn *c, sg_up_error err)
{
    sg_exchange *ex = c->link.ex;
    bool nothing = !c->got_bytes;
    c->link.ex = NULL;
    upconn_close(c);
    if (ex) {
        ex->up = NULL;
        c->link.ev->error(ex, err, nothing);
    }
}

/* ---------- output ---------- */

/* Raw mode: the client ended its byte stream; pass the FIN on once
 * every byte before it is written, after TLS's close_notify. With the
 * socket full, both wait for EPOLLOUT (a FIN first would read as a
 * truncation attack), as in proxy/tunnel.c; proxy_send_timeout bounds
 * the wait. A link the core let go (lingering) closes once it is out. */
static void fin_if_drained(sg_h1_upconn *c)
{
    if (c->state != C_ACTIVE) return;
    if (c->fin_pending && c->out.bytes == 0) {
        c->fin_pending = false;
        c->fin_due = true;
        c->notify_due = c->tls != NULL;
    }
    if (!c->fin_due) return;
    if (c->notify_due) {
        if (!c->writable) return;
        if (sg_tls_shutdown(c->tls) == SG_IO_AGAIN) {
            c->writable = false;
            if (!sg_timer_armed(&c->wtimer)) sg_timer_arm(c->loop, &c->wtimer, c->send_timeout_ms);
            return;
        }
        c->notify_due = false;
    }
    c->fin_due = false;
    sg_timer_disarm(&c->wtimer);
    shutdown(c->io.fd, SHUT_WR);
    if (c->lingering) upconn_close(c);
}

static void emit_chunk(sg_h1_upconn *c)
{
    if (!c->chunk.n) return;
    char hdr[24];
    int k = snprintf(hdr, sizeof(hdr), "%zx\r\n", c->chunk.n);
    sg_outq_append(&c->out, hdr, (size_t)k);
    sg_outq_append(&c->out, c->chunk.p, c->chunk.n);
    sg_outq_append(&c->out, "\r\n", 2);
    c->chunk.n = 0;
}

static void do_flush(sg_h1_upconn *c)
{
    emit_chunk(c);
    if (c->state != C_ACTIVE || !c->writable || c->out.bytes == 0) {
        if (c->out.bytes == 0) sg_timer_disarm(&c->wtimer);
        fin_if_drained(c);
        return;
    }
    size_t before = c->out.bytes, written = 0;
    sg_io_result r = c->tls ? sg_tls_flush(c->tls, &c->out, &written) : sg_outq_flush(&c->out, c->io.fd, &written);
    c->link.bytes_sent += written;
    if (r == SG_IO_ERROR) {
        report_error(c, SG_UP_CLOSED);
        return;
    }
    if (r == SG_IO_AGAIN) {
        c->writable = false;
        if (written || !sg_timer_armed(&c->wtimer)) sg_timer_arm(c->loop, &c->wtimer, c->send_timeout_ms);
    } else {
        sg_timer_disarm(&c->wtimer);
    }
    fin_if_drained(c);
    if (before >= SG_LOW_WATER && c->out.bytes < SG_LOW_WATER && c->link.ex)
        c->link.ev->drain(c->link.ex);
}

static void on_flush(sg_deferred *d)
{
    do_flush((sg_h1_upconn *)((char *)d - offsetof(sg_h1_upconn, flush)));
}

static void out_append(sg_h1_upconn *c, const char *p, size_t n)
{
    sg_outq_append(&c->out, p, n);
    sg_loop_defer(c->loop, &c->flush);
}

/* ---------- link ops ---------- */

static bool has_close(sg_str v)
{
    for (size_t i = 0; i + 5 <= v.n; i++)
        if (sg_str_caseeq((sg_str){ v.p + i, 5 }, SG_STR("close"))) return true;
    return false;
}

static void link_send_head(sg_upstream_link *l, const sg_upstream_request *req)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    c->is_head = req->method.n == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
    char *p = sg_outq_reserve(&c->out, req->method.n + req->target.n + 16);
    size_t n = 0;
    memcpy(p, req->method.p, req->method.n);
    n += req->method.n;
    p[n++] = ' ';
    memcpy(p + n, req->target.p, req->target.n);
    n += req->target.n;
    memcpy(p + n, " HTTP/1.", 8);   /* no printf here: 700 instructions a request */
    n += 8;
    n += sg_u64_to_dec(p + n, (uint64_t)(req->http_minor > 0 ? req->http_minor % 10 : 0));
    memcpy(p + n, "\r\n", 2);
    n += 2;
    sg_outq_commit(&c->out, n);
    for (size_t i = 0; i < req->nheaders; i++)
        sg_h1_write_header(&c->out, req->headers[i].name, req->headers[i].value);
    c->upgrade_req = req->upgrade;
    if (req->upgrade) {
        /* The head is the whole request; whatever follows a 101 is no
         * longer HTTP. Never pooled: the peer may switch at any time. */
        c->no_reuse = true;
    } else if (req->content_length > 0 || (req->content_length == 0 && req->empty_body)) {
        char num[24];
        size_t k = sg_u64_to_dec(num, (uint64_t)req->content_length);
        sg_h1_write_header(&c->out, SG_STR("Content-Length"), (sg_str){ num, k });
    } else if (req->content_length < 0) {
        sg_h1_write_header(&c->out, SG_STR("Transfer-Encoding"), SG_STR("chunked"));
        c->req_chunked = true;
    }
    if (req->http_minor == 0) {
        sg_h1_write_header(&c->out, SG_STR("Connection"), SG_STR("close"));
        c->no_reuse = true;
    }
    for (size_t i = 0; i < req->nheaders; i++)   /* we told the peer to close: do not pool */
        if (sg_str_caseeq_lit(req->headers[i].name, "connection") && has_close(req->headers[i].value))
            c->no_reuse = true;
    out_append(c, "\r\n", 2);
    c->head_queued = true;
    c->requests++;
    /* The response may come before the body is sent (an early 413...), so
     * read at once; proxy_read_timeout starts when the request is sent
     * (link_send_end), as in nginx: a long upload is not a silent peer. */
    c->want_resp = true;
    if (req->upgrade) {
        c->req_done = true;
        arm_read_timeout(c);
    }
    if (c->readable) sg_loop_defer(c->loop, &c->resume);
}

static void link_send_data(sg_upstream_link *l, const char *p, size_t n)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    if (n == 0) return;
    if (!c->head_queued) {
        /* Body before head would be read by the peer as a request of its
         * own (smuggling): never let it through, whatever the caller did. */
        sg_log(SG_LOG_ALERT, "request body before its head on an upstream connection: dropped");
        c->no_reuse = true;
        return;
    }
    if (c->req_chunked && !c->raw) {
        sg_strbuf_append(&c->chunk, p, n);
        sg_loop_defer(c->loop, &c->flush);
    } else {
        out_append(c, p, n);
    }
    /* A half-closed tunnel (the peer sent its FIN): the client's silence
     * is what the tunnel timeout bounds now. */
    if (c->raw && c->resp_done) arm_read_timeout(c);
}

static void link_send_end(sg_upstream_link *l)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    if (!c->head_queued) return;
    if (c->raw) {
        c->fin_pending = true;
        sg_loop_defer(c->loop, &c->flush);
        return;
    }
    if (c->req_chunked) {
        emit_chunk(c);
        out_append(c, "0\r\n\r\n", 5);
    }
    c->req_done = true;
    /* Not while we hold the response back for a slow client: that wait is
     * ours, not the peer's silence. */
    if (c->want_resp && (!c->head_parsed || !c->resp_done))
        arm_read_timeout(c);
}

static size_t link_pending(sg_upstream_link *l)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    return c->out.bytes + c->chunk.n;
}

static void link_want_response(sg_upstream_link *l, bool on)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    if (c->want_resp == on) return;
    c->want_resp = on;
    if (on) {
        if (c->req_done || c->head_parsed) arm_read_timeout(c);
        sg_loop_defer(c->loop, &c->resume);
    } else {
        sg_timer_disarm(&c->timer);
    }
}

static void on_idle_timeout(sg_timer *t);

/* Nothing more may be waiting in the socket: bytes after the response
 * would be taken as the next exchange's response, and a FIN already seen
 * means the peer is closing. Only a read that filled the whole scratch
 * buffer leaves doubt, and only then is it worth a peek. */
static bool socket_drained(sg_h1_upconn *c)
{
    if (c->rdhup || (c->tls && sg_tls_pending(c->tls))) return false;
    if (!c->readable) return true;
    char b;
    ssize_t n = recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = false;
        return true;
    }
    return false;
}

static void link_release(sg_upstream_link *l)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    c->link.ex = NULL;
    /* A raw link let go once both sides ended: the client's last bytes
     * still go out, then close_notify and the FIN (fin_if_drained), then
     * the socket closes; proxy_send_timeout bounds it. */
    if (c->raw && c->state == C_ACTIVE && (c->fin_pending || c->fin_due)) {
        c->lingering = true;
        c->want_resp = false;
        sg_timer_disarm(&c->timer);
        sg_loop_defer(c->loop, &c->flush);
        return;
    }
    bool clean = c->state == C_ACTIVE && c->req_done && c->resp_done && c->resp_keep_alive &&
                 !c->no_reuse && c->in.len == 0 && c->out.bytes == 0 &&
                 c->requests < c->u->keepalive_requests && socket_drained(c) &&
                 (!c->u->keepalive_time_ms || sg_loop_now(c->loop) - c->born_ms < c->u->keepalive_time_ms);
    sg_pool_put_result kept = clean ? sg_pool_put(c->pool, &c->node) : SG_POOL_REFUSED;
    if (kept == SG_POOL_REFUSED) {
        upconn_close(c);
        return;
    }
    c->state = C_IDLE;
    c->req_chunked = c->req_done = c->head_parsed = c->resp_done = false;
    c->want_resp = c->got_bytes = c->is_head = c->head_queued = false;
    c->upgrade_req = c->raw = c->fin_pending = c->fin_due = c->notify_due = false;
    c->scanned = 0;
    sg_timer_disarm(&c->wtimer);
    c->timer.cb = on_idle_timeout;
    uint32_t idle_ms = c->u->keepalive_timeout_ms;
    if (kept == SG_POOL_SURPLUS && idle_ms > SG_POOL_SURPLUS_MS) idle_ms = SG_POOL_SURPLUS_MS;
    sg_timer_arm(c->loop, &c->timer, idle_ms);
}

static void link_close(sg_upstream_link *l)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    c->link.ex = NULL;
    upconn_close(c);
}

static void upconn_stop(sg_h1_upconn *c);

static int link_detach(sg_upstream_link *l, sg_outq *to_upstream, sg_outq *to_client, sg_tls_conn **tls)
{
    sg_h1_upconn *c = (sg_h1_upconn *)l;
    int fd = c->io.fd;
    /* The TLS state goes with the socket (the tunnel reads and writes
     * through it); our queue keeps OpenSSL's retry rule as it moves. */
    *tls = c->tls;
    c->tls = NULL;
    /* `rest` points into the scratch buffer or c->in: copy it first. */
    if (c->nrest) sg_outq_append(to_client, c->rest, c->nrest);
    c->nrest = 0;
    *to_upstream = c->out;
    c->out = (sg_outq){ 0 };
    c->link.ex = NULL;
    upconn_stop(c);   /* no longer ours, but not closed: the tunnel owns the fd */
    return fd;
}

static const sg_upstream_link_ops h1_link_ops = {
    .send_head = link_send_head,
    .send_data = link_send_data,
    .send_end = link_send_end,
    .pending = link_pending,
    .want_response = link_want_response,
    .release = link_release,
    .close = link_close,
    .detach = link_detach,
};

/* ---------- response parsing ---------- */

static bool still_ours(const sg_h1_upconn *c, const sg_exchange *ex)
{
    return c->state == C_ACTIVE && c->link.ex == ex && ex != NULL;
}

/* With TLS 1.3 the ticket comes after the handshake, so the session is
 * taken once a response came back (then it has arrived). */
static void keep_session(sg_h1_upconn *c)
{
    if (c->tls && !c->session_kept)
        c->session_kept = sg_pool_tls_keep_session(c->pool, c->node.peer, c->tls_conf, &c->node.tls, c->tls);
}

/* Trailer fields not relayed (RFC 9110 6.5.1): those that frame or route
 * the message or belong to this connection, which a recipient would take
 * for the message's own (HTTP/2 forbids the connection-specific ones),
 * and the ones that describe the content (its type, coding or range),
 * which must be known before it. Everything else goes on as it came. */
static bool trailer_dropped(sg_str name)
{
    static const char *const drop[] = {
        "content-length", "transfer-encoding", "trailer", "host", "connection", "keep-alive",
        "proxy-connection", "te", "upgrade", "content-type", "content-encoding", "content-range",
    };
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (sg_str_caseeq_lit(name, drop[i])) return true;
    return false;
}

/* Splits the trailer section the decoder checked (lines of `token ":"
 * value CRLF`, no obs-fold) into fields: names lowercased in place (as
 * HTTP/2 carries them), values without surrounding whitespace. */
static size_t parse_trailers(sg_strbuf *b, sg_header *h, size_t max)
{
    size_t n = 0, i = 0;
    while (i < b->n && n < max) {
        char *line = b->p + i;
        char *eol = memchr(line, '\r', b->n - i);
        if (!eol) break;
        i = (size_t)(eol - b->p) + 2;
        char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line) continue;
        for (char *q = line; q < colon; q++)
            if (*q >= 'A' && *q <= 'Z') *q = (char)(*q + 32);
        char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        sg_str name = { line, (size_t)(colon - line) };
        if (trailer_dropped(name)) continue;
        h[n++] = (sg_header){ name, { v, (size_t)(ve - v) }, 0 };
    }
    return n;
}

static void response_end(sg_h1_upconn *c)
{
    keep_session(c);
    c->resp_done = true;
    sg_timer_disarm(&c->timer);
    sg_header t[SG_H1_MAX_HEADERS];
    size_t nt = c->trailers.n ? parse_trailers(&c->trailers, t, SG_H1_MAX_HEADERS) : 0;
    sg_exchange *ex = c->link.ex;
    c->link.ev->end(ex, t, nt);   /* the core releases or closes the link... */
    c->trailers.n = 0;            /* (c may be closed, not freed: that is at reap) */
    /* ...or keeps a raw one: a half-closed tunnel, whose client may still
     * send; its silence is bounded as the tunnel's was. */
    if (c->raw && still_ours(c, ex)) arm_read_timeout(c);
}

static size_t process_body(sg_h1_upconn *c, const char *p, size_t n)
{
    sg_exchange *ex = c->link.ex;
    if (c->body_kind == SG_H1_BODY_UNTIL_CLOSE) {
        c->link.ev->data(ex, p, n);
        return n;
    }
    if (c->body_kind == SG_H1_BODY_LENGTH) {
        size_t k = n < c->body_left ? n : (size_t)c->body_left;
        c->body_left -= k;
        if (k) c->link.ev->data(ex, p, k);
        if (c->body_left == 0 && still_ours(c, ex)) response_end(c);
        return k;
    }
    size_t used = 0;
    while (used < n && still_ours(c, ex) && c->want_resp) {
        size_t consumed = 0, dlen = 0;
        const char *data = NULL;
        sg_chunked_result r = sg_chunked_decode(&c->chunked, p + used, n - used, &consumed,
                                                &data, &dlen, &c->trailers);
        used += consumed;
        if (r == SG_CHUNKED_ERROR) {
            report_error(c, SG_UP_INVALID);
            return n;
        }
        if (r == SG_CHUNKED_DATA && dlen) c->link.ev->data(ex, data, dlen);
        if (r == SG_CHUNKED_END) {
            if (still_ours(c, ex)) response_end(c);
            break;
        }
        if (r == SG_CHUNKED_MORE) break;
    }
    return used;
}

_Static_assert((unsigned)SG_H1_HDR_HOP == (unsigned)SG_HDR_HOP && (unsigned)SG_H1_HDR_DROP == (unsigned)SG_HDR_DROP,
               "the parser's header flags are the exchange's");

/* The parser's head as the core reads it: the same fields, nothing of
 * HTTP/1.1's framing but what it tells about the body. */
static void report_head(sg_h1_upconn *c, const sg_h1_message *m)
{
    sg_header h[SG_H1_MAX_HEADERS];
    for (size_t i = 0; i < m->num_headers; i++)
        h[i] = (sg_header){ m->headers[i].name, m->headers[i].value, m->headers[i].flags };
    int64_t clen = -1;
    if (m->body == SG_H1_BODY_LENGTH) {
        clen = (int64_t)m->content_length;
    } else if (m->body == SG_H1_BODY_NONE) {
        const sg_h1_header *cl = sg_h1_find(m, "content-length");
        uint64_t v = 0;
        if (cl && sg_str_to_u64(cl->value, &v)) clen = (int64_t)v;
    }
    sg_upstream_response resp = {
        .status = m->status,
        .headers = h,
        .nheaders = m->num_headers,
        .has_body = m->body != SG_H1_BODY_NONE,
        .content_length = clen,
    };
    c->link.ev->head(c->link.ex, &resp);
}

/* A 101 to our upgrade request: from now on bytes are raw. The core
 * either takes the socket (link_detach, with `rest`), refuses the answer
 * (closes the link) or keeps the link as a raw stream. */
static void switch_protocols(sg_h1_upconn *c, const sg_h1_message *m, const char *rest, size_t nrest)
{
    c->head_parsed = true;
    c->raw = true;
    c->body_kind = SG_H1_BODY_UNTIL_CLOSE;
    c->resp_keep_alive = false;
    /* A tunnel is silent for long stretches: proxy_read_timeout bounds it
     * only when the user set it (nginx applies it to upgraded connections). */
    if (!c->read_timeout_set) c->read_timeout_ms = c->tunnel_timeout_ms;
    c->rest = rest;
    c->nrest = nrest;
    report_head(c, m);
    c->rest = NULL;
    c->nrest = 0;
}

/* Returns bytes used from buf. */
static size_t process_buf(sg_h1_upconn *c, const char *buf, size_t len)
{
    size_t off = 0;
    sg_exchange *ex = c->link.ex;
    while (off < len && still_ours(c, ex) && c->want_resp) {
        if (c->resp_done) {
            c->no_reuse = true;   /* bytes after the response: not a clean connection */
            return len;
        }
        if (!c->head_parsed) {
            sg_h1_message m;
            sg_str method = c->is_head ? SG_STR("HEAD") : SG_STR("GET");
            int r = sg_h1_parse_response(buf + off, len - off, c->scanned, method, &m);
            if (r == 0) {
                c->scanned = len - off;
                return off;
            }
            if (r < 0) {
                report_error(c, SG_UP_INVALID);
                return len;
            }
            off += (size_t)r;
            c->scanned = 0;
            if (m.status < 200 && m.status != 101) continue;   /* 100 Continue and friends */
            if (m.status == 101) {
                /* Only an upgrade request may be answered by a switch; any
                 * other 101 is a peer speaking out of turn. */
                if (!c->upgrade_req) {
                    report_error(c, SG_UP_INVALID);
                    return len;
                }
                switch_protocols(c, &m, buf + off, len - off);
                if (!still_ours(c, ex)) return len;   /* detached or refused */
                continue;                             /* what follows is raw */
            }
            c->head_parsed = true;
            c->body_kind = m.body;
            c->body_left = m.body == SG_H1_BODY_LENGTH ? m.content_length : 0;
            c->resp_keep_alive = m.keep_alive && m.body != SG_H1_BODY_UNTIL_CLOSE;
            sg_chunked_init(&c->chunked);
            c->trailers.n = 0;
            report_head(c, &m);
            if (still_ours(c, ex) && m.body == SG_H1_BODY_NONE) response_end(c);
            continue;
        }
        off += process_body(c, buf + off, len - off);
    }
    return off;
}

static void process_input(sg_h1_upconn *c, const char *data, size_t n)
{
    if (c->in.len == 0) {
        size_t used = process_buf(c, data, n);
        if (used < n && c->state == C_ACTIVE) sg_inbuf_append(&c->in, data + used, n - used);
        else if (used < n && c->state == C_IDLE) upconn_close(c);   /* stray bytes: unusable */
        return;
    }
    if (n) sg_inbuf_append(&c->in, data, n);
    size_t used = process_buf(c, c->in.p, c->in.len);
    if (c->state != C_CLOSED) sg_inbuf_consume(&c->in, used);
}

static void upconn_read(sg_h1_upconn *c)
{
    if (c->processing || (c->raw && c->resp_done)) return;   /* a raw link after the peer's FIN */
    c->processing = true;
    if (c->in.len && c->want_resp && c->link.ex) process_input(c, NULL, 0);
    while (c->state == C_ACTIVE && c->readable && c->want_resp && c->link.ex &&
           c->in.len < 256 * 1024) {
        if (c->link.ev->may_read && !c->link.ev->may_read(c->link.ex)) break;
        char *scratch = sg_worker_scratch(c->w);
        ssize_t n = c->tls ? sg_tls_read(c->tls, scratch, SG_SCRATCH_SIZE) : read(c->io.fd, scratch, SG_SCRATCH_SIZE);
        if (n > 0) {
            /* short read: drained (see h1_server.c), unless OpenSSL holds more */
            if ((size_t)n < SG_SCRATCH_SIZE && !c->rdhup && !(c->tls && sg_tls_pending(c->tls)))
                c->readable = false;
            c->got_bytes = true;
            c->link.bytes_received += (uint64_t)n;
            process_input(c, scratch, (size_t)n);
            if (c->state == C_ACTIVE && c->link.ex && c->want_resp && !c->resp_done &&
                (c->req_done || c->head_parsed))
                arm_read_timeout(c);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            break;
        }
        /* EOF or reset */
        c->processing = false;
        if (n == 0 && c->head_parsed && c->body_kind == SG_H1_BODY_UNTIL_CLOSE && c->link.ex) {
            c->resp_keep_alive = false;
            response_end(c);
            return;
        }
        report_error(c, SG_UP_CLOSED);
        return;
    }
    c->processing = false;
}

static void on_resume(sg_deferred *d)
{
    upconn_read((sg_h1_upconn *)((char *)d - offsetof(sg_h1_upconn, resume)));
}

/* ---------- events and timers ---------- */

/* Errors about an exchange go to its location's error_log. */
static const sg_log_target *up_log(const sg_h1_upconn *c)
{
    return c->link.ex ? c->log : NULL;
}

/* The connection is ready for the request (after the TLS handshake on
 * https://). `readable`: input may be waiting (the handshake read until
 * the socket would block, so OpenSSL may hold the first bytes). */
static void connected(sg_h1_upconn *c, bool readable)
{
    c->state = C_ACTIVE;
    c->writable = true;
    sg_timer_disarm(&c->timer);
    if (readable) c->readable = true;
    sg_exchange *ex = c->link.ex;
    if (ex) c->link.ev->connected(ex);
}

/* Advances the handshake; the connect timer still runs meanwhile. On
 * failure (logged by net/tls.c with OpenSSL's reason) the session kept
 * for the peer is dropped, and the core tries the next peer. */
static void tls_handshake(sg_h1_upconn *c)
{
    sg_io_result r = sg_tls_handshake(c->tls);
    if (r == SG_IO_AGAIN) return;
    if (r == SG_IO_ERROR) {
        sg_pool_tls_forget_session(c->pool, c->node.peer, &c->node.tls);
        report_error(c, SG_UP_CONNECT);
        return;
    }
    connected(c, true);
}

static void tls_start(sg_h1_upconn *c)
{
    c->tls = sg_pool_tls_new(c->pool, c->node.peer, c->tls_conf, &c->node.tls, c->io.fd);
    if (!c->tls) {
        report_error(c, SG_UP_CONNECT);
        return;
    }
    sg_tls_set_log(c->tls, up_log(c));
    c->state = C_HANDSHAKE;
    tls_handshake(c);
}

static void on_connect_event(sg_h1_upconn *c, uint32_t events)
{
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = sg_connect_result(c->io.fd);
    if (err) {
        char addr[64];
        sg_log_to(up_log(c), SG_LOG_ERROR, "connect() to %s failed (%d: %s) while connecting to upstream",
                     c->node.peer->conf->name ? c->node.peer->conf->name
                     : sg_sockaddr_str((struct sockaddr *)&c->node.peer->conf->addr, addr, sizeof(addr)),
                     err, strerror(err));
        report_error(c, SG_UP_CONNECT);
        return;
    }
    if (c->tls_conf) tls_start(c);
    else connected(c, events & EPOLLIN);
}

static void on_event(sg_io *io, uint32_t events)
{
    sg_h1_upconn *c = (sg_h1_upconn *)((char *)io - offsetof(sg_h1_upconn, io));
    if (c->state == C_CLOSED) return;
    if (c->state == C_IDLE) {
        /* An idle pooled connection that becomes readable was closed (or
         * spoke out of turn): either way it cannot be reused. */
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
            sg_pool_remove(c->pool, &c->node);
            upconn_close(c);
        }
        return;
    }
    if (c->state == C_CONNECTING) {
        on_connect_event(c, events);
        return;
    }
    if (c->state == C_HANDSHAKE) {
        tls_handshake(c);
        return;
    }
    /* A half-closed tunnel reads no more: a reset from the peer (a socket
     * error) ends it now, not at the next write. */
    if (c->raw && c->resp_done && (events & EPOLLERR)) {
        report_error(c, SG_UP_CLOSED);
        return;
    }
    if (events & EPOLLOUT) {
        c->writable = true;
        do_flush(c);
        if (c->state != C_ACTIVE) return;
        /* OpenSSL's read stopped on a full socket: it may go on now. */
        if (c->tls && sg_tls_read_wants_write(c->tls)) events |= EPOLLIN;
    }
    /* ...and its write may have stopped waiting for input. */
    if ((events & EPOLLIN) && c->tls && sg_tls_write_wants_read(c->tls) && c->out.bytes) {
        c->writable = true;
        do_flush(c);
        if (c->state != C_ACTIVE) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        c->readable = true;
        if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) c->rdhup = true;
        upconn_read(c);
    }
}

static void on_timeout(sg_timer *t)
{
    sg_h1_upconn *c = (sg_h1_upconn *)((char *)t - offsetof(sg_h1_upconn, timer));
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
        sg_log_to(up_log(c), SG_LOG_ERROR, "upstream timed out (110: Connection timed out) while %s upstream %s",
                     c->state == C_HANDSHAKE ? "SSL handshaking to" : "connecting to", c->node.peer->conf->name);
        report_error(c, SG_UP_CONNECT_TIMEOUT);
        return;
    }
    sg_log_to(up_log(c), SG_LOG_ERROR, "upstream timed out (110: Connection timed out) while %s upstream %s",
                 c->raw ? "proxying upgraded connection to" : "reading response header from", c->node.peer->conf->name);
    report_error(c, SG_UP_TIMEOUT);
}

static void on_send_timeout(sg_timer *t)
{
    sg_h1_upconn *c = (sg_h1_upconn *)((char *)t - offsetof(sg_h1_upconn, wtimer));
    if (c->lingering) {   /* nobody waits for it, and its peer's conf may be gone (a reload) */
        upconn_close(c);
        return;
    }
    sg_log_to(up_log(c), SG_LOG_ERROR, "upstream timed out (110: Connection timed out) while sending request to upstream %s",
                 c->node.peer->conf->name);
    report_error(c, SG_UP_TIMEOUT);
}

static void on_idle_timeout(sg_timer *t)
{
    sg_h1_upconn *c = (sg_h1_upconn *)((char *)t - offsetof(sg_h1_upconn, timer));
    sg_pool_remove(c->pool, &c->node);
    upconn_close(c);
}

static void on_reap(sg_deferred *d)
{
    sg_h1_upconn *c = (sg_h1_upconn *)((char *)d - offsetof(sg_h1_upconn, reap));
    sg_tls_free(c->tls);   /* here, not at close: a TLS call may be up the stack */
    sg_tls_key_free(&c->node.tls);
    sg_inbuf_free(&c->in);
    sg_outq_clear(&c->out);
    sg_strbuf_free(&c->chunk);
    sg_strbuf_free(&c->trailers);
    free(c);
}

/* Stops using the socket without closing it (the caller owns the fd). */
static void upconn_stop(sg_h1_upconn *c)
{
    c->state = C_CLOSED;
    sg_timer_disarm(&c->timer);
    sg_timer_disarm(&c->wtimer);
    sg_loop_cancel(&c->flush);
    sg_loop_cancel(&c->resume);
    if (sg_list_linked(&c->node.link)) sg_pool_remove(c->pool, &c->node);
    sg_loop_del(c->loop, &c->io);
    c->io.fd = -1;
    sg_loop_defer(c->loop, &c->reap);   /* callers up the stack may still look at c */
}

static void upconn_close(sg_h1_upconn *c)
{
    if (c->state == C_CLOSED) return;
    if (c->tls) sg_tls_shutdown(c->tls);   /* close_notify: skipped after a TLS error */
    int fd = c->io.fd;
    upconn_stop(c);
    close(fd);
}

static void pool_close_node(sg_pool_node *n)
{
    upconn_close(FROM_NODE(n));
}

/* ---------- opening ---------- */

static void bind_exchange(sg_h1_upconn *c, sg_exchange *ex, const sg_link_opts *o)
{
    c->link.ex = ex;
    c->read_timeout_ms = o->read_timeout_ms;
    c->send_timeout_ms = o->send_timeout_ms;
    c->tunnel_timeout_ms = o->tunnel_timeout_ms;
    c->read_timeout_set = o->read_timeout_set;
    c->log = o->log;
    c->timer.cb = on_timeout;
}

sg_upstream_link *sg_h1_client_open(sg_exchange *ex, const sg_upstream_events *ev, sg_upstream_rt *rt,
                                    sg_peer *peer, const sg_link_opts *o, bool *ready)
{
    sg_worker *w = o->w;
    sg_pool *pool = &rt->pools[w ? sg_worker_id(w) : 0];
    /* https://: SNI and the name to verify come from the exchange
     * (proxy_ssl_name may use variables) and key the pooled connections. */
    const sg_ssl_upstream_conf *tls_conf = o->tls;
    sg_tls_key tls_key = tls_conf ? (sg_tls_key){ tls_conf->ctx, o->tls_name } : (sg_tls_key){ 0 };
    /* No liveness probe (a syscall per request): an idle connection the
     * peer closes reports EPOLLRDHUP and leaves the pool at once, and the
     * rare close that races with reuse is retried by the core. */
    sg_pool_node *n = sg_pool_take(pool, peer, &tls_key);
    if (n) {
        sg_h1_upconn *c = FROM_NODE(n);
        sg_timer_disarm(&c->timer);
        c->state = C_ACTIVE;
        c->link.reused = true;
        c->link.ev = ev;
        bind_exchange(c, ex, o);
        *ready = true;
        return &c->link;
    }
    const sg_upstream_server_conf *sc = peer->conf;
    int fd = sg_connect_nonblock((const struct sockaddr *)&sc->addr, sc->addrlen);
    if (fd < 0) {
        sg_log_to(o->log, SG_LOG_ERROR, "connect() to %s failed (%d: %s) while connecting to upstream", sc->name, errno,
                     strerror(errno));
        return NULL;
    }
    sg_h1_upconn *c = sg_xcalloc(1, sizeof(*c));
    c->link.ops = &h1_link_ops;
    c->link.ev = ev;
    c->io.fd = fd;
    c->io.on_event = on_event;
    c->node.peer = peer;
    c->node.tls = sg_tls_key_dup(&tls_key);
    c->tls_conf = tls_conf;
    c->node.close = pool_close_node;
    c->pool = pool;
    c->w = w;
    c->loop = o->loop;
    c->u = rt->conf;
    c->born_ms = sg_loop_now(c->loop);
    c->state = C_CONNECTING;
    sg_deferred_init(&c->flush, on_flush);
    sg_deferred_init(&c->resume, on_resume);
    sg_deferred_init(&c->reap, on_reap);
    sg_timer_init(&c->timer, on_timeout);
    sg_timer_init(&c->wtimer, on_send_timeout);
    bind_exchange(c, ex, o);
    if (sg_loop_add(c->loop, &c->io) < 0) {
        close(fd);
        sg_tls_key_free(&c->node.tls);
        free(c);
        return NULL;
    }
    sg_timer_arm(c->loop, &c->timer, o->connect_timeout_ms);
    *ready = false;
    return &c->link;
}
