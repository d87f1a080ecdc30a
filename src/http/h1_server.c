/* HTTP/1.1 server codec.
 *
 * One sg_h1_conn per client connection. Bytes are read into the worker's
 * scratch buffer and handled in place; only what cannot be handled yet (a
 * partial head, body bytes the upstream cannot take, a pipelined request
 * waiting its turn) is copied into the connection's own buffer. Output is
 * appended to a queue and written once per loop iteration. Requests on one
 * connection are handled one after the other, as nginx does, so responses
 * to pipelined requests come back in order.
 *
 * After a 101 the connection is no longer HTTP: the core takes the socket
 * (h1_detach) for a tunnel, and this struct goes away with the exchange. */
#include "http/h1_server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/blockcache.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/stats.h"
#include "http/h1_parser.h"
#include "http/host.h"
#include "http/h1_write.h"
#include "http/status.h"
#include "http/target.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "exchange/exchange.h"

#define LINGER_MS 2000

typedef enum conn_state {
    ST_IDLE = 0,       /* between requests (keep-alive) */
    ST_HEAD,           /* part of a request head received */
    ST_ACTIVE,         /* an exchange is running */
    ST_LINGER,         /* output done, write side shut, draining input before close */
} conn_state;

typedef struct sg_h1_conn {
    sg_io io;
    sg_conn_node node;
    sg_tls_conn *tls;
    sg_worker *w;
    sg_loop *loop;
    struct sockaddr_storage peer, local;
    sg_inbuf in;
    sg_outq out;
    sg_deferred flush;
    sg_deferred resume;              /* re-run the read path after want_body(true) */
    sg_deferred finish;              /* end the exchange outside the core's call stack */
    sg_timer read_timer, write_timer;
    conn_state state;
    size_t scanned;                  /* bytes of a partial head already scanned */
    unsigned requests;
    bool readable, writable;
    bool rdhup;                      /* the peer half-closed: read until EOF */
    bool closing;                    /* close once the output queue is empty */
    bool shutting_down;              /* graceful stop: no new requests */
    bool processing;                 /* inside process_input (no re-entry) */

    /* current exchange */
    sg_exchange *ex;
    bool want_body, discard_body, body_done;
    sg_h1_body_kind body_kind;
    uint64_t body_left;
    sg_chunked_decoder chunked;
    bool expect_continue, continue_sent;
    bool te_trailers;                /* the client sent TE: trailers (it takes a trailer section) */
    bool keep_alive;                 /* client asked for it and nothing forbids it */
    bool resp_chunked, resp_no_body, resp_ended, resp_until_close;
    int minor;
    uint32_t keepalive_timeout_ms, body_timeout_ms, send_timeout_ms;
    bool own_trailers;               /* this response ends with add_trailer's fields (issue 9) */
    uint64_t born_ms;                /* keepalive_time: no request after this age (issue 9) */
    sg_conn_stat stat;               /* metrics (issue 12): stub_status's states */
} sg_h1_conn;

static const sg_downstream_ops h1_down_ops;
static void conn_read(sg_h1_conn *c);
static void conn_close(sg_h1_conn *c);
static void schedule_flush(sg_h1_conn *c);

/* ---------- helpers ---------- */

static void out_str(sg_h1_conn *c, const char *s, size_t n)
{
    sg_outq_append(&c->out, s, n);
}

static void out_fmt(sg_h1_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(sg_h1_conn *c, const char *fmt, ...)
{
    char *p = sg_outq_reserve(&c->out, 256);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p, 256, fmt, ap);
    va_end(ap);
    if (n > 255) n = 255;
    if (n > 0) sg_outq_commit(&c->out, (size_t)n);
}

/* "PREFIX VALUE\r\n" without printf: the response head of every request
 * (printf cost 2,000 instructions a request, an eighth of the total). */
static void out_line(sg_h1_conn *c, const char *prefix, size_t plen, const char *v, size_t vlen)
{
    char *p = sg_outq_reserve(&c->out, plen + vlen + 2);
    memcpy(p, prefix, plen);
    memcpy(p + plen, v, vlen);
    memcpy(p + plen + vlen, "\r\n", 2);
    sg_outq_commit(&c->out, plen + vlen + 2);
}

static void out_number_line(sg_h1_conn *c, const char *prefix, size_t plen, uint64_t v)
{
    char num[24];
    out_line(c, prefix, plen, num, sg_u64_to_dec(num, v));
}

static void out_status_line(sg_h1_conn *c, int status)
{
    char line[32];
    memcpy(line, "HTTP/1.1 ", 9);
    size_t n = 9 + sg_u64_to_dec(line + 9, (uint64_t)(status > 0 ? status : 0));
    line[n++] = ' ';
    const char *reason = sg_http_reason(status);
    out_line(c, line, n, reason, strlen(reason));
}

/* A response the codec answers by itself (bad request line, headers too
 * large): no exchange exists, the connection closes afterwards. */
