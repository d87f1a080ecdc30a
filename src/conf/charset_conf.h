/* charset, source_charset, override_charset, charset_types (nginx's
 * ngx_http_charset_module, the part that names a charset): the setters
 * fill the charset block of sg_loc_conf from lines of the main table
 * (conf/directives.c); proxy/charset_filter.c applies them to response
 * heads. Recoding between charsets (charset_map) is not done: the
 * directive stays "not supported yet". output_buffers is accepted here
 * too, with a [notice]. */
#ifndef SG_CONF_CHARSET_CONF_H
#define SG_CONF_CHARSET_CONF_H

#include <stdbool.h>
#include "conf/conf.h"
#include "conf/directives.h"

/* charset NAME | off, source_charset NAME | off (NAME may hold variables):
 * the range sg_cval .. bool (on). */
bool sg_charset_set_name(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* charset_types MIME ... | *: the range charset_types .. charset_types_any. */
bool sg_charset_set_types(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* output_buffers NUMBER SIZE: checked, then a [notice] (nothing is buffered). */
bool sg_charset_set_output_buffers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

/* nginx's default charset_types: text/html, text/xml, text/plain,
 * text/vnd.wap.wml, application/javascript, application/rss+xml. */
void sg_charset_conf_defaults(sg_loc_conf *lc);

#endif
