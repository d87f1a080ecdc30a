/* hash KEY [consistent], as ngx_stream_upstream_hash_module.c of nginx
 * 1.22, so a key keeps reaching the peer it reached under nginx.
 *
 * Plain hash (Cache::Memcached compatible): step n adds
 * (crc32([n] KEY) >> 16) & 0x7fff to a running sum (n written in decimal,
 * omitted at step 0); the sum modulo the total weight picks a primary
 * peer in proportion to the weights, down ones included. A peer that is
 * down, failed or already tried costs a step; after 20 misses round robin
 * decides.
 *
 * Consistent hash (ketama, Cache::Memcached::Fast compatible): each peer
 * puts weight * 160 points on a ring, point j being crc32(HOST \0 PORT
 * PREV) where PREV is point j-1 (four little-endian bytes, zero for the
 * first) and HOST:PORT the server as written. A key goes to the first
 * point >= crc32(KEY); when that server cannot be used, the next point;
 * after 20 misses round robin. Removing a server moves only its keys.
 *
 * Both fall back to round robin for a lone server or an empty key, as
 * nginx does. nginx keeps the walk's position between a session's
 * attempts; the pick context carries only the tried bitmap, so each pick
 * replays the walk from the start (see ip_hash.c for why this gives
 * nginx's choices when peer states did not change in between). */
#include "upstream/balancer_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"

#define HASH_MAX_MISSES 20
#define CHASH_POINTS_PER_WEIGHT 160

typedef struct chash_point {
    uint32_t hash;
    uint32_t server;            /* index of the first primary peer with this name */
    uint32_t order;             /* creation order: ties keep it (a stable sort) */
} chash_point;

typedef struct hash_balancer {
    sg_balancer super;
    bool consistent;
    int total_weight;           /* of all primary peers, down ones included */
    uint32_t *server_of;        /* per primary peer: its server (same name = same server) */
    chash_point *points;        /* sorted, unique hashes */
    size_t npoints;
    uint64_t *seen;             /* scratch bitmap, used under the lock */
} hash_balancer;

/* ---------------- crc32 (ngx_crc32: IEEE 802.3, reflected) ---------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
        crc_table[i] = c;
    }
}

#define CRC_INIT 0xffffffffu

static uint32_t crc_update(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

static uint32_t crc_final(uint32_t crc)
{
    return crc ^ 0xffffffffu;
}

/* ---------------- plain hash ---------------- */

static uint32_t hash_step(unsigned rehash, const char *key, size_t len)
{
    uint32_t crc = CRC_INIT;
    if (rehash > 0) {
        char buf[16];
        int n = snprintf(buf, sizeof(buf), "%u", rehash);
        crc = crc_update(crc, buf, (size_t)n);
    }
    crc = crc_final(crc_update(crc, key, len));
    return (crc >> 16) & 0x7fff;
}

static size_t hash_peer_at(const hash_balancer *hb, uint32_t sum)
{
    int w = (int)(sum % (uint32_t)hb->total_weight);
    size_t i = 0;
    /* The bound only guards against weights the loader should reject. */
    while (i + 1 < hb->super.nprimary && w >= hb->super.peers[i].conf->weight) {
        w -= hb->super.peers[i].conf->weight;
        i++;
    }
    return i;
}

/* The chosen primary index, or -1 after more than HASH_MAX_MISSES misses. */
static long hash_walk(hash_balancer *hb, sg_pick_ctx *ctx)
{
    sg_balancer *b = &hb->super;
    uint32_t sum = 0;
    int misses = 0;

    memset(hb->seen, 0, sg_balancer_tried_words(b) * sizeof(uint64_t));
    for (unsigned rehash = 0;; rehash++) {
        sum += hash_step(rehash, ctx->key, ctx->key_len);
        size_t i = hash_peer_at(hb, sum);
        if (sg_balancer_is_tried(ctx->tried, i)) {
            if (!sg_balancer_is_tried(hb->seen, i)) {
                sg_balancer_set_tried(hb->seen, i);   /* an earlier attempt's choice */
                continue;
            }
        } else if (sg_balancer_available(&b->peers[i], ctx->now_ms)) {
            return (long)i;
        }
        if (++misses > HASH_MAX_MISSES)
            return -1;
    }
}

/* ---------------- consistent hash ---------------- */

