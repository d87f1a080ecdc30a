/* Access log: lines as nginx writes them, buffering, sharing, reopening. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/vars.h"
#include "exchange/vars.h"
#include "observe/access_log.h"

static char dir[] = "/tmp/sg_alog_XXXXXX";
static char path[256];
static char err[512];

typedef struct gen {
    sg_conf c;
    sg_server_conf srv;
    sg_server_conf *servers[1];
    sg_location root, loc;
    sg_location *children[1];
    sg_log_format fmt;
    sg_access_log logs[1];
} gen;

static void gen_init(gen *g, const char *logpath, const char *format, bool json, size_t bufsize)
{
    memset(g, 0, sizeof(*g));
    sg_arena_init(&g->c.arena, 0);
    g->c.servers = g->servers;
    g->c.nservers = 1;
    g->servers[0] = &g->srv;
    g->srv.root = &g->root;
    g->root.children = g->children;
    g->root.nchildren = 1;
    g->children[0] = &g->loc;
    g->fmt.name = "test";
    g->fmt.escape_json = json;
    cr_assert(sg_cval_compile(&g->c, sg_str_from(format), (sg_conf_pos){ "t.conf", 1, 1 },
                              &g->fmt.format, err, sizeof(err)), "%s", err);
    cr_assert(sg_vars_finish(&g->c, err, sizeof(err)), "%s", err);
    g->logs[0] = (sg_access_log){ .path = (char *)logpath, .format = &g->fmt, .buffer_size = bufsize };
    g->loc.conf.access_logs = g->logs;
    g->loc.conf.naccess_logs = 1;
    g->root.conf = g->loc.conf;      /* merged: both share the same log entry */
}

static void gen_free(gen *g)
{
    sg_access_log_close_all(&g->c);
    sg_arena_free(&g->c.arena);
}

static void req_init(sg_http_req *r, gen *g, const char *uri, int status)
{
    memset(r, 0, sizeof(*r));
    sg_arena_init(&r->arena, 0);
    r->gen = &g->c;
    r->srv = &g->srv;
    r->loc = &g->loc;
    r->method = SG_STR("GET");
    r->uri = r->request_uri = sg_str_from(uri);
    r->http_major = r->http_minor = 1;
    r->status = status;
}

static char *slurp(const char *p)
{
    static char buf[65536];
    FILE *f = fopen(p, "r");
    if (!f) return strcpy(buf, "(missing)");
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void setup(void)
{
    strcpy(dir, "/tmp/sg_alog_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/access.log", dir);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) { /* best effort */ }
}

TestSuite(access_log, .init = setup, .fini = teardown);

Test(access_log, lines_buffered_until_flush)
{
    gen g;
    gen_init(&g, path, "$request $status \"$http_referer\"", false, 0);
    cr_assert(sg_access_log_open_all(&g.c, err, sizeof(err)), "%s", err);
    cr_assert_not_null(g.logs[0].file);
    sg_http_req r;
    req_init(&r, &g, "/a", 200);
    sg_access_log_write(&r);
    sg_arena_free(&r.arena);
    req_init(&r, &g, "/b\"q", 404);
    sg_access_log_write(&r);
    cr_assert_str_eq(slurp(path), "");            /* no system call per request */
    sg_access_log_flush_thread();
    cr_assert_str_eq(slurp(path), "GET /a HTTP/1.1 200 \"-\"\nGET /b\\x22q HTTP/1.1 404 \"-\"\n");
    sg_arena_free(&r.arena);
    gen_free(&g);
}

Test(access_log, json_escaping)
{
    gen g;
    gen_init(&g, path, "{\"uri\":\"$uri\",\"ref\":\"$http_referer\",\"status\":$status}", true, 0);
    cr_assert(sg_access_log_open_all(&g.c, err, sizeof(err)), "%s", err);
    sg_http_req r;
    req_init(&r, &g, "/x\"\\\n", 200);
    sg_access_log_write(&r);
    sg_access_log_flush_thread();
    cr_assert_str_eq(slurp(path), "{\"uri\":\"/x\\\"\\\\\\n\",\"ref\":\"\",\"status\":200}\n");
    sg_arena_free(&r.arena);
    gen_free(&g);
}

