/* The proxy core: balancer pick, upstream link, request forwarding,
 * next-upstream retries and response relay with backpressure.
 *
 * The request body is read from the client only once an upstream
 * connection is established, so a connect failure can be retried on the
 * next peer with the body still unread. Once body bytes went to a peer the
 * request cannot be replayed (nothing is buffered), and only failures before
 * that point are retried, as nginx does with proxy_request_buffering off. */
#include "proxy/proxy.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "http/h1_client.h"
#include "proxy/respond.h"
#include "proxy/upstream_link.h"
#include "upstream/pool.h"

static uint64_t now_ms(sg_exchange *ex)
{
    return sg_loop_now(sg_worker_loop(ex->w));
}

static const sg_loc_conf *loc_conf(const sg_exchange *ex)
{
    return &ex->req.loc->conf;
}

static sg_upstream_rt *runtime(const sg_exchange *ex)
{
    return ex->upstream->runtime;
}

static void append_list(sg_strbuf *b, const char *s, size_t n)
{
    if (b->n) sg_strbuf_append(b, ", ", 2);
    sg_strbuf_append(b, s, n);
}

static void note_attempt_end(sg_exchange *ex, int status)
{
    char tmp[32];
    uint64_t ms = now_ms(ex) - ex->attempt_start_ms;
    int n = snprintf(tmp, sizeof(tmp), "%llu.%03llu", (unsigned long long)(ms / 1000),
                     (unsigned long long)(ms % 1000));
    append_list(&ex->req.upstream_response_time, tmp, (size_t)n);
    if (status) {
        n = snprintf(tmp, sizeof(tmp), "%d", status);
        append_list(&ex->req.upstream_status, tmp, (size_t)n);
    }
}

void sg_proxy_detach(sg_exchange *ex, bool failed)
{
    if (ex->up) {
        sg_upstream_link *l = ex->up;
        ex->up = NULL;
        l->ops->close(l);
    }
    if (ex->peer) {
        sg_balancer_done(runtime(ex)->balancer, ex->peer, failed, now_ms(ex));
        ex->peer = NULL;
    }
}

/* ---- building the upstream request ---- */

static bool uri_char_needs_escape(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || c == '%' || c == '?' || c == '#' || c == '"';
}

static void append_escaped(sg_strbuf *b, sg_str s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (uri_char_needs_escape(c)) {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            sg_strbuf_append(b, e, 3);
        } else {
            sg_strbuf_append(b, (const char *)&s.p[i], 1);
        }
    }
}

/* nginx's rules: without a URI part in proxy_pass the client's URI goes
 * as it came; with one, the part matching the location is replaced. */
static sg_str upstream_target(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    const sg_proxy_pass *pp = loc_conf(ex)->proxy_pass;
    const sg_location *loc = r->loc;
    if (!pp->has_uri && !ex->req_internal && r->request_uri.n && r->request_uri.p[0] == '/')
        return r->request_uri;
    sg_strbuf b = { 0 };
    if (pp->has_uri) {
        sg_strbuf_append_str(&b, pp->uri);
        bool prefix = loc->match == SG_LOC_PREFIX || loc->match == SG_LOC_PREFIX_NOREGEX ||
                      loc->match == SG_LOC_EXACT;
        if (prefix && r->uri.n >= loc->name.n && memcmp(r->uri.p, loc->name.p, loc->name.n) == 0)
            append_escaped(&b, (sg_str){ r->uri.p + loc->name.n, r->uri.n - loc->name.n });
    } else {
        append_escaped(&b, r->uri);
    }
    if (r->has_args) {
        sg_strbuf_append(&b, "?", 1);
        sg_strbuf_append_str(&b, r->args);
    }
    sg_str out = sg_arena_str(&r->arena, (sg_str){ b.p ? b.p : "/", b.n ? b.n : 1 });
    sg_strbuf_free(&b);
    return out;
}

static bool overridden(const sg_loc_conf *lc, sg_str name)
{
    for (size_t i = 0; i < lc->nproxy_headers; i++)
        if (sg_str_caseeq(lc->proxy_headers[i].name, name)) return true;
    return false;
}

