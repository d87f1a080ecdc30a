/* Locations that answer with what the proxy counts: nginx's stub_status
 * page and the Prometheus exposition of `metrics;` (observe/metrics.h),
 * plus the per-upstream-server families, which live in the upstream
 * runtimes this layer can see. Both answer GET and HEAD only (405 else,
 * as nginx's stub_status), after allow/deny ran. */
#ifndef SG_PROXY_STATUS_PAGE_H
#define SG_PROXY_STATUS_PAGE_H

#include <stdbool.h>
#include "exchange/exchange.h"

/* True when the location is a stub_status or metrics one: it answered. */
bool sg_status_page_run(sg_exchange *ex);

#endif
