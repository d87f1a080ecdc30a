/* gRPC calls in the proxy core: recognising them, ending them with a
 * gRPC status, their deadline and the per-message size bound. */
#include "proxy/grpc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "observe/metrics.h"
#include "http/status.h"
#include "proxy/proxy.h"
#include "proxy/respond.h"

/* HTTP/2 error codes (RFC 9113 7) the mapping names. */
enum { H2_REFUSED_STREAM = 7, H2_CANCEL = 8, H2_ENHANCE_YOUR_CALM = 11, H2_INADEQUATE_SECURITY = 12 };

#define GRPC_PREFIX 5   /* compressed flag + 4-byte big-endian length */

struct sg_grpc_call {
    sg_exchange *ex;
    sg_timer deadline;
    uint64_t limit;                 /* client_max_body_size per message; 0: none */
    sg_grpc_framing request;        /* the client's messages */
    /* metrics (issue 12) */
    sg_grpc_framing response;       /* the messages relayed to the client */
    int status;                     /* the grpc-status the proxy ended the call with */
    bool status_set;
};

/* "application/grpc" [("+proto" / "+json" / {custom})], parameters
 * allowed; not gRPC-Web (application/grpc-web...), whose body may be
 * base64 text and whose clients read statuses differently. */
bool sg_grpc_is_call(const sg_exchange *ex)
{
    const sg_header *ct = sg_req_find_header(&ex->req, SG_STR("content-type"));
    if (!ct || ct->value.n < 16 || strncasecmp(ct->value.p, "application/grpc", 16) != 0) return false;
    char next = ct->value.n > 16 ? ct->value.p[16] : '\0';
    return next == '\0' || next == '+' || next == ';' || next == ' ' || next == '\t';
}

int sg_grpc_status_of_http(int status)
{
    switch (status) {
    case 400: case 500: return SG_GRPC_INTERNAL;
    case 401: return SG_GRPC_UNAUTHENTICATED;
    case 403: return SG_GRPC_PERMISSION_DENIED;
    case 404: case 405: case 501: return SG_GRPC_UNIMPLEMENTED;
    case 408: case 504: return SG_GRPC_DEADLINE_EXCEEDED;
    case 413: case 414: case 431: return SG_GRPC_RESOURCE_EXHAUSTED;
    case 429: case 502: case 503: return SG_GRPC_UNAVAILABLE;
    default: return SG_GRPC_UNKNOWN;
    }
}

int sg_grpc_status_of_reset(uint32_t h2_code)
{
    switch (h2_code) {
    case H2_REFUSED_STREAM: return SG_GRPC_UNAVAILABLE;
    case H2_CANCEL: return SG_GRPC_CANCELLED;
    case H2_ENHANCE_YOUR_CALM: return SG_GRPC_RESOURCE_EXHAUSTED;
    case H2_INADEQUATE_SECURITY: return SG_GRPC_PERMISSION_DENIED;
    default: return SG_GRPC_INTERNAL;
    }
}

bool sg_grpc_parse_timeout(sg_str v, uint64_t *ms)
{
    if (v.n < 2 || v.n > 9) return false;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return false;
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    uint64_t ns_per_unit;
    switch (v.p[v.n - 1]) {
    case 'H': ns_per_unit = 3600000000000ull; break;
    case 'M': ns_per_unit = 60000000000ull; break;
    case 'S': ns_per_unit = 1000000000ull; break;
    case 'm': ns_per_unit = 1000000ull; break;
    case 'u': ns_per_unit = 1000ull; break;
    case 'n': ns_per_unit = 1ull; break;
    default: return false;
    }
    /* 8 digits of hours fit in 64-bit milliseconds, not nanoseconds. */
    uint64_t ms_per_unit = ns_per_unit / 1000000u;
    *ms = ms_per_unit ? n * ms_per_unit : (n * ns_per_unit + 999999u) / 1000000u;
    if (*ms == 0) *ms = 1;
    return true;
}

/* Trailers-only (RFC: "Trailers-Only" in PROTOCOL-HTTP2.md): HTTP 200
 * with grpc-status in the head and nothing after it. */
static void send_trailers_only(sg_exchange *ex, sg_str code, sg_str msg)
{
    sg_header h[3] = {
        { SG_STR("Content-Type"), SG_STR("application/grpc"), 0 },
        { SG_STR("grpc-status"), code, 0 },
        { SG_STR("grpc-message"), msg, 0 },
    };
    ex->status_override = 0;
    ex->down->want_body(ex, false);
    /* HTTP/1.1 needs a length to end the message; HTTP/2 ends the stream. */
    sg_respond_head(ex, 200, h, 3, ex->req.http_major >= 2 ? -1 : 0, false);
    ex->down->send_end(ex);   /* ex may end after this */
}

void sg_grpc_end_call(sg_exchange *ex, int status, const char *message)
{
    if (ex->resp_done || ex->aborted) return;
    if (ex->grpc) {
        ex->grpc->status = status;
        ex->grpc->status_set = true;
    }
    sg_arena *a = &ex->req.arena;
    char *code = sg_arena_alloc(a, 12);
    int k = snprintf(code, 12, "%d", status);
    sg_str msg = sg_arena_str(a, sg_str_from(message));
    if (!ex->resp_head_sent) {
        send_trailers_only(ex, (sg_str){ code, (size_t)k }, msg);
        return;
    }
    if (!ex->resp_trailers || !ex->down->send_trailers) {
        ex->down->abort(ex);
        return;
    }
    /* in the arena: $grpc_status reads them when the call is logged */
    sg_header *t = sg_arena_alloc(a, 2 * sizeof(sg_header));
    t[0] = (sg_header){ SG_STR("grpc-status"), { code, (size_t)k }, 0 };
    t[1] = (sg_header){ SG_STR("grpc-message"), msg, 0 };
    ex->req.final_trailers = t;
    ex->req.nfinal_trailers = 2;
    ex->down->want_body(ex, false);
    ex->down->send_trailers(ex, t, 2);   /* ex may end after this */
}

