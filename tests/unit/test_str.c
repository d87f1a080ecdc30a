/* core/str: case-insensitive comparison of header names. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/str.h"

static bool reference_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return false;
    }
    return true;
}

Test(str, caseeq_agrees_with_ascii_lowercasing_for_every_byte_pair)
{
    /* at every kind of position (in a word that may be skipped whole,
     * in the tail after the words), the rest equal or differing in case */
    static const size_t positions[] = { 0, 7, 8, 15, 16, 19 };
    static const char other[] = { 'k', 'K' };
    char a[20], b[20];
    for (size_t o = 0; o < 2; o++)
        for (size_t k = 0; k < sizeof(positions) / sizeof(positions[0]); k++) {
            size_t pos = positions[k];
            for (int x = 0; x < 256; x++)
                for (int y = 0; y < 256; y++) {
                    memset(a, 'k', sizeof(a));
                    memset(b, other[o], sizeof(b));
                    a[pos] = (char)x;
                    b[pos] = (char)y;
                    if (sg_mem_caseeq(a, b, sizeof(a)) != reference_caseeq(a, b, sizeof(a)))
                        cr_assert_fail("bytes %#x and %#x at %zu (rest %c)", x, y, pos, other[o]);
                }
        }
}

Test(str, caseeq_of_header_names)
{
    cr_assert(sg_str_caseeq_lit(SG_STR("Content-Length"), "content-length"));
    cr_assert(sg_str_caseeq_lit(SG_STR("content-length"), "content-length"));
    cr_assert_not(sg_str_caseeq_lit(SG_STR("content-lengtH2"), "content-length"));
    cr_assert_not(sg_str_caseeq_lit(SG_STR("content@length"), "content`length"), "0x40 and 0x60 are not letters");
    cr_assert_not(sg_str_caseeq_lit(SG_STR("x-[a]"), "x-{a}"), "[ and { differ in the case bit, not in case");
    cr_assert(sg_str_caseeq_lit(SG_STR(""), ""));
}
