/* http/host.c: nginx's validate_host (nginx-tests http_host.t). */
#include <criterion/criterion.h>
#include <string.h>

#include "http/host.h"

static long check(const char *h)
{
    return sg_http_host_check((sg_str){ h, strlen(h) });
}

static const char *lower(const char *h)
{
    static char out[256];
    long n = sg_http_host_lower((sg_str){ h, strlen(h) }, out);
    if (n < 0) return NULL;
    out[n] = '\0';
    return out;
}

Test(host, accepted_forms)
{
    cr_assert_str_eq(lower("L"), "l");
    cr_assert_str_eq(lower("abcd-ef.g02.xyz:"), "abcd-ef.g02.xyz");
    cr_assert_str_eq(lower("abcd-ef.g02.xyz.:88"), "abcd-ef.g02.xyz");
    cr_assert_str_eq(lower("www.abcd-ef.g02.xyz."), "www.abcd-ef.g02.xyz");
    cr_assert_str_eq(lower("123.49.0.78:65535"), "123.49.0.78");
    cr_assert_str_eq(lower("[abcd::ef98:0:7654:321]:80"), "[abcd::ef98:0:7654:321]");
    cr_assert_str_eq(lower("[::FFFF:12.30.67.89]"), "[::ffff:12.30.67.89]");
    cr_assert_str_eq(lower("[v0aB.!$&'()*+,;=-._~Zz:]"), "[v0ab.!$&'()*+,;=-._~zz:]");
}

Test(host, refused_forms)
{
    const char *bad[] = {
        "", ".", ":80", "example.com.:1.2", "123.49.0.78:98777", "123.40.56.78:9000:80",
        "example.com/\\:552", "..examp-LE.com", "com.exa-m.45..:", "[abcd::e\\f98:0/:7654:321]",
        "[abcd::ef98:0:7654:321].", "[abcd::ef98:0:7654:321].:98", "[ab..cd::ef98:0:7654:321]",
        "extra[abcd::ef98:0:7654:321]:98", "[abcd::ef98:0:7654:321", "[]", "localhost\x02",
        "a b", "host:8x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_lt(check(bad[i]), 0, "%s", bad[i]);
}
