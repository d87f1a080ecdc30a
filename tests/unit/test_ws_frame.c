/* WebSocket framing (RFC 6455): the examples of section 5.7, fragmentation,
 * 16/64-bit lengths, and every way a peer can break the protocol, with the
 * close code a conforming endpoint must answer. */
#include <criterion/criterion.h>
#include <string.h>
#include "http/ws_frame.h"

/* What a connection would make of a byte stream fed `piece` bytes at a
 * time (0: all at once), keeping the unconsumed bytes as a real caller
 * does. Messages are reassembled; control frames are recorded. */
typedef struct outcome {
    char msgs[8][512];           /* complete messages, in order */
    size_t msg_len[8];
    uint8_t msg_op[8];
    int nmsg;
    uint8_t ctl_op[8];
    char ctl[8][126];
    size_t ctl_len[8];
    uint16_t ctl_code[8];
    int nctl;
    uint16_t error;              /* close code of an ERROR, else 0 */
    size_t carry_max;            /* most bytes ever left unconsumed */
} outcome;

static void on_event(outcome *o, const sg_ws_event *ev, char *cur, size_t *cur_len)
{
    if (ev->kind == SG_WS_EV_DATA) {
        if (ev->first)
            *cur_len = 0;
        cr_assert_leq(*cur_len + ev->len, 512);
        memcpy(cur + *cur_len, ev->data, ev->len);
        *cur_len += ev->len;
        if (ev->fin && o->nmsg < 8) {
            memcpy(o->msgs[o->nmsg], cur, *cur_len);
            o->msg_len[o->nmsg] = *cur_len;
            o->msg_op[o->nmsg++] = ev->opcode;
        }
    } else if (ev->kind == SG_WS_EV_CONTROL && o->nctl < 8) {
        memcpy(o->ctl[o->nctl], ev->data, ev->len);
        o->ctl_len[o->nctl] = ev->len;
        o->ctl_code[o->nctl] = ev->close_code;
        o->ctl_op[o->nctl++] = ev->opcode;
    } else if (ev->kind == SG_WS_EV_ERROR) {
        o->error = ev->close_code;
    }
}

static outcome run(bool server, uint64_t max, const uint8_t *in, size_t n, size_t piece)
{
    static outcome o;
    memset(&o, 0, sizeof o);
    sg_ws_reader r;
    sg_ws_reader_init(&r, server, max);
    uint8_t buf[SG_WS_CARRY_MAX + 70000];
    size_t have = 0, pos = 0, cur_len = 0;
    char cur[512];
    while (pos < n && !o.error) {
        size_t take = piece && piece < n - pos ? piece : n - pos;
        memcpy(buf + have, in + pos, take);
        pos += take;
        have += take;
        size_t off = 0;
        for (;;) {
            sg_ws_event ev;
            size_t used = sg_ws_read(&r, buf + off, have - off, &ev);
            off += used;
            on_event(&o, &ev, cur, &cur_len);
            if (ev.kind == SG_WS_EV_NEED || ev.kind == SG_WS_EV_ERROR)
                break;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (have > o.carry_max)
            o.carry_max = have;
    }
    return o;
}

static const uint8_t hello_unmasked[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
static const uint8_t hello_masked[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
                                        0x4d, 0x51, 0x58 };

Test(ws_frame, rfc_single_frame_unmasked_text)
{
    outcome o = run(false, 0, hello_unmasked, sizeof hello_unmasked, 0);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nmsg, 1);
    cr_assert_eq(o.msg_op[0], SG_WS_OP_TEXT);
    cr_assert_eq(o.msg_len[0], 5);
    cr_assert_arr_eq(o.msgs[0], "Hello", 5);
}

Test(ws_frame, rfc_single_frame_masked_text)
{
    for (size_t piece = 0; piece <= 3; piece++) {
        outcome o = run(true, 0, hello_masked, sizeof hello_masked, piece);
        cr_assert_eq(o.error, 0, "piece %zu", piece);
        cr_assert_eq(o.nmsg, 1);
        cr_assert_arr_eq(o.msgs[0], "Hello", 5, "piece %zu", piece);
    }
}

Test(ws_frame, rfc_fragmented_unmasked_text)
{
    static const uint8_t in[] = { 0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f };
    outcome o = run(false, 0, in, sizeof in, 0);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nmsg, 1);
    cr_assert_eq(o.msg_op[0], SG_WS_OP_TEXT);
    cr_assert_arr_eq(o.msgs[0], "Hello", 5);
}

