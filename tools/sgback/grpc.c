/* The gRPC service chat.Chat (tests/integration/chat.proto), on the h2c
 * side. Messages are opaque to the service: Echo, Repeat and Talk send the
 * request bytes back exactly as received (5-byte gRPC prefixes included),
 * so any payload works, protobuf or not. The messages the service makes
 * itself (Collect, Sleep) are protobuf `Msg { string text = 1; }`, i.e.
 * 0x0A, varint length, text.
 *
 *   Echo     unary: the request message back; streamed, so its size is
 *            not limited (64 MB and more) and nothing is buffered beyond
 *            the flow-control window
 *   Repeat   server streaming: the request message `x-repeat` times
 *            (default 5), `x-interval-ms` apart (default 0); the request
 *            is buffered (up to 512 MB)
 *   Collect  client streaming: Msg{text="messages=N bytes=B"}, N messages
 *            of B payload bytes in all
 *   Talk     bidi: every byte echoed as it arrives, so each message comes
 *            back as soon as it is complete; no idle timeout
 *   x-reset  (Fail, Echo, Repeat) RST_STREAM with this HTTP/2 error code
 *            where the call would end: Fail before any head, Echo and
 *            Repeat after their messages, in place of the trailers
 *   Fail     trailers-only: grpc-status from `x-want-status` (default 5
 *            NOT_FOUND), grpc-message `x-want-message` or FAIL_MESSAGE
 *            (percent-encoded), x-detail-bin = the request's x-detail-bin
 *            or base64(FAIL_DETAIL)
 *   Sleep    Msg{text="slept MS ms"} after `x-sleep-ms` (default 1000)
 *            once the request has ended; a client giving up (deadline)
 *            resets the stream, which /stats counts as "cancelled"
 *   other    trailers-only grpc-status 12 UNIMPLEMENTED, at once
 * Responses have content-type application/grpc and end with trailers
 * grpc-status (and grpc-message when not OK). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "sgback.h"
#include "core/str.h"

/* UTF-8 and a '%' so that percent-encoding is exercised end to end. */
#define FAIL_MESSAGE "room not found: \xe6\x88\xbf\xe9\x97\xb4 42 (100%)"
/* base64 of "\x00\x01\xfe\xff" "chat-detail", unpadded */
#define FAIL_DETAIL_B64 "AAH+/2NoYXQtZGV0YWls"
#define MAX_SLEEP_MS (3600u * 1000)
#define MAX_REPEAT 1000000

enum method { M_UNKNOWN, M_ECHO, M_REPEAT, M_COLLECT, M_TALK, M_FAIL, M_SLEEP };

enum {
    ST_OK = 0, ST_NOT_FOUND = 5, ST_RESOURCE_EXHAUSTED = 8, ST_UNIMPLEMENTED = 12,
    ST_INTERNAL = 13,
};

static const sgb_h2_nv grpc_ct = { "content-type", "application/grpc" };

static enum method method_of(const char *path)
{
    static const struct { const char *path; enum method m; } methods[] = {
        { "/chat.Chat/Echo", M_ECHO }, { "/chat.Chat/Repeat", M_REPEAT },
        { "/chat.Chat/Collect", M_COLLECT }, { "/chat.Chat/Talk", M_TALK },
        { "/chat.Chat/Fail", M_FAIL }, { "/chat.Chat/Sleep", M_SLEEP },
    };
    for (size_t i = 0; path && i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(path, methods[i].path) == 0)
            return methods[i].m;
    return M_UNKNOWN;
}

/* A numeric request header; `def` when absent, malformed or above `max`. */
static uint64_t header_u64(const sgb_h2_stream *s, const char *name, uint64_t def, uint64_t max)
{
    size_t len;
    const char *v = sgb_h2_header(s, name, &len);
    uint64_t n;
    if (!v || !sg_str_to_u64((sg_str){ v, len }, &n) || n > max)
        return def;
    return n;
}

/* gRPC's grpc-message encoding: bytes outside 0x20..0x7e, and '%', as %XX. */
static void percent_encode(const char *in, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 <= cap; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch < 0x20 || ch > 0x7e || ch == '%') {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = 0;
}

/* Trailers-only answer: one HEADERS frame that ends the stream. */
static void fail(sgb_h2_stream *s, int status, const char *msg, size_t msg_len, const char *detail)
{
    char st[8], enc[1024];
    snprintf(st, sizeof st, "%d", status);
    percent_encode(msg, msg_len, enc, sizeof enc);
    sgb_h2_nv nv[4] = { grpc_ct, { "grpc-status", st }, { "grpc-message", enc } };
    size_t n = 3;
    if (detail)
        nv[n++] = (sgb_h2_nv){ "x-detail-bin", detail };
    s->in = SGB_H2_IN_DISCARD;
    sgb_h2_respond(s, 200, nv, n, false);
}

static void fail_lit(sgb_h2_stream *s, int status, const char *msg)
{
    fail(s, status, msg, strlen(msg), NULL);
}

