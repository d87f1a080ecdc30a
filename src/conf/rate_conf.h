/* Setters of the bandwidth limits (issue 10, area "rate"): limit_rate,
 * limit_rate_after and proxy_limit_rate in http, and the stream module's
 * proxy_upload_rate / proxy_download_rate; internal to src/conf/ (their
 * rows are in directives.c's and stream_conf.c's tables). */
#ifndef SG_CONF_RATE_CONF_H
#define SG_CONF_RATE_CONF_H

#include <stdbool.h>
#include "conf/directives.h"

/* A size that may hold variables, into an sg_cval followed by its "set"
 * bool (a LOC_RANGE from the one to the other). Without variables the
 * size is checked here, as nginx's ngx_http_set_complex_value_size_slot. */
bool sg_rate_set_size(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

/* stream's proxy_upload_rate / proxy_download_rate: a size that may hold
 * stream variables, into a `const sg_stream_val *` (NULL when 0). */
bool sg_rate_set_stream(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

#endif
