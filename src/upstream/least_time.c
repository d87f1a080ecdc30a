/* least_time header | last_byte [inflight] (http) and least_time connect |
 * first_byte | last_byte [inflight] (stream), as nginx documents it: the
 * usable peer with the least average response time, weighed by its open
 * requests and its weight.
 *
 * Each peer keeps an exponentially weighted moving average of the time its
 * mode names (sg_balancer_times, one sample per attempt; a new sample
 * counts for a quarter). A peer is ranked by
 *     max(average, 20 ms) x (active + 1) / weight
 * so that peers answering within 20 ms count as equally fast and are
 * spread as least_conn spreads them (otherwise the noise of a loopback
 * millisecond would pin all traffic on one). For choosing only, once
 * fail_timeout has passed since a peer was last picked, its average counts
 * as halved for every second since that pick: a peer that was slow once
 * is tried again after a while instead of never (nginx's own knob for
 * "when to try a bad server again"; with fail_timeout=0 a 4 s average
 * falls below 20 ms 8 s after its pick), and that probe's sample is
 * blended with what the peer was known for, so one fast answer does not
 * bring a slow peer all its traffic back at once. With
 * `inflight`, open requests that have not been answered for longer than the
 * average count as that long. Ties go round robin among the tied peers. */
#include "upstream/balancer_impl.h"

#include <stdlib.h>

#include "core/str.h"

#define LT_FLOOR_US 20000ull          /* below this, peers are equally fast */
#define LT_CAP_US 100000000000ull     /* keeps the products below 2^64 */

uint64_t sg_lt_time_us(const sg_balancer *b, const sg_peer *p, uint64_t now_ms)
{
    uint64_t t = p->lt_avg_us;
    uint64_t age = now_ms > p->picked_ms ? now_ms - p->picked_ms : 0;
    if (t && age >= p->conf->fail_timeout_ms) {
        uint64_t halvings = age / 1000;
        t = halvings >= 63 ? 0 : t >> halvings;
        t -= t * (age % 1000) / 2000;   /* the rest of the second, linearly */
    }
    if (b->conf->lt_inflight && p->active > 0 && now_ms > p->busy_since_ms) {
        uint64_t waiting = (now_ms - p->busy_since_ms) * 1000;
        if (waiting > t) t = waiting;
    }
    if (t < LT_FLOOR_US) t = LT_FLOOR_US;
    if (t > LT_CAP_US) t = LT_CAP_US;
    return t;
}

int sg_lt_cmp(const sg_balancer *b, const sg_peer *x, const sg_peer *y, uint64_t now_ms)
{
    /* time x (active + 1) / weight, compared without division; in long
     * double because time x active x weight can pass 2^64. */
    long double l = (long double)sg_lt_time_us(b, x, now_ms) * (x->active + 1) * (long double)y->conf->weight;
    long double r = (long double)sg_lt_time_us(b, y, now_ms) * (y->active + 1) * (long double)x->conf->weight;
    return l < r ? -1 : l > r;
}

typedef struct lt_balancer {
    sg_balancer super;
} lt_balancer;

static bool lt_usable(sg_balancer *b, sg_pick_ctx *ctx, size_t i)
{
    return !sg_balancer_is_tried(ctx->tried, i) && sg_balancer_available(&b->peers[i], ctx->now_ms);
}

static sg_peer *lt_pick_tier(sg_balancer *b, sg_pick_ctx *ctx, size_t first, size_t n)
{
    sg_peer *best = NULL;
    size_t at = 0;
    bool many = false;

    for (size_t i = first; i < first + n; i++) {
        sg_peer *p = &b->peers[i];
        if (!lt_usable(b, ctx, i)) continue;
        int c = best ? sg_lt_cmp(b, p, best, ctx->now_ms) : -1;
        if (c < 0) {
            best = p;
            at = i;
            many = false;
        } else if (c == 0) {
            many = true;
        }
    }
    if (best == NULL) return NULL;
    if (many) {
        /* Smooth weighted round robin among the tied peers only. */
        sg_peer *tied = best;
        int total = 0;
        for (size_t i = at; i < first + n; i++) {
            sg_peer *p = &b->peers[i];
            if (!lt_usable(b, ctx, i) || sg_lt_cmp(b, p, tied, ctx->now_ms) != 0) continue;
            p->current_weight += p->effective_weight;
            total += p->effective_weight;
            if (p->effective_weight < p->conf->weight) p->effective_weight++;
            if (p->current_weight > best->current_weight) best = p;
        }
        best->current_weight -= total;
    }
    sg_balancer_checked(best, ctx->now_ms);
    return best;
}

static sg_peer *lt_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    if (sg_balancer_single(b)) return sg_balancer_round_robin_pick(b, ctx);
    return sg_balancer_pick_tiers(b, ctx, lt_pick_tier);
}

void sg_lt_sample(sg_peer *p, sg_lt_mode mode, const sg_peer_times *t)
{
    int64_t ms = -1;
    switch (mode) {
    case SG_LT_HEADER: ms = t->header_ms; break;
    case SG_LT_LAST_BYTE: ms = t->last_byte_ms; break;
    case SG_LT_CONNECT: ms = t->connect_ms; break;
    case SG_LT_FIRST_BYTE: ms = t->first_byte_ms; break;
    default: return;
    }
    if (ms < 0) return;
    /* +1 µs: a measured zero is still a sample. */
    uint64_t us = (uint64_t)ms * 1000 + 1;
    p->lt_avg_us = p->lt_avg_us ? (p->lt_avg_us * 3 + us) / 4 : us;
}

static void lt_destroy(sg_balancer *b)
{
    sg_balancer_fini(b);
    free((lt_balancer *)b);
}

static const sg_balancer_ops lt_ops = {
    .pick = lt_pick,
    .destroy = lt_destroy,
};

sg_balancer *sg_balancer_least_time_new(const sg_upstream_conf *u)
{
    lt_balancer *lb = sg_xcalloc(1, sizeof(*lb));
    sg_balancer_init(&lb->super, u, &lt_ops);
    return &lb->super;
}
