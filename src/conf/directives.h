/* Directive tables: what each directive means, where it may appear, how
 * many arguments it takes and which field its setter fills, in the style
 * of nginx's ngx_command_t. One engine (directives.c: lookup, runner,
 * generic setters, inheritance) reads every context; each table says in
 * which contexts its lines apply (http's in directives.c, stream's in
 * stream_conf.c). This header is internal to src/conf/: the build state
 * shared by directives.c, stream_conf.c, ssl_conf.c and conf.c (loading,
 * proxy_pass resolution, listen groups). */
#ifndef SG_CONF_DIRECTIVES_H
#define SG_CONF_DIRECTIVES_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"
#include "conf/parser.h"

/* Contexts a directive may appear in: the block it is written in. */
enum {
    SG_CTX_MAIN = 1u << 0,
    SG_CTX_EVENTS = 1u << 1,
    SG_CTX_HTTP = 1u << 2,
    SG_CTX_SERVER = 1u << 3,
    SG_CTX_LOCATION = 1u << 4,
    SG_CTX_UPSTREAM = 1u << 5,
    SG_CTX_STREAM = 1u << 6,
    SG_CTX_STREAM_SERVER = 1u << 7,
    SG_CTX_STREAM_UPSTREAM = 1u << 8,
    SG_CTX_SIF = 1u << 9,        /* an `if` block at server level: rewrite directives only */
};
#define SG_CTX_HSL (SG_CTX_HTTP | SG_CTX_SERVER | SG_CTX_LOCATION)
#define SG_CTX_ANY 0xffffffffu

/* Argument counts: any combination of exact counts, or "N or more". */
enum {
    SG_ARG0 = 1u << 0, SG_ARG1 = 1u << 1, SG_ARG2 = 1u << 2, SG_ARG3 = 1u << 3,
    SG_ARG4 = 1u << 4, SG_ARG5 = 1u << 5,
    SG_ARG1MORE = 1u << 8,
    SG_ARG2MORE = 1u << 9,
    SG_ARGBLOCK = 1u << 10,      /* "name args { ... }" */
};
#define SG_ARG12 (SG_ARG1 | SG_ARG2)
#define SG_ARG23 (SG_ARG2 | SG_ARG3)

/* Which struct a command's offset is relative to. A command with a target
 * is remembered per level ("is duplicate" unless SG_CF_MULTI); with a
 * field (size > 0) it is also inherited by inner levels. */
typedef enum sg_cmd_target {
    SG_T_NONE = 0,               /* accepted and checked, stored nowhere */
    SG_T_MAIN,                   /* sg_conf (main and events) */
    SG_T_LOC,                    /* sg_loc_conf of the current http/server/location level */
    SG_T_SRV,                    /* sg_server_conf values settable at http and server level */
    SG_T_UPS,                    /* sg_upstream_conf of the current upstream block (either context) */
    SG_T_STREAM,                 /* sg_stream_proxy_conf of the current stream/server level */
} sg_cmd_target;

enum {
    SG_CF_MULTI = 1u << 0,       /* may repeat at one level (lists) */
    SG_CF_NOMERGE = 1u << 1,     /* not inherited by inner levels (return, proxy_pass...) */
};

/* Bits per level: one per command of every table together; the http
 * table leaves SG_STREAM_MAX_CMDS of them to the stream one. */
#define SG_MAX_CMDS 512
#define SG_STREAM_MAX_CMDS 96

typedef struct sg_cctx sg_cctx;
typedef struct sg_cmd sg_cmd;

/* `base` is the target struct, NULL for a command without a field: the
 * generic setters then check the value and store nothing. */
