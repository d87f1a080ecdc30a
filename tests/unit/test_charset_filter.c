/* The charset filter's pure parts: the charset a Content-Type names, and
 * whether its type is in charset_types (nginx's reading of the value). */
#include <criterion/criterion.h>
#include <string.h>

#include "conf/charset_conf.h"
#include "proxy/charset_filter.h"

static bool charset_is(const char *ct, const char *want)
{
    sg_str got = sg_charset_of(sg_str_from(ct));
    return got.n == strlen(want) && memcmp(got.p, want, got.n) == 0;
}

Test(charset_filter, charset_of)
{
    cr_assert(charset_is("text/html; charset=utf-8", "utf-8"));
    cr_assert(charset_is("text/html;charset=KOI8-R", "KOI8-R"));
    cr_assert(charset_is("text/html; Charset=\"UTF-8\"", "UTF-8"));
    cr_assert(charset_is("text/html; q=1; charset=utf-8", "utf-8"));
    cr_assert(charset_is("text/html", ""));
    cr_assert(charset_is("text/html; q=1", ""));
    cr_assert(charset_is("text/html; xcharset=utf-8", ""));
    cr_assert(charset_is("", ""));
}

Test(charset_filter, types)
{
    sg_loc_conf lc;
    memset(&lc, 0, sizeof(lc));
    sg_charset_conf_defaults(&lc);
    cr_assert(sg_charset_type_ok(&lc, sg_str_from("text/html")));
    cr_assert(sg_charset_type_ok(&lc, sg_str_from("Text/HTML")));
    cr_assert(sg_charset_type_ok(&lc, sg_str_from("application/javascript")));
    cr_assert(sg_charset_type_ok(&lc, sg_str_from("text/plain; charset=koi8-r")));
    /* without a charset the whole value is the type, as nginx reads it */
    cr_assert(!sg_charset_type_ok(&lc, sg_str_from("text/html; q=1")));
    cr_assert(!sg_charset_type_ok(&lc, sg_str_from("text/css")));
    cr_assert(!sg_charset_type_ok(&lc, sg_str_from("")));
    sg_str types[] = { SG_STR("text/foo") };
    lc.charset_types = types;
    lc.ncharset_types = 1;
    cr_assert(sg_charset_type_ok(&lc, sg_str_from("text/foo")));
    cr_assert(!sg_charset_type_ok(&lc, sg_str_from("text/html")));
    lc.charset_types_any = true;
    cr_assert(sg_charset_type_ok(&lc, sg_str_from("application/octet-stream")));
}