static void send_error_and_close(sg_h1_conn *c, int status)
{
    sg_str body = sg_http_error_body(status);
    sg_str date = sg_http_date();
    out_fmt(c, "HTTP/1.1 %d %s\r\nServer: streamgate\r\nDate: %.*s\r\n"
               "Content-Type: text/html\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
            status, sg_http_reason(status), (int)date.n, date.p, body.n);
    out_str(c, body.p, body.n);
    c->closing = true;
    c->state = ST_ACTIVE;    /* stop parsing; the connection is done */
    sg_conn_stat_phase(&c->stat, SG_CS_WAITING);
    schedule_flush(c);
}

static void arm_read_timer(sg_h1_conn *c, uint32_t ms)
{
    if (ms == 0 || ms == SG_UNSET_MS) sg_timer_disarm(&c->read_timer);
    else sg_timer_arm(c->loop, &c->read_timer, ms);
}

/* ---------- output ---------- */

static void do_flush(sg_h1_conn *c)
{
    if (c->out.bytes > 0 && c->writable) {
        size_t written = 0;
        sg_io_result r = c->tls ? sg_tls_flush(c->tls, &c->out, &written)
                                : sg_outq_flush(&c->out, c->io.fd, &written);
        if (r == SG_IO_ERROR) {
            conn_close(c);
            return;
        }
        if (r == SG_IO_AGAIN) {
            c->writable = false;
            if (written > 0 || !sg_timer_armed(&c->write_timer))
                sg_timer_arm(c->loop, &c->write_timer, c->send_timeout_ms);
        }
    }
    if (c->out.bytes == 0) sg_timer_disarm(&c->write_timer);
    if (c->ex && c->ex->waiting_drain && c->out.bytes < SG_LOW_WATER) {
        c->ex->waiting_drain = false;
        sg_exchange_on_drain(c->ex);
        return;   /* on_drain may have queued more and rescheduled a flush */
    }
    if (c->closing && c->out.bytes == 0) {
        /* Lingering close: shut our side, then drain what the client
         * still sends, so that a reset does not destroy the response. */
        sg_conn_stat_close(&c->stat);   /* metrics: done before the client can see the end */
        if (c->tls) sg_tls_shutdown(c->tls);
        shutdown(c->io.fd, SHUT_WR);
        c->state = ST_LINGER;
        c->closing = false;
        arm_read_timer(c, LINGER_MS);
        conn_read(c);
    }
}

static void on_flush(sg_deferred *d)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)d - offsetof(sg_h1_conn, flush));
    do_flush(c);
}

static void schedule_flush(sg_h1_conn *c)
{
    sg_loop_defer(c->loop, &c->flush);
}

/* ---------- exchange lifecycle ---------- */

/* Finishes the exchange (the access log) and frees it with its arena. The
 * block goes back to this thread's cache (core/blockcache.h): one per
 * request. */
static void end_exchange(sg_exchange *ex)
{
    sg_exchange_finish(ex);
    sg_arena_free(&ex->req.arena);
    sg_block_free(ex, sizeof(*ex));
}

static void finish_exchange(sg_h1_conn *c)
{
    sg_exchange *ex = c->ex;
    c->ex = NULL;
    end_exchange(ex);
    c->requests++;
    sg_conn_stat_phase(&c->stat, SG_CS_WAITING);
    sg_timer_disarm(&c->read_timer);
    if (!c->keep_alive || c->shutting_down) {
        c->closing = true;
        c->state = ST_ACTIVE;
        schedule_flush(c);
        return;
    }
    c->state = ST_IDLE;
    c->scanned = 0;
    arm_read_timer(c, c->keepalive_timeout_ms);
    sg_loop_defer(c->loop, &c->resume);   /* a pipelined request may be waiting */
}

/* The core may still be on the stack (it called send_end or abort), so
 * the exchange ends at the end of the iteration, never under its feet. */
/* A connection that will close need not wait for the rest of the request
 * body (after a 413, say): the lingering close drains it. */
static bool exchange_over(const sg_h1_conn *c)
{
    return c->ex && c->resp_ended && (c->body_done || !c->keep_alive);
}

static void maybe_finish(sg_h1_conn *c)
{
    if (exchange_over(c)) sg_loop_defer(c->loop, &c->finish);
}

static void on_finish(sg_deferred *d)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)d - offsetof(sg_h1_conn, finish));
    if (exchange_over(c)) finish_exchange(c);
}

static void body_complete(sg_h1_conn *c)
{
    c->body_done = true;
    sg_timer_disarm(&c->read_timer);
    if (c->ex && !c->discard_body) sg_exchange_on_body_end(c->ex);
    maybe_finish(c);
}

/* The request cannot go on (a malformed body): release the exchange and
 * answer 400 if nothing was sent yet, else just close. */
