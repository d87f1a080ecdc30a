/* The compiled configuration: one immutable, reference-counted generation.
 *
 * The parser (conf/parser.c) turns nginx-syntax text into a tree that
 * remembers file:line:col; the directive tables (conf/directives.c) turn the
 * tree into the structs below, merging http -> server -> location the way
 * nginx does, so that at run time every value a request needs is one pointer
 * away and nothing is looked up by name. A generation is never changed after
 * sg_conf_load() returns; reload builds a new one and swaps the pointer.
 * All memory of a generation lives in its arena. */
#ifndef SG_CONF_CONF_H
#define SG_CONF_CONF_H

#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include "core/str.h"
#include "core/log.h"
#include "conf/vars.h"

#define SG_UNSET_MS UINT32_MAX

/* ---------------- upstream ---------------- */

typedef struct sg_upstream_server_conf {
    char *name;                        /* as written, e.g. "127.0.0.1:8081"; "host:port" per address */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int weight;                        /* default 1 */
    int max_fails;                     /* default 1; 0 disables failure accounting */
    uint32_t fail_timeout_ms;          /* default 10 s */
    bool backup, down;
} sg_upstream_server_conf;

typedef enum sg_lb_method {
    SG_LB_ROUND_ROBIN = 0,
    SG_LB_LEAST_CONN,
    SG_LB_IP_HASH,
} sg_lb_method;

typedef struct sg_upstream_conf {
    char *name;
    sg_conf_pos pos;
    sg_upstream_server_conf *servers;  /* a name resolving to N addresses gives N entries */
    size_t nservers;
    sg_lb_method lb;
    uint32_t keepalive;                /* idle connections kept per worker thread */
    uint32_t keepalive_timeout_ms;     /* default 60 s (nginx) */
    uint32_t keepalive_requests;       /* default 1000 (nginx >= 1.19.10) */
    bool implicit;                     /* made by proxy_pass http://ADDR, not an upstream{} block */
    void *runtime;                     /* upstream layer's shared peer state (upstream/peer.h) */
} sg_upstream_conf;

/* ---------------- http: pieces used by locations ---------------- */

typedef struct sg_header_set {         /* add_header / proxy_set_header */
    sg_str name;
    sg_cval value;                     /* proxy_set_header with "" removes the header */
    bool always;                       /* add_header ... always */
} sg_header_set;

typedef struct sg_error_page {
    int *codes;
    size_t ncodes;
    int override;                      /* -1: keep original status; 0: "=" (the target's status); >0: "=CODE" */
    sg_cval uri;                       /* "/path", "@named" or an absolute URL (redirect) */
} sg_error_page;

typedef struct sg_log_format {
    char *name;
    sg_cval format;
    bool escape_json;                  /* escape=json; otherwise escape=default (none = default too) */
    bool escape_none;
} sg_log_format;

typedef struct sg_log_file sg_log_file;  /* observe/access_log.h: shared buffered file */

typedef struct sg_access_log {
    char *path;                        /* absolute */
    const sg_log_format *format;
    size_t buffer_size;                /* buffer=SIZE, 0 = default (64k) */
    uint32_t flush_ms;                 /* flush=TIME, default 1 s */
    sg_log_file *file;                 /* opened when the generation is activated */
} sg_access_log;

typedef enum sg_next_upstream {
    SG_NU_ERROR = 1u << 0,
    SG_NU_TIMEOUT = 1u << 1,
    SG_NU_INVALID_HEADER = 1u << 2,
    SG_NU_HTTP_500 = 1u << 3,
    SG_NU_HTTP_502 = 1u << 4,
    SG_NU_HTTP_503 = 1u << 5,
    SG_NU_HTTP_504 = 1u << 6,
    SG_NU_HTTP_403 = 1u << 7,
    SG_NU_HTTP_404 = 1u << 8,
    SG_NU_HTTP_429 = 1u << 9,
    SG_NU_NON_IDEMPOTENT = 1u << 10,
    SG_NU_OFF = 1u << 31,
} sg_next_upstream;

typedef struct sg_mime_type {        /* one `type ext` pair of a types block */
    sg_str ext;
    sg_str type;
} sg_mime_type;

typedef struct sg_proxy_pass {
    sg_upstream_conf *upstream;
    bool has_uri;                      /* proxy_pass http://b/x/ has a URI part: replace the location prefix */
    sg_str uri;                        /* that URI part ("/x/") */
    sg_str host;                       /* $proxy_host: "b" or "127.0.0.1:8081" */
    sg_conf_pos pos;
} sg_proxy_pass;

