/* Per-worker pools of multiplexed HTTP/2 upstream connections.
 *
 * Each worker's sg_pool (upstream/pool.h) gets, on first use, an h2 pool:
 * that worker's HTTP/2 connections to the upstream's peers. A new stream
 * goes to a connection to its peer made for the same TLS key (context and
 * name; cleartext ones have none), with a free stream slot (fewer streams
 * than the peer's SETTINGS_MAX_CONCURRENT_STREAMS, assumed to be
 * SG_H2_ASSUMED_STREAMS until its SETTINGS arrive). Busy connections are
 * preferred to idle ones, and among idle ones the most recently used, so
 * load packs onto few connections and the others age out. Without a free
 * slot the caller opens a new connection and adds it here.
 *
 * A connection left without streams is idle: kept for the upstream's
 * keepalive_timeout while the worker has fewer than `keepalive` idle ones,
 * beyond that for SG_POOL_SURPLUS_MS only. With `keepalive 0` one idle
 * connection per peer (and context) is still kept: with multiplexing one connection
 * serves every request, and closing it would make each lull cost a
 * handshake.
 *
 * Retiring the sg_pool (its generation is no longer current) retires the
 * h2 pool: members are told to close once they carry no exchange, none is
 * kept idle any more, and the pool frees itself (clearing sg_pool.h2) when
 * its last member leaves. Each connection holds its generation while it
 * exists (h2_client.c), so the runtime outlives every member.
 *
 * Pure bookkeeping: no sockets, no nghttp2 (http/h2_client.c owns those). */
#ifndef SG_UPSTREAM_H2_POOL_H
#define SG_UPSTREAM_H2_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include "upstream/pool.h"

#define SG_H2_ASSUMED_STREAMS 100   /* until the peer's SETTINGS say otherwise */
/* A peer may allow more (or not limit at all); more streams on one TCP
 * connection only add head-of-line blocking, and the connection's receive
 * window is sized for this many stalled streams (see h2_client.c). */
#define SG_H2_MAX_STREAMS 256

typedef struct sg_h2_pool sg_h2_pool;
typedef struct sg_h2_member sg_h2_member;

/* Embedded in a connection. */
struct sg_h2_member {
    sg_h2_member *next, **pprev;    /* in the pool, oldest first */
    sg_h2_pool *pool;
    sg_peer *peer;
    sg_tls_key tls;                 /* made for this (upstream/pool.h); the name is the connection's */
    uint32_t streams;               /* placed on it and not closed yet */
    uint32_t max_streams;
    uint64_t idle_seq;              /* when it went idle (pool order), 0 while busy */
    bool closing;                   /* takes no new stream (GOAWAY, error, retired) */
    /* The pool's generation was retired: close now if no exchange uses the
     * connection, else once the last one is done. */
    void (*retire)(sg_h2_member *m);
};

typedef enum sg_h2_idle {
    SG_H2_CLOSE = 0,                /* not to be kept: close it */
    SG_H2_KEEP,                     /* keep for keepalive_timeout */
    SG_H2_KEEP_BRIEFLY,             /* beyond `keepalive`: SG_POOL_SURPLUS_MS */
} sg_h2_idle;

/* The h2 pool of one worker's sg_pool, created on first use. */
sg_h2_pool *sg_h2_pool_of(sg_pool *p, const sg_upstream_conf *u);
bool sg_h2_pool_retired(const sg_h2_pool *hp);

/* A connection to `peer` made for `tls`, with a free stream slot, not
 * `avoid`; NULL if none. */
sg_h2_member *sg_h2_pool_pick(sg_h2_pool *hp, const sg_peer *peer, const sg_tls_key *tls,
                              const sg_h2_member *avoid);

/* `tls` is copied as it is: its name must live as long as m. */
void sg_h2_pool_add(sg_h2_pool *hp, sg_h2_member *m, sg_peer *peer, const sg_tls_key *tls);
/* The peer's SETTINGS_MAX_CONCURRENT_STREAMS (capped at SG_H2_MAX_STREAMS). */
void sg_h2_pool_set_max(sg_h2_member *m, uint32_t peer_max);
void sg_h2_pool_stream_open(sg_h2_member *m);
void sg_h2_pool_stream_close(sg_h2_member *m);
/* m has no stream left: it becomes idle; how long to keep it. */
sg_h2_idle sg_h2_pool_idle(sg_h2_member *m);
/* The connection closes. May free the pool (retired and now empty). */
void sg_h2_pool_leave(sg_h2_member *m);

#endif
