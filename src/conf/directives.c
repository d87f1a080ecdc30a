/* The directive engine, the http table and its setters (nginx's
 * ngx_command_t style).
 *
 * A directive is one line in a table: name, contexts, argument counts,
 * setter, target struct and offset. The main/http table is `cmds` below,
 * stream's is in stream_conf.c; one lookup and one runner read both.
 * Generic setters (flag, size, time, number, string, path, enum) cover
 * most lines. Inheritance is generic too: a field range a level did not
 * set is copied from the level above (sg_directives_merge), so a new
 * inheritable directive needs no merge code. */
#include "conf/directives.h"
#include "conf/balance_conf.h"
#include "conf/geo.h"
#include "conf/charset_conf.h"
#include "conf/gzip_conf.h"
#include "conf/header_conf.h"
#include "conf/limit_conf.h"
#include "conf/map.h"
#include "conf/rate_conf.h"
#include "conf/rewrite.h"
#include "conf/ssl_conf.h"
#include "conf/health_conf.h"
#include "core/syslog.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define LOC(f) SG_T_LOC, 0, offsetof(sg_loc_conf, f), sizeof(((sg_loc_conf *)0)->f)
#define LOC_NM(f) SG_T_LOC, SG_CF_NOMERGE, offsetof(sg_loc_conf, f), sizeof(((sg_loc_conf *)0)->f)
/* a run of adjacent fields, first..last, inherited together */
#define LOC_RANGE(flags, a, b) SG_T_LOC, flags, offsetof(sg_loc_conf, a), \
    offsetof(sg_loc_conf, b) + sizeof(((sg_loc_conf *)0)->b) - offsetof(sg_loc_conf, a)
#define SRV_RANGE(a, b) SG_T_SRV, 0, offsetof(sg_server_conf, a), \
    offsetof(sg_server_conf, b) + sizeof(((sg_server_conf *)0)->b) - offsetof(sg_server_conf, a)
#define SRV_RANGE_F(flags, a, b) SG_T_SRV, flags, offsetof(sg_server_conf, a), \
    offsetof(sg_server_conf, b) + sizeof(((sg_server_conf *)0)->b) - offsetof(sg_server_conf, a)
#define MAIN(f) SG_T_MAIN, 0, offsetof(sg_conf, f), sizeof(((sg_conf *)0)->f)
#define UPS(f) SG_T_UPS, 0, offsetof(sg_upstream_conf, f), sizeof(((sg_upstream_conf *)0)->f)
#define NONE SG_T_NONE, 0, 0, 0

/* error_log writes the level right after the path in both structs */
_Static_assert(offsetof(sg_conf, error_log_level) == offsetof(sg_conf, error_log_path) + sizeof(char *),
               "error_log fields must be adjacent");
_Static_assert(offsetof(sg_loc_conf, error_log_level) ==
               offsetof(sg_loc_conf, error_log_path) + sizeof(char *), "error_log fields must be adjacent");

static bool run_block(sg_cctx *cx, const sg_cnode *blk, uint32_t ctx);

/* ---------------- messages ---------------- */

bool sg_cerr(sg_cctx *cx, sg_conf_pos pos, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(cx->err, cx->errlen, "%s:%d:%d: %s", pos.file ? pos.file : cx->c->file,
             pos.line, pos.col, msg);
    return false;
}

void sg_cnotice(sg_cctx *cx, sg_conf_pos pos, const char *fmt, ...)
{
    char msg[768], line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int n = snprintf(line, sizeof(line), "%s:%d:%d: %s", pos.file ? pos.file : cx->c->file,
                     pos.line, pos.col, msg);
    sg_conf *c = cx->c;
    char **v = sg_arena_alloc(&c->arena, (c->nnotices + 1) * sizeof(*v));
    if (c->nnotices) memcpy(v, c->notices, c->nnotices * sizeof(*v));
    v[c->nnotices++] = sg_arena_strndup(&c->arena, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
    c->notices = v;
}

static bool bad_value(sg_cctx *cx, const sg_cnode *n, const sg_carg *a)
{
    return sg_cerr(cx, a->pos, "invalid value \"%s\" in \"%s\" directive", a->s, n->name.s);
}

static bool bad_param(sg_cctx *cx, const sg_carg *a)
{
    return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
}

static bool param_not_yet(sg_cctx *cx, const sg_cnode *n, const sg_carg *a, size_t keylen)
{
    return sg_cerr(cx, a->pos, "\"%.*s\" parameter of \"%s\" is not supported yet",
                   (int)keylen, a->s, n->name.s);
}

/* An unknown parameter: "not supported yet" if a later issue brings it
 * (it is in `later`), else invalid. Always false. */
static bool unknown_param(sg_cctx *cx, const sg_cnode *n, const sg_carg *a, size_t keylen,
                          const char *const *later)
{
    for (int i = 0; later[i]; i++)
        if (keylen == strlen(later[i]) && strncmp(a->s, later[i], keylen) == 0)
            return param_not_yet(cx, n, a, keylen);
    return bad_param(cx, a);
}

static sg_str arg_str(const sg_carg *a)
{
    return (sg_str){ a->s, a->n };
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---------------- value parsing ---------------- */

static bool parse_num(const char *s, uint64_t max, uint64_t *out)
{
    return sg_str_to_u64(sg_str_from(s), out) && *out <= max;
}

/* "512", "8k", "10m", "1g" (nginx's ngx_parse_size/offset). */
static bool parse_size(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0) return false;
    uint64_t scale = 1;
    switch (s[n - 1]) {
    case 'k': case 'K': scale = 1024; n--; break;
    case 'm': case 'M': scale = 1024 * 1024; n--; break;
    case 'g': case 'G': scale = 1024ull * 1024 * 1024; n--; break;
    default: break;
    }
    uint64_t v;
    if (n == 0 || !sg_str_to_u64((sg_str){ s, n }, &v) || v > UINT64_MAX / scale) return false;
    *out = v * scale;
    return true;
}

bool sg_conf_parse_size(const char *s, uint64_t *out)
{
    return parse_size(s, out);
}

static bool parse_time_ms(const char *s, uint64_t *out);

bool sg_conf_parse_time_ms(const char *s, uint64_t *out)
{
    return parse_time_ms(s, out);
}

/* "500ms", "120s", "120" (seconds), "1m30s", "1h", "1d", "1w", "1M", "1y":
 * nginx's ngx_parse_time, units in decreasing order, each once. */
static bool parse_time_ms(const char *s, uint64_t *out)
{
    static const struct { char u; uint64_t ms; } units[] = {
        { 'y', 365ull * 86400000 }, { 'M', 30ull * 86400000 }, { 'w', 7ull * 86400000 },
        { 'd', 86400000 }, { 'h', 3600000 }, { 'm', 60000 }, { 's', 1000 },
    };
    const int nunits = (int)(sizeof(units) / sizeof(units[0]));
    uint64_t total = 0;
    int last = -1;
    if (*s == '\0') return false;
    while (*s) {
        if (!isdigit((unsigned char)*s)) return false;
        uint64_t v = 0;
        for (; isdigit((unsigned char)*s); s++) {
            if (v > (UINT64_MAX - 9) / 10) return false;
            v = v * 10 + (uint64_t)(*s - '0');
        }
        int rank = -1;
        uint64_t scale = 1000;               /* no unit: seconds, only at the end */
        if (s[0] == 'm' && s[1] == 's') {
            rank = nunits;
            scale = 1;
            s += 2;
        } else {
            for (int i = 0; i < nunits && rank < 0; i++)
                if (*s == units[i].u) rank = i;
            if (rank >= 0) {
                scale = units[rank].ms;
                s++;
            } else if (*s) {
                return false;
            }
        }
        if (rank >= 0) {
            if (rank <= last) return false;  /* each unit once, largest first */
            last = rank;
        }
        if (v > (UINT64_MAX - total) / scale) return false;
        total += v * scale;
    }
    *out = total;
    return true;
}

static void put_uint(void *field, size_t size, uint64_t v)
{
    if (size == sizeof(uint64_t)) {
        uint64_t x = v;
        memcpy(field, &x, sizeof(x));
    } else if (size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, sizeof(x));
    } else if (size == sizeof(uint16_t)) {
        uint16_t x = (uint16_t)v;
        memcpy(field, &x, sizeof(x));
    } else {
        *(bool *)field = v != 0;
    }
}

static uint64_t max_for(size_t size)
{
    return size == sizeof(uint32_t) ? UINT32_MAX - 1 : (size == sizeof(uint16_t) ? UINT16_MAX : UINT64_MAX);
}

/* ---------------- generic setters ---------------- */

bool sg_conf_set_flag(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    bool v;
    if (strcmp(n->args[0].s, "on") == 0) v = true;
    else if (strcmp(n->args[0].s, "off") == 0) v = false;
    else return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive, "
                        "it must be \"on\" or \"off\"", n->args[0].s, n->name.s);
    if (base) *(bool *)((char *)base + cmd->offset) = v;
    return true;
}

bool sg_conf_set_size(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_cmd_bounds *b = cmd->post;
    uint64_t v;
    if (!parse_size(n->args[0].s, &v) || (base && v > max_for(cmd->size)) || (b && (v < b->min || v > b->max)))
        return bad_value(cx, n, &n->args[0]);
    if (base) put_uint((char *)base + cmd->offset, cmd->size, v);
    return true;
}

/* A size followed by a bool that records that the user wrote it (a
 * LOC_RANGE from the size to the flag). */
static bool set_size_flagged(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!parse_size(n->args[0].s, &v)) return bad_value(cx, n, &n->args[0]);
    if (!base) return true;
    char *f = (char *)base + cmd->offset;
    *(uint64_t *)f = v;
    *(bool *)(f + cmd->size - sizeof(bool)) = true;
    return true;
}

bool sg_conf_set_msec(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!parse_time_ms(n->args[0].s, &v) || v >= SG_UNSET_MS) return bad_value(cx, n, &n->args[0]);
    if (base) put_uint((char *)base + cmd->offset, cmd->size, v);
    return true;
}

bool sg_conf_set_num(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!parse_num(n->args[0].s, base ? max_for(cmd->size) : UINT32_MAX, &v))
        return bad_value(cx, n, &n->args[0]);
    if (base) put_uint((char *)base + cmd->offset, cmd->size, v);
    return true;
}

static bool set_str(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_str *f = (sg_str *)((char *)base + cmd->offset);
    *f = sg_arena_str(&cx->c->arena, arg_str(&n->args[0]));
    return true;
}

/* A path relative to the prefix; a char * field, or an sg_str one. */
static bool set_path(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    char *full = sg_conf_full_path(cx->c, n->args[0].s);
    if (cmd->size == sizeof(sg_str)) *(sg_str *)((char *)base + cmd->offset) = sg_str_from(full);
    else *(char **)((char *)base + cmd->offset) = full;
    return true;
}

typedef struct enum_val {
    const char *name;
    int value;
} enum_val;

static bool set_enum(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    for (const enum_val *e = cmd->post; e->name; e++) {
        if (strcmp(e->name, n->args[0].s) == 0) {
            if (base) *(int *)((char *)base + cmd->offset) = e->value;
            return true;
        }
    }
    return bad_value(cx, n, &n->args[0]);
}

/* Accepted for compatibility and checked loosely; see docs/directives.md. */
static bool set_noop(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    return true;
}

/* proxy_temp_path: streamgate streams responses and writes no temporary
 * files for them, so the folder is accepted and not used. */
static bool set_temp_path(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    (void)cmd; (void)base;
    if (n->nargs > 4)
        return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"%s\" directive", n->name.s);
    sg_cnotice(cx, n->name.pos, "\"%s\" is accepted and not used: streamgate streams responses "
               "and writes no temporary files for them", n->name.s);
    return true;
}

/* ---------------- request body (area: body) ---------------- */

/* set_enum writes an int */
static const enum_val request_buffering_vals[] = {
    { "on", SG_RBUF_ON }, { "off", SG_RBUF_OFF }, { NULL, 0 },
};
static const enum_val body_file_vals[] = {
    { "on", SG_BODY_FILE_ON }, { "clean", SG_BODY_FILE_CLEAN }, { "off", SG_BODY_FILE_OFF }, { NULL, 0 },
};
static const sg_cmd_bounds body_buffer_bounds = { 1, 1ull << 31 };

/* client_body_temp_path PATH [level1 [level2 [level3]]]: bodies read
 * before proxying that outgrow client_body_buffer_size (or all of them
 * with client_body_in_file_only) go there. The levels are checked and
 * not used: files are created directly in PATH. */
static bool set_body_temp_path(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (n->nargs > 4)
        return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"%s\" directive", n->name.s);
    for (size_t i = 1; i < n->nargs; i++) {
        uint64_t v;
        if (!parse_num(n->args[i].s, 2, &v) || v == 0) return bad_value(cx, n, &n->args[i]);
    }
    if (base) *(sg_str *)((char *)base + cmd->offset) = sg_str_from(sg_conf_full_path(cx->c, n->args[0].s));
    return true;
}

/* A complex value followed by a bool that records it was written (a
 * LOC_RANGE from the sg_cval to the flag). */
static bool set_cval_flagged(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_cval cv;
    if (!sg_cval_compile(cx->c, arg_str(&n->args[0]), n->args[0].pos, &cv, cx->err, cx->errlen)) return false;
    if (!base) return true;
    char *f = (char *)base + cmd->offset;
    *(sg_cval *)f = cv;
    *(bool *)(f + cmd->size - sizeof(bool)) = true;
    return true;
}

/* ---------------- main and events ---------------- */

static bool set_worker_processes(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (strcmp(n->args[0].s, "auto") == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        v = cpus > 0 ? (uint64_t)cpus : 1;
    } else if (!parse_num(n->args[0].s, 1024, &v) || v == 0) {
        return bad_value(cx, n, &n->args[0]);
    }
    cx->c->worker_processes = (int)v;
    return true;
}

static bool set_use(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (strcmp(n->args[0].s, "epoll") != 0)
        return sg_cerr(cx, n->args[0].pos, "invalid event type \"%s\"", n->args[0].s);
    return true;
}

/* error_log PATH [LEVEL]: in the main context the process's log; in
 * http/server/location the log of the requests there (opened when the
 * generation is activated, see observe/access_log.c). It may repeat at a
 * level (each line its own level): the level's lines are kept as one
 * list, see sg_log_spec_add(). PATH is a file, stderr or syslog:... */
bool sg_conf_set_error_log(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const char *path = n->args[0].s;
    if (starts(path, "memory:"))
        return sg_cerr(cx, n->args[0].pos, "\"memory:\" in \"error_log\" is not supported yet");
    if (starts(path, "syslog:")) {
        char err[256];
        if (!sg_syslog_get(path + 7, err, sizeof(err))) return sg_cerr(cx, n->args[0].pos, "%s", err);
    }
    sg_log_level level = SG_LOG_ERROR;
    if (n->nargs == 2 && !sg_log_level_parse(n->args[1].s, &level))
        return sg_cerr(cx, n->args[1].pos, "invalid log level \"%s\"", n->args[1].s);
    char **f = (char **)((char *)base + cmd->offset);
    sg_log_level *lv = (sg_log_level *)((char *)base + cmd->offset + sizeof(char *));
    const char *full = strcmp(path, "stderr") == 0 || starts(path, "syslog:") ? path
                     : sg_conf_full_path(cx->c, path);
    char *spec = sg_log_spec_add(cx->first ? NULL : *f, full, level);
    *f = sg_arena_strndup(&cx->c->arena, spec, strlen(spec));
    free(spec);
    if (cx->first || level < *lv) *lv = level;
    return true;
}

static bool set_events(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    cx->has_events = true;
    return run_block(cx, n, SG_CTX_EVENTS);
}

