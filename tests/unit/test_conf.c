/* Configuration loader: what a user writing nginx files would check. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"

#include "seed_dir.h"

static char err[2048];

static char *tmp_prefix(void)
{
    static char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/sg-conf-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static sg_conf *load_seed(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", sg_test_seed_dir(), name);
    if (access(path, R_OK) != 0) cr_assert_fail("seed %s not found (SG_SEED_DIR names another folder)", path);
    return sg_conf_load(path, tmp_prefix(), err, sizeof(err));
}

static sg_conf *load(const char *text)
{
    err[0] = '\0';
    return sg_conf_load_string(text, strlen(text), "t.conf", "/srv/sg", err, sizeof(err));
}

/* Loads text that must fail and checks the whole message. */
static void expect_error(const char *text, const char *msg)
{
    sg_conf *c = load(text);
    if (c) sg_conf_unref(c);
    cr_assert_null(c, "loaded, expected: %s", msg);
    cr_assert_str_eq(err, msg);
}

static sg_upstream_conf *ups(sg_conf *c, const char *name)
{
    for (size_t i = 0; i < c->nupstreams; i++)
        if (strcmp(c->upstreams[i]->name, name) == 0) return c->upstreams[i];
    cr_assert_fail("no upstream %s", name);
    return NULL;
}

static const sg_header_set *hdr(const sg_header_set *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (sg_str_caseeq_lit(h[i].name, name)) return &h[i];
    return NULL;
}

static void assert_str(sg_str s, const char *want)
{
    cr_assert(sg_str_eq_lit(s, want), "got \"%.*s\", want \"%s\"", (int)s.n, s.p ? s.p : "", want);
}

#define WRAP(body) "events {}\nhttp {\n" body "\n}\n"

/* ---------------- seeds ---------------- */

Test(conf_seeds, seed09_keepalive_both_sides)
{
    sg_conf *c = load_seed("09-keepalive-long-connections.conf");
    cr_assert_not_null(c, "%s", err);
    sg_upstream_conf *u = ups(c, "http_backend");
    cr_assert_eq(u->keepalive, 32);
    cr_assert_eq(u->keepalive_timeout_ms, 120000);
    cr_assert_eq(u->keepalive_requests, 2000);
    cr_assert_eq(u->nservers, 2);
    cr_assert_str_eq(u->servers[1].name, "127.0.0.1:8082");
    cr_assert_not(u->implicit);
    cr_assert_eq(c->nservers, 1);
    sg_server_conf *s = c->servers[0];
    cr_assert_eq(s->root->nchildren, 1);
    sg_location *l = s->root->children[0];
    assert_str(l->name, "/http/");
    cr_assert_eq(l->match, SG_LOC_PREFIX);
    cr_assert_eq(l->conf.keepalive_timeout_ms, 120000);   /* inherited from http */
    cr_assert_eq(l->conf.keepalive_header_s, 120);
    cr_assert_eq(l->conf.keepalive_requests, 10000);
    cr_assert_eq(l->conf.pass_opts->http_version, 11);
    cr_assert_not_null(l->conf.proxy_pass);
    cr_assert_eq(l->conf.proxy_pass->upstream, u);
    cr_assert_not(l->conf.proxy_pass->has_uri);
    assert_str(l->conf.proxy_pass->host, "http_backend");
    const sg_header_set *conn = hdr(l->conf.pass_opts->headers, l->conf.pass_opts->nheaders, "Connection");
    cr_assert_not_null(conn);
    assert_str(conn->value.text, "Keep-Alive");
    const sg_header_set *host = hdr(l->conf.pass_opts->headers, l->conf.pass_opts->nheaders, "Host");
    cr_assert_not_null(host);
    assert_str(host->value.text, "$proxy_host");
    cr_assert_eq(c->nlistens, 1);
    cr_assert_str_eq(c->listens[0].text, "127.0.0.1:8000");
    cr_assert_eq(c->listens[0].default_server, s);
    sg_conf_unref(c);
}

Test(conf_seeds, seed10_large_uploads)
{
    sg_conf *c = load_seed("10-upstream-timeouts-large-uploads.conf");
    cr_assert_not_null(c, "%s", err);
    sg_upstream_conf *u = ups(c, "bigdata");
    cr_assert_eq(u->nservers, 4);
    cr_assert_eq(u->keepalive, 100);
    sg_location *l = c->servers[0]->root->children[0];
    cr_assert_eq(l->match, SG_LOC_REGEX);
    assert_str(l->name, "/");
    cr_assert_eq(l->conf.client_max_body_size, 200ull * 1024 * 1024);
    cr_assert_eq(l->conf.pass_opts->connect_timeout_ms, 120000);
    cr_assert_eq(l->conf.pass_opts->send_timeout_ms, 120000);
    cr_assert_eq(l->conf.pass_opts->read_timeout_ms, 120000);
    const sg_header_set *conn = hdr(l->conf.pass_opts->headers, l->conf.pass_opts->nheaders, "Connection");
    assert_str(conn->value.text, "");
    sg_conf_unref(c);
}

