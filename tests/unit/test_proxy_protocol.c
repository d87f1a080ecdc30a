/* PROXY protocol v1/v2 headers as HAProxy sends them. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy_protocol.h"

static sg_pp_result parse(const void *p, size_t n, sg_pp_info *info, size_t *used)
{
    return sg_pp_parse(p, n, info, used);
}

static const char *addr_of(const struct sockaddr_storage *ss, char *buf, size_t cap, unsigned *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)ss;
        *port = ntohs(s->sin_port);
        return inet_ntop(AF_INET, &s->sin_addr, buf, (socklen_t)cap);
    }
    const struct sockaddr_in6 *s = (const void *)ss;
    *port = ntohs(s->sin6_port);
    return inet_ntop(AF_INET6, &s->sin6_addr, buf, (socklen_t)cap);
}

Test(proxy_protocol, v1_tcp4_and_tcp6)
{
    const char *h = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    sg_pp_info info;
    size_t used;
    cr_assert_eq(parse(h, strlen(h), &info, &used), SG_PP_DONE);
    cr_assert_eq(used, strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"));
    char buf[64];
    unsigned port;
    cr_assert_str_eq(addr_of(&info.src, buf, sizeof(buf), &port), "192.0.2.1");
    cr_assert_eq(port, 56324);
    cr_assert_str_eq(addr_of(&info.dst, buf, sizeof(buf), &port), "198.51.100.2");
    cr_assert_eq(port, 443);

    h = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    cr_assert_eq(parse(h, strlen(h), &info, &used), SG_PP_DONE);
    cr_assert_str_eq(addr_of(&info.src, buf, sizeof(buf), &port), "2001:db8::1");
    cr_assert_eq(port, 1);
}

Test(proxy_protocol, v1_unknown_and_partial_and_bad)
{
    sg_pp_info info;
    size_t used;
    cr_assert_eq(parse("PROXY UNKNOWN\r\n", 15, &info, &used), SG_PP_DONE);
    cr_assert_not(info.has_addrs);
    cr_assert_eq(parse("PROXY TCP4 1.2.3.4", 18, &info, &used), SG_PP_MORE);
    cr_assert_eq(parse("PRO", 3, &info, &used), SG_PP_MORE);
    const char *bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "GET / HTTP/1.1\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(bad[i], strlen(bad[i]), &info, &used), SG_PP_INVALID, "%s", bad[i]);
    char longline[200];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "PROXY TCP4 ", 11);
    cr_assert_eq(parse(longline, sizeof(longline), &info, &used), SG_PP_INVALID);   /* no CRLF in 107 bytes */
}

Test(proxy_protocol, v2_tcp4_with_tlvs_and_local)
{
    uint8_t h[64] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                      0x21, 0x11, 0x00, 12 + 7,
                      192, 0, 2, 9, 10, 0, 0, 1, 0x1F, 0x90, 0x01, 0xBB,
                      0x04, 0x00, 0x04, 'a', 'b', 'c', 'd' };      /* one TLV (NOOP) */
    size_t n = 16 + 12 + 7;
    sg_pp_info info;
    size_t used;
    cr_assert_eq(parse(h, n, &info, &used), SG_PP_DONE);
    cr_assert_eq(used, n);
    char buf[64];
    unsigned port;
    cr_assert_str_eq(addr_of(&info.src, buf, sizeof(buf), &port), "192.0.2.9");
    cr_assert_eq(port, 8080);
    cr_assert_eq(parse(h, n - 1, &info, &used), SG_PP_MORE);
    h[30] = 0x05;   /* the TLV claims more than is left */
    cr_assert_eq(parse(h, n, &info, &used), SG_PP_INVALID);
    h[30] = 0x04;
    h[12] = 0x20;   /* LOCAL: the balancer's own health check */
    cr_assert_eq(parse(h, n, &info, &used), SG_PP_DONE);
    cr_assert_not(info.has_addrs);
    h[12] = 0x31;   /* version 3 */
    cr_assert_eq(parse(h, n, &info, &used), SG_PP_INVALID);
}

static struct sockaddr_storage sa_of(const char *ip, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (void *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (void *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, ip, &s4->sin_addr);
    }
    return ss;
}

