/* HTTP/2 client codec on libnghttp2 (proxy_http_version 2, grpc_pass):
 * cleartext with prior knowledge, or over TLS with ALPN h2 (grpcs://,
 * https://).
 *
 * One h2_conn per upstream connection, shared by up to the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS exchanges; one h2_stream (the link) per
 * exchange. The worker's h2 pool (upstream/h2_pool.h) decides which
 * connection a new stream goes to and how long an idle one stays.
 *
 * - Setup: a stream placed on a connection still being set up waits until
 *   the peer's first SETTINGS arrived (its concurrency limit is known
 *   then; streams beyond it move to another connection); only then does
 *   the link report `connected`. A connection that fails before
 *   that fails its streams as connect errors, so the core tries the next
 *   peer; a peer that does not speak HTTP/2 is such a failure.
 * - TLS: the handshake runs once connect() completed, under the same
 *   connect timer (nginx counts it in the connect phase); its failure
 *   (logged by net/tls.c with OpenSSL's reason, e.g. a certificate that
 *   does not verify) fails the waiting streams as connect errors. Then
 *   the codec reads and writes through net/tls.h. Connections are pooled
 *   by peer and TLS key (client context, SNI / verified name), and the
 *   session of the last connection to a peer is offered by the next
 *   (proxy_ssl_session_reuse).
 * - Request: pseudo-headers from the core's protocol-neutral request,
 *   lowercase names, connection-specific fields dropped. The body waits in
 *   a per-stream queue (`pending`) for nghttp2's deferred data provider.
 * - Response: DATA goes to the exchange straight from the receive callback
 *   while it wants the response, else it is held on the stream. The
 *   receive window is given back (nghttp2_session_consume) only for bytes
 *   the exchange took, so a paused stream stops its backend by flow
 *   control and holds at most STREAM_WINDOW bytes; the connection window
 *   covers SG_H2_MAX_STREAMS paused streams, so they never stall the others.
 * - Refused streams (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last
 *   stream id: never processed, RFC 9113 8.7) are reopened on another
 *   connection without the core knowing, while no body byte was framed.
 * - A connection silent for the upstream's http2_ping_interval (30 s) is
 *   PINGed; without the ACK within http2_ping_timeout (20 s) it is closed
 *   and its streams fail (SG_UP_CLOSED).
 * - proxy_read_timeout bounds the wait for the response head, and the gaps
 *   between DATA frames only when the user set it (s3 design: long-lived
 *   streams are not cut by default).
 * - Extended CONNECT (RFC 8441, sg_upstream_request.protocol): only to a
 *   peer whose SETTINGS enabled it (else SG_UP_UNSUPPORTED, nothing sent).
 *   The stream holds its slot for the tunnel's life; it has no idle limit
 *   of its own but proxy_tunnel_timeout (or a user-set proxy_read_timeout),
 *   while the connection's PING keeps checking the peer.
 *
 * nghttp2 callbacks report to the core directly (head, data, end, errors),
 * and the core may call link ops from there: those only submit frames.
 * Connections are torn down outside nghttp2 calls, and memory is freed at
 * the end of the loop iteration, never under a caller's feet. */
#include "http/h2_client.h"
#include "http/h1_parser.h"
#include "http/h2_mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "conf/ssl_conf.h"
#include "core/blockcache.h"
#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/slab.h"
#include "net/sock.h"
#include "net/tls.h"
#include "exchange/exchange.h"
#include "upstream/h2_pool.h"

#define STREAM_WINDOW (256 * 1024)                    /* response bytes held per paused stream */
#define CONN_WINDOW (SG_H2_MAX_STREAMS * STREAM_WINDOW)
#define OUT_CAP (256 * 1024)                          /* frames serialized ahead of the socket */
#define READ_BUDGET (1024 * 1024)                     /* per connection and loop iteration */
#define FEED_CHUNK (64 * 1024)                        /* held bytes handed over per call */
#define MAX_REOPENS 3
/* Stop opening streams a little before the 31-bit id space runs out. */
#define LAST_STREAM_ID (0x7fffffffu - 2u * SG_H2_MAX_STREAMS)


/* ---------- a header block being received ---------- */

typedef struct hfield {
    size_t name, nlen, value, vlen;   /* offsets into text */
} hfield;

typedef struct hblock {
    sg_strbuf text;
    hfield *f;
    size_t n, cap;
    size_t size;                      /* RFC 9113 6.5.2: name + value + 32 per field */
    int status;
} hblock;

static void hblock_reset(hblock *h)
{
    sg_strbuf_free(&h->text);
    free(h->f);
    memset(h, 0, sizeof(*h));
}

/* Empties the connection's block for the next one and keeps its room (a
 * usual head needs no allocation), unless an outsized block grew it. */
static void hblock_clear(hblock *h)
{
    if (h->text.cap > 16384) {
        hblock_reset(h);
        return;
    }
    h->text.n = 0;
    h->n = h->size = 0;
    h->status = 0;
}

/* False past what an HTTP/1.1 response head may hold here (502 either way). */
static bool hblock_add(hblock *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
    h->size += nlen + vlen + 32;
    if (h->size > SG_H1_MAX_RESPONSE_HEAD || h->n >= SG_H1_MAX_HEADERS) return false;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->f = sg_xrealloc(h->f, h->cap * sizeof(*h->f));
    }
    hfield *f = &h->f[h->n++];
    f->name = h->text.n;
    f->nlen = nlen;
    sg_strbuf_append(&h->text, (const char *)name, nlen);
    f->value = h->text.n;
    f->vlen = vlen;
    sg_strbuf_append(&h->text, (const char *)value, vlen);
    return true;
}

static sg_str hblock_str(const hblock *h, size_t off, size_t len)
{
    return len ? (sg_str){ h->text.p + off, len } : SG_STR("");
}

/* ---------- types ---------- */

/* C_TLS: connected, TLS handshake in progress; C_HANDSHAKE: waiting for
 * the peer's first SETTINGS. */
typedef enum conn_state { C_CONNECTING, C_TLS, C_HANDSHAKE, C_READY, C_CLOSED } conn_state;

typedef struct h2_conn h2_conn;

