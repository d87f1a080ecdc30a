/* limit_req and limit_conn at run time (proxy/limit.h), after nginx's
 * ngx_http_limit_req_module, ngx_http_limit_conn_module and
 * ngx_stream_limit_conn_module: same arithmetic, same order, same
 * messages. */
#include "proxy/limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/stats.h"
#include "core/sockaddr.h"
#include "core/zone.h"
#include "exchange/vars.h"
#include "proxy/grpc.h"
#include "proxy/respond.h"

struct sg_limit_slots {
    size_t n;
    struct {
        sg_zone *z;
        sg_zone_node *node;
    } s[];
};

/* What an exchange keeps while limits hold it: a limit_req delay and
 * limit_conn slots. Malloc'ed; only exchanges of limited locations pay. */
typedef struct sg_limit_state {
    sg_exchange *ex;
    sg_timer delay;
    void (*cont)(sg_exchange *ex);
    sg_limit_slots *slots;
} sg_limit_state;

enum { LR_OK, LR_AGAIN, LR_BUSY, LR_ERROR };

/* a state created by a lookup that does not account yet has last == 0:
 * nginx's (now - 0) is "long ago" */
#define LONG_AGO_MS ((int64_t)1 << 40)

static int64_t since(uint64_t now, uint64_t last)
{
    return last ? (int64_t)(now - last) : LONG_AGO_MS;
}

/* ", client: 127.0.0.1, server: localhost, request: "GET / HTTP/1.1", host: "h"" */
static void req_context(sg_exchange *ex, char *buf, size_t len)
{
    sg_http_req *r = &ex->req;
    char client[64] = "";
    if (r->peer) sg_sockaddr_host(r->peer, client, sizeof(client));
    sg_str srv = r->srv && r->srv->nnames ? r->srv->names[0].name : SG_STR("");
    snprintf(len ? buf : NULL, len, ", client: %s, server: %.*s, request: \"%.*s %.*s HTTP/%d.%d\", host: \"%.*s\"",
             client, (int)srv.n, srv.p, (int)r->method.n, r->method.p, (int)r->request_uri.n, r->request_uri.p,
             r->http_major, r->http_minor, (int)r->host.n, r->host.p);
}

static sg_limit_state *state_of(sg_exchange *ex)
{
    return ex->limits;
}

static sg_limit_state *state_make(sg_exchange *ex)
{
    if (!ex->limits) {
        sg_limit_state *st = sg_xcalloc(1, sizeof(*st));
        st->ex = ex;
        ex->limits = st;
    }
    return ex->limits;
}

/* ---------------- connection slots ---------------- */

static void slot_release(sg_zone *z, sg_zone_node *n)
{
    sg_zone_lock(z);
    if (n->count > 0) n->count--;
    if (n->count == 0) sg_zone_remove(z, n);
    sg_zone_unlock(z);
}

void sg_limit_slots_free(sg_limit_slots *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) slot_release(s->s[i].z, s->s[i].node);
    free(s);
}

typedef enum { CONN_PASS, CONN_REJECT, CONN_FULL } conn_result;

/* One limit_conn line with its key: a slot taken (added to *slots,
 * made for up to `max` lines) or the reason there is none. */
static conn_result conn_take(const sg_limit_ref *l, const char *key, size_t len, sg_limit_slots **slots, size_t max)
{
    sg_zone *z = l->zone->zone;
    uint32_t h = sg_zone_hash(key, len);
    sg_zone_lock(z);
    sg_zone_node *n = sg_zone_find(z, h, key, len);
    if (!n) {
        n = sg_zone_insert(z, h, key, len);
        if (!n) {
            sg_zone_unlock(z);
            return CONN_FULL;
        }
    } else if (n->count >= l->conn) {
        sg_zone_unlock(z);
        return CONN_REJECT;
    }
    n->count++;
    sg_zone_unlock(z);
    if (!*slots) *slots = sg_xcalloc(1, sizeof(sg_limit_slots) + max * sizeof((*slots)->s[0]));
    (*slots)->s[(*slots)->n].z = z;
    (*slots)->s[(*slots)->n].node = n;
    (*slots)->n++;
    return CONN_PASS;
}

