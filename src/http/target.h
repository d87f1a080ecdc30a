/* The request target as both server codecs receive it (HTTP/1.1's
 * origin-form after the absolute-form's host is taken off, HTTP/2's
 * :path), split into the neutral request's $uri and $args. */
#ifndef SG_HTTP_TARGET_H
#define SG_HTTP_TARGET_H

#include "exchange/request.h"

/* Sets r->uri (normalized: decoded, "//" merged, "." and ".." resolved,
 * in r->arena), r->args and r->has_args from `target` ("/path?args", or
 * "*"). Returns 0, or 400 for a path that cannot be normalized. */
int sg_http_target_split(sg_http_req *r, sg_str target);

#endif
