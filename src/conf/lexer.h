/* Tokenizer for nginx's configuration syntax.
 *
 * Tokens are words (bare or quoted), ";", "{" and "}". The rules are
 * nginx's (ngx_conf_read_token): a bare word ends at white space, ";" or
 * "{" (so "}" and "${var}" stay inside a word), "#" starts a comment only
 * where a token could start, and the escapes \" \' \\ \n \t \r are decoded
 * in bare and quoted words alike while any other backslash is kept. */
#ifndef SG_CONF_LEXER_H
#define SG_CONF_LEXER_H

#include <stdbool.h>
#include <stddef.h>
#include "core/str.h"
#include "conf/vars.h"

typedef enum sg_tok_kind {
    SG_TOK_WORD = 0,
    SG_TOK_SEMI,                 /* ; */
    SG_TOK_OPEN,                 /* { */
    SG_TOK_CLOSE,                /* } */
    SG_TOK_EOF,
} sg_tok_kind;

typedef struct sg_token {
    sg_tok_kind kind;
    char *text;                  /* decoded, NUL-terminated, in the arena (words only) */
    size_t len;
    bool quoted;
    sg_conf_pos pos;             /* first character (the quote for quoted words) */
} sg_token;

typedef struct sg_lexer {
    const char *p, *end;
    const char *file;            /* kept for positions; must outlive the tokens */
    int line, col;
    sg_arena *arena;
} sg_lexer;

void sg_lexer_init(sg_lexer *lx, const char *text, size_t len, const char *file, sg_arena *a);

/* Next token; false + "file:line:col: message" on a lexical error. */
bool sg_lexer_next(sg_lexer *lx, sg_token *t, char *err, size_t errlen);

#endif
