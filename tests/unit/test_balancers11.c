/* The balancers of issue 11 as pure state machines: least_time's ranking
 * and decay, slow_start's ramp, sticky's choice of a named server. */
#include <criterion/criterion.h>

#include <string.h>

#include "core/log.h"
#include "upstream/balancer_impl.h"
#include "lb_fixture.h"

static int pick(sg_balancer *b, uint64_t now_ms, const char *sticky)
{
    uint64_t tried[4] = { 0 };
    sg_pick_ctx ctx = { .now_ms = now_ms, .tried = tried };
    if (sticky) {
        ctx.sticky = sticky;
        ctx.sticky_len = strlen(sticky);
    }
    sg_peer *p = sg_balancer_pick(b, &ctx);
    return p ? p->conf->name[strlen(p->conf->name) - 1] - '0' : -1;   /* 127.0.0.1:808N */
}

static void finish(sg_balancer *b, int n, int64_t ms, uint64_t now_ms)
{
    sg_peer *p = NULL;
    for (size_t i = 0; i < b->nprimary + b->nbackup; i++)
        if (b->peers[i].conf->name[strlen(b->peers[i].conf->name) - 1] - '0' == n) p = &b->peers[i];
    cr_assert_not_null(p);
    sg_peer_times t = { .connect_ms = ms, .header_ms = ms, .first_byte_ms = ms, .last_byte_ms = ms };
    sg_balancer_times(b, p, &t);
    sg_balancer_done(b, p, false, now_ms);
}

Test(least_time, fast_peer_wins_slow_one_is_probed_after_decay)
{
    lb_fixture f;
    lb_fx_init(&f, SG_LB_LEAST_TIME);
    f.u.lt_mode = SG_LT_LAST_BYTE;
    lb_fx_add(&f, 8081, 1)->fail_timeout_ms = 0;   /* decays at once, as upstream_least_time.t's */
    lb_fx_add(&f, 8082, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    /* no samples: round robin */
    cr_assert_eq(pick(b, 1000, NULL), 1);
    finish(b, 1, 4000, 5000);                 /* 8081 took 4 s */
    cr_assert_eq(pick(b, 5000, NULL), 2);
    finish(b, 2, 1, 5001);
    for (int i = 0; i < 5; i++) {             /* the fast one keeps winning */
        cr_assert_eq(pick(b, 5002, NULL), 2);
        finish(b, 2, 1, 5002);
    }
    /* 6 s after its pick, 4000 ms has halved six times: still 62 ms */
    cr_assert_eq(pick(b, 7000, NULL), 2);
    finish(b, 2, 1, 7000);
    /* after 8 s it is below 20 ms and ties with the fast one: probed */
    int got = pick(b, 9100, NULL);
    if (got == 2) {
        finish(b, 2, 1, 9100);
        got = pick(b, 9100, NULL);
    }
    cr_assert_eq(got, 1);
    finish(b, 1, 1, 9101);
    /* the probe's fast answer is blended with the 4 s it was known for */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(pick(b, 9102, NULL), 2);
        finish(b, 2, 1, 9102);
    }
    sg_balancer_free(b);
}

Test(least_time, no_probe_within_fail_timeout)
{
    lb_fixture f;
    lb_fx_init(&f, SG_LB_LEAST_TIME);
    f.u.lt_mode = SG_LT_FIRST_BYTE;
    lb_fx_add(&f, 8081, 1);                    /* fail_timeout 10 s */
    lb_fx_add(&f, 8082, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    cr_assert_eq(pick(b, 1000, NULL), 1);
    cr_assert_eq(pick(b, 1000, NULL), 2);
    finish(b, 1, 1000, 2000);
    finish(b, 2, 1, 9000);
    /* 8 s after its pick: still ranked by its 1 s */
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(pick(b, 9000, NULL), 2);
        finish(b, 2, 1, 9000);
    }
    /* past fail_timeout it is tried again */
    int got = pick(b, 11500, NULL);
    if (got == 2) got = pick(b, 11500, NULL);
    cr_assert_eq(got, 1);
    sg_balancer_free(b);
}

