/* The header controls' configuration (issue 9): expires values, listen
 * port ranges and so_keepalive, the directives' fields after loading. */
#include <criterion/criterion.h>

#include <string.h>

#include "conf/conf.h"
#include "conf/header_conf.h"

static char err[1024];

static sg_conf *load(const char *text)
{
    err[0] = '\0';
    return sg_conf_load_string(text, strlen(text), "t.conf", "/srv/sg", err, sizeof(err));
}

#define WRAP(body) "events {}\nhttp {\n" body "\n}\n"

Test(header_conf, expires_values)
{
    sg_expires e;
    cr_assert(sg_expires_parse("off", false, &e) && e.kind == SG_EXPIRES_OFF);
    cr_assert(sg_expires_parse("epoch", false, &e) && e.kind == SG_EXPIRES_EPOCH);
    cr_assert(sg_expires_parse("max", false, &e) && e.kind == SG_EXPIRES_MAX);
    cr_assert(sg_expires_parse("2048", false, &e) && e.kind == SG_EXPIRES_ACCESS && e.secs == 2048);
    cr_assert(sg_expires_parse("-1h", false, &e) && e.kind == SG_EXPIRES_ACCESS && e.secs == -3600);
    cr_assert(sg_expires_parse("1h", true, &e) && e.kind == SG_EXPIRES_MODIFIED && e.secs == 3600);
    cr_assert(sg_expires_parse("@15h30m33s", false, &e) && e.kind == SG_EXPIRES_DAILY && e.secs == 55833);
    cr_assert_not(sg_expires_parse("@25h", false, &e));
    cr_assert_not(sg_expires_parse("@1h", true, &e));       /* daily with modified */
    cr_assert_not(sg_expires_parse("epoch", true, &e));
    cr_assert_not(sg_expires_parse("bad", false, &e));
    cr_assert_not(sg_expires_parse("", false, &e));
}

Test(header_conf, listen_ranges)
{
    int lo, hi;
    char text[64];
    cr_assert(sg_hc_listen_range("127.0.0.1:8182-8183", &lo, &hi, text, sizeof(text)));
    cr_assert_eq(lo, 8182);
    cr_assert_eq(hi, 8183);
    cr_assert_str_eq(text, "127.0.0.1:");
    cr_assert(sg_hc_listen_range("[::1]:80-81", &lo, &hi, text, sizeof(text)));
    cr_assert_str_eq(text, "[::1]:");
    cr_assert_not(sg_hc_listen_range("127.0.0.1:8080", &lo, &hi, text, sizeof(text)));
    cr_assert_not(sg_hc_listen_range("[::1]", &lo, &hi, text, sizeof(text)));
    cr_assert_not(sg_hc_listen_range("1.2.3.4:a-b", &lo, &hi, text, sizeof(text)));
}

Test(header_conf, so_keepalive)
{
    sg_listen_conf l;
    memset(&l, 0, sizeof(l));
    cr_assert(sg_hc_listen_keepalive("on", &l) && l.so_keepalive == 1);
    cr_assert(sg_hc_listen_keepalive("off", &l) && l.so_keepalive == -1);
    memset(&l, 0, sizeof(l));
    cr_assert(sg_hc_listen_keepalive("30m::10", &l));
    cr_assert_eq(l.keepidle, 1800);
    cr_assert_eq(l.keepintvl, 0);
    cr_assert_eq(l.keepcnt, 10);
    cr_assert_not(sg_hc_listen_keepalive("1:2", &l));
    cr_assert_not(sg_hc_listen_keepalive("x:1:1", &l));
}

Test(header_conf, directives_load)
{
    sg_conf *c = load(WRAP("absolute_redirect off;\n"
                           "server { listen 127.0.0.1:18182-18183 sndbuf=32k so_keepalive=on;\n"
                           " server_name ~^(?<sub>.+)\\.example$;\n"
                           " proxy_hide_header X-Secret; expires modified 1h;\n"
                           " lingering_close on; connection_pool_size 512; keepalive_time 10m;\n"
                           " location /a/ { alias /tmp/; limit_except GET { deny all; } add_trailer X-T $sub; }\n"
                           " access_log /tmp/x.log combined if=$arg_log;\n}"));
    cr_assert_not_null(c, "%s", err);
    sg_server_conf *s = c->servers[0];
    cr_assert_eq(s->nlistens, 2);
    cr_assert_eq(s->listens[0].sndbuf, 32768);
    cr_assert_eq(s->listens[1].so_keepalive, 1);
    const sg_loc_conf *top = &s->root->conf;
    cr_assert_not(top->absolute_redirect);
    cr_assert(top->port_in_redirect);
    cr_assert_eq(top->expires.kind, SG_EXPIRES_MODIFIED);
    cr_assert_eq(top->keepalive_time_ms, 600000);
    cr_assert_eq(top->proxy.nhide_headers, 1);
    cr_assert_str_eq(top->proxy.hide_headers[0].p, "x-secret");
    cr_assert(top->access_logs[0].has_cond);
    const sg_loc_conf *a = &s->root->children[0]->conf;
    cr_assert(a->has_alias);
    cr_assert_not_null(a->lmt_block);                    /* limit_except GET: a block (conf/rewrite.c) */
    cr_assert_eq(a->nlmt_methods, 2);                    /* GET brings HEAD */
    cr_assert_eq(a->nadd_trailers, 1);
    cr_assert_eq(a->expires.kind, SG_EXPIRES_MODIFIED);   /* inherited */
    cr_assert_eq(c->nnotices, 1);                        /* lingering_close */
    sg_conf_unref(c);
}

Test(header_conf, refusals)
{
    sg_conf *c = load(WRAP("server { expires @1h modified; }"));
    cr_assert_null(c);
    c = load(WRAP("server { listen 127.0.0.1:9-8; }"));
    cr_assert_null(c);
    cr_assert_str_eq(err, "t.conf:3:17: invalid port range in \"127.0.0.1:9-8\" of the \"listen\" directive");
    c = load(WRAP("server { proxy_ignore_headers X-Bogus; }"));
    cr_assert_null(c);
}
