/* X-Accel-Redirect's target (see accel.h). */
#include "proxy/accel.h"

#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool safe_path(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || memchr(p, '\0', n)) return false;
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '/' && p[i + 1] == '.' &&
            (i + 2 == n || p[i + 2] == '/' || (p[i + 2] == '.' && (i + 3 == n || p[i + 3] == '/'))))
            return false;
    return true;
}

bool sg_accel_target(sg_str v, char *out, sg_str *res)
{
    *res = v;
    if (v.n && v.p[0] == '@') return true;
    const char *q = v.n ? memchr(v.p, '?', v.n) : NULL;
    size_t plen = q ? (size_t)(q - v.p) : v.n;
    if (!memchr(v.p, '%', plen)) return safe_path(v.p, plen);
    size_t n = 0;
    for (size_t i = 0; i < plen; i++) {
        int hi, lo;
        /* a '?' stays escaped: what follows it is still path, not arguments */
        if (v.p[i] == '%' && i + 2 < plen && (hi = hexval(v.p[i + 1])) >= 0 && (lo = hexval(v.p[i + 2])) >= 0 &&
            hi * 16 + lo != '?') {
            out[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[n++] = v.p[i];
        }
    }
    if (!safe_path(out, n)) return false;
    size_t alen = v.n - plen;
    if (alen) memcpy(out + n, v.p + plen, alen);
    *res = (sg_str){ out, n + alen };
    return true;
}
