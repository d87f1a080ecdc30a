/* ip_hash, as ngx_http_upstream_ip_hash_module.c of nginx 1.22, so a
 * client keeps reaching the peer it reached under nginx: the hash covers
 * the first three octets of an IPv4 address (a whole /24 goes to one
 * peer) or all sixteen bytes of an IPv6 one, and picks a peer in
 * proportion to the weights. When that peer is down, failed or already
 * tried, the hash is stirred again; after 20 misses round robin decides.
 *
 * nginx keeps the running hash and miss count of a request between its
 * attempts. The pick context carries only the tried bitmap, so each pick
 * replays the hash sequence from the start: the first time it meets a
 * peer already tried, that is where an earlier attempt chose it, which
 * nginx did not count as a miss. With peer states unchanged between
 * attempts this yields the same peer and the same fallback as nginx. */
#include "upstream/balancer_impl.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"

#define IPH_MAX_MISSES 20

typedef struct iph_balancer {
    sg_balancer super;
    int total_weight;       /* of all primary peers, down ones included */
    uint64_t *seen;         /* scratch bitmap, used under the lock */
} iph_balancer;

/* The bytes nginx hashes; other families (unix sockets) share nginx's
 * all-zero pseudo address, so they all go to the same peer as in nginx. */
static size_t iph_key(const struct sockaddr *sa, const uint8_t **key)
{
    static const uint8_t pseudo[3];

    if (sa->sa_family == AF_INET) {
        *key = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr.s_addr;
        return 3;
    }
    if (sa->sa_family == AF_INET6) {
        *key = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        return 16;
    }
    *key = pseudo;
    return 3;
}

static unsigned iph_stir(unsigned hash, const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < len; i++)
        hash = (hash * 113 + key[i]) % 6271;
    return hash;
}

static size_t iph_peer_at(const iph_balancer *ib, unsigned hash)
{
    int w = (int)(hash % (unsigned)ib->total_weight);
    size_t i = 0;
    /* The bound only guards against weights the loader should reject. */
    while (i + 1 < ib->super.nprimary && w >= ib->super.peers[i].conf->weight) {
        w -= ib->super.peers[i].conf->weight;
        i++;
    }
    return i;
}

/* Walks the hash sequence; returns the chosen primary index or -1 after
 * more than IPH_MAX_MISSES misses. */
static long iph_walk(iph_balancer *ib, sg_pick_ctx *ctx, const uint8_t *key, size_t len)
{
    sg_balancer *b = &ib->super;
    unsigned hash = 89;
    int misses = 0;

    memset(ib->seen, 0, sg_balancer_tried_words(b) * sizeof(uint64_t));
    for (;;) {
        hash = iph_stir(hash, key, len);
        size_t i = iph_peer_at(ib, hash);
        if (sg_balancer_is_tried(ctx->tried, i)) {
            if (!sg_balancer_is_tried(ib->seen, i)) {
                sg_balancer_set_tried(ib->seen, i);   /* an earlier attempt's choice */
                continue;
            }
        } else if (sg_balancer_available(&b->peers[i], ctx->now_ms)) {
            return (long)i;
        }
        if (++misses > IPH_MAX_MISSES)
            return -1;
    }
}

static sg_peer *iph_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    iph_balancer *ib = (iph_balancer *)b;
    const uint8_t *key;

    /* No client address is not a case nginx has; spread such requests. */
    if (b->nprimary < 2 || ib->total_weight <= 0 || ctx->client == NULL)
        return sg_balancer_round_robin_pick(b, ctx);

    size_t len = iph_key(ctx->client, &key);
    long i = iph_walk(ib, ctx, key, len);
    if (i < 0)
        return sg_balancer_round_robin_pick(b, ctx);
    sg_balancer_checked(&b->peers[i], ctx->now_ms);
    return &b->peers[i];
}

static void iph_destroy(sg_balancer *b)
{
    iph_balancer *ib = (iph_balancer *)b;
    free(ib->seen);
    sg_balancer_fini(b);
    free(ib);
}

static const sg_balancer_ops iph_ops = {
    .pick = iph_pick,
    .destroy = iph_destroy,
};

sg_balancer *sg_balancer_ip_hash_new(const sg_upstream_conf *u)
{
    iph_balancer *ib = sg_xcalloc(1, sizeof(*ib));
    sg_balancer_init(&ib->super, u, &iph_ops);
    /* Backups are a configuration error with ip_hash (nginx); were any
     * present they would only be reached through the round-robin fallback. */
    for (size_t i = 0; i < ib->super.nprimary; i++)
        ib->total_weight += ib->super.peers[i].conf->weight;
    ib->seen = sg_xcalloc(sg_balancer_tried_words(&ib->super), sizeof(uint64_t));
    return &ib->super;
}
