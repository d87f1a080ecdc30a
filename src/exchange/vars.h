/* Request-time evaluation of what the configuration compiled: variables,
 * complex values, maps, regex matches with their captures, and the TLS
 * name an upstream connection is made for. conf/ builds the tables
 * (conf/vars.h, conf/map.h); this reads them against one request.
 *
 * Results that need memory live in the request's arena. */
#ifndef SG_EXCHANGE_VARS_H
#define SG_EXCHANGE_VARS_H

#include <stdbool.h>
#include "conf/conf.h"
#include "conf/map.h"
#include "conf/vars.h"
#include "core/str.h"
#include "exchange/request.h"

/* Value of variable `index` for request r; empty slice when the variable
 * has no value (nginx's "not found"). A "not found" value has p == NULL, a
 * found empty one a non-NULL p: the access log writes "-" only for the
 * former, as nginx. Map results are computed once per request. */
sg_str sg_var_get(sg_http_req *r, int index);

/* Sets user variable `index` (SG_VAR_USER: `set`, named captures) for
 * request r; v must live as long as r (its arena or its buffers).
 * Setting $args changes r's arguments. */
void sg_var_set(sg_http_req *r, int index, sg_str v);

/* Evaluates a complex value into r->arena. Literals return `text` as is. */
sg_str sg_cval_eval(const sg_cval *cv, sg_http_req *r);

/* Appends the value to `out`, escaping as an access log does:
 * escape_json -> JSON string escaping; otherwise nginx's default escaping
 * (", \ and bytes < 0x20 or >= 0x7f as \xHH) for variable parts only. */
void sg_cval_eval_log(const sg_cval *cv, sg_http_req *r, bool json, bool none,
                      sg_strbuf *out);

/* Value of map m for request r (empty if nothing matched and no default).
 * Uncached: sg_var_get() is what caches a map variable per request. */
sg_str sg_map_eval(const sg_map *m, sg_http_req *r);

/* Matches a regex from sg_regex_compile(): true on a match, whose captures
 * are stored in r (capture_subject, captures, ncaptures) as nginx does;
 * r may be NULL (match only). */
bool sg_regex_exec(const void *re, sg_str subject, sg_http_req *r);
/* Frees the calling thread's match block (at thread exit). */
void sg_regex_thread_done(void);

/* The name a TLS connection for request r sends as SNI and checks the
 * certificate against: proxy_ssl_name / grpc_ssl_name evaluated for r (in
 * r's arena), else the host of the pass URL; without a port, as nginx.
 * Empty when neither SNI nor verification is on (the name is unused).
 * Whether it can be sent is sg_ssl_upstream_name_ok() (conf/ssl_conf.h). */
sg_str sg_ssl_upstream_name(const sg_loc_conf *lc, sg_http_req *r);

#endif
