/* Variables and complex values: nginx-compatible values and errors. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <regex.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/map.h"
#include "conf/vars.h"
#include "exchange/vars.h"

static sg_conf conf;
static sg_http_req req;
static struct sockaddr_in peer4, local4;
static struct sockaddr_in6 peer6;
static sg_header hdrs[8];

static void setup(void)
{
    memset(&conf, 0, sizeof(conf));
    sg_arena_init(&conf.arena, 0);
    memset(&req, 0, sizeof(req));
    sg_arena_init(&req.arena, 0);
    req.gen = &conf;
    peer4.sin_family = AF_INET;
    peer4.sin_port = htons(54321);
    inet_pton(AF_INET, "192.0.2.7", &peer4.sin_addr);
    local4.sin_family = AF_INET;
    local4.sin_port = htons(8080);
    inet_pton(AF_INET, "127.0.0.1", &local4.sin_addr);
    peer6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &peer6.sin6_addr);
    req.peer = (struct sockaddr *)&peer4;
    req.local = (struct sockaddr *)&local4;
    req.method = SG_STR("GET");
    req.request_uri = SG_STR("/a/b?x=1&Y=two");
    req.uri = SG_STR("/a/b");
    req.args = SG_STR("x=1&Y=two");
    req.has_args = true;
    req.http_major = 1;
    req.http_minor = 1;
    req.headers = hdrs;
    req.nheaders = 0;
}

static void teardown(void)
{
    sg_arena_free(&req.arena);
    sg_arena_free(&conf.arena);
}

static void add_header(const char *n, const char *v)
{
    hdrs[req.nheaders++] = (sg_header){ sg_str_from(n), sg_str_from(v), 0 };
}

static sg_conf_pos P = { "test.conf", 3, 5 };

/* Evaluates "text" as a complex value on req. */
static char *eval(const char *text)
{
    sg_cval cv;
    char err[256] = "";
    cr_assert(sg_cval_compile(&conf, sg_str_from(text), P, &cv, err, sizeof(err)), "%s", err);
    sg_str v = sg_cval_eval(&cv, &req);
    return sg_arena_strndup(&req.arena, v.p, v.n);
}

static char *eval_log(const char *text, bool json, bool none)
{
    sg_cval cv;
    char err[256] = "";
    cr_assert(sg_cval_compile(&conf, sg_str_from(text), P, &cv, err, sizeof(err)), "%s", err);
    sg_strbuf b = { 0 };
    sg_cval_eval_log(&cv, &req, json, none, &b);
    char *s = sg_arena_strndup(&req.arena, b.p ? b.p : "", b.n);
    sg_strbuf_free(&b);
    return s;
}

static bool matches(const char *s, const char *ere)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, ere, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

TestSuite(vars, .init = setup, .fini = teardown);

Test(vars, index_is_stable_and_shared)
{
    int a = sg_var_index(&conf, SG_STR("host"), P);
    int b = sg_var_index(&conf, SG_STR("http_x_forwarded_for"), P);
    cr_assert_eq(sg_var_index(&conf, SG_STR("host"), P), a);
    cr_assert_neq(a, b);
    cr_assert_eq(conf.vars.defs[a].kind, SG_VAR_HOST);
    cr_assert_eq(conf.vars.defs[b].kind, SG_VAR_HTTP_HEADER);
    cr_assert(sg_str_eq_lit(conf.vars.defs[b].param, "x-forwarded-for"));
    int u = sg_var_index(&conf, SG_STR("http_user_agent"), P);
    cr_assert_eq(conf.vars.defs[u].kind, SG_VAR_HTTP_USER_AGENT);
}

Test(vars, host_lowercased_without_port)
{
    add_header("Host", "WWW.Example.COM:8080");
    cr_assert_str_eq(eval("$host"), "www.example.com");
}

Test(vars, host_ipv6_literal_keeps_brackets)
{
    add_header("host", "[::1]:8080");
    cr_assert_str_eq(eval("$host"), "[::1]");
}

Test(vars, host_falls_back_to_server_name)
{
    sg_server_name names[] = { { SG_SN_EXACT, SG_STR("example.org"), NULL } };
    sg_server_conf srv = { .names = names, .nnames = 1 };
    req.srv = &srv;
    cr_assert_str_eq(eval("$host"), "example.org");
    cr_assert_str_eq(eval("$server_name"), "example.org");
}

