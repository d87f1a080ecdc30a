/* gRPC call helpers of the proxy core: grpc-timeout parsing (PROTOCOL-HTTP2.md:
 * TimeoutValue = 1*8 digits, TimeoutUnit = H M S m u n) and the statuses
 * the proxy answers with. */
#include <criterion/criterion.h>

#include "proxy/grpc.h"

static bool parse(const char *v, uint64_t *ms)
{
    return sg_grpc_parse_timeout(sg_str_from(v), ms);
}

Test(grpc_timeout, units_become_milliseconds)
{
    uint64_t ms;
    cr_assert(parse("300m", &ms) && ms == 300);
    cr_assert(parse("2S", &ms) && ms == 2000);
    cr_assert(parse("1M", &ms) && ms == 60000);
    cr_assert(parse("1H", &ms) && ms == 3600000);
    cr_assert(parse("1500u", &ms) && ms == 2);          /* rounded up */
    cr_assert(parse("99999999H", &ms) && ms == 99999999ull * 3600000);
}

Test(grpc_timeout, tiny_deadlines_are_at_least_one_millisecond)
{
    uint64_t ms;
    cr_assert(parse("1n", &ms) && ms == 1);
    cr_assert(parse("0m", &ms) && ms == 1);
    cr_assert(parse("1000001n", &ms) && ms == 2);
}

Test(grpc_timeout, malformed_values_are_refused)
{
    uint64_t ms;
    const char *bad[] = { "", "m", "10", "10s", "10x", "-1S", "1.5S", "123456789S", " 1S", "1S " };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert(!parse(bad[i], &ms), "%s", bad[i]);
}

Test(grpc_status, http_errors_of_the_proxy)
{
    cr_assert_eq(sg_grpc_status_of_http(502), SG_GRPC_UNAVAILABLE);
    cr_assert_eq(sg_grpc_status_of_http(503), SG_GRPC_UNAVAILABLE);
    cr_assert_eq(sg_grpc_status_of_http(504), SG_GRPC_DEADLINE_EXCEEDED);
    cr_assert_eq(sg_grpc_status_of_http(413), SG_GRPC_RESOURCE_EXHAUSTED);
    cr_assert_eq(sg_grpc_status_of_http(403), SG_GRPC_PERMISSION_DENIED);
    cr_assert_eq(sg_grpc_status_of_http(401), SG_GRPC_UNAUTHENTICATED);
    cr_assert_eq(sg_grpc_status_of_http(404), SG_GRPC_UNIMPLEMENTED);
    cr_assert_eq(sg_grpc_status_of_http(418), SG_GRPC_UNKNOWN);
}

Test(grpc_status, upstream_reset_codes)
{
    cr_assert_eq(sg_grpc_status_of_reset(0x8), SG_GRPC_CANCELLED);
    cr_assert_eq(sg_grpc_status_of_reset(0x7), SG_GRPC_UNAVAILABLE);
    cr_assert_eq(sg_grpc_status_of_reset(0xb), SG_GRPC_RESOURCE_EXHAUSTED);
    cr_assert_eq(sg_grpc_status_of_reset(0xc), SG_GRPC_PERMISSION_DENIED);
    cr_assert_eq(sg_grpc_status_of_reset(0x2), SG_GRPC_INTERNAL);
    cr_assert_eq(sg_grpc_status_of_reset(0x1), SG_GRPC_INTERNAL);
}

/* 3 messages of 10, 0 and 300 bytes, fed in every chunk size. */
Test(grpc_framing, messages_in_any_chunks)
{
    char stream[5 + 10 + 5 + 5 + 300] = { 0 };
    stream[4] = 10;
    stream[15 + 4] = 0;
    stream[20 + 3] = 1;          /* 300 = 0x12c */
    stream[20 + 4] = 0x2c;
    for (size_t chunk = 1; chunk <= sizeof(stream); chunk++) {
        sg_grpc_framing f = { 0 };
        uint64_t len = 0;
        for (size_t off = 0; off < sizeof(stream); off += chunk) {
            size_t n = sizeof(stream) - off < chunk ? sizeof(stream) - off : chunk;
            cr_assert(sg_grpc_framing_scan(&f, stream + off, n, 300, &len), "chunk %zu", chunk);
        }
        cr_assert(f.msg_left == 0 && f.prefix_have == 0);
    }
}

Test(grpc_framing, a_message_over_the_limit_is_found_at_its_prefix)
{
    const char stream[] = { 0, 0, 0, 0, 4, 'a', 'b', 'c', 'd', 1, 0, 0, 0x10, 0 };
    sg_grpc_framing f = { 0 };
    uint64_t len = 0;
    cr_assert(sg_grpc_framing_scan(&f, stream, 9, 4095, &len));
    cr_assert(!sg_grpc_framing_scan(&f, stream + 9, 5, 4095, &len));
    cr_assert_eq(len, 4096);
}
