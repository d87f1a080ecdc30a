/* nginx's header filters for every response streamgate sends (issue 9):
 * upstream fields hidden or passed, expires, add_trailer, the Location of
 * redirects streamgate makes. (The slash-appending redirect of a proxied
 * location is the location search's: proxy/rewrite.c.) */
#ifndef SG_PROXY_HEADER_FILTER_H
#define SG_PROXY_HEADER_FILTER_H

#include <stdbool.h>
#include <time.h>
#include "exchange/exchange.h"

/* An upstream response field the client does not get: proxy_hide_header,
 * and nginx's defaults (Date, Server, X-Pad, X-Accel-*) unless
 * proxy_pass_header names them. */
bool sg_hf_hidden(const sg_upstream_opts *o, sg_str name);

/* An HTTP date (IMF-fixdate) in a. */
sg_str sg_hf_http_time(sg_arena *a, time_t t);

/* add_header, expires and add_trailer apply to these statuses unless "always". */
bool sg_hf_status_allowed(int status);

/* The location's expires over h[0..n) (room for 2 more): replaces
 * Expires and Cache-Control; returns the new count. */
size_t sg_hf_expires(sg_exchange *ex, int status, sg_header *h, size_t n);

/* add_trailer: does this response get trailers of ours? Then, once its
 * head is decided, sg_hf_trailers_begin makes its end carry them. */
bool sg_hf_trailers_wanted(const sg_exchange *ex, int status, bool has_body);
void sg_hf_trailers_begin(sg_exchange *ex);

/* The Location of a redirect streamgate makes: a relative one made
 * absolute (absolute_redirect), with the port (port_in_redirect) and the
 * host or the server's name (server_name_in_redirect). */
sg_str sg_hf_location(sg_exchange *ex, sg_str location);

/* The request's URI escaped as nginx puts it in a Location. */
sg_str sg_hf_escape_uri(sg_arena *a, sg_str uri);

/* "URI/?args": where a directory (or a proxied prefix) redirect points. */
sg_str sg_hf_slash_location(sg_exchange *ex);

/* A request field nginx accepts once (If-Match, Authorization...) came
 * twice: the request is a 400. */
bool sg_hf_duplicate_field(const sg_http_req *r);

/* ignore_invalid_headers / underscores_in_headers of the chosen server:
 * fields with invalid names leave the request (before anything reads it). */
void sg_hf_drop_invalid_fields(sg_exchange *ex);

/* keepalive_disable names the client's browser: the connection closes. */
bool sg_hf_keepalive_disabled(const sg_exchange *ex);

#endif
