/* The proxy core: carries an exchange to an upstream peer chosen by the
 * balancer, with nginx's next-upstream retries, and relays the response. */
#ifndef SG_PROXY_PROXY_H
#define SG_PROXY_PROXY_H

#include "exchange/exchange.h"

void sg_proxy_start(sg_exchange *ex);
/* A body read whole before proxying (proxy/reqbody.h) is complete: the
 * first attempt starts. */
void sg_proxy_body_ready(sg_exchange *ex);
/* Releases the upstream side (client gone, or the exchange ended). */
void sg_proxy_detach(sg_exchange *ex, bool failed);

#endif