/* limit_conn of the location: false when the request was answered. */
static bool run_conn(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = &r->loc->conf;
    if (!lc->nlimit_conns || r->limit_conn_status) return true;
    sg_limit_slots *slots = NULL;
    for (size_t i = 0; i < lc->nlimit_conns; i++) {
        const sg_limit_ref *l = &lc->limit_conns[i];
        sg_str key = sg_cval_eval(&l->zone->key, r);
        if (!key.p || key.n == 0) continue;
        if (key.n > 255) {
            sg_ex_log(ex, SG_LOG_ERROR, "the value of the \"%.*s\" key is more than 255 bytes: \"%.*s\"",
                      (int)l->zone->key.text.n, l->zone->key.text.p, (int)key.n, key.p);
            continue;
        }
        r->limit_conn_status = SG_LIMIT_PASSED;
        conn_result res = conn_take(l, key.p, key.n, &slots, lc->nlimit_conns);
        if (res == CONN_PASS) continue;
        char ctx[1024];
        req_context(ex, ctx, sizeof(ctx));
        if (res == CONN_FULL)
            sg_ex_log(ex, SG_LOG_CRIT, "could not allocate node in limit_conn zone \"%s\"%s", l->zone->name, ctx);
        else
            sg_ex_log(ex, sg_limit_log_level(lc->limit_conn_log_level), "limiting connections%s by zone \"%s\"%s",
                      lc->limit_conn_dry_run ? ", dry run," : "", l->zone->name, ctx);
        sg_limit_slots_free(slots);    /* nginx's cleanup_all: the slots this request took go back */
        slots = NULL;
        if (lc->limit_conn_dry_run) {
            r->limit_conn_status = SG_LIMIT_REJECTED_DRY_RUN;
            return true;
        }
        r->limit_conn_status = SG_LIMIT_REJECTED;
        sg_stats_add(SG_ST_LIMIT_CONN_REJECTED, 1);   /* metrics (issue 12) */
        if (sg_grpc_is_call(ex)) sg_grpc_end_call(ex, SG_GRPC_RESOURCE_EXHAUSTED, "limiting connections");
        else sg_respond_error(ex, lc->limit_conn_status ? (int)lc->limit_conn_status : SG_LIMIT_DEFAULT_STATUS);
        return false;
    }
    if (slots) state_make(ex)->slots = slots;
    return true;
}

/* ---------------- limit_req ---------------- */

/* nginx's ngx_http_limit_req_expire: n == 1 deletes one or two states
 * that have drained and were not seen for a minute; n == 0 first deletes
 * the least recently used one by force. States a lookup holds (count)
 * stop it. */
static void lr_expire(sg_zone *z, uint64_t rate, uint64_t now, int n)
{
    while (n < 3) {
        sg_zone_node *node = sg_zone_oldest(z);
        if (!node || node->count) return;
        if (n++ != 0) {
            int64_t ms = since(now, node->last);
            if (ms < 0) ms = -ms;
            if (ms < 60000) return;
            uint64_t drained = rate * (uint64_t)ms / 1000;
            if (node->excess > 0 && (uint64_t)node->excess > drained) return;
        }
        sg_zone_remove(z, node);
    }
}

/* ngx_http_limit_req_lookup, the zone locked. */
static int lr_lookup(const sg_limit_ref *l, uint32_t h, sg_str key, int64_t *ep, bool account, uint64_t now,
                     sg_zone_node **held)
{
    sg_zone *z = l->zone->zone;
    uint64_t rate = l->zone->rate;
    sg_zone_node *n = sg_zone_find(z, h, key.p, key.n);
    if (n) {
        sg_zone_touch(z, n);
        int64_t ms = since(now, n->last);
        if (ms < -60000) ms = 1;
        else if (ms < 0) ms = 0;
        int64_t excess = sg_leaky_excess(n->excess, rate, ms);
        *ep = excess;
        if ((uint64_t)excess > l->burst) return LR_BUSY;
        if (account) {
            n->excess = excess;
            if (ms) n->last = now;
            return LR_OK;
        }
        n->count++;
        *held = n;
        return LR_AGAIN;
    }
    lr_expire(z, rate, now, 1);
    n = sg_zone_insert(z, h, key.p, key.n);
    if (!n) {
        lr_expire(z, rate, now, 0);
        n = sg_zone_insert(z, h, key.p, key.n);
        if (!n) return LR_ERROR;
    }
    n->excess = 0;
    if (account) {
        n->last = now;
        n->count = 0;
        return LR_OK;
    }
    n->last = 0;
    n->count = 1;
    *held = n;
    return LR_AGAIN;
}

