/* HTTP/2 server codec on libnghttp2.
 *
 * One h2_conn per client connection, one h2_stream (and one exchange) per
 * request stream. libnghttp2 owns the protocol (framing, HPACK, stream
 * states, flow-control arithmetic); this file owns the I/O and the
 * policy:
 *
 * - Input is read into the worker's scratch buffer and handed to
 *   nghttp2_session_mem_recv(); bytes are never kept at connection level.
 *   Request DATA goes to the exchange only while it wants a body; else it
 *   is held on the stream, and since the stream window is released
 *   (nghttp2_session_consume_stream) only for bytes the exchange took,
 *   a stream the core is not reading stalls its client by flow control,
 *   and what is held is bounded by the window (http2_body_preread_size).
 * - Output: response bodies wait in a per-stream queue until nghttp2's
 *   scheduler asks for them (a deferred data provider, resumed when bytes
 *   come); frames are serialized into the connection's output queue (DATA
 *   payloads copied straight from the stream queue: NO_COPY) and written
 *   once per loop iteration in one writev. The serialized backlog and the
 *   bytes queued on all streams are both capped, so a client that does
 *   not read only makes its streams report `pending` and stall upstreams
 *   (before their first read too); all connections of a worker together
 *   hold at most WORKER_OUTPUT_BUDGET.
 * - Streams end in nghttp2's on_stream_close; the exchange is finished at
 *   the end of that iteration, never under the core's feet, or as soon as
 *   the core has produced the whole answer (retire_ex): a stream waiting
 *   on a slow client keeps its unsent bytes, not its request.
 * - Abuse (h2_limits.h) costs the attacker its connection, nothing else.
 *
 * Socket I/O is in transport_read() and transport_write(), so that TLS
 * can take their place. */
#include "http/h2_server.h"
#include "http/h2_mem.h"
#include "http/host.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include "net/tls.h"

#include "core/blockcache.h"
#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/slab.h"
#include "core/stats.h"
#include "http/h1_parser.h"
#include "http/h1_server.h"
#include "http/h2_limits.h"
#include "http/h2_scan.h"
#include "http/status.h"
#include "http/target.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "exchange/exchange.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN 24
#define PEEK_MAX 4096                 /* first bytes looked at to tell HTTP/1.x from HTTP/2 */
#define OUT_CAP (256 * 1024)          /* frames serialized ahead of the socket */
#define QUEUE_CAP (1024 * 1024)       /* response bytes waiting on all streams of a connection */
/* Output held for clients by one worker thread: response bytes queued on
 * streams and frames serialized ahead of sockets, over all its HTTP/2
 * connections. One connection holds at most about QUEUE_CAP + OUT_CAP
 * (no stream reads from its backend while the connection is over
 * QUEUE_CAP), but a crowd of clients that do not read would add those up:
 * above this budget the connection holding the most is closed, then the
 * next, until the total is back under it. 64 MB is some fifty connections
 * at their cap; clients that read keep far less queued. */
#define WORKER_OUTPUT_BUDGET (64ull * 1024 * 1024)
#define CONN_WINDOW (1024 * 1024)     /* connection receive window (streams bound memory) */
#define FEED_CHUNK 16384              /* held request bytes handed to the exchange per call */
#define BODY_WINDOW 65536             /* stream receive window once the core reads the body */
#define GOAWAY_RTT_MS 1000            /* graceful GOAWAY: wait this long for the PING ACK */
#define LINGER_MS 2000
#define STOP_GRACE_MS 1000            /* response out, request open: RST_STREAM NO_ERROR after this */
#define MAX_SEND_HEADERS (128 * 1024)
#define PING_ALIVE "sg-alive"         /* 8-byte PING payloads */
#define PING_DRAIN "sg-drain"

/* Newer libnghttp2 (and Debian's patched 1.52) have these; older ones do
 * not. Weak references are NULL when the symbol is missing at run time,
 * so the same binary uses them where they exist, whatever the version
 * string says. Our own accounting (h2_limits) covers both cases. */
extern void nghttp2_option_set_stream_reset_rate_limit(nghttp2_option *option, uint64_t burst,
                                                       uint64_t rate) __attribute__((weak));
extern void nghttp2_option_set_max_continuations(nghttp2_option *option, size_t val)
    __attribute__((weak));

/* ---------- types ---------- */


/* Connection-wide values, copied from the configuration at accept (the
 * generation may be replaced while the connection lives). */
typedef struct h2_settings {
    uint32_t max_streams, preread, max_field, max_header, max_headers, recv_budget, max_requests;
    uint32_t idle_ms, header_ms, send_ms, ping_interval_ms, ping_timeout_ms;
} h2_settings;

typedef struct h2_conn h2_conn;

typedef struct h2_stream {
    struct h2_stream *next, **pprev;   /* c->streams, then c->dead once closed */
    h2_conn *c;
    sg_exchange *ex;
    int32_t id;
    uint32_t nhdrs, caphdrs;
    /* The fields while the block is decoded (malloc'd, grown by doubling);
     * moved into the arena at their exact size once it is complete, since
     * the arena lives as long as the stream. */
    sg_header *tmp_hdrs;
    uint32_t cookie_at;                /* 1 + index of the Cookie field the crumbs join into; 0: none */
    sg_str authority;
    sg_inbuf in;                       /* request DATA held while the exchange does not want it */
    sg_outq out;                        /* response DATA not framed yet */
    sg_timer read_timer;               /* header block, then request body */
    sg_timer send_timer;               /* queued response bytes not moving; then STOP_GRACE_MS */
    uint64_t last_rx_ms, last_tx_ms;
    uint32_t chunk, send_ms, body_ms;
    bool started;                      /* the exchange has its request */
    bool in_ended;                     /* END_STREAM received */
    bool body_end_sent;
    bool want_body;
    bool expect_continue, continue_sent;
    bool connect;                      /* extended CONNECT: a tunnel, no body timeout */
    bool saw_priority;                 /* the client sent a priority header (RFC 9218) */
    bool has_host, has_authority;
    int refused;                       /* the header block was refused: 400 (max_headers) or 431 */
    bool head_sent, no_body, out_eof;
    bool deferred;                     /* the data provider is waiting for bytes */
    /* The data provider ended its DATA item (EOF without END_STREAM) when
     * the queue ran dry while the request was still open: a deferred item
     * would stay allocated in nghttp2 for as long as a quiet conversation
     * (a gRPC stream) lasts. The next bytes, end or trailers submit a new
     * one (resume_data). */
    bool parked;
    bool ex_aborted;                   /* the core knows the response will not complete */
    bool closed;                       /* nghttp2 closed the stream */
    bool feed;                         /* held bytes to hand over at the next resume */
    bool reading;                      /* the core asked for the body at least once */
    bool stop_pending;                 /* response out, request open: RST_STREAM NO_ERROR soon */
    nghttp2_nv *trailers;              /* send_trailers: submitted after the last DATA (one malloc) */
    size_t ntrailers;
    /* limits (issue 10): the retired exchange's on_closed (limit_conn
     * slots), run when the stream ends */
    void (*on_closed)(void *arg);
    void *on_closed_arg;
} h2_stream;

struct h2_conn {
    sg_io io;
    sg_tls_conn *tls;
    sg_conn_node node;
    sg_worker *w;
    sg_loop *loop;
    nghttp2_session *sess;
    struct sockaddr_storage peer, local;
    sg_inbuf pre;                      /* bytes read before the preface was recognised */
    sg_outq out;
    sg_deferred flush, resume, reap;
    sg_timer idle_timer, write_timer, ping_timer, goaway_timer;
    h2_stream *streams, *dead;
    uint32_t nstreams, requests;
    uint64_t queued;                   /* bytes in all streams' `out` */
    uint64_t held;                     /* queued + out.bytes, as the worker's budget last counted it */
    sg_list_node budget_link;          /* in this thread's list of HTTP/2 connections */
    sg_deferred budget_check;
    sg_inbuf cookies;                  /* the crumbs of the header block being received, joined */
    uint32_t refused;                  /* header blocks refused so far */
    uint64_t last_rx_ms, rx_frames, ping_sent_ms, ping_rx_mark;
    h2_settings set;
    sg_h2_hblock hblock;
    sg_h2_bucket resets, glitches, control;
    sg_h2_scan scan;                   /* the client's frame headers, seen before nghttp2 sees them */
    int32_t scan_top;                  /* highest stream id of a HEADERS frame scanned */
    bool scan_first_done;              /* the client's first frame was scanned */
    bool held_ack;                     /* the client's SETTINGS ACK came first: fed after its SETTINGS */
    sg_h2_closed ended;                /* what RFC 9113 5.1 needs to know of closed streams */
    const char *fail_reason;           /* why a callback failed the session */
    bool readable, writable, rdhup;
    bool in_lib;                       /* inside nghttp2_session_mem_recv/mem_send */
    bool in_read;
    bool dying;                        /* GOAWAY queued for an error: close once it is out */
    bool draining;                     /* graceful: shutdown notice sent */
    bool goaway_sent;                  /* the final GOAWAY is queued: no new streams */
    bool ping_out;
    bool lingering;
    bool closed;
    sg_conn_stat stat;                 /* metrics (issue 12): open, idle or busy */
};

static const sg_downstream_ops h2_down_ops;

static void conn_close(h2_conn *c);
static void schedule_flush(h2_conn *c);
static void conn_read(h2_conn *c);
static void start_graceful(h2_conn *c);

/* ---------- small helpers ---------- */

static uint64_t now_ms(const h2_conn *c)
{
    return sg_loop_now(c->loop);
}

static const char *peer_host(const h2_conn *c, char *buf, size_t n)
{
    return sg_sockaddr_host((const struct sockaddr *)&c->peer, buf, n);
}

static void arm(h2_conn *c, sg_timer *t, uint64_t ms)
{
    if (ms == 0 || ms == SG_UNSET_MS) sg_timer_disarm(t);
    else sg_timer_arm(c->loop, t, ms);
}

