/* The rewrite phases of a request, as nginx runs them: the server's
 * operations (server rewrite), the location search, the location's
 * operations (location rewrite); a rewrite that changed the URI without
 * `break` searches again, at most 10 times (then 500). Then the location
 * chosen (an `if` block's when its condition held) answers:
 * sg_handler_run_location(). The operations were compiled by conf/rewrite.c. */
#ifndef SG_PROXY_REWRITE_H
#define SG_PROXY_REWRITE_H

#include "exchange/exchange.h"

/* A new request, or an internal redirect to ex->req.uri (error_page):
 * every phase from the server rewrite on. */
void sg_rewrite_run(sg_exchange *ex);

/* An internal redirect to a named location: its own operations, then it
 * answers (nginx skips the server phase and the search). */
void sg_rewrite_run_named(sg_exchange *ex, const struct sg_location *loc);

#endif
