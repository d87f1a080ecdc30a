/* ssl_preread's ClientHello parser: names, ALPN and versions as nginx
 * reports them, records joined, and malformed hellos reported as none. */
#include <criterion/criterion.h>
#include <string.h>

#include "net/ssl_preread.h"

/* A ClientHello with the given extensions (already encoded), in one record. */
static size_t hello(unsigned char *out, unsigned version, const unsigned char *ext, size_t extlen)
{
    unsigned char body[1024];
    size_t n = 0;
    body[n++] = (unsigned char)(version >> 8);
    body[n++] = (unsigned char)version;
    memset(body + n, 0xab, 32);                /* random */
    n += 32;
    body[n++] = 0;                             /* session id */
    body[n++] = 0; body[n++] = 2; body[n++] = 0x13; body[n++] = 0x01;   /* one cipher */
    body[n++] = 1; body[n++] = 0;              /* compression: null */
    body[n++] = (unsigned char)(extlen >> 8);
    body[n++] = (unsigned char)extlen;
    memcpy(body + n, ext, extlen);
    n += extlen;
    size_t hs = 4 + n, o = 0;
    out[o++] = 0x16; out[o++] = 3; out[o++] = 1;
    out[o++] = (unsigned char)(hs >> 8); out[o++] = (unsigned char)hs;
    out[o++] = 1; out[o++] = 0; out[o++] = (unsigned char)(n >> 8); out[o++] = (unsigned char)n;
    memcpy(out + o, body, n);
    return o + n;
}

static const unsigned char sni_alpn[] = {
    0x00, 0x00, 0x00, 0x0b, 0x00, 0x09, 0x00, 0x00, 0x06, 'a', '.', 't', 'e', 's', 't',
    0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 'h', '2', 0x08, 'h', 't', 't', 'p', '/', '1', '.', '1',
    0x00, 0x2b, 0x00, 0x05, 0x04, 0x7a, 0x7a, 0x03, 0x04,      /* GREASE, TLS 1.3 */
};

Test(ssl_preread, sni_alpn_version)
{
    unsigned char buf[2048];
    size_t n = hello(buf, 0x0303, sni_alpn, sizeof(sni_alpn));
    sg_preread_info in;
    cr_assert_eq(sg_ssl_preread_parse(buf, n, &in), SG_PREREAD_DONE);
    cr_expect_str_eq(in.server_name, "a.test");
    cr_expect_str_eq(in.alpn, "h2,http/1.1");
    cr_expect_str_eq(in.protocol, "TLSv1.3");
    /* every shorter prefix asks for more */
    for (size_t k = 1; k < n; k++)
        cr_expect_eq(sg_ssl_preread_parse(buf, k, &in), SG_PREREAD_AGAIN, "prefix %zu", k);
}

Test(ssl_preread, split_records)
{
    unsigned char one[2048], two[2048];
    size_t n = hello(one, 0x0303, sni_alpn, sizeof(sni_alpn));
    /* the same handshake bytes in two records, cut inside the name */
    size_t payload = n - 5, cut = 50;
    size_t o = 0;
    memcpy(two, one, 3);
    two[3] = 0; two[4] = (unsigned char)cut;
    memcpy(two + 5, one + 5, cut);
    o = 5 + cut;
    two[o++] = 0x16; two[o++] = 3; two[o++] = 1;
    two[o++] = (unsigned char)((payload - cut) >> 8); two[o++] = (unsigned char)(payload - cut);
    memcpy(two + o, one + 5 + cut, payload - cut);
    o += payload - cut;
    sg_preread_info in;
    cr_assert_eq(sg_ssl_preread_parse(two, o, &in), SG_PREREAD_DONE);
    cr_expect_str_eq(in.server_name, "a.test");
}

Test(ssl_preread, not_tls_and_malformed)
{
    sg_preread_info in;
    cr_expect_eq(sg_ssl_preread_parse((const unsigned char *)"GET / HTTP/1.1\r\n", 16, &in), SG_PREREAD_NOT_TLS);
    cr_expect_eq(sg_ssl_preread_parse((const unsigned char *)"\x16\x03", 2, &in), SG_PREREAD_AGAIN);
    unsigned char buf[2048];
    static const unsigned char bad_sni[] = { 0x00, 0x00, 0x00, 0x07, 0x00, 0x09, 0x00, 0x00, 0x06, 'a', '.' };
    size_t n = hello(buf, 0x0303, bad_sni, sizeof(bad_sni));
    cr_expect_eq(sg_ssl_preread_parse(buf, n, &in), SG_PREREAD_NOT_TLS);
    cr_expect_str_eq(in.server_name, "");
    /* SSLv2-compatible hello */
    static const unsigned char v2[] = { 0x80, 0x1c, 0x01, 0x03, 0x01, 0x00, 0x03 };
    cr_expect_eq(sg_ssl_preread_parse(v2, sizeof(v2), &in), SG_PREREAD_DONE);
    cr_expect_str_eq(in.protocol, "TLSv1");
}
