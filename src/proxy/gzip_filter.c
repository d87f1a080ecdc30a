/* The gzip filter: see gzip_filter.h.
 *
 * Which responses (nginx's ngx_http_gzip_header_filter and ngx_http_gzip_ok):
 * - the location has `gzip on`; the status is 200, 403 or 404; the head
 *   has no Content-Encoding; a known length is at least gzip_min_length;
 *   the media type is text/html or in gzip_types (or gzip_types *);
 *   a body may follow (HEAD gets the head gzip would give GET, as nginx);
 * - never a gRPC call, an upgraded exchange (RFC 8441 tunnel) or a 101;
 * - the request's Accept-Encoding names gzip (q > 0), its version is at
 *   least gzip_http_version, gzip_disable does not match its User-Agent,
 *   and a request that came through a proxy (Via) passes gzip_proxied.
 * Once those but the request's checks hold, gzip_vary adds
 * `Vary: Accept-Encoding` (nginx: r->gzip_vary). */
#include "proxy/gzip_filter.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include "core/log.h"
#include "exchange/vars.h"

struct sg_gzip_filter {
    z_stream z;
    const sg_downstream_ops *inner;    /* the codec's ops */
    sg_exchange *ex;
    sg_deferred flush;                 /* Z_SYNC_FLUSH at the end of the iteration */
    bool failed;                       /* zlib refused: the response was aborted */
};

/* Compressed output is handed to the codec, which copies it, in pieces of
 * this size. */
#define OUT_CHUNK 16384
static _Thread_local unsigned char out_chunk[OUT_CHUNK];

/* ---- the request and the head ---- */

bool sg_gzip_accepts(sg_str ae)
{
    const char *p = ae.p, *end = ae.p + ae.n;
    /* "gzip" as a whole coding: at the start, or after ',' or ' ' */
    const char *g = NULL;
    for (const char *s = p; s + 4 <= end; s++) {
        if (strncasecmp(s, "gzip", 4) != 0) continue;
        if (s == p || s[-1] == ',' || s[-1] == ' ') {
            g = s;
            break;
        }
    }
    if (!g) return false;
    const char *s = g + 4;
    while (s < end && *s == ' ') s++;
    if (s == end || *s == ',') return true;
    if (*s != ';') return false;
    s++;
    while (s < end && *s == ' ') s++;
    if (s == end) return true;
    if (*s != 'q' && *s != 'Q') return false;
    s++;
    if (s + 2 > end || *s != '=') return false;
    s++;
    /* nginx's ngx_http_gzip_quantity: "0", "1", "0.d[d[d]]", "1.0[0[0]]";
     * anything else, and 0, is a refusal */
    if (*s != '0' && *s != '1') return false;
    bool one = *s == '1';
    s++;
    unsigned q = one ? 100 : 0;
    if (s < end && *s == '.') {
        s++;
        int digits = 0;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
            if (++digits > 3) return false;
            if (one) {
                if (*s != '0') return false;
            } else {
                q += (unsigned)(*s - '0') * (digits == 1 ? 100 : digits == 2 ? 10 : 1);
            }
        }
    }
    while (s < end && *s == ' ') s++;
    if (s < end && *s != ',') return false;
    return q > 0;
}

static const char *find_lit(sg_str h, const char *lit)
{
    size_t n = strlen(lit);
    for (size_t i = 0; i + n <= h.n; i++)
        if (memcmp(h.p + i, lit, n) == 0) return h.p + i;
    return NULL;
}

bool sg_gzip_msie6(sg_str ua)
{
    const char *m = find_lit(ua, "MSIE ");
    if (!m || m + 7 >= ua.p + ua.n) return false;
    bool msie6 = false;
    if (m[6] == '.') {
        if (m[5] == '4' || m[5] == '5') {
            msie6 = true;
        } else if (m[5] == '6') {
            sg_str rest = { m + 8, (size_t)(ua.p + ua.n - (m + 8)) };
            msie6 = find_lit(rest, "SV1") == NULL;
        }
    }
    if (find_lit(ua, "Opera")) msie6 = false;
    return msie6;
}

bool sg_gzip_type_ok(const sg_loc_conf *lc, sg_str ct)
{
    if (lc->gzip_types_any) return true;
    const char *semi = memchr(ct.p ? ct.p : "", ';', ct.n);
    size_t n = semi ? (size_t)(semi - ct.p) : ct.n;
    while (n > 0 && (ct.p[n - 1] == ' ' || ct.p[n - 1] == '\t')) n--;
    sg_str type = { ct.p, n };
    if (n == 0) return false;
    if (sg_str_caseeq_lit(type, "text/html")) return true;
    for (size_t i = 0; i < lc->ngzip_types; i++)
        if (sg_str_caseeq(type, lc->gzip_types[i])) return true;
    return false;
}