static bool str_eq(sg_str s, const char *lit, size_t n)
{
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

#define STR_EQ(s, lit) str_eq((s), (lit), sizeof(lit) - 1)

static sg_str nv_str(const uint8_t *p, size_t n)
{
    return (sg_str){ (const char *)p, n };
}

/* ---------- transport: the only socket I/O (TLS plugs in here) ---------- */

static ssize_t transport_read(h2_conn *c, char *buf, size_t cap)
{
    return c->tls ? sg_tls_read(c->tls, buf, cap) : read(c->io.fd, buf, cap);
}

static sg_io_result transport_write(h2_conn *c, size_t *written)
{
    return c->tls ? sg_tls_flush(c->tls, &c->out, written) : sg_outq_flush(&c->out, c->io.fd, written);
}

/* ---------- configuration ---------- */

static void settings_defaults(h2_settings *s)
{
    *s = (h2_settings){
        .max_streams = 128, .preread = 65536, .max_field = 8192, .max_header = 32768,
        .max_headers = SG_H2_DEFAULT_MAX_HEADERS,
        .recv_budget = 256 * 1024, .idle_ms = 75000, .header_ms = 60000, .send_ms = 60000,
        .ping_interval_ms = 30000, .ping_timeout_ms = 20000,
    };
}

/* nginx takes connection-level HTTP/2 values from the default server of
 * the address; the header limits default to large_client_header_buffers. */
static void settings_from_conf(h2_settings *s, const sg_listen_group *g)
{
    settings_defaults(s);
    const sg_server_conf *srv = g ? g->default_server : NULL;
    if (!srv) return;
    const sg_h2_conf *h = &srv->h2;
    size_t bsz = srv->large_header_buffer_size, bnum = srv->large_header_buffers;
    s->max_streams = h->max_concurrent_streams;
    s->preread = h->body_preread_size;
    s->max_field = h->max_field_size ? h->max_field_size : (uint32_t)bsz;
    s->max_header = h->max_header_size ? h->max_header_size
                  : (uint32_t)(bsz * bnum > UINT32_MAX / 2 ? UINT32_MAX / 2 : bsz * bnum);
    s->max_headers = srv->max_headers;
    s->recv_budget = h->recv_buffer_size;
    s->max_requests = h->max_requests;
    s->idle_ms = h->idle_timeout_ms != SG_UNSET_MS ? h->idle_timeout_ms : srv->root->conf.keepalive_timeout_ms;
    s->header_ms = h->recv_timeout_ms != SG_UNSET_MS ? h->recv_timeout_ms : srv->client_header_timeout_ms;
    s->send_ms = srv->root->conf.send_timeout_ms;
    s->ping_interval_ms = h->ping_interval_ms;
    s->ping_timeout_ms = h->ping_timeout_ms;
}

/* ---------- the worker's output budget (WORKER_OUTPUT_BUDGET) ---------- */

static _Thread_local sg_list worker_conns;   /* this thread's HTTP/2 connections (budget_link) */
static _Thread_local uint64_t worker_held;   /* the sum of their `held` */

/* Brings c's share of its worker's total up to date; over the budget, the
 * check runs at the end of the iteration (never under the core's feet). */
static void account(h2_conn *c)
{
    uint64_t now = c->closed ? 0 : c->queued + c->out.bytes;
    worker_held = worker_held - c->held + now;
    c->held = now;
    if (worker_held > WORKER_OUTPUT_BUDGET && !c->closed) sg_loop_defer(c->loop, &c->budget_check);
}

static void on_budget_check(sg_deferred *d)
{
    while (worker_held > WORKER_OUTPUT_BUDGET) {
        h2_conn *big = NULL;
        for (sg_list_node *n = sg_list_first(&worker_conns); n; n = n->next) {
            h2_conn *c = sg_list_entry(n, h2_conn, budget_link);
            if (!big || c->held > big->held) big = c;
        }
        if (!big || big->held == 0) return;
        char host[64];
        sg_log_warn("client %s: %llu bytes of output held, over the worker's budget of %llu MB: "
                    "closing HTTP/2 connection", peer_host(big, host, sizeof(host)),
                    (unsigned long long)big->held, WORKER_OUTPUT_BUDGET >> 20);
        conn_close(big);
        if (!big->closed) return;   /* defensive: inside nghttp2, it closes once out */
    }
}

/* ---------- stream lifecycle ---------- */

static void list_insert(h2_stream **head, h2_stream *st)
{
    st->next = *head;
    if (*head) (*head)->pprev = &st->next;
    *head = st;
    st->pprev = head;
}

static void list_remove(h2_stream *st)
{
    *st->pprev = st->next;
    if (st->next) st->next->pprev = st->pprev;
    st->next = NULL;
    st->pprev = NULL;
}

static void on_stream_read_timeout(sg_timer *t);
static void on_stream_send_timeout(sg_timer *t);

static h2_stream *stream_new(h2_conn *c, int32_t id)
{
    h2_stream *st = sg_block_calloc(sizeof(*st));   /* core/blockcache.h: both, per request */
    st->out.lean = true;   /* a message at a time: no 16 KB block per stream (core/buf.h) */
    st->c = c;
    st->id = id;
    st->ex = sg_block_calloc(sizeof(sg_exchange));
    sg_timer_init(&st->read_timer, on_stream_read_timeout);
    sg_timer_init(&st->send_timer, on_stream_send_timeout);
    st->chunk = 8192;
    st->send_ms = c->set.send_ms;
    st->body_ms = 60000;
    st->last_rx_ms = now_ms(c);
    sg_exchange_init(st->ex, c->w, sg_worker_conf(c->w), &h2_down_ops, st);
    list_insert(&c->streams, st);
    c->nstreams++;
    sg_stats_req_begin();
    sg_conn_stat_busy(&c->stat, true);
    sg_timer_disarm(&c->idle_timer);
    return st;
}

/* The exchange is over for the core (or never started): log it, free it
 * with the request it holds (fields, arena). */
static void ex_free(h2_stream *st)
{
    if (!st->ex) return;
    st->ex->closed_later = !st->closed;   /* retired early: the stream keeps what must last */
    sg_exchange_finish(st->ex);
    if (st->ex->closed_later && st->ex->on_closed) {
        st->on_closed = st->ex->on_closed;
        st->on_closed_arg = st->ex->on_closed_arg;
    }
    sg_arena_free(&st->ex->req.arena);
    sg_block_free(st->ex, sizeof(sg_exchange));
    st->ex = NULL;
}

static void stream_free(h2_stream *st)
{
    sg_timer_disarm(&st->read_timer);
    sg_timer_disarm(&st->send_timer);
    ex_free(st);
    sg_stats_req_end(st->started);
    if (st->on_closed) st->on_closed(st->on_closed_arg);
    st->c->queued -= st->out.bytes;
    sg_outq_clear(&st->out);
    sg_inbuf_free(&st->in);
    free(st->trailers);
    sg_slab_free(st->tmp_hdrs);
    list_remove(st);
    sg_block_free(st, sizeof(*st));
}

/* Tells the core, once, that the response will not complete. */
static void stream_abort_ex(h2_stream *st)
{
    if (!st->ex || !st->started || st->ex_aborted || st->ex->resp_done) return;
    st->ex_aborted = true;
    st->ex->aborted = true;
    sg_exchange_on_abort(st->ex);
    if (!st->c->closed) sg_loop_defer(st->c->loop, &st->c->reap);   /* retire_ex */
}

/* RFC 8441: the backend ended its side of a tunnel first (the core keeps
 * its link): the client's side stays open, its bytes still go on. */
static bool tunnel_half_closed(const h2_stream *st)
{
    return st->ex && st->ex->tunnel && st->ex->up && !st->ex_aborted;
}

/* nghttp2 is done with the stream: end the exchange at the end of the
 * iteration (the core may be on the stack of the frame that closed it). */
static void stream_closed(h2_conn *c, h2_stream *st)
{
    st->closed = true;
    stream_abort_ex(st);
    sg_timer_disarm(&st->read_timer);
    sg_timer_disarm(&st->send_timer);
    list_remove(st);
    list_insert(&c->dead, st);
    c->nstreams--;
    sg_conn_stat_busy(&c->stat, c->nstreams > 0);
    sg_loop_defer(c->loop, &c->reap);
}

static void reset_stream(h2_stream *st, uint32_t code)
{
    if (st->closed) return;
    nghttp2_submit_rst_stream(st->c->sess, NGHTTP2_FLAG_NONE, st->id, code);
    schedule_flush(st->c);
}

/* ---------- abuse verdicts ---------- */

/* From inside a callback: remember why, fail the session; the caller of
 * mem_recv sends GOAWAY ENHANCE_YOUR_CALM and closes. */
static int fail_calm(h2_conn *c, const char *why)
{
    if (!c->fail_reason) c->fail_reason = why;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* Sends GOAWAY with `code` and closes once it is written. */
static void conn_fail(h2_conn *c, uint32_t code)
{
    if (c->dying || c->closed) return;
    c->dying = true;
    if (c->sess) nghttp2_session_terminate_session(c->sess, code);
    for (h2_stream *st = c->streams; st; st = st->next) stream_abort_ex(st);
    arm(c, &c->goaway_timer, LINGER_MS);
    schedule_flush(c);
}

/* ---------- request: headers ---------- */

static void add_header(h2_stream *st, sg_str name, sg_str value)
{
    sg_http_req *r = &st->ex->req;
    if (st->nhdrs == st->caphdrs) {
        uint32_t cap = st->caphdrs ? st->caphdrs * 2 : 16;
        sg_header *h = sg_slab_xmalloc(sizeof(sg_header) * cap);   /* core/slab.h: one per request */
        if (st->nhdrs) memcpy(h, r->headers, sizeof(sg_header) * st->nhdrs);
        sg_slab_free(st->tmp_hdrs);
        st->tmp_hdrs = r->headers = h;
        st->caphdrs = cap;
    }
    /* TE is hop-by-hop (only "trailers" is allowed in HTTP/2). */
    uint32_t flags = STR_EQ(name, "te") ? SG_H1_HDR_HOP : 0;
    r->headers[st->nhdrs++] = (sg_header){ name, value, flags };
    r->nheaders = st->nhdrs;
}

static void store_pseudo(h2_stream *st, sg_str name, sg_str v)
{
    sg_http_req *r = &st->ex->req;
    if (STR_EQ(name, ":method")) r->method = v;
    else if (STR_EQ(name, ":path")) r->request_uri = v;
    else if (STR_EQ(name, ":authority")) {
        st->authority = v;
        st->has_authority = true;   /* even empty: nginx answers it 400 */
    }
    else if (STR_EQ(name, ":protocol")) r->protocol = v;
    /* :scheme is checked by nghttp2; the connection decides $scheme */
}

/* RFC 9113 8.2.3: cookie crumbs are joined with "; " for HTTP/1.1 peers.
 * They are joined as they come, in the connection's buffer (one header
 * block at a time), into one field at the place of the first: a block of
 * a thousand crumbs costs their bytes, not a thousand fields. */
static void store_cookie(h2_conn *c, h2_stream *st, sg_str value)
{
    if (!st->cookie_at) {
        add_header(st, SG_STR("cookie"), SG_STR(""));
        st->cookie_at = st->nhdrs;
        c->cookies.len = 0;
    } else {
        sg_inbuf_append(&c->cookies, "; ", 2);
    }
    sg_inbuf_append(&c->cookies, value.p, value.n);
}

static void join_cookies(h2_conn *c, h2_stream *st)
{
    if (!st->cookie_at) return;
    sg_http_req *r = &st->ex->req;
    if (c->cookies.len)
        r->headers[st->cookie_at - 1].value = sg_arena_str(&r->arena, (sg_str){ c->cookies.p, c->cookies.len });
    sg_inbuf_free(&c->cookies);
}

static void store_field(h2_conn *c, h2_stream *st, sg_str name, sg_str value)
{
    if (STR_EQ(name, "cookie")) {
        store_cookie(c, st, value);
        return;
    }
    sg_arena *a = &st->ex->req.arena;
    sg_str v = sg_arena_str(a, value);
    if (name.n && name.p[0] == ':') {
        store_pseudo(st, name, v);
        return;
    }
    if (STR_EQ(name, "host")) st->has_host = true;
    else if (STR_EQ(name, "priority")) st->saw_priority = true;
    else if (STR_EQ(name, "expect") && value.n == 12 && strncasecmp(value.p, "100-continue", 12) == 0)
        st->expect_continue = true;
    add_header(st, sg_arena_str(a, name), v);
}

/* $host: the authority without port and trailing dot, lowercased; NULL
 * when nginx would answer 400 (http/host.c). */
static sg_str host_of(sg_arena *a, sg_str host, bool *bad)
{
    char *lh = sg_arena_alloc(a, host.n + 1);
    long hl = sg_http_host_lower(host, lh);
    if (hl < 0) {
        *bad = true;
        return SG_STR_NULL;
    }
    lh[hl] = '\0';
    return (sg_str){ lh, (size_t)hl };
}

/* Fills the rest of ex->req; returns an early status (400, 405, 431) or 0. */
static int build_request(h2_conn *c, h2_stream *st)
{
    sg_http_req *r = &st->ex->req;
    r->peer = (const struct sockaddr *)&c->peer;
    r->local = (const struct sockaddr *)&c->local;
    r->proxy_protocol = c->node.proxy;
    r->group = c->node.group;
    r->tls = c->tls;                   /* tls */
    r->https = c->tls != NULL;
    r->conn_number = c->node.number;
    r->conn_born_ms = c->node.born_ms;
    r->conn_requests = c->requests + 1;
    r->http_major = 2;
    r->http_minor = 0;
    r->uri = SG_STR("/");
    if (!r->headers) r->headers = sg_arena_alloc(&r->arena, sizeof(sg_header));
    join_cookies(c, st);
    sg_str host = st->authority;
    const sg_header *hh = sg_req_find_header(r, SG_STR("host"));
    bool bad_host = hh && sg_http_host_check(hh->value) < 0;
    if (!st->has_authority) {
        if (hh) host = hh->value;
    } else if (!st->has_host) {
        /* nginx turns :authority into a Host header ($http_host) */
        add_header(st, SG_STR("host"), st->authority);
    }
    r->host = (st->has_authority || hh) && !bad_host ? host_of(&r->arena, host, &bad_host) : SG_STR_NULL;
    if (st->refused) return st->refused;
    if (!r->method.n || bad_host) return 400;
    if (STR_EQ(r->method, "TRACE")) return 405;   /* as nginx, whatever the protocol */
    bool connect = STR_EQ(r->method, "CONNECT");
    if (connect && !r->protocol.n) {
        r->request_uri = st->authority;   /* nginx refuses CONNECT */
        return 405;
    }
    st->connect = connect;
    if (!r->request_uri.n) return 400;
    int bad = sg_http_target_split(r, r->request_uri);
    if (bad) return bad;
    return host.n ? 0 : 400;
}

static int64_t request_length(const h2_stream *st, bool end_stream)
{
    if (end_stream) return 0;
    const sg_header *h = sg_req_find_header(&st->ex->req, SG_STR("content-length"));
    uint64_t v;
    if (!st->connect && h && sg_str_to_u64(h->value, &v) && v <= INT64_MAX) return (int64_t)v;
    return -1;
}

/* The header block of a request is complete: start the exchange. */
static void request_ready(h2_conn *c, h2_stream *st, const nghttp2_frame *f)
{
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    sg_timer_disarm(&st->read_timer);
    st->in_ended = end;
    sg_exchange *ex = st->ex;
    int bad = build_request(c, st);
    if (st->tmp_hdrs) {   /* the block is complete: its fields at their size */
        sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * st->nhdrs);
        memcpy(h, st->tmp_hdrs, sizeof(sg_header) * st->nhdrs);
        ex->req.headers = h;
        sg_slab_free(st->tmp_hdrs);
        st->tmp_hdrs = NULL;
        st->caphdrs = st->nhdrs;   /* a later field would copy them out again */
    }
    ex->req.h2_stream_id = (uint32_t)st->id;   /* $http2_stream_id (logs, issue 12) */
    ex->req.head_length = c->hblock.wire_bytes;   /* $request_length counts the block as nginx: its payloads */
    ex->req_length = bad ? (end ? 0 : -1) : request_length(st, end);
    if (bad) ex->early_status = bad;
    if (!st->saw_priority) {
        /* RFC 9218's default is non-incremental (one stream after the
         * other); a proxy serves its streams side by side instead. */
        nghttp2_extpri pri = { .urgency = NGHTTP2_EXTPRI_DEFAULT_URGENCY, .inc = 1 };
        nghttp2_session_change_extpri_stream_priority(c->sess, st->id, &pri, 0);
    }
    c->requests++;
    sg_stats_req_head();
    if (c->set.max_requests && c->requests >= c->set.max_requests) start_graceful(c);
    st->started = true;
    sg_exchange_start(ex);   /* may answer at once */
}

/* ---------- request: body ---------- */

static void deliver(h2_stream *st, const char *p, size_t n)
{
    nghttp2_session_consume_stream(st->c->sess, st->id, n);
    sg_exchange_on_body(st->ex, p, n);
}

/* http2_body_preread_size bounds only what is buffered before the core
 * reads the body (nginx allows 0). Once it reads, the stream needs a
 * window the body can flow through, else a preread of 0 never lets the
 * client send a byte and a tiny one costs a round trip every few bytes
 * (nginx opens the window to its body buffer size then). Also re-run when
 * our SETTINGS are acknowledged: that shrinks every stream's window by the
 * change from the default 65535. */
static void open_body_window(h2_stream *st)
{
    h2_conn *c = st->c;
    if (!st->reading || st->closed || st->in_ended || !c->sess || c->set.preread >= BODY_WINDOW) return;
    if (nghttp2_session_get_stream_effective_local_window_size(c->sess, st->id) < BODY_WINDOW)
        nghttp2_session_set_local_window_size(c->sess, NGHTTP2_FLAG_NONE, st->id, BODY_WINDOW);
}

static bool body_wanted(const h2_stream *st)
{
    return st->ex && st->started && st->want_body && !st->ex_aborted && !st->closed;
}

static void try_body_end(h2_stream *st)
{
    if (!st->in_ended || st->in.len || st->body_end_sent || !body_wanted(st)) return;
    st->body_end_sent = true;
    sg_timer_disarm(&st->read_timer);
    if (st->ex->req_length != 0) sg_exchange_on_body_end(st->ex);
}

/* Hands held bytes over while the exchange keeps wanting them. */
static void feed_held(h2_stream *st)
{
    st->feed = false;
    while (st->in.len && body_wanted(st)) {
        size_t k = st->in.len < FEED_CHUNK ? st->in.len : FEED_CHUNK;
        deliver(st, st->in.p, k);
        sg_inbuf_consume(&st->in, k);
    }
    try_body_end(st);
}

/* After the response ended, nobody reads the rest of the body: drop it
 * (the stream is reset once the response is out). */
static bool body_useless(const h2_stream *st)
{
    return !st->ex || st->ex_aborted || st->closed || (st->ex->resp_done && !st->ex->up);
}

/* The response is out (stop_pending) and the client cannot send more on
 * the stream without a WINDOW_UPDATE: ask it to stop now, not after the
 * grace period. */
static void stop_if_blocked(h2_stream *st)
{
    if (st->stop_pending && nghttp2_session_get_stream_local_window_size(st->c->sess, st->id) <= 0)
        reset_stream(st, NGHTTP2_NO_ERROR);
}

static void on_request_data(h2_conn *c, h2_stream *st, const uint8_t *data, size_t len)
{
    st->last_rx_ms = now_ms(c);
    if (body_useless(st)) {
        if (!st->stop_pending) nghttp2_session_consume_stream(c->sess, st->id, len);
        return;
    }
    if (body_wanted(st) && st->in.len == 0) deliver(st, (const char *)data, len);
    else sg_inbuf_append(&st->in, (const char *)data, len);
}

/* ---------- nghttp2 callbacks: input ---------- */

static h2_stream *stream_of(nghttp2_session *s, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static bool take(h2_conn *c, sg_h2_bucket *b);

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud)
{
    h2_conn *c = ud;
    c->rx_frames++;
    sg_h2_verdict v = SG_H2_OK;
    if (hd->type == NGHTTP2_HEADERS) {
        sg_h2_hblock_begin(&c->hblock, c->set.max_field, c->set.max_header, c->set.max_headers);
        v = sg_h2_hblock_frame(&c->hblock, false, hd->length);
    } else if (hd->type == NGHTTP2_CONTINUATION) {
        v = sg_h2_hblock_frame(&c->hblock, true, hd->length);
    } else if (hd->type == NGHTTP2_PRIORITY && !take(c, &c->control)) {
        /* counted here: with RFC 9218 priorities nghttp2 reports no PRIORITY frame received */
        return fail_calm(c, "too many PRIORITY frames");
    }
    if (v == SG_H2_CALM)
        return fail_calm(c, c->hblock.continuations > SG_H2_MAX_CONTINUATIONS
                                ? "too many CONTINUATION frames" : "header block too large");
    return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2_stream *st = stream_new(c, f->hd.stream_id);
    nghttp2_session_set_stream_user_data(s, st->id, st);
    sg_h2_closed_opened(&c->ended, st->id);
    sg_inbuf_free(&c->cookies);   /* a block cut short before may have left crumbs */
    arm(c, &st->read_timer, c->set.header_ms);
    return 0;
}

/* A request's header block is over max_headers or the list size: it is
 * answered (400 / 431) without its fields. nghttp2 goes on decoding the
 * rest of the block, which keeps HPACK in step, and none of it is kept. */
static int refuse_block(h2_conn *c, h2_stream *st, sg_h2_verdict v)
{
    char host[64];
    st->refused = v == SG_H2_TOO_MANY ? 400 : 431;
    if (v == SG_H2_TOO_MANY)
        sg_log_info("client %s sent too many header lines", peer_host(c, host, sizeof(host)));
    if (++c->refused >= SG_H2_MAX_REFUSED) return fail_calm(c, "too many refused header blocks");
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    h2_conn *c = ud;
    sg_h2_verdict v = sg_h2_hblock_field(&c->hblock, name, namelen, valuelen);
    if (v == SG_H2_CALM) return fail_calm(c, "header list far over the limit (HPACK bomb)");
    h2_stream *st = stream_of(s, f->hd.stream_id);
    if (!st || st->started) return 0;      /* trailers are counted, not kept */
    if (v != SG_H2_OK) return st->refused ? 0 : refuse_block(c, st, v);
    store_field(c, st, nv_str(name, namelen), nv_str(value, valuelen));
    return 0;
}

/* nghttp2 found a field it would reset the stream for. A bad Host or
 * :authority (an empty one, a control byte) is answered 400 as nginx
 * does; anything else still resets the stream. */
static int on_invalid_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                             size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                             void *ud)
{
    (void)value, (void)valuelen, (void)flags, (void)ud;
    h2_stream *st = stream_of(s, f->hd.stream_id);
    sg_str n = nv_str(name, namelen);
    if (!st || st->started || !(STR_EQ(n, "host") || STR_EQ(n, ":authority")))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (!st->refused) st->refused = 400;
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    h2_conn *c = ud;
    /* The connection window is ours to give back at once: memory is
     * bounded by each stream's window, released only as the core reads. */
    nghttp2_session_consume_connection(s, len);
    h2_stream *st = stream_of(s, id);
    if (!st || !st->started) {
        nghttp2_session_consume_stream(s, id, len);
        return 0;
    }
    on_request_data(c, st, data, len);
    return 0;
}