typedef struct h2_stream {
    sg_upstream_link link;            /* first: the core's handle */
    sg_list_node node;                /* on c->waiting or c->streams */
    h2_conn *c;                       /* NULL once nghttp2 is done with it */
    sg_upstream_rt *rt;
    sg_peer *peer;
    const sg_ssl_upstream_conf *tls_conf;   /* its location's upstream TLS; NULL: cleartext */
    sg_str tls_name;                  /* SNI and the name to verify (in the exchange's arena) */
    const sg_log_target *log;         /* the exchange's error_log */
    sg_conf *gen;
    sg_worker *w;
    sg_loop *loop;
    int32_t id;                       /* 0 until submitted */
    nghttp2_nv *nva;                  /* the request head, kept for a reopen */
    size_t nnv;
    char *nvmem;                      /* its names and values: the same block as nva */
    sg_outq body;                       /* request body not framed yet */
    sg_header *trailers;
    size_t ntrailers;
    sg_inbuf held;                    /* response DATA the exchange did not want yet */
    size_t held_off;                  /* delivered part of `held` */
    size_t held_unconsumed;           /* window not given back for `held` */
    uint32_t reopens;
    uint32_t connect_timeout_ms, read_timeout_ms, send_timeout_ms;
    uint32_t tunnel_timeout_ms;       /* proxy_tunnel_timeout: an extended CONNECT's silence */
    bool read_timeout_set;            /* the user set proxy_read_timeout */
    bool connect;                     /* an extended CONNECT (RFC 8441): a tunnel once answered 2xx */
    bool waiting;                     /* on c->waiting: the connection is not ready */
    bool head_given, has_body, end_given, is_head;
    bool eof_sent;                    /* the data provider returned EOF (END_STREAM) */
    bool body_framed;                 /* a body byte went into a DATA frame: no reopen */
    bool deferred;                    /* the data provider waits for bytes */
    /* The data provider ended its DATA item (EOF without END_STREAM) when
     * the body queue ran dry after the response head came: a deferred item
     * would stay allocated in nghttp2 for as long as a quiet conversation
     * (a gRPC stream) lasts. The next bytes or the end submit a new one
     * (resume_body). Not eof_sent: the request side is still open. */
    bool parked;
    bool want_resp, head_done, ended, end_reported, invalid;
    bool unsendable;                  /* nghttp2 could not send its HEADERS: no reopen */
    bool drain_due, fail_due, dead;
    sg_up_error fail_err;
    sg_timer rtimer, wtimer;          /* proxy_read_timeout, proxy_send_timeout */
    sg_deferred notify, reap;
} h2_stream;

struct h2_conn {
    sg_h2_member m;                   /* pool membership: peer, stream count, limit */
    sg_io io;
    sg_worker *w;
    sg_loop *loop;
    /* Held while the connection exists: its runtime (pool, peers) and
     * upstream conf stay valid even after its last exchange ended. */
    sg_conf *gen;
    const sg_upstream_conf *u;
    sg_tls_conn *tls;                 /* the transport over TLS; NULL: cleartext */
    const sg_ssl_upstream_conf *tls_conf;
    sg_tls_key tls_key;               /* context and SNI / verified name; its name is ours */
    sg_pool *pool;                    /* this worker's pool of the upstream: TLS sessions */
    bool session_kept;                /* its TLS session went to the pool for resumption */
    nghttp2_session *sess;
    sg_outq out;
    /* The header block being received. One per connection: HTTP/2 sends a
     * block's frames back to back (RFC 9113 4.3), and each is used up when
     * it ends (a head is copied by the core, trailers into the stream). */
    hblock hb;
    sg_deferred flush, resume, reap;
    sg_timer timer;                   /* connect (until SETTINGS), then idle */
    sg_timer ping_timer;
    sg_list waiting, streams;
    size_t nwaiting;
    uint64_t last_rx_ms;
    conn_state state;
    bool readable, writable, rdhup;
    bool in_lib;                      /* inside nghttp2_session_mem_recv/mem_send */
    bool settings_seen, idle_armed, ping_out;
    bool close_due;                   /* conn_close() asked while in_lib */
    sg_up_error close_err, close_werr;
};

#define CONN_OF(mp) ((h2_conn *)((char *)(mp) - offsetof(h2_conn, m)))

static const sg_upstream_link_ops h2_link_ops;
static void conn_close(h2_conn *c, sg_up_error active_err, sg_up_error waiting_err);
static void conn_shutdown(h2_conn *c);
static void stream_fail(h2_stream *st, sg_up_error err);
static void submit(h2_stream *st);

/* Bytes read from upstream sockets. Not the worker's scratch buffer: nghttp2
 * keeps parsing this buffer after callbacks that reach the core, and the
 * core may reuse the scratch buffer meanwhile (a client's next request). */
static _Thread_local char rbuf[SG_SCRATCH_SIZE];

static const char *peer_name(const sg_peer *p)
{
    return p->conf->name ? p->conf->name : "?";
}

/* ---------- stream bookkeeping ---------- */

#define STREAM_OF(n) sg_list_entry((n), h2_stream, node)

static void list_push(sg_list *list, h2_stream *st)
{
    sg_list_push(list, &st->node);
}

static void list_unlink(h2_conn *c, h2_stream *st)
{
    if (!sg_list_linked(&st->node)) return;
    sg_list_remove(&st->node);
    if (st->waiting) c->nwaiting--;
    st->waiting = false;
}

static void schedule_flush(h2_conn *c)
{
    if (c->state != C_CLOSED) sg_loop_defer(c->loop, &c->flush);
}

static void stream_attach(h2_stream *st, h2_conn *c)
{
    st->c = c;
    sg_h2_pool_stream_open(&c->m);
    if (c->idle_armed) {
        c->idle_armed = false;
        sg_timer_disarm(&c->timer);
    }
    if (c->state == C_READY) {
        list_push(&c->streams, st);
    } else {
        list_push(&c->waiting, st);
        st->waiting = true;
        c->nwaiting++;
    }
}

/* nghttp2 is done with the stream (or never had it): it leaves c. */
static void stream_detach(h2_stream *st)
{
    h2_conn *c = st->c;
    if (!c) return;
    if (st->held_unconsumed && st->id > 0 && c->state != C_CLOSED)
        nghttp2_session_consume_connection(c->sess, st->held_unconsumed);
    st->held_unconsumed = 0;
    list_unlink(c, st);
    sg_h2_pool_stream_close(&c->m);
    st->c = NULL;
    st->id = 0;
    schedule_flush(c);   /* window updates, and the idle check */
}

static void free_request(h2_stream *st)
{
    sg_slab_free(st->nva);
    st->nva = NULL;
    st->nvmem = NULL;
    st->nnv = 0;
}

static void on_stream_reap(sg_deferred *d)
{
    h2_stream *st = (h2_stream *)((char *)d - offsetof(h2_stream, reap));
    free_request(st);
    sg_outq_clear(&st->body);
    free(st->trailers);
    sg_inbuf_free(&st->held);
    sg_block_free(st, sizeof(*st));
}

static void stream_free_later(h2_stream *st)
{
    if (st->dead) return;
    st->dead = true;
    sg_timer_disarm(&st->rtimer);
    sg_timer_disarm(&st->wtimer);
    sg_loop_cancel(&st->notify);
    sg_loop_defer(st->loop, &st->reap);
}

/* The exchange lets go of the stream (release, close, failure). The stream
 * lives on until nghttp2 closed it: both sides ended, or our RST_STREAM. */
static void link_drop(h2_stream *st)
{
    st->link.ex = NULL;
    st->fail_due = st->drain_due = false;
    sg_timer_disarm(&st->rtimer);
    sg_timer_disarm(&st->wtimer);
    h2_conn *c = st->c;
    if (!c || st->id <= 0) {
        stream_detach(st);
        stream_free_later(st);
        return;
    }
    if (st->held_unconsumed) {
        nghttp2_session_consume(c->sess, st->id, st->held_unconsumed);
        st->held_unconsumed = 0;
    }
    sg_outq_clear(&st->body);
    if (!(st->ended && st->eof_sent))
        nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    schedule_flush(c);
}

