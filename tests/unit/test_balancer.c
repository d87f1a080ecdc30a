/* Load balancers: the orders and failover a user of nginx 1.22 observes. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "upstream/balancer.h"
#include "lb_fixture.h"

/* The "temporarily disabled" warnings of the failure tests are expected. */
static void quiet_log(void)
{
    sg_log_open("stderr", SG_LOG_ERROR);
}

typedef lb_fixture fixture;

static void fx_init(fixture *f, sg_lb_method lb)
{
    lb_fx_init(f, lb);
}

/* The servers are 127.0.0.1:8081, :8082, ... in the order added. */
static sg_upstream_server_conf *fx_add(fixture *f, int weight)
{
    return lb_fx_add(f, 8081 + (int)f->u.nservers, weight);
}

/* One request's attempts: its own tried bitmap. */
typedef struct request {
    uint64_t tried[4];
    sg_pick_ctx ctx;
    struct sockaddr_storage client;
} request;

static void req_init(request *r, uint64_t now_ms)
{
    memset(r, 0, sizeof(*r));
    r->ctx.tried = r->tried;
    r->ctx.now_ms = now_ms;
}

static void req_client(request *r, const char *ip)
{
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r->client;
        s6->sin6_family = AF_INET6;
        cr_assert_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&r->client;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(40000);
        cr_assert_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    r->ctx.client = (const struct sockaddr *)&r->client;
}

/* A whole request that succeeds on its first peer: returns the peer's
 * server index, -1 when nothing could be picked. */
static int one_request(sg_balancer *b, const char *client, uint64_t now_ms, bool fail)
{
    request r;
    req_init(&r, now_ms);
    if (client)
        req_client(&r, client);
    sg_peer *p = sg_balancer_pick(b, &r.ctx);
    if (p == NULL)
        return -1;
    sg_balancer_done(b, p, fail, now_ms);
    return p->index;
}

/* Letters of the servers chosen by n successive successful requests. */
static void order(sg_balancer *b, int n, uint64_t now_ms, char *out)
{
    for (int i = 0; i < n; i++) {
        int idx = one_request(b, NULL, now_ms, false);
        out[i] = idx < 0 ? '-' : (char)('A' + idx);
    }
    out[n] = '\0';
}

/* ---------------- round robin ---------------- */

Test(round_robin, equal_weights_alternate, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);
    fx_add(&f, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    char got[16];
    order(b, 6, 0, got);
    cr_assert_str_eq(got, "ABABAB");
    sg_balancer_free(b);
}

Test(round_robin, weights_1_2_are_smooth, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);
    fx_add(&f, 2);
    sg_balancer *b = sg_balancer_new(&f.u);
    char got[16];
    order(b, 6, 0, got);
    cr_assert_str_eq(got, "BABBAB");

    int count[2] = {0, 0};
    for (int i = 0; i < 300; i++)
        count[one_request(b, NULL, 0, false)]++;
    cr_assert_eq(count[0], 100);
    cr_assert_eq(count[1], 200);
    sg_balancer_free(b);
}

Test(round_robin, weights_5_1_1_nginx_sequence, .init = quiet_log)
{
    /* The example of nginx's smooth weighted round robin: a a b a c a a. */
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 5);
    fx_add(&f, 1);
    fx_add(&f, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    char got[16];
    order(b, 14, 0, got);
    cr_assert_str_eq(got, "AABACAAAABACAA");
    sg_balancer_free(b);
}

Test(round_robin, down_server_never_picked, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1)->down = true;
    fx_add(&f, 1);
    fx_add(&f, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    char got[128];
    order(b, 100, 0, got);
    cr_assert_null(strchr(got, 'A'));
    cr_assert_null(strchr(got, '-'));
    sg_balancer_free(b);
}

Test(round_robin, tried_peers_not_repeated_within_request, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);
    fx_add(&f, 3);
    fx_add(&f, 1);
    f.s[0].max_fails = f.s[1].max_fails = f.s[2].max_fails = 0;
    sg_balancer *b = sg_balancer_new(&f.u);
    cr_assert_eq(sg_balancer_tried_words(b), 1);

    request r;
    req_init(&r, 0);
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 3; i++) {
        sg_peer *p = sg_balancer_pick(b, &r.ctx);
        cr_assert_not_null(p);
        cr_assert_not(seen[p->index], "server %d picked twice", p->index);
        seen[p->index] = true;
        sg_balancer_done(b, p, true, 0);
    }
    cr_assert_null(sg_balancer_pick(b, &r.ctx), "all tried: no peer left");
    sg_balancer_free(b);
}

