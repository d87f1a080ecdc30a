/* The HTTP/2 client codec (proxy_http_version 2): each exchange is one
 * stream on a multiplexed cleartext (prior knowledge) HTTP/2 connection
 * from the worker's h2 pool (upstream/h2_pool.h). */
#ifndef SG_HTTP_H2_CLIENT_H
#define SG_HTTP_H2_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include "exchange/upstream_link.h"
#include "upstream/pool.h"

/* A stream to `peer` for exchange ex, carried as `o` says (copied),
 * reporting through `ev`, with the
 * contract of sg_h1_client_open(): on a connection that is up (*ready =
 * true, send at once), or queued on a connection still being set up
 * (*ready = false; ev->connected follows once the peer's SETTINGS
 * arrived, or ev->error). NULL if a socket could not even be created.
 * Response trailers come with ev->end. */
sg_upstream_link *sg_h2_client_open(sg_exchange *ex, const sg_upstream_events *ev, sg_upstream_rt *rt,
                                    sg_peer *peer, const sg_link_opts *o, bool *ready);

#endif
