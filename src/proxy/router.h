/* Routing: which server block a request belongs to (server_name against the
 * Host header) and which location serves it, in nginx's order:
 * exact "=", then the longest prefix (stop there if it is "^~"), then
 * regexes in declaration order (nested first), else the longest prefix. */
#ifndef SG_PROXY_ROUTER_H
#define SG_PROXY_ROUTER_H

#include "conf/conf.h"
#include "exchange/request.h"

/* Precomputes the location lookup tables of every server of generation c
 * (in its arena: they go with it, nothing to free). Whoever loads a
 * generation to serve it calls this once, after sg_conf_load() and before
 * the generation is shared with worker threads (main.c's load()); the
 * regexes it matches were compiled by the load (sg_conf_compile_regexes).
 * Without it no location matches. */
void sg_router_build(sg_conf *c);

/* The server for `host` (already lowercased, no port) on listen group g:
 * exact name, then longest "*." wildcard, then longest ".*" wildcard, then
 * the first matching regex (its captures go to r), else the default server. */
const sg_server_conf *sg_router_server(const sg_listen_group *g, sg_str host, sg_http_req *r);

/* The same for a TLS server name, before any request exists (no captures
 * kept): the SNI chooser given to sg_tls_init() (net/tls.h). */
const sg_server_conf *sg_router_sni(const sg_listen_group *g, sg_str host);

/* The location for `uri` (normalized path), NULL if nothing matches
 * (the caller answers 404). Regex captures are stored in r. */
const sg_location *sg_router_location(const sg_server_conf *s, sg_str uri, sg_http_req *r);

/* "@name" lookup for error_page and friends; NULL if absent. */
const sg_location *sg_router_named(const sg_server_conf *s, sg_str name);

#endif
