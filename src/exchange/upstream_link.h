/* The upstream side of an exchange: what the proxy core asks of an
 * upstream codec (the HTTP/1.1 client, a stream of the HTTP/2 client),
 * and the events the codec reports back through the link's events table.
 * Both heads are protocol-neutral: the codec adds and removes its own
 * framing, so the core reads an HTTP/2 response exactly as an HTTP/1.1
 * one. Codecs never call the proxy core by name: whoever opens a link
 * gives it the table (the proxy core in the server; a stub when a codec
 * is fuzzed or unit-tested). */
#ifndef SG_EXCHANGE_UPSTREAM_LINK_H
#define SG_EXCHANGE_UPSTREAM_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include "core/buf.h"
#include "core/log.h"
#include "exchange/request.h"

typedef struct sg_exchange sg_exchange;
typedef struct sg_upstream_link sg_upstream_link;
typedef struct sg_tls_conn sg_tls_conn;
typedef struct sg_worker sg_worker;
typedef struct sg_loop sg_loop;
struct sg_conf;
struct sg_ssl_upstream_conf;

/* How an upstream codec carries one exchange, as the proxy core decided
 * it from the location: codecs read no configuration of their own. */
typedef struct sg_link_opts {
    sg_worker *w;                 /* NULL only where a codec is fuzzed (pool 0) */
    sg_loop *loop;
    struct sg_conf *gen;          /* new upstream connections hold it while they live */
    /* https:// or grpcs://: the context to use (proxy_ssl_* / grpc_ssl_*)
     * and the name to send and verify, made for this request; pooled
     * connections are kept apart by both. NULL: cleartext. */
    const struct sg_ssl_upstream_conf *tls;
    sg_str tls_name;
    uint32_t connect_timeout_ms;
    uint32_t read_timeout_ms;     /* waiting for the response and between reads; 0: none */
    uint32_t send_timeout_ms;
    uint32_t tunnel_timeout_ms;   /* a link carrying a tunnel: idle limit both ways (0: none) */
    bool read_timeout_set;        /* the user set the read timeout: it bounds tunnels too */
    const sg_log_target *log;     /* the location's error_log (NULL: the main log) */
} sg_link_opts;

typedef struct sg_upstream_request {
    sg_str method;
    sg_str target;                /* path and query as sent */
    const sg_header *headers;     /* end-to-end, including Host */
    size_t nheaders;
    int64_t content_length;       /* -1: chunked / unknown; 0: no body */
    int http_minor;               /* proxy_http_version 1.0 or 1.1 */
    /* Asks to switch protocols (Upgrade is among the headers): the head
     * goes without body framing and is the whole request; a 101 answer
     * makes the link raw: send_data writes bytes as they are, send_end
     * is a FIN (once the queue is written), and everything after the 101
     * comes back through the data event until the peer closes. */
    bool upgrade;
    /* RFC 8441 extended CONNECT (HTTP/2 links only): the :protocol asked
     * for, method CONNECT. The stream is a tunnel from the start: no
     * content length, send_data carries tunnel bytes, send_end is the
     * END_STREAM; a 2xx head opens it, DATA after it is tunnel data. */
    sg_str protocol;
    /* request body (area: body): content_length is 0 and the request has
     * a body all the same (an empty one read whole): Content-Length: 0
     * goes with it, as nginx sends it. */
    bool empty_body;
} sg_upstream_request;

/* A response head as an upstream codec reports it. `headers` are every
 * field the peer sent, in order, flagged SG_HDR_HOP / SG_HDR_DROP where
 * they must not be forwarded (a 101's Upgrade among them); pseudo-fields
 * are not included. Valid during the head event only. */
typedef struct sg_upstream_response {
    int status;                   /* final status: 1xx heads other than 101 are the codec's */
    const sg_header *headers;
    size_t nheaders;
    bool has_body;                /* false: no body follows (HEAD, 204, 304, END_STREAM) */
    /* With a body: its length, or -1 when it is streamed (chunked, an
     * HTTP/2 stream without content-length, until close). Without one:
     * the length the peer announced (a HEAD answer's), else 0. */
    int64_t content_length;
} sg_upstream_response;

typedef enum sg_up_error {
    SG_UP_CONNECT,                /* connect() failed */
    SG_UP_CONNECT_TIMEOUT,
    SG_UP_TIMEOUT,                /* proxy_read_timeout / proxy_send_timeout */
    SG_UP_CLOSED,                 /* closed or reset before the response completed */
    SG_UP_INVALID,                /* invalid response head */
    /* The peer cannot carry this request (an extended CONNECT to a peer
     * without SETTINGS_ENABLE_CONNECT_PROTOCOL): nothing was sent, and
     * the peer is not at fault. */
    SG_UP_UNSUPPORTED,
} sg_up_error;

/* What an upstream codec reports, in this order: connected (only when the
 * link was not ready at open), then head, data..., end; or error at any
 * point, after which the link is gone. drain: the request queue went
 * below SG_LOW_WATER, send more body. */
typedef struct sg_upstream_events {
    void (*connected)(sg_exchange *ex);
    void (*error)(sg_exchange *ex, sg_up_error err, bool nothing_received);
    void (*head)(sg_exchange *ex, const sg_upstream_response *resp);
    void (*data)(sg_exchange *ex, const char *p, size_t n);
    /* The response is complete. `trailers` (lowercase names, no pseudo-
     * fields; n may be 0) are valid during the call only: the handler
     * releases or closes the link in it. */
    void (*end)(sg_exchange *ex, const sg_header *trailers, size_t ntrailers);
    void (*drain)(sg_exchange *ex);
    /* Asked before each read of response bytes, the first included: false
     * when the client cannot take more now (the handler has turned
     * want_response off until it drains), so that nothing is read for a
     * client over its output cap. NULL: always true. */
    bool (*may_read)(sg_exchange *ex);
} sg_upstream_events;

typedef struct sg_upstream_link_ops {
    void (*send_head)(sg_upstream_link *l, const sg_upstream_request *req);
    void (*send_data)(sg_upstream_link *l, const char *p, size_t n);
    void (*send_end)(sg_upstream_link *l);
    size_t (*pending)(sg_upstream_link *l);
    void (*want_response)(sg_upstream_link *l, bool on);
    /* The exchange is done with the link: back to the pool if the
     * message exchange was complete and clean, else closed. */
    void (*release)(sg_upstream_link *l);
    void (*close)(sg_upstream_link *l);
    /* Called during the head event of a 101 on an upgrade request:
     * gives the socket up for a tunnel. Unsent request bytes move into
     * *to_upstream (empty on entry), bytes that followed the 101 are
     * appended to *to_client, and the connection's TLS state (NULL when
     * plain) goes to *tls. The link is gone afterwards. Returns the fd,
     * -1 if this codec cannot (a multiplexed HTTP/2 connection). */
    int (*detach)(sg_upstream_link *l, sg_outq *to_upstream, sg_outq *to_client, sg_tls_conn **tls);
} sg_upstream_link_ops;

struct sg_upstream_link {
    const sg_upstream_link_ops *ops;
    const sg_upstream_events *ev; /* where the codec reports (set by the opener) */
    sg_exchange *ex;
    bool reused;                  /* came from the keep-alive pool */
    /* header controls and variables (issue 9): bytes written to and read
     * from the peer over the link's life ($upstream_bytes_sent/_received);
     * codecs that cannot tell (a multiplexed HTTP/2 stream) leave them 0 */
    uint64_t bytes_sent, bytes_received;
};

#endif
