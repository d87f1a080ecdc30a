/* The proxy core: balancer pick, upstream link, request forwarding,
 * next-upstream retries and response relay with backpressure.
 *
 * The request body is read from the client only once an upstream
 * connection is established, so a connect failure can be retried on the
 * next peer with the body still unread. Once body bytes went to a peer the
 * request cannot be replayed (nothing is buffered), and only failures before
 * that point are retried, as nginx does with proxy_request_buffering off.
 *
 * Upgrades (WebSocket and any other protocol the client offers, never
 * h2c): the request goes with its Upgrade and Connection: upgrade even
 * without proxy_set_header lines. A 101 that names an offered protocol
 * (and for WebSocket proves it read the key) turns the exchange into a
 * tunnel: an HTTP/1.1 client's socket and the upstream's are handed to
 * proxy/tunnel.c and the exchange ends, logged with status 101 when the
 * tunnel closes (proxy/tunnel_log.h); an HTTP/2
 * client (RFC 8441 extended CONNECT) gets a 200 and its stream relays raw
 * bytes through this exchange (ex->tunnel). With proxy_http_version 2 an
 * extended CONNECT goes on as one (if the backend announced RFC 8441
 * support, else 502) and its 2xx opens the same kind of tunnel; an
 * HTTP/1.1 WebSocket handshake there is answered 501. Any other answer is
 * relayed as a normal response. */
#include "proxy/proxy.h"
#include "proxy/sticky.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/stats.h"
#include "observe/metrics.h"
#include "http/h1_client.h"
#include "http/h2_client.h"
#include "conf/rewrite.h"
#include "conf/ssl_conf.h"
#include "exchange/vars.h"
#include "http/status.h"
#include "proxy/grpc.h"
#include "proxy/reqbody.h"
#include "proxy/pass_vars.h"
#include "proxy/header_filter.h"
#include "proxy/limit.h"
#include "proxy/respond.h"
#include "proxy/tunnel.h"
#include "proxy/tunnel_log.h"
#include "proxy/upgrade.h"
#include "proxy/rate_limit.h"
#include "proxy/accel.h"
#include "exchange/upstream_link.h"
#include "upstream/pool.h"

static uint64_t now_ms(sg_exchange *ex)
{
    return sg_loop_now(sg_worker_loop(ex->w));
}

static const sg_loc_conf *loc_conf(const sg_exchange *ex)
{
    return &ex->req.loc->conf;
}

/* The pass this request goes to: the location's, or the one its
 * variables made (proxy/pass_vars.h). */
static const sg_proxy_pass *pass_of(const sg_exchange *ex)
{
    return ex->req.pass ? ex->req.pass : loc_conf(ex)->proxy_pass;
}

static sg_upstream_rt *runtime(const sg_exchange *ex)
{
    return ex->upstream->runtime;
}

/* An HTTP/2 client's extended CONNECT to an HTTP/2 upstream: it goes on
 * as an extended CONNECT (RFC 8441 both sides), a 2xx opens the tunnel. */
static bool connect_upstream(const sg_exchange *ex)
{
    return ex->req.protocol.n && loc_conf(ex)->pass_opts->http_version == 20;
}

/* $upstream_addr and $upstream_status grow by one entry per attempt, in
 * the request's arena: no allocation of their own per request. */
static void append_list(sg_http_req *r, sg_str *list, const char *s, size_t n)
{
    size_t sep = list->n ? 2 : 0;
    char *p = sg_arena_alloc(&r->arena, list->n + sep + n);
    if (list->n) memcpy(p, list->p, list->n);
    if (sep) memcpy(p + list->n, ", ", 2);
    memcpy(p + list->n + sep, s, n);
    *list = (sg_str){ p, list->n + sep + n };
}

/* The attempt's figures are recorded as numbers; exchange/vars.c formats
 * the $upstream_* lists from them only when something reads them. */
static void note_attempt_end(sg_exchange *ex, int status)
{
    sg_http_req *r = &ex->req;
    sg_attempt *a = sg_req_attempt_add(r);
    a->response_ms = now_ms(ex) - ex->attempt_start_ms;
    a->connect_ms1 = ex->up_connect_ms;
    a->header_ms1 = ex->up_header_ms;
    a->body_len = r->up_body_bytes;
    a->recv = ex->up ? ex->up->bytes_received - ex->up_recv0 : 0;
    a->sent = ex->up ? ex->up->bytes_sent - ex->up_sent0 : 0;
    if (status) {
        char tmp[16];
        size_t n = sg_u64_to_dec(tmp, (uint64_t)status);
        append_list(r, &r->upstream_status, tmp, n);
    }
}

