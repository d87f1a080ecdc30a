/* Smooth weighted round robin, as ngx_http_upstream_get_peer() of nginx
 * 1.22: each usable peer's current_weight grows by its effective_weight,
 * the largest wins (the first declared on ties) and pays back the sum.
 * Weights 1:2 give B A B B A B, weights 5:1:1 give a a b a c a a: the
 * heavy peer is spread out rather than picked in bursts. */
#include "upstream/balancer_impl.h"

#include <stdlib.h>

#include "core/str.h"

sg_peer *sg_balancer_smooth_pick(sg_balancer *b, sg_pick_ctx *ctx, size_t first, size_t n,
                           const uint32_t *group, uint32_t want)
{
    sg_peer *best = NULL;
    int total = 0;

    for (size_t i = first; i < first + n; i++) {
        sg_peer *p = &b->peers[i];
        if ((group && group[i] != want) || sg_balancer_is_tried(ctx->tried, i) ||
            !sg_balancer_available(p, ctx->now_ms))
            continue;
        /* slow_start: a recovered peer's weight ramps up with time. */
        int cap = sg_balancer_weight(p, ctx->now_ms);
        if (p->effective_weight > cap)
            p->effective_weight = cap;
        p->current_weight += p->effective_weight;
        total += p->effective_weight;
        /* A peer whose weight was lowered by failures recovers one step
         * per pick it takes part in. */
        if (p->effective_weight < cap)
            p->effective_weight++;
        if (best == NULL || p->current_weight > best->current_weight)
            best = p;
    }
    if (best)
        best->current_weight -= total;
    return best;
}

static sg_peer *rr_pick_tier(sg_balancer *b, sg_pick_ctx *ctx, size_t first, size_t n)
{
    sg_peer *best = sg_balancer_smooth_pick(b, ctx, first, n, NULL, 0);
    if (best)
        sg_balancer_checked(best, ctx->now_ms);
    return best;
}

sg_peer *sg_balancer_round_robin_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    if (sg_balancer_single(b)) {
        /* nginx's fast path: only `down`, max_conns and a failed health check keep a lone server from use. */
        sg_peer *p = &b->peers[0];
        if (p->conf->down || sg_balancer_is_tried(ctx->tried, 0) || sg_balancer_full(p) || sg_balancer_unhealthy(p))
            return NULL;
        return p;
    }
    return sg_balancer_pick_tiers(b, ctx, rr_pick_tier);
}

static void rr_destroy(sg_balancer *b)
{
    sg_balancer_fini(b);
    free(b);
}

static const sg_balancer_ops rr_ops = {
    .pick = sg_balancer_round_robin_pick,
    .destroy = rr_destroy,
};

sg_balancer *sg_balancer_round_robin_new(const sg_upstream_conf *u)
{
    sg_balancer *b = sg_xcalloc(1, sizeof(*b));
    sg_balancer_init(b, u, &rr_ops);
    return b;
}
