/* The gzip filter's pure decisions: Accept-Encoding (nginx's
 * ngx_http_gzip_accept_encoding and quantity), "msie6", gzip_types. */
#include <criterion/criterion.h>
#include <string.h>

#include "proxy/gzip_filter.h"

static bool accepts(const char *ae)
{
    return sg_gzip_accepts(sg_str_from(ae));
}

Test(gzip_filter, accept_encoding_names_gzip)
{
    cr_assert(accepts("gzip"));
    cr_assert(accepts("gzip, deflate"));
    cr_assert(accepts("gzip,deflate,sdch"));
    cr_assert(accepts("deflate, gzip"));
    cr_assert(accepts("br,gzip"));
    cr_assert(accepts("GZip"));
    cr_assert(accepts("gzip ,br"));
    cr_assert(!accepts(""));
    cr_assert(!accepts("deflate"));
    cr_assert(!accepts("x-gzip"));
    cr_assert(!accepts("gzipped"));
    cr_assert(!accepts("identity;q=1, *;q=0"));
}

Test(gzip_filter, accept_encoding_quality)
{
    cr_assert(accepts("gzip;q=1"));
    cr_assert(accepts("gzip; q=0.5"));
    cr_assert(accepts("gzip;Q=0.001"));
    cr_assert(accepts("gzip;q=1.000, br"));
    cr_assert(accepts("gzip;"));
    cr_assert(!accepts("gzip;q=0"));
    cr_assert(!accepts("gzip;q=0.000"));
    cr_assert(!accepts("gzip;q=0.0001"));   /* more than three decimals: invalid */
    cr_assert(!accepts("gzip;q=1.5"));
    cr_assert(!accepts("gzip;q=2"));
    cr_assert(!accepts("gzip;q="));
    cr_assert(!accepts("gzip;level=1"));
    cr_assert(!accepts("gzip;q=0.5x"));
}

Test(gzip_filter, msie6)
{
    cr_assert(sg_gzip_msie6(sg_str_from("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)")));
    cr_assert(sg_gzip_msie6(sg_str_from("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)")));
    cr_assert(sg_gzip_msie6(sg_str_from("Mozilla/4.0 (compatible; MSIE 4.01; Windows 95)")));
    cr_assert(!sg_gzip_msie6(sg_str_from("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)")));
    cr_assert(!sg_gzip_msie6(sg_str_from("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)")));
    cr_assert(!sg_gzip_msie6(sg_str_from("Opera/9.0 (compatible; MSIE 6.0; Windows NT 5.1)")));
    cr_assert(sg_gzip_msie6(sg_str_from("MSIE 6.0")));
    cr_assert(!sg_gzip_msie6(sg_str_from("MSIE 6.")));   /* too short for nginx's check */
    cr_assert(!sg_gzip_msie6(sg_str_from("curl/8.0")));
}

Test(gzip_filter, types)
{
    sg_loc_conf lc;
    memset(&lc, 0, sizeof(lc));
    cr_assert(sg_gzip_type_ok(&lc, sg_str_from("text/html")));
    cr_assert(sg_gzip_type_ok(&lc, sg_str_from("Text/HTML; charset=utf-8")));
    cr_assert(!sg_gzip_type_ok(&lc, sg_str_from("text/plain")));
    cr_assert(!sg_gzip_type_ok(&lc, sg_str_from("")));
    sg_str types[] = { SG_STR("application/json"), SG_STR("text/event-stream") };
    lc.gzip_types = types;
    lc.ngzip_types = 2;
    cr_assert(sg_gzip_type_ok(&lc, sg_str_from("application/json ;charset=utf-8")));
    cr_assert(sg_gzip_type_ok(&lc, sg_str_from("text/event-stream")));
    cr_assert(sg_gzip_type_ok(&lc, sg_str_from("text/html")));
    cr_assert(!sg_gzip_type_ok(&lc, sg_str_from("application/json-seq")));
    lc.gzip_types_any = true;
    cr_assert(sg_gzip_type_ok(&lc, sg_str_from("application/octet-stream")));
    cr_assert(sg_gzip_type_ok(&lc, sg_str_from("")));
}