void sg_proxy_detach(sg_exchange *ex, bool failed)
{
    if (ex->up) {
        sg_upstream_link *l = ex->up;
        ex->up = NULL;
        /* A half-closed tunnel (up_end) that the client ended too: what
         * it sent last still goes to the backend, then its FIN. */
        bool both_ended = ex->tunnel && ex->resp_done && ex->req_body_done && !ex->aborted && !failed;
        if (both_ended) l->ops->release(l);
        else l->ops->close(l);
    }
    if (ex->peer) {
        sg_balancer_done(sg_upstream_balancer(runtime(ex)), ex->peer, failed, now_ms(ex));
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
    const sg_proxy_pass *pp = pass_of(ex);
    const sg_location *loc = sg_rw_real_location(r->loc);   /* an `if` block proxies as its location */
    /* with variables, a URI part replaces the whole URI, as nginx */
    if (pp->has_vars && pp->has_uri) return pp->uri;
    if (!pp->has_uri && !ex->req_internal && !r->uri_rewritten && r->request_uri.n && r->request_uri.p[0] == '/')
        return r->request_uri;
    sg_strbuf b = { 0 };
    /* after `rewrite ... break` nginx sends the whole new URI */
    if (pp->has_uri && !r->rw_location_invalid) {
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
    for (size_t i = 0; i < lc->pass_opts->nheaders; i++)
        if (sg_str_caseeq(lc->pass_opts->headers[i].name, name)) return true;
    return false;
}

/* Upgrade and Connection from proxy_set_header (seed 08's `Upgrade
 * $http_upgrade`, `Connection $connection_upgrade`) apply only to a
 * request that may upgrade; otherwise (h2c, proxy_upgrade off, a body)
 * they would ask the backend for a switch the proxy will not relay. A
 * request that may upgrade gets them even when the user set neither. */
static sg_str upgrade_header_value(const sg_exchange *ex, sg_str name, sg_str v, bool *upgrade_sent)
{
    bool is_upgrade = sg_str_caseeq_lit(name, "upgrade");
    bool is_connection = sg_str_caseeq_lit(name, "connection");
    if (!ex->upgrade) {
        if (is_upgrade || (is_connection && sg_token_list_has(v, SG_STR("upgrade")))) return SG_STR_NULL;
        return v;
    }
    if (is_upgrade) {
        *upgrade_sent = true;
        return v.n ? v : ex->upgrade_offer;
    }
    if (is_connection && v.n == 0) return SG_STR("upgrade");
    return v;
}

/* The RFC 8441 translation: an HTTP/2 client's CONNECT becomes an
 * HTTP/1.1 WebSocket handshake with a key of our own. */
static size_t ws_h2_headers(sg_exchange *ex, sg_header *h, size_t n)
{
    if (!sg_req_find_header(&ex->req, SG_STR("sec-websocket-version")))
        h[n++] = (sg_header){ SG_STR("Sec-WebSocket-Version"), SG_STR("13"), 0 };
    h[n++] = (sg_header){ SG_STR("Sec-WebSocket-Key"), ex->ws_key, 0 };
    return n;
}

/* The array is the caller's (`small` when it fits, else malloc'd): the
 * codec copies the head when it is sent, so it is not kept in the
 * exchange's arena, which lives as long as the call (idle gRPC streams). */
static size_t upstream_headers(sg_exchange *ex, sg_header *small, size_t nsmall, sg_header **out)
{
    sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = loc_conf(ex);
    size_t cap = lc->pass_opts->nheaders + r->nheaders + 4;
    sg_header *h = cap <= nsmall ? small : sg_xmalloc(sizeof(sg_header) * cap);
    size_t n = 0;
    bool upgrade_sent = false;
    for (size_t i = 0; i < lc->pass_opts->nheaders; i++) {
        sg_str name = lc->pass_opts->headers[i].name;
        sg_str v = sg_cval_eval(&lc->pass_opts->headers[i].value, r);
        v = upgrade_header_value(ex, name, v, &upgrade_sent);
        if (v.n == 0) continue;   /* proxy_set_header X ""; removes X */
        h[n++] = (sg_header){ name, v, 0 };
    }
    if (ex->upgrade && !upgrade_sent)
        h[n++] = (sg_header){ SG_STR("Upgrade"), ex->upgrade_offer, 0 };
    bool h2_ws = ex->upgrade && ex->req.protocol.n;
    /* proxy_pass_request_headers off: only the proxy_set_header ones */
    size_t nclient = lc->pass_request_headers ? r->nheaders : 0;
    for (size_t i = 0; i < nclient; i++) {
        const sg_header *c = &r->headers[i];
        if (c->flags & SG_HDR_HOP) continue;
        if (sg_str_caseeq_lit(c->name, "content-length") || sg_str_caseeq_lit(c->name, "expect"))
            continue;   /* framing is the codec's; 100-continue was answered here */
        /* h2c's settings mean nothing past this hop (h2c is never forwarded). */
        if (sg_str_caseeq_lit(c->name, "http2-settings")) continue;
        if (h2_ws && sg_str_caseeq_lit(c->name, "sec-websocket-key")) continue;
        if (overridden(lc, c->name)) continue;
        h[n++] = *c;
    }
    if (h2_ws) n = ws_h2_headers(ex, h, n);
    *out = h;
    return n;
}

static void send_request(sg_exchange *ex)
{
    const sg_loc_conf *lc = loc_conf(ex);
    sg_header small[32], *h;
    size_t n = upstream_headers(ex, small, sizeof(small) / sizeof(small[0]), &h);
    /* A body read whole first, proxy_set_body's or none goes with its
     * length; the client's streams as it came. */
    int64_t stored_len = 0;
    bool stored = sg_reqbody_stored(ex, &stored_len);
    sg_upstream_request req = {
        .method = ex->req.method,
        .target = upstream_target(ex),
        .headers = h,
        .nheaders = n,
        .content_length = stored ? stored_len : ex->req_length,
        .http_minor = lc->pass_opts->http_version == 10 ? 0 : 1,
    };
    /* an empty body read whole is still a body (a chunked one, an HTTP/2
     * stream with an empty DATA, Content-Length: 0) */
    req.empty_body = stored && stored_len == 0 &&
                     (ex->req_length != 0 || sg_req_find_header(&ex->req, SG_STR("content-length")));
    if (lc->has_method) {   /* proxy_method; empty: the client's */
        sg_str m = sg_cval_eval(&lc->method, &ex->req);
        if (m.n) req.method = m;
    }
    if (ex->upgrade) {
        /* Switching protocols is HTTP/1.1's; the h2 CONNECT's DATA is
         * tunnel data, sent only after the 101. */
        req.upgrade = true;
        req.http_minor = 1;
        req.content_length = 0;
        if (ex->req.protocol.n) req.method = SG_STR("GET");
    }
    if (connect_upstream(ex)) {
        /* Its DATA is tunnel data, sent only after the 2xx. */
        req.method = SG_STR("CONNECT");
        req.protocol = ex->req.protocol;
        req.content_length = -1;
    }
    sg_upstream_link *l = ex->up;
    l->ops->send_head(l, &req);
    if (h != small) free(h);   /* the codec took its copy */
    if (ex->req.protocol.n) return;
    if (ex->rbody) {
        if (ex->up == l) sg_reqbody_send(ex);
        return;
    }
    if (ex->req_length == 0 || ex->req_body_done) {
        if (ex->up == l) l->ops->send_end(l);
        return;
    }
    ex->down->want_body(ex, true);
}

/* ---- attempts ---- */

static void proxy_try(sg_exchange *ex);
static bool idempotent(sg_str m);
static const sg_upstream_events link_events;

/* What the upstream codec needs of the location, decided here. */
static sg_link_opts link_opts(sg_exchange *ex)
{
    const sg_loc_conf *lc = loc_conf(ex);
    const sg_ssl_upstream_conf *tls = pass_of(ex)->ssl ? &lc->pass_opts->ssl : NULL;
    sg_link_opts o = {
        .w = ex->w,
        .loop = sg_worker_loop(ex->w),
        .gen = ex->req.gen,
        .tls = tls,
        /* proxy_ssl_name may use variables: made for this request */
        .tls_name = tls ? sg_ssl_upstream_name(lc, &ex->req) : SG_STR_NULL,
        .connect_timeout_ms = lc->pass_opts->connect_timeout_ms,
        .read_timeout_ms = lc->pass_opts->read_timeout_ms,
        .send_timeout_ms = lc->pass_opts->send_timeout_ms,
        .tunnel_timeout_ms = lc->proxy_tunnel_timeout_ms,
        .read_timeout_set = lc->pass_opts->read_timeout_set,
        .log = lc->error_log,
    };
    /* A gRPC server-streaming call (a watch, a subscription) may wait
     * long for its first message, whose HEADERS come with it: unless the
     * user set grpc_read_timeout, nothing times a call's head either (its
     * own grpc-timeout and PING liveness stand guard). Other requests on
     * the location keep the 60 s. */
    if (ex->grpc && !lc->pass_opts->read_timeout_set) o.read_timeout_ms = 0;
    return o;
}

/* proxy_http_version 2: a stream on a multiplexed HTTP/2 connection. */
static sg_upstream_link *open_link(sg_exchange *ex, sg_peer *peer, bool *ready)
{
    ex->up_reset = false;
    sg_link_opts o = link_opts(ex);
    if (loc_conf(ex)->pass_opts->http_version == 20)
        return sg_h2_client_open(ex, &link_events, runtime(ex), peer, &o, ready);
    return sg_h1_client_open(ex, &link_events, runtime(ex), peer, &o, ready);
}

static bool idempotent(sg_str m)
{
    return sg_str_eq_lit(m, "GET") || sg_str_eq_lit(m, "HEAD") || sg_str_eq_lit(m, "PUT") ||
           sg_str_eq_lit(m, "DELETE") || sg_str_eq_lit(m, "OPTIONS") || sg_str_eq_lit(m, "TRACE");
}

/* May this exchange go to another peer after a failure of kind `flag`? */
static bool may_retry(sg_exchange *ex, uint32_t flag, bool request_sent)
{
    const sg_loc_conf *lc = loc_conf(ex);
    uint32_t mask = lc->pass_opts->next_upstream;
    if ((mask & SG_NU_OFF) || !(mask & flag)) return false;
    if (ex->resp_head_sent || (ex->req_body_started && !sg_reqbody_replayable(ex))) return false;
    if (lc->pass_opts->next_upstream_tries && ex->tries >= lc->pass_opts->next_upstream_tries) return false;
    if (lc->pass_opts->next_upstream_timeout_ms && now_ms(ex) - ex->first_try_ms >= lc->pass_opts->next_upstream_timeout_ms)
        return false;
    if (request_sent && !idempotent(ex->req.method) && !(mask & SG_NU_NON_IDEMPOTENT)) return false;
    return true;
}

static void up_connected(sg_exchange *ex)
{
    ex->up_connect_ms = now_ms(ex) - ex->attempt_start_ms + 1;
    send_request(ex);
}

/* The upstream failed a gRPC call: no peer reachable is UNAVAILABLE (a
 * connect timeout too: the client's deadline did not pass, and clients
 * retry UNAVAILABLE), a stream it reset ends with the status its error
 * code maps to (a CANCEL goes on to an HTTP/2 client as the same
 * RST_STREAM), and a call whose messages were flowing ends with trailers
 * rather than a cut. An error_page for the status still wins while no
 * head went out (seed 05). False: answer as any request. */
static bool grpc_call_failed(sg_exchange *ex, int status, bool connect_failed)
{
    enum { H2_CANCEL = 8 };
    if (!ex->resp_head_sent && sg_respond_has_error_page(ex, status)) return false;
    if (connect_failed) {   /* no peer reachable, even after a connect timeout (504) */
        char msg[96];
        snprintf(msg, sizeof(msg), "%d %s (%s)", status, sg_http_reason(status),
                 status == 504 ? "upstream connect timed out" : "no upstream reachable");
        sg_grpc_end_call(ex, SG_GRPC_UNAVAILABLE, msg);
        return true;
    }
    if (ex->up_reset && ex->up_reset_code == H2_CANCEL && ex->req.http_major >= 2) {
        ex->abort_code = H2_CANCEL;
        ex->down->abort(ex);
        return true;
    }
    if (ex->up_reset) {
        char msg[96];
        snprintf(msg, sizeof(msg), "upstream reset the stream (HTTP/2 error code %u)", ex->up_reset_code);
        sg_grpc_end_call(ex, sg_grpc_status_of_reset(ex->up_reset_code), msg);
        return true;
    }
    if (!ex->resp_head_sent) return false;
    sg_grpc_end_call(ex, sg_grpc_status_of_http(status),
                     status == 504 ? "upstream timed out" : "upstream closed the call before its end");
    return true;
}

static void up_error(sg_exchange *ex, sg_up_error err, bool nothing_received)
{
    ex->up = NULL;
    ex->down->want_body(ex, false);
    bool connect_failed = err == SG_UP_CONNECT || err == SG_UP_CONNECT_TIMEOUT;
    /* A pooled connection the peer had closed: not the peer's fault, and
     * the request never reached it; try again on a fresh connection. */
    bool replayable = idempotent(ex->req.method) || (loc_conf(ex)->pass_opts->next_upstream & SG_NU_NON_IDEMPOTENT);
    if (ex->up_reused && err == SG_UP_CLOSED && nothing_received &&
        (!ex->req_body_started || sg_reqbody_replayable(ex)) &&
        !ex->resp_head_sent && replayable) {
        bool ready = false;
        ex->up_reused = false;
        sg_upstream_link *l = open_link(ex, ex->peer, &ready);
        if (l) {
            ex->up = l;
            ex->up_reused = l->reused;
            if (ready) send_request(ex);
            return;
        }
        connect_failed = true;
    }
    if (err == SG_UP_UNSUPPORTED) {   /* logged by the codec; the peer is fine */
        note_attempt_end(ex, 502);
        sg_balancer_done(sg_upstream_balancer(runtime(ex)), ex->peer, false, now_ms(ex));
        ex->peer = NULL;
        sg_respond_error(ex, 502);
        return;
    }
    bool timeout = err == SG_UP_TIMEOUT || err == SG_UP_CONNECT_TIMEOUT;
    int status = timeout ? 504 : 502;
    ex->up_connect_failed = connect_failed;
    if (!ex->resp_done) note_attempt_end(ex, status);   /* a half-closed tunnel's end was noted */
    /* A tunnel the peer reset or left silent was a success until then. */
    sg_balancer_done(sg_upstream_balancer(runtime(ex)), ex->peer, !ex->tunnel, now_ms(ex));
    ex->peer = NULL;
    uint32_t flag = timeout ? SG_NU_TIMEOUT : err == SG_UP_INVALID ? SG_NU_INVALID_HEADER : SG_NU_ERROR;
    if (may_retry(ex, flag, !connect_failed)) {
        proxy_try(ex);
        return;
    }
    if (ex->grpc && grpc_call_failed(ex, status, connect_failed)) return;
    sg_respond_error(ex, status);
}

static void proxy_try(sg_exchange *ex)
{
    sg_upstream_rt *rt = runtime(ex);
    sg_pick_ctx ctx = { .client = ex->req.peer, .now_ms = now_ms(ex), .tried = ex->tried };
    const sg_upstream_conf *u = ex->upstream;
    if (u->lb == SG_LB_HASH || u->lb == SG_LB_HASH_CONSISTENT) {
        sg_str key = sg_cval_eval(&u->hash_key, &ex->req);   /* in the request's arena */
        ctx.key = key.p;
        ctx.key_len = key.n;
    }
    sg_balancer *cur = sg_upstream_balancer(rt);   /* dns: one set for this pick */
    if (u->sticky) sg_sticky_request(ex, u, &ctx);   /* balancers, issue 11 */
    sg_peer *peer = sg_balancer_pick(cur, &ctx);
    if (!peer) {
        /* Every server tried already is the end of the retries, not "no
         * live upstreams" (nginx's peer.tries); otherwise nginx names the
         * upstream itself in $upstream_addr. */
        const sg_balancer *b = cur;
        if ((size_t)ex->tries < b->nprimary + b->nbackup) {
            sg_ex_log(ex, SG_LOG_ERROR, "no live upstreams while connecting to upstream \"%s\"", ex->upstream->name);
            append_list(&ex->req, &ex->req.upstream_addr, ex->upstream->name, strlen(ex->upstream->name));
        }
        int status = 502;
        if (ex->req.upstream_status.n >= 3 &&
            memcmp(ex->req.upstream_status.p + ex->req.upstream_status.n - 3, "504", 3) == 0)
            status = 504;
        if (ex->grpc && grpc_call_failed(ex, status, status == 502 || ex->up_connect_failed)) return;
        sg_respond_error(ex, status);
        return;
    }
    ex->peer = peer;
    ex->tries++;
    ex->attempt_start_ms = now_ms(ex);
    const char *name = peer->conf->name;
    append_list(&ex->req, &ex->req.upstream_addr, name, strlen(name));
    bool ready = false;
    sg_upstream_link *l = open_link(ex, peer, &ready);
    if (!l) {
        up_error(ex, SG_UP_CONNECT, true);
        return;
    }
    ex->up = l;
    ex->up_reused = l->reused;
    ex->up_sent0 = l->bytes_sent;
    ex->up_recv0 = l->bytes_received;
    ex->up_connect_ms = ready ? now_ms(ex) - ex->attempt_start_ms + 1 : 0;
    ex->up_header_ms = 0;
    ex->req.up_body_bytes = 0;
    if (ready) send_request(ex);
}

/* A refused handshake: 400 on a connection that stays usable (no body
 * was sent, so the client is still in step). */
static void refuse_upgrade(sg_exchange *ex, sg_ws_check why)
{
    sg_header h[2];
    size_t n = 0;
    sg_str body = sg_http_error_body(400);
    h[n++] = (sg_header){ SG_STR("Content-Type"), SG_STR("text/html"), 0 };
    if (why == SG_WS_BAD_VERSION) h[n++] = (sg_header){ SG_STR("Sec-WebSocket-Version"), SG_STR("13"), 0 };
    ex->down->want_body(ex, false);
    sg_respond_head(ex, 400, h, n, (int64_t)body.n, true);
    ex->down->send_data(ex, body.p, body.n);
    ex->down->send_end(ex);
}

/* RFC 8441: an HTTP/2 extended CONNECT. Only websocket can be carried
 * to an HTTP/1.1 backend; anything else (or upgrades turned off here) is
 * 501. False if it was answered here. */
static bool prepare_h2_websocket(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    if (!sg_str_caseeq_lit(r->protocol, "websocket") || !loc_conf(ex)->pass_opts->upgrade) {
        sg_respond_error(ex, 501);
        return false;
    }
    const sg_header *v = sg_req_find_header(r, SG_STR("sec-websocket-version"));
    if (v && !sg_str_eq_lit(v->value, "13")) {
        refuse_upgrade(ex, SG_WS_BAD_VERSION);
        return false;
    }
    char *key = sg_arena_alloc(&r->arena, SG_WS_KEY_LEN + 1);
    sg_ws_key_new(key);
    ex->ws_key = (sg_str){ key, SG_WS_KEY_LEN };
    ex->upgrade_offer = SG_STR("websocket");
    ex->upgrade = SG_UPGRADE_WEBSOCKET;
    return true;
}

/* RFC 8441 on both sides: the extended CONNECT goes on as it is, with
 * whatever :protocol the client asked for (the backend judges it). */
static bool prepare_h2_connect(sg_exchange *ex)
{
    if (!loc_conf(ex)->pass_opts->upgrade) {
        sg_respond_error(ex, 501);
        return false;
    }
    return true;
}

/* An HTTP/1.1 WebSocket handshake cannot become a stream of a multiplexed
 * HTTP/2 upstream connection (the client socket would have to be relayed
 * to a stream, not to a socket): 501, said plainly, rather than a plain
 * GET the client would take for a refused handshake. */
static void refuse_h1_websocket_to_h2(sg_exchange *ex)
{
    sg_ex_log(ex, SG_LOG_ERROR,
              "an HTTP/1.1 WebSocket handshake cannot be proxied with proxy_http_version 2 "
              "(only HTTP/2 clients' extended CONNECT, RFC 8441, can): answered 501");
    sg_respond_error(ex, 501);
}

/* Does this request ask to switch protocols, and may it? False if it was
 * answered here (a malformed handshake). */
static bool prepare_upgrade(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    /* Switching protocols needs an HTTP/1.1 upstream; an HTTP/2 one takes
     * extended CONNECT instead. */
    bool h2_upstream = loc_conf(ex)->pass_opts->http_version == 20;
    if (r->protocol.n) return h2_upstream ? prepare_h2_connect(ex) : prepare_h2_websocket(ex);
    sg_str offer;
    /* RFC 9110 7.8: Upgrade in an HTTP/1.0 request is ignored. */
    bool h11 = r->http_major == 1 && r->http_minor >= 1;
    sg_upgrade_kind kind = h11 ? sg_upgrade_offered(r, &r->arena, &offer) : SG_UPGRADE_NONE;
    /* Served as plain HTTP: upgrades turned off here, or a request with a
     * body (what follows a 101 could not be told from the body). */
    if (kind == SG_UPGRADE_NONE || !loc_conf(ex)->pass_opts->upgrade || ex->req_length != 0 ||
        (h2_upstream && kind != SG_UPGRADE_WEBSOCKET))
        return true;
    if (kind == SG_UPGRADE_WEBSOCKET) {
        sg_ws_check why = sg_ws_check_request(r);
        if (h2_upstream) {
            if (why != SG_WS_OK) {
                refuse_upgrade(ex, why);
                return false;
            }
            refuse_h1_websocket_to_h2(ex);
            return false;
        }
        /* A handshake RFC 6455 would refuse still goes to the backend, as
         * nginx sends it: the backend answers it (its 101 is then only
         * checked for the protocol, there being no key to prove). */
        if (why == SG_WS_OK) ex->ws_key = sg_req_find_header(r, SG_STR("sec-websocket-key"))->value;
    }
    ex->upgrade = (uint8_t)kind;
    ex->upgrade_offer = offer;
    return true;
}

/* A TLS name made from the request ($host, $http_...) that cannot be
 * sent is the request's fault: 500 as nginx, and no peer is blamed. */
static bool tls_name_ok(sg_exchange *ex)
{
    const sg_ssl_upstream_conf *u = pass_of(ex)->ssl ? &loc_conf(ex)->pass_opts->ssl : NULL;
    if (!u) return true;
    sg_str name = sg_ssl_upstream_name(loc_conf(ex), &ex->req);
    if (sg_ssl_upstream_name_ok(u, name)) return true;
    sg_ex_log(ex, SG_LOG_ERROR, "invalid SSL name \"%.*s\" for upstream \"%s\"", (int)(name.n > 64 ? 64 : name.n),
              name.n ? name.p : "", pass_of(ex)->upstream->name);
    sg_respond_error(ex, 500);
    return false;
}

static void proxy_go(sg_exchange *ex)
{
    if (!prepare_upgrade(ex) || !tls_name_ok(ex)) return;
    const sg_proxy_pass *pp = pass_of(ex);
    ex->upstream = pp->upstream;
    sg_upstream_rt *rt = runtime(ex);
    size_t words = sg_balancer_tried_words(sg_upstream_balancer(rt));
    ex->tried = sg_arena_alloc(&ex->req.arena, sizeof(uint64_t) * (words ? words : 1));
    memset(ex->tried, 0, sizeof(uint64_t) * (words ? words : 1));
    ex->first_try_ms = now_ms(ex);
    sg_grpc_call_start(ex);
    if (sg_reqbody_setup(ex)) return;   /* the body is read whole first */
    proxy_try(ex);
}

void sg_proxy_body_ready(sg_exchange *ex)
{
    proxy_try(ex);
}

void sg_proxy_start(sg_exchange *ex)
{
    /* an internal redirect may bring the exchange here from another pass */
    sg_pass_vars_end(ex);
    ex->req.pass = NULL;
    if (loc_conf(ex)->proxy_pass->has_vars) sg_pass_vars_start(ex, proxy_go);
    else proxy_go(ex);
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
 * sent it (the scheme, $proxy_host and the proxy_pass URI) points back at
 * this location instead, so backend addresses never leak to clients. */
static sg_str rewrite_location(sg_exchange *ex, sg_str v)
{
    const sg_loc_conf *lc = loc_conf(ex);
    const sg_proxy_pass *pp = pass_of(ex);
    sg_http_req *r = &ex->req;
    /* nginx: "default" does not apply to a pass with variables */
    if (pp && pp->has_vars) return v;
    sg_str scheme = pp && pp->ssl ? SG_STR("https://") : SG_STR("http://");
    if (!lc->pass_opts->redirect_off && pp && v.n > scheme.n && memcmp(v.p, scheme.p, scheme.n) == 0) {
        sg_str from_uri = pp->has_uri ? pp->uri : SG_STR("/");
        size_t plen = scheme.n + pp->host.n + from_uri.n;
        if (v.n >= plen && sg_str_caseeq((sg_str){ v.p + scheme.n, pp->host.n }, pp->host) &&
            memcmp(v.p + scheme.n + pp->host.n, from_uri.p, from_uri.n) == 0) {
            const sg_location *loc = sg_rw_real_location(r->loc);
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

static bool skip_response_header(const sg_header *h)
{
    if (h->flags & (SG_HDR_HOP | SG_HDR_DROP)) return true;
    /* Framing is ours; Server and Date are the proxy's own unless
     * proxy_pass_header names them (header_filter.c), as nginx. */
    return sg_str_caseeq_lit(h->name, "content-length") ||
           sg_str_caseeq_lit(h->name, "transfer-encoding");
}

/* nginx tries each server not marked `down` once (backups included): with
 * one of two down, the first 404 is the answer, not a 502 for want of
 * another peer. */
static size_t tries_allowed(const sg_upstream_conf *u)
{
    size_t n = 0;
    for (size_t i = 0; i < u->nservers; i++) n += !u->servers[i].down;
    return n;
}

/* An intercepted 401 keeps the backend's challenges (nginx, ticket #485:
 * every WWW-Authenticate field), whatever error_page answers. */
static void carry_www_authenticate(sg_exchange *ex, const sg_upstream_response *m)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nheaders; i++) k += sg_str_caseeq_lit(m->headers[i].name, "www-authenticate");
    if (!k) return;
    ex->carry = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * k);
    ex->ncarry = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        const sg_header *x = &m->headers[i];
        if (sg_str_caseeq_lit(x->name, "www-authenticate"))
            ex->carry[ex->ncarry++] = (sg_header){ SG_STR("WWW-Authenticate"), sg_arena_str(&ex->req.arena, x->value), 0 };
    }
}

/* ---- switching protocols ---- */

static void tunnel_closed(const sg_tunnel_end *e, void *balancer, void *peer)
{
    sg_loop *l = sg_worker_loop(sg_worker_self());
    sg_stats_add(SG_ST_WS, -1);   /* metrics (issue 12) */
    sg_balancer_done(balancer, peer, false, sg_loop_now(l));
}

/* The same for a run-time upstream (proxy/pass_vars.h), which the
 * tunnel holds until then. */
static void tunnel_closed_dyn(const sg_tunnel_end *e, void *held, void *peer)
{
    sg_loop *l = sg_worker_loop(sg_worker_self());
    sg_stats_add(SG_ST_WS, -1);   /* metrics (issue 12) */
    sg_pass_vars_tunnel_done(held, peer, sg_loop_now(l));
}

/* The 101's end-to-end headers for the client (Sec-WebSocket-Accept,
 * -Protocol, -Extensions... untouched); HTTP/1.1 clients also get the
 * Upgrade the backend chose, HTTP/2 clients neither it nor the Accept
 * (RFC 8441 5: the 200 carries no handshake of its own). */
static size_t switch_headers(sg_exchange *ex, const sg_upstream_response *m, sg_header *h, bool h2)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        const sg_header *x = &m->headers[i];
        if (sg_str_caseeq_lit(x->name, "upgrade")) {
            if (h2) continue;
        } else if (skip_response_header(x) || sg_hf_hidden(loc_conf(ex)->pass_opts, x->name) ||
                   (h2 && sg_str_caseeq_lit(x->name, "sec-websocket-accept"))) {
            continue;
        }
        h[n].name = sg_arena_str(&ex->req.arena, x->name);
        h[n].value = sg_arena_str(&ex->req.arena, x->value);
        h[n++].flags = 0;
    }
    return n;
}