/* ngx_http_limit_req_account: the states held by the lines before the
 * last are accounted now; the longest delay any of them asks wins. */
static uint64_t lr_account(const sg_limit_ref *limits, size_t n, sg_zone_node **held, int64_t *ep,
                           const sg_limit_ref **limit, uint64_t now)
{
    int64_t excess = *ep;
    uint64_t max_delay = 0;
    if ((uint64_t)excess > (*limit)->delay)
        max_delay = ((uint64_t)excess - (*limit)->delay) * 1000 / (*limit)->zone->rate;
    while (n--) {
        sg_zone_node *node = held[n];
        if (!node) continue;
        const sg_limit_ref *l = &limits[n];
        sg_zone *z = l->zone->zone;
        sg_zone_lock(z);
        int64_t ms = since(now, node->last);
        if (ms < -60000) ms = 1;
        else if (ms < 0) ms = 0;
        excess = sg_leaky_excess(node->excess, l->zone->rate, ms);
        if (ms) node->last = now;
        node->excess = excess;
        node->count--;
        sg_zone_unlock(z);
        held[n] = NULL;
        if ((uint64_t)excess <= l->delay) continue;
        uint64_t d = ((uint64_t)excess - l->delay) * 1000 / l->zone->rate;
        if (d > max_delay) {
            max_delay = d;
            *ep = excess;
            *limit = l;
        }
    }
    return max_delay;
}

static void lr_unhold(const sg_limit_ref *limits, size_t n, sg_zone_node **held)
{
    while (n--) {
        if (!held[n]) continue;
        sg_zone *z = limits[n].zone->zone;
        sg_zone_lock(z);
        held[n]->count--;
        sg_zone_unlock(z);
        held[n] = NULL;
    }
}

typedef enum { REQ_GO, REQ_DONE, REQ_DELAY } req_result;

