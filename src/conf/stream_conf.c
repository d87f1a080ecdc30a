/* The stream{} directive table and setters (see stream_conf.h).
 *
 * The table has the shape of the main one (name, contexts, argument
 * counts, setter, field) but its own contexts: stream, server, upstream.
 * Values of ngx_stream_proxy_module live in sg_stream_proxy_conf at
 * stream{} and server{} level; a server inherits every field it did not
 * set, so a new inheritable directive is one table line. Messages are the
 * main table's: "unknown directive", "is not allowed here" (also for http
 * and main directives written inside stream{}), "is not supported yet". */
#include "conf/stream_conf.h"
#include "conf/directives.h"
#include "net/sock.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    SC_STREAM = 1u << 0,
    SC_SERVER = 1u << 1,
    SC_UPS = 1u << 2,
};
#define SC_SS (SC_STREAM | SC_SERVER)

typedef struct sstate sstate;
typedef struct scmd scmd;

struct scmd {
    const char *name;
    uint32_t ctx;                /* SC_* mask */
    uint32_t args;               /* SG_ARG* mask (directives.h) */
    bool (*set)(sstate *st, const sg_cnode *n, const scmd *cmd);
    size_t offset, size;         /* field of sg_stream_proxy_conf; size 0: none (not inherited) */
    uint32_t flags;              /* SG_CF_MULTI */
};

struct sstate {
    sg_cctx *cx;
    sg_stream_conf *sc;
    uint32_t ctx;
    sg_stream_server_conf *srv;  /* current server{} */
    sg_stream_upstream *ups;     /* current upstream{} */
    unsigned char ups_set[8];
};

static bool run_block(sstate *st, const sg_cnode *blk, uint32_t ctx);

/* ---------------- helpers ---------------- */

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static sg_str arg_str(const sg_carg *a)
{
    return (sg_str){ a->s, a->n };
}

static bool bad_value(sg_cctx *cx, const sg_cnode *n, const sg_carg *a)
{
    return sg_cerr(cx, a->pos, "invalid value \"%s\" in \"%s\" directive", a->s, n->name.s);
}

/* The field a proxy-value command fills at the current level. */
static void *proxy_field(sstate *st, const scmd *cmd)
{
    sg_stream_proxy_conf *pc = st->srv ? &st->srv->proxy : &st->sc->proxy;
    return (char *)pc + cmd->offset;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    return sg_str_to_u64(sg_str_from(s), out) && *out <= max;
}

/* ---------------- generic setters ---------------- */

static bool set_msec(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    uint64_t v;
    if (!sg_conf_parse_time_ms(n->args[0].s, &v) || v >= SG_UNSET_MS)
        return bad_value(st->cx, n, &n->args[0]);
    if (cmd->size) *(uint32_t *)proxy_field(st, cmd) = (uint32_t)v;
    return true;
}

static bool set_flag(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    const char *v = n->args[0].s;
    if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
        return sg_cerr(st->cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive, "
                       "it must be \"on\" or \"off\"", v, n->name.s);
    if (cmd->size) *(bool *)proxy_field(st, cmd) = strcmp(v, "on") == 0;
    return true;
}

static bool set_num(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    uint64_t v;
    if (!parse_u64(n->args[0].s, UINT32_MAX - 1, &v)) return bad_value(st->cx, n, &n->args[0]);
    if (cmd->size) *(uint32_t *)proxy_field(st, cmd) = (uint32_t)v;
    return true;
}

/* Buffer sizes: checked, no effect (the tunnel reads into the worker's
 * scratch buffer and keeps only what the other side did not take). */
