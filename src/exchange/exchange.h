/* An exchange: one request and its response, moved between a downstream
 * codec (the client side: the HTTP/1.1 and HTTP/2 servers) and whatever
 * produces the response (the exchange handler: in the server, the proxy
 * core with an upstream codec, or a local answer: return, error page,
 * static file).
 *
 * This is the contract both sides include; neither includes the other.
 * A downstream codec parses a request into ex->req, calls
 * sg_exchange_start(), then feeds the request body with
 * sg_exchange_on_body() only while the handler has asked for it
 * (want_body), which is how backpressure reaches the client socket. Those
 * calls go through the handler table the process installed
 * (sg_exchange_set_handler). The response goes back through the
 * downstream ops below; `pending` lets the handler stop reading the
 * upstream while the client is slow. */
#ifndef SG_EXCHANGE_EXCHANGE_H
#define SG_EXCHANGE_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>
#include "exchange/request.h"
#include "conf/conf.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/worker.h"

typedef struct sg_exchange sg_exchange;
typedef struct sg_upstream_link sg_upstream_link;
typedef struct sg_grpc_call sg_grpc_call;
typedef struct sg_tls_conn sg_tls_conn;
struct sg_peer;

/* A response head as the core hands it to a downstream codec: end-to-end
 * headers only; the codec adds its own framing (Content-Length /
 * Transfer-Encoding / Connection for HTTP/1.1, nothing for HTTP/2). */
typedef struct sg_response {
    int status;
    const sg_header *headers;
    size_t nheaders;
    int64_t content_length;      /* -1: not known in advance (streamed) */
    bool has_body;               /* false for HEAD, 1xx, 204, 304 */
    /* Trailers may follow (send_trailers): HTTP/1.1 frames the body as
     * chunked even when its length is known, so that they can go. */
    bool trailers;
    /* header controls (issue 9): the trailers are the server's own
     * (add_trailer): HTTP/1.1 sends them whether or not the client said
     * TE: trailers, as nginx does. */
    bool own_trailers;
} sg_response;

/* The head has a field called `name` (lowercase; compared caselessly). */
bool sg_response_has(const sg_response *resp, const char *name);

typedef struct sg_downstream_ops {
    void (*send_head)(sg_exchange *ex, const sg_response *resp);
    void (*send_data)(sg_exchange *ex, const char *p, size_t n);
    void (*send_end)(sg_exchange *ex);
    /* Deliver request body bytes (true) or hold them back (false). */
    void (*want_body)(sg_exchange *ex, bool on);
    /* Bytes queued towards the client but not yet written. */
    size_t (*pending)(sg_exchange *ex);
    /* The response cannot be completed: end the client's view of it
     * (HTTP/1.1: close the connection; HTTP/2: reset the stream). */
    void (*abort)(sg_exchange *ex);
    /* After a 101 went out (send_head): hands the client socket over to a
     * tunnel. The codec stops using the socket, moves its unsent output
     * into *to_client and what it read but did not use into *from_client,
     * and ends the exchange itself later (sg_exchange_finish at the end of
     * the loop iteration: the core is on the stack). Returns the fd, and
     * in *tls the connection's TLS state (NULL: plain), which goes with it.
     * NULL for codecs that multiplex (HTTP/2): they tunnel through the
     * exchange instead (ex->tunnel). */
    int (*detach)(sg_exchange *ex, sg_outq *to_client, sg_inbuf *from_client, sg_tls_conn **tls);
    /* Ends the response with trailer fields (end-to-end, lowercase or not),
     * in place of send_end: HTTP/2 sends them as a trailing HEADERS frame
     * with END_STREAM; HTTP/1.1 as the trailer section of a chunked body,
     * and drops them when the body is not chunked (as nginx). n may be 0. */
    void (*send_trailers)(sg_exchange *ex, const sg_header *h, size_t n);
} sg_downstream_ops;

/* Above this many bytes queued towards a peer, the other side stops
 * reading; below the low mark it resumes. Bounds memory per exchange. */
