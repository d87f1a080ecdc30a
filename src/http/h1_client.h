/* The HTTP/1.1 client codec: upstream connections from the worker's
 * keep-alive pool or newly connected. */
#ifndef SG_HTTP_H1_CLIENT_H
#define SG_HTTP_H1_CLIENT_H

#include <stdbool.h>
#include "exchange/upstream_link.h"
#include "upstream/pool.h"

/* A link to `peer` for exchange ex, carried as `o` says (copied),
 * reporting through `ev`: an idle
 * pooled connection (*ready = true, send at once) or a new connection
 * being established (*ready = false; ev->connected or ev->error follows).
 * NULL if a socket could not even be created. */
sg_upstream_link *sg_h1_client_open(sg_exchange *ex, const sg_upstream_events *ev, sg_upstream_rt *rt,
                                    sg_peer *peer, const sg_link_opts *o, bool *ready);

#endif