static size_t upstream_headers(sg_exchange *ex, sg_header **out)
{
    sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = loc_conf(ex);
    sg_header *h = sg_arena_alloc(&r->arena, sizeof(sg_header) * (lc->nproxy_headers + r->nheaders + 1));
    size_t n = 0;
    for (size_t i = 0; i < lc->nproxy_headers; i++) {
        sg_str v = sg_cval_eval(&lc->proxy_headers[i].value, r);
        if (v.n == 0) continue;   /* proxy_set_header X ""; removes X */
        h[n++] = (sg_header){ lc->proxy_headers[i].name, v, 0 };
    }
    for (size_t i = 0; i < r->nheaders; i++) {
        const sg_header *c = &r->headers[i];
        if (c->flags & SG_H1_HDR_HOP) continue;
        if (sg_str_caseeq_lit(c->name, "content-length") || sg_str_caseeq_lit(c->name, "expect"))
            continue;   /* framing is the codec's; 100-continue was answered here */
        if (overridden(lc, c->name)) continue;
        h[n++] = *c;
    }
    *out = h;
    return n;
}

static void send_request(sg_exchange *ex)
{
    const sg_loc_conf *lc = loc_conf(ex);
    sg_header *h;
    size_t n = upstream_headers(ex, &h);
    sg_upstream_request req = {
        .method = ex->req.method,
        .target = upstream_target(ex),
        .headers = h,
        .nheaders = n,
        .content_length = ex->req_length,
        .http_minor = lc->proxy_http_version == 10 ? 0 : 1,
    };
    sg_upstream_link *l = ex->up;
    l->ops->send_head(l, &req);
    if (ex->req_length == 0 || ex->req_body_done) {
        if (ex->up == l) l->ops->send_end(l);
        return;
    }
    ex->down->want_body(ex, true);
}

/* ---- attempts ---- */

static void proxy_try(sg_exchange *ex);
static bool idempotent(sg_str m);

static bool idempotent(sg_str m)
{
    return sg_str_eq_lit(m, "GET") || sg_str_eq_lit(m, "HEAD") || sg_str_eq_lit(m, "PUT") ||
           sg_str_eq_lit(m, "DELETE") || sg_str_eq_lit(m, "OPTIONS") || sg_str_eq_lit(m, "TRACE");
}

/* May this exchange go to another peer after a failure of kind `flag`? */
static bool may_retry(sg_exchange *ex, uint32_t flag, bool request_sent)
{
    const sg_loc_conf *lc = loc_conf(ex);
    uint32_t mask = lc->next_upstream;
    if ((mask & SG_NU_OFF) || !(mask & flag)) return false;
    if (ex->resp_head_sent || ex->req_body_started) return false;
    if (lc->next_upstream_tries && ex->tries >= lc->next_upstream_tries) return false;
    if (lc->next_upstream_timeout_ms && now_ms(ex) - ex->first_try_ms >= lc->next_upstream_timeout_ms)
        return false;
    if (request_sent && !idempotent(ex->req.method) && !(mask & SG_NU_NON_IDEMPOTENT)) return false;
    return true;
}

void sg_proxy_up_connected(sg_exchange *ex)
{
    send_request(ex);
}

void sg_proxy_up_error(sg_exchange *ex, sg_up_error err, bool nothing_received)
{
    ex->up = NULL;
    ex->down->want_body(ex, false);
    bool connect_failed = err == SG_UP_CONNECT || err == SG_UP_CONNECT_TIMEOUT;
    /* A pooled connection the peer had closed: not the peer's fault, and
     * the request never reached it; try again on a fresh connection. */
    bool replayable = idempotent(ex->req.method) || (loc_conf(ex)->next_upstream & SG_NU_NON_IDEMPOTENT);
    if (ex->up_reused && err == SG_UP_CLOSED && nothing_received && !ex->req_body_started &&
        !ex->resp_head_sent && replayable) {
        bool ready = false;
        ex->up_reused = false;
        sg_upstream_link *l = sg_h1_client_open(ex, runtime(ex), ex->peer, &ready);
        if (l) {
            ex->up = l;
            ex->up_reused = l->reused;
            if (ready) send_request(ex);
            return;
        }
        connect_failed = true;
    }
    bool timeout = err == SG_UP_TIMEOUT || err == SG_UP_CONNECT_TIMEOUT;
    int status = timeout ? 504 : 502;
    note_attempt_end(ex, status);
    sg_balancer_done(runtime(ex)->balancer, ex->peer, true, now_ms(ex));
    ex->peer = NULL;
    uint32_t flag = timeout ? SG_NU_TIMEOUT : err == SG_UP_INVALID ? SG_NU_INVALID_HEADER : SG_NU_ERROR;
    if (may_retry(ex, flag, !connect_failed)) {
        proxy_try(ex);
        return;
    }
    sg_respond_error(ex, status);
}

