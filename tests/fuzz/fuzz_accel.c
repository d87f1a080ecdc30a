/* Fuzzes what a backend's X-Accel-Redirect value becomes
 * (proxy/accel.h): memory safety, plus: a safe result is "@..." as sent
 * or an absolute path with no "." or ".." segment and no NUL before its
 * arguments, never longer than the value, and the same when asked twice. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/accel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);   /* exactly `size` bytes: reads past it are caught */
    memcpy(buf, data, size);
    char *out = malloc(size ? size : 1);
    sg_str v = { buf, size }, r;
    bool ok = sg_accel_target(v, out, &r);
    if (ok) {
        assert(r.n <= size);
        assert(r.n > 0);
        if (r.p[0] != '@') {
            const char *q = memchr(r.p, '?', r.n);
            size_t plen = q ? (size_t)(q - r.p) : r.n;
            assert(r.p[0] == '/' && !memchr(r.p, '\0', plen));
            for (size_t i = 0; i + 1 < plen; i++)
                assert(!(r.p[i] == '/' && r.p[i + 1] == '.' &&
                         (i + 2 == plen || r.p[i + 2] == '/' ||
                          (r.p[i + 2] == '.' && (i + 3 == plen || r.p[i + 3] == '/')))));
        }
        char *out2 = malloc(size ? size : 1);
        sg_str r2;
        assert(sg_accel_target(v, out2, &r2) && r2.n == r.n && memcmp(r2.p, r.p, r.n) == 0);
        free(out2);
    }
    free(out);
    free(buf);
    return 0;
}