Test(conf_seeds, seed11_balancing)
{
    sg_conf *c = load_seed("11-load-balancing-strategies.conf");
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nupstreams, 6);
    sg_upstream_conf *hs = ups(c, "hot_standby");
    cr_assert_not(hs->servers[0].backup);
    cr_assert(hs->servers[1].backup);
    sg_upstream_conf *w = ups(c, "weighted");
    cr_assert_eq(w->servers[0].weight, 1);
    cr_assert_eq(w->servers[1].weight, 2);
    cr_assert_eq(ups(c, "round_robin")->lb, SG_LB_ROUND_ROBIN);
    cr_assert_eq(ups(c, "sticky")->lb, SG_LB_IP_HASH);
    cr_assert_eq(ups(c, "least")->lb, SG_LB_LEAST_CONN);
    sg_upstream_conf *g = ups(c, "guarded");
    cr_assert_eq(g->servers[0].max_fails, 2);
    cr_assert_eq(g->servers[0].fail_timeout_ms, 2000);
    cr_assert_eq(g->servers[1].fail_timeout_ms, 1000);
    cr_assert_eq(g->servers[0].weight, 2);
    cr_assert_eq(hs->servers[0].fail_timeout_ms, 10000);
    cr_assert_eq(hs->servers[0].max_fails, 1);
    cr_assert_eq(c->nservers, 6);
    cr_assert_eq(c->nlistens, 6);
    sg_location *l = c->servers[0]->root->children[0];     /* location ~*^.+$ */
    cr_assert_eq(l->match, SG_LOC_REGEX_CASELESS);
    assert_str(l->name, "^.+$");
    cr_assert_eq(l->conf.proxy_pass->upstream, hs);
    sg_conf_unref(c);
}

Test(conf_seeds, seed08_websocket)
{
    sg_conf *c = load_seed("08-websocket-im.conf");
    cr_assert_not_null(c, "%s", err);
    sg_server_conf *s = c->servers[0];
    cr_assert_eq(s->nnames, 1);
    assert_str(s->names[0].name, "im.91vh.com");
    sg_location *acc = s->root->children[0];
    assert_str(acc->name, "/acc");
    assert_str(hdr(acc->conf.pass_opts->headers, acc->conf.pass_opts->nheaders, "Host")->value.text, "$host");
    assert_str(hdr(acc->conf.pass_opts->headers, acc->conf.pass_opts->nheaders, "Connection")->value.text,
               "$connection_upgrade");
    cr_assert(acc->conf.pass_opts->redirect_off);
    cr_assert(acc->conf.pass_opts->intercept_errors);
    cr_assert_eq(acc->conf.client_max_body_size, 10u * 1024 * 1024);
    cr_assert_eq(ups(c, "go-acc")->keepalive, 16);
    cr_assert_eq(ups(c, "go-im")->servers[0].max_fails, 2);
    /* a server-level access_log written after the locations still applies to them */
    cr_assert_eq(acc->conf.naccess_logs, 1);
    cr_assert_str_eq(acc->conf.access_logs[0].format->name, "combined");
    cr_assert(strstr(acc->conf.access_logs[0].path, "/logs/im.log") != NULL);
    cr_assert_eq(acc->conf.nindex, 2);
    sg_conf_unref(c);
}

/* grpc_pass: an HTTP/2 (h2c) proxy location with the grpc_* values,
 * which inherit apart from the proxy_* ones; TE: trailers goes upstream. */
Test(conf_seeds, seed07_grpc_pass)
{
    sg_conf *c = load_seed("07-grpc-bidi-lb.conf");
    cr_assert_not_null(c, "%s", err);
    const sg_loc_conf *lc = &c->servers[0]->root->children[0]->conf;
    cr_assert(lc->is_grpc);
    cr_assert_eq(lc->proxy_pass->upstream, ups(c, "backend"));
    cr_assert_eq(lc->pass_opts->http_version, 20);
    cr_assert(!lc->pass_opts->read_timeout_set, "silent streams are not cut by default");
    assert_str(hdr(lc->pass_opts->headers, lc->pass_opts->nheaders, "TE")->value.text, "trailers");
    assert_str(hdr(lc->pass_opts->headers, lc->pass_opts->nheaders, "Host")->value.text, "$proxy_host");
    sg_conf_unref(c);
}

Test(conf_grpc, grpc_directives_apart_from_proxy_ones)
{
    sg_conf *c = load(WRAP("proxy_read_timeout 5s; proxy_set_header X-P 1; grpc_connect_timeout 3s;\n"
                           "server { grpc_set_header X-G 2; grpc_next_upstream error http_502;\n"
                           " location /a { grpc_pass 127.0.0.1:50051; grpc_read_timeout 9s; }\n"
                           " location /b { proxy_pass http://127.0.0.1:8080; }\n"
                           " location /c { grpc_pass grpc://127.0.0.1; grpc_intercept_errors on; grpc_buffer_size 1m; } }"));
    cr_assert_not_null(c, "%s", err);
    sg_location **locs = c->servers[0]->root->children;
    const sg_loc_conf *a = &locs[0]->conf, *b = &locs[1]->conf, *g = &locs[2]->conf;
    cr_assert(a->is_grpc && !b->is_grpc && g->is_grpc);
    cr_assert_eq(a->pass_opts->read_timeout_ms, 9000);
    cr_assert(a->pass_opts->read_timeout_set);
    cr_assert_eq(g->pass_opts->read_timeout_ms, 60000, "proxy_read_timeout does not apply to gRPC");
    cr_assert(!g->pass_opts->read_timeout_set);
    cr_assert_eq(b->pass_opts->read_timeout_ms, 5000);
    cr_assert_eq(a->pass_opts->connect_timeout_ms, 3000);
    cr_assert_eq(b->pass_opts->connect_timeout_ms, 60000);
    cr_assert_eq(a->pass_opts->next_upstream, SG_NU_ERROR | SG_NU_HTTP_502);
    cr_assert_eq(b->pass_opts->next_upstream, SG_NU_ERROR | SG_NU_TIMEOUT);
    cr_assert(g->pass_opts->intercept_errors && !a->pass_opts->intercept_errors);
    cr_assert_not_null(hdr(a->pass_opts->headers, a->pass_opts->nheaders, "X-G"));
    cr_assert_null(hdr(a->pass_opts->headers, a->pass_opts->nheaders, "X-P"));
    cr_assert_not_null(hdr(b->pass_opts->headers, b->pass_opts->nheaders, "X-P"));
    cr_assert_null(hdr(b->pass_opts->headers, b->pass_opts->nheaders, "TE"));
    cr_assert_eq(b->pass_opts->http_version, 11);
    assert_str(g->proxy_pass->host, "127.0.0.1");   /* port 80 when none is written, as nginx */
    /* one struct per prefix, nothing copied: the runtime reads pass_opts */
    cr_assert_eq(a->pass_opts, &a->grpc);
    cr_assert_eq(b->pass_opts, &b->proxy);
    cr_assert_eq(a->proxy.read_timeout_ms, 5000, "a gRPC location keeps its proxy_* values");
    cr_assert_eq(a->proxy.http_version, 11);
    cr_assert(a->proxy.upgrade && !a->grpc.upgrade && a->grpc.redirect_off);
    cr_assert_eq(b->grpc.http_version, 20);
    cr_assert_eq(b->grpc.connect_timeout_ms, 3000, "grpc_* inherit on non-gRPC locations too");
    sg_conf_unref(c);
}