/* Values a location sees after merging http -> server -> location.
 * Every field is set (defaults filled in) once the generation is built. */
typedef struct sg_loc_conf {
    /* core */
    uint64_t client_max_body_size;     /* bytes, 0 = unlimited; default 1m (nginx) */
    uint32_t client_body_timeout_ms;   /* default 60 s */
    uint32_t send_timeout_ms;          /* default 60 s */
    uint32_t keepalive_timeout_ms;     /* default 75 s; 0 disables keep-alive */
    uint32_t keepalive_header_s;       /* second argument: "Keep-Alive: timeout=N", 0 = none */
    uint32_t keepalive_requests;       /* default 1000 */
    sg_str default_type;               /* default "text/plain" (nginx's compiled default) */
    sg_str root;                       /* absolute; default PREFIX/html */
    sg_str *index;                     /* default "index.html" */
    size_t nindex;
    bool internal;
    bool has_return;
    int return_code;
    sg_cval return_text;               /* body, or URL for 301/302/303/307/308 */
    sg_error_page *error_pages;
    size_t nerror_pages;
    sg_header_set *add_headers;
    size_t nadd_headers;
    sg_access_log *access_logs;
    size_t naccess_logs;               /* 0 with access_log_off = no logging */
    bool access_log_off;

    /* proxy */
    sg_proxy_pass *proxy_pass;         /* NULL: not a proxy location */
    int proxy_http_version;            /* 10 or 11; streamgate defaults to 11 (nginx: 10) */
    sg_header_set *proxy_headers;      /* effective list: defaults (Host $proxy_host,
                                          Connection "") merged with the user's */
    size_t nproxy_headers;
    uint32_t proxy_connect_timeout_ms; /* default 60 s */
    uint32_t proxy_read_timeout_ms;    /* default 60 s */
    uint32_t proxy_send_timeout_ms;    /* default 60 s */
    uint32_t next_upstream;            /* SG_NU_* mask; default error|timeout */
    uint32_t next_upstream_tries;      /* 0 = unlimited */
    uint32_t next_upstream_timeout_ms; /* 0 = unlimited */
    bool proxy_redirect_off;           /* only "off" and "default" are accepted */
    bool proxy_intercept_errors;
    bool proxy_buffering;              /* accepted; streamgate always streams with backpressure */

    /* error_log at http/server/location level (checked and kept; default:
     * the main error_log). Added by the configuration loader. */
    char *error_log_path;
    sg_log_level error_log_level;
    sg_mime_type *types;               /* `types {}`: extension -> type; none: a built-in table */
    size_t ntypes;
} sg_loc_conf;

typedef enum sg_loc_match {
    SG_LOC_PREFIX = 0,
    SG_LOC_EXACT,                      /* = */
    SG_LOC_PREFIX_NOREGEX,             /* ^~ */
    SG_LOC_REGEX,                      /* ~ */
    SG_LOC_REGEX_CASELESS,             /* ~* */
    SG_LOC_NAMED,                      /* @name */
} sg_loc_match;

typedef struct sg_location {
    sg_loc_match match;
    sg_str name;                       /* prefix, exact URI, regex source or "@name" */
    sg_conf_pos pos;
    void *regex;                       /* pcre2_code * for regex locations */
    sg_loc_conf conf;
    struct sg_location *parent;
    struct sg_location **children;     /* nested locations, declaration order */
    size_t nchildren;
    void *index;                       /* router's precomputed lookup (conf/router.c) */
} sg_location;

typedef enum sg_server_name_kind {
    SG_SN_EXACT = 0,
    SG_SN_WILDCARD_HEAD,               /* "*.example.com" */
    SG_SN_WILDCARD_TAIL,               /* "www.example.*" */
    SG_SN_DOT,                         /* ".example.com": example.com and *.example.com */
    SG_SN_REGEX,                       /* "~^(?<x>.+)\.example\.com$" */
} sg_server_name_kind;

typedef struct sg_server_name {
    sg_server_name_kind kind;
    sg_str name;                       /* lowercased; without "*." / ".*" / "." / "~" */
    void *regex;
} sg_server_name;

