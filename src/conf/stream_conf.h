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
struct sg_cnode;
struct sg_cmd;

/* Variables a stream value (the `hash` key) may use. */
typedef enum sg_stream_var {
    SG_SVAR_REMOTE_ADDR = 0,           /* client address as text: "127.0.0.1", "::1" */
    SG_SVAR_REMOTE_PORT,
    SG_SVAR_BINARY_REMOTE_ADDR,        /* 4 or 16 bytes */
    SG_SVAR_SERVER_ADDR,               /* address that accepted the connection */
    SG_SVAR_SERVER_PORT,
    SG_SVAR_PROTOCOL,                  /* "TCP" */
    /* stream modules: return, access_log, map, ssl, ssl_preread */
    SG_SVAR_CONNECTION, SG_SVAR_NGINX_VERSION, SG_SVAR_HOSTNAME, SG_SVAR_PID,
    SG_SVAR_BYTES_SENT, SG_SVAR_BYTES_RECEIVED, SG_SVAR_SESSION_TIME, SG_SVAR_STATUS,
    SG_SVAR_MSEC, SG_SVAR_TIME_LOCAL, SG_SVAR_TIME_ISO8601,
    SG_SVAR_UPSTREAM_ADDR, SG_SVAR_UPSTREAM_BYTES_SENT, SG_SVAR_UPSTREAM_BYTES_RECEIVED,
    SG_SVAR_UPSTREAM_CONNECT_TIME, SG_SVAR_UPSTREAM_FIRST_BYTE_TIME, SG_SVAR_UPSTREAM_SESSION_TIME,
    SG_SVAR_SSL_PROTOCOL, SG_SVAR_SSL_CIPHER, SG_SVAR_SSL_SERVER_NAME, SG_SVAR_SSL_ALPN_PROTOCOL,
    SG_SVAR_SSL_SESSION_REUSED,
    SG_SVAR_SSL_PREREAD_SERVER_NAME, SG_SVAR_SSL_PREREAD_ALPN_PROTOCOLS, SG_SVAR_SSL_PREREAD_PROTOCOL,
    SG_SVAR_CAPTURE,                   /* $1..$9 or a named capture, in a map value (arg: its number) */
    SG_SVAR_MAP,                       /* a map's result (arg: index in sg_stream_conf.maps) */
    SG_SVAR_SSL_SESSION_ID,
    /* quick wins (issue 9): listen ... proxy_protocol; empty without a header's addresses */
    SG_SVAR_PROXY_PROTOCOL_ADDR, SG_SVAR_PROXY_PROTOCOL_PORT,
    SG_SVAR_PROXY_PROTOCOL_SERVER_ADDR, SG_SVAR_PROXY_PROTOCOL_SERVER_PORT,
    /* real client address (issue 10): $proxy_protocol_tlv_NAME (the part's lit is NAME) */
    SG_SVAR_PROXY_PROTOCOL_TLV,
    /* access (issue 10): set_real_ip_from: the connection's own peer */
    SG_SVAR_REALIP_REMOTE_ADDR, SG_SVAR_REALIP_REMOTE_PORT,
    /* limits (issue 10) */
    SG_SVAR_LIMIT_CONN_STATUS,
} sg_stream_var;

typedef struct sg_stream_val_part {
    int var;                           /* sg_stream_var, or -1 for the literal `lit` */
    sg_str lit;
    int arg;                           /* SG_SVAR_CAPTURE: the group; SG_SVAR_MAP: the map */
} sg_stream_val_part;

/* A string with stream variables, compiled once ("$remote_addr:$server_port"). */
typedef struct sg_stream_val {
    sg_stream_val_part *parts;
    size_t nparts;
    sg_str text;                       /* as written */
} sg_stream_val;

/* Longest value a stream value evaluates to (longer ones are cut). */
#define SG_STREAM_VAL_MAX 1024

/* ngx_stream_map_module: exact keys (case-sensitive), "~re"/"~*re" keys
 * tried in order, and a default. Values are stream values; a regex key's
 * value may use its captures ($1, $name). */
typedef struct sg_stream_map_entry {
    sg_str key;
    void *re;                          /* pcre2_code * for regex keys, else NULL */
    sg_stream_val val;
} sg_stream_map_entry;

typedef struct sg_stream_map {
    sg_str name;                       /* the variable, without '$' */
    bool defined;                      /* false: used before (or without) its map block */
    bool settable;                     /* some server `set`s it (empty where none does) */
    sg_conf_pos first_use;
    sg_stream_val source;
    sg_stream_map_entry *exact, *regex;
    size_t nexact, nregex;
    sg_stream_val def;
    bool has_default;
    /* split_clients: the source's MurmurHash2 below split_limit[i] picks
     * exact[i].val (0: the "*" part, takes the rest) */
    bool split;
    uint32_t *split_limit;
    /* geo: the source parsed as an address, looked up in http's geo
     * tables (conf/geo.h: one implementation for both, issue 10) */
    bool geo;
    struct sg_geo *geo_base;
} sg_stream_map;

/* set $var VALUE (ngx_stream_set_module): var is an index in sg_stream_conf.maps. */
typedef struct sg_stream_set {
    int var;
    sg_stream_val val;
} sg_stream_set;

