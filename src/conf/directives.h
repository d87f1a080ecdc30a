/* Directive tables: what each directive means, where it may appear, how
 * many arguments it takes and which field its setter fills, in the style
 * of nginx's ngx_command_t. This header is internal to src/conf/: the
 * build state shared by directives.c (tables, setters, inheritance) and
 * conf.c (loading, proxy_pass resolution, listen groups). */
#ifndef SG_CONF_DIRECTIVES_H
#define SG_CONF_DIRECTIVES_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"
#include "conf/parser.h"

/* Contexts a directive may appear in. */
enum {
    SG_CTX_MAIN = 1u << 0,
    SG_CTX_EVENTS = 1u << 1,
    SG_CTX_HTTP = 1u << 2,
    SG_CTX_SERVER = 1u << 3,
    SG_CTX_LOCATION = 1u << 4,
    SG_CTX_UPSTREAM = 1u << 5,
    SG_CTX_MAP = 1u << 6,        /* map { } bodies are read by the map setter itself */
    SG_CTX_STREAM = 1u << 7,     /* later */
    SG_CTX_IF = 1u << 8,         /* later */
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

/* Which struct a command's offset is relative to. */
typedef enum sg_cmd_target {
    SG_T_NONE = 0,               /* accepted and checked, stored nowhere */
    SG_T_MAIN,                   /* sg_conf (main and events) */
    SG_T_LOC,                    /* sg_loc_conf of the current http/server/location level */
    SG_T_SRV,                    /* sg_server_conf values settable at http and server level */
    SG_T_UPS,                    /* sg_upstream_conf of the current upstream block */
} sg_cmd_target;

enum {
    SG_CF_MULTI = 1u << 0,       /* may repeat at one level (lists) */
    SG_CF_NOMERGE = 1u << 1,     /* not inherited by inner levels (return, proxy_pass...) */
};

#define SG_MAX_CMDS 256

typedef struct sg_cctx sg_cctx;
typedef struct sg_cmd sg_cmd;

typedef bool (*sg_cmd_set)(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

struct sg_cmd {
    const char *name;
    uint32_t ctx;                /* SG_CTX_* mask */
    uint32_t args;               /* SG_ARG* mask */
    sg_cmd_set set;
    sg_cmd_target target;
    uint32_t flags;              /* SG_CF_* */
    size_t offset, size;         /* the field (or run of adjacent fields) it fills */
    const void *post;            /* setter-specific data (enum values...) */
};

/* One http / server / location level and what was set on it. */
typedef struct sg_lvl {
    sg_loc_conf *conf;
    sg_server_conf srv;          /* SG_T_SRV values (used at http and server level) */
    unsigned char set[SG_MAX_CMDS / 8];
    struct sg_lvl *parent;
    struct sg_lvl **kids;
    size_t nkids;
    sg_location *loc;            /* NULL at http level */
    sg_server_conf *server;      /* NULL at http level */
} sg_lvl;

typedef struct sg_pending_pass {
    sg_proxy_pass *pp;
    sg_str host;                 /* host as written */
    int port;                    /* -1 when not written */
    sg_conf_pos host_pos;
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
    sg_lvl *cur;                 /* innermost http/server/location level */
    sg_upstream_conf *ups;       /* current upstream{} block */
    sg_pending_pass *passes;     /* proxy_pass targets, resolved after http{} */
    size_t npasses;
};

/* Reads the main context (root->kids) into cx->c. */
bool sg_directives_run(sg_cctx *cx, const sg_cnode *root);

/* Inheritance: fills every unset field of every server and location from
 * the level above (http defaults at the top), as nginx's merge functions. */
void sg_directives_merge(sg_cctx *cx);

/* Default values of an http level (prefix-dependent ones included). */
void sg_directives_loc_defaults(sg_cctx *cx, sg_loc_conf *lc, sg_server_conf *srv);

/* "file:line:col: message" into cx->err; always false. */
bool sg_cerr(sg_cctx *cx, sg_conf_pos pos, const char *fmt, ...)
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

/* "server ADDR[:PORT] [params]" of an upstream block (n): one entry per
 * address ADDR resolves to, appended to u. default_port -1: a port must
 * be written (stream{}). */
bool sg_conf_upstream_server(sg_cctx *cx, const sg_cnode *n, sg_upstream_conf *u, int default_port);

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

/* nginx's time ("1m30s", "500ms", "30" = seconds) and size ("8k")
 * syntax, for the stream{} table (conf/stream_conf.c). */
bool sg_conf_parse_time_ms(const char *s, uint64_t *out);
bool sg_conf_parse_size(const char *s, uint64_t *out);

/* Whether the main table knows `name`: 0 no, 1 a directive of some
 * context, 2 one refused as "not supported yet". */
int sg_directives_lookup(const char *name);

/* Looks a log format up by name (NULL if absent). */
sg_log_format *sg_conf_find_log_format(sg_conf *c, sg_str name);

#endif
