/* hash KEY [consistent]: the peers nginx 1.22 picks for a key.
 *
 * The expected indexes come from nginx itself (Debian's nginx 1.22 with
 * libnginx-mod-stream, `hash $remote_addr [consistent]`, servers
 * 127.0.0.1:8081..8083 with weights 1, 2, 1); tests/integration/test_stream.py
 * compares live nginx and streamgate the same way. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "upstream/balancer.h"
#include "lb_fixture.h"

typedef lb_fixture hb_fixture;

static void hb_init(hb_fixture *f, sg_lb_method lb)
{
    lb_fx_init(f, lb);
    sg_log_open("stderr", SG_LOG_ERROR);   /* "temporarily disabled" warnings are expected */
}

static sg_upstream_server_conf *hb_add(hb_fixture *f, int port, int weight)
{
    return lb_fx_add(f, port, weight);
}

/* 127.0.0.1:8081 weight 1, :8082 weight 2, :8083 weight 1 (no balancer yet). */
static void hb_three_servers(hb_fixture *f, sg_lb_method lb)
{
    hb_init(f, lb);
    hb_add(f, 8081, 1);
    hb_add(f, 8082, 2);
    hb_add(f, 8083, 1);
}

static sg_balancer *hb_three(hb_fixture *f, sg_lb_method lb)
{
    hb_three_servers(f, lb);
    return sg_balancer_new(&f->u);
}

typedef struct hb_session {
    uint64_t tried[2];
    sg_pick_ctx ctx;
} hb_session;

static void hb_session_init(hb_session *s, const char *key)
{
    memset(s, 0, sizeof(*s));
    s->ctx.tried = s->tried;
    s->ctx.now_ms = 1000000;
    s->ctx.key = key;
    s->ctx.key_len = strlen(key);
}

/* Index of the server a new session with `key` is sent to (-1: none). */
static int pick_index(sg_balancer *b, const char *key)
{
    hb_session s;
    hb_session_init(&s, key);
    sg_peer *p = sg_balancer_pick(b, &s.ctx);
    if (!p) return -1;
    sg_balancer_done(b, p, false, s.ctx.now_ms);
    return p->index;
}

static const char *const keys[] = { "10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.1.7", "client-42" };

Test(hash, same_peers_as_nginx)
{
    static const int want[] = { 1, 2, 0, 1, 2 };
    hb_fixture f;
    sg_balancer *b = hb_three(&f, SG_LB_HASH);
    for (size_t i = 0; i < 5; i++)
        cr_expect_eq(pick_index(b, keys[i]), want[i], "key %s", keys[i]);
    sg_balancer_free(b);
}

Test(hash, a_key_always_reaches_the_same_peer)
{
    hb_fixture f;
    sg_balancer *b = hb_three(&f, SG_LB_HASH);
    char key[32];
    for (int k = 0; k < 200; k++) {
        snprintf(key, sizeof(key), "172.16.%d.%d", k / 50, k % 50);
        int first = pick_index(b, key);
        cr_assert_geq(first, 0);
        for (int again = 0; again < 5; again++) cr_assert_eq(pick_index(b, key), first, "key %s", key);
    }
    sg_balancer_free(b);
}

Test(hash, weights_share_the_keys)
{
    hb_fixture f;
    sg_balancer *b = hb_three(&f, SG_LB_HASH);
    int count[3] = { 0 };
    char key[32];
    for (int k = 0; k < 4000; k++) {
        snprintf(key, sizeof(key), "10.%d.%d.%d", k / 65536, (k / 256) % 256, k % 256);
        count[pick_index(b, key)]++;
    }
    /* 1:2:1 */
    cr_expect(count[1] > 1700 && count[1] < 2300, "%d %d %d", count[0], count[1], count[2]);
    cr_expect(count[0] > 800 && count[0] < 1200, "%d %d %d", count[0], count[1], count[2]);
    sg_balancer_free(b);
}

/* A down server: nginx rehashes ("1" KEY, "2" KEY, ...) to the next peer. */
Test(hash, down_peer_rehashes_as_nginx)
{
    static const int first[] = { 1, 2, 0, 1, 2 }, next[] = { 2, 1, 1, 0, 0 };
    for (size_t i = 0; i < 5; i++) {
        hb_fixture f;
        hb_three_servers(&f, SG_LB_HASH);
        f.s[first[i]].down = true;
        sg_balancer *b = sg_balancer_new(&f.u);
        cr_expect_eq(pick_index(b, keys[i]), next[i], "key %s", keys[i]);
        sg_balancer_free(b);
    }
}

/* The session's second attempt (its first peer failed to connect) goes
 * where nginx's would: the walk continues after the first choice. */
/* For each of the five keys: the first pick is first[i]; when it fails,
 * the same session's second pick is next[i]. */
static void expect_second_attempts(sg_lb_method lb, const int first[5], const int next[5])
{
    hb_fixture f;
    sg_balancer *b = hb_three(&f, lb);
    for (size_t i = 0; i < 5; i++) {
        hb_session s;
        hb_session_init(&s, keys[i]);
        sg_peer *p = sg_balancer_pick(b, &s.ctx);
        cr_assert_not_null(p);
        cr_expect_eq(p->index, first[i]);
        sg_balancer_done(b, p, true, s.ctx.now_ms);
        p = sg_balancer_pick(b, &s.ctx);
        cr_assert_not_null(p);
        cr_expect_eq(p->index, next[i], "key %s", keys[i]);
        sg_balancer_done(b, p, false, s.ctx.now_ms);
        b->peers[first[i]].fails = 0;      /* next key starts from a clean state */
    }
    sg_balancer_free(b);
}

