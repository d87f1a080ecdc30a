/* Active health checks (issue 11, health): the `health_check` and `match`
 * directives of nginx Plus, in http{} locations and stream{} servers.
 *
 * Parsing only: each health_check line becomes one sg_health_check of the
 * generation (sg_conf.health); sg_health_conf_finish() binds it, after the
 * whole file, to the upstream its location's proxy_pass/grpc_pass (or its
 * stream server's proxy_pass) names and to its `match` block. The checks
 * themselves run in upstream/health.c. */
#ifndef SG_CONF_HEALTH_CONF_H
#define SG_CONF_HEALTH_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include "conf/conf.h"

struct sg_cctx;
struct sg_cnode;
struct sg_cmd;
struct sg_stream_server_conf;

typedef enum sg_hc_cond_kind {
    SG_HC_STATUS,                      /* status [!] CODE|LOW-HIGH ... */
    SG_HC_HEADER,                      /* header [!] NAME [= | != | ~ | !~ VALUE] */
    SG_HC_BODY,                        /* body ~ | !~ REGEX */
} sg_hc_cond_kind;

typedef enum sg_hc_op { SG_HC_EXISTS, SG_HC_EQ, SG_HC_NE, SG_HC_RE, SG_HC_NRE } sg_hc_op;

typedef struct sg_hc_cond {
    sg_hc_cond_kind kind;
    bool negate;                       /* status !, header ! NAME (absent) */
    uint16_t (*ranges)[2];             /* status: inclusive LOW-HIGH pairs */
    size_t nranges;
    sg_str name;                       /* header name */
    sg_hc_op op;
    sg_str value;
    void *re;                          /* pcre2_code * (owned by the generation) for ~ / !~ */
} sg_hc_cond;

/* match NAME { ... }: http conditions, or stream's send / expect. */
typedef struct sg_hc_match {
    sg_str name;
    sg_conf_pos pos;
    bool stream;
    sg_hc_cond *conds;
    size_t nconds;
    sg_str send;                       /* stream: bytes sent after connecting */
    sg_str expect;                     /* stream: literal the answer must start with */
    void *expect_re;                   /* stream: expect ~ REGEX (pcre2_code *) */
} sg_hc_match;

typedef struct sg_health_check {
    sg_conf_pos pos;
    bool stream;
    sg_loc_conf *loc;                  /* http: the location it was written in */
    struct sg_stream_server_conf *ss;  /* stream: the server it was written in */
    uint32_t interval_ms;              /* default 5 s */
    uint32_t jitter_ms;                /* default 0 */
    uint32_t fails, passes;            /* default 1, 1 */
    sg_str uri;                        /* default "/" */
    int port;                          /* 0: the server's own */
    sg_str match_name;
    bool mandatory, persistent;
    bool grpc;                         /* type=grpc */
    sg_str grpc_service;
    int grpc_status;                   /* -1: SERVING and status 0 wanted */
    uint32_t keepalive_time_ms;        /* accepted; every check opens its own connection */
    /* bound by sg_health_conf_finish() */
    const sg_hc_match *match;
    sg_upstream_conf *upstream;
    bool ssl;                          /* https:// or grpcs://, or stream proxy_ssl on */
    const sg_ssl_upstream_conf *ssl_conf;
    sg_str host;                       /* Host / :authority, and the SNI name */
    int http_version;                  /* 10, 11 or 20 (h2c or h2 over TLS) */
    uint32_t connect_timeout_ms, read_timeout_ms;
} sg_health_check;

typedef struct sg_health_conf {
    sg_health_check **checks;
    size_t nchecks;
    sg_hc_match **matches;
    size_t nmatches;
    void *runtime;                     /* upstream/health.c: the checker of this generation */
} sg_health_conf;

/* health_check [interval=] ... in a location / in a stream server. */
bool sg_health_set_check(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
bool sg_health_set_stream_check(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd,
                                void *base);
/* match NAME { ... } in http{} / stream{}. */
bool sg_health_set_match(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
bool sg_health_set_stream_match(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd,
                                void *base);

/* After the whole file (merge done, passes bound): binds every check. */
bool sg_health_conf_finish(struct sg_cctx *cx);

/* Whether an http status passes the match's status conditions etc.:
 * evaluates an http answer against m (NULL: 2xx or 3xx, nginx Plus's
 * default). `headers` is "Name: value\r\n..." as received (HTTP/1) or
 * rebuilt the same way (HTTP/2). */
bool sg_hc_match_http(const sg_hc_match *m, int status, const char *headers, size_t hlen, const char *body,
                      size_t blen);

#endif