static void fail_request(sg_h1_conn *c, int status)
{
    sg_exchange *ex = c->ex;
    bool head_sent = ex->resp_head_sent;
    char host[64];
    sg_log_info("client %s sent an invalid request body",
                sg_sockaddr_host((struct sockaddr *)&c->peer, host, sizeof(host)));
    c->ex = NULL;
    sg_loop_cancel(&c->finish);
    ex->aborted = true;
    sg_exchange_on_abort(ex);
    end_exchange(ex);
    if (head_sent) conn_close(c);
    else send_error_and_close(c, status);
}

/* Feeds body bytes to the exchange (or drops them). Returns bytes used. */
static size_t feed_body(sg_h1_conn *c, const char *p, size_t n)
{
    if (c->body_kind == SG_H1_BODY_LENGTH) {
        size_t k = n < c->body_left ? n : (size_t)c->body_left;
        c->body_left -= k;
        if (!c->discard_body && k) sg_exchange_on_body(c->ex, p, k);
        if (c->body_left == 0 && c->ex) body_complete(c);
        return k;
    }
    size_t used = 0;
    while (used < n && c->ex && !c->body_done) {
        size_t consumed = 0, dlen = 0;
        const char *data = NULL;
        sg_chunked_result r = sg_chunked_decode(&c->chunked, p + used, n - used, &consumed,
                                                &data, &dlen, NULL);
        used += consumed;
        if (r == SG_CHUNKED_ERROR) {
            fail_request(c, 400);
            return n;
        }
        if (r == SG_CHUNKED_DATA && !c->discard_body && dlen) sg_exchange_on_body(c->ex, data, dlen);
        if (r == SG_CHUNKED_END) {
            body_complete(c);
            break;
        }
        if (r == SG_CHUNKED_MORE) break;
        /* after on_body the core may have paused us */
        if (!c->want_body && !c->discard_body) break;
    }
    return used;
}

/* Fills ex->req from a parsed head copied into the request's arena. */
static int build_request(sg_h1_conn *c, sg_exchange *ex, const char *buf, const sg_h1_message *m)
{
    sg_http_req *r = &ex->req;
    r->peer = (const struct sockaddr *)&c->peer;
    r->local = (const struct sockaddr *)&c->local;
    r->proxy_protocol = c->node.proxy;
    r->group = c->node.group;
    r->tls = c->tls;                   /* tls */
    r->https = c->tls != NULL;
    r->conn_number = c->node.number;
    r->conn_born_ms = c->node.born_ms;
    r->conn_requests = c->requests + 1;
    char *head = sg_arena_alloc(&r->arena, m->head_len);
    memcpy(head, buf, m->head_len);
#define REBASE(s) ((sg_str){ (s).p ? head + ((s).p - buf) : NULL, (s).n })
    r->method = REBASE(m->method);
    r->request_uri = REBASE(m->target);
    r->http_major = 1;
    r->http_minor = m->minor_version;
    r->nheaders = m->num_headers;
    r->headers = sg_arena_alloc(&r->arena, sizeof(sg_header) * (m->num_headers ? m->num_headers : 1));
    for (size_t i = 0; i < m->num_headers; i++) {
        r->headers[i].name = REBASE(m->headers[i].name);
        r->headers[i].value = REBASE(m->headers[i].value);
        r->headers[i].flags = m->headers[i].flags;
    }
    sg_str host = REBASE(m->host);
#undef REBASE
    /* nginx refuses TRACE (405), and CONNECT too since 1.29.3: it proxies
     * no tunnels over HTTP/1.1 (the parser already answered 400 to a
     * CONNECT target that is not host:port). */
    if (sg_str_eq_lit(r->method, "TRACE") || sg_str_eq_lit(r->method, "CONNECT")) {
        r->uri = SG_STR("/");
        return 405;
    }
    /* Split the target into path and arguments; absolute-form carries the
     * host, which then wins over the Host field (RFC 9112 3.2.2). The
     * authority ends at "/" or "?": "http://h?a" is "/?a" on host h. */
    sg_str target = r->request_uri;
    if (target.n && target.p[0] != '/' && target.p[0] != '*') {
        const char *scheme_end = memchr(target.p, ':', target.n);
        if (!scheme_end || (size_t)(scheme_end - target.p) + 3 > target.n || scheme_end[1] != '/' ||
            scheme_end[2] != '/')
            return 400;
        const char *auth = scheme_end + 3, *end = target.p + target.n, *a = auth;
        const char *frag = memchr(auth, '#', (size_t)(end - auth));
        if (frag) end = frag;     /* a fragment is the client's, never sent */
        while (a < end && *a != '/' && *a != '?') a++;
        host = (sg_str){ auth, (size_t)(a - auth) };
        if (a < end && *a == '/') {
            target = (sg_str){ a, (size_t)(end - a) };
        } else {
            char *t = sg_arena_alloc(&r->arena, (size_t)(end - a) + 1);
            t[0] = '/';
            memcpy(t + 1, a, (size_t)(end - a));
            target = (sg_str){ t, (size_t)(end - a) + 1 };
        }
        if (sg_http_host_check(host) < 0) return 400;
    }
    if (sg_http_target_split(r, target)) return 400;
    /* $host: without port and trailing dot, lowercased (the parser checked
     * the Host field; an HTTP/1.0 request may have none). */
    char *lh = sg_arena_alloc(&r->arena, host.n + 1);
    long hl = host.n ? sg_http_host_lower(host, lh) : 0;
    if (hl < 0) return 400;
    lh[hl] = '\0';
    r->host = (sg_str){ lh, (size_t)hl };
    return 0;
}

