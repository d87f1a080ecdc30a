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

typedef struct sg_pool sg_pool;
struct sg_pool {
    sg_pool_node *idle;                /* most recently used first */
    size_t nidle;
    size_t max_idle;                   /* upstream `keepalive` */
    bool retired;                      /* its generation is no longer current */
    /* This worker's HTTP/2 connections (upstream/h2_pool.h), made on first
     * use; sg_pool_retire() retires them through h2_retire. The h2 pool
     * frees itself (and clears h2) once retired and empty, which happens
     * before the runtime is freed: each of its connections holds the
     * generation until it is closed. */
    void *h2;
    void (*h2_retire)(sg_pool *p);
};

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
typedef enum sg_pool_put_result {
    SG_POOL_REFUSED = 0,               /* retired or pooling off: close it */
    SG_POOL_KEPT,                      /* within `keepalive`: keep for keepalive_timeout */
    SG_POOL_SURPLUS,                   /* beyond `keepalive`: keep only briefly */
} sg_pool_put_result;

/* How long a connection beyond `keepalive` stays idle before it closes.
 * Closing it at once (nginx) makes a load with more concurrent requests
 * than `keepalive` open and close upstream connections all the time,
 * filling the machine with TIME_WAIT (seed 004); kept briefly, it is
 * reused while the load lasts and goes away soon after. */
#define SG_POOL_SURPLUS_MS 1000

/* Parks n (most recently used first). */
sg_pool_put_result sg_pool_put(sg_pool *p, sg_pool_node *n);
void sg_pool_remove(sg_pool *p, sg_pool_node *n);
/* Closes every idle connection and refuses new ones (generation retired). */
void sg_pool_retire(sg_pool *p);

#endif