/* HTTP/1.1 client: both sockets go to a tunnel, the exchange ends. */
static void hand_over(sg_exchange *ex)
{
    sg_outq to_client = { 0 }, to_upstream = { 0 };
    sg_inbuf from_client = { 0 };
    sg_tls_conn *client_tls = NULL, *upstream_tls = NULL;
    sg_upstream_link *l = ex->up;
    uint64_t up_sent = l->bytes_sent - ex->up_sent0, up_recv = l->bytes_received - ex->up_recv0;
    int cfd = ex->down->detach(ex, &to_client, &from_client, &client_tls);
    uint64_t unsent = to_client.bytes;   /* the 101 not written yet */
    ex->up = NULL;
    int ufd = l->ops->detach(l, &to_upstream, &to_client, &upstream_tls);
    uint64_t pipelined = from_client.len;
    if (from_client.len) sg_outq_append(&to_upstream, from_client.p, from_client.len);
    sg_inbuf_free(&from_client);
    const sg_loc_conf *lc = loc_conf(ex);
    sg_tunnel_opts o = {
        .idle_timeout_ms = lc->proxy_tunnel_timeout_ms,
        .upstream_read_timeout_ms = lc->pass_opts->read_timeout_set ? lc->pass_opts->read_timeout_ms : 0,
        .tcp_keepalive = true,
        .gen = ex->req.gen,
        /* The peer stays in use while the tunnel lives (least_conn counts it). */
        .on_close = tunnel_closed,
        .arg = sg_upstream_balancer(runtime(ex)),
        .arg2 = ex->peer,
        .client_tls = client_tls,
        .upstream_tls = upstream_tls,
    };
    ex->peer = NULL;
    void *held = sg_pass_vars_take(ex);
    if (held) {
        o.on_close = tunnel_closed_dyn;
        o.arg = held;
    }
    sg_limit_tunnel(ex, &o);           /* limit_conn slots stay taken while the tunnel lives */
    sg_tunnel_log_attach(ex, &o, unsent, pipelined, up_sent, up_recv);   /* logged at its close */
    note_attempt_end(ex, 0);
    sg_stats_add(SG_ST_WS, 1);         /* metrics (issue 12): until on_close */
    if (!sg_tunnel_start_q(ex->w, cfd, ufd, &o, &to_upstream, &to_client))
        o.on_close(NULL, o.arg, o.arg2);
}