Test(access_log, small_buffer_flushes_when_full)
{
    gen g;
    gen_init(&g, path, "$uri", false, 8);
    cr_assert(sg_access_log_open_all(&g.c, err, sizeof(err)), "%s", err);
    sg_http_req r;
    req_init(&r, &g, "/12345", 200);
    sg_access_log_write(&r);                      /* 7 bytes: buffered */
    cr_assert_str_eq(slurp(path), "");
    sg_access_log_write(&r);                      /* would overflow: first line written */
    cr_assert_str_eq(slurp(path), "/12345\n");
    sg_access_log_flush_thread();
    cr_assert_str_eq(slurp(path), "/12345\n/12345\n");
    sg_arena_free(&r.arena);
    gen_free(&g);
}

Test(access_log, off_writes_nothing)
{
    gen g;
    gen_init(&g, path, "$uri", false, 0);
    cr_assert(sg_access_log_open_all(&g.c, err, sizeof(err)), "%s", err);
    g.loc.conf.access_log_off = true;
    sg_http_req r;
    req_init(&r, &g, "/x", 200);
    sg_access_log_write(&r);
    sg_access_log_flush_thread();
    cr_assert_str_eq(slurp(path), "");
    sg_arena_free(&r.arena);
    gen_free(&g);
}

Test(access_log, open_failure_message)
{
    gen g;
    char bad[300];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/a.log", dir);
    gen_init(&g, bad, "$uri", false, 0);
    cr_assert_not(sg_access_log_open_all(&g.c, err, sizeof(err)));
    char want[512];
    snprintf(want, sizeof(want), "open() \"%s\" failed (2: No such file or directory)", bad);
    cr_assert_str_eq(err, want);
    cr_assert_null(g.logs[0].file);
    gen_free(&g);
}

Test(access_log, shared_across_generations_and_reopened)
{
    gen g1, g2;
    gen_init(&g1, path, "one $uri", false, 0);
    gen_init(&g2, path, "two $uri", false, 0);
    cr_assert(sg_access_log_open_all(&g1.c, err, sizeof(err)), "%s", err);
    cr_assert(sg_access_log_open_all(&g2.c, err, sizeof(err)), "%s", err);
    cr_assert_eq(g1.logs[0].file, g2.logs[0].file);
    sg_http_req r;
    req_init(&r, &g1, "/a", 200);
    sg_access_log_write(&r);
    gen_free(&g1);                                /* reload: the old generation goes */
    sg_arena_free(&r.arena);
    req_init(&r, &g2, "/b", 200);
    sg_access_log_write(&r);
    sg_access_log_flush_thread();
    cr_assert_str_eq(slurp(path), "one /a\ntwo /b\n");

    char rotated[300];
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    cr_assert_eq(rename(path, rotated), 0);
    sg_arena_free(&r.arena);
    req_init(&r, &g2, "/c", 200);
    sg_access_log_write(&r);
    sg_access_log_reopen_all();                   /* SIGUSR1 */
    sg_access_log_flush_thread();
    cr_assert_str_eq(slurp(path), "two /c\n");
    cr_assert_str_eq(slurp(rotated), "one /a\ntwo /b\n");
    sg_arena_free(&r.arena);
    gen_free(&g2);
    sg_access_log_flush_thread();                 /* drops this thread's hold: file closed */
}

static void *writer(void *arg)
{
    gen *g = arg;
    sg_http_req r;
    for (int i = 0; i < 1000; i++) {
        req_init(&r, g, "/thread", 200);
        sg_access_log_write(&r);
        sg_arena_free(&r.arena);
    }
    sg_access_log_flush_thread();
    return NULL;
}

Test(access_log, threads_write_whole_lines)
{
    gen g;
    gen_init(&g, path, "$uri $status", false, 256);
    cr_assert(sg_access_log_open_all(&g.c, err, sizeof(err)), "%s", err);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, writer, &g);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    const char *s = slurp(path);
    size_t lines = 0;
    for (const char *p = s; (p = strstr(p, "/thread 200\n")); p += 12) lines++;
    cr_assert_eq(lines, 4000);
    cr_assert_eq(strlen(s), 4000 * 12);
    gen_free(&g);
}
