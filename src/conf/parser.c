/* Configuration text -> tree of directives, with "include" expanded. */
#include "conf/parser.h"
#include "conf/lexer.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    sg_conf *c;
    sg_lexer lx;
    int depth;                   /* include nesting */
    int blocks;                  /* { } nesting, bounded so the recursion is */
    char *err;
    size_t errlen;
} parser;

static bool parse_block(parser *ps, sg_cnode *parent, bool nested);

void *sg_conf_push(sg_arena *a, void *arr, size_t n, size_t elsize)
{
    if (n == 0 || (n & (n - 1)) == 0) {            /* full: n is the capacity */
        void *grown = sg_arena_alloc(a, (n ? 2 * n : 1) * elsize);
        if (n) memcpy(grown, arr, n * elsize);
        arr = grown;
    }
    memset((char *)arr + n * elsize, 0, elsize);
    return arr;
}

char *sg_conf_full_path(sg_conf *c, const char *path)
{
    if (path[0] == '/') return sg_arena_strndup(&c->arena, path, strlen(path));
    size_t pl = strlen(c->prefix), n = strlen(path);
    if (pl == 1 && c->prefix[0] == '/') pl = 0;          /* prefix "/" */
    char *out = sg_arena_alloc(&c->arena, pl + n + 2);
    memcpy(out, c->prefix, pl);
    out[pl] = '/';
    memcpy(out + pl + 1, path, n + 1);
    return out;
}

static bool perr(parser *ps, sg_conf_pos pos, const char *fmt, const char *a)
{
    char msg[1024];
    snprintf(msg, sizeof(msg), fmt, a);
    snprintf(ps->err, ps->errlen, "%s:%d:%d: %s", pos.file, pos.line, pos.col, msg);
    return false;
}

static void record_file(sg_conf *c, const char *path, const char *text, size_t len)
{
    c->files = sg_conf_push(&c->arena, c->files, c->nfiles, sizeof(char *));
    c->file_texts = sg_conf_push(&c->arena, c->file_texts, c->nfiles, sizeof(char *));
    c->file_lens = sg_conf_push(&c->arena, c->file_lens, c->nfiles, sizeof(size_t));
    c->files[c->nfiles] = (char *)path;
    c->file_texts[c->nfiles] = (char *)text;
    c->file_lens[c->nfiles] = len;
    c->nfiles++;
}

/* Reads a whole file into the arena (NUL-terminated). errno on failure. */
static char *read_file(sg_arena *a, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    sg_strbuf b = { 0 };
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) sg_strbuf_append(&b, chunk, n);
    int failed = ferror(f), saved = errno;
    fclose(f);
    if (failed) {
        sg_strbuf_free(&b);
        errno = saved ? saved : EIO;
        return NULL;
    }
    char *text = sg_arena_strndup(a, b.p ? b.p : "", b.n);
    *len = b.n;
    sg_strbuf_free(&b);
    return text;
}

static bool parse_text(parser *outer, const char *text, size_t len, const char *file,
                       sg_cnode *parent)
{
    parser ps = *outer;
    sg_lexer_init(&ps.lx, text, len, file, &ps.c->arena);
    return parse_block(&ps, parent, false);
}

static bool parse_path(parser *ps, const char *path, sg_conf_pos at, sg_cnode *parent)
{
    size_t len = 0;
    char *file = sg_arena_strndup(&ps->c->arena, path, strlen(path));
    char *text = read_file(&ps->c->arena, file, &len);
    if (!text) {
        char msg[600];
        int e = errno;
        snprintf(msg, sizeof(msg), "open() \"%s\" failed (%d: %s)", path, e, strerror(e));
        if (at.file) return perr(ps, at, "%s", msg);
        snprintf(ps->err, ps->errlen, "%s", msg);
        return false;
    }
    record_file(ps->c, file, text, len);
    return parse_text(ps, text, len, file, parent);
}

