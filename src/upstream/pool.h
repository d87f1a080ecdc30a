/* Per-generation runtime of an upstream: the shared balancer and one pool
 * of idle keep-alive connections per worker thread (only the owning thread
 * touches its pool, so pooling takes no lock). */
#ifndef SG_UPSTREAM_POOL_H
#define SG_UPSTREAM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"
#include "core/list.h"
#include "net/tls.h"
#include "upstream/balancer.h"


/* What a connection to a peer was made for, besides the peer: its TLS
 * client context (NULL: cleartext) and the name it sent as SNI and had
 * the certificate verified against (empty when neither was done). A
 * plain and a TLS location may share one upstream{} block, and
 * proxy_ssl_name may differ per request ($host): a pooled connection, or
 * a kept session (resuming skips verification), only serves an exchange
 * wanting the same. */
typedef struct sg_tls_key {
    const struct ssl_ctx_st *ctx;
    sg_str name;
} sg_tls_key;

bool sg_tls_key_eq(const sg_tls_key *a, const sg_tls_key *b);

typedef struct sg_pool_node sg_pool_node;
struct sg_pool_node {
    sg_list_node link;                /* in the pool's idle list while parked */
    sg_peer *peer;
    sg_tls_key tls;                   /* its name is the connection's to keep */
    void (*close)(sg_pool_node *n);   /* close an idle connection (pool retired) */
};

typedef struct sg_pool_session sg_pool_session;

typedef struct sg_pool sg_pool;
struct sg_pool {
    sg_list idle;                      /* sg_pool_node, most recently used first */
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
    /* proxy_ssl_session_reuse: the last TLS session of each peer and TLS
     * key, offered by the next connection (as nginx does). */
    sg_pool_session *sessions;
};

typedef struct sg_upstream_rt {
    const sg_upstream_conf *conf;
    /* The current balancer. With `resolve` servers, upstream/resolve.c
     * replaces it when the addresses change (read it with
     * sg_upstream_balancer); the ones it replaced stay in `dns` until
     * the runtime goes, for the attempts and connections still on them. */
    sg_balancer *balancer;
    void *dns;                         /* dns: upstream/resolve.c's state, NULL without `resolve` */
    int nworkers;
    sg_pool pools[];
} sg_upstream_rt;

/* The balancer new attempts pick from (another thread may replace it). */
static inline sg_balancer *sg_upstream_balancer(const sg_upstream_rt *rt)
{
    return __atomic_load_n(&rt->balancer, __ATOMIC_ACQUIRE);
}

sg_upstream_rt *sg_upstream_rt_new(const sg_upstream_conf *u, int nworkers);
void sg_upstream_rt_free(sg_upstream_rt *rt);

/* Takes an idle connection to `peer` made for `tls` ({0}: cleartext),
 * most recent first; NULL if none. */
sg_pool_node *sg_pool_take(sg_pool *p, const sg_peer *peer, const sg_tls_key *tls);
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
/* Closes every idle connection and refuses new ones (generation retired);
 * forgets the kept TLS sessions. */
void sg_pool_retire(sg_pool *p);

/* ---- upstream TLS (proxy_pass https://, grpc_pass grpcs://) ---- */

/* A copy of the key whose name the caller frees (sg_tls_key_free). */
sg_tls_key sg_tls_key_dup(const sg_tls_key *k);
void sg_tls_key_free(sg_tls_key *k);

/* The client side of a TLS connection on socket fd (connected or being
 * connected) to `peer`, for a location with upstream TLS settings u and
 * key k: SNI k->name when u->server_name is on, the certificate checked
 * against it when u->verify is on, and the session kept for this peer and
 * key offered when u->session_reuse is on. NULL if it cannot be made
 * (logged). */
sg_tls_conn *sg_pool_tls_new(sg_pool *p, sg_peer *peer, const sg_ssl_upstream_conf *u, const sg_tls_key *k,
                             int fd);

/* Keeps the session of an established connection made by
 * sg_pool_tls_new (when u->session_reuse is on), replacing the one kept
 * for the peer and key. False if it is not resumable (yet: a TLS 1.3
 * ticket comes after the handshake) and reuse is on: ask again later. */
bool sg_pool_tls_keep_session(sg_pool *p, sg_peer *peer, const sg_ssl_upstream_conf *u, const sg_tls_key *k,
                              sg_tls_conn *tls);
/* The handshake failed: a session kept for this peer and key is not
 * offered again. */
void sg_pool_tls_forget_session(sg_pool *p, const sg_peer *peer, const sg_tls_key *k);

#endif
