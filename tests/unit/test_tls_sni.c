/* sg_tls_sni_parse: the server_name extension of a ClientHello, read
 * before OpenSSL checks it (net/tls.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "net/tls.h"

static bool parse(const char *bytes, size_t n, char *out)
{
    const unsigned char *name = NULL;
    size_t len = 0;
    if (!sg_tls_sni_parse((const unsigned char *)bytes, n, &name, &len)) return false;
    memcpy(out, name, len);
    out[len] = '\0';
    return true;
}

Test(tls_sni, one_host_name)
{
    char out[64];
    cr_assert(parse("\x00\x09\x00\x00\x06" "a.test", 11, out));
    cr_assert_str_eq(out, "a.test");
}

Test(tls_sni, skips_other_name_types)
{
    char out[64];
    cr_assert(parse("\x00\x0d\x01\x00\x01z\x00\x00\x06" "b.test", 15, out));
    cr_assert_str_eq(out, "b.test");
}

Test(tls_sni, refuses_bad_lengths)
{
    char out[64];
    cr_assert_not(parse("\x00\x0a\x00\x00\x06" "a.test", 11, out));      /* list longer than the bytes */
    cr_assert_not(parse("\x00\x09\x00\x00\x07" "a.test", 11, out));      /* name past the list */
    cr_assert_not(parse("\x00", 1, out));
    cr_assert_not(parse("\x00\x00", 2, out));                           /* empty list: no host */
    cr_assert_not(sg_tls_sni_parse(NULL, 0, NULL, NULL));
}