static void start_exchange(sg_h1_conn *c, const char *buf, const sg_h1_message *m)
{
    sg_conf *gen = sg_worker_conf(c->w);
    sg_exchange *ex = sg_block_calloc(sizeof(*ex));
    sg_exchange_init(ex, c->w, gen, &h1_down_ops, c);
    ex->req.head_length = m->head_len;   /* $request_length */
    c->ex = ex;
    c->state = ST_ACTIVE;
    sg_conn_stat_phase(&c->stat, SG_CS_WRITING);
    c->scanned = 0;
    c->want_body = c->discard_body = c->body_done = false;
    c->resp_chunked = c->resp_no_body = c->resp_ended = c->resp_until_close = false;
    c->continue_sent = false;
    c->minor = m->minor_version;
    c->body_kind = m->body;
    c->body_left = m->body == SG_H1_BODY_LENGTH ? m->content_length : 0;
    c->expect_continue = m->expect_continue && m->minor_version == 1;
    c->te_trailers = m->has_te_trailers && m->minor_version == 1;
    sg_chunked_init(&c->chunked);

    int bad = build_request(c, ex, buf, m);
    const sg_listen_group *g = c->node.group;
    const sg_server_conf *srv = g ? g->default_server : NULL;
    const sg_loc_conf *lc = srv ? &srv->root->conf : NULL;
    c->keepalive_timeout_ms = lc ? lc->keepalive_timeout_ms : 75000;
    c->keep_alive = m->keep_alive && c->keepalive_timeout_ms > 0;
    ex->req_length = m->body == SG_H1_BODY_LENGTH ? (int64_t)m->content_length
                   : m->body == SG_H1_BODY_CHUNKED ? -1 : 0;
    if (m->body == SG_H1_BODY_NONE) c->body_done = true;
    sg_timer_disarm(&c->read_timer);
    if (bad) {
        ex->early_status = bad;
        ex->close_connection = true;
        c->keep_alive = false;
    } else if (c->expect_continue && c->body_done) {
        /* Expect: 100-continue on an empty body: nginx answers the
         * expectation as it reads (or discards) the body, before the
         * response; with a body, h1_want_body does it. */
        out_fmt(c, "HTTP/1.1 100 Continue\r\n\r\n");
        c->continue_sent = true;
        schedule_flush(c);
    }
    sg_exchange_start(ex);   /* may answer synchronously */
}

/* Handles bytes in `buf`; returns how many were used. */
static size_t process_buf(sg_h1_conn *c, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        if (c->state == ST_IDLE || c->state == ST_HEAD) {
            if (c->shutting_down) return len;
            const sg_listen_group *g = c->node.group;
            const sg_server_conf *s = g ? g->default_server : NULL;
            size_t bufsz = s ? s->large_header_buffer_size : 8192;
            size_t nbuf = s ? s->large_header_buffers : 4;
            size_t maxh = s ? s->max_headers : 100;
            sg_h1_limits lim = { bufsz, bufsz, bufsz * nbuf, maxh };
            sg_h1_message m;
            int r = sg_h1_parse_request(buf + off, len - off, c->scanned, &lim, &m);
            if (r == 0) {
                if (c->state == ST_IDLE) {
                    c->state = ST_HEAD;
                    sg_conn_stat_phase(&c->stat, SG_CS_READING);
                    uint32_t t = s ? s->client_header_timeout_ms : 60000;
                    arm_read_timer(c, t);
                }
                c->scanned = len - off;
                return off;
            }
            if (r < 0) {
                send_error_and_close(c, -r);
                return len;
            }
            start_exchange(c, buf + off, &m);
            off += (size_t)r;
            continue;
        }
        if (c->state != ST_ACTIVE || !c->ex || c->body_done) return off;
        if (!c->want_body && !c->discard_body) return off;
        off += feed_body(c, buf + off, len - off);
    }
    return off;
}

static void process_input(sg_h1_conn *c, const char *data, size_t n)
{
    if (c->in.len == 0) {
        size_t used = process_buf(c, data, n);
        if (used < n && c->io.fd >= 0) sg_inbuf_append(&c->in, data + used, n - used);
        return;
    }
    if (n) sg_inbuf_append(&c->in, data, n);
    size_t used = process_buf(c, c->in.p, c->in.len);
    if (c->io.fd >= 0) sg_inbuf_consume(&c->in, used);
}