static bool set_size_noop(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    uint64_t v;
    if (!sg_conf_parse_size(n->args[0].s, &v) || v == 0) return bad_value(st->cx, n, &n->args[0]);
    return true;
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

static size_t put(char *buf, size_t n, const void *p, size_t len)
{
    if (len > SG_STREAM_VAL_MAX - n) len = SG_STREAM_VAL_MAX - n;
    memcpy(buf + n, p, len);
    return n + len;
}

static size_t put_var(char *buf, size_t n, int var, const struct sockaddr *client,
                      const struct sockaddr *local)
{
    char tmp[64];
    switch (var) {
    case SG_SVAR_REMOTE_ADDR:
    case SG_SVAR_SERVER_ADDR:
        sg_sockaddr_host(var == SG_SVAR_REMOTE_ADDR ? client : local, tmp, sizeof(tmp));
        return put(buf, n, tmp, strlen(tmp));
    case SG_SVAR_REMOTE_PORT:
    case SG_SVAR_SERVER_PORT:
        snprintf(tmp, sizeof(tmp), "%d", sg_sockaddr_port(var == SG_SVAR_REMOTE_PORT ? client : local));
        return put(buf, n, tmp, strlen(tmp));
    case SG_SVAR_BINARY_REMOTE_ADDR:
        if (client->sa_family == AF_INET)
            return put(buf, n, &((const struct sockaddr_in *)client)->sin_addr, 4);
        if (client->sa_family == AF_INET6)
            return put(buf, n, &((const struct sockaddr_in6 *)client)->sin6_addr, 16);
        return n;
    case SG_SVAR_PROTOCOL:
        return put(buf, n, "TCP", 3);
    default:
        return n;
    }
}

size_t sg_stream_val_eval(const sg_stream_val *v, const struct sockaddr *client,
                          const struct sockaddr *local, char *buf)
{
    size_t n = 0;
    for (size_t i = 0; i < v->nparts; i++) {
        const sg_stream_val_part *p = &v->parts[i];
        n = p->var < 0 ? put(buf, n, p->lit.p, p->lit.n) : put_var(buf, n, p->var, client, local);
    }
    return n;
}

/* ---------------- server, listen, proxy_pass ---------------- */

static bool set_server(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    sg_conf *c = st->cx->c;
    sg_stream_server_conf *s = sg_arena_alloc(&c->arena, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->pos = n->name.pos;
    s->pass_port = -1;
    st->sc->servers = sg_conf_push(&c->arena, st->sc->servers, st->sc->nservers, sizeof(s));
    st->sc->servers[st->sc->nservers++] = s;
    st->srv = s;
    bool ok = run_block(st, n, SC_SERVER);
    st->srv = NULL;
    if (!ok) return false;
    if (s->nlistens == 0) return sg_cerr(st->cx, s->pos, "no \"listen\" is defined for server");
    if (s->pass_host.p == NULL) return sg_cerr(st->cx, s->pos, "no handler for server");
    return true;
}

static bool listen_param(sstate *st, const sg_carg *a, sg_listen_conf *lc)
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
        if (!parse_u64(p + 8, INT32_MAX, &v) || v == 0)
            return sg_cerr(st->cx, a->pos, "invalid backlog \"%s\"", p);
        lc->backlog = (int)v;
    } else {
        size_t keylen = strcspn(p, "=");
        for (int i = 0; later[i]; i++)
            if (strncmp(p, later[i], strlen(later[i])) == 0 && (strchr(later[i], '=') || keylen == strlen(later[i])))
                return sg_cerr(st->cx, a->pos, "\"%.*s\" parameter of \"listen\" is not supported yet",
                               (int)keylen, p);
        return sg_cerr(st->cx, a->pos, "the invalid \"%s\" parameter", p);
    }
    return true;
}

/* ngx_stream_core_listen: one address may be listened on by one stream server only. */
static bool listen_unique(sstate *st, const sg_carg *a, const sg_listen_conf *lc)
{
    for (size_t i = 0; i < st->sc->nservers; i++) {
        const sg_stream_server_conf *s = st->sc->servers[i];
        for (size_t j = 0; j < s->nlistens; j++)
            if (sg_sockaddr_eq((const struct sockaddr *)&s->listens[j].addr, (const struct sockaddr *)&lc->addr))
                return sg_cerr(st->cx, a->pos, "duplicate \"%s\" address and port pair", a->s);
    }
    return true;
}