static req_result run_req(sg_exchange *ex, uint64_t *delay_ms)
{
    sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = &r->loc->conf;
    if (!lc->nlimit_reqs || r->limit_req_status) return REQ_GO;
    uint64_t now = sg_loop_now(sg_worker_loop(ex->w));
    sg_zone_node *held_small[8] = { 0 };
    sg_zone_node **held = lc->nlimit_reqs <= 8 ? held_small : sg_xcalloc(lc->nlimit_reqs, sizeof(*held));
    int64_t excess = 0;
    int rc = -1;                       /* nginx's NGX_DECLINED: no line had a key */
    size_t n = 0;
    const sg_limit_ref *limit = &lc->limit_reqs[0];
    for (n = 0; n < lc->nlimit_reqs; n++) {
        limit = &lc->limit_reqs[n];
        sg_str key = sg_cval_eval(&limit->zone->key, r);
        if (!key.p || key.n == 0) continue;
        if (key.n > 65535) {
            sg_ex_log(ex, SG_LOG_ERROR, "the value of the \"%.*s\" key is more than 65535 bytes: \"%.*s\"",
                      (int)limit->zone->key.text.n, limit->zone->key.text.p, (int)key.n, key.p);
            continue;
        }
        sg_zone *z = limit->zone->zone;
        sg_zone_lock(z);
        rc = lr_lookup(limit, sg_zone_hash(key.p, key.n), key, &excess, n == lc->nlimit_reqs - 1, now, &held[n]);
        sg_zone_unlock(z);
        if (rc != LR_AGAIN) break;
    }
    req_result res = REQ_GO;
    if (rc == -1) goto out;
    if (rc == LR_BUSY || rc == LR_ERROR) {
        char ctx[1024];
        req_context(ex, ctx, sizeof(ctx));
        if (rc == LR_BUSY)
            sg_ex_log(ex, sg_limit_log_level(lc->limit_req_log_level),
                      "limiting requests%s, excess: %llu.%03llu by zone \"%s\"%s", lc->limit_req_dry_run ? ", dry run" : "",
                      (unsigned long long)(excess / 1000), (unsigned long long)(excess % 1000), limit->zone->name, ctx);
        else
            sg_ex_log(ex, SG_LOG_ALERT, "could not allocate node in limit_req zone \"%s\"%s", limit->zone->name, ctx);
        lr_unhold(lc->limit_reqs, n, held);
        if (lc->limit_req_dry_run) {
            r->limit_req_status = SG_LIMIT_REJECTED_DRY_RUN;
            goto out;
        }
        r->limit_req_status = SG_LIMIT_REJECTED;
        sg_stats_add(SG_ST_LIMIT_REQ_REJECTED, 1);    /* metrics (issue 12) */
        if (sg_grpc_is_call(ex)) sg_grpc_end_call(ex, SG_GRPC_RESOURCE_EXHAUSTED, "limiting requests");
        else sg_respond_error(ex, lc->limit_req_status ? (int)lc->limit_req_status : SG_LIMIT_DEFAULT_STATUS);
        res = REQ_DONE;
        goto out;
    }
    if (rc == LR_AGAIN) excess = 0;    /* the last lines had no key */
    uint64_t delay = lr_account(lc->limit_reqs, n, held, &excess, &limit, now);
    if (delay == 0) {
        r->limit_req_status = SG_LIMIT_PASSED;
        goto out;
    }
    {
        char ctx[1024];
        req_context(ex, ctx, sizeof(ctx));
        sg_ex_log(ex, sg_limit_delay_log_level(lc->limit_req_log_level),
                  "delaying request%s, excess: %llu.%03llu, by zone \"%s\"%s", lc->limit_req_dry_run ? ", dry run" : "",
                  (unsigned long long)(excess / 1000), (unsigned long long)(excess % 1000), limit->zone->name, ctx);
    }
    if (lc->limit_req_dry_run) {
        r->limit_req_status = SG_LIMIT_DELAYED_DRY_RUN;
        goto out;
    }
    r->limit_req_status = SG_LIMIT_DELAYED;
    sg_stats_add(SG_ST_LIMIT_REQ_DELAYED, 1);         /* metrics (issue 12) */
    *delay_ms = delay;
    res = REQ_DELAY;
out:
    if (held != held_small) free(held);
    return res;
}

static void on_delay(sg_timer *t)
{
    sg_limit_state *st = (sg_limit_state *)((char *)t - offsetof(sg_limit_state, delay));
    sg_exchange *ex = st->ex;
    if (ex->aborted || ex->resp_done) return;
    if (run_conn(ex)) st->cont(ex);
}

bool sg_limit_run(sg_exchange *ex, void (*cont)(sg_exchange *ex))
{
    uint64_t delay = 0;
    switch (run_req(ex, &delay)) {
    case REQ_DONE:
        return false;
    case REQ_DELAY: {
        sg_limit_state *st = state_make(ex);
        st->cont = cont;
        sg_timer_init(&st->delay, on_delay);
        sg_timer_arm(sg_worker_loop(ex->w), &st->delay, delay);
        return false;
    }
    case REQ_GO:
        break;
    }
    return run_conn(ex);
}

/* A finished exchange's slots, held until its stream is closed (an
 * HTTP/2 stream whose answer is not all sent yet): the generation, whose
 * zones they point into, stays held with them. */
typedef struct closed_hold {
    sg_limit_slots *slots;
    sg_worker *w;
    sg_conf *gen;
} closed_hold;

