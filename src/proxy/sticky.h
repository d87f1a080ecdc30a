/* sticky upstreams on the proxy's side (balancers, issue 11): what in the
 * request names a server, and what the response tells the client (the
 * cookie) or teaches the balancer (learn's create=). The choice itself is
 * upstream/sticky.c's. */
#ifndef SG_PROXY_STICKY_H
#define SG_PROXY_STICKY_H

#include <stdbool.h>

#include "exchange/exchange.h"
#include "upstream/balancer.h"

/* Sets ctx->sticky from the request: the cookie's value, the first
 * non-empty route variable, or the first non-empty lookup= value. */
void sg_sticky_request(sg_exchange *ex, const sg_upstream_conf *u, sg_pick_ctx *ctx);

/* The response head from `peer` arrived: learn create= (learn), or fill
 * *h with the Set-Cookie field to send (cookie; returns true). */
bool sg_sticky_response(sg_exchange *ex, const sg_upstream_conf *u, sg_balancer *b, sg_peer *peer,
                        uint64_t now_ms, sg_header *h);

/* The response from `peer` is complete: learn create= (learn without
 * `header`, which learns at the head). */
void sg_sticky_done(sg_exchange *ex, const sg_upstream_conf *u, sg_balancer *b, sg_peer *peer, uint64_t now_ms);

#endif
