/* Fuzzes the ssl_preread ClientHello parser (network input): any input
 * parses without reading out of bounds (each one an exact-size heap copy),
 * results are NUL-terminated, a server name is reported only with DONE,
 * and a prefix that already gives DONE gives the same name as the whole
 * input (the parser decides only on what it has read). */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/ssl_preread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sg_preread_info full, part;
    /* an exact-size copy, so ASan sees any read past the end */
    unsigned char *p = malloc(size ? size : 1);
    memcpy(p, data, size);
    sg_preread_status s = sg_ssl_preread_parse(p, size, &full);
    assert(memchr(full.server_name, 0, sizeof(full.server_name)));
    assert(memchr(full.alpn, 0, sizeof(full.alpn)));
    assert(memchr(full.protocol, 0, sizeof(full.protocol)));
    if (s != SG_PREREAD_DONE) assert(full.server_name[0] == 0);
    free(p);
    for (size_t cut = size / 2; cut < size; cut += 1 + size / 4) {
        unsigned char *q = malloc(cut ? cut : 1);
        memcpy(q, data, cut);
        sg_preread_status ps = sg_ssl_preread_parse(q, cut, &part);
        if (ps == SG_PREREAD_DONE && s == SG_PREREAD_DONE)
            assert(strcmp(part.server_name, full.server_name) == 0);
        free(q);
    }
    return 0;
}
