/* The rewrite module's directives (nginx's ngx_http_rewrite_module),
 * compiled into each level's operation list: see conf/rewrite.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "conf/rewrite.h"

#include <pcre2.h>
#include <string.h>
#include <strings.h>

static sg_str arg_s(const sg_carg *a)
{
    return (sg_str){ a->s, a->n };
}

/* The list the current level's operations go to: the enclosing real
 * location's (an `if` block's are inlined into it). */
static sg_rw_ops *owner_ops(sg_cctx *cx)
{
    sg_location *l = cx->cur->loc;
    while (l->match == SG_LOC_IF && l->parent) l = l->parent;
    if (!l->conf.rw) {
        l->conf.rw = sg_arena_alloc(&cx->c->arena, sizeof(sg_rw_ops));
        memset(l->conf.rw, 0, sizeof(sg_rw_ops));
    }
    return l->conf.rw;
}

static sg_rw_op *push_op(sg_cctx *cx, sg_rw_kind kind, sg_conf_pos pos)
{
    sg_rw_ops *ops = owner_ops(cx);
    ops->ops = sg_conf_push(&cx->c->arena, ops->ops, ops->n, sizeof(sg_rw_op));
    sg_rw_op *op = &ops->ops[ops->n++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->pos = pos;
    return op;
}

/* A user variable ($name): made by `set` and by named captures. */
static int user_var(sg_cctx *cx, sg_str name, sg_conf_pos pos)
{
    char err[256];
    int i = sg_var_define_user(cx->c, name, err, sizeof(err));
    if (i < 0) sg_cerr(cx, pos, "%s", err);
    return i;
}

/* Compiles a regex of `if` or `rewrite`; its named captures become
 * variables, as nginx makes them. */
static bool compile_regex(sg_cctx *cx, const sg_carg *a, sg_str re, bool caseless, sg_rw_op *op)
{
    char msg[512];
    pcre2_code *code = sg_regex_compile(re, caseless, msg, sizeof(msg));
    if (!code) return sg_cerr(cx, a->pos, "%s", msg);
    sg_conf_add_regex(cx->c, code);
    op->re = code;
    op->re_text = sg_arena_str(&cx->c->arena, re);
    uint32_t count = 0, size = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(code, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(code, PCRE2_INFO_NAMEENTRYSIZE, &size);
    pcre2_pattern_info(code, PCRE2_INFO_NAMETABLE, &table);
    if (count == 0 || !table) return true;
    op->named = sg_arena_alloc(&cx->c->arena, count * sizeof(sg_rw_named));
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *e = table + (size_t)i * size;
        int group = (e[0] << 8) | e[1];
        sg_str name = sg_str_from((const char *)e + 2);
        int v = user_var(cx, name, a->pos);
        if (v < 0) return false;
        op->named[op->nnamed++] = (sg_rw_named){ v, group };
    }
    return true;
}

static bool cval(sg_cctx *cx, const sg_carg *a, sg_str text, sg_cval *out)
{
    return sg_cval_compile(cx->c, text, a->pos, out, cx->err, cx->errlen);
}

/* Directives an `if` block may not hold (nginx: "not allowed here");
 * a limit_except block holds none of the rewrite module's either. */
static bool if_block_check(sg_cctx *cx, const sg_cnode *n, bool limit_except)
{
    static const char *const rw[] = { "set", "rewrite", "break", "return", NULL };
    for (size_t i = 0; i < n->nkids; i++) {
        const char *name = n->kids[i].name.s;
        bool bad = strcmp(name, "location") == 0 || strcmp(name, "if") == 0;
        for (int k = 0; limit_except && rw[k]; k++) bad = bad || strcmp(name, rw[k]) == 0;
        if (bad) return sg_cerr(cx, n->kids[i].name.pos, "\"%s\" directive is not allowed here", name);
    }
    return true;
}

static bool invalid_condition(sg_cctx *cx, const sg_cnode *n, const sg_carg *a)
{
    return sg_cerr(cx, a ? a->pos : n->name.pos, "invalid condition \"%s\"", a ? a->s : "");
}

/* The condition's arguments, without the parentheses the lexer leaves
 * on the first and the last (nginx's ngx_http_rewrite_if does the same). */
static bool parse_condition(sg_cctx *cx, const sg_cnode *n, sg_rw_op *op)
{
    sg_carg args[3];
    size_t na = 0;
    for (size_t i = 0; i < n->nargs && na < 4; i++) {
        sg_carg a = n->args[i];
        if (i == 0 && !a.quoted && a.n && a.s[0] == '(') { a.s++; a.n--; a.pos.col++; }
        if (i == n->nargs - 1 && !a.quoted && a.n && a.s[a.n - 1] == ')') {
            /* a copy: the argument's text is shared with -T's tree */
            a.s = sg_arena_strndup(&cx->c->arena, a.s, a.n - 1);
            a.n--;
        }
        if (a.n == 0 && !a.quoted && (i == 0 || i == n->nargs - 1)) continue;   /* "(" or ")" alone */
        if (na == 3) return invalid_condition(cx, n, &n->args[i]);
        args[na++] = a;
    }
    if (na == 0) return invalid_condition(cx, n, NULL);
    if (na == 1) {
        if (args[0].n < 2 || args[0].s[0] != '$') return invalid_condition(cx, n, &args[0]);
        op->cond = SG_RWC_VAR;
        return cval(cx, &args[0], arg_s(&args[0]), &op->a);
    }
    if (na == 2) {
        const char *t = args[0].s;
        op->negate = t[0] == '!';
        if (op->negate) t++;
        if (strcmp(t, "-f") == 0) op->cond = SG_RWC_FILE;
        else if (strcmp(t, "-d") == 0) op->cond = SG_RWC_DIR;
        else if (strcmp(t, "-e") == 0) op->cond = SG_RWC_EXISTS;
        else if (strcmp(t, "-x") == 0) op->cond = SG_RWC_EXEC;
        else return sg_cerr(cx, args[0].pos, "unexpected \"%s\" in condition", args[0].s);
        return cval(cx, &args[1], arg_s(&args[1]), &op->a);
    }
    if (args[0].n < 2 || args[0].s[0] != '$')
        return sg_cerr(cx, args[0].pos, "unexpected \"%s\" in condition", args[0].s);
    if (!cval(cx, &args[0], arg_s(&args[0]), &op->a)) return false;
    const char *o = args[1].s;
    if (strcmp(o, "=") == 0 || strcmp(o, "!=") == 0) {
        op->cond = o[0] == '!' ? SG_RWC_NE : SG_RWC_EQ;
        return cval(cx, &args[2], arg_s(&args[2]), &op->b);
    }
    bool neg = o[0] == '!';
    if (neg) o++;
    if (strcmp(o, "~") != 0 && strcmp(o, "~*") != 0)
        return sg_cerr(cx, args[1].pos, "unexpected \"%s\" in condition", args[1].s);
    op->cond = SG_RWC_MATCH;
    op->negate = neg;
    return compile_regex(cx, &args[2], arg_s(&args[2]), o[1] == '*', op);
}

/* A location for an `if` or `limit_except` block below the current
 * level, whose block is then read in ctx. */
static sg_location *block_location(sg_cctx *cx, const sg_cnode *n, const char *name, uint32_t ctx)
{
    sg_arena *ar = &cx->c->arena;
    sg_lvl *up = cx->cur;
    sg_location *parent = up->loc;
    sg_location *loc = sg_arena_alloc(ar, sizeof(*loc));
    memset(loc, 0, sizeof(*loc));
    loc->match = SG_LOC_IF;
    loc->name = sg_str_from(name);
    loc->pos = n->name.pos;
    loc->parent = parent;
    /* among the children for the walks over every location (logs, TLS
     * contexts); the router never chooses one */
    parent->children = sg_conf_push(ar, parent->children, parent->nchildren, sizeof(sg_location *));
    parent->children[parent->nchildren++] = loc;
    sg_lvl *l = sg_directives_level(cx, up);
    l->conf = &loc->conf;
    l->loc = loc;
    return sg_directives_enter(cx, l, n, ctx) ? loc : NULL;
}

/* limit_except METHOD ... { ... } */
bool sg_rw_set_limit_except(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    static const char *const methods[] = {
        "GET", "HEAD", "POST", "PUT", "DELETE", "MKCOL", "COPY", "MOVE", "OPTIONS",
        "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "PATCH", NULL,
    };
    sg_loc_conf *lc = base;
    sg_arena *ar = &cx->c->arena;
    if (!if_block_check(cx, n, true)) return false;
    lc->lmt_methods = sg_arena_alloc(ar, (n->nargs + 1) * sizeof(sg_str));
    lc->nlmt_methods = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        int k = 0;
        while (methods[k] && strcasecmp(methods[k], n->args[i].s) != 0) k++;
        if (!methods[k]) return sg_cerr(cx, n->args[i].pos, "invalid method \"%s\"", n->args[i].s);
        lc->lmt_methods[lc->nlmt_methods++] = sg_str_from(methods[k]);
        if (k == 0) lc->lmt_methods[lc->nlmt_methods++] = SG_STR("HEAD");
    }
    lc->lmt_block = block_location(cx, n, "(limit_except)", SG_CTX_LOCATION);
    return lc->lmt_block != NULL;
}

