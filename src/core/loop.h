/* The event loop: one per worker thread. Edge-triggered epoll, a
 * hierarchical timer wheel and a per-iteration "deferred" queue.
 *
 * Every fd is registered once for input, output and hang-up, edge
 * triggered; the owner remembers readiness itself, so pausing a reader is
 * just not reading (no epoll_ctl on the hot path). Work that should happen
 * once per iteration (flushing a connection's output in one writev,
 * resuming a paused reader) is queued with sg_loop_defer() and runs after
 * all events of the iteration are handled. */
#ifndef SG_CORE_LOOP_H
#define SG_CORE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include "core/list.h"

typedef struct sg_loop sg_loop;
typedef struct sg_io sg_io;
typedef struct sg_timer sg_timer;
typedef struct sg_deferred sg_deferred;

typedef void (*sg_io_cb)(sg_io *io, uint32_t events);
typedef void (*sg_timer_cb)(sg_timer *t);
typedef void (*sg_deferred_cb)(sg_deferred *d);

struct sg_io {
    int fd;
    sg_io_cb on_event;          /* called with EPOLLIN/EPOLLOUT/EPOLLRDHUP/EPOLLHUP/EPOLLERR bits */
};

struct sg_timer {
    sg_list_node link;          /* in a wheel slot while armed */
    uint64_t expire_ms;
    sg_timer_cb cb;
};

struct sg_deferred {
    sg_list_node link;          /* in the loop's queue while queued */
    sg_deferred_cb cb;
};

sg_loop *sg_loop_new(void);
void sg_loop_free(sg_loop *l);

/* Registers io->fd (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET). -1 on error. */
int sg_loop_add(sg_loop *l, sg_io *io);
/* Registers for input only, level-triggered (listening sockets, wake-up fds). */
int sg_loop_add_reader(sg_loop *l, sg_io *io);
void sg_loop_del(sg_loop *l, sg_io *io);

/* Milliseconds on the loop's clock (CLOCK_MONOTONIC, cached per iteration). */
uint64_t sg_loop_now(const sg_loop *l);
void sg_loop_update_time(sg_loop *l);

static inline void sg_timer_init(sg_timer *t, sg_timer_cb cb)
{
    sg_list_node_init(&t->link); t->expire_ms = 0; t->cb = cb;
}
static inline bool sg_timer_armed(const sg_timer *t) { return sg_list_linked(&t->link); }
/* (Re)arms t to fire `ms` from now. O(1). */
void sg_timer_arm(sg_loop *l, sg_timer *t, uint64_t ms);
void sg_timer_disarm(sg_timer *t);

static inline void sg_deferred_init(sg_deferred *d, sg_deferred_cb cb)
{
    sg_list_node_init(&d->link); d->cb = cb;
}
/* Queues d to run once at the end of this iteration (idempotent). */
void sg_loop_defer(sg_loop *l, sg_deferred *d);
/* Removes d from the queue if it is there (before freeing its owner). O(1). */
void sg_loop_cancel(sg_deferred *d);

/* Runs the deferred queue now (after the loop stopped, to finish frees). */
void sg_loop_run_deferred(sg_loop *l);

/* Runs until sg_loop_stop(). */
void sg_loop_run(sg_loop *l);
/* One turn: waits for events (at most max_wait_ms, -1: until the next
 * timer), handles them, the deferred queue and due timers. Returns the
 * number of events, -1 if epoll failed. For tools and fuzzers that drive
 * a loop themselves. */
int sg_loop_run_once(sg_loop *l, int max_wait_ms);
void sg_loop_stop(sg_loop *l);

#endif
