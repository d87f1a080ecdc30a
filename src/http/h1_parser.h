/* Strict HTTP/1.1 message parser (RFC 9112), both directions.
 *
 * The parser works on a contiguous buffer holding the start of a message and
 * never copies: everything it returns points into that buffer. A head is
 * parsed only once it is complete; callers pass how many bytes they had
 * already scanned (`prev_len`) so that the search for the end of the head is
 * not repeated over a slow client's bytes (no O(n^2)).
 *
 * Body framing is decided here, once, by the rules of RFC 9112 section 6.3,
 * and anything that could be read two ways by two parsers (request
 * smuggling) is an error, never a guess. */
#ifndef SG_HTTP_H1_PARSER_H
#define SG_HTTP_H1_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "core/str.h"

#define SG_H1_MAX_HEADERS 128
/* Upstream response heads larger than this are refused (502). */
#define SG_H1_MAX_RESPONSE_HEAD 65536

/* Per-header flags computed by the parser. */
enum {
    SG_H1_HDR_HOP = 1u << 0,   /* hop-by-hop: Connection, Keep-Alive, Proxy-Connection,
                                  TE, Transfer-Encoding, Upgrade, Trailer,
                                  Proxy-Authenticate/-Authorization is NOT hop here
                                  (nginx forwards them), or named in a Connection token */
    SG_H1_HDR_DROP = 1u << 1,  /* must not be forwarded although not hop-by-hop: a
                                  response's Content-Length overridden by
                                  Transfer-Encoding (RFC 9112 6.3 rule 3) */
};

typedef struct sg_h1_header {
    sg_str name;      /* as received (case preserved) */
    sg_str value;     /* leading/trailing OWS stripped */
    uint32_t flags;   /* SG_H1_HDR_* */
} sg_h1_header;

typedef enum sg_h1_body_kind {
    SG_H1_BODY_NONE = 0,       /* no body (or Content-Length: 0) */
    SG_H1_BODY_LENGTH,         /* exactly content_length bytes */
    SG_H1_BODY_CHUNKED,        /* chunked transfer coding */
    SG_H1_BODY_UNTIL_CLOSE,    /* responses only: read until the peer closes */
} sg_h1_body_kind;

/* Limits the server applies to request heads (nginx's
 * large_client_header_buffers: number and size). */
typedef struct sg_h1_limits {
    size_t max_request_line;   /* longer -> 414 */
    size_t max_header_line;    /* one header field longer -> 431 (nginx: 400 "Request Header Or Cookie Too Large"); we answer 431 */
    size_t max_head;           /* whole head longer -> 431 */
    size_t max_headers;        /* more fields -> 400, as nginx's max_headers; SG_H1_MAX_HEADERS at most */
} sg_h1_limits;

typedef struct sg_h1_message {
    /* request line (requests only) */
    sg_str method;
    sg_str target;             /* request-target as received */
    /* status line (responses only) */
    int status;                /* 100..999 */
    sg_str reason;

    int minor_version;         /* HTTP/1.<minor>: 0 or 1 */
    sg_h1_header headers[SG_H1_MAX_HEADERS];
    size_t num_headers;

    /* Derived once by the parser: */
    sg_h1_body_kind body;
    uint64_t content_length;   /* valid when body == SG_H1_BODY_LENGTH */
    sg_str host;               /* value of the Host header (requests), empty if none */
    sg_str upgrade;            /* value of the Upgrade header if "upgrade" is a Connection token */
    bool keep_alive;           /* after this message, per version and Connection tokens */
    bool expect_continue;      /* Expect: 100-continue (requests) */
    bool has_te_trailers;      /* TE: trailers present (requests) */
    bool connection_close;     /* Connection: close token present */
    size_t head_len;           /* bytes of the head including the final CRLF CRLF */
} sg_h1_message;

