/* X-Accel-Redirect's target, as a backend sends it: nginx's
 * ngx_http_parse_unsafe_uri on the path (percent-decoded when it has
 * escapes), the arguments kept as they are. Pure: the proxy core
 * (proxy.c) acts on the answer; fuzzed by tests/fuzz/fuzz_accel.c. */
#ifndef SG_PROXY_ACCEL_H
#define SG_PROXY_ACCEL_H

#include <stdbool.h>
#include <stddef.h>
#include "core/str.h"

/* A "@named" value is returned as it is. Otherwise the path (before any
 * '?') is decoded into `out` (room for v.n bytes) followed by "?args" as
 * written; false when the decoded path is unsafe: not absolute, a "." or
 * ".." segment, or a NUL byte. *res points into v (nothing to decode) or
 * into out. */
bool sg_accel_target(sg_str v, char *out, sg_str *res);

#endif