Test(least_time, open_requests_weigh)
{
    lb_fixture f;
    lb_fx_init(&f, SG_LB_LEAST_TIME);
    f.u.lt_mode = SG_LT_HEADER;
    lb_fx_add(&f, 8081, 1);
    lb_fx_add(&f, 8082, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    /* equally fast: (active + 1) spreads them as least_conn */
    int a = pick(b, 100, NULL), c = pick(b, 100, NULL);
    cr_assert_neq(a, c);
    sg_balancer_free(b);
}

Test(slow_start, weight_ramps_up_after_recovery)
{
    sg_log_open("stderr", SG_LOG_ERROR);
    lb_fixture f;
    lb_fx_init(&f, SG_LB_ROUND_ROBIN);
    lb_fx_add(&f, 8081, 10)->slow_start_ms = 10000;
    lb_fx_add(&f, 8082, 10);
    sg_balancer *b = sg_balancer_new(&f.u);
    sg_peer *p = &b->peers[0];
    cr_assert_eq(sg_balancer_weight(p, 0), 10);
    p->recovered_ms = 1000;
    cr_assert_eq(sg_balancer_weight(p, 1000), 1);      /* at least 1 */
    cr_assert_eq(sg_balancer_weight(p, 6000), 5);
    cr_assert_eq(sg_balancer_weight(p, 11000), 10);
    /* half way, it gets about a third of the requests (5 against 10) */
    int mine = 0;
    for (int i = 0; i < 30; i++) mine += pick(b, 6000, NULL) == 1;
    cr_assert(mine >= 9 && mine <= 11, "%d", mine);
    sg_balancer_free(b);
}

Test(sticky, a_named_usable_server_wins)
{
    static sg_sticky_conf st = { .kind = SG_STICKY_ROUTE };
    lb_fixture f;
    lb_fx_init(&f, SG_LB_ROUND_ROBIN);
    f.u.sticky = &st;
    lb_fx_add(&f, 8081, 1)->route = "a";
    lb_fx_add(&f, 8082, 1)->route = "b";
    lb_fx_add(&f, 8083, 1)->down = true;
    f.s[2].route = "c";
    sg_balancer *b = sg_balancer_new(&f.u);
    for (int i = 0; i < 4; i++) cr_assert_eq(pick(b, 1, "b"), 2);
    /* a down one, or an unknown route: the method picks */
    cr_assert_neq(pick(b, 1, "c"), 3);
    cr_assert_neq(pick(b, 1, "zz"), -1);
    sg_balancer_free(b);
}

Test(sticky, cookie_ids_are_the_md5_of_the_name)
{
    static sg_sticky_conf st = { .kind = SG_STICKY_COOKIE };
    lb_fixture f;
    lb_fx_init(&f, SG_LB_ROUND_ROBIN);
    f.u.sticky = &st;
    lb_fx_add(&f, 8081, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    /* md5("127.0.0.1:8081") */
    cr_assert_str_eq(b->peers[0].sticky_id, "df2b80dc43705d28db9be6f29fe58da3");
    sg_balancer_free(b);
}

Test(sticky, learned_sessions_expire)
{
    static sg_sticky_conf st = { .kind = SG_STICKY_LEARN, .timeout_ms = 1000 };
    lb_fixture f;
    lb_fx_init(&f, SG_LB_ROUND_ROBIN);
    f.u.sticky = &st;
    lb_fx_add(&f, 8081, 1);
    lb_fx_add(&f, 8082, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    sg_balancer_learn(b, &b->peers[1], "s1", 2, 100);
    for (int i = 0; i < 4; i++) cr_assert_eq(pick(b, 500 + (uint64_t)i * 600, "s1"), 2);   /* used: kept */
    /* unused for more than the timeout: forgotten, round robin again */
    int a = pick(b, 5000, "s1"), c = pick(b, 5000, "s1");
    cr_assert_neq(a, c);
    sg_balancer_free(b);
}
