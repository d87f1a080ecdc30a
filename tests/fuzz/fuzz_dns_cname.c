/* Fuzzes what the resolver reads from a DNS answer itself (c-ares reads
 * the rest): the CNAME chain from the question's name
 * (sg_resolver_cname_target). Memory safety, plus: a target found fits
 * the buffer, and the answer does not change when asked twice. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/resolver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65535) return 0;
    /* a heap copy of exactly `size` bytes: reads past it are caught */
    unsigned char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    char out[256], again[256];
    bool found = sg_resolver_cname_target(buf, (int)size, out, sizeof(out));
    if (found) assert(strlen(out) < sizeof(out));
    bool found2 = sg_resolver_cname_target(buf, (int)size, again, sizeof(again));
    assert(found == found2);
    if (found) assert(strcmp(out, again) == 0);
    free(buf);
    return 0;
}
