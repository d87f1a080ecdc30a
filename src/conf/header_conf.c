/* Setters of the header controls and small http directives (issue 9):
 * proxy_hide_header / proxy_pass_header / proxy_ignore_headers (and
 * grpc_*), expires, alias, and the accepted-but-no-effect
 * connection tuning lines. Their table rows are at the end of
 * directives.c's `cmds`. */
#include "conf/header_conf.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static sg_str lower_str(sg_cctx *cx, const sg_carg *a)
{
    char *p = sg_arena_strndup(&cx->c->arena, a->s, a->n);
    for (size_t i = 0; i < a->n; i++) p[i] = (char)tolower((unsigned char)p[i]);
    return (sg_str){ p, a->n };
}

/* proxy_hide_header NAME / proxy_pass_header NAME: a list (name array +
 * count); a level that has any replaces the inherited list (nginx). */
bool sg_hc_set_name_list(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_str **list = (sg_str **)((char *)base + cmd->offset);
    size_t *count = (size_t *)((char *)base + cmd->offset + sizeof(sg_str *));
    if (cx->first) {
        *list = NULL;
        *count = 0;
    }
    *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(sg_str));
    (*list)[(*count)++] = lower_str(cx, &n->args[0]);
    return true;
}

bool sg_hc_set_ignore_headers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    static const struct { const char *name; uint32_t bit; } names[] = {
        { "X-Accel-Redirect", SG_IGN_X_ACCEL_REDIRECT }, { "X-Accel-Expires", SG_IGN_X_ACCEL_EXPIRES },
        { "X-Accel-Limit-Rate", SG_IGN_X_ACCEL_LIMIT_RATE }, { "X-Accel-Buffering", SG_IGN_X_ACCEL_BUFFERING },
        { "X-Accel-Charset", SG_IGN_X_ACCEL_CHARSET }, { "Expires", SG_IGN_EXPIRES },
        { "Cache-Control", SG_IGN_CACHE_CONTROL }, { "Set-Cookie", SG_IGN_SET_COOKIE },
        { "Vary", SG_IGN_VARY },
    };
    uint32_t mask = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        size_t k = 0;
        while (k < sizeof(names) / sizeof(names[0]) && strcasecmp(names[k].name, n->args[i].s) != 0) k++;
        if (k == sizeof(names) / sizeof(names[0]))
            return sg_cerr(cx, n->args[i].pos, "invalid value \"%s\" in \"%s\" directive", n->args[i].s, n->name.s);
        mask |= names[k].bit;
    }
    *(uint32_t *)((char *)base + cmd->offset) = mask;
    return true;
}

/* nginx's ngx_parse_time in seconds, with an optional leading '-' (expires). */
static bool parse_secs(const char *s, bool allow_neg, int64_t *out)
{
    bool neg = false;
    if (allow_neg && *s == '-') { neg = true; s++; }
    else if (*s == '+') s++;
    uint64_t ms;
    if (!sg_conf_parse_time_ms(s, &ms) || ms / 1000 > INT32_MAX) return false;
    *out = neg ? -(int64_t)(ms / 1000) : (int64_t)(ms / 1000);
    return true;
}

bool sg_expires_parse(const char *s, bool modified, sg_expires *e)
{
    if (!modified && strcmp(s, "off") == 0) { e->kind = SG_EXPIRES_OFF; return true; }
    if (!modified && strcmp(s, "epoch") == 0) { e->kind = SG_EXPIRES_EPOCH; return true; }
    if (!modified && strcmp(s, "max") == 0) { e->kind = SG_EXPIRES_MAX; return true; }
    if (*s == '@') {
        if (!parse_secs(s + 1, false, &e->secs) || e->secs >= 86400) return false;
        e->kind = SG_EXPIRES_DAILY;
        return !modified;               /* nginx: "daily time cannot be used with modified" */
    }
    if (!parse_secs(s, true, &e->secs)) return false;
    e->kind = modified ? SG_EXPIRES_MODIFIED : SG_EXPIRES_ACCESS;
    return true;
}

bool sg_hc_set_expires(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_expires *e = (sg_expires *)((char *)base + cmd->offset);
    memset(e, 0, sizeof(*e));
    bool modified = false;
    const sg_carg *a = &n->args[0];
    if (n->nargs == 2) {
        if (strcmp(a->s, "modified") != 0)
            return sg_cerr(cx, a->pos, "invalid value \"%s\" in \"%s\" directive", a->s, n->name.s);
        modified = true;
        a = &n->args[1];
    }
    if (strchr(a->s, '$')) {
        e->kind = SG_EXPIRES_VAR;
        e->modified = modified;
        return sg_cval_compile(cx->c, (sg_str){ a->s, a->n }, a->pos, &e->value, cx->err, cx->errlen);
    }
    if (!sg_expires_parse(a->s, modified, e))
        return sg_cerr(cx, a->pos, "invalid value \"%s\" in \"%s\" directive", a->s, n->name.s);
    return true;
}