static bool wants_input(const sg_h1_conn *c)
{
    switch (c->state) {
    case ST_IDLE:
    case ST_HEAD:
    case ST_LINGER:
        return !c->closing;
    case ST_ACTIVE:
        return c->ex && !c->body_done && (c->want_body || c->discard_body);
    }
    return false;
}

/* Keeps a partial head (or a waiting pipelined request) from growing
 * without limit while it cannot be handled. */
static bool input_over_limit(const sg_h1_conn *c)
{
    return c->in.len > 256 * 1024;
}

static void conn_read(sg_h1_conn *c)
{
    if (c->processing || c->io.fd < 0) return;
    c->processing = true;
    /* Bytes already buffered first (pipelined requests, held-back body). */
    if (c->in.len && wants_input(c) && c->state != ST_LINGER) process_input(c, NULL, 0);
    while (c->io.fd >= 0 && c->readable && wants_input(c) && !input_over_limit(c)) {
        char *scratch = sg_worker_scratch(c->w);
        ssize_t n = c->tls ? sg_tls_read(c->tls, scratch, SG_SCRATCH_SIZE)
                           : read(c->io.fd, scratch, SG_SCRATCH_SIZE);
        if (n > 0) {
            /* A short read drained the socket: the next byte brings a new
             * edge, so skip the read that would only say EAGAIN (unless
             * the peer half-closed: then its EOF has no edge of its own). */
            if ((size_t)n < SG_SCRATCH_SIZE && !c->rdhup && !(c->tls && sg_tls_pending(c->tls)))
                c->readable = false;
            if (c->state == ST_LINGER) continue;
            process_input(c, scratch, (size_t)n);
            if (c->ex && c->want_body && !c->body_done)
                arm_read_timer(c, c->body_timeout_ms);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            break;
        }
        /* EOF or error */
        c->processing = false;
        if (n == 0 && !c->ex && c->out.bytes > 0 && c->state != ST_LINGER) {
            /* The client half-closed after its last request: the answer
             * is still queued, so deliver it before closing. */
            c->readable = false;
            c->closing = true;
            c->state = ST_ACTIVE;
            schedule_flush(c);
            return;
        }
        if (c->ex) sg_exchange_on_abort(c->ex);
        conn_close(c);
        return;
    }
    c->processing = false;
}

static void on_resume(sg_deferred *d)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)d - offsetof(sg_h1_conn, resume));
    conn_read(c);
}

/* ---------- downstream ops (called by the core) ---------- */

static void send_head(sg_exchange *ex, const sg_response *resp);

/* $bytes_sent: every byte queued for the client for this request (head,
 * chunk framing, body), as nginx counts what it sends. */
static void h1_send_head(sg_exchange *ex, const sg_response *resp)
{
    sg_h1_conn *c = ex->down_ctx;
    size_t before = c->out.bytes;
    send_head(ex, resp);
    ex->req.bytes_sent += c->out.bytes - before;
}

static void send_head(sg_exchange *ex, const sg_response *resp)
{
    sg_h1_conn *c = ex->down_ctx;
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf
                          : (ex->req.srv ? &ex->req.srv->root->conf : NULL);
    if (lc) {
        if (c->requests + 1 >= lc->keepalive_requests) c->keep_alive = false;
        if (lc->keepalive_timeout_ms == 0) c->keep_alive = false;
        if (lc->keepalive_time_ms && sg_loop_now(c->loop) - c->born_ms >= lc->keepalive_time_ms) c->keep_alive = false;
        c->keepalive_timeout_ms = lc->keepalive_timeout_ms;
        c->send_timeout_ms = lc->send_timeout_ms;
    }
    if (ex->close_connection || c->shutting_down || sg_worker_quitting(c->w)) c->keep_alive = false;
    /* A body nobody will consume (a local answer, or the upstream is gone)
     * must still be read and dropped, or it would be parsed as the next
     * request. A body merely paused by backpressure is not that case. */
    if (!c->body_done && !c->want_body && !ex->up) {
        c->discard_body = true;
        /* The client waits for 100 Continue before sending the body we
         * would have to skip: it may send it or not, so the connection
         * cannot stay in step; answer and close (RFC 9110 10.1.1). */
        if (c->expect_continue && !c->continue_sent) c->keep_alive = false;
        if (c->body_kind == SG_H1_BODY_LENGTH && c->body_left > 1024 * 1024) c->keep_alive = false;
        sg_loop_defer(c->loop, &c->resume);
    }
    bool head_req = ex->req.method.n == 4 && memcmp(ex->req.method.p, "HEAD", 4) == 0;
    c->resp_no_body = !resp->has_body || head_req;
    c->resp_chunked = false;
    c->resp_until_close = false;
    sg_str date = sg_http_date();
    /* nginx answers HTTP/1.1 whatever the client's minor version. */
    out_status_line(c, resp->status);
    /* proxy_pass_header Server / Date: the backend's go instead of ours */
    if (!sg_response_has(resp, "server")) out_str(c, "Server: streamgate\r\n", 20);
    if (!sg_response_has(resp, "date")) out_line(c, "Date: ", 6, date.p, date.n);
    for (size_t i = 0; i < resp->nheaders; i++)
        sg_h1_write_header(&c->out, resp->headers[i].name, resp->headers[i].value);
    bool no_framing = resp->status == 204 || resp->status == 304 || resp->status < 200;
    /* Trailers need a chunked body, even one of a known length; only a
     * client that said it takes them (TE: trailers) gets them (nginx). */
    c->own_trailers = resp->own_trailers;
    bool chunk_for_trailers = resp->trailers && (c->te_trailers || c->own_trailers) && !c->resp_no_body;
    if (!no_framing) {
        if (resp->content_length >= 0 && !chunk_for_trailers) {
            out_number_line(c, "Content-Length: ", 16, (uint64_t)resp->content_length);
        } else if (resp->has_body) {
            if (c->minor >= 1) {
                out_str(c, "Transfer-Encoding: chunked\r\n", 28);
                c->resp_chunked = true;
            } else {
                c->keep_alive = false;   /* HTTP/1.0: the end of the body is the close */
                c->resp_until_close = true;
            }
        }
    }
    if (resp->status == 101) {
        /* The upgrade answer: a tunnel takes the socket right after. */
        out_str(c, "Connection: upgrade\r\n\r\n", 23);
        ex->resp_head_sent = true;
        return;
    }
    if (!c->keep_alive) out_str(c, "Connection: close\r\n", 19);
    else out_str(c, "Connection: keep-alive\r\n", 24);
    if (c->keep_alive && lc && lc->keepalive_header_s)
        out_number_line(c, "Keep-Alive: timeout=", 20, lc->keepalive_header_s);
    out_str(c, "\r\n", 2);
    if (resp->status < 200) return;   /* interim */
    ex->resp_head_sent = true;
    schedule_flush(c);
}