/* log_format NAME STRING... (stream's own namespace, as nginx's). */
typedef struct sg_stream_log_format {
    sg_str name;
    sg_stream_val val;
    bool escape_json, escape_none;
} sg_stream_log_format;

/* access_log PATH FORMAT (stream{} or server{}). */
typedef struct sg_stream_log {
    char *path;                        /* absolute */
    const sg_stream_log_format *format;
    sg_log_file *file;                 /* opened with the generation (observe/access_log.c) */
    /* log writers (issue 12): syslog, if=, a path with variables, buffer=, flush=, gzip */
    const struct sg_syslog *syslog;    /* syslog:...: path is NULL */
    bool has_cond;                     /* if=COND: no line when it is empty or "0" */
    sg_stream_val cond;
    bool var_path;                     /* the path has variables: opened for each line */
    sg_stream_val path_value;
    size_t buffer_size;                /* buffer=SIZE, 0: written at the end of the loop iteration */
    uint32_t flush_ms;                 /* flush=TIME, 0: none */
    int gzip;                          /* gzip[=LEVEL]: 1..9, 0 = off */
} sg_stream_log;

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
    /* stream modules: access_log (a level with any replaces the inherited list), TLS, preread */
    sg_stream_log *logs;
    size_t nlogs;
    bool logs_off;
    sg_ssl_conf ssl;                   /* listen ... ssl: ssl_certificate ... */
    uint32_t ssl_handshake_timeout_ms; /* default 60 s */
    unsigned char *alpn;               /* ssl_alpn, wire format (NULL: no ALPN) */
    size_t alpn_len;
    bool proxy_ssl_on;                 /* proxy_ssl */
    sg_ssl_upstream_conf proxy_ssl;    /* its `name` is unused: proxy_ssl_name is stream's value below */
    const sg_stream_val *proxy_ssl_name;   /* NULL: the host of proxy_pass */
    bool ssl_preread;
    uint32_t preread_timeout_ms;       /* default 30 s */
    uint32_t preread_buffer_size;      /* default 16k */
    uint32_t proxy_responses;          /* UDP: replies that end a session; UINT32_MAX: no limit */
    uint32_t proxy_requests;           /* UDP: datagrams per session; 0: no limit */
    /* quick wins (issue 9) */
    bool proxy_protocol;               /* proxy_protocol: a PROXY v1 header to the upstream; default off */
    uint32_t proxy_protocol_timeout_ms;   /* listen ... proxy_protocol: the header's deadline; default 30 s */
    /* real client address (issue 10) */
    int proxy_protocol_version;        /* proxy_protocol_version 1|2 (streamgate): the header sent; default 1 */
    /* access control and the real address (issue 10, access): allow/deny
     * (one list, a level with either replaces the inherited one), and
     * set_real_ip_from (the PROXY header's source replaces a trusted peer) */
    sg_access_rule *access_rules;
    size_t naccess_rules;
    sg_access_rule *realip_from;
    size_t nrealip_from;
    /* limits (issue 10): limit_conn (conf/limit_conf.h, proxy/limit.h) */
    struct sg_limit_ref *limit_conns;
    size_t nlimit_conns;
    uint32_t limit_conn_log_level;     /* sg_log_level + 1; 0: error */
    bool limit_conn_dry_run;
    /* rate (issue 10): bytes per second read from the client / the
     * upstream, per session (NULL: unlimited); they may hold variables */
    const sg_stream_val *upload_rate;     /* proxy_upload_rate */
    const sg_stream_val *download_rate;   /* proxy_download_rate */
    /* log writers (issue 12): error_log of stream{} and its servers (NULL
     * path: the main log); the target is opened with the generation */
    char *error_log_path;              /* sg_log_spec_add()'s list */
    sg_log_level error_log_level;
    const sg_log_target *error_log;
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
    /* stream modules */
    sg_stream_val *ret;                /* return VALUE; NULL: proxy_pass */
    sg_stream_val *pass_val;           /* proxy_pass with variables: evaluated per session */
    bool ssl;                          /* some listen has `ssl` */
    struct sg_stream_set *sets;        /* set $var value; in order, at session start */
    size_t nsets;
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
    /* stream modules */
    sg_stream_map **maps;
    size_t nmaps;
    sg_stream_log_format **log_formats;
    size_t nlog_formats;
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

/* The same inside a map value of regex `re` (pcre2_code *, or NULL):
 * $1..$9 and the regex's named groups are its captures. */
bool sg_stream_val_compile_re(sg_conf *c, sg_str text, sg_conf_pos pos, const void *re,
                              sg_stream_val *out, char *err, size_t errlen);

/* map SOURCE $VAR { ... } (stream_vars.c). */
bool sg_stream_set_map(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);

/* split_clients SOURCE $VAR { PERCENT% VALUE; ... * VALUE; } (stream_vars.c). */
bool sg_stream_set_split_clients(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);

/* geo [SOURCE] $VAR { ... } (stream_vars.c). */
bool sg_stream_set_geo(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);

/* set $var VALUE (stream_vars.c). */
bool sg_stream_set_set(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);

/* After the whole file: "unknown "x" variable" for a map variable used but never defined. */
bool sg_stream_vars_finish(struct sg_cctx *cx);


#endif
