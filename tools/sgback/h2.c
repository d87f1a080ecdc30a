/* HTTP/2 cleartext with prior knowledge (h2c), on libnghttp2: the -2
 * listeners. Routes for plain requests (every response has x-backend: PORT):
 *   /, anything else   200 "sgback PORT\n"
 *   /headers           200, the request headers as "name: value\n" lines
 *   /echo              200, the request body streamed back as it arrives
 *                      (content-length if the request had one)
 *   /sink              reads the body, 200 "received N\n"
 *   /bytes/N           N pattern bytes ("0123456789abcdef" repeated)
 *   /status/CODE       that status, body "status CODE\n" (none for 204/304);
 *                      1xx or a malformed number: 400
 *   /delay/MS          "sgback PORT\n" after MS ms
 *   /rst               RST_STREAM(INTERNAL_ERROR) instead of an answer
 *   /stats, /stats/reset   the h2 counters as JSON (reset zeroes all but the
 *                      gauges "open" and "open_streams")
 * A request whose content-type starts with application/grpc goes to grpc.c.
 * Plain routes answer once the request body has ended, except /echo.
 *
 * The loop has server.c's shape: per-thread epoll, edge-triggered, every
 * socket registered once for IN|OUT|RDHUP; a connection remembers whether
 * it may hold unread bytes and writes whenever it has output. nghttp2
 * consumes input synchronously, so one per-thread read buffer serves all
 * connections; output is coalesced from nghttp2_session_mem_send into one
 * buffer per connection and written in large pieces. Reading stops while
 * that buffer is above OUT_HIGH: a client that does not read its
 * responses stops being read.
 *
 * Flow control: automatic WINDOW_UPDATE is off. Request DATA is given
 * back (nghttp2_session_consume) when it is handled; for echoes, only when
 * the echoed bytes have been handed to nghttp2 to send, so a client
 * sending faster than it reads is held by its window, and the bytes held
 * per stream never exceed STREAM_WINDOW. There are no idle timeouts: a
 * stream may stay silent for as long as its client likes. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sgback.h"
#include "core/str.h"

#define IN_BUF (64 * 1024)           /* per-thread read buffer */
#define OUT_HIGH (128 * 1024)        /* stop producing/reading above this */
#define STREAM_WINDOW (1024 * 1024)  /* our SETTINGS_INITIAL_WINDOW_SIZE */
#define CONN_WINDOW (16 * 1024 * 1024)
#define MAX_STREAMS 1000             /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define MAX_BUFFERED (512u * 1024 * 1024)   /* SGB_H2_IN_BUFFER bodies */
#define PATTERN "0123456789abcdef"
#define PATTERN_LEN 16
#define PATTERN_BUF (64 * 1024)

typedef struct h2_worker {
    sgb_loop loop;           /* first: the loop's callbacks cast back */
    sgb_h2_conn *conns;      /* all open connections, closed on stop */
    uint8_t in[IN_BUF];
} h2_worker;

struct sgb_h2_conn {
    int kind;                /* SGB_EV_CONN */
    int fd;
    char port[8];            /* x-backend value */
    bool readable, eof, dead;
    bool rdhup;              /* the peer's FIN was reported: read until EOF */
    h2_worker *w;
    struct sgb_h2_conn *prev, *next;
    nghttp2_session *sess;
    sgb_h2_stream *streams;
    uint8_t *out;            /* coalesced output: out[out_start, out_end) */
    size_t out_start, out_end, out_cap;
};

enum route {
    R_HELLO, R_HEADERS, R_ECHO, R_SINK, R_BYTES, R_STATUS, R_DELAY, R_RST,
    R_STATS, R_STATS_RESET,
};

sgb_h2_stats sgb_h2_counters;

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static char pattern[PATTERN_BUF + PATTERN_LEN];

/* ---------------- buffers ---------------- */

static void buf_append(sgb_h2_buf *b, const void *p, size_t n)
{
    if (b->cap - b->end < n && b->start > 0) {
        memmove(b->p, b->p + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->cap - b->end < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->end < n)
            cap *= 2;
        b->p = sg_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->end, p, n);
    b->end += n;
}

