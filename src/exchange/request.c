/* Request helpers shared by every codec. */
#include "exchange/request.h"

#include <stdlib.h>
#include <string.h>

#include "core/str.h"

const sg_header *sg_req_find_header(const sg_http_req *r, sg_str name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (sg_str_caseeq(r->headers[i].name, name)) return &r->headers[i];
    return NULL;
}

sg_attempt *sg_req_attempt(sg_http_req *r, uint32_t i)
{
    return i < SG_ATTEMPTS_INLINE ? &r->attempts[i] : &r->more_attempts[i - SG_ATTEMPTS_INLINE];
}

sg_attempt *sg_req_attempt_add(sg_http_req *r)
{
    uint32_t i = r->nattempts;
    if (i >= SG_ATTEMPTS_INLINE && i - SG_ATTEMPTS_INLINE >= r->more_cap) {
        uint32_t cap = r->more_cap ? 2 * r->more_cap : 4;
        r->more_attempts = sg_xrealloc(r->more_attempts, cap * sizeof(*r->more_attempts));
        r->more_cap = cap;
    }
    r->nattempts++;
    sg_attempt *a = sg_req_attempt(r, i);
    memset(a, 0, sizeof(*a));
    return a;
}

void sg_req_attempts_free(sg_http_req *r)
{
    free(r->more_attempts);
    r->more_attempts = NULL;
    r->more_cap = r->nattempts = 0;
}
