/* The event loop: timers fire once, in order, not before their time, and
 * survive re-arming and disarming; deferred work runs once per queueing. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/loop.h"

typedef struct probe {
    sg_timer t;
    sg_loop *loop;
    int id;
    uint64_t fired_at;
} probe;

static int order[16];
static int norder;
static int remaining;

static void on_fire(sg_timer *t)
{
    probe *p = (probe *)t;
    p->fired_at = sg_loop_now(p->loop);
    order[norder++] = p->id;
    if (--remaining == 0) sg_loop_stop(p->loop);
}

Test(loop, timers_fire_in_order_and_not_early)
{
    sg_loop *l = sg_loop_new();
    cr_assert_not_null(l);
    uint64_t start = sg_loop_now(l);
    uint64_t delays[] = { 300, 5, 1200, 60 };   /* crosses wheel levels 0 and 1 */
    probe p[4];
    norder = 0;
    remaining = 4;
    for (int i = 0; i < 4; i++) {
        p[i].loop = l;
        p[i].id = i;
        sg_timer_init(&p[i].t, on_fire);
        sg_timer_arm(l, &p[i].t, delays[i]);
    }
    sg_loop_run(l);
    cr_assert_eq(norder, 4);
    cr_assert_eq(order[0], 1);
    cr_assert_eq(order[1], 3);
    cr_assert_eq(order[2], 0);
    cr_assert_eq(order[3], 2);
    for (int i = 0; i < 4; i++) cr_assert_geq(p[i].fired_at - start, delays[i]);
    sg_loop_free(l);
}

Test(loop, disarmed_and_rearmed_timers)
{
    sg_loop *l = sg_loop_new();
    probe a = { .loop = l, .id = 1 }, b = { .loop = l, .id = 2 };
    sg_timer_init(&a.t, on_fire);
    sg_timer_init(&b.t, on_fire);
    norder = 0;
    remaining = 1;
    sg_timer_arm(l, &a.t, 20);
    sg_timer_arm(l, &b.t, 40);
    sg_timer_disarm(&a.t);
    cr_assert_not(sg_timer_armed(&a.t));
    sg_timer_arm(l, &b.t, 10);   /* re-arm moves it */
    sg_loop_run(l);
    cr_assert_eq(norder, 1);
    cr_assert_eq(order[0], 2);
    cr_assert_not(sg_timer_armed(&b.t));
    sg_loop_free(l);
}

typedef struct dprobe {
    sg_deferred d;
    sg_loop *loop;
    int runs;
} dprobe;

static void on_deferred(sg_deferred *d)
{
    dprobe *p = (dprobe *)d;
    p->runs++;
    sg_loop_stop(p->loop);
}

Test(loop, deferred_runs_once_and_cancel_works)
{
    sg_loop *l = sg_loop_new();
    dprobe a = { .loop = l }, b = { .loop = l };
    sg_deferred_init(&a.d, on_deferred);
    sg_deferred_init(&b.d, on_deferred);
    sg_loop_defer(l, &a.d);
    sg_loop_defer(l, &a.d);   /* idempotent */
    sg_loop_defer(l, &b.d);
    sg_loop_cancel(&b.d);
    sg_loop_run(l);
    cr_assert_eq(a.runs, 1);
    cr_assert_eq(b.runs, 0);
    sg_loop_free(l);
}

typedef struct ioprobe {
    sg_io io;
    sg_loop *loop;
    char got[8];
} ioprobe;

static void on_readable(sg_io *io, uint32_t ev)
{
    ioprobe *p = (ioprobe *)io;
    if (read(io->fd, p->got, sizeof(p->got)) > 0) sg_loop_stop(p->loop);
}

Test(loop, io_readiness_is_delivered)
{
    sg_loop *l = sg_loop_new();
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    ioprobe p = { .io = { .fd = fds[0], .on_event = on_readable }, .loop = l };
    cr_assert_eq(sg_loop_add_reader(l, &p.io), 0);
    cr_assert_eq(write(fds[1], "ping", 4), 4);
    sg_loop_run(l);
    cr_assert_str_eq(p.got, "ping");
    close(fds[0]);
    close(fds[1]);
    sg_loop_free(l);
}