static void stream_fail(h2_stream *st, sg_up_error err)
{
    sg_exchange *ex = st->link.ex;
    bool nothing = !st->head_done;
    link_drop(st);
    if (ex) {
        ex->up = NULL;
        st->link.ev->error(ex, err, nothing);
    }
}

/* A failure found while the core is calling us: reported once it returned. */
static void schedule_fail(h2_stream *st, sg_up_error err)
{
    st->fail_due = true;
    st->fail_err = err;
    sg_loop_defer(st->loop, &st->notify);
}

/* proxy_read_timeout runs while we wait for the response head (once the
 * request is complete, as in nginx; an extended CONNECT is complete with
 * its head), and between DATA frames only when the user set it; never
 * while the exchange holds the response back. An answered extended
 * CONNECT is a tunnel: without proxy_read_timeout, proxy_tunnel_timeout
 * bounds its silence both ways (0: never), as for HTTP/1.1 tunnels. */
static void arm_read(h2_stream *st)
{
    uint32_t ms = st->read_timeout_ms;
    bool head_wait = !st->head_done && (st->end_given || st->connect);
    bool data_wait = st->head_done && !st->ended && st->read_timeout_set;
    if (st->connect && st->head_done) {
        if (!st->read_timeout_set) ms = st->tunnel_timeout_ms;
        /* ...also once the peer ended its side while the client's is
         * still open (a half-closed tunnel): nothing else bounds it. */
        data_wait = !(st->ended && st->end_given) && ms;
    }
    if (st->link.ex && st->want_resp && ms && (head_wait || data_wait))
        sg_timer_arm(st->loop, &st->rtimer, ms);
    else
        sg_timer_disarm(&st->rtimer);
}

/* ---------- placing streams on connections ---------- */

static h2_conn *conn_new(sg_pool *p, sg_h2_pool *hp, h2_stream *st, const sg_tls_key *key);

/* What a TLS connection for st is made for: SNI and the name to verify
 * come from its exchange (proxy_ssl_name may use variables). */
static sg_tls_key stream_tls_key(const h2_stream *st)
{
    if (!st->tls_conf) return (sg_tls_key){ 0 };
    sg_exchange *ex = st->link.ex;
    if (!ex) return (sg_tls_key){ st->tls_conf->ctx, SG_STR("") };   /* not placed without one */
    return (sg_tls_key){ st->tls_conf->ctx, st->tls_name };
}

/* Attaches st to a connection to its peer with a free slot (not `avoid`),
 * made for its TLS key, or to a new one. *ready: that connection is up.
 * NULL: no socket. */
static h2_conn *place(h2_stream *st, h2_conn *avoid, bool *ready)
{
    sg_pool *p = &st->rt->pools[st->w ? sg_worker_id(st->w) : 0];   /* no worker: fuzzing */
    sg_h2_pool *hp = sg_h2_pool_of(p, st->rt->conf);
    sg_tls_key key = stream_tls_key(st);
    sg_h2_member *m = sg_h2_pool_pick(hp, st->peer, &key, avoid ? &avoid->m : NULL);
    h2_conn *c = m ? CONN_OF(m) : conn_new(p, hp, st, &key);
    if (!c) return NULL;
    stream_attach(st, c);
    *ready = c->state == C_READY;
    return c;
}

/* The stream was refused unprocessed: the same request on another
 * connection, the core none the wiser. */
static void reopen(h2_stream *st, h2_conn *avoid)
{
    bool ready = false;
    st->reopens++;
    st->eof_sent = st->deferred = st->invalid = false;
    if (!place(st, avoid, &ready)) {
        stream_fail(st, SG_UP_CLOSED);
        return;
    }
    if (ready) submit(st);
}

/* A waiting stream's connection is up: the core sends its request now
 * (a reopened stream's request is ours to send). */
static void start_stream(h2_stream *st)
{
    if (st->head_given) submit(st);
    else st->link.ev->connected(st->link.ex);
}

/* ---------- the request ---------- */

static bool drop_request_header(sg_str name, sg_str value)
{
    static const sg_str conn_specific[] = {
        SG_STR("connection"), SG_STR("keep-alive"), SG_STR("proxy-connection"), SG_STR("transfer-encoding"),
        SG_STR("upgrade"), SG_STR("host"), SG_STR("content-length"), SG_STR("http2-settings"),
    };
    if (name.n == 0 || name.p[0] == ':') return true;
    for (size_t i = 0; i < sizeof(conn_specific) / sizeof(conn_specific[0]); i++)
        if (sg_str_caseeq(name, conn_specific[i])) return true;
    /* RFC 9113 8.2.2: TE may only say "trailers". */
    return sg_str_caseeq_lit(name, "te") && !sg_str_caseeq_lit(value, "trailers");
}

static void nv_add(h2_stream *st, char **mem, sg_str name, sg_str value)
{
    char *n = *mem;
    for (size_t i = 0; i < name.n; i++) {
        char ch = name.p[i];
        n[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    char *v = n + name.n;
    if (value.n) memcpy(v, value.p, value.n);
    *mem = v + value.n;
    st->nva[st->nnv++] = (nghttp2_nv){ (uint8_t *)n, (uint8_t *)v, name.n, value.n, NGHTTP2_NV_FLAG_NONE };
}

/* The request head as HTTP/2 fields, in memory of the stream's own: it
 * is submitted again if the stream is refused. */
static void build_request(h2_stream *st, const sg_upstream_request *req)
{
    sg_str authority = SG_STR_NULL, path = req->target.n ? req->target : SG_STR("/");
    char clen[24] = "";
    size_t clen_n = 0, total = 64 + req->method.n + path.n;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sg_header *h = &req->headers[i];
        if (!authority.p && sg_str_caseeq_lit(h->name, "host")) authority = h->value;
        total += h->name.n + h->value.n;
    }
    if ((st->has_body && req->content_length > 0) || (req->content_length == 0 && req->empty_body))
        clen_n = sg_u64_to_dec(clen, (uint64_t)req->content_length);
    total += authority.n + clen_n;
    total += req->protocol.n;
    /* one block: the field array, then the bytes it points to */
    st->nva = sg_slab_xmalloc(sizeof(nghttp2_nv) * (req->nheaders + 6) + total);   /* core/slab.h */
    st->nvmem = (char *)(st->nva + req->nheaders + 6);
    char *mem = st->nvmem;
    nv_add(st, &mem, SG_STR(":method"), st->connect ? SG_STR("CONNECT") : req->method);
    if (st->connect) nv_add(st, &mem, SG_STR(":protocol"), req->protocol);
    nv_add(st, &mem, SG_STR(":scheme"), st->tls_conf ? SG_STR("https") : SG_STR("http"));
    if (authority.n) nv_add(st, &mem, SG_STR(":authority"), authority);
    nv_add(st, &mem, SG_STR(":path"), path);
    for (size_t i = 0; i < req->nheaders; i++) {
        const sg_header *h = &req->headers[i];
        if (!drop_request_header(h->name, h->value)) nv_add(st, &mem, h->name, h->value);
    }
    if (clen_n) nv_add(st, &mem, SG_STR("content-length"), (sg_str){ clen, clen_n });
}

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    h2_stream *st = src->ptr;
    size_t before = st->body.bytes;
    size_t n = sg_outq_take(&st->body, buf, len);
    if (n) {
        st->body_framed = true;
        /* proxy_send_timeout: queued bytes that stop moving */
        if (st->body.bytes && (st->link.ex || st->end_given)) sg_timer_arm(st->loop, &st->wtimer, st->send_timeout_ms);
        else sg_timer_disarm(&st->wtimer);
        if (before >= SG_LOW_WATER && st->body.bytes < SG_LOW_WATER && st->link.ex) {
            st->drain_due = true;   /* told after nghttp2 returned */
            sg_loop_defer(st->loop, &st->notify);
        }
    }
    if (st->body.bytes == 0 && st->end_given) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        st->eof_sent = true;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (st->body.bytes == 0 && st->head_done) {
        /* the queue runs dry: the frame goes as usual, the item ends */
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        st->parked = true;
    }
    return (ssize_t)n;
}

