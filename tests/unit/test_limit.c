/* limit_req / limit_conn: nginx's leaky bucket arithmetic, the zone's
 * accounting and least-recently-used eviction, and the directives. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/limit_conf.h"
#include "conf/stream_conf.h"
#include "core/zone.h"

static char err[2048];

static sg_conf *load(const char *text)
{
    err[0] = '\0';
    return sg_conf_load_string(text, strlen(text), "t.conf", "/srv/sg", err, sizeof(err));
}

static void expect_error(const char *text, const char *msg)
{
    sg_conf *c = load(text);
    if (c) sg_conf_unref(c);
    cr_assert_null(c, "loaded, expected: %s", msg);
    cr_assert_str_eq(err, msg);
}

#define WRAP(body) "events {}\nhttp {\n" body "\n}\n"

Test(leaky, nginx_arithmetic)
{
    /* rate=2r/s is 2000 milli-requests per second: a request 100 ms
     * after one with excess 0 has 1000 - 200 = 800 */
    cr_assert_eq(sg_leaky_excess(0, 2000, 100), 800);
    cr_assert_eq(sg_leaky_excess(800, 2000, 0), 1800);
    /* drained below zero: 0, never negative */
    cr_assert_eq(sg_leaky_excess(1000, 2000, 5000), 0);
    /* 1r/m is 16 milli-requests per second (1000 / 60, truncated as nginx) */
    cr_assert_eq(sg_leaky_excess(0, 16, 1000), 984);
    /* a clock that went back: up to a minute counts as 0 ms, more as 1 ms */
    cr_assert_eq(sg_leaky_excess(500, 2000, -30000), 1500);
    cr_assert_eq(sg_leaky_excess(500, 2000, -90000), 1498);
    /* no overflow for a state never seen ("long ago") */
    cr_assert_eq(sg_leaky_excess(3000, 1000000000, (int64_t)1 << 40), 0);
}

Test(zone, costs_as_nginx_slab)
{
    /* limit_req: 80 bytes of header + a 4-byte address: 128-byte chunks */
    cr_assert_eq(sg_zone_node_cost(SG_ZONE_LIMIT_REQ, 4), 128);
    cr_assert_eq(sg_zone_node_cost(SG_ZONE_LIMIT_REQ, 48), 128);
    cr_assert_eq(sg_zone_node_cost(SG_ZONE_LIMIT_REQ, 49), 256);
    /* limit_conn: 36 + 4 in 64 bytes */
    cr_assert_eq(sg_zone_node_cost(SG_ZONE_LIMIT_CONN, 4), 64);
    /* past half a page: whole pages */
    cr_assert_eq(sg_zone_node_cost(SG_ZONE_LIMIT_REQ, 3000), 4096);
    cr_assert_eq(sg_zone_node_cost(SG_ZONE_LIMIT_REQ, 5000), 8192);
    /* 1 MB keeps about 8,000 limit_req states of one address (nginx's
     * documentation: "about 16 thousand 64-byte states" on 32-bit) */
    uint64_t b = sg_zone_budget(1 << 20);
    cr_assert(b / 128 > 7900 && b / 128 < 8200, "%llu", (unsigned long long)(b / 128));
    cr_assert_eq(sg_zone_budget(SG_ZONE_MIN_SIZE) / 4096, 6);
}

Test(zone, bounded_and_lru)
{
    sg_zone *z = sg_zone_get("unit-lru", SG_ZONE_LIMIT_REQ, SG_ZONE_MIN_SIZE);
    uint64_t cap = sg_zone_capacity(z);
    size_t fits = (size_t)(cap / 128);
    char key[16];
    sg_zone_lock(z);
    for (size_t i = 0; i < fits; i++) {
        int n = snprintf(key, sizeof(key), "k%zu", i);
        cr_assert_not_null(sg_zone_insert(z, sg_zone_hash(key, (size_t)n), key, (size_t)n));
    }
    cr_assert_null(sg_zone_insert(z, sg_zone_hash("extra", 5), "extra", 5), "a full zone takes no more");
    cr_assert_leq(sg_zone_used(z), cap);
    /* k0 is the oldest until it is used again */
    sg_zone_node *k0 = sg_zone_find(z, sg_zone_hash("k0", 2), "k0", 2);
    cr_assert_eq(sg_zone_oldest(z), k0);
    sg_zone_touch(z, k0);
    sg_zone_node *k1 = sg_zone_find(z, sg_zone_hash("k1", 2), "k1", 2);
    cr_assert_eq(sg_zone_oldest(z), k1);
    sg_zone_remove(z, k1);
    cr_assert_not_null(sg_zone_insert(z, sg_zone_hash("extra", 5), "extra", 5), "room again");
    cr_assert_null(sg_zone_find(z, sg_zone_hash("k1", 2), "k1", 2));
    cr_assert_eq(sg_zone_count(z), fits);
    sg_zone_unlock(z);
    /* the same name, use and size is the same zone (reloads keep it) */
    sg_zone *again = sg_zone_get("unit-lru", SG_ZONE_LIMIT_REQ, SG_ZONE_MIN_SIZE);
    cr_assert_eq(again, z);
    sg_zone *other = sg_zone_get("unit-lru", SG_ZONE_LIMIT_CONN, SG_ZONE_MIN_SIZE);
    cr_assert_neq(other, z);
    sg_zone_put(other);
    sg_zone_put(again);
    sg_zone_put(z);
}