static size_t buf_len(const sgb_h2_buf *b)
{
    return b->end - b->start;
}

/* ---------------- streams ---------------- */

static sgb_h2_stream *stream_new(sgb_h2_conn *c, int32_t id)
{
    sgb_h2_stream *s = sg_xcalloc(1, sizeof *s);
    s->c = c;
    s->id = id;
    s->timer.idx = SIZE_MAX;
    s->hdrs = s->hinline;
    s->hcap = sizeof s->hinline;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    atomic_fetch_add(&sgb_h2_counters.streams, 1);
    atomic_fetch_add(&sgb_h2_counters.open_streams, 1);
    return s;
}

/* `give_back`: the session lives on, so echo bytes still held must be
 * returned to the connection window (the stream's own window dies with it). */
static void stream_free(sgb_h2_stream *s, bool give_back)
{
    sgb_h2_conn *c = s->c;
    if (give_back && s->in == SGB_H2_IN_ECHO && buf_len(&s->ibuf) > 0)
        nghttp2_session_consume_connection(c->sess, buf_len(&s->ibuf));
    sgb_timer_disarm(&c->w->loop.timers, &s->timer);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->hdrs != s->hinline)
        free(s->hdrs);
    free(s->ibuf.p);
    atomic_fetch_sub(&sgb_h2_counters.open_streams, 1);
    free(s);
}

static void stream_add_header(sgb_h2_stream *s, const uint8_t *name, size_t nlen,
                              const uint8_t *value, size_t vlen)
{
    size_t need = nlen + vlen + 2;
    if (s->hcap - s->hlen < need) {
        size_t cap = s->hcap * 2;
        while (cap - s->hlen < need)
            cap *= 2;
        if (s->hdrs == s->hinline) {
            s->hdrs = sg_xmalloc(cap);
            memcpy(s->hdrs, s->hinline, s->hlen);
        } else {
            s->hdrs = sg_xrealloc(s->hdrs, cap);
        }
        s->hcap = cap;
    }
    char *p = s->hdrs + s->hlen;
    memcpy(p, name, nlen);
    p[nlen] = 0;
    memcpy(p + nlen + 1, value, vlen);
    p[nlen + 1 + vlen] = 0;
    s->hlen += need;
}

const char *sgb_h2_header(const sgb_h2_stream *s, const char *name, size_t *len)
{
    const char *p = s->hdrs, *end = s->hdrs + s->hlen;
    while (p < end) {
        size_t nlen = strlen(p);
        const char *v = p + nlen + 1;
        size_t vlen = strlen(v);
        if (strcmp(p, name) == 0) {
            if (len)
                *len = vlen;
            return v;
        }
        p = v + vlen + 1;
    }
    return NULL;
}

/* Returns a deferred response body to nghttp2's queue. */
static void wake(sgb_h2_stream *s)
{
    if (s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->sess, s->id);
    }
}

void sgb_h2_reset(sgb_h2_stream *s, uint32_t code)
{
    nghttp2_submit_rst_stream(s->c->sess, NGHTTP2_FLAG_NONE, s->id, code);
}

void sgb_h2_wait(sgb_h2_stream *s, uint64_t ms)
{
    sgb_timer_arm(&s->c->w->loop.timers, &s->timer, sgb_now_ms() + ms);
}

/* ---------------- response bodies ---------------- */

static size_t copy_pattern(sgb_h2_stream *s, uint8_t *buf, size_t len)
{
    uint64_t left = s->total - s->done;
    size_t n = left < len ? (size_t)left : len;
    for (size_t off = 0; off < n;) {
        size_t piece = n - off < PATTERN_BUF ? n - off : PATTERN_BUF;
        memcpy(buf + off, pattern + (s->done + off) % PATTERN_LEN, piece);
        off += piece;
    }
    s->done += n;
    return n;
}