static void submit(h2_stream *st)
{
    h2_conn *c = st->c;
    /* RFC 8441 3: :protocol only to a peer that announced it takes it. */
    if (st->connect && !nghttp2_session_get_remote_settings(c->sess, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL)) {
        sg_log_error("upstream does not support extended CONNECT (RFC 8441): upstream %s did not send "
                     "SETTINGS_ENABLE_CONNECT_PROTOCOL", peer_name(st->peer));
        st->unsendable = true;
        schedule_fail(st, SG_UP_UNSUPPORTED);
        return;
    }
    nghttp2_data_provider dp = { .source.ptr = st, .read_callback = body_read };
    st->eof_sent = !st->has_body;
    st->deferred = st->parked = false;
    int32_t id = nghttp2_submit_request(c->sess, NULL, st->nva, st->nnv, st->has_body ? &dp : NULL, st);
    if (id < 0) {
        sg_log_error("cannot open a stream to upstream %s (%s)", peer_name(st->peer), nghttp2_strerror(id));
        c->m.closing = true;
        schedule_fail(st, SG_UP_CLOSED);
        return;
    }
    st->id = id;
    if ((uint32_t)nghttp2_session_get_next_stream_id(c->sess) > LAST_STREAM_ID) c->m.closing = true;
    if (st->body.bytes && !sg_timer_armed(&st->wtimer)) sg_timer_arm(st->loop, &st->wtimer, st->send_timeout_ms);
    schedule_flush(c);
}

/* ---------- the response ---------- */

/* The head as the core reads it: its fields (Trailer is of this hop only,
 * as the HTTP/1.1 parser says) and what they tell about the body. */
static void response_head(h2_stream *st, const hblock *h, bool end_stream)
{
    if (h->status < 200) return;   /* 1xx: the final head follows */
    sg_header small[32];   /* most heads: no allocation */
    sg_header *f = h->n > 32 ? sg_xmalloc(sizeof(sg_header) * h->n) : small;
    int64_t clen = -1;
    for (size_t i = 0; i < h->n; i++) {
        f[i] = (sg_header){ hblock_str(h, h->f[i].name, h->f[i].nlen), hblock_str(h, h->f[i].value, h->f[i].vlen), 0 };
        if (sg_str_eq_lit(f[i].name, "trailer")) f[i].flags = SG_HDR_HOP;
        uint64_t v;
        if (sg_str_eq_lit(f[i].name, "content-length") && sg_str_to_u64(f[i].value, &v)) clen = (int64_t)v;
    }
    int s = h->status;
    sg_upstream_response resp = {
        .status = s,
        .headers = f,
        .nheaders = h->n,
        .has_body = !(end_stream || st->is_head || s == 204 || s == 304),
        .content_length = clen,
    };
    st->head_done = true;
    free_request(st);            /* processed: never reopened now */
    arm_read(st);
    st->link.ev->head(st->link.ex, &resp);
    if (f != small) free(f);
}

/* The trailers outlive the connection's block: one allocation holds the
 * fields and, after them, their text. */
static void trailers_done(h2_stream *st, const hblock *h)
{
    free(st->trailers);
    st->trailers = NULL;
    st->ntrailers = h->n;
    if (!h->n) return;
    st->trailers = sg_xmalloc(sizeof(sg_header) * h->n + h->text.n);
    char *text = (char *)(st->trailers + h->n);
    memcpy(text, h->text.p, h->text.n);
    for (size_t i = 0; i < h->n; i++)
        st->trailers[i] = (sg_header){ h->f[i].nlen ? (sg_str){ text + h->f[i].name, h->f[i].nlen } : SG_STR(""),
                                       h->f[i].vlen ? (sg_str){ text + h->f[i].value, h->f[i].vlen } : SG_STR(""), 0 };
}

static void report_end(h2_stream *st)
{
    st->end_reported = true;
    st->link.ev->end(st->link.ex, st->trailers, st->ntrailers);   /* the core releases the link */
}

static void conn_keep_session(h2_conn *c);

static void response_ended(h2_stream *st)
{
    if (st->c) conn_keep_session(st->c);
    st->ended = true;
    arm_read(st);
    if (!st->link.ex || !st->want_resp) return;
    if (st->held_off == st->held.len) report_end(st);
    else sg_loop_defer(st->loop, &st->notify);
}

/* Gives back the window of n held bytes the exchange took. */
static void give_back(h2_stream *st, size_t n)
{
    size_t k = n < st->held_unconsumed ? n : st->held_unconsumed;
    if (!k || !st->c) return;
    st->held_unconsumed -= k;
    nghttp2_session_consume(st->c->sess, st->id, k);
    schedule_flush(st->c);
}

static void deliver_held(h2_stream *st)
{
    while (st->link.ex && st->want_resp && st->held_off < st->held.len) {
        size_t n = st->held.len - st->held_off;
        if (n > FEED_CHUNK) n = FEED_CHUNK;
        const char *p = st->held.p + st->held_off;
        st->held_off += n;
        give_back(st, n);
        arm_read(st);
        st->link.ev->data(st->link.ex, p, n);
    }
    if (!st->link.ex) return;   /* `held` goes with the stream */
    if (st->held_off == st->held.len && st->held.len) {
        sg_inbuf_free(&st->held);
        st->held_off = 0;
    }
    if (st->want_resp && st->ended && !st->end_reported && st->held.len == 0) report_end(st);
}

static void on_notify(sg_deferred *d)
{
    h2_stream *st = (h2_stream *)((char *)d - offsetof(h2_stream, notify));
    if (st->fail_due) {
        st->fail_due = false;
        stream_detach(st);
        stream_fail(st, st->fail_err);
        return;
    }
    if (st->drain_due) {
        st->drain_due = false;
        if (st->link.ex) st->link.ev->drain(st->link.ex);
    }
    deliver_held(st);
}

/* ---------- nghttp2 callbacks ---------- */

