/* health_check and match (nginx Plus syntax): see health_conf.h. */
#include "conf/health_conf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/directives.h"
#include "conf/stream_conf.h"
#include "conf/vars.h"

static sg_str carg_str(const sg_carg *a)
{
    return (sg_str){ a->s, a->n };
}

static sg_health_conf *health_of(sg_conf *c)
{
    if (!c->health) c->health = sg_arena_alloc(&c->arena, sizeof(sg_health_conf));
    return c->health;
}

static bool parse_ms(sg_cctx *cx, const sg_carg *a, const char *v, uint32_t *out, bool nonzero)
{
    uint64_t ms;
    if (!sg_conf_parse_time_ms(v, &ms) || ms > UINT32_MAX || (nonzero && ms == 0))
        return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
    *out = (uint32_t)ms;
    return true;
}

static bool parse_num(sg_cctx *cx, const sg_carg *a, const char *v, long lo, long hi, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi) return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
    *out = n;
    return true;
}

static sg_health_check *new_check(sg_cctx *cx, const sg_cnode *n, bool stream)
{
    sg_health_check *h = sg_arena_alloc(&cx->c->arena, sizeof(*h));
    memset(h, 0, sizeof(*h));
    h->pos = n->name.pos;
    h->stream = stream;
    h->interval_ms = 5000;
    h->fails = h->passes = 1;
    h->uri = SG_STR("/");
    h->grpc_status = -1;
    return h;
}

static void add_check(sg_cctx *cx, sg_health_check *h)
{
    sg_health_conf *hc = health_of(cx->c);
    hc->checks = sg_conf_push(&cx->c->arena, hc->checks, hc->nchecks, sizeof(*hc->checks));
    hc->checks[hc->nchecks++] = h;
}

#define PREFIX(a, lit) (strncmp((a)->s, lit, sizeof(lit) - 1) == 0 ? (a)->s + sizeof(lit) - 1 : NULL)

/* The parameters both contexts share; false + err on a bad one, *known
 * false when the word is none of them. */
static bool common_param(sg_cctx *cx, const sg_carg *a, sg_health_check *h, bool *known)
{
    const char *v;
    long num;
    *known = true;
    if ((v = PREFIX(a, "interval="))) return parse_ms(cx, a, v, &h->interval_ms, true);
    if ((v = PREFIX(a, "jitter="))) return parse_ms(cx, a, v, &h->jitter_ms, false);
    if ((v = PREFIX(a, "fails="))) {
        if (!parse_num(cx, a, v, 1, 1000000, &num)) return false;
        h->fails = (uint32_t)num;
        return true;
    }
    if ((v = PREFIX(a, "passes="))) {
        if (!parse_num(cx, a, v, 1, 1000000, &num)) return false;
        h->passes = (uint32_t)num;
        return true;
    }
    if ((v = PREFIX(a, "port="))) {
        if (!parse_num(cx, a, v, 1, 65535, &num)) return false;
        h->port = (int)num;
        return true;
    }
    if ((v = PREFIX(a, "match="))) {
        if (!*v) return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
        h->match_name = sg_arena_str(&cx->c->arena, (sg_str){ v, strlen(v) });
        return true;
    }
    if (strcmp(a->s, "mandatory") == 0) { h->mandatory = true; return true; }
    if (strcmp(a->s, "persistent") == 0) { h->persistent = true; return true; }
    *known = false;
    return true;
}

bool sg_health_set_check(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    (void)cmd; (void)base;
    if (!cx->cur || !cx->cur->conf)
        return sg_cerr(cx, n->name.pos, "\"health_check\" directive is not allowed here");
    sg_health_check *h = new_check(cx, n, false);
    h->loc = cx->cur->conf;
    for (size_t i = 0; i < n->nargs; i++) {
        const sg_carg *a = &n->args[i];
        const char *v;
        bool known;
        if (!common_param(cx, a, h, &known)) return false;
        if (known) continue;
        if ((v = PREFIX(a, "uri="))) {
            if (*v != '/') return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
            h->uri = sg_arena_str(&cx->c->arena, (sg_str){ v, strlen(v) });
        } else if (strcmp(a->s, "type=grpc") == 0) {
            h->grpc = true;
        } else if (PREFIX(a, "type=")) {
            return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
        } else if ((v = PREFIX(a, "grpc_service="))) {
            h->grpc_service = sg_arena_str(&cx->c->arena, (sg_str){ v, strlen(v) });
        } else if ((v = PREFIX(a, "grpc_status="))) {
            long num;
            if (!parse_num(cx, a, v, 0, 16, &num)) return false;
            h->grpc_status = (int)num;
        } else if ((v = PREFIX(a, "keepalive_time="))) {
            if (!parse_ms(cx, a, v, &h->keepalive_time_ms, false)) return false;
            sg_cnotice(cx, a->pos, "health_check keepalive_time: every check opens its own connection");
        } else {
            return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
        }
    }
    if (h->persistent && !h->mandatory)
        return sg_cerr(cx, n->name.pos, "\"persistent\" requires \"mandatory\"");
    if ((h->grpc_service.n || h->grpc_status >= 0) && !h->grpc)
        return sg_cerr(cx, n->name.pos, "\"grpc_service\" and \"grpc_status\" require \"type=grpc\"");
    if (h->grpc && h->match_name.n)
        return sg_cerr(cx, n->name.pos, "\"match\" is not allowed with \"type=grpc\"");
    add_check(cx, h);
    return true;
}

