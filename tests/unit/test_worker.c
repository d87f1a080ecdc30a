/* The per-thread worker: a thread's first use of a generation and its
 * last go to the hooks (being current counts as a use); the connection
 * registry counts connections, and quitting asks each to close and stops
 * the loop once the last is gone. */
#include <criterion/criterion.h>

#include "core/worker.h"

static struct sg_conf *const GEN_A = (struct sg_conf *)0x1000;
static struct sg_conf *const GEN_B = (struct sg_conf *)0x2000;

static int acquired_a, released_a, acquired_b, released_b;

static void on_acquire(struct sg_conf *c)
{
    if (c == GEN_A) acquired_a++;
    else acquired_b++;
}

static void on_release(struct sg_conf *c)
{
    if (c == GEN_A) released_a++;
    else released_b++;
}

Test(worker, generation_hooks_see_first_and_last_use_only)
{
    acquired_a = released_a = acquired_b = released_b = 0;
    sg_worker_set_gen_hooks(on_acquire, on_release);
    sg_worker *w = sg_worker_new(3);
    cr_assert_eq(sg_worker_id(w), 3);
    cr_assert_null(sg_worker_switch_conf(w, GEN_A));
    cr_assert_eq(sg_worker_conf(w), GEN_A);
    cr_assert_eq(acquired_a, 1);
    sg_worker_gen_hold(w, GEN_A);          /* an exchange on A */
    sg_worker_gen_release(w, GEN_A);
    cr_assert_eq(released_a, 0, "current: still used");
    sg_worker_gen_hold(w, GEN_A);          /* an exchange outlives the reload */
    cr_assert_eq(sg_worker_switch_conf(w, GEN_B), GEN_A);
    cr_assert_eq(acquired_b, 1);
    sg_worker_gen_release(w, GEN_A);       /* the server ends A's current use */
    cr_assert_eq(released_a, 0, "the exchange still runs on A");
    sg_worker_gen_release(w, GEN_A);       /* the exchange ends */
    cr_assert_eq(released_a, 1);
    cr_assert_eq(acquired_a, 1);
    cr_assert_eq(released_b, 0);
    sg_worker_set_gen_hooks(NULL, NULL);
    sg_worker_free(w);
}

typedef struct fake_conn {
    sg_conn_node node;
    sg_worker *w;
    int asked, fast;
} fake_conn;

static void fake_shutdown(sg_conn_node *n, bool fast)
{
    fake_conn *c = (fake_conn *)n;
    c->asked++;
    c->fast = fast;
    if (fast) sg_worker_conn_del(c->w, n);   /* a fast stop closes at once */
}

static void add_conns(sg_worker *w, fake_conn *c, int n)
{
    for (int i = 0; i < n; i++) {
        c[i].w = w;
        c[i].node.shutdown = fake_shutdown;
        sg_worker_conn_add(w, &c[i].node);
    }
}

static void on_deadline(sg_timer *t)
{
    cr_assert_fail("the loop did not stop when the last connection went");
}

Test(worker, quit_asks_every_connection_and_stops_after_the_last)
{
    sg_worker *w = sg_worker_new(0);
    fake_conn c[3] = { 0 };
    add_conns(w, c, 3);
    cr_assert_eq(sg_worker_conn_count(w), 3);
    sg_worker_conn_del(w, &c[1].node);
    sg_worker_conn_del(w, &c[1].node);     /* twice: counted once */
    cr_assert_eq(sg_worker_conn_count(w), 2);
    cr_assert_not(sg_worker_quitting(w));
    sg_worker_quit(w, false);
    cr_assert(sg_worker_quitting(w));
    cr_assert_eq(c[0].asked, 1);
    cr_assert_eq(c[1].asked, 0);
    cr_assert_eq(c[2].asked, 1);
    cr_assert_eq(c[0].fast, 0);
    /* The connections finish their exchanges; the last one stops the loop. */
    sg_worker_conn_del(w, &c[0].node);
    sg_worker_conn_del(w, &c[2].node);
    sg_timer deadline;
    sg_timer_init(&deadline, on_deadline);
    sg_timer_arm(sg_worker_loop(w), &deadline, 2000);
    sg_loop_run(sg_worker_loop(w));        /* returns at once: already stopped */
    sg_timer_disarm(&deadline);
    sg_worker_free(w);
}

Test(worker, fast_quit_closes_everything)
{
    sg_worker *w = sg_worker_new(0);
    fake_conn c[2] = { 0 };
    add_conns(w, c, 2);
    sg_worker_quit(w, true);
    cr_assert_eq(c[0].fast, 1);
    cr_assert_eq(c[1].fast, 1);
    cr_assert_eq(sg_worker_conn_count(w), 0);
    sg_worker_free(w);
}
