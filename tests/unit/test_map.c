/* The map directive: nginx's matching order and values. */
#include <criterion/criterion.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/map.h"
#include "exchange/vars.h"

static sg_conf conf;
static sg_http_req req;
static sg_header hdrs[4];
static char err[512];
static sg_conf_pos P = { "m.conf", 7, 3 };

static void setup(void)
{
    memset(&conf, 0, sizeof(conf));
    sg_arena_init(&conf.arena, 0);
    memset(&req, 0, sizeof(req));
    sg_arena_init(&req.arena, 0);
    req.gen = &conf;
    req.headers = hdrs;
    err[0] = '\0';
}

static void teardown(void)
{
    sg_conf_free_regexes(&conf);
    sg_arena_free(&req.arena);
    sg_arena_free(&conf.arena);
}

TestSuite(map, .init = setup, .fini = teardown);

/* map SOURCE $NAME { lines... }: pairs of key, value; NULL ends. */
static sg_map *make_map(const char *source, const char *name, const char *const *kv)
{
    sg_map *m = sg_map_new(&conf, sg_str_from(source), P, err, sizeof(err));
    cr_assert_not_null(m, "%s", err);
    cr_assert(sg_var_define_map(&conf, sg_str_from(name), m, err, sizeof(err)), "%s", err);
    for (; kv[0]; kv += 2)
        cr_assert(sg_map_add(m, sg_str_from(kv[0]), sg_str_from(kv[1]), P, err, sizeof(err)), "%s", err);
    return m;
}

/* A fresh request (the map result is cached per request). */
static char *value_of(const char *var)
{
    sg_arena_reset(&req.arena);
    req.var_cache = NULL;
    req.var_cached = NULL;
    req.ncaptures = 0;
    sg_str v = sg_var_get(&req, sg_var_index(&conf, sg_str_from(var), P));
    return sg_arena_strndup(&req.arena, v.p, v.n);
}

static void set_header(const char *n, const char *v)
{
    hdrs[0] = (sg_header){ sg_str_from(n), sg_str_from(v), 0 };
    req.nheaders = 1;
}

Test(map, websocket_connection_upgrade)
{
    /* seed 08: map $http_upgrade $connection_upgrade { default upgrade; '' close; } */
    make_map("$http_upgrade", "connection_upgrade",
             (const char *const[]){ "default", "upgrade", "", "close", NULL });
    req.nheaders = 0;
    cr_assert_str_eq(value_of("connection_upgrade"), "close");
    set_header("Upgrade", "websocket");
    cr_assert_str_eq(value_of("connection_upgrade"), "upgrade");
}

Test(map, exact_strings_ignore_case_and_no_default_is_empty)
{
    make_map("$http_x_env", "env", (const char *const[]){ "Production", "prod", "\\default", "lit", NULL });
    set_header("X-Env", "PRODUCTION");
    cr_assert_str_eq(value_of("env"), "prod");
    set_header("X-Env", "default");
    cr_assert_str_eq(value_of("env"), "lit");
    set_header("X-Env", "staging");
    cr_assert_str_eq(value_of("env"), "");
}

Test(map, regex_in_order_with_captures)
{
    make_map("$uri", "backend",
             (const char *const[]){ "~^/api/v(\\d+)/", "api$1", "~*^/API", "caseless",
                                    "~^/api", "never", "/exact", "exact", "default", "dflt", NULL });
    req.uri = SG_STR("/api/v2/users");
    cr_assert_str_eq(value_of("backend"), "api2");
    req.uri = SG_STR("/Api/x");
    cr_assert_str_eq(value_of("backend"), "caseless");
    req.uri = SG_STR("/exact");
    cr_assert_str_eq(value_of("backend"), "exact");
    req.uri = SG_STR("/other");
    cr_assert_str_eq(value_of("backend"), "dflt");
}

Test(map, value_with_variables)
{
    make_map("$http_host", "target", (const char *const[]){ "default", "$uri.fallback", NULL });
    req.uri = SG_STR("/u");
    cr_assert_str_eq(value_of("target"), "/u.fallback");
}

