/* HTTP/2 stream-state rules that libnghttp2 cannot apply for the server.
 *
 * To keep no memory per closed stream, the server runs nghttp2 with
 * no_closed_streams (and RFC 9218 priorities, which also drop closed
 * streams at once). nghttp2 then cannot tell a closed stream from one it
 * never knew, and silently ignores DATA and HEADERS on it, where RFC 9113
 * 5.1 asks for a STREAM_CLOSED error, and a new stream numbered below an
 * earlier one, where 5.1.1 asks for PROTOCOL_ERROR. Ignoring DATA, it
 * calls no callback either, so the codec sees the client's frame headers
 * itself, before nghttp2 does:
 *
 * - sg_h2_scan: frame boundaries in the client's byte stream (header
 *   only, plus a PRIORITY frame's dependency), across reads;
 * - sg_h2_closed: what is left of closed streams, in bounded memory:
 *   every client stream id up to the last one opened is closed unless
 *   nghttp2 still has it; the last few ranges of ids the client skipped
 *   (never opened); and a ring of the streams we reset while the client
 *   could still be sending on them, whose late frames RFC 9113 5.1 says
 *   to ignore (a race, not an error) until the client shows it is done.
 *
 * Pure bookkeeping (no I/O, no nghttp2): unit-tested on its own. */
#ifndef SG_HTTP_H2_SCAN_H
#define SG_HTTP_H2_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_H2_FRAME_HD_LEN 9

/* Frame types and flags the scan looks at (RFC 9113 6). */
#define SG_H2_T_DATA 0x0
#define SG_H2_T_HEADERS 0x1
#define SG_H2_T_PRIORITY 0x2
#define SG_H2_T_RST_STREAM 0x3
#define SG_H2_T_SETTINGS 0x4
#define SG_H2_T_PUSH_PROMISE 0x5
#define SG_H2_F_END_STREAM 0x1
#define SG_H2_F_ACK 0x1              /* SETTINGS, PING */

typedef struct sg_h2_frame {
    uint32_t length;
    uint8_t type, flags;
    int32_t stream_id;
    int32_t dep;                 /* PRIORITY (5-byte payload): the stream it depends on; else -1 */
} sg_h2_frame;

typedef struct sg_h2_scan {
    uint64_t skip;               /* bytes before the next frame header: a payload, or the preface */
    uint8_t buf[SG_H2_FRAME_HD_LEN + 4];
    uint8_t have, need;
} sg_h2_scan;

/* `skip`: bytes that come before the first frame (the 24-byte preface). */
void sg_h2_scan_init(sg_h2_scan *s, size_t skip);

/* Reads p[0..n) up to the end of the next frame header (for PRIORITY,
 * up to its dependency too). Returns the bytes consumed. If a frame was
 * completed, *found is true, *f describes it and *start is the offset in
 * p where the frame began (0 if it began in an earlier call): every
 * byte before *start belongs to earlier frames. */
size_t sg_h2_scan_next(sg_h2_scan *s, const uint8_t *p, size_t n, sg_h2_frame *f, size_t *start,
                       bool *found);

#define SG_H2_SKIP_RANGES 4

typedef struct sg_h2_closed {
    int32_t last;                /* highest client stream id opened */
    int32_t skip_lo[SG_H2_SKIP_RANGES], skip_hi[SG_H2_SKIP_RANGES];
    uint32_t nskips;             /* ranges recorded so far (the ring keeps the last few) */
    int32_t *reset;              /* ring of stream ids, allocated at the first reset */
    uint32_t cap, next;
} sg_h2_closed;

typedef enum sg_h2_closed_verdict {
    SG_H2_CLOSED_OK = 0,         /* not ours to judge, or a late frame RFC 9113 5.1 says to ignore */
    SG_H2_CLOSED_STREAM,         /* a frame on a closed stream: STREAM_CLOSED */
    SG_H2_CLOSED_BAD_ID,         /* a new stream below a later one: PROTOCOL_ERROR */
} sg_h2_closed_verdict;

/* `cap`: how many of our resets are remembered (the concurrency limit:
 * as many streams as the client can have had in flight). */
void sg_h2_closed_init(sg_h2_closed *m, uint32_t cap);
void sg_h2_closed_free(sg_h2_closed *m);
/* The client opened stream `id` (ids grow: RFC 9113 5.1.1). */
void sg_h2_closed_opened(sg_h2_closed *m, int32_t id);
/* We reset `id` while the client could still send on it. */
void sg_h2_closed_reset(sg_h2_closed *m, int32_t id);
/* The client is done with `id` (RST_STREAM or END_STREAM): what it sends
 * on it from now on can no longer be in flight from before our reset. */
void sg_h2_closed_peer_done(sg_h2_closed *m, int32_t id);
/* A DATA or HEADERS frame from the client on stream `id`, which nghttp2
 * has no open stream for. */
sg_h2_closed_verdict sg_h2_closed_frame(const sg_h2_closed *m, int32_t id, bool headers);

#endif
