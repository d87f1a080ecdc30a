/* Fuzzes the PROXY protocol parser (net/proxy_protocol.c): no crash; a
 * finished header is never longer than the input or SG_PP_MAX_HEADER;
 * every prefix of an input that parses is "more" (never invalid), so a
 * header split across reads parses the same. The TLVs it found lie
 * inside the header, and every $proxy_protocol_tlv_NAME lookup on them
 * (and on the copy a connection keeps) stays inside them too. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/proxy_protocol.h"

static const char *const names[] = {
    "alpn", "authority", "unique_id", "netns", "ssl", "ssl_verify", "ssl_version", "ssl_cn", "ssl_cipher",
    "ssl_sig_alg", "ssl_key_alg", "ssl_0x21", "0x3", "0x04", "0x000ae", "0xff", "0x1ff", "0x", "ssl_", "x",
};

static void lookups(const uint8_t *tlv, size_t len)
{
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        const uint8_t *v;
        size_t vlen;
        char num[SG_PP_TLV_NUM_MAX];
        int rc = sg_pp_tlv_find(tlv, len, names[k], strlen(names[k]), &v, &vlen, num);
        if (rc == 1 && v != (const uint8_t *)num) assert(v >= tlv && v + vlen <= tlv + len);
    }
}

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
    if (info.tlv_len) assert(info.tlv >= data && info.tlv + info.tlv_len <= data + used);
    lookups(info.tlv, info.tlv_len);
    struct sockaddr_storage *kept = sg_pp_block_new(&info);
    if (kept) {
        const uint8_t *t;
        size_t tl;
        sg_pp_block_tlvs(kept, &t, &tl);
        assert(tl == info.tlv_len);
        lookups(t, tl);
        free(kept);
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
