/* The per-worker pool of HTTP/2 upstream connections: where a new stream
 * goes, how long an idle connection stays, what retiring a generation does. */
#include <criterion/criterion.h>

#include "upstream/h2_pool.h"

typedef struct fake_conn {
    sg_h2_member m;
    int retired;          /* retire callbacks seen */
    bool close_on_retire; /* idle: closes (leaves) at once */
} fake_conn;

static void fake_retire(sg_h2_member *m)
{
    fake_conn *c = (fake_conn *)m;
    c->retired++;
    if (c->close_on_retire) sg_h2_pool_leave(m);
}

static sg_upstream_server_conf server_conf[2];
static sg_peer peers[2] = { { .conf = &server_conf[0] }, { .conf = &server_conf[1] } };

static sg_upstream_conf upstream(uint32_t keepalive)
{
    return (sg_upstream_conf){ .keepalive = keepalive, .keepalive_timeout_ms = 60000 };
}

static const sg_tls_key cleartext = { 0 };

static void add_tls(sg_h2_pool *hp, fake_conn *c, int peer, const sg_tls_key *tls)
{
    *c = (fake_conn){ 0 };
    sg_h2_pool_add(hp, &c->m, &peers[peer], tls);
    c->m.retire = fake_retire;
}

static void add(sg_h2_pool *hp, fake_conn *c, int peer)
{
    add_tls(hp, c, peer, &cleartext);
}

static void open_streams(fake_conn *c, int n)
{
    for (int i = 0; i < n; i++) sg_h2_pool_stream_open(&c->m);
}

Test(h2_pool, streams_fill_a_connection_up_to_the_peer_limit)
{
    sg_pool p = { 0 };
    sg_upstream_conf u = upstream(32);
    sg_h2_pool *hp = sg_h2_pool_of(&p, &u);
    cr_assert_eq(sg_h2_pool_of(&p, &u), hp, "one h2 pool per sg_pool");
    cr_assert_null(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), "nothing yet: open a connection");
    fake_conn a;
    add(hp, &a, 0);
    /* Until its SETTINGS arrive, a connection is assumed to take 100 streams. */
    for (int i = 0; i < SG_H2_ASSUMED_STREAMS; i++) {
        cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), &a.m);
        sg_h2_pool_stream_open(&a.m);
    }
    cr_assert_null(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), "full: a new connection is needed");
    sg_h2_pool_set_max(&a.m, 1000);
    cr_assert_eq(a.m.max_streams, SG_H2_MAX_STREAMS, "a generous peer is capped");
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), &a.m);
    sg_h2_pool_set_max(&a.m, 10);
    cr_assert_null(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), "a stricter peer is obeyed");
    cr_assert_null(sg_h2_pool_pick(hp, &peers[1], &cleartext, NULL), "connections serve one peer");
    for (int i = 0; i < SG_H2_ASSUMED_STREAMS; i++) sg_h2_pool_stream_close(&a.m);
    sg_h2_pool_leave(&a.m);
    p.retired = true;
    p.h2_retire(&p);
    cr_assert_null(p.h2, "retired and empty: freed");
}

Test(h2_pool, busy_connections_are_preferred_then_the_latest_idle)
{
    sg_pool p = { 0 };
    sg_upstream_conf u = upstream(32);
    sg_h2_pool *hp = sg_h2_pool_of(&p, &u);
    fake_conn a, b, c;
    add(hp, &a, 0);
    add(hp, &b, 0);
    add(hp, &c, 0);
    cr_assert_eq(sg_h2_pool_idle(&a.m), SG_H2_KEEP);
    cr_assert_eq(sg_h2_pool_idle(&b.m), SG_H2_KEEP);
    open_streams(&c, 1);
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), &c.m, "busy first: idle ones age out");
    sg_h2_pool_stream_close(&c.m);
    cr_assert_eq(sg_h2_pool_idle(&c.m), SG_H2_KEEP);
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), &c.m, "then the most recently idle");
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &cleartext, &c.m), &b.m, "`avoid` is skipped");
    b.m.closing = true;
    c.m.closing = true;
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), &a.m, "closing ones take no stream");
    sg_h2_pool_leave(&a.m);
    sg_h2_pool_leave(&b.m);
    sg_h2_pool_leave(&c.m);
    sg_pool_retire(&p);
    cr_assert_null(p.h2);
}

Test(h2_pool, keepalive_bounds_the_idle_connections)
{
    sg_pool p = { 0 };
    sg_upstream_conf u = upstream(2);
    sg_h2_pool *hp = sg_h2_pool_of(&p, &u);
    fake_conn c[4];
    for (int i = 0; i < 4; i++) add(hp, &c[i], 0);
    cr_assert_eq(sg_h2_pool_idle(&c[0].m), SG_H2_KEEP);
    cr_assert_eq(sg_h2_pool_idle(&c[1].m), SG_H2_KEEP);
    cr_assert_eq(sg_h2_pool_idle(&c[2].m), SG_H2_KEEP_BRIEFLY, "beyond keepalive: briefly");
    sg_h2_pool_stream_open(&c[0].m);   /* busy again: no longer idle */
    cr_assert_eq(sg_h2_pool_idle(&c[3].m), SG_H2_KEEP_BRIEFLY);
    sg_h2_pool_leave(&c[1].m);         /* an idle one closed: room again */
    cr_assert_eq(sg_h2_pool_idle(&c[2].m), SG_H2_KEEP, "idle again: counted once");
    for (int i = 0; i < 4; i++) sg_h2_pool_leave(&c[i].m);
    sg_pool_retire(&p);
}

