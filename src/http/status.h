/* Status lines, error bodies and the Date header, shared by every codec. */
#ifndef SG_HTTP_STATUS_H
#define SG_HTTP_STATUS_H

#include "core/str.h"

/* "Not Found" for 404; "Unknown" for codes it does not know. */
const char *sg_http_reason(int status);

/* nginx-style small HTML body for an error status ("" for < 300 or
 * statuses that have none). */
sg_str sg_http_error_body(int status);

/* "Sat, 21 Nov 2026 19:50:11 GMT", formatted once per second per thread. */
sg_str sg_http_date(void);

#endif