static void proxy_try(sg_exchange *ex)
{
    sg_upstream_rt *rt = runtime(ex);
    sg_pick_ctx ctx = { .client = ex->req.peer, .now_ms = now_ms(ex), .tried = ex->tried };
    sg_peer *peer = sg_balancer_pick(rt->balancer, &ctx);
    if (!peer) {
        sg_log_error("no live upstreams while connecting to upstream \"%s\"", ex->upstream->name);
        int status = 502;
        if (ex->req.upstream_status.n >= 3 &&
            memcmp(ex->req.upstream_status.p + ex->req.upstream_status.n - 3, "504", 3) == 0)
            status = 504;
        sg_respond_error(ex, status);
        return;
    }
    ex->peer = peer;
    ex->tries++;
    ex->attempt_start_ms = now_ms(ex);
    const char *name = peer->conf->name;
    append_list(&ex->req.upstream_addr, name, strlen(name));
    bool ready = false;
    sg_upstream_link *l = sg_h1_client_open(ex, rt, peer, &ready);
    if (!l) {
        sg_proxy_up_error(ex, SG_UP_CONNECT, true);
        return;
    }
    ex->up = l;
    ex->up_reused = l->reused;
    if (ready) send_request(ex);
}

void sg_proxy_start(sg_exchange *ex)
{
    const sg_proxy_pass *pp = loc_conf(ex)->proxy_pass;
    ex->upstream = pp->upstream;
    sg_upstream_rt *rt = runtime(ex);
    size_t words = sg_balancer_tried_words(rt->balancer);
    ex->tried = sg_arena_alloc(&ex->req.arena, sizeof(uint64_t) * (words ? words : 1));
    memset(ex->tried, 0, sizeof(uint64_t) * (words ? words : 1));
    ex->first_try_ms = now_ms(ex);
    proxy_try(ex);
}

/* ---- the response ---- */

static uint32_t status_flag(int status)
{
    switch (status) {
    case 500: return SG_NU_HTTP_500;
    case 502: return SG_NU_HTTP_502;
    case 503: return SG_NU_HTTP_503;
    case 504: return SG_NU_HTTP_504;
    case 403: return SG_NU_HTTP_403;
    case 404: return SG_NU_HTTP_404;
    case 429: return SG_NU_HTTP_429;
    default: return 0;
    }
}

/* proxy_redirect default: a redirect the backend built from the address we
 * sent it ("http://" $proxy_host and the proxy_pass URI) points back at
 * this location instead, so backend addresses never leak to clients. */
static sg_str rewrite_location(sg_exchange *ex, sg_str v)
{
    const sg_loc_conf *lc = loc_conf(ex);
    const sg_proxy_pass *pp = lc->proxy_pass;
    sg_http_req *r = &ex->req;
    if (!lc->proxy_redirect_off && pp && v.n > 7 && memcmp(v.p, "http://", 7) == 0) {
        sg_str from_uri = pp->has_uri ? pp->uri : SG_STR("/");
        size_t plen = 7 + pp->host.n + from_uri.n;
        if (v.n >= plen && sg_str_caseeq((sg_str){ v.p + 7, pp->host.n }, pp->host) &&
            memcmp(v.p + 7 + pp->host.n, from_uri.p, from_uri.n) == 0) {
            const sg_location *loc = r->loc;
            bool prefix = loc->match == SG_LOC_PREFIX || loc->match == SG_LOC_PREFIX_NOREGEX ||
                          loc->match == SG_LOC_EXACT;
            sg_str to = pp->has_uri && prefix ? loc->name : SG_STR("/");
            size_t n = to.n + v.n - plen;
            char *p = sg_arena_alloc(&r->arena, n + 1);
            memcpy(p, to.p, to.n);
            memcpy(p + to.n, v.p + plen, v.n - plen);
            /* nginx then makes the rewritten one absolute; a relative
             * Location the backend sent itself passes as it is. */
            return sg_respond_absolute_location(ex, (sg_str){ p, n });
        }
    }
    return v;
}

