/* Fuzzes what the charset filter reads from the network: a response's
 * Content-Type (the charset it names, whether its type is in
 * charset_types). Memory safety, plus: the charset found lies inside the
 * value, and the answers do not change when asked twice. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/charset_conf.h"
#include "proxy/charset_filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a heap copy of exactly `size` bytes: reads past it are caught */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    sg_str ct = { buf, size };
    sg_str cs = sg_charset_of(ct);
    assert(cs.n == 0 || (cs.p >= buf && cs.p + cs.n <= buf + size));
    sg_str again = sg_charset_of(ct);
    assert(again.p == cs.p && again.n == cs.n);

    sg_loc_conf lc;
    memset(&lc, 0, sizeof(lc));
    sg_charset_conf_defaults(&lc);
    bool ok = sg_charset_type_ok(&lc, ct);
    assert(ok == sg_charset_type_ok(&lc, ct));
    lc.charset_types_any = true;
    assert(sg_charset_type_ok(&lc, ct));
    free(buf);
    return 0;
}
