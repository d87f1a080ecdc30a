/* The rewrite phases at request time: runs the operation lists
 * conf/rewrite.c compiled (nginx's ngx_http_script engine), see
 * proxy/rewrite.h. Nothing is parsed here: regexes, values and jumps
 * were made when the configuration was loaded. */
#include "proxy/rewrite.h"

#include <string.h>
#include <sys/stat.h>

#include "conf/rewrite.h"
#include "exchange/vars.h"
#include "http/status.h"
#include "proxy/handler.h"
#include "proxy/header_filter.h"
#include "proxy/respond.h"
#include "proxy/router.h"

/* nginx's NGX_HTTP_MAX_URI_CHANGES */
#define MAX_URI_CHANGES 10

typedef enum rw_result {
    RW_NEXT,                           /* go on to the next phase */
    RW_RESTART,                        /* the URI changed: search the location again */
    RW_DONE,                           /* answered (return, redirect, error) */
} rw_result;

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_val(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* A capture copied into arguments of a request whose URI had escapes
 * is escaped again (nginx's NGX_ESCAPE_ARGS), so that "%26" stays one
 * argument's text. */
static void append_args_escaped(sg_strbuf *b, sg_str v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c <= 0x20 || c >= 0x7f || c == '#' || c == '%' || c == '&' || c == '+' || c == ';' || c == '?') {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            sg_strbuf_append(b, e, 3);
        } else {
            sg_strbuf_append(b, (const char *)&v.p[i], 1);
        }
    }
}

static bool uri_was_quoted(const sg_http_req *r)
{
    const char *q = memchr(r->request_uri.p ? r->request_uri.p : "", '?', r->request_uri.n);
    size_t n = q ? (size_t)(q - r->request_uri.p) : r->request_uri.n;
    return n && memchr(r->request_uri.p, '%', n) != NULL;
}

/* The replacement of a rewrite, with *qpos the offset of its own '?'
 * (the split between URI and arguments; -1: none). */
static sg_str eval_replacement(sg_http_req *r, const sg_rw_op *op, long *qpos)
{
    const sg_cval *cv = &op->value;
    *qpos = -1;
    if (cv->literal) {
        const char *q = memchr(cv->text.p ? cv->text.p : "", '?', cv->text.n);
        if (q) *qpos = q - cv->text.p;
        return cv->text;
    }
    bool quoted = uri_was_quoted(r);
    sg_strbuf b = { 0 };
    for (size_t i = 0; i < cv->nparts; i++) {
        const sg_cval_part *p = &cv->parts[i];
        if (p->var < 0) {
            const char *q = *qpos < 0 && p->lit.n ? memchr(p->lit.p, '?', p->lit.n) : NULL;
            if (q) *qpos = (long)b.n + (q - p->lit.p);
            sg_strbuf_append_str(&b, p->lit);
            continue;
        }
        sg_str v = sg_var_get(r, p->var);
        if (*qpos >= 0 && quoted && r->gen->vars.defs[p->var].kind == SG_VAR_CAPTURE)
            append_args_escaped(&b, v);
        else if (v.n)
            sg_strbuf_append_str(&b, v);
    }
    sg_str out = sg_arena_str(&r->arena, (sg_str){ b.p ? b.p : "", b.n });
    sg_strbuf_free(&b);
    return out;
}

/* nginx's NGX_UNESCAPE_REDIRECT over a redirect's URL: escapes of
 * printable characters are decoded up to the first '?' (written or
 * decoded); control characters and spaces stay escaped. In place. */
static size_t unescape_redirect(char *p, size_t n)
{
    size_t i = 0, o = 0;
    while (i < n) {
        char c = p[i];
        if (c == '?') break;
        if (c == '%' && i + 2 < n + 0 && is_hex(p[i + 1]) && is_hex(p[i + 2])) {
            int ch = hex_val(p[i + 1]) * 16 + hex_val(p[i + 2]);
            if (ch == '?') {
                p[o++] = '?';
                i += 3;
                break;
            }
            if (ch > '%' && ch < 0x7f) {
                p[o++] = (char)ch;
            } else {
                p[o++] = '%';
                p[o++] = p[i + 1];
                p[o++] = p[i + 2];
            }
            i += 3;
            continue;
        }
        p[o++] = c;
        i++;
    }
    while (i < n) p[o++] = p[i++];
    return o;
}

static void set_named(sg_http_req *r, const sg_rw_op *op)
{
    for (size_t i = 0; i < op->nnamed; i++) {
        int g = op->named[i].group;
        sg_str v = SG_STR("");
        if (g < r->ncaptures && g < SG_MAX_CAPTURES && r->captures[2 * g] >= 0) {
            long a = r->captures[2 * g], b = r->captures[2 * g + 1];
            v = sg_arena_str(&r->arena, (sg_str){ r->capture_subject.p + a, (size_t)(b - a) });
        }
        sg_var_set(r, op->named[i].var, v);
    }
}