Test(hash, second_attempt_continues_the_walk)
{
    static const int first[] = { 1, 2, 0, 1, 2 }, next[] = { 2, 1, 1, 0, 0 };
    expect_second_attempts(SG_LB_HASH, first, next);
}

Test(hash, every_peer_down_gives_none)
{
    hb_fixture f;
    hb_init(&f, SG_LB_HASH);
    hb_add(&f, 8081, 1)->down = true;
    hb_add(&f, 8082, 1)->down = true;
    sg_balancer *b = sg_balancer_new(&f.u);
    cr_expect_eq(pick_index(b, "10.0.0.1"), -1);
    sg_balancer_free(b);
}

/* nginx: an empty key is balanced round robin. */
Test(hash, empty_key_is_round_robin)
{
    hb_fixture f;
    hb_init(&f, SG_LB_HASH);
    hb_add(&f, 8081, 1);
    hb_add(&f, 8082, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    int seq[4];
    for (int i = 0; i < 4; i++) seq[i] = pick_index(b, "");
    cr_expect(seq[0] == 0 && seq[1] == 1 && seq[2] == 0 && seq[3] == 1, "%d %d %d %d",
              seq[0], seq[1], seq[2], seq[3]);
    sg_balancer_free(b);
}

Test(chash, same_peers_as_nginx)
{
    static const int want[] = { 1, 0, 1, 0, 2 };
    hb_fixture f;
    sg_balancer *b = hb_three(&f, SG_LB_HASH_CONSISTENT);
    for (size_t i = 0; i < 5; i++)
        cr_expect_eq(pick_index(b, keys[i]), want[i], "key %s", keys[i]);
    sg_balancer_free(b);
}

Test(chash, down_peer_goes_to_the_next_point)
{
    static const int first[] = { 1, 0, 1, 0, 2 }, next[] = { 2, 1, 0, 1, 0 };
    expect_second_attempts(SG_LB_HASH_CONSISTENT, first, next);
}

/* Servers 127.0.0.1:9001..9005, or the same without `skip` (-1: none). */
static sg_balancer *five(hb_fixture *f, sg_lb_method lb, int skip)
{
    hb_init(f, lb);
    for (int i = 0; i < 5; i++)
        if (i != skip) hb_add(f, 9001 + i, 1);
    return sg_balancer_new(&f->u);
}

static int moved_keys(sg_lb_method lb, int nkeys, int *on_removed)
{
    hb_fixture all, four;
    sg_balancer *a = five(&all, lb, -1), *b = five(&four, lb, 2);
    int moved = 0;
    *on_removed = 0;
    char key[32];
    for (int k = 0; k < nkeys; k++) {
        snprintf(key, sizeof(key), "10.1.%d.%d", k / 256, k % 256);
        int before = pick_index(a, key), after = pick_index(b, key);
        const char *nb = all.s[before].name, *na = four.s[after].name;
        if (before == 2) (*on_removed)++;
        if (strcmp(nb, na) != 0) moved++;
    }
    sg_balancer_free(a);
    sg_balancer_free(b);
    return moved;
}

/* Removing one server of five moves only the keys it had (about 1/5). */
Test(chash, removing_a_server_moves_only_its_keys)
{
    int on_removed, moved = moved_keys(SG_LB_HASH_CONSISTENT, 2000, &on_removed);
    cr_expect_eq(moved, on_removed, "moved %d, on the removed server %d", moved, on_removed);
    cr_expect(moved > 2000 / 10 && moved < 2000 * 3 / 10, "moved %d of 2000", moved);
}

/* The plain hash reshuffles most keys instead (why `consistent` exists). */
Test(hash, removing_a_server_moves_most_keys)
{
    int on_removed, moved = moved_keys(SG_LB_HASH, 2000, &on_removed);
    cr_expect(moved > 2000 / 2, "moved %d of 2000", moved);
}

/* A name that resolved to several addresses is one server on the ring:
 * its addresses share its keys round robin. */
Test(chash, addresses_of_one_name_share_its_points)
{
    hb_fixture f;
    hb_init(&f, SG_LB_HASH_CONSISTENT);
    hb_add(&f, 8081, 1);
    hb_add(&f, 8082, 1);
    hb_add(&f, 8083, 1);
    f.s[2].name = f.s[1].name;          /* "127.0.0.1:8082" twice: as one name with 2 addresses */
    sg_balancer *b = sg_balancer_new(&f.u);
    int count[3] = { 0 };
    char key[32];
    for (int k = 0; k < 3000; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        count[pick_index(b, key)]++;
    }
    /* two names with the same points each (duplicates collapse, as in
     * nginx); the second name's half alternates between its two peers */
    cr_expect(count[0] > 1000 && count[0] < 2000, "%d %d %d", count[0], count[1], count[2]);
    cr_expect(count[1] - count[2] <= 1 && count[2] - count[1] <= 1, "%d %d %d", count[0], count[1], count[2]);
    sg_balancer_free(b);
}
