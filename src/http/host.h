/* The host of a request (Host field, HTTP/2 :authority, absolute-form
 * authority), checked as nginx 1.29.4's validate_host does, for both
 * server codecs. */
#ifndef SG_HTTP_HOST_H
#define SG_HTTP_HOST_H

#include <stddef.h>

#include "core/str.h"

/* Checks `h` = uri-host [ ":" port ]. Returns the length of the host part
 * that $host keeps (the port and one trailing dot taken off), or -1 when
 * nginx answers 400: empty host, "..", a path separator or control byte,
 * a byte no host can hold, an unclosed or misplaced IP literal, anything
 * but digits after the colon, a port over 65535. */
long sg_http_host_check(sg_str h);

/* $host: the checked host part of `h`, lowercased, in `out` (at least
 * h.n bytes). Returns its length, or -1 as sg_http_host_check. */
long sg_http_host_lower(sg_str h, char *out);

#endif
