/* Evaluating stream{} values for a session: the variables of
 * ngx_stream_core_module, _upstream_, _ssl_, _ssl_preread_ and map
 * results (conf/stream_conf.h compiles them). */
#ifndef SG_PROXY_STREAM_VARS_H
#define SG_PROXY_STREAM_VARS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "conf/stream_conf.h"

struct sg_tls_conn;

/* Upstream attempts remembered for $upstream_* (nginx lists each try). */
#define SG_STREAM_MAX_TRIES 16

typedef struct sg_stream_try {
    const char *name;                  /* "127.0.0.1:8081" */
    int64_t connect_ms;                /* -1: not connected */
    int64_t first_byte_ms;             /* -1: none */
    int64_t session_ms;
    uint64_t sent, received;
} sg_stream_try;

/* A `set` variable's value in a session. */
typedef struct sg_stream_setval {
    int var;                                 /* index in sg_stream_conf.maps */
    char *p;
    size_t n;
} sg_stream_setval;

/* What a session knows about itself, read by the evaluator. */
typedef struct sg_stream_info {
    const sg_stream_conf *sc;
    const struct sockaddr *client, *local;   /* local: not a wildcard (getsockname) */
    uint64_t connection;
    uint64_t start_ms, now_ms;               /* loop times: $session_time */
    uint64_t bytes_sent, bytes_received;     /* to / from the client */
    int status;                              /* 200, 400, 403, 500, 502, 503 */
    bool udp;
    unsigned ntries;
    sg_stream_try tries[SG_STREAM_MAX_TRIES];
    const struct sg_tls_conn *tls;           /* listen ... ssl: the client's TLS */
    const char *preread_server_name;         /* ssl_preread: NULL until parsed */
    const char *preread_alpn;                /* "h2,http/1.1" */
    const char *preread_protocol;            /* "TLSv1.2", "" for a non-TLS client */
    sg_stream_setval *sets;                  /* `set` values, in order (the last one wins) */
    size_t nsets;
    /* quick wins (issue 9): listen ... proxy_protocol: the header's source
     * and destination; NULL without a header or for UNKNOWN/LOCAL */
    const struct sockaddr *pp_src, *pp_dst;
    /* real client address (issue 10): the header's TLVs ($proxy_protocol_tlv_*) */
    const uint8_t *pp_tlv;
    size_t pp_tlv_len;
    /* access (issue 10): set_real_ip_from: the connection's own peer once
     * `client` is the PROXY header's source; NULL otherwise */
    const struct sockaddr *realip_peer;
    /* limits (issue 10): $limit_conn_status (SG_LIMIT_*; 0: no limit ran) */
    uint8_t limit_conn_status;
} sg_stream_info;

/* Evaluates v into buf (SG_STREAM_VAL_MAX bytes, longer values are cut);
 * returns the length. */
size_t sg_stream_eval(const sg_stream_val *v, const sg_stream_info *in, char *buf);

/* A log_format line for the session: variables escaped as the format
 * says (default: \xHH, and "-" for an empty value; json; none). */
size_t sg_stream_eval_log(const sg_stream_log_format *f, const sg_stream_info *in, char *buf);

/* Runs the server's `set` lines for a session (in->sets: malloc'ed;
 * sg_stream_sets_free frees them). */
void sg_stream_sets_apply(const sg_stream_server_conf *srv, sg_stream_info *in);
void sg_stream_sets_free(sg_stream_info *in);

/* A number for $connection (per process, as nginx's per worker). */
uint64_t sg_stream_next_connection(void);

#endif