/* HTTP/2 client (RFC 8441): the stream becomes the tunnel (after a 101
 * from an HTTP/1.1 upstream, or a 2xx to an upstream extended CONNECT). */
static void enter_tunnel_mode(sg_exchange *ex, const sg_upstream_response *m)
{
    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (m->nheaders + 1));
    size_t n = switch_headers(ex, m, h, true);
    ex->tunnel = true;
    sg_mx_ws_h2_open();   /* metrics (issue 12): until the exchange ends */
    sg_respond_head(ex, 200, h, n, -1, true);
    if (!ex->up) return;
    if (ex->req_body_done) ex->up->ops->send_end(ex->up);   /* the client already ended its side */
    else ex->down->want_body(ex, true);
}

static void switch_protocols(sg_exchange *ex, const sg_upstream_response *m)
{
    append_list(&ex->req, &ex->req.upstream_status, "101", 3);
    const char *bad = ex->upgrade ? sg_upgrade_check_101(m->headers, m->nheaders, ex->upgrade_offer, ex->ws_key)
                                  : "101 to a request that did not ask for it";
    if (bad || (!ex->req.protocol.n && (!ex->down->detach || !ex->up->ops->detach))) {
        sg_ex_log(ex, SG_LOG_ERROR, "upstream sent an invalid 101 (%s) while reading response header from upstream %s",
                     bad ? bad : "no tunnel possible here", ex->peer->conf->name);
        note_attempt_end(ex, 0);
        sg_proxy_detach(ex, true);
        sg_respond_error(ex, 502);
        return;
    }
    if (ex->req.protocol.n) {
        enter_tunnel_mode(ex, m);
        return;
    }
    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (m->nheaders + 1));
    size_t n = switch_headers(ex, m, h, false);
    sg_respond_head(ex, 101, h, n, -1, false);
    hand_over(ex);
}

