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
#include "conf/balance_conf.h"
#include "conf/limit_conf.h"
#include "conf/rate_conf.h"
#include "conf/ssl_conf.h"
#include "conf/ssl_ctx.h"
#include "conf/health_conf.h"
#include "core/sockaddr.h"
#include "core/syslog.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static sg_str arg_str(const sg_carg *a)
{
    return (sg_str){ a->s, a->n };
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
    p->preread_timeout_ms = 30000;
    p->preread_buffer_size = 16384;
    p->proxy_responses = UINT32_MAX;
    p->ssl_handshake_timeout_ms = 60000;
    p->proxy_protocol_timeout_ms = 30000;
    p->proxy_protocol_version = 1;     /* real client address (issue 10) */
    /* the defaults of nginx's stream ssl and proxy_ssl (as conf/ssl_conf.c's for http) */
    p->ssl.protocols = SG_SSL_TLSv1_2 | SG_SSL_TLSv1_3;
    p->ssl.ciphers.s = "HIGH:!aNULL:!MD5";
    p->ssl.session_cache = SG_SSL_CACHE_NONE;
    p->ssl.session_timeout_ms = 5 * 60 * 1000;
    p->ssl.session_tickets = true;
    p->ssl.ecdh_curve.s = "auto";
    p->proxy_ssl.verify_depth = 1;
    p->proxy_ssl.protocols = SG_SSL_TLSv1_2 | SG_SSL_TLSv1_3;
    p->proxy_ssl.ciphers.s = "DEFAULT";
    p->proxy_ssl.session_reuse = true;
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
    if (s->pass_host.p == NULL && !s->ret) return sg_cerr(cx, s->pos, "no handler for server");
    return true;
}

static bool listen_param(sg_cctx *cx, const sg_carg *a, sg_listen_conf *lc)
{
    static const char *const later[] = {
        "so_keepalive", "rcvbuf", "sndbuf", "fastopen",
        "ipv6only=off", "setfib", "accept_filter", "deferred", NULL,
    };
    const char *p = a->s;
    uint64_t v;
    if (strcmp(p, "reuseport") == 0) {
        lc->reuseport = true;
    } else if (strcmp(p, "ssl") == 0) {
        lc->ssl = true;
    } else if (strcmp(p, "udp") == 0) {
        lc->udp = true;
    } else if (strcmp(p, "proxy_protocol") == 0) {
        lc->proxy_protocol = true;
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
            if (s->listens[j].udp == lc->udp &&
                sg_sockaddr_eq((const struct sockaddr *)&s->listens[j].addr, (const struct sockaddr *)&lc->addr))
                return sg_cerr(cx, a->pos, "duplicate \"%s\" address and port pair", a->s);
    }
    return true;
}

