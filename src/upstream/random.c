/* random [two [least_conn | least_time=header|last_byte]], as ngx_http_upstream_random_module.c of nginx
 * 1.22: a peer drawn at random in proportion to the weights; with `two`,
 * two different peers are drawn and the one with fewer active exchanges
 * relative to its weight is used ("power of two choices": nearly
 * least_conn's spread without a scan, which is what spreads long-lived
 * streams well across many proxies that do not share counts). A drawn
 * peer that is down, failed, full (max_conns) or already tried is drawn
 * again; after 20 draws the pick falls back to round robin, as nginx.
 * `backup` servers are refused at load time. */
#include "upstream/balancer_impl.h"

#include <stdlib.h>
#include <time.h>

#include "core/str.h"

#define RANDOM_DRAWS 20

typedef struct random_balancer {
    sg_balancer super;
    bool two;
    bool least_time;        /* random two least_time=: the two are compared by least_time's rank */
    uint64_t *ranges;       /* ranges[i]: sum of the weights of peers 0..i */
    uint64_t total;
    uint64_t state;         /* xorshift64*; draws happen under the balancer's lock */
} random_balancer;

static uint64_t next_random(random_balancer *rb)
{
    uint64_t x = rb->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rb->state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A peer index drawn in proportion to the weights (binary search over the
 * running sums, as nginx's ngx_http_upstream_peek_random_peer). */
static size_t draw(random_balancer *rb)
{
    uint64_t x = next_random(rb) % rb->total;
    size_t lo = 0, hi = rb->super.nprimary - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x < rb->ranges[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static bool usable(sg_balancer *b, sg_pick_ctx *ctx, size_t i)
{
    return !sg_balancer_is_tried(ctx->tried, i) && sg_balancer_available(&b->peers[i], ctx->now_ms);
}

/* a->active / a->weight > b's, without division. */
static bool busier(const sg_peer *a, const sg_peer *b)
{
    return (uint64_t)a->active * (uint64_t)b->conf->weight >
           (uint64_t)b->active * (uint64_t)a->conf->weight;
}

static sg_peer *random_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    random_balancer *rb = (random_balancer *)b;
    if (b->nprimary == 0 || rb->total == 0) return NULL;
    if (sg_balancer_single(b) || (rb->two && b->nprimary < 2))
        return sg_balancer_round_robin_pick(b, ctx);
    sg_peer *first = NULL;
    for (int draws = 0; draws < RANDOM_DRAWS; draws++) {
        size_t i = draw(rb);
        if (!usable(b, ctx, i)) continue;
        sg_peer *p = &b->peers[i];
        if (!rb->two) {
            sg_balancer_checked(p, ctx->now_ms);
            return p;
        }
        if (!first) {
            first = p;
            continue;
        }
        if (p == first) continue;
        if (rb->least_time ? sg_lt_cmp(b, p, first, ctx->now_ms) > 0 : busier(p, first)) p = first;
        sg_balancer_checked(p, ctx->now_ms);
        return p;
    }
    return sg_balancer_round_robin_pick(b, ctx);
}

static void random_destroy(sg_balancer *b)
{
    random_balancer *rb = (random_balancer *)b;
    free(rb->ranges);
    sg_balancer_fini(b);
    free(rb);
}

static const sg_balancer_ops random_ops = {
    .pick = random_pick,
    .destroy = random_destroy,
};

sg_balancer *sg_balancer_random_new(const sg_upstream_conf *u)
{
    random_balancer *rb = sg_xcalloc(1, sizeof(*rb));
    sg_balancer_init(&rb->super, u, &random_ops);
    rb->two = u->lb == SG_LB_RANDOM_TWO;
    rb->least_time = rb->two && u->lt_mode != SG_LT_NONE;
    size_t n = rb->super.nprimary;
    rb->ranges = sg_xcalloc(n ? n : 1, sizeof(*rb->ranges));
    for (size_t i = 0; i < n; i++) {
        rb->total += (uint64_t)rb->super.peers[i].conf->weight;
        rb->ranges[i] = rb->total;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rb->state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)rb ^ 0x9E3779B97F4A7C15ULL;
    if (rb->state == 0) rb->state = 1;
    return &rb->super;
}
