/* The stream{} directive table and its own setters (see stream_conf.h).
 *
 * The lines below are read by the directive engine of conf/directives.c,
 * like the http ones, in the contexts stream, server and upstream of
 * stream{}. Values of ngx_stream_proxy_module live in sg_stream_proxy_conf
 * at stream{} and server{} level (target SG_T_STREAM); a server inherits
 * every field it did not set, so a new inheritable directive is one table
 * line with a generic setter. */
#include "conf/stream_conf.h"
#include "conf/directives.h"
#include "core/sockaddr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static sg_str arg_str(const sg_carg *a)
{
    return (sg_str){ a->s, a->n };
}

/* ---------------- stream values ($remote_addr ...) ---------------- */

static const struct { const char *name; sg_stream_var var; } svars[] = {
    { "remote_addr", SG_SVAR_REMOTE_ADDR }, { "remote_port", SG_SVAR_REMOTE_PORT },
    { "binary_remote_addr", SG_SVAR_BINARY_REMOTE_ADDR }, { "server_addr", SG_SVAR_SERVER_ADDR },
    { "server_port", SG_SVAR_SERVER_PORT }, { "protocol", SG_SVAR_PROTOCOL },
};

static bool var_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

static void val_push(sg_conf *c, sg_stream_val *out, int var, sg_str lit)
{
    if (var < 0 && lit.n == 0) return;
    out->parts = sg_conf_push(&c->arena, out->parts, out->nparts, sizeof(*out->parts));
    out->parts[out->nparts++] = (sg_stream_val_part){ var, sg_arena_str(&c->arena, lit) };
}

/* One "$name" or "${name}" at text.p[*i] ('$'): appends the variable, or
 * writes nginx's message into msg. */
static bool val_var(sg_conf *c, sg_str text, size_t *i, sg_stream_val *out, char *msg, size_t msglen)
{
    size_t j = *i + 1;
    bool braced = j < text.n && text.p[j] == '{';
    if (braced) j++;
    size_t start = j;
    while (j < text.n && var_char(text.p[j])) j++;
    sg_str name = { text.p + start, j - start };
    if (braced && j >= text.n) {
        snprintf(msg, msglen, "the closing bracket in \"%.*s\" variable is missing", (int)name.n, name.p);
        return false;
    }
    if (name.n == 0 || (braced && text.p[j] != '}')) {
        snprintf(msg, msglen, "invalid variable name in \"%.*s\"", (int)text.n, text.p);
        return false;
    }
    for (size_t k = 0; k < sizeof(svars) / sizeof(svars[0]); k++) {
        if (sg_str_eq_lit(name, svars[k].name)) {
            val_push(c, out, (int)svars[k].var, SG_STR_NULL);
            *i = braced ? j + 1 : j;
            return true;
        }
    }
    snprintf(msg, msglen, "unknown \"%.*s\" variable", (int)name.n, name.p);
    return false;
}

bool sg_stream_val_compile(sg_conf *c, sg_str text, sg_conf_pos pos, sg_stream_val *out,
                           char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->text = sg_arena_str(&c->arena, text);
    size_t lit = 0, i = 0;
    while (i < text.n) {
        if (text.p[i] != '$') {
            i++;
            continue;
        }
        val_push(c, out, -1, (sg_str){ text.p + lit, i - lit });
        char msg[512];
        if (!val_var(c, text, &i, out, msg, sizeof(msg))) {
            snprintf(err, errlen, "%s:%d:%d: %s", pos.file ? pos.file : "<config>", pos.line, pos.col, msg);
            return false;
        }
        lit = i;
    }
    val_push(c, out, -1, (sg_str){ text.p + lit, text.n - lit });
    return true;
}

/* ---------------- stream, server, listen, proxy_pass ---------------- */

static void proxy_defaults(sg_stream_proxy_conf *p)
{
    p->timeout_ms = 3600000;           /* streamgate: 1h for long-lived connections (nginx: 10m) */
    p->connect_timeout_ms = 60000;
    p->next_upstream = true;
    p->next_upstream_tries = 0;
    p->next_upstream_timeout_ms = 0;
    p->half_close = false;
    p->tcp_nodelay = true;
}

