/* Load balancing: which peer of an upstream gets the next attempt.
 *
 * One balancer per upstream per configuration generation, shared by all
 * worker threads, as nginx's upstream `zone` shares state between workers:
 * the order users see (A B A B, B A B for weights 1:2) and failure marking
 * stay exact however many threads run. A pick is a few hundred nanoseconds
 * under a per-upstream spinlock, far below the cost of the system calls
 * around it, so it does not contend in practice. A balancer is an interface
 * with one implementation per file (round_robin.c, least_conn.c,
 * ip_hash.c), each embedding sg_balancer as `super`, in the style of h2o's
 * lib/common/balancer.
 *
 * Failure accounting follows ngx_http_upstream_round_robin.c: a peer with
 * max_fails > 0 that failed max_fails times within fail_timeout is skipped
 * until fail_timeout has passed since its last failure; then it gets one
 * trial request, and a success resets its count. Backup peers are used only
 * when no primary peer can be chosen. */
#ifndef SG_UPSTREAM_BALANCER_H
#define SG_UPSTREAM_BALANCER_H

#include <stdint.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/socket.h>
#include "conf/conf.h"

typedef struct sg_peer {
    const sg_upstream_server_conf *conf;
    int index;                  /* position in the upstream's server list */
    int current_weight;         /* smooth weighted round robin state */
    int effective_weight;
    unsigned active;            /* exchanges currently using it (least_conn) */
    unsigned fails;             /* failures within the current fail_timeout window */
    uint64_t checked_ms;        /* when it was last picked while failing (nginx "checked") */
    uint64_t accessed_ms;       /* time of the last failure */
    /* balancers (issue 11, area: balance) */
    uint64_t lt_avg_us;         /* least_time: EWMA of the measured time (0: no sample yet) */
    uint64_t picked_ms;         /* when it was last picked */
    uint64_t busy_since_ms;     /* least_time inflight: since when its open requests got no answer */
    uint64_t recovered_ms;      /* slow_start: when it came back after failing (0: never failed) */
    char sticky_id[40];         /* sticky: its route=, else the MD5 of its name in hex (sticky.c) */
    /* health (issue 11): how many active health checks (upstream/health.c)
     * hold this peer unhealthy; non-zero keeps it out of every pick, read
     * without the lock so every thread sees a change at once */
    atomic_uint health_down;
    /* dns: the balancer the peer belongs to. A `resolve` upstream's set
     * changes by replacing its balancer (upstream/resolve.c): an attempt
     * picked from the old one ends on it (sg_balancer_done uses this). */
    struct sg_balancer *owner;
    /* dns: the peer of the set that replaced this one for the same
     * address (NULL: none, or the address went), set under owner's lock:
     * the attempts still open here end there (done), so that set counts
     * them (least_conn, max_conns) and sees their failures. */
    struct sg_peer *moved_to;
    /* metrics (issue 12): attempts ended on it and how many failed,
     * counted by sg_balancer_done under the balancer's lock (read under
     * it too, by the metrics endpoint: proxy/status_page.c) */
    uint64_t mx_requests, mx_failures;
} sg_peer;

/* What a pick may depend on. `tried` is a bitmap over peer indexes
 * (primary peers first, then backups) of peers already tried for this
 * request; pick never returns a tried peer. */
typedef struct sg_pick_ctx {
    const struct sockaddr *client;   /* for ip_hash */
    uint64_t now_ms;
    uint64_t *tried;                 /* bitmap, sg_balancer_tried_words() words */
    const char *key;                 /* for hash: the evaluated key (hash.c) */
    size_t key_len;
    /* sticky (balancers, issue 11): the cookie's / route's value, or the
     * learn lookup= value; len 0: none. A usable server it names wins. */
    const char *sticky;
    size_t sticky_len;
} sg_pick_ctx;

typedef struct sg_balancer sg_balancer;

typedef struct sg_balancer_ops {
    /* Returns a peer not in ctx->tried and not down or failed, or NULL. */
    sg_peer *(*pick)(sg_balancer *b, sg_pick_ctx *ctx);
    void (*destroy)(sg_balancer *b);
} sg_balancer_ops;

struct sg_balancer {
    const sg_balancer_ops *ops;
    pthread_spinlock_t lock;    /* taken by sg_balancer_pick/done around ops */
    const sg_upstream_conf *conf;
    sg_peer *peers;             /* primary peers then backup peers */
    size_t nprimary, nbackup;
    struct sg_sticky_table *learned;   /* sticky learn's sessions (sticky.c); NULL without */
};

/* Creates the balancer for `u` according to u->lb (one per upstream per generation). */
sg_balancer *sg_balancer_new(const sg_upstream_conf *u);
void sg_balancer_free(sg_balancer *b);

/* Words of a `tried` bitmap: for an upstream with `resolve` servers,
 * enough for any set it may get (SG_DNS_MAX_PEERS), so a bitmap made
 * before a change still fits. */
#define SG_DNS_MAX_PEERS 256
size_t sg_balancer_tried_words(const sg_balancer *b);

/* Picks a peer: primary peers first, then backups; marks it in ctx->tried
 * and counts it active. NULL when every peer is down, failed or tried. */
sg_peer *sg_balancer_pick(sg_balancer *b, sg_pick_ctx *ctx);

/* The attempt on `p` is over. `failed` counts towards max_fails
 * (connect error, timeout, invalid response: what proxy_next_upstream
 * calls a failure); a success clears the failure count. */
void sg_balancer_done(sg_balancer *b, sg_peer *p, bool failed, uint64_t now_ms);

/* An attempt on `p` that started at start_ms measured these times (ms;
 * -1: not reached): least_time keeps an average of the one its mode
 * names; other methods ignore it. Called before sg_balancer_done. */
typedef struct sg_peer_times {
    int64_t connect_ms, header_ms, first_byte_ms, last_byte_ms;
} sg_peer_times;
void sg_balancer_times(sg_balancer *b, sg_peer *p, const sg_peer_times *t);

/* sticky learn: the session `key` (create=) now belongs to p (sticky.c). */
void sg_balancer_learn(sg_balancer *b, sg_peer *p, const char *key, size_t len, uint64_t now_ms);

#endif
