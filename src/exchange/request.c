/* Request helpers shared by every codec. */
#include "exchange/request.h"

const sg_header *sg_req_find_header(const sg_http_req *r, sg_str name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (sg_str_caseeq(r->headers[i].name, name)) return &r->headers[i];
    return NULL;
}
