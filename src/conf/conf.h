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
    uint32_t max_conns;                /* max_conns=N: open exchanges/tunnels at once, all threads; 0 = no limit */
    /* balancers (issue 11, area: balance) */
    uint32_t slow_start_ms;            /* slow_start=TIME: a recovered server's weight ramps up over TIME */
    char *route;                       /* route=STRING (sticky route / sticky cookie value) */
    bool drain;                        /* drain: only sticky requests go to it */
} sg_upstream_server_conf;

typedef enum sg_lb_method {
    SG_LB_ROUND_ROBIN = 0,
    SG_LB_LEAST_CONN,
    SG_LB_IP_HASH,
    SG_LB_HASH,                        /* hash KEY (upstream/hash.c) */
    SG_LB_HASH_CONSISTENT,             /* hash KEY consistent: ketama points */
    SG_LB_RANDOM,                      /* random (upstream/random.c) */
    SG_LB_RANDOM_TWO,                  /* random two [least_conn]: the less loaded of two random picks */
    /* balancers (issue 11, area: balance) */
    SG_LB_LEAST_TIME,                  /* least_time (upstream/least_time.c) */
} sg_lb_method;

/* What least_time measures (issue 11, area: balance) */
typedef enum sg_lt_mode {
    SG_LT_NONE = 0,
    SG_LT_HEADER,                      /* http: time to the response header */
    SG_LT_LAST_BYTE,                   /* http and stream: time to the whole response / end of session */
    SG_LT_CONNECT,                     /* stream: time to connect */
    SG_LT_FIRST_BYTE,                  /* stream: time to the first byte from the upstream */
} sg_lt_mode;

/* http2_ping_interval / http2_ping_timeout in upstream{} (HTTP/2 peers) */
#define SG_UPSTREAM_PING_INTERVAL_MS 30000
#define SG_UPSTREAM_PING_TIMEOUT_MS 20000

/* sticky (issue 11, area: balance; conf/balance_conf.c, upstream/sticky.c,
 * proxy/sticky.c): which server a client's requests stay on. */
typedef enum sg_sticky_kind {
    SG_STICKY_NONE = 0,
    SG_STICKY_COOKIE,                  /* sticky cookie NAME ...: the server's id in a cookie we set */
    SG_STICKY_ROUTE,                   /* sticky route $var...: the first non-empty names a route= */
    SG_STICKY_LEARN,                   /* sticky learn: sessions learned from create=, found by lookup= */
} sg_sticky_kind;

#define SG_STICKY_EXPIRES_MAX (-2)     /* expires=max */

typedef struct sg_sticky_conf {
    sg_sticky_kind kind;
    char *cookie;                      /* cookie: its name */
    int64_t expires_s;                 /* cookie: -1 none (a session cookie), SG_STICKY_EXPIRES_MAX, else seconds */
    sg_cval domain, path, samesite;    /* cookie: attributes (may hold variables; empty value: left out) */
    bool has_domain, has_path, has_samesite;
    bool httponly, secure;
    sg_cval *lookup;                   /* route's variables / learn's lookup= (first non-empty wins) */
    size_t nlookup;
    sg_cval *create;                   /* learn's create= */
    size_t ncreate;
    uint32_t timeout_ms;               /* learn: a session unused this long is forgotten (default 1 h) */
    bool header;                       /* learn: sessions are created from the response header */
} sg_sticky_conf;

