/* Access log lines of upgraded HTTP/1.1 connections, at the tunnel's
 * close (see tunnel_log.h). */
#include "proxy/tunnel_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "observe/access_log.h"

typedef struct sg_tunnel_log {
    sg_http_req req;               /* moved in at the exchange's finish */
    /* the codec's sockaddrs die with the connection: copies */
    struct sockaddr_storage peer, conn_peer, local, pp[2];
    uint64_t unsent, from_client, up_sent, up_recv;
    uint32_t attempt;              /* the index of this attempt's record (sg_attempt) */
    uint64_t attempt_start_ms;     /* loop time the attempt began ($upstream_response_time) */
    sg_tunnel_end end;
    bool ex_done, tunnel_done;
    /* the on_close this one stands in front of */
    void (*on_close)(const sg_tunnel_end *e, void *arg, void *arg2);
    void *arg;
} sg_tunnel_log;

static void write_line(sg_tunnel_log *tl)
{
    sg_http_req *r = &tl->req;
    const sg_tunnel_end *e = &tl->end;
    /* bytes the tunnel wrote to the client, less the answer's own head
     * still queued at the hand-over (counted when it was queued) */
    uint64_t extra = e->client_written > tl->unsent ? e->client_written - tl->unsent : 0;
    r->bytes_sent += extra;
    r->body_bytes_sent += extra;
    r->body_received += tl->from_client + e->client_read;
    sg_attempt *a = tl->attempt < r->nattempts ? sg_req_attempt(r, tl->attempt) : sg_req_attempt_add(r);
    a->sent = tl->up_sent + e->upstream_written;
    a->recv = tl->up_recv + e->upstream_read;
    /* nginx times the attempt until the upgraded connection ends */
    sg_worker *w = sg_worker_self();
    if (w) {
        uint64_t now = sg_loop_now(sg_worker_loop(w));
        a->response_ms = now > tl->attempt_start_ms ? now - tl->attempt_start_ms : 0;
    }
    r->var_cache = NULL;           /* values computed before the tunnel's end are stale */
    sg_access_log_write(r);
    sg_req_attempts_free(r);
    sg_arena_free(&r->arena);
    free(tl);
}

static void on_tunnel_closed(const sg_tunnel_end *e, void *arg, void *arg2)
{
    sg_tunnel_log *tl = arg;
    if (tl->on_close) tl->on_close(e, tl->arg, arg2);
    if (e) tl->end = *e;           /* NULL: the tunnel never started */
    tl->tunnel_done = true;
    if (tl->ex_done) write_line(tl);
}

void sg_tunnel_log_attach(sg_exchange *ex, sg_tunnel_opts *o, uint64_t unsent, uint64_t from_client,
                          uint64_t up_sent, uint64_t up_recv)
{
    const sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = r->loc ? &r->loc->conf : NULL;
    if (!lc || lc->access_log_off || !lc->naccess_logs) return;
    sg_tunnel_log *tl = sg_xcalloc(1, sizeof(*tl));
    tl->unsent = unsent;
    tl->from_client = from_client;
    tl->up_sent = up_sent;
    tl->up_recv = up_recv;
    tl->attempt = r->nattempts;     /* note_attempt_end adds it next */
    tl->attempt_start_ms = ex->attempt_start_ms;
    tl->on_close = o->on_close;
    tl->arg = o->arg;
    o->on_close = on_tunnel_closed;
    o->arg = tl;
    ex->tunnel_log = tl;
}

static const struct sockaddr *keep_addr(const struct sockaddr *sa, struct sockaddr_storage *to)
{
    if (!sa) return NULL;
    socklen_t n = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                : sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(*to);
    memcpy(to, sa, n);
    return (const struct sockaddr *)to;
}

void sg_tunnel_log_finish(sg_exchange *ex)
{
    sg_tunnel_log *tl = ex->tunnel_log;
    ex->tunnel_log = NULL;
    sg_http_req *r = &tl->req;
    *r = ex->req;
    r->peer = keep_addr(ex->req.peer, &tl->peer);
    r->conn_peer = keep_addr(ex->req.conn_peer, &tl->conn_peer);
    r->local = keep_addr(ex->req.local, &tl->local);
    if (ex->req.proxy_protocol) {
        memcpy(tl->pp, ex->req.proxy_protocol, sizeof(tl->pp));
        r->proxy_protocol = tl->pp;
    }
    /* what the exchange's end frees is the record's now */
    sg_arena_init(&ex->req.arena, 1024);
    ex->req.var_cache = NULL;
    ex->req.var_cached = NULL;
    ex->req.upstream_addr = ex->req.upstream_status = (sg_str){ 0 };   /* they are in that arena */
    ex->req.more_attempts = NULL;   /* the record's now (the inline ones were copied) */
    ex->req.more_cap = ex->req.nattempts = 0;
    tl->ex_done = true;
    if (tl->tunnel_done) write_line(tl);
}
