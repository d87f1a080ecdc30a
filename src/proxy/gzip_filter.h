/* The gzip filter (nginx's ngx_http_gzip_module): compresses response
 * bodies on their way to the client, for proxied and local answers alike,
 * HTTP/1.1 and HTTP/2.
 *
 * It sits between whoever produces a response and the downstream codec:
 * sg_gzip_head() is given every response head just before it goes out
 * (sg_respond_head). When the location, the request and the head allow it
 * (nginx's rules, see gzip_filter.c), it rewrites the head
 * (Content-Encoding: gzip, no Content-Length so the codec frames the body
 * as chunked or as DATA frames, no Accept-Ranges, a weak ETag) and puts
 * its own downstream ops in ex->down, which compress what the producer
 * sends and hand the result to the codec's ops. Nothing else changes for
 * the producer: backpressure (`pending`) is the codec's queue.
 *
 * Streaming: bytes given to zlib in one loop iteration are flushed
 * (Z_SYNC_FLUSH) at its end, so a long-lived stream (text/event-stream)
 * keeps flowing event by event and nothing waits for the whole body. */
#ifndef SG_PROXY_GZIP_FILTER_H
#define SG_PROXY_GZIP_FILTER_H

#include <stdbool.h>
#include <time.h>
#include "exchange/exchange.h"

typedef struct sg_gzip_filter sg_gzip_filter;

/* Decides whether this response is compressed and, if so, rewrites *resp
 * (its headers are replaced by an arena copy) and installs the filter. A
 * response gzip could apply to gets `Vary: Accept-Encoding` with
 * gzip_vary, whether or not this client accepts gzip (nginx). */
void sg_gzip_head(sg_exchange *ex, sg_response *resp);

/* The exchange is over: frees the compressor (no-op without one). */
void sg_gzip_release(sg_exchange *ex);

/* Pure parts, for the unit tests. */
/* Accept-Encoding names gzip with a quality above 0 (ngx_http_gzip_accept_encoding). */
bool sg_gzip_accepts(sg_str accept_encoding);
/* User-Agent is MSIE 4, 5 or 6 without SV1 (and not Opera), as nginx's "msie6". */
bool sg_gzip_msie6(sg_str user_agent);
/* The media type (before any ';', lowercased) is text/html or in gzip_types. */
bool sg_gzip_type_ok(const sg_loc_conf *lc, sg_str content_type);
/* gzip_proxied `mask` lets a request that came through a proxy (Via) have
 * this response compressed: its Expires (against its Date, else `now`),
 * Cache-Control, Last-Modified, ETag, and whether the request had
 * Authorization. */
bool sg_gzip_proxied_ok(uint32_t mask, bool authorization, const sg_response *resp, time_t now);

#endif
