/* Variables of stream{}: names, compiled values and map blocks
 * (ngx_stream_core_module's variables, ngx_stream_map_module).
 *
 * A stream value is compiled once into literal pieces and variable
 * numbers; evaluation is proxy/stream_vars.c's. A name that is no
 * built-in is taken for a map variable that may be declared later in the
 * file, as nginx allows; sg_stream_vars_finish() reports those never
 * defined. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/stream_conf.h"
#include "conf/directives.h"
#include "conf/geo.h"
#include "core/split.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; sg_stream_var var; } svars[] = {
    { "remote_addr", SG_SVAR_REMOTE_ADDR }, { "remote_port", SG_SVAR_REMOTE_PORT },
    { "binary_remote_addr", SG_SVAR_BINARY_REMOTE_ADDR }, { "server_addr", SG_SVAR_SERVER_ADDR },
    { "server_port", SG_SVAR_SERVER_PORT }, { "protocol", SG_SVAR_PROTOCOL },
    { "connection", SG_SVAR_CONNECTION }, { "nginx_version", SG_SVAR_NGINX_VERSION },
    { "hostname", SG_SVAR_HOSTNAME }, { "pid", SG_SVAR_PID },
    { "bytes_sent", SG_SVAR_BYTES_SENT }, { "bytes_received", SG_SVAR_BYTES_RECEIVED },
    { "session_time", SG_SVAR_SESSION_TIME }, { "status", SG_SVAR_STATUS },
    { "msec", SG_SVAR_MSEC }, { "time_local", SG_SVAR_TIME_LOCAL },
    { "time_iso8601", SG_SVAR_TIME_ISO8601 }, { "upstream_addr", SG_SVAR_UPSTREAM_ADDR },
    { "upstream_bytes_sent", SG_SVAR_UPSTREAM_BYTES_SENT },
    { "upstream_bytes_received", SG_SVAR_UPSTREAM_BYTES_RECEIVED },
    { "upstream_connect_time", SG_SVAR_UPSTREAM_CONNECT_TIME },
    { "upstream_first_byte_time", SG_SVAR_UPSTREAM_FIRST_BYTE_TIME },
    { "upstream_session_time", SG_SVAR_UPSTREAM_SESSION_TIME },
    { "ssl_protocol", SG_SVAR_SSL_PROTOCOL }, { "ssl_cipher", SG_SVAR_SSL_CIPHER },
    { "ssl_server_name", SG_SVAR_SSL_SERVER_NAME }, { "ssl_alpn_protocol", SG_SVAR_SSL_ALPN_PROTOCOL },
    { "ssl_session_reused", SG_SVAR_SSL_SESSION_REUSED }, { "ssl_session_id", SG_SVAR_SSL_SESSION_ID },
    { "ssl_preread_server_name", SG_SVAR_SSL_PREREAD_SERVER_NAME },
    { "ssl_preread_alpn_protocols", SG_SVAR_SSL_PREREAD_ALPN_PROTOCOLS },
    { "ssl_preread_protocol", SG_SVAR_SSL_PREREAD_PROTOCOL },
    /* quick wins (issue 9) */
    { "proxy_protocol_addr", SG_SVAR_PROXY_PROTOCOL_ADDR }, { "proxy_protocol_port", SG_SVAR_PROXY_PROTOCOL_PORT },
    { "proxy_protocol_server_addr", SG_SVAR_PROXY_PROTOCOL_SERVER_ADDR },
    { "proxy_protocol_server_port", SG_SVAR_PROXY_PROTOCOL_SERVER_PORT },
    /* access (issue 10) */
    { "realip_remote_addr", SG_SVAR_REALIP_REMOTE_ADDR }, { "realip_remote_port", SG_SVAR_REALIP_REMOTE_PORT },
    /* limits (issue 10) */
    { "limit_conn_status", SG_SVAR_LIMIT_CONN_STATUS },
};

static bool var_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

static void val_push(sg_conf *c, sg_stream_val *out, int var, int arg, sg_str lit)
{
    if (var < 0 && lit.n == 0) return;
    out->parts = sg_conf_push(&c->arena, out->parts, out->nparts, sizeof(*out->parts));
    out->parts[out->nparts++] = (sg_stream_val_part){ var, sg_arena_str(&c->arena, lit), arg };
}

