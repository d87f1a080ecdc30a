/* nginx's rewrite module, compile side: `if`, `set`, `rewrite`, `break`
 * and `return` become one list of operations per server and per location
 * (nginx's script codes), in the order they are written; an `if` block's
 * operations are inlined after its test, which jumps past them when the
 * condition is false. Regexes are compiled here, once per generation.
 * The request-time runner is proxy/rewrite.c.
 *
 * An `if` block is also a location of its own (match SG_LOC_IF, a child
 * of the location it is written in, never chosen by the router): the
 * directives inside it (proxy_pass, add_header, ...) apply when its
 * condition holds, inheriting the rest from the enclosing location. */
#ifndef SG_CONF_REWRITE_H
#define SG_CONF_REWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"
#include "conf/directives.h"

typedef enum sg_rw_kind {
    SG_RW_IF = 0,
    SG_RW_SET,
    SG_RW_REWRITE,
    SG_RW_RETURN,
    SG_RW_BREAK,
} sg_rw_kind;

typedef enum sg_rw_cond {
    SG_RWC_VAR = 0,                    /* a value alone: false when empty or "0" */
    SG_RWC_EQ, SG_RWC_NE,              /* = != */
    SG_RWC_MATCH, SG_RWC_NMATCH,       /* ~ ~* and !~ !~* (caseless in the regex) */
    SG_RWC_FILE, SG_RWC_DIR, SG_RWC_EXISTS, SG_RWC_EXEC,   /* -f -d -e -x */
} sg_rw_cond;

enum {                                 /* rewrite flags */
    SG_RWF_NONE = 0, SG_RWF_LAST, SG_RWF_BREAK, SG_RWF_REDIRECT, SG_RWF_PERMANENT,
};

/* A named capture of a regex: the user variable it sets. */
typedef struct sg_rw_named {
    int var;                           /* variable index */
    int group;                         /* capture group number */
} sg_rw_named;

typedef struct sg_rw_op {
    sg_rw_kind kind;
    sg_conf_pos pos;
    /* SG_RW_IF */
    sg_rw_cond cond;
    bool negate;                       /* != !~ !-f ... */
    sg_cval a, b;                      /* the value tested; the right side of = and != */
    size_t jump;                       /* first op after the block: taken when false */
    sg_location *ifloc;                /* the block's configuration */
    /* SG_RW_IF (~), SG_RW_REWRITE: the regex and its named captures */
    void *re;
    sg_str re_text;
    sg_rw_named *named;
    size_t nnamed;
    /* SG_RW_SET */
    int var;
    sg_cval value;                     /* also the rewrite replacement, without a final '?' */
    /* SG_RW_REWRITE */
    int flag;                          /* SG_RWF_* */
    bool redirect;                     /* an absolute URL, or redirect/permanent */
    bool add_args;                     /* no final '?': the request's args are appended */
    bool has_args;                     /* the replacement has a '?' of its own */
    /* SG_RW_RETURN: code and text are the conf's return fields */
    const sg_loc_conf *ret;
} sg_rw_op;

typedef struct sg_rw_ops {
    sg_rw_op *ops;
    size_t n;
} sg_rw_ops;

/* The real location an `if` block belongs to (itself for any other). */
static inline const sg_location *sg_rw_real_location(const sg_location *l)
{
    while (l && l->match == SG_LOC_IF && l->parent) l = l->parent;
    return l;
}

/* Directive setters (rows of conf/directives.c). */
bool sg_rw_set_if(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_rw_set_set(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_rw_set_rewrite(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_rw_set_limit_except(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_rw_set_break(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* `return`: its setter (conf/directives.c) fills the conf's return
 * fields, then this appends the op that answers with them. */
void sg_rw_add_return(sg_cctx *cx, const sg_cnode *n, const sg_loc_conf *lc);

/* After merging: an `if` block without its own proxy_pass/grpc_pass
 * takes the enclosing location's, as nginx does. */
void sg_rw_finish(sg_cctx *cx);

#endif