static void h1_send_data(sg_exchange *ex, const char *p, size_t n)
{
    sg_h1_conn *c = ex->down_ctx;
    if (c->resp_no_body || n == 0) return;
    ex->req.body_bytes_sent += n;
    ex->req.bytes_sent += n;
    if (c->resp_chunked) {
        char *hdr = sg_outq_reserve(&c->out, 20);
        int k = snprintf(hdr, 20, "%zx\r\n", n);
        sg_outq_commit(&c->out, (size_t)k);
        sg_outq_append(&c->out, p, n);
        out_str(c, "\r\n", 2);
        ex->req.bytes_sent += (uint64_t)k + 2;
    } else {
        sg_outq_append(&c->out, p, n);
    }
    schedule_flush(c);
}

static void h1_send_end(sg_exchange *ex)
{
    sg_h1_conn *c = ex->down_ctx;
    if (c->resp_chunked && !c->resp_no_body) {
        out_str(c, "0\r\n\r\n", 5);
        ex->req.bytes_sent += 5;
    }
    c->resp_ended = true;
    ex->resp_done = true;
    schedule_flush(c);
    if (!c->body_done && !c->discard_body && !ex->up) {
        c->want_body = false;
        c->discard_body = true;
        sg_loop_defer(c->loop, &c->resume);
    }
    maybe_finish(c);
}

/* Framing and routing fields, which a trailer section may not carry
 * (RFC 9110 6.5.1); HTTP/2's pseudo-fields neither. */
static bool skip_trailer(sg_str name)
{
    static const char *const drop[] = {
        "content-length", "transfer-encoding", "trailer", "connection", "keep-alive", "te", "host",
        "upgrade", "proxy-connection", NULL,
    };
    if (name.n == 0 || name.p[0] == ':') return true;
    for (int i = 0; drop[i]; i++)
        if (sg_str_caseeq_lit(name, drop[i])) return true;
    return false;
}

/* The trailer section of a chunked body, for a client that sent TE:
 * trailers; otherwise (or without chunked framing, where there is nowhere
 * to put them) they are dropped, as nginx does. */
static void h1_send_trailers(sg_exchange *ex, const sg_header *h, size_t n)
{
    sg_h1_conn *c = ex->down_ctx;
    if ((c->te_trailers || c->own_trailers) && c->resp_chunked && !c->resp_no_body && !c->resp_ended) {
        size_t before = c->out.bytes;
        out_str(c, "0\r\n", 3);
        for (size_t i = 0; i < n; i++)
            if (!skip_trailer(h[i].name)) sg_h1_write_header(&c->out, h[i].name, h[i].value);
        out_str(c, "\r\n", 2);
        ex->req.bytes_sent += c->out.bytes - before;
        c->resp_chunked = false;   /* the last chunk is written: send_end adds none */
    }
    h1_send_end(ex);
}