/* The echoed bytes leave our buffer: their window goes back to the client. */
static ssize_t copy_echo(sgb_h2_stream *s, uint8_t *buf, size_t len, bool *eof)
{
    size_t avail = buf_len(&s->ibuf);
    if (avail == 0 && !s->in_end) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < len ? avail : len;
    memcpy(buf, s->ibuf.p + s->ibuf.start, n);
    s->ibuf.start += n;
    if (s->ibuf.start == s->ibuf.end)
        s->ibuf.start = s->ibuf.end = 0;
    if (n > 0)
        nghttp2_session_consume(s->c->sess, s->id, n);
    *eof = s->in_end && buf_len(&s->ibuf) == 0;
    return (ssize_t)n;
}

/* ibuf, `repeat` times; between copies a pause of interval_ms, if any. */
static ssize_t copy_repeat(sgb_h2_stream *s, uint8_t *buf, size_t len, bool *eof)
{
    size_t one = buf_len(&s->ibuf);
    if (s->waiting) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (s->copies >= s->repeat || one == 0) {
        *eof = true;
        return 0;
    }
    size_t n = one - s->done < len ? one - (size_t)s->done : len;
    memcpy(buf, s->ibuf.p + s->ibuf.start + s->done, n);
    s->done += n;
    if (s->done == one) {
        s->done = 0;
        s->copies++;
        if (s->copies < s->repeat && s->interval_ms > 0) {
            s->waiting = true;
            sgb_h2_wait(s, s->interval_ms);
        }
    }
    *eof = s->copies >= s->repeat;
    return (ssize_t)n;
}

static ssize_t body_read(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    sgb_h2_stream *s = src->ptr;
    bool eof = false;
    ssize_t n = 0;
    switch (s->out) {
    case SGB_H2_OUT_FIXED: {
        size_t left = s->fixed_len - (size_t)s->done;
        n = (ssize_t)(left < len ? left : len);
        memcpy(buf, s->fixed + s->done, (size_t)n);
        s->done += (uint64_t)n;
        eof = s->done == s->fixed_len;
        break;
    }
    case SGB_H2_OUT_PATTERN:
        n = (ssize_t)copy_pattern(s, buf, len);
        eof = s->done == s->total;
        break;
    case SGB_H2_OUT_ECHO:
        n = copy_echo(s, buf, len, &eof);
        break;
    case SGB_H2_OUT_REPEAT:
        n = copy_repeat(s, buf, len, &eof);
        break;
    }
    if (eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->grpc) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            sgb_grpc_body_end(s);
        }
    }
    return n;
}

/* ---------------- response heads ---------------- */

#define MAX_NV 24