Test(conf_grpc, grpc_pass_errors)
{
    expect_error(WRAP("server { location / { grpc_pass grpc://127.0.0.1:5/x; } }"),
                 "t.conf:3:33: invalid host in upstream \"127.0.0.1:5/x\"");
    expect_error(WRAP("server { location / { grpc_pass http://127.0.0.1:5; } }"),
                 "t.conf:3:33: invalid URL prefix in \"http://127.0.0.1:5\"");
    expect_error(WRAP("server { location / { grpc_pass grpc://127.0.0.1:5;\nproxy_pass http://127.0.0.1; } }"),
                 "t.conf:4:1: \"proxy_pass\" directive is duplicate");
    expect_error(WRAP("server { grpc_pass grpc://127.0.0.1:5; }"),
                 "t.conf:3:10: \"grpc_pass\" directive is not allowed here");
}

/* ---------------- upstream TLS: proxy_pass https://, grpc_pass grpcs:// ---------------- */

static const sg_loc_conf *first_loc(sg_conf *c)
{
    return &c->servers[0]->root->children[0]->conf;
}

Test(conf_upstream_tls, https_and_grpcs_default_to_port_443)
{
    sg_conf *c = load(WRAP("server { listen 127.0.0.1:8080;\n"
                           "  location /a { proxy_pass https://127.0.0.1; }\n"
                           "  location /b { proxy_pass https://127.0.0.1:8443/x/; }\n"
                           "  location /c { grpc_pass grpcs://127.0.0.1; }\n"
                           "  location /d { proxy_pass https://127.0.0.1:80; }\n"
                           "  location /e { proxy_pass http://127.0.0.1; } }"));
    cr_assert_not_null(c, "%s", err);
    sg_location **l = c->servers[0]->root->children;
    const sg_proxy_pass *a = l[0]->conf.proxy_pass, *b = l[1]->conf.proxy_pass, *g = l[2]->conf.proxy_pass,
                        *d = l[3]->conf.proxy_pass, *e = l[4]->conf.proxy_pass;
    cr_assert(a->ssl && b->ssl && g->ssl && d->ssl && !e->ssl);
    cr_assert_str_eq(a->upstream->name, "127.0.0.1:443");
    cr_assert_eq(a->upstream, g->upstream, "one implicit upstream per host:port");
    assert_str(a->host, "127.0.0.1");               /* $proxy_host: no default port */
    assert_str(b->host, "127.0.0.1:8443");
    assert_str(d->host, "127.0.0.1:80");             /* 80 is not https's default */
    cr_assert_str_eq(d->upstream->name, "127.0.0.1:80");
    cr_assert_eq(d->upstream, e->upstream);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->upstream->servers[0].addr;
    cr_assert_eq(ntohs(sin->sin_port), 443);
    cr_assert_eq(c->nupstreams, 3, "443, 8443 and 80: none left over for port 80 of the https:// passes");
    cr_assert_not_null(l[0]->conf.proxy.ssl.ctx, "a client context for https://");
    cr_assert_not_null(l[2]->conf.grpc.ssl.ctx, "and for grpcs://");
    cr_assert_null(l[4]->conf.proxy.ssl.ctx, "none for a plain location");
    sg_conf_unref(c);
}

Test(conf_upstream_tls, https_to_an_upstream_block)
{
    sg_conf *c = load(WRAP("upstream b { server 127.0.0.1:8443; }\n"
                           "server { location / { proxy_pass https://b; proxy_ssl_name api.test; } }"));
    cr_assert_not_null(c, "%s", err);
    const sg_loc_conf *lc = first_loc(c);
    cr_assert_str_eq(lc->proxy_pass->upstream->name, "b");
    assert_str(lc->proxy_pass->host, "b");
    cr_assert(lc->proxy.ssl.name_set);
    cr_assert_eq(c->nupstreams, 1);
    sg_conf_unref(c);
    expect_error(WRAP("upstream b { server 127.0.0.1:8443; }\nserver { location / { proxy_pass https://b:443; } }"),
                 "t.conf:4:34: upstream \"b\" may not have port 443");
}

