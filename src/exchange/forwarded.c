/* forwarded addresses: see forwarded.h. */
#include "exchange/forwarded.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* "1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80" into *ss. */
static bool parse_addr_port(const char *p, size_t n, struct sockaddr_storage *ss)
{
    char buf[INET6_ADDRSTRLEN + 8];
    unsigned long port = 0;
    if (n == 0 || n >= sizeof(buf)) return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *host = buf;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close) return false;
        *close = '\0';
        host = buf + 1;
        if (close[1] == ':') {
            char *end;
            port = strtoul(close + 2, &end, 10);
            if (*end || port > 65535 || close[2] == '\0') return false;
        } else if (close[1]) {
            return false;
        }
    } else {
        char *colon = strchr(buf, ':');
        if (colon && !strchr(colon + 1, ':')) {    /* one colon: IPv4 with a port */
            char *end;
            *colon = '\0';
            port = strtoul(colon + 1, &end, 10);
            if (*end || port > 65535 || colon[1] == '\0') return false;
        }
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        return true;
    }
    return false;
}

sg_str sg_forwarded_values(sg_http_req *r, sg_str name)
{
    size_t total = 0, count = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (sg_str_caseeq(r->headers[i].name, name)) {
            total += r->headers[i].value.n + 2;
            count++;
        }
    if (count == 0) return SG_STR_NULL;
    char *buf = sg_arena_alloc(&r->arena, total);
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!sg_str_caseeq(r->headers[i].name, name)) continue;
        if (n) {
            buf[n++] = ',';
            buf[n++] = ' ';
        }
        memcpy(buf + n, r->headers[i].value.p, r->headers[i].value.n);
        n += r->headers[i].value.n;
    }
    return (sg_str){ buf, n };
}

bool sg_forwarded_addr(sg_str v, bool recursive, bool (*trusted)(const void *arg, const struct sockaddr *sa),
                       const void *arg, struct sockaddr_storage *out)
{
    struct sockaddr_storage cand;
    bool have = false;
    size_t end = v.n;
    for (;;) {
        while (end > 0 && (v.p[end - 1] == ' ' || v.p[end - 1] == ',')) end--;
        if (end == 0) break;
        size_t start = end;
        while (start > 0 && v.p[start - 1] != ' ' && v.p[start - 1] != ',') start--;
        if (!parse_addr_port(v.p + start, end - start, &cand)) break;
        *out = cand;
        have = true;
        if (!recursive || !trusted(arg, (const struct sockaddr *)out)) break;
        end = start;
    }
    return have;
}