static bool take(h2_conn *c, sg_h2_bucket *b)
{
    return sg_h2_bucket_take(b, now_ms(c));
}

static void on_ping_ack(h2_conn *c, const nghttp2_ping *p)
{
    if (memcmp(p->opaque_data, PING_DRAIN, 8) == 0 && c->draining && !c->goaway_sent) {
        sg_timer_disarm(&c->goaway_timer);
        start_graceful(c);   /* second step */
    } else if (memcmp(p->opaque_data, PING_ALIVE, 8) == 0) {
        c->ping_out = false;
    }
}

static int on_control_frame(h2_conn *c, const nghttp2_frame *f)
{
    switch (f->hd.type) {
    case NGHTTP2_RST_STREAM:
        if (!take(c, &c->resets)) return fail_calm(c, "too many stream resets (rapid reset)");
        return 0;
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) on_ping_ack(c, &f->ping);
        else if (!take(c, &c->control)) return fail_calm(c, "too many PING frames");
        return 0;
    case NGHTTP2_SETTINGS:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) {
            for (h2_stream *st = c->streams; st; st = st->next) open_body_window(st);
        } else if (!take(c, &c->control)) {
            return fail_calm(c, "too many SETTINGS frames");
        }
        return 0;
    default:
        return 0;
    }
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    h2_stream *st = stream_of(s, f->hd.stream_id);
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type == NGHTTP2_DATA && f->hd.length == 0 && !end && !take(c, &c->control))
        return fail_calm(c, "too many empty DATA frames");
    if (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) return on_control_frame(c, f);
    if (!st) return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        request_ready(c, st, f);
        return 0;
    }
    if (end && st->started) {
        st->in_ended = true;
        try_body_end(st);
    }
    if (!end && f->hd.type == NGHTTP2_DATA) stop_if_blocked(st);
    return 0;
}

