/* Health checks: what a check reads from a peer and how `match` judges it. */
#include <criterion/criterion.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/health_conf.h"
#include "upstream/health.h"

static sg_conf *load(const char *text)
{
    char err[512];
    sg_conf *c = sg_conf_load_string(text, strlen(text), "t.conf", "/tmp", err, sizeof(err));
    cr_assert(c, "%s", err);
    return c;
}

static bool judge(const sg_hc_match *m, const char *resp)
{
    int status;
    const char *hs, *body;
    size_t hl, bl;
    cr_assert(sg_health_parse_http1(resp, strlen(resp), &status, &hs, &hl, &body, &bl));
    return sg_hc_match_http(m, status, hs, hl, body, bl);
}

Test(health, parse_http1)
{
    const char *r = "HTTP/1.1 204 No Content\r\nA: b\r\nContent-Length: 2\r\n\r\nokEXTRA";
    int status;
    const char *hs, *body;
    size_t hl, bl;
    cr_assert(sg_health_parse_http1(r, strlen(r), &status, &hs, &hl, &body, &bl));
    cr_assert_eq(status, 204);
    cr_assert_eq(bl, 2);
    cr_assert(strncmp(body, "ok", 2) == 0);
    cr_assert(strncmp(hs, "A: b\r\n", 6) == 0);
    cr_assert_not(sg_health_parse_http1("HTTP/1.1 200 OK\r\n", 17, &status, &hs, &hl, &body, &bl));
    cr_assert_not(sg_health_parse_http1("HTTP/1.1 2x0 OK\r\n\r\n", 19, &status, &hs, &hl, &body, &bl));
}

Test(health, default_match_is_2xx_3xx)
{
    cr_assert(judge(NULL, "HTTP/1.0 200 OK\r\n\r\n"));
    cr_assert(judge(NULL, "HTTP/1.0 301 Moved\r\n\r\n"));
    cr_assert_not(judge(NULL, "HTTP/1.0 404 Not Found\r\n\r\n"));
    cr_assert_not(judge(NULL, "HTTP/1.0 500 Oops\r\n\r\n"));
}

Test(health, match_conditions)
{
    sg_conf *c = load("events {}\nhttp {\n"
                      "  match m { status 200 204; status ! 500-599; header X-A = b; header ! X-Bad;"
                      "            header Content-Type ~ \"^text/\"; body ~ \"o+k\"; }\n}\n");
    const sg_hc_match *m = c->health->matches[0];
    cr_assert(judge(m, "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Type: text/plain\r\n\r\nall ok"));
    cr_assert_not(judge(m, "HTTP/1.1 201 OK\r\nX-A: b\r\nContent-Type: text/plain\r\n\r\nall ok"));
    cr_assert_not(judge(m, "HTTP/1.1 200 OK\r\nX-A: c\r\nContent-Type: text/plain\r\n\r\nall ok"));
    cr_assert_not(judge(m, "HTTP/1.1 200 OK\r\nX-A: b\r\nX-Bad: 1\r\nContent-Type: text/plain\r\n\r\nall ok"));
    cr_assert_not(judge(m, "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Type: image/png\r\n\r\nall ok"));
    cr_assert_not(judge(m, "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Type: text/plain\r\n\r\nall bad"));
    sg_conf_unref(c);
}

Test(health, grpc_serving_status)
{
    cr_assert_eq(sg_health_grpc_serving_status((const uint8_t *)"\0\0\0\0\x02\x08\x01", 7), 1);
    cr_assert_eq(sg_health_grpc_serving_status((const uint8_t *)"\0\0\0\0\x02\x08\x02", 7), 2);
    cr_assert_eq(sg_health_grpc_serving_status((const uint8_t *)"\0\0\0\0\0", 5), 0);
    cr_assert_eq(sg_health_grpc_serving_status((const uint8_t *)"\0\0\0\0\x09\x08\x01", 7), -1);
    cr_assert_eq(sg_health_grpc_serving_status((const uint8_t *)"\1\0\0\0\x02\x08\x01", 7), -1);
}

/* ---------------- every balancer honours health_down ---------------- */

#include "lb_fixture.h"

static int pick_once(sg_balancer *b, int salt)
{
    uint64_t tried[4] = { 0 };
    struct sockaddr_in client = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001u + ((uint32_t)salt << 8)) };
    char key[16];
    snprintf(key, sizeof(key), "k%d", salt);
    sg_pick_ctx ctx = { .client = (const struct sockaddr *)&client, .now_ms = 1000, .tried = tried,
                        .key = key, .key_len = strlen(key) };
    sg_peer *p = sg_balancer_pick(b, &ctx);
    if (!p) return -1;
    sg_balancer_done(b, p, false, 1000);
    return p->index;
}

Test(health, unhealthy_peer_skipped_by_every_method)
{
    const sg_lb_method methods[] = { SG_LB_ROUND_ROBIN, SG_LB_LEAST_CONN, SG_LB_IP_HASH, SG_LB_HASH,
                                     SG_LB_HASH_CONSISTENT, SG_LB_RANDOM, SG_LB_RANDOM_TWO };
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
        lb_fixture f;
        lb_fx_init(&f, methods[m]);
        lb_fx_add(&f, 8001, 1);
        lb_fx_add(&f, 8002, 1);
        lb_fx_add(&f, 8003, 1);
        sg_balancer *b = sg_balancer_new(&f.u);
        atomic_store(&b->peers[1].health_down, 1);
        for (int i = 0; i < 200; i++) {
            int idx = pick_once(b, i);
            cr_assert(idx == 0 || idx == 2, "method %zu picked %d", m, idx);
        }
        atomic_store(&b->peers[1].health_down, 0);
        bool seen = false;
        for (int i = 0; i < 200 && !seen; i++) seen = pick_once(b, i) == 1;
        cr_assert(seen, "method %zu never picked the recovered peer", m);
        sg_balancer_free(b);
    }
}

Test(health, lone_unhealthy_server_not_picked)
{
    lb_fixture f;
    lb_fx_init(&f, SG_LB_ROUND_ROBIN);
    lb_fx_add(&f, 8001, 1);
    sg_balancer *b = sg_balancer_new(&f.u);
    atomic_store(&b->peers[0].health_down, 2);
    cr_assert_eq(pick_once(b, 0), -1);
    atomic_store(&b->peers[0].health_down, 0);
    cr_assert_eq(pick_once(b, 0), 0);
    sg_balancer_free(b);
}
