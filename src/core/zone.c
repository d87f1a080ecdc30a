/* Keyed state shared by the worker threads (core/zone.h). */
#include "core/zone.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"

#define PAGE 4096u

struct sg_zone {
    sg_zone *next;                     /* the process's zones */
    int refs;                          /* under registry_lock */
    char *name;
    int kind;
    uint64_t size;
    pthread_mutex_t mu;
    sg_zone_node **buckets;
    size_t mask;                       /* buckets - 1 */
    sg_zone_node *newest, *oldest;
    uint64_t used, budget;
    size_t count;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static sg_zone *registry;

static size_t header_of(int kind)
{
    /* offsetof(ngx_rbtree_node_t, color) + offsetof(node, data) */
    return kind == SG_ZONE_LIMIT_REQ ? 80 : 36;
}

uint32_t sg_zone_node_cost(int kind, size_t len)
{
    size_t n = header_of(kind) + len;
    if (n > PAGE / 2) return (uint32_t)((n + PAGE - 1) / PAGE * PAGE);   /* whole pages */
    size_t c = 8;
    while (c < n) c <<= 1;
    return (uint32_t)c;
}

/* nginx's slab pool: a header, its slots and stats, then one page
 * descriptor (24 bytes) per 4 KB page; the module's own context takes
 * the first page. */
uint64_t sg_zone_budget(uint64_t size)
{
    if (size < 1024 + 2 * (PAGE + 24)) return 0;
    uint64_t pages = (size - 1024) / (PAGE + 24);
    return (pages - 1) * PAGE;
}

uint32_t sg_zone_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

int64_t sg_leaky_excess(int64_t excess, uint64_t rate, int64_t ms)
{
    if (ms < -60000) ms = 1;
    else if (ms < 0) ms = 0;
    uint64_t drained = rate && (uint64_t)ms > (uint64_t)INT64_MAX / rate ? (uint64_t)INT64_MAX
                                                                          : rate * (uint64_t)ms / 1000;
    if (excess < 0) excess = 0;
    if (drained >= (uint64_t)excess + 1000) return 0;
    return excess + 1000 - (int64_t)drained;
}

sg_zone *sg_zone_get(const char *name, int kind, uint64_t size)
{
    pthread_mutex_lock(&registry_lock);
    for (sg_zone *z = registry; z; z = z->next) {
        if (z->kind == kind && z->size == size && strcmp(z->name, name) == 0) {
            z->refs++;
            pthread_mutex_unlock(&registry_lock);
            return z;
        }
    }
    sg_zone *z = sg_xcalloc(1, sizeof(*z));
    z->name = sg_xmalloc(strlen(name) + 1);
    memcpy(z->name, name, strlen(name) + 1);
    z->kind = kind;
    z->size = size;
    z->refs = 1;
    z->budget = sg_zone_budget(size);
    z->buckets = sg_xcalloc(64, sizeof(*z->buckets));   /* doubled as states come (grow()) */
    z->mask = 63;
    pthread_mutex_init(&z->mu, NULL);
    z->next = registry;
    registry = z;
    pthread_mutex_unlock(&registry_lock);
    return z;
}

void sg_zone_put(sg_zone *z)
{
    if (!z) return;
    pthread_mutex_lock(&registry_lock);
    if (--z->refs > 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (sg_zone **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == z) {
            *pp = z->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    for (sg_zone_node *n = z->newest, *next; n; n = next) {
        next = n->older;
        free(n);
    }
    pthread_mutex_destroy(&z->mu);
    free(z->buckets);
    free(z->name);
    free(z);
}

void sg_zone_lock(sg_zone *z) { pthread_mutex_lock(&z->mu); }
void sg_zone_unlock(sg_zone *z) { pthread_mutex_unlock(&z->mu); }

sg_zone_node *sg_zone_find(sg_zone *z, uint32_t h, const void *key, size_t len)
{
    for (sg_zone_node *n = z->buckets[h & z->mask]; n; n = n->hnext)
        if (n->hash == h && n->len == len && memcmp(n->key, key, len) == 0) return n;
    return NULL;
}

static void lru_unlink(sg_zone *z, sg_zone_node *n)
{
    if (n->newer) n->newer->older = n->older;
    else z->newest = n->older;
    if (n->older) n->older->newer = n->newer;
    else z->oldest = n->newer;
    n->newer = n->older = NULL;
}

static void lru_push(sg_zone *z, sg_zone_node *n)
{
    n->newer = NULL;
    n->older = z->newest;
    if (z->newest) z->newest->newer = n;
    z->newest = n;
    if (!z->oldest) z->oldest = n;
}

void sg_zone_touch(sg_zone *z, sg_zone_node *n)
{
    if (z->newest == n) return;
    lru_unlink(z, n);
    lru_push(z, n);
}

/* One bucket per state at most: the table doubles when the states
 * outnumber its buckets (a large zone costs memory only as it fills). */
static void grow(sg_zone *z)
{
    size_t nb = (z->mask + 1) * 2;
    sg_zone_node **b = sg_xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i <= z->mask; i++) {
        for (sg_zone_node *n = z->buckets[i], *next; n; n = next) {
            next = n->hnext;
            n->hnext = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(z->buckets);
    z->buckets = b;
    z->mask = nb - 1;
}

sg_zone_node *sg_zone_insert(sg_zone *z, uint32_t h, const void *key, size_t len)
{
    uint32_t cost = sg_zone_node_cost(z->kind, len);
    if (z->used + cost > z->budget) return NULL;
    if (z->count >= z->mask + 1) grow(z);
    sg_zone_node *n = sg_xcalloc(1, sizeof(*n) + len);
    n->hash = h;
    n->len = (uint32_t)len;
    n->cost = cost;
    memcpy(n->key, key, len);
    n->hnext = z->buckets[h & z->mask];
    z->buckets[h & z->mask] = n;
    lru_push(z, n);
    z->used += cost;
    z->count++;
    return n;
}

void sg_zone_remove(sg_zone *z, sg_zone_node *n)
{
    for (sg_zone_node **pp = &z->buckets[n->hash & z->mask]; *pp; pp = &(*pp)->hnext) {
        if (*pp == n) {
            *pp = n->hnext;
            break;
        }
    }
    lru_unlink(z, n);
    z->used -= n->cost;
    z->count--;
    free(n);
}

sg_zone_node *sg_zone_oldest(const sg_zone *z) { return z->oldest; }
uint64_t sg_zone_used(const sg_zone *z) { return z->used; }
uint64_t sg_zone_capacity(const sg_zone *z) { return z->budget; }
size_t sg_zone_count(const sg_zone *z) { return z->count; }