/* Frames built to make us reset streams cost us an exchange each
 * (MadeYouReset): nghttp2 reports every such frame here. */
static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
    h2_conn *c = ud;
    if (!take(c, &c->glitches)) return fail_calm(c, "too many invalid frames");
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    h2_stream *st = stream_of(s, id);
    if (st && st->in_ended && !st->body_end_sent && tunnel_half_closed(st)) {
        /* Its client ended a half-closed tunnel while its last bytes
         * waited for the backend (a window at most): they go with the end. */
        if (st->in.len) sg_exchange_on_body(st->ex, st->in.p, st->in.len);
        sg_inbuf_consume(&st->in, st->in.len);
        st->body_end_sent = true;
        if (st->ex->up) sg_exchange_on_body_end(st->ex);
    }
    if (st) stream_closed(ud, st);
    return 0;
}

/* ---------- nghttp2 callbacks: output ---------- */

static ssize_t on_read_data(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    h2_stream *st = src->ptr;
    size_t n = st->out.bytes < len ? st->out.bytes : len;
    if (n == 0 && !st->out_eof) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (st->out_eof && n == st->out.bytes) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        /* The last DATA leaves the stream open for the trailing HEADERS,
         * which carries END_STREAM (nghttp2 queues it after this frame). */
        if (st->ntrailers && nghttp2_submit_trailer(s, id, st->trailers, st->ntrailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        st->ntrailers = 0;          /* nghttp2 copied them */
        free(st->trailers);
        st->trailers = NULL;
    } else if (n == st->out.bytes && !st->in_ended) {
        /* the queue runs dry: the frame goes as usual, the item ends */
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        st->parked = true;
    }
    return (ssize_t)n;
}

/* DATA payload goes from the stream queue straight into the output. */
static int on_send_data(nghttp2_session *s, nghttp2_frame *f, const uint8_t *framehd, size_t len,
                        nghttp2_data_source *src, void *ud)
{
    h2_conn *c = ud;
    h2_stream *st = src->ptr;
    sg_outq_append(&c->out, framehd, 9);
    sg_outq_move(&st->out, &c->out, len);
    c->queued -= len;
    st->last_tx_ms = now_ms(c);
    return c->out.bytes >= OUT_CAP ? NGHTTP2_ERR_PAUSE : 0;
}

static ssize_t on_data_length(nghttp2_session *s, uint8_t type, int32_t id, int32_t conn_window,
                              int32_t stream_window, uint32_t max_frame, void *ud)
{
    h2_stream *st = stream_of(s, id);
    int64_t n = st ? st->chunk : 16384;
    if (n > conn_window) n = conn_window;
    if (n > stream_window) n = stream_window;
    if (n > (int64_t)max_frame) n = max_frame;
    return n > 0 ? (ssize_t)n : 1;
}

/* Our RST_STREAM crosses whatever the client already sent on the stream:
 * those frames are to be ignored (RFC 9113 5.1), not errors. Not so if
 * the client had ended its side (nghttp2 still has the stream, in
 * half-closed remote): nothing of it can be in flight. */
static void note_reset(h2_conn *c, int32_t id)
{
    nghttp2_stream *ns = nghttp2_session_find_stream(c->sess, id);
    if (!ns || nghttp2_stream_get_state(ns) != NGHTTP2_STREAM_STATE_HALF_CLOSED_REMOTE)
        sg_h2_closed_reset(&c->ended, id);
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.last_stream_id != INT32_MAX) c->goaway_sent = true;
    if (f->hd.type == NGHTTP2_RST_STREAM) note_reset(c, f->hd.stream_id);
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    h2_stream *st = end ? stream_of(s, f->hd.stream_id) : NULL;
    /* The response is complete but the client still has the request side
     * open: tell it to stop sending (RFC 9113 8.1), as nginx does, once it
     * cannot send more without a WINDOW_UPDATE (the window is no longer
     * given back), or after a grace period; never a half-closed tunnel's
     * client, whose bytes still go on. Until then the stream stays open,
     * so what the client sent meanwhile is still checked by nghttp2 (and
     * a request that ends closes it cleanly), where after our RST_STREAM
     * it would have to be ignored (RFC 9113 5.1). */
    if (st && !st->in_ended && !st->closed && !tunnel_half_closed(st)) {
        st->stop_pending = true;
        arm(c, &st->send_timer, STOP_GRACE_MS);
        stop_if_blocked(st);
    }
    return 0;
}

static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
    h2_stream *st = stream_of(s, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS) return 0;
    sg_log_error("could not send response headers on HTTP/2 stream %d: %s", st->id, nghttp2_strerror(err));
    stream_abort_ex(st);
    reset_stream(st, NGHTTP2_INTERNAL_ERROR);
    return 0;
}

/* ---------- session ---------- */

/* Callbacks and options are built once per process: every session copies
 * them at creation, so all worker threads share them read-only. */
static nghttp2_session_callbacks *cbs;
static nghttp2_option *opt;

static void make_callbacks(void)
{
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, on_invalid_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
    nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, on_data_length);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
}

static void make_options(void)
{
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_max_send_header_block_length(opt, MAX_SEND_HEADERS);
    nghttp2_option_set_max_outbound_ack(opt, 256);
    if (nghttp2_option_set_stream_reset_rate_limit)
        nghttp2_option_set_stream_reset_rate_limit(opt, SG_H2_RESET_BURST, SG_H2_RESET_RATE);
    if (nghttp2_option_set_max_continuations)
        nghttp2_option_set_max_continuations(opt, SG_H2_MAX_CONTINUATIONS * 2);
}

static void make_session_params(void)
{
    make_callbacks();
    make_options();
}