/* stream { }: reads the block into cx->c->stream. */
static bool set_stream(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    sg_stream_conf *sc = sg_arena_alloc(&c->arena, sizeof(*sc));
    memset(sc, 0, sizeof(*sc));
    proxy_defaults(&sc->proxy);
    c->stream = sc;
    cx->stream = sg_directives_level(cx, NULL);
    cx->stream->stream_proxy = &sc->proxy;
    return sg_directives_enter(cx, cx->stream, n, SG_CTX_STREAM);
}

static bool set_server(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    sg_stream_conf *sc = c->stream;
    sg_stream_server_conf *s = sg_arena_alloc(&c->arena, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->pos = n->name.pos;
    s->pass_port = -1;
    sc->servers = sg_conf_push(&c->arena, sc->servers, sc->nservers, sizeof(s));
    sc->servers[sc->nservers++] = s;
    sg_lvl *l = sg_directives_level(cx, cx->stream);
    l->stream_proxy = &s->proxy;
    l->stream_server = s;
    if (!sg_directives_enter(cx, l, n, SG_CTX_STREAM_SERVER)) return false;
    if (s->nlistens == 0) return sg_cerr(cx, s->pos, "no \"listen\" is defined for server");
    if (s->pass_host.p == NULL) return sg_cerr(cx, s->pos, "no handler for server");
    return true;
}

static bool listen_param(sg_cctx *cx, const sg_carg *a, sg_listen_conf *lc)
{
    static const char *const later[] = {
        "udp", "ssl", "proxy_protocol", "so_keepalive", "rcvbuf", "sndbuf", "fastopen",
        "ipv6only=off", "setfib", "accept_filter", "deferred", NULL,
    };
    const char *p = a->s;
    uint64_t v;
    if (strcmp(p, "reuseport") == 0) {
        lc->reuseport = true;
    } else if (strcmp(p, "bind") == 0 || strcmp(p, "ipv6only=on") == 0) {
        /* every address is bound on its own already */
    } else if (starts(p, "backlog=")) {
        if (!sg_str_to_u64(sg_str_from(p + 8), &v) || v > INT32_MAX || v == 0)
            return sg_cerr(cx, a->pos, "invalid backlog \"%s\"", p);
        lc->backlog = (int)v;
    } else {
        size_t keylen = strcspn(p, "=");
        for (int i = 0; later[i]; i++)
            if (strncmp(p, later[i], strlen(later[i])) == 0 && (strchr(later[i], '=') || keylen == strlen(later[i])))
                return sg_cerr(cx, a->pos, "\"%.*s\" parameter of \"listen\" is not supported yet",
                               (int)keylen, p);
        return sg_cerr(cx, a->pos, "the invalid \"%s\" parameter", p);
    }
    return true;
}

/* ngx_stream_core_listen: one address may be listened on by one stream server only. */
static bool listen_unique(sg_cctx *cx, const sg_carg *a, const sg_listen_conf *lc)
{
    const sg_stream_conf *sc = cx->c->stream;
    for (size_t i = 0; i < sc->nservers; i++) {
        const sg_stream_server_conf *s = sc->servers[i];
        for (size_t j = 0; j < s->nlistens; j++)
            if (sg_sockaddr_eq((const struct sockaddr *)&s->listens[j].addr, (const struct sockaddr *)&lc->addr))
                return sg_cerr(cx, a->pos, "duplicate \"%s\" address and port pair", a->s);
    }
    return true;
}

static bool set_listen(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    if (starts(a->s, "unix:"))
        return sg_cerr(cx, a->pos, "\"unix:\" addresses in \"listen\" are not supported yet");
    sg_listen_conf lc = { .backlog = 511, .pos = n->name.pos };
    if (!sg_conf_listen_addr(cx, a, &lc, -1)) return false;
    for (size_t i = 1; i < n->nargs; i++)
        if (!listen_param(cx, &n->args[i], &lc)) return false;
    if (!listen_unique(cx, a, &lc)) return false;
    sg_stream_server_conf *s = cx->cur->stream_server;
    s->listens = sg_conf_push(&cx->c->arena, s->listens, s->nlistens, sizeof(lc));
    s->listens[s->nlistens++] = lc;
    return true;
}

/* proxy_pass NAME | HOST:PORT: bound by sg_stream_conf_finish() (upstream
 * blocks may come later in the file). */
static bool set_proxy_pass(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    sg_stream_server_conf *s = cx->cur->stream_server;
    if (strchr(a->s, '$'))
        return sg_cerr(cx, a->pos, "variables in \"proxy_pass\" are not supported yet");
    if (starts(a->s, "unix:"))
        return sg_cerr(cx, a->pos, "\"unix:\" addresses in \"proxy_pass\" are not supported yet");
    if (strstr(a->s, "://"))
        return sg_cerr(cx, a->pos, "invalid host in upstream \"%s\"", a->s);
    if (!sg_conf_split_hostport(arg_str(a), &s->pass_host, &s->pass_port) || s->pass_port == 0)
        return sg_cerr(cx, a->pos, "invalid port in upstream \"%s\"", a->s);
    s->pass_host = sg_arena_str(&cx->c->arena, s->pass_host);
    s->pass_pos = a->pos;
    return true;
}

/* ---------------- upstream ---------------- */

static bool set_upstream(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    sg_stream_conf *sc = c->stream;
    sg_stream_upstream *su = sg_arena_alloc(&c->arena, sizeof(*su));
    memset(su, 0, sizeof(*su));
    sg_upstream_conf *u = &su->up;
    u->lb = SG_LB_ROUND_ROBIN;          /* no keepalive pool: a stream connection is one session */
    if (!sg_directives_upstream(cx, n, u, &sc->upstreams, &sc->nupstreams, SG_CTX_STREAM_UPSTREAM))
        return false;
    return sg_conf_check_backup(cx, u);
}

/* hash KEY [consistent] (ngx_stream_upstream_hash_module). */
static bool set_hash(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_upstream *su = (sg_stream_upstream *)cx->ups;   /* stream's blocks embed `up` first */
    if (n->nargs == 2 && strcmp(n->args[1].s, "consistent") != 0)
        return sg_cerr(cx, n->args[1].pos, "invalid parameter \"%s\"", n->args[1].s);
    if (!sg_stream_val_compile(cx->c, arg_str(&n->args[0]), n->args[0].pos, &su->hash_key,
                               cx->err, cx->errlen))
        return false;
    su->up.lb = n->nargs == 2 ? SG_LB_HASH_CONSISTENT : SG_LB_HASH;
    return true;
}

/* ---------------- the table ---------------- */

/* Buffer sizes: checked, no effect (the tunnel reads into the worker's
 * scratch buffer and keeps only what the other side did not take). */
static const sg_cmd_bounds nonzero = { 1, UINT64_MAX };

#define ST SG_CTX_STREAM
#define SS (SG_CTX_STREAM | SG_CTX_STREAM_SERVER)
#define SRV SG_CTX_STREAM_SERVER
#define UPS SG_CTX_STREAM_UPSTREAM
#define PX(f) SG_T_STREAM, 0, offsetof(sg_stream_proxy_conf, f), sizeof(((sg_stream_proxy_conf *)0)->f)
/* no field: checked, remembered per level ("is duplicate"), not inherited */
#define LEVEL(flags) SG_T_STREAM, flags, 0, 0
#define UPSTREAM SG_T_UPS, SG_CF_MULTI, 0, 0

static const sg_cmd cmds[] = {
    { "stream", SG_CTX_MAIN, SG_ARG0 | SG_ARGBLOCK, set_stream, SG_T_MAIN, 0, 0, 0, NULL },  /* main: once */
    { "server", ST, SG_ARG0 | SG_ARGBLOCK, set_server, LEVEL(SG_CF_MULTI), NULL },
    { "upstream", ST, SG_ARG1 | SG_ARGBLOCK, set_upstream, LEVEL(SG_CF_MULTI), NULL },
    { "listen", SRV, SG_ARG1MORE, set_listen, LEVEL(SG_CF_MULTI), NULL },
    { "proxy_pass", SRV, SG_ARG1, set_proxy_pass, LEVEL(0), NULL },
    { "proxy_timeout", SS, SG_ARG1, sg_conf_set_msec, PX(timeout_ms), NULL },
    { "proxy_connect_timeout", SS, SG_ARG1, sg_conf_set_msec, PX(connect_timeout_ms), NULL },
    { "proxy_next_upstream", SS, SG_ARG1, sg_conf_set_flag, PX(next_upstream), NULL },
    { "proxy_next_upstream_tries", SS, SG_ARG1, sg_conf_set_num, PX(next_upstream_tries), NULL },
    { "proxy_next_upstream_timeout", SS, SG_ARG1, sg_conf_set_msec, PX(next_upstream_timeout_ms), NULL },
    { "proxy_half_close", SS, SG_ARG1, sg_conf_set_flag, PX(half_close), NULL },
    { "tcp_nodelay", SS, SG_ARG1, sg_conf_set_flag, PX(tcp_nodelay), NULL },
    { "proxy_buffer_size", SS, SG_ARG1, sg_conf_set_size, LEVEL(0), &nonzero },
    { "preread_buffer_size", SS, SG_ARG1, sg_conf_set_size, LEVEL(0), &nonzero },
    { "preread_timeout", SS, SG_ARG1, sg_conf_set_msec, LEVEL(0), NULL },
    { "variables_hash_bucket_size", ST, SG_ARG1, sg_conf_set_size, LEVEL(0), &nonzero },
    { "variables_hash_max_size", ST, SG_ARG1, sg_conf_set_size, LEVEL(0), &nonzero },
    { "server", UPS, SG_ARG1MORE, sg_conf_set_upstream_server, UPSTREAM, (const void *)(intptr_t)-1 },  /* port required */
    { "least_conn", UPS, SG_ARG0, sg_conf_set_lb, UPSTREAM, (const void *)(intptr_t)SG_LB_LEAST_CONN },
    { "hash", UPS, SG_ARG12, set_hash, UPSTREAM, NULL },
    { "random", UPS, SG_ARG0 | SG_ARG12, sg_conf_set_random, UPSTREAM, NULL },
    { "zone", UPS, SG_ARG12, sg_conf_set_zone, UPSTREAM, NULL },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))