bool sg_rw_set_if(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (!if_block_check(cx, n, false)) return false;
    sg_rw_op *op = push_op(cx, SG_RW_IF, n->name.pos);
    size_t at = owner_ops(cx)->n - 1;
    if (!parse_condition(cx, n, op)) return false;

    bool server = cx->ctx == SG_CTX_SERVER;
    sg_location *loc = block_location(cx, n, "(if)", server ? SG_CTX_SIF : SG_CTX_LOCATION);
    if (!loc) return false;
    sg_rw_ops *ops = owner_ops(cx);    /* the block's ops may have moved the list: op is stale */
    ops->ops[at].ifloc = loc;
    ops->ops[at].jump = ops->n;
    return true;
}

/* set $variable value */
bool sg_rw_set_set(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    if (a->n < 2 || a->s[0] != '$') return sg_cerr(cx, a->pos, "invalid variable name \"%s\"", a->s);
    int v = user_var(cx, (sg_str){ a->s + 1, a->n - 1 }, a->pos);
    if (v < 0) return false;
    sg_rw_op *op = push_op(cx, SG_RW_SET, n->name.pos);
    op->var = v;
    return cval(cx, &n->args[1], arg_s(&n->args[1]), &op->value);
}

static bool starts_lit(sg_str s, const char *lit)
{
    size_t k = strlen(lit);
    return s.n >= k && memcmp(s.p, lit, k) == 0;
}

