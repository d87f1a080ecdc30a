/* The exchange handler of the server: routing a new request, choosing
 * between proxying it and answering it here, feeding its body to whoever
 * answers it, and the end (access log). Downstream codecs reach it only
 * through the table at the bottom (exchange/exchange.h). */
#include "proxy/handler.h"
#include "proxy/header_filter.h"
#include "proxy/rate_limit.h"
#include "proxy/tunnel_log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "observe/access_log.h"
#include "observe/metrics.h"
#include "proxy/access.h"
#include "proxy/grpc.h"
#include "proxy/gzip_filter.h"
#include "proxy/limit.h"
#include "proxy/pass_vars.h"
#include "proxy/proxy.h"
#include "proxy/realip.h"
#include "proxy/reqbody.h"
#include "proxy/respond.h"
#include "proxy/rewrite.h"
#include "proxy/router.h"
#include "proxy/status_page.h"
#include "proxy/tls_request.h"
#include "exchange/upstream_link.h"

static void on_resume(sg_deferred *d)
{
    sg_exchange *ex = (sg_exchange *)((char *)d - offsetof(sg_exchange, resume));
    sg_respond_file_pump(ex);
}

static void exchange_init(sg_exchange *ex)
{
    sg_deferred_init(&ex->resume, on_resume);
}

static void exchange_start(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    const sg_listen_group *g = r->group;
    if (!g || g->nservers == 0) {
        /* The address was removed by a reload while this connection lived. */
        ex->close_connection = true;
        ex->down->abort(ex);
        return;
    }
    int tls_status = 0;
    r->srv = r->tls ? sg_tls_request_server(r, &tls_status) : NULL;
    if (!r->srv) r->srv = sg_router_server(g, r->host, r);
    if (!r->srv) r->srv = g->default_server;
    r->loc = r->srv->root;
    sg_realip_apply(r, &r->srv->root->conf);
    if (ex->early_status) {
        sg_respond_error(ex, ex->early_status);
        return;
    }
    /* the request's fields as nginx reads them: invalid names dropped
     * (ignore_invalid_headers), a second If-Match and the like a 400 */
    sg_hf_drop_invalid_fields(ex);
    if (sg_hf_duplicate_field(r)) {
        sg_ex_log(ex, SG_LOG_INFO, "client sent duplicate header line");
        sg_respond_error(ex, 400);
        return;
    }
    if (r->tls && !tls_status) tls_status = sg_tls_request_check(ex);
    if (tls_status) {
        sg_respond_error(ex, tls_status);
        return;
    }
    /* server rewrite, location search, location rewrite (`return`
     * included), then the location answers (proxy/rewrite.h) */
    sg_rewrite_run(ex);
}

static void run_access(sg_exchange *ex);

/* The location chosen in ex->req.loc answers: `internal` and the
 * announced body size are checked first, then limit_req and limit_conn
 * (nginx's preaccess phase: a delayed request goes on from a timer),
 * then allow/deny (nginx's access phase), then proxy_pass/grpc_pass or
 * a static file (content); `return` ran in the rewrite phase
 * (proxy/rewrite.c), before access. */
void sg_handler_run_location(sg_exchange *ex)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    if (lc->internal && !ex->req_internal) {
        sg_respond_error(ex, 404);
        return;
    }
    /* A gRPC call's limit is per message (proxy/grpc.h), not its length. */
    if (ex->req_length > 0 && lc->client_max_body_size && !(lc->is_grpc && sg_grpc_is_call(ex)) &&
        (uint64_t)ex->req_length > lc->client_max_body_size) {
        sg_ex_log(ex, SG_LOG_ERROR, "client intended to send too large body: %lld bytes", (long long)ex->req_length);
        sg_respond_error(ex, 413);
        return;
    }
    sg_realip_apply(&ex->req, lc);
    if (sg_limit_run(ex, run_access)) run_access(ex);
}

