/* X-Accel-Redirect's target (proxy/accel.h): nginx's unsafe-URI rules
 * (proxy_xar.t's cases) and the decoding of the path only. */
#include <criterion/criterion.h>
#include <string.h>

#include "proxy/accel.h"

static const char *target(const char *v)
{
    static char out[256], res[256];
    sg_str r;
    if (!sg_accel_target(sg_str_from(v), out, &r)) return NULL;
    memcpy(res, r.p, r.n);
    res[r.n] = '\0';
    return res;
}

Test(accel, safe_values_as_they_are)
{
    cr_assert_str_eq(target("/index.html"), "/index.html");
    cr_assert_str_eq(target("/foo?bar"), "/foo?bar");
    cr_assert_str_eq(target("@named"), "@named");
    cr_assert_str_eq(target("/a.b/..c/.d"), "/a.b/..c/.d");
}

Test(accel, the_path_is_decoded_the_arguments_are_not)
{
    cr_assert_str_eq(target("/foo%20bar"), "/foo bar");
    cr_assert_str_eq(target("/foo%20bar?x=%20"), "/foo bar?x=%20");
    cr_assert_str_eq(target("/a%3Fb?c"), "/a%3Fb?c");       /* an escaped '?' stays path */
    cr_assert_str_eq(target("/bad%zz"), "/bad%zz");
}

Test(accel, unsafe)
{
    cr_assert_null(target(".."));
    cr_assert_null(target("../foo"));
    cr_assert_null(target("/foo/.."));
    cr_assert_null(target("/foo/../bar"));
    cr_assert_null(target("/foo/./bar"));
    cr_assert_null(target("/foo/.%2e"));
    cr_assert_null(target("/foo%2F..%2Fbar"));
    cr_assert_null(target("/nul%00"));
    cr_assert_null(target("relative"));
    cr_assert_null(target(""));
}
