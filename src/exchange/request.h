/* The protocol-neutral view of one request, as the router, the variables,
 * the access log and the proxy core see it. Downstream codecs (HTTP/1.1,
 * HTTP/2) fill it; nothing here knows how the bytes arrived.
 * All slices point into the codec's buffers or into `arena`, which lives
 * exactly as long as the request. */
#ifndef SG_EXCHANGE_REQUEST_H
#define SG_EXCHANGE_REQUEST_H

#include <stdint.h>
#include <stdbool.h>
#include <time.h>
#include <sys/socket.h>
#include "core/str.h"

struct sg_conf;
struct sg_server_conf;
struct sg_location;

/* What a codec found out about a header field, for the side that
 * forwards it (the HTTP/1.1 parser computes the same bits, SG_H1_HDR_*). */
enum {
    /* Hop-by-hop: Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade,
     * Trailer, or named by a Connection token. Never forwarded as it is. */
    SG_HDR_HOP = 1u << 0,
    /* Not forwarded although end-to-end: a Content-Length that
     * Transfer-Encoding overrides (RFC 9112 6.3 rule 3). */
    SG_HDR_DROP = 1u << 1,
};

typedef struct sg_header {
    sg_str name;
    sg_str value;
    uint32_t flags;            /* SG_HDR_* */
} sg_header;

#define SG_MAX_CAPTURES 10     /* $0..$9 */

/* What one upstream attempt measured ($upstream_response_time and its
 * siblings hold one entry per attempt, joined with ", "). */
typedef struct sg_attempt {
    uint64_t response_ms;              /* $upstream_response_time */
    uint64_t connect_ms1, header_ms1;  /* ms + 1; 0: not reached, logged "-" */
    uint64_t body_len;                 /* $upstream_response_length */
    uint64_t recv, sent;               /* $upstream_bytes_received / _sent */
} sg_attempt;

#define SG_ATTEMPTS_INLINE 2

