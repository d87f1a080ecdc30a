/* Load balancing: shared logic of every method (see balancer_impl.h).
 * Failure accounting follows ngx_http_upstream_free_round_robin_peer() of
 * nginx 1.22; times are milliseconds instead of nginx's seconds. */
#include "upstream/balancer_impl.h"

#include <stdlib.h>

#include "core/log.h"
#include "core/str.h"

void sg_balancer_init(sg_balancer *b, const sg_upstream_conf *u, const sg_balancer_ops *ops)
{
    b->ops = ops;
    b->conf = u;
    pthread_spin_init(&b->lock, PTHREAD_PROCESS_PRIVATE);
    b->peers = sg_xcalloc(u->nservers ? u->nservers : 1, sizeof(sg_peer));

    /* Two passes keep declaration order inside each tier. */
    size_t n = 0;
    for (int backup = 0; backup <= 1; backup++) {
        for (size_t i = 0; i < u->nservers; i++) {
            const sg_upstream_server_conf *s = &u->servers[i];
            if (s->backup != (backup == 1))
                continue;
            sg_peer *p = &b->peers[n++];
            p->conf = s;
            p->owner = b;
            p->index = (int)i;
            p->current_weight = 0;
            p->effective_weight = s->weight;
            if (backup)
                b->nbackup++;
            else
                b->nprimary++;
        }
    }
    sg_sticky_init(b);
}

void sg_balancer_fini(sg_balancer *b)
{
    pthread_spin_destroy(&b->lock);
    sg_sticky_fini(b);
    free(b->peers);
    b->peers = NULL;
}

bool sg_balancer_single(const sg_balancer *b)
{
    return b->nprimary == 1 && b->nbackup == 0;
}

/* Signed, as nginx's time_t arithmetic: a `now` slightly behind the stored
 * time (another thread's clock read) counts as "no time has passed". */
static int64_t elapsed_ms(uint64_t now_ms, uint64_t then_ms)
{
    return (int64_t)(now_ms - then_ms);
}

bool sg_balancer_available(const sg_peer *p, uint64_t now_ms)
{
    return !p->conf->drain && sg_balancer_available_sticky(p, now_ms);
}

bool sg_balancer_available_sticky(const sg_peer *p, uint64_t now_ms)
{
    const sg_upstream_server_conf *c = p->conf;
    if (c->down || sg_balancer_full(p) || sg_balancer_unhealthy(p))
        return false;
    if (c->max_fails > 0 && p->fails >= (unsigned)c->max_fails
        && elapsed_ms(now_ms, p->checked_ms) <= (int64_t)c->fail_timeout_ms)
        return false;
    return true;
}

void sg_balancer_checked(sg_peer *p, uint64_t now_ms)
{
    if (elapsed_ms(now_ms, p->checked_ms) > (int64_t)p->conf->fail_timeout_ms)
        p->checked_ms = now_ms;
}

static bool backup_tried(const sg_balancer *b, const uint64_t *tried)
{
    for (size_t i = b->nprimary; i < b->nprimary + b->nbackup; i++) {
        if (sg_balancer_is_tried(tried, i))
            return true;
    }
    return false;
}

sg_peer *sg_balancer_pick_tiers(sg_balancer *b, sg_pick_ctx *ctx, sg_balancer_tier_pick pick)
{
    if (!backup_tried(b, ctx->tried)) {
        sg_peer *p = pick(b, ctx, 0, b->nprimary);
        if (p)
            return p;
    }
    if (b->nbackup == 0)
        return NULL;
    return pick(b, ctx, b->nprimary, b->nbackup);
}

sg_balancer *sg_balancer_new(const sg_upstream_conf *u)
{
    switch (u->lb) {
    case SG_LB_LEAST_CONN:
        return sg_balancer_least_conn_new(u);
    case SG_LB_IP_HASH:
        return sg_balancer_ip_hash_new(u);
    case SG_LB_HASH:
    case SG_LB_HASH_CONSISTENT:
        return sg_balancer_hash_new(u);
    case SG_LB_RANDOM:
    case SG_LB_RANDOM_TWO:
        return sg_balancer_random_new(u);
    case SG_LB_LEAST_TIME:
        return sg_balancer_least_time_new(u);
    case SG_LB_ROUND_ROBIN:
    default:
        return sg_balancer_round_robin_new(u);
    }
}