_Static_assert(NCMDS <= SG_STREAM_MAX_CMDS, "raise SG_STREAM_MAX_CMDS");

/* nginx stream directives streamgate does not have yet. */
static const char *const later_exact[] = {
    "ssl_preread", "proxy_protocol", "proxy_protocol_timeout", "access_log", "log_format",
    "error_log", "open_log_file_cache", "resolver", "resolver_timeout",
    "proxy_bind", "proxy_socket_keepalive", "proxy_upload_rate", "proxy_download_rate",
    "proxy_requests", "proxy_responses", "return", "set", "map", "geo", "split_clients",
    "allow", "deny", "ssl", "set_real_ip_from", "pass", "server_name", "server_names_hash_max_size",
    "server_names_hash_bucket_size", "proxy_session_drop", "ntlm", "sticky", "health_check",
    "match", "keyval", "keyval_zone", "mqtt", "limit_conn_zone", "limit_conn", NULL,
};
static const char *const later_prefix[] = {
    "ssl_", "proxy_ssl", "limit_conn_", "geoip", "js_", "ssl_preread", NULL,
};

const sg_cmd_module sg_stream_module = {
    cmds, NCMDS, SG_CTX_STREAM | SG_CTX_STREAM_SERVER | SG_CTX_STREAM_UPSTREAM, later_exact, later_prefix,
};