static h2_stream *stream_of(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    (void)f;
    hblock_clear(&((h2_conn *)ud)->hb);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    h2_conn *c = ud;
    if (c->state == C_CLOSED) return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2_stream *st = f->hd.type == NGHTTP2_HEADERS ? stream_of(s, f->hd.stream_id) : NULL;
    if (!st || !st->link.ex) return 0;
    if (nlen && name[0] == ':') {
        /* nghttp2 checked it is three digits */
        if (nlen == 7 && memcmp(name, ":status", 7) == 0 && vlen == 3)
            c->hb.status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        return 0;
    }
    if (!hblock_add(&c->hb, name, nlen, value, vlen)) {
        st->invalid = true;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* resets the stream: 502 */
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_conn *c = ud;
    if (c->state == C_CLOSED) return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2_stream *st = NULL;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
            c->settings_seen = true;
            sg_h2_pool_set_max(&c->m, nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
        }
        return 0;
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) c->ping_out = false;
        return 0;
    case NGHTTP2_GOAWAY:
        /* Streams above its last id are closed by nghttp2 (REFUSED_STREAM). */
        c->m.closing = true;
        return 0;
    case NGHTTP2_HEADERS:
        st = stream_of(s, f->hd.stream_id);
        if (!st || !st->link.ex || f->headers.cat == NGHTTP2_HCAT_PUSH_RESPONSE) return 0;
        if (!st->head_done) response_head(st, &c->hb, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        else trailers_done(st, &c->hb);
        break;
    case NGHTTP2_DATA:
        st = stream_of(s, f->hd.stream_id);
        break;
    default:
        return 0;
    }
    if (st && st->head_done && !st->ended && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) response_ended(st);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *ud)
{
    h2_conn *c = ud;
    if (c->state == C_CLOSED) return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2_stream *st = stream_of(s, id);
    if (!st || !st->link.ex || !st->head_done) {
        nghttp2_session_consume(s, id, len);   /* nobody wants it: the window goes back */
        return 0;
    }
    if (st->want_resp && st->held_off == st->held.len) {
        nghttp2_session_consume(s, id, len);
        arm_read(st);
        st->link.ev->data(st->link.ex, (const char *)data, len);
        return 0;
    }
    sg_inbuf_append(&st->held, (const char *)data, len);
    st->held_unconsumed += len;
    return 0;
}

static const char *close_reason(uint32_t code)
{
    return nghttp2_http2_strerror(code);
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    h2_conn *c = ud;
    h2_stream *st = stream_of(s, id);
    if (!st || st->c != c) return 0;
    stream_detach(st);
    if (!st->link.ex) {
        stream_free_later(st);
        return 0;
    }
    if (st->ended) return 0;   /* complete; its end may still wait for the exchange */
    if (code == NGHTTP2_REFUSED_STREAM && !st->head_done && !st->body_framed && st->nva &&
        !st->unsendable && st->reopens < MAX_REOPENS) {
        reopen(st, c);
        return 0;
    }
    if (st->invalid)
        sg_log_error("upstream sent too large a header block while reading response header from upstream %s",
                     peer_name(st->peer));
    else
        sg_log_error("upstream reset the stream (%s) while %s upstream %s", close_reason(code),
                     st->head_done ? "reading response from" : "reading response header from",
                     peer_name(st->peer));
    /* nginx: a stream closed before its response head is "upstream rejected
     * request", an invalid_header for *_next_upstream (retried, and a fail
     * against max_fails), whatever the code. */
    bool invalid = st->invalid || !st->head_done;
    st->link.ex->up_reset = !st->invalid;
    st->link.ex->up_reset_code = code;
    stream_fail(st, invalid ? SG_UP_INVALID : SG_UP_CLOSED);
    return 0;
}

/* A request HEADERS nghttp2 did not send is closed as REFUSED_STREAM; only
 * a GOAWAY (or our own cancel) makes that worth a reopen. */
static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
    h2_stream *st = f->hd.type == NGHTTP2_HEADERS ? stream_of(s, f->hd.stream_id) : NULL;
    if (!st || err == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED || err == NGHTTP2_ERR_STREAM_CLOSING) return 0;
    st->unsendable = true;
    sg_log_error("cannot send the request to upstream %s (%s)", peer_name(st->peer), nghttp2_strerror(err));
    return 0;
}

static bool session_new(h2_conn *c)
{
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb)) return false;
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cb);
        return false;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, SG_H2_ASSUMED_STREAMS);
    int rv = nghttp2_session_client_new3(&c->sess, cb, c, opt, sg_h2_mem());
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv) return false;
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, SG_H1_MAX_RESPONSE_HEAD },
    };
    nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(c->sess, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    return true;
}

/* ---------- the connection ---------- */

/* The session for the next connection to the peer: tried when the peer's
 * SETTINGS arrive and at each response end until taken, because a TLS
 * 1.3 ticket comes after the handshake. */
static void conn_keep_session(h2_conn *c)
{
    if (c->tls && !c->session_kept)
        c->session_kept = sg_pool_tls_keep_session(c->pool, c->m.peer, c->tls_conf, &c->tls_key, c->tls);
}

static ssize_t conn_recv(h2_conn *c, void *buf, size_t n)
{
    return c->tls ? sg_tls_read(c->tls, buf, n) : read(c->io.fd, buf, n);
}

static sg_io_result conn_send(h2_conn *c)
{
    return c->tls ? sg_tls_flush(c->tls, &c->out, NULL) : sg_outq_flush(&c->out, c->io.fd, NULL);
}

/* The peer's SETTINGS arrived: waiting streams start, up to its limit;
 * the others move to another connection. */
static void conn_ready(h2_conn *c)
{
    conn_keep_session(c);
    c->state = C_READY;
    sg_timer_disarm(&c->timer);
    if (c->u->h2_ping_interval_ms) sg_timer_arm(c->loop, &c->ping_timer, c->u->h2_ping_interval_ms);
    while (!sg_list_empty(&c->waiting) && c->state == C_READY) {
        h2_stream *st = STREAM_OF(sg_list_first(&c->waiting));
        list_unlink(c, st);
        if (!c->m.closing && c->m.streams - c->nwaiting <= c->m.max_streams) {
            list_push(&c->streams, st);
            start_stream(st);
            continue;
        }
        /* Over the limit the peer announced: to another connection. Bounded,
         * for peers that allow no stream at all (a limit of 0). */
        bool ready = false;
        sg_h2_pool_stream_close(&c->m);
        st->c = NULL;
        if (++st->reopens > MAX_REOPENS) {
            sg_log_error("upstream %s takes no more streams (SETTINGS_MAX_CONCURRENT_STREAMS %u)",
                         peer_name(c->m.peer), c->m.max_streams);
            stream_fail(st, SG_UP_CONNECT);
        } else if (!place(st, c, &ready)) {
            stream_fail(st, SG_UP_CONNECT);
        } else if (ready) {
            start_stream(st);
        }
    }
    schedule_flush(c);
}

/* Streams of a closing connection fail; the core decides about retries. */
static void fail_list(h2_conn *c, sg_list *list, sg_up_error err)
{
    while (!sg_list_empty(list)) {
        h2_stream *st = STREAM_OF(sg_list_first(list));
        list_unlink(c, st);
        st->c = NULL;
        st->id = 0;
        st->held_unconsumed = 0;
        if (st->link.ex) stream_fail(st, err);
        else stream_free_later(st);
    }
}

