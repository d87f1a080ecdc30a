/* Metrics: what the `metrics;` endpoint exposes (Prometheus text format
 * 0.0.4) and the text of nginx's stub_status.
 *
 * Everything counted on the request path is a slot of core/stats.h's
 * per-thread blocks: an increment of the calling thread's own counter, no
 * lock, no allocation, no formatting. A scrape sums the blocks and writes
 * the text.
 *
 * Labels are bounded:
 * - requests are counted per location row; rows are given to (server,
 *   location) pairs when a generation is installed (the same pair keeps
 *   its row across reloads), at most SG_MX_LOCS - 1 of them; the rest
 *   share row 0, labelled server="_other_", location="_other_".
 * - gRPC calls are counted per method row. A method ("/pkg.Service/Name")
 *   gets a row of its own only once a backend has answered it with a
 *   grpc-status other than 12 (UNIMPLEMENTED), and only while fewer than
 *   SG_MX_METHODS methods have one; every other call (methods the backend
 *   does not know, statuses the proxy produced for unknown methods,
 *   malformed paths, the methods past the cap) is counted under
 *   service="_other_", method="_other_". So a client inventing method
 *   names grows nothing. A method keeps its row for the life of the
 *   process. */
#ifndef SG_OBSERVE_METRICS_H
#define SG_OBSERVE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/stats.h"
#include "core/str.h"
#include "exchange/exchange.h"

#define SG_MX_LOCS 512
#define SG_MX_METHODS 256

/* A generation is about to be served: its locations get their rows.
 * `reload`: it replaces a running one (counted in the reloads). */
void sg_mx_conf_install(sg_conf *c, bool reload);

/* An exchange ends (the handler's finish): its location's request and
 * byte counters, the latency histograms, and an RFC 8441 tunnel's gauge. */
void sg_mx_request_done(const sg_exchange *ex);

/* A gRPC call ends: `path` its :path, `status` the grpc-status the client
 * got, `from_backend` whether a backend gave it (trailers or a
 * trailers-only head), message counts each way, its duration. */
void sg_mx_grpc_call(sg_str path, int status, bool from_backend, uint64_t msgs_in, uint64_t msgs_out,
                     uint64_t duration_us);

/* An HTTP/2 stream became a tunnel (RFC 8441); it ends with its exchange. */
static inline void sg_mx_ws_h2_open(void) { sg_stats_add(SG_ST_WS_H2, 1); }

/* Upstream attempt times, in ms + 1 (0: not reached), as the proxy keeps them. */
void sg_mx_upstream_times(uint64_t connect_ms1, uint64_t header_ms1);

/* nginx's stub_status page, byte for byte; *out is malloc'ed. */
size_t sg_mx_stub_text(char **out);

/* The exposition of everything this module and core/stats.h count,
 * appended to b. */
void sg_mx_render(sg_strbuf *b);

/* Helpers for the layers above that add their own families (upstreams). */
void sg_mx_family(sg_strbuf *b, const char *name, const char *type, const char *help);
void sg_mx_label_value(sg_strbuf *b, sg_str v);   /* escaped: \\ \" \n */

#endif