static bool do_include(parser *ps, sg_cnode *parent, const sg_cnode *inc)
{
    if (inc->nargs != 1)
        return perr(ps, inc->name.pos, "invalid number of arguments in \"%s\" directive", "include");
    if (ps->depth >= SG_CONF_MAX_INCLUDE_DEPTH)
        return perr(ps, inc->name.pos, "includes nested deeper than %s levels", "32");
#ifdef SG_FUZZING
    return perr(ps, inc->args[0].pos, "\"%s\" is disabled in fuzzing builds", "include");
#endif
    const char *pattern = sg_conf_full_path(ps->c, inc->args[0].s);
    parser sub = *ps;
    sub.depth++;
    if (strpbrk(pattern, "*?[") == NULL) return parse_path(&sub, pattern, inc->args[0].pos, parent);
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) return true;        /* nginx: a pattern may match nothing */
    if (rc != 0) return perr(ps, inc->args[0].pos, "glob() \"%s\" failed", pattern);
    bool ok = true;
    for (size_t i = 0; ok && i < g.gl_pathc; i++)
        ok = parse_path(&sub, g.gl_pathv[i], inc->args[0].pos, parent);
    globfree(&g);
    return ok;
}

static sg_cnode *add_node(parser *ps, sg_cnode *parent, sg_carg *words, size_t nwords)
{
    parent->kids = sg_conf_push(&ps->c->arena, parent->kids, parent->nkids, sizeof(sg_cnode));
    sg_cnode *n = &parent->kids[parent->nkids++];
    n->name = words[0];
    n->args = words + 1;
    n->nargs = nwords - 1;
    return n;
}

/* Ends one directive (at ";" or "{"): includes are expanded right away. */
static bool finish_directive(parser *ps, sg_cnode *parent, sg_carg *words, size_t nwords,
                             bool block)
{
    if (strcmp(words[0].s, "include") == 0 && !block) {
        sg_cnode inc = { .name = words[0], .args = words + 1, .nargs = nwords - 1 };
        return do_include(ps, parent, &inc);
    }
    sg_cnode *n = add_node(ps, parent, words, nwords);
    if (!block) return true;
    n->block = true;
    if (ps->blocks >= SG_CONF_MAX_BLOCK_DEPTH)
        return perr(ps, words[0].pos, "blocks nested deeper than %s levels", "64");
    /* `n` stays valid: nothing is added to parent while the child is read */
    ps->blocks++;
    bool ok = parse_block(ps, n, true);
    ps->blocks--;
    return ok;
}

static bool parse_block(parser *ps, sg_cnode *parent, bool nested)
{
    sg_carg *words = NULL;
    size_t nwords = 0;
    sg_token t;
    for (;;) {
        if (!sg_lexer_next(&ps->lx, &t, ps->err, ps->errlen)) return false;
        switch (t.kind) {
        case SG_TOK_WORD:
            words = sg_conf_push(&ps->c->arena, words, nwords, sizeof(sg_carg));
            words[nwords++] = (sg_carg){ t.text, t.len, t.quoted, t.pos };
            break;
        case SG_TOK_SEMI:
        case SG_TOK_OPEN:
            if (nwords == 0)
                return perr(ps, t.pos, "unexpected \"%s\"", t.kind == SG_TOK_SEMI ? ";" : "{");
            if (!finish_directive(ps, parent, words, nwords, t.kind == SG_TOK_OPEN)) return false;
            words = NULL;
            nwords = 0;
            break;
        case SG_TOK_CLOSE:
            if (nwords > 0 || !nested) return perr(ps, t.pos, "unexpected \"%s\"", "}");
            return true;
        case SG_TOK_EOF:
            if (nwords > 0)
                return perr(ps, t.pos, "unexpected end of file, expecting %s", "\";\" or \"}\"");
            if (nested) return perr(ps, t.pos, "unexpected end of file, expecting %s", "\"}\"");
            return true;
        }
    }
}

bool sg_parse_file(sg_conf *c, const char *path, sg_cnode *root, char *err, size_t errlen)
{
    parser ps = { .c = c, .err = err, .errlen = errlen };
    return parse_path(&ps, path, (sg_conf_pos){ 0 }, root);
}

bool sg_parse_params(sg_conf *c, const char *text, sg_cnode *root, char *err, size_t errlen)
{
    parser ps = { .c = c, .err = err, .errlen = errlen };
    size_t len = strlen(text);
    char *copy = sg_arena_strndup(&c->arena, text, len);
    return parse_text(&ps, copy, len, "command line", root);
}

bool sg_parse_string(sg_conf *c, const char *text, size_t len, const char *name,
                     sg_cnode *root, char *err, size_t errlen)
{
    parser ps = { .c = c, .err = err, .errlen = errlen };
    char *file = sg_arena_strndup(&c->arena, name, strlen(name));
    char *copy = sg_arena_strndup(&c->arena, text, len);
    record_file(c, file, copy, len);
    return parse_text(&ps, copy, len, file, root);
}