typedef struct sg_http_req {
    struct sg_conf *gen;               /* configuration generation it runs on */
    const struct sg_server_conf *srv;  /* chosen server block */
    const struct sg_location *loc;     /* chosen location (after rewrites/error_page) */

    sg_str method;
    sg_str request_uri;        /* $request_uri: the target as received */
    sg_str uri;                /* $uri: normalized, decoded path */
    sg_str args;               /* $args: after '?', empty if none */
    bool has_args;             /* a '?' was present */
    int http_major, http_minor;
    sg_header *headers;
    size_t nheaders;
    sg_str host;               /* $host: Host without port, lowercased; else server_name */

    const struct sockaddr *peer;   /* client address ($remote_addr; realip may replace it) */
    const struct sockaddr *conn_peer;  /* the connection's own peer, when realip replaced `peer` */
    /* From the connection's PROXY protocol header: [0] the client, [1] the
     * address it connected to ($proxy_protocol_*). NULL without one. */
    const struct sockaddr_storage *proxy_protocol;
    const struct sockaddr *local;  /* address the connection was accepted on */
    /* Its listen group in gen, handed over by the codec (NULL when a
     * reload removed the address while the connection lived). */
    const struct sg_listen_group *group;
    bool https;
    /* Extended CONNECT (RFC 8441): the :protocol pseudo-header, e.g.
     * "websocket"; empty for every other request. */
    sg_str protocol;

    /* Regex captures of the last location / server_name match: pairs of
     * offsets into `capture_subject` (-1 if unset), as PCRE2's ovector. */
    sg_str capture_subject;
    int ncaptures;
    long captures[2 * SG_MAX_CAPTURES];

    /* Response side, filled as the exchange goes on (for $status etc.). */
    int status;
    uint64_t body_bytes_sent;
    uint64_t bytes_sent;
    struct timespec start_mono;        /* CLOCK_MONOTONIC at the first byte */
    struct timespec start_real;        /* CLOCK_REALTIME */
    /* "127.0.0.1:8081, 127.0.0.1:8082" on retries; "502, 200": in the arena */
    sg_str upstream_addr;
    sg_str upstream_status;

    /* Per-request cache for variables that are costly or must be stable
     * (map results): indexed by variable index, NULL until computed. */
    sg_str *var_cache;
    uint8_t *var_cached;

    sg_arena arena;

    /* gzip (proxy/gzip_filter.c): bytes into and out of the compressor of
     * a completed compressed response, for $gzip_ratio; 0 otherwise. */
    uint64_t gzip_in, gzip_out;
    /* request body (area: body) */
    sg_str request_body;       /* $request_body: the whole body when it was kept in memory (proxy/reqbody.c) */
    sg_str request_body_file;  /* $request_body_file: the file a body read before proxying went to */
    uint64_t head_length;      /* request line and header bytes as received (the codec) */
    uint64_t body_received;    /* body bytes received so far; with head_length, $request_length */
    /* tls: the connection's TLS state (NULL: plain), for $ssl_* and the
     * client-certificate check; cleared by a codec that gives it away */
    struct sg_tls_conn *tls;
    /* rewrite module (proxy/rewrite.c) */
    bool uri_rewritten;        /* `rewrite` or `set $args` changed the URI: proxy_pass sends $uri?$args,
                                  not $request_uri */
    bool rw_location_invalid;  /* rewrite ... break: proxy_pass's URI part no longer replaces the
                                  location's prefix; the whole $uri goes (nginx's valid_location) */
    int rw_cycles;             /* location searches restarted by rewrites (at most 10) */
    bool rw_lost_pass;         /* an `if` without proxy_pass matched after one with it (nginx: 500) */
    sg_str rw_location;        /* a `return 30x URL` whose error_page is being followed: its Location */
    /* passvar: the pass this request goes to when its location's
     * proxy_pass/grpc_pass has variables (made per request; NULL: the
     * location's own). Read through sg_req_pass(). */
    const struct sg_proxy_pass *pass;
    /* header controls and variables (issue 9) */
    uint64_t conn_number;              /* $connection: set by the codec */
    uint32_t conn_requests;            /* $connection_requests: this one included */
    uint64_t conn_born_ms;             /* CLOCK_MONOTONIC ms at accept ($connection_time) */
    const sg_header *resp_headers;     /* the response head as handed to the codec ($sent_http_) */
    size_t nresp_headers;
    int64_t resp_content_length;       /* its length (-1: none or streamed) */
    const sg_header *resp_trailers;    /* trailers sent ($sent_trailer_) */
    size_t nresp_trailers;
    const sg_header *up_headers;       /* the last upstream response head ($upstream_http_) */
    size_t nup_headers;
    const sg_header *up_trailers;      /* its trailers ($upstream_trailer_) */
    size_t nup_trailers;
    /* One record per upstream attempt: $upstream_connect_time,
     * _header_time, _response_length and _bytes_* are formatted from them
     * only when something reads them (a log line, a header), not on every
     * request (sg_req_attempt_add, exchange/vars.c). The first two live
     * here, later ones in `more` (a request may be moved by value, see
     * proxy/tunnel_log.c, so nothing points into it). */
    sg_attempt attempts[SG_ATTEMPTS_INLINE];
    sg_attempt *more_attempts;
    uint32_t nattempts, more_cap;
    uint64_t up_body_bytes;            /* body bytes of the current attempt's response */
    const void *capture_re;            /* the regex of the last match, for named captures */
    /* limits (issue 10): $limit_req_status, $limit_conn_status (SG_LIMIT_*; 0: no limit ran) */
    uint8_t limit_req_status, limit_conn_status;
    /* rate (issue 10): the response's rate in bytes per second once
     * `set $limit_rate`, X-Accel-Limit-Rate or the limit filter decided it
     * (nginx's r->limit_rate and limit_rate_set; kept across internal
     * redirects, as nginx) */
    uint64_t limit_rate;
    bool limit_rate_set;
    /* logs (issue 12): the trailers that ended the response as the proxy
     * sent them (a backend's, or a gRPC status of its own), for
     * $grpc_status and $grpc_message; in arena */
    const sg_header *final_trailers;
    size_t nfinal_trailers;
    uint32_t h2_stream_id;     /* $http2_stream_id: the client's HTTP/2 stream (0: HTTP/1.x) */
} sg_http_req;

/* Finds a request header by name, case-insensitive. */
const sg_header *sg_req_find_header(const sg_http_req *r, sg_str name);

/* A new, zeroed attempt record; the i-th one (i < r->nattempts); the
 * records' memory back. */
sg_attempt *sg_req_attempt_add(sg_http_req *r);
sg_attempt *sg_req_attempt(sg_http_req *r, uint32_t i);
void sg_req_attempts_free(sg_http_req *r);

#endif
