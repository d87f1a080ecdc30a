/* charset directives: see charset_conf.h. */
#include "conf/charset_conf.h"

#include <ctype.h>
#include <string.h>

#include "conf/vars.h"

bool sg_charset_set_name(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_cval *v = (sg_cval *)((char *)base + cmd->offset);
    /* the line's range ends with the bool (LOC_RANGE(name, on)) */
    bool *on = (bool *)((char *)base + cmd->offset + cmd->size - sizeof(bool));
    const sg_carg *a = &n->args[0];
    if (strcmp(a->s, "off") == 0) {
        *v = (sg_cval){ 0 };
        *on = false;
        return true;
    }
    if (a->n == 0) return sg_cerr(cx, a->pos, "invalid value \"\" in \"%s\" directive", n->name.s);
    char err[256];
    if (!sg_cval_compile(cx->c, (sg_str){ a->s, a->n }, a->pos, v, err, sizeof(err)))
        return sg_cerr(cx, a->pos, "%s", err);
    *on = true;
    return true;
}

static void push_type(sg_arena *a, sg_loc_conf *lc, const char *s, size_t n)
{
    char *low = sg_arena_strndup(a, s, n);
    for (size_t k = 0; k < n; k++) low[k] = (char)tolower((unsigned char)low[k]);
    lc->charset_types = sg_conf_push(a, lc->charset_types, lc->ncharset_types, sizeof(sg_str));
    lc->charset_types[lc->ncharset_types++] = (sg_str){ low, n };
}

bool sg_charset_set_types(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    (void)cmd;
    sg_loc_conf *lc = base;
    lc->charset_types = NULL;
    lc->ncharset_types = 0;
    lc->charset_types_any = false;
    for (size_t i = 0; i < n->nargs; i++) {
        const sg_carg *t = &n->args[i];
        if (strcmp(t->s, "*") == 0) lc->charset_types_any = true;
        else push_type(&cx->c->arena, lc, t->s, t->n);
    }
    return true;
}

bool sg_charset_set_output_buffers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    (void)cmd;
    (void)base;
    uint64_t num, size;
    if (!sg_str_to_u64(sg_str_from(n->args[0].s), &num) || num == 0)
        return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive", n->args[0].s, n->name.s);
    if (!sg_conf_parse_size(n->args[1].s, &size) || size == 0)
        return sg_cerr(cx, n->args[1].pos, "invalid value \"%s\" in \"%s\" directive", n->args[1].s, n->name.s);
    sg_cnotice(cx, n->name.pos, "\"%s\" is accepted and not used: streamgate sends each piece of a "
               "response as it is read and keeps no output buffers", n->name.s);
    return true;
}

void sg_charset_conf_defaults(sg_loc_conf *lc)
{
    /* static storage: the defaults are shared by every location and never
     * written (charset_types replaces the pointer) */
#define T(s) { s, sizeof(s) - 1 }
    static const sg_str defaults[] = {
        T("text/html"), T("text/xml"), T("text/plain"), T("text/vnd.wap.wml"),
        T("application/javascript"), T("application/rss+xml"),
    };
#undef T
    lc->charset_types = (sg_str *)defaults;
    lc->ncharset_types = sizeof(defaults) / sizeof(defaults[0]);
}