static void on_conn_reap(sg_deferred *d)
{
    h2_conn *c = (h2_conn *)((char *)d - offsetof(h2_conn, reap));
    sg_worker *w = c->w;
    sg_conf *gen = c->gen;
    sg_tls_free(c->tls);   /* here, not at close: a TLS call may be up the stack */
    sg_tls_key_free(&c->tls_key);
    nghttp2_session_del(c->sess);
    sg_outq_clear(&c->out);
    hblock_reset(&c->hb);
    free(c);
    if (w) sg_worker_gen_release(w, gen);   /* may free the runtime: last */
}

static void conn_close(h2_conn *c, sg_up_error active_err, sg_up_error waiting_err)
{
    if (c->state == C_CLOSED) return;
    if (c->in_lib) {   /* nghttp2 is on the stack: after it returns */
        if (!c->close_due) {
            c->close_due = true;
            c->close_err = active_err;
            c->close_werr = waiting_err;
        }
        return;
    }
    c->state = C_CLOSED;
    c->m.closing = true;
    sg_h2_pool_leave(&c->m);
    sg_timer_disarm(&c->timer);
    sg_timer_disarm(&c->ping_timer);
    sg_loop_cancel(&c->flush);
    sg_loop_cancel(&c->resume);
    sg_loop_del(c->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    sg_loop_defer(c->loop, &c->reap);
    fail_list(c, &c->waiting, waiting_err);
    fail_list(c, &c->streams, active_err);
}

static void after_lib(h2_conn *c)
{
    c->in_lib = false;
    if (c->close_due) conn_close(c, c->close_err, c->close_werr);
}

/* Serializes what nghttp2 has to send into c->out. False if c closed. */
static bool conn_pump(h2_conn *c)
{
    c->in_lib = true;
    while (c->out.bytes < OUT_CAP) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->sess, &data);
        if (n < 0) {
            sg_log_error("HTTP/2 session with upstream %s failed (%s)", peer_name(c->m.peer),
                         nghttp2_strerror((int)n));
            c->in_lib = false;
            conn_close(c, SG_UP_CLOSED, SG_UP_CONNECT);
            return false;
        }
        if (n == 0) break;
        sg_outq_append(&c->out, data, (size_t)n);
    }
    after_lib(c);
    return c->state != C_CLOSED;
}

static void conn_lost(h2_conn *c, int err)
{
    if (c->state == C_HANDSHAKE) {
        sg_log_error("upstream %s closed the connection before its HTTP/2 SETTINGS (%d: %s)",
                     peer_name(c->m.peer), err, err ? strerror(err) : "end of file");
        conn_close(c, SG_UP_CONNECT, SG_UP_CONNECT);
        return;
    }
    if (c->m.streams)
        sg_log_error("upstream prematurely closed connection (%d: %s) while reading from upstream %s", err,
                     err ? strerror(err) : "end of file", peer_name(c->m.peer));
    conn_close(c, SG_UP_CLOSED, SG_UP_CONNECT);
}

/* A connection without streams: kept idle, or closed. */
static void on_idle_timeout(sg_timer *t);

static void conn_check_idle(h2_conn *c)
{
    if (c->state != C_READY || c->m.streams || c->idle_armed) return;
    sg_h2_idle v = sg_h2_pool_idle(&c->m);
    if (v == SG_H2_CLOSE) {
        conn_shutdown(c);
        return;
    }
    uint32_t ms = c->u->keepalive_timeout_ms;
    if (v == SG_H2_KEEP_BRIEFLY && ms > SG_POOL_SURPLUS_MS) ms = SG_POOL_SURPLUS_MS;
    c->idle_armed = true;
    c->timer.cb = on_idle_timeout;
    sg_timer_arm(c->loop, &c->timer, ms);
}

static void conn_flush(h2_conn *c)
{
    if (c->state == C_CLOSED || c->state == C_CONNECTING || c->state == C_TLS) return;
    for (int round = 0; round < 4; round++) {
        if (!conn_pump(c)) return;
        if (!c->writable || c->out.bytes == 0) break;
        sg_io_result r = conn_send(c);
        if (r == SG_IO_ERROR) {
            conn_lost(c, errno);
            return;
        }
        if (r == SG_IO_AGAIN) {
            c->writable = false;
            break;
        }
        if (!nghttp2_session_want_write(c->sess)) break;
        if (round == 3) schedule_flush(c);   /* more next iteration: others get a turn */
    }
    if (c->out.bytes == 0 && !nghttp2_session_want_read(c->sess) && !nghttp2_session_want_write(c->sess)) {
        conn_close(c, SG_UP_CLOSED, SG_UP_CONNECT);   /* the session is over (GOAWAY) */
        return;
    }
    conn_check_idle(c);
}

/* Politely: GOAWAY if the socket takes it at once, then close. */
static void conn_shutdown(h2_conn *c)
{
    if (c->state == C_READY) {
        nghttp2_session_terminate_session(c->sess, NGHTTP2_NO_ERROR);
        if (conn_pump(c) && c->writable && conn_send(c) == SG_IO_DONE && c->tls) sg_tls_shutdown(c->tls);
    }
    conn_close(c, SG_UP_CLOSED, SG_UP_CONNECT);
}

static void on_flush(sg_deferred *d)
{
    conn_flush((h2_conn *)((char *)d - offsetof(h2_conn, flush)));
}

/* Hands n bytes to nghttp2. False if c closed. */
static bool conn_feed(h2_conn *c, const char *p, size_t n)
{
    c->in_lib = true;
    ssize_t rv = nghttp2_session_mem_recv(c->sess, (const uint8_t *)p, n);
    after_lib(c);
    if (c->state == C_CLOSED) return false;
    if (rv < 0) {
        sg_log_error("upstream %s sent invalid HTTP/2 (%s)", peer_name(c->m.peer), nghttp2_strerror((int)rv));
        conn_close(c, SG_UP_INVALID, SG_UP_CONNECT);
        return false;
    }
    if (c->state == C_HANDSHAKE && c->settings_seen) conn_ready(c);
    schedule_flush(c);
    return c->state != C_CLOSED;
}

static void conn_read(h2_conn *c)
{
    size_t budget = READ_BUDGET;
    while ((c->state == C_HANDSHAKE || c->state == C_READY) && c->readable) {
        if (budget == 0) {   /* the rest next iteration: other connections get a turn */
            sg_loop_defer(c->loop, &c->resume);
            return;
        }
        ssize_t n = conn_recv(c, rbuf, sizeof(rbuf));
        if (n > 0) {
            /* drained, unless OpenSSL holds more */
            if ((size_t)n < sizeof(rbuf) && !c->rdhup && !(c->tls && sg_tls_pending(c->tls))) c->readable = false;
            budget -= (size_t)n < budget ? (size_t)n : budget;
            c->last_rx_ms = sg_loop_now(c->loop);
            if (!conn_feed(c, rbuf, (size_t)n)) return;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            return;
        }
        conn_lost(c, n == 0 ? 0 : errno);
        return;
    }
}

static void on_resume(sg_deferred *d)
{
    conn_read((h2_conn *)((char *)d - offsetof(h2_conn, resume)));
}

/* The transport is up: the preface and SETTINGS go out, and the connect
 * timer runs on until the peer's SETTINGS. After a TLS handshake the
 * peer's first frames may already sit in OpenSSL's buffer: read at once. */
