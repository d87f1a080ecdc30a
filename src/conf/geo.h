/* The geo directive (ngx_http_geo_module): a variable whose value depends
 * on the client address (or an address another variable holds), by the
 * longest matching network, or by address ranges with `ranges`. Built
 * while the configuration is read; a geo block is a map whose keys are
 * addresses (sg_map_set_geo), so the variable machinery is the map's. */
#ifndef SG_CONF_GEO_H
#define SG_CONF_GEO_H

#include <stdbool.h>
#include <sys/socket.h>
#include "core/str.h"
#include "conf/vars.h"

struct sg_conf;
typedef struct sg_geo sg_geo;

sg_geo *sg_geo_new(struct sg_conf *c);

/* One line of the block: "default V", "delete NET", "ranges", "NET V",
 * "A.B.C.D-E.F.G.H V" (after `ranges`), as nginx. False + err. */
bool sg_geo_line(sg_geo *g, sg_str key, const sg_str *value, sg_conf_pos pos, char *err, size_t errlen);

/* The value for `addr` (longest network, or the last range that holds
 * it), else the default, else NULL. An IPv4-mapped IPv6 address counts
 * as IPv4. */
const sg_cval *sg_geo_find(const sg_geo *g, const struct sockaddr *addr);

/* proxy / proxy_recursive (issue 10): how many `proxy` networks the
 * block has, and whether one is in sg_geo_proxy_trusted's list (arg: the
 * sg_geo; the callback of exchange/forwarded.h). */
size_t sg_geo_proxies(const sg_geo *g, bool *recursive);
bool sg_geo_proxy_trusted(const void *arg, const struct sockaddr *sa);

/* The address geo looks up for a text value (geo $address $var): the
 * text's IPv4 or IPv6 address, else 255.255.255.255, as nginx. */
struct sockaddr_storage;
void sg_geo_text_addr(sg_str text, struct sockaddr_storage *ss);

#endif
