/* Keyed state shared by every worker thread: nginx's shared memory zones
 * as limit_req_zone and limit_conn_zone use them (one hash of keys, and
 * a least-recently-used queue), in one process.
 *
 * A zone is bounded by its SIZE as nginx spends it: each state costs
 * what nginx's slab allocator would give it (its node header plus the
 * key, rounded up to a power of two, whole pages past half a page), out
 * of the pages the size leaves after the slab's own bookkeeping. A state
 * that does not fit is not made (sg_zone_insert returns NULL): the
 * caller evicts (sg_zone_oldest, sg_zone_remove) or refuses.
 *
 * One mutex per zone: the caller holds it (sg_zone_lock) around every
 * other call. Zones are kept by name across reloads, as nginx keeps a
 * zone whose name, use and size did not change: sg_zone_get returns the
 * same one, with its states. */
#ifndef SG_CORE_ZONE_H
#define SG_CORE_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* nginx refuses a zone smaller than 8 pages. */
#define SG_ZONE_MIN_SIZE (8 * 4096)

typedef struct sg_zone sg_zone;

/* A zone's use (sg_zone_get's kind): a state's node header, as nginx's
 * modules lay theirs out, differs. */
enum {
    SG_ZONE_LIMIT_REQ = 1,             /* 80 bytes of header (rbtree node + limit_req node) */
    SG_ZONE_LIMIT_CONN,                /* 36 bytes */
    SG_ZONE_STREAM_LIMIT_CONN,         /* 36 bytes */
};

/* One key's state. The fields are the users' (limit_req: excess and
 * last; limit_conn: count); the zone keeps the links. */
typedef struct sg_zone_node {
    struct sg_zone_node *hnext;        /* hash chain */
    struct sg_zone_node *newer, *older;   /* the LRU queue */
    uint32_t hash;
    uint32_t len;
    uint32_t cost;                     /* bytes counted against the zone */
    uint32_t count;                    /* limit_req: delayed lookups in flight; limit_conn: connections */
    int64_t excess;                    /* limit_req: milli-requests above the rate */
    uint64_t last;                     /* limit_req: ms of the last accounted request (0: never) */
    unsigned char key[];
} sg_zone_node;

/* The zone named `name` for use `kind` (different uses of one name are
 * different zones here) and `size` bytes: an existing one (another
 * generation's) with that name, kind and size, or a new one. Counted:
 * sg_zone_put lets go. */
sg_zone *sg_zone_get(const char *name, int kind, uint64_t size);
void sg_zone_put(sg_zone *z);

void sg_zone_lock(sg_zone *z);
void sg_zone_unlock(sg_zone *z);

/* The state of key (len bytes, hash h), or NULL. Does not touch the LRU. */
sg_zone_node *sg_zone_find(sg_zone *z, uint32_t h, const void *key, size_t len);
/* Moves n to the head of the LRU queue (most recently used). */
void sg_zone_touch(sg_zone *z, sg_zone_node *n);
/* A new state for key, zeroed, at the head of the queue; NULL when it
 * does not fit in what is left of the zone. */
sg_zone_node *sg_zone_insert(sg_zone *z, uint32_t h, const void *key, size_t len);
void sg_zone_remove(sg_zone *z, sg_zone_node *n);
/* The least recently used state, or NULL. */
sg_zone_node *sg_zone_oldest(const sg_zone *z);

/* Accounting (for tests and logs): bytes in use and the zone's budget. */
uint64_t sg_zone_used(const sg_zone *z);
uint64_t sg_zone_capacity(const sg_zone *z);
size_t sg_zone_count(const sg_zone *z);

/* Pure: what a state with a key of len bytes costs, and what a zone of
 * `size` bytes can spend on states (nginx's slab arithmetic on 64-bit,
 * 4 KB pages). */
uint32_t sg_zone_node_cost(int kind, size_t len);
uint64_t sg_zone_budget(uint64_t size);

/* 32-bit hash of a key (FNV-1a). */
uint32_t sg_zone_hash(const void *key, size_t len);

/* nginx's leaky bucket (ngx_http_limit_req_module), in milli-requests:
 * the excess after `ms` ms at `rate` milli-requests per second, plus one
 * request; never below 0. ms is clamped as nginx clamps a clock that
 * went back (below -60 s: 1, else below 0: 0). */
int64_t sg_leaky_excess(int64_t excess, uint64_t rate, int64_t ms);

#endif
