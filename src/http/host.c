#include "http/host.h"

#include <string.h>

/* Bytes a reg-name or IP literal may hold (RFC 3986 unreserved,
 * sub-delims, '%' of pct-encoded). nginx only refuses path separators and
 * control bytes; the narrower set keeps $host safe in a path (root
 * /srv/$host) and in a header line. */
static inline bool host_byte(unsigned char ch)
{
    /* letters, digits, '.' and '-' first: nearly every byte of a Host */
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
           (ch >= 'A' && ch <= 'Z') || (ch && strchr("_~!$&'()*+,;=%", ch) != NULL);
}

static bool port_valid(const char *p, size_t n)
{
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (unsigned long)(p[i] - '0');
        if (v > 65535) return false;
    }
    return true;   /* an empty port ("host:") is allowed, as by nginx */
}

long sg_http_host_check(sg_str h)
{
    size_t i = 0, end;
    if (h.n == 0) return -1;
    if (h.p[0] == '[') {
        for (i = 1; i < h.n && h.p[i] != ']'; i++) {
            if (!host_byte((unsigned char)h.p[i]) && h.p[i] != ':') return -1;
            if (h.p[i] == '.' && h.p[i - 1] == '.') return -1;
        }
        if (i == h.n || i == 1) return -1;    /* no "]", or "[]" */
        end = ++i;
    } else {
        for (; i < h.n && h.p[i] != ':'; i++) {
            if (!host_byte((unsigned char)h.p[i])) return -1;   /* "[" inside, "/", "\", CTL */
            if (h.p[i] == '.' && i && h.p[i - 1] == '.') return -1;
        }
        end = i;
        if (end && h.p[end - 1] == '.') end--;   /* "example.com." is example.com */
        if (end == 0) return -1;                 /* "", ".", ":80" */
    }
    if (i < h.n) {
        if (h.p[i] != ':') return -1;            /* "[::1]." or "[::1]x" */
        if (!port_valid(h.p + i + 1, h.n - i - 1)) return -1;
    }
    return (long)end;
}

long sg_http_host_lower(sg_str h, char *out)
{
    long n = sg_http_host_check(h);
    for (long i = 0; i < n; i++) {
        char ch = h.p[i];
        out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
    }
    return n;
}
