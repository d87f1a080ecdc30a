/* The address behind trusted proxies, as ngx_http_get_forwarded_addr():
 * shared by realip (proxy/realip.c: set_real_ip_from, real_ip_header) and
 * geo's `proxy` (exchange/vars.c). */
#ifndef SG_EXCHANGE_FORWARDED_H
#define SG_EXCHANGE_FORWARDED_H

#include <stdbool.h>
#include <sys/socket.h>
#include "core/str.h"
#include "exchange/request.h"

/* All the request's values of header `name`, joined by ", " in order
 * (arena memory); SG_STR_NULL when it has none. */
sg_str sg_forwarded_values(sg_http_req *r, sg_str name);

/* The caller found the peer trusted. Takes the rightmost address of
 * `value` (a list like X-Forwarded-For's; "1.2.3.4", "1.2.3.4:80", "::1",
 * "[::1]:80"); with `recursive`, while that address is trusted too, the
 * next one leftwards. True with *out when an address was taken; an entry
 * that is no address stops the walk there. */
bool sg_forwarded_addr(sg_str value, bool recursive, bool (*trusted)(const void *arg, const struct sockaddr *sa),
                       const void *arg, struct sockaddr_storage *out);

#endif