static void h1_want_body(sg_exchange *ex, bool on)
{
    sg_h1_conn *c = ex->down_ctx;
    if (c->want_body == on) return;
    c->want_body = on;
    if (!on) {
        sg_timer_disarm(&c->read_timer);
        return;
    }
    if (c->expect_continue && !c->continue_sent && !c->body_done) {
        out_fmt(c, "HTTP/1.1 100 Continue\r\n\r\n");
        c->continue_sent = true;
        schedule_flush(c);
    }
    c->body_timeout_ms = ex->req.loc ? ex->req.loc->conf.client_body_timeout_ms : 60000;
    if (!c->body_done) arm_read_timer(c, c->body_timeout_ms);
    sg_loop_defer(c->loop, &c->resume);
}

static size_t h1_pending(sg_exchange *ex)
{
    sg_h1_conn *c = ex->down_ctx;
    return c->out.bytes;
}

static void h1_abort(sg_exchange *ex)
{
    sg_h1_conn *c = ex->down_ctx;
    /* The response cannot be completed: the client must see a truncated
     * message, which on HTTP/1.1 means closing the connection. */
    c->keep_alive = false;
    c->resp_ended = true;
    c->body_done = true;
    ex->aborted = true;
    maybe_finish(c);
}

static void on_detached(sg_deferred *d);

/* The socket goes to a tunnel: stop using it (without closing it) and
 * end the exchange once the core is off the stack. */
static int h1_detach(sg_exchange *ex, sg_outq *to_client, sg_inbuf *from_client, sg_tls_conn **tls)
{
    sg_h1_conn *c = ex->down_ctx;
    int fd = c->io.fd;
    /* The TLS state goes with the socket; the queue keeps the bytes a
     * partial TLS write was given first, as the next write must offer. */
    *tls = c->tls;
    c->tls = NULL;
    ex->req.tls = NULL;                /* the tunnel owns it now, and may free it first */
    *to_client = c->out;
    c->out = (sg_outq){ 0 };
    *from_client = c->in;
    c->in = (sg_inbuf){ 0 };
    sg_timer_disarm(&c->read_timer);
    sg_timer_disarm(&c->write_timer);
    sg_loop_cancel(&c->resume);
    sg_loop_cancel(&c->finish);
    sg_loop_cancel(&c->flush);
    sg_loop_del(c->loop, &c->io);
    c->io.fd = -1;
    /* Counted until on_detached, after the tunnel counts itself: a quitting
     * worker must not see zero connections in between and stop. */
    sg_deferred_init(&c->flush, on_detached);
    sg_loop_defer(c->loop, &c->flush);
    return fd;
}

static const sg_downstream_ops h1_down_ops = {
    .send_head = h1_send_head,
    .send_data = h1_send_data,
    .send_end = h1_send_end,
    .want_body = h1_want_body,
    .pending = h1_pending,
    .abort = h1_abort,
    .detach = h1_detach,
    .send_trailers = h1_send_trailers,
};

/* ---------- events, timers, close ---------- */

static void on_event(sg_io *io, uint32_t events)
{
    sg_h1_conn *c = (sg_h1_conn *)io;
    if (c->io.fd < 0) return;   /* closed or handed to a tunnel earlier in this batch */
    if (events & (EPOLLERR | EPOLLHUP)) {
        if (c->ex) sg_exchange_on_abort(c->ex);
        conn_close(c);
        return;
    }
    if (events & EPOLLOUT) {
        c->writable = true;
        if (c->out.bytes) do_flush(c);
        if (c->io.fd < 0) return;
        if (c->tls && sg_tls_read_wants_write(c->tls)) events |= EPOLLIN;
    }
    if ((events & EPOLLIN) && c->tls && sg_tls_write_wants_read(c->tls) && c->out.bytes) {
        c->writable = true;
        do_flush(c);
        if (c->io.fd < 0) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP)) {
        c->readable = true;
        if (events & EPOLLRDHUP) c->rdhup = true;
        conn_read(c);
    }
}

static void on_read_timeout(sg_timer *t)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)t - offsetof(sg_h1_conn, read_timer));
    if (c->state == ST_HEAD) {
        /* nginx closes without an answer on client_header_timeout (408 is only logged) */
        sg_log_info("client timed out while reading client request headers");
    } else if (c->state == ST_ACTIVE && c->ex) {
        sg_log_info("client timed out while reading client request body");
        sg_exchange_on_abort(c->ex);
    }
    conn_close(c);
}

static void on_write_timeout(sg_timer *t)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)t - offsetof(sg_h1_conn, write_timer));
    sg_log_info("client timed out while sending response to client");
    if (c->ex) sg_exchange_on_abort(c->ex);
    conn_close(c);
}

static void conn_free(sg_h1_conn *c)
{
    sg_inbuf_free(&c->in);
    sg_outq_clear(&c->out);
    free(c);
}

static void on_free_deferred(sg_deferred *d)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)d - offsetof(sg_h1_conn, flush));
    conn_free(c);
}