typedef struct sg_listen_conf {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *text;                        /* "127.0.0.1:8000" */
    bool default_server;
    bool reuseport;                    /* accepted: every listener uses SO_REUSEPORT per thread */
    int backlog;                       /* default 511 (nginx) */
    bool http2;                        /* listen ... http2 (or `http2 on` in the server) */
    sg_conf_pos pos;
} sg_listen_conf;

typedef struct sg_server_conf {
    sg_conf_pos pos;
    sg_server_name *names;
    size_t nnames;
    sg_listen_conf *listens;
    size_t nlistens;
    sg_location *root;                 /* pseudo-location "": server-level sg_loc_conf and top-level locations */
    sg_location **named;               /* @name locations */
    size_t nnamed;
    uint32_t client_header_timeout_ms; /* default 60 s */
    size_t large_header_buffers;       /* number, default 4 */
    size_t large_header_buffer_size;   /* size, default 8k */
} sg_server_conf;

/* One distinct listening address and the servers that share it. */
typedef struct sg_listen_group {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *text;
    int backlog;
    sg_server_conf **servers;
    size_t nservers;
    sg_server_conf *default_server;    /* the "default_server" one, else the first */
    bool http2;                        /* any server on it says http2: h2 (prior knowledge) served there */
    /* An L4 `stream {}` server listening here instead of HTTP (servers
     * is then empty): the worker hands accepted sockets to the stream proxy. */
    const struct sg_stream_server_conf *stream_server;
} sg_listen_group;

typedef struct sg_conf {
    int refs;                          /* atomic; sg_conf_ref / sg_conf_unref */
    char *file;                        /* absolute path of the main file, or "<builtin>" */
    char *prefix;                      /* absolute, ends without '/' */

    /* main context */
    int worker_processes;              /* threads; "auto" = online cores */
    uint32_t worker_connections;       /* default: from RLIMIT_NOFILE */
    char *pid_path;                    /* absolute; default PREFIX/streamgate.pid */
    bool daemon;                       /* default off */
    char *error_log_path;              /* absolute, or "stderr"; default stderr */
    sg_log_level error_log_level;      /* default error (nginx) */
    uint32_t worker_shutdown_timeout_ms; /* SIGQUIT/reload wait for old connections; default 0 = unlimited */

    /* http context */
    bool has_http;
    sg_server_conf **servers;
    size_t nservers;
    sg_upstream_conf **upstreams;      /* declared and implicit */
    size_t nupstreams;
    sg_listen_group *listens;
    size_t nlistens;
    sg_log_format **log_formats;       /* "main" and "combined" are always present */
    size_t nlog_formats;
    sg_var_table vars;                 /* compiled variable table (conf/vars.h) */

    /* stream context (conf/stream_conf.h); NULL without a stream{} block */
    struct sg_stream_conf *stream;

    char **files;                      /* every file read, in order (for -T) */
    size_t nfiles;

    sg_arena arena;

    /* Added by the configuration loader. */
    char **file_texts;                 /* contents of files[i] as read, for -T */
    size_t *file_lens;
    void **regexes;                    /* pcre2_code * owned by this generation: freed by the last unref */
    size_t nregexes;
    struct sg_conf_cleanup *cleanups;  /* sg_conf_on_free() hooks, run by the last unref */
} sg_conf;

/* Loads, checks and compiles a configuration file. `prefix` may be NULL
 * (default: the folder of `file`). On error returns NULL and writes
 * "file:line:col: message" into err. Log files are not opened here. */
sg_conf *sg_conf_load(const char *file, const char *prefix, char *err, size_t errlen);

/* The same from text in memory (the built-in demo, fuzzing, unit tests).
 * `name` stands for the file name in messages; includes resolve against prefix. */
sg_conf *sg_conf_load_string(const char *text, size_t len, const char *name,
                             const char *prefix, char *err, size_t errlen);

void sg_conf_ref(sg_conf *c);
void sg_conf_unref(sg_conf *c);   /* frees at zero (closes regexes, arena) */

/* Gives a compiled regex (pcre2_code *) to the generation, which frees it
 * with pcre2_code_free() at its last unref. For the router and map. */
void sg_conf_add_regex(sg_conf *c, void *code);

/* Runs fn(arg) when the generation is freed (before its arena goes), for
 * state other layers hang on it (e.g. sg_upstream_conf.runtime). */
void sg_conf_on_free(sg_conf *c, void (*fn)(void *arg), void *arg);

/* -T: prints every file the configuration read, as nginx -T does. */
void sg_conf_dump(const sg_conf *c, FILE *out);

#endif