#define SG_HIGH_WATER (256 * 1024)
#define SG_LOW_WATER (64 * 1024)

typedef enum sg_body_source {
    SG_BODY_SRC_NONE = 0,
    SG_BODY_SRC_UPSTREAM,        /* relaying an upstream response */
    SG_BODY_SRC_FILE,            /* a static file */
} sg_body_source;

struct sg_exchange {
    sg_http_req req;
    sg_worker *w;
    const sg_downstream_ops *down;
    void *down_ctx;

    /* Request body, as the downstream codec announced it. */
    int64_t req_length;          /* -1: chunked / unknown; 0: none */
    bool req_body_done;          /* the codec delivered its end */
    uint64_t req_body_bytes;     /* delivered so far */
    bool req_internal;           /* reached through an internal redirect */
    int redirects;               /* error_page / internal redirects so far */
    int early_status;            /* the codec found the request invalid (e.g. 400 for a bad path) */
    int status_override;         /* error_page: the status the final response carries (0: its own) */

    /* Response progress. */
    bool resp_head_sent;
    bool resp_done;
    bool aborted;
    bool close_connection;       /* the client connection must not be reused (413, bad body...) */
    bool waiting_drain;          /* a body source is paused until the client drains */
    bool resp_trailers;          /* the response may end with trailers (sg_response.trailers) */

    /* Proxying. */
    const sg_upstream_conf *upstream;
    struct sg_peer *peer;
    uint64_t *tried;             /* balancer bitmap, in req.arena */
    unsigned tries;
    uint64_t first_try_ms;
    uint64_t attempt_start_ms;
    sg_upstream_link *up;        /* the upstream codec carrying this exchange */
    bool up_reused;              /* that link came from the keep-alive pool */
    bool req_body_started;       /* some body byte went to the current peer */
    bool req_body_dropped;       /* after an internal redirect the rest of the body is dropped */
    bool intercepting;           /* dropping an upstream error response for error_page */
    /* The upstream reset its HTTP/2 stream (RST_STREAM with up_reset_code)
     * rather than closing the connection: gRPC maps the code to a status. */
    bool up_reset;
    uint32_t up_reset_code;
    bool up_connect_failed;      /* the last attempt found no connection (refused, connect timeout) */
    /* An HTTP/2 error code for the client's stream when abort() resets it
     * (0: INTERNAL_ERROR): CANCEL when the upstream cancelled the call. */
    uint32_t abort_code;

    /* Upgrades (proxy/upgrade.h). */
    uint8_t upgrade;             /* sg_upgrade_kind the request asks for and may have (0: none) */
    /* RFC 8441 (HTTP/2 extended CONNECT): the upstream answered 101 and the
     * stream now carries raw bytes both ways; request DATA is tunnel data,
     * not a body (client_max_body_size and body timeouts do not apply). */
    bool tunnel;
    sg_str upgrade_offer;        /* protocols offered to the upstream ("websocket") */
    sg_str ws_key;               /* Sec-WebSocket-Key sent upstream (checks the 101's Accept) */

    /* A gRPC call on a grpc_pass location (proxy/grpc.h); NULL otherwise. */
    sg_grpc_call *grpc;

    /* Static file source. */
    int file_fd;
    uint64_t file_left;

    sg_deferred resume;          /* re-pump a body source after the client drained */

    const struct sg_exchange_handler *handler;   /* who answers (sg_exchange_init) */

