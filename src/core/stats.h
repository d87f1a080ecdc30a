/* Per-thread counters, summed when read (stub_status, $connections_*,
 * the metrics endpoint of observe/metrics.c).
 *
 * Each thread that counts gets its own block of SG_STATS_SLOTS signed
 * 64-bit slots the first time it counts; only that thread writes it, with
 * a relaxed load and store (no lock prefix, no lock), and a reader sums
 * the slot over every block with relaxed loads. Blocks are never freed, so
 * what a thread counted stays in the sums after it exits. Past
 * SG_STATS_MAX_THREADS blocks, later threads share one block and add with
 * an atomic fetch-add instead.
 *
 * A gauge (connections open, requests being read) is a slot that goes up
 * and down on the thread that owns the thing it counts; the sum is exact
 * once every thread's last change is visible.
 *
 * Slots below SG_ST_FIRST_FREE are named here (what the codecs and the
 * acceptor count); observe/metrics.h lays out the rest (labelled counters
 * and histograms). */
#ifndef SG_CORE_STATS_H
#define SG_CORE_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_STATS_SLOTS 16384
#define SG_STATS_MAX_THREADS 512

enum {
    SG_ST_ACCEPTED = 0,        /* client connections accepted (HTTP and stream) */
    SG_ST_HANDLED,             /* ... and not refused (worker_connections) */
    SG_ST_REQUESTS,            /* HTTP requests begun (nginx's "requests") */
    SG_ST_READING,             /* gauge: requests whose head is being read */
    SG_ST_WRITING,             /* gauge: requests being answered */
    SG_ST_H1_IDLE,             /* gauge: HTTP/1.x connections between requests */
    SG_ST_H1_ACTIVE,           /* gauge: HTTP/1.x connections with a request */
    SG_ST_H2_IDLE,             /* gauge: HTTP/2 connections without a stream */
    SG_ST_H2_ACTIVE,           /* gauge: HTTP/2 connections with streams */
    SG_ST_TLS,                 /* gauge: HTTP connections over TLS */
    SG_ST_WS,                  /* gauge: HTTP/1.1 upgrades relayed as tunnels */
    SG_ST_WS_H2,               /* gauge: RFC 8441 tunnels (an HTTP/2 stream each) */
    SG_ST_STREAM,              /* gauge: stream {} sessions relayed as tunnels */
    SG_ST_TLS_HANDSHAKES,      /* client TLS handshakes completed */
    SG_ST_TLS_RESUMED,         /* ... of which resumed a session */
    SG_ST_TLS_FAILED,          /* client TLS handshakes that failed */
    SG_ST_LIMIT_REQ_REJECTED,  /* requests limit_req refused */
    SG_ST_LIMIT_REQ_DELAYED,   /* requests limit_req delayed */
    SG_ST_LIMIT_CONN_REJECTED, /* requests / sessions limit_conn refused */
    SG_ST_RELOADS,             /* configurations loaded after the first */
    SG_ST_FIRST_FREE = 64,
};

typedef struct sg_stats_block {
    _Atomic int64_t v[SG_STATS_SLOTS];
    bool shared;               /* the overflow block: fetch-add */
} sg_stats_block;

extern _Thread_local sg_stats_block *sg_stats_tls;
sg_stats_block *sg_stats_attach(void);

static inline void sg_stats_add(size_t slot, int64_t d)
{
    sg_stats_block *b = sg_stats_tls ? sg_stats_tls : sg_stats_attach();
    if (b->shared) {
        atomic_fetch_add_explicit(&b->v[slot], d, memory_order_relaxed);
        return;
    }
    int64_t v = atomic_load_explicit(&b->v[slot], memory_order_relaxed);
    atomic_store_explicit(&b->v[slot], v + d, memory_order_relaxed);
}

/* The sum of one slot over every thread. */
int64_t sg_stats_sum(size_t slot);
/* out[i] = the sum of slot first+i, for i < n (one pass over the blocks). */
void sg_stats_sum_range(size_t first, size_t n, int64_t *out);

/* ---- a client connection's place in the gauges ---- */

enum { SG_CS_H1 = 1, SG_CS_H2 = 2 };
enum {
    SG_CS_CLOSED = 0,
    SG_CS_WAITING,             /* idle: between requests / no stream */
    SG_CS_READING,             /* HTTP/1.x: reading a request head */
    SG_CS_WRITING,             /* HTTP/1.x: a request is being answered */
    SG_CS_BUSY,                /* HTTP/2: streams open (they count themselves) */
};

typedef struct sg_conn_stat {
    uint8_t proto, phase;
    bool tls;
} sg_conn_stat;

void sg_conn_stat_open(sg_conn_stat *s, int proto);
void sg_conn_stat_tls(sg_conn_stat *s);
/* HTTP/1.x: leaving SG_CS_WAITING for reading or writing begins a request. */
void sg_conn_stat_phase(sg_conn_stat *s, int phase);
/* HTTP/2: whether the connection has streams open. */
void sg_conn_stat_busy(sg_conn_stat *s, bool busy);
void sg_conn_stat_close(sg_conn_stat *s);

/* HTTP/2 streams, nginx's way: a request begins reading at its stream's
 * first frame and is written once its head is complete. */
static inline void sg_stats_req_begin(void)
{
    sg_stats_add(SG_ST_REQUESTS, 1);
    sg_stats_add(SG_ST_READING, 1);
}
static inline void sg_stats_req_head(void)
{
    sg_stats_add(SG_ST_READING, -1);
    sg_stats_add(SG_ST_WRITING, 1);
}
static inline void sg_stats_req_end(bool head_done)
{
    sg_stats_add(head_done ? SG_ST_WRITING : SG_ST_READING, -1);
}

/* nginx's stub_status figures. */
typedef struct sg_stub_status {
    int64_t active, accepted, handled, requests, reading, writing, waiting;
} sg_stub_status;
void sg_stats_stub(sg_stub_status *st);

#endif
