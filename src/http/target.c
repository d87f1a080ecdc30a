#include "http/target.h"

#include <string.h>

#include "http/h1_parser.h"

int sg_http_target_split(sg_http_req *r, sg_str target)
{
    const char *q = memchr(target.p, '?', target.n);
    sg_str path = q ? (sg_str){ target.p, (size_t)(q - target.p) } : target;
    if (q) {
        r->has_args = true;
        r->args = (sg_str){ q + 1, (size_t)(target.p + target.n - q - 1) };
    }
    char *norm = sg_arena_alloc(&r->arena, path.n + 1);
    long nlen = path.n && path.p[0] == '/' ? sg_h1_normalize_path(path, norm) : -1;
    if (path.n == 1 && path.p[0] == '*') {   /* OPTIONS * */
        norm[0] = '*';
        nlen = 1;
    }
    if (nlen < 0) return 400;
    r->uri = (sg_str){ norm, (size_t)nlen };
    return 0;
}