sg_lvl *sg_directives_level(sg_cctx *cx, sg_lvl *parent)
{
    sg_lvl *l = sg_arena_alloc(&cx->c->arena, sizeof(*l));
    memset(l, 0, sizeof(*l));
    l->parent = parent;
    if (parent) {
        parent->kids = sg_conf_push(&cx->c->arena, parent->kids, parent->nkids, sizeof(sg_lvl *));
        parent->kids[parent->nkids++] = l;
        l->server = parent->server;
    }
    return l;
}

bool sg_directives_enter(sg_cctx *cx, sg_lvl *l, const sg_cnode *n, uint32_t ctx)
{
    sg_lvl *up = cx->cur;
    cx->cur = l;
    bool ok = run_block(cx, n, ctx);
    cx->cur = up;
    return ok;
}

static bool set_http(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = sg_arena_alloc(&cx->c->arena, sizeof(*lc));
    memset(lc, 0, sizeof(*lc));
    cx->http = sg_directives_level(cx, NULL);
    cx->http->conf = lc;
    sg_directives_loc_defaults(cx, lc, &cx->http->srv);
    cx->c->has_http = true;
    return sg_directives_enter(cx, cx->http, n, SG_CTX_HTTP);
}

/* ---------------- server, listen, server_name ---------------- */

static bool set_server(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    sg_server_conf *s = sg_arena_alloc(&c->arena, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->pos = n->name.pos;
    s->root = sg_arena_alloc(&c->arena, sizeof(sg_location));
    memset(s->root, 0, sizeof(sg_location));
    s->root->name = SG_STR("");
    s->root->pos = n->name.pos;
    c->servers = sg_conf_push(&c->arena, c->servers, c->nservers, sizeof(sg_server_conf *));
    c->servers[c->nservers++] = s;

    sg_lvl *l = sg_directives_level(cx, cx->http);
    l->conf = &s->root->conf;
    l->server = s;
    l->loc = s->root;
    return sg_directives_enter(cx, l, n, SG_CTX_SERVER);
}

bool sg_conf_listen_addr(sg_cctx *cx, const sg_carg *a, sg_listen_conf *lc, int default_port)
{
    sg_str s = arg_str(a), host;
    int port;
    uint64_t v;
    if (starts(a->s, "unix:")) {                 /* "unix:/path": one socket file, no port */
        struct sockaddr_un *un = (struct sockaddr_un *)&lc->addr;
        const char *path = a->s + 5;
        memset(&lc->addr, 0, sizeof(lc->addr));
        if (path[0] == '\0') return sg_cerr(cx, a->pos, "no path in the unix domain socket \"%s\"", a->s);
        if (strlen(path) >= sizeof(un->sun_path))
            return sg_cerr(cx, a->pos, "too long path in the unix domain socket \"%s\"", a->s);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, strlen(path));
        lc->addrlen = sizeof(*un);
        lc->text = sg_conf_addr_text(cx->c, &lc->addr);
        return true;
    }
    if (parse_num(a->s, 65535, &v)) {            /* "8080" */
        host = SG_STR("0.0.0.0");
        port = (int)v;
    } else if (!sg_conf_split_hostport(s, &host, &port) || port == 0) {
        return sg_cerr(cx, a->pos, "invalid port in \"%s\" of the \"listen\" directive", a->s);
    }
    if (port < 0 && default_port < 0)
        return sg_cerr(cx, a->pos, "no port in \"%s\" of the \"listen\" directive", a->s);
    if (port < 0) port = default_port;
    if (sg_str_eq_lit(host, "*")) host = SG_STR("0.0.0.0");
    struct sockaddr_storage *addrs = NULL;
    socklen_t *lens = NULL;
    size_t naddrs = 0;
    if (!sg_conf_resolve(cx->c, host, port, &addrs, &lens, &naddrs))
        return sg_cerr(cx, a->pos, "host not found in \"%s\" of the \"listen\" directive", a->s);
    lc->addr = addrs[0];
    lc->addrlen = lens[0];
    lc->text = sg_conf_addr_text(cx->c, &lc->addr);
    return true;
}

static bool listen_param(sg_cctx *cx, const sg_cnode *n, const sg_carg *a, sg_listen_conf *lc)
{
    static const char *const later[] = {
        "http3", "quic", "spdy", "fastopen", "accept_filter", "setfib", NULL,
    };
    const char *p = a->s;
    size_t keylen = strcspn(p, "=");
    uint64_t v;
    if (strcmp(p, "default_server") == 0 || strcmp(p, "default") == 0) lc->default_server = true;
    else if (strcmp(p, "reuseport") == 0) lc->reuseport = true;
    else if (strcmp(p, "http2") == 0) lc->http2 = true;
    else if (strcmp(p, "ssl") == 0) lc->ssl = true;
    else if (strcmp(p, "proxy_protocol") == 0) lc->proxy_protocol = true;
    else if (starts(p, "backlog=")) {
        if (!parse_num(p + 8, INT32_MAX, &v) || v == 0) return sg_cerr(cx, a->pos, "invalid backlog \"%s\"", p + 8);
        lc->backlog = (int)v;
    } else if (starts(p, "sndbuf=") || starts(p, "rcvbuf=")) {
        if (!parse_size(p + 7, &v) || v == 0 || v > INT32_MAX) return sg_cerr(cx, a->pos, "invalid %s", p);
        if (p[0] == 's') lc->sndbuf = (int)v;
        else lc->rcvbuf = (int)v;
    } else if (starts(p, "so_keepalive=")) {
        if (!sg_hc_listen_keepalive(p + 13, lc)) return sg_cerr(cx, a->pos, "invalid so_keepalive value: \"%s\"", p);
    } else if (strcmp(p, "ipv6only=off") == 0) {
        return sg_cerr(cx, a->pos, "\"%s\" parameter of \"listen\" is not supported yet (listen on IPv4 separately)", p);
    } else if (strcmp(p, "bind") == 0 || strcmp(p, "deferred") == 0 || strcmp(p, "ipv6only=on") == 0) {
        /* every address is bound on its own already; accepted as nginx does */
    } else {
        return unknown_param(cx, n, a, keylen, later);
    }
    return true;
}

static bool set_listen(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_server_conf *s = cx->cur->server;
    sg_listen_conf lc = { .backlog = 511, .pos = n->name.pos };
    for (size_t i = 1; i < n->nargs; i++)
        if (!listen_param(cx, n, &n->args[i], &lc)) return false;
    /* a port range, "ADDR:LO-HI" (nginx 1.27.3): one listen per port */
    int lo, hi;
    sg_carg one = n->args[0];
    char text[300];
    if (!sg_hc_listen_range(n->args[0].s, &lo, &hi, text, sizeof(text))) {
        lo = hi = -1;
    } else if (lo == 0 || hi > 65535 || lo > hi) {
        return sg_cerr(cx, n->args[0].pos, "invalid port range in \"%s\" of the \"listen\" directive", n->args[0].s);
    }
    for (int port = lo; port <= hi; port++) {
        if (port >= 0) {
            char *colon = strrchr(text, ':');
            snprintf(colon + 1, sizeof(text) - (size_t)(colon + 1 - text), "%d", port);
            one.s = text;
            one.n = strlen(text);
        }
        if (!sg_conf_listen_addr(cx, &one, &lc, 80)) return false;
        for (size_t i = 0; i < s->nlistens; i++)
            if (strcmp(s->listens[i].text, lc.text) == 0)
                return sg_cerr(cx, n->args[0].pos, "a duplicate listen %s", lc.text);
        s->listens = sg_conf_push(&cx->c->arena, s->listens, s->nlistens, sizeof(sg_listen_conf));
        s->listens[s->nlistens++] = lc;
    }
    return true;
}

static char *lower_copy(sg_arena *a, const char *p, size_t n)
{
    char *out = sg_arena_strndup(a, p, n);
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)out[i]);
    return out;
}

static bool server_name_one(sg_cctx *cx, const sg_carg *a, sg_server_name *sn)
{
    const char *p = a->s;
    size_t n = a->n;
    char host[256];
    if (strcmp(p, "$hostname") == 0 && gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        p = host;
        n = strlen(host);
    }
    if (n > 1 && p[0] == '~') {
        sn->kind = SG_SN_REGEX;
        sn->name = sg_str_from(sg_arena_strndup(&cx->c->arena, p + 1, n - 1));
        sg_var_note_captures(cx->c, sn->name);
        return true;
    }
    sn->kind = SG_SN_EXACT;
    if (n > 2 && p[0] == '*' && p[1] == '.') { sn->kind = SG_SN_WILDCARD_HEAD; p += 2; n -= 2; }
    else if (n > 2 && p[n - 1] == '*' && p[n - 2] == '.') { sn->kind = SG_SN_WILDCARD_TAIL; n -= 2; }
    else if (n > 1 && p[0] == '.') { sn->kind = SG_SN_DOT; p++; n--; }
    if (memchr(p, '*', n))
        return sg_cerr(cx, a->pos, "invalid server name or wildcard \"%s\"", a->s);
    sn->name = sg_str_from(lower_copy(&cx->c->arena, p, n));
    return true;
}

static bool set_server_name(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_server_conf *s = cx->cur->server;
    for (size_t i = 0; i < n->nargs; i++) {
        s->names = sg_conf_push(&cx->c->arena, s->names, s->nnames, sizeof(sg_server_name));
        if (!server_name_one(cx, &n->args[i], &s->names[s->nnames])) return false;
        s->nnames++;
    }
    return true;
}

/* ---------------- location ---------------- */

/* nginx's ngx_http_core_location: "= x", "^~ x", "~ x", "~* x", or one
 * word "=x", "~x", "~*x", "@name", "x" ("^~x" is a plain prefix there). */
static bool location_kind(sg_cctx *cx, const sg_cnode *n, sg_location *loc)
{
    const sg_carg *a = &n->args[n->nargs - 1];
    const char *name = a->s;
    if (n->nargs == 2) {
        const char *m = n->args[0].s;
        if (strcmp(m, "=") == 0) loc->match = SG_LOC_EXACT;
        else if (strcmp(m, "^~") == 0) loc->match = SG_LOC_PREFIX_NOREGEX;
        else if (strcmp(m, "~") == 0) loc->match = SG_LOC_REGEX;
        else if (strcmp(m, "~*") == 0) loc->match = SG_LOC_REGEX_CASELESS;
        else return sg_cerr(cx, n->args[0].pos, "invalid location modifier \"%s\"", m);
    } else if (name[0] == '=') {
        loc->match = SG_LOC_EXACT;
        name++;
    } else if (name[0] == '~') {
        loc->match = name[1] == '*' ? SG_LOC_REGEX_CASELESS : SG_LOC_REGEX;
        name += loc->match == SG_LOC_REGEX_CASELESS ? 2 : 1;
    } else if (name[0] == '@') {
        loc->match = SG_LOC_NAMED;
    }
    if ((loc->match == SG_LOC_REGEX || loc->match == SG_LOC_REGEX_CASELESS) && name[0] == '\0')
        return sg_cerr(cx, a->pos, "empty regular expression in \"location\"");
    loc->name = sg_str_from(sg_arena_strndup(&cx->c->arena, name, strlen(name)));
    if (loc->match == SG_LOC_REGEX || loc->match == SG_LOC_REGEX_CASELESS) sg_var_note_captures(cx->c, loc->name);
    return true;
}

static bool is_regex(const sg_location *l)
{
    return l->match == SG_LOC_REGEX || l->match == SG_LOC_REGEX_CASELESS;
}

static bool same_location(const sg_location *a, const sg_location *b)
{
    if (is_regex(a) || is_regex(b) || !sg_str_eq(a->name, b->name)) return false;
    return (a->match == SG_LOC_EXACT) == (b->match == SG_LOC_EXACT);  /* "^~ /a" = "/a" */
}

/* nginx's nesting rules, then duplicates among siblings. */
static bool location_check(sg_cctx *cx, const sg_cnode *n, const sg_location *loc,
                           const sg_location *parent, bool top)
{
    sg_conf_pos pos = n->name.pos;
    int ln = (int)loc->name.n, pn = (int)parent->name.n;
    if (!top) {
        if (parent->match == SG_LOC_EXACT)
            return sg_cerr(cx, pos, "location \"%.*s\" cannot be inside the exact location \"%.*s\"",
                           ln, loc->name.p, pn, parent->name.p);
        if (parent->match == SG_LOC_NAMED)
            return sg_cerr(cx, pos, "location \"%.*s\" cannot be inside the named location \"%.*s\"",
                           ln, loc->name.p, pn, parent->name.p);
        if (loc->match == SG_LOC_NAMED)
            return sg_cerr(cx, pos, "named location \"%.*s\" can be on the server level only",
                           ln, loc->name.p);
        if (!is_regex(loc) && (loc->name.n < parent->name.n ||
                               memcmp(loc->name.p, parent->name.p, parent->name.n) != 0))
            return sg_cerr(cx, pos, "location \"%.*s\" is outside location \"%.*s\"",
                           ln, loc->name.p, pn, parent->name.p);
    }
    const sg_server_conf *s = cx->cur->server;
    sg_location *const *sib = loc->match == SG_LOC_NAMED ? s->named : parent->children;
    size_t nsib = loc->match == SG_LOC_NAMED ? s->nnamed : parent->nchildren;
    for (size_t i = 0; i < nsib; i++)
        if (same_location(sib[i], loc))
            return sg_cerr(cx, pos, "duplicate location \"%.*s\"", ln, loc->name.p);
    return true;
}

static bool set_location(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_arena *ar = &cx->c->arena;
    sg_lvl *up = cx->cur;
    sg_location *parent = up->loc;
    sg_server_conf *s = up->server;
    sg_location *loc = sg_arena_alloc(ar, sizeof(*loc));
    memset(loc, 0, sizeof(*loc));
    loc->pos = n->name.pos;
    loc->parent = parent;
    if (!location_kind(cx, n, loc) || !location_check(cx, n, loc, parent, parent == s->root))
        return false;
    if (loc->match == SG_LOC_NAMED) {
        s->named = sg_conf_push(ar, s->named, s->nnamed, sizeof(sg_location *));
        s->named[s->nnamed++] = loc;
    } else {
        parent->children = sg_conf_push(ar, parent->children, parent->nchildren, sizeof(sg_location *));
        parent->children[parent->nchildren++] = loc;
    }
    sg_lvl *l = sg_directives_level(cx, up);
    l->conf = &loc->conf;
    l->loc = loc;
    return sg_directives_enter(cx, l, n, SG_CTX_LOCATION);
}

/* ---------------- upstream ---------------- */

static void upstream_defaults(sg_upstream_conf *u)
{
    u->lb = SG_LB_ROUND_ROBIN;
    u->keepalive = 32;                  /* streamgate: nginx keeps none without "keepalive" */
    u->keepalive_timeout_ms = 60000;
    u->keepalive_requests = 1000;
    u->keepalive_time_ms = 3600 * 1000;         /* keepalive_time (nginx 1.19.10) */
    u->h2_ping_interval_ms = SG_UPSTREAM_PING_INTERVAL_MS;
    u->h2_ping_timeout_ms = SG_UPSTREAM_PING_TIMEOUT_MS;
}

bool sg_directives_upstream(sg_cctx *cx, const sg_cnode *n, sg_upstream_conf *u,
                            sg_upstream_conf ***list, size_t *nlist, uint32_t ctx)
{
    sg_conf *c = cx->c;
    for (size_t i = 0; i < *nlist; i++)
        if (!(*list)[i]->implicit && strcasecmp((*list)[i]->name, n->args[0].s) == 0)
            return sg_cerr(cx, n->args[0].pos, "duplicate upstream \"%s\"", n->args[0].s);
    u->name = n->args[0].s;
    u->pos = n->name.pos;
    *list = sg_conf_push(&c->arena, *list, *nlist, sizeof(**list));
    (*list)[(*nlist)++] = u;
    cx->ups = u;
    memset(cx->ups_set, 0, sizeof(cx->ups_set));
    bool ok = run_block(cx, n, ctx);
    cx->ups = NULL;
    if (ok && u->nservers == 0 && u->nresolves == 0) return sg_cerr(cx, u->pos, "no servers are inside upstream");
    return ok;
}