static const sg_header *resp_header(const sg_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (sg_str_caseeq_lit(resp->headers[i].name, name)) return &resp->headers[i];
    return NULL;
}

/* An HTTP date in any of RFC 9110's three forms; -1 if it is none. */
static time_t http_time(sg_str v)
{
    static const char *const forms[] = {
        "%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y",
    };
    char buf[64];
    if (v.n == 0 || v.n >= sizeof(buf)) return -1;
    memcpy(buf, v.p, v.n);
    buf[v.n] = '\0';
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(buf, forms[i], &tm);
        if (end && *end == '\0') return timegm(&tm);
    }
    return -1;
}

/* A Cache-Control directive (no-cache, no-store, private) in any of the
 * response's Cache-Control fields, arguments aside. */
static bool cache_control_has(const sg_response *resp, const char *dir)
{
    size_t dn = strlen(dir);
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (!sg_str_caseeq_lit(resp->headers[i].name, "cache-control")) continue;
        sg_str v = resp->headers[i].value;
        size_t k = 0;
        while (k < v.n) {
            while (k < v.n && (v.p[k] == ' ' || v.p[k] == ',' || v.p[k] == '\t')) k++;
            size_t start = k;
            while (k < v.n && v.p[k] != ',') k++;
            if (k - start >= dn && strncasecmp(v.p + start, dir, dn) == 0) {
                char next = start + dn < v.n ? v.p[start + dn] : ',';
                if (next == ',' || next == ' ' || next == '=' || next == ';' || next == '\t') return true;
            }
        }
    }
    return false;
}

bool sg_gzip_proxied_ok(uint32_t p, bool authorization, const sg_response *resp, time_t now)
{
    if (p & SG_GZIP_PROXIED_OFF) return false;
    if (p & SG_GZIP_PROXIED_ANY) return true;
    if ((p & SG_GZIP_PROXIED_AUTH) && authorization) return true;
    const sg_header *e = resp_header(resp, "expires");
    if (e) {
        if (!(p & SG_GZIP_PROXIED_EXPIRED)) return false;
        time_t expires = http_time(e->value);
        if (expires == -1) return false;
        const sg_header *d = resp_header(resp, "date");
        time_t date = d ? http_time(d->value) : now;
        if (date == -1) return false;
        return expires < date;
    }
    if (resp_header(resp, "cache-control")) {
        return ((p & SG_GZIP_PROXIED_NO_CACHE) && cache_control_has(resp, "no-cache")) ||
               ((p & SG_GZIP_PROXIED_NO_STORE) && cache_control_has(resp, "no-store")) ||
               ((p & SG_GZIP_PROXIED_PRIVATE) && cache_control_has(resp, "private"));
    }
    if ((p & SG_GZIP_PROXIED_NO_LM) && resp_header(resp, "last-modified")) return false;
    if ((p & SG_GZIP_PROXIED_NO_ETAG) && resp_header(resp, "etag")) return false;
    return true;
}

/* The request's side (ngx_http_gzip_ok). */
static bool request_ok(const sg_exchange *ex, const sg_loc_conf *lc, const sg_response *resp)
{
    const sg_http_req *r = &ex->req;
    const sg_header *ae = sg_req_find_header(r, SG_STR("accept-encoding"));
    if (!ae || !sg_gzip_accepts(ae->value)) return false;
    const sg_header *ua = sg_req_find_header(r, SG_STR("user-agent"));
    if (ua && lc->gzip_disable_msie6 && sg_gzip_msie6(ua->value)) return false;
    if ((uint32_t)(r->http_major * 10 + r->http_minor) < lc->gzip_http_version) return false;
    if (sg_req_find_header(r, SG_STR("via")) &&
        !sg_gzip_proxied_ok(lc->gzip_proxied, sg_req_find_header(r, SG_STR("authorization")) != NULL, resp, time(NULL)))
        return false;
    for (size_t i = 0; ua && i < lc->ngzip_disable; i++)
        if (sg_regex_exec(lc->gzip_disable[i], ua->value, NULL)) return false;
    return true;
}

static bool status_ok(int status)
{
    return status == 200 || status == 403 || status == 404;
}

/* ---- compressing ---- */

