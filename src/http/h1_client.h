/* The HTTP/1.1 client codec: upstream connections from the worker's
 * keep-alive pool or newly connected. */
#ifndef SG_HTTP_H1_CLIENT_H
#define SG_HTTP_H1_CLIENT_H

#include <stdbool.h>
#include "exchange/upstream_link.h"
#include "upstream/pool.h"

/* A link to `peer` for exchange ex: an idle pooled connection (checked to
 * be still open; *ready = true, send at once) or a new connection being
 * established (*ready = false; sg_proxy_up_connected() follows, or
 * sg_proxy_up_error()). NULL if a socket could not even be created. */
sg_upstream_link *sg_h1_client_open(sg_exchange *ex, sg_upstream_rt *rt, sg_peer *peer, bool *ready);

#endif