static void stream_closed(void *arg)
{
    closed_hold *h = arg;
    sg_limit_slots_free(h->slots);
    sg_worker_gen_release(h->w, h->gen);
    free(h);
}

void sg_limit_finish(sg_exchange *ex)
{
    sg_limit_state *st = state_of(ex);
    if (!st) return;
    if (st->slots && ex->w) {
        closed_hold *h = sg_xcalloc(1, sizeof(*h));
        h->slots = st->slots;
        h->w = ex->w;
        h->gen = ex->req.gen;
        sg_worker_gen_hold(h->w, h->gen);
        st->slots = NULL;
        ex->on_closed = stream_closed;
        ex->on_closed_arg = h;
    }
    sg_limit_release(ex);
}

void sg_limit_release(sg_exchange *ex)
{
    sg_limit_state *st = state_of(ex);
    if (!st) return;
    ex->limits = NULL;
    if (st->cont) sg_timer_disarm(&st->delay);
    sg_limit_slots_free(st->slots);
    free(st);
}

/* ---------------- upgrades: the tunnel holds the slots ---------------- */

typedef struct tunnel_hold {
    void (*on_close)(const sg_tunnel_end *e, void *arg, void *arg2);
    void *arg;
    sg_limit_slots *slots;
} tunnel_hold;

static void tunnel_closed(const sg_tunnel_end *e, void *arg, void *arg2)
{
    tunnel_hold *h = arg;
    if (h->on_close) h->on_close(e, h->arg, arg2);
    sg_limit_slots_free(h->slots);
    free(h);
}

void sg_limit_tunnel(sg_exchange *ex, sg_tunnel_opts *o)
{
    sg_limit_state *st = state_of(ex);
    if (!st || !st->slots) return;
    tunnel_hold *h = sg_xcalloc(1, sizeof(*h));
    h->on_close = o->on_close;
    h->arg = o->arg;
    h->slots = st->slots;
    st->slots = NULL;
    o->on_close = tunnel_closed;
    o->arg = h;
}

/* ---------------- stream{} ---------------- */

bool sg_limit_stream(const sg_stream_proxy_conf *pc, sg_stream_info *in, sg_limit_slots **slots)
{
    *slots = NULL;
    if (!pc->nlimit_conns) return true;
    for (size_t i = 0; i < pc->nlimit_conns; i++) {
        const sg_limit_ref *l = &pc->limit_conns[i];
        char key[SG_STREAM_VAL_MAX];
        size_t len = sg_stream_eval(l->zone->skey, in, key);
        if (len == 0) continue;
        if (len > 255) {
            sg_log_error("the value of the \"%.*s\" key is more than 255 bytes: \"%.*s\"", (int)l->zone->skey->text.n,
                         l->zone->skey->text.p, (int)len, key);
            continue;
        }
        in->limit_conn_status = SG_LIMIT_PASSED;
        conn_result res = conn_take(l, key, len, slots, pc->nlimit_conns);
        if (res == CONN_PASS) continue;
        char client[64] = "", server[80] = "";
        if (in->client) sg_sockaddr_host(in->client, client, sizeof(client));
        if (in->local) sg_sockaddr_str(in->local, server, sizeof(server));
        if (res == CONN_FULL)
            sg_log(SG_LOG_CRIT, "could not allocate node in limit_conn zone \"%s\", client: %s, server: %s",
                   l->zone->name, client, server);
        else
            sg_log(sg_limit_log_level(pc->limit_conn_log_level), "limiting connections%s by zone \"%s\", client: %s, server: %s",
                   pc->limit_conn_dry_run ? ", dry run," : "", l->zone->name, client, server);
        sg_limit_slots_free(*slots);
        *slots = NULL;
        if (pc->limit_conn_dry_run) {
            in->limit_conn_status = SG_LIMIT_REJECTED_DRY_RUN;
            return true;
        }
        in->limit_conn_status = SG_LIMIT_REJECTED;
        sg_stats_add(SG_ST_LIMIT_CONN_REJECTED, 1);   /* metrics (issue 12) */
        return false;
    }
    return true;
}