bool sg_health_set_stream_check(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    (void)cmd; (void)base;
    if (!cx->cur || !cx->cur->stream_server)
        return sg_cerr(cx, n->name.pos, "\"health_check\" directive is not allowed here");
    sg_health_check *h = new_check(cx, n, true);
    h->ss = cx->cur->stream_server;
    for (size_t i = 0; i < n->nargs; i++) {
        bool known;
        if (!common_param(cx, &n->args[i], h, &known)) return false;
        if (!known) {
            if (strcmp(n->args[i].s, "udp") == 0)
                return sg_cerr(cx, n->args[i].pos, "health_check udp is not supported");
            return sg_cerr(cx, n->args[i].pos, "invalid parameter \"%s\"", n->args[i].s);
        }
    }
    if (h->persistent && !h->mandatory)
        return sg_cerr(cx, n->name.pos, "\"persistent\" requires \"mandatory\"");
    add_check(cx, h);
    return true;
}

/* ---------------- match ---------------- */

static sg_hc_match *new_match(sg_cctx *cx, const sg_cnode *n, bool stream)
{
    sg_health_conf *hc = health_of(cx->c);
    sg_str name = carg_str(&n->args[0]);
    for (size_t i = 0; i < hc->nmatches; i++) {
        if (hc->matches[i]->stream == stream && sg_str_eq(hc->matches[i]->name, name)) {
            sg_cerr(cx, n->args[0].pos, "duplicate match \"%s\"", n->args[0].s);
            return NULL;
        }
    }
    sg_hc_match *m = sg_arena_alloc(&cx->c->arena, sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->name = sg_arena_str(&cx->c->arena, name);
    m->pos = n->name.pos;
    m->stream = stream;
    hc->matches = sg_conf_push(&cx->c->arena, hc->matches, hc->nmatches, sizeof(*hc->matches));
    hc->matches[hc->nmatches++] = m;
    return m;
}

static void *compile_re(sg_cctx *cx, const sg_carg *a)
{
    void *re = sg_regex_compile(carg_str(a), false, cx->err, cx->errlen);
    if (!re) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", cx->err);
        sg_cerr(cx, a->pos, "%s", msg);
        return NULL;
    }
    sg_conf_add_regex(cx->c, re);
    return re;
}

static bool parse_status(sg_cctx *cx, const sg_cnode *k, sg_hc_cond *cd)
{
    size_t i = 0;
    if (i < k->nargs && strcmp(k->args[i].s, "!") == 0) { cd->negate = true; i++; }
    if (i >= k->nargs) return sg_cerr(cx, k->name.pos, "invalid number of arguments in \"status\"");
    cd->ranges = sg_arena_alloc(&cx->c->arena, (k->nargs - i) * sizeof(*cd->ranges));
    for (; i < k->nargs; i++) {
        const char *s = k->args[i].s;
        char *end;
        long lo = strtol(s, &end, 10), hi = lo;
        if (*end == '-') hi = strtol(end + 1, &end, 10);
        if (*end || end == s || lo < 100 || hi > 999 || lo > hi)
            return sg_cerr(cx, k->args[i].pos, "invalid status \"%s\"", s);
        cd->ranges[cd->nranges][0] = (uint16_t)lo;
        cd->ranges[cd->nranges][1] = (uint16_t)hi;
        cd->nranges++;
    }
    return true;
}