Test(vars, addresses_and_ports)
{
    cr_assert_str_eq(eval("$remote_addr:$remote_port"), "192.0.2.7:54321");
    cr_assert_str_eq(eval("$server_addr:$server_port"), "127.0.0.1:8080");
    cr_assert_eq(sg_var_get(&req, sg_var_index(&conf, SG_STR("binary_remote_addr"), P)).n, 4);
    req.peer = (struct sockaddr *)&peer6;
    cr_assert_str_eq(eval("$remote_addr"), "2001:db8::1");
    cr_assert_eq(sg_var_get(&req, sg_var_index(&conf, SG_STR("binary_remote_addr"), P)).n, 16);
}

Test(vars, request_line_and_uri_parts)
{
    cr_assert_str_eq(eval("$request"), "GET /a/b?x=1&Y=two HTTP/1.1");
    cr_assert_str_eq(eval("$uri$is_args$args"), "/a/b?x=1&Y=two");
    cr_assert_str_eq(eval("$request_method $document_uri $query_string"), "GET /a/b x=1&Y=two");
    cr_assert_str_eq(eval("$scheme"), "http");
    req.https = true;
    cr_assert_str_eq(eval("$scheme $server_protocol"), "https HTTP/1.1");
}

Test(vars, args_by_name_ignoring_case)
{
    cr_assert_str_eq(eval("[$arg_x][$arg_y][$arg_z]"), "[1][two][]");
    cr_assert_null(sg_var_get(&req, sg_var_index(&conf, SG_STR("arg_z"), P)).p);
}

Test(vars, no_args)
{
    req.args = SG_STR_NULL;
    req.has_args = false;
    cr_assert_str_eq(eval("[$is_args]"), "[]");
    cr_assert_str_eq(eval_log("[$args]", false, false), "[-]");
}

Test(vars, status_and_counters)
{
    cr_assert_str_eq(eval("$status"), "000");
    req.status = 204;
    req.body_bytes_sent = 12;
    req.bytes_sent = 140;
    cr_assert_str_eq(eval("$status $body_bytes_sent $bytes_sent"), "204 12 140");
}

Test(vars, proxy_add_x_forwarded_for)
{
    cr_assert_str_eq(eval("$proxy_add_x_forwarded_for"), "192.0.2.7");
    add_header("X-Forwarded-For", "10.0.0.1");
    add_header("x-forwarded-for", "10.0.0.2");
    cr_assert_str_eq(eval("$proxy_add_x_forwarded_for"), "10.0.0.1, 10.0.0.2, 192.0.2.7");
    cr_assert_str_eq(eval("$http_x_forwarded_for"), "10.0.0.1, 10.0.0.2");
}

Test(vars, headers_cookies)
{
    add_header("X-Custom", "one");
    add_header("X-Custom", "two");
    add_header("Cookie", "a=1; sid=abc ");
    add_header("Cookie", "b=2");
    cr_assert_str_eq(eval("$http_x_custom"), "one, two");   /* nginx 1.23: every field, joined */
    cr_assert_str_eq(eval("$http_cookie"), "a=1; sid=abc ; b=2");
    cr_assert_str_eq(eval("[$cookie_sid][$cookie_b][$cookie_none]"), "[abc][2][]");
    cr_assert_str_eq(eval_log("$http_referer \"$http_user_agent\"", false, false), "- \"-\"");
}

Test(vars, proxy_host_and_upstream)
{
    sg_proxy_pass pp = { .host = SG_STR("backend") };
    sg_location loc = { 0 };
    loc.conf.proxy_pass = &pp;
    req.loc = &loc;
    cr_assert_str_eq(eval("$proxy_host"), "backend");
    cr_assert_str_eq(eval_log("$upstream_addr $upstream_status", false, false), "- -");
    req.upstream_addr = SG_STR("127.0.0.1:8081");
    req.upstream_status = SG_STR("200");
    cr_assert_str_eq(eval("$upstream_addr $upstream_status"), "127.0.0.1:8081 200");
    req.upstream_addr = req.upstream_status = (sg_str){ 0 };
}