Test(limit_conf, directives)
{
    sg_conf *c = load(WRAP("limit_req_zone $binary_remote_addr zone=one:1m rate=30r/m;\n"
                           "limit_req_zone $arg_a zone=two:32k rate=5r/s;\n"
                           "limit_conn_zone $binary_remote_addr zone=addr:1m;\n"
                           "limit_req zone=one burst=5;\n"
                           "server { listen 127.0.0.1:8080;\n"
                           "  location / { }\n"
                           "  location /b { limit_req zone=two burst=3 nodelay; limit_req zone=one delay=2 burst=4;\n"
                           "                limit_req_status 429; limit_req_log_level warn; limit_conn addr 10; }\n"
                           "}"));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nlimit_zones, 3);
    cr_assert_eq(c->limit_zones[0]->rate, 500);     /* 30r/m */
    cr_assert_eq(c->limit_zones[1]->rate, 5000);
    cr_assert_not_null(c->limit_zones[0]->zone);
    const sg_location *root = c->servers[0]->root;
    const sg_loc_conf *a = &root->children[0]->conf, *b = &root->children[1]->conf;
    cr_assert_eq(a->nlimit_reqs, 1, "inherited from http");
    cr_assert_eq(a->limit_reqs[0].burst, 5000);
    cr_assert_eq(a->limit_reqs[0].delay, 0);
    cr_assert_eq(b->nlimit_reqs, 2, "a level with its own lines inherits none");
    cr_assert(b->limit_reqs[0].delay > (uint64_t)1 << 40, "nodelay");
    cr_assert_eq(b->limit_reqs[1].delay, 2000);
    cr_assert_eq(b->limit_req_status, 429);
    cr_assert_eq(sg_limit_log_level(b->limit_req_log_level), SG_LOG_WARN);
    cr_assert_eq(sg_limit_delay_log_level(b->limit_req_log_level), SG_LOG_NOTICE);
    cr_assert_eq(sg_limit_log_level(a->limit_req_log_level), SG_LOG_ERROR, "default");
    cr_assert_eq(b->nlimit_conns, 1);
    cr_assert_eq(b->limit_conns[0].conn, 10);
    sg_conf_unref(c);
}

Test(limit_conf, errors)
{
    expect_error(WRAP("limit_req_zone $binary_remote_addr zone=one:16k rate=1r/s;"),
                 "t.conf:3:36: zone \"one\" is too small");
    expect_error(WRAP("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/h;"),
                 "t.conf:3:48: invalid rate \"rate=1r/h\"");
    expect_error(WRAP("limit_req_zone $binary_remote_addr rate=1r/s x;"),
                 "t.conf:3:46: invalid parameter \"x\"");
    expect_error(WRAP("server { location / { limit_req zone=nope; } }"),
                 "t.conf:3:33: unknown limit_req_zone \"nope\"");
    expect_error(WRAP("limit_conn_zone $remote_addr zone=z:1m;\nserver { limit_conn z 1; limit_conn z 2; }"),
                 "t.conf:4:26: duplicate limit \"z\"");
    expect_error(WRAP("limit_conn_zone $remote_addr zone=z:1m;\nserver { limit_req zone=z; }"),
                 "t.conf:4:20: the shared memory zone \"z\" is already declared for a different use");
    expect_error(WRAP("limit_conn_zone $remote_addr zone=z:1m;\nserver { limit_conn z 0; }"),
                 "t.conf:4:23: invalid number of connections \"0\"");
    expect_error(WRAP("server { limit_req_status 200; }"), "t.conf:3:27: value must be between 400 and 599");
    expect_error(WRAP("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;\n"
                      "server { limit_req zone=one burst=x; }"),
                 "t.conf:4:29: invalid burst value \"burst=x\"");
}

Test(limit_conf, stream)
{
    sg_conf *c = load("events {}\nstream {\n limit_conn_zone $binary_remote_addr$server_port zone=s:1m;\n"
                      " server { listen 127.0.0.1:9000; proxy_pass 127.0.0.1:9001; limit_conn s 2; limit_conn_dry_run on; }\n}\n");
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nlimit_zones, 1);
    cr_assert_eq(c->limit_zones[0]->kind, SG_ZONE_STREAM_LIMIT_CONN);
    sg_conf_unref(c);
}