Test(conf_upstream_tls, errors_name_the_directive)
{
    expect_error(WRAP("server { location / {\nproxy_ssl_verify on;\nproxy_pass https://127.0.0.1; } }"),
                 "t.conf:5:1: no \"proxy_ssl_trusted_certificate\" for \"proxy_ssl_verify\"");
    expect_error(WRAP("grpc_ssl_verify on;\nserver { location / {\ngrpc_pass grpcs://127.0.0.1; } }"),
                 "t.conf:5:1: no \"grpc_ssl_trusted_certificate\" for \"grpc_ssl_verify\"");
    expect_error(WRAP("server { location / {\nproxy_ssl_trusted_certificate /nonexistent/ca.pem;\n"
                      "proxy_pass https://127.0.0.1; } }"),
                 "t.conf:4:31: cannot load trusted certificate \"/nonexistent/ca.pem\": "
                 "open() failed (2: No such file or directory)");
    expect_error(WRAP("server { location / { proxy_pass https://; } }"),
                 "t.conf:3:34: invalid host in upstream \"\"");
    /* The settings of a location that does not speak TLS are not checked, as nginx. */
    sg_conf *c = load(WRAP("server { location / { proxy_ssl_verify on; proxy_pass http://127.0.0.1; } }"));
    cr_assert_not_null(c, "%s", err);
    sg_conf_unref(c);
}

/* ---------------- errors, with positions ---------------- */

Test(conf_errors, unknown_directive)
{
    expect_error(WRAP("  server {\n    listn 80;\n  }"), "t.conf:4:5: unknown directive \"listn\"");
}

Test(conf_errors, wrong_context)
{
    expect_error(WRAP("  listen 80;"), "t.conf:3:3: \"listen\" directive is not allowed here");
    expect_error("worker_connections 10;\nevents {}\n",
                 "t.conf:1:1: \"worker_connections\" directive is not allowed here");
    expect_error(WRAP("server { internal; }"), "t.conf:3:10: \"internal\" directive is not allowed here");
    expect_error(WRAP("server { location / { location @x {} } }"),
                 "t.conf:3:23: named location \"@x\" can be on the server level only");
}

Test(conf_errors, bad_values)
{
    expect_error(WRAP("keepalive_timeout 10x;"), "t.conf:3:19: invalid value \"10x\" in \"keepalive_timeout\" directive");
    expect_error(WRAP("client_max_body_size 1t;"), "t.conf:3:22: invalid value \"1t\" in \"client_max_body_size\" directive");
    expect_error("daemon maybe;\nevents {}\n",
                 "t.conf:1:8: invalid value \"maybe\" in \"daemon\" directive, it must be \"on\" or \"off\"");
    expect_error(WRAP("proxy_next_upstream error bogus;"),
                 "t.conf:3:27: invalid value \"bogus\" in \"proxy_next_upstream\" directive");
    expect_error("events { use kqueue; }\n", "t.conf:1:14: invalid event type \"kqueue\"");
    expect_error(WRAP("upstream u { server 127.0.0.1 weight=0; }"), "t.conf:3:31: invalid parameter \"weight=0\"");
}

Test(conf_errors, arguments_and_duplicates)
{
    expect_error(WRAP("keepalive_timeout 1 2 3;"), "t.conf:3:1: invalid number of arguments in \"keepalive_timeout\" directive");
    expect_error(WRAP("send_timeout 1s;\nsend_timeout 2s;"), "t.conf:4:1: \"send_timeout\" directive is duplicate");
    expect_error("events {}\nevents {}\n", "t.conf:2:1: \"events\" directive is duplicate");
    expect_error(WRAP("server {}\nserver;"), "t.conf:4:1: directive \"server\" has no opening \"{\"");
    expect_error(WRAP("default_type a {}"), "t.conf:3:1: directive \"default_type\" is not terminated by \";\"");
}

Test(conf_errors, syntax)
{
    expect_error("events {}\nhttp {\n  server {\n", "t.conf:4:1: unexpected end of file, expecting \"}\"");
    expect_error("events {}\nhttp {\n  default_type x\n}\n", "t.conf:4:1: unexpected \"}\"");
    expect_error("events {}\nhttp {\n  default_type x", "t.conf:3:17: unexpected end of file, expecting \";\" or \"}\"");
    expect_error("events {}\n}\n", "t.conf:2:1: unexpected \"}\"");
    expect_error("events {}\nhttp { ; }\n", "t.conf:2:8: unexpected \";\"");
    expect_error("events {}\nhttp { default_type \"abc; }\n",
                 "t.conf:2:21: unexpected end of file, unbalanced quotes");
    expect_error("events {}\nhttp { default_type \"a\"b; }\n", "t.conf:2:24: unexpected \"b\"");
    expect_error("http {}\n", "t.conf:1:1: no \"events\" section in configuration");
}

Test(conf_errors, unknown_variable)
{
    sg_conf *c = load(WRAP("server { location / { proxy_set_header X-A $no_such_thing; proxy_pass http://127.0.0.1:9; } }"));
    if (c) sg_conf_unref(c);
    cr_assert_null(c);
    cr_assert_str_eq(err, "t.conf:3:44: unknown \"no_such_thing\" variable");
}

Test(conf_errors, duplicate_location)
{
    expect_error(WRAP("server {\n location /a {}\n location /a {}\n}"), "t.conf:5:2: duplicate location \"/a\"");
    expect_error(WRAP("server {\n location /a {}\n location ^~ /a {}\n}"), "t.conf:5:2: duplicate location \"/a\"");
    sg_conf *c = load(WRAP("server {\n location /a {}\n location = /a {}\n location ~ /a {}\n location ~ /a {}\n}"));
    cr_assert_not_null(c, "%s", err);
    sg_conf_unref(c);
    expect_error(WRAP("server { location /a { location /b {} } }"), "t.conf:3:24: location \"/b\" is outside location \"/a\"");
    expect_error(WRAP("server { location = /a { location /a/b {} } }"),
                 "t.conf:3:26: location \"/a/b\" cannot be inside the exact location \"/a\"");
}

