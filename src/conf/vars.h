/* Variables ($host, $http_x, map results, ...) and "complex values"
 * (strings with variables inside, such as log formats or header values).
 *
 * Names are resolved once, when the configuration is compiled: a complex
 * value becomes a list of literal pieces and variable indexes, and reading a
 * variable at run time is a switch on its kind, never a search by name.
 * This is the compile side; reading values for a request is
 * exchange/vars.h's (sg_var_get, sg_cval_eval). */
#ifndef SG_CONF_VARS_H
#define SG_CONF_VARS_H

#include <stdbool.h>
#include <stddef.h>
#include "core/str.h"

struct sg_conf;
struct sg_map;

/* Where a directive or token stands in the configuration text. */
typedef struct sg_conf_pos {
    const char *file;
    int line, col;
} sg_conf_pos;

typedef enum sg_var_kind {
    SG_VAR_HOST = 0, SG_VAR_REMOTE_ADDR, SG_VAR_BINARY_REMOTE_ADDR, SG_VAR_REMOTE_PORT,
    SG_VAR_SCHEME, SG_VAR_REQUEST_METHOD, SG_VAR_REQUEST_URI, SG_VAR_URI,
    SG_VAR_DOCUMENT_URI, SG_VAR_ARGS, SG_VAR_QUERY_STRING, SG_VAR_IS_ARGS,
    SG_VAR_SERVER_PORT, SG_VAR_SERVER_ADDR, SG_VAR_SERVER_NAME, SG_VAR_SERVER_PROTOCOL,
    SG_VAR_REQUEST, SG_VAR_STATUS, SG_VAR_BODY_BYTES_SENT, SG_VAR_BYTES_SENT,
    SG_VAR_REQUEST_TIME, SG_VAR_UPSTREAM_ADDR, SG_VAR_UPSTREAM_STATUS,
    SG_VAR_UPSTREAM_RESPONSE_TIME, SG_VAR_PROXY_ADD_X_FORWARDED_FOR, SG_VAR_PROXY_HOST,
    SG_VAR_TIME_LOCAL, SG_VAR_TIME_ISO8601, SG_VAR_MSEC, SG_VAR_REMOTE_USER,
    SG_VAR_HTTP_REFERER, SG_VAR_HTTP_USER_AGENT,
    SG_VAR_REALIP_REMOTE_ADDR, SG_VAR_REALIP_REMOTE_PORT,   /* the address before realip changed it */
    SG_VAR_PROXY_PROTOCOL_ADDR, SG_VAR_PROXY_PROTOCOL_PORT,   /* from a PROXY protocol header */
    SG_VAR_PROXY_PROTOCOL_SERVER_ADDR, SG_VAR_PROXY_PROTOCOL_SERVER_PORT,
    SG_VAR_HTTP_HEADER,                 /* $http_NAME: any request header */
    SG_VAR_ARG,                         /* $arg_NAME */
    SG_VAR_COOKIE,                      /* $cookie_NAME */
    SG_VAR_CAPTURE,                     /* $1..$9 */
    SG_VAR_MAP,                         /* result of a map block */
    SG_VAR_GZIP_RATIO,                  /* gzip: $gzip_ratio */
    /* request body (area: body) */
    SG_VAR_REQUEST_BODY, SG_VAR_REQUEST_BODY_FILE, SG_VAR_REQUEST_LENGTH,
    /* tls: $https and $ssl_* (the connection's TLS state; sg_var_def.tls says which) */
    SG_VAR_TLS,
    SG_VAR_USER,                        /* made by `set` or a named capture of if/rewrite (rewrite module) */
    /* header controls and variables (issue 9) */
    SG_VAR_CONNECTION, SG_VAR_CONNECTION_REQUESTS, SG_VAR_HTTP2, SG_VAR_PROXY_PORT,
    SG_VAR_UPSTREAM_CONNECT_TIME, SG_VAR_UPSTREAM_HEADER_TIME, SG_VAR_UPSTREAM_RESPONSE_LENGTH,
    SG_VAR_UPSTREAM_BYTES_RECEIVED, SG_VAR_UPSTREAM_BYTES_SENT, SG_VAR_IS_REQUEST_PORT,
    SG_VAR_REQUEST_PORT, SG_VAR_HOSTNAME, SG_VAR_PID, SG_VAR_NGINX_VERSION, SG_VAR_REQUEST_ID,
    SG_VAR_REALPATH_ROOT, SG_VAR_DOCUMENT_ROOT, SG_VAR_CONTENT_LENGTH, SG_VAR_CONTENT_TYPE,
    SG_VAR_LIMIT_RATE, SG_VAR_PIPE, SG_VAR_REQUEST_COMPLETION, SG_VAR_REQUEST_FILENAME,
    SG_VAR_SENT_HTTP,                   /* $sent_http_NAME: a response header */
    SG_VAR_SENT_TRAILER,                /* $sent_trailer_NAME */
    SG_VAR_UPSTREAM_HTTP,               /* $upstream_http_NAME */
    SG_VAR_UPSTREAM_TRAILER,            /* $upstream_trailer_NAME */
    SG_VAR_UPSTREAM_COOKIE,             /* $upstream_cookie_NAME: from the upstream's Set-Cookie */
    SG_VAR_NAMED_CAPTURE,               /* (?<name>...) of a server_name or location regex */
    SG_VAR_CONNECTION_TIME,
    /* real client address (issue 10) */
    SG_VAR_PROXY_PROTOCOL_TLV,          /* $proxy_protocol_tlv_NAME (param: NAME) */
    /* limits (issue 10) */
    SG_VAR_LIMIT_REQ_STATUS, SG_VAR_LIMIT_CONN_STATUS,
    /* logs (issue 12) */
    SG_VAR_GRPC_STATUS, SG_VAR_GRPC_MESSAGE, SG_VAR_GRPC_METHOD, SG_VAR_HTTP2_STREAM_ID,
    /* metrics (issue 12): stub_status's $connections_* (core/stats.h) */
    SG_VAR_CONNECTIONS_ACTIVE, SG_VAR_CONNECTIONS_READING, SG_VAR_CONNECTIONS_WRITING,
    SG_VAR_CONNECTIONS_WAITING,
} sg_var_kind;