Test(proxy_protocol, v1_write_reads_back)
{
    char buf[SG_PP_V1_WRITE_MAX];
    struct sockaddr_storage a = sa_of("192.0.2.1", 56324), b = sa_of("198.51.100.2", 443);
    size_t n = sg_pp_write_v1((void *)&a, (void *)&b, buf);
    cr_assert_str_eq(buf, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    cr_assert_eq(n, strlen(buf));
    sg_pp_info info;
    size_t used;
    cr_assert_eq(sg_pp_parse((const uint8_t *)buf, n, &info, &used), SG_PP_DONE);
    cr_assert_eq(used, n);
    cr_assert(info.has_addrs);

    a = sa_of("2001:db8::1", 1);
    b = sa_of("::1", 65535);
    n = sg_pp_write_v1((void *)&a, (void *)&b, buf);
    cr_assert_str_eq(buf, "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
    cr_assert_eq(sg_pp_parse((const uint8_t *)buf, n, &info, &used), SG_PP_DONE);

    /* the longest text form fits */
    a = sa_of("::ffff:255.255.255.255", 65535);
    b = sa_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    n = sg_pp_write_v1((void *)&a, (void *)&b, buf);
    cr_assert_gt(n, 0);
    cr_assert_eq(n, strlen(buf));

    /* other and mixed families */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof(u));
    u.ss_family = AF_UNIX;
    cr_assert_str_eq((sg_pp_write_v1((void *)&u, (void *)&b, buf), buf), "PROXY UNKNOWN\r\n");
    a = sa_of("192.0.2.1", 1);
    cr_assert_eq(sg_pp_write_v1((void *)&a, (void *)&b, buf), strlen("PROXY UNKNOWN\r\n"));
    cr_assert_eq(sg_pp_parse((const uint8_t *)buf, strlen(buf), &info, &used), SG_PP_DONE);
    cr_assert_not(info.has_addrs);
}

/* ---- real client address (issue 10): TLVs as nginx's $proxy_protocol_tlv_NAME reads them ---- */

static size_t put_tlv(uint8_t *p, uint8_t type, const void *v, size_t n)
{
    p[0] = type;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)n;
    memcpy(p + 3, v, n);
    return 3 + n;
}

/* A v2 TCP4 header with the TLVs of proxy_protocol2_tlv.t. */
static size_t tlv_header(uint8_t *h)
{
    static const uint8_t head[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                                    0x21, 0x11, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0, 123, 0x16, 0x2E };
    memcpy(h, head, sizeof(head));
    size_t n = sizeof(head);
    n += put_tlv(h + n, 0x01, "ALPN1", 5);
    n += put_tlv(h + n, 0x02, "localhost", 9);
    n += put_tlv(h + n, 0x05, "UNIQQ", 5);
    uint8_t ssl[64] = { 0x01, 0, 0, 0x01, 0x00 };   /* client, verify = 256 */
    size_t sn = 5;
    sn += put_tlv(ssl + sn, 0x21, "TLSv1.2", 7);
    sn += put_tlv(ssl + sn, 0x22, "example.com", 11);
    n += put_tlv(h + n, 0x20, ssl, sn);
    n += put_tlv(h + n, 0xae, "12345", 5);
    h[14] = (uint8_t)((n - 16) >> 8);
    h[15] = (uint8_t)(n - 16);
    return n;
}

static const char *tlv(const sg_pp_info *info, const char *name, char *out)
{
    const uint8_t *v;
    size_t vlen;
    char num[SG_PP_TLV_NUM_MAX];
    int rc = sg_pp_tlv_find(info->tlv, info->tlv_len, name, strlen(name), &v, &vlen, num);
    if (rc < 0) return "(unknown)";
    if (rc == 0) return "(none)";
    memcpy(out, v, vlen);
    out[vlen] = '\0';
    return out;
}