static void conn_transport_up(h2_conn *c)
{
    c->state = C_HANDSHAKE;
    c->writable = true;
    c->last_rx_ms = sg_loop_now(c->loop);
    conn_flush(c);
    if (c->tls && c->state == C_HANDSHAKE) {
        c->readable = true;
        conn_read(c);
    }
}

/* The handshake failed (logged by net/tls.c with OpenSSL's reason): the
 * session kept for the peer goes, and the streams fail as connect errors. */
static void conn_tls_step(h2_conn *c)
{
    sg_io_result r = sg_tls_handshake(c->tls);
    if (r == SG_IO_AGAIN) return;
    if (r == SG_IO_ERROR) {
        sg_pool_tls_forget_session(c->pool, c->m.peer, &c->tls_key);
        conn_close(c, SG_UP_CONNECT, SG_UP_CONNECT);
        return;
    }
    conn_transport_up(c);
}

static void on_connected(h2_conn *c, uint32_t events)
{
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = sg_connect_result(c->io.fd);
    if (err) {
        sg_log_error("connect() to %s failed (%d: %s) while connecting to upstream", peer_name(c->m.peer),
                     err, strerror(err));
        conn_close(c, SG_UP_CONNECT, SG_UP_CONNECT);
        return;
    }
    if (!c->tls) {
        conn_transport_up(c);
        return;
    }
    c->state = C_TLS;
    conn_tls_step(c);
}

static void on_event(sg_io *io, uint32_t events)
{
    h2_conn *c = (h2_conn *)((char *)io - offsetof(h2_conn, io));
    if (c->state == C_CLOSED) return;
    if (c->state == C_CONNECTING) {
        on_connected(c, events);
        /* cleartext: the peer's SETTINGS may have come with the connect */
        if (c->state != C_HANDSHAKE || c->tls) return;
    }
    if (c->state == C_TLS) {
        conn_tls_step(c);
        return;
    }
    if (events & EPOLLOUT) {
        c->writable = true;
        conn_flush(c);
        if (c->state == C_CLOSED) return;
        /* OpenSSL's read stopped on a full socket: it may go on now. */
        if (c->tls && sg_tls_read_wants_write(c->tls)) events |= EPOLLIN;
    }
    /* ...and its write may have stopped waiting for input. */
    if ((events & EPOLLIN) && c->tls && sg_tls_write_wants_read(c->tls)) {
        c->writable = true;
        conn_flush(c);
        if (c->state == C_CLOSED) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        c->readable = true;
        if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) c->rdhup = true;
        conn_read(c);
    }
}

static void on_connect_timeout(sg_timer *t)
{
    h2_conn *c = (h2_conn *)((char *)t - offsetof(h2_conn, timer));
    sg_log_error("upstream timed out (110: Connection timed out) while %s upstream %s%s",
                 c->state == C_TLS ? "SSL handshaking to" : "connecting to", peer_name(c->m.peer),
                 c->state == C_HANDSHAKE ? " (no HTTP/2 SETTINGS)" : "");
    conn_close(c, SG_UP_CONNECT_TIMEOUT, SG_UP_CONNECT_TIMEOUT);
}

static void on_idle_timeout(sg_timer *t)
{
    conn_shutdown((h2_conn *)((char *)t - offsetof(h2_conn, timer)));
}

/* Liveness: a silent connection gets a PING; no ACK in time, it is dead.
 * The upstream's http2_ping_interval / http2_ping_timeout (c->u lives as
 * long as the connection holds its generation). */
static void on_ping(sg_timer *t)
{
    h2_conn *c = (h2_conn *)((char *)t - offsetof(h2_conn, ping_timer));
    uint32_t idle_ms = c->u->h2_ping_interval_ms;
    uint32_t ack_ms = c->u->h2_ping_timeout_ms ? c->u->h2_ping_timeout_ms : idle_ms;
    if (c->ping_out) {
        sg_log_error("upstream %s did not answer a PING within %u ms: connection closed", peer_name(c->m.peer),
                     ack_ms);
        conn_close(c, SG_UP_CLOSED, SG_UP_CONNECT);
        return;
    }
    uint64_t now = sg_loop_now(c->loop), silent = now - c->last_rx_ms;
    if (silent < idle_ms) {
        sg_timer_arm(c->loop, t, idle_ms - silent);
        return;
    }
    nghttp2_submit_ping(c->sess, NGHTTP2_FLAG_NONE, NULL);
    c->ping_out = true;
    sg_timer_arm(c->loop, t, ack_ms);
    schedule_flush(c);
}

/* The pool's generation was retired: close once no exchange uses c. */
static void member_retire(sg_h2_member *m)
{
    h2_conn *c = CONN_OF(m);
    for (sg_list_node *n = sg_list_first(&c->streams); n; n = n->next)
        if (STREAM_OF(n)->link.ex) return;   /* closes when idle (m->closing) */
    for (sg_list_node *n = sg_list_first(&c->waiting); n; n = n->next)
        if (STREAM_OF(n)->link.ex) return;
    conn_shutdown(c);
}

/* The TLS side of new connection c (the handshake starts once connected).
 * True when cleartext or done. */
static bool conn_tls_new(h2_conn *c, sg_pool *p, h2_stream *st, const sg_tls_key *key)
{
    c->tls_conf = st->tls_conf;
    if (!c->tls_conf) return true;
    c->tls_key = sg_tls_key_dup(key);
    c->tls = sg_pool_tls_new(p, st->peer, c->tls_conf, &c->tls_key, c->io.fd);
    /* Its handshake errors go to the error_log of the location that opened
     * it (of the generation the connection holds). */
    if (c->tls && st->link.ex) sg_tls_set_log(c->tls, st->log);
    return c->tls != NULL;
}

static h2_conn *conn_new(sg_pool *p, sg_h2_pool *hp, h2_stream *st, const sg_tls_key *key)
{
    const sg_upstream_server_conf *sc = st->peer->conf;
    int fd = sg_connect_nonblock((const struct sockaddr *)&sc->addr, sc->addrlen);
    if (fd < 0) {
        sg_log_error("connect() to %s failed (%d: %s) while connecting to upstream", peer_name(st->peer), errno,
                     strerror(errno));
        return NULL;
    }
    h2_conn *c = sg_xcalloc(1, sizeof(*c));
    c->io.fd = fd;
    c->io.on_event = on_event;
    c->w = st->w;
    c->loop = st->loop;
    c->u = st->rt->conf;
    c->pool = p;
    c->state = C_CONNECTING;
    sg_deferred_init(&c->flush, on_flush);
    sg_deferred_init(&c->resume, on_resume);
    sg_deferred_init(&c->reap, on_conn_reap);
    sg_timer_init(&c->timer, on_connect_timeout);
    sg_timer_init(&c->ping_timer, on_ping);
    if (!conn_tls_new(c, p, st, key) || !session_new(c) || sg_loop_add(c->loop, &c->io) < 0) {
        if (c->sess) nghttp2_session_del(c->sess);
        sg_tls_free(c->tls);
        sg_tls_key_free(&c->tls_key);
        close(fd);
        free(c);
        return NULL;
    }
    sg_h2_pool_add(hp, &c->m, st->peer, &c->tls_key);
    c->m.retire = member_retire;
    c->gen = st->gen;
    if (c->w) sg_worker_gen_hold(c->w, c->gen);   /* no worker: fuzzing */
    sg_timer_arm(c->loop, &c->timer, st->connect_timeout_ms);
    return c;
}