void sg_balancer_free(sg_balancer *b)
{
    if (b)
        b->ops->destroy(b);
}

size_t sg_balancer_tried_words(const sg_balancer *b)
{
    size_t n = b->nprimary + b->nbackup;
    if (b->conf->nresolves && n < SG_DNS_MAX_PEERS) n = SG_DNS_MAX_PEERS;
    return n ? (n + 63) / 64 : 1;
}

sg_peer *sg_balancer_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    /* dns: a resolved set may be empty; the methods divide by its weights */
    if (b->nprimary + b->nbackup == 0) return NULL;
    pthread_spin_lock(&b->lock);
    sg_peer *p = ctx->sticky_len ? sg_sticky_pick(b, ctx) : NULL;
    if (!p)
        p = b->ops->pick(b, ctx);
    if (p) {
        sg_balancer_set_tried(ctx->tried, (size_t)(p - b->peers));
        if (p->active++ == 0) p->busy_since_ms = ctx->now_ms;
        p->picked_ms = ctx->now_ms;
    }
    pthread_spin_unlock(&b->lock);
    return p;
}

/* nginx: each failure lowers the peer's share of new requests by
 * weight / max_fails until successful picks bring it back. Returns whether
 * the peer just became (or stays) temporarily disabled. */
static bool account_failure(sg_peer *p, uint64_t now_ms)
{
    const sg_upstream_server_conf *c = p->conf;
    bool disabled = false;

    p->fails++;
    p->accessed_ms = now_ms;
    p->checked_ms = now_ms;
    if (c->max_fails > 0) {
        p->effective_weight -= c->weight / c->max_fails;
        disabled = p->fails >= (unsigned)c->max_fails;
    }
    if (p->effective_weight < 0)
        p->effective_weight = 0;
    return disabled;
}

void sg_balancer_done(sg_balancer *b, sg_peer *p, bool failed, uint64_t now_ms)
{
    bool disabled = false;

    /* dns: picked before its upstream's set changed: the attempt ends on
     * the peer that took the address over, if any */
    if (p->owner) b = p->owner;
    pthread_spin_lock(&b->lock);
    while (p->moved_to) {
        sg_peer *next = p->moved_to;
        pthread_spin_unlock(&b->lock);
        p = next;
        b = p->owner;
        pthread_spin_lock(&b->lock);
    }
    /* A lone server is never marked failed: there is nothing else to use. */
    if (!sg_balancer_single(b)) {
        if (failed)
            disabled = account_failure(p, now_ms);
        else if (p->accessed_ms < p->checked_ms) {
            /* the trial after fail_timeout succeeded */
            if (p->conf->max_fails > 0 && p->fails >= (unsigned)p->conf->max_fails)
                p->recovered_ms = now_ms ? now_ms : 1;
            p->fails = 0;
        }
    }
    if (p->active > 0)
        p->active--;
    p->busy_since_ms = now_ms;   /* it answered: its other open requests wait from now */
    p->mx_requests++;            /* metrics (issue 12) */
    if (failed) p->mx_failures++;
    pthread_spin_unlock(&b->lock);

    /* Logged outside the spinlock: the write may block. */
    if (disabled)
        sg_log_warn("upstream server temporarily disabled, upstream: \"%s\"",
                    p->conf->name ? p->conf->name : "");
}

void sg_balancer_times(sg_balancer *b, sg_peer *p, const sg_peer_times *t)
{
    sg_lt_mode mode = b->conf->lt_mode;
    if (mode == SG_LT_NONE) return;
    if (p->owner) b = p->owner;        /* dns: the set the peer was picked from */
    pthread_spin_lock(&b->lock);
    sg_lt_sample(p, mode, t);
    pthread_spin_unlock(&b->lock);
}

int sg_balancer_weight(const sg_peer *p, uint64_t now_ms)
{
    uint32_t ss = p->conf->slow_start_ms;
    int w = p->conf->weight;
    if (!ss || !p->recovered_ms || now_ms >= p->recovered_ms + ss) return w;
    uint64_t part = (uint64_t)w * (now_ms - p->recovered_ms) / ss;
    return part ? (int)part : 1;
}