static nghttp2_nv make_nv(const char *name, const char *value)
{
    return (nghttp2_nv){ (uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                         NGHTTP2_NV_FLAG_NONE };
}

static size_t convert_nv(nghttp2_nv *nva, size_t at, const sgb_h2_nv *nv, size_t n)
{
    for (size_t i = 0; i < n && at < MAX_NV; i++)
        nva[at++] = make_nv(nv[i].name, nv[i].value);
    return at;
}

void sgb_h2_respond(sgb_h2_stream *s, int status, const sgb_h2_nv *extra, size_t n, bool body)
{
    char st[8];
    snprintf(st, sizeof st, "%d", status);
    nghttp2_nv nva[MAX_NV];
    nva[0] = make_nv(":status", st);
    nva[1] = make_nv("x-backend", s->c->port);
    size_t k = convert_nv(nva, 2, extra, n);
    nghttp2_data_provider prd = { .source.ptr = s, .read_callback = body_read };
    s->responded = true;
    s->done = 0;
    nghttp2_submit_response(s->c->sess, s->id, nva, k, body ? &prd : NULL);
}

void sgb_h2_trailers(sgb_h2_stream *s, const sgb_h2_nv *nv, size_t n)
{
    nghttp2_nv nva[MAX_NV];
    size_t k = convert_nv(nva, 0, nv, n);
    nghttp2_submit_trailer(s->c->sess, s->id, nva, k);
}

/* A small body from s->fixed (`len` bytes already there), with its length. */
static void respond_fixed(sgb_h2_stream *s, int status, const char *ctype)
{
    char cl[24];
    snprintf(cl, sizeof cl, "%zu", s->fixed_len);
    sgb_h2_nv nv[] = { { "content-type", ctype }, { "content-length", cl } };
    s->out = SGB_H2_OUT_FIXED;
    sgb_h2_respond(s, status, nv, 2, !s->head_method && s->fixed_len > 0);
}

static void respond_text(sgb_h2_stream *s, int status, const char *ctype, const char *fmt,
                         uint64_t arg)
{
    int n = snprintf(s->fixed, sizeof s->fixed, fmt, arg);
    s->fixed_len = n > 0 ? (size_t)n : 0;
    respond_fixed(s, status, ctype);
}

static void respond_hello(sgb_h2_stream *s)
{
    int n = snprintf(s->fixed, sizeof s->fixed, "sgback %s\n", s->c->port);
    s->fixed_len = (size_t)n;
    respond_fixed(s, 200, "text/plain");
}

static void respond_status(sgb_h2_stream *s, uint64_t status)
{
    if (status == 204 || status == 304) {
        s->fixed_len = 0;
        sgb_h2_respond(s, (int)status, NULL, 0, false);
        return;
    }
    respond_text(s, (int)status, "text/plain", "status %" PRIu64 "\n", status);
}

static void respond_stats(sgb_h2_stream *s, bool reset)
{
    sgb_h2_stats *st = &sgb_h2_counters;
    if (reset) {
        atomic_store(&st->accepted, 0);
        atomic_store(&st->streams, 0);
        atomic_store(&st->served, 0);
        atomic_store(&st->cancelled, 0);
        atomic_store(&st->grpc, 0);
    }
    int n = snprintf(s->fixed, sizeof s->fixed,
                     "{\"accepted\": %llu, \"open\": %llu, \"streams\": %llu, "
                     "\"open_streams\": %llu, \"served\": %llu, \"cancelled\": %llu, "
                     "\"grpc\": %llu}\n",
                     atomic_load(&st->accepted), atomic_load(&st->open),
                     atomic_load(&st->streams), atomic_load(&st->open_streams),
                     atomic_load(&st->served), atomic_load(&st->cancelled),
                     atomic_load(&st->grpc));
    s->fixed_len = (size_t)n;
    respond_fixed(s, 200, "application/json");
}

/* The request headers, one "name: value\n" line each, from ibuf. */
static void respond_headers(sgb_h2_stream *s)
{
    const char *p = s->hdrs, *end = s->hdrs + s->hlen;
    while (p < end) {
        size_t nlen = strlen(p);
        const char *v = p + nlen + 1;
        size_t vlen = strlen(v);
        if (p[0] != ':') {
            buf_append(&s->ibuf, p, nlen);
            buf_append(&s->ibuf, ": ", 2);
            buf_append(&s->ibuf, v, vlen);
            buf_append(&s->ibuf, "\n", 1);
        }
        p = v + vlen + 1;
    }
    char cl[24];
    snprintf(cl, sizeof cl, "%zu", buf_len(&s->ibuf));
    sgb_h2_nv nv[] = { { "content-type", "text/plain" }, { "content-length", cl } };
    s->out = SGB_H2_OUT_REPEAT;
    s->repeat = 1;
    sgb_h2_respond(s, 200, nv, 2, !s->head_method && buf_len(&s->ibuf) > 0);
}

static void respond_bytes(sgb_h2_stream *s)
{
    char cl[24];
    snprintf(cl, sizeof cl, "%" PRIu64, s->n);
    sgb_h2_nv nv[] = { { "content-type", "application/octet-stream" },
                       { "content-length", cl } };
    s->out = SGB_H2_OUT_PATTERN;
    s->total = s->n;
    sgb_h2_respond(s, 200, nv, 2, !s->head_method && s->n > 0);
}

/* ---------------- requests ---------------- */

/* If `path` is `prefix` followed by a decimal number, stores it. */
static bool path_number(sg_str path, const char *prefix, uint64_t *out, bool *bad)
{
    size_t plen = strlen(prefix);
    if (path.n <= plen || memcmp(path.p, prefix, plen) != 0)
        return false;
    *bad = !sg_str_to_u64((sg_str){ path.p + plen, path.n - plen }, out);
    return true;
}

static int match(sgb_h2_stream *s, sg_str path)
{
    static const struct { const char *path; int route; } exact[] = {
        { "/headers", R_HEADERS }, { "/echo", R_ECHO }, { "/sink", R_SINK },
        { "/rst", R_RST }, { "/stats", R_STATS }, { "/stats/reset", R_STATS_RESET },
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (sg_str_eq_lit(path, exact[i].path))
            return exact[i].route;
    bool bad = false;
    int r = R_HELLO;
    if (path_number(path, "/bytes/", &s->n, &bad)) {
        r = R_BYTES;
    } else if (path_number(path, "/status/", &s->n, &bad)) {
        r = R_STATUS;   /* HTTP/2 has no final 1xx */
        bad = bad || s->n < 200 || s->n > 999;
    } else if (path_number(path, "/delay/", &s->n, &bad)) {
        r = R_DELAY;
        bad = bad || s->n > 3600 * 1000;
    }
    if (bad) {
        s->n = 400;
        return R_STATUS;
    }
    return r;
}

/* /echo answers at once and streams; the body keeps its content-type. */
static void begin_echo(sgb_h2_stream *s)
{
    const char *ct = sgb_h2_header(s, "content-type", NULL);
    const char *cl = sgb_h2_header(s, "content-length", NULL);
    sgb_h2_nv nv[2];
    size_t n = 0;
    nv[n++] = (sgb_h2_nv){ "content-type", ct ? ct : "application/octet-stream" };
    if (cl)
        nv[n++] = (sgb_h2_nv){ "content-length", cl };
    if (!s->head_method) {
        s->in = SGB_H2_IN_ECHO;
        s->out = SGB_H2_OUT_ECHO;
    }
    sgb_h2_respond(s, 200, nv, n, !s->head_method);
}

static void request_begin(sgb_h2_stream *s)
{
    const char *m = sgb_h2_header(s, ":method", NULL);
    s->head_method = m && strcmp(m, "HEAD") == 0;
    const char *ct = sgb_h2_header(s, "content-type", NULL);
    if (ct && strncmp(ct, "application/grpc", 16) == 0) {
        s->grpc = true;
        atomic_fetch_add(&sgb_h2_counters.grpc, 1);
        sgb_grpc_begin(s);
        return;
    }
    size_t plen = 0;
    const char *p = sgb_h2_header(s, ":path", &plen);
    sg_str path = { p ? p : "/", p ? plen : 1 };
    const char *q = memchr(path.p, '?', path.n);
    if (q)
        path.n = (size_t)(q - path.p);
    s->route = match(s, path);
    if (s->route == R_ECHO)
        begin_echo(s);
}

static void request_end(sgb_h2_stream *s)
{
    s->in_end = true;
    if (s->out == SGB_H2_OUT_ECHO)
        wake(s);
    if (s->grpc) {
        sgb_grpc_end(s);
        return;
    }
    switch (s->route) {
    case R_HELLO: respond_hello(s); break;
    case R_HEADERS: respond_headers(s); break;
    case R_ECHO: break;   /* answered at the start */
    case R_SINK:
        respond_text(s, 200, "text/plain", "received %" PRIu64 "\n", s->body_bytes);
        break;
    case R_BYTES: respond_bytes(s); break;
    case R_STATUS: respond_status(s, s->n); break;
    case R_DELAY: sgb_h2_wait(s, s->n); break;
    case R_RST: sgb_h2_reset(s, NGHTTP2_INTERNAL_ERROR); break;
    case R_STATS: respond_stats(s, false); break;
    case R_STATS_RESET: respond_stats(s, true); break;
    }
}

static void stream_timer(sgb_h2_stream *s)
{
    if (s->waiting) {   /* a pause between Repeat copies */
        s->waiting = false;
        wake(s);
    } else if (s->grpc) {
        sgb_grpc_timer(s);
    } else {
        respond_hello(s);   /* /delay */
    }
}

/* ---------------- nghttp2 callbacks ---------------- */

static sgb_h2_stream *get_stream(nghttp2_session *sess, int32_t id)
{
    return nghttp2_session_get_stream_user_data(sess, id);
}

static int on_begin_headers(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        sgb_h2_stream *s = stream_new(ud, f->hd.stream_id);
        nghttp2_session_set_stream_user_data(sess, f->hd.stream_id, s);
    }
    return 0;
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;   /* request trailers are ignored */
    sgb_h2_stream *s = get_stream(sess, f->hd.stream_id);
    if (s)
        stream_add_header(s, name, nlen, value, vlen);
    return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
    sgb_h2_stream *s = f->hd.stream_id ? get_stream(sess, f->hd.stream_id) : NULL;
    if (!s)
        return 0;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            request_begin(s);
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            request_end(s);
        break;
    case NGHTTP2_DATA:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            request_end(s);
        break;
    case NGHTTP2_RST_STREAM:
        s->peer_reset = true;
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    sgb_h2_stream *s = get_stream(sess, id);
    if (!s) {
        nghttp2_session_consume(sess, id, len);
        return 0;
    }
    s->body_bytes += len;
    switch (s->in) {
    case SGB_H2_IN_ECHO:
        buf_append(&s->ibuf, data, len);
        wake(s);
        return 0;   /* consumed when echoed */
    case SGB_H2_IN_BUFFER:
        if (buf_len(&s->ibuf) + len > MAX_BUFFERED)
            s->overflow = true;
        else
            buf_append(&s->ibuf, data, len);
        break;
    case SGB_H2_IN_GRPC:
        sgb_grpc_data(s, data, len);
        break;
    case SGB_H2_IN_DISCARD:
        break;
    }
    nghttp2_session_consume(sess, id, len);
    return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud)
{
    sgb_h2_stream *s = get_stream(sess, id);
    if (!s)
        return 0;
    if (s->peer_reset)
        atomic_fetch_add(&sgb_h2_counters.cancelled, 1);
    else if (code == NGHTTP2_NO_ERROR)
        atomic_fetch_add(&sgb_h2_counters.served, 1);
    nghttp2_session_set_stream_user_data(sess, id, NULL);
    stream_free(s, true);
    return 0;
}

static void setup_once(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&options) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    callbacks = cb;
    nghttp2_option_set_no_auto_window_update(options, 1);
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = PATTERN[i % PATTERN_LEN];
}