Test(ws_frame, rfc_ping_and_masked_pong)
{
    static const uint8_t ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    outcome o = run(false, 0, ping, sizeof ping, 0);
    cr_assert_eq(o.nctl, 1);
    cr_assert_eq(o.ctl_op[0], SG_WS_OP_PING);
    cr_assert_arr_eq(o.ctl[0], "Hello", 5);
    static const uint8_t pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
                                    0x4d, 0x51, 0x58 };
    o = run(true, 0, pong, sizeof pong, 1);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nctl, 1);
    cr_assert_eq(o.ctl_op[0], SG_WS_OP_PONG);
    cr_assert_arr_eq(o.ctl[0], "Hello", 5);
}

/* A control frame may come between the fragments of a message (5.4). */
Test(ws_frame, ping_between_fragments)
{
    static const uint8_t in[] = { 0x01, 0x03, 'H', 'e', 'l', 0x89, 0x01, '!',
                                  0x80, 0x02, 'l', 'o' };
    outcome o = run(false, 0, in, sizeof in, 1);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nctl, 1);
    cr_assert_eq(o.ctl_op[0], SG_WS_OP_PING);
    cr_assert_eq(o.nmsg, 1);
    cr_assert_arr_eq(o.msgs[0], "Hello", 5);
}

/* 256 bytes use the 16-bit length, 65536 the 64-bit one (RFC 5.7). */
Test(ws_frame, extended_lengths)
{
    static uint8_t in[10 + 65536];
    size_t hl = sg_ws_write_head(in, true, SG_WS_OP_BINARY, 256, NULL);
    cr_assert_eq(hl, 4);
    cr_assert_eq(in[0], 0x82);
    cr_assert_eq(in[1], 0x7E);
    cr_assert_eq(in[2], 0x01);
    cr_assert_eq(in[3], 0x00);
    hl = sg_ws_write_head(in, true, SG_WS_OP_BINARY, 65536, NULL);
    static const uint8_t want[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0 };
    cr_assert_eq(hl, 10);
    cr_assert_arr_eq(in, want, 10);
    cr_assert_eq(sg_ws_write_head(in, true, SG_WS_OP_BINARY, 65535, NULL), 4);
    cr_assert_eq(sg_ws_write_head(in, true, SG_WS_OP_BINARY, 125, NULL), 2);

    sg_ws_write_head(in, true, SG_WS_OP_BINARY, 65536, NULL);
    for (size_t i = 0; i < 65536; i++)
        in[10 + i] = (uint8_t)i;
    sg_ws_reader r;
    sg_ws_reader_init(&r, false, 0);
    sg_ws_event ev;
    size_t used = sg_ws_read(&r, in, sizeof in, &ev);
    cr_assert_eq(ev.kind, SG_WS_EV_DATA);
    cr_assert_eq(used, sizeof in);
    cr_assert_eq(ev.len, 65536);
    cr_assert(ev.first && ev.fin);
    cr_assert_eq(ev.data[300], (uint8_t)300);
}

Test(ws_frame, head_round_trip_masked)
{
    static const uint8_t mask[4] = { 1, 2, 3, 4 };
    uint64_t lens[] = { 0, 1, 125, 126, 65535, 65536, (uint64_t)1 << 40 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t b[SG_WS_MAX_HEAD];
        size_t n = sg_ws_write_head(b, i % 2 == 0, SG_WS_OP_TEXT, lens[i], mask);
        sg_ws_frame_head h, part;
        cr_assert_eq(sg_ws_parse_head(b, n, &h), (int)n);
        cr_assert_eq(sg_ws_parse_head(b, n - 1, &part), 0, "a truncated head needs more");
        cr_assert_eq(h.len, lens[i]);
        cr_assert_eq(h.fin, i % 2 == 0);
        cr_assert(h.masked);
        cr_assert_arr_eq(h.mask, mask, 4);
    }
}

Test(ws_frame, sixty_four_bit_length_top_bit_is_an_error)
{
    static const uint8_t in[] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4 };
    outcome o = run(true, 0, in, sizeof in, 0);
    cr_assert_eq(o.error, SG_WS_CLOSE_PROTOCOL);
}

Test(ws_frame, unmask_any_offset_and_length)
{
    static const uint8_t mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
    uint8_t a[100], b[100];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (uint8_t)(i * 7);
    sg_ws_unmask(a, sizeof a, mask, 0);
    /* the same bytes unmasked in three uneven pieces */
    sg_ws_unmask(b, 3, mask, 0);
    sg_ws_unmask(b + 3, 50, mask, 3);
    sg_ws_unmask(b + 53, 47, mask, 53);
    cr_assert_arr_eq(a, b, sizeof a);
    for (size_t i = 0; i < sizeof a; i++)
        cr_assert_eq(a[i], (uint8_t)((i * 7) ^ mask[i % 4]));
}

