/* Pieces shared by the balancer implementations (private to src/upstream).
 *
 * balancer.c owns what every method does the same way in nginx
 * (ngx_http_upstream_round_robin.c): peer setup, the "is this peer usable"
 * test, the fail_timeout trial bookkeeping, failure accounting in done(),
 * and falling back from primary to backup peers. Each method file only
 * chooses a peer among the usable ones of one tier. */
#ifndef SG_UPSTREAM_BALANCER_IMPL_H
#define SG_UPSTREAM_BALANCER_IMPL_H

#include "upstream/balancer.h"

/* Fills b->peers from u->servers (primaries then backups, each in
 * declaration order) and initialises the lock; the caller allocated `b`
 * (the embedding struct) zeroed. */
void sg_balancer_init(sg_balancer *b, const sg_upstream_conf *u, const sg_balancer_ops *ops);
/* Frees what sg_balancer_init allocated; not `b` itself. */
void sg_balancer_fini(sg_balancer *b);

static inline bool sg_balancer_is_tried(const uint64_t *tried, size_t i)
{
    return (tried[i / 64] >> (i % 64)) & 1;
}

static inline void sg_balancer_set_tried(uint64_t *tried, size_t i)
{
    tried[i / 64] |= (uint64_t)1 << (i % 64);
}

/* nginx's `single`: exactly one server and no backup. Such a peer is never
 * marked failed and is picked whenever it is not down. */
bool sg_balancer_single(const sg_balancer *b);

/* max_conns=N reached: as many exchanges or tunnels open on it as allowed. */
static inline bool sg_balancer_full(const sg_peer *p)
{
    return p->conf->max_conns && p->active >= p->conf->max_conns;
}

/* health (issue 11): an active health check holds it unhealthy. */
static inline bool sg_balancer_unhealthy(const sg_peer *p)
{
    return atomic_load_explicit(&p->health_down, memory_order_relaxed) != 0;
}

/* Not down, not full (max_conns), not unhealthy, and not failed max_fails times within fail_timeout of the last
 * check. */
bool sg_balancer_available(const sg_peer *p, uint64_t now_ms);

/* Called on the chosen peer: once fail_timeout has passed since the last
 * check, the pick is a trial whose success will clear the failure count. */
void sg_balancer_checked(sg_peer *p, uint64_t now_ms);

/* Chooses among peers [first, first + n) of b->peers (tried bits at the
 * same indexes), or NULL when none there is usable. */
typedef sg_peer *(*sg_balancer_tier_pick)(sg_balancer *b, sg_pick_ctx *ctx, size_t first, size_t n);

/* Primary peers first, then backups, with the same method. Once a backup
 * has been tried for this request, primaries are not considered again
 * (nginx switches the request over to the backup list for good). */
sg_peer *sg_balancer_pick_tiers(sg_balancer *b, sg_pick_ctx *ctx, sg_balancer_tier_pick pick);

/* One smooth weighted round robin step (nginx's ngx_http_upstream_get_peer)
 * among the usable, untried peers [first, first + n) of b->peers; with
 * `group`, only those i whose group[i] is `want`. NULL when none is
 * usable. The caller calls sg_balancer_checked on the peer it keeps. */
sg_peer *sg_balancer_smooth_pick(sg_balancer *b, sg_pick_ctx *ctx, size_t first, size_t n,
                           const uint32_t *group, uint32_t want);

/* Smooth weighted round robin over all tiers, with nginx's single-peer
 * fast path: what least_conn and ip_hash fall back to. */
sg_peer *sg_balancer_round_robin_pick(sg_balancer *b, sg_pick_ctx *ctx);

sg_balancer *sg_balancer_round_robin_new(const sg_upstream_conf *u);
sg_balancer *sg_balancer_least_conn_new(const sg_upstream_conf *u);
sg_balancer *sg_balancer_ip_hash_new(const sg_upstream_conf *u);
sg_balancer *sg_balancer_hash_new(const sg_upstream_conf *u);   /* hash.c: SG_LB_HASH and SG_LB_HASH_CONSISTENT */
sg_balancer *sg_balancer_random_new(const sg_upstream_conf *u); /* random.c: SG_LB_RANDOM and SG_LB_RANDOM_TWO */
/* balancers (issue 11, area: balance) */
sg_balancer *sg_balancer_least_time_new(const sg_upstream_conf *u);   /* least_time.c */
/* least_time's ranking of x against y (-1: x is better), also used by
 * random two least_time=; and the time a peer is ranked by (µs). */
int sg_lt_cmp(const sg_balancer *b, const sg_peer *x, const sg_peer *y, uint64_t now_ms);
uint64_t sg_lt_time_us(const sg_balancer *b, const sg_peer *p, uint64_t now_ms);
/* Adds the sample that `mode` names to p's average. */
void sg_lt_sample(sg_peer *p, sg_lt_mode mode, const sg_peer_times *t);
/* slow_start: the weight p has now, ramping up to its weight over
 * slow_start after it recovered. */
int sg_balancer_weight(const sg_peer *p, uint64_t now_ms);
/* sticky.c: ids at init, the table at fini, and the pick of the server a
 * request names (NULL: none usable; the method picks then). */
void sg_sticky_init(sg_balancer *b);
void sg_sticky_fini(sg_balancer *b);
sg_peer *sg_sticky_pick(sg_balancer *b, sg_pick_ctx *ctx);
/* sg_balancer_available, with `drain` servers counting as available (sticky requests still reach them). */
bool sg_balancer_available_sticky(const sg_peer *p, uint64_t now_ms);

#endif