/* ---------------- after the whole file ---------------- */

static sg_upstream_conf *implicit_upstream(sg_cctx *cx, sg_stream_server_conf *s)
{
    sg_stream_conf *sc = cx->c->stream;
    sg_conf *c = cx->c;
    char name[300];
    snprintf(name, sizeof(name), "%.*s:%d", (int)s->pass_host.n, s->pass_host.p, s->pass_port);
    for (size_t i = 0; i < sc->nupstreams; i++)
        if (sc->upstreams[i]->implicit && strcasecmp(sc->upstreams[i]->name, name) == 0)
            return sc->upstreams[i];
    struct sockaddr_storage *addrs = NULL;
    socklen_t *lens = NULL;
    size_t n = 0;
    if (!sg_conf_resolve(c, s->pass_host, s->pass_port, &addrs, &lens, &n)) {
        sg_cerr(cx, s->pass_pos, "host not found in upstream \"%s\"", name);
        return NULL;
    }
    sg_upstream_conf *u = sg_conf_implicit_upstream(c, name, s->pass_pos, addrs, lens, n);
    sc->upstreams = sg_conf_push(&c->arena, sc->upstreams, sc->nupstreams, sizeof(u));
    sc->upstreams[sc->nupstreams++] = u;
    return u;
}

/* ngx_stream_upstream_add: a name that is an upstream{} takes no port; any
 * other name needs one. */