/* The call's deadline passed: the upstream stream is cancelled (its
 * server stops working on it) and the client hears DEADLINE_EXCEEDED
 * from us, whatever its own clock says. */
static void on_deadline(sg_timer *t)
{
    sg_grpc_call *g = (sg_grpc_call *)((char *)t - offsetof(sg_grpc_call, deadline));
    sg_exchange *ex = g->ex;
    if (ex->resp_done || ex->aborted) return;
    sg_ex_log(ex, SG_LOG_INFO, "the call's grpc-timeout expired: cancelled upstream, answered DEADLINE_EXCEEDED");
    ex->down->want_body(ex, false);
    sg_proxy_detach(ex, false);
    sg_grpc_end_call(ex, SG_GRPC_DEADLINE_EXCEEDED, "Deadline Exceeded");
}

void sg_grpc_call_start(sg_exchange *ex)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    if (ex->grpc || !lc->is_grpc || !sg_grpc_is_call(ex)) return;
    sg_grpc_call *g = sg_arena_alloc(&ex->req.arena, sizeof(*g));
    memset(g, 0, sizeof(*g));
    g->ex = ex;
    g->limit = lc->client_max_body_size_set ? lc->client_max_body_size : 0;
    sg_timer_init(&g->deadline, on_deadline);
    ex->grpc = g;
    const sg_header *h = sg_req_find_header(&ex->req, SG_STR("grpc-timeout"));
    uint64_t ms;
    if (!h) return;
    if (!sg_grpc_parse_timeout(h->value, &ms)) {
        sg_ex_log(ex, SG_LOG_INFO, "ignored a malformed grpc-timeout \"%.*s\"", (int)h->value.n, h->value.p);
        return;
    }
    sg_timer_arm(sg_worker_loop(ex->w), &g->deadline, ms);
}

bool sg_grpc_framing_scan(sg_grpc_framing *f, const char *p, size_t n, uint64_t limit, uint64_t *too_long)
{
    while (n) {
        if (f->msg_left) {
            size_t k = n < f->msg_left ? n : (size_t)f->msg_left;
            f->msg_left -= k;
            p += k;
            n -= k;
            continue;
        }
        f->prefix[f->prefix_have++] = (uint8_t)*p++;
        n--;
        if (f->prefix_have < GRPC_PREFIX) continue;
        f->prefix_have = 0;
        f->msgs++;
        f->msg_left = (uint64_t)f->prefix[1] << 24 | (uint64_t)f->prefix[2] << 16 |
                      (uint64_t)f->prefix[3] << 8 | f->prefix[4];
        if (f->msg_left > limit) {
            *too_long = f->msg_left;
            return false;
        }
    }
    return true;
}

bool sg_grpc_scan_request(sg_exchange *ex, const char *p, size_t n)
{
    sg_grpc_call *g = ex->grpc;
    uint64_t len;
    if (!g || sg_grpc_framing_scan(&g->request, p, n, g->limit ? g->limit : UINT64_MAX, &len)) return true;
    sg_ex_log(ex, SG_LOG_ERROR, "client sent too large a gRPC message: %llu bytes, client_max_body_size %llu",
              (unsigned long long)len, (unsigned long long)g->limit);
    return false;
}

void sg_grpc_scan_response(sg_exchange *ex, const char *p, size_t n)
{
    uint64_t len;
    if (ex->grpc) sg_grpc_framing_scan(&ex->grpc->response, p, n, UINT64_MAX, &len);
}

/* The grpc-status among fields, -1 if none or not a number. */
static int status_in(const sg_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!sg_str_caseeq_lit(h[i].name, "grpc-status")) continue;
        uint64_t v;
        return sg_str_to_u64(h[i].value, &v) && v < 1000 ? (int)v : -1;
    }
    return -1;
}

void sg_grpc_call_end(sg_exchange *ex)
{
    sg_grpc_call *g = ex->grpc;
    if (!g) return;
    sg_timer_disarm(&g->deadline);
    /* What the client got: the proxy's own status if it ended the call,
     * else the backend's (trailers, or a trailers-only head); a call
     * without either was cut (CANCELLED when the client went, else
     * UNKNOWN). */
    const sg_http_req *r = &ex->req;
    bool backend = false;
    int status = -1;
    if (g->status_set) {
        status = g->status;
    } else if ((status = status_in(r->up_trailers, r->nup_trailers)) >= 0 ||
               (status = status_in(r->up_headers, r->nup_headers)) >= 0) {
        backend = true;
    } else {
        status = ex->aborted ? SG_GRPC_CANCELLED : SG_GRPC_UNKNOWN;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - r->start_mono.tv_sec) * 1000000 + (now.tv_nsec - r->start_mono.tv_nsec) / 1000;
    sg_mx_grpc_call(r->uri, status, backend, g->request.msgs, g->response.msgs, us > 0 ? (uint64_t)us : 0);
}