/* ---------------- connections ---------------- */

static void conn_free(sgb_h2_conn *c)
{
    h2_worker *w = c->w;
    /* Streams still open lost their client mid-way. */
    while (c->streams) {
        atomic_fetch_add(&sgb_h2_counters.cancelled, 1);
        stream_free(c->streams, false);
    }
    nghttp2_session_del(c->sess);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->fd);
    free(c->out);
    atomic_fetch_sub(&sgb_h2_counters.open, 1);
    free(c);
}

static size_t out_len(const sgb_h2_conn *c)
{
    return c->out_end - c->out_start;
}

static void out_append(sgb_h2_conn *c, const uint8_t *p, size_t n)
{
    if (c->out_cap - c->out_end < n) {
        size_t cap = c->out_cap ? c->out_cap : OUT_HIGH + 32 * 1024;
        while (cap - c->out_end < n)
            cap *= 2;
        c->out = sg_xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_end, p, n);
    c->out_end += n;
}

/* Collects nghttp2's frames into `out`, writes them; repeats while both
 * move. 1: progress, 0: nothing to do or would block, -1: dead. */
static int conn_flush(sgb_h2_conn *c)
{
    int progress = 0;
    for (;;) {
        while (out_len(c) < OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->sess, &data);
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            out_append(c, data, (size_t)n);
        }
        if (out_len(c) == 0)
            return progress;
        ssize_t w = write(c->fd, c->out + c->out_start, out_len(c));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? progress : -1;
        }
        progress = 1;
        c->out_start += (size_t)w;
        if (c->out_start < c->out_end)
            return progress;   /* the socket is full: EPOLLOUT will call again */
        c->out_start = c->out_end = 0;
    }
}

