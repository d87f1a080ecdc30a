/* least_conn, as ngx_http_upstream_least_conn_module.c of nginx 1.22: the
 * usable peer with the fewest active exchanges relative to its weight; when
 * several share that ratio, smooth weighted round robin among them. */
#include "upstream/balancer_impl.h"

#include <stdlib.h>

#include "core/str.h"

typedef struct lc_balancer {
    sg_balancer super;
} lc_balancer;

/* a->active / a->weight compared with b's without division. */
static int lc_cmp(const sg_peer *a, const sg_peer *b)
{
    uint64_t l = (uint64_t)a->active * (uint64_t)b->conf->weight;
    uint64_t r = (uint64_t)b->active * (uint64_t)a->conf->weight;
    return l < r ? -1 : l > r;
}

static bool lc_usable(sg_balancer *b, sg_pick_ctx *ctx, size_t i)
{
    return !sg_balancer_is_tried(ctx->tried, i) && sg_balancer_available(&b->peers[i], ctx->now_ms);
}

/* Round robin among the peers tied with `best` (found at `at`); only the
 * tied ones take part, so the others' round-robin state is left alone. */
static sg_peer *lc_break_tie(sg_balancer *b, sg_pick_ctx *ctx, size_t at, size_t end)
{
    sg_peer *best = &b->peers[at];
    int total = 0;

    for (size_t i = at; i < end; i++) {
        sg_peer *p = &b->peers[i];
        if (!lc_usable(b, ctx, i) || lc_cmp(p, best) != 0)
            continue;
        p->current_weight += p->effective_weight;
        total += p->effective_weight;
        if (p->effective_weight < p->conf->weight)
            p->effective_weight++;
        if (p->current_weight > best->current_weight)
            best = p;
    }
    best->current_weight -= total;
    return best;
}

static sg_peer *lc_pick_tier(sg_balancer *b, sg_pick_ctx *ctx, size_t first, size_t n)
{
    sg_peer *best = NULL;
    size_t at = 0;
    bool many = false;

    for (size_t i = first; i < first + n; i++) {
        sg_peer *p = &b->peers[i];
        if (!lc_usable(b, ctx, i))
            continue;
        if (best == NULL || lc_cmp(p, best) < 0) {
            best = p;
            at = i;
            many = false;
        } else if (lc_cmp(p, best) == 0) {
            many = true;
        }
    }
    if (best == NULL)
        return NULL;
    /* nginx subtracts the (zero) total when there is no tie. */
    if (many)
        best = lc_break_tie(b, ctx, at, first + n);
    sg_balancer_checked(best, ctx->now_ms);
    return best;
}

static sg_peer *lc_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    if (sg_balancer_single(b))
        return sg_balancer_round_robin_pick(b, ctx);
    return sg_balancer_pick_tiers(b, ctx, lc_pick_tier);
}

static void lc_destroy(sg_balancer *b)
{
    sg_balancer_fini(b);
    free((lc_balancer *)b);
}

static const sg_balancer_ops lc_ops = {
    .pick = lc_pick,
    .destroy = lc_destroy,
};

sg_balancer *sg_balancer_least_conn_new(const sg_upstream_conf *u)
{
    lc_balancer *lb = sg_xcalloc(1, sizeof(*lb));
    sg_balancer_init(&lb->super, u, &lc_ops);
    return &lb->super;
}