static bool set_upstream(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    sg_upstream_conf *u = sg_arena_alloc(&c->arena, sizeof(*u));
    memset(u, 0, sizeof(*u));
    upstream_defaults(u);
    if (!sg_directives_upstream(cx, n, u, &c->upstreams, &c->nupstreams, SG_CTX_UPSTREAM)) return false;
    return sg_conf_check_backup(cx, u);
}

bool sg_conf_check_backup(sg_cctx *cx, const sg_upstream_conf *u)
{
    bool no_backup = u->lb == SG_LB_HASH || u->lb == SG_LB_HASH_CONSISTENT ||
                     u->lb == SG_LB_RANDOM || u->lb == SG_LB_RANDOM_TWO;
    for (size_t i = 0; no_backup && i < u->nservers; i++)
        if (u->servers[i].backup)
            return sg_cerr(cx, u->pos, "balancing method does not support parameter \"backup\"");
    return true;
}

/* random [two [least_conn]] (ngx_http_upstream_random_module): `two`
 * compares its two picks by least_conn, the only method nginx has for it. */
bool sg_conf_set_random(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (n->nargs >= 1 && strcmp(n->args[0].s, "two") != 0)
        return sg_cerr(cx, n->args[0].pos, "invalid parameter \"%s\"", n->args[0].s);
    cx->ups->lt_mode = SG_LT_NONE;
    if (n->nargs == 2 && strcmp(n->args[1].s, "least_conn") != 0 &&
        !sg_balance_random_least_time(cx, &n->args[1], (cx->ctx & SG_CTX_STREAM_UPSTREAM) != 0))
        return false;
    cx->ups->lb = n->nargs ? SG_LB_RANDOM_TWO : SG_LB_RANDOM;
    return true;
}

/* zone NAME [SIZE]: streamgate's peer state (failures, open connections)
 * is shared by all worker threads anyway, which is what a zone gives nginx;
 * the name and size are checked and kept for nothing else. */
bool sg_conf_set_zone(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (n->nargs == 2) {
        uint64_t v;
        if (!sg_conf_parse_size(n->args[1].s, &v))
            return sg_cerr(cx, n->args[1].pos, "invalid zone size \"%s\"", n->args[1].s);
    }
    return true;
}

/* allow / deny ADDRESS | CIDR | unix: | all. Both directives fill one
 * list, so a level that has either replaces all the rules it inherits,
 * as nginx's access module merges them. */
bool sg_conf_parse_access_rule(const char *s, bool deny, sg_access_rule *r, bool *low_bits)
{
    memset(r, 0, sizeof(*r));
    r->deny = deny;
    *low_bits = false;
    if (strcmp(s, "all") == 0) return true;
    if (strcmp(s, "unix:") == 0) {
        r->family = AF_UNIX;
        return true;
    }
    char buf[INET6_ADDRSTRLEN + 8];
    size_t len = strlen(s);
    if (len >= sizeof(buf)) return false;
    memcpy(buf, s, len + 1);
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        if (!slash[1] || slash[1] == '-' || slash[1] == '+') return false;
        bits = strtol(slash + 1, &end, 10);
        if (*end) return false;
    }
    size_t alen;
    if (inet_pton(AF_INET, buf, r->addr) == 1) {
        r->family = AF_INET;
        alen = 4;
    } else if (inet_pton(AF_INET6, buf, r->addr) == 1) {
        r->family = AF_INET6;
        alen = 16;
    } else {
        return false;
    }
    if (bits < 0) bits = (long)alen * 8;
    if (bits > (long)alen * 8) return false;
    for (size_t i = 0; i < alen; i++) {
        long b = bits - (long)i * 8;
        r->mask[i] = b >= 8 ? 0xff : b <= 0 ? 0 : (uint8_t)(0xff << (8 - b));
        if (r->addr[i] & ~r->mask[i]) *low_bits = true;
        r->addr[i] &= r->mask[i];
    }
    return true;
}

static bool access_other_set(sg_cctx *cx, const sg_cmd *cmd);
static void access_mark_set(sg_cctx *cx, const sg_cmd *cmd);

/* The list is the command's field: http's location and stream's
 * server levels use the same setter (sg_access_rule *, then size_t). */
bool sg_conf_set_access(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_access_rule **list = (sg_access_rule **)((char *)base + cmd->offset);
    size_t *count = (size_t *)((char *)base + cmd->offset + sizeof(sg_access_rule *));
    if (cx->first && !access_other_set(cx, cmd)) {
        *list = NULL;
        *count = 0;
    }
    sg_access_rule r;
    bool low_bits;
    if (!sg_conf_parse_access_rule(n->args[0].s, strcmp(n->name.s, "deny") == 0, &r, &low_bits))
        return sg_cerr(cx, n->args[0].pos, "invalid parameter \"%s\"", n->args[0].s);
    if (low_bits)
        sg_cnotice(cx, n->args[0].pos, "low address bits of %s are meaningless", n->args[0].s);
    *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(r));
    (*list)[(*count)++] = r;
    access_mark_set(cx, cmd);
    return true;
}

/* set_real_ip_from ADDRESS | CIDR | unix: (ngx_http_realip_module) */
bool sg_conf_set_realip_from(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_access_rule **list = (sg_access_rule **)((char *)base + cmd->offset);
    size_t *count = (size_t *)((char *)base + cmd->offset + sizeof(sg_access_rule *));
    if (cx->first) {
        *list = NULL;
        *count = 0;
    }
    sg_access_rule r;
    bool low_bits;
    if (strcmp(n->args[0].s, "all") == 0)
        return sg_cerr(cx, n->args[0].pos, "invalid parameter \"%s\"", n->args[0].s);
    if (!sg_conf_parse_access_rule(n->args[0].s, false, &r, &low_bits)) {
        /* issue 10 (access): a host name stands for each of its addresses
         * (resolved once, at load), as nginx's set_real_ip_from */
        struct sockaddr_storage *addrs = NULL;
        socklen_t *lens = NULL;
        size_t na = 0;
        if (strchr(n->args[0].s, '/') || !sg_conf_resolve(cx->c, arg_str(&n->args[0]), 0, &addrs, &lens, &na))
            return sg_cerr(cx, n->args[0].pos, "host not found in set_real_ip_from \"%s\"", n->args[0].s);
        for (size_t i = 0; i < na; i++) {
            memset(&r, 0, sizeof(r));
            r.family = addrs[i].ss_family;
            size_t alen = r.family == AF_INET ? 4 : 16;
            memcpy(r.addr, r.family == AF_INET ? (const void *)&((struct sockaddr_in *)&addrs[i])->sin_addr
                                               : (const void *)&((struct sockaddr_in6 *)&addrs[i])->sin6_addr, alen);
            memset(r.mask, 0xff, alen);
            *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(r));
            (*list)[(*count)++] = r;
        }
        return true;
    }
    if (low_bits)
        sg_cnotice(cx, n->args[0].pos, "low address bits of %s are meaningless", n->args[0].s);
    *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(r));
    (*list)[(*count)++] = r;
    return true;
}

/* hash KEY [consistent] (ngx_http_upstream_hash_module): the same choices
 * as nginx's, from the key evaluated for each request. */
static bool set_http_hash(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (n->nargs == 2 && strcmp(n->args[1].s, "consistent") != 0)
        return sg_cerr(cx, n->args[1].pos, "invalid parameter \"%s\"", n->args[1].s);
    if (!sg_cval_compile(cx->c, arg_str(&n->args[0]), n->args[0].pos, &cx->ups->hash_key,
                         cx->err, cx->errlen))
        return false;
    cx->ups->lb = n->nargs == 2 ? SG_LB_HASH_CONSISTENT : SG_LB_HASH;
    return true;
}

static bool ups_server_param(sg_cctx *cx, const sg_cnode *n, const sg_carg *a,
                             sg_upstream_server_conf *t)
{
    static const char *const later[] = {
        NULL,
    };
    const char *p = a->s;
    size_t keylen = strcspn(p, "=");
    uint64_t v;
    if (starts(p, "weight=")) {
        if (!parse_num(p + 7, 1000000, &v) || v == 0) return bad_param(cx, a);
        t->weight = (int)v;
    } else if (starts(p, "max_fails=")) {
        if (!parse_num(p + 10, 1000000, &v)) return bad_param(cx, a);
        t->max_fails = (int)v;
    } else if (starts(p, "fail_timeout=")) {
        if (!parse_time_ms(p + 13, &v) || v >= SG_UNSET_MS) return bad_param(cx, a);
        t->fail_timeout_ms = (uint32_t)v;
    } else if (starts(p, "max_conns=")) {
        if (!parse_num(p + 10, UINT32_MAX, &v)) return bad_param(cx, a);
        t->max_conns = (uint32_t)v;
    } else if (starts(p, "slow_start=")) {   /* balancers (issue 11, area: balance) */
        if (!parse_time_ms(p + 11, &v) || v >= SG_UNSET_MS) return bad_param(cx, a);
        t->slow_start_ms = (uint32_t)v;
    } else if (starts(p, "route=")) {        /* balancers (issue 11, area: balance) */
        if (a->n <= 6 || a->n - 6 > 32) return bad_param(cx, a);
        t->route = sg_arena_strndup(&cx->c->arena, p + 6, a->n - 6);
    } else if (strcmp(p, "drain") == 0) {    /* balancers (issue 11, area: balance) */
        t->drain = true;
    } else if (strcmp(p, "backup") == 0) {
        t->backup = true;
    } else if (strcmp(p, "down") == 0) {
        t->down = true;
    } else if (strcmp(p, "resolve") == 0 || starts(p, "service=")) {
        /* dns: read by sg_conf_set_upstream_server */
    } else {
        return unknown_param(cx, n, a, keylen, later);
    }
    return true;
}

/* dns: a name is a literal address when inet_pton takes it ([v6] without
 * its brackets): `resolve` on an address changes nothing (nginx). */
static bool dns_is_address(sg_str host)
{
    char buf[64];
    if (host.n == 0 || host.n >= sizeof(buf)) return false;
    const char *p = host.p;
    size_t n = host.n;
    if (p[0] == '[' && p[n - 1] == ']') { p++; n -= 2; }
    memcpy(buf, p, n);
    buf[n] = 0;
    unsigned char out[16];
    return inet_pton(AF_INET, buf, out) == 1 || inet_pton(AF_INET6, buf, out) == 1;
}

/* dns: `server NAME[:PORT] resolve [service=NAME]`: no address now, the
 * runtime resolves NAME (upstream/resolve.c). An SRV name is nginx's:
 * service=http looks up _http._tcp.NAME, a service starting with "_" is
 * used as written before the name. */
static bool dns_add_resolve(sg_cctx *cx, sg_upstream_conf *u, sg_str host, int port,
                            const sg_carg *service, const sg_upstream_server_conf *t, const sg_carg *a)
{
    if (!service && port < 0) return sg_cerr(cx, a->pos, "no port in upstream \"%s\"", a->s);
    sg_upstream_resolve r = { .tmpl = *t, .port = port };
    r.host = sg_arena_strndup(&cx->c->arena, host.p, host.n);
    if (service) {
        const char *sv = service->s + 8;
        if (!*sv) return sg_cerr(cx, service->pos, "invalid parameter \"%s\"", service->s);
        char name[600];
        if (sv[0] == '_') snprintf(name, sizeof(name), "%s.%s", sv, r.host);
        else snprintf(name, sizeof(name), "_%s._tcp.%s", sv, r.host);
        r.service = sg_arena_strndup(&cx->c->arena, name, strlen(name));
    }
    u->resolves = sg_conf_push(&cx->c->arena, u->resolves, u->nresolves, sizeof(r));
    u->resolves[u->nresolves++] = r;
    return true;
}

/* server ADDR[:PORT] [params]: a name resolving to N addresses gives N entries. */
bool sg_conf_set_upstream_server(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_upstream_conf *u = cx->ups;
    int default_port = (int)(intptr_t)cmd->post;
    const sg_carg *a = &n->args[0];
    sg_upstream_server_conf t = { .weight = 1, .max_fails = 1, .fail_timeout_ms = 10000 };
    for (size_t i = 1; i < n->nargs; i++)
        if (!ups_server_param(cx, n, &n->args[i], &t)) return false;
    if (starts(a->s, "unix:")) {   /* passvar: server unix:/path */
        if (!sg_conf_unix_addr((sg_str){ a->s + 5, a->n - 5 }, &t.addr, &t.addrlen))
            return sg_cerr(cx, a->pos, "invalid host in upstream \"%s\"", a->s);
        t.name = sg_arena_strndup(&cx->c->arena, a->s, a->n);
        u->servers = sg_conf_push(&cx->c->arena, u->servers, u->nservers, sizeof(t));
        u->servers[u->nservers++] = t;
        return true;
    }
    sg_str host;
    int port;
    if (!sg_conf_split_hostport(arg_str(a), &host, &port) || port == 0)
        return sg_cerr(cx, a->pos, "invalid port in upstream \"%s\"", a->s);
    /* dns: `resolve` and `service=` (nginx 1.27.3) */
    bool resolve = false;
    const sg_carg *service = NULL;
    for (size_t i = 1; i < n->nargs; i++) {
        if (strcmp(n->args[i].s, "resolve") == 0) resolve = true;
        else if (starts(n->args[i].s, "service=")) service = &n->args[i];
    }
    if (service && !resolve)
        return sg_cerr(cx, service->pos, "service upstream \"%s\" requires \"resolve\" parameter", a->s);
    if (service && port >= 0)
        return sg_cerr(cx, a->pos, "service upstream \"%s\" may not have port", a->s);
    if (resolve && !dns_is_address(host))
        return dns_add_resolve(cx, u, host, port >= 0 ? port : default_port, service, &t, a);
    bool written = port >= 0;
    if (!written && default_port < 0)
        return sg_cerr(cx, a->pos, "no port in upstream \"%s\"", a->s);
    if (!written) port = default_port;
    struct sockaddr_storage *addrs = NULL;
    socklen_t *lens = NULL;
    size_t naddrs = 0;
    if (!sg_conf_resolve(cx->c, host, port, &addrs, &lens, &naddrs))
        return sg_cerr(cx, a->pos, "host not found in upstream \"%s\"", a->s);
    char name[300];
    if (written)
        snprintf(name, sizeof(name), "%s", a->s);
    else
        snprintf(name, sizeof(name), "%s:%d", a->s, port);
    for (size_t i = 0; i < naddrs; i++) {
        u->servers = sg_conf_push(&cx->c->arena, u->servers, u->nservers, sizeof(t));
        t.name = sg_arena_strndup(&cx->c->arena, name, strlen(name));
        t.addr = addrs[i];
        t.addrlen = lens[i];
        u->servers[u->nservers++] = t;
    }
    return true;
}

bool sg_conf_set_lb(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    cx->ups->lb = (sg_lb_method)(intptr_t)cmd->post;   /* nginx: a later method wins */
    return true;
}

/* ---------------- map, types ---------------- */

static bool map_lines(sg_cctx *cx, const sg_cnode *n, sg_map *m)
{
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        if (k->nargs == 0 && strcmp(k->name.s, "hostnames") == 0) {
            sg_map_set_hostnames(m);
        } else if (k->nargs == 0 && strcmp(k->name.s, "volatile") == 0) {
            sg_map_set_volatile(m);
        } else if (k->nargs != 1) {
            return sg_cerr(cx, k->name.pos, "invalid number of the map parameters");
        } else if (!sg_map_add(m, arg_str(&k->name), arg_str(&k->args[0]), k->name.pos,
                               cx->err, cx->errlen)) {
            return false;
        }
    }
    return true;
}

