/* The request body as the proxy keeps it (nginx's client body reading).
 *
 * streamgate streams request bodies to the backend by default. A location
 * reads the whole body first, as nginx does by default, when it asks for
 * it: `proxy_request_buffering on` written, or `client_body_in_file_only
 * on|clean` or `client_body_in_single_buffer on`, or the configuration
 * reads bodies ($request_body, $request_body_file) (all unless
 * `proxy_request_buffering off` is written). The body then stays in
 * memory up to client_body_buffer_size, else (and always with
 * client_body_in_file_only) in a file under client_body_temp_path, and
 * is sent with a Content-Length once it is complete; a failed attempt
 * can send it again to the next peer.
 *
 * A streamed body (proxy_request_buffering off) is copied, up to
 * client_body_buffer_size, when the configuration uses $request_body or
 * $request_body_file: $request_body then holds it at its end (as
 * nginx's does for a body that fit its buffer); as in nginx, it is never
 * sent twice. `proxy_set_body` and `proxy_pass_request_body off` send
 * their own body (or none) and the client's is read and dropped. */
#ifndef SG_PROXY_REQBODY_H
#define SG_PROXY_REQBODY_H

#include <stdbool.h>
#include "exchange/exchange.h"

typedef struct sg_reqbody sg_reqbody;

/* Chooses how this proxied exchange treats its body (sets ex->rbody when
 * it keeps anything). True: the whole body must be read before the first
 * attempt; the store calls sg_proxy_body_ready() when it is. */
bool sg_reqbody_setup(sg_exchange *ex);

/* Body bytes from the client (after the size checks). True: the store
 * took them and they must not be streamed to the upstream. */
bool sg_reqbody_on_data(sg_exchange *ex, const char *p, size_t n);
/* The client's body ended. True: the store handles it (the upstream
 * link must not be ended here). */
bool sg_reqbody_on_end(sg_exchange *ex);

/* What the upstream request carries instead of the client's stream:
 * true when the body comes from the store (buffered, set or dropped),
 * with its length in *len. */
bool sg_reqbody_stored(sg_exchange *ex, int64_t *len);
/* May an attempt whose body bytes already went out be retried? */
bool sg_reqbody_replayable(const sg_exchange *ex);
/* After the request head went to a new link: sends the stored body from
 * its start (proxy_set_body's, or none), as far as the link's queue
 * allows, and ends the request when all of it went; a streamed body
 * (copied or not) starts streaming. */
void sg_reqbody_send(sg_exchange *ex);
/* The link's queue drained: true if the store was sending and went on. */
bool sg_reqbody_on_drain(sg_exchange *ex);

/* The exchange ends: the file is closed, and removed unless
 * client_body_in_file_only on keeps it. */
void sg_reqbody_free(sg_exchange *ex);

#endif