typedef struct sg_upstream_conf {
    char *name;
    sg_conf_pos pos;
    sg_upstream_server_conf *servers;  /* a name resolving to N addresses gives N entries */
    size_t nservers;
    sg_lb_method lb;
    uint32_t keepalive;                /* idle connections kept per worker thread */
    uint32_t keepalive_timeout_ms;     /* default 60 s (nginx) */
    uint32_t keepalive_requests;       /* default 1000 (nginx >= 1.19.10) */
    /* HTTP/2 connections to the peers (streamgate): PING one silent this
     * long (0: never), close it without the ACK within the timeout (0:
     * within the interval), as the server-side directives do. */
    uint32_t h2_ping_interval_ms;      /* http2_ping_interval, default 30 s */
    uint32_t h2_ping_timeout_ms;       /* http2_ping_timeout, default 20 s */
    bool implicit;                     /* made by proxy_pass http://ADDR, not an upstream{} block */
    sg_cval hash_key;                  /* http upstreams' hash KEY (stream ones keep theirs in sg_stream_upstream) */
    void *runtime;                     /* upstream layer's shared peer state (upstream/peer.h) */
    /* header controls and small directives (issue 9) */
    uint32_t keepalive_time_ms;        /* keepalive_time: a kept connection older than this closes; default 1 h */
    /* balancers (issue 11, area: balance) */
    sg_lt_mode lt_mode;                /* least_time MODE, or random two least_time=MODE */
    bool lt_inflight;                  /* least_time ... inflight */
    sg_sticky_conf *sticky;            /* sticky; NULL without */
    /* dns: `server NAME resolve [service=NAME]` entries, re-resolved at run
     * time by upstream/resolve.c (their addresses are not in `servers`:
     * the runtime's balancer gets them), and the upstream's own `resolver`
     * / `resolver_timeout` (NULL / 0: the http{} or stream{} level's) */
    struct sg_upstream_resolve *resolves;
    size_t nresolves;
    struct sg_resolver_conf *dns_resolver;
    uint32_t dns_resolver_timeout_ms;
} sg_upstream_conf;

/* dns: one `server NAME resolve` line: the name, its port (or SRV service
 * name), and the parameters every address it resolves to gets. */
typedef struct sg_upstream_resolve {
    char *host;                        /* as written, without the port */
    int port;                          /* without service= */
    char *service;                     /* service=: the full SRV name ("_http._tcp.NAME"); NULL: A/AAAA */
    sg_upstream_server_conf tmpl;      /* weight, max_fails, backup ...; no address */
} sg_upstream_resolve;

/* ---------------- http: pieces used by locations ---------------- */

