/* Tokenizer for nginx's configuration syntax (see lexer.h for the rules). */
#include "conf/lexer.h"

#include <stdio.h>
#include <string.h>

void sg_lexer_init(sg_lexer *lx, const char *text, size_t len, const char *file, sg_arena *a)
{
    lx->p = text;
    lx->end = text + len;
    lx->file = file;
    lx->line = 1;
    lx->col = 1;
    lx->arena = a;
}

static void advance(sg_lexer *lx)
{
    if (*lx->p == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->p++;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static bool lex_error(sg_lexer *lx, sg_conf_pos pos, char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s:%d:%d: %s", lx->file, pos.line, pos.col, msg);
    return false;
}

/* Copies raw bytes into the arena, decoding the escapes nginx decodes. */
static char *unescape(sg_lexer *lx, const char *s, const char *e, size_t *len)
{
    char *out = sg_arena_alloc(lx->arena, (size_t)(e - s) + 1), *d = out;
    while (s < e) {
        if (*s == '\\' && s + 1 < e) {
            char n = s[1];
            if (n == '"' || n == '\'' || n == '\\') { *d++ = n; s += 2; continue; }
            if (n == 't') { *d++ = '\t'; s += 2; continue; }
            if (n == 'r') { *d++ = '\r'; s += 2; continue; }
            if (n == 'n') { *d++ = '\n'; s += 2; continue; }
        }
        *d++ = *s++;
    }
    *d = '\0';
    *len = (size_t)(d - out);
    return out;
}

static bool lex_quoted(sg_lexer *lx, sg_token *t, char *err, size_t errlen)
{
    char q = *lx->p;
    advance(lx);
    const char *start = lx->p;
    while (lx->p < lx->end && *lx->p != q) {
        if (*lx->p == '\\' && lx->p + 1 < lx->end) advance(lx);
        advance(lx);
    }
    if (lx->p >= lx->end)
        return lex_error(lx, t->pos, err, errlen, "unexpected end of file, unbalanced quotes");
    t->text = unescape(lx, start, lx->p, &t->len);
    t->quoted = true;
    advance(lx);
    /* nginx wants a separator right after the closing quote; a ')' may
     * follow, as in if ($a ~ "re") (it is then a word of its own) */
    if (lx->p < lx->end && !is_space(*lx->p) && *lx->p != ';' && *lx->p != '{' && *lx->p != ')') {
        char msg[32];
        snprintf(msg, sizeof(msg), "unexpected \"%c\"", *lx->p);
        return lex_error(lx, (sg_conf_pos){ lx->file, lx->line, lx->col }, err, errlen, msg);
    }
    return true;
}

static void lex_word(sg_lexer *lx, sg_token *t)
{
    const char *start = lx->p;
    char prev = 0;
    while (lx->p < lx->end) {
        char ch = *lx->p;
        if (is_space(ch) || ch == ';') break;
        if (ch == '{' && prev != '$') break;           /* "${name}" stays one word */
        if (ch == '\\' && lx->p + 1 < lx->end) {
            advance(lx);
            ch = 0;                                    /* an escaped char is never "$" */
        }
        prev = ch;
        advance(lx);
    }
    t->text = unescape(lx, start, lx->p, &t->len);
}

static void skip_blanks(sg_lexer *lx)
{
    while (lx->p < lx->end) {
        if (is_space(*lx->p)) {
            advance(lx);
        } else if (*lx->p == '#') {
            while (lx->p < lx->end && *lx->p != '\n') advance(lx);
        } else {
            break;
        }
    }
}

bool sg_lexer_next(sg_lexer *lx, sg_token *t, char *err, size_t errlen)
{
    skip_blanks(lx);
    memset(t, 0, sizeof(*t));
    t->pos = (sg_conf_pos){ lx->file, lx->line, lx->col };
    if (lx->p >= lx->end) {
        t->kind = SG_TOK_EOF;
        return true;
    }
    switch (*lx->p) {
    case ';': t->kind = SG_TOK_SEMI; advance(lx); return true;
    case '{': t->kind = SG_TOK_OPEN; advance(lx); return true;
    case '}': t->kind = SG_TOK_CLOSE; advance(lx); return true;
    case '"':
    case '\'':
        t->kind = SG_TOK_WORD;
        return lex_quoted(lx, t, err, errlen);
    default:
        t->kind = SG_TOK_WORD;
        lex_word(lx, t);
        return true;
    }
}
