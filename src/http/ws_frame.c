/* WebSocket framing: see ws_frame.h. */
#include <string.h>
#include "http/ws_frame.h"

int sg_ws_parse_head(const uint8_t *p, size_t n, sg_ws_frame_head *h)
{
    if (n < 2)
        return 0;
    h->fin = (p[0] & 0x80) != 0;
    h->rsv = (uint8_t)((p[0] >> 4) & 0x7);
    h->opcode = p[0] & 0x0F;
    h->masked = (p[1] & 0x80) != 0;
    uint64_t len = p[1] & 0x7F;
    size_t pos = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        pos = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        if (len >> 63)
            return -1;
        pos = 10;
    }
    memset(h->mask, 0, sizeof h->mask);
    if (h->masked) {
        if (n < pos + 4)
            return 0;
        memcpy(h->mask, p + pos, 4);
        pos += 4;
    }
    h->len = len;
    h->head_len = pos;
    return (int)pos;
}

/* Eight bytes at a time: echoing megabytes through a backend is mostly
 * this loop. The 8-byte mask word is the 4-byte mask rotated to `offset`. */
void sg_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    uint8_t m[8];
    for (int i = 0; i < 8; i++)
        m[i] = mask[(offset + (uint64_t)i) & 3];
    uint64_t w;
    memcpy(&w, m, sizeof w);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, sizeof x);
        x ^= w;
        memcpy(p + i, &x, sizeof x);
    }
    for (; i < n; i++)
        p[i] ^= m[i & 7];
}

size_t sg_ws_write_head(uint8_t out[SG_WS_MAX_HEAD], bool fin, uint8_t opcode,
                        uint64_t len, const uint8_t *mask)
{
    size_t pos = 2;
    uint8_t mbit = mask ? 0x80 : 0;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)(mbit | len);
    } else if (len <= 0xFFFF) {
        out[1] = mbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        pos = 4;
    } else {
        out[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        pos = 10;
    }
    if (mask) {
        memcpy(out + pos, mask, 4);
        pos += 4;
    }
    return pos;
}

bool sg_ws_close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* Starts a sequence: how many continuation bytes follow and the range of
 * the first one (the narrower ranges exclude overlongs and surrogates). */
static bool utf8_lead(sg_ws_utf8 *u, uint8_t c)
{
    u->lo = 0x80;
    u->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        u->need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        u->need = 2;
        if (c == 0xE0)
            u->lo = 0xA0;
        else if (c == 0xED)
            u->hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        u->need = 3;
        if (c == 0xF0)
            u->lo = 0x90;
        else if (c == 0xF4)
            u->hi = 0x8F;
    } else {
        return false;
    }
    return true;
}

bool sg_ws_utf8_feed(sg_ws_utf8 *u, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (u->need > 0) {
            if (c < u->lo || c > u->hi)
                return false;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
        } else if (c >= 0x80 && !utf8_lead(u, c)) {
            return false;
        }
    }
    return true;
}

void sg_ws_reader_init(sg_ws_reader *r, bool server, uint64_t max_message)
{
    memset(r, 0, sizeof *r);
    r->server = server;
    r->max_message = max_message;
}

static size_t fail(sg_ws_reader *r, sg_ws_event *ev, uint16_t code, const char *why)
{
    r->failed = true;
    ev->kind = SG_WS_EV_ERROR;
    ev->close_code = code;
    ev->error = why;
    return 0;
}

/* What is wrong with a frame head in the current state, or NULL. */
static const char *head_error(const sg_ws_reader *r, const sg_ws_frame_head *h)
{
    if (h->rsv)
        return "reserved bits set without an extension";
    if ((h->opcode > SG_WS_OP_BINARY && h->opcode < SG_WS_OP_CLOSE) || h->opcode > SG_WS_OP_PONG)
        return "unknown opcode";
    if (r->server && !h->masked)
        return "unmasked frame from a client";
    if (!r->server && h->masked)
        return "masked frame from a server";
    if (h->opcode >= SG_WS_OP_CLOSE) {
        if (!h->fin)
            return "fragmented control frame";
        if (h->len > SG_WS_MAX_CONTROL)
            return "control frame longer than 125 bytes";
    } else if (h->opcode == SG_WS_OP_CONT) {
        if (!r->msg_op)
            return "continuation frame without a message";
    } else if (r->msg_op) {
        return "new message inside a fragmented one";
    }
    return NULL;
}