Test(conf_errors, not_supported_yet)
{
    expect_error(WRAP("server { location / { grpc_socket_keepalive on; } }"),
                 "t.conf:3:23: \"grpc_socket_keepalive\" directive is not supported yet");
    expect_error(WRAP("server { ssl_stapling on; }"), "t.conf:3:10: \"ssl_stapling\" directive is not supported yet");
    expect_error(WRAP("sendfile_max_chunk 1m;"),
                 "t.conf:3:1: \"sendfile_max_chunk\" directive is not supported yet");
    expect_error(WRAP("server { location / { ssi on; } }"),
                 "t.conf:3:23: \"ssi\" directive is not supported yet");
    expect_error(WRAP("server { listen 80 fastopen=10; }"),
                 "t.conf:3:20: \"fastopen\" parameter of \"listen\" is not supported yet");
    /* balancers (issue 11): slow_start and sticky are now checked */
    expect_error(WRAP("upstream u { server 127.0.0.1 slow_start=soon; }"),
                 "t.conf:3:31: invalid parameter \"slow_start=soon\"");
    expect_error(WRAP("upstream u { sticky learn create=$cookie_a lookup=$cookie_a; server 127.0.0.1; }"),
                 "t.conf:3:14: \"zone\" parameter is missing");
    expect_error(WRAP("proxy_redirect http://a/ /;"), "t.conf:3:1: \"proxy_redirect\" with a replacement is not supported yet");
    expect_error(WRAP("charset_map koi8-r utf-8 { C0 D18E; }"), "t.conf:3:1: \"charset_map\" directive is not supported yet");
}

Test(conf_errors, upstreams_and_listens)
{
    expect_error(WRAP("upstream u {}"), "t.conf:3:1: no servers are inside upstream");
    expect_error(WRAP("upstream u { server 127.0.0.1; }\nupstream u { server 127.0.0.1; }"),
                 "t.conf:4:10: duplicate upstream \"u\"");
    expect_error(WRAP("upstream u { server 127.0.0.1; }\nserver { location / { proxy_pass http://u:8080; } }"),
                 "t.conf:4:34: upstream \"u\" may not have port 8080");
    expect_error(WRAP("server { listen 80 default_server; }\nserver { listen 0.0.0.0:80 default_server; }"),
                 "t.conf:4:10: a duplicate default server for 0.0.0.0:80");
    expect_error(WRAP("upstream u { server nosuch.invalid:8080; }"),
                 "t.conf:3:21: host not found in upstream \"nosuch.invalid:8080\"");
    expect_error(WRAP("include x.conf {}"), "t.conf:3:1: directive \"include\" is not terminated by \";\"");
    expect_error(WRAP("server { listen 127.0.0.1:99999; }"),
                 "t.conf:3:17: invalid port in \"127.0.0.1:99999\" of the \"listen\" directive");
    expect_error(WRAP("server { location ~ / { proxy_pass http://127.0.0.1/x; } }"),
                 "t.conf:3:36: \"proxy_pass\" cannot have URI part in location given by regular expression, "
                 "or inside named location, or inside \"if\" statement, or inside \"limit_except\" block");
}

/* ---------------- values and inheritance ---------------- */

static sg_conf *load_ok(const char *text)
{
    sg_conf *c = load(text);
    cr_assert_not_null(c, "%s", err);
    return c;
}

Test(conf_values, times)
{
    sg_conf *c = load_ok(WRAP("client_body_timeout 1m30s; send_timeout 500ms; proxy_read_timeout 1h;"
                              " proxy_send_timeout 1d; proxy_connect_timeout 120; server {}"));
    sg_loc_conf *lc = &c->servers[0]->root->conf;
    cr_assert_eq(lc->client_body_timeout_ms, 90000);
    cr_assert_eq(lc->send_timeout_ms, 500);
    cr_assert_eq(lc->pass_opts->read_timeout_ms, 3600000);
    cr_assert_eq(lc->pass_opts->send_timeout_ms, 86400000);
    cr_assert_eq(lc->pass_opts->connect_timeout_ms, 120000);
    sg_conf_unref(c);
    expect_error(WRAP("send_timeout 1s1m;"), "t.conf:3:14: invalid value \"1s1m\" in \"send_timeout\" directive");
    expect_error(WRAP("send_timeout 100d;"), "t.conf:3:14: invalid value \"100d\" in \"send_timeout\" directive");
}

Test(conf_values, sizes)
{
    static const struct { const char *v; uint64_t want; } cases[] = {
        { "512", 512 }, { "8k", 8192 }, { "8K", 8192 }, { "10m", 10u << 20 }, { "1g", 1ull << 30 }, { "0", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), WRAP("client_max_body_size %s; server {}"), cases[i].v);
        sg_conf *c = load_ok(text);
        cr_assert_eq(c->servers[0]->root->conf.client_max_body_size, cases[i].want, "%s", cases[i].v);
        sg_conf_unref(c);
    }
}