static bool session_start(h2_conn *c)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_session_params);
    if (nghttp2_session_server_new3(&c->sess, cbs, c, opt, sg_h2_mem()) != 0) return false;
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->set.max_streams },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->set.preread },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->set.max_header },
        { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
        { NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
    };
    if (nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
        return false;
    nghttp2_session_set_local_window_size(c->sess, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    uint64_t now = now_ms(c);
    sg_h2_bucket_init(&c->resets, SG_H2_RESET_BURST, SG_H2_RESET_RATE, now);
    sg_h2_bucket_init(&c->glitches, SG_H2_GLITCH_BURST, SG_H2_GLITCH_RATE, now);
    sg_h2_bucket_init(&c->control, SG_H2_CONTROL_BURST, SG_H2_CONTROL_RATE, now);
    sg_h2_scan_init(&c->scan, PREFACE_LEN);
    sg_h2_closed_init(&c->ended, c->set.max_streams < 1024 ? c->set.max_streams : 1024);
    arm(c, &c->idle_timer, c->set.idle_ms);
    arm(c, &c->ping_timer, c->set.ping_interval_ms);
    return true;
}

/* ---------- input ---------- */

/* Feeds bytes to nghttp2; a failed session gets its GOAWAY. False if
 * the connection is failing. */
static bool session_feed(h2_conn *c, const uint8_t *data, size_t n)
{
    if (c->dying) return false;
    if (n == 0) return true;
    c->in_lib = true;
    ssize_t r = nghttp2_session_mem_recv(c->sess, data, n);
    c->in_lib = false;
    if (r >= 0) return !c->dying;
    char host[64];
    uint32_t code = NGHTTP2_PROTOCOL_ERROR;
    if (c->fail_reason || r == NGHTTP2_ERR_FLOODED || r == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        code = NGHTTP2_ENHANCE_YOUR_CALM;
        sg_log_warn("client %s: %s, closing HTTP/2 connection", peer_host(c, host, sizeof(host)),
                    c->fail_reason ? c->fail_reason : nghttp2_strerror((int)r));
    } else {
        sg_log_info("client %s sent invalid HTTP/2 data: %s", peer_host(c, host, sizeof(host)),
                    nghttp2_strerror((int)r));
    }
    conn_fail(c, code);
    return false;
}

/* The RFC 9113 rules nghttp2 leaves to us (h2_scan.h), checked on a frame
 * before nghttp2 sees it and after it has processed every earlier frame.
 * Returns the connection error to answer with, or 0. */
static uint32_t frame_check(h2_conn *c, const sg_h2_frame *f, const char **why)
{
    switch (f->type) {
    case SG_H2_T_PUSH_PROMISE:
        /* RFC 9113 8.4: a client cannot push. Judged on the frame header
         * alone, as nginx does: nghttp2 would wait for the payload. */
        *why = "PUSH_PROMISE";
        return NGHTTP2_PROTOCOL_ERROR;
    case SG_H2_T_PRIORITY:
        /* RFC 9113 6.3 and 5.3.1; the latter is a stream error, but the
         * stream may be idle, where RST_STREAM may not be sent (5.1) */
        *why = f->stream_id == 0 ? "PRIORITY on stream 0" : "a stream that depends on itself";
        return f->stream_id == 0 || f->dep == f->stream_id ? NGHTTP2_PROTOCOL_ERROR : 0;
    case SG_H2_T_DATA:
    case SG_H2_T_HEADERS:
        break;
    default:
        return 0;
    }
    if (f->stream_id > c->ended.last || nghttp2_session_find_stream(c->sess, f->stream_id)) return 0;
    bool headers = f->type == SG_H2_T_HEADERS;
    switch (sg_h2_closed_frame(&c->ended, f->stream_id, headers)) {
    case SG_H2_CLOSED_BAD_ID:
        *why = "a new stream numbered below an earlier one";
        return NGHTTP2_PROTOCOL_ERROR;
    case SG_H2_CLOSED_STREAM:
        /* HEADERS reopening a closed stream is a PROTOCOL_ERROR, as nginx
         * answers any HEADERS whose id is not above the last one (RFC
         * 9113 5.1.1 treats it as a stream id that does not grow) */
        *why = headers ? "HEADERS on a closed stream" : "DATA on a closed stream";
        return headers ? NGHTTP2_PROTOCOL_ERROR : NGHTTP2_STREAM_CLOSED;
    default:   /* late, after our RST_STREAM: nghttp2 ignores it */
        if (f->flags & SG_H2_F_END_STREAM) sg_h2_closed_peer_done(&c->ended, f->stream_id);
        return 0;
    }
}

static const uint8_t settings_ack[SG_H2_FRAME_HD_LEN] = { 0, 0, 0, SG_H2_T_SETTINGS, SG_H2_F_ACK, 0, 0, 0, 0 };

/* nghttp2 insists on SETTINGS as the client's first frame (RFC 9113 3.4);
 * nginx takes any frame, and leaves the client's settings at their
 * defaults. So the first frame header is held back (session_input) until
 * it is complete, then: a SETTINGS goes on; a SETTINGS ACK (of ours,
 * which the client may send before its own SETTINGS) is kept until the
 * client's SETTINGS is in, so that nghttp2 sees both in order; any other
 * frame is preceded by the empty SETTINGS the client could have sent.
 * p[*fed..start) precede the frame, whose header (hd bytes, in the scan's
 * buffer) ends at `end` in p. Returns 1 if the frame goes on to the other
 * checks, 0 if it was consumed, -1 if the connection is failing. */
static int first_frame(h2_conn *c, const sg_h2_frame *f, const uint8_t *p, size_t *fed, size_t start,
                       size_t end)
{
    static const uint8_t empty_settings[SG_H2_FRAME_HD_LEN] = { 0, 0, 0, SG_H2_T_SETTINGS, 0, 0, 0, 0, 0 };
    size_t hd = f->dep >= 0 ? SG_H2_FRAME_HD_LEN + 4 : SG_H2_FRAME_HD_LEN;
    if (!session_feed(c, p + *fed, start - *fed)) return -1;
    *fed = end;
    bool settings = f->type == SG_H2_T_SETTINGS;
    if (settings && (f->flags & SG_H2_F_ACK) && f->length == 0 && !c->held_ack) {
        c->held_ack = true;
        return 0;
    }
    c->scan_first_done = true;
    if (!settings || (f->flags & SG_H2_F_ACK)) {
        if (!session_feed(c, empty_settings, sizeof(empty_settings))) return -1;
        if (c->held_ack) {
            c->held_ack = false;
            if (!session_feed(c, settings_ack, sizeof(settings_ack))) return -1;
        }
    }
    return session_feed(c, c->scan.buf, hd) ? 1 : -1;
}

/* Input goes to nghttp2 in one piece, or cut just before each frame that
 * frame_check must judge (it asks nghttp2 about the stream). */
static void session_input(h2_conn *c, const char *data, size_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    size_t off = 0, fed = 0;
    while (off < n) {
        sg_h2_frame f;
        size_t start;
        bool found;
        size_t k = sg_h2_scan_next(&c->scan, p + off, n - off, &f, &start, &found);
        start += off;
        off += k;
        if (!found) break;
        if (!c->scan_first_done) {
            int r = first_frame(c, &f, p, &fed, start, off);
            if (r < 0) return;
            if (r == 0) continue;
            start = fed;   /* its header is in: the checks below still come before its payload */
        } else if (c->held_ack) {
            /* the client's SETTINGS is complete: now its early ACK */
            if (!session_feed(c, p + fed, start - fed)) return;
            fed = start;
            c->held_ack = false;
            if (!session_feed(c, settings_ack, sizeof(settings_ack))) return;
        }
        if (f.type == SG_H2_T_RST_STREAM) {
            sg_h2_closed_peer_done(&c->ended, f.stream_id);
            continue;
        }
        bool on_stream = f.type == SG_H2_T_DATA || f.type == SG_H2_T_HEADERS;
        /* streams above every HEADERS so far are new or idle: nghttp2's */
        bool seen = on_stream && f.stream_id <= c->scan_top;
        if (f.type == SG_H2_T_HEADERS && f.stream_id > c->scan_top) c->scan_top = f.stream_id;
        if (!seen && f.type != SG_H2_T_PRIORITY && f.type != SG_H2_T_PUSH_PROMISE) continue;
        if (!session_feed(c, p + fed, start - fed)) return;
        fed = start;
        const char *why = NULL;
        uint32_t code = frame_check(c, &f, &why);
        if (code) {
            char host[64];
            sg_log_info("client %s sent %s (stream %d), closing HTTP/2 connection",
                        peer_host(c, host, sizeof(host)), why, f.stream_id);
            conn_fail(c, code);
            return;
        }
    }
    /* bytes of a frame header not complete yet, while it may be the first
     * frame: held in the scan's buffer, fed by first_frame() */
    size_t partial = c->scan.have < n - fed ? c->scan.have : n - fed;
    if (!c->scan_first_done) {
        session_feed(c, p + fed, n - fed - partial);
    } else if (c->held_ack && c->scan.skip == 0) {
        if (!session_feed(c, p + fed, n - fed - partial)) return;
        c->held_ack = false;
        if (!session_feed(c, settings_ack, sizeof(settings_ack))) return;
        session_feed(c, p + n - partial, partial);
    } else {
        session_feed(c, p + fed, n - fed);
    }
}

/* A client that speaks HTTP/1.x: hand it to the HTTP/1.1 codec with what
 * was read (c->pre). Returns false: c is gone either way. */
static bool fallback_h1(h2_conn *c)
{
    int fd = c->io.fd;
    sg_worker *w = c->w;
    sg_loop_del(c->loop, &c->io);
    struct sockaddr_storage peer = c->peer, local = c->local;
    sg_inbuf in = c->pre;
    c->pre = (sg_inbuf){ 0 };
    c->io.fd = -1;      /* the HTTP/1.1 codec owns the socket now */
    struct sockaddr_storage *proxy = c->node.proxy;   /* so is the PROXY header's news */
    c->node.proxy = NULL;
    conn_close(c);
    free(sg_worker_pass_proxy(w, proxy));
    sg_h1_server_accept_pre(w, c->node.group, fd, (struct sockaddr *)&peer, sizeof(peer),
                            (struct sockaddr *)&local, sizeof(local), in.p, in.len);
    free(sg_worker_pass_proxy(w, NULL));   /* not taken: the codec refused the connection */
    sg_inbuf_free(&in);
    return false;
}

typedef enum { FIRST_WAIT, FIRST_H2, FIRST_H1 } first_bytes;

/* What the first bytes on an `http2` listener are. Over TLS, ALPN chose h2:
 * they are the preface. On a plain listener, HTTP/1.x is told
 * by its request line: a method token, a space, and a line that ends with
 * an HTTP/ version (the HTTP/1.1 codec judges the rest). Anything else is
 * an HTTP/2 connection preface, right or wrong, "PRI" first of all (RFC
 * 9113 3.4 reserves it for the preface): nghttp2 checks it, and a wrong
 * one is a connection error, GOAWAY PROTOCOL_ERROR (3.4), not a 400 from
 * a codec the client does not speak. */
static first_bytes first_bytes_kind(const char *p, size_t n, bool tls)
{
    size_t k = n < PREFACE_LEN ? n : PREFACE_LEN;
    if (memcmp(p, PREFACE, k) == 0) return n < PREFACE_LEN ? FIRST_WAIT : FIRST_H2;
    if (tls || (n >= 4 && memcmp(p, "PRI ", 4) == 0)) return FIRST_H2;
    size_t i = 0;
    while (i < n && (p[i] == '\r' || p[i] == '\n')) i++;   /* RFC 9112 2.2: empty lines first */
    size_t m = i;
    while (m < n && sg_h1_is_tchar((unsigned char)p[m])) m++;
    const char *eol = m < n ? memchr(p + m, '\n', n - m) : NULL;
    if (m < n && (m == i || p[m] != ' ')) return FIRST_H2;
    if (!eol) return n < PEEK_MAX ? FIRST_WAIT : FIRST_H1;   /* a long line: the codec's limits */
    const char *end = eol > p && eol[-1] == '\r' ? eol - 1 : eol, *v = end;
    while (v > p + m && v[-1] != ' ') v--;
    return end - v >= 5 && memcmp(v, "HTTP/", 5) == 0 ? FIRST_H1 : FIRST_H2;
}

/* Input before the preface is recognised. Returns false if c is gone. */
static bool preface_input(h2_conn *c, const char *data, size_t n)
{
    sg_inbuf_append(&c->pre, data, n);
    first_bytes kind = first_bytes_kind(c->pre.p, c->pre.len, c->tls != NULL);
    if (kind == FIRST_WAIT) return true;
    if (kind == FIRST_H1) return fallback_h1(c);
    if (!session_start(c)) {
        sg_log_error("HTTP/2 session could not be created");
        conn_close(c);
        return false;
    }
    sg_inbuf in = c->pre;
    c->pre = (sg_inbuf){ 0 };
    session_input(c, in.p, in.len);
    sg_inbuf_free(&in);
    return true;
}

/* Everything read goes through here. False if c is gone. */
static bool conn_input(h2_conn *c, const char *data, size_t n)
{
    c->last_rx_ms = now_ms(c);
    if (c->sess) session_input(c, data, n);
    else if (!preface_input(c, data, n)) return false;
    schedule_flush(c);   /* also sends our SETTINGS as soon as the preface is in */
    return true;
}

/* Input is parsed in place by nghttp2, and the core may run inside that
 * parse (a request completes and is answered at once). The worker's
 * scratch buffer is not safe for this: the core fills it too (static
 * files are read into it), which would overwrite the frames not parsed
 * yet. So HTTP/2 reads into a buffer of its own, one per thread. */
static char *read_buffer(void)
{
    static _Thread_local char buf[SG_SCRATCH_SIZE];
    return buf;
}

static bool input_paused(const h2_conn *c)
{
    return c->out.bytes >= OUT_CAP || c->dying;
}

static void conn_read(h2_conn *c)
{
    if (c->in_read || c->closed) return;
    c->in_read = true;
    size_t budget = c->set.recv_budget;
    while (!c->closed && c->readable && (c->lingering || !input_paused(c))) {
        if (budget == 0) {
            sg_loop_defer(c->loop, &c->resume);   /* let the other connections read too */
            break;
        }
        char *buf = read_buffer();
        ssize_t n = transport_read(c, buf, SG_SCRATCH_SIZE);
        if (n > 0) {
            if ((size_t)n < SG_SCRATCH_SIZE && !c->rdhup && !(c->tls && sg_tls_pending(c->tls)))
                c->readable = false;
            budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
            if (!c->lingering && !conn_input(c, buf, (size_t)n)) return;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            break;
        }
        c->in_read = false;
        conn_close(c);   /* EOF or error: HTTP/2 has no half-close */
        return;
    }
    c->in_read = false;
}

/* ---------- output ---------- */

/* Serializes frames into c->out up to OUT_CAP. False if the session failed. */
static bool produce(h2_conn *c)
{
    c->in_lib = true;
    while (c->out.bytes < OUT_CAP) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->sess, &data);
        if (n < 0) {
            c->in_lib = false;
            sg_log_error("HTTP/2 session failed: %s", nghttp2_strerror((int)n));
            return false;
        }
        if (n == 0) break;
        sg_outq_append(&c->out, data, (size_t)n);
    }
    c->in_lib = false;
    return true;
}

