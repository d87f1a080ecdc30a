/* The real client address behind trusted proxies (ngx_http_realip_module):
 * set_real_ip_from, real_ip_header, real_ip_recursive. */
#ifndef SG_PROXY_REALIP_H
#define SG_PROXY_REALIP_H

#include "conf/conf.h"
#include "exchange/request.h"

/* When the connection's peer is trusted and the header holds an address,
 * r->peer becomes that address ($remote_addr, allow/deny, ip_hash, logs)
 * and r->conn_peer keeps the old one ($realip_remote_addr). Once per
 * request: called with the server's settings when the request starts and
 * with the location's when it is chosen, as nginx's post-read and
 * pre-access phases. */
void sg_realip_apply(sg_http_req *r, const sg_loc_conf *lc);

#endif
