/* Access log lines of upgraded HTTP/1.1 connections (a WebSocket, any
 * 101 upgrade), written when the tunnel closes rather than at the 101, as
 * nginx logs a proxied WebSocket: $status 101, the tunnel's bytes in
 * $bytes_sent, $body_bytes_sent, $request_length and $upstream_bytes_*,
 * and its whole life in $request_time (and, from the attempt's start, in
 * $upstream_response_time).
 *
 * Two things end independently: the exchange (the codec finishes it once
 * the socket is handed over) and the tunnel. The request moves into the
 * record at the first, the tunnel's counts at the second; the line goes
 * out when both happened. Nothing is kept when the location logs nothing.
 * (HTTP/2's RFC 8441 tunnels are exchanges that last as long as the
 * tunnel, and are logged at their end as any request.) */
#ifndef SG_PROXY_TUNNEL_LOG_H
#define SG_PROXY_TUNNEL_LOG_H

#include <stdint.h>
#include "exchange/exchange.h"
#include "proxy/tunnel.h"

/* Called at the hand-over, before the attempt's end is noted: takes the
 * log line of ex over (ex->tunnel_log) and makes o->on_close report the
 * tunnel's counts to it. `unsent`: bytes of the answer still queued towards
 * the client (counted in $bytes_sent already, and again by the tunnel);
 * `from_client`: bytes read from the client past its request head;
 * `up_sent`, `up_recv`: the upstream link's bytes of this attempt. */
void sg_tunnel_log_attach(sg_exchange *ex, sg_tunnel_opts *o, uint64_t unsent, uint64_t from_client,
                          uint64_t up_sent, uint64_t up_recv);

/* The exchange's finish, in place of its log line: the request moves
 * into the record (ex->req keeps an empty arena and no upstream lists). */
void sg_tunnel_log_finish(sg_exchange *ex);

#endif
