/* HTTP/2 frame headers seen in the client's byte stream, and what is
 * remembered of closed streams (RFC 9113 5.1, 5.1.1). */
#include <criterion/criterion.h>
#include <string.h>

#include "http/h2_scan.h"

static size_t frame(uint8_t *p, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(sid >> 24);
    p[6] = (uint8_t)(sid >> 16);
    p[7] = (uint8_t)(sid >> 8);
    p[8] = (uint8_t)sid;
    memset(p + 9, 0xab, len);
    return 9 + len;
}

static size_t priority(uint8_t *p, uint32_t sid, uint32_t dep)
{
    size_t n = frame(p, 5, SG_H2_T_PRIORITY, 0, sid);
    p[9] = (uint8_t)(dep >> 24) | 0x80;   /* exclusive bit: not part of the id */
    p[10] = (uint8_t)(dep >> 16);
    p[11] = (uint8_t)(dep >> 8);
    p[12] = (uint8_t)dep;
    return n;
}

/* Feeds `buf` in pieces of `step` bytes; collects frames and where each began. */
static int scan_all(const uint8_t *buf, size_t n, size_t skip, size_t step, sg_h2_frame *out,
                    size_t *starts)
{
    sg_h2_scan s;
    sg_h2_scan_init(&s, skip);
    int count = 0;
    size_t base = 0;
    while (base < n) {
        size_t len = n - base < step ? n - base : step, off = 0;
        while (off < len) {
            sg_h2_frame f;
            size_t start;
            bool found;
            size_t k = sg_h2_scan_next(&s, buf + base + off, len - off, &f, &start, &found);
            if (found) {
                starts[count] = base + off + start;   /* exact when the frame began in this piece */
                out[count++] = f;
            }
            off += k;
        }
        base += len;
    }
    return count;
}

Test(h2_scan, frames_in_one_piece_and_byte_by_byte)
{
    uint8_t buf[256];
    size_t n = 0, at[4];
    memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    at[0] = n;
    n += frame(buf + n, 6, 0x4, 0, 0);                       /* SETTINGS */
    at[1] = n;
    n += frame(buf + n, 20, SG_H2_T_HEADERS, 0x5, 1);
    at[2] = n;
    n += priority(buf + n, 3, 3);
    at[3] = n;
    n += frame(buf + n, 4, SG_H2_T_DATA, SG_H2_F_END_STREAM, 1);
    for (size_t step = 1; step <= n; step = step == 1 ? 7 : step * 2) {
        sg_h2_frame f[8];
        size_t starts[8];
        int count = scan_all(buf, n, 24, step, f, starts);
        cr_assert_eq(count, 4, "step %zu", step);
        cr_assert_eq(f[0].type, 0x4);
        cr_assert_eq(f[1].type, SG_H2_T_HEADERS);
        cr_assert_eq(f[1].stream_id, 1);
        cr_assert_eq(f[1].flags, 0x5);
        cr_assert_eq(f[1].length, 20);
        cr_assert_eq(f[1].dep, -1);
        cr_assert_eq(f[2].type, SG_H2_T_PRIORITY);
        cr_assert_eq(f[2].stream_id, 3);
        cr_assert_eq(f[2].dep, 3, "the dependency, without the exclusive bit");
        cr_assert_eq(f[3].type, SG_H2_T_DATA);
        cr_assert_eq(f[3].length, 4);
        if (step == n)
            for (int i = 0; i < 4; i++) cr_assert_eq(starts[i], at[i], "frame %d starts at %zu", i, at[i]);
    }
}

Test(h2_scan, start_is_zero_when_the_header_began_earlier)
{
    uint8_t buf[64];
    size_t n = frame(buf, 3, SG_H2_T_DATA, 0, 1);
    sg_h2_scan s;
    sg_h2_scan_init(&s, 0);
    sg_h2_frame f;
    size_t start;
    bool found;
    cr_assert_eq(sg_h2_scan_next(&s, buf, 4, &f, &start, &found), 4);
    cr_assert_not(found);
    cr_assert_eq(start, 0);
    cr_assert_eq(sg_h2_scan_next(&s, buf + 4, n - 4, &f, &start, &found), 5, "stops after the header");
    cr_assert(found);
    cr_assert_eq(start, 0);
    cr_assert_eq(sg_h2_scan_next(&s, buf + 9, 3, &f, &start, &found), 3, "the payload is skipped");
    cr_assert_not(found);
}

