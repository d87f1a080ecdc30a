/* sticky cookie / route / learn, as nginx documents them: a request that
 * names a server (by the id in its cookie, by a route, or by a session
 * learned from an earlier response) goes to that server while it is
 * usable; otherwise the upstream's method picks, and the client is told
 * (cookie) or the session learned (learn) anew.
 *
 * A server's id is its route= when it has one, else the MD5 of its name
 * ("127.0.0.1:8081") in hex, as nginx's: the same server has the same id
 * in every upstream and after a reload. Sticky is not a method of its
 * own: it runs before whichever method the upstream has, under the same
 * lock, and uses that method's notion of a usable server (down, failed,
 * max_conns), except that a `drain` server still takes sticky requests.
 * A backup server named by a request is used only when no primary is
 * usable, as a backup is used at all.
 *
 * Learned sessions live with the balancer, shared by all worker threads
 * (nginx keeps them in the zone= shared memory); a session unused for
 * timeout= is forgotten. The table is bounded: past SG_STICKY_MAX
 * sessions, the least recently used one goes. */
#include "upstream/balancer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "core/str.h"

#define SG_STICKY_MAX 65536

typedef struct sticky_entry {
    struct sticky_entry *next;          /* hash chain */
    struct sticky_entry *lru_prev, *lru_next;
    uint64_t used_ms;
    int peer;                           /* index in b->peers */
    size_t len;
    char key[];
} sticky_entry;

typedef struct sg_sticky_table {
    sticky_entry **buckets;
    size_t nbuckets, count;
    sticky_entry *lru_head, *lru_tail;  /* head: most recently used */
    uint64_t timeout_ms;
} sg_sticky_table;

static void md5_hex(const char *s, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(s, strlen(s), md, &n, EVP_md5(), NULL) != 1 || n != 16) n = 0;
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

void sg_sticky_init(sg_balancer *b)
{
    const sg_sticky_conf *st = b->conf->sticky;
    if (!st) return;
    for (size_t i = 0; i < b->nprimary + b->nbackup; i++) {
        sg_peer *p = &b->peers[i];
        if (p->conf->route)
            snprintf(p->sticky_id, sizeof(p->sticky_id), "%s", p->conf->route);
        else if (st->kind == SG_STICKY_COOKIE)
            md5_hex(p->conf->name ? p->conf->name : "", p->sticky_id);
        /* sticky route: a server without route= is never named */
    }
    if (st->kind == SG_STICKY_LEARN) {
        sg_sticky_table *t = sg_xcalloc(1, sizeof(*t));
        t->nbuckets = 1024;
        t->buckets = sg_xcalloc(t->nbuckets, sizeof(*t->buckets));
        t->timeout_ms = st->timeout_ms;
        b->learned = t;
    }
}

void sg_sticky_fini(sg_balancer *b)
{
    sg_sticky_table *t = b->learned;
    if (!t) return;
    for (sticky_entry *e = t->lru_head, *next; e; e = next) {
        next = e->lru_next;
        free(e);
    }
    free(t->buckets);
    free(t);
    b->learned = NULL;
}

static size_t key_hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return (size_t)h;
}