/* ---------- stream timers ---------- */

static void on_read_timeout(sg_timer *t)
{
    h2_stream *st = (h2_stream *)((char *)t - offsetof(h2_stream, rtimer));
    const char *what = !st->head_done ? "reading response header from"
                       : st->connect ? "proxying upgraded connection to" : "reading";
    sg_log_error("upstream timed out (110: Connection timed out) while %s upstream %s", what,
                 peer_name(st->peer));
    stream_fail(st, SG_UP_TIMEOUT);
}

static void on_send_timeout(sg_timer *t)
{
    h2_stream *st = (h2_stream *)((char *)t - offsetof(h2_stream, wtimer));
    sg_log_error("upstream timed out (110: Connection timed out) while sending request to upstream %s",
                 peer_name(st->peer));
    stream_fail(st, SG_UP_TIMEOUT);
}

/* ---------- link ops ---------- */

static void link_send_head(sg_upstream_link *l, const sg_upstream_request *req)
{
    h2_stream *st = (h2_stream *)l;
    if (st->head_given) return;
    st->head_given = true;
    st->is_head = sg_str_eq_lit(req->method, "HEAD");
    st->connect = req->protocol.n > 0;
    /* An upgrade is HTTP/1.1's: here the request goes without it, whole.
     * An extended CONNECT's DATA is the tunnel's, with no length. */
    st->has_body = st->connect || (!req->upgrade && req->content_length != 0);
    st->want_resp = true;
    build_request(st, req);
    if (st->connect) arm_read(st);   /* its request is complete: the answer is due */
    if (st->c && !st->waiting) submit(st);
}

static void resume_body(h2_stream *st)
{
    if (st->parked && st->c && st->id > 0) {
        if (!st->body.bytes && !st->end_given) return;
        /* The same provider again; END_STREAM at its EOF, as for the
         * request's first item (nghttp2_submit_request). */
        nghttp2_data_provider dp = { .source.ptr = st, .read_callback = body_read };
        int rv = nghttp2_submit_data(st->c->sess, NGHTTP2_FLAG_END_STREAM, st->id, &dp);
        if (rv != 0) {
            sg_log_error("cannot resume the request body to upstream %s (%s)", peer_name(st->peer),
                         nghttp2_strerror(rv));
            schedule_fail(st, SG_UP_CLOSED);
            return;
        }
        st->parked = false;
        schedule_flush(st->c);
        return;
    }
    if (!st->deferred || !st->c || st->id <= 0) return;
    st->deferred = false;
    nghttp2_session_resume_data(st->c->sess, st->id);
    schedule_flush(st->c);
}

static void link_send_data(sg_upstream_link *l, const char *p, size_t n)
{
    h2_stream *st = (h2_stream *)l;
    if (n == 0 || !st->head_given || !st->has_body || st->end_given) return;
    if (!st->c) return;   /* the stream is over (the peer answered and closed it) */
    sg_outq_append(&st->body, p, n);
    if (!sg_timer_armed(&st->wtimer)) sg_timer_arm(st->loop, &st->wtimer, st->send_timeout_ms);
    /* proxy_tunnel_timeout is silence both ways: the client spoke */
    if (st->connect && st->head_done && !st->read_timeout_set) arm_read(st);
    resume_body(st);
}

static void link_send_end(sg_upstream_link *l)
{
    h2_stream *st = (h2_stream *)l;
    if (!st->head_given || st->end_given) return;
    st->end_given = true;
    resume_body(st);
    arm_read(st);
}

static size_t link_pending(sg_upstream_link *l)
{
    return ((h2_stream *)l)->body.bytes;
}

static void link_want_response(sg_upstream_link *l, bool on)
{
    h2_stream *st = (h2_stream *)l;
    if (st->want_resp == on) return;
    st->want_resp = on;
    arm_read(st);
    if (on && (st->held_off < st->held.len || (st->ended && !st->end_reported)))
        sg_loop_defer(st->loop, &st->notify);
}

/* A tunnel whose sides both ended (a half-closed one whose client ended
 * too) may still have the client's last bytes and END_STREAM to frame:
 * the stream finishes them, within proxy_send_timeout, and is freed when
 * nghttp2 closes it. */
static void link_release(sg_upstream_link *l)
{
    h2_stream *st = (h2_stream *)l;
    if (st->connect && st->ended && st->end_given && !st->eof_sent && st->c && st->id > 0) {
        st->link.ex = NULL;
        st->fail_due = st->drain_due = false;
        sg_timer_disarm(&st->rtimer);
        sg_timer_arm(st->loop, &st->wtimer, st->send_timeout_ms);
        resume_body(st);
        return;
    }
    link_drop(st);
}

static void link_close(sg_upstream_link *l)
{
    link_drop((h2_stream *)l);
}

static int link_detach(sg_upstream_link *l, sg_outq *to_upstream, sg_outq *to_client, sg_tls_conn **tls)
{
    *tls = NULL;
    return -1;   /* a multiplexed connection cannot become a tunnel */
}

static const sg_upstream_link_ops h2_link_ops = {
    .send_head = link_send_head,
    .send_data = link_send_data,
    .send_end = link_send_end,
    .pending = link_pending,
    .want_response = link_want_response,
    .release = link_release,
    .close = link_close,
    .detach = link_detach,
};

/* ---------- opening ---------- */

static h2_stream *stream_new(sg_exchange *ex, sg_upstream_rt *rt, sg_peer *peer, const sg_link_opts *o)
{
    h2_stream *st = sg_block_calloc(sizeof(*st));   /* core/blockcache.h: one per request */
    st->body.lean = true;   /* a message at a time: no 16 KB block per stream (core/buf.h) */
    st->link.ops = &h2_link_ops;
    st->link.ex = ex;
    st->rt = rt;
    st->peer = peer;
    st->tls_conf = o->tls;
    st->tls_name = o->tls_name;
    st->log = o->log;
    st->gen = o->gen;
    st->w = o->w;
    st->loop = o->loop;
    st->connect_timeout_ms = o->connect_timeout_ms;
    st->read_timeout_ms = o->read_timeout_ms;
    st->send_timeout_ms = o->send_timeout_ms;
    st->read_timeout_set = o->read_timeout_set;
    st->tunnel_timeout_ms = o->tunnel_timeout_ms;
    sg_timer_init(&st->rtimer, on_read_timeout);
    sg_timer_init(&st->wtimer, on_send_timeout);
    sg_deferred_init(&st->notify, on_notify);
    sg_deferred_init(&st->reap, on_stream_reap);
    return st;
}

sg_upstream_link *sg_h2_client_open(sg_exchange *ex, const sg_upstream_events *ev, sg_upstream_rt *rt,
                                    sg_peer *peer, const sg_link_opts *o, bool *ready)
{
    h2_stream *st = stream_new(ex, rt, peer, o);
    st->link.ev = ev;
    if (!place(st, NULL, ready)) {
        sg_block_free(st, sizeof(*st));
        return NULL;
    }
    st->link.reused = *ready;   /* on a connection already up: the core may replay a failure */
    return &st->link;
}