Test(h2_closed, streams_up_to_the_last_one_opened_are_closed)
{
    sg_h2_closed m;
    sg_h2_closed_init(&m, 8);
    cr_assert_eq(sg_h2_closed_frame(&m, 1, true), SG_H2_CLOSED_OK, "idle: nghttp2's");
    sg_h2_closed_opened(&m, 1);
    sg_h2_closed_opened(&m, 3);
    cr_assert_eq(sg_h2_closed_frame(&m, 1, false), SG_H2_CLOSED_STREAM);
    cr_assert_eq(sg_h2_closed_frame(&m, 3, true), SG_H2_CLOSED_STREAM);
    cr_assert_eq(sg_h2_closed_frame(&m, 5, true), SG_H2_CLOSED_OK, "a new stream");
    cr_assert_eq(sg_h2_closed_frame(&m, 2, false), SG_H2_CLOSED_OK, "even: not a client stream");
    sg_h2_closed_free(&m);
}

Test(h2_closed, a_new_stream_below_a_later_one_is_a_bad_id)
{
    sg_h2_closed m;
    sg_h2_closed_init(&m, 8);
    sg_h2_closed_opened(&m, 5);     /* 1 and 3 skipped */
    cr_assert_eq(sg_h2_closed_frame(&m, 3, true), SG_H2_CLOSED_BAD_ID);
    cr_assert_eq(sg_h2_closed_frame(&m, 1, true), SG_H2_CLOSED_BAD_ID);
    cr_assert_eq(sg_h2_closed_frame(&m, 3, false), SG_H2_CLOSED_STREAM, "DATA there: a closed stream");
    cr_assert_eq(sg_h2_closed_frame(&m, 5, true), SG_H2_CLOSED_STREAM, "5 was opened");
    /* only the last few skipped ranges are kept: older ones read as closed */
    int32_t id = 5;
    for (int i = 0; i < SG_H2_SKIP_RANGES; i++) {
        id += 4;
        sg_h2_closed_opened(&m, id);
    }
    cr_assert_eq(sg_h2_closed_frame(&m, id - 2, true), SG_H2_CLOSED_BAD_ID);
    cr_assert_eq(sg_h2_closed_frame(&m, 3, true), SG_H2_CLOSED_STREAM);
    sg_h2_closed_free(&m);
}

Test(h2_closed, frames_crossing_our_reset_are_ignored_until_the_client_is_done)
{
    sg_h2_closed m;
    sg_h2_closed_init(&m, 4);
    for (int32_t id = 1; id <= 11; id += 2) sg_h2_closed_opened(&m, id);
    cr_assert_null(m.reset, "nothing is allocated before the first reset");
    sg_h2_closed_reset(&m, 3);
    sg_h2_closed_reset(&m, 3);
    cr_assert_eq(sg_h2_closed_frame(&m, 3, false), SG_H2_CLOSED_OK);
    cr_assert_eq(sg_h2_closed_frame(&m, 3, true), SG_H2_CLOSED_OK, "trailers in flight too");
    sg_h2_closed_peer_done(&m, 3);
    cr_assert_eq(sg_h2_closed_frame(&m, 3, false), SG_H2_CLOSED_STREAM);
    /* bounded: the oldest of more than `cap` resets is forgotten */
    for (int32_t id = 1; id <= 9; id += 2) sg_h2_closed_reset(&m, id);
    cr_assert_eq(sg_h2_closed_frame(&m, 1, false), SG_H2_CLOSED_STREAM);
    for (int32_t id = 3; id <= 9; id += 2) cr_assert_eq(sg_h2_closed_frame(&m, id, false), SG_H2_CLOSED_OK);
    sg_h2_closed_free(&m);
}