static bool bind_pass(sg_cctx *cx, sg_stream_server_conf *s)
{
    sg_stream_conf *sc = cx->c->stream;
    for (size_t i = 0; i < sc->nupstreams; i++) {
        sg_upstream_conf *u = sc->upstreams[i];
        if (u->implicit || !sg_str_caseeq(s->pass_host, sg_str_from(u->name))) continue;
        if (s->pass_port >= 0)
            return sg_cerr(cx, s->pass_pos, "upstream \"%s\" may not have port %d", u->name, s->pass_port);
        s->upstream = u;
        if (u->lb == SG_LB_HASH || u->lb == SG_LB_HASH_CONSISTENT)
            s->hash_key = &((sg_stream_upstream *)u)->hash_key;   /* declared ones embed `up` first */
        return true;
    }
    if (s->pass_port < 0)
        return sg_cerr(cx, s->pass_pos, "no port in upstream \"%.*s\"", (int)s->pass_host.n, s->pass_host.p);
    s->upstream = implicit_upstream(cx, s);
    return s->upstream != NULL;
}

static bool is_wildcard(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
    return memcmp(x, &in6addr_any, sizeof(*x)) == 0;
}

/* One port cannot serve both protocols: the same address is refused, and
 * so is a wildcard beside a specific address (which socket a connection
 * lands on would decide its protocol). nginx fails to bind() there. */
static bool check_http_overlap(sg_cctx *cx, const sg_listen_conf *l)
{
    const sg_conf *c = cx->c;
    for (size_t i = 0; i < c->nlistens; i++) {
        const sg_listen_group *g = &c->listens[i];
        if (g->stream_server || g->addr.ss_family != l->addr.ss_family ||
            sg_sockaddr_port((const struct sockaddr *)&g->addr) != sg_sockaddr_port((const struct sockaddr *)&l->addr))
            continue;
        if (sg_sockaddr_eq((const struct sockaddr *)&g->addr, (const struct sockaddr *)&l->addr))
            return sg_cerr(cx, l->pos, "duplicate \"%s\" address and port pair: http listens there too", l->text);
        if (is_wildcard(&g->addr) || is_wildcard(&l->addr))
            return sg_cerr(cx, l->pos, "stream listen \"%s\" overlaps http listen \"%s\"", l->text, g->text);
    }
    return true;
}

static void add_group(sg_conf *c, const sg_listen_conf *l, const sg_stream_server_conf *s)
{
    sg_conf_new_group(c, l)->stream_server = s;
}

bool sg_stream_conf_finish(sg_cctx *cx)
{
    sg_stream_conf *sc = cx->c->stream;
    if (!sc) return true;
    for (size_t i = 0; i < sc->nservers; i++)
        if (!bind_pass(cx, sc->servers[i])) return false;
    for (size_t i = 0; i < sc->nservers; i++)
        for (size_t j = 0; j < sc->servers[i]->nlistens; j++)
            if (!check_http_overlap(cx, &sc->servers[i]->listens[j])) return false;
    for (size_t i = 0; i < sc->nservers; i++)
        for (size_t j = 0; j < sc->servers[i]->nlistens; j++)
            add_group(cx->c, &sc->servers[i]->listens[j], sc->servers[i]);
    return true;
}