typedef struct sg_header_set {         /* add_header / proxy_set_header / grpc_set_header */
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

/* open_log_file_cache max=N [inactive=TIME] [min_uses=N] [valid=TIME]:
 * descriptors of log paths with variables, kept open (observe/access_log.c
 * makes `rt` when the generation is activated and frees it with it). */
typedef struct sg_log_cache {
    uint32_t max, min_uses;
    uint32_t inactive_ms, valid_ms;
    void *rt;
} sg_log_cache;

typedef struct sg_access_log {
    char *path;                        /* absolute */
    const sg_log_format *format;
    size_t buffer_size;                /* buffer=SIZE, 0 = default (64k) */
    uint32_t flush_ms;                 /* flush=TIME, default 1 s */
    sg_log_file *file;                 /* opened when the generation is activated */
    /* header controls and small directives (issue 9) */
    bool has_cond;                     /* if=COND: no line when it is empty or "0" */
    sg_cval cond;
    bool var_path;                     /* the path has variables: opened for each line */
    sg_cval path_value;
    /* log writers (issue 12): syslog: targets, gzip */
    const struct sg_syslog *syslog;    /* syslog:...: lines are sent there, path is NULL */
    int gzip;                          /* gzip[=LEVEL]: 1..9, 0 = off */
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
    /* https:// or grpcs://: the upstream speaks TLS, with the location's
     * proxy_ssl_* (grpc_ssl_* for grpc_pass) settings; default port 443 */
    bool ssl;
    /* passvar: proxy_pass/grpc_pass with variables. The URL is made per
     * request (proxy/pass_vars.c): upstream is NULL and the request gets
     * a sg_proxy_pass of its own (sg_http_req.pass) */
    bool has_vars;
    sg_cval url;                       /* the whole argument, scheme included */
} sg_proxy_pass;

/* passvar: `resolver ADDR ... [valid=TIME] [ipv4=on|off] [ipv6=on|off]`
 * (names in proxy_pass/grpc_pass with variables, net/resolver.c) */
typedef struct sg_resolver_conf {
    char *servers;                     /* "127.0.0.1:53,[::1]:5353": c-ares' csv form */
    uint32_t valid_ms;                 /* valid=: overrides the answers' TTL (0: the TTL) */
    bool ipv4, ipv6;                   /* default both on */
    int id;                            /* index among the generation's resolvers */
    sg_conf_pos pos;
} sg_resolver_conf;

/* ---------------- TLS (set by conf/ssl_conf.c, used by net/tls.c) ---------------- */

struct ssl_ctx_st;                     /* OpenSSL's SSL_CTX */

/* A file name or a string of a TLS directive and where it was written:
 * certificate errors of -t name that directive's file:line:col. */
typedef struct sg_ssl_value {
    char *s;                           /* files: absolute; NULL: not set */
    sg_conf_pos pos;
} sg_ssl_value;

enum {                                 /* ssl_protocols / proxy_ssl_protocols */
    SG_SSL_SSLv2 = 1u << 0, SG_SSL_SSLv3 = 1u << 1, SG_SSL_TLSv1 = 1u << 2,
    SG_SSL_TLSv1_1 = 1u << 3, SG_SSL_TLSv1_2 = 1u << 4, SG_SSL_TLSv1_3 = 1u << 5,
};

typedef enum sg_ssl_cache {
    SG_SSL_CACHE_NONE = 0,             /* nginx's default: claims a cache, stores nothing */
    SG_SSL_CACHE_OFF,                  /* no session ids at all */
    SG_SSL_CACHE_ON,                   /* builtin[:size] and/or shared:NAME:SIZE */
} sg_ssl_cache;

/* Server side (ssl_* in http and server), one per server block. */
typedef struct sg_ssl_conf {
    sg_ssl_value *certs;               /* ssl_certificate, in order (e.g. RSA and ECDSA) */
    size_t ncerts;
    sg_ssl_value *keys;                /* ssl_certificate_key, paired with certs by position */
    size_t nkeys;
    uint32_t protocols;                /* SG_SSL_* mask; default TLSv1.2 TLSv1.3 */
    sg_ssl_value ciphers;              /* default "HIGH:!aNULL:!MD5" (TLS <= 1.2 suites) */
    bool prefer_server_ciphers;        /* default off */
    sg_ssl_cache session_cache;        /* default none */
    uint32_t session_cache_size;       /* sessions kept: builtin:N + shared SIZE / 256 */
    uint32_t session_timeout_ms;       /* default 5m */
    bool session_tickets;              /* default on; ticket keys are random per generation */
    sg_ssl_value dhparam;              /* NULL: none (ECDHE and TLS 1.3 need none) */
    sg_ssl_value ecdh_curve;           /* default "auto": OpenSSL's groups */
    struct ssl_ctx_st *ctx;            /* built at load for servers on an ssl address, else NULL */
    /* tls: client certificates and handshake controls (conf/ssl_conf.c) */
    int verify_client;                 /* SG_SSL_VERIFY_*; default off */
    uint32_t verify_depth;             /* default 1 (nginx) */
    sg_ssl_value client_certificate;   /* CAs that verify clients, and the list sent to them */
    sg_ssl_value trusted_certificate;  /* CAs that verify clients, not sent */
    sg_ssl_value crl;                  /* revocation lists (PEM) checked for the whole chain */
    bool reject_handshake;             /* ssl_reject_handshake: alert unrecognized_name */
    sg_ssl_value password_file;        /* passphrases of encrypted keys, one per line */
    uint32_t buffer_size;              /* ssl_buffer_size: largest record written, default 16k */
    bool early_data;                   /* ssl_early_data: accepted, 0-RTT data is not */
    sg_ssl_value *conf_commands;       /* ssl_conf_command: name, value, name, value... */
    size_t nconf_commands;
} sg_ssl_conf;

enum {                                 /* ssl_verify_client */
    SG_SSL_VERIFY_OFF = 0, SG_SSL_VERIFY_ON, SG_SSL_VERIFY_OPTIONAL, SG_SSL_VERIFY_OPTIONAL_NO_CA,
};

/* Upstream side (proxy_ssl_* / grpc_ssl_*), per location. */
typedef struct sg_ssl_upstream_conf {
    bool verify;                       /* default off */
    uint32_t verify_depth;             /* default 1 (nginx) */
    sg_ssl_value trusted_certificate;  /* CA file (PEM); required by verify on, as in nginx */
    bool server_name;                  /* send SNI; default off (nginx) */
    sg_cval name;                      /* proxy_ssl_name; name_set false: the proxied host */
    bool name_set;
    sg_ssl_value certificate;          /* client certificate, with its key */
    sg_ssl_value certificate_key;
    uint32_t protocols;                /* default TLSv1.2 TLSv1.3 */
    sg_ssl_value ciphers;              /* default "DEFAULT" */
    bool session_reuse;                /* default on */
    struct ssl_ctx_st *ctx;            /* sg_ssl_upstream_ctx() builds it for locations that need it */
    /* tls: proxy_ssl_password_file, proxy_ssl_crl, proxy_ssl_conf_command (and grpc_) */
    sg_ssl_value password_file;
    sg_ssl_value crl;
    sg_ssl_value *conf_commands;       /* name, value, name, value... */
    size_t nconf_commands;
} sg_ssl_upstream_conf;

/* The upstream settings proxy_pass and grpc_pass share (nginx's
 * ngx_http_upstream_conf_t): sg_loc_conf embeds one for proxy_* and one
 * for grpc_*, filled by the same table lines (the name's prefix picks the
 * struct) and inherited each on its own, as nginx does. */
typedef struct sg_upstream_opts {
    /* 10, 11 or 20 (HTTP/2; h2c without TLS). proxy: proxy_http_version,
     * streamgate defaults to 11 (nginx: 10); grpc: always 20 */
    int http_version;
    sg_header_set *headers;            /* proxy_set_header / grpc_set_header; effective list: defaults
                                          (Host $proxy_host, Connection "", for grpc TE trailers)
                                          merged with the user's */
    size_t nheaders;
    uint32_t connect_timeout_ms;       /* default 60 s */
    /* default 60 s. proxy: also bounds tunnels (upstream silence) once
     * the user set it, as in nginx; grpc: bounds the response head only,
     * and the silence between messages once the user set it */
    uint32_t read_timeout_ms;
    bool read_timeout_set;             /* given by the user at some level */
    uint32_t send_timeout_ms;          /* default 60 s */
    uint32_t next_upstream;            /* SG_NU_* mask; default error|timeout */
    uint32_t next_upstream_tries;      /* 0 = unlimited */
    uint32_t next_upstream_timeout_ms; /* 0 = unlimited */
    bool intercept_errors;
    bool redirect_off;                 /* proxy_redirect off (only "off" and "default" are accepted);
                                          grpc: always (no Location rewriting) */
    bool upgrade;                      /* proxy_upgrade: forward Upgrade requests, tunnel after a
                                          valid 101; default on. grpc: never (no extended CONNECT) */
    sg_ssl_upstream_conf ssl;          /* proxy_ssl_* (https://) / grpc_ssl_* (grpcs://) */
    /* header controls (issue 9) */
    sg_str *hide_headers;              /* proxy_hide_header: lowercased names, added to the defaults */
    size_t nhide_headers;
    sg_str *pass_headers;              /* proxy_pass_header: names taken out of the hidden ones */
    size_t npass_headers;
    uint32_t ignore_headers;           /* proxy_ignore_headers: SG_IGN_* mask */
    bool pass_trailers;                /* proxy_pass_trailers (nginx 1.27.5); grpc: always */
} sg_upstream_opts;

enum {                                 /* proxy_ignore_headers */
    SG_IGN_X_ACCEL_REDIRECT = 1u << 0, SG_IGN_X_ACCEL_EXPIRES = 1u << 1,
    SG_IGN_X_ACCEL_LIMIT_RATE = 1u << 2, SG_IGN_X_ACCEL_BUFFERING = 1u << 3,
    SG_IGN_X_ACCEL_CHARSET = 1u << 4, SG_IGN_EXPIRES = 1u << 5, SG_IGN_CACHE_CONTROL = 1u << 6,
    SG_IGN_SET_COOKIE = 1u << 7, SG_IGN_VARY = 1u << 8,
};

typedef enum sg_expires_kind {         /* expires */
    SG_EXPIRES_OFF = 0,
    SG_EXPIRES_EPOCH,                  /* Thu, 01 Jan 1970 00:00:01 GMT, no-cache */
    SG_EXPIRES_MAX,                    /* 2037, max-age=315360000 */
    SG_EXPIRES_ACCESS,                 /* now + secs */
    SG_EXPIRES_MODIFIED,               /* Last-Modified + secs */
    SG_EXPIRES_DAILY,                  /* @time: the next time of day */
    SG_EXPIRES_VAR,                    /* a variable: parsed per request (`modified` may precede it) */
} sg_expires_kind;

typedef struct sg_expires {
    sg_expires_kind kind;
    bool modified;                     /* for SG_EXPIRES_VAR: "modified $x" */
    int64_t secs;
    sg_cval value;                     /* SG_EXPIRES_VAR */
} sg_expires;

/* One expires value ("off", "epoch", "max", "@15h", "-1h", "2048"),
 * NUL-terminated; for the variable form at run time too. */
bool sg_expires_parse(const char *s, bool modified, sg_expires *e);

/* Values a location sees after merging http -> server -> location.
 * Every field is set (defaults filled in) once the generation is built. */
/* allow / deny (ngx_http_access_module): the first rule that matches the
 * client address decides. family 0 is `all`; AF_UNIX is `unix:`. */
typedef struct sg_access_rule {
    int family;
    uint8_t addr[16], mask[16];        /* network order; 4 bytes used for AF_INET */
    bool deny;
} sg_access_rule;

typedef struct sg_loc_conf {
    /* core */
    uint64_t client_max_body_size;     /* bytes, 0 = unlimited; default 1m (nginx) */
    /* Written by the user at some level. On gRPC locations the limit
     * bounds each message, and only when set (no 1m default there). */
    bool client_max_body_size_set;
    uint32_t client_body_timeout_ms;   /* default 60 s */
    bool client_body_timeout_set;      /* written by the user (gRPC streams have none otherwise) */
    uint32_t send_timeout_ms;          /* default 60 s */
    uint32_t keepalive_timeout_ms;     /* default 75 s; 0 disables keep-alive */
    uint32_t keepalive_header_s;       /* second argument: "Keep-Alive: timeout=N", 0 = none */
    uint32_t keepalive_requests;       /* default 1000 */
    sg_str default_type;               /* default "text/plain" (nginx's compiled default) */
    sg_str root;                       /* absolute; default PREFIX/html */
    sg_cval *index;                    /* default "index.html"; may hold variables */
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

    /* proxy_pass / grpc_pass */
    sg_proxy_pass *proxy_pass;         /* NULL: not a proxy location (set by either directive) */
    bool is_grpc;                      /* this location's pass came from grpc_pass */
    sg_upstream_opts proxy;            /* proxy_* */
    sg_upstream_opts grpc;             /* grpc_*, inherited apart from proxy_* (nginx) */
    /* The set the proxy core and the HTTP clients read: &grpc on a
     * grpc_pass location, else &proxy. Chosen once when the generation
     * is built (never NULL then). */
    sg_upstream_opts *pass_opts;
    bool proxy_buffering;              /* accepted; streamgate always streams with backpressure */
    uint32_t proxy_tunnel_timeout_ms;  /* an upgraded connection silent both ways this long closes; 1 h */

    /* error_log at http/server/location level (checked and kept; default:
     * the main error_log). Added by the configuration loader. */
    char *error_log_path;
    sg_log_level error_log_level;
    /* that log, opened when the generation is activated; NULL: the main
     * log (same path and level as the main context's) */
    const sg_log_target *error_log;
    sg_mime_type *types;               /* `types {}`: extension -> type; none: a built-in table */
    size_t ntypes;
    uint32_t http2_chunk_size;         /* largest DATA frame sent, default 8k (nginx) */
    /* access control: allow / deny, one list inherited as a whole */
    sg_access_rule *access_rules;
    size_t naccess_rules;
    /* realip: set_real_ip_from (trusted addresses), real_ip_header,
     * real_ip_recursive */
    sg_access_rule *realip_from;
    size_t nrealip_from;
    sg_str realip_header;              /* default "X-Real-IP"; "proxy_protocol" is refused for now */
    bool realip_recursive;

    /* gzip (conf/gzip_conf.c; applied by proxy/gzip_filter.c) */
    bool gzip;                         /* default off */
    bool gzip_vary;                    /* Vary: Accept-Encoding on responses gzip may apply to */
    uint32_t gzip_comp_level;          /* 1..9, default 1 */
    uint64_t gzip_min_length;          /* bytes of a known Content-Length, default 20 */
    uint32_t gzip_http_version;        /* 10 or 11 (default): lowest request version compressed */
    uint32_t gzip_proxied;             /* SG_GZIP_PROXIED_* for requests with Via, default off */
    sg_str *gzip_types;                /* lowercased MIME types besides text/html (always in) */
    size_t ngzip_types;
    bool gzip_types_any;               /* gzip_types * */
    void **gzip_disable;               /* pcre2_code * (caseless) tried on User-Agent */
    size_t ngzip_disable;
    bool gzip_disable_msie6;           /* gzip_disable msie6 */

    /* request body and request controls (area: body; proxy/reqbody.h) */
    int request_buffering;             /* proxy_request_buffering: SG_RBUF_* (not written: streamed) */
    int body_in_file_only;             /* client_body_in_file_only: SG_BODY_FILE_* */
    bool body_in_single_buffer;        /* client_body_in_single_buffer */
    uint64_t client_body_buffer_size;  /* default 16k: a larger buffered body goes to a file */
    sg_str client_body_temp_path;      /* default PREFIX/client_body_temp */
    bool pass_request_body;            /* proxy_pass_request_body, default on */
    bool pass_request_headers;         /* proxy_pass_request_headers, default on */
    sg_cval set_body;                  /* proxy_set_body */
    bool has_set_body;
    sg_cval method;                    /* proxy_method */
    bool has_method;
    /* rewrite module (conf/rewrite.h): this level's own operations (if,
     * set, rewrite, break, return), never inherited; NULL: none */
    struct sg_rw_ops *rw;
    bool rewrite_log;                  /* default off */
    bool uninitialized_variable_warn;  /* default on */
    /* limit_except: the block's configuration, for a method not in
     * lmt_methods (GET brings HEAD); NULL: none */
    struct sg_location *lmt_block;
    sg_str *lmt_methods;
    size_t nlmt_methods;

    /* passvar: resolver (NULL: none, names in a pass with variables are
     * 502) and resolver_timeout (default 30 s) */
    sg_resolver_conf *resolver;
    uint32_t resolver_timeout_ms;

    /* header controls and small directives (issue 9) */
    sg_header_set *add_trailers;       /* add_trailer NAME VALUE [always] */
    size_t nadd_trailers;
    sg_expires expires;
    bool absolute_redirect;            /* default on */
    bool port_in_redirect;             /* default on */
    bool server_name_in_redirect;      /* default off */
    sg_str alias;                      /* alias PATH: replaces the location's prefix; empty: none */
    bool has_alias;
    uint32_t keepalive_time_ms;        /* keepalive_time: no new request on a connection older; 1 h */
    uint32_t keepalive_disable;        /* SG_KA_DISABLE_*; default msie6 */
    /* charset (conf/charset_conf.c; applied by proxy/charset_filter.c) */
    sg_cval charset;                   /* charset NAME (may hold variables) */
    bool charset_on;                   /* default off */
    sg_cval source_charset;            /* source_charset NAME */
    bool source_charset_on;            /* default off */
    bool override_charset;             /* default off */
    sg_str *charset_types;             /* lowercased MIME types */
    size_t ncharset_types;
    bool charset_types_any;            /* charset_types * */
    /* limits (issue 10: limit_req, limit_conn; conf/limit_conf.h, proxy/limit.h):
     * each list inherited as a whole by a level that has none */
    struct sg_limit_ref *limit_reqs;
    size_t nlimit_reqs;
    uint32_t limit_req_status;         /* 0: 503 */
    uint32_t limit_req_log_level;      /* sg_log_level + 1; 0: error */
    bool limit_req_dry_run;
    struct sg_limit_ref *limit_conns;
    size_t nlimit_conns;
    uint32_t limit_conn_status;        /* 0: 503 */
    uint32_t limit_conn_log_level;     /* sg_log_level + 1; 0: error */
    bool limit_conn_dry_run;
    /* rate (issue 10): bandwidth limits, evaluated per response
     * (proxy/rate_limit.c); the values may hold variables */
    sg_cval limit_rate;                /* limit_rate SIZE (bytes per second; 0: none) */
    bool has_limit_rate;
    sg_cval limit_rate_after;          /* limit_rate_after SIZE */
    bool has_limit_rate_after;
    sg_cval proxy_limit_rate;          /* proxy_limit_rate SIZE */
    bool has_proxy_limit_rate;
    /* log writers (issue 12): open_log_file_cache (NULL: off) */
    struct sg_log_cache *log_cache;
    /* metrics (issue 12): the location answers with nginx's stub_status
     * page or the Prometheus exposition (proxy/status_page.c); not
     * inherited. mx_id: its row in the per-location request counters
     * (observe/metrics.c, given when the generation is installed). */
    bool stub_status;
    bool metrics;
    int mx_id;
} sg_loc_conf;

/* gzip_proxied values (nginx's NGX_HTTP_GZIP_PROXIED_*). */
enum {
    SG_GZIP_PROXIED_OFF = 1u << 1,
    SG_GZIP_PROXIED_EXPIRED = 1u << 2,
    SG_GZIP_PROXIED_NO_CACHE = 1u << 3,
    SG_GZIP_PROXIED_NO_STORE = 1u << 4,
    SG_GZIP_PROXIED_PRIVATE = 1u << 5,
    SG_GZIP_PROXIED_NO_LM = 1u << 6,
    SG_GZIP_PROXIED_NO_ETAG = 1u << 7,
    SG_GZIP_PROXIED_AUTH = 1u << 8,
    SG_GZIP_PROXIED_ANY = 1u << 9,
};

/* sg_loc_conf.request_buffering */
enum { SG_RBUF_UNSET = 0, SG_RBUF_OFF, SG_RBUF_ON };
/* sg_loc_conf.body_in_file_only */
enum { SG_BODY_FILE_OFF = 0, SG_BODY_FILE_ON, SG_BODY_FILE_CLEAN };

enum { SG_KA_DISABLE_MSIE6 = 1u << 0, SG_KA_DISABLE_SAFARI = 1u << 1 };   /* keepalive_disable */


typedef enum sg_loc_match {
    SG_LOC_PREFIX = 0,
    SG_LOC_EXACT,                      /* = */
    SG_LOC_PREFIX_NOREGEX,             /* ^~ */
    SG_LOC_REGEX,                      /* ~ */
    SG_LOC_REGEX_CASELESS,             /* ~* */
    SG_LOC_NAMED,                      /* @name */
    SG_LOC_IF,                         /* an `if` block (conf/rewrite.h): never chosen by the router */
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
    void *index;                       /* router's precomputed lookup (sg_router_build) */
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
    bool ssl;                          /* listen ... ssl */
    bool proxy_protocol;               /* listen ... proxy_protocol */
    sg_conf_pos pos;
    /* stream modules */
    bool udp;                          /* stream listen ... udp: a datagram socket */
    /* header controls and small directives (issue 9): socket options, 0: system default */
    int sndbuf, rcvbuf;                /* sndbuf=SIZE, rcvbuf=SIZE */
    int so_keepalive;                  /* so_keepalive=: 0 unset, 1 on, -1 off */
    int keepidle, keepintvl, keepcnt;  /* so_keepalive=IDLE:INTVL:CNT, 0: system's */
} sg_listen_conf;

/* HTTP/2 server settings (http2_* directives, http and server level).
 * Connection-wide values come from the default server of the address the
 * connection arrived on, as nginx does. */
typedef struct sg_h2_conf {
    bool enabled;                      /* `http2 on`: h2 on every listen of the server */
    uint32_t max_concurrent_streams;   /* default 128 */
    uint32_t recv_buffer_size;         /* bytes read per connection per loop turn, default 256k */
    uint32_t body_preread_size;        /* initial stream window, default 64k */
    uint32_t max_field_size;           /* 0: the large_client_header_buffers size */
    uint32_t max_header_size;          /* 0: large_client_header_buffers number * size */
    uint32_t idle_timeout_ms;          /* SG_UNSET_MS: keepalive_timeout */
    uint32_t recv_timeout_ms;          /* SG_UNSET_MS: client_header_timeout */
    uint32_t max_requests;             /* streams per connection, 0 = unlimited (nginx: 1000) */
    uint32_t ping_interval_ms;         /* PING a silent connection after this, default 30 s; 0 = off */
    uint32_t ping_timeout_ms;          /* close if no PING ACK within, default 20 s */
} sg_h2_conf;

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
    uint32_t max_headers;              /* request header fields, HTTP/1.1 and HTTP/2 (nginx 1.29.8), default 100 */
    sg_h2_conf h2;
    sg_ssl_conf ssl;                   /* ssl_* (http and server level) */
    /* header controls and small directives (issue 9) */
    bool underscores_in_headers;       /* default off: fields named with '_' are dropped */
    bool ignore_invalid_headers;       /* default on: fields with other invalid names are dropped */
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
    bool ssl;                          /* any server on it says ssl: TLS served there */
    bool proxy_protocol;               /* connections start with a PROXY protocol header */
    /* An L4 `stream {}` server listening here instead of HTTP (servers
     * is then empty): the worker hands accepted sockets to the stream proxy. */
    const struct sg_stream_server_conf *stream_server;
    /* stream modules */
    bool udp;                          /* a datagram socket (stream listen ... udp) */
    /* header controls and small directives (issue 9): the socket options
     * of its listen lines (the first that sets each) */
    int sndbuf, rcvbuf, so_keepalive, keepidle, keepintvl, keepcnt;
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

    /* TLS contexts of this generation (conf/ssl_conf.c), freed with it */
    struct sg_ssl_state *ssl;

    char **notices;                    /* "file:line:col: text" for -t and the start log:
                                        * what is accepted but done differently (sg_cnotice) */
    size_t nnotices;

    char **files;                      /* every file read, in order (for -T) */
    size_t nfiles;

    sg_arena arena;

    /* Added by the configuration loader. */
    char **file_texts;                 /* contents of files[i] as read, for -T */
    size_t *file_lens;
    void **regexes;                    /* pcre2_code * owned by this generation: freed by the last unref */
    size_t nregexes;
    struct sg_conf_cleanup *cleanups;  /* sg_conf_on_free() hooks, run by the last unref */

    /* request body (area: body) */
    bool uses_request_body;            /* $request_body or $request_body_file appears somewhere */
    /* passvar: the resolvers of this generation (sg_resolver_conf.id), and
     * per worker thread the upstreams that passes with variables made at
     * run time (upstream/dynamic.h; server/runtime.c makes the array) */
    sg_resolver_conf **resolvers;
    size_t nresolvers;
    void **dyn;
    int ndyn;
    /* limits (issue 10): limit_req_zone / limit_conn_zone of http and stream */
    struct sg_limit_zone **limit_zones;
    size_t nlimit_zones;
    /* health (issue 11): health_check and match lines (conf/health_conf.h) */
    struct sg_health_conf *health;
    /* dns: the http{} and stream{} levels' resolver and resolver_timeout,
     * for upstreams with `resolve` servers and no resolver of their own */
    struct sg_resolver_conf *dns_http_resolver, *dns_stream_resolver;
    uint32_t dns_http_timeout_ms, dns_stream_timeout_ms;
    void *dns_sets[2];                 /* upstream/resolve.h's lookups (http, stream) while active */
    void *dns_answers;                 /* proxy/pass_vars.c's answers, shared by the worker threads */
} sg_conf;