static bool parse_header(sg_cctx *cx, const sg_cnode *k, sg_hc_cond *cd)
{
    size_t i = 0;
    if (i < k->nargs && strcmp(k->args[i].s, "!") == 0) { cd->negate = true; i++; }
    if (i >= k->nargs) return sg_cerr(cx, k->name.pos, "invalid number of arguments in \"header\"");
    cd->name = sg_arena_str(&cx->c->arena, carg_str(&k->args[i++]));
    if (i == k->nargs) { cd->op = SG_HC_EXISTS; return true; }
    if (cd->negate || i + 2 != k->nargs) return sg_cerr(cx, k->name.pos, "invalid \"header\" condition");
    const char *op = k->args[i].s;
    if (strcmp(op, "=") == 0) cd->op = SG_HC_EQ;
    else if (strcmp(op, "!=") == 0) cd->op = SG_HC_NE;
    else if (strcmp(op, "~") == 0) cd->op = SG_HC_RE;
    else if (strcmp(op, "!~") == 0) cd->op = SG_HC_NRE;
    else return sg_cerr(cx, k->args[i].pos, "invalid operator \"%s\"", op);
    const sg_carg *v = &k->args[i + 1];
    cd->value = sg_arena_str(&cx->c->arena, carg_str(v));
    if (cd->op == SG_HC_RE || cd->op == SG_HC_NRE) {
        if (!(cd->re = compile_re(cx, v))) return false;
    }
    return true;
}

static bool parse_body(sg_cctx *cx, const sg_cnode *k, sg_hc_cond *cd)
{
    if (k->nargs != 2) return sg_cerr(cx, k->name.pos, "invalid number of arguments in \"body\"");
    if (strcmp(k->args[0].s, "~") == 0) cd->op = SG_HC_RE;
    else if (strcmp(k->args[0].s, "!~") == 0) cd->op = SG_HC_NRE;
    else return sg_cerr(cx, k->args[0].pos, "invalid operator \"%s\"", k->args[0].s);
    return (cd->re = compile_re(cx, &k->args[1])) != NULL;
}

bool sg_health_set_match(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    (void)cmd; (void)base;
    sg_hc_match *m = new_match(cx, n, false);
    if (!m) return false;
    m->conds = sg_arena_alloc(&cx->c->arena, (n->nkids ? n->nkids : 1) * sizeof(*m->conds));
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        sg_hc_cond *cd = &m->conds[m->nconds];
        memset(cd, 0, sizeof(*cd));
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        bool ok;
        if (strcmp(k->name.s, "status") == 0) { cd->kind = SG_HC_STATUS; ok = parse_status(cx, k, cd); }
        else if (strcmp(k->name.s, "header") == 0) { cd->kind = SG_HC_HEADER; ok = parse_header(cx, k, cd); }
        else if (strcmp(k->name.s, "body") == 0) { cd->kind = SG_HC_BODY; ok = parse_body(cx, k, cd); }
        else if (strcmp(k->name.s, "require") == 0)
            return sg_cerr(cx, k->name.pos, "\"require\" in match is not supported yet");
        else return sg_cerr(cx, k->name.pos, "unknown directive \"%s\" in match", k->name.s);
        if (!ok) return false;
        m->nconds++;
    }
    return true;
}

bool sg_health_set_stream_match(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    (void)cmd; (void)base;
    sg_hc_match *m = new_match(cx, n, true);
    if (!m) return false;
    for (size_t i = 0; i < n->nkids; i++) {
        const sg_cnode *k = &n->kids[i];
        if (k->block) return sg_cerr(cx, k->name.pos, "unexpected \"{\"");
        if (strcmp(k->name.s, "send") == 0) {
            if (k->nargs != 1) return sg_cerr(cx, k->name.pos, "invalid number of arguments in \"send\"");
            m->send = sg_arena_str(&cx->c->arena, carg_str(&k->args[0]));
        } else if (strcmp(k->name.s, "expect") == 0) {
            if (k->nargs == 2 && strcmp(k->args[0].s, "~") == 0) {
                if (!(m->expect_re = compile_re(cx, &k->args[1]))) return false;
            } else if (k->nargs == 1) {
                m->expect = sg_arena_str(&cx->c->arena, carg_str(&k->args[0]));
            } else {
                return sg_cerr(cx, k->name.pos, "invalid number of arguments in \"expect\"");
            }
        } else {
            return sg_cerr(cx, k->name.pos, "unknown directive \"%s\" in match", k->name.s);
        }
    }
    return true;
}

/* ---------------- binding ---------------- */

