/* Fuzzes what the gzip filter reads from the network: the request's
 * Accept-Encoding and User-Agent, the response's Content-Type, and the
 * Expires / Date / Cache-Control / Last-Modified / ETag fields gzip_proxied
 * looks at. Input: accept-encoding NUL user-agent NUL then "name:value"
 * lines. Memory safety, plus: every gzip_proxied mask gives the same answer
 * twice (no hidden state), "off" always refuses and "any" always allows. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/gzip_filter.h"

static sg_str field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
    const uint8_t *stop = z ? z : end;
    sg_str s = { (const char *)*p, (size_t)(stop - *p) };
    *p = z ? z + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a heap copy of exactly `size` bytes: reads past it are caught */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    const uint8_t *p = buf, *end = buf + size;
    sg_str ae = field(&p, end);
    sg_str ua = field(&p, end);
    bool a1 = sg_gzip_accepts(ae);
    assert(a1 == sg_gzip_accepts(ae));
    (void)sg_gzip_msie6(ua);

    sg_header h[16];
    size_t n = 0;
    sg_str rest = { (const char *)p, (size_t)(end - p) };
    while (rest.n && n < 16) {
        const char *nl = memchr(rest.p, '\n', rest.n);
        size_t len = nl ? (size_t)(nl - rest.p) : rest.n;
        const char *colon = memchr(rest.p, ':', len);
        if (colon) {
            h[n].name = (sg_str){ rest.p, (size_t)(colon - rest.p) };
            h[n].value = (sg_str){ colon + 1, len - (size_t)(colon + 1 - rest.p) };
            h[n].flags = 0;
            n++;
        }
        rest.p += len + (nl ? 1 : 0);
        rest.n -= len + (nl ? 1 : 0);
    }
    sg_response resp = { .status = 200, .headers = h, .nheaders = n, .content_length = -1, .has_body = true };

    sg_loc_conf lc;
    memset(&lc, 0, sizeof(lc));
    sg_str types[] = { SG_STR("application/json") };
    lc.gzip_types = types;
    lc.ngzip_types = 1;
    for (size_t i = 0; i < n; i++) (void)sg_gzip_type_ok(&lc, h[i].value);

    for (uint32_t mask = 0; mask < (1u << 10); mask += 1 + (mask & 7)) {
        bool r1 = sg_gzip_proxied_ok(mask, size & 1, &resp, 1000000000);
        assert(r1 == sg_gzip_proxied_ok(mask, size & 1, &resp, 1000000000));
        if (mask & SG_GZIP_PROXIED_OFF) assert(!r1);
        else if (mask & SG_GZIP_PROXIED_ANY) assert(r1);
    }
    free(buf);
    return 0;
}
