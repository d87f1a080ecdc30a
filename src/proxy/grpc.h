/* What the proxy core knows about gRPC calls (PROTOCOL-HTTP2.md): how a
 * call is recognised, how the proxy ends one it cannot complete (a gRPC
 * status, never an HTML page), the call's own deadline (`grpc-timeout`)
 * and the per-message bound that client_max_body_size means on a
 * grpc_pass location.
 *
 * State lives in an sg_grpc_call hung on the exchange (ex->grpc), made
 * only for calls on grpc_pass locations, so other exchanges pay one
 * pointer. */
#ifndef SG_PROXY_GRPC_H
#define SG_PROXY_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "exchange/exchange.h"

/* gRPC status codes the proxy produces. */
enum {
    SG_GRPC_OK = 0,
    SG_GRPC_CANCELLED = 1,
    SG_GRPC_UNKNOWN = 2,
    SG_GRPC_DEADLINE_EXCEEDED = 4,
    SG_GRPC_PERMISSION_DENIED = 7,
    SG_GRPC_RESOURCE_EXHAUSTED = 8,
    SG_GRPC_UNIMPLEMENTED = 12,
    SG_GRPC_INTERNAL = 13,
    SG_GRPC_UNAVAILABLE = 14,
    SG_GRPC_UNAUTHENTICATED = 16,
};

/* Where a stream of length-prefixed messages stands (a 1-byte flag and a
 * 4-byte big-endian length before each message), read in any chunks. */
typedef struct sg_grpc_framing {
    uint64_t msg_left;              /* bytes of the current message still to come */
    uint8_t prefix_have;            /* bytes of the next message's prefix seen */
    uint8_t prefix[5];
    uint64_t msgs;                  /* messages begun (metrics, issue 12) */
} sg_grpc_framing;

/* Follows n more bytes of the stream. False as soon as a message longer
 * than `limit` begins (its length in *too_long); the framing is then
 * undefined. */
bool sg_grpc_framing_scan(sg_grpc_framing *f, const char *p, size_t n, uint64_t limit, uint64_t *too_long);

/* The request is a gRPC call (content-type application/grpc[+proto...]):
 * its client understands only gRPC statuses. */
bool sg_grpc_is_call(const sg_exchange *ex);

/* The status of an HTTP error the proxy answers itself (gRPC's HTTP
 * mapping, exact where the proxy knows the cause: 504 an upstream
 * timeout, 413 a limit...). */
int sg_grpc_status_of_http(int status);

/* The status of an upstream RST_STREAM error code (gRPC's HTTP/2 mapping:
 * CANCEL -> CANCELLED, REFUSED_STREAM -> UNAVAILABLE, ENHANCE_YOUR_CALM
 * -> RESOURCE_EXHAUSTED, INADEQUATE_SECURITY -> PERMISSION_DENIED, the
 * rest INTERNAL). */
int sg_grpc_status_of_reset(uint32_t h2_code);

/* Parses a grpc-timeout value: 1 to 8 digits and a unit (H M S m u n),
 * rounded up to whole milliseconds (at least 1). False if malformed. */
bool sg_grpc_parse_timeout(sg_str v, uint64_t *ms);

/* Ends the call with `status` and `message` (no '%' or control bytes,
 * so no percent-encoding): a trailers-only response when no head went
 * out yet, trailers after the messages already relayed when the client's
 * codec can still carry them, else the stream is aborted. ex may end. */
void sg_grpc_end_call(sg_exchange *ex, int status, const char *message);

/* A call on a grpc_pass location starts (once: internal redirects keep
 * the first). Arms its deadline from grpc-timeout; prepares the message
 * scanner when client_max_body_size is set there. */
void sg_grpc_call_start(sg_exchange *ex);

/* Request body bytes of a call: false when a message exceeds
 * client_max_body_size (logged; the caller answers 413, which is
 * RESOURCE_EXHAUSTED to the client). */
bool sg_grpc_scan_request(sg_exchange *ex, const char *p, size_t n);

/* Response body bytes of a call, as they go to the client: its messages
 * are counted (metrics, issue 12). */
void sg_grpc_scan_response(sg_exchange *ex, const char *p, size_t n);

/* The exchange ends: stops the deadline, and counts the call by method
 * and by the grpc-status its client got (observe/metrics.h). */
void sg_grpc_call_end(sg_exchange *ex);

#endif