/* Streams whose queue went low get more from the core, as long as the
 * connection is under the cap at which h2_pending() reports them full.
 * (Not a lower mark: streams the client does not read legitimately hold
 * up to SG_HIGH_WATER each, and two of them would keep every other
 * stream of the connection paused forever.) */
static void wake_drained(h2_conn *c)
{
    for (h2_stream *st = c->streams; st && c->queued < QUEUE_CAP; st = st->next) {
        sg_exchange *ex = st->ex;
        if (ex && st->started && ex->waiting_drain && st->out.bytes < SG_LOW_WATER && !st->ex_aborted) {
            ex->waiting_drain = false;
            sg_exchange_on_drain(ex);
        }
    }
}

static void linger_start(h2_conn *c)
{
    c->lingering = true;
    if (c->tls) sg_tls_shutdown(c->tls);
    shutdown(c->io.fd, SHUT_WR);
    arm(c, &c->goaway_timer, LINGER_MS);
    c->readable = true;
    conn_read(c);
}

/* Done when nghttp2 wants nothing more (GOAWAY both ways, or a fatal
 * GOAWAY sent), or our final GOAWAY is out and no stream is left. */
static void check_done(h2_conn *c)
{
    if (c->closed || c->lingering || c->out.bytes || !c->sess) return;
    bool lib_done = !nghttp2_session_want_read(c->sess) && !nghttp2_session_want_write(c->sess);
    if (c->dying || lib_done || (c->goaway_sent && c->nstreams == 0)) linger_start(c);
}

static void do_flush(h2_conn *c)
{
    if (c->closed || c->lingering) return;
    bool was_paused = input_paused(c);
    for (;;) {
        if (c->sess && !produce(c)) {
            conn_close(c);
            return;
        }
        if (c->out.bytes == 0 || !c->writable) break;
        size_t written = 0;
        sg_io_result r = transport_write(c, &written);
        if (r == SG_IO_ERROR) {
            conn_close(c);
            return;
        }
        if (r == SG_IO_AGAIN) {
            c->writable = false;
            if (written > 0 || !sg_timer_armed(&c->write_timer)) arm(c, &c->write_timer, c->set.send_ms);
            break;
        }
    }
    if (c->out.bytes == 0) sg_timer_disarm(&c->write_timer);
    account(c);
    if (c->sess) wake_drained(c);
    if (was_paused && !input_paused(c)) sg_loop_defer(c->loop, &c->resume);
    check_done(c);
}

static void on_flush(sg_deferred *d)
{
    do_flush((h2_conn *)((char *)d - offsetof(h2_conn, flush)));
}

static void schedule_flush(h2_conn *c)
{
    if (!c->closed) sg_loop_defer(c->loop, &c->flush);
}

/* Deferred: held request bytes to streams that want them again, then
 * socket input that was left unread. */
static void on_resume(sg_deferred *d)
{
    h2_conn *c = (h2_conn *)((char *)d - offsetof(h2_conn, resume));
    for (h2_stream *st = c->streams; st && !c->closed; st = st->next)
        if (st->feed) feed_held(st);
    schedule_flush(c);
    conn_read(c);
}

/* The core has produced the whole answer, or given up on it, and holds no
 * upstream for it: what is left of the stream is its output queue, which
 * may wait long for a client that does not read (a refused request's
 * answer to a window of 0). The request's state goes now, not when the
 * answer is out: a stalled stream costs its unsent bytes and little else. */
static bool ex_retirable(const h2_stream *st)
{
    return st->ex && st->started && !st->closed && (st->ex_aborted || (st->out_eof && !st->ex->up));
}

static void retire_ex(h2_conn *c, h2_stream *st)
{
    sg_timer_disarm(&st->read_timer);
    if (st->in.len && c->sess) nghttp2_session_consume_stream(c->sess, st->id, st->in.len);
    sg_inbuf_free(&st->in);
    st->feed = false;
    ex_free(st);
}

static void on_reap(sg_deferred *d)
{
    h2_conn *c = (h2_conn *)((char *)d - offsetof(h2_conn, reap));
    while (c->dead) stream_free(c->dead);
    if (c->closed) return;
    for (h2_stream *st = c->streams; st; st = st->next)
        if (ex_retirable(st)) retire_ex(c, st);
    if (c->nstreams == 0 && !c->draining) arm(c, &c->idle_timer, c->set.idle_ms);
    schedule_flush(c);
}

/* ---------- downstream ops (called by the core) ---------- */

static bool skip_response_header(sg_str name)
{
    static const sg_str drop[] = {
        SG_STR("connection"), SG_STR("keep-alive"), SG_STR("proxy-connection"), SG_STR("transfer-encoding"),
        SG_STR("upgrade"), SG_STR("content-length"),
    };
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (sg_str_caseeq(name, drop[i])) return true;
    return false;
}

static nghttp2_nv make_nv(sg_str name, sg_str value)
{
    return (nghttp2_nv){ (uint8_t *)name.p, (uint8_t *)value.p, name.n, value.n, NGHTTP2_NV_FLAG_NONE };
}

static sg_str lower_copy(sg_arena *a, sg_str s)
{
    char *p = sg_arena_alloc(a, s.n + 1);
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.p[i];
        p[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
    }
    return (sg_str){ p, s.n };
}

/* The fields go into `a`, a scratch arena of the caller's: nghttp2 copies
 * them when the head is submitted, and the exchange's own arena lives as
 * long as the stream (an idle gRPC call would keep them for nothing). */
