/* Upstream balancer directives of issue 11 (area: balance). */
#include "conf/balance_conf.h"

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