static bool set_map(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *src = &n->args[0], *dst = &n->args[1];
    if (dst->n < 2 || dst->s[0] != '$')
        return sg_cerr(cx, dst->pos, "invalid variable name \"%s\"", dst->s);
    sg_map *m = sg_map_new(cx->c, arg_str(src), src->pos, cx->err, cx->errlen);
    if (!m) return false;
    if (map_lines(cx, n, m) &&
        sg_var_define_map(cx->c, (sg_str){ dst->s + 1, dst->n - 1 }, m, cx->err, cx->errlen))
        return true;
    sg_map_free(m);                       /* not reachable from the variables: free its regexes now */
    return false;
}

/* split_clients STRING $variable { PERCENT% VALUE; * VALUE; } */
static bool set_split_clients(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *src = &n->args[0], *dst = &n->args[1];
    if (dst->n < 2 || dst->s[0] != '$')
        return sg_cerr(cx, dst->pos, "invalid variable name \"%s\"", dst->s);
    sg_map *m = sg_map_new(cx->c, arg_str(src), src->pos, cx->err, cx->errlen);
    if (!m) return false;
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        if (k->nargs != 1) return sg_cerr(cx, k->name.pos, "invalid number of arguments in split_clients");
        if (!sg_map_add_split(m, arg_str(&k->name), arg_str(&k->args[0]), k->name.pos, cx->err, cx->errlen))
            return false;
    }
    return sg_var_define_map(cx->c, (sg_str){ dst->s + 1, dst->n - 1 }, m, cx->err, cx->errlen);
}

/* geo [$address] $variable { default V; NET V; delete NET; ranges; A-B V; } */
static bool set_geo(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *dst = &n->args[n->nargs - 1];
    if (dst->n < 2 || dst->s[0] != '$')
        return sg_cerr(cx, dst->pos, "invalid variable name \"%s\"", dst->s);
    bool client = n->nargs == 1;
    sg_map *m = sg_map_new(cx->c, client ? SG_STR("") : arg_str(&n->args[0]), n->args[0].pos,
                           cx->err, cx->errlen);
    if (!m) return false;
    sg_geo *g = sg_geo_new(cx->c);
    sg_map_set_geo(m, g, client);
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        if (k->nargs > 1) return sg_cerr(cx, k->name.pos, "invalid number of the geo parameters");
        if (k->nargs == 0 && strcmp(k->name.s, "volatile") == 0) {   /* issue 10: computed at each use */
            sg_map_set_volatile(m);
            continue;
        }
        sg_str v = k->nargs ? arg_str(&k->args[0]) : SG_STR_NULL;
        if (!sg_geo_line(g, arg_str(&k->name), k->nargs ? &v : NULL, k->name.pos, cx->err, cx->errlen))
            return false;
    }
    return sg_var_define_map(cx->c, (sg_str){ dst->s + 1, dst->n - 1 }, m, cx->err, cx->errlen);
}

/* types { text/html html htm; ... }: as nginx, a level with a types block
 * uses only its own list (replacing the inherited one). */
static bool set_types(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    if (cx->first) {
        lc->types = NULL;
        lc->ntypes = 0;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        if (k->nargs == 0) return sg_cerr(cx, k->name.pos, "invalid number of arguments in \"types\" directive");
        sg_str type = sg_arena_str(&cx->c->arena, arg_str(&k->name));
        for (size_t a = 0; a < k->nargs; a++) {
            sg_mime_type t = { sg_arena_str(&cx->c->arena, arg_str(&k->args[a])), type };
            lc->types = sg_conf_push(&cx->c->arena, lc->types, lc->ntypes, sizeof(t));
            lc->types[lc->ntypes++] = t;
        }
    }
    return true;
}

/* ---------------- logs ---------------- */

static bool set_log_format(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    size_t first = 1;
    bool json = false, none = false;
    if (starts(n->args[1].s, "escape=")) {
        const char *e = n->args[1].s + 7;
        if (strcmp(e, "json") == 0) json = true;
        else if (strcmp(e, "none") == 0) none = true;
        else if (strcmp(e, "default") != 0)
            return sg_cerr(cx, n->args[1].pos, "unknown log format escaping \"%s\"", e);
        first = 2;
    }
    if (first >= n->nargs)
        return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"%s\" directive", n->name.s);
    sg_log_format *f = sg_conf_find_log_format(c, arg_str(&n->args[0]));
    bool redefine_main = f && strcmp(f->name, "main") == 0 && !cx->main_redefined;
    if (f && !redefine_main)
        return sg_cerr(cx, n->args[0].pos, "duplicate \"log_format\" name \"%s\"", n->args[0].s);
    sg_strbuf b = { 0 };
    for (size_t i = first; i < n->nargs; i++) sg_strbuf_append(&b, n->args[i].s, n->args[i].n);
    sg_cval cv;
    bool ok = sg_cval_compile(c, (sg_str){ b.p ? b.p : "", b.n }, n->args[first].pos, &cv,
                              cx->err, cx->errlen);
    sg_strbuf_free(&b);
    if (!ok) return false;
    if (redefine_main) {
        cx->main_redefined = true;
    } else {
        f = sg_arena_alloc(&c->arena, sizeof(*f));
        f->name = n->args[0].s;
        c->log_formats = sg_conf_push(&c->arena, c->log_formats, c->nlog_formats, sizeof(*c->log_formats));
        c->log_formats[c->nlog_formats++] = f;
    }
    f->format = cv;
    f->escape_json = json;
    f->escape_none = none;
    return true;
}

static bool access_log_param(sg_cctx *cx, const sg_cnode *n, const sg_carg *a, sg_access_log *al)
{
    const char *p = a->s;
    uint64_t v;
    if (starts(p, "buffer=")) {
        if (!parse_size(p + 7, &v) || v == 0 || v > (1u << 30)) return bad_param(cx, a);
        al->buffer_size = (size_t)v;
    } else if (starts(p, "flush=")) {
        if (!parse_time_ms(p + 6, &v) || v >= SG_UNSET_MS) return bad_param(cx, a);
        al->flush_ms = (uint32_t)v;
    } else if (strcmp(p, "gzip") == 0) {
        al->gzip = 1;                      /* nginx's default level */
    } else if (starts(p, "gzip=")) {
        if (p[5] < '1' || p[5] > '9' || p[6]) return bad_param(cx, a);
        al->gzip = p[5] - '0';
    } else if (starts(p, "if=")) {
        al->has_cond = true;
        if (!sg_cval_compile(cx->c, (sg_str){ p + 3, a->n - 3 }, a->pos, &al->cond, cx->err, cx->errlen))
            return false;
    } else {
        return bad_param(cx, a);
    }
    return true;
}

static bool set_access_log(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    const sg_carg *path = &n->args[0];
    if (cx->first) {                       /* a level's own list replaces the inherited one */
        lc->access_logs = NULL;
        lc->naccess_logs = 0;
    }
    if (strcmp(path->s, "off") == 0 && n->nargs == 1) {
        lc->access_log_off = true;
        lc->naccess_logs = 0;
        return true;
    }
    sg_access_log al = { 0 };
    if (starts(path->s, "syslog:")) {
        char err[256];
        if (!(al.syslog = sg_syslog_get(path->s + 7, err, sizeof(err)))) return sg_cerr(cx, path->pos, "%s", err);
    } else {
        al.path = sg_conf_full_path(cx->c, path->s);
    }
    if (!al.syslog && strchr(path->s, '$')) {            /* issue 9: opened for each line, as nginx without a cache */
        al.var_path = true;
        if (!sg_cval_compile(cx->c, sg_str_from(al.path), path->pos, &al.path_value, cx->err, cx->errlen))
            return false;
        al.path = NULL;
    }
    sg_str fmt = n->nargs > 1 ? arg_str(&n->args[1]) : SG_STR("combined");
    al.format = sg_conf_find_log_format(cx->c, fmt);
    if (!al.format)
        return sg_cerr(cx, n->args[1].pos, "unknown log format \"%s\"", n->args[1].s);
    for (size_t i = 2; i < n->nargs; i++)
        if (!access_log_param(cx, n, &n->args[i], &al)) return false;
    if (al.flush_ms && !al.buffer_size && !al.gzip)
        return sg_cerr(cx, path->pos, "no buffer is defined for access_log \"%s\"", path->s);
    if (al.gzip && !al.buffer_size) al.buffer_size = 64 * 1024;   /* nginx: gzip implies a 64k buffer */
    if (al.syslog) al.buffer_size = 0, al.gzip = 0, al.flush_ms = 0;   /* nginx: each line is one message */
    lc->access_logs = sg_conf_push(&cx->c->arena, lc->access_logs, lc->naccess_logs, sizeof(al));
    lc->access_logs[lc->naccess_logs++] = al;
    lc->access_log_off = false;
    return true;
}

/* ---------------- headers, error_page, return, index ---------------- */

/* add_header NAME VALUE [always] and proxy_set_header NAME VALUE: a level
 * that has any replaces every inherited one (nginx). Fields: list + count. */
static bool set_header(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_header_set **list = (sg_header_set **)((char *)base + cmd->offset);
    size_t *count = (size_t *)((char *)base + cmd->offset + sizeof(sg_header_set *));
    if (cx->first) {
        *list = NULL;
        *count = 0;
    }
    sg_header_set h = { .name = sg_arena_str(&cx->c->arena, arg_str(&n->args[0])) };
    if (n->nargs == 3) {
        if (strcmp(n->args[2].s, "always") != 0) return bad_value(cx, n, &n->args[2]);
        h.always = true;
    }
    if (!sg_cval_compile(cx->c, arg_str(&n->args[1]), n->args[1].pos, &h.value, cx->err, cx->errlen))
        return false;
    *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(h));
    (*list)[(*count)++] = h;
    return true;
}

static bool parse_status(const sg_carg *a, int lo, int hi, int *out)
{
    uint64_t v;
    if (!parse_num(a->s, 999, &v) || (int)v < lo || (int)v > hi) return false;
    *out = (int)v;
    return true;
}

static bool set_error_page(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    sg_error_page ep = { .override = -1 };
    size_t ncodes = n->nargs - 1;
    const sg_carg *eq = &n->args[n->nargs - 2];
    if (eq->s[0] == '=') {
        ncodes--;
        ep.override = 0;
        if (eq->s[1] && !parse_status(&(sg_carg){ .s = eq->s + 1 }, 100, 999, &ep.override))
            return bad_value(cx, n, eq);
    }
    if (ncodes == 0)
        return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"%s\" directive", n->name.s);
    ep.codes = sg_arena_alloc(&cx->c->arena, ncodes * sizeof(int));
    for (size_t i = 0; i < ncodes; i++) {
        uint64_t v;
        if (!parse_num(n->args[i].s, 999, &v)) return bad_value(cx, n, &n->args[i]);
        if (v < 300 || v > 599 || v == 499)
            return sg_cerr(cx, n->args[i].pos, "value \"%s\" must be between 300 and 599", n->args[i].s);
        ep.codes[i] = (int)v;
    }
    ep.ncodes = ncodes;
    const sg_carg *uri = &n->args[n->nargs - 1];
    if (!sg_cval_compile(cx->c, arg_str(uri), uri->pos, &ep.uri, cx->err, cx->errlen)) return false;
    if (cx->first) {
        lc->error_pages = NULL;
        lc->nerror_pages = 0;
    }
    lc->error_pages = sg_conf_push(&cx->c->arena, lc->error_pages, lc->nerror_pages, sizeof(ep));
    lc->error_pages[lc->nerror_pages++] = ep;
    return true;
}

/* return CODE [TEXT] | return CODE URL | return URL (302) */
static bool set_return(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    const sg_carg *text = n->nargs == 2 ? &n->args[1] : NULL;
    if (!parse_status(&n->args[0], 0, 999, &lc->return_code)) {
        const char *u = n->args[0].s;
        if (n->nargs != 1 || !(starts(u, "http://") || starts(u, "https://") || starts(u, "$scheme")))
            return sg_cerr(cx, n->args[0].pos, "invalid return code \"%s\"", u);
        lc->return_code = 302;
        text = &n->args[0];
    }
    lc->has_return = true;
    sg_rw_add_return(cx, n, lc);       /* runs in the rewrite phase, in order (conf/rewrite.h) */
    if (!text) return true;
    return sg_cval_compile(cx->c, arg_str(text), text->pos, &lc->return_text, cx->err, cx->errlen);
}

static bool set_index(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    if (cx->first) {
        lc->index = NULL;
        lc->nindex = 0;
    }
    for (size_t i = 0; i < n->nargs; i++) {
        if (n->args[i].n == 0) return bad_value(cx, n, &n->args[i]);
        lc->index = sg_conf_push(&cx->c->arena, lc->index, lc->nindex, sizeof(sg_cval));
        /* variables allowed, as nginx's (index $var through a map) */
        if (!sg_cval_compile(cx->c, arg_str(&n->args[i]), n->args[i].pos, &lc->index[lc->nindex++], cx->err,
                             cx->errlen))
            return false;
    }
    return true;
}

static bool set_true(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    *(bool *)((char *)base + cmd->offset) = true;
    return true;
}

/* keepalive_timeout TIMEOUT [HEADER_TIMEOUT] */
static bool set_keepalive_timeout(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    uint64_t ms, hs = 0;
    if (!parse_time_ms(n->args[0].s, &ms) || ms >= SG_UNSET_MS) return bad_value(cx, n, &n->args[0]);
    if (n->nargs == 2) {
        if (!parse_time_ms(n->args[1].s, &hs) || hs >= SG_UNSET_MS) return bad_value(cx, n, &n->args[1]);
        hs /= 1000;
    }
    lc->keepalive_timeout_ms = (uint32_t)ms;
    lc->keepalive_header_s = (uint32_t)hs;
    return true;
}

/* large_client_header_buffers NUMBER SIZE */
static bool set_large_buffers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_server_conf *s = base;
    uint64_t num, size;
    if (!parse_num(n->args[0].s, 1024, &num) || num == 0) return bad_value(cx, n, &n->args[0]);
    if (!parse_size(n->args[1].s, &size) || size == 0 || size > (1u << 30)) return bad_value(cx, n, &n->args[1]);
    s->large_header_buffers = (size_t)num;
    s->large_header_buffer_size = (size_t)size;
    return true;
}

/* proxy_buffers NUMBER SIZE: checked, no effect (streamgate streams). */
static bool set_proxy_buffers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!parse_num(n->args[0].s, UINT32_MAX, &v) || v == 0) return bad_value(cx, n, &n->args[0]);
    if (!parse_size(n->args[1].s, &v)) return bad_value(cx, n, &n->args[1]);
    return true;
}

/* ---------------- resolver (passvar) ---------------- */

/* dns: resolver_timeout, remembered at the http{}/stream{} level for the
 * upstreams' `resolve` servers (base NULL: stored nowhere else). */
bool sg_conf_set_resolver_timeout(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!parse_time_ms(n->args[0].s, &v) || v >= SG_UNSET_MS)
        return bad_value(cx, n, &n->args[0]);
    if (base) *(uint32_t *)((char *)base + cmd->offset) = (uint32_t)v;
    if (cx->ctx == SG_CTX_HTTP) cx->c->dns_http_timeout_ms = (uint32_t)v;
    if (cx->ctx == SG_CTX_STREAM) cx->c->dns_stream_timeout_ms = (uint32_t)v;
    return true;
}

/* resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off]: the DNS
 * servers (port 53 unless written; a name is looked up now, as nginx)
 * that names in a proxy_pass/grpc_pass with variables are resolved with
 * (net/resolver.c, c-ares). status_zone= is accepted (nginx Plus). */
bool sg_conf_set_resolver(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    sg_resolver_conf *rc = sg_arena_alloc(&c->arena, sizeof(*rc));
    memset(rc, 0, sizeof(*rc));
    rc->ipv4 = rc->ipv6 = true;
    rc->pos = n->name.pos;
    sg_strbuf csv = { 0 };
    for (size_t i = 0; i < n->nargs; i++) {
        const sg_carg *a = &n->args[i];
        uint64_t v;
        if (starts(a->s, "valid=")) {
            if (!parse_time_ms(a->s + 6, &v) || v >= SG_UNSET_MS) goto bad;
            rc->valid_ms = (uint32_t)v;
            continue;
        }
        if (starts(a->s, "ipv4=") || starts(a->s, "ipv6=")) {
            bool on = strcmp(a->s + 5, "on") == 0;
            if (!on && strcmp(a->s + 5, "off") != 0) goto bad;
            if (a->s[3] == '4') rc->ipv4 = on;
            else rc->ipv6 = on;
            continue;
        }
        if (starts(a->s, "status_zone=")) continue;
        sg_str host;
        int port;
        struct sockaddr_storage *addrs = NULL;
        socklen_t *lens = NULL;
        size_t naddrs = 0;
        if (!sg_conf_split_hostport(arg_str(a), &host, &port) || port == 0) {
            sg_strbuf_free(&csv);
            return sg_cerr(cx, a->pos, "invalid port in resolver \"%s\"", a->s);
        }
        if (port < 0) port = 53;
        if (!sg_conf_resolve(c, host, port, &addrs, &lens, &naddrs)) {
            sg_strbuf_free(&csv);
            return sg_cerr(cx, a->pos, "host not found in resolver \"%s\"", a->s);
        }
        for (size_t k = 0; k < naddrs; k++) {
            if (csv.n) sg_strbuf_append(&csv, ",", 1);
            const char *t = sg_conf_addr_text(c, &addrs[k]);
            sg_strbuf_append(&csv, t, strlen(t));
        }
    }
    if (!rc->ipv4 && !rc->ipv6) {
        sg_strbuf_free(&csv);
        return sg_cerr(cx, n->name.pos, "\"ipv4\" and \"ipv6\" cannot both be \"off\"");
    }
    if (!csv.n) {
        sg_strbuf_free(&csv);
        return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"resolver\" directive");
    }
    rc->servers = sg_arena_strndup(&c->arena, csv.p, csv.n);
    sg_strbuf_free(&csv);
    rc->id = (int)c->nresolvers;
    c->resolvers = sg_conf_push(&c->arena, c->resolvers, c->nresolvers, sizeof(*c->resolvers));
    c->resolvers[c->nresolvers++] = rc;
    if (base) *(sg_resolver_conf **)((char *)base + cmd->offset) = rc;
    /* dns: the level an upstream without a resolver of its own uses */
    if (cx->ctx == SG_CTX_HTTP) c->dns_http_resolver = rc;
    if (cx->ctx == SG_CTX_STREAM) c->dns_stream_resolver = rc;
    return true;
bad:
    sg_strbuf_free(&csv);
    return sg_cerr(cx, n->args[0].pos, "invalid parameter in \"resolver\" directive");
}

/* ---------------- proxy ---------------- */

/* What proxy_pass and grpc_pass accept (set_pass's cmd->post). */
typedef struct pass_kind {
    const char *plain, *tls;     /* URL schemes: "http://" and "https://" */
    bool bare;                   /* HOST[:PORT] without a scheme is plain too */
    bool uri;                    /* a URI part may follow the host */
    bool grpc;
} pass_kind;

/* proxy_pass http[s]://HOST[:PORT][/URI]; grpc_pass [grpc[s]://]HOST[:PORT]
 * (an h2c backend, the request URI passed unchanged: nginx has no URI
 * part there either). Checked here, bound to an upstream after http{} is
 * read (upstream blocks may come later in the file). https:// and
 * grpcs:// speak TLS (proxy_ssl_* / grpc_ssl_*, grpcs:// with ALPN h2;
 * contexts built by sg_ssl_conf_finish, which also makes 443 the default
 * port). A location has one of proxy_pass and grpc_pass. */
static bool set_pass(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const pass_kind *k = cmd->post;
    sg_loc_conf *lc = base;
    const sg_carg *a = &n->args[0];
    const char *url = a->s;
    if (lc->proxy_pass) return sg_cerr(cx, n->name.pos, "\"%s\" directive is duplicate", n->name.s);
    if (strchr(url, '$')) {
        /* passvar: the URL is made per request (proxy/pass_vars.c); as
         * nginx, TLS settings are prepared in case it says https:// */
        sg_proxy_pass *pp = sg_arena_alloc(&cx->c->arena, sizeof(*pp));
        memset(pp, 0, sizeof(*pp));
        pp->pos = n->name.pos;
        pp->has_vars = true;
        if (!sg_cval_compile(cx->c, arg_str(a), a->pos, &pp->url, cx->err, cx->errlen)) return false;
        lc->proxy_pass = pp;
        lc->is_grpc = k->grpc;
        return true;
    }
    bool ssl = strncasecmp(url, k->tls, strlen(k->tls)) == 0;
    const char *hp = url;
    if (ssl) hp += strlen(k->tls);
    else if (strncasecmp(url, k->plain, strlen(k->plain)) == 0) hp += strlen(k->plain);
    else if (!k->bare) return sg_cerr(cx, a->pos, "invalid URL prefix in \"%s\"", url);
    if (k->bare && strstr(hp, "://")) return sg_cerr(cx, a->pos, "invalid URL prefix in \"%s\"", url);
    if (starts(hp, "unix:")) {
        /* passvar: unix:/path[:/uri] (nginx: the URI after the path's ':') */
        const char *colon = strchr(hp + 5, ':');
        sg_pending_pass pend = { .host_pos = a->pos, .port = -1, .unix_sock = true };
        pend.host = (sg_str){ hp, colon ? (size_t)(colon - hp) : strlen(hp) };
        if (colon && (!k->uri || colon[1] != '/'))
            return sg_cerr(cx, a->pos, "invalid host in upstream \"%s\"", hp);
        struct sockaddr_storage ss;
        socklen_t sl;
        if (!sg_conf_unix_addr((sg_str){ pend.host.p + 5, pend.host.n - 5 }, &ss, &sl))
            return sg_cerr(cx, a->pos, "invalid host in upstream \"%s\"", hp);
        sg_proxy_pass *pp = sg_arena_alloc(&cx->c->arena, sizeof(*pp));
        memset(pp, 0, sizeof(*pp));
        pp->ssl = ssl;
        pp->pos = n->name.pos;
        pp->has_uri = colon != NULL;
        if (colon) pp->uri = sg_str_from(colon + 1);
        const sg_location *loc = cx->cur->loc;
        if (pp->has_uri && (is_regex(loc) || loc->match == SG_LOC_NAMED))
            return sg_cerr(cx, a->pos, "\"%s\" cannot have URI part in location given by regular "
                           "expression, or inside named location, or inside \"if\" statement, or inside "
                           "\"limit_except\" block", n->name.s);
        pp->host = SG_STR("localhost");
        pend.host = sg_arena_str(&cx->c->arena, pend.host);
        pend.pp = pp;
        cx->passes = sg_conf_push(&cx->c->arena, cx->passes, cx->npasses, sizeof(pend));
        cx->passes[cx->npasses++] = pend;
        lc->proxy_pass = pp;
        lc->is_grpc = k->grpc;
        return true;
    }
    const char *slash = strchr(hp, '/');
    sg_str hostport = { hp, slash ? (size_t)(slash - hp) : strlen(hp) };
    sg_pending_pass pend = { .host_pos = a->pos };
    if (hostport.n == 0 || (slash && !k->uri) || !sg_conf_split_hostport(hostport, &pend.host, &pend.port) ||
        pend.port == 0)
        return sg_cerr(cx, a->pos, "invalid host in upstream \"%s\"", hp);
    sg_proxy_pass *pp = sg_arena_alloc(&cx->c->arena, sizeof(*pp));
    memset(pp, 0, sizeof(*pp));
    pp->ssl = ssl;
    pp->pos = n->name.pos;
    pp->has_uri = slash != NULL;
    if (slash) pp->uri = sg_str_from(slash);
    const sg_location *loc = cx->cur->loc;
    if (pp->has_uri && (is_regex(loc) || loc->match == SG_LOC_NAMED || loc->match == SG_LOC_IF))
        return sg_cerr(cx, a->pos, "\"%s\" cannot have URI part in location given by regular "
                       "expression, or inside named location, or inside \"if\" statement, or inside "
                       "\"limit_except\" block", n->name.s);
    pp->host = sg_arena_str(&cx->c->arena, hostport);    /* refined when bound */
    pend.pp = pp;
    cx->passes = sg_conf_push(&cx->c->arena, cx->passes, cx->npasses, sizeof(pend));
    cx->passes[cx->npasses++] = pend;
    lc->proxy_pass = pp;
    lc->is_grpc = k->grpc;
    return true;
}

/* A value followed by a bool that records that the user wrote it (a
 * LOC_RANGE from the time to the flag): client_body_timeout; and
 * proxy_read_timeout, which then bounds upgraded connections too
 * (upstream silence), as in nginx, instead of proxy_tunnel_timeout alone;
 * grpc_read_timeout likewise: only then does it bound the silence
 * between messages of a gRPC stream. */
static bool set_msec_flagged(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!parse_time_ms(n->args[0].s, &v) || v >= SG_UNSET_MS) return bad_value(cx, n, &n->args[0]);
    if (!base) return true;
    char *f = (char *)base + cmd->offset;
    *(uint32_t *)f = (uint32_t)v;
    *(bool *)(f + cmd->size - sizeof(bool)) = true;
    return true;
}

static bool set_next_upstream(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    static const enum_val vals[] = {
        { "error", SG_NU_ERROR }, { "timeout", SG_NU_TIMEOUT },
        { "invalid_header", SG_NU_INVALID_HEADER }, { "http_500", SG_NU_HTTP_500 },
        { "http_502", SG_NU_HTTP_502 }, { "http_503", SG_NU_HTTP_503 },
        { "http_504", SG_NU_HTTP_504 }, { "http_403", SG_NU_HTTP_403 },
        { "http_404", SG_NU_HTTP_404 }, { "http_429", SG_NU_HTTP_429 },
        { "non_idempotent", SG_NU_NON_IDEMPOTENT }, { "updating", 0 }, { NULL, 0 },
    };
    uint32_t mask = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        const char *v = n->args[i].s;
        const enum_val *e = vals;
        if (strcmp(v, "off") == 0 && n->nargs == 1) {
            mask = SG_NU_OFF;
            continue;
        }
        while (e->name && strcmp(e->name, v) != 0) e++;
        if (!e->name) return bad_value(cx, n, &n->args[i]);
        mask |= (uint32_t)e->value;
    }
    *(uint32_t *)((char *)base + cmd->offset) = mask;
    return true;
}

static bool set_proxy_redirect(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const char *v = n->args[0].s;
    bool *off = (bool *)((char *)base + cmd->offset);
    if (n->nargs == 2)
        return sg_cerr(cx, n->name.pos, "\"proxy_redirect\" with a replacement is not supported yet");
    if (strcmp(v, "off") == 0) *off = true;
    else if (strcmp(v, "default") == 0) *off = false;
    else return bad_value(cx, n, &n->args[0]);
    return true;
}

/* ---------------- the table ---------------- */

static const enum_val on_off_build[] = { { "on", 1 }, { "off", 0 }, { "build", 1 }, { NULL, 0 } };
static const enum_val http_versions[] = {
    { "1.0", 10 }, { "1.1", 11 }, { "2", 20 }, { "2.0", 20 }, { NULL, 0 },   /* 2: h2c, prior knowledge */
};
static const sg_cmd_bounds h2_nonzero = { 1, 1u << 24 };   /* as nginx: no 0 */
static const sg_cmd_bounds h2_window = { 0, 0x7fffffff };  /* a flow-control window (RFC 9113 6.9.1) */
static const pass_kind proxy_pass_kind = { "http://", "https://", false, true, false };
static const pass_kind grpc_pass_kind = { "grpc://", "grpcs://", true, false, true };

#define M SG_CTX_MAIN
#define E SG_CTX_EVENTS
#define H SG_CTX_HTTP
#define S SG_CTX_SERVER
#define L SG_CTX_LOCATION
#define U SG_CTX_UPSTREAM
#define A0 SG_ARG0
#define A1 SG_ARG1
#define A2 SG_ARG2
#define A1P SG_ARG1MORE
#define A2P SG_ARG2MORE
#define BLK SG_ARGBLOCK
#define HSL SG_CTX_HSL

/* The directives proxy_* and grpc_* share: one setter each, filling the
 * location's `proxy` or `grpc` sg_upstream_opts (P is the name's prefix,
 * F the member). */
#define UPSTREAM_OPTS(P, F) \
    { P "_set_header", HSL, A2, set_header, LOC_RANGE(SG_CF_MULTI, F.headers, F.nheaders), NULL }, \
    { P "_connect_timeout", HSL, A1, sg_conf_set_msec, LOC(F.connect_timeout_ms), NULL }, \
    { P "_read_timeout", HSL, A1, set_msec_flagged, LOC_RANGE(0, F.read_timeout_ms, F.read_timeout_set), NULL }, \
    { P "_send_timeout", HSL, A1, sg_conf_set_msec, LOC(F.send_timeout_ms), NULL }, \
    { P "_next_upstream", HSL, A1P, set_next_upstream, LOC(F.next_upstream), NULL }, \
    { P "_next_upstream_tries", HSL, A1, sg_conf_set_num, LOC(F.next_upstream_tries), NULL }, \
    { P "_next_upstream_timeout", HSL, A1, sg_conf_set_msec, LOC(F.next_upstream_timeout_ms), NULL }, \
    { P "_intercept_errors", HSL, A1, sg_conf_set_flag, LOC(F.intercept_errors), NULL }, \
    /* TLS toward the upstream: proxy_pass https://, grpc_pass grpcs:// (conf/ssl_conf.c) */ \
    { P "_ssl_verify", HSL, A1, sg_conf_set_flag, LOC(F.ssl.verify), NULL }, \
    { P "_ssl_verify_depth", HSL, A1, sg_conf_set_num, LOC(F.ssl.verify_depth), NULL }, \
    { P "_ssl_trusted_certificate", HSL, A1, sg_ssl_set_file, LOC(F.ssl.trusted_certificate), NULL }, \
    { P "_ssl_server_name", HSL, A1, sg_conf_set_flag, LOC(F.ssl.server_name), NULL }, \
    { P "_ssl_name", HSL, A1, sg_ssl_set_name, LOC_RANGE(0, F.ssl.name, F.ssl.name_set), NULL }, \
    { P "_ssl_certificate", HSL, A1, sg_ssl_set_file, LOC(F.ssl.certificate), NULL }, \
    { P "_ssl_certificate_key", HSL, A1, sg_ssl_set_file, LOC(F.ssl.certificate_key), NULL }, \
    { P "_ssl_protocols", HSL, A1P, sg_ssl_set_protocols, LOC(F.ssl.protocols), NULL }, \
    { P "_ssl_ciphers", HSL, A1, sg_ssl_set_string, LOC(F.ssl.ciphers), NULL }, \
    { P "_ssl_session_reuse", HSL, A1, sg_conf_set_flag, LOC(F.ssl.session_reuse), NULL }

/* open_log_file_cache max=N [inactive=TIME] [min_uses=N] [valid=TIME] | off
 * (nginx's defaults: inactive 10s, min_uses 1, valid 60s). */