static bool set_listen(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    const sg_carg *a = &n->args[0];
    if (starts(a->s, "unix:"))
        return sg_cerr(st->cx, a->pos, "\"unix:\" addresses in \"listen\" are not supported yet");
    sg_listen_conf lc = { .backlog = 511, .pos = n->name.pos };
    if (!sg_conf_listen_addr(st->cx, a, &lc, -1)) return false;
    for (size_t i = 1; i < n->nargs; i++)
        if (!listen_param(st, &n->args[i], &lc)) return false;
    if (!listen_unique(st, a, &lc)) return false;
    sg_stream_server_conf *s = st->srv;
    s->listens = sg_conf_push(&st->cx->c->arena, s->listens, s->nlistens, sizeof(lc));
    s->listens[s->nlistens++] = lc;
    return true;
}

/* proxy_pass NAME | HOST:PORT: bound by sg_stream_conf_finish() (upstream
 * blocks may come later in the file). */
static bool set_proxy_pass(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    const sg_carg *a = &n->args[0];
    sg_stream_server_conf *s = st->srv;
    if (strchr(a->s, '$'))
        return sg_cerr(st->cx, a->pos, "variables in \"proxy_pass\" are not supported yet");
    if (starts(a->s, "unix:"))
        return sg_cerr(st->cx, a->pos, "\"unix:\" addresses in \"proxy_pass\" are not supported yet");
    if (strstr(a->s, "://"))
        return sg_cerr(st->cx, a->pos, "invalid host in upstream \"%s\"", a->s);
    if (!sg_conf_split_hostport(arg_str(a), &s->pass_host, &s->pass_port) || s->pass_port == 0)
        return sg_cerr(st->cx, a->pos, "invalid port in upstream \"%s\"", a->s);
    s->pass_host = sg_arena_str(&st->cx->c->arena, s->pass_host);
    s->pass_pos = a->pos;
    return true;
}

/* ---------------- upstream ---------------- */

static bool set_upstream(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    sg_conf *c = st->cx->c;
    sg_stream_conf *sc = st->sc;
    for (size_t i = 0; i < sc->nupstreams; i++)
        if (!sc->upstreams[i]->implicit && strcasecmp(sc->upstreams[i]->name, n->args[0].s) == 0)
            return sg_cerr(st->cx, n->args[0].pos, "duplicate upstream \"%s\"", n->args[0].s);
    sg_stream_upstream *su = sg_arena_alloc(&c->arena, sizeof(*su));
    memset(su, 0, sizeof(*su));
    sg_upstream_conf *u = &su->up;
    u->name = n->args[0].s;
    u->pos = n->name.pos;
    u->lb = SG_LB_ROUND_ROBIN;          /* no keepalive pool: a stream connection is one session */
    sc->upstreams = sg_conf_push(&c->arena, sc->upstreams, sc->nupstreams, sizeof(u));
    sc->upstreams[sc->nupstreams++] = u;
    st->ups = su;
    memset(st->ups_set, 0, sizeof(st->ups_set));
    bool ok = run_block(st, n, SC_UPS);
    st->ups = NULL;
    if (!ok) return false;
    if (u->nservers == 0) return sg_cerr(st->cx, u->pos, "no servers are inside upstream");
    bool hash = u->lb == SG_LB_HASH || u->lb == SG_LB_HASH_CONSISTENT;
    for (size_t i = 0; hash && i < u->nservers; i++)
        if (u->servers[i].backup)
            return sg_cerr(st->cx, u->pos, "balancing method does not support parameter \"backup\"");
    return true;
}

/* server ADDR:PORT [params]: the port is required in stream (nginx). */
static bool set_ups_server(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    return sg_conf_upstream_server(st->cx, n, &st->ups->up, -1);
}

static bool set_least_conn(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    st->ups->up.lb = SG_LB_LEAST_CONN;   /* nginx: a later method wins */
    return true;
}

/* hash KEY [consistent] (ngx_stream_upstream_hash_module). */
static bool set_hash(sstate *st, const sg_cnode *n, const scmd *cmd)
{
    sg_stream_upstream *su = st->ups;
    if (n->nargs == 2 && strcmp(n->args[1].s, "consistent") != 0)
        return sg_cerr(st->cx, n->args[1].pos, "invalid parameter \"%s\"", n->args[1].s);
    if (!sg_stream_val_compile(st->cx->c, arg_str(&n->args[0]), n->args[0].pos, &su->hash_key,
                               st->cx->err, st->cx->errlen))
        return false;
    su->up.lb = n->nargs == 2 ? SG_LB_HASH_CONSISTENT : SG_LB_HASH;
    return true;
}

