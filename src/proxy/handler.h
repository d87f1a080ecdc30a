/* The server's exchange handler: what downstream codecs' exchanges run
 * into. It routes a request to its server and location, then either
 * answers it here (return, error pages, static files: proxy/respond.c)
 * or proxies it (proxy/proxy.c), and logs it at the end. */
#ifndef SG_PROXY_HANDLER_H
#define SG_PROXY_HANDLER_H

#include "exchange/exchange.h"

/* Installed with sg_exchange_set_handler() before any connection is accepted. */
extern const sg_exchange_handler sg_handler_ops;

/* Runs the location in ex->req.loc (after routing, or an internal
 * redirect such as error_page's): answer here or proxy. */
void sg_handler_run_location(sg_exchange *ex);

#endif