/* Feeds p..n to zlib with `flush` and hands the codec what comes out. */
static bool deflate_some(sg_gzip_filter *g, const char *p, size_t n, int flush)
{
    g->z.next_in = (Bytef *)(uintptr_t)p;
    g->z.avail_in = (uInt)n;
    for (;;) {
        g->z.next_out = out_chunk;
        g->z.avail_out = OUT_CHUNK;
        int rc = deflate(&g->z, flush);
        if (rc == Z_STREAM_ERROR) return false;
        size_t have = OUT_CHUNK - g->z.avail_out;
        if (have) g->inner->send_data(g->ex, (const char *)out_chunk, have);
        if (flush == Z_FINISH) {
            if (rc == Z_STREAM_END) return true;
            continue;
        }
        if (g->z.avail_out != 0 && g->z.avail_in == 0) return true;
    }
}

static void fail(sg_gzip_filter *g)
{
    sg_ex_log(g->ex, SG_LOG_ERROR, "deflate() failed: %s", g->z.msg ? g->z.msg : "stream error");
    g->failed = true;
    sg_loop_cancel(&g->flush);
    g->inner->abort(g->ex);
}

static void on_flush(sg_deferred *d)
{
    sg_gzip_filter *g = (sg_gzip_filter *)((char *)d - offsetof(sg_gzip_filter, flush));
    if (!g->failed && !deflate_some(g, "", 0, Z_SYNC_FLUSH)) fail(g);
}

static void gz_send_head(sg_exchange *ex, const sg_response *resp)
{
    ex->gzip->inner->send_head(ex, resp);
}

static void gz_send_data(sg_exchange *ex, const char *p, size_t n)
{
    sg_gzip_filter *g = ex->gzip;
    if (g->failed || n == 0) return;
    while (n > 0) {   /* avail_in is a uInt */
        size_t k = n > (1u << 30) ? (1u << 30) : n;
        if (!deflate_some(g, p, k, Z_NO_FLUSH)) {
            fail(g);
            return;
        }
        p += k;
        n -= k;
    }
    sg_loop_defer(sg_worker_loop(ex->w), &g->flush);
}

/* The rest of the stream and the gzip trailer; false if zlib failed (the
 * response was aborted). */
static bool finish_stream(sg_gzip_filter *g)
{
    sg_loop_cancel(&g->flush);
    if (g->failed) return false;
    if (!deflate_some(g, "", 0, Z_FINISH)) {
        fail(g);
        return false;
    }
    g->ex->req.gzip_in = g->z.total_in;
    g->ex->req.gzip_out = g->z.total_out;
    return true;
}

static void gz_send_end(sg_exchange *ex)
{
    sg_gzip_filter *g = ex->gzip;
    if (!finish_stream(g)) return;
    g->inner->send_end(ex);   /* ex may end after this */
}

static void gz_send_trailers(sg_exchange *ex, const sg_header *h, size_t n)
{
    sg_gzip_filter *g = ex->gzip;
    if (!finish_stream(g)) return;
    if (g->inner->send_trailers) g->inner->send_trailers(ex, h, n);
    else g->inner->send_end(ex);
}

static void gz_want_body(sg_exchange *ex, bool on)
{
    ex->gzip->inner->want_body(ex, on);
}

static size_t gz_pending(sg_exchange *ex)
{
    return ex->gzip->inner->pending(ex);
}

static void gz_abort(sg_exchange *ex)
{
    sg_gzip_filter *g = ex->gzip;
    sg_loop_cancel(&g->flush);
    g->failed = true;   /* nothing more goes out */
    g->inner->abort(ex);
}

/* No detach: a compressed response is never a 101. */
static const sg_downstream_ops gzip_ops = {
    .send_head = gz_send_head,
    .send_data = gz_send_data,
    .send_end = gz_send_end,
    .want_body = gz_want_body,
    .pending = gz_pending,
    .abort = gz_abort,
    .detach = NULL,
    .send_trailers = gz_send_trailers,
};

/* ---- the head ---- */

/* nginx's window and hash sizes (gzip_window 32k, gzip_hash 16k), made
 * smaller for a body of known small length (ngx_http_gzip_filter_memory):
 * a 2 KB page does not need 256 KB of compressor. */
