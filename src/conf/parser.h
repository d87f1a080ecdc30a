/* Configuration text -> tree of directives.
 *
 * Each node is one directive: its name, its arguments (with positions) and,
 * for "name args { ... }", its children. "include" is expanded while
 * parsing, in place, so later stages never see it; every file read is
 * recorded in the generation (sg_conf.files) for -T. */
#ifndef SG_CONF_PARSER_H
#define SG_CONF_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"

typedef struct sg_carg {
    char *s;                     /* decoded, NUL-terminated */
    size_t n;
    bool quoted;
    sg_conf_pos pos;
} sg_carg;

typedef struct sg_cnode {
    sg_carg name;
    sg_carg *args;               /* arguments after the name */
    size_t nargs;
    bool block;                  /* written with "{ ... }" */
    struct sg_cnode *kids;       /* children of the block, in order */
    size_t nkids;
} sg_cnode;

#define SG_CONF_MAX_INCLUDE_DEPTH 32
#define SG_CONF_MAX_BLOCK_DEPTH 64

/* Parses file `path` (absolute) into root->kids. False + err on error. */
bool sg_parse_file(sg_conf *c, const char *path, sg_cnode *root, char *err, size_t errlen);

/* The same for text in memory; `name` stands for the file in messages. */
bool sg_parse_string(sg_conf *c, const char *text, size_t len, const char *name,
                     sg_cnode *root, char *err, size_t errlen);

/* nginx's -g: directives of the main context from the command line, read
 * before the file. Not recorded among the files (-T does not print them);
 * messages name "command line". */
bool sg_parse_params(sg_conf *c, const char *text, sg_cnode *root, char *err, size_t errlen);

/* Grows an arena array by one element (capacity doubles at powers of two,
 * so no capacity field is needed); returns the array, the new element is
 * at index n, zeroed. */
void *sg_conf_push(sg_arena *a, void *arr, size_t n, size_t elsize);

/* "prefix/rel" for a relative path, a copy of `path` otherwise. */
char *sg_conf_full_path(sg_conf *c, const char *path);

#endif
