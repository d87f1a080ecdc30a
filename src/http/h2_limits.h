/* Abuse accounting for HTTP/2 server connections.
 *
 * libnghttp2 enforces the protocol, but several cheap-for-the-client,
 * costly-for-the-server patterns are legal frame by frame: resetting
 * every stream right after opening it (Rapid Reset, CVE-2023-44487),
 * a header block that never ends (CONTINUATION flood, CVE-2024-27316), a
 * small header block that decodes into megabytes (HPACK bomb), PING or
 * SETTINGS floods, and frames built to make the server reset streams
 * itself (MadeYouReset, CVE-2025-8671). These counters turn such
 * patterns into a verdict; the codec answers with GOAWAY
 * ENHANCE_YOUR_CALM and closes that one connection.
 *
 * Pure bookkeeping (no I/O, no nghttp2): unit-tested on its own. */
#ifndef SG_HTTP_H2_LIMITS_H
#define SG_HTTP_H2_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token bucket: `burst` events at once, refilled at `rate` per second.
 * Tokens are kept in thousandths so that refills at millisecond
 * granularity are exact. */
typedef struct sg_h2_bucket {
    uint64_t milli;              /* tokens * 1000 */
    uint64_t last_ms;
    uint32_t burst, rate;
} sg_h2_bucket;

void sg_h2_bucket_init(sg_h2_bucket *b, uint32_t burst, uint32_t rate_per_s, uint64_t now_ms);
/* Takes one token; false when none is left (the peer exceeded the rate). */
bool sg_h2_bucket_take(sg_h2_bucket *b, uint64_t now_ms);

/* Defaults, in line with nghttp2's own stream reset limiter (1000, 33/s). */
#define SG_H2_RESET_BURST 1000
#define SG_H2_RESET_RATE 33
#define SG_H2_GLITCH_BURST 1000        /* invalid frames, streams we had to reset */
#define SG_H2_GLITCH_RATE 33
#define SG_H2_CONTROL_BURST 1000       /* PING, SETTINGS, PRIORITY, empty DATA */
#define SG_H2_CONTROL_RATE 100
#define SG_H2_MAX_CONTINUATIONS 16     /* CONTINUATION frames per header block */
#define SG_H2_MAX_FIELDS 512           /* fields of any kind per header block before 431 */
#define SG_H2_BOMB_FACTOR 16           /* decoded bytes above cap * this: connection error */
/* Refused header blocks (over max_headers or the header list size) a
 * connection may send; the next one costs it the connection. A refused
 * request still holds a stream until its answer is out, and a client that
 * does not read keeps that answer from going out: without this, every
 * stream it may open would hold one. Browsers never get here. */
#define SG_H2_MAX_REFUSED 4
#define SG_H2_DEFAULT_MAX_HEADERS 100  /* max_headers (nginx 1.29.8) */

typedef enum sg_h2_verdict {
    SG_H2_OK = 0,
    SG_H2_TOO_MANY,              /* more fields than max_headers: answer 400, as nginx */
    SG_H2_TOO_LARGE,             /* this request's header list is over the limit: answer 431 */
    SG_H2_CALM,                  /* the connection misbehaves: GOAWAY ENHANCE_YOUR_CALM */
} sg_h2_verdict;

/* One header block (HEADERS + CONTINUATION*) being received. Only one can
 * be in progress per connection (RFC 9113 6.10), so one per connection.
 * Once a block is refused (TOO_MANY or TOO_LARGE) the verdict sticks for
 * the rest of it: the caller still lets nghttp2 decode every field (the
 * HPACK table must stay in step with the client's) but keeps none. */
typedef struct sg_h2_hblock {
    uint32_t max_field;          /* one field's name + value */
    uint32_t max_list;           /* RFC 7541 4.1 / RFC 9113 6.5.2 size: sum of name + value + 32 */
    uint32_t max_headers;        /* fields that count (see sg_h2_hblock_field) */
    uint32_t continuations;
    uint32_t fields;             /* every field */
    uint32_t counted;            /* fields that count against max_headers */
    uint64_t wire_bytes;         /* HEADERS + CONTINUATION payloads */
    uint64_t list_bytes;         /* decoded, RFC size */
    sg_h2_verdict refused;       /* SG_H2_OK, or why the request is refused */
} sg_h2_hblock;

void sg_h2_hblock_begin(sg_h2_hblock *h, uint32_t max_field, uint32_t max_list, uint32_t max_headers);
/* A HEADERS (continuation=false) or CONTINUATION frame of `len` payload bytes. */
sg_h2_verdict sg_h2_hblock_frame(sg_h2_hblock *h, bool continuation, size_t len);
/* One decoded field. Every field counts against the list size with its
 * 32 bytes of overhead; against max_headers, as in nginx, every field but
 * pseudo-headers and cookie crumbs (a browser may split its Cookie into
 * one field per cookie, RFC 9113 8.2.3; they cost their bytes). */
sg_h2_verdict sg_h2_hblock_field(sg_h2_hblock *h, const uint8_t *name, size_t namelen, size_t valuelen);

#endif
