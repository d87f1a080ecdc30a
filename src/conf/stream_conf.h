/* The `stream {}` context: nginx's L4 proxy configuration (the subset of
 * ngx_stream_core_module, ngx_stream_proxy_module and ngx_stream_upstream_*
 * that streamgate runs).
 *
 * stream{}'s directive table (stream_conf.c, sg_stream_module) is read by
 * the directive engine of conf/directives.c, in contexts of its own; its
 * upstreams are a namespace of their own, as in nginx, but reuse
 * sg_upstream_conf and the balancers. After the whole file is read,
 * sg_stream_conf_finish() binds each server's proxy_pass to an upstream
 * and adds its listen addresses to the generation's listen groups
 * (sg_listen_group.stream_server). */
#ifndef SG_CONF_STREAM_CONF_H
#define SG_CONF_STREAM_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "conf/conf.h"

struct sg_cctx;

/* Variables a stream value (the `hash` key) may use. */
typedef enum sg_stream_var {
    SG_SVAR_REMOTE_ADDR = 0,           /* client address as text: "127.0.0.1", "::1" */
    SG_SVAR_REMOTE_PORT,
    SG_SVAR_BINARY_REMOTE_ADDR,        /* 4 or 16 bytes */
    SG_SVAR_SERVER_ADDR,               /* address that accepted the connection */
    SG_SVAR_SERVER_PORT,
    SG_SVAR_PROTOCOL,                  /* "TCP" */
} sg_stream_var;

typedef struct sg_stream_val_part {
    int var;                           /* sg_stream_var, or -1 for the literal `lit` */
    sg_str lit;
} sg_stream_val_part;

/* A string with stream variables, compiled once ("$remote_addr:$server_port"). */
typedef struct sg_stream_val {
    sg_stream_val_part *parts;
    size_t nparts;
    sg_str text;                       /* as written */
} sg_stream_val;

/* Longest value a stream value evaluates to (longer ones are cut). */
#define SG_STREAM_VAL_MAX 1024

/* Values of ngx_stream_proxy_module and ngx_stream_core_module settable at
 * stream{} and server{} level; a server inherits what it does not set. */
typedef struct sg_stream_proxy_conf {
    uint32_t timeout_ms;               /* proxy_timeout: default 1h (nginx: 10m) */
    uint32_t connect_timeout_ms;       /* proxy_connect_timeout: default 60 s */
    bool next_upstream;                /* proxy_next_upstream: default on */
    uint32_t next_upstream_tries;      /* 0 = unlimited (default) */
    uint32_t next_upstream_timeout_ms; /* 0 = unlimited (default) */
    bool half_close;                   /* proxy_half_close: default off (nginx) */
    bool tcp_nodelay;                  /* default on */
} sg_stream_proxy_conf;

struct sg_stream_server_conf {
    sg_conf_pos pos;
    sg_listen_conf *listens;           /* listen ADDR:PORT [reuseport] [backlog=N] [bind] */
    size_t nlistens;
    sg_upstream_conf *upstream;        /* proxy_pass target: a stream upstream{} or an implicit one */
    const sg_stream_val *hash_key;     /* the upstream's `hash` key; NULL for other methods */
    sg_stream_proxy_conf proxy;
    /* proxy_pass as written, resolved by sg_stream_conf_finish() */
    sg_str pass_host;
    int pass_port;                     /* -1: none written */
    sg_conf_pos pass_pos;
};
typedef struct sg_stream_server_conf sg_stream_server_conf;

/* A stream upstream{} block: the shared upstream conf plus the hash key. */
typedef struct sg_stream_upstream {
    sg_upstream_conf up;
    sg_stream_val hash_key;            /* when up.lb is SG_LB_HASH or SG_LB_HASH_CONSISTENT */
} sg_stream_upstream;

struct sg_stream_conf {
    sg_stream_server_conf **servers;
    size_t nservers;
    sg_upstream_conf **upstreams;      /* declared (embedded in sg_stream_upstream) and implicit;
                                          each gets a runtime (upstream/pool.h) on activation */
    size_t nupstreams;
    sg_stream_proxy_conf proxy;        /* stream{}-level values (defaults filled in) */
};
typedef struct sg_stream_conf sg_stream_conf;

/* After the whole file (and the http listen groups): binds proxy_pass,
 * adds a listen group per stream address to cx->c->listens, and refuses an
 * address (or port, with a wildcard on either side) that http uses too. */
bool sg_stream_conf_finish(struct sg_cctx *cx);

/* Compiles "text with $vars and ${vars}" into `out` (arena of c); false +
 * err ("file:line:col: unknown "x" variable") on an unknown variable. */
bool sg_stream_val_compile(sg_conf *c, sg_str text, sg_conf_pos pos, sg_stream_val *out,
                           char *err, size_t errlen);


#endif