static bool set_open_log_file_cache(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_log_cache **out = (sg_log_cache **)((char *)base + cmd->offset);
    if (n->nargs == 1 && strcmp(n->args[0].s, "off") == 0) {
        *out = NULL;
        return true;
    }
    sg_log_cache *lc = sg_arena_alloc(&cx->c->arena, sizeof(*lc));
    *lc = (sg_log_cache){ .min_uses = 1, .inactive_ms = 10000, .valid_ms = 60000 };
    for (size_t i = 0; i < n->nargs; i++) {
        const sg_carg *a = &n->args[i];
        uint64_t v;
        if (starts(a->s, "max=")) {
            if (!sg_str_to_u64(sg_str_from(a->s + 4), &v) || v == 0 || v > 1000000)
                return sg_cerr(cx, a->pos, "invalid \"max\" value \"%s\"", a->s + 4);
            lc->max = (uint32_t)v;
        } else if (starts(a->s, "min_uses=")) {
            if (!sg_str_to_u64(sg_str_from(a->s + 9), &v) || v == 0 || v > UINT32_MAX)
                return sg_cerr(cx, a->pos, "invalid \"min_uses\" value \"%s\"", a->s + 9);
            lc->min_uses = (uint32_t)v;
        } else if (starts(a->s, "inactive=")) {
            if (!parse_time_ms(a->s + 9, &v) || v >= SG_UNSET_MS)
                return sg_cerr(cx, a->pos, "invalid \"inactive\" value \"%s\"", a->s + 9);
            lc->inactive_ms = (uint32_t)v;
        } else if (starts(a->s, "valid=")) {
            if (!parse_time_ms(a->s + 6, &v) || v >= SG_UNSET_MS)
                return sg_cerr(cx, a->pos, "invalid \"valid\" value \"%s\"", a->s + 6);
            lc->valid_ms = (uint32_t)v;
        } else {
            return bad_param(cx, a);
        }
    }
    if (!lc->max)
        return sg_cerr(cx, n->name.pos, "\"open_log_file_cache\" must have \"max\" parameter");
    *out = lc;
    return true;
}