/* The upstream's head as it came, for $upstream_http_ (the link's copy
 * goes with it). */
static void keep_upstream_head(sg_exchange *ex, const sg_upstream_response *m)
{
    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (m->nheaders + 1));
    for (size_t i = 0; i < m->nheaders; i++)
        h[i] = (sg_header){ sg_arena_str(&ex->req.arena, m->headers[i].name),
                            sg_arena_str(&ex->req.arena, m->headers[i].value), m->headers[i].flags };
    ex->req.up_headers = h;
    ex->req.nup_headers = m->nheaders;
    ex->up_header_ms = now_ms(ex) - ex->attempt_start_ms + 1;
}

/* Fields of the backend's answer an X-Accel-Redirect keeps (nginx's
 * upstream headers marked "redirect"): the final answer carries them,
 * in place of its own of the same name. */
static void carry_accel_fields(sg_exchange *ex)
{
    static const char *const kept[] = {
        "content-type", "set-cookie", "content-disposition", "cache-control", "expires", "accept-ranges", NULL,
    };
    const sg_http_req *r = &ex->req;
    size_t k = 0;
    for (size_t i = 0; i < r->nup_headers; i++)
        for (int j = 0; kept[j]; j++) k += sg_str_caseeq_lit(r->up_headers[i].name, kept[j]);
    if (!k) return;
    sg_header *c = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (ex->ncarry + k));
    if (ex->ncarry) memcpy(c, ex->carry, sizeof(sg_header) * ex->ncarry);
    size_t n = ex->ncarry;
    for (size_t i = 0; i < r->nup_headers; i++)
        for (int j = 0; kept[j]; j++)
            if (sg_str_caseeq_lit(r->up_headers[i].name, kept[j])) c[n++] = r->up_headers[i];
    ex->carry = c;
    ex->ncarry = n;
}

