/* limit_req and limit_conn at run time (nginx's preaccess phase), for
 * HTTP exchanges and stream{} sessions. The zones are core/zone.h's,
 * shared by every worker thread; the configuration is conf/limit_conf.h.
 *
 * limit_req is nginx's leaky bucket, in milli-requests: a request above
 * the rate is refused (limit_req_status, default 503) past `burst`, and
 * past `delay` waits on a timer of its worker's loop before it goes on.
 * limit_conn holds a slot of its key for as long as the exchange lives
 * (an HTTP/2 stream, a gRPC call, a WebSocket until its tunnel closes)
 * or the stream{} session lasts. A gRPC call refused by either gets a
 * trailers-only RESOURCE_EXHAUSTED (8) instead of the HTML status. */
#ifndef SG_PROXY_LIMIT_H
#define SG_PROXY_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/limit_conf.h"
#include "conf/stream_conf.h"
#include "exchange/exchange.h"
#include "proxy/stream_vars.h"
#include "proxy/tunnel.h"

/* Connection slots held: released (and freed) by sg_limit_slots_free. */
typedef struct sg_limit_slots sg_limit_slots;
void sg_limit_slots_free(sg_limit_slots *s);

/* The location's limit_req lines, then its limit_conn lines, once per
 * request (an internal redirect keeps what the first location decided).
 * True: the request goes on now. False: it was answered (refused), or
 * it waits out a limit_req delay and `cont` runs it afterwards (after
 * limit_conn). */
bool sg_limit_run(sg_exchange *ex, void (*cont)(sg_exchange *ex));

/* The exchange ends (finish or abort): a pending delay is cancelled and
 * its connection slots are given back. */
void sg_limit_release(sg_exchange *ex);
/* The exchange finishes: the same, except that its slots are given back
 * when the client's stream is closed (ex->on_closed): an HTTP/2 stream
 * still sending its answer counts, as in nginx. */
void sg_limit_finish(sg_exchange *ex);

/* An HTTP/1.1 upgrade hands its sockets to a tunnel: the slots go with
 * it, given back when the tunnel closes (o->on_close is wrapped). */
void sg_limit_tunnel(sg_exchange *ex, sg_tunnel_opts *o);

/* stream{}: the server's limit_conn lines for a new session. False: it
 * is refused (the caller ends it with 503). *slots: what it now holds
 * (NULL: none). */
bool sg_limit_stream(const sg_stream_proxy_conf *pc, sg_stream_info *in, sg_limit_slots **slots);

#endif