typedef bool (*sg_cmd_set)(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

struct sg_cmd {
    const char *name;
    uint32_t ctx;                /* SG_CTX_* mask */
    uint32_t args;               /* SG_ARG* mask */
    sg_cmd_set set;
    sg_cmd_target target;
    uint32_t flags;              /* SG_CF_* */
    size_t offset, size;         /* the field (or run of adjacent fields) it fills */
    const void *post;            /* setter-specific data (enum values, bounds...) */
};

/* One table of commands (nginx's module command arrays): the http one in
 * directives.c, the stream one in stream_conf.c. */
typedef struct sg_cmd_module {
    const sg_cmd *cmds;
    size_t ncmds;
    uint32_t ctx;                /* the contexts whose blocks this table reads */
    /* nginx directives of these contexts streamgate does not have yet:
     * "NAME" directive is not supported yet (exact names, then prefixes;
     * NULL-terminated) */
    const char *const *later_exact;
    const char *const *later_prefix;
} sg_cmd_module;

extern const sg_cmd_module sg_stream_module;   /* conf/stream_conf.c */

/* sg_conf_set_size bounds (cmd->post; none: any size the field holds). */
typedef struct sg_cmd_bounds {
    uint64_t min, max;
} sg_cmd_bounds;

/* One level of nested blocks whose values inherit: http / server /
 * location, or stream / server of stream. */
typedef struct sg_lvl {
    sg_loc_conf *conf;           /* SG_T_LOC; NULL at stream levels */
    sg_server_conf srv;          /* SG_T_SRV values (used at http and server level) */
    struct sg_stream_proxy_conf *stream_proxy;     /* SG_T_STREAM; NULL at http levels */
    unsigned char set[SG_MAX_CMDS / 8];
    struct sg_lvl *parent;
    struct sg_lvl **kids;
    size_t nkids;
    sg_location *loc;            /* NULL at http level */
    sg_server_conf *server;      /* NULL at http level */
    struct sg_stream_server_conf *stream_server;   /* a stream server{} level */
} sg_lvl;

typedef struct sg_pending_pass {
    sg_proxy_pass *pp;
    sg_str host;                 /* host as written */
    int port;                    /* -1 when not written */
    sg_conf_pos host_pos;
    bool unix_sock;              /* passvar: host is "unix:/path" (port -1) */
} sg_pending_pass;

struct sg_cctx {
    sg_conf *c;
    char *err;
    size_t errlen;
    unsigned char main_set[SG_MAX_CMDS / 8];
    unsigned char ups_set[SG_MAX_CMDS / 8];
    bool has_events;
    bool first;                  /* the command being set was not set at this level yet */
    bool main_redefined;         /* the user wrote his own log_format "main" */
    uint32_t ctx;                /* context being read */
    sg_lvl *http;
    sg_lvl *stream;              /* the stream{} level */
    sg_lvl *cur;                 /* innermost level (http/server/location or stream/server) */
    sg_upstream_conf *ups;       /* current upstream{} block */
    sg_pending_pass *passes;     /* proxy_pass targets, resolved after http{} */
    size_t npasses;
};

/* Reads the main context (root->kids) into cx->c. */
bool sg_directives_run(sg_cctx *cx, const sg_cnode *root);

/* Whether the http (or stream, when `stream`) tables implement `name`:
 * -V lists nginx's modules from it. */
bool sg_directive_known(const char *name, bool stream);

/* A new level below `parent` (NULL: the top of http{} or stream{}); the
 * caller points its conf / stream_proxy at the structs it fills. */
sg_lvl *sg_directives_level(sg_cctx *cx, sg_lvl *parent);

/* Reads the block of n in context ctx with l as the current level, then
 * makes the level that was current before current again. */
bool sg_directives_enter(sg_cctx *cx, sg_lvl *l, const sg_cnode *n, uint32_t ctx);

/* An upstream{} block of http or stream: checks that no other block in
 * *list has its name (implicit upstreams aside), names u after it,
 * appends it and reads the block in ctx with u as cx->ups. */
bool sg_directives_upstream(sg_cctx *cx, const sg_cnode *n, sg_upstream_conf *u,
                            sg_upstream_conf ***list, size_t *nlist, uint32_t ctx);

/* Inheritance: fills every unset field of every level from the level
 * above (defaults at the top of http{} and stream{}), as nginx's merge
 * functions; then picks each location's pass_opts. */
void sg_directives_merge(sg_cctx *cx);

/* Default values of an http level (prefix-dependent ones included). */
void sg_directives_loc_defaults(sg_cctx *cx, sg_loc_conf *lc, sg_server_conf *srv);

/* "file:line:col: message" into cx->err; always false. */
bool sg_cerr(sg_cctx *cx, sg_conf_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A [notice] for -t and the start log, "file:line:col: message": the
 * directive is accepted, but streamgate does its work another way. */
void sg_cnotice(sg_cctx *cx, sg_conf_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resolves a host name or numeric address (no brackets) with `port`:
 * one entry per address, appended to the arena arrays *out / *lens.
 * False when it does not resolve (the caller words the message). In
 * SG_FUZZING builds only numeric addresses and "localhost" resolve. */
bool sg_conf_resolve(sg_conf *c, sg_str host, int port,
                     struct sockaddr_storage **out, socklen_t **lens, size_t *n);

/* Splits "host[:port]" or "[v6][:port]" (host returned without brackets);
 * port -1 if absent; false on a bad port or an empty host. */
bool sg_conf_split_hostport(sg_str s, sg_str *host, int *port);

/* The address of "listen" (a->s: "8080", "host[:port]", "[v6][:port]",
 * "*:port") into lc->addr/addrlen/text. default_port -1: a port must be
 * written (stream{}). */
bool sg_conf_listen_addr(sg_cctx *cx, const sg_carg *a, sg_listen_conf *lc, int default_port);

/* A new upstream for "proxy_pass host:port" naming no upstream{} block:
 * one server per address (weight 1, max_fails 1, fail_timeout 10s), all
 * named `name`. Not added to any list; keepalive settings left at 0. */
sg_upstream_conf *sg_conf_implicit_upstream(sg_conf *c, const char *name, sg_conf_pos pos,
                                            const struct sockaddr_storage *addrs,
                                            const socklen_t *lens, size_t n);

/* Appends a listen group for l's address (address, text, backlog). */
sg_listen_group *sg_conf_new_group(sg_conf *c, const sg_listen_conf *l);

/* Formats an address as "1.2.3.4:80" / "[::1]:80" into the arena. */
char *sg_conf_addr_text(sg_conf *c, const struct sockaddr_storage *ss);

/* nginx's size syntax ("512", "8k", "10m", "1g"). */
bool sg_conf_parse_size(const char *s, uint64_t *out);
/* nginx's time syntax ("500ms", "1m30s", "120" seconds), in ms. */
bool sg_conf_parse_time_ms(const char *s, uint64_t *out);
/* error_log PATH [LEVEL] (main, http, stream levels): fills the char *
 * list at cmd->offset and the sg_log_level right after it. */
bool sg_conf_set_error_log(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

/* Generic setters (nginx's ngx_conf_set_*_slot) for the tables of every
 * context: the field is cmd->offset / cmd->size of `base`, a uint64_t,
 * uint32_t, uint16_t or bool for the numeric ones. */
bool sg_conf_set_flag(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);   /* on | off */
bool sg_conf_set_num(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_conf_set_msec(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);   /* "1m30s" */
/* A size within cmd->post's sg_cmd_bounds, if any. */
bool sg_conf_set_size(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* upstream{}: "server ADDR[:PORT] [params]" (cmd->post: the default port
 * as an intptr_t, -1 when a port must be written) and a balancing method
 * without arguments (cmd->post: its sg_lb_method; nginx: a later one wins). */
bool sg_conf_set_upstream_server(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_conf_set_lb(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* random [two [least_conn]] and zone NAME [SIZE], in http and stream upstreams. */
bool sg_conf_set_random(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* dns: resolver ADDR... [valid=] [ipv4=] [ipv6=] [status_zone=] and
 * resolver_timeout, in http, stream and upstream blocks of both. */
bool sg_conf_set_resolver(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_conf_set_resolver_timeout(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_conf_set_zone(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* "192.168.1.0/24", "::1", "unix:", "all" into *r; false when invalid.
 * *low_bits: the address had bits outside its mask (cleared). */
bool sg_conf_parse_access_rule(const char *s, bool deny, sg_access_rule *r, bool *low_bits);

/* allow / deny (http and stream): the field is an sg_access_rule * then a
 * size_t count; both directives fill the one list, so a level with either
 * replaces what it inherits. */
bool sg_conf_set_access(sg_cctx *cx, const struct sg_cnode *n, const sg_cmd *cmd, void *base);

/* set_real_ip_from (http and stream): the same field layout. */
bool sg_conf_set_realip_from(sg_cctx *cx, const struct sg_cnode *n, const sg_cmd *cmd, void *base);
/* After an upstream block: hash and random refuse `backup` servers, as nginx. */
bool sg_conf_check_backup(sg_cctx *cx, const sg_upstream_conf *u);

/* passvar: "unix:/path" (path: what follows "unix:") as an AF_UNIX
 * address; false when the path is empty or too long. */
bool sg_conf_unix_addr(sg_str path, struct sockaddr_storage *ss, socklen_t *len);

/* Looks a log format up by name (NULL if absent). */
sg_log_format *sg_conf_find_log_format(sg_conf *c, sg_str name);

#endif