Test(h2_pool, keepalive_0_still_keeps_one_per_peer)
{
    sg_pool p = { 0 };
    sg_upstream_conf u = upstream(0);
    sg_h2_pool *hp = sg_h2_pool_of(&p, &u);
    fake_conn a, b, c;
    add(hp, &a, 0);
    add(hp, &b, 0);
    add(hp, &c, 1);
    cr_assert_eq(sg_h2_pool_idle(&a.m), SG_H2_KEEP, "multiplexing: one is worth keeping");
    cr_assert_eq(sg_h2_pool_idle(&b.m), SG_H2_KEEP_BRIEFLY);
    cr_assert_eq(sg_h2_pool_idle(&c.m), SG_H2_KEEP, "per peer");
    sg_h2_pool_leave(&a.m);
    sg_h2_pool_leave(&b.m);
    sg_h2_pool_leave(&c.m);
    sg_pool_retire(&p);
}

Test(h2_pool, retiring_closes_idle_ones_and_drains_busy_ones)
{
    sg_pool p = { 0 };
    sg_upstream_conf u = upstream(32);
    sg_h2_pool *hp = sg_h2_pool_of(&p, &u);
    fake_conn idle, busy;
    add(hp, &idle, 0);
    add(hp, &busy, 0);
    idle.close_on_retire = true;
    sg_h2_pool_idle(&idle.m);
    open_streams(&busy, 3);
    sg_pool_retire(&p);
    cr_assert_eq(idle.retired, 1);
    cr_assert_null(idle.m.pool, "the idle one left");
    cr_assert_eq(busy.retired, 1);
    cr_assert(busy.m.closing, "the busy one takes no new stream");
    cr_assert_eq(p.h2, hp, "kept while a member lives");
    cr_assert(sg_h2_pool_retired(hp));
    cr_assert_null(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL));
    for (int i = 0; i < 3; i++) sg_h2_pool_stream_close(&busy.m);
    cr_assert_eq(sg_h2_pool_idle(&busy.m), SG_H2_CLOSE, "done: closes instead of idling");
    sg_h2_pool_leave(&busy.m);
    cr_assert_null(p.h2, "the last member freed the pool");

    /* An exchange of the old generation may still start an attempt: its
     * connection is not kept once done. */
    hp = sg_h2_pool_of(&p, &u);
    cr_assert(sg_h2_pool_retired(hp));
    fake_conn late;
    add(hp, &late, 0);
    cr_assert_eq(sg_h2_pool_idle(&late.m), SG_H2_CLOSE);
    sg_h2_pool_leave(&late.m);
    cr_assert_null(p.h2);
}

Test(h2_pool, tls_and_cleartext_connections_are_not_mixed)
{
    sg_pool p = { 0 };
    sg_upstream_conf u = upstream(0);
    sg_h2_pool *hp = sg_h2_pool_of(&p, &u);
    /* Two client contexts: their addresses are all the pool compares. */
    static char ctx_a, ctx_b;
    static const char name_copy[] = "api.test";   /* another copy of the same name */
    const sg_tls_key a = { (const struct ssl_ctx_st *)&ctx_a, SG_STR("api.test") },
                     a_other_name = { (const struct ssl_ctx_st *)&ctx_a, SG_STR("www.test") },
                     a_same = { (const struct ssl_ctx_st *)&ctx_a, { name_copy, 8 } },
                     b = { (const struct ssl_ctx_st *)&ctx_b, SG_STR("api.test") };
    fake_conn plain, tls;
    add(hp, &plain, 0);
    add_tls(hp, &tls, 0, &a);
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &cleartext, NULL), &plain.m, "a cleartext stream: the h2c one");
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &a, NULL), &tls.m, "a grpcs:// stream: the TLS one");
    cr_assert_eq(sg_h2_pool_pick(hp, &peers[0], &a_same, NULL), &tls.m, "names compare by value");
    cr_assert_null(sg_h2_pool_pick(hp, &peers[0], &a_other_name, NULL), "another SNI: a connection of its own");
    cr_assert_null(sg_h2_pool_pick(hp, &peers[0], &b, NULL), "other TLS settings: a connection of their own");
    cr_assert_eq(sg_h2_pool_idle(&plain.m), SG_H2_KEEP);
    cr_assert_eq(sg_h2_pool_idle(&tls.m), SG_H2_KEEP, "keepalive 0 keeps one per peer and key");
    sg_h2_pool_leave(&plain.m);
    sg_h2_pool_leave(&tls.m);
    sg_pool_retire(&p);
}