    /* gzip: the response's compressor (proxy/gzip_filter.h), which then
     * owns ex->down and forwards to the codec's ops; NULL otherwise. */
    struct sg_gzip_filter *gzip;
    /* request body (area: body): the proxy's store of it (proxy/reqbody.h),
     * NULL when the body is only streamed */
    struct sg_reqbody *rbody;
    /* behave: fields the final response carries whatever answers it (an
     * intercepted 401's WWW-Authenticate, as nginx), in req.arena. */
    sg_header *carry;
    size_t ncarry;
    uint8_t index_redirects;     /* internal redirects by an absolute index */
    /* passvar (proxy/pass_vars.c): the run-time upstream this exchange
     * holds (upstream/dynamic.h) and its name lookup in progress */
    void *dyn;
    void *resolve_wait;
    /* header controls (issue 9): the codec's ops while add_trailer's
     * wrapper stands in `down` (proxy/header_filter.c) */
    const sg_downstream_ops *hf_down;
    /* the current upstream attempt, for $upstream_connect_time,
     * $upstream_header_time and the byte counts (ms; 0: not reached) */
    uint64_t up_connect_ms, up_header_ms;
    uint64_t up_sent0, up_recv0;      /* the link's counts when the attempt took it */
    /* limits (issue 10): a limit_req delay and limit_conn slots this
     * exchange holds (proxy/limit.h); NULL: none */
    struct sg_limit_state *limits;
    /* What must last until the client's stream is closed, not only the
     * exchange (limit_conn slots), set by the handler's finish: run by
     * sg_exchange_finish, unless the codec set closed_later (an HTTP/2
     * stream that still holds unsent bytes) and took it to run when the
     * stream ends. */
    void (*on_closed)(void *arg);
    void *on_closed_arg;
    bool closed_later;
    /* rate (issue 10): the bandwidth limiter of the response
     * (proxy/rate_limit.h), which then owns ex->down; NULL otherwise */
    struct sg_rate *rate;
    /* logs (issue 12): an upgraded HTTP/1.1 exchange's log line, written
     * when its tunnel closes (proxy/tunnel_log.h); NULL otherwise */
    struct sg_tunnel_log *tunnel_log;
};

/* Logs a message about this exchange to its location's error_log. */
#define sg_ex_log(ex, level, ...) \
    sg_log_to((ex)->req.loc ? (ex)->req.loc->conf.error_log : NULL, (level), __VA_ARGS__)

/* What downstream codecs call in whoever answers their exchanges. */
typedef struct sg_exchange_handler {
    /* Fields of its own in a new exchange (sg_exchange_init). May be NULL. */
    void (*init)(sg_exchange *ex);
    /* ex->req is filled (method, uri, args, headers, host, peer, local,
     * group, start times, gen) and ex->req_length set: answer it. */
    void (*start)(sg_exchange *ex);
    void (*on_body)(sg_exchange *ex, const char *p, size_t n);
    void (*on_body_end)(sg_exchange *ex);
    /* The client's queue went below SG_LOW_WATER: produce more. */
    void (*on_drain)(sg_exchange *ex);
    /* The client is gone or the downstream failed: release everything. */
    void (*on_abort)(sg_exchange *ex);
    /* The codec is done with ex (complete or not): log it, release what
     * the handler holds. The contract then releases the generation. */
    void (*finish)(sg_exchange *ex);
} sg_exchange_handler;

/* Installs the handler of every exchange started from now on: the
 * server's proxy core, or a stub where a codec is fuzzed. Called once
 * before any connection is accepted. */
void sg_exchange_set_handler(const sg_exchange_handler *h);

/* ---- called by downstream codecs ---- */

/* Prepares ex->req common fields (arena, start times, generation, held
 * for the exchange's life when w is not NULL); the codec fills the rest. */
void sg_exchange_init(sg_exchange *ex, sg_worker *w, sg_conf *gen,
                      const sg_downstream_ops *down, void *down_ctx);

static inline void sg_exchange_start(sg_exchange *ex) { ex->handler->start(ex); }
static inline void sg_exchange_on_body(sg_exchange *ex, const char *p, size_t n) { ex->handler->on_body(ex, p, n); }
static inline void sg_exchange_on_body_end(sg_exchange *ex) { ex->handler->on_body_end(ex); }
static inline void sg_exchange_on_drain(sg_exchange *ex) { ex->handler->on_drain(ex); }
/* The codec frees ex after sg_exchange_finish(). */
static inline void sg_exchange_on_abort(sg_exchange *ex) { ex->handler->on_abort(ex); }
/* Called once by the codec when it is done with ex (complete or not). */
void sg_exchange_finish(sg_exchange *ex);

#endif