Test(conf_values, defaults)
{
    sg_conf *c = load_ok(WRAP("server { location / { proxy_pass http://127.0.0.1:8081/; } }"));
    cr_assert_geq(c->worker_connections, 64);
    cr_assert_geq(c->worker_processes, 1);
    cr_assert_str_eq(c->pid_path, "/srv/sg/streamgate.pid");
    cr_assert_str_eq(c->error_log_path, "stderr");
    cr_assert_not(c->daemon);
    sg_location *l = c->servers[0]->root->children[0];
    sg_loc_conf *lc = &l->conf;
    cr_assert_eq(lc->pass_opts->http_version, 11);
    cr_assert_eq(lc->keepalive_timeout_ms, 75000);
    cr_assert_eq(lc->keepalive_requests, 1000);
    cr_assert_eq(lc->client_max_body_size, 1024 * 1024);
    cr_assert_eq(lc->pass_opts->next_upstream, SG_NU_ERROR | SG_NU_TIMEOUT);
    assert_str(lc->root, "/srv/sg/html");
    assert_str(lc->default_type, "text/plain");
    cr_assert_eq(lc->naccess_logs, 0);
    cr_assert(lc->access_log_off);
    cr_assert_eq(lc->pass_opts->nheaders, 2);
    assert_str(lc->pass_opts->headers[0].name, "Host");
    assert_str(lc->pass_opts->headers[1].name, "Connection");
    assert_str(lc->pass_opts->headers[1].value.text, "");
    cr_assert(lc->proxy_pass->has_uri);
    assert_str(lc->proxy_pass->uri, "/");
    assert_str(lc->proxy_pass->host, "127.0.0.1:8081");
    sg_upstream_conf *u = lc->proxy_pass->upstream;
    cr_assert(u->implicit);
    cr_assert_eq(u->keepalive, 32);
    cr_assert_eq(u->nservers, 1);
    /* no listen: *:80 as nginx */
    cr_assert_eq(c->nlistens, 1);
    cr_assert_str_eq(c->listens[0].text, "0.0.0.0:80");
    cr_assert_eq(c->listens[0].backlog, 511);
    cr_assert_not_null(c->servers[0]->root->conf.pass_opts->headers);
    cr_assert_eq(c->servers[0]->client_header_timeout_ms, 60000);
    cr_assert_eq(c->servers[0]->large_header_buffers, 4);
    cr_assert_eq(c->servers[0]->large_header_buffer_size, 8192);
    sg_conf_unref(c);
}

Test(conf_values, inheritance)
{
    sg_conf *c = load_ok(WRAP(
        "add_header X-Http 1;\n"
        "keepalive_timeout 33s;\n"
        "proxy_set_header X-P http;\n"
        "server {\n"
        "  add_header X-Srv 2 always;\n"
        "  location /a { }\n"
        "  location /b { add_header X-Loc 3; proxy_set_header Host $host; keepalive_timeout 0; }\n"
        "  location /c { location /c/d { } }\n"
        "}\n"
        "server { location / { } }\n"
        "large_client_header_buffers 8 16k;\n"));
    sg_server_conf *s = c->servers[0];
    sg_location *a = s->root->children[0], *b = s->root->children[1], *d = s->root->children[2]->children[0];
    /* server's add_header replaces http's; /a inherits the server's list */
    cr_assert_eq(a->conf.nadd_headers, 1);
    assert_str(a->conf.add_headers[0].name, "X-Srv");
    cr_assert(a->conf.add_headers[0].always);
    cr_assert_eq(b->conf.nadd_headers, 1);
    assert_str(b->conf.add_headers[0].name, "X-Loc");
    cr_assert_eq(d->conf.nadd_headers, 1);
    cr_assert_eq(d->parent, s->root->children[2]);
    cr_assert_eq(c->servers[1]->root->children[0]->conf.nadd_headers, 1);
    assert_str(c->servers[1]->root->children[0]->conf.add_headers[0].name, "X-Http");
    cr_assert_eq(a->conf.keepalive_timeout_ms, 33000);
    cr_assert_eq(d->conf.keepalive_timeout_ms, 33000);
    cr_assert_eq(b->conf.keepalive_timeout_ms, 0);
    /* proxy_set_header at /b replaces the inherited X-P; Host is the user's */
    cr_assert_null(hdr(b->conf.pass_opts->headers, b->conf.pass_opts->nheaders, "X-P"));
    assert_str(hdr(b->conf.pass_opts->headers, b->conf.pass_opts->nheaders, "Host")->value.text, "$host");
    cr_assert_not_null(hdr(a->conf.pass_opts->headers, a->conf.pass_opts->nheaders, "X-P"));
    assert_str(hdr(a->conf.pass_opts->headers, a->conf.pass_opts->nheaders, "Host")->value.text, "$proxy_host");
    /* http-level value written after the servers still applies */
    cr_assert_eq(s->large_header_buffers, 8);
    cr_assert_eq(s->large_header_buffer_size, 16384);
    sg_conf_unref(c);
}

Test(conf_values, max_headers)
{
    /* nginx 1.29.8: http and server level, inherited; 100 by default */
    sg_conf *c = load_ok(WRAP("server { listen 81; }\n"
                              "server { listen 82; max_headers 7; }\n"
                              "max_headers 50;\n"));
    cr_assert_eq(c->servers[0]->max_headers, 50);
    cr_assert_eq(c->servers[1]->max_headers, 7);
    sg_conf_unref(c);
    c = load_ok(WRAP("server { listen 81; }"));
    cr_assert_eq(c->servers[0]->max_headers, 100);
    sg_conf_unref(c);
    expect_error(WRAP("server { location / { max_headers 10; } }"),
                 "t.conf:3:23: \"max_headers\" directive is not allowed here");
    expect_error(WRAP("max_headers many;"), "t.conf:3:13: invalid value \"many\" in \"max_headers\" directive");
}