Test(round_robin, many_servers_tried_bitmap, .init = quiet_log)
{
    /* 70 servers need two bitmap words. */
    sg_upstream_server_conf s[70];
    memset(s, 0, sizeof(s));
    for (int i = 0; i < 70; i++) {
        s[i].name = "x";
        s[i].weight = 1;
        s[i].backup = i >= 65;
    }
    sg_upstream_conf u = { .name = "big", .servers = s, .nservers = 70 };
    sg_balancer *b = sg_balancer_new(&u);
    cr_assert_eq(sg_balancer_tried_words(b), 2);

    uint64_t tried[2] = {0, 0};
    sg_pick_ctx ctx = { .tried = tried };
    for (int i = 0; i < 70; i++) {
        sg_peer *p = sg_balancer_pick(b, &ctx);
        cr_assert_not_null(p);
        /* the 65 primaries first, then the 5 backups */
        cr_assert_eq(p->conf->backup, i >= 65);
    }
    cr_assert_null(sg_balancer_pick(b, &ctx));
    sg_balancer_free(b);
}

/* ---------------- failure accounting ---------------- */

/* Requests until one lands on server `idx` (which then fails or not);
 * returns how many requests that took, 0 if none of `limit` did. */
static int until_server(sg_balancer *b, int idx, int limit, uint64_t now_ms, bool fail)
{
    for (int i = 1; i <= limit; i++) {
        request r;
        req_init(&r, now_ms);
        sg_peer *p = sg_balancer_pick(b, &r.ctx);
        bool hit = p && p->index == idx;
        if (p)
            sg_balancer_done(b, p, hit && fail, now_ms);
        if (hit)
            return i;
    }
    return 0;
}

Test(lb_failures, max_fails_2_fail_timeout_2s, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    sg_upstream_server_conf *a = fx_add(&f, 1);
    fx_add(&f, 1);
    a->max_fails = 2;
    a->fail_timeout_ms = 2000;
    sg_balancer *b = sg_balancer_new(&f.u);

    cr_assert_eq(one_request(b, NULL, 1000, true), 0);     /* A fails once */
    cr_assert_eq(one_request(b, NULL, 1000, false), 1);
    cr_assert_eq(one_request(b, NULL, 1100, true), 0, "one failure is not enough");
    /* A failed twice: skipped for fail_timeout after the last failure. */
    for (int i = 0; i < 10; i++)
        cr_assert_eq(one_request(b, NULL, 1100 + 100 * (uint64_t)i, false), 1);
    cr_assert_eq(one_request(b, NULL, 3100, false), 1, "still within fail_timeout");

    /* Past fail_timeout A gets its trial within the next two requests. */
    cr_assert_neq(until_server(b, 0, 2, 3101, false), 0);

    /* The trial succeeded: A is back in rotation and its count starts
     * over, so a single new failure does not take it out. */
    char got[8];
    order(b, 4, 3200, got);
    cr_assert_str_eq(got, "BABA");
    cr_assert_neq(until_server(b, 0, 2, 3300, true), 0);
    order(b, 4, 3300, got);
    cr_assert_str_eq(got, "BABA");
    sg_balancer_free(b);
}

Test(lb_failures, failed_trial_disables_again, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1)->fail_timeout_ms = 2000;
    fx_add(&f, 1)->max_fails = 0;
    sg_balancer *b = sg_balancer_new(&f.u);

    cr_assert_eq(one_request(b, NULL, 0, true), 0);
    cr_assert_eq(until_server(b, 0, 10, 1000, false), 0, "disabled");
    /* Each failure took A's effective weight from 1 to 0; it climbs back
     * one step per pick, so A's turn comes on the third request. */
    cr_assert_eq(until_server(b, 0, 3, 2001, true), 3, "trial, which fails");
    cr_assert_eq(until_server(b, 0, 10, 4001, false), 0, "disabled again");
    cr_assert_eq(until_server(b, 0, 3, 4002, false), 3, "second trial");
    sg_balancer_free(b);
}

Test(lb_failures, max_fails_0_never_marks, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1)->max_fails = 0;
    fx_add(&f, 1)->max_fails = 0;
    sg_balancer *b = sg_balancer_new(&f.u);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(one_request(b, NULL, 0, true), i % 2);
    sg_balancer_free(b);
}

Test(lb_failures, single_server_never_marked, .init = quiet_log)
{
    /* nginx: a lone server is always tried, whatever its failures. */
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(one_request(b, NULL, 0, true), 0);
    sg_balancer_free(b);

    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1)->down = true;
    b = sg_balancer_new(&f.u);
    cr_assert_eq(one_request(b, NULL, 0, false), -1);
    sg_balancer_free(b);
}