static void lru_unlink(sg_sticky_table *t, sticky_entry *e)
{
    if (e->lru_prev) e->lru_prev->lru_next = e->lru_next;
    else t->lru_head = e->lru_next;
    if (e->lru_next) e->lru_next->lru_prev = e->lru_prev;
    else t->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_front(sg_sticky_table *t, sticky_entry *e)
{
    e->lru_next = t->lru_head;
    e->lru_prev = NULL;
    if (t->lru_head) t->lru_head->lru_prev = e;
    t->lru_head = e;
    if (!t->lru_tail) t->lru_tail = e;
}

static void entry_remove(sg_sticky_table *t, sticky_entry *e)
{
    sticky_entry **pp = &t->buckets[key_hash(e->key, e->len) % t->nbuckets];
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    lru_unlink(t, e);
    t->count--;
    free(e);
}

/* Forgets the sessions unused for timeout (the oldest are at the tail). */
static void expire(sg_sticky_table *t, uint64_t now_ms)
{
    while (t->lru_tail && (int64_t)(now_ms - t->lru_tail->used_ms) > (int64_t)t->timeout_ms)
        entry_remove(t, t->lru_tail);
}

static sticky_entry *find(sg_sticky_table *t, const char *key, size_t len)
{
    for (sticky_entry *e = t->buckets[key_hash(key, len) % t->nbuckets]; e; e = e->next)
        if (e->len == len && memcmp(e->key, key, len) == 0) return e;
    return NULL;
}

void sg_balancer_learn(sg_balancer *b, sg_peer *p, const char *key, size_t len, uint64_t now_ms)
{
    sg_sticky_table *t = b->learned;
    if (!t || !len) return;
    /* dns: a peer of a set replaced since the pick has no index here; the
     * session is learned from the client's next response instead */
    if (p->owner && p->owner != b) return;
    pthread_spin_lock(&b->lock);
    expire(t, now_ms);
    sticky_entry *e = find(t, key, len);
    if (!e) {
        if (t->count >= SG_STICKY_MAX) entry_remove(t, t->lru_tail);
        e = sg_xcalloc(1, sizeof(*e) + len);
        memcpy(e->key, key, len);
        e->len = len;
        size_t h = key_hash(key, len) % t->nbuckets;
        e->next = t->buckets[h];
        t->buckets[h] = e;
        t->count++;
    } else {
        lru_unlink(t, e);
    }
    e->peer = (int)(p - b->peers);
    e->used_ms = now_ms;
    lru_front(t, e);
    pthread_spin_unlock(&b->lock);
}

static bool usable(sg_balancer *b, sg_pick_ctx *ctx, size_t i)
{
    return !sg_balancer_is_tried(ctx->tried, i) && sg_balancer_available_sticky(&b->peers[i], ctx->now_ms);
}

static bool any_primary_usable(sg_balancer *b, sg_pick_ctx *ctx)
{
    for (size_t i = 0; i < b->nprimary; i++)
        if (!b->peers[i].conf->drain && usable(b, ctx, i)) return true;
    return false;
}

static sg_peer *take(sg_balancer *b, sg_pick_ctx *ctx, size_t i)
{
    if (!usable(b, ctx, i)) return NULL;
    if (i >= b->nprimary && any_primary_usable(b, ctx)) return NULL;
    sg_peer *p = &b->peers[i];
    sg_balancer_checked(p, ctx->now_ms);
    return p;
}

sg_peer *sg_sticky_pick(sg_balancer *b, sg_pick_ctx *ctx)
{
    if (b->learned) {
        sticky_entry *e = find(b->learned, ctx->sticky, ctx->sticky_len);
        if (!e) return NULL;
        if ((int64_t)(ctx->now_ms - e->used_ms) > (int64_t)b->learned->timeout_ms) {
            entry_remove(b->learned, e);
            return NULL;
        }
        e->used_ms = ctx->now_ms;
        lru_unlink(b->learned, e);
        lru_front(b->learned, e);
        return take(b, ctx, (size_t)e->peer);
    }
    if (ctx->sticky_len >= sizeof(b->peers[0].sticky_id)) return NULL;
    /* Primaries first: a backup with the same id is used only without them. */
    for (size_t i = 0; i < b->nprimary + b->nbackup; i++) {
        const sg_peer *p = &b->peers[i];
        if (p->sticky_id[0] && strlen(p->sticky_id) == ctx->sticky_len &&
            memcmp(p->sticky_id, ctx->sticky, ctx->sticky_len) == 0) {
            sg_peer *got = take(b, ctx, i);
            if (got) return got;
        }
    }
    return NULL;
}