Test(conf_values, location_modifiers)
{
    sg_conf *c = load_ok(WRAP("server {\n"
                              " location =/x {}\n location ~*\\.php$ {}\n location ~/a {}\n"
                              " location ^~/img/ {}\n location ^~ /static/ {}\n location @fallback {}\n"
                              " location = /y {}\n location ~* ^/Z {}\n}"));
    sg_location **k = c->servers[0]->root->children;
    cr_assert_eq(c->servers[0]->root->nchildren, 7);
    cr_assert_eq(k[0]->match, SG_LOC_EXACT); assert_str(k[0]->name, "/x");
    cr_assert_eq(k[1]->match, SG_LOC_REGEX_CASELESS); assert_str(k[1]->name, "\\.php$");
    cr_assert_eq(k[2]->match, SG_LOC_REGEX); assert_str(k[2]->name, "/a");
    cr_assert_eq(k[3]->match, SG_LOC_PREFIX); assert_str(k[3]->name, "^~/img/");   /* as nginx */
    cr_assert_eq(k[4]->match, SG_LOC_PREFIX_NOREGEX); assert_str(k[4]->name, "/static/");
    cr_assert_eq(k[5]->match, SG_LOC_EXACT); assert_str(k[5]->name, "/y");
    cr_assert_eq(k[6]->match, SG_LOC_REGEX_CASELESS); assert_str(k[6]->name, "^/Z");
    cr_assert_eq(c->servers[0]->nnamed, 1);
    assert_str(c->servers[0]->named[0]->name, "@fallback");
    cr_assert_eq(c->servers[0]->named[0]->match, SG_LOC_NAMED);
    sg_conf_unref(c);
    expect_error(WRAP("server { location ~~ /x {} }"), "t.conf:3:19: invalid location modifier \"~~\"");
}

Test(conf_values, return_error_page_listen)
{
    sg_conf *c = load_ok(WRAP(
        "server {\n"
        "  listen 127.0.0.1:8080 default_server backlog=1024 reuseport;\n"
        "  listen [::1]:8081;\n  listen 8082;\n"
        "  server_name example.com *.example.org www.example.* .example.net ~^(?<x>.+)\\.test$ \"\";\n"
        "  error_page 500 502 503 504 /50x.html;\n"
        "  error_page 404 =200 @fb;\n"
        "  location = /r1 { return 204; }\n"
        "  location = /r2 { return 301 https://example.com$request_uri; }\n"
        "  location = /r3 { return https://example.com/; }\n"
        "  location = /r4 { return 200 \"ok\\n\"; }\n"
        "  location @fb { internal; }\n"
        "}"));
    sg_server_conf *s = c->servers[0];
    cr_assert_eq(s->nlistens, 3);
    cr_assert_str_eq(s->listens[0].text, "127.0.0.1:8080");
    cr_assert(s->listens[0].default_server);
    cr_assert(s->listens[0].reuseport);
    cr_assert_eq(s->listens[0].backlog, 1024);
    cr_assert_str_eq(s->listens[1].text, "[::1]:8081");
    cr_assert_str_eq(s->listens[2].text, "0.0.0.0:8082");
    cr_assert_eq(c->nlistens, 3);
    cr_assert_eq(c->listens[0].backlog, 1024);
    cr_assert_eq(s->nnames, 6);
    cr_assert_eq(s->names[0].kind, SG_SN_EXACT);
    cr_assert_eq(s->names[1].kind, SG_SN_WILDCARD_HEAD); assert_str(s->names[1].name, "example.org");
    cr_assert_eq(s->names[2].kind, SG_SN_WILDCARD_TAIL); assert_str(s->names[2].name, "www.example");
    cr_assert_eq(s->names[3].kind, SG_SN_DOT); assert_str(s->names[3].name, "example.net");
    cr_assert_eq(s->names[4].kind, SG_SN_REGEX); assert_str(s->names[4].name, "^(?<x>.+)\\.test$");
    assert_str(s->names[5].name, "");
    sg_loc_conf *lc = &s->root->children[0]->conf;
    cr_assert(lc->has_return);
    cr_assert_eq(lc->return_code, 204);
    cr_assert_eq(lc->nerror_pages, 2);                       /* inherited from the server */
    cr_assert_eq(lc->error_pages[0].ncodes, 4);
    cr_assert_eq(lc->error_pages[0].override, -1);
    cr_assert_eq(lc->error_pages[1].override, 200);
    assert_str(lc->error_pages[1].uri.text, "@fb");
    lc = &s->root->children[1]->conf;
    cr_assert_eq(lc->return_code, 301);
    cr_assert_not(lc->return_text.literal);
    lc = &s->root->children[2]->conf;
    cr_assert_eq(lc->return_code, 302);
    assert_str(lc->return_text.text, "https://example.com/");
    assert_str(s->root->children[3]->conf.return_text.text, "ok\n");
    cr_assert_not(s->root->conf.has_return);
    cr_assert(s->named[0]->conf.internal);
    cr_assert_not(s->root->children[0]->conf.internal);
    sg_conf_unref(c);
}