Test(lb_failures, next_upstream_within_request, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);
    fx_add(&f, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    request r;
    req_init(&r, 0);
    sg_peer *p = sg_balancer_pick(b, &r.ctx);
    cr_assert_eq(p->index, 0);
    sg_balancer_done(b, p, true, 0);
    p = sg_balancer_pick(b, &r.ctx);
    cr_assert_eq(p->index, 1);
    sg_balancer_done(b, p, true, 0);
    cr_assert_null(sg_balancer_pick(b, &r.ctx));
    /* Both failed: a new request finds nothing until fail_timeout. */
    cr_assert_eq(one_request(b, NULL, 5000, false), -1);
    cr_assert_geq(one_request(b, NULL, 10001, false), 0);
    sg_balancer_free(b);
}

Test(lb_failures, temporarily_disabled_is_logged, .init = quiet_log)
{
    char path[] = "/tmp/sg_balancer_logXXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert(sg_log_open(path, SG_LOG_WARN));

    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1)->max_fails = 2;
    fx_add(&f, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    cr_assert_eq(one_request(b, NULL, 0, true), 0);
    cr_assert_eq(one_request(b, NULL, 0, false), 1);
    cr_assert_eq(one_request(b, NULL, 0, true), 0);
    sg_balancer_free(b);
    sg_log_open("stderr", SG_LOG_WARN);

    char buf[4096] = {0};
    FILE *fp = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    unlink(path);
    buf[n] = '\0';
    const char *line = strstr(buf, "[warn]");
    cr_assert_not_null(line, "log: %s", buf);
    cr_assert_not_null(strstr(line, "upstream server temporarily disabled"));
    cr_assert_not_null(strstr(line, "127.0.0.1:8081"));
    cr_assert_null(strstr(line + 1, "[warn]"), "only the second failure disables");
}

/* ---------------- backup ---------------- */

Test(lb_backup, used_only_when_primaries_unavailable, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);                     /* A */
    fx_add(&f, 1)->backup = true;      /* B */
    sg_balancer *b = sg_balancer_new(&f.u);
    char got[16];
    order(b, 4, 0, got);
    cr_assert_str_eq(got, "AAAA");

    cr_assert_eq(one_request(b, NULL, 1000, true), 0);     /* A fails */
    order(b, 4, 5000, got);
    cr_assert_str_eq(got, "BBBB");
    order(b, 2, 11001, got);                                /* fail_timeout over */
    cr_assert_str_eq(got, "AA");
    sg_balancer_free(b);

    f.s[0].down = true;
    b = sg_balancer_new(&f.u);
    order(b, 3, 0, got);
    cr_assert_str_eq(got, "BBB");
    sg_balancer_free(b);
}

Test(lb_backup, request_retries_on_backup_then_stays_there, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);                     /* A */
    fx_add(&f, 1);                     /* B */
    fx_add(&f, 1)->backup = true;      /* C */
    fx_add(&f, 2)->backup = true;      /* D */
    sg_balancer *b = sg_balancer_new(&f.u);
    request r;
    req_init(&r, 0);
    const char *want = "ABDC";
    for (int i = 0; i < 4; i++) {
        sg_peer *p = sg_balancer_pick(b, &r.ctx);
        cr_assert_not_null(p);
        cr_assert_eq('A' + p->index, want[i], "attempt %d got %c", i, 'A' + p->index);
        sg_balancer_done(b, p, true, 0);
    }
    cr_assert_null(sg_balancer_pick(b, &r.ctx));
    sg_balancer_free(b);
}

/* ---------------- least_conn ---------------- */

Test(least_conn, picks_the_idle_server, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_LEAST_CONN);
    fx_add(&f, 1);
    fx_add(&f, 1);
    sg_balancer *b = sg_balancer_new(&f.u);

    request r1, r2, r3;
    req_init(&r1, 0);
    req_init(&r2, 0);
    req_init(&r3, 0);
    sg_peer *a = sg_balancer_pick(b, &r1.ctx);     /* long-lived exchange */
    cr_assert_eq(a->index, 0);
    cr_assert_eq(a->active, 1);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(one_request(b, NULL, 0, false), 1, "A is busy");
    sg_peer *p2 = sg_balancer_pick(b, &r2.ctx);
    cr_assert_eq(p2->index, 1);
    sg_peer *p3 = sg_balancer_pick(b, &r3.ctx);    /* tie 1:1 */
    cr_assert_not_null(p3);
    sg_balancer_done(b, a, false, 0);
    sg_balancer_done(b, p3, false, 0);
    cr_assert_eq(one_request(b, NULL, 0, false), 0, "A idle again, B still busy");
    sg_balancer_done(b, p2, false, 0);
    sg_balancer_free(b);
}