/* The map variable `name`, added undefined if new. */
static int map_index(sg_conf *c, sg_str name, sg_conf_pos pos)
{
    sg_stream_conf *sc = c->stream;
    for (size_t i = 0; i < sc->nmaps; i++)
        if (sg_str_eq(sc->maps[i]->name, name)) return (int)i;
    sg_stream_map *m = sg_arena_alloc(&c->arena, sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->name = sg_arena_str(&c->arena, name);
    m->first_use = pos;
    sc->maps = sg_conf_push(&c->arena, sc->maps, sc->nmaps, sizeof(m));
    sc->maps[sc->nmaps++] = m;
    return (int)sc->nmaps - 1;
}

/* A named group of re, or -1. */
static int named_group(const void *re, sg_str name)
{
    uint32_t count = 0, size = 0;
    PCRE2_SPTR table = NULL;
    if (!re || pcre2_pattern_info(re, PCRE2_INFO_NAMECOUNT, &count) != 0 || count == 0) return -1;
    pcre2_pattern_info(re, PCRE2_INFO_NAMEENTRYSIZE, &size);
    pcre2_pattern_info(re, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *e = table + (size_t)i * size;
        const char *nm = (const char *)e + 2;
        if (strlen(nm) == name.n && memcmp(nm, name.p, name.n) == 0) return (e[0] << 8) | e[1];
    }
    return -1;
}

/* One "$name" or "${name}" at text.p[*i] ('$'): appends the variable, or
 * writes nginx's message into msg. */
static bool val_var(sg_conf *c, sg_str text, size_t *i, const void *re, sg_conf_pos pos,
                    sg_stream_val *out, char *msg, size_t msglen)
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
    *i = braced ? j + 1 : j;
    if (name.n == 1 && name.p[0] >= '0' && name.p[0] <= '9') {
        val_push(c, out, SG_SVAR_CAPTURE, name.p[0] - '0', SG_STR_NULL);
        return true;
    }
    int g = named_group(re, name);
    if (g >= 0) {
        val_push(c, out, SG_SVAR_CAPTURE, g, SG_STR_NULL);
        return true;
    }
    /* real client address (issue 10): $proxy_protocol_tlv_NAME, NAME read per session */
    if (name.n > 19 && memcmp(name.p, "proxy_protocol_tlv_", 19) == 0) {
        val_push(c, out, SG_SVAR_PROXY_PROTOCOL_TLV, 0, (sg_str){ name.p + 19, name.n - 19 });
        return true;
    }
    for (size_t k = 0; k < sizeof(svars) / sizeof(svars[0]); k++) {
        if (sg_str_eq_lit(name, svars[k].name)) {
            val_push(c, out, (int)svars[k].var, 0, SG_STR_NULL);
            return true;
        }
    }
    if (!c->stream) {                  /* compiled outside stream{}: no map can follow */
        snprintf(msg, msglen, "unknown \"%.*s\" variable", (int)name.n, name.p);
        return false;
    }
    val_push(c, out, SG_SVAR_MAP, map_index(c, name, pos), SG_STR_NULL);
    return true;
}

bool sg_stream_val_compile_re(sg_conf *c, sg_str text, sg_conf_pos pos, const void *re,
                              sg_stream_val *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->text = sg_arena_str(&c->arena, text);
    size_t lit = 0, i = 0;
    while (i < text.n) {
        if (text.p[i] != '$') {
            i++;
            continue;
        }
        val_push(c, out, -1, 0, (sg_str){ text.p + lit, i - lit });
        char msg[512];
        if (!val_var(c, text, &i, re, pos, out, msg, sizeof(msg))) {
            snprintf(err, errlen, "%s:%d:%d: %s", pos.file ? pos.file : "<config>", pos.line, pos.col, msg);
            return false;
        }
        lit = i;
    }
    val_push(c, out, -1, 0, (sg_str){ text.p + lit, text.n - lit });
    return true;
}

bool sg_stream_val_compile(sg_conf *c, sg_str text, sg_conf_pos pos, sg_stream_val *out,
                           char *err, size_t errlen)
{
    return sg_stream_val_compile_re(c, text, pos, NULL, out, err, errlen);
}

/* ---------------- map ---------------- */

static sg_str arg_str(const sg_carg *a)
{
    return (sg_str){ a->s, a->n };
}

