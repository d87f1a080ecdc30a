/* proxy_pass/grpc_pass with variables, resolver and unix: addresses, as
 * the configuration loader reads them. */
#include <criterion/criterion.h>

#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "conf/conf.h"

static char err[2048];

static sg_conf *load(const char *text)
{
    err[0] = '\0';
    return sg_conf_load_string(text, strlen(text), "t.conf", "/srv/sg", err, sizeof(err));
}

static const sg_loc_conf *first_loc(sg_conf *c, size_t server)
{
    return &c->servers[server]->root->children[0]->conf;
}

#define WRAP(body) "events {}\nhttp {\n" body "\n}\n"

Test(pass_vars_conf, variables_make_a_per_request_pass)
{
    sg_conf *c = load(WRAP("server { location / { proxy_pass http://$host:8081/p$uri; } }"
                           "server { location / { grpc_pass $arg_b; } }"));
    cr_assert_not_null(c, "%s", err);
    const sg_loc_conf *lc = first_loc(c, 0);
    cr_assert(lc->proxy_pass->has_vars);
    cr_assert_null(lc->proxy_pass->upstream);
    cr_assert_not(lc->is_grpc);
    cr_assert_null(lc->resolver);
    cr_assert_eq(lc->resolver_timeout_ms, 30000);
    lc = first_loc(c, 1);
    cr_assert(lc->proxy_pass->has_vars && lc->is_grpc);
    /* its TLS context is ready in case a request says grpcs:// */
    cr_assert_not_null(lc->pass_opts->ssl.ctx);
    sg_conf_unref(c);
}

Test(pass_vars_conf, resolver_servers_and_parameters)
{
    sg_conf *c = load(WRAP("resolver 127.0.0.1 [::1]:5353 valid=30s ipv6=off;"
                           "server { resolver_timeout 5s; location / { proxy_pass http://$host; } }"
                           "server { location / { resolver 10.0.0.1:53; proxy_pass http://$host; } }"));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nresolvers, 2);
    const sg_loc_conf *lc = first_loc(c, 0);
    cr_assert_not_null(lc->resolver);
    cr_assert_str_eq(lc->resolver->servers, "127.0.0.1:53,[::1]:5353");
    cr_assert_eq(lc->resolver->valid_ms, 30000);
    cr_assert(lc->resolver->ipv4 && !lc->resolver->ipv6);
    cr_assert_eq(lc->resolver_timeout_ms, 5000);
    lc = first_loc(c, 1);
    cr_assert_str_eq(lc->resolver->servers, "10.0.0.1:53");
    cr_assert_eq(lc->resolver->id, 1);
    sg_conf_unref(c);
}

Test(pass_vars_conf, resolver_errors)
{
    sg_conf *c = load(WRAP("resolver 127.0.0.1 ipv4=off ipv6=off;"));
    cr_assert_null(c);
    cr_assert_str_eq(err, "t.conf:3:1: \"ipv4\" and \"ipv6\" cannot both be \"off\"");
    c = load(WRAP("resolver 127.0.0.1 valid=x;"));
    cr_assert_null(c);
    cr_assert_str_eq(err, "t.conf:3:10: invalid parameter in \"resolver\" directive");
    c = load(WRAP("resolver valid=1s;"));
    cr_assert_null(c);
    cr_assert_str_eq(err, "t.conf:3:1: invalid number of arguments in \"resolver\" directive");
}

Test(pass_vars_conf, unix_addresses)
{
    sg_conf *c = load(WRAP("upstream u { server unix:/run/app.sock weight=2; }"
                           "server { location /a/ { proxy_pass http://unix:/run/b.sock:/x/; }"
                           "         location /u { proxy_pass http://u; } }"));
    cr_assert_not_null(c, "%s", err);
    const sg_proxy_pass *pp = first_loc(c, 0)->proxy_pass;
    cr_assert(pp->has_uri);
    cr_assert(pp->uri.n == 3 && memcmp(pp->uri.p, "/x/", 3) == 0);
    cr_assert(pp->host.n == 9 && memcmp(pp->host.p, "localhost", 9) == 0);
    const sg_upstream_server_conf *s = &pp->upstream->servers[0];
    cr_assert_eq(s->addr.ss_family, AF_UNIX);
    cr_assert_str_eq(((const struct sockaddr_un *)&s->addr)->sun_path, "/run/b.sock");
    cr_assert_str_eq(pp->upstream->name, "unix:/run/b.sock");
    const sg_upstream_conf *u = c->upstreams[0];
    cr_assert_str_eq(u->name, "u");
    cr_assert_eq(u->servers[0].addr.ss_family, AF_UNIX);
    cr_assert_eq(u->servers[0].weight, 2);
    cr_assert_str_eq(u->servers[0].name, "unix:/run/app.sock");
    sg_conf_unref(c);

    c = load(WRAP("server { location / { proxy_pass http://unix:; } }"));
    cr_assert_null(c);
    cr_assert_str_eq(err, "t.conf:3:34: invalid host in upstream \"unix:\"");
}
