/* Routing: server_name and location selection as nginx documents them. */
#include <criterion/criterion.h>
#include <string.h>

#include "conf/conf.h"
#include "exchange/vars.h"
#include "proxy/router.h"

static sg_conf conf;
static sg_http_req req;
static char err[512];

static void setup(void)
{
    memset(&conf, 0, sizeof(conf));
    sg_arena_init(&conf.arena, 0);
    memset(&req, 0, sizeof(req));
    sg_arena_init(&req.arena, 0);
    req.gen = &conf;
    err[0] = '\0';
}

static void teardown(void)
{
    sg_conf_free_regexes(&conf);
    sg_arena_free(&req.arena);
    sg_arena_free(&conf.arena);
}

TestSuite(router, .init = setup, .fini = teardown);

/* What loading does for a configuration built by hand: conf compiles the
 * regexes, the router indexes the locations. */
static bool compile(void)
{
    if (!sg_conf_compile_regexes(&conf, err, sizeof(err))) return false;
    sg_router_build(&conf);
    return true;
}

static sg_location *new_loc(sg_location *parent, sg_loc_match match, const char *name, int line)
{
    sg_location *l = sg_arena_alloc(&conf.arena, sizeof(*l));
    memset(l, 0, sizeof(*l));
    l->match = match;
    l->name = sg_str_from(name);
    l->pos = (sg_conf_pos){ "r.conf", line, 5 };
    l->parent = parent;
    if (parent) {
        sg_location **ch = sg_arena_alloc(&conf.arena, (parent->nchildren + 1) * sizeof(*ch));
        if (parent->nchildren) memcpy(ch, parent->children, parent->nchildren * sizeof(*ch));
        ch[parent->nchildren++] = l;
        parent->children = ch;
    }
    return l;
}

