/* Routing: which server block a request belongs to (server_name against the
 * Host header) and which location serves it, in nginx's order:
 * exact "=", then the longest prefix (stop there if it is "^~"), then
 * regexes in declaration order (nested first), else the longest prefix. */
#ifndef SG_PROXY_ROUTER_H
#define SG_PROXY_ROUTER_H

#include "conf/conf.h"
#include "exchange/request.h"

/* Compiles regexes (location, server_name) and precomputes lookup tables
 * for every server of the generation. Called once at the end of
 * sg_conf_load(); false + "file:line:col: message" in err on a bad regex. */
bool sg_router_compile(sg_conf *c, char *err, size_t errlen);

/* The server for `host` (already lowercased, no port) on listen group g:
 * exact name, then longest "*." wildcard, then longest ".*" wildcard, then
 * the first matching regex (its captures go to r), else the default server. */
const sg_server_conf *sg_router_server(const sg_listen_group *g, sg_str host, sg_http_req *r);

/* The location for `uri` (normalized path), NULL if nothing matches
 * (the caller answers 404). Regex captures are stored in r. */
const sg_location *sg_router_location(const sg_server_conf *s, sg_str uri, sg_http_req *r);

/* "@name" lookup for error_page and friends; NULL if absent. */
const sg_location *sg_router_named(const sg_server_conf *s, sg_str name);

/* Frees every regex of the generation (locations, server names, maps bound
 * to variables). sg_conf_unref() calls it before freeing the arena;
 * safe to call on a half-built generation and more than once. */
void sg_router_free(sg_conf *c);

#endif
