/* The bandwidth budget's pure parts (proxy/rate_limit.h): nginx's
 * allowance (rate * (t + 1) + after - sent), the wait until it covers a
 * piece, and the sizes limit_rate takes. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "proxy/rate_limit.h"

Test(rate_limit, allowance_is_one_second_ahead)
{
    /* at the start a second's worth may go at once */
    cr_assert_eq(sg_rate_allowance(1000, 0, 0, 0), 1000);
    cr_assert_eq(sg_rate_allowance(1000, 0, 0, 1000), 0);
    /* whole seconds, as nginx's ngx_time() */
    cr_assert_eq(sg_rate_allowance(1000, 0, 999, 1000), 0);
    cr_assert_eq(sg_rate_allowance(1000, 0, 1000, 1000), 1000);
    cr_assert_eq(sg_rate_allowance(1000, 0, 2500, 1000), 2000);
    /* ahead of the budget: negative */
    cr_assert_eq(sg_rate_allowance(1000, 0, 0, 1500), -500);
}

Test(rate_limit, allowance_counts_limit_rate_after)
{
    cr_assert_eq(sg_rate_allowance(12288, 256, 0, 0), 12288 + 256);
    cr_assert_eq(sg_rate_allowance(100, 40960, 0, 30000), 100 + 40960 - 30000);
}

Test(rate_limit, allowance_does_not_overflow)
{
    cr_assert_eq(sg_rate_allowance(UINT64_MAX, 0, UINT64_MAX / 2, 0), INT64_MAX);
    cr_assert(sg_rate_allowance(1, 0, 0, UINT64_MAX) < 0);
}

Test(rate_limit, wait_until_the_budget_covers_a_piece)
{
    /* 1000 sent at 1000/s: one more byte at the next whole second */
    cr_assert_eq(sg_rate_wait_ms(1000, 0, 0, 1000, 1), 1000);
    cr_assert_eq(sg_rate_wait_ms(1000, 0, 400, 1000, 1), 600);
    cr_assert_eq(sg_rate_wait_ms(250, 0, 1200, 750, 250), 1800);
    /* already allowed: at once */
    cr_assert_eq(sg_rate_wait_ms(1000, 0, 0, 0, 1000), 1);
    cr_assert_eq(sg_rate_wait_ms(1000, 500, 0, 1200, 300), 1);
    /* limit_rate_after counts */
    cr_assert_eq(sg_rate_wait_ms(1000, 500, 0, 1500, 1), 1000);
    /* capped at a day */
    cr_assert_eq(sg_rate_wait_ms(1, 0, 0, 100000000, 1), 24ull * 3600 * 1000);
}

Test(rate_limit, sizes)
{
    uint64_t v;
    cr_assert(sg_rate_parse(SG_STR("12k"), &v) && v == 12288);
    cr_assert(sg_rate_parse(SG_STR("1m"), &v) && v == 1048576);
    cr_assert(sg_rate_parse(SG_STR("300"), &v) && v == 300);
    cr_assert(sg_rate_parse(SG_STR("0"), &v) && v == 0);
    cr_assert(!sg_rate_parse(SG_STR(""), &v));
    cr_assert(!sg_rate_parse(SG_STR("fast"), &v));
    cr_assert(!sg_rate_parse(SG_STR("1x"), &v));
    cr_assert(!sg_rate_parse(SG_STR("123456789012345678901234567890123"), &v));
}