static sg_server_conf *new_server(void)
{
    sg_server_conf *s = sg_arena_alloc(&conf.arena, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->pos = (sg_conf_pos){ "r.conf", 1, 1 };
    s->root = new_loc(NULL, SG_LOC_PREFIX, "", 1);
    sg_server_conf **v = sg_arena_alloc(&conf.arena, (conf.nservers + 1) * sizeof(*v));
    if (conf.nservers) memcpy(v, conf.servers, conf.nservers * sizeof(*v));
    v[conf.nservers++] = s;
    conf.servers = v;
    return s;
}

static const char *route(const sg_server_conf *s, const char *uri)
{
    const sg_location *l = sg_router_location(s, sg_str_from(uri), &req);
    if (!l) return "(none)";
    return sg_arena_strndup(&req.arena, l->name.p, l->name.n);
}

/* The example of nginx's documentation for the location directive. */
Test(router, nginx_documented_example)
{
    sg_server_conf *s = new_server();
    new_loc(s->root, SG_LOC_EXACT, "/", 2);                          /* A */
    new_loc(s->root, SG_LOC_PREFIX, "/", 3);                         /* B */
    new_loc(s->root, SG_LOC_PREFIX, "/documents/", 4);               /* C */
    new_loc(s->root, SG_LOC_PREFIX_NOREGEX, "/images/", 5);          /* D */
    new_loc(s->root, SG_LOC_REGEX_CASELESS, "\\.(gif|jpg|jpeg)$", 6); /* E */
    cr_assert(compile(), "%s", err);
    const sg_location *a = sg_router_location(s, SG_STR("/"), &req);
    cr_assert_eq(a->match, SG_LOC_EXACT);                            /* "/" -> A */
    const sg_location *b = sg_router_location(s, SG_STR("/index.html"), &req);
    cr_assert_eq(b->match, SG_LOC_PREFIX);
    cr_assert_str_eq(route(s, "/index.html"), "/");                  /* B */
    cr_assert_str_eq(route(s, "/documents/document.html"), "/documents/");  /* C */
    cr_assert_str_eq(route(s, "/images/1.gif"), "/images/");        /* D */
    cr_assert_str_eq(route(s, "/documents/1.jpg"), "\\.(gif|jpg|jpeg)$");  /* E */
    cr_assert_str_eq(route(s, "/DOCUMENTS/1.JPG"), "\\.(gif|jpg|jpeg)$");  /* ~* caseless */
}

Test(router, regex_in_declaration_order_and_captures)
{
    sg_server_conf *s = new_server();
    new_loc(s->root, SG_LOC_PREFIX, "/", 2);
    new_loc(s->root, SG_LOC_REGEX, "^/user/(\\d+)$", 3);
    new_loc(s->root, SG_LOC_REGEX, "^/user/", 4);
    new_loc(s->root, SG_LOC_REGEX, "^/CASE$", 5);
    cr_assert(compile(), "%s", err);
    req.uri = SG_STR("/user/42");
    cr_assert_str_eq(route(s, "/user/42"), "^/user/(\\d+)$");
    int v = sg_var_index(&conf, SG_STR("1"), (sg_conf_pos){ 0 });
    sg_str one = sg_var_get(&req, v);
    cr_assert(sg_str_eq_lit(one, "42"));
    cr_assert_str_eq(route(s, "/user/abc"), "^/user/");
    cr_assert_str_eq(route(s, "/case"), "/");                        /* "~" is case-sensitive */
}

Test(router, no_match_without_root_prefix)
{
    sg_server_conf *s = new_server();
    new_loc(s->root, SG_LOC_PREFIX, "/app", 2);
    new_loc(s->root, SG_LOC_EXACT, "/exact", 3);
    cr_assert(compile(), "%s", err);
    cr_assert_str_eq(route(s, "/other"), "(none)");
    cr_assert_str_eq(route(s, "/exact/more"), "(none)");
    cr_assert_str_eq(route(s, "/application"), "/app");              /* plain string prefix */
}

Test(router, nested_locations)
{
    sg_server_conf *s = new_server();
    new_loc(s->root, SG_LOC_PREFIX, "/", 2);
    sg_location *api = new_loc(s->root, SG_LOC_PREFIX, "/api/", 3);
    new_loc(api, SG_LOC_PREFIX, "/api/v1/", 4);
    new_loc(api, SG_LOC_EXACT, "/api/health", 5);
    new_loc(api, SG_LOC_REGEX, "\\.json$", 6);
    new_loc(s->root, SG_LOC_REGEX, "\\.(json|xml)$", 7);
    sg_location *st = new_loc(s->root, SG_LOC_PREFIX_NOREGEX, "/static/", 8);
    new_loc(st, SG_LOC_REGEX, "\\.css$", 9);
    cr_assert(compile(), "%s", err);

    cr_assert_str_eq(route(s, "/api/v1/x"), "/api/v1/");
    cr_assert_str_eq(route(s, "/api/health"), "/api/health");
    cr_assert_str_eq(route(s, "/api/v1/x.json"), "\\.json$");        /* nested regex first */
    cr_assert_str_eq(route(s, "/api/x.xml"), "\\.(json|xml)$");     /* then the outer level */
    cr_assert_str_eq(route(s, "/x.json"), "\\.(json|xml)$");
    /* ^~ stops the regexes of its level, yet its own nested regexes run. */
    cr_assert_str_eq(route(s, "/static/a.xml"), "/static/");
    cr_assert_str_eq(route(s, "/static/a.css"), "\\.css$");
}

Test(router, inner_noregex_still_lets_outer_regex_run)
{
    /* nginx: "^~" nested in a plain prefix only skips its own level's regexes. */
    sg_server_conf *s = new_server();
    sg_location *a = new_loc(s->root, SG_LOC_PREFIX, "/a/", 2);
    new_loc(a, SG_LOC_PREFIX_NOREGEX, "/a/b/", 3);
    new_loc(a, SG_LOC_REGEX, "\\.png$", 4);
    new_loc(s->root, SG_LOC_REGEX, "\\.(png|gif)$", 5);
    cr_assert(compile(), "%s", err);
    cr_assert_str_eq(route(s, "/a/b/x.png"), "\\.(png|gif)$");
    cr_assert_str_eq(route(s, "/a/b/x.txt"), "/a/b/");
    cr_assert_str_eq(route(s, "/a/x.png"), "\\.png$");
}

Test(router, named_locations)
{
    sg_server_conf *s = new_server();
    sg_location *n = new_loc(s->root, SG_LOC_NAMED, "@fallback", 3);
    s->named = sg_arena_alloc(&conf.arena, sizeof(*s->named));
    s->named[0] = n;
    s->nnamed = 1;
    cr_assert(compile(), "%s", err);
    cr_assert_eq(sg_router_named(s, SG_STR("@fallback")), n);
    cr_assert_null(sg_router_named(s, SG_STR("@other")));
    cr_assert_str_eq(route(s, "@fallback"), "(none)");   /* never matched by URI */
}

Test(router, bad_location_regex_reports_position)
{
    sg_server_conf *s = new_server();
    new_loc(s->root, SG_LOC_REGEX, "^/(x", 12);
    cr_assert_not(compile());
    cr_assert(strncmp(err, "r.conf:12:5: pcre2_compile() failed: ", 37) == 0, "%s", err);
    cr_assert(strstr(err, "in \"^/(x\""), "%s", err);
}

static void set_names(sg_server_conf *s, sg_server_name *names, size_t n)
{
    s->names = names;
    s->nnames = n;
}

Test(router, server_name_precedence)
{
    sg_server_conf *dflt = new_server(), *exact = new_server(), *head = new_server(),
                   *longhead = new_server(), *tail = new_server(), *rx1 = new_server(),
                   *rx2 = new_server(), *dot = new_server();
    static sg_server_name n_exact[] = { { SG_SN_EXACT, SG_STR("www.example.com"), NULL } };
    static sg_server_name n_head[] = { { SG_SN_WILDCARD_HEAD, SG_STR("example.com"), NULL } };
    static sg_server_name n_longhead[] = { { SG_SN_WILDCARD_HEAD, SG_STR("api.example.com"), NULL } };
    static sg_server_name n_tail[] = { { SG_SN_WILDCARD_TAIL, SG_STR("www.example"), NULL } };
    static sg_server_name n_rx1[] = { { SG_SN_REGEX, SG_STR("^(?<sub>[a-z]+)\\.example\\.net$"), NULL } };
    static sg_server_name n_rx2[] = { { SG_SN_REGEX, SG_STR("\\.net$"), NULL } };
    static sg_server_name n_dot[] = { { SG_SN_DOT, SG_STR("example.org"), NULL } };
    set_names(exact, n_exact, 1);
    set_names(head, n_head, 1);
    set_names(longhead, n_longhead, 1);
    set_names(tail, n_tail, 1);
    set_names(rx1, n_rx1, 1);
    set_names(rx2, n_rx2, 1);
    set_names(dot, n_dot, 1);
    cr_assert(compile(), "%s", err);
    sg_listen_group g = { .servers = conf.servers, .nservers = conf.nservers, .default_server = dflt };

    cr_assert_eq(sg_router_server(&g, SG_STR("www.example.com"), &req), exact);
    cr_assert_eq(sg_router_server(&g, SG_STR("mail.example.com"), &req), head);
    cr_assert_eq(sg_router_server(&g, SG_STR("v1.api.example.com"), &req), longhead);
    cr_assert_eq(sg_router_server(&g, SG_STR("example.com"), &req), dflt);   /* "*." needs a label */
    cr_assert_eq(sg_router_server(&g, SG_STR("www.example.de"), &req), tail);
    cr_assert_eq(sg_router_server(&g, SG_STR("example.org"), &req), dot);
    cr_assert_eq(sg_router_server(&g, SG_STR("a.b.example.org"), &req), dot);
    cr_assert_eq(sg_router_server(&g, SG_STR("shop.example.net"), &req), rx1);
    cr_assert_eq(req.ncaptures, 2);
    cr_assert_eq(req.captures[2], 0);
    cr_assert_eq(req.captures[3], 4);
    cr_assert_eq(sg_router_server(&g, SG_STR("a.b.example.net"), &req), rx2);
    cr_assert_eq(sg_router_server(&g, SG_STR("unknown.test"), &req), dflt);
    cr_assert_eq(sg_router_server(&g, SG_STR(""), &req), dflt);
    g.default_server = NULL;
    cr_assert_eq(sg_router_server(&g, SG_STR("unknown.test"), &req), dflt);  /* first server */
}

/* End to end through the configuration loader (conf/conf.c). The loader is
 * linked weakly so that this file also builds on its own; the test is
 * skipped when the loader is absent. */
#pragma weak sg_conf_load_string
#pragma weak sg_conf_unref

static const char *loaded_route(const sg_conf *c, const char *uri)
{
    const sg_location *l = sg_router_location(c->servers[0], sg_str_from(uri), &req);
    if (!l) return "(none)";
    return sg_arena_strndup(&req.arena, l->conf.return_text.text.p, l->conf.return_text.text.n);
}

static sg_conf *load(const char *text)
{
    if (!sg_conf_load_string) cr_skip_test("configuration loader not linked");
    sg_conf *c = sg_conf_load_string(text, strlen(text), "e2e.conf", "/tmp", err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_geq(c->nservers, 1);
    sg_router_build(c);
    return c;
}

Test(router, loaded_nginx_documented_example)
{
    sg_conf *c = load(
        "events {}\n"
        "http {\n"
        "  server {\n"
        "    listen 127.0.0.1:18080;\n"
        "    location = / { return 200 A; }\n"
        "    location / { return 200 B; }\n"
        "    location /documents/ { return 200 C; }\n"
        "    location ^~ /images/ { return 200 D; }\n"
        "    location ~* \\.(gif|jpg|jpeg)$ { return 200 E; }\n"
        "  }\n"
        "}\n");
    cr_assert_str_eq(loaded_route(c, "/"), "A");
    cr_assert_str_eq(loaded_route(c, "/index.html"), "B");
    cr_assert_str_eq(loaded_route(c, "/documents/document.html"), "C");
    cr_assert_str_eq(loaded_route(c, "/images/1.gif"), "D");
    cr_assert_str_eq(loaded_route(c, "/documents/1.jpg"), "E");
    sg_conf_unref(c);
}

Test(router, loaded_nested_and_server_names)
{
    sg_conf *c = load(
        "events {}\n"
        "http {\n"
        "  server {\n"
        "    listen 127.0.0.1:18081;\n"
        "    server_name www.example.com *.example.com www.example.*;\n"
        "    location /api/ { return 200 api;\n"
        "      location ~ \\.json$ { return 200 json; }\n"
        "    }\n"
        "    location ~ ^/api/(v\\d+)/ { return 200 $1; }\n"
        "  }\n"
        "}\n");
    cr_assert_str_eq(loaded_route(c, "/api/x"), "api");
    cr_assert_str_eq(loaded_route(c, "/api/v2/x.json"), "json");
    cr_assert_str_eq(loaded_route(c, "/api/v2/x"), "$1");
    req.gen = c;   /* $1 is read through the loaded generation's variable table */
    sg_str one = sg_var_get(&req, sg_var_index(c, SG_STR("1"), (sg_conf_pos){ 0 }));
    cr_assert(sg_str_eq_lit(one, "v2"));
    sg_conf_unref(c);
}