static bool file_test(sg_http_req *r, const sg_rw_op *op)
{
    sg_str v = sg_cval_eval(&op->a, r);
    char *path = sg_arena_strndup(&r->arena, v.p ? v.p : "", v.n);
    struct stat st;
    bool ok = stat(path, &st) == 0;
    switch (op->cond) {
    case SG_RWC_FILE: return ok && S_ISREG(st.st_mode);
    case SG_RWC_DIR: return ok && S_ISDIR(st.st_mode);
    case SG_RWC_EXEC: return ok && (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
    default: return ok;
    }
}

static bool condition(sg_exchange *ex, const sg_rw_op *op)
{
    sg_http_req *r = &ex->req;
    sg_str a, b;
    bool res;
    switch (op->cond) {
    case SG_RWC_VAR:
        a = sg_cval_eval(&op->a, r);
        return !(a.n == 0 || (a.n == 1 && a.p[0] == '0'));
    case SG_RWC_EQ: case SG_RWC_NE:
        a = sg_cval_eval(&op->a, r);
        b = sg_cval_eval(&op->b, r);
        res = a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
        return op->cond == SG_RWC_EQ ? res : !res;
    case SG_RWC_MATCH:
        a = sg_cval_eval(&op->a, r);
        res = sg_regex_exec(op->re, a, r);
        if (res) set_named(r, op);
        return res != op->negate;
    default:
        return file_test(r, op) != op->negate;
    }
}

static bool rw_log(const sg_exchange *ex)
{
    return ex->req.loc && ex->req.loc->conf.rewrite_log;
}

/* One rewrite that matched. */
static rw_result do_rewrite(sg_exchange *ex, const sg_rw_op *op, bool server, bool *changed)
{
    sg_http_req *r = &ex->req;
    long q;
    sg_str out = eval_replacement(r, op, &q);
    if (op->redirect) {
        sg_strbuf b = { 0 };
        sg_strbuf_append_str(&b, out);
        b.n = unescape_redirect(b.p ? b.p : (char *)"", b.n);
        if (op->add_args && r->args.n) {
            sg_strbuf_append(&b, op->has_args ? "&" : "?", 1);
            sg_strbuf_append_str(&b, r->args);
        }
        sg_str loc = sg_arena_str(&r->arena, (sg_str){ b.p ? b.p : "", b.n });
        sg_strbuf_free(&b);
        int code = op->flag == SG_RWF_PERMANENT ? 301 : 302;
        if (rw_log(ex))
            sg_ex_log(ex, SG_LOG_NOTICE, "rewritten redirect: \"%.*s\"", (int)loc.n, loc.p);
        sg_respond_simple(ex, code, SG_STR("text/html"), sg_http_error_body(code), loc);
        return RW_DONE;
    }
    sg_str uri = q >= 0 ? (sg_str){ out.p, (size_t)q } : out;
    if (q >= 0) {
        sg_str args = { out.p + q + 1, out.n - (size_t)q - 1 };
        if (op->add_args && r->args.n) {
            char *p = sg_arena_alloc(&r->arena, args.n + r->args.n + 2);
            memcpy(p, args.p, args.n);
            p[args.n] = '&';
            memcpy(p + args.n + 1, r->args.p, r->args.n);
            p[args.n + 1 + r->args.n] = '\0';
            args = (sg_str){ p, args.n + 1 + r->args.n };
        }
        r->args = args;
        r->has_args = true;
    } else if (!op->add_args) {
        r->args = SG_STR("");
        r->has_args = false;
    }
    if (uri.n == 0) {
        sg_ex_log(ex, SG_LOG_ERROR, "the rewritten URI has a zero length");
        sg_respond_error(ex, 500);
        return RW_DONE;
    }
    r->uri = uri;
    r->uri_rewritten = true;
    ex->req_internal = true;           /* nginx: a rewritten request may enter `internal` locations */
    if (rw_log(ex))
        sg_ex_log(ex, SG_LOG_NOTICE, "rewritten data: \"%.*s\", args: \"%.*s\"", (int)uri.n, uri.p,
                  (int)r->args.n, r->args.p ? r->args.p : "");
    switch (op->flag) {
    case SG_RWF_LAST:
        return server ? RW_NEXT : RW_RESTART;
    case SG_RWF_BREAK:
        r->rw_location_invalid = true;
        return RW_NEXT;
    default:
        *changed = true;
        return RW_RESTART;             /* the caller goes on with the next op */
    }
}

/* The operations of one level; `server`: the server rewrite phase, where
 * a changed URI is searched anyway. */
static rw_result run_ops(sg_exchange *ex, const sg_location *owner, bool server)
{
    const sg_rw_ops *ops = owner->conf.rw;
    sg_http_req *r = &ex->req;
    bool changed = false;
    size_t i = 0;
    while (ops && i < ops->n) {
        const sg_rw_op *op = &ops->ops[i];
        rw_result rc;
        switch (op->kind) {
        case SG_RW_IF:
            if (condition(ex, op)) {
                /* nginx keeps the content handler an earlier block set:
                 * proxying with a block that has no proxy_pass is a 500 */
                if (op->ifloc->conf.proxy_pass) r->rw_lost_pass = false;
                else if (r->loc->conf.proxy_pass) r->rw_lost_pass = true;
                r->loc = op->ifloc;    /* its directives apply from now on */
                i++;
            } else {
                i = op->jump;
            }
            continue;
        case SG_RW_SET:
            sg_var_set(r, op->var, sg_cval_eval(&op->value, r));
            break;
        case SG_RW_REWRITE:
            if (!sg_regex_exec(op->re, r->uri, r)) {
                if (rw_log(ex))
                    sg_ex_log(ex, SG_LOG_NOTICE, "\"%.*s\" does not match \"%.*s\"", (int)op->re_text.n,
                              op->re_text.p, (int)r->uri.n, r->uri.p);
                break;
            }
            set_named(r, op);
            if (rw_log(ex))
                sg_ex_log(ex, SG_LOG_NOTICE, "\"%.*s\" matches \"%.*s\"", (int)op->re_text.n, op->re_text.p,
                          (int)r->uri.n, r->uri.p);
            rc = do_rewrite(ex, op, server, &changed);
            if (rc == RW_DONE || op->flag == SG_RWF_LAST || op->flag == SG_RWF_BREAK) return rc;
            break;
        case SG_RW_RETURN:
            sg_respond_return_conf(ex, op->ret);
            return RW_DONE;
        case SG_RW_BREAK:
            if (changed) r->rw_location_invalid = true;
            return RW_NEXT;
        }
        i++;
    }
    return changed && !server ? RW_RESTART : RW_NEXT;
}

/* nginx's auto redirect: "/dir" naming no location but a proxy_pass or
 * grpc_pass location "/dir/" is sent there with a 301. */
static bool auto_redirect(sg_exchange *ex, const sg_location *found)
{
    sg_http_req *r = &ex->req;
    if (found && found->match != SG_LOC_PREFIX && found->match != SG_LOC_PREFIX_NOREGEX) return false;
    if (found && found->name.n > r->uri.n) return false;
    const sg_location *root = r->srv->root;
    for (size_t i = 0; i < root->nchildren; i++) {
        const sg_location *l = root->children[i];
        if ((l->match != SG_LOC_PREFIX && l->match != SG_LOC_PREFIX_NOREGEX) || !l->conf.proxy_pass ||
            l->name.n != r->uri.n + 1 || l->name.p[r->uri.n] != '/' || memcmp(l->name.p, r->uri.p, r->uri.n) != 0)
            continue;
        /* the request's URI escaped, then "/" and its arguments (nginx
         * escapes the Location: "/auto sp" -> "/auto%20sp/") */
        r->loc = found ? found : root;
        sg_respond_simple(ex, 301, SG_STR("text/html"), sg_http_error_body(301), sg_hf_slash_location(ex));
        return true;
    }
    return false;
}

static bool method_allowed(const sg_http_req *r, const sg_loc_conf *lc)
{
    for (size_t i = 0; i < lc->nlmt_methods; i++)
        if (sg_str_eq(lc->lmt_methods[i], r->method)) return true;
    return false;
}

static void locations(sg_exchange *ex, const sg_location *loc)
{
    sg_http_req *r = &ex->req;
    for (;;) {
        if (!loc) {
            loc = sg_router_location(r->srv, r->uri, r);
            if (auto_redirect(ex, loc)) return;
            /* no location: nginx serves with the server's own configuration */
            if (!loc) loc = r->srv->root;
        }
        r->loc = loc;
        r->rw_location_invalid = false;
        r->rw_lost_pass = false;
        if (loc->conf.internal && !ex->req_internal) {
            sg_respond_error(ex, 404);
            return;
        }
        /* a method limit_except does not name takes its block's
         * configuration, whose rewrite operations are its own (none: nginx
         * does not inherit them), so a `return` of the location is not run */
        const sg_location *ops = loc;
        if (loc->conf.lmt_block && !method_allowed(r, &loc->conf)) ops = r->loc = loc->conf.lmt_block;
        rw_result rc = run_ops(ex, ops, false);
        if (rc == RW_DONE) return;
        if (rc == RW_NEXT) break;
        if (++r->rw_cycles > MAX_URI_CHANGES) {
            sg_ex_log(ex, SG_LOG_ERROR, "rewrite or internal redirection cycle while processing \"%.*s\"",
                      (int)r->uri.n, r->uri.p);
            sg_respond_error(ex, 500);
            return;
        }
        loc = NULL;
    }
    if (r->rw_lost_pass) {
        sg_ex_log(ex, SG_LOG_ERROR, "an \"if\" block without proxy_pass matched after one with it");
        sg_respond_error(ex, 500);
        return;
    }
    sg_handler_run_location(ex);
}

void sg_rewrite_run(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    r->loc = r->srv->root;
    if (run_ops(ex, r->srv->root, true) == RW_DONE) return;
    locations(ex, NULL);
}

void sg_rewrite_run_named(sg_exchange *ex, const sg_location *loc)
{
    locations(ex, loc);
}