/* alias PATH (location only, not inherited: a nested location keeps its
 * own prefix). */
bool sg_hc_set_alias(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    if (cx->cur->loc && cx->cur->loc->match == SG_LOC_NAMED)
        return sg_cerr(cx, n->name.pos, "\"alias\" directive cannot be used inside the named location");
    if (strchr(n->args[0].s, '$'))
        return sg_cerr(cx, n->args[0].pos, "variables in \"alias\" are not supported yet");
    lc->alias = sg_str_from(sg_conf_full_path(cx->c, n->args[0].s));
    lc->has_alias = true;
    return true;
}

/* Connection tuning nginx has and streamgate does differently: accepted,
 * checked, and named in a [notice] line. */
bool sg_hc_set_noeffect(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const char *why = cmd->post;
    sg_cnotice(cx, n->name.pos, "\"%s\" is accepted and has no effect: %s", n->name.s, why);
    return true;
}

/* so_keepalive=on|off|[IDLE]:[INTVL]:[CNT] (nginx; IDLE and INTVL are
 * times in seconds). */
bool sg_hc_listen_keepalive(const char *v, sg_listen_conf *lc)
{
    if (strcmp(v, "on") == 0) { lc->so_keepalive = 1; return true; }
    if (strcmp(v, "off") == 0) { lc->so_keepalive = -1; return true; }
    char part[3][32] = { "", "", "" };
    int k = 0;
    size_t len = 0;
    for (const char *p = v; ; p++) {
        if (*p == ':' || *p == '\0') {
            if (k == 3) return false;
            part[k][len] = '\0';
            k++;
            len = 0;
            if (*p == '\0') break;
            continue;
        }
        if (len + 1 >= sizeof(part[0])) return false;
        part[k][len++] = *p;
    }
    if (k != 3) return false;
    int *out[3] = { &lc->keepidle, &lc->keepintvl, &lc->keepcnt };
    for (int i = 0; i < 3; i++) {
        if (!part[i][0]) continue;
        uint64_t x;
        if (i < 2) {
            if (!sg_conf_parse_time_ms(part[i], &x) || x / 1000 == 0 || x / 1000 > 32767) return false;
            x /= 1000;
        } else if (!sg_str_to_u64(sg_str_from(part[i]), &x) || x == 0 || x > 127) {
            return false;
        }
        *out[i] = (int)x;
    }
    lc->so_keepalive = 1;
    return true;
}

/* "ADDR:LO-HI" (or "LO-HI"): true with the ports and, in text, the
 * address followed by ':' and room for a port. */
bool sg_hc_listen_range(const char *arg, int *lo, int *hi, char *text, size_t textlen)
{
    const char *colon = strrchr(arg, ':');
    const char *bracket = strrchr(arg, ']');
    if (colon && bracket && colon < bracket) colon = NULL;   /* "[::1]" alone */
    const char *ports = colon ? colon + 1 : arg;
    const char *dash = strchr(ports, '-');
    if (!dash) return false;
    uint64_t a, b;
    if (!sg_str_to_u64((sg_str){ ports, (size_t)(dash - ports) }, &a) || !sg_str_to_u64(sg_str_from(dash + 1), &b))
        return false;
    size_t hostlen = colon ? (size_t)(colon - arg) : 0;
    if (hostlen + 8 > textlen) return false;
    if (colon) memcpy(text, arg, hostlen);
    else { memcpy(text, "0.0.0.0", 7); hostlen = 7; }
    text[hostlen] = ':';
    text[hostlen + 1] = '\0';
    *lo = a > 65535 ? 65536 : (int)a;
    *hi = b > 65535 ? 65536 : (int)b;
    return true;
}

/* keepalive_disable none | msie6 | safari ... */
bool sg_hc_set_keepalive_disable(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint32_t mask = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        const char *v = n->args[i].s;
        if (strcmp(v, "none") == 0) mask = 0;
        else if (strcmp(v, "msie6") == 0) mask |= SG_KA_DISABLE_MSIE6;
        else if (strcmp(v, "safari") == 0) mask |= SG_KA_DISABLE_SAFARI;
        else return sg_cerr(cx, n->args[i].pos, "invalid value \"%s\" in \"%s\" directive", v, n->name.s);
    }
    *(uint32_t *)((char *)base + cmd->offset) = mask;
    return true;
}
