/* Setters of the bandwidth limits (see rate_conf.h). */
#include "conf/rate_conf.h"
#include "conf/vars.h"
#include "conf/stream_conf.h"

bool sg_rate_set_size(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_cval cv;
    sg_str text = { n->args[0].s, n->args[0].n };
    if (!sg_cval_compile(cx->c, text, n->args[0].pos, &cv, cx->err, cx->errlen)) return false;
    uint64_t v;
    if (cv.literal && !sg_conf_parse_size(n->args[0].s, &v))
        return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive", n->args[0].s, n->name.s);
    if (!base) return true;
    char *f = (char *)base + cmd->offset;
    *(sg_cval *)f = cv;
    *(bool *)(f + cmd->size - sizeof(bool)) = true;
    return true;
}

bool sg_rate_set_stream(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_stream_val *v = sg_arena_alloc(&cx->c->arena, sizeof(*v));
    if (!sg_stream_val_compile(cx->c, (sg_str){ n->args[0].s, n->args[0].n }, n->args[0].pos, v, cx->err, cx->errlen))
        return false;
    bool literal = v->nparts == 0 || (v->nparts == 1 && v->parts[0].var < 0);
    uint64_t size = 0;
    if (literal && !sg_conf_parse_size(n->args[0].s, &size))
        return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive", n->args[0].s, n->name.s);
    if (!base) return true;
    /* 0 is "unlimited", as no value: a level can turn an inherited rate off */
    *(const sg_stream_val **)((char *)base + cmd->offset) = literal && size == 0 ? NULL : v;
    return true;
}
