/* Answers the proxy produces itself: `return`, error pages (with
 * error_page redirects), static files from `root`. */
#ifndef SG_PROXY_RESPOND_H
#define SG_PROXY_RESPOND_H

#include "exchange/exchange.h"

/* The location's `return` (ex->req.loc). */
void sg_respond_return(sg_exchange *ex);
/* The same with the return code and text of lc (a `return` op of the
 * rewrite phase: proxy/rewrite.c). */
void sg_respond_return_conf(sg_exchange *ex, const sg_loc_conf *lc);

/* A static file from the location's root (index files for a directory). */
void sg_respond_static(sg_exchange *ex);

/* An error status: follows error_page (internal redirect, named location
 * or redirect URL) when one matches, else sends the standard page. If the
 * response head already left, the client's response is aborted instead. */
void sg_respond_error(sg_exchange *ex, int status);

/* Sends a complete response with an in-memory body. */
void sg_respond_simple(sg_exchange *ex, int status, sg_str content_type, sg_str body,
                       sg_str location);

/* Sends a response head built from `extra` end-to-end headers plus the
 * location's add_header, after applying an error_page status override. */
void sg_respond_head(sg_exchange *ex, int status, const sg_header *extra, size_t nextra,
                     int64_t content_length, bool has_body);

/* Static file: produce more of it after the client drained. */
void sg_respond_file_pump(sg_exchange *ex);

/* "/path" -> "http://host[:port]/path" with the Host the client used, as
 * nginx does for every Location it sends (absolute_redirect on). */
sg_str sg_respond_absolute_location(sg_exchange *ex, sg_str location);

/* An internal redirect to `target` ("@named", or a URI with arguments),
 * as error_page's: the method becomes GET (HEAD stays), the body already
 * sent is not sent again, every phase runs again. The caller counts it in
 * ex->redirects. */
void sg_respond_redirect(sg_exchange *ex, sg_str target);

/* True if the error_page list of the current location has `status`. */
bool sg_respond_has_error_page(const sg_exchange *ex, int status);

#endif