/* The upgrade exchange ends here; its socket lives on in a tunnel, and its
 * log line waits for the tunnel's end (the handler's business). */
static void on_detached(sg_deferred *d)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)d - offsetof(sg_h1_conn, flush));
    sg_exchange *ex = c->ex;
    c->ex = NULL;
    if (ex) {
        end_exchange(ex);
    }
    sg_conn_stat_close(&c->stat);
    sg_worker_conn_del(c->w, &c->node);
    conn_free(c);
}

static void conn_close(sg_h1_conn *c)
{
    if (c->io.fd < 0) return;
    if (c->ex) {
        sg_exchange *ex = c->ex;
        c->ex = NULL;
        ex->aborted = true;
        end_exchange(ex);
    }
    sg_timer_disarm(&c->read_timer);
    sg_timer_disarm(&c->write_timer);
    sg_loop_cancel(&c->resume);
    sg_loop_cancel(&c->finish);
    sg_loop_cancel(&c->flush);
    sg_loop_del(c->loop, &c->io);
    sg_tls_free(c->tls);
    c->tls = NULL;
    close(c->io.fd);
    c->io.fd = -1;
    sg_conn_stat_close(&c->stat);
    sg_worker_conn_del(c->w, &c->node);
    /* Free at the end of the iteration: callers up the stack may still
     * look at c (they check io.fd first). */
    sg_deferred_init(&c->flush, on_free_deferred);
    sg_loop_defer(c->loop, &c->flush);
}

static void on_shutdown(sg_conn_node *n, bool fast)
{
    sg_h1_conn *c = (sg_h1_conn *)((char *)n - offsetof(sg_h1_conn, node));
    if (c->io.fd < 0) return;   /* handed to a tunnel: it answers for itself */
    c->shutting_down = true;
    if (fast || c->state == ST_IDLE || c->state == ST_HEAD) {
        if (c->ex) sg_exchange_on_abort(c->ex);
        conn_close(c);
    }
}

static sg_h1_conn *conn_new(sg_worker *w, const sg_listen_group *g, int fd,
                            const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen)
{
    sg_h1_conn *c = sg_xcalloc(1, sizeof(*c));
    c->io.fd = fd;
    c->io.on_event = on_event;
    c->w = w;
    c->loop = sg_worker_loop(w);
    c->born_ms = sg_loop_now(c->loop);
    memcpy(&c->peer, peer, peerlen);
    memcpy(&c->local, local, locallen);
    sg_deferred_init(&c->flush, on_flush);
    sg_deferred_init(&c->resume, on_resume);
    sg_deferred_init(&c->finish, on_finish);
    sg_timer_init(&c->read_timer, on_read_timeout);
    sg_timer_init(&c->write_timer, on_write_timeout);
    c->node.shutdown = on_shutdown;
    c->node.local = (const struct sockaddr *)&c->local;
    c->node.group = g;
    c->writable = true;
    c->state = ST_IDLE;
    c->send_timeout_ms = 60000;
    c->body_timeout_ms = 60000;
    const sg_server_conf *s = g ? g->default_server : NULL;
    c->keepalive_timeout_ms = s ? s->root->conf.keepalive_timeout_ms : 75000;
    sg_sock_tune(fd);
    if (sg_loop_add(c->loop, &c->io) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    /* nginx waits client_header_timeout for the first request */
    arm_read_timer(c, s ? s->client_header_timeout_ms : 60000);
    sg_conn_stat_open(&c->stat, SG_CS_H1);
    sg_worker_conn_add(w, &c->node);
    return c;
}

void sg_h1_server_accept(sg_worker *w, const sg_listen_group *g, int fd,
                         const struct sockaddr *peer, socklen_t peerlen,
                         const struct sockaddr *local, socklen_t locallen)
{
    conn_new(w, g, fd, peer, peerlen, local, locallen);
}

void sg_h1_server_accept_tls(sg_worker *w, const sg_listen_group *g, int fd, sg_tls_conn *tls,
                             const struct sockaddr *peer, socklen_t peerlen,
                             const struct sockaddr *local, socklen_t locallen)
{
    sg_h1_conn *c = conn_new(w, g, fd, peer, peerlen, local, locallen);
    if (!c) {
        sg_tls_free(tls);
        return;
    }
    c->tls = tls;
    sg_conn_stat_tls(&c->stat);
    c->readable = true;
    conn_read(c);
}

void sg_h1_server_accept_pre(sg_worker *w, const sg_listen_group *g, int fd,
                             const struct sockaddr *peer, socklen_t peerlen,
                             const struct sockaddr *local, socklen_t locallen,
                             const char *pre, size_t npre)
{
    sg_h1_conn *c = conn_new(w, g, fd, peer, peerlen, local, locallen);
    if (!c || !npre) return;
    sg_inbuf_append(&c->in, pre, npre);
    /* More may be waiting behind the bytes the other codec read, and the
     * edge that announced them is spent. */
    c->readable = true;
    conn_read(c);
}
