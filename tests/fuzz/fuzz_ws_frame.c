/* Fuzzes the WebSocket frame reader (src/http/ws_frame.c), which reads
 * bytes straight from the network in sgback (and later the proxy).
 *
 * Input: byte 0 picks the role (bit 0: server) and the message size limit
 * (bits 1-3), bytes 1-2 seed the piece sizes, the rest is the stream.
 * Checked: the stream read in random pieces, keeping unconsumed bytes the
 * way a connection does, gives exactly the same messages, control frames
 * and error as reading it at once; no more than SG_WS_CARRY_MAX bytes are
 * ever left unconsumed; every payload lies inside the buffer; control
 * payloads are at most 125 bytes; text messages handed out are UTF-8. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "http/ws_frame.h"

typedef struct outcome {
    sg_strbuf log;       /* one record per message / control frame / error */
    sg_strbuf msg;       /* the message being reassembled */
    uint8_t msg_op;
} outcome;

static void record(outcome *o, const sg_ws_event *ev, const uint8_t *buf, size_t n)
{
    if (ev->kind == SG_WS_EV_NEED)
        return;
    if (ev->kind == SG_WS_EV_ERROR) {
        sg_strbuf_appendf(&o->log, "E%u;", ev->close_code);
        return;
    }
    assert(ev->data >= buf && ev->data + ev->len <= buf + n);
    if (ev->kind == SG_WS_EV_CONTROL) {
        assert(ev->len <= SG_WS_MAX_CONTROL);
        sg_strbuf_appendf(&o->log, "C%u,%u,%zu:", ev->opcode, ev->close_code, ev->len);
        sg_strbuf_append(&o->log, (const char *)ev->data, ev->len);
        return;
    }
    assert(ev->opcode == SG_WS_OP_TEXT || ev->opcode == SG_WS_OP_BINARY);
    if (ev->first) {
        o->msg.n = 0;
        o->msg_op = ev->opcode;
    }
    assert(ev->opcode == o->msg_op);
    sg_strbuf_append(&o->msg, (const char *)ev->data, ev->len);
    if (!ev->fin)
        return;
    if (ev->opcode == SG_WS_OP_TEXT) {
        sg_ws_utf8 u = { 0 };
        assert(sg_ws_utf8_feed(&u, (const uint8_t *)o->msg.p, o->msg.n));
        assert(sg_ws_utf8_complete(&u));
    }
    sg_strbuf_appendf(&o->log, "M%u,%zu:", ev->opcode, o->msg.n);
    sg_strbuf_append(&o->log, o->msg.p, o->msg.n);
}

/* Reads everything in `have` (an exact-size heap copy, so ASan sees any
 * overread); returns the bytes consumed. */
static size_t drain(sg_ws_reader *r, uint8_t *buf, size_t have, outcome *o, bool *stop)
{
    size_t off = 0;
    for (;;) {
        sg_ws_event ev;
        size_t used = sg_ws_read(r, buf + off, have - off, &ev);
        assert(used <= have - off);
        record(o, &ev, buf + off, have - off);
        off += used;
        /* nothing is read after an error or a close frame, as a connection would */
        bool close = ev.kind == SG_WS_EV_CONTROL && ev.opcode == SG_WS_OP_CLOSE;
        if (ev.kind == SG_WS_EV_ERROR || close)
            *stop = true;
        if (ev.kind == SG_WS_EV_NEED || *stop)
            return off;
        assert(used > 0 || ev.kind == SG_WS_EV_DATA);
    }
}

static void run(const uint8_t *in, size_t len, bool server, uint64_t max, uint32_t seed,
                outcome *o)
{
    sg_ws_reader r;
    sg_ws_reader_init(&r, server, max);
    uint8_t carry[SG_WS_CARRY_MAX];
    size_t ncarry = 0, pos = 0;
    bool stop = false;
    while (pos < len && !stop) {
        size_t plen = len - pos;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t want = (seed >> 16) % 20;
            if (want < plen)
                plen = want;
        }
        size_t have = ncarry + plen;
        uint8_t *buf = malloc(have ? have : 1);
        memcpy(buf, carry, ncarry);
        memcpy(buf + ncarry, in + pos, plen);
        pos += plen;
        size_t used = drain(&r, buf, have, o, &stop);
        ncarry = have - used;
        assert(stop || ncarry <= SG_WS_CARRY_MAX);
        if (!stop)
            memcpy(carry, buf + used, ncarry);
        free(buf);
    }
}

/* Frames written by sg_ws_write_head parse back to what was written. */
static void check_writer(const uint8_t *in, size_t len)
{
    if (len < 9)
        return;
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n = n << 8 | in[i];
    n >>= in[8] & 63;
    n &= ~((uint64_t)1 << 63);
    uint8_t head[SG_WS_MAX_HEAD];
    bool fin = in[8] & 64, masked = in[8] & 128;
    size_t hl = sg_ws_write_head(head, fin, in[0] & 15, n, masked ? in : NULL);
    sg_ws_frame_head h;
    assert(sg_ws_parse_head(head, hl, &h) == (int)hl);
    assert(h.len == n && h.fin == fin && h.masked == masked && h.opcode == (in[0] & 15));
    assert(sg_ws_parse_head(head, hl - 1, &h) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    bool server = data[0] & 1;
    static const uint64_t limits[8] = { 0, 1, 5, 16, 125, 126, 1000, 65536 };
    uint64_t max = limits[(data[0] >> 1) & 7];
    uint32_t seed = (uint32_t)data[1] << 8 | data[2];
    const uint8_t *in = data + 3;
    size_t len = size - 3;

    outcome whole = { 0 }, pieces = { 0 };
    run(in, len, server, max, 0, &whole);
    run(in, len, server, max, seed | 1, &pieces);
    assert(whole.log.n == pieces.log.n);
    assert(whole.log.n == 0 || memcmp(whole.log.p, pieces.log.p, whole.log.n) == 0);
    sg_strbuf_free(&whole.log);
    sg_strbuf_free(&whole.msg);
    sg_strbuf_free(&pieces.log);
    sg_strbuf_free(&pieces.msg);
    check_writer(data, size);
    return 0;
}