static void run_access(sg_exchange *ex)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    if (lc->naccess_rules && !sg_access_allows(lc->access_rules, lc->naccess_rules, ex->req.peer)) {
        sg_ex_log(ex, SG_LOG_ERROR, "access forbidden by rule");
        sg_respond_error(ex, 403);   /* a gRPC call: PERMISSION_DENIED (7) */
        return;
    }
    if (sg_status_page_run(ex)) return;   /* metrics (issue 12): stub_status, metrics */
    if (lc->proxy_pass) sg_proxy_start(ex);
    else sg_respond_static(ex);
}

static void body_too_large(sg_exchange *ex)
{
    ex->close_connection = true;
    ex->down->want_body(ex, false);
    sg_proxy_detach(ex, false);
    if (!ex->resp_head_sent) sg_respond_error(ex, 413);
    else if (ex->grpc) sg_grpc_end_call(ex, SG_GRPC_RESOURCE_EXHAUSTED, "message larger than client_max_body_size");
    else ex->down->abort(ex);
}

static void exchange_on_body(sg_exchange *ex, const char *p, size_t n)
{
    ex->req_body_bytes += n;
    ex->req.body_received += n;
    /* A gRPC stream is not one body: counting all its messages against
     * client_max_body_size would end long streams (nginx's 413), so there
     * it bounds each message instead. */
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf : NULL;
    uint64_t limit = lc && !ex->tunnel && !ex->grpc ? lc->client_max_body_size : 0;
    bool too_large = ex->grpc ? !sg_grpc_scan_request(ex, p, n) : limit && ex->req_body_bytes > limit;
    if (too_large && !ex->resp_done) {
        body_too_large(ex);
        return;
    }
    if (ex->req_body_dropped) return;   /* redirected: not needed */
    if (sg_reqbody_on_data(ex, p, n)) return;   /* kept whole, or dropped */
    if (!ex->up) return;   /* not needed (local answer) */
    ex->req_body_started = true;
    ex->up->ops->send_data(ex->up, p, n);
    if (ex->up->ops->pending(ex->up) > SG_HIGH_WATER) ex->down->want_body(ex, false);
}

static void exchange_on_body_end(sg_exchange *ex)
{
    ex->req_body_done = true;
    if (!ex->req_body_dropped && sg_reqbody_on_end(ex)) return;
    if (ex->up) ex->up->ops->send_end(ex->up);
}

static void exchange_on_drain(sg_exchange *ex)
{
    if (sg_rate_hold_drain(ex)) return;   /* rate (issue 10): the limiter still holds plenty */
    if (ex->up) ex->up->ops->want_response(ex->up, true);
    else if (ex->file_fd >= 0) sg_loop_defer(sg_worker_loop(ex->w), &ex->resume);
}

static void release_file(sg_exchange *ex)
{
    if (ex->file_fd >= 0) {
        close(ex->file_fd);
        ex->file_fd = -1;
    }
    sg_loop_cancel(&ex->resume);
}

static void exchange_on_abort(sg_exchange *ex)
{
    ex->aborted = true;
    sg_limit_release(ex);
    sg_rate_stop(ex);
    sg_proxy_detach(ex, false);
    sg_pass_vars_end(ex);
    release_file(ex);
}

static void exchange_finish(sg_exchange *ex)
{
    sg_grpc_call_end(ex);
    sg_limit_finish(ex);
    sg_proxy_detach(ex, false);
    sg_pass_vars_end(ex);
    release_file(ex);
    sg_gzip_release(ex);
    sg_rate_release(ex);   /* after gzip's, which wraps it */
    /* nginx's 499: the client went away before it got a response */
    if (ex->aborted && !ex->resp_head_sent && ex->req.status == 0) ex->req.status = 499;
    if (ex->tunnel_log) sg_tunnel_log_finish(ex);   /* logged when the tunnel closes */
    else if (ex->req.loc) sg_access_log_write(&ex->req);
    sg_mx_request_done(ex);   /* metrics (issue 12) */
    sg_reqbody_free(ex);
}

const sg_exchange_handler sg_handler_ops = {
    .init = exchange_init,
    .start = exchange_start,
    .on_body = exchange_on_body,
    .on_body_end = exchange_on_body_end,
    .on_drain = exchange_on_drain,
    .on_abort = exchange_on_abort,
    .finish = exchange_finish,
};