static bool set_listen(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    sg_listen_conf lc = { .backlog = 511, .pos = n->name.pos };
    if (!sg_conf_listen_addr(cx, a, &lc, -1)) return false;
    for (size_t i = 1; i < n->nargs; i++)
        if (!listen_param(cx, &n->args[i], &lc)) return false;
    if (!listen_unique(cx, a, &lc)) return false;
    if (lc.udp && lc.addr.ss_family == AF_UNIX)
        return sg_cerr(cx, a->pos, "\"udp\" on a \"unix:\" address is not supported");
    if (lc.udp && lc.ssl) return sg_cerr(cx, a->pos, "\"ssl\" parameter is incompatible with \"udp\"");
    /* a datagram has no stream to start with a header */
    if (lc.udp && lc.proxy_protocol)
        return sg_cerr(cx, a->pos, "\"proxy_protocol\" parameter is incompatible with \"udp\"");
    sg_stream_server_conf *s = cx->cur->stream_server;
    if (lc.ssl) s->ssl = true;
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
    if (strchr(a->s, '$')) {           /* evaluated per session: an upstream{} name or an address */
        s->pass_val = sg_arena_alloc(&cx->c->arena, sizeof(*s->pass_val));
        if (!sg_stream_val_compile(cx->c, arg_str(a), a->pos, s->pass_val, cx->err, cx->errlen)) return false;
        s->pass_host = sg_arena_str(&cx->c->arena, arg_str(a));
        s->pass_pos = a->pos;
        return true;
    }
    if (starts(a->s, "unix:")) {       /* a unix socket: no port, bound by bind_pass() */
        struct sockaddr_storage ss;
        socklen_t len;
        if (!sg_conf_unix_addr((sg_str){ a->s + 5, a->n - 5 }, &ss, &len))
            return sg_cerr(cx, a->pos, "invalid host in upstream \"%s\"", a->s);
        s->pass_host = sg_arena_str(&cx->c->arena, arg_str(a));
        s->pass_pos = a->pos;
        return true;
    }
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

/* ---------------- stream modules: return, log_format, access_log ---------------- */

/* return VALUE (ngx_stream_return_module): the value is sent and the
 * connection closed. */
static bool set_return(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_server_conf *s = cx->cur->stream_server;
    if (s->pass_host.p) return sg_cerr(cx, n->name.pos, "\"return\" directive is duplicate");
    s->ret = sg_arena_alloc(&cx->c->arena, sizeof(*s->ret));
    return sg_stream_val_compile(cx->c, arg_str(&n->args[0]), n->args[0].pos, s->ret, cx->err, cx->errlen);
}

static const sg_stream_log_format *find_format(const sg_stream_conf *sc, const char *name)
{
    for (size_t i = 0; i < sc->nlog_formats; i++)
        if (sg_str_eq_lit(sc->log_formats[i]->name, name)) return sc->log_formats[i];
    return NULL;
}

static bool add_format(sg_cctx *cx, const char *name, sg_str text, sg_conf_pos pos, bool json, bool none)
{
    sg_stream_conf *sc = cx->c->stream;
    sg_stream_log_format *f = sg_arena_alloc(&cx->c->arena, sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->name = sg_arena_str(&cx->c->arena, sg_str_from(name));
    f->escape_json = json;
    f->escape_none = none;
    if (!sg_stream_val_compile(cx->c, text, pos, &f->val, cx->err, cx->errlen)) return false;
    sc->log_formats = sg_conf_push(&cx->c->arena, sc->log_formats, sc->nlog_formats, sizeof(f));
    sc->log_formats[sc->nlog_formats++] = f;
    return true;
}

/* log_format NAME [escape=default|json|none] STRING ... */
static bool set_log_format(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_conf *sc = cx->c->stream;
    if (find_format(sc, n->args[0].s))
        return sg_cerr(cx, n->args[0].pos, "duplicate \"log_format\" name \"%s\"", n->args[0].s);
    size_t i = 1;
    bool json = false, none = false;
    if (n->nargs > 2 && starts(n->args[1].s, "escape=")) {
        const char *e = n->args[1].s + 7;
        if (strcmp(e, "json") == 0) json = true;
        else if (strcmp(e, "none") == 0) none = true;
        else if (strcmp(e, "default") != 0)
            return sg_cerr(cx, n->args[1].pos, "unknown log format escaping \"%s\"", e);
        i = 2;
    }
    size_t len = 0;
    for (size_t k = i; k < n->nargs; k++) len += n->args[k].n;
    char *text = sg_arena_alloc(&cx->c->arena, len + 1);
    len = 0;
    for (size_t k = i; k < n->nargs; k++) {
        memcpy(text + len, n->args[k].s, n->args[k].n);
        len += n->args[k].n;
    }
    return add_format(cx, n->args[0].s, (sg_str){ text, len }, n->args[i].pos, json, none);
}

/* access_log off | PATH [FORMAT [buffer=SIZE] [gzip[=LEVEL]] [flush=TIME] [if=COND]]:
 * lines are written when the session ends; a level with any access_log
 * replaces the inherited list. FORMAT is required in stream (nginx). PATH
 * may be syslog:... or have variables (opened for each line). */
static bool set_access_log(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_proxy_conf *p = base;
    if (cx->first) {
        p->logs = NULL;
        p->nlogs = 0;
        p->logs_off = false;
    }
    if (strcmp(n->args[0].s, "off") == 0) {
        if (n->nargs > 1) return sg_cerr(cx, n->args[1].pos, "invalid parameter \"%s\"", n->args[1].s);
        p->logs_off = true;
        return true;
    }
    if (n->nargs < 2) return sg_cerr(cx, n->name.pos, "log format is not specified");
    sg_stream_log l = { 0 };
    l.format = find_format(cx->c->stream, n->args[1].s);
    if (!l.format) return sg_cerr(cx, n->args[1].pos, "unknown log format \"%s\"", n->args[1].s);
    for (size_t i = 2; i < n->nargs; i++) {
        const sg_carg *a = &n->args[i];
        uint64_t v;
        if (starts(a->s, "buffer=")) {
            if (!sg_conf_parse_size(a->s + 7, &v) || v == 0 || v > (1u << 30))
                return sg_cerr(cx, a->pos, "invalid buffer size \"%s\"", a->s + 7);
            l.buffer_size = (size_t)v;
        } else if (starts(a->s, "flush=")) {
            if (!sg_conf_parse_time_ms(a->s + 6, &v) || v == 0 || v > UINT32_MAX)
                return sg_cerr(cx, a->pos, "invalid flush time \"%s\"", a->s + 6);
            l.flush_ms = (uint32_t)v;
        } else if (strcmp(a->s, "gzip") == 0) {
            l.gzip = 1;
        } else if (starts(a->s, "gzip=")) {
            if (a->s[5] < '1' || a->s[5] > '9' || a->s[6])
                return sg_cerr(cx, a->pos, "invalid compression level \"%s\"", a->s + 5);
            l.gzip = a->s[5] - '0';
        } else if (starts(a->s, "if=")) {
            l.has_cond = true;
            if (!sg_stream_val_compile(cx->c, (sg_str){ a->s + 3, a->n - 3 }, a->pos, &l.cond, cx->err, cx->errlen))
                return false;
        } else {
            return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
        }
    }
    const char *path = n->args[0].s;
    if (starts(path, "syslog:")) {
        char err[256];
        if (!(l.syslog = sg_syslog_get(path + 7, err, sizeof(err)))) return sg_cerr(cx, n->args[0].pos, "%s", err);
        l.buffer_size = 0, l.gzip = 0, l.flush_ms = 0;   /* nginx: each line is one message */
    } else {
        if (l.flush_ms && !l.buffer_size && !l.gzip)
            return sg_cerr(cx, n->args[0].pos, "no buffer is defined for access_log \"%s\"", path);
        if (l.gzip && !l.buffer_size) l.buffer_size = 64 * 1024;   /* nginx: gzip implies a 64k buffer */
        l.path = sg_conf_full_path(cx->c, path);
        if (strchr(path, '$')) {           /* opened for each line, as nginx without open_log_file_cache */
            l.var_path = true;
            if (!sg_stream_val_compile(cx->c, sg_str_from(l.path), n->args[0].pos, &l.path_value, cx->err, cx->errlen))
                return false;
            l.path = NULL;
        }
    }
    p->logs = sg_conf_push(&cx->c->arena, p->logs, p->nlogs, sizeof(l));
    p->logs[p->nlogs++] = l;
    return true;
}

/* ---------------- stream modules: TLS ---------------- */

/* ssl_alpn PROTOCOL ...: kept in ALPN's wire format for OpenSSL. */
static bool set_alpn(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_proxy_conf *p = base;
    size_t len = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        if (n->args[i].n == 0 || n->args[i].n > 255)
            return sg_cerr(cx, n->args[i].pos, "invalid value \"%s\"", n->args[i].s);
        len += 1 + n->args[i].n;
    }
    p->alpn = sg_arena_alloc(&cx->c->arena, len);
    p->alpn_len = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        p->alpn[p->alpn_len++] = (unsigned char)n->args[i].n;
        memcpy(p->alpn + p->alpn_len, n->args[i].s, n->args[i].n);
        p->alpn_len += n->args[i].n;
    }
    return true;
}

