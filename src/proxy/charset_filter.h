/* The charset filter (nginx's ngx_http_charset_module, without recoding):
 * names the charset of a response in its Content-Type.
 *
 * sg_charset_head() is given every response head just before it goes out
 * (sg_respond_head, before gzip). With `charset NAME` in the location and
 * a Content-Type whose media type is in charset_types, "; charset=NAME"
 * is appended. A Content-Type that already names a charset is left alone
 * unless override_charset is on; then, as when source_charset names one,
 * the charset is only rewritten when the source and destination are the
 * same charset: anything else needs a charset_map, which streamgate does
 * not have (the error nginx logs for a missing map is logged and the head
 * goes unchanged). Redirects (301, 302) and responses with a
 * Content-Encoding get no charset, as in nginx. */
#ifndef SG_PROXY_CHARSET_FILTER_H
#define SG_PROXY_CHARSET_FILTER_H

#include <stdbool.h>
#include "exchange/exchange.h"

void sg_charset_head(sg_exchange *ex, sg_response *resp);

/* Pure parts, for the unit tests. */
/* The charset=VALUE parameter of a Content-Type (quotes removed), or an
 * empty string. */
sg_str sg_charset_of(sg_str content_type);
/* The media type (before any ';', lowercased) is in charset_types. */
bool sg_charset_type_ok(const sg_loc_conf *lc, sg_str content_type);

#endif
