/* Fuzzes the PROXY protocol parser (net/proxy_protocol.c): no crash; a
 * finished header is never longer than the input or SG_PP_MAX_HEADER;
 * every prefix of an input that parses is "more" (never invalid), so a
 * header split across reads parses the same. */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "net/proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sg_pp_info info;
    size_t used = 0;
    sg_pp_result r = sg_pp_parse(data, size, &info, &used);
    if (r != SG_PP_DONE) return 0;
    assert(used > 0 && used <= size && used <= SG_PP_MAX_HEADER);
    if (info.has_addrs) {
        int f = info.src.ss_family;
        assert(f == AF_INET || f == AF_INET6 || f == AF_UNIX);
        assert(info.dst.ss_family == f);
    }
    for (size_t k = 1; k < used; k++) {
        sg_pp_info part;
        size_t pu;
        assert(sg_pp_parse(data, k, &part, &pu) == SG_PP_MORE);
    }
    sg_pp_info again;
    size_t au;
    assert(sg_pp_parse(data, used, &again, &au) == SG_PP_DONE && au == used);
    return 0;
}