/* proxy_protocol_version 1 | 2 (a streamgate extension; nginx sends v1
 * only): the PROXY header `proxy_protocol on` writes to the upstream. */
static bool set_proxy_protocol_version(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_proxy_conf *p = base;
    const char *v = n->args[0].s;
    if (strcmp(v, "1") != 0 && strcmp(v, "2") != 0)
        return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"proxy_protocol_version\" (1 or 2)", v);
    p->proxy_protocol_version = v[0] - '0';
    return true;
}

/* proxy_ssl_name VALUE (stream variables). */
static bool set_proxy_ssl_name(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_proxy_conf *p = base;
    sg_stream_val *v = sg_arena_alloc(&cx->c->arena, sizeof(*v));
    if (!sg_stream_val_compile(cx->c, arg_str(&n->args[0]), n->args[0].pos, v, cx->err, cx->errlen)) return false;
    p->proxy_ssl_name = v;
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
/* a run of adjacent fields, a..b, inherited together */
#define PXR(flags, a, b) SG_T_STREAM, flags, offsetof(sg_stream_proxy_conf, a), \
    offsetof(sg_stream_proxy_conf, b) + sizeof(((sg_stream_proxy_conf *)0)->b) - offsetof(sg_stream_proxy_conf, a)
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
    { "preread_buffer_size", SS, SG_ARG1, sg_conf_set_size, PX(preread_buffer_size), &nonzero },
    { "preread_timeout", SS, SG_ARG1, sg_conf_set_msec, PX(preread_timeout_ms), NULL },
    { "variables_hash_bucket_size", ST, SG_ARG1, sg_conf_set_size, LEVEL(0), &nonzero },
    { "variables_hash_max_size", ST, SG_ARG1, sg_conf_set_size, LEVEL(0), &nonzero },
    { "server", UPS, SG_ARG1MORE, sg_conf_set_upstream_server, UPSTREAM, (const void *)(intptr_t)-1 },  /* port required */
    { "least_conn", UPS, SG_ARG0, sg_conf_set_lb, UPSTREAM, (const void *)(intptr_t)SG_LB_LEAST_CONN },
    { "hash", UPS, SG_ARG12, set_hash, UPSTREAM, NULL },
    { "random", UPS, SG_ARG0 | SG_ARG12, sg_conf_set_random, UPSTREAM, NULL },
    { "zone", UPS, SG_ARG12, sg_conf_set_zone, UPSTREAM, NULL },
    /* stream modules: return, map, log_format, access_log, zone */
    { "proxy_responses", SS, SG_ARG1, sg_conf_set_num, PX(proxy_responses), NULL },
    { "set", SRV, SG_ARG2, sg_stream_set_set, LEVEL(SG_CF_MULTI), NULL },
    { "geo", ST, SG_ARG12 | SG_ARGBLOCK, sg_stream_set_geo, LEVEL(SG_CF_MULTI), NULL },
    { "split_clients", ST, SG_ARG2 | SG_ARGBLOCK, sg_stream_set_split_clients, LEVEL(SG_CF_MULTI), NULL },
    { "proxy_requests", SS, SG_ARG1, sg_conf_set_num, PX(proxy_requests), NULL },
    { "return", SRV, SG_ARG1, set_return, LEVEL(0), NULL },
    { "map", ST, SG_ARG2 | SG_ARGBLOCK, sg_stream_set_map, LEVEL(SG_CF_MULTI), NULL },
    { "log_format", ST, SG_ARG2MORE, set_log_format, LEVEL(SG_CF_MULTI), NULL },
    { "access_log", SS, SG_ARG1MORE, set_access_log, SG_T_STREAM, SG_CF_MULTI, offsetof(sg_stream_proxy_conf, logs),
      offsetof(sg_stream_proxy_conf, logs_off) + sizeof(bool) - offsetof(sg_stream_proxy_conf, logs), NULL },
    /* stream modules: TLS termination (listen ... ssl), TLS toward the upstream, ssl_preread */
    { "ssl_certificate", SS, SG_ARG1, sg_ssl_set_certificate, PXR(SG_CF_MULTI, ssl.certs, ssl.ncerts), NULL },
    { "ssl_certificate_key", SS, SG_ARG1, sg_ssl_set_certificate, PXR(SG_CF_MULTI, ssl.keys, ssl.nkeys), NULL },
    { "ssl_protocols", SS, SG_ARG1MORE, sg_ssl_set_protocols, PX(ssl.protocols), NULL },
    { "ssl_ciphers", SS, SG_ARG1, sg_ssl_set_string, PX(ssl.ciphers), NULL },
    { "ssl_prefer_server_ciphers", SS, SG_ARG1, sg_conf_set_flag, PX(ssl.prefer_server_ciphers), NULL },
    { "ssl_session_cache", SS, SG_ARG1MORE, sg_ssl_set_session_cache,
      PXR(0, ssl.session_cache, ssl.session_cache_size), NULL },
    { "ssl_session_timeout", SS, SG_ARG1, sg_conf_set_msec, PX(ssl.session_timeout_ms), NULL },
    { "ssl_session_tickets", SS, SG_ARG1, sg_conf_set_flag, PX(ssl.session_tickets), NULL },
    { "ssl_dhparam", SS, SG_ARG1, sg_ssl_set_file, PX(ssl.dhparam), NULL },
    { "ssl_ecdh_curve", SS, SG_ARG1, sg_ssl_set_string, PX(ssl.ecdh_curve), NULL },
    { "ssl_handshake_timeout", SS, SG_ARG1, sg_conf_set_msec, PX(ssl_handshake_timeout_ms), NULL },
    { "ssl_alpn", SS, SG_ARG1MORE, set_alpn, PXR(0, alpn, alpn_len), NULL },
    { "ssl_preread", SS, SG_ARG1, sg_conf_set_flag, PX(ssl_preread), NULL },
    { "proxy_ssl", SS, SG_ARG1, sg_conf_set_flag, PX(proxy_ssl_on), NULL },
    { "proxy_ssl_verify", SS, SG_ARG1, sg_conf_set_flag, PX(proxy_ssl.verify), NULL },
    { "proxy_ssl_verify_depth", SS, SG_ARG1, sg_conf_set_num, PX(proxy_ssl.verify_depth), NULL },
    { "proxy_ssl_trusted_certificate", SS, SG_ARG1, sg_ssl_set_file, PX(proxy_ssl.trusted_certificate), NULL },
    { "proxy_ssl_server_name", SS, SG_ARG1, sg_conf_set_flag, PX(proxy_ssl.server_name), NULL },
    { "proxy_ssl_name", SS, SG_ARG1, set_proxy_ssl_name, PX(proxy_ssl_name), NULL },
    { "proxy_ssl_certificate", SS, SG_ARG1, sg_ssl_set_file, PX(proxy_ssl.certificate), NULL },
    { "proxy_ssl_certificate_key", SS, SG_ARG1, sg_ssl_set_file, PX(proxy_ssl.certificate_key), NULL },
    { "proxy_ssl_protocols", SS, SG_ARG1MORE, sg_ssl_set_protocols, PX(proxy_ssl.protocols), NULL },
    { "proxy_ssl_ciphers", SS, SG_ARG1, sg_ssl_set_string, PX(proxy_ssl.ciphers), NULL },
    { "proxy_ssl_session_reuse", SS, SG_ARG1, sg_conf_set_flag, PX(proxy_ssl.session_reuse), NULL },
    /* quick wins (issue 9) */
    { "proxy_protocol", SS, SG_ARG1, sg_conf_set_flag, PX(proxy_protocol), NULL },
    { "proxy_protocol_timeout", SS, SG_ARG1, sg_conf_set_msec, PX(proxy_protocol_timeout_ms), NULL },
    /* real client address (issue 10) */
    { "proxy_protocol_version", SS, SG_ARG1, set_proxy_protocol_version, PX(proxy_protocol_version), NULL },
    /* access (issue 10): ngx_stream_access_module, ngx_stream_realip_module */
    { "allow", SS, SG_ARG1, sg_conf_set_access, PXR(SG_CF_MULTI, access_rules, naccess_rules), NULL },
    { "deny", SS, SG_ARG1, sg_conf_set_access, PXR(SG_CF_MULTI, access_rules, naccess_rules), NULL },
    { "set_real_ip_from", SS, SG_ARG1, sg_conf_set_realip_from, PXR(SG_CF_MULTI, realip_from, nrealip_from), NULL },
    /* limits (issue 10: limit_conn; conf/limit_conf.c, proxy/limit.c) */
    { "limit_conn_zone", ST, SG_ARG2, sg_limit_set_stream_conn_zone, SG_T_NONE, SG_CF_MULTI, 0, 0, NULL },
    { "limit_conn", SS, SG_ARG2, sg_limit_set_stream_conn, PXR(SG_CF_MULTI, limit_conns, nlimit_conns), NULL },
    { "limit_conn_log_level", SS, SG_ARG1, sg_limit_set_log_level, PX(limit_conn_log_level), NULL },
    { "limit_conn_dry_run", SS, SG_ARG1, sg_conf_set_flag, PX(limit_conn_dry_run), NULL },
    /* balancers (issue 11, area: balance; conf/balance_conf.c) */
    { "least_time", UPS, SG_ARG12, sg_balance_set_least_time, UPSTREAM, (const void *)(intptr_t)1 },
    /* rate (issue 10): per-session bandwidth limits (proxy/tunnel.c) */
    { "proxy_upload_rate", SS, SG_ARG1, sg_rate_set_stream, PX(upload_rate), NULL },
    { "proxy_download_rate", SS, SG_ARG1, sg_rate_set_stream, PX(download_rate), NULL },
    /* health (issue 11): active health checks (conf/health_conf.c, upstream/health.c) */
    { "health_check", SRV, SG_ARG0 | SG_ARG1MORE, sg_health_set_stream_check, LEVEL(SG_CF_MULTI), NULL },
    { "match", ST, SG_ARG1 | SG_ARGBLOCK, sg_health_set_stream_match, LEVEL(SG_CF_MULTI), NULL },
    /* dns: resolver for upstreams' `resolve` servers (upstream/resolve.c): the
     * stream{} level's (kept in sg_conf) or an upstream's own */
    { "resolver", SS, SG_ARG1MORE, sg_conf_set_resolver, SG_T_NONE, 0, 0, 0, NULL },
    { "resolver_timeout", SS, SG_ARG1, sg_conf_set_resolver_timeout, SG_T_NONE, 0, 0, 0, NULL },
    { "resolver", UPS, SG_ARG1MORE, sg_conf_set_resolver, SG_T_UPS, 0, offsetof(sg_upstream_conf, dns_resolver),
      sizeof(((sg_upstream_conf *)0)->dns_resolver), NULL },
    { "resolver_timeout", UPS, SG_ARG1, sg_conf_set_resolver_timeout, SG_T_UPS, 0,
      offsetof(sg_upstream_conf, dns_resolver_timeout_ms), sizeof(((sg_upstream_conf *)0)->dns_resolver_timeout_ms), NULL },
    /* log writers (issue 12): error_log of stream{} and its servers (may repeat) */
    { "error_log", SS, SG_ARG12, sg_conf_set_error_log, PXR(SG_CF_MULTI, error_log_path, error_log_level), NULL },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))
