/* The calling thread's worker: what every connection on a worker thread
 * shares with the others of its thread. Its event loop and scratch
 * buffer, its id (the index of its upstream pools), the configuration
 * generation new work starts on, whether it is winding down, the client
 * connections it serves (to close them on a graceful stop) and how many
 * users each generation has on this thread.
 *
 * Only the thread that owns a worker touches it, so nothing here takes a
 * lock. The layer that runs the workers (src/server/) creates them, binds
 * each to its thread, switches their generation on reload and installs
 * the hooks for what this one cannot do itself: taking and dropping the
 * process-wide use of a generation.
 *
 * Generations: a worker serves new requests from its current generation.
 * Requests in flight keep the one they started on; the worker counts its
 * users of each generation locally and calls the release hook once a
 * generation has no local users left (being current counts as a use). */
#ifndef SG_CORE_WORKER_H
#define SG_CORE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/list.h"
#include "core/loop.h"

#define SG_SCRATCH_SIZE 65536

struct sg_conf;
struct sg_listen_group;
struct sockaddr;

/* A client connection as the worker sees it: enough to close idle ones
 * on graceful stop and to count them. */
typedef struct sg_conn_node sg_conn_node;
struct sg_conn_node {
    sg_list_node link;
    /* Asked to wind down: close now if idle, else after the current
     * exchange. `fast` means close at once whatever the state. */
    void (*shutdown)(sg_conn_node *n, bool fast);
    /* A connection that serves HTTP requests: the address it was accepted
     * on and its listen group in the worker's current generation (NULL
     * when a reload removed the address), which the server layer keeps
     * current on every reload, so each request takes the group of the
     * generation it starts on. Both NULL for other connections. */
    const struct sockaddr *local;
    const struct sg_listen_group *group;
    /* The addresses a PROXY protocol header gave (proxy[0] the client,
     * proxy[1] the address it connected to); heap, freed with the node by
     * sg_worker_conn_del. NULL without a header. */
    struct sockaddr_storage *proxy;
    /* behave: open at a reload whose old configuration has
     * worker_shutdown_timeout: closed that long after it (server layer). */
    bool retiring;
    /* header controls and variables (issue 9): $connection, a process-wide
     * serial number given by sg_worker_conn_add */
    uint64_t number;
    uint64_t born_ms;          /* CLOCK_MONOTONIC ms when added ($connection_time) */
};

typedef struct sg_worker sg_worker;

sg_worker *sg_worker_self(void);           /* the calling thread's worker */
sg_loop *sg_worker_loop(sg_worker *w);
int sg_worker_id(const sg_worker *w);
char *sg_worker_scratch(sg_worker *w);     /* SG_SCRATCH_SIZE bytes, reused by every read */
struct sg_conf *sg_worker_conf(sg_worker *w);   /* current generation */
bool sg_worker_quitting(const sg_worker *w);

/* A request or upstream connection starts/stops using generation c. */
void sg_worker_gen_hold(sg_worker *w, struct sg_conf *c);
void sg_worker_gen_release(sg_worker *w, struct sg_conf *c);

void sg_worker_conn_add(sg_worker *w, sg_conn_node *n);
/* Hands `proxy` (see sg_conn_node) to the next connection this thread's
 * codecs add with sg_worker_conn_add, which takes it over; returns what
 * was pending before (NULL, or a block no connection took: the caller
 * frees it). Called around a codec's accept function. */
struct sockaddr_storage *sg_worker_pass_proxy(sg_worker *w, struct sockaddr_storage *proxy);
void sg_worker_conn_del(sg_worker *w, sg_conn_node *n);
size_t sg_worker_conn_count(const sg_worker *w);
/* Calls fn on every connection; fn may remove the one it is given. */
void sg_worker_each_conn(sg_worker *w, void (*fn)(sg_conn_node *n, void *arg), void *arg);

/* ---- for the layer that runs workers ---- */

/* The process-wide side of the per-thread use counts: acquire(c) when a
 * thread starts using generation c, release(c) when it no longer does.
 * Installed once, before the first worker thread starts; they run on the
 * worker's thread, off the fast path (a thread's first and last use). */
void sg_worker_set_gen_hooks(void (*acquire)(struct sg_conf *c), void (*release)(struct sg_conf *c));

/* A worker with its own loop and scratch buffer; `id` in 0..n-1. */
sg_worker *sg_worker_new(int id);
/* Frees a worker whose connections are gone and whose generations were
 * released (its loop too). */
void sg_worker_free(sg_worker *w);
/* Makes w the calling thread's worker (NULL: none). */
void sg_worker_bind(sg_worker *w);
/* Makes c the generation new work starts on, which counts as a use of c,
 * and returns the previous one (NULL for the first). The caller ends the
 * previous one's use (sg_worker_gen_release) once it has retired what the
 * thread kept for it. */
struct sg_conf *sg_worker_switch_conf(sg_worker *w, struct sg_conf *c);
/* Winds the worker down: sg_worker_quitting() turns true, every
 * connection is asked to close (at once if fast) and the loop stops once
 * the last one is gone (at once if fast). */
void sg_worker_quit(sg_worker *w, bool fast);

#endif