Test(proxy_protocol, v2_tlv_names)
{
    uint8_t h[256];
    size_t n = tlv_header(h), used;
    sg_pp_info info;
    cr_assert_eq(sg_pp_parse(h, n, &info, &used), SG_PP_DONE);
    char b[64];
    cr_assert_str_eq(tlv(&info, "alpn", b), "ALPN1");
    cr_assert_str_eq(tlv(&info, "0x01", b), "ALPN1");
    cr_assert_str_eq(tlv(&info, "AUTHORITY", b), "localhost");
    cr_assert_str_eq(tlv(&info, "unique_id", b), "UNIQQ");
    cr_assert_str_eq(tlv(&info, "0x000ae", b), "12345");
    cr_assert_str_eq(tlv(&info, "ssl_verify", b), "256");
    cr_assert_str_eq(tlv(&info, "ssl_version", b), "TLSv1.2");
    cr_assert_str_eq(tlv(&info, "ssl_0x22", b), "example.com");
    cr_assert_str_eq(tlv(&info, "ssl_cipher", b), "(none)");
    cr_assert_str_eq(tlv(&info, "netns", b), "(none)");
    cr_assert_str_eq(tlv(&info, "0x0f", b), "(none)");
    cr_assert_str_eq(tlv(&info, "0x100", b), "(unknown)");
    cr_assert_str_eq(tlv(&info, "0xzz", b), "(unknown)");
    cr_assert_str_eq(tlv(&info, "nosuch", b), "(unknown)");
    cr_assert_str_eq(tlv(&info, "ssl_nosuch", b), "(unknown)");

    /* what a connection keeps: the addresses and a copy of the TLVs */
    struct sockaddr_storage *blk = sg_pp_block_new(&info);
    cr_assert_not_null(blk);
    cr_assert_eq(blk[0].ss_family, AF_INET);
    sg_pp_info kept = { .has_addrs = true };
    sg_pp_block_tlvs(blk, &kept.tlv, &kept.tlv_len);
    cr_assert_eq(kept.tlv_len, info.tlv_len);
    cr_assert_str_eq(tlv(&kept, "ssl_cn", b), "example.com");
    free(blk);
    sg_pp_block_tlvs(NULL, &kept.tlv, &kept.tlv_len);
    cr_assert_eq(kept.tlv_len, 0);
    cr_assert_str_eq(tlv(&kept, "alpn", b), "(none)");
}

Test(proxy_protocol, v2_broken_tlvs_are_invalid)
{
    uint8_t h[256];
    size_t n = tlv_header(h), used;
    sg_pp_info info;
    /* the SSL TLV's first sub-TLV (at 28 + 8 + 12 + 8 + 3 + 5) claims one byte more than it has */
    size_t sub = 28 + 8 + 12 + 8 + 3 + 5;
    cr_assert_eq(h[sub], 0x21);
    h[sub + 2]++;
    cr_assert_eq(sg_pp_parse(h, n, &info, &used), SG_PP_INVALID);
    h[sub + 2]--;
    /* an SSL TLV shorter than its client and verify fields */
    n = tlv_header(h);
    uint8_t shortssl[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                           0x21, 0x11, 0, 12 + 3 + 4, 192, 0, 2, 1, 192, 0, 2, 2, 0, 1, 0, 2,
                           0x20, 0, 4, 1, 0, 0, 0 };
    cr_assert_eq(sg_pp_parse(shortssl, sizeof(shortssl), &info, &used), SG_PP_INVALID);
    /* a TLV header cut short (two bytes left) */
    uint8_t cut[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                      0x21, 0x11, 0, 12 + 2, 192, 0, 2, 1, 192, 0, 2, 2, 0, 1, 0, 2, 0x04, 0 };
    cr_assert_eq(sg_pp_parse(cut, sizeof(cut), &info, &used), SG_PP_INVALID);
}

Test(proxy_protocol, v2_write_reads_back)
{
    uint8_t buf[SG_PP_V2_WRITE_MAX];
    struct sockaddr_storage a = sa_of("192.0.2.1", 56324), b = sa_of("198.51.100.2", 443);
    size_t n = sg_pp_write_v2((void *)&a, (void *)&b, buf);
    cr_assert_eq(n, 16 + 12);
    cr_assert_eq(buf[12], 0x21);
    cr_assert_eq(buf[13], 0x11);
    sg_pp_info info;
    size_t used;
    cr_assert_eq(sg_pp_parse(buf, n, &info, &used), SG_PP_DONE);
    cr_assert_eq(used, n);
    char t[64];
    unsigned port;
    cr_assert_str_eq(addr_of(&info.src, t, sizeof(t), &port), "192.0.2.1");
    cr_assert_eq(port, 56324);
    cr_assert_str_eq(addr_of(&info.dst, t, sizeof(t), &port), "198.51.100.2");
    cr_assert_eq(port, 443);

    a = sa_of("2001:db8::1", 1);
    b = sa_of("::1", 65535);
    n = sg_pp_write_v2((void *)&a, (void *)&b, buf);
    cr_assert_eq(n, 16 + 36);
    cr_assert_eq(sg_pp_parse(buf, n, &info, &used), SG_PP_DONE);
    cr_assert_str_eq(addr_of(&info.src, t, sizeof(t), &port), "2001:db8::1");

    /* a unix client: LOCAL, no addresses */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof(u));
    u.ss_family = AF_UNIX;
    n = sg_pp_write_v2((void *)&u, (void *)&b, buf);
    cr_assert_eq(n, 16);
    cr_assert_eq(buf[12], 0x20);
    cr_assert_eq(sg_pp_parse(buf, n, &info, &used), SG_PP_DONE);
    cr_assert_not(info.has_addrs);
}