static sg_gzip_filter *filter_new(sg_exchange *ex, const sg_loc_conf *lc, int64_t length)
{
    int wbits = 15, memlevel = 8;
    if (length > 0) {
        while (length < ((1 << (wbits - 1)) - 262) && wbits > 9) {
            wbits--;
            memlevel--;
        }
        if (memlevel < 1) memlevel = 1;
    }
    sg_gzip_filter *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    /* windowBits + 16: zlib writes the gzip header and trailer */
    int rc = deflateInit2(&g->z, (int)lc->gzip_comp_level, Z_DEFLATED, wbits + 16, memlevel, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        sg_ex_log(ex, SG_LOG_ERROR, "deflateInit2() failed: %d", rc);
        free(g);
        return NULL;
    }
    g->ex = ex;
    g->inner = ex->down;
    sg_deferred_init(&g->flush, on_flush);
    return g;
}

/* ETag of a compressed body: a strong one becomes weak, anything else
 * that is not weak already is dropped (ngx_http_weak_etag). */
static bool weak_etag(sg_arena *a, sg_header *h)
{
    sg_str v = h->value;
    if (v.n >= 2 && v.p[0] == 'W' && v.p[1] == '/') return true;
    if (v.n == 0 || v.p[0] != '"') return false;
    char *p = sg_arena_alloc(a, v.n + 2);
    memcpy(p, "W/", 2);
    memcpy(p + 2, v.p, v.n);
    h->value = (sg_str){ p, v.n + 2 };
    return true;
}

static void add_vary(sg_exchange *ex, sg_response *resp)
{
    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (resp->nheaders + 1));
    if (resp->nheaders) memcpy(h, resp->headers, sizeof(sg_header) * resp->nheaders);
    h[resp->nheaders] = (sg_header){ SG_STR("Vary"), SG_STR("Accept-Encoding"), 0 };
    resp->headers = h;
    resp->nheaders++;
}

void sg_gzip_head(sg_exchange *ex, sg_response *resp)
{
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf : NULL;
    if (!lc || !lc->gzip || ex->gzip || ex->tunnel || ex->grpc || ex->upgrade || !status_ok(resp->status))
        return;
    bool head = sg_str_eq_lit(ex->req.method, "HEAD");
    if (!resp->has_body && !head) return;
    const sg_header *ce = resp_header(resp, "content-encoding");
    if (ce && ce->value.n) return;
    if (resp->content_length >= 0 && (uint64_t)resp->content_length < lc->gzip_min_length) return;
    const sg_header *ct = resp_header(resp, "content-type");
    sg_str type = ct ? ct->value : SG_STR("");
    /* gRPC never, even with gzip_types *: its messages carry their own
     * compression flag, and a client would not read a gzip stream. */
    if (type.n >= 16 && strncasecmp(type.p, "application/grpc", 16) == 0) return;
    if (!sg_gzip_type_ok(lc, type)) return;
    if (!request_ok(ex, lc, resp)) {
        if (lc->gzip_vary) add_vary(ex, resp);
        return;
    }
    sg_gzip_filter *g = NULL;
    if (!head) {
        g = filter_new(ex, lc, resp->content_length);
        if (!g) {
            if (lc->gzip_vary) add_vary(ex, resp);
            return;
        }
    }
    sg_arena *a = &ex->req.arena;
    sg_header *h = sg_arena_alloc(a, sizeof(sg_header) * (resp->nheaders + 2));
    size_t n = 0;
    for (size_t i = 0; i < resp->nheaders; i++) {
        const sg_header *x = &resp->headers[i];
        if (sg_str_caseeq_lit(x->name, "accept-ranges") || sg_str_caseeq_lit(x->name, "content-length") ||
            sg_str_caseeq_lit(x->name, "content-encoding"))
            continue;
        h[n] = *x;
        if (sg_str_caseeq_lit(x->name, "etag") && !weak_etag(a, &h[n])) continue;
        n++;
    }
    h[n++] = (sg_header){ SG_STR("Content-Encoding"), SG_STR("gzip"), 0 };
    if (lc->gzip_vary) h[n++] = (sg_header){ SG_STR("Vary"), SG_STR("Accept-Encoding"), 0 };
    resp->headers = h;
    resp->nheaders = n;
    resp->content_length = -1;
    if (head) {
        /* nginx answers HEAD with the head GET would get; no framing then
         * (an HTTP/1.1 codec would announce chunked for a body) */
        resp->has_body = false;
        return;
    }
    ex->gzip = g;
    ex->down = &gzip_ops;
}

void sg_gzip_release(sg_exchange *ex)
{
    sg_gzip_filter *g = ex->gzip;
    if (!g) return;
    sg_loop_cancel(&g->flush);
    deflateEnd(&g->z);
    ex->down = g->inner;
    ex->gzip = NULL;
    free(g);
}
