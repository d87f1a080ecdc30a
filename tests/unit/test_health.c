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