static bool map_line(sg_cctx *cx, sg_stream_map *m, const sg_cnode *k)
{
    sg_conf *c = cx->c;
    sg_str key = arg_str(&k->name), value = arg_str(&k->args[0]);
    sg_stream_map_entry e = { 0 };
    if (sg_str_eq_lit(key, "default")) {
        if (m->has_default) return sg_cerr(cx, k->name.pos, "duplicate default map parameter");
        m->has_default = true;
        return sg_stream_val_compile(c, value, k->args[0].pos, &m->def, cx->err, cx->errlen);
    }
    if (key.n > 1 && key.p[0] == '~') {
        bool caseless = key.n > 2 && key.p[1] == '*';
        sg_str re = { key.p + (caseless ? 2 : 1), key.n - (caseless ? 2 : 1) };
        char msg[400];
        e.re = sg_regex_compile(re, caseless, msg, sizeof(msg));
        if (!e.re) return sg_cerr(cx, k->name.pos, "%s", msg);
        sg_conf_add_regex(c, e.re);
        if (!sg_stream_val_compile_re(c, value, k->args[0].pos, e.re, &e.val, cx->err, cx->errlen))
            return false;
        e.key = sg_arena_str(&c->arena, key);
        m->regex = sg_conf_push(&c->arena, m->regex, m->nregex, sizeof(e));
        m->regex[m->nregex++] = e;
        return true;
    }
    if (key.n > 1 && key.p[0] == '\\') key = (sg_str){ key.p + 1, key.n - 1 };
    for (size_t i = 0; i < m->nexact; i++)
        if (sg_str_eq(m->exact[i].key, key))
            return sg_cerr(cx, k->name.pos, "duplicate key \"%.*s\"", (int)key.n, key.p);
    e.key = sg_arena_str(&c->arena, key);
    if (!sg_stream_val_compile(c, value, k->args[0].pos, &e.val, cx->err, cx->errlen)) return false;
    m->exact = sg_conf_push(&c->arena, m->exact, m->nexact, sizeof(e));
    m->exact[m->nexact++] = e;
    return true;
}

bool sg_stream_set_map(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *src = &n->args[0], *dst = &n->args[1];
    if (dst->n < 2 || dst->s[0] != '$')
        return sg_cerr(cx, dst->pos, "invalid variable name \"%s\"", dst->s);
    sg_str name = { dst->s + 1, dst->n - 1 };
    for (size_t k = 0; k < sizeof(svars) / sizeof(svars[0]); k++)
        if (sg_str_eq_lit(name, svars[k].name))
            return sg_cerr(cx, dst->pos, "the duplicate \"%s\" variable", dst->s + 1);
    int idx = map_index(cx->c, name, dst->pos);   /* may grow the array: index it after */
    sg_stream_map *m = cx->c->stream->maps[idx];
    if (m->defined) return sg_cerr(cx, dst->pos, "the duplicate \"%s\" variable", dst->s + 1);
    m->defined = true;
    if (!sg_stream_val_compile(cx->c, arg_str(src), src->pos, &m->source, cx->err, cx->errlen)) return false;
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        if (k->nargs == 0 && (strcmp(k->name.s, "hostnames") == 0 || strcmp(k->name.s, "volatile") == 0))
            continue;              /* values are computed per use; hostnames: exact keys only */
        if (k->nargs != 1) return sg_cerr(cx, k->name.pos, "invalid number of the map parameters");
        if (!map_line(cx, m, k)) return false;
    }
    return true;
}

bool sg_stream_set_split_clients(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *src = &n->args[0], *dst = &n->args[1];
    if (dst->n < 2 || dst->s[0] != '$')
        return sg_cerr(cx, dst->pos, "invalid variable name \"%s\"", dst->s);
    sg_str name = { dst->s + 1, dst->n - 1 };
    for (size_t k = 0; k < sizeof(svars) / sizeof(svars[0]); k++)
        if (sg_str_eq_lit(name, svars[k].name))
            return sg_cerr(cx, dst->pos, "the duplicate \"%s\" variable", dst->s + 1);
    int idx = map_index(cx->c, name, dst->pos);
    sg_stream_map *m = cx->c->stream->maps[idx];
    if (m->defined) return sg_cerr(cx, dst->pos, "the duplicate \"%s\" variable", dst->s + 1);
    m->defined = m->split = true;
    if (!sg_stream_val_compile(cx->c, arg_str(src), src->pos, &m->source, cx->err, cx->errlen)) return false;
    uint64_t sum = 0, last = 0;
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block || k->nargs != 1) return sg_cerr(cx, k->name.pos, "invalid number of arguments in split_clients");
        long pct = 0;
        if (strcmp(k->name.s, "*") != 0 && (pct = sg_split_percent(k->name.s, k->name.n)) <= 0)
            return sg_cerr(cx, k->name.pos, "invalid percent value \"%s\"", k->name.s);
        uint32_t limit;
        if (!sg_split_bound(pct, &sum, &last, &limit))
            return sg_cerr(cx, k->name.pos, "percent total is greater than 100%%");
        sg_stream_map_entry e = { 0 };
        if (!sg_stream_val_compile(cx->c, arg_str(&k->args[0]), k->args[0].pos, &e.val, cx->err, cx->errlen))
            return false;
        m->exact = sg_conf_push(&cx->c->arena, m->exact, m->nexact, sizeof(e));
        m->split_limit = sg_conf_push(&cx->c->arena, m->split_limit, m->nexact, sizeof(uint32_t));
        m->split_limit[m->nexact] = limit;
        m->exact[m->nexact++] = e;
    }
    return true;
}