_Static_assert(NCMDS <= SG_STREAM_MAX_CMDS, "raise SG_STREAM_MAX_CMDS");

/* nginx stream directives streamgate does not have yet. */
static const char *const later_exact[] = {
    "ssl_preread", "access_log", "log_format",
    "open_log_file_cache", "random",
    "proxy_bind", "proxy_socket_keepalive",

    "ssl", "pass", "server_name", "server_names_hash_max_size",
    "server_names_hash_bucket_size", "proxy_session_drop", "ntlm", "sticky",
    "keyval", "keyval_zone", "mqtt", NULL,
};
static const char *const later_prefix[] = {
    "ssl_", "proxy_ssl", "geoip", "js_", NULL,
};

const sg_cmd_module sg_stream_module = {
    cmds, NCMDS, SG_CTX_STREAM | SG_CTX_STREAM_SERVER | SG_CTX_STREAM_UPSTREAM, later_exact, later_prefix,
};

/* ---------------- after the whole file ---------------- */

static bool pass_is_unix(sg_str h)
{
    return h.n >= 5 && memcmp(h.p, "unix:", 5) == 0;
}

static sg_upstream_conf *implicit_upstream(sg_cctx *cx, sg_stream_server_conf *s)
{
    sg_stream_conf *sc = cx->c->stream;
    sg_conf *c = cx->c;
    char name[300];
    bool unix_sock = pass_is_unix(s->pass_host);
    if (unix_sock) snprintf(name, sizeof(name), "%.*s", (int)s->pass_host.n, s->pass_host.p);
    else snprintf(name, sizeof(name), "%.*s:%d", (int)s->pass_host.n, s->pass_host.p, s->pass_port);
    for (size_t i = 0; i < sc->nupstreams; i++)
        if (sc->upstreams[i]->implicit && strcasecmp(sc->upstreams[i]->name, name) == 0)
            return sc->upstreams[i];
    struct sockaddr_storage *addrs = NULL;
    socklen_t *lens = NULL;
    size_t n = 0;
    if (unix_sock) {                   /* "unix:/path", checked by set_proxy_pass() */
        addrs = sg_arena_alloc(&c->arena, sizeof(*addrs));
        lens = sg_arena_alloc(&c->arena, sizeof(*lens));
        sg_conf_unix_addr((sg_str){ s->pass_host.p + 5, s->pass_host.n - 5 }, addrs, lens);
        n = 1;
    } else if (!sg_conf_resolve(c, s->pass_host, s->pass_port, &addrs, &lens, &n)) {
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
    if (s->ret || s->pass_val) return true;   /* return, or a target chosen per session */
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
    if (s->pass_port < 0 && !pass_is_unix(s->pass_host))
        return sg_cerr(cx, s->pass_pos, "no port in upstream \"%.*s\"", (int)s->pass_host.n, s->pass_host.p);
    s->upstream = implicit_upstream(cx, s);
    return s->upstream != NULL;
}

static bool is_wildcard(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_UNIX) return false;
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
    if (l->udp) return true;           /* http is TCP only */
    for (size_t i = 0; i < c->nlistens; i++) {
        const sg_listen_group *g = &c->listens[i];
        if (g->stream_server || g->udp || g->addr.ss_family != l->addr.ss_family ||
            sg_sockaddr_port((const struct sockaddr *)&g->addr) != sg_sockaddr_port((const struct sockaddr *)&l->addr))
            continue;
        if (sg_sockaddr_eq((const struct sockaddr *)&g->addr, (const struct sockaddr *)&l->addr))
            return sg_cerr(cx, l->pos, "duplicate \"%s\" address and port pair: http listens there too", l->text);
        if (is_wildcard(&g->addr) || is_wildcard(&l->addr))
            return sg_cerr(cx, l->pos, "stream listen \"%s\" overlaps http listen \"%s\"", l->text, g->text);
    }
    return true;
}