/* A whole control frame, or nothing until all of it is there. */
static size_t control(sg_ws_reader *r, uint8_t *buf, size_t n, const sg_ws_frame_head *h,
                      sg_ws_event *ev)
{
    size_t len = (size_t)h->len, total = h->head_len + len;
    if (n < total)
        return 0;
    uint8_t *p = buf + h->head_len;
    if (h->masked)
        sg_ws_unmask(p, len, h->mask, 0);
    if (h->opcode == SG_WS_OP_CLOSE) {
        ev->close_code = SG_WS_CLOSE_NO_STATUS;
        if (len == 1)
            return fail(r, ev, SG_WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
        if (len >= 2) {
            ev->close_code = (uint16_t)(p[0] << 8 | p[1]);
            if (!sg_ws_close_code_ok(ev->close_code))
                return fail(r, ev, SG_WS_CLOSE_PROTOCOL, "invalid close code");
            sg_ws_utf8 u = { 0 };
            if (!sg_ws_utf8_feed(&u, p + 2, len - 2) || !sg_ws_utf8_complete(&u))
                return fail(r, ev, SG_WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
        }
        r->closed = true;
    }
    ev->kind = SG_WS_EV_CONTROL;
    ev->opcode = h->opcode;
    ev->data = p;
    ev->len = len;
    return total;
}

/* Hands out the payload bytes of the current data frame found at buf+pos. */
static size_t payload(sg_ws_reader *r, uint8_t *buf, size_t n, size_t pos, sg_ws_event *ev)
{
    uint64_t left = r->f.len - r->done;
    size_t avail = n - pos;
    size_t take = left < avail ? (size_t)left : avail;
    if (take == 0 && left > 0)
        return pos;   /* SG_WS_EV_NEED */
    uint8_t *p = buf + pos;
    if (r->f.masked)
        sg_ws_unmask(p, take, r->f.mask, r->done);
    r->done += take;
    bool frame_end = r->done == r->f.len, fin = frame_end && r->f.fin;
    if (r->msg_op == SG_WS_OP_TEXT &&
        (!sg_ws_utf8_feed(&r->utf8, p, take) || (fin && !sg_ws_utf8_complete(&r->utf8))))
        return fail(r, ev, SG_WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
    ev->kind = SG_WS_EV_DATA;
    ev->opcode = r->msg_op;
    ev->first = !r->msg_started;
    ev->fin = fin;
    ev->data = p;
    ev->len = take;
    r->msg_started = true;
    if (frame_end) {
        r->in_frame = false;
        if (fin)
            r->msg_op = 0;
    }
    return pos + take;
}

size_t sg_ws_read(sg_ws_reader *r, uint8_t *buf, size_t n, sg_ws_event *ev)
{
    memset(ev, 0, sizeof *ev);
    if (r->failed || r->closed)
        return 0;
    if (r->in_frame)
        return payload(r, buf, n, 0, ev);
    sg_ws_frame_head h;
    int hl = sg_ws_parse_head(buf, n, &h);
    if (hl == 0)
        return 0;
    if (hl < 0)
        return fail(r, ev, SG_WS_CLOSE_PROTOCOL, "64-bit length with the top bit set");
    const char *why = head_error(r, &h);
    if (why)
        return fail(r, ev, SG_WS_CLOSE_PROTOCOL, why);
    if (h.opcode >= SG_WS_OP_CLOSE)
        return control(r, buf, n, &h, ev);
    if (h.opcode != SG_WS_OP_CONT) {
        r->msg_op = h.opcode;
        r->msg_started = false;
        r->msg_len = 0;
        memset(&r->utf8, 0, sizeof r->utf8);
    }
    if (r->max_message && h.len > r->max_message - r->msg_len)
        return fail(r, ev, SG_WS_CLOSE_TOO_BIG, "message larger than the limit");
    r->msg_len += h.len;
    r->f = h;
    r->in_frame = true;
    r->done = 0;
    return payload(r, buf, n, h.head_len, ev);
}