static const sg_hc_match *find_match(sg_health_conf *hc, sg_str name, bool stream)
{
    for (size_t i = 0; i < hc->nmatches; i++)
        if (hc->matches[i]->stream == stream && sg_str_eq(hc->matches[i]->name, name)) return hc->matches[i];
    return NULL;
}

bool sg_health_conf_finish(sg_cctx *cx)
{
    sg_health_conf *hc = cx->c->health;
    if (!hc) return true;
    for (size_t i = 0; i < hc->nchecks; i++) {
        sg_health_check *h = hc->checks[i];
        if (h->match_name.n && !(h->match = find_match(hc, h->match_name, h->stream)))
            return sg_cerr(cx, h->pos, "match \"%.*s\" not found", (int)h->match_name.n, h->match_name.p);
        if (h->stream) {
            sg_stream_server_conf *ss = h->ss;
            if (!ss->upstream)
                return sg_cerr(cx, h->pos, "health check requires an upstream in \"proxy_pass\"");
            /* a TCP check of a UDP service would find every server down */
            for (size_t l = 0; l < ss->nlistens; l++)
                if (ss->listens[l].udp)
                    return sg_cerr(cx, h->pos, "health_check of a udp server is not supported yet");
            h->upstream = ss->upstream;
            h->ssl = ss->proxy.proxy_ssl_on;
            h->ssl_conf = &ss->proxy.proxy_ssl;
            h->host = ss->pass_host;
            h->connect_timeout_ms = ss->proxy.connect_timeout_ms;
            h->read_timeout_ms = ss->proxy.timeout_ms;
            continue;
        }
        sg_loc_conf *lc = h->loc;
        if (!lc->proxy_pass || !lc->proxy_pass->upstream)
            return sg_cerr(cx, h->pos, "health check requires \"proxy_pass\" or \"grpc_pass\" to an upstream");
        const sg_upstream_opts *o = lc->is_grpc ? &lc->grpc : &lc->proxy;
        h->upstream = lc->proxy_pass->upstream;
        h->ssl = lc->proxy_pass->ssl;
        h->ssl_conf = &o->ssl;
        h->host = lc->proxy_pass->host;
        h->http_version = lc->is_grpc || h->grpc ? 20 : o->http_version;
        h->connect_timeout_ms = o->connect_timeout_ms;
        h->read_timeout_ms = o->read_timeout_ms;
    }
    return true;
}

/* ---------------- evaluation ---------------- */

static bool re_match(void *re, const char *s, size_t n)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return false;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* The value of header `name` in "Name: value\r\n..." (first one). */
static bool find_header(const char *h, size_t hlen, sg_str name, sg_str *val)
{
    const char *p = h, *end = h + hlen;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && (size_t)(colon - p) == name.n && strncasecmp(p, name.p, name.n) == 0) {
            const char *v = colon + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            *val = (sg_str){ v, (size_t)(ve - v) };
            return true;
        }
        p = eol ? eol + 1 : end;
    }
    return false;
}

bool sg_hc_match_http(const sg_hc_match *m, int status, const char *headers, size_t hlen, const char *body,
                      size_t blen)
{
    if (!m) return status >= 200 && status < 400;
    for (size_t i = 0; i < m->nconds; i++) {
        const sg_hc_cond *cd = &m->conds[i];
        switch (cd->kind) {
        case SG_HC_STATUS: {
            bool in = false;
            for (size_t r = 0; r < cd->nranges; r++)
                if (status >= cd->ranges[r][0] && status <= cd->ranges[r][1]) in = true;
            if (in == cd->negate) return false;
            break;
        }
        case SG_HC_HEADER: {
            sg_str v;
            bool has = find_header(headers, hlen, cd->name, &v);
            switch (cd->op) {
            case SG_HC_EXISTS: if (has == cd->negate) return false; break;
            case SG_HC_EQ: if (!has || !sg_str_eq(v, cd->value)) return false; break;
            case SG_HC_NE: if (has && sg_str_eq(v, cd->value)) return false; break;
            case SG_HC_RE: if (!has || !re_match(cd->re, v.p, v.n)) return false; break;
            case SG_HC_NRE: if (has && re_match(cd->re, v.p, v.n)) return false; break;
            }
            break;
        }
        case SG_HC_BODY: {
            bool hit = re_match(cd->re, body ? body : "", blen);
            if (hit != (cd->op == SG_HC_RE)) return false;
            break;
        }
        }
    }
    return true;
}
