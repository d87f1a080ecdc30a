/* Fuzzes the HTTP/2 server codec: arbitrary client bytes go through the
 * same input function as socket reads (preface check, nghttp2, our
 * callbacks, abuse accounting, request building), exchanges are answered
 * by a stub core (at once, after the body, or aborted), output is
 * serialized and written to a socketpair, then the connection is closed.
 * ASan/UBSan and LeakSanitizer catch what goes wrong. Needs -DSG_FUZZING.
 *
 * Input: byte 0 = options (bit 0: prepend the client preface; the value
 * also sets how the rest is split into reads), then raw client bytes. */
#include <stddef.h>
#include <stdint.h>

#include "http/h2_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sg_h2_server_fuzz(data, size);
    return 0;
}