/* rate (issue 10): X-Accel-Redirect, unless proxy_ignore_headers names
 * it: the backend's answer is dropped and the request goes on internally
 * at the URI (decoded; its arguments as they are) or named location it
 * gives (nginx's ngx_http_upstream_process_headers); an unsafe URI gets
 * 404, as nginx. True: handled. */
static bool accel_redirect(sg_exchange *ex, const sg_loc_conf *lc)
{
    if (lc->pass_opts && (lc->pass_opts->ignore_headers & SG_IGN_X_ACCEL_REDIRECT)) return false;
    sg_str v = SG_STR_NULL;
    for (size_t i = 0; i < ex->req.nup_headers; i++)
        if (sg_str_caseeq_lit(ex->req.up_headers[i].name, "x-accel-redirect")) {
            v = ex->req.up_headers[i].value;
            break;
        }
    if (!v.p || v.n == 0) return false;
    note_attempt_end(ex, 0);
    sg_proxy_detach(ex, false);   /* the answer's body is not wanted: the connection is not reused */
    carry_accel_fields(ex);
    sg_str target;
    bool safe = sg_accel_target(v, sg_arena_alloc(&ex->req.arena, v.n + 1), &target);
    if (!safe || ++ex->redirects > 10) {
        sg_ex_log(ex, SG_LOG_ERROR, !safe ? "unsafe URI \"%.*s\" was detected" :
                  "rewrite or internal redirection cycle while internally redirecting to \"%.*s\"", (int)v.n, v.p);
        sg_respond_error(ex, !safe ? 404 : 500);
        return true;
    }
    sg_respond_redirect(ex, target);
    return true;
}