/* ---------------- the table ---------------- */

#define PX(f) offsetof(sg_stream_proxy_conf, f), sizeof(((sg_stream_proxy_conf *)0)->f)
#define NOFIELD 0, 0

static const scmd scmds[] = {
    { "server", SC_STREAM, SG_ARG0 | SG_ARGBLOCK, set_server, NOFIELD, SG_CF_MULTI },
    { "upstream", SC_STREAM, SG_ARG1 | SG_ARGBLOCK, set_upstream, NOFIELD, SG_CF_MULTI },
    { "listen", SC_SERVER, SG_ARG1MORE, set_listen, NOFIELD, SG_CF_MULTI },
    { "proxy_pass", SC_SERVER, SG_ARG1, set_proxy_pass, NOFIELD, 0 },
    { "proxy_timeout", SC_SS, SG_ARG1, set_msec, PX(timeout_ms), 0 },
    { "proxy_connect_timeout", SC_SS, SG_ARG1, set_msec, PX(connect_timeout_ms), 0 },
    { "proxy_next_upstream", SC_SS, SG_ARG1, set_flag, PX(next_upstream), 0 },
    { "proxy_next_upstream_tries", SC_SS, SG_ARG1, set_num, PX(next_upstream_tries), 0 },
    { "proxy_next_upstream_timeout", SC_SS, SG_ARG1, set_msec, PX(next_upstream_timeout_ms), 0 },
    { "proxy_half_close", SC_SS, SG_ARG1, set_flag, PX(half_close), 0 },
    { "tcp_nodelay", SC_SS, SG_ARG1, set_flag, PX(tcp_nodelay), 0 },
    { "proxy_buffer_size", SC_SS, SG_ARG1, set_size_noop, NOFIELD, 0 },
    { "preread_buffer_size", SC_SS, SG_ARG1, set_size_noop, NOFIELD, 0 },
    { "preread_timeout", SC_SS, SG_ARG1, set_msec, NOFIELD, 0 },
    { "variables_hash_bucket_size", SC_STREAM, SG_ARG1, set_size_noop, NOFIELD, 0 },
    { "variables_hash_max_size", SC_STREAM, SG_ARG1, set_size_noop, NOFIELD, 0 },
    { "server", SC_UPS, SG_ARG1MORE, set_ups_server, NOFIELD, SG_CF_MULTI },
    { "least_conn", SC_UPS, SG_ARG0, set_least_conn, NOFIELD, SG_CF_MULTI },
    { "hash", SC_UPS, SG_ARG1 | SG_ARG2, set_hash, NOFIELD, SG_CF_MULTI },
};

#define NSCMDS (sizeof(scmds) / sizeof(scmds[0]))
_Static_assert(NSCMDS <= 64, "grow the stream `set` bitmaps");

/* nginx stream directives of later work. */
static const char *const later_exact[] = {
    "ssl_preread", "proxy_protocol", "proxy_protocol_timeout", "access_log", "log_format",
    "error_log", "open_log_file_cache", "resolver", "resolver_timeout", "zone", "random",
    "proxy_bind", "proxy_socket_keepalive", "proxy_upload_rate", "proxy_download_rate",
    "proxy_requests", "proxy_responses", "return", "set", "map", "geo", "split_clients",
    "allow", "deny", "ssl", "set_real_ip_from", "pass", "server_name", "server_names_hash_max_size",
    "server_names_hash_bucket_size", "proxy_session_drop", "ntlm", "sticky", "health_check",
    "match", "keyval", "keyval_zone", "mqtt", "limit_conn_zone", "limit_conn", NULL,
};
static const char *const later_prefix[] = {
    "ssl_", "proxy_ssl", "limit_conn_", "geoip", "js_", "ssl_preread", NULL,
};

