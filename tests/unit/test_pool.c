/* The keep-alive pool of HTTP/1.1 upstream connections: which idle
 * connection an exchange may take. */
#include <criterion/criterion.h>

#include "upstream/pool.h"

static sg_upstream_server_conf server_conf[2];
static sg_peer peers[2] = { { .conf = &server_conf[0] }, { .conf = &server_conf[1], .index = 1 } };

static int closed;

static void count_close(sg_pool_node *n)
{
    closed++;
}

static sg_pool_node node(int peer, sg_tls_key tls)
{
    return (sg_pool_node){ .peer = &peers[peer], .tls = tls, .close = count_close };
}

Test(pool, idle_connections_serve_their_peer_most_recent_first)
{
    sg_pool p = { .max_idle = 2 };
    const sg_tls_key plain = { 0 };
    sg_pool_node a = node(0, plain), b = node(0, plain), c = node(1, plain);
    cr_assert_eq(sg_pool_put(&p, &a), SG_POOL_KEPT);
    cr_assert_eq(sg_pool_put(&p, &b), SG_POOL_KEPT);
    cr_assert_eq(sg_pool_put(&p, &c), SG_POOL_SURPLUS, "beyond keepalive: kept briefly");
    cr_assert_eq(sg_pool_take(&p, &peers[0], &plain), &b);
    cr_assert_eq(sg_pool_take(&p, &peers[0], &plain), &a);
    cr_assert_null(sg_pool_take(&p, &peers[0], &plain));
    cr_assert_eq(sg_pool_take(&p, &peers[1], &plain), &c);
    cr_assert_eq(p.nidle, 0);
}

Test(pool, tls_connections_serve_the_same_context_and_name_only)
{
    sg_pool p = { .max_idle = 8 };
    static char ctx_a, ctx_b;   /* stand-ins: the pool compares the addresses */
    static const char name_copy[] = "api.test";
    const struct ssl_ctx_st *a = (const struct ssl_ctx_st *)&ctx_a, *b = (const struct ssl_ctx_st *)&ctx_b;
    const sg_tls_key plain = { 0 }, api = { a, SG_STR("api.test") }, api_copy = { a, { name_copy, 8 } },
                     www = { a, SG_STR("www.test") }, other_ctx = { b, SG_STR("api.test") };
    sg_pool_node n_plain = node(0, plain), n_api = node(0, api);
    sg_pool_put(&p, &n_plain);
    sg_pool_put(&p, &n_api);
    cr_assert_null(sg_pool_take(&p, &peers[0], &www), "another SNI: a new connection");
    cr_assert_null(sg_pool_take(&p, &peers[0], &other_ctx), "other TLS settings: a new connection");
    cr_assert_eq(sg_pool_take(&p, &peers[0], &api_copy), &n_api, "the same name, another copy");
    cr_assert_null(sg_pool_take(&p, &peers[0], &api));
    cr_assert_eq(sg_pool_take(&p, &peers[0], &plain), &n_plain, "a plain location: the plain one");
}

Test(pool, retiring_closes_idle_connections_and_refuses_more)
{
    sg_pool p = { .max_idle = 4 };
    const sg_tls_key plain = { 0 };
    sg_pool_node a = node(0, plain), b = node(1, plain);
    sg_pool_put(&p, &a);
    sg_pool_put(&p, &b);
    closed = 0;
    sg_pool_retire(&p);
    cr_assert_eq(closed, 2);
    cr_assert_eq(sg_pool_put(&p, &a), SG_POOL_REFUSED);
}