/* Result codes: > 0 is the head length (complete); 0 means "need more bytes";
 * < 0 is minus the HTTP status the server must answer with before closing
 * (-400, -414, -431, -501 for an unknown transfer coding, -505 for a bad
 * version). For responses any error is -502 (the proxy answers 502). */
int sg_h1_parse_request(const char *buf, size_t len, size_t prev_len,
                        const sg_h1_limits *limits, sg_h1_message *msg);

/* `request_method` is the method of the request this answers: HEAD and
 * CONNECT change the framing (RFC 9112 6.3 rules 1 and 2), as do 1xx, 204
 * and 304 statuses. */
int sg_h1_parse_response(const char *buf, size_t len, size_t prev_len,
                         sg_str request_method, sg_h1_message *msg);

/* Finds a header by name (case-insensitive); NULL if absent. */
const sg_h1_header *sg_h1_find(const sg_h1_message *msg, const char *name);

/* ---- chunked transfer coding ----
 * An incremental decoder: feed it bytes as they arrive, it hands back the
 * data slices inside them (in place) and remembers where it stopped,
 * even in the middle of a chunk-size line or a trailer. */
typedef enum sg_chunked_state {
    SG_CHUNK_SIZE = 0, SG_CHUNK_EXT, SG_CHUNK_SIZE_LF, SG_CHUNK_DATA,
    SG_CHUNK_DATA_CR, SG_CHUNK_DATA_LF, SG_CHUNK_TRAILER_START,
    SG_CHUNK_TRAILER_LINE, SG_CHUNK_TRAILER_LF, SG_CHUNK_FINAL_LF, SG_CHUNK_DONE,
    SG_CHUNK_SIZE_BWS,        /* whitespace after the size: only ';' may follow */
    SG_CHUNK_TRAILER_VALUE,   /* after the ':' of a trailer field */
} sg_chunked_state;

typedef struct sg_chunked_decoder {
    sg_chunked_state state;
    uint64_t remaining;       /* data bytes left in the current chunk */
    unsigned size_digits;     /* digits seen in the current size line */
    size_t line_len;          /* length of the current extension/trailer line */
    size_t trailer_bytes;     /* total trailer bytes so far (bounded) */
} sg_chunked_decoder;

typedef enum sg_chunked_result {
    SG_CHUNKED_ERROR = -1,    /* malformed: bad size, missing CRLF, overflow, over-long line */
    SG_CHUNKED_MORE = 0,      /* consumed everything given; need more */
    SG_CHUNKED_DATA = 1,      /* (*data, *data_len) is a slice of body data */
    SG_CHUNKED_END = 2,       /* last-chunk and trailers done; *consumed ends the message */
} sg_chunked_result;

void sg_chunked_init(sg_chunked_decoder *d);

/* Decodes from `in`. Sets *consumed to the bytes of `in` used by this call.
 * On SG_CHUNKED_DATA, (*data, *data_len) is the data slice inside `in`; call
 * again with the rest. Trailer fields are checked for syntax (no NUL/CR/LF
 * in names or values) and skipped: they are not forwarded in this version.
 * `trailers_out`, if not NULL, receives the raw trailer section bytes
 * (without the final CRLF) appended, for codecs that forward trailers. */
sg_chunked_result sg_chunked_decode(sg_chunked_decoder *d, const char *in, size_t len,
                                    size_t *consumed, const char **data, size_t *data_len,
                                    sg_strbuf *trailers_out);

/* Normalizes the path part of a request target the way nginx builds $uri:
 * percent-decoding, merging "//", resolving "." and ".." segments. Writes
 * into `out` (at least path.n bytes). Returns the new length, or -1 if the
 * path is invalid: ".." climbing above the root, a decoded NUL, or a bad
 * %-escape (the server answers 400). */
long sg_h1_normalize_path(sg_str path, char *out);

/* True if the byte is an RFC 9110 tchar (token character). */
bool sg_h1_is_tchar(unsigned char c);

#endif
