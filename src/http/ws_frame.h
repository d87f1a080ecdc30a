/* WebSocket framing (RFC 6455 section 5), both roles, no extensions.
 *
 * sg_ws_reader is an incremental reader for the bytes of one connection:
 * feed it whatever arrived, it hands back events (pieces of data messages,
 * whole control frames) pointing into the caller's buffer, unmasked in
 * place, and remembers where it stopped. It enforces everything a peer can
 * get wrong: reserved bits, unknown opcodes, masking direction, control
 * frames that are fragmented or longer than 125 bytes, continuation
 * without a message (or a new message inside one), the message size limit,
 * UTF-8 of text messages and of close reasons, and close codes. Each
 * violation comes back as the close code the reader's owner must send.
 *
 * Data payloads are handed out as they arrive, so a reader needs no
 * buffer of its own; a control frame is handed out whole, so the caller
 * keeps at most SG_WS_CARRY_MAX unconsumed bytes between reads. */
#ifndef SG_HTTP_WS_FRAME_H
#define SG_HTTP_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SG_WS_OP_CONT = 0x0,
    SG_WS_OP_TEXT = 0x1,
    SG_WS_OP_BINARY = 0x2,
    SG_WS_OP_CLOSE = 0x8,
    SG_WS_OP_PING = 0x9,
    SG_WS_OP_PONG = 0xA,
};

/* Close status codes (RFC 6455 7.4.1). 1005 and 1006 are never sent. */
enum {
    SG_WS_CLOSE_NORMAL = 1000,
    SG_WS_CLOSE_GOING_AWAY = 1001,
    SG_WS_CLOSE_PROTOCOL = 1002,
    SG_WS_CLOSE_UNSUPPORTED = 1003,
    SG_WS_CLOSE_NO_STATUS = 1005,
    SG_WS_CLOSE_ABNORMAL = 1006,
    SG_WS_CLOSE_INVALID_DATA = 1007,
    SG_WS_CLOSE_POLICY = 1008,
    SG_WS_CLOSE_TOO_BIG = 1009,
    SG_WS_CLOSE_INTERNAL = 1011,
};

#define SG_WS_MAX_HEAD 14        /* 2 + 8 (64-bit length) + 4 (mask) */
#define SG_WS_MAX_CONTROL 125    /* control frame payload limit (5.5) */
/* The most bytes sg_ws_read can leave unconsumed: a partial control frame. */
#define SG_WS_CARRY_MAX (SG_WS_MAX_HEAD + SG_WS_MAX_CONTROL)

typedef struct sg_ws_frame_head {
    bool fin;
    uint8_t rsv;        /* RSV1..RSV3 as a 3-bit number (0 without extensions) */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t len;       /* payload length */
    size_t head_len;    /* 2..14 */
} sg_ws_frame_head;

/* Parses a frame head from p[0..n): > 0 is its length, 0 means more bytes
 * are needed, -1 a 64-bit length with the most significant bit set (5.2).
 * Opcode, reserved bits and masking are for the caller to judge. */
int sg_ws_parse_head(const uint8_t *p, size_t n, sg_ws_frame_head *h);

/* XORs p[0..n) with the mask, p[0] being payload byte number `offset`. */
void sg_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* Writes a frame head into `out` and returns its length (2..14), using
 * the shortest length encoding. `mask` NULL: unmasked (what servers send);
 * otherwise the caller masks the payload with sg_ws_unmask. */
size_t sg_ws_write_head(uint8_t out[SG_WS_MAX_HEAD], bool fin, uint8_t opcode,
                        uint64_t len, const uint8_t *mask);

/* True for a code a close frame may carry (1000-1003, 1007-1014, 3000-4999). */
bool sg_ws_close_code_ok(unsigned code);

/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF) for text split at arbitrary byte boundaries. */
typedef struct sg_ws_utf8 {
    uint8_t need;        /* continuation bytes still expected */
    uint8_t lo, hi;      /* allowed range of the next continuation byte */
} sg_ws_utf8;

/* false as soon as the bytes cannot be (the start of) valid UTF-8. */
bool sg_ws_utf8_feed(sg_ws_utf8 *u, const uint8_t *p, size_t n);
/* True if the text fed so far ends on a character boundary. */
static inline bool sg_ws_utf8_complete(const sg_ws_utf8 *u) { return u->need == 0; }

typedef enum sg_ws_event_kind {
    SG_WS_EV_NEED = 0,   /* nothing more can be done with these bytes */
    SG_WS_EV_DATA,       /* a piece of a text/binary message */
    SG_WS_EV_CONTROL,    /* a whole close, ping or pong frame */
    SG_WS_EV_ERROR,      /* the peer broke the protocol: send close_code, stop */
} sg_ws_event_kind;

typedef struct sg_ws_event {
    sg_ws_event_kind kind;
    uint8_t opcode;      /* DATA: TEXT or BINARY (the message's); CONTROL: its opcode */
    bool first;          /* DATA: this piece starts the message */
    bool fin;            /* DATA: this piece ends the message */
    uint8_t *data;       /* payload, unmasked, inside the caller's buffer */
    size_t len;
    /* CONTROL close: the code received (SG_WS_CLOSE_NO_STATUS if none) and
     * the reason (data + 2). ERROR: the code to close with. */
    uint16_t close_code;
    const char *error;   /* ERROR: what was wrong, for logs */
} sg_ws_event;

typedef struct sg_ws_reader {
    /* settings, before the first read */
    bool server;          /* frames must be masked (we are the server), else must not be */
    uint64_t max_message; /* bytes of a whole message, fragments summed; 0: no limit */
    /* state */
    bool in_frame;        /* a data frame's head is consumed, payload pending */
    bool failed;          /* an ERROR was returned: the stream is unusable */
    bool closed;          /* a close frame was returned: nothing follows it */
    sg_ws_frame_head f;   /* the data frame being read */
    uint64_t done;        /* payload bytes of it handed out */
    uint8_t msg_op;       /* TEXT/BINARY while a message is open, else 0 */
    bool msg_started;     /* a piece of the open message was handed out */
    uint64_t msg_len;     /* bytes of the open message so far */
    sg_ws_utf8 utf8;      /* text messages */
} sg_ws_reader;

void sg_ws_reader_init(sg_ws_reader *r, bool server, uint64_t max_message);

/* Reads from buf[0..n), which it may modify (unmasking). Returns the
 * number of bytes consumed and fills *ev; call again with the rest until
 * the event is SG_WS_EV_NEED, then keep the unconsumed bytes (at most
 * SG_WS_CARRY_MAX) and pass them first next time. After ERROR or a close
 * frame it consumes nothing more. A zero-length final frame still gives a
 * DATA event (len 0, fin) so that empty messages are seen. */
size_t sg_ws_read(sg_ws_reader *r, uint8_t *buf, size_t n, sg_ws_event *ev);

#endif