/* Loads, checks and compiles a configuration file. `prefix` may be NULL
 * (default: the folder of `file`). On error returns NULL and writes
 * "file:line:col: message" into err. Log files are not opened here. */
sg_conf *sg_conf_load(const char *file, const char *prefix, char *err, size_t errlen);

/* The same, with nginx's -g: `params` (may be NULL) are main-context
 * directives read before the file. */
sg_conf *sg_conf_load_params(const char *file, const char *prefix, const char *params, char *err,
                             size_t errlen);

/* The same from text in memory (the built-in demo, fuzzing, unit tests).
 * `name` stands for the file name in messages; includes resolve against prefix. */
sg_conf *sg_conf_load_string(const char *text, size_t len, const char *name,
                             const char *prefix, char *err, size_t errlen);

void sg_conf_ref(sg_conf *c);
void sg_conf_unref(sg_conf *c);   /* frees at zero (closes regexes, arena) */

/* Compiles the regexes of every location and server_name (map regexes
 * are compiled as their lines are read): sg_conf_load() does it, exposed
 * for configurations built by hand. False + "file:line:col: pcre2_compile()
 * failed: ..." in err. sg_conf_free_regexes() frees them and the maps'
 * (sg_conf_unref() calls it); safe on a half-built generation, and twice. */
bool sg_conf_compile_regexes(sg_conf *c, char *err, size_t errlen);
void sg_conf_free_regexes(sg_conf *c);

/* Gives a compiled regex (pcre2_code *) to the generation, which frees it
 * with pcre2_code_free() at its last unref. For the router and map. */
void sg_conf_add_regex(sg_conf *c, void *code);

/* Runs fn(arg) when the generation is freed (before its arena goes), for
 * state other layers hang on it (e.g. sg_upstream_conf.runtime). */
void sg_conf_on_free(sg_conf *c, void (*fn)(void *arg), void *arg);

/* -T: prints every file the configuration read, as nginx -T does. */
void sg_conf_dump(const sg_conf *c, FILE *out);

#endif