Test(map, hostnames_precedence)
{
    make_map("$http_host", "site",
             (const char *const[]){ "hostnames", "", "*.example.com", "wild",
                                    "*.a.example.com", "longer", ".example.org", "dot",
                                    "www.example.*", "tail", "exact.example.com", "exact",
                                    "~^www\\.", "regex", NULL });
    set_header("Host", "exact.example.com");
    cr_assert_str_eq(value_of("site"), "exact");
    set_header("Host", "x.example.com");
    cr_assert_str_eq(value_of("site"), "wild");
    set_header("Host", "x.a.example.com");
    cr_assert_str_eq(value_of("site"), "longer");
    set_header("Host", "www.example.com");
    cr_assert_str_eq(value_of("site"), "wild");     /* head wildcard before tail */
    set_header("Host", "www.example.net");
    cr_assert_str_eq(value_of("site"), "tail");
    set_header("Host", "example.org");
    cr_assert_str_eq(value_of("site"), "dot");
    set_header("Host", "deep.sub.example.org.");
    cr_assert_str_eq(value_of("site"), "dot");
    set_header("Host", "www.other.net");
    cr_assert_str_eq(value_of("site"), "regex");
}

Test(map, without_hostnames_wildcards_are_strings)
{
    make_map("$http_host", "h", (const char *const[]){ "*.example.com", "star", NULL });
    set_header("Host", "a.example.com");
    cr_assert_str_eq(value_of("h"), "");
    set_header("Host", "*.example.com");
    cr_assert_str_eq(value_of("h"), "star");
}

Test(map, errors)
{
    sg_map *m = sg_map_new(&conf, SG_STR("$uri"), P, err, sizeof(err));
    cr_assert(sg_map_add(m, SG_STR("a"), SG_STR("1"), P, err, sizeof(err)));
    cr_assert_not(sg_map_add(m, SG_STR("A"), SG_STR("2"), P, err, sizeof(err)));
    cr_assert_str_eq(err, "m.conf:7:3: conflicting parameter \"A\"");
    cr_assert(sg_map_add(m, SG_STR("default"), SG_STR("1"), P, err, sizeof(err)));
    cr_assert_not(sg_map_add(m, SG_STR("default"), SG_STR("2"), P, err, sizeof(err)));
    cr_assert_str_eq(err, "m.conf:7:3: duplicate default map parameter");
    cr_assert_not(sg_map_add(m, SG_STR("~(unclosed"), SG_STR("2"), P, err, sizeof(err)));
    cr_assert(strncmp(err, "m.conf:7:3: pcre2_compile() failed: ", 36) == 0, "%s", err);
    cr_assert(strstr(err, "in \"(unclosed\""), "%s", err);
    cr_assert(sg_var_define_map(&conf, SG_STR("m"), m, err, sizeof(err)));
}

Test(map, map_used_before_declared)
{
    sg_cval cv;
    cr_assert(sg_cval_compile(&conf, SG_STR("[$later]"), P, &cv, err, sizeof(err)));
    make_map("$uri", "later", (const char *const[]){ "default", "ok", NULL });
    cr_assert(sg_vars_finish(&conf, err, sizeof(err)), "%s", err);
    cr_assert_str_eq(sg_arena_strndup(&req.arena, sg_cval_eval(&cv, &req).p, 4), "[ok]");
}

Test(map, result_cached_per_request_and_cycles_broken)
{
    make_map("$b", "a", (const char *const[]){ "default", "A$b", NULL });
    make_map("$a", "b", (const char *const[]){ "default", "B$a", NULL });
    cr_assert(sg_vars_finish(&conf, err, sizeof(err)), "%s", err);
    /* A cycle must terminate (nginx reports it and yields an empty value). */
    (void)value_of("a");
    sg_str v1 = sg_var_get(&req, sg_var_index(&conf, SG_STR("a"), P));
    sg_str v2 = sg_var_get(&req, sg_var_index(&conf, SG_STR("a"), P));
    cr_assert_eq(v1.p, v2.p);
}