/* rewrite regex replacement [last|break|redirect|permanent] */
bool sg_rw_set_rewrite(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_rw_op *op = push_op(cx, SG_RW_REWRITE, n->name.pos);
    if (!compile_regex(cx, &n->args[0], arg_s(&n->args[0]), false, op)) return false;
    sg_str repl = arg_s(&n->args[1]);
    op->redirect = starts_lit(repl, "http://") || starts_lit(repl, "https://") ||
                   starts_lit(repl, "$scheme");
    if (n->nargs == 3) {
        static const char *const flags[] = { "last", "break", "redirect", "permanent", NULL };
        const char *f = n->args[2].s;
        int k = 0;
        while (flags[k] && strcmp(flags[k], f) != 0) k++;
        if (!flags[k]) return sg_cerr(cx, n->args[2].pos, "invalid parameter \"%s\"", f);
        op->flag = k + 1;
        if (op->flag == SG_RWF_REDIRECT || op->flag == SG_RWF_PERMANENT) op->redirect = true;
    }
    op->add_args = true;
    if (repl.n && repl.p[repl.n - 1] == '?') {   /* a final '?' drops the request's args */
        repl.n--;
        op->add_args = false;
    }
    op->has_args = memchr(repl.p, '?', repl.n) != NULL;
    return cval(cx, &n->args[1], repl, &op->value);
}

bool sg_rw_set_break(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    push_op(cx, SG_RW_BREAK, n->name.pos);
    return true;
}

void sg_rw_add_return(sg_cctx *cx, const sg_cnode *n, const sg_loc_conf *lc)
{
    push_op(cx, SG_RW_RETURN, n->name.pos)->ret = lc;
}

static void finish_location(sg_location *l)
{
    for (size_t i = 0; i < l->nchildren; i++) {
        sg_location *ch = l->children[i];
        if (ch->match == SG_LOC_IF && !ch->conf.proxy_pass) {
            ch->conf.proxy_pass = l->conf.proxy_pass;
            ch->conf.is_grpc = l->conf.is_grpc;
            ch->conf.pass_opts = ch->conf.is_grpc ? &ch->conf.grpc : &ch->conf.proxy;
        }
        finish_location(ch);
    }
}

void sg_rw_finish(sg_cctx *cx)
{
    sg_conf *c = cx->c;
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        if (s->root) finish_location(s->root);
        for (size_t k = 0; k < s->nnamed; k++) finish_location(s->named[k]);
    }
}