static bool stream_later(const char *name)
{
    for (int i = 0; later_exact[i]; i++)
        if (strcmp(name, later_exact[i]) == 0) return true;
    for (int i = 0; later_prefix[i]; i++)
        if (starts(name, later_prefix[i])) return true;
    return false;
}

bool sg_stream_conf_knows(const char *name)
{
    for (size_t i = 0; i < NSCMDS; i++)
        if (strcmp(scmds[i].name, name) == 0) return true;
    return false;
}

/* ---------------- dispatch ---------------- */

static const scmd *find_cmd(sstate *st, const sg_cnode *n)
{
    const char *name = n->name.s;
    bool named = false;
    for (size_t i = 0; i < NSCMDS; i++) {
        if (strcmp(scmds[i].name, name) != 0) continue;
        if (scmds[i].ctx & st->ctx) return &scmds[i];
        named = true;
    }
    if (!named && stream_later(name))
        sg_cerr(st->cx, n->name.pos, "\"%s\" directive is not supported yet", name);
    else if (named || sg_directives_lookup(name) != 0)
        sg_cerr(st->cx, n->name.pos, "\"%s\" directive is not allowed here", name);
    else
        sg_cerr(st->cx, n->name.pos, "unknown directive \"%s\"", name);
    return NULL;
}

static unsigned char *set_bits(sstate *st)
{
    if (st->ctx == SC_UPS) return st->ups_set;
    return st->srv ? st->srv->set : st->sc->set;
}

static bool run_node(sstate *st, const sg_cnode *n)
{
    const scmd *cmd = find_cmd(st, n);
    if (!cmd) return false;
    const char *name = n->name.s;
    if ((cmd->args & SG_ARGBLOCK) && !n->block)
        return sg_cerr(st->cx, n->name.pos, "directive \"%s\" has no opening \"{\"", name);
    if (!(cmd->args & SG_ARGBLOCK) && n->block)
        return sg_cerr(st->cx, n->name.pos, "directive \"%s\" is not terminated by \";\"", name);
    size_t na = n->nargs;
    bool args_ok = (na <= 5 && (cmd->args & (1u << na))) || ((cmd->args & SG_ARG1MORE) && na >= 1);
    if (!args_ok) return sg_cerr(st->cx, n->name.pos, "invalid number of arguments in \"%s\" directive", name);
    size_t idx = (size_t)(cmd - scmds);
    unsigned char *bits = set_bits(st);
    if ((bits[idx / 8] & (1u << (idx % 8))) && !(cmd->flags & SG_CF_MULTI))
        return sg_cerr(st->cx, n->name.pos, "\"%s\" directive is duplicate", name);
    if (!cmd->set(st, n, cmd)) return false;
    bits[idx / 8] |= (unsigned char)(1u << (idx % 8));
    return true;
}

static bool run_block(sstate *st, const sg_cnode *blk, uint32_t ctx)
{
    uint32_t saved = st->ctx;
    st->ctx = ctx;
    for (size_t i = 0; i < blk->nkids; i++)
        if (!run_node(st, &blk->kids[i])) return false;
    st->ctx = saved;
    return true;
}

/* ---------------- defaults, inheritance ---------------- */

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

static void merge_server(const sg_stream_conf *sc, sg_stream_server_conf *s)
{
    for (size_t i = 0; i < NSCMDS; i++) {
        if (scmds[i].size == 0 || (s->set[i / 8] & (1u << (i % 8)))) continue;
        memcpy((char *)&s->proxy + scmds[i].offset, (const char *)&sc->proxy + scmds[i].offset, scmds[i].size);
    }
}

bool sg_stream_conf_block(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_conf *c = cx->c;
    sg_stream_conf *sc = sg_arena_alloc(&c->arena, sizeof(*sc));
    memset(sc, 0, sizeof(*sc));
    proxy_defaults(&sc->proxy);
    c->stream = sc;
    sstate st = { .cx = cx, .sc = sc };
    if (!run_block(&st, n, SC_STREAM)) return false;
    for (size_t i = 0; i < sc->nservers; i++) merge_server(sc, sc->servers[i]);
    return true;
}

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
