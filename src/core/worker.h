/* Worker threads. Each runs one event loop with its own listening sockets
 * (SO_REUSEPORT: the kernel spreads connections), its own upstream
 * connection pools and timers, so the request path shares nothing but the
 * configuration generation (read-only) and the balancers.
 *
 * Generations: a worker serves new requests from its current generation.
 * Requests in flight keep the one they started on; the worker counts its
 * users of each generation locally and drops its (atomic) reference once
 * the old generation has no local users left. */
#ifndef SG_CORE_WORKER_H
#define SG_CORE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/loop.h"
#include "conf/conf.h"

#define SG_SCRATCH_SIZE 65536
#define SG_MAX_WORKERS 64

/* A client connection as the worker sees it: enough to close idle ones
 * on graceful stop and to count them. */
typedef struct sg_conn_node sg_conn_node;
struct sg_conn_node {
    sg_conn_node *next, **pprev;
    /* Asked to wind down: close now if idle, else after the current
     * exchange. `fast` means close at once whatever the state. */
    void (*shutdown)(sg_conn_node *n, bool fast);
};

typedef struct sg_worker_gen {
    sg_conf *conf;
    size_t users;
} sg_worker_gen;

typedef struct sg_worker sg_worker;

sg_worker *sg_worker_self(void);           /* the calling thread's worker */
sg_loop *sg_worker_loop(sg_worker *w);
int sg_worker_id(const sg_worker *w);
char *sg_worker_scratch(sg_worker *w);     /* SG_SCRATCH_SIZE bytes, reused by every read */
sg_conf *sg_worker_conf(sg_worker *w);     /* current generation */
bool sg_worker_quitting(const sg_worker *w);

/* A request or upstream connection starts/stops using generation c. */
void sg_worker_gen_hold(sg_worker *w, sg_conf *c);
void sg_worker_gen_release(sg_worker *w, sg_conf *c);

void sg_worker_conn_add(sg_worker *w, sg_conn_node *n);
void sg_worker_conn_del(sg_worker *w, sg_conn_node *n);

/* ---- the process: main thread API ---- */

/* Starts `n` worker threads serving generation c (listeners opened here;
 * false + err if a listen address cannot be bound). */
bool sg_workers_start(sg_conf *c, int n, char *err, size_t errlen);
/* Activates a new generation (reload). False + err, and nothing changed,
 * if its listeners or log files cannot be opened. */
bool sg_workers_reload(sg_conf *c, char *err, size_t errlen);
/* Graceful (finish in-flight exchanges) or fast stop; returns when every
 * worker thread has exited. */
void sg_workers_stop(bool graceful);
int sg_workers_count(void);
/* Every worker writes out its buffered access log lines (before a reopen). */
void sg_workers_flush_logs(void);

/* Per-generation runtime that lives beside the immutable config:
 * balancers and per-thread pools of each upstream. Created on activation. */
bool sg_runtime_attach(sg_conf *c, int nworkers);

#endif
