/* gzip_* directives (nginx's ngx_http_gzip_module, and gzip_disable /
 * gzip_vary / gzip_http_version / gzip_proxied, which nginx keeps in its
 * core module). The setters fill the gzip block of sg_loc_conf from lines
 * of the main table (conf/directives.c), so inheritance is the table's
 * generic one; the filter that reads them is proxy/gzip_filter.c. */
#ifndef SG_CONF_GZIP_CONF_H
#define SG_CONF_GZIP_CONF_H

#include <stdbool.h>
#include "conf/conf.h"
#include "conf/directives.h"

/* gzip_comp_level 1..9 (a uint32_t field). */
bool sg_gzip_set_comp_level(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* gzip_http_version 1.0 | 1.1 (a uint32_t field: 10 or 11). */
bool sg_gzip_set_http_version(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* gzip_proxied off | expired | no-cache | no-store | private | no_last_modified
 * | no_etag | auth | any ... (SG_GZIP_PROXIED_* bits in a uint32_t). */
bool sg_gzip_set_proxied(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* gzip_types MIME ... | *: the range gzip_types .. gzip_types_any. */
bool sg_gzip_set_types(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* gzip_disable REGEX | msie6 ...: the range gzip_disable .. gzip_disable_msie6. */
bool sg_gzip_set_disable(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* gzip_buffers NUMBER SIZE: checked, then a [notice] (nothing is buffered). */
bool sg_gzip_set_buffers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

/* nginx's defaults: off, level 1, min length 20, HTTP/1.1, proxied off,
 * text/html only. */
void sg_gzip_conf_defaults(sg_loc_conf *lc);

#endif