static size_t response_nv(sg_arena *a, const sg_response *resp, nghttp2_nv **out)
{
    nghttp2_nv *nv = sg_arena_alloc(a, sizeof(nghttp2_nv) * (resp->nheaders + 4));
    size_t n = 0;
    char *num = sg_arena_alloc(a, 32);
    size_t k = sg_u64_to_dec(num, (uint64_t)(resp->status > 0 ? resp->status : 0));
    nv[n++] = make_nv(SG_STR(":status"), (sg_str){ num, k });
    /* proxy_pass_header Server / Date: the backend's go instead of ours */
    if (!sg_response_has(resp, "server")) nv[n++] = make_nv(SG_STR("server"), SG_STR("streamgate"));
    if (!sg_response_has(resp, "date")) nv[n++] = make_nv(SG_STR("date"), sg_http_date());
    bool bodyless = resp->status < 200 || resp->status == 204 || resp->status == 304;
    if (resp->content_length >= 0 && !bodyless) {
        k = sg_u64_to_dec(num + 8, (uint64_t)resp->content_length);
        nv[n++] = make_nv(SG_STR("content-length"), (sg_str){ num + 8, k });
    }
    for (size_t i = 0; i < resp->nheaders; i++) {
        const sg_header *h = &resp->headers[i];
        if (skip_response_header(h->name)) continue;
        nv[n++] = make_nv(lower_copy(a, h->name), h->value);
    }
    *out = nv;
    return n;
}

static void stream_send_params(h2_stream *st, const sg_exchange *ex)
{
    const sg_location *loc = ex->req.loc ? ex->req.loc : (ex->req.srv ? ex->req.srv->root : NULL);
    if (!loc) return;
    st->chunk = loc->conf.http2_chunk_size ? loc->conf.http2_chunk_size : 8192;
    st->send_ms = loc->conf.send_timeout_ms;
}

static void h2_send_head(sg_exchange *ex, const sg_response *resp)
{
    h2_stream *st = ex->down_ctx;
    h2_conn *c = st->c;
    if (st->closed || st->ex_aborted || st->head_sent || resp->status == 101) return;
    nghttp2_nv *nv;
    sg_arena tmp;
    sg_arena_init(&tmp, 1024);
    size_t n = response_nv(&tmp, resp, &nv);
    if (resp->status < 200) {   /* interim: 100, 103 */
        nghttp2_submit_headers(c->sess, NGHTTP2_FLAG_NONE, st->id, NULL, nv, n, NULL);
        sg_arena_free(&tmp);
        schedule_flush(c);
        return;
    }
    stream_send_params(st, ex);
    bool head_req = STR_EQ(ex->req.method, "HEAD");
    st->no_body = !resp->has_body || head_req || resp->status == 204 || resp->status == 304;
    st->head_sent = true;
    ex->resp_head_sent = true;
    nghttp2_data_provider prd = { .source.ptr = st, .read_callback = on_read_data };
    int rv = nghttp2_submit_response(c->sess, st->id, nv, n, st->no_body ? NULL : &prd);
    sg_arena_free(&tmp);   /* nghttp2 has its copy */
    if (rv != 0) {
        sg_log_error("HTTP/2 response on stream %d failed: %s", st->id, nghttp2_strerror(rv));
        ex->aborted = st->ex_aborted = true;
        reset_stream(st, NGHTTP2_INTERNAL_ERROR);
    }
    schedule_flush(c);
}

