/* gzip_* directives: see gzip_conf.h. */
#include "conf/gzip_conf.h"

#include <ctype.h>
#include <string.h>

#include "conf/vars.h"

bool sg_gzip_set_comp_level(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!sg_str_to_u64(sg_str_from(n->args[0].s), &v))
        return sg_cerr(cx, n->args[0].pos, "invalid number \"%s\" in \"%s\" directive", n->args[0].s, n->name.s);
    if (v < 1 || v > 9)
        return sg_cerr(cx, n->args[0].pos, "\"%s\" must be between 1 and 9", n->name.s);
    *(uint32_t *)((char *)base + cmd->offset) = (uint32_t)v;
    return true;
}

bool sg_gzip_set_http_version(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint32_t v;
    if (strcmp(n->args[0].s, "1.0") == 0) v = 10;
    else if (strcmp(n->args[0].s, "1.1") == 0) v = 11;
    else return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive, it must be \"1.0\" or \"1.1\"",
                        n->args[0].s, n->name.s);
    *(uint32_t *)((char *)base + cmd->offset) = v;
    return true;
}

bool sg_gzip_set_proxied(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    static const struct { const char *name; uint32_t bit; } vals[] = {
        { "off", SG_GZIP_PROXIED_OFF }, { "expired", SG_GZIP_PROXIED_EXPIRED },
        { "no-cache", SG_GZIP_PROXIED_NO_CACHE }, { "no-store", SG_GZIP_PROXIED_NO_STORE },
        { "private", SG_GZIP_PROXIED_PRIVATE }, { "no_last_modified", SG_GZIP_PROXIED_NO_LM },
        { "no_etag", SG_GZIP_PROXIED_NO_ETAG }, { "auth", SG_GZIP_PROXIED_AUTH },
        { "any", SG_GZIP_PROXIED_ANY },
    };
    uint32_t mask = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        size_t k = 0;
        while (k < sizeof(vals) / sizeof(vals[0]) && strcmp(vals[k].name, n->args[i].s) != 0) k++;
        if (k == sizeof(vals) / sizeof(vals[0]))
            return sg_cerr(cx, n->args[i].pos, "invalid value \"%s\" in \"%s\" directive", n->args[i].s, n->name.s);
        mask |= vals[k].bit;
    }
    /* nginx: "off" with anything else is refused */
    if ((mask & SG_GZIP_PROXIED_OFF) && mask != SG_GZIP_PROXIED_OFF)
        return sg_cerr(cx, n->name.pos, "\"off\" cannot be combined with other values in \"%s\" directive", n->name.s);
    *(uint32_t *)((char *)base + cmd->offset) = mask;
    return true;
}

bool sg_gzip_set_types(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    sg_arena *a = &cx->c->arena;
    lc->gzip_types = NULL;
    lc->ngzip_types = 0;
    lc->gzip_types_any = false;
    for (size_t i = 0; i < n->nargs; i++) {
        const sg_carg *t = &n->args[i];
        if (strcmp(t->s, "*") == 0) {
            lc->gzip_types_any = true;
            continue;
        }
        char *low = sg_arena_strndup(a, t->s, t->n);
        for (size_t k = 0; k < t->n; k++) low[k] = (char)tolower((unsigned char)low[k]);
        lc->gzip_types = sg_conf_push(a, lc->gzip_types, lc->ngzip_types, sizeof(sg_str));
        lc->gzip_types[lc->ngzip_types++] = (sg_str){ low, t->n };
    }
    return true;
}

bool sg_gzip_set_disable(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_loc_conf *lc = base;
    lc->gzip_disable = NULL;
    lc->ngzip_disable = 0;
    lc->gzip_disable_msie6 = false;
    for (size_t i = 0; i < n->nargs; i++) {
        const sg_carg *t = &n->args[i];
        if (strcmp(t->s, "msie6") == 0) {
            lc->gzip_disable_msie6 = true;
            continue;
        }
        char msg[512];
        /* nginx compiles these caselessly (ngx_http_gzip_disable) */
        void *re = sg_regex_compile((sg_str){ t->s, t->n }, true, msg, sizeof(msg));
        if (!re) return sg_cerr(cx, t->pos, "%s", msg);
        sg_conf_add_regex(cx->c, re);
        lc->gzip_disable = sg_conf_push(&cx->c->arena, lc->gzip_disable, lc->ngzip_disable, sizeof(void *));
        lc->gzip_disable[lc->ngzip_disable++] = re;
    }
    return true;
}

bool sg_gzip_set_buffers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t num, size;
    if (!sg_str_to_u64(sg_str_from(n->args[0].s), &num) || num == 0)
        return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive", n->args[0].s, n->name.s);
    if (!sg_conf_parse_size(n->args[1].s, &size) || size == 0)
        return sg_cerr(cx, n->args[1].pos, "invalid value \"%s\" in \"%s\" directive", n->args[1].s, n->name.s);
    sg_cnotice(cx, n->name.pos, "\"%s\" is accepted and not used: streamgate compresses each piece of "
               "the body as it arrives and keeps no output buffers", n->name.s);
    return true;
}

void sg_gzip_conf_defaults(sg_loc_conf *lc)
{
    lc->gzip_comp_level = 1;
    lc->gzip_min_length = 20;
    lc->gzip_http_version = 11;
    lc->gzip_proxied = SG_GZIP_PROXIED_OFF;
}