Test(ws_frame, bad_opcode_is_a_protocol_error)
{
    static const uint8_t in[] = { 0x83, 0x80, 1, 2, 3, 4 };
    cr_assert_eq(run(true, 0, in, sizeof in, 0).error, SG_WS_CLOSE_PROTOCOL);
    static const uint8_t in2[] = { 0x8B, 0x80, 1, 2, 3, 4 };
    cr_assert_eq(run(true, 0, in2, sizeof in2, 0).error, SG_WS_CLOSE_PROTOCOL);
}

Test(ws_frame, unmasked_client_frame_is_rejected)
{
    cr_assert_eq(run(true, 0, hello_unmasked, sizeof hello_unmasked, 0).error,
                 SG_WS_CLOSE_PROTOCOL);
    /* and a client must not accept a masked frame from a server */
    cr_assert_eq(run(false, 0, hello_masked, sizeof hello_masked, 0).error,
                 SG_WS_CLOSE_PROTOCOL);
}

Test(ws_frame, control_frame_over_125_bytes_is_rejected)
{
    uint8_t in[4 + 4 + 126] = { 0x89, 0xFE, 0x00, 126, 1, 2, 3, 4 };
    cr_assert_eq(run(true, 0, in, sizeof in, 0).error, SG_WS_CLOSE_PROTOCOL);
}

Test(ws_frame, fragmented_control_frame_is_rejected)
{
    static const uint8_t in[] = { 0x09, 0x80, 1, 2, 3, 4 };
    cr_assert_eq(run(true, 0, in, sizeof in, 0).error, SG_WS_CLOSE_PROTOCOL);
}

Test(ws_frame, reserved_bits_are_rejected)
{
    static const uint8_t in[] = { 0xC1, 0x80, 1, 2, 3, 4 };   /* RSV1 */
    cr_assert_eq(run(true, 0, in, sizeof in, 0).error, SG_WS_CLOSE_PROTOCOL);
}

Test(ws_frame, fragmentation_rules)
{
    static const uint8_t lone_cont[] = { 0x80, 0x01, 'x' };
    cr_assert_eq(run(false, 0, lone_cont, sizeof lone_cont, 0).error, SG_WS_CLOSE_PROTOCOL);
    static const uint8_t nested[] = { 0x01, 0x01, 'a', 0x81, 0x01, 'b' };
    cr_assert_eq(run(false, 0, nested, sizeof nested, 0).error, SG_WS_CLOSE_PROTOCOL);
    /* an empty final frame ends a message; an empty message is a message */
    static const uint8_t empty_end[] = { 0x02, 0x02, 'a', 'b', 0x80, 0x00, 0x81, 0x00 };
    outcome o = run(false, 0, empty_end, sizeof empty_end, 0);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nmsg, 2);
    cr_assert_eq(o.msg_op[0], SG_WS_OP_BINARY);
    cr_assert_eq(o.msg_len[0], 2);
    cr_assert_eq(o.msg_op[1], SG_WS_OP_TEXT);
    cr_assert_eq(o.msg_len[1], 0);
}

Test(ws_frame, close_frames)
{
    static const uint8_t normal[] = { 0x88, 0x04, 0x03, 0xE8, 'o', 'k' };
    outcome o = run(false, 0, normal, sizeof normal, 1);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nctl, 1);
    cr_assert_eq(o.ctl_op[0], SG_WS_OP_CLOSE);
    cr_assert_eq(o.ctl_code[0], 1000);
    cr_assert_eq(o.ctl_len[0], 4);
    static const uint8_t empty[] = { 0x88, 0x00 };
    o = run(false, 0, empty, sizeof empty, 0);
    cr_assert_eq(o.ctl_code[0], SG_WS_CLOSE_NO_STATUS);
    static const uint8_t one_byte[] = { 0x88, 0x01, 0x03 };
    cr_assert_eq(run(false, 0, one_byte, sizeof one_byte, 0).error, SG_WS_CLOSE_PROTOCOL);
    static const uint8_t reserved[] = { 0x88, 0x02, 0x03, 0xED };   /* 1005 */
    cr_assert_eq(run(false, 0, reserved, sizeof reserved, 0).error, SG_WS_CLOSE_PROTOCOL);
    static const uint8_t bad_reason[] = { 0x88, 0x03, 0x03, 0xE8, 0xFF };
    cr_assert_eq(run(false, 0, bad_reason, sizeof bad_reason, 0).error,
                 SG_WS_CLOSE_INVALID_DATA);
}