static void ctx_free(void *ctx)
{
    sg_ssl_ctx_free(ctx);
}

/* listen ... ssl: the server's context (freed with the generation);
 * proxy_ssl on: its client context (conf/ssl_conf.c shares and frees it). */
static bool server_tls(sg_cctx *cx, sg_stream_server_conf *s, const unsigned char keys[80])
{
    sg_stream_proxy_conf *p = &s->proxy;
    if (s->ssl) {
        if (p->ssl.ncerts == 0)
            return sg_cerr(cx, s->pos, "no \"ssl_certificate\" is defined for server in stream");
        if (p->ssl.nkeys < p->ssl.ncerts)
            return sg_cerr(cx, p->ssl.certs[p->ssl.nkeys].pos,
                           "no \"ssl_certificate_key\" is defined for certificate \"%s\"", p->ssl.certs[p->ssl.nkeys].s);
        char msg[1024];
        sg_conf_pos where = s->pos;
        p->ssl.ctx = sg_ssl_server_ctx_new(&p->ssl, keys, msg, sizeof(msg), &where);
        if (!p->ssl.ctx) return sg_cerr(cx, where, "%s", msg);
        sg_conf_on_free(cx->c, ctx_free, p->ssl.ctx);
    }
    if (p->proxy_ssl_on && !s->ret &&
        !sg_ssl_upstream_ctx(cx->c, &p->proxy_ssl, false, s->pass_pos, cx->err, cx->errlen))
        return false;
    return true;
}