static int point_cmp(const void *a, const void *b)
{
    const chash_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

/* crc32 state after HOST \0 PORT of a server name as written ("10.0.0.1:80"). */
static uint32_t server_base(const char *name)
{
    size_t len = strlen(name), hostlen = len, portlen = 0;
    for (size_t j = 0; j < len; j++) {
        char c = name[len - j - 1];
        if (c == ':') {
            hostlen = len - j - 1;
            portlen = j;
            break;
        }
        if (c < '0' || c > '9')
            break;
    }
    uint32_t crc = crc_update(CRC_INIT, name, hostlen);
    crc = crc_update(crc, "", 1);
    return crc_update(crc, name + len - portlen, portlen);
}

static void chash_add_points(hash_balancer *hb, size_t peer)
{
    const sg_upstream_server_conf *s = hb->super.peers[peer].conf;
    uint32_t base = server_base(s->name ? s->name : "");
    uint8_t prev[4] = { 0, 0, 0, 0 };
    for (int j = 0; j < s->weight * CHASH_POINTS_PER_WEIGHT; j++) {
        uint32_t h = crc_final(crc_update(base, prev, 4));
        hb->points[hb->npoints] = (chash_point){ h, hb->server_of[peer], (uint32_t)hb->npoints };
        hb->npoints++;
        prev[0] = (uint8_t)h;
        prev[1] = (uint8_t)(h >> 8);
        prev[2] = (uint8_t)(h >> 16);
        prev[3] = (uint8_t)(h >> 24);
    }
}

static void chash_build(hash_balancer *hb)
{
    size_t n = (size_t)hb->total_weight * CHASH_POINTS_PER_WEIGHT;
    hb->points = sg_xcalloc(n ? n : 1, sizeof(chash_point));
    for (size_t i = 0; i < hb->super.nprimary; i++)
        chash_add_points(hb, i);
    qsort(hb->points, hb->npoints, sizeof(chash_point), point_cmp);
    size_t u = 0;
    for (size_t j = 1; j < hb->npoints; j++)     /* one point per hash: the first made */
        if (hb->points[u].hash != hb->points[j].hash)
            hb->points[++u] = hb->points[j];
    if (hb->npoints)
        hb->npoints = u + 1;
}

/* First point >= hash (npoints when none: the walk wraps around). */
static size_t chash_find(const hash_balancer *hb, uint32_t hash)
{
    size_t i = 0, j = hb->npoints;
    while (i < j) {
        size_t k = (i + j) / 2;
        if (hash > hb->points[k].hash)
            i = k + 1;
        else if (hash < hb->points[k].hash)
            j = k;
        else
            return k;
    }
    return i;
}

/* Smooth weighted round robin among the usable peers of one server (a
 * name that resolved to several addresses), or NULL. */
static sg_peer *chash_server_pick(hash_balancer *hb, sg_pick_ctx *ctx, uint32_t server)
{
    return sg_balancer_smooth_pick(&hb->super, ctx, 0, hb->super.nprimary, hb->server_of, server);
}

static sg_peer *chash_walk(hash_balancer *hb, sg_pick_ctx *ctx)
{
    if (hb->npoints == 0)
        return NULL;
    uint32_t hash = crc_final(crc_update(CRC_INIT, ctx->key, ctx->key_len));
    size_t at = chash_find(hb, hash);
    for (int misses = 0; misses <= HASH_MAX_MISSES; misses++, at++) {
        sg_peer *p = chash_server_pick(hb, ctx, hb->points[at % hb->npoints].server);
        if (p)
            return p;
    }
    return NULL;
}

/* ---------------- the balancer ---------------- */

static sg_peer *hash_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    hash_balancer *hb = (hash_balancer *)b;
    sg_peer *p = NULL;

    if (sg_balancer_single(b) || ctx->key_len == 0 || hb->total_weight <= 0 || b->nprimary == 0)
        return sg_balancer_round_robin_pick(b, ctx);
    if (hb->consistent) {
        p = chash_walk(hb, ctx);
    } else {
        long i = hash_walk(hb, ctx);
        p = i < 0 ? NULL : &b->peers[i];
    }
    if (p == NULL)
        return sg_balancer_round_robin_pick(b, ctx);
    sg_balancer_checked(p, ctx->now_ms);
    return p;
}

static void hash_destroy(sg_balancer *b)
{
    hash_balancer *hb = (hash_balancer *)b;
    free(hb->points);
    free(hb->server_of);
    free(hb->seen);
    sg_balancer_fini(b);
    free(hb);
}

static const sg_balancer_ops hash_ops = {
    .pick = hash_pick,
    .destroy = hash_destroy,
};

sg_balancer *sg_balancer_hash_new(const sg_upstream_conf *u)
{
    pthread_once(&crc_once, crc_init_table);
    hash_balancer *hb = sg_xcalloc(1, sizeof(*hb));
    sg_balancer_init(&hb->super, u, &hash_ops);
    hb->consistent = u->lb == SG_LB_HASH_CONSISTENT;
    size_t np = hb->super.nprimary;
    hb->server_of = sg_xcalloc(np ? np : 1, sizeof(uint32_t));
    for (size_t i = 0; i < np; i++) {
        const char *name = hb->super.peers[i].conf->name;
        size_t first = i;
        for (size_t j = 0; j < i && first == i; j++)
            if (name && hb->super.peers[j].conf->name && strcmp(name, hb->super.peers[j].conf->name) == 0)
                first = j;
        hb->server_of[i] = (uint32_t)first;
        hb->total_weight += hb->super.peers[i].conf->weight;
    }
    hb->seen = sg_xcalloc(sg_balancer_tried_words(&hb->super), sizeof(uint64_t));
    if (hb->consistent)
        chash_build(hb);
    return &hb->super;
}