Test(ws_frame, nothing_is_read_after_close)
{
    static const uint8_t in[] = { 0x88, 0x00, 0x81, 0x01, 'x' };
    outcome o = run(false, 0, in, sizeof in, 0);
    cr_assert_eq(o.nctl, 1);
    cr_assert_eq(o.nmsg, 0);
}

Test(ws_frame, close_codes)
{
    unsigned ok[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999 };
    unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535 };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_assert(sg_ws_close_code_ok(ok[i]), "%u", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(!sg_ws_close_code_ok(bad[i]), "%u", bad[i]);
}

Test(ws_frame, text_must_be_utf8_even_across_fragments)
{
    /* "€" (E2 82 AC) split over two frames, fed a byte at a time */
    static const uint8_t split[] = { 0x01, 0x02, 'a', 0xE2, 0x80, 0x02, 0x82, 0xAC };
    outcome o = run(false, 0, split, sizeof split, 1);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nmsg, 1);
    cr_assert_arr_eq(o.msgs[0], "a\xE2\x82\xAC", 4);
    /* the message ends in the middle of a character */
    static const uint8_t cut[] = { 0x81, 0x02, 'a', 0xE2 };
    cr_assert_eq(run(false, 0, cut, sizeof cut, 0).error, SG_WS_CLOSE_INVALID_DATA);
    /* a surrogate (ED A0 80) is not UTF-8; binary messages are not checked */
    static const uint8_t sur[] = { 0x81, 0x03, 0xED, 0xA0, 0x80 };
    cr_assert_eq(run(false, 0, sur, sizeof sur, 0).error, SG_WS_CLOSE_INVALID_DATA);
    static const uint8_t bin[] = { 0x82, 0x03, 0xED, 0xA0, 0x80 };
    cr_assert_eq(run(false, 0, bin, sizeof bin, 0).error, 0);
}

Test(ws_frame, utf8_validator)
{
    struct { const char *s; bool ok; } cases[] = {
        { "plain ascii", true },
        { "\xC3\xA9t\xC3\xA9", true },                 /* été */
        { "\xF0\x9F\x98\x80", true },                  /* U+1F600 */
        { "\xF4\x8F\xBF\xBF", true },                  /* U+10FFFF */
        { "\xC0\x80", false },                         /* overlong NUL */
        { "\xE0\x80\xAF", false },                     /* overlong '/' */
        { "\xF4\x90\x80\x80", false },                 /* above U+10FFFF */
        { "\x80", false },                             /* lone continuation */
        { "\xFE", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sg_ws_utf8 u = { 0 };
        bool ok = sg_ws_utf8_feed(&u, (const uint8_t *)cases[i].s, strlen(cases[i].s)) &&
                  sg_ws_utf8_complete(&u);
        cr_assert_eq(ok, cases[i].ok, "case %zu", i);
    }
}

Test(ws_frame, message_size_limit_counts_all_fragments)
{
    static const uint8_t in[] = { 0x02, 0x03, 'a', 'b', 'c', 0x80, 0x03, 'd', 'e', 'f' };
    cr_assert_eq(run(false, 6, in, sizeof in, 0).error, 0);
    cr_assert_eq(run(false, 5, in, sizeof in, 0).error, SG_WS_CLOSE_TOO_BIG);
}

/* The caller never has to keep more than a partial control frame. */
Test(ws_frame, carry_stays_small)
{
    uint8_t in[200];
    size_t n = 0;
    static const uint8_t mask[4] = { 9, 8, 7, 6 };
    n += sg_ws_write_head(in + n, true, SG_WS_OP_PING, 125, mask);
    memset(in + n, 'p', 125);
    n += 125;
    n += sg_ws_write_head(in + n, true, SG_WS_OP_BINARY, 40, mask);
    memset(in + n, 'b', 40);
    n += 40;
    outcome o = run(true, 0, in, n, 1);
    cr_assert_eq(o.error, 0);
    cr_assert_eq(o.nctl, 1);
    cr_assert_eq(o.ctl_len[0], 125);
    cr_assert_eq(o.nmsg, 1);
    cr_assert_eq(o.msg_len[0], 40);
    cr_assert_leq(o.carry_max, SG_WS_CARRY_MAX);
}