Test(vars, time_formats)
{
    clock_gettime(CLOCK_MONOTONIC, &req.start_mono);
    cr_assert(matches(eval("$time_local"),
                      "^[0-3][0-9]/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/"
                      "[0-9]{4}:[0-2][0-9]:[0-5][0-9]:[0-6][0-9] [+-][0-9]{4}$"));
    cr_assert(matches(eval("$time_iso8601"),
                      "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9][+-][0-9]{2}:[0-9]{2}$"));
    cr_assert(matches(eval("$msec"), "^[0-9]{10,}\\.[0-9]{3}$"));
    cr_assert(matches(eval("$request_time"), "^0\\.0[0-9]{2}$"));
}

Test(vars, captures_from_regex)
{
    char err[256];
    void *re = sg_regex_compile(SG_STR("^/(\\w+)/(\\w+)$"), false, err, sizeof(err));
    cr_assert_not_null(re, "%s", err);
    cr_assert(sg_regex_exec(re, req.uri, &req));
    cr_assert_str_eq(eval("$1-$2-${1}x"), "a-b-ax");
    cr_assert_str_eq(eval("[$3]"), "[]");
    sg_regex_free(re);
}

Test(vars, regex_compile_error_message)
{
    char err[256];
    cr_assert_null(sg_regex_compile(SG_STR("(a"), false, err, sizeof(err)));
    cr_assert(strstr(err, "pcre2_compile() failed: ") == err, "%s", err);
    cr_assert(strstr(err, " in \"(a\""), "%s", err);
}

Test(vars, cval_syntax_errors)
{
    sg_cval cv;
    char err[256];
    cr_assert_not(sg_cval_compile(&conf, SG_STR("abc$"), P, &cv, err, sizeof(err)));
    cr_assert_str_eq(err, "test.conf:3:5: invalid variable name in \"abc$\"");
    cr_assert_not(sg_cval_compile(&conf, SG_STR("${host"), P, &cv, err, sizeof(err)));
    cr_assert_str_eq(err, "test.conf:3:5: the closing bracket in \"host\" variable is missing");
    cr_assert_not(sg_cval_compile(&conf, SG_STR("a $ b"), P, &cv, err, sizeof(err)));
    cr_assert(sg_cval_compile(&conf, SG_STR("plain text"), P, &cv, err, sizeof(err)));
    cr_assert(cv.literal);
    cr_assert_str_eq(eval("${host}s"), "s");   /* no Host, no server: empty */
}

Test(vars, unknown_variable_reported_at_first_use)
{
    sg_cval cv;
    char err[256];
    cr_assert(sg_cval_compile(&conf, SG_STR("$nosuch"), P, &cv, err, sizeof(err)));
    cr_assert_not(sg_vars_finish(&conf, err, sizeof(err)));
    cr_assert_str_eq(err, "test.conf:3:5: unknown \"nosuch\" variable");
}

Test(vars, map_cannot_redefine_builtin)
{
    char err[256];
    sg_map *m = sg_map_new(&conf, SG_STR("$uri"), P, err, sizeof(err));
    cr_assert_not_null(m);
    cr_assert_not(sg_var_define_map(&conf, SG_STR("host"), m, err, sizeof(err)));
    cr_assert(sg_var_define_map(&conf, SG_STR("later"), m, err, sizeof(err)));
    cr_assert_not(sg_var_define_map(&conf, SG_STR("later"), m, err, sizeof(err)));
    cr_assert(sg_vars_finish(&conf, err, sizeof(err)));
}

Test(vars, log_escaping_default)
{
    add_header("User-Agent", "a\"b\\c\x01\xc3\xa9");
    cr_assert_str_eq(eval_log("\"$http_user_agent\"", false, false),
                     "\"a\\x22b\\x5Cc\\x01\\xC3\\xA9\"");
}

Test(vars, log_escaping_json)
{
    add_header("User-Agent", "a\"b\\c\n\t\x01\xc3\xa9");
    cr_assert_str_eq(eval_log("{\"ua\":\"$http_user_agent\",\"ref\":\"$http_referer\"}", true, false),
                     "{\"ua\":\"a\\\"b\\\\c\\n\\t\\u0001\xc3\xa9\",\"ref\":\"\"}");
}

Test(vars, log_escaping_none)
{
    add_header("User-Agent", "a\"b");
    cr_assert_str_eq(eval_log("[$http_user_agent][$http_referer]", false, true), "[a\"b][]");
}