static void up_head(sg_exchange *ex, const sg_upstream_response *m)
{
    const sg_loc_conf *lc = loc_conf(ex);
    keep_upstream_head(ex, m);
    int status = m->status;
    if (status == 101) {
        switch_protocols(ex, m);
        return;
    }
    if (status / 100 == 2 && connect_upstream(ex)) {
        char code[24];
        append_list(&ex->req, &ex->req.upstream_status, code, sg_u64_to_dec(code, (uint64_t)status));
        enter_tunnel_mode(ex, m);
        return;
    }
    uint32_t flag = status_flag(status);
    if (flag && ex->tries < tries_allowed(ex->upstream) && may_retry(ex, flag, true)) {
        note_attempt_end(ex, status);
        bool failed = status >= 500;
        /* No body byte may flow until the next peer has its request head. */
        ex->down->want_body(ex, false);
        sg_proxy_detach(ex, failed);
        proxy_try(ex);
        return;
    }
    if (lc->pass_opts->intercept_errors && status >= 300 && sg_respond_has_error_page(ex, status)) {
        if (status == 401) carry_www_authenticate(ex, m);
        note_attempt_end(ex, status);
        sg_proxy_detach(ex, false);
        sg_respond_error(ex, status);
        return;
    }
    char code[24];
    append_list(&ex->req, &ex->req.upstream_status, code, sg_u64_to_dec(code, (uint64_t)status));
    sg_rate_accel_limit(ex);     /* rate (issue 10): X-Accel-Limit-Rate, before X-Accel-Redirect */
    if (accel_redirect(ex, lc)) return;
    sg_rate_upstream_head(ex);   /* proxy_limit_rate */

    /* A scratch array: sg_respond_head keeps its own copy of the fields
     * (room for the upstream's fields, a sticky cookie and the end). */
    sg_header small[32];
    sg_header *h = m->nheaders + 2 <= 32 ? small : sg_xmalloc(sizeof(sg_header) * (m->nheaders + 2));
    size_t n = 0;
    /* nginx relays a backend's Upgrade to HTTP/1.x clients (a 426 names
     * what to upgrade to); HTTP/2 has no Upgrade. */
    bool h1_client = ex->req.http_major == 1, expires = false;
    for (size_t i = 0; i < m->nheaders; i++) {
        const sg_header *x = &ex->req.up_headers[i];
        bool upgrade = h1_client && !(x->flags & SG_HDR_DROP) && sg_str_caseeq_lit(x->name, "upgrade");
        if ((skip_response_header(x) && !upgrade) || sg_hf_hidden(lc->pass_opts, x->name)) continue;
        if (sg_str_caseeq_lit(x->name, "expires")) {
            if (expires) continue;   /* nginx keeps the first Expires of a backend's response */
            expires = true;
        }
        h[n].name = x->name;
        h[n].value = x->value;
        h[n].flags = 0;
        if (sg_str_caseeq_lit(h[n].name, "location")) h[n].value = rewrite_location(ex, h[n].value);
        n++;
    }
    /* sticky: the cookie naming this server, or learn's create= (balancers, issue 11) */
    if (ex->upstream->sticky && ex->peer &&
        sg_sticky_response(ex, ex->upstream, sg_upstream_balancer(runtime(ex)), ex->peer, now_ms(ex), &h[n]))
        n++;
    bool has_body = m->has_body;
    bool streamed = has_body && m->content_length < 0;
    /* An HTTP/2 upstream may end a streamed body (gRPC: every one) with
     * trailers, an HTTP/1.1 one a chunked body (streamed too: its length
     * is not announced): the client's codec keeps room for them, if its
     * client takes them (an HTTP/1.1 client that sent TE: trailers). */
    ex->resp_trailers = lc->pass_opts->http_version == 20 ? streamed || lc->is_grpc : streamed;
    /* Without a body (HEAD), the length the peer announced goes on, and
     * none when it announced none (a chunked answer: nginx sends neither);
     * 204 and 304 announce none. */
    int64_t clen = m->content_length;
    if (!has_body && (status == 204 || status == 304)) clen = -1;
    sg_respond_head(ex, status, h, n, clen, has_body);
    if (h != small) free(h);
}