/* Reads once and feeds nghttp2. 1: progress, 0: nothing, -1: dead. */
static int conn_read(sgb_h2_conn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->w->in, IN_BUF);
        if (n > 0) {
            /* A short read emptied the socket and ET reports the next bytes;
             * but a FIN that came with these bytes is reported only once. */
            if (n < IN_BUF && !c->rdhup)
                c->readable = false;
            ssize_t r = nghttp2_session_mem_recv(c->sess, c->w->in, (size_t)n);
            return r < 0 ? -1 : 1;
        }
        if (n == 0) {
            c->eof = true;
            c->readable = false;
            return 1;
        }
        if (errno == EINTR)
            continue;
        c->readable = false;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
}

static void conn_run(sgb_h2_conn *c)
{
    while (!c->dead) {
        int progress = 0;
        if (c->readable && !c->eof && out_len(c) < OUT_HIGH) {
            int r = conn_read(c);
            if (r < 0)
                c->dead = true;
            progress |= r > 0;
        }
        int f = conn_flush(c);
        if (f < 0)
            c->dead = true;
        progress |= f > 0;
        /* A client that shut its side is gone for HTTP/2 purposes. */
        if (c->eof && out_len(c) == 0)
            c->dead = true;
        if (!nghttp2_session_want_read(c->sess) && !nghttp2_session_want_write(c->sess) &&
            out_len(c) == 0)
            c->dead = true;
        if (!progress)
            break;
    }
    if (c->dead)
        conn_free(c);
}