/* tls: which TLS variable an SG_VAR_TLS is (net/tls_vars.h computes them). */
typedef enum sg_tls_var_id {
    SG_TLS_VAR_HTTPS = 0, SG_TLS_VAR_PROTOCOL, SG_TLS_VAR_CIPHER, SG_TLS_VAR_CIPHERS, SG_TLS_VAR_CURVE,
    SG_TLS_VAR_CURVES, SG_TLS_VAR_SERVER_NAME, SG_TLS_VAR_SESSION_ID, SG_TLS_VAR_SESSION_REUSED,
    SG_TLS_VAR_ALPN_PROTOCOL, SG_TLS_VAR_EARLY_DATA, SG_TLS_VAR_CLIENT_VERIFY, SG_TLS_VAR_CLIENT_S_DN,
    SG_TLS_VAR_CLIENT_I_DN, SG_TLS_VAR_CLIENT_S_DN_LEGACY, SG_TLS_VAR_CLIENT_I_DN_LEGACY, SG_TLS_VAR_CLIENT_CERT,
    SG_TLS_VAR_CLIENT_RAW_CERT, SG_TLS_VAR_CLIENT_ESCAPED_CERT, SG_TLS_VAR_CLIENT_FINGERPRINT,
    SG_TLS_VAR_CLIENT_SERIAL, SG_TLS_VAR_CLIENT_V_START, SG_TLS_VAR_CLIENT_V_END, SG_TLS_VAR_CLIENT_V_REMAIN,
    SG_TLS_VAR_COUNT
} sg_tls_var_id;

/* tls: the name of TLS variable id (without '$'). */
const char *sg_tls_var_name(int id);

typedef struct sg_var_def {
    sg_var_kind kind;
    sg_str name;                        /* without '$' */
    sg_str param;                       /* header name ("x-forwarded-for" for $http_x_forwarded_for,
                                           '_' turned into '-'), arg or cookie name */
    int capture;                        /* for SG_VAR_CAPTURE */
    struct sg_map *map;                 /* for SG_VAR_MAP; NULL while a map var is used before its map */
    sg_conf_pos first_use;              /* for "unknown variable" errors reported at the end */
    /* tls */
    int tls;                            /* for SG_VAR_TLS: an sg_tls_var_id */
} sg_var_def;

typedef struct sg_var_table {
    sg_var_def *defs;
    size_t n, cap;
} sg_var_table;

typedef struct sg_cval_part {
    int var;                            /* -1: literal piece */
    sg_str lit;
} sg_cval_part;

typedef struct sg_cval {
    sg_cval_part *parts;
    size_t nparts;
    bool literal;                       /* no variables: `text` is the whole value */
    sg_str text;                        /* the source text (for -T and literals) */
} sg_cval;

/* Compile time. Returns the index of variable `name` (without '$'),
 * adding it to the table if needed. A name that is no built-in and no known
 * prefix ($http_, $arg_, $cookie_, $1..$9) is recorded as a pending map
 * variable, as nginx allows a map to be declared after its first use;
 * sg_vars_finish() reports those still undefined at `pos`. */
int sg_var_index(struct sg_conf *c, sg_str name, sg_conf_pos pos);

/* Binds variable `name` to a map (the map directive). False + err if the
 * name is a built-in or already bound. */
bool sg_var_define_map(struct sg_conf *c, sg_str name, struct sg_map *map,
                       char *err, size_t errlen);

/* Declares a user variable (`set $name`, a named capture of `if` or
 * `rewrite`) and returns its index; the variable may already be in use
 * (as in nginx, it may be read before the directive that sets it).
 * -1 + err when the name is a built-in or a map. $args is allowed:
 * setting it changes the request's arguments. */
int sg_var_define_user(struct sg_conf *c, sg_str name, char *err, size_t errlen);
/* A regex (server_name, location) was compiled from `re`: its named
 * groups, (?<name>...) (?P<name>...) (?'name'...), become variables. */
void sg_var_note_captures(struct sg_conf *c, sg_str re);

/* After the whole file is read: "file:line:col: unknown "name" variable"
 * for any variable never defined. */
bool sg_vars_finish(struct sg_conf *c, char *err, size_t errlen);

/* Compiles "text with $vars and ${vars}" into `out`; false + err on a
 * syntax error (e.g. an unclosed "${"). Memory comes from the generation's arena. */
bool sg_cval_compile(struct sg_conf *c, sg_str text, sg_conf_pos pos, sg_cval *out,
                     char *err, size_t errlen);

/* Regexes shared by location, server_name and map (PCRE2, JIT when
 * available). sg_regex_compile returns a pcre2_code * or NULL with
 * "pcre2_compile() failed: MSG in "RE"" in err (no position: callers prefix it).
 * Matching one against a request is sg_regex_exec (exchange/vars.h). */
void *sg_regex_compile(sg_str re, bool caseless, char *err, size_t errlen);
void sg_regex_free(void *re);

#endif
