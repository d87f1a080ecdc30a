/* Upstream balancer directives of issue 11 (area: balance). */
#include "conf/balance_conf.h"

#include <stdio.h>
#include <stdint.h>
#include <string.h>

static bool lt_mode(const char *s, bool stream, sg_lt_mode *out)
{
    if (!stream && strcmp(s, "header") == 0) *out = SG_LT_HEADER;
    else if (strcmp(s, "last_byte") == 0) *out = SG_LT_LAST_BYTE;
    else if (stream && strcmp(s, "connect") == 0) *out = SG_LT_CONNECT;
    else if (stream && strcmp(s, "first_byte") == 0) *out = SG_LT_FIRST_BYTE;
    else return false;
    return true;
}

bool sg_balance_set_least_time(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    bool stream = cmd->post != NULL;
    sg_lt_mode m;
    if (!lt_mode(n->args[0].s, stream, &m))
        return sg_cerr(cx, n->args[0].pos, "invalid parameter \"%s\"", n->args[0].s);
    if (n->nargs == 2 && strcmp(n->args[1].s, "inflight") != 0)
        return sg_cerr(cx, n->args[1].pos, "invalid parameter \"%s\"", n->args[1].s);
    cx->ups->lb = SG_LB_LEAST_TIME;
    cx->ups->lt_mode = m;
    cx->ups->lt_inflight = n->nargs == 2;
    return true;
}

bool sg_balance_random_least_time(sg_cctx *cx, const sg_carg *a, bool stream)
{
    sg_lt_mode m;
    if (strncmp(a->s, "least_time=", 11) != 0 || !lt_mode(a->s + 11, stream, &m))
        return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
    cx->ups->lt_mode = m;
    return true;
}

/* ---------------- sticky ---------------- */

static bool compile(sg_cctx *cx, const sg_carg *a, const char *text, sg_cval *out)
{
    return sg_cval_compile(cx->c, (sg_str){ text, strlen(text) }, a->pos, out, cx->err, cx->errlen);
}

/* "1h 3m" as nginx's ngx_parse_time reads it: spaces between the units. */
static bool parse_seconds(const char *s, int64_t *out)
{
    char buf[64];
    size_t n = 0;
    for (; *s; s++) {
        if (*s == ' ') continue;
        if (n + 1 >= sizeof(buf)) return false;
        buf[n++] = *s;
    }
    buf[n] = '\0';
    uint64_t ms;
    if (!sg_conf_parse_time_ms(buf, &ms) || ms / 1000 > INT32_MAX) return false;
    *out = (int64_t)(ms / 1000);
    return true;
}

static bool sticky_cookie(sg_cctx *cx, const sg_cnode *n, sg_sticky_conf *st)
{
    if (n->nargs < 2) return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"sticky\" directive");
    const sg_carg *name = &n->args[1];
    if (name->n == 0 || name->n > 200 || strpbrk(name->s, "=;, \t$"))
        return sg_cerr(cx, name->pos, "invalid cookie name \"%s\"", name->s);
    st->cookie = sg_arena_strndup(&cx->c->arena, name->s, name->n);
    st->expires_s = -1;
    for (size_t i = 2; i < n->nargs; i++) {
        const sg_carg *a = &n->args[i];
        const char *p = a->s;
        if (strncmp(p, "expires=", 8) == 0) {
            if (strcmp(p + 8, "max") == 0) st->expires_s = SG_STICKY_EXPIRES_MAX;
            else if (!parse_seconds(p + 8, &st->expires_s))
                return sg_cerr(cx, a->pos, "invalid expires \"%s\"", p + 8);
        } else if (strncmp(p, "domain=", 7) == 0 && p[7]) {
            if (!compile(cx, a, p + 7, &st->domain)) return false;
            st->has_domain = true;
        } else if (strncmp(p, "path=", 5) == 0 && p[5]) {
            if (!compile(cx, a, p + 5, &st->path)) return false;
            st->has_path = true;
        } else if (strncmp(p, "samesite=", 9) == 0 && p[9]) {
            const char *v = p + 9;
            if (v[0] != '$' && strcmp(v, "strict") != 0 && strcmp(v, "lax") != 0 && strcmp(v, "none") != 0)
                return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", p);
            if (!compile(cx, a, v, &st->samesite)) return false;
            st->has_samesite = true;
        } else if (strcmp(p, "httponly") == 0) {
            st->httponly = true;
        } else if (strcmp(p, "secure") == 0) {
            st->secure = true;
        } else {
            return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", p);
        }
    }
    /* The request's cookie is read through $cookie_NAME. */
    char var[300];
    snprintf(var, sizeof(var), "$cookie_%s", st->cookie);
    st->lookup = sg_arena_alloc(&cx->c->arena, sizeof(sg_cval));
    st->nlookup = 1;
    return compile(cx, name, var, st->lookup);
}