static bool skip_response_header(const sg_h1_header *h)
{
    if (h->flags & SG_H1_HDR_HOP) return true;
    /* Framing is ours; Server and Date are the proxy's own, as nginx. */
    return sg_str_caseeq_lit(h->name, "content-length") ||
           sg_str_caseeq_lit(h->name, "transfer-encoding") ||
           sg_str_caseeq_lit(h->name, "server") || sg_str_caseeq_lit(h->name, "date");
}

void sg_proxy_up_head(sg_exchange *ex, const sg_h1_message *m)
{
    const sg_loc_conf *lc = loc_conf(ex);
    int status = m->status;
    uint32_t flag = status_flag(status);
    if (flag && ex->tries < ex->upstream->nservers && may_retry(ex, flag, true)) {
        note_attempt_end(ex, status);
        bool failed = status >= 500;
        /* No body byte may flow until the next peer has its request head. */
        ex->down->want_body(ex, false);
        sg_proxy_detach(ex, failed);
        proxy_try(ex);
        return;
    }
    if (lc->proxy_intercept_errors && status >= 300 && sg_respond_has_error_page(ex, status)) {
        note_attempt_end(ex, status);
        sg_proxy_detach(ex, false);
        sg_respond_error(ex, status);
        return;
    }
    char code[8];
    int k = snprintf(code, sizeof(code), "%d", status);
    append_list(&ex->req.upstream_status, code, (size_t)k);

    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (m->num_headers + 1));
    size_t n = 0;
    for (size_t i = 0; i < m->num_headers; i++) {
        if (skip_response_header(&m->headers[i])) continue;
        h[n].name = sg_arena_str(&ex->req.arena, m->headers[i].name);
        h[n].value = sg_arena_str(&ex->req.arena, m->headers[i].value);
        h[n].flags = 0;
        if (sg_str_caseeq_lit(h[n].name, "location")) h[n].value = rewrite_location(ex, h[n].value);
        n++;
    }
    int64_t clen = -1;
    bool has_body = m->body != SG_H1_BODY_NONE;
    if (m->body == SG_H1_BODY_LENGTH) clen = (int64_t)m->content_length;
    else if (m->body == SG_H1_BODY_NONE && status != 204 && status != 304) {
        const sg_h1_header *cl = sg_h1_find(m, "content-length");
        uint64_t v = 0;
        clen = (cl && sg_str_to_u64(cl->value, &v)) ? (int64_t)v : 0;
    }
    sg_respond_head(ex, status, h, n, clen, has_body);
}

void sg_proxy_up_data(sg_exchange *ex, const char *p, size_t n)
{
    ex->down->send_data(ex, p, n);
    if (ex->up && ex->down->pending(ex) > SG_HIGH_WATER) {
        ex->up->ops->want_response(ex->up, false);
        ex->waiting_drain = true;
    }
}

void sg_proxy_up_end(sg_exchange *ex)
{
    note_attempt_end(ex, 0);
    if (ex->peer) {
        sg_balancer_done(runtime(ex)->balancer, ex->peer, false, now_ms(ex));
        ex->peer = NULL;
    }
    sg_upstream_link *l = ex->up;
    ex->up = NULL;
    if (l) l->ops->release(l);
    ex->down->send_end(ex);   /* ex may end after this */
}

void sg_proxy_up_drain(sg_exchange *ex)
{
    if (!ex->req_body_done) ex->down->want_body(ex, true);
}
