/* HTTP/2 abuse accounting: what a client may do before the connection is
 * called out (token buckets, header block limits). */
#include <criterion/criterion.h>

#include <string.h>

#include "http/h2_limits.h"

Test(h2_bucket, burst_then_refused)
{
    sg_h2_bucket b;
    sg_h2_bucket_init(&b, 1000, 33, 5000);
    for (int i = 0; i < 1000; i++) cr_assert(sg_h2_bucket_take(&b, 5000), "event %d within the burst", i);
    cr_assert_not(sg_h2_bucket_take(&b, 5000), "the 1001st reset at once is refused");
}

Test(h2_bucket, refills_at_the_rate)
{
    sg_h2_bucket b;
    sg_h2_bucket_init(&b, 10, 100, 0);
    for (int i = 0; i < 10; i++) sg_h2_bucket_take(&b, 0);
    cr_assert_not(sg_h2_bucket_take(&b, 0));
    cr_assert_not(sg_h2_bucket_take(&b, 9), "100/s is one token per 10 ms");
    cr_assert(sg_h2_bucket_take(&b, 10));
    cr_assert_not(sg_h2_bucket_take(&b, 10));
    /* a long pause refills to the burst, never beyond */
    int n = 0;
    while (sg_h2_bucket_take(&b, 1000000)) n++;
    cr_assert_eq(n, 10);
}

Test(h2_bucket, steady_client_below_rate_is_never_refused)
{
    sg_h2_bucket b;
    sg_h2_bucket_init(&b, 1000, 33, 0);
    for (uint64_t t = 0; t < 600000; t += 40)   /* 25 resets a second for 10 minutes */
        cr_assert(sg_h2_bucket_take(&b, t));
}

/* Names for sg_h2_hblock_field: a regular field of `len` bytes of name. */
static const uint8_t NAME[64] = "x-field-name-long-enough-for-every-length-used-here-xxxxxxxxxxx";
#define F(h, namelen, valuelen) sg_h2_hblock_field((h), NAME, (namelen), (valuelen))

Test(h2_hblock, normal_request_passes)
{
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 32768, 100);
    cr_assert_eq(sg_h2_hblock_frame(&h, false, 300), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_field(&h, (const uint8_t *)":method", 7, 3), SG_H2_OK);
    cr_assert_eq(F(&h, 6, 4000), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_frame(&h, true, 16000), SG_H2_OK);
}

Test(h2_hblock, field_over_max_field_size_is_431)
{
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 32768, 100);
    cr_assert_eq(F(&h, 6, 9000), SG_H2_TOO_LARGE);
    cr_assert_eq(F(&h, 1, 1), SG_H2_TOO_LARGE, "the request stays refused");
}

Test(h2_hblock, list_counts_32_bytes_per_field)
{
    /* RFC 7541 4.1: a field costs its name, its value and 32 bytes, so
     * fields of 10 + 58 bytes fill 32768 after 327 of them */
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 32768, 100000);
    int fit = 0;
    while (F(&h, 10, 58) == SG_H2_OK) fit++;
    cr_assert_eq(fit, 327);
    cr_assert_eq(h.refused, SG_H2_TOO_LARGE);
}

Test(h2_hblock, list_over_limit_is_431_far_over_is_calm)
{
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 32768, 100);
    sg_h2_verdict v = SG_H2_OK;
    int fit = -1;
    while (v == SG_H2_OK) v = F(&h, 10, 4000), fit++;
    cr_assert_eq(v, SG_H2_TOO_LARGE);
    cr_assert_eq(fit, 8, "32768 / (4000 + 10 + 32) fields fit");
    /* an HPACK bomb: the same 4 KB entry referenced again and again */
    while (v == SG_H2_TOO_LARGE) v = F(&h, 10, 4000);
    cr_assert_eq(v, SG_H2_CALM);
    cr_assert(h.list_bytes > 32768u * SG_H2_BOMB_FACTOR);
}

Test(h2_hblock, continuation_flood_is_calm)
{
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 32768, 100);
    cr_assert_eq(sg_h2_hblock_frame(&h, false, 10), SG_H2_OK);
    for (int i = 0; i < SG_H2_MAX_CONTINUATIONS; i++) cr_assert_eq(sg_h2_hblock_frame(&h, true, 1), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_frame(&h, true, 1), SG_H2_CALM);
}

Test(h2_hblock, huge_compressed_block_is_calm)
{
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 32768, 100);
    cr_assert_eq(sg_h2_hblock_frame(&h, false, 16384), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_frame(&h, true, 16384), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_frame(&h, true, 16384), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_frame(&h, true, 16384), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_frame(&h, true, 16384), SG_H2_CALM, "more than twice the list cap on the wire");
}

Test(h2_hblock, max_headers_is_400_and_sticks)
{
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 1u << 20, 100);
    cr_assert_eq(sg_h2_hblock_field(&h, (const uint8_t *)":path", 5, 1), SG_H2_OK);
    for (int i = 0; i < 100; i++) cr_assert_eq(F(&h, 1, 1), SG_H2_OK, "field %d", i + 1);
    cr_assert_eq(F(&h, 1, 1), SG_H2_TOO_MANY, "the 101st field");
    cr_assert_eq(F(&h, 1, 100000), SG_H2_TOO_MANY, "the first verdict stays");
    cr_assert_eq(h.counted, 101, "nothing counted after the refusal");
}

Test(h2_hblock, pseudo_headers_and_cookie_crumbs_do_not_count)
{
    /* as in nginx: a browser may send each cookie as its own field */
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 1u << 20, 3);
    const char *pseudo[] = { ":method", ":scheme", ":path", ":authority" };
    for (int i = 0; i < 4; i++)
        cr_assert_eq(sg_h2_hblock_field(&h, (const uint8_t *)pseudo[i], strlen(pseudo[i]), 1), SG_H2_OK);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(sg_h2_hblock_field(&h, (const uint8_t *)"cookie", 6, 8), SG_H2_OK);
    for (int i = 0; i < 3; i++) cr_assert_eq(F(&h, 4, 1), SG_H2_OK);
    cr_assert_eq(F(&h, 4, 1), SG_H2_TOO_MANY);
}

Test(h2_hblock, too_many_fields_of_any_kind_is_431)
{
    sg_h2_hblock h;
    sg_h2_hblock_begin(&h, 8192, 1u << 20, 100);
    for (int i = 0; i < SG_H2_MAX_FIELDS; i++)
        cr_assert_eq(sg_h2_hblock_field(&h, (const uint8_t *)"cookie", 6, 1), SG_H2_OK);
    cr_assert_eq(sg_h2_hblock_field(&h, (const uint8_t *)"cookie", 6, 1), SG_H2_TOO_LARGE);
}