static bool push_var(sg_cctx *cx, const sg_carg *a, const char *text, sg_cval **list, size_t *n)
{
    if (text[0] != '$' || !text[1]) return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", a->s);
    sg_cval v;
    if (!compile(cx, a, text, &v)) return false;
    *list = sg_conf_push(&cx->c->arena, *list, *n, sizeof(v));
    (*list)[(*n)++] = v;
    return true;
}

static bool sticky_learn(sg_cctx *cx, const sg_cnode *n, sg_sticky_conf *st)
{
    bool zone = false;
    st->timeout_ms = 3600000;
    for (size_t i = 1; i < n->nargs; i++) {
        const sg_carg *a = &n->args[i];
        const char *p = a->s;
        if (strncmp(p, "create=", 7) == 0) {
            if (!push_var(cx, a, p + 7, &st->create, &st->ncreate)) return false;
        } else if (strncmp(p, "lookup=", 7) == 0) {
            if (!push_var(cx, a, p + 7, &st->lookup, &st->nlookup)) return false;
        } else if (strncmp(p, "zone=", 5) == 0) {
            /* zone=NAME:SIZE: the sessions live in the upstream's shared state */
            const char *colon = strchr(p + 5, ':');
            uint64_t size;
            if (!colon || colon == p + 5 || !sg_conf_parse_size(colon + 1, &size))
                return sg_cerr(cx, a->pos, "invalid zone \"%s\"", p + 5);
            zone = true;
        } else if (strncmp(p, "timeout=", 8) == 0) {
            int64_t sec;
            if (!parse_seconds(p + 8, &sec)) return sg_cerr(cx, a->pos, "invalid timeout \"%s\"", p + 8);
            st->timeout_ms = (uint32_t)(sec * 1000 > UINT32_MAX ? UINT32_MAX : sec * 1000);
        } else if (strcmp(p, "header") == 0) {
            st->header = true;
        } else if (strcmp(p, "sync") == 0) {
            sg_cnotice(cx, a->pos, "\"sync\": learned sessions are shared by the worker threads of this "
                       "process only (no zone_sync)");
        } else {
            return sg_cerr(cx, a->pos, "invalid parameter \"%s\"", p);
        }
    }
    if (!st->ncreate) return sg_cerr(cx, n->name.pos, "\"create\" parameter is missing");
    if (!st->nlookup) return sg_cerr(cx, n->name.pos, "\"lookup\" parameter is missing");
    if (!zone) return sg_cerr(cx, n->name.pos, "\"zone\" parameter is missing");
    return true;
}

bool sg_balance_set_sticky(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_upstream_conf *u = cx->ups;
    if (u->sticky) return sg_cerr(cx, n->name.pos, "\"sticky\" directive is duplicate");
    sg_sticky_conf *st = sg_arena_alloc(&cx->c->arena, sizeof(*st));
    memset(st, 0, sizeof(*st));
    const char *kind = n->args[0].s;
    bool ok;
    if (strcmp(kind, "cookie") == 0) {
        st->kind = SG_STICKY_COOKIE;
        ok = sticky_cookie(cx, n, st);
    } else if (strcmp(kind, "route") == 0) {
        st->kind = SG_STICKY_ROUTE;
        if (n->nargs < 2) return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"sticky\" directive");
        ok = true;
        for (size_t i = 1; ok && i < n->nargs; i++)
            ok = push_var(cx, &n->args[i], n->args[i].s, &st->lookup, &st->nlookup);
    } else if (strcmp(kind, "learn") == 0) {
        st->kind = SG_STICKY_LEARN;
        ok = sticky_learn(cx, n, st);
    } else {
        return sg_cerr(cx, n->args[0].pos, "invalid parameter \"%s\"", kind);
    }
    if (!ok) return false;
    u->sticky = st;
    return true;
}