static const sg_cmd cmds[] = {
    /* main */
    { "worker_processes", M, A1, set_worker_processes, MAIN(worker_processes), NULL },
    { "daemon", M, A1, sg_conf_set_flag, MAIN(daemon), NULL },
    { "pid", M, A1, set_path, MAIN(pid_path), NULL },
    { "error_log", M, SG_ARG12, sg_conf_set_error_log, SG_T_MAIN, SG_CF_MULTI, offsetof(sg_conf, error_log_path),
      sizeof(((sg_conf *)0)->error_log_path), NULL },
    { "error_log", HSL, SG_ARG12, sg_conf_set_error_log, SG_T_LOC, SG_CF_MULTI, offsetof(sg_loc_conf, error_log_path),
      sizeof(((sg_loc_conf *)0)->error_log_path), NULL },
    { "worker_shutdown_timeout", M, A1, sg_conf_set_msec, MAIN(worker_shutdown_timeout_ms), NULL },
    { "events", M, A0 | BLK, set_events, SG_T_MAIN, 0, 0, 0, NULL },  /* MAIN: once */
    { "http", M, A0 | BLK, set_http, SG_T_MAIN, 0, 0, 0, NULL },
    { "include", SG_CTX_ANY, A1, set_noop, NONE, NULL },        /* expanded by the parser */
    { "user", M, SG_ARG12, set_noop, NONE, NULL },                 /* no effect: documented */
    { "pcre_jit", M, A1, sg_conf_set_flag, NONE, NULL },
    /* events */
    { "worker_connections", E, A1, sg_conf_set_num, MAIN(worker_connections), NULL },
    { "use", E, A1, set_use, NONE, NULL },
    { "multi_accept", E, A1, sg_conf_set_flag, NONE, NULL },
    { "accept_mutex", E, A1, sg_conf_set_flag, NONE, NULL },               /* SO_REUSEPORT instead */
    /* http */
    { "server", H, A0 | BLK, set_server, NONE, NULL },
    { "upstream", H, A1 | BLK, set_upstream, NONE, NULL },
    { "map", H, A2 | BLK, set_map, NONE, NULL },
    { "geo", H, SG_ARG12 | BLK, set_geo, NONE, NULL },
    { "log_format", H, A2P, set_log_format, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "types", HSL, A0 | BLK, set_types, LOC_RANGE(SG_CF_MULTI, types, ntypes), NULL },
    { "server_names_hash_bucket_size", H, A1, sg_conf_set_size, NONE, NULL },
    { "server_names_hash_max_size", H, A1, sg_conf_set_size, NONE, NULL },
    { "types_hash_bucket_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    { "types_hash_max_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    { "variables_hash_bucket_size", H, A1, sg_conf_set_size, NONE, NULL },
    { "variables_hash_max_size", H, A1, sg_conf_set_size, NONE, NULL },
    { "map_hash_bucket_size", H, A1, sg_conf_set_size, NONE, NULL },
    { "map_hash_max_size", H, A1, sg_conf_set_size, NONE, NULL },
    { "proxy_headers_hash_bucket_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    { "proxy_headers_hash_max_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    /* server */
    { "listen", S, A1P, set_listen, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "server_name", S, A1P, set_server_name, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "location", S | L, SG_ARG12 | BLK, set_location, NONE, NULL },
    { "client_header_timeout", H | S, A1, sg_conf_set_msec, SRV_RANGE(client_header_timeout_ms, client_header_timeout_ms), NULL },
    { "large_client_header_buffers", H | S, A2, set_large_buffers,
      SRV_RANGE(large_header_buffers, large_header_buffer_size), NULL },
    { "client_header_buffer_size", H | S, A1, sg_conf_set_size, NONE, NULL },
    { "max_headers", H | S, A1, sg_conf_set_num, SRV_RANGE(max_headers, max_headers), NULL },
    /* http, server, location */
    { "default_type", HSL, A1, set_str, LOC(default_type), NULL },
    { "keepalive_timeout", HSL, SG_ARG12, set_keepalive_timeout,
      LOC_RANGE(0, keepalive_timeout_ms, keepalive_header_s), NULL },
    { "keepalive_requests", HSL, A1, sg_conf_set_num, LOC(keepalive_requests), NULL },
    { "client_max_body_size", HSL, A1, set_size_flagged,
      LOC_RANGE(0, client_max_body_size, client_max_body_size_set), NULL },
    { "client_body_timeout", HSL, A1, set_msec_flagged,
      LOC_RANGE(0, client_body_timeout_ms, client_body_timeout_set), NULL },
    { "send_timeout", HSL, A1, sg_conf_set_msec, LOC(send_timeout_ms), NULL },
    { "access_log", HSL, A1P, set_access_log, LOC_RANGE(SG_CF_MULTI, access_logs, access_log_off), NULL },
    { "root", HSL, A1, set_path, LOC(root), NULL },
    { "index", HSL, A1P, set_index, LOC_RANGE(SG_CF_MULTI, index, nindex), NULL },
    { "add_header", HSL, SG_ARG23, set_header, LOC_RANGE(SG_CF_MULTI, add_headers, nadd_headers), NULL },
    { "error_page", HSL, A2P, set_error_page, LOC_RANGE(SG_CF_MULTI, error_pages, nerror_pages), NULL },
    { "return", S | L, SG_ARG12, set_return, LOC_RANGE(SG_CF_NOMERGE, has_return, return_text), NULL },
    { "internal", L, A0, set_true, LOC_NM(internal), NULL },
    { "sendfile", HSL, A1, sg_conf_set_flag, NONE, NULL },                 /* no effect: documented */
    { "tcp_nopush", HSL, A1, sg_conf_set_flag, NONE, NULL },
    { "tcp_nodelay", HSL, A1, sg_conf_set_flag, NONE, NULL },
    { "reset_timedout_connection", HSL, A1, sg_conf_set_flag, NONE, NULL },
    { "log_not_found", HSL, A1, sg_conf_set_flag, NONE, NULL },
    { "server_tokens", HSL, A1, set_enum, NONE, on_off_build },
    /* proxy and grpc: the upstream settings both have, then each one's own */
    UPSTREAM_OPTS("proxy", proxy),
    UPSTREAM_OPTS("grpc", grpc),
    { "proxy_pass", L, A1, set_pass, LOC_NM(proxy_pass), &proxy_pass_kind },
    { "proxy_http_version", HSL, A1, set_enum, LOC(proxy.http_version), http_versions },
    { "proxy_redirect", HSL, SG_ARG12, set_proxy_redirect, LOC(proxy.redirect_off), NULL },
    { "proxy_upgrade", HSL, A1, sg_conf_set_flag, LOC(proxy.upgrade), NULL },
    { "proxy_buffering", HSL, A1, sg_conf_set_flag, LOC(proxy_buffering), NULL },
    { "proxy_tunnel_timeout", HSL, A1, sg_conf_set_msec, LOC(proxy_tunnel_timeout_ms), NULL },
    { "proxy_buffer_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    { "proxy_buffers", HSL, A2, set_proxy_buffers, NONE, NULL },
    { "proxy_busy_buffers_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    { "proxy_max_temp_file_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    { "proxy_temp_path", HSL, A1P, set_temp_path, NONE, NULL },
    { "proxy_temp_file_write_size", HSL, A1, sg_conf_set_size, NONE, NULL },
    /* grpc (nginx's ngx_http_grpc_module; its other directives are
     * refused as not supported yet) */
    { "grpc_pass", L, A1, set_pass, LOC_NM(proxy_pass), &grpc_pass_kind },
    { "grpc_buffer_size", HSL, A1, sg_conf_set_size, NONE, NULL },          /* accepted: streamgate streams */
    /* http2 (nginx's ngx_http_v2_module; ping_* are streamgate's) */
    { "http2", H | S, A1, sg_conf_set_flag, SRV_RANGE(h2.enabled, h2.enabled), NULL },
    { "http2_max_concurrent_streams", H | S, A1, sg_conf_set_num,
      SRV_RANGE(h2.max_concurrent_streams, h2.max_concurrent_streams), NULL },
    { "http2_recv_buffer_size", H, A1, sg_conf_set_size,
      SRV_RANGE(h2.recv_buffer_size, h2.recv_buffer_size), &h2_nonzero },
    { "http2_body_preread_size", H | S, A1, sg_conf_set_size,
      SRV_RANGE(h2.body_preread_size, h2.body_preread_size), &h2_window },
    { "http2_max_field_size", H | S, A1, sg_conf_set_size,
      SRV_RANGE(h2.max_field_size, h2.max_field_size), &h2_nonzero },
    { "http2_max_header_size", H | S, A1, sg_conf_set_size,
      SRV_RANGE(h2.max_header_size, h2.max_header_size), &h2_nonzero },
    { "http2_idle_timeout", H | S, A1, sg_conf_set_msec, SRV_RANGE(h2.idle_timeout_ms, h2.idle_timeout_ms), NULL },
    { "http2_recv_timeout", H | S, A1, sg_conf_set_msec, SRV_RANGE(h2.recv_timeout_ms, h2.recv_timeout_ms), NULL },
    { "http2_max_requests", H | S, A1, sg_conf_set_num, SRV_RANGE(h2.max_requests, h2.max_requests), NULL },
    { "http2_ping_interval", H | S, A1, sg_conf_set_msec, SRV_RANGE(h2.ping_interval_ms, h2.ping_interval_ms), NULL },
    { "http2_ping_timeout", H | S, A1, sg_conf_set_msec, SRV_RANGE(h2.ping_timeout_ms, h2.ping_timeout_ms), NULL },
    { "http2_chunk_size", HSL, A1, sg_conf_set_size, LOC(http2_chunk_size), &h2_nonzero },
    { "http2_streams_index_size", H | S, A1, sg_conf_set_size, NONE, NULL },   /* no effect: documented */
    /* ssl, server side (conf/ssl_conf.c; contexts built by sg_ssl_conf_finish) */
    { "ssl", H | S, A1, sg_ssl_set_obsolete, NONE, NULL },
    { "ssl_certificate", H | S, A1, sg_ssl_set_certificate, SRV_RANGE_F(SG_CF_MULTI, ssl.certs, ssl.ncerts), NULL },
    { "ssl_certificate_key", H | S, A1, sg_ssl_set_certificate, SRV_RANGE_F(SG_CF_MULTI, ssl.keys, ssl.nkeys), NULL },
    { "ssl_protocols", H | S, A1P, sg_ssl_set_protocols, SRV_RANGE(ssl.protocols, ssl.protocols), NULL },
    { "ssl_ciphers", H | S, A1, sg_ssl_set_string, SRV_RANGE(ssl.ciphers, ssl.ciphers), NULL },
    { "ssl_prefer_server_ciphers", H | S, A1, sg_conf_set_flag,
      SRV_RANGE(ssl.prefer_server_ciphers, ssl.prefer_server_ciphers), NULL },
    { "ssl_session_cache", H | S, A1P, sg_ssl_set_session_cache,
      SRV_RANGE(ssl.session_cache, ssl.session_cache_size), NULL },
    { "ssl_session_timeout", H | S, A1, sg_conf_set_msec, SRV_RANGE(ssl.session_timeout_ms, ssl.session_timeout_ms), NULL },
    { "ssl_session_tickets", H | S, A1, sg_conf_set_flag, SRV_RANGE(ssl.session_tickets, ssl.session_tickets), NULL },
    { "ssl_dhparam", H | S, A1, sg_ssl_set_file, SRV_RANGE(ssl.dhparam, ssl.dhparam), NULL },
    { "ssl_ecdh_curve", H | S, A1, sg_ssl_set_string, SRV_RANGE(ssl.ecdh_curve, ssl.ecdh_curve), NULL },
    /* upstream */
    { "server", U, A1P, sg_conf_set_upstream_server, SG_T_NONE, SG_CF_MULTI, 0, 0, (const void *)(intptr_t)80 },
    { "keepalive", U, A1, sg_conf_set_num, UPS(keepalive), NULL },
    { "keepalive_timeout", U, A1, sg_conf_set_msec, UPS(keepalive_timeout_ms), NULL },
    { "keepalive_requests", U, A1, sg_conf_set_num, UPS(keepalive_requests), NULL },
    /* streamgate: the server-side directives' names, for HTTP/2 peers */
    { "http2_ping_interval", U, A1, sg_conf_set_msec, UPS(h2_ping_interval_ms), NULL },
    { "http2_ping_timeout", U, A1, sg_conf_set_msec, UPS(h2_ping_timeout_ms), NULL },
    { "least_conn", U, A0, sg_conf_set_lb, SG_T_NONE, SG_CF_MULTI, 0, 0, (const void *)(intptr_t)SG_LB_LEAST_CONN },
    { "ip_hash", U, A0, sg_conf_set_lb, SG_T_NONE, SG_CF_MULTI, 0, 0, (const void *)(intptr_t)SG_LB_IP_HASH },
    { "hash", U, SG_ARG12, set_http_hash, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "random", U, SG_ARG0 | SG_ARG12, sg_conf_set_random, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    /* real client address (ngx_http_realip_module) */
    { "set_real_ip_from", HSL, A1, sg_conf_set_realip_from, LOC_RANGE(SG_CF_MULTI, realip_from, nrealip_from), NULL },
    { "real_ip_header", HSL, A1, set_str, LOC(realip_header), NULL },
    { "real_ip_recursive", HSL, A1, sg_conf_set_flag, LOC(realip_recursive), NULL },
    /* access control (ngx_http_access_module) */
    { "allow", HSL, A1, sg_conf_set_access, LOC_RANGE(SG_CF_MULTI, access_rules, naccess_rules), NULL },
    { "deny", HSL, A1, sg_conf_set_access, LOC_RANGE(SG_CF_MULTI, access_rules, naccess_rules), NULL },
    { "zone", U, SG_ARG12, sg_conf_set_zone, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    /* gzip (conf/gzip_conf.c, proxy/gzip_filter.c) */
    { "gzip", HSL, A1, sg_conf_set_flag, LOC(gzip), NULL },
    { "gzip_vary", HSL, A1, sg_conf_set_flag, LOC(gzip_vary), NULL },
    { "gzip_comp_level", HSL, A1, sg_gzip_set_comp_level, LOC(gzip_comp_level), NULL },
    { "gzip_min_length", HSL, A1, sg_conf_set_size, LOC(gzip_min_length), NULL },
    { "gzip_http_version", HSL, A1, sg_gzip_set_http_version, LOC(gzip_http_version), NULL },
    { "gzip_proxied", HSL, A1P, sg_gzip_set_proxied, LOC(gzip_proxied), NULL },
    { "gzip_types", HSL, A1P, sg_gzip_set_types, LOC_RANGE(0, gzip_types, gzip_types_any), NULL },
    { "gzip_disable", HSL, A1P, sg_gzip_set_disable, LOC_RANGE(0, gzip_disable, gzip_disable_msie6), NULL },
    { "gzip_buffers", HSL, A2, sg_gzip_set_buffers, NONE, NULL },
    /* request body and request controls (area: body; proxy/reqbody.c) */
    { "proxy_request_buffering", HSL, A1, set_enum, LOC(request_buffering), request_buffering_vals },
    { "client_body_in_file_only", HSL, A1, set_enum, LOC(body_in_file_only), body_file_vals },
    { "client_body_in_single_buffer", HSL, A1, sg_conf_set_flag, LOC(body_in_single_buffer), NULL },
    { "client_body_buffer_size", HSL, A1, sg_conf_set_size, LOC(client_body_buffer_size), &body_buffer_bounds },
    { "client_body_temp_path", HSL, A1P, set_body_temp_path, LOC(client_body_temp_path), NULL },
    { "proxy_pass_request_body", HSL, A1, sg_conf_set_flag, LOC(pass_request_body), NULL },
    { "proxy_pass_request_headers", HSL, A1, sg_conf_set_flag, LOC(pass_request_headers), NULL },
    { "proxy_set_body", HSL, A1, set_cval_flagged, LOC_RANGE(0, set_body, has_set_body), NULL },
    { "proxy_method", HSL, A1, set_cval_flagged, LOC_RANGE(0, method, has_method), NULL },
    /* tls: client certificates and handshake controls (conf/ssl_conf.c) */
    { "ssl_verify_client", H | S, A1, sg_ssl_set_verify_client, SRV_RANGE(ssl.verify_client, ssl.verify_client), NULL },
    { "ssl_verify_depth", H | S, A1, sg_conf_set_num, SRV_RANGE(ssl.verify_depth, ssl.verify_depth), NULL },
    { "ssl_client_certificate", H | S, A1, sg_ssl_set_file,
      SRV_RANGE(ssl.client_certificate, ssl.client_certificate), NULL },
    { "ssl_trusted_certificate", H | S, A1, sg_ssl_set_file,
      SRV_RANGE(ssl.trusted_certificate, ssl.trusted_certificate), NULL },
    { "ssl_crl", H | S, A1, sg_ssl_set_file, SRV_RANGE(ssl.crl, ssl.crl), NULL },
    { "ssl_reject_handshake", H | S, A1, sg_conf_set_flag, SRV_RANGE(ssl.reject_handshake, ssl.reject_handshake), NULL },
    { "ssl_password_file", H | S, A1, sg_ssl_set_file, SRV_RANGE(ssl.password_file, ssl.password_file), NULL },
    { "ssl_buffer_size", H | S, A1, sg_conf_set_size, SRV_RANGE(ssl.buffer_size, ssl.buffer_size), NULL },
    { "ssl_early_data", H | S, A1, sg_ssl_set_early_data, SRV_RANGE(ssl.early_data, ssl.early_data), NULL },
    { "ssl_conf_command", H | S, A2, sg_ssl_set_conf_command,
      SRV_RANGE_F(SG_CF_MULTI, ssl.conf_commands, ssl.nconf_commands), NULL },
    { "proxy_ssl_password_file", HSL, A1, sg_ssl_set_file, LOC(proxy.ssl.password_file), NULL },
    { "grpc_ssl_password_file", HSL, A1, sg_ssl_set_file, LOC(grpc.ssl.password_file), NULL },
    { "proxy_ssl_crl", HSL, A1, sg_ssl_set_file, LOC(proxy.ssl.crl), NULL },
    { "grpc_ssl_crl", HSL, A1, sg_ssl_set_file, LOC(grpc.ssl.crl), NULL },
    { "proxy_ssl_conf_command", HSL, A2, sg_ssl_set_conf_command,
      LOC_RANGE(SG_CF_MULTI, proxy.ssl.conf_commands, proxy.ssl.nconf_commands), NULL },
    { "grpc_ssl_conf_command", HSL, A2, sg_ssl_set_conf_command,
      LOC_RANGE(SG_CF_MULTI, grpc.ssl.conf_commands, grpc.ssl.nconf_commands), NULL },
    /* rewrite module (conf/rewrite.c): operations in each level's list;
     * `return` in a server-level if is this table's second "return" row */
    { "if", S | L, A1P | BLK, sg_rw_set_if, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "set", S | L | SG_CTX_SIF, A2, sg_rw_set_set, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "rewrite", S | L | SG_CTX_SIF, SG_ARG23, sg_rw_set_rewrite, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "break", S | L | SG_CTX_SIF, A0, sg_rw_set_break, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "return", SG_CTX_SIF, SG_ARG12, set_return, LOC_RANGE(SG_CF_NOMERGE, has_return, return_text), NULL },
    { "rewrite_log", HSL | SG_CTX_SIF, A1, sg_conf_set_flag, LOC(rewrite_log), NULL },
    { "uninitialized_variable_warn", HSL | SG_CTX_SIF, A1, sg_conf_set_flag, LOC(uninitialized_variable_warn), NULL },
    /* limit_except: a block like `if`'s, taken by the methods it does not name */
    { "limit_except", L, A1P | BLK, sg_rw_set_limit_except, LOC_NM(lmt_block), NULL },
    /* passvar: variables in proxy_pass/grpc_pass, their resolver (net/resolver.c) */
    { "resolver", HSL, A1P, sg_conf_set_resolver, LOC(resolver), NULL },
    { "resolver_timeout", HSL, A1, sg_conf_set_resolver_timeout, LOC(resolver_timeout_ms), NULL },
    /* header controls and small directives (issue 9: conf/header_conf.c, proxy/header_filter.c) */
    { "proxy_hide_header", HSL, A1, sg_hc_set_name_list,
      LOC_RANGE(SG_CF_MULTI, proxy.hide_headers, proxy.nhide_headers), NULL },
    { "proxy_pass_header", HSL, A1, sg_hc_set_name_list,
      LOC_RANGE(SG_CF_MULTI, proxy.pass_headers, proxy.npass_headers), NULL },
    { "proxy_ignore_headers", HSL, A1P, sg_hc_set_ignore_headers, LOC(proxy.ignore_headers), NULL },
    { "proxy_pass_trailers", HSL, A1, sg_conf_set_flag, LOC(proxy.pass_trailers), NULL },
    { "grpc_hide_header", HSL, A1, sg_hc_set_name_list,
      LOC_RANGE(SG_CF_MULTI, grpc.hide_headers, grpc.nhide_headers), NULL },
    { "grpc_pass_header", HSL, A1, sg_hc_set_name_list,
      LOC_RANGE(SG_CF_MULTI, grpc.pass_headers, grpc.npass_headers), NULL },
    { "grpc_ignore_headers", HSL, A1P, sg_hc_set_ignore_headers, LOC(grpc.ignore_headers), NULL },
    { "add_trailer", HSL, SG_ARG23, set_header, LOC_RANGE(SG_CF_MULTI, add_trailers, nadd_trailers), NULL },
    { "expires", HSL, SG_ARG12, sg_hc_set_expires, LOC(expires), NULL },
    { "absolute_redirect", HSL, A1, sg_conf_set_flag, LOC(absolute_redirect), NULL },
    { "port_in_redirect", HSL, A1, sg_conf_set_flag, LOC(port_in_redirect), NULL },
    { "server_name_in_redirect", HSL, A1, sg_conf_set_flag, LOC(server_name_in_redirect), NULL },
    { "alias", L, A1, sg_hc_set_alias, LOC_RANGE(SG_CF_NOMERGE, alias, has_alias), NULL },
    { "keepalive_time", HSL, A1, sg_conf_set_msec, LOC(keepalive_time_ms), NULL },
    { "keepalive_time", U, A1, sg_conf_set_msec, UPS(keepalive_time_ms), NULL },
    { "connection_pool_size", H | S, A1, sg_conf_set_size, NONE, NULL },   /* memory is per exchange */
    { "request_pool_size", H | S, A1, sg_conf_set_size, NONE, NULL },
    { "lingering_close", HSL, A1, sg_hc_set_noeffect, NONE,
      "streamgate always drains a closing connection's input for a while (lingering close on)" },
    { "lingering_time", HSL, A1, sg_conf_set_msec, NONE, NULL },           /* fixed in the HTTP/1.1 codec */
    { "lingering_timeout", HSL, A1, sg_conf_set_msec, NONE, NULL },
    { "early_hints", HSL, A1P, sg_hc_set_noeffect, NONE, "103 Early Hints responses are not relayed" },
    { "keepalive_disable", HSL, A1P, sg_hc_set_keepalive_disable, LOC(keepalive_disable), NULL },
    { "underscores_in_headers", H | S, A1, sg_conf_set_flag,
      SRV_RANGE(underscores_in_headers, underscores_in_headers), NULL },
    { "ignore_invalid_headers", H | S, A1, sg_conf_set_flag,
      SRV_RANGE(ignore_invalid_headers, ignore_invalid_headers), NULL },
    /* charset (conf/charset_conf.c, proxy/charset_filter.c); charset_map
     * stays "not supported yet" through the "charset_" prefix */
    { "charset", HSL, A1, sg_charset_set_name, LOC_RANGE(0, charset, charset_on), NULL },
    { "source_charset", HSL, A1, sg_charset_set_name, LOC_RANGE(0, source_charset, source_charset_on), NULL },
    { "override_charset", HSL, A1, sg_conf_set_flag, LOC(override_charset), NULL },
    { "charset_types", HSL, A1P, sg_charset_set_types, LOC_RANGE(0, charset_types, charset_types_any), NULL },
    { "output_buffers", HSL, A2, sg_charset_set_output_buffers, NONE, NULL },
    /* access (issue 10): split_clients (ngx_http_split_clients_module) */
    { "split_clients", H, SG_ARG2 | BLK, set_split_clients, NONE, NULL },
    /* limits (issue 10: limit_req, limit_conn; conf/limit_conf.c, proxy/limit.c) */
    { "limit_req_zone", H, SG_ARG3, sg_limit_set_req_zone, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "limit_req", HSL, SG_ARG1 | SG_ARG2 | SG_ARG3, sg_limit_set_req,
      LOC_RANGE(SG_CF_MULTI, limit_reqs, nlimit_reqs), NULL },
    { "limit_req_status", HSL, A1, sg_limit_set_status, LOC(limit_req_status), NULL },
    { "limit_req_log_level", HSL, A1, sg_limit_set_log_level, LOC(limit_req_log_level), NULL },
    { "limit_req_dry_run", HSL, A1, sg_conf_set_flag, LOC(limit_req_dry_run), NULL },
    { "limit_conn_zone", H, A2, sg_limit_set_conn_zone, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "limit_conn", HSL, A2, sg_limit_set_conn, LOC_RANGE(SG_CF_MULTI, limit_conns, nlimit_conns), NULL },
    { "limit_conn_status", HSL, A1, sg_limit_set_status, LOC(limit_conn_status), NULL },
    { "limit_conn_log_level", HSL, A1, sg_limit_set_log_level, LOC(limit_conn_log_level), NULL },
    { "limit_conn_dry_run", HSL, A1, sg_conf_set_flag, LOC(limit_conn_dry_run), NULL },
    /* balancers (issue 11, area: balance; conf/balance_conf.c, upstream/least_time.c) */
    { "least_time", U, SG_ARG12, sg_balance_set_least_time, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "sticky", U, SG_ARG1MORE, sg_balance_set_sticky, SG_T_NONE, 0, 0, 0, NULL },
    /* rate (issue 10): bandwidth limits (conf/rate_conf.c, applied by
     * proxy/rate_limit.c); `set $limit_rate` is exchange/vars.c's */
    { "limit_rate", HSL, A1, sg_rate_set_size, LOC_RANGE(0, limit_rate, has_limit_rate), NULL },
    { "limit_rate_after", HSL, A1, sg_rate_set_size, LOC_RANGE(0, limit_rate_after, has_limit_rate_after), NULL },
    { "proxy_limit_rate", HSL, A1, sg_rate_set_size, LOC_RANGE(0, proxy_limit_rate, has_proxy_limit_rate), NULL },
    /* health (issue 11): active health checks, nginx Plus syntax (conf/health_conf.c, upstream/health.c) */
    { "health_check", L, A0 | A1P, sg_health_set_check, NONE, NULL },
    { "match", H, A1 | BLK, sg_health_set_match, NONE, NULL },
    /* dns: an upstream's own resolver for its `resolve` servers (nginx 1.27.3) */
    { "resolver", U, A1P, sg_conf_set_resolver, UPS(dns_resolver), NULL },
    { "resolver_timeout", U, A1, sg_conf_set_resolver_timeout, UPS(dns_resolver_timeout_ms), NULL },
    /* log writers (issue 12): open_log_file_cache (observe/access_log.c) */
    { "open_log_file_cache", HSL, A1P, set_open_log_file_cache, LOC(log_cache), NULL },
    /* metrics (issue 12): nginx's stub_status and a Prometheus endpoint (proxy/status_page.c) */
    { "stub_status", S | L, A0 | A1, set_true, LOC_NM(stub_status), NULL },
    { "metrics", S | L, A0, set_true, LOC_NM(metrics), NULL },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))
_Static_assert(NCMDS <= SG_MAX_CMDS - SG_STREAM_MAX_CMDS, "raise SG_MAX_CMDS");

/* nginx directives streamgate does not have yet: "NAME" directive is not
 * supported yet. Written in stream{}, they are "not allowed here" (nginx
 * has them in other contexts). */
static const char *const later_exact[] = {
    "http3", "quic", "try_files",
    "proxy_bind", "proxy_socket_keepalive", "proxy_ignore_client_abort", "proxy_force_ranges",
    "worker_rlimit_nofile", "worker_cpu_affinity", "worker_priority",
    "working_directory", "load_module", "env", "lock_file", "thread_pool", "timer_resolution",
    "master_process", "debug_points", "worker_rlimit_core", "send_lowat", "postpone_output",
    "chunked_transfer_encoding", "etag", "if_modified_since", "log_subrequest",
    "disable_symlinks", "max_ranges", "merge_slashes", "msie_padding",
    "msie_refresh", "recursive_error_pages", "satisfy", "subrequest_output_buffer_size",
    "debug_connection", "worker_aio_requests", "accept_mutex_delay",
    "sendfile_max_chunk", "read_ahead",
    "ntlm", "queue", "ssi", "sub_filter",
    "mirror", "empty_gif",
    "gzip_static",   /* gzip: ngx_http_gzip_static_module */
    NULL,
};
static const char *const later_prefix[] = {
    "grpc_", "ssl_", "proxy_ssl_", "http2_", "http3_", "quic_",
    "proxy_cache", "proxy_store", "proxy_temp", "proxy_cookie_", "gunzip",
    "auth_", "sub_filter_", "open_file_cache", "ssi_", "autoindex", "mirror_", "uwsgi_",
    "fastcgi_", "scgi_", "memcached_", "charset_", "secure_link", "userid", "geoip", "image_filter",
    "xslt_", "dav_", "mp4", "flv", "hls", "slice", "aio", "directio", "addition_", "random_index",
    "perl", "spdy_", "resolver_",
    NULL,
};

static const sg_cmd_module http_module = {
    cmds, NCMDS, SG_CTX_MAIN | SG_CTX_EVENTS | SG_CTX_HSL | SG_CTX_UPSTREAM, later_exact, later_prefix,
};

/* Every table the engine reads. A command's number (its bit in the `set`
 * maps) counts on from the lines of the tables before its own. */
static const sg_cmd_module *const modules[] = { &http_module, &sg_stream_module };
#define NMODULES (sizeof(modules) / sizeof(modules[0]))

/* Whether the other of allow/deny already added rules at this level
 * (http's table or stream's: a command's bit counts on over both). */
static bool access_other_set(sg_cctx *cx, const sg_cmd *cmd)
{
    size_t idx = 0;
    for (size_t m = 0; m < NMODULES; m++)
        for (size_t i = 0; i < modules[m]->ncmds; i++, idx++) {
            const sg_cmd *o = &modules[m]->cmds[i];
            if (o->set == sg_conf_set_access && o != cmd && o->target == cmd->target &&
                (cx->cur->set[idx / 8] & (1u << (idx % 8))))
                return true;
        }
    return false;
}

/* Both directives count as set at this level, so neither inherits over
 * the list the level wrote. */
static void access_mark_set(sg_cctx *cx, const sg_cmd *cmd)
{
    size_t idx = 0;
    for (size_t m = 0; m < NMODULES; m++)
        for (size_t i = 0; i < modules[m]->ncmds; i++, idx++) {
            const sg_cmd *o = &modules[m]->cmds[i];
            if (o->set == sg_conf_set_access && o->target == cmd->target)
                cx->cur->set[idx / 8] |= (unsigned char)(1u << (idx % 8));
        }
}

static bool is_later(const sg_cmd_module *m, const char *name)
{
    for (int i = 0; m->later_exact[i]; i++)
        if (strcmp(name, m->later_exact[i]) == 0) return true;
    for (int i = 0; m->later_prefix[i]; i++)
        if (starts(name, m->later_prefix[i])) return true;
    return false;
}

/* For -V: whether streamgate implements directive `name` (in stream{}
 * when `stream`), that is, whether it has nginx's module of that name. */
bool sg_directive_known(const char *name, bool stream)
{
    const sg_cmd_module *m = modules[stream ? 1 : 0];
    for (size_t i = 0; i < m->ncmds; i++)
        if (strcmp(m->cmds[i].name, name) == 0) return true;
    return false;
}

/* ---------------- dispatch ---------------- */

static unsigned char *set_bits(sg_cctx *cx, const sg_cmd *cmd)
{
    switch (cmd->target) {
    case SG_T_MAIN: return cx->main_set;
    case SG_T_LOC: case SG_T_SRV: case SG_T_STREAM: return cx->cur->set;
    case SG_T_UPS: return cx->ups_set;
    default: return NULL;
    }
}

/* The struct of level l that commands of target t fill; NULL when l has none. */
static void *lvl_base(sg_lvl *l, sg_cmd_target t)
{
    switch (t) {
    case SG_T_LOC: return l->conf;
    case SG_T_SRV: return l->conf ? &l->srv : NULL;   /* http levels */
    case SG_T_STREAM: return l->stream_proxy;
    default: return NULL;
    }
}

static void *target_base(sg_cctx *cx, const sg_cmd *cmd)
{
    if (cmd->size == 0) return NULL;   /* no field: the setter checks the value only */
    switch (cmd->target) {
    case SG_T_MAIN: return cx->c;
    case SG_T_UPS: return cx->ups;
    default: return lvl_base(cx->cur, cmd->target);
    }
}

static bool args_ok(uint32_t spec, size_t n)
{
    if (n <= 5 && (spec & (1u << n))) return true;
    if ((spec & SG_ARG1MORE) && n >= 1) return true;
    return (spec & SG_ARG2MORE) && n >= 2;
}

/* The command for n in the current context, with its number in *idx.
 * Else NULL after nginx's message: a name of this context's table is "not
 * allowed here" (another context's directive), one of its later lists
 * "not supported yet", a name of another table or of http's later lists
 * (a directive nginx has in other contexts) "not allowed here" again. */
static const sg_cmd *find_cmd(sg_cctx *cx, const sg_cnode *n, size_t *idx)
{
    const char *name = n->name.s;
    const sg_cmd_module *own = &http_module;
    bool named_here = false, named_elsewhere = false;
    size_t first = 0;
    for (size_t m = 0; m < NMODULES; m++) {
        const sg_cmd_module *mod = modules[m];
        bool here = (mod->ctx & cx->ctx) != 0;
        if (here) own = mod;
        for (size_t i = 0; i < mod->ncmds; i++) {
            if (strcmp(mod->cmds[i].name, name) != 0) continue;
            if (mod->cmds[i].ctx & cx->ctx) {
                *idx = first + i;
                return &mod->cmds[i];
            }
            if (here) named_here = true;
            else named_elsewhere = true;
        }
        first += mod->ncmds;
    }
    if (named_here) sg_cerr(cx, n->name.pos, "\"%s\" directive is not allowed here", name);
    else if (is_later(own, name)) sg_cerr(cx, n->name.pos, "\"%s\" directive is not supported yet", name);
    else if (named_elsewhere || is_later(&http_module, name))
        sg_cerr(cx, n->name.pos, "\"%s\" directive is not allowed here", name);
    else sg_cerr(cx, n->name.pos, "unknown directive \"%s\"", name);
    return NULL;
}

static bool run_node(sg_cctx *cx, const sg_cnode *n)
{
    size_t idx;
    const sg_cmd *cmd = find_cmd(cx, n, &idx);
    if (!cmd) return false;
    const char *name = n->name.s;
    if ((cmd->args & SG_ARGBLOCK) && !n->block)
        return sg_cerr(cx, n->name.pos, "directive \"%s\" has no opening \"{\"", name);
    if (!(cmd->args & SG_ARGBLOCK) && n->block)
        return sg_cerr(cx, n->name.pos, "directive \"%s\" is not terminated by \";\"", name);
    if (!args_ok(cmd->args, n->nargs))
        return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"%s\" directive", name);
    unsigned char *bits = set_bits(cx, cmd);
    bool was_set = bits && (bits[idx / 8] & (1u << (idx % 8)));
    if (was_set && !(cmd->flags & SG_CF_MULTI))
        return sg_cerr(cx, n->name.pos, "\"%s\" directive is duplicate", name);
    cx->first = !was_set;
    if (!cmd->set(cx, n, cmd, target_base(cx, cmd))) return false;
    if (bits) bits[idx / 8] |= (unsigned char)(1u << (idx % 8));
    return true;
}

static bool run_block(sg_cctx *cx, const sg_cnode *blk, uint32_t ctx)
{
    uint32_t saved = cx->ctx;
    cx->ctx = ctx;
    for (size_t i = 0; i < blk->nkids; i++)
        if (!run_node(cx, &blk->kids[i])) return false;
    cx->ctx = saved;
    return true;
}

bool sg_directives_run(sg_cctx *cx, const sg_cnode *root)
{
    return run_block(cx, root, SG_CTX_MAIN);
}

/* ---------------- defaults and inheritance ---------------- */

static void upstream_opts_defaults(sg_upstream_opts *o)
{
    o->http_version = 11;              /* streamgate: nginx defaults to 1.0 */
    o->connect_timeout_ms = 60000;
    o->read_timeout_ms = 60000;
    o->send_timeout_ms = 60000;
    o->next_upstream = SG_NU_ERROR | SG_NU_TIMEOUT;
    o->upgrade = true;
}

/* What grpc_pass always does, no grpc_* directive sets: HTTP/2, no
 * Location rewriting, no Upgrade and no extended CONNECT. */
static void grpc_fixed(sg_upstream_opts *o)
{
    o->http_version = 20;
    o->redirect_off = true;
    o->upgrade = false;
}

void sg_directives_loc_defaults(sg_cctx *cx, sg_loc_conf *lc, sg_server_conf *srv)
{
    sg_conf *c = cx->c;
    lc->client_max_body_size = 1024 * 1024;
    lc->client_body_timeout_ms = 60000;
    lc->send_timeout_ms = 60000;
    lc->keepalive_timeout_ms = 75000;
    lc->keepalive_requests = 1000;
    lc->default_type = SG_STR("text/plain");
    lc->realip_header = SG_STR("X-Real-IP");
    lc->root = sg_str_from(sg_conf_full_path(c, "html"));
    lc->index = sg_arena_alloc(&c->arena, sizeof(sg_cval));
    lc->index[0] = (sg_cval){ .literal = true, .text = SG_STR("index.html") };
    lc->nindex = 1;
    lc->access_log_off = true;         /* streamgate: no access log unless asked for */
    upstream_opts_defaults(&lc->proxy);
    upstream_opts_defaults(&lc->grpc);
    lc->proxy_buffering = true;
    lc->proxy_tunnel_timeout_ms = 3600 * 1000;   /* streamgate: nginx uses proxy_read_timeout (60 s) */
    lc->error_log_path = c->error_log_path;
    lc->error_log_level = c->error_log_level;
    srv->client_header_timeout_ms = 60000;
    srv->large_header_buffers = 4;
    srv->large_header_buffer_size = 8192;
    srv->max_headers = 100;
    lc->http2_chunk_size = 8192;
    /* request body (area: body) */
    lc->client_body_buffer_size = 16 * 1024;
    lc->client_body_temp_path = sg_str_from(sg_conf_full_path(c, "client_body_temp"));
    lc->pass_request_body = true;
    lc->pass_request_headers = true;
    lc->uninitialized_variable_warn = true;
    lc->resolver_timeout_ms = 30000;   /* passvar: nginx's default */
    sg_ssl_conf_defaults(lc, srv);
    sg_gzip_conf_defaults(lc);
    /* header controls and small directives (issue 9) */
    srv->ignore_invalid_headers = true;
    lc->absolute_redirect = true;
    lc->keepalive_disable = SG_KA_DISABLE_MSIE6;
    lc->port_in_redirect = true;
    lc->keepalive_time_ms = 3600 * 1000;
    sg_charset_conf_defaults(lc);
    srv->h2.max_concurrent_streams = 128;
    srv->h2.recv_buffer_size = 256 * 1024;
    srv->h2.body_preread_size = 65536;
    srv->h2.idle_timeout_ms = SG_UNSET_MS;
    srv->h2.recv_timeout_ms = SG_UNSET_MS;
    srv->h2.ping_interval_ms = 30000;
    srv->h2.ping_timeout_ms = 20000;
}

/* Copies into l every field the level above has and l did not set. */
static void merge_level(sg_lvl *up, sg_lvl *l)
{
    size_t idx = 0;
    for (size_t m = 0; m < NMODULES; m++) {
        for (size_t i = 0; i < modules[m]->ncmds; i++, idx++) {
            const sg_cmd *cmd = &modules[m]->cmds[i];
            char *to = lvl_base(l, cmd->target);
            const char *from = lvl_base(up, cmd->target);
            if (!to || !from || cmd->size == 0 || (cmd->flags & SG_CF_NOMERGE) || (l->set[idx / 8] & (1u << (idx % 8))))
                continue;
            memcpy(to + cmd->offset, from + cmd->offset, cmd->size);
        }
    }
}

static void merge_tree(sg_lvl *l)
{
    for (size_t i = 0; i < l->nkids; i++) {
        merge_level(l, l->kids[i]);
        merge_tree(l->kids[i]);
    }
}

/* The user's proxy_set_header (grpc_set_header) list over the defaults
 * (Host $proxy_host, Connection "", for gRPC TE trailers): a default the
 * user names is replaced in place, so Host stays first as nginx sends it. */
static void effective_headers(sg_cctx *cx, sg_upstream_opts *o, const sg_header_set *defs, size_t ndefs)
{
    size_t n = 0, cap = ndefs + o->nheaders;
    sg_header_set *out = sg_arena_alloc(&cx->c->arena, (cap ? cap : 1) * sizeof(*out));
    for (size_t d = 0; d < ndefs; d++) out[n++] = defs[d];
    for (size_t i = 0; i < o->nheaders; i++) {
        const sg_header_set *h = &o->headers[i];
        size_t j = 0;
        while (j < ndefs && !sg_str_caseeq(out[j].name, h->name)) j++;
        if (j < ndefs) out[j] = *h;
        else out[n++] = *h;
    }
    o->headers = out;
    o->nheaders = n;
}

static void finish_tree(sg_cctx *cx, sg_lvl *l, const sg_header_set *defs, size_t ndefs)
{
    sg_loc_conf *lc = l->conf;
    effective_headers(cx, &lc->proxy, defs, ndefs);
    effective_headers(cx, &lc->grpc, defs, ndefs + 1);   /* + TE: trailers */
    grpc_fixed(&lc->grpc);
    lc->pass_opts = lc->is_grpc ? &lc->grpc : &lc->proxy;
    if (l->server && l->loc == l->server->root) {
        l->server->client_header_timeout_ms = l->srv.client_header_timeout_ms;
        l->server->large_header_buffers = l->srv.large_header_buffers;
        l->server->large_header_buffer_size = l->srv.large_header_buffer_size;
        l->server->max_headers = l->srv.max_headers;
        l->server->h2 = l->srv.h2;
        l->server->ssl = l->srv.ssl;
        l->server->underscores_in_headers = l->srv.underscores_in_headers;   /* issue 9 */
        l->server->ignore_invalid_headers = l->srv.ignore_invalid_headers;
        /* `http2 on` (nginx 1.25): h2 on every address of the server */
        for (size_t j = 0; l->srv.h2.enabled && j < l->server->nlistens; j++)
            l->server->listens[j].http2 = true;
    }
    for (size_t i = 0; i < l->nkids; i++) finish_tree(cx, l->kids[i], defs, ndefs);
}

void sg_directives_merge(sg_cctx *cx)
{
    if (cx->stream) merge_tree(cx->stream);
    if (!cx->http) return;
    sg_loc_conf *top = cx->http->conf;
    size_t el = 0;
    while (el < NCMDS && !(cmds[el].target == SG_T_LOC && cmds[el].set == sg_conf_set_error_log)) el++;
    if (!(cx->http->set[el / 8] & (1u << (el % 8)))) {   /* main error_log may come after http{} */
        top->error_log_path = cx->c->error_log_path;
        top->error_log_level = cx->c->error_log_level;
    }
    merge_tree(cx->http);
    /* The third, TE: trailers, is gRPC's: the client's TE is hop-by-hop,
     * and a gRPC backend wants it (nginx sends it for grpc_pass too). */
    sg_header_set defs[3] = { { .name = SG_STR("Host") }, { .name = SG_STR("Connection") },
                              { .name = SG_STR("TE") } };
    char err[256];
    sg_conf_pos pos = { cx->c->file, 0, 0 };
    /* literal inputs: these cannot fail */
    (void)sg_cval_compile(cx->c, SG_STR("$proxy_host"), pos, &defs[0].value, err, sizeof(err));
    (void)sg_cval_compile(cx->c, SG_STR(""), pos, &defs[1].value, err, sizeof(err));
    (void)sg_cval_compile(cx->c, SG_STR("trailers"), pos, &defs[2].value, err, sizeof(err));
    finish_tree(cx, cx->http, defs, 2);
}