static void add_group(sg_conf *c, const sg_listen_conf *l, const sg_stream_server_conf *s)
{
    sg_listen_group *g = sg_conf_new_group(c, l);
    g->stream_server = s;
    g->ssl = l->ssl;                   /* the session does the handshake (proxy/stream_proxy.c) */
    g->udp = l->udp;
    g->proxy_protocol = l->proxy_protocol;   /* the acceptor reads the header (server/proxy_header.c) */
}

bool sg_stream_conf_finish(sg_cctx *cx)
{
    sg_stream_conf *sc = cx->c->stream;
    if (!sc) return true;
    if (!sg_stream_vars_finish(cx)) return false;
    for (size_t i = 0; i < sc->nservers; i++)
        if (!bind_pass(cx, sc->servers[i])) return false;
    unsigned char keys[80];            /* session ticket keys: random per generation */
    if (getrandom(keys, sizeof(keys), 0) != (ssize_t)sizeof(keys))
        return sg_cerr(cx, (sg_conf_pos){ cx->c->file, 0, 0 }, "getrandom() failed");
    for (size_t i = 0; i < sc->nservers; i++)
        if (!server_tls(cx, sc->servers[i], keys)) return false;
    for (size_t i = 0; i < sc->nservers; i++)
        for (size_t j = 0; j < sc->servers[i]->nlistens; j++)
            if (!check_http_overlap(cx, &sc->servers[i]->listens[j])) return false;
    for (size_t i = 0; i < sc->nservers; i++)
        for (size_t j = 0; j < sc->servers[i]->nlistens; j++)
            add_group(cx->c, &sc->servers[i]->listens[j], sc->servers[i]);
    return true;
}