static void up_data(sg_exchange *ex, const char *p, size_t n)
{
    ex->req.up_body_bytes += n;
    if (ex->grpc) sg_grpc_scan_response(ex, p, n);   /* metrics (issue 12): messages out */
    ex->down->send_data(ex, p, n);
    if (ex->up && ex->down->pending(ex) > SG_HIGH_WATER) {
        ex->up->ops->want_response(ex->up, false);
        ex->waiting_drain = true;
    }
}

/* The upstream's trailer fields, copied out of the link (released next),
 * for a client codec that can carry them. 0 when there are none. */
static size_t take_trailers(sg_exchange *ex, const sg_header *t, size_t n, sg_header **out)
{
    if (!n || !ex->down->send_trailers) return 0;
    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * n);
    for (size_t i = 0; i < n; i++)
        h[i] = (sg_header){ sg_arena_str(&ex->req.arena, t[i].name), sg_arena_str(&ex->req.arena, t[i].value), 0 };
    *out = h;
    return n;
}

static void up_end(sg_exchange *ex, const sg_header *t, size_t nt)
{
    note_attempt_end(ex, 0);
    if (nt) {   /* for $upstream_trailer_ */
        sg_header *ut = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * nt);
        for (size_t i = 0; i < nt; i++)
            ut[i] = (sg_header){ sg_arena_str(&ex->req.arena, t[i].name), sg_arena_str(&ex->req.arena, t[i].value), 0 };
        ex->req.up_trailers = ut;
        ex->req.nup_trailers = nt;
    }
    if (ex->tunnel && !ex->req_body_done && ex->up) {
        /* The backend ended its side of a tunnel first: the client's
         * stream is half-closed (END_STREAM), not reset; its bytes still
         * go to the backend until it ends too (or fails, or the tunnel
         * times out), and the link is let go when the exchange finishes
         * (sg_proxy_detach). The peer stays in use until then. */
        ex->down->send_end(ex);
        return;
    }
    if (ex->peer) {
        /* least_time learns the attempt's times (balancers, issue 11) */
        int64_t total = (int64_t)(now_ms(ex) - ex->attempt_start_ms);
        sg_peer_times times = {
            .connect_ms = ex->up_connect_ms ? (int64_t)ex->up_connect_ms - 1 : -1,
            .header_ms = ex->up_header_ms ? (int64_t)ex->up_header_ms - 1 : total,
            .first_byte_ms = ex->up_header_ms ? (int64_t)ex->up_header_ms - 1 : total,
            .last_byte_ms = total,
        };
        sg_balancer_times(sg_upstream_balancer(runtime(ex)), ex->peer, &times);
        if (ex->upstream->sticky && !ex->upstream->sticky->header)
            sg_sticky_done(ex, ex->upstream, sg_upstream_balancer(runtime(ex)), ex->peer, now_ms(ex));
        sg_balancer_done(sg_upstream_balancer(runtime(ex)), ex->peer, false, now_ms(ex));
        ex->peer = NULL;
    }
    sg_upstream_link *l = ex->up;
    ex->up = NULL;
    sg_header *trailers = NULL;
    size_t ntrailers = take_trailers(ex, t, nt, &trailers);
    if (l) l->ops->release(l);
    /* ex may end after this */
    if (ntrailers) {
        ex->req.final_trailers = trailers;   /* $grpc_status (logs, issue 12) */
        ex->req.nfinal_trailers = ntrailers;
        ex->down->send_trailers(ex, trailers, ntrailers);
    } else {
        ex->down->send_end(ex);
    }
}

static void up_drain(sg_exchange *ex)
{
    if (sg_reqbody_on_drain(ex)) return;
    if (!ex->req_body_done) ex->down->want_body(ex, true);
}

/* up_data stops the reads after a client's queue went over the mark; this
 * stops them before, the first one included: an HTTP/2 client connection
 * over its output cap reports every stream full, and its streams whose
 * answers have not come yet would otherwise each queue one more read. */
static bool up_may_read(sg_exchange *ex)
{
    if (!ex->up || (ex->down->pending(ex) <= SG_HIGH_WATER && !sg_rate_upstream_hold(ex))) return true;
    ex->up->ops->want_response(ex->up, false);
    ex->waiting_drain = true;
    return false;
}

/* What upstream codecs report to the core. */
static const sg_upstream_events link_events = {
    .connected = up_connected,
    .error = up_error,
    .head = up_head,
    .data = up_data,
    .end = up_end,
    .drain = up_drain,
    .may_read = up_may_read,
};