/* ---------------- geo ---------------- */

/* One line of a stream geo block: http's geo lines (conf/geo.c), without
 * `proxy` (nginx's stream geo has none). */
static bool geo_line(sg_cctx *cx, sg_stream_map *m, const sg_cnode *k)
{
    const char *key = k->name.s;
    if (k->nargs > 1) return sg_cerr(cx, k->name.pos, "invalid number of the geo parameters");
    if (strcmp(key, "proxy") == 0 || strcmp(key, "proxy_recursive") == 0 || strcmp(key, "volatile") == 0)
        return sg_cerr(cx, k->name.pos, "\"%s\" in stream geo is not allowed (nginx has it in http only)", key);
    sg_str v = k->nargs ? arg_str(&k->args[0]) : SG_STR_NULL;
    return sg_geo_line(m->geo_base, arg_str(&k->name), k->nargs ? &v : NULL, k->name.pos, cx->err, cx->errlen);
}

bool sg_stream_set_geo(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *dst = &n->args[n->nargs - 1];
    if (dst->n < 2 || dst->s[0] != '$')
        return sg_cerr(cx, dst->pos, "invalid variable name \"%s\"", dst->s);
    sg_str name = { dst->s + 1, dst->n - 1 };
    for (size_t k = 0; k < sizeof(svars) / sizeof(svars[0]); k++)
        if (sg_str_eq_lit(name, svars[k].name))
            return sg_cerr(cx, dst->pos, "the duplicate \"%s\" variable", dst->s + 1);
    int idx = map_index(cx->c, name, dst->pos);
    sg_stream_map *m = cx->c->stream->maps[idx];
    if (m->defined) return sg_cerr(cx, dst->pos, "the duplicate \"%s\" variable", dst->s + 1);
    m->defined = m->geo = true;
    m->geo_base = sg_geo_new(cx->c);
    sg_str src = n->nargs == 2 ? arg_str(&n->args[0]) : SG_STR("$remote_addr");
    if (!sg_stream_val_compile(cx->c, src, n->args[0].pos, &m->source, cx->err, cx->errlen)) return false;
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        if (!geo_line(cx, m, k)) return false;
    }
    return true;
}

bool sg_stream_set_set(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *dst = &n->args[0];
    if (dst->n < 2 || dst->s[0] != '$')
        return sg_cerr(cx, dst->pos, "invalid variable name \"%s\"", dst->s);
    sg_str name = { dst->s + 1, dst->n - 1 };
    for (size_t k = 0; k < sizeof(svars) / sizeof(svars[0]); k++)
        if (sg_str_eq_lit(name, svars[k].name))
            return sg_cerr(cx, dst->pos, "the \"%s\" variable is not changeable", dst->s + 1);
    sg_stream_set st;
    if (!sg_stream_val_compile(cx->c, arg_str(&n->args[1]), n->args[1].pos, &st.val, cx->err, cx->errlen))
        return false;
    st.var = map_index(cx->c, name, dst->pos);
    cx->c->stream->maps[st.var]->settable = true;
    sg_stream_server_conf *s = cx->cur->stream_server;
    s->sets = sg_conf_push(&cx->c->arena, s->sets, s->nsets, sizeof(st));
    s->sets[s->nsets++] = st;
    return true;
}

bool sg_stream_vars_finish(sg_cctx *cx)
{
    const sg_stream_conf *sc = cx->c->stream;
    for (size_t i = 0; sc && i < sc->nmaps; i++)
        if (!sc->maps[i]->defined && !sc->maps[i]->settable)
            return sg_cerr(cx, sc->maps[i]->first_use, "unknown \"%.*s\" variable",
                           (int)sc->maps[i]->name.n, sc->maps[i]->name.p);
    return true;
}