Test(least_conn, ties_are_round_robin, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_LEAST_CONN);
    fx_add(&f, 1);
    fx_add(&f, 2);
    sg_balancer *b = sg_balancer_new(&f.u);
    char got[16];
    order(b, 6, 0, got);     /* all idle each time: plain weighted round robin */
    cr_assert_str_eq(got, "BABBAB");
    sg_balancer_free(b);
}

Test(least_conn, active_relative_to_weight, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_LEAST_CONN);
    fx_add(&f, 1);
    fx_add(&f, 3);
    sg_balancer *b = sg_balancer_new(&f.u);
    request r[8];
    int count[2] = {0, 0};
    for (int i = 0; i < 8; i++) {
        req_init(&r[i], 0);
        count[sg_balancer_pick(b, &r[i].ctx)->index]++;
    }
    /* held open, 8 exchanges settle 1:3 */
    cr_assert_eq(count[0], 2);
    cr_assert_eq(count[1], 6);
    sg_balancer_free(b);
}

Test(least_conn, skips_failed_and_uses_backup, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_LEAST_CONN);
    fx_add(&f, 1);
    fx_add(&f, 1)->backup = true;
    sg_balancer *b = sg_balancer_new(&f.u);
    cr_assert_eq(one_request(b, NULL, 0, true), 0);
    cr_assert_eq(one_request(b, NULL, 100, false), 1);
    cr_assert_eq(one_request(b, NULL, 10001, false), 0);
    sg_balancer_free(b);
}

/* ---------------- ip_hash ---------------- */

static sg_balancer *iph_new(fixture *f, int n)
{
    fx_init(f, SG_LB_IP_HASH);
    for (int i = 0; i < n; i++)
        fx_add(f, 1);
    return sg_balancer_new(&f->u);
}

Test(ip_hash, same_client_same_server, .init = quiet_log)
{
    fixture f;
    sg_balancer *b = iph_new(&f, 3);
    int first = one_request(b, "203.0.113.7", 0, false);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(one_request(b, "203.0.113.7", 0, false), first);
    sg_balancer_free(b);
}

Test(ip_hash, nginx_mapping, .init = quiet_log)
{
    /* 127.0.0.1: hash 89 -> (89*113+127)%6271 = 3913 -> (3913*113+0)%6271
     * = 3199 -> (3199*113+0)%6271 = 4040; 4040 % 2 = 0: the first server. */
    fixture f;
    sg_balancer *b = iph_new(&f, 2);
    cr_assert_eq(one_request(b, "127.0.0.1", 0, false), 0);
    cr_assert_eq(one_request(b, "10.0.0.1", 0, false), 1);   /* hash 2565 */
    cr_assert_eq(one_request(b, "10.0.1.1", 0, false), 0);   /* hash 2566 */
    cr_assert_eq(one_request(b, "::1", 0, false), 1);        /* all 16 bytes: 5945 */
    sg_balancer_free(b);

    b = iph_new(&f, 3);
    cr_assert_eq(one_request(b, "127.0.0.1", 0, false), 2);  /* 4040 % 3 */
    cr_assert_eq(one_request(b, "192.168.1.10", 0, false), 1); /* 154 % 3 */
    sg_balancer_free(b);

    /* weights 1:2, 10.0.0.1: 2565 % 3 = 0 -> first server */
    fx_init(&f, SG_LB_IP_HASH);
    fx_add(&f, 1);
    fx_add(&f, 2);
    b = sg_balancer_new(&f.u);
    cr_assert_eq(one_request(b, "10.0.0.1", 0, false), 0);
    cr_assert_eq(one_request(b, "127.0.0.1", 0, false), 1);  /* 4040 % 3 = 2 */
    sg_balancer_free(b);
}

Test(ip_hash, same_slash24_same_server, .init = quiet_log)
{
    fixture f;
    sg_balancer *b = iph_new(&f, 5);
    char ip[32];
    for (int net = 0; net < 50; net++) {
        snprintf(ip, sizeof(ip), "10.20.%d.1", net);
        int want = one_request(b, ip, 0, false);
        for (int host = 2; host < 255; host += 31) {
            snprintf(ip, sizeof(ip), "10.20.%d.%d", net, host);
            cr_assert_eq(one_request(b, ip, 0, false), want, "%s", ip);
        }
    }
    sg_balancer_free(b);
}

