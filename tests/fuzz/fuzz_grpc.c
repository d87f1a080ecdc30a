/* gRPC request framing and grpc-timeout, both read from the network:
 * the first byte picks a chunk size, the rest is a message stream fed
 * in chunks, and also a grpc-timeout value. Checks that a stream split
 * anywhere is judged the same as in one piece. */
#include <stdint.h>
#include <stdlib.h>

#include "proxy/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t chunk = (size_t)data[0] + 1;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    uint64_t ms;
    (void)sg_grpc_parse_timeout((sg_str){ p, n < 16 ? n : 16 }, &ms);

    sg_grpc_framing whole = { 0 }, parts = { 0 };
    uint64_t len1 = 0, len2 = 0;
    bool ok1 = sg_grpc_framing_scan(&whole, p, n, 1000, &len1);
    bool ok2 = true;
    for (size_t off = 0; off < n && ok2; off += chunk)
        ok2 = sg_grpc_framing_scan(&parts, p + off, n - off < chunk ? n - off : chunk, 1000, &len2);
    if (ok1 != ok2 || (!ok1 && len1 != len2)) abort();
    if (ok1 && (whole.msg_left != parts.msg_left || whole.prefix_have != parts.prefix_have)) abort();
    return 0;
}