static void conn_accept(sgb_loop *lp, sgb_listener *l, int fd)
{
    h2_worker *w = (h2_worker *)lp;
    sgb_h2_conn *c = sg_xcalloc(1, sizeof *c);
    c->kind = SGB_EV_CONN;
    c->fd = fd;
    snprintf(c->port, sizeof c->port, "%u", (unsigned)l->port);
    c->w = w;
    if (nghttp2_session_server_new2(&c->sess, callbacks, c, options) != 0)
        abort();
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
    };
    nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(c->sess, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add(&sgb_h2_counters.accepted, 1);
    atomic_fetch_add(&sgb_h2_counters.open, 1);
    /* Registered writable: the first EPOLLOUT sends our SETTINGS. */
    if (!sgb_loop_add(lp, fd, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET))
        conn_free(c);
}

/* ---------------- the loop ---------------- */

static void on_timer(sgb_loop *lp, sgb_timer *t)
{
    sgb_h2_stream *s = (sgb_h2_stream *)((char *)t - offsetof(sgb_h2_stream, timer));
    sgb_h2_conn *c = s->c;
    stream_timer(s);
    conn_run(c);
}

static void on_event(sgb_loop *lp, struct epoll_event *ev)
{
    sgb_h2_conn *c = ev->data.ptr;
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->readable = true;
    if (ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->rdhup = true;
    conn_run(c);
}

static const sgb_loop_ops ops = { .accept = conn_accept, .event = on_event, .timer = on_timer };

void *sgb_h2_worker_main(void *arg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, setup_once);
    sgb_worker_args *a = arg;
    h2_worker *w = sg_xcalloc(1, sizeof *w);
    w->loop.ops = &ops;
    sgb_loop_open(&w->loop, a);
    sgb_loop_run(&w->loop);
    while (w->conns)
        conn_free(w->conns);
    sgb_loop_close(&w->loop, a);
    free(w);
    return NULL;
}