Test(conf_values, implicit_upstreams_and_logs)
{
    sg_conf *c = load_ok(WRAP(
        "log_format main '$remote_addr $status';\n"
        "log_format j escape=json '{\"s\":\"$status\"}';\n"
        "access_log logs/a.log;\n"
        "server {\n"
        "  access_log /var/log/x.log j buffer=32k flush=5s;\n"
        "  location /a { proxy_pass http://127.0.0.1:9000; }\n"
        "  location /b { proxy_pass http://127.0.0.1:9000/b/; access_log off; }\n"
        "  location /c { proxy_pass http://localhost; }\n"
        "}"));
    sg_server_conf *s = c->servers[0];
    sg_location *a = s->root->children[0], *b = s->root->children[1], *cl = s->root->children[2];
    cr_assert_eq(a->conf.proxy_pass->upstream, b->conf.proxy_pass->upstream);  /* one per host:port */
    cr_assert_str_eq(a->conf.proxy_pass->upstream->name, "127.0.0.1:9000");
    assert_str(b->conf.proxy_pass->uri, "/b/");
    assert_str(cl->conf.proxy_pass->host, "localhost");
    cr_assert_geq(cl->conf.proxy_pass->upstream->nservers, 1);
    cr_assert_eq(a->conf.naccess_logs, 1);
    cr_assert_str_eq(a->conf.access_logs[0].path, "/var/log/x.log");
    cr_assert(a->conf.access_logs[0].format->escape_json);
    cr_assert_eq(a->conf.access_logs[0].buffer_size, 32768);
    cr_assert_eq(a->conf.access_logs[0].flush_ms, 5000);
    cr_assert_eq(b->conf.naccess_logs, 0);
    cr_assert(b->conf.access_log_off);
    sg_log_format *m = NULL;
    for (size_t i = 0; i < c->nlog_formats; i++)
        if (strcmp(c->log_formats[i]->name, "main") == 0) m = c->log_formats[i];
    cr_assert_not_null(m);
    assert_str(m->format.text, "$remote_addr $status");          /* the user's main replaces ours */
    sg_conf_unref(c);
    expect_error(WRAP("log_format combined '$status';"), "t.conf:3:12: duplicate \"log_format\" name \"combined\"");
    expect_error(WRAP("access_log /x nosuch;"), "t.conf:3:15: unknown log format \"nosuch\"");
}

Test(conf_values, map_block)
{
    sg_conf *c = load_ok(WRAP("server { location / { proxy_set_header Connection $connection_upgrade;"
                              " proxy_pass http://127.0.0.1:1; } }\n"
                              "map $http_upgrade $connection_upgrade {\n default upgrade;\n '' close;\n}"));
    sg_conf_unref(c);
    expect_error(WRAP("map $http_upgrade $x { default a b; }"), "t.conf:3:24: invalid number of the map parameters");
    expect_error(WRAP("map $http_upgrade x { default a; }"), "t.conf:3:19: invalid variable name \"x\"");
}

Test(conf_values, quoting_and_escapes)
{
    sg_conf *c = load_ok(WRAP("default_type 'a\\'b\\\\c\\d';\n# comment ; {\nserver { add_header X \"t\\tz\"; "
                              "add_header Y ${host}x; }"));
    assert_str(c->servers[0]->root->conf.default_type, "a'b\\c\\d");
    assert_str(c->servers[0]->root->conf.add_headers[0].value.text, "t\tz");
    assert_str(c->servers[0]->root->conf.add_headers[1].value.text, "${host}x");
    sg_conf_unref(c);
}

/* ---------------- files ---------------- */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(conf_files, include_globs_and_dump)
{
    char *dir = tmp_prefix(), sub[512], main_path[512];
    snprintf(sub, sizeof(sub), "%s/conf.d", dir);
    mkdir(sub, 0755);
    write_file(dir, "conf.d/b.conf", "server { listen 127.0.0.1:8002; }\n");
    write_file(dir, "conf.d/a.conf", "server { listen 127.0.0.1:8001; }\n");
    write_file(dir, "types.inc", "default_type application/x-test;\n");
    write_file(dir, "main.conf", "events {}\nhttp {\n include types.inc;\n include conf.d/*.conf;\n"
                                 " include none.d/*.conf;\n}\n");
    snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
    sg_conf *c = sg_conf_load(main_path, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_str_eq(c->prefix, dir);
    cr_assert_eq(c->nfiles, 4);
    cr_assert(strstr(c->files[2], "conf.d/a.conf") != NULL);           /* sorted */
    cr_assert_eq(c->nservers, 2);
    cr_assert_str_eq(c->servers[0]->listens[0].text, "127.0.0.1:8001");
    assert_str(c->servers[0]->root->conf.default_type, "application/x-test");
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    sg_conf_dump(c, f);
    fclose(f);
    char want[600];
    snprintf(want, sizeof(want), "# configuration file %s:\nevents {}\n", main_path);
    cr_assert(strncmp(out, want, strlen(want)) == 0, "%s", out);
    cr_assert(strstr(out, "# configuration file ") != NULL);
    free(out);
    sg_conf_unref(c);

    write_file(dir, "bad.conf", "events {}\nhttp {\n  include missing.conf;\n}\n");
    snprintf(main_path, sizeof(main_path), "%s/bad.conf", dir);
    c = sg_conf_load(main_path, NULL, err, sizeof(err));
    cr_assert_null(c);
    char msg[1200];
    snprintf(msg, sizeof(msg), "%s:3:11: open() \"%s/missing.conf\" failed (2: No such file or directory)",
             main_path, dir);
    cr_assert_str_eq(err, msg);

    write_file(dir, "loop.conf", "include loop.conf;\n");
    snprintf(main_path, sizeof(main_path), "%s/loop.conf", dir);
    c = sg_conf_load(main_path, NULL, err, sizeof(err));
    cr_assert_null(c);
    cr_assert(strstr(err, "nested deeper") != NULL, "%s", err);

    write_file(dir, "inc_err.conf", "events {}\nhttp { include conf.d/c*.conf; include e.inc; }\n");
    write_file(dir, "e.inc", "\n  bogus 1;\n");
    snprintf(main_path, sizeof(main_path), "%s/inc_err.conf", dir);
    c = sg_conf_load(main_path, NULL, err, sizeof(err));
    cr_assert_null(c);
    snprintf(msg, sizeof(msg), "%s/e.inc:2:3: unknown directive \"bogus\"", dir);
    cr_assert_str_eq(err, msg);
}

Test(conf_files, refcount)
{
    sg_conf *c = load_ok(WRAP("server {}"));
    sg_conf_ref(c);
    cr_assert_eq(c->refs, 2);
    sg_conf_unref(c);
    cr_assert_eq(c->refs, 1);
    sg_conf_unref(c);
}
