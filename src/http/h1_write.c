/* HTTP/1.1 header serialisation. */
#include "http/h1_write.h"

#include <string.h>

void sg_h1_write_header(sg_outq *q, sg_str name, sg_str value)
{
    char *p = sg_outq_reserve(q, name.n + value.n + 4);
    memcpy(p, name.p, name.n);
    p[name.n] = ':';
    p[name.n + 1] = ' ';
    memcpy(p + name.n + 2, value.p, value.n);
    memcpy(p + name.n + 2 + value.n, "\r\n", 2);
    sg_outq_commit(q, name.n + value.n + 4);
}
