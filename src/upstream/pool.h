/* Per-generation runtime of an upstream: the shared balancer and one pool
 * of idle keep-alive connections per worker thread (only the owning thread
 * touches its pool, so pooling takes no lock). */
#ifndef SG_UPSTREAM_POOL_H
#define SG_UPSTREAM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"
#include "upstream/balancer.h"

typedef struct sg_pool_node sg_pool_node;
struct sg_pool_node {
    sg_pool_node *next, **pprev;
    sg_peer *peer;
    void (*close)(sg_pool_node *n);   /* close an idle connection (pool retired) */
};

typedef struct sg_pool {
    sg_pool_node *idle;                /* most recently used first */
    size_t nidle;
    size_t max_idle;                   /* upstream `keepalive` */
    bool retired;                      /* its generation is no longer current */
} sg_pool;

typedef struct sg_upstream_rt {
    const sg_upstream_conf *conf;
    sg_balancer *balancer;
    int nworkers;
    sg_pool pools[];
} sg_upstream_rt;

sg_upstream_rt *sg_upstream_rt_new(const sg_upstream_conf *u, int nworkers);
void sg_upstream_rt_free(sg_upstream_rt *rt);

/* Takes an idle connection to `peer` (most recent first), NULL if none. */
sg_pool_node *sg_pool_take(sg_pool *p, const sg_peer *peer);
/* Parks n; false if the pool is full or retired (the caller closes it). */
bool sg_pool_put(sg_pool *p, sg_pool_node *n);
void sg_pool_remove(sg_pool *p, sg_pool_node *n);
/* Closes every idle connection and refuses new ones (generation retired). */
void sg_pool_retire(sg_pool *p);

#endif
