/* Event loop: epoll + hierarchical timer wheel + deferred queue. */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/str.h"

/* Timer wheel: 4 levels of 64 slots; a tick is 4 ms, so level 0 spans
 * 256 ms, level 1 16 s, level 2 17 min and level 3 18 h (longer timers are
 * clamped and re-armed when they come due early). Arming and disarming are
 * O(1) list operations; a timer is touched again only when it cascades one
 * level down, at most three times in its life, which is what lets a
 * million idle connections keep their timeouts for free. */
#define TICK_MS 4
#define WHEEL_BITS 6
#define WHEEL_SLOTS (1u << WHEEL_BITS)
#define WHEEL_MASK (WHEEL_SLOTS - 1)
#define WHEEL_LEVELS 4
#define MAX_EVENTS 256

struct sg_loop {
    int epfd;
    bool stopping;
    uint64_t now_ms;
    uint64_t tick;                       /* last processed tick */
    sg_list wheel[WHEEL_LEVELS][WHEEL_SLOTS];
    sg_list deferred;                    /* run at the end of the iteration */
};

static uint64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

sg_loop *sg_loop_new(void)
{
    sg_loop *l = sg_xcalloc(1, sizeof(*l));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    l->now_ms = clock_ms();
    l->tick = l->now_ms / TICK_MS;
    return l;
}

void sg_loop_free(sg_loop *l)
{
    if (!l) return;
    close(l->epfd);
    free(l);
}

static int loop_ctl_add(sg_loop *l, sg_io *io, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = io };
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev);
}

int sg_loop_add(sg_loop *l, sg_io *io)
{
    return loop_ctl_add(l, io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

int sg_loop_add_reader(sg_loop *l, sg_io *io)
{
    return loop_ctl_add(l, io, EPOLLIN);
}

void sg_loop_del(sg_loop *l, sg_io *io)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

uint64_t sg_loop_now(const sg_loop *l)
{
    return l->now_ms;
}

void sg_loop_update_time(sg_loop *l)
{
    l->now_ms = clock_ms();
}

/* ---- timers ---- */

static void wheel_insert(sg_loop *l, sg_timer *t)
{
    uint64_t expire = (t->expire_ms + TICK_MS - 1) / TICK_MS;
    if (expire <= l->tick) expire = l->tick + 1;
    uint64_t delta = expire - l->tick;
    unsigned level = 0;
    while (level < WHEEL_LEVELS - 1 && delta >= (1ull << (WHEEL_BITS * (level + 1))))
        level++;
    uint64_t span = 1ull << (WHEEL_BITS * WHEEL_LEVELS);
    if (delta >= span) expire = l->tick + span - 1;   /* clamped; re-armed when it comes due */
    sg_list_push(&l->wheel[level][(expire >> (WHEEL_BITS * level)) & WHEEL_MASK], &t->link);
}

void sg_timer_arm(sg_loop *l, sg_timer *t, uint64_t ms)
{
    sg_list_remove(&t->link);
    t->expire_ms = l->now_ms + ms;
    wheel_insert(l, t);
}

/* Disarming needs no loop: the slot list is doubly linked. */
void sg_timer_disarm(sg_timer *t)
{
    sg_list_remove(&t->link);
}

static void wheel_cascade(sg_loop *l, unsigned level, unsigned idx)
{
    sg_list due;
    sg_list_move(&due, &l->wheel[level][idx]);
    sg_list_node *n;
    while ((n = sg_list_first(&due)) != NULL) {
        sg_list_remove(n);
        wheel_insert(l, sg_list_entry(n, sg_timer, link));
    }
}

static void wheel_fire_slot(sg_loop *l, unsigned idx)
{
    sg_list *slot = &l->wheel[0][idx];
    sg_list_node *n;
    while ((n = sg_list_first(slot)) != NULL) {
        sg_timer *t = sg_list_entry(n, sg_timer, link);
        sg_list_remove(n);
        if (t->expire_ms > l->now_ms + TICK_MS) {   /* clamped long timer: not yet */
            wheel_insert(l, t);
            if (sg_list_first(slot) == n) break;     /* cannot happen, but never spin */
            continue;
        }
        t->cb(t);
    }
}

static void wheel_advance(sg_loop *l)
{
    uint64_t now_tick = l->now_ms / TICK_MS;
    while (l->tick < now_tick) {
        uint64_t t = ++l->tick;
        if ((t & WHEEL_MASK) == 0) {
            for (int level = WHEEL_LEVELS - 1; level >= 1; level--) {
                /* cascade level `level` when every lower level wrapped */
                uint64_t lower = (1ull << (WHEEL_BITS * level)) - 1;
                if ((t & lower) == 0)
                    wheel_cascade(l, (unsigned)level, (t >> (WHEEL_BITS * level)) & WHEEL_MASK);
            }
        }
        wheel_fire_slot(l, t & WHEEL_MASK);
    }
}

/* How long epoll may sleep: until the next non-empty level-0 slot or the
 * next cascade boundary (at most 256 ms: an idle thread wakes 4 times a
 * second, which is cheaper than counting armed timers on every arm). */
static int wheel_wait_ms(sg_loop *l)
{
    for (unsigned i = 1; i <= WHEEL_SLOTS; i++) {
        uint64_t t = l->tick + i;
        if (!sg_list_empty(&l->wheel[0][t & WHEEL_MASK])) return (int)(i * TICK_MS);
        if ((t & WHEEL_MASK) == 0) return (int)(i * TICK_MS);
    }
    return (int)(WHEEL_SLOTS * TICK_MS);
}

static void run_deferred(sg_loop *l);

/* ---- deferred queue ----
 * A doubly linked stack: order does not matter (each entry is independent
 * work), and pushing at the head makes cancel O(1) without a tail pointer. */

void sg_loop_defer(sg_loop *l, sg_deferred *d)
{
    if (!sg_list_linked(&d->link)) sg_list_push(&l->deferred, &d->link);
}

void sg_loop_cancel(sg_deferred *d)
{
    sg_list_remove(&d->link);
}

void sg_loop_run_deferred(sg_loop *l)
{
    run_deferred(l);
}

static void run_deferred(sg_loop *l)
{
    /* Callbacks may queue more work; it runs in this same pass. */
    sg_list_node *n;
    while ((n = sg_list_first(&l->deferred)) != NULL) {
        sg_deferred *d = sg_list_entry(n, sg_deferred, link);
        sg_list_remove(n);
        d->cb(d);
    }
}

/* ---- run ---- */

void sg_loop_stop(sg_loop *l)
{
    l->stopping = true;
}

int sg_loop_run_once(sg_loop *l, int max_wait_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int timeout = !sg_list_empty(&l->deferred) ? 0 : wheel_wait_ms(l);
    if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms)) timeout = max_wait_ms;
    int n = epoll_wait(l->epfd, events, MAX_EVENTS, timeout);
    if (n < 0 && errno != EINTR) {
        sg_log_error("epoll_wait() failed: %s", strerror(errno));
        return -1;
    }
    sg_loop_update_time(l);
    for (int i = 0; i < n; i++) {
        sg_io *io = events[i].data.ptr;
        io->on_event(io, events[i].events);
    }
    run_deferred(l);
    wheel_advance(l);
    run_deferred(l);
    return n < 0 ? 0 : n;
}

void sg_loop_run(sg_loop *l)
{
    while (!l->stopping)
        if (sg_loop_run_once(l, -1) < 0) break;
}