/* One Msg{text} as a whole gRPC message in s->fixed, then the response. */
static void reply_text(sgb_h2_stream *s, const char *text)
{
    size_t n = strlen(text);
    if (n > 127)
        n = 127;   /* a one-byte varint length */
    uint8_t *p = (uint8_t *)s->fixed;
    uint32_t mlen = (uint32_t)n + 2;
    p[0] = 0;
    p[1] = (uint8_t)(mlen >> 24);
    p[2] = (uint8_t)(mlen >> 16);
    p[3] = (uint8_t)(mlen >> 8);
    p[4] = (uint8_t)mlen;
    p[5] = 0x0a;   /* field 1, length-delimited */
    p[6] = (uint8_t)n;
    memcpy(p + 7, text, n);
    s->fixed_len = 7 + n;
    s->out = SGB_H2_OUT_FIXED;
    sgb_h2_respond(s, 200, &grpc_ct, 1, true);
}

void sgb_grpc_begin(sgb_h2_stream *s)
{
    const char *path = sgb_h2_header(s, ":path", NULL);
    s->route = method_of(path);
    switch ((enum method)s->route) {
    case M_ECHO:
    case M_TALK:
        /* Headers at once: a Talk client sees the call accepted before it speaks. */
        s->in = SGB_H2_IN_ECHO;
        s->out = SGB_H2_OUT_ECHO;
        sgb_h2_respond(s, 200, &grpc_ct, 1, true);
        break;
    case M_REPEAT:
        s->in = SGB_H2_IN_BUFFER;
        s->repeat = header_u64(s, "x-repeat", 5, MAX_REPEAT);
        s->interval_ms = header_u64(s, "x-interval-ms", 0, MAX_SLEEP_MS);
        break;
    case M_COLLECT:
        s->in = SGB_H2_IN_GRPC;
        break;
    case M_FAIL:
    case M_SLEEP:
        s->in = SGB_H2_IN_DISCARD;
        break;
    case M_UNKNOWN: {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown method %.256s", path ? path : "");
        fail_lit(s, ST_UNIMPLEMENTED, msg);
        break;
    }
    }
}

/* Counts the messages of a client stream (Collect): prefix, then payload. */
void sgb_grpc_data(sgb_h2_stream *s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (s->msg_left == 0 && s->prefix_got < 5) {
            s->prefix[s->prefix_got++] = *p++;
            n--;
            if (s->prefix_got == 5) {
                s->msg_left = (uint64_t)s->prefix[1] << 24 | (uint64_t)s->prefix[2] << 16 |
                              (uint64_t)s->prefix[3] << 8 | s->prefix[4];
                s->msgs++;
                s->prefix_got = s->msg_left == 0 ? 0 : 5;
            }
            continue;
        }
        size_t take = n < s->msg_left ? n : (size_t)s->msg_left;
        s->msg_bytes += take;
        s->msg_left -= take;
        p += take;
        n -= take;
        if (s->msg_left == 0)
            s->prefix_got = 0;
    }
}

static void end_collect(sgb_h2_stream *s)
{
    if (s->msg_left > 0 || (s->prefix_got > 0 && s->prefix_got < 5)) {
        fail_lit(s, ST_INTERNAL, "truncated gRPC message");
        return;
    }
    char text[96];
    snprintf(text, sizeof text, "messages=%" PRIu64 " bytes=%" PRIu64, s->msgs, s->msg_bytes);
    reply_text(s, text);
}

/* x-reset: the stream is reset with that code instead of ending. */
static bool reset_instead(sgb_h2_stream *s)
{
    uint64_t code = header_u64(s, "x-reset", UINT64_MAX, 0xffffffffu);
    if (code == UINT64_MAX) return false;
    sgb_h2_reset(s, (uint32_t)code);
    return true;
}

static void end_fail(sgb_h2_stream *s)
{
    if (reset_instead(s)) return;
    int status = (int)header_u64(s, "x-want-status", ST_NOT_FOUND, 16);
    size_t mlen;
    const char *msg = sgb_h2_header(s, "x-want-message", &mlen);
    if (!msg) {
        msg = FAIL_MESSAGE;
        mlen = strlen(msg);
    }
    const char *detail = sgb_h2_header(s, "x-detail-bin", NULL);
    fail(s, status, msg, mlen, detail ? detail : FAIL_DETAIL_B64);
}

void sgb_grpc_end(sgb_h2_stream *s)
{
    if (s->responded)
        return;   /* Echo/Talk finish by themselves; failures are sent */
    switch ((enum method)s->route) {
    case M_REPEAT:
        if (s->overflow) {
            fail_lit(s, ST_RESOURCE_EXHAUSTED, "message too large to repeat");
            break;
        }
        s->out = SGB_H2_OUT_REPEAT;
        s->copies = 0;
        sgb_h2_respond(s, 200, &grpc_ct, 1, true);
        break;
    case M_COLLECT:
        end_collect(s);
        break;
    case M_FAIL:
        end_fail(s);
        break;
    case M_SLEEP:
        s->n = header_u64(s, "x-sleep-ms", 1000, MAX_SLEEP_MS);
        sgb_h2_wait(s, s->n);
        break;
    case M_ECHO:
    case M_TALK:
    case M_UNKNOWN:
        break;
    }
}

void sgb_grpc_timer(sgb_h2_stream *s)
{
    char text[48];
    snprintf(text, sizeof text, "slept %" PRIu64 " ms", s->n);
    reply_text(s, text);
}

void sgb_grpc_body_end(sgb_h2_stream *s)
{
    static const sgb_h2_nv ok[] = { { "grpc-status", "0" } };
    if (reset_instead(s)) return;
    sgb_h2_trailers(s, ok, 1);
}
