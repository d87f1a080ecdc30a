/* proxy_pass / grpc_pass with variables, per request, as nginx:
 *
 * - the value is evaluated; proxy_pass needs http:// or https://,
 *   grpc_pass takes grpc://, grpcs:// or no scheme;
 * - HOST without a port naming an upstream{} block uses it; HOST:PORT
 *   that an address-only proxy_pass of the configuration made an
 *   implicit upstream for uses that one;
 * - an address ("127.0.0.1:8081", "[::1]:8081", "unix:/path") is used
 *   directly: a run-time upstream (upstream/dynamic.h);
 * - any other name is looked up with the location's `resolver`
 *   (net/resolver.h, asynchronous, its answer kept for its TTL); without
 *   one the request is 502 and the error log says "no resolver defined
 *   to resolve NAME".
 * A URI part in the value replaces the request's URI as it is (nginx:
 * no location prefix is cut, no arguments added); without one the
 * client's URI goes unchanged. */
#ifndef SG_PROXY_PASS_VARS_H
#define SG_PROXY_PASS_VARS_H

#include "exchange/exchange.h"

/* Finds the request's pass (ex->req.pass, with its upstream), then
 * calls go(ex), at once or once the name is resolved; or answers the
 * request itself (500 for a value that is no URL, 502 otherwise). */
void sg_pass_vars_start(sg_exchange *ex, void (*go)(sg_exchange *ex));

/* The exchange no longer needs its run-time upstream or its lookup
 * (ended, aborted, or redirected elsewhere). Safe to call again. */
void sg_pass_vars_end(sg_exchange *ex);

/* A tunnel takes over the exchange's hold of its run-time upstream:
 * returns it (NULL if the upstream is not a run-time one); the tunnel
 * calls sg_pass_vars_tunnel_done(held, peer) when it closes. */
void *sg_pass_vars_take(sg_exchange *ex);
void sg_pass_vars_tunnel_done(void *held, void *peer, uint64_t now_ms);

/* dns: gives generation c the answers cache its worker threads share
 * (server/runtime.c, on activation; freed with c). */
void sg_pass_vars_attach(sg_conf *c);

#endif
