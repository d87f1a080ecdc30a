#include <criterion/criterion.h>
#include <string.h>

#include "core/split.h"
#include "exchange/forwarded.h"

#include <arpa/inet.h>

/* MurmurHash2 with seed 0 (nginx: h = 0 ^ len): every tail length. */
Test(split, murmur_hash2_as_nginx)
{
    cr_assert_eq(sg_murmur_hash2("", 0), 0u);
    cr_assert_eq(sg_murmur_hash2("a", 1), 0x92685f5eu);
    cr_assert_eq(sg_murmur_hash2("ab", 2), 0x1aa14063u);
    cr_assert_eq(sg_murmur_hash2("abc", 3), 0x13577c9bu);
    cr_assert_eq(sg_murmur_hash2("abcd", 4), 0x26873021u);
    cr_assert_eq(sg_murmur_hash2("hello world", 11), 0x44a81419u);
}

Test(split, percent)
{
    cr_assert_eq(sg_split_percent("10%", 3), 1000);
    cr_assert_eq(sg_split_percent("20.5%", 5), 2050);
    cr_assert_eq(sg_split_percent("0.01%", 5), 1);
    cr_assert_eq(sg_split_percent("1.234%", 6), -1);    /* three decimals */
    cr_assert_eq(sg_split_percent("10", 2), -1);        /* no '%' */
    cr_assert_eq(sg_split_percent("x%", 2), -1);
}

Test(split, bounds_and_pick)
{
    uint64_t sum = 0, last = 0;
    uint32_t b[3];
    cr_assert(sg_split_bound(2000, &sum, &last, &b[0]));
    cr_assert(sg_split_bound(2050, &sum, &last, &b[1]));
    cr_assert(sg_split_bound(0, &sum, &last, &b[2]));          /* "*" */
    cr_assert_eq(b[0], 858993459u);                               /* 2000 * 0xffffffff / 10000 */
    cr_assert_eq(b[1], 858993459u + 880468295u);
    cr_assert_eq(b[2], 0u);
    cr_assert_eq(sg_split_pick(b, 3, 0), 0u);
    cr_assert_eq(sg_split_pick(b, 3, 858993458u), 0u);
    cr_assert_eq(sg_split_pick(b, 3, 858993459u), 1u);
    cr_assert_eq(sg_split_pick(b, 3, 0xffffffffu), 2u);
    cr_assert_eq(sg_split_pick(b, 2, 0xffffffffu), 2u);         /* under 100%, no "*": none */
    uint32_t x;
    cr_assert_not(sg_split_bound(1, &sum, &last, &x));           /* nothing after "*" */
    sum = last = 0;
    cr_assert(sg_split_bound(6000, &sum, &last, &x));
    cr_assert_not(sg_split_bound(5000, &sum, &last, &x));
}

static bool trust_10(const void *arg, const struct sockaddr *sa)
{
    (void)arg;
    return sa->sa_family == AF_INET &&
           (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 10;
}

static const char *addr_of(const struct sockaddr_storage *ss, char *buf)
{
    if (ss->ss_family == AF_INET) return inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, 64);
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, 64);
}

Test(forwarded, nearest_hop_and_recursive)
{
    struct sockaddr_storage out;
    char buf[64];
    sg_str v = SG_STR("192.0.2.1, 10.0.0.2,10.0.0.3");
    cr_assert(sg_forwarded_addr(v, false, trust_10, NULL, &out));
    cr_assert_str_eq(addr_of(&out, buf), "10.0.0.3");
    cr_assert(sg_forwarded_addr(v, true, trust_10, NULL, &out));
    cr_assert_str_eq(addr_of(&out, buf), "192.0.2.1");
    /* ports and brackets */
    cr_assert(sg_forwarded_addr(SG_STR("[2001:db8::1]:443"), false, trust_10, NULL, &out));
    cr_assert_str_eq(addr_of(&out, buf), "2001:db8::1");
    cr_assert(sg_forwarded_addr(SG_STR("192.0.2.9:80"), false, trust_10, NULL, &out));
    cr_assert_str_eq(addr_of(&out, buf), "192.0.2.9");
    /* garbage stops the walk; what was taken before it stays */
    cr_assert_not(sg_forwarded_addr(SG_STR("nonsense"), true, trust_10, NULL, &out));
    cr_assert(sg_forwarded_addr(SG_STR("junk, 10.0.0.5"), true, trust_10, NULL, &out));
    cr_assert_str_eq(addr_of(&out, buf), "10.0.0.5");
    cr_assert_not(sg_forwarded_addr(SG_STR(" , "), true, trust_10, NULL, &out));
}