static void resume_data(h2_stream *st)
{
    if (st->closed) return;
    if (st->parked) {
        if (!st->out.bytes && !st->out_eof) return;
        /* The same provider again; END_STREAM at its EOF, as for the
         * response's first item (nghttp2_submit_response). */
        nghttp2_data_provider prd = { .source.ptr = st, .read_callback = on_read_data };
        int rv = nghttp2_submit_data(st->c->sess, NGHTTP2_FLAG_END_STREAM, st->id, &prd);
        if (rv == 0) {
            st->parked = false;
            return;
        }
        sg_log_error("HTTP/2 stream %d: cannot resume its response: %s", st->id, nghttp2_strerror(rv));
        /* as a head that cannot be submitted (h2_send_head) */
        if (st->ex) st->ex->aborted = true;
        st->ex_aborted = true;
        reset_stream(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (!st->deferred) return;
    st->deferred = false;
    nghttp2_session_resume_data(st->c->sess, st->id);
}

static void h2_send_data(sg_exchange *ex, const char *p, size_t n)
{
    h2_stream *st = ex->down_ctx;
    h2_conn *c = st->c;
    if (st->closed || st->ex_aborted || st->no_body || !st->head_sent || st->out_eof || n == 0) return;
    ex->req.body_bytes_sent += n;
    ex->req.bytes_sent += n;   /* frames and HPACK not counted */
    if (st->out.bytes == 0) {
        st->last_tx_ms = now_ms(c);
        if (!sg_timer_armed(&st->send_timer)) arm(c, &st->send_timer, st->send_ms);
    }
    sg_outq_append(&st->out, p, n);
    c->queued += n;
    account(c);
    resume_data(st);
    schedule_flush(c);
}

static void h2_send_end(sg_exchange *ex)
{
    h2_stream *st = ex->down_ctx;
    ex->resp_done = true;
    st->out_eof = true;
    if (!tunnel_half_closed(st)) st->want_body = false;
    if (st->closed) return;
    sg_loop_defer(st->c->loop, &st->c->reap);   /* retire_ex */
    if (!st->head_sent) {   /* nothing to end: never leave the client waiting */
        reset_stream(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    resume_data(st);
    schedule_flush(st->c);
}

/* Fields that may not be trailers (RFC 9110 6.5.1: framing, routing,
 * connection-specific) or that HTTP/2 forbids. */
static bool skip_trailer(sg_str name)
{
    return name.n == 0 || name.p[0] == ':' || skip_response_header(name) || sg_str_caseeq_lit(name, "te") ||
           sg_str_caseeq_lit(name, "trailer") || sg_str_caseeq_lit(name, "host");
}

/* The trailers wait for the data provider to reach the end of the queue
 * (on_read_data): submitted now they could overtake queued DATA. They are
 * copied out of the exchange (one block: the array, then the strings),
 * which may be gone by then (retire_ex). */
static void h2_send_trailers(sg_exchange *ex, const sg_header *h, size_t n)
{
    h2_stream *st = ex->down_ctx;
    if (!st->closed && !st->ex_aborted && st->head_sent && !st->no_body && !st->out_eof && n) {
        size_t k = 0, bytes = 0;
        for (size_t i = 0; i < n; i++)
            if (!skip_trailer(h[i].name)) k++, bytes += h[i].name.n + h[i].value.n;
        nghttp2_nv *nv = sg_xmalloc(sizeof(nghttp2_nv) * k + bytes + 1);
        char *p = (char *)(nv + k);
        k = 0;
        for (size_t i = 0; i < n; i++) {
            if (skip_trailer(h[i].name)) continue;
            sg_str name = { p, h[i].name.n }, value;
            for (size_t j = 0; j < name.n; j++) {
                char ch = h[i].name.p[j];
                p[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
            }
            p += name.n;
            if (h[i].value.n) memcpy(p, h[i].value.p, h[i].value.n);
            value = (sg_str){ p, h[i].value.n };
            p += value.n;
            nv[k++] = make_nv(name, value);
        }
        free(st->trailers);
        st->trailers = nv;
        st->ntrailers = k;
    }
    h2_send_end(ex);
}

static void h2_want_body(sg_exchange *ex, bool on)
{
    h2_stream *st = ex->down_ctx;
    h2_conn *c = st->c;
    if (st->want_body == on || st->closed) return;
    st->want_body = on;
    if (!on) {
        sg_timer_disarm(&st->read_timer);
        return;
    }
    if (st->expect_continue && !st->continue_sent && !st->in_ended) {
        nghttp2_nv nv = make_nv(SG_STR(":status"), SG_STR("100"));
        nghttp2_submit_headers(c->sess, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL);
        st->continue_sent = true;
    }
    st->reading = true;
    open_body_window(st);
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf : NULL;
    st->body_ms = lc ? lc->client_body_timeout_ms : 60000;
    /* A gRPC stream may stay silent for hours between messages: only a
     * client_body_timeout the user wrote bounds it (0: none). */
    if (lc && lc->is_grpc && !lc->client_body_timeout_set) st->body_ms = 0;
    if (!st->in_ended && !st->connect && st->body_ms) {
        st->last_rx_ms = now_ms(c);
        arm(c, &st->read_timer, st->body_ms);
    }
    st->feed = true;
    sg_loop_defer(c->loop, &c->resume);
}

/* A stream's own queue; all of them together count too, so that one
 * connection cannot hold more than QUEUE_CAP of response bytes. */
static size_t h2_pending(sg_exchange *ex)
{
    h2_stream *st = ex->down_ctx;
    if (st->c->queued > QUEUE_CAP && st->out.bytes <= SG_HIGH_WATER) return SG_HIGH_WATER + 1;
    return st->out.bytes;
}

static void h2_abort(sg_exchange *ex)
{
    h2_stream *st = ex->down_ctx;
    ex->aborted = true;
    st->ex_aborted = true;
    st->want_body = false;
    sg_loop_defer(st->c->loop, &st->c->reap);   /* retire_ex */
    reset_stream(st, ex->abort_code ? ex->abort_code : NGHTTP2_INTERNAL_ERROR);
}

static const sg_downstream_ops h2_down_ops = {
    .send_head = h2_send_head,
    .send_data = h2_send_data,
    .send_end = h2_send_end,
    .want_body = h2_want_body,
    .pending = h2_pending,
    .abort = h2_abort,
    .send_trailers = h2_send_trailers,
};

/* ---------- timers ---------- */

static void on_stream_read_timeout(sg_timer *t)
{
    h2_stream *st = (h2_stream *)((char *)t - offsetof(h2_stream, read_timer));
    h2_conn *c = st->c;
    char host[64];
    if (!st->started) {
        /* a header block never finished: the stream is reset, as nginx
         * does; the rest of the block, if it comes, still goes through
         * HPACK (nghttp2 ignores it for a closed stream), and the
         * connection's own timeouts bound the wait */
        sg_log_info("client %s timed out while sending HTTP/2 headers", peer_host(c, host, sizeof(host)));
        reset_stream(st, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    uint64_t idle = now_ms(c) - st->last_rx_ms;
    if (idle < st->body_ms) {
        arm(c, t, st->body_ms - idle);
        return;
    }
    sg_log_info("client %s timed out while reading client request body", peer_host(c, host, sizeof(host)));
    stream_abort_ex(st);
    reset_stream(st, NGHTTP2_PROTOCOL_ERROR);   /* nginx's code for a body that stopped coming */
}

static void on_stream_send_timeout(sg_timer *t)
{
    h2_stream *st = (h2_stream *)((char *)t - offsetof(h2_stream, send_timer));
    h2_conn *c = st->c;
    if (st->stop_pending) {
        reset_stream(st, NGHTTP2_NO_ERROR);
        return;
    }
    if (st->out.bytes == 0) return;
    uint64_t idle = now_ms(c) - st->last_tx_ms;
    if (idle < st->send_ms) {
        arm(c, t, st->send_ms - idle);
        return;
    }
    char host[64];
    sg_log_info("client %s timed out while sending response to client", peer_host(c, host, sizeof(host)));
    stream_abort_ex(st);
    reset_stream(st, NGHTTP2_CANCEL);
}

static void on_idle_timeout(sg_timer *t)
{
    h2_conn *c = (h2_conn *)((char *)t - offsetof(h2_conn, idle_timer));
    if (!c->sess) {
        char host[64];
        sg_log_info("client %s timed out before sending the HTTP/2 preface", peer_host(c, host, sizeof(host)));
        conn_close(c);
        return;
    }
    if (c->nstreams) return;
    c->dying = true;   /* GOAWAY NO_ERROR, then close */
    nghttp2_session_terminate_session(c->sess, NGHTTP2_NO_ERROR);
    schedule_flush(c);
}

static void on_write_timeout(sg_timer *t)
{
    h2_conn *c = (h2_conn *)((char *)t - offsetof(h2_conn, write_timer));
    char host[64];
    sg_log_info("client %s timed out while sending response to client", peer_host(c, host, sizeof(host)));
    conn_close(c);
}

/* A silent connection gets a PING; no answer in time closes it. Any
 * frame from the client counts as an answer. */
static void on_ping_timer(sg_timer *t)
{
    h2_conn *c = (h2_conn *)((char *)t - offsetof(h2_conn, ping_timer));
    uint64_t now = now_ms(c);
    if (c->ping_out && c->rx_frames == c->ping_rx_mark && !input_paused(c)) {
        if (now - c->ping_sent_ms >= c->set.ping_timeout_ms) {
            char host[64];
            sg_log_info("client %s did not answer PING within %u ms, closing HTTP/2 connection",
                        peer_host(c, host, sizeof(host)), c->set.ping_timeout_ms);
            conn_close(c);
            return;
        }
        arm(c, t, c->set.ping_timeout_ms - (now - c->ping_sent_ms));
        return;
    }
    c->ping_out = false;
    uint64_t silent = now - c->last_rx_ms;
    if (silent < c->set.ping_interval_ms) {
        arm(c, t, c->set.ping_interval_ms - silent);
        return;
    }
    nghttp2_submit_ping(c->sess, NGHTTP2_FLAG_NONE, (const uint8_t *)PING_ALIVE);
    c->ping_out = true;
    c->ping_sent_ms = now;
    c->ping_rx_mark = c->rx_frames;
    arm(c, t, c->set.ping_timeout_ms ? c->set.ping_timeout_ms : c->set.ping_interval_ms);
    schedule_flush(c);
}

/* Graceful GOAWAY (RFC 9113 6.8): a first GOAWAY with the largest stream
 * id tells the client to stop opening streams; after a round trip (the
 * PING ACK, or GOAWAY_RTT_MS) the second names the last stream we
 * process. Open streams finish; then the connection closes. */
static void start_graceful(h2_conn *c)
{
    if (!c->sess || c->goaway_sent || c->dying) return;
    if (!c->draining && c->nstreams) {
        c->draining = true;
        nghttp2_submit_shutdown_notice(c->sess);
        nghttp2_submit_ping(c->sess, NGHTTP2_FLAG_NONE, (const uint8_t *)PING_DRAIN);
        arm(c, &c->goaway_timer, GOAWAY_RTT_MS);
    } else {
        c->draining = true;
        nghttp2_submit_goaway(c->sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->sess),
                              NGHTTP2_NO_ERROR, NULL, 0);
        c->goaway_sent = true;
        sg_timer_disarm(&c->idle_timer);
    }
    schedule_flush(c);
}

static void on_goaway_timer(sg_timer *t)
{
    h2_conn *c = (h2_conn *)((char *)t - offsetof(h2_conn, goaway_timer));
    if (c->lingering || c->dying) conn_close(c);   /* linger or fatal GOAWAY took too long */
    else start_graceful(c);
}

/* ---------- events, close ---------- */

static void on_event(sg_io *io, uint32_t events)
{
    h2_conn *c = (h2_conn *)io;
    if (events & (EPOLLERR | EPOLLHUP)) {
        conn_close(c);
        return;
    }
    if (events & EPOLLOUT) {
        c->writable = true;
        do_flush(c);
        if (c->closed) return;
        if (c->tls && sg_tls_read_wants_write(c->tls)) events |= EPOLLIN;
    }
    if ((events & EPOLLIN) && c->tls && sg_tls_write_wants_read(c->tls)) {
        c->writable = true;
        do_flush(c);
        if (c->closed) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP)) {
        c->readable = true;
        if (events & EPOLLRDHUP) c->rdhup = true;
        conn_read(c);
    }
}

static void conn_free(h2_conn *c)
{
    sg_inbuf_free(&c->pre);
    sg_h2_closed_free(&c->ended);
    sg_inbuf_free(&c->cookies);
    sg_outq_clear(&c->out);
    free(c);
}

static void on_free_deferred(sg_deferred *d)
{
    conn_free((h2_conn *)((char *)d - offsetof(h2_conn, flush)));
}

/* Ends every stream (the core hears of those not complete) and the
 * connection. Never called from inside an nghttp2 callback. */
static void conn_close(h2_conn *c)
{
    if (c->closed) return;
    if (c->in_lib) {   /* defensive: the session is on the stack */
        c->dying = true;
        schedule_flush(c);
        return;
    }
    c->closed = true;
    sg_conn_stat_close(&c->stat);
    for (h2_stream *st = c->streams; st; st = st->next) {
        stream_abort_ex(st);
        st->closed = true;   /* from now on the core's calls on it do nothing */
    }
    if (c->sess) nghttp2_session_del(c->sess);   /* calls no callback */
    c->sess = NULL;
    while (c->streams) stream_free(c->streams);
    while (c->dead) stream_free(c->dead);
    sg_timer_disarm(&c->idle_timer);
    sg_timer_disarm(&c->write_timer);
    sg_timer_disarm(&c->ping_timer);
    sg_timer_disarm(&c->goaway_timer);
    sg_loop_cancel(&c->resume);
    sg_loop_cancel(&c->reap);
    sg_loop_cancel(&c->flush);
    sg_loop_cancel(&c->budget_check);
    account(c);
    sg_list_remove(&c->budget_link);
    if (c->io.fd >= 0) {
        sg_loop_del(c->loop, &c->io);
        sg_tls_free(c->tls);
        c->tls = NULL;
        close(c->io.fd);
        c->io.fd = -1;
    }
    sg_worker_conn_del(c->w, &c->node);
    /* freed at the end of the iteration: callers up the stack may still look at c */
    sg_deferred_init(&c->flush, on_free_deferred);
    sg_loop_defer(c->loop, &c->flush);
}

static void on_shutdown(sg_conn_node *n, bool fast)
{
    h2_conn *c = (h2_conn *)((char *)n - offsetof(h2_conn, node));
    if (fast || !c->sess || c->lingering) conn_close(c);
    else start_graceful(c);
}

static h2_conn *conn_new(sg_worker *w, sg_loop *loop, int fd, const struct sockaddr *peer,
                         socklen_t peerlen, const struct sockaddr *local, socklen_t locallen,
                         const h2_settings *set)
{
    h2_conn *c = sg_xcalloc(1, sizeof(*c));
    c->io.fd = fd;
    c->io.on_event = on_event;
    c->w = w;
    c->loop = loop;
    c->set = *set;
    memcpy(&c->peer, peer, peerlen < sizeof(c->peer) ? peerlen : sizeof(c->peer));
    memcpy(&c->local, local, locallen < sizeof(c->local) ? locallen : sizeof(c->local));
    sg_deferred_init(&c->flush, on_flush);
    sg_deferred_init(&c->resume, on_resume);
    sg_deferred_init(&c->reap, on_reap);
    sg_deferred_init(&c->budget_check, on_budget_check);
    sg_list_node_init(&c->budget_link);
    sg_timer_init(&c->idle_timer, on_idle_timeout);
    sg_timer_init(&c->write_timer, on_write_timeout);
    sg_timer_init(&c->ping_timer, on_ping_timer);
    sg_timer_init(&c->goaway_timer, on_goaway_timer);
    c->node.shutdown = on_shutdown;
    c->writable = true;
    c->last_rx_ms = now_ms(c);
    if (sg_loop_add(loop, &c->io) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    arm(c, &c->idle_timer, set->header_ms);   /* the preface must come in time */
    sg_conn_stat_open(&c->stat, SG_CS_H2);
    sg_worker_conn_add(w, &c->node);
    sg_list_push(&worker_conns, &c->budget_link);
    return c;
}

/* The connection keeps its listen group (kept current across reloads by
 * the server) for the requests it will carry. */
static void conn_set_group(h2_conn *c, const sg_listen_group *g)
{
    c->node.local = (const struct sockaddr *)&c->local;
    c->node.group = g;
}

void sg_h2_server_accept(sg_worker *w, const sg_listen_group *g, int fd,
                         const struct sockaddr *peer, socklen_t peerlen,
                         const struct sockaddr *local, socklen_t locallen,
                         const char *pre, size_t npre)
{
    h2_settings set;
    settings_from_conf(&set, g);
    sg_sock_tune(fd);
    h2_conn *c = conn_new(w, sg_worker_loop(w), fd, peer, peerlen, local, locallen, &set);
    if (!c) return;
    conn_set_group(c, g);
    if (npre) conn_input(c, pre, npre);
}

void sg_h2_server_accept_tls(sg_worker *w, const sg_listen_group *g, int fd, sg_tls_conn *tls,
                             const struct sockaddr *peer, socklen_t peerlen,
                             const struct sockaddr *local, socklen_t locallen)
{
    h2_settings set;
    settings_from_conf(&set, g);
    h2_conn *c = conn_new(w, sg_worker_loop(w), fd, peer, peerlen, local, locallen, &set);
    if (!c) {
        sg_tls_free(tls);
        return;
    }
    conn_set_group(c, g);
    c->tls = tls;
    sg_conn_stat_tls(&c->stat);
    c->readable = true;
    conn_read(c);
}