Test(ip_hash, spreads_networks_evenly, .init = quiet_log)
{
    fixture f;
    sg_balancer *b = iph_new(&f, 2);
    int count[2] = {0, 0};
    char ip[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.9", i / 256, i % 256);
        count[one_request(b, ip, 0, false)]++;
    }
    cr_assert(count[0] > 400 && count[1] > 400, "%d / %d", count[0], count[1]);
    sg_balancer_free(b);
}

Test(ip_hash, rehash_when_server_unavailable, .init = quiet_log)
{
    /* 127.0.0.1 hashes 4040, 5510, 4957, ...: with 2 servers 0, 0, 1. */
    fixture f;
    sg_balancer *b = iph_new(&f, 2);
    f.s[0].down = true;
    cr_assert_eq(one_request(b, "127.0.0.1", 0, false), 1);
    sg_balancer_free(b);

    /* with 3 servers 2, 2, 1: after a failure on 2 the retry goes to 1,
     * and new requests too while 2 is failed. */
    b = iph_new(&f, 3);
    request r;
    req_init(&r, 0);
    req_client(&r, "127.0.0.1");
    sg_peer *p = sg_balancer_pick(b, &r.ctx);
    cr_assert_eq(p->index, 2);
    sg_balancer_done(b, p, true, 0);
    p = sg_balancer_pick(b, &r.ctx);
    cr_assert_eq(p->index, 1);
    sg_balancer_done(b, p, false, 0);
    cr_assert_eq(one_request(b, "127.0.0.1", 100, false), 1);
    cr_assert_eq(one_request(b, "127.0.0.1", 10001, false), 2, "back after fail_timeout");
    sg_balancer_free(b);
}

Test(ip_hash, falls_back_to_round_robin, .init = quiet_log)
{
    /* Only one of 8 servers usable: 20 misses in a row are likely for
     * some clients, and every client must still get the usable one. */
    fixture f;
    sg_balancer *b;
    fx_init(&f, SG_LB_IP_HASH);
    for (int i = 0; i < 8; i++)
        fx_add(&f, 1)->down = i != 5;
    b = sg_balancer_new(&f.u);
    char ip[32];
    for (int i = 0; i < 200; i++) {
        snprintf(ip, sizeof(ip), "10.1.%d.1", i);
        cr_assert_eq(one_request(b, ip, 0, false), 5);
    }
    sg_balancer_free(b);
}

Test(ip_hash, unix_clients_share_nginx_pseudo_address, .init = quiet_log)
{
    /* nginx hashes the bytes 0 0 0 for unix-socket clients: hash 295. */
    fixture f;
    sg_balancer *b = iph_new(&f, 2);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    for (int i = 0; i < 5; i++) {
        uint64_t tried = 0;
        sg_pick_ctx ctx = { .client = (struct sockaddr *)&sun, .tried = &tried };
        sg_peer *p = sg_balancer_pick(b, &ctx);
        cr_assert_eq(p->index, 1);
        sg_balancer_done(b, p, false, 0);
    }
    /* no client address at all: round robin */
    cr_assert_eq(one_request(b, NULL, 0, false), 0);
    cr_assert_eq(one_request(b, NULL, 0, false), 1);
    sg_balancer_free(b);
}

/* ---------------- threads ---------------- */

typedef struct thread_arg {
    sg_balancer *b;
    int count[2];
} thread_arg;

static void *hammer(void *arg)
{
    thread_arg *t = arg;
    for (int i = 0; i < 30000; i++)
        t->count[one_request(t->b, NULL, 0, false)]++;
    return NULL;
}

Test(lb_threads, shared_balancer_keeps_exact_shares, .init = quiet_log)
{
    fixture f;
    fx_init(&f, SG_LB_ROUND_ROBIN);
    fx_add(&f, 1);
    fx_add(&f, 2);
    sg_balancer *b = sg_balancer_new(&f.u);
    thread_arg t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (thread_arg){ .b = b };
        pthread_create(&th[i], NULL, hammer, &t[i]);
    }
    int total[2] = {0, 0};
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total[0] += t[i].count[0];
        total[1] += t[i].count[1];
    }
    cr_assert_eq(total[0], 40000);
    cr_assert_eq(total[1], 80000);
    cr_assert_eq(b->peers[0].active + b->peers[1].active, 0);
    sg_balancer_free(b);
}
