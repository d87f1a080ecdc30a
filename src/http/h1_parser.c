/* Strict HTTP/1.1 parser (RFC 9112 / RFC 9110), nginx's answers where the
 * RFC leaves a choice.
 *
 * Shape of a parse call: (1) skip a few leading empty lines, (2) look for the
 * empty line ending the head, starting just before `prev_len` so a slow
 * client's bytes are not rescanned, (3) if the head is incomplete, enforce
 * the size limits on what is buffered so far and ask for more, (4) else
 * validate and split the head in one pass, then decide the body framing.
 * Nothing is allocated or copied: every sg_str points into the caller's
 * buffer. */
#include "http/h1_parser.h"
#include "http/host.h"

#include <limits.h>
#include <string.h>

/* Character classes, one table lookup per byte on the hot path. */
enum {
    C_TCHAR = 1,    /* RFC 9110 token character */
    C_VALUE = 2,    /* field-value byte: VCHAR, SP, HTAB, obs-text */
    C_TARGET = 4,   /* request-target byte: visible ASCII 0x21-0x7e */
    C_HOST = 8,     /* Host byte (the Host check itself is http/host.c, shared with HTTP/2) */
};

static const uint8_t cls[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     2, 15,  6,  7, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15,  6,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14,  6, 14,  6,  6,
     6, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14,  6, 14,  7, 15,
     7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  6,  7,  6, 15,  0,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
};

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

/* RFC 9112 2.2 asks servers to ignore "at least one" empty line before the
 * request line (clients that send CRLF after a POST body); a few more are
 * tolerated, an endless stream of them is not. */
#define MAX_LEADING_EMPTY_LINES 4
#define MAX_CONTENT_LENGTH (UINT64_C(1) << 62)
#define CHUNK_LINE_MAX 4096
#define CHUNK_TRAILERS_MAX 16384

/* Defaults when the caller passes no limits (nginx: 4 x 8k buffers). */
static const sg_h1_limits default_limits = { 8192, 8192, 32768, 100 };

bool sg_h1_is_tchar(unsigned char c)
{
    return IS(c, C_TCHAR) != 0;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Case-insensitive compare with a lowercase literal. `c | 0x20` lowers
 * letters; on the inputs used here (tokens and field values, which hold no
 * control characters) it maps nothing else onto a literal's byte. */
static inline bool lit_caseeq(sg_str s, const char *lit, size_t n)
{
    if (s.n != n) return false;
    for (size_t i = 0; i < n; i++)
        if ((s.p[i] | 0x20) != lit[i]) return false;
    return true;
}

#define CASEEQ(s, lit) lit_caseeq((s), (lit), sizeof(lit) - 1)

/* Word-at-a-time scans (SWAR): a typical head is mostly field values and
 * targets, so they are checked eight bytes per step; the byte loop then
 * finds the exact stopping byte. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGH (ONES * 0x80)

static inline uint64_t load64(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Nonzero if some byte of x is < n (n <= 128), or equals 0x7f. */
static inline uint64_t has_less_or_del(uint64_t x, uint64_t n)
{
    uint64_t y = x ^ (ONES * 0x7f);
    return ((x - ONES * n) & ~x & HIGH) | ((y - ONES) & ~y & HIGH);
}

/* First byte at or after i that is not a field-value byte (end of line). */
static size_t scan_value(const char *b, size_t i, size_t end)
{
    while (i + 8 <= end && !has_less_or_del(load64(b + i), 0x20)) i += 8;
    while (IS(b[i], C_VALUE)) i++;
    return i;
}

/* First byte at or after i that is not a request-target byte. */
static size_t scan_target(const char *b, size_t i, size_t end)
{
    for (uint64_t x; i + 8 <= end; i += 8) {
        x = load64(b + i);
        if (has_less_or_del(x, 0x21) | (x & HIGH)) break;
    }
    while (IS(b[i], C_TARGET)) i++;
    return i;
}

static inline int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* ---------------------------------------------------------------------- */
/* Finding the end of the head                                             */

/* Skips up to MAX_LEADING_EMPTY_LINES empty lines. Returns the offset of the
 * first byte of the request line, or -1 on a bare CR / too many empty lines,
 * or -2 if the buffer ends inside the empty lines. */
static long skip_empty_lines(const char *b, size_t len)
{
    size_t i = 0;
    for (int lines = 0;; lines++) {
        if (i >= len) return -2;
        if (b[i] != '\r' && b[i] != '\n') return (long)i;
        if (lines == MAX_LEADING_EMPTY_LINES) return -1;
        if (b[i] == '\r') {
            if (i + 1 >= len) return -2;
            if (b[i + 1] != '\n') return -1;
            i++;
        }
        i++;
    }
}

/* Offset just past the LF that ends the empty line closing the head, or 0.
 * Only LFs at or after `from` are examined; each is checked backwards for
 * "LF LF" or "LF CR LF" (a bare LF terminates lines, as in nginx). */
static size_t find_head_end(const char *b, size_t start, size_t from, size_t len)
{
    size_t i = from < start ? start : from;
    while (i < len) {
        const char *lf = memchr(b + i, '\n', len - i);
        if (!lf) return 0;
        size_t k = (size_t)(lf - b);
        if (k > start && b[k - 1] == '\n') return k + 1;
        if (k > start + 1 && b[k - 1] == '\r' && b[k - 2] == '\n') return k + 1;
        i = k + 1;
    }
    return 0;
}

/* n + k without wrapping (limits may be SIZE_MAX for "unlimited"). */
static size_t add_sat(size_t n, size_t k)
{
    return n > SIZE_MAX - k ? SIZE_MAX : n + k;
}

static size_t search_from(size_t prev_len, size_t len)
{
    if (prev_len > len) return 0;           /* caller reset its buffer */
    return prev_len > 3 ? prev_len - 3 : 0; /* "\r\n\r" may already be there */
}

/* Limits on an incomplete request head, so that nothing grows without bound:
 * the request line, the line being received, the whole head. Cost is bounded
 * by the limits themselves, not by the buffered size. */
static int check_incomplete_request(const char *b, size_t start, size_t len,
                                    const sg_h1_limits *lim)
{
    size_t have = len - start;
    if (have > lim->max_head) return -431;
    /* Is the request line complete, and short enough? (+2: CR LF) */
    size_t rl_win = add_sat(lim->max_request_line, 2);
    const char *lf = memchr(b + start, '\n', have < rl_win ? have : rl_win);
    if (!lf) return have >= rl_win ? -414 : 0;
    size_t rl = (size_t)(lf - (b + start));
    if (rl && lf[-1] == '\r') rl--;
    if (rl > lim->max_request_line) return -414;
    /* The line being received: its LF must lie within the last
     * max_header_line + 2 bytes (content, CR, one more byte). */
    size_t hl_win = add_sat(lim->max_header_line, 2);
    size_t lo = have > hl_win ? len - hl_win : start;
    if (lo > (size_t)(lf - b) && !memrchr(b + lo, '\n', len - lo)) return -431;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Lines                                                                   */

/* Consumes the line terminator at b[*p]: CRLF or a bare LF. A CR not followed
 * by LF is an error (bare CR). The head always ends with LF, so b[*p + 1] is
 * readable whenever b[*p] is CR. */
static bool eat_eol(const char *b, size_t *p)
{
    if (b[*p] == '\n') { (*p)++; return true; }
    if (b[*p] == '\r' && b[*p + 1] == '\n') { *p += 2; return true; }
    return false;
}

/* One "name: value" line starting at b[*p]. The head ends with LF, which no
 * character class accepts, so the scans stop inside the head.
 * Returns 0, or -400 (syntax) / -431 (line longer than max_line). */
static int parse_header_line(const char *b, size_t *p, size_t end, size_t max_line,
                             sg_h1_header *h)
{
    size_t s = *p, i = s;
    while (IS(b[i], C_TCHAR)) i++;
    if (i == s || b[i] != ':') return -400;      /* empty name, or SP before ':' */
    h->name = (sg_str){ b + s, i - s };
    i++;
    while (is_ows(b[i])) i++;
    size_t vs = i;
    i = scan_value(b, i, end);
    size_t ve = i;
    if (ve - s > max_line) return -431;
    if (!eat_eol(b, &i)) return -400;             /* NUL, CTL, bare CR */
    while (ve > vs && is_ows(b[ve - 1])) ve--;
    h->value = (sg_str){ b + vs, ve - vs };
    h->flags = 0;
    *p = i;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Header semantics                                                        */

enum hdr_kind {
    H_OTHER, H_HOST, H_CL, H_TE, H_CONNECTION, H_UPGRADE, H_EXPECT, H_TE_REQ,
    H_KEEPALIVE, H_PROXY_CONN, H_TRAILER,
};

static enum hdr_kind classify(sg_str n)
{
    /* Dispatch on length first: most names are rejected by one compare. */
    switch (n.n) {
    case 2:  return CASEEQ(n, "te") ? H_TE_REQ : H_OTHER;
    case 4:  return CASEEQ(n, "host") ? H_HOST : H_OTHER;
    case 6:  return CASEEQ(n, "expect") ? H_EXPECT : H_OTHER;
    case 7:
        if (CASEEQ(n, "upgrade")) return H_UPGRADE;
        return CASEEQ(n, "trailer") ? H_TRAILER : H_OTHER;
    case 10:
        if (CASEEQ(n, "connection")) return H_CONNECTION;
        return CASEEQ(n, "keep-alive") ? H_KEEPALIVE : H_OTHER;
    case 14: return CASEEQ(n, "content-length") ? H_CL : H_OTHER;
    case 16: return CASEEQ(n, "proxy-connection") ? H_PROXY_CONN : H_OTHER;
    case 17: return CASEEQ(n, "transfer-encoding") ? H_TE : H_OTHER;
    default: return H_OTHER;
    }
}

/* Next element of a comma-separated list (RFC 9110 5.6.1): a token with
 * optional ";params". Returns 1 with *tok and *params set, 0 at the end, -1 on a
 * syntax error. Empty elements are skipped unless `strict`, where they are
 * errors (Transfer-Encoding: framing must have exactly one reading). */
static int next_elem(sg_str v, size_t *i, bool strict, sg_str *tok, sg_str *params)
{
    size_t p = *i;
    for (;;) {
        while (p < v.n && is_ows(v.p[p])) p++;
        if (p >= v.n) { *i = p; return 0; }
        if (v.p[p] != ',') break;
        if (strict) return -1;
        p++;
    }
    size_t s = p;
    while (p < v.n && IS(v.p[p], C_TCHAR)) p++;
    if (p == s) return -1;
    *tok = (sg_str){ v.p + s, p - s };
    while (p < v.n && is_ows(v.p[p])) p++;
    *params = (sg_str){ v.p + p, 0 };
    if (p < v.n && v.p[p] == ';') {
        s = p;
        while (p < v.n && v.p[p] != ',') p++;   /* quoted commas: not in codings we accept */
        *params = (sg_str){ v.p + s, p - s };
    }
    if (p < v.n) {
        if (v.p[p] != ',') return -1;
        p++;
        if (strict) {       /* a trailing comma is an empty element */
            size_t q = p;
            while (q < v.n && is_ows(v.p[q])) q++;
            if (q >= v.n) return -1;
        }
    }
    *i = p;
    return 1;
}

/* What the header fields say, gathered in the single pass. */
typedef struct head_info {
    unsigned n_host, n_cl, n_te, n_upgrade;
    bool cl_bad, cl_differ;
    uint64_t cl;
    bool te_bad, te_last_chunked, te_other;  /* other coding seen before chunked */
    unsigned te_chunked;
    bool conn_close, conn_keepalive, conn_upgrade, conn_other;
    bool expect_continue, te_trailers;
    sg_str host, upgrade;
} head_info;

static bool parse_content_length(sg_str v, uint64_t *out)
{
    if (v.n == 0) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (!is_digit(v.p[i])) return false;
        unsigned d = (unsigned)(v.p[i] - '0');
        if (x > (MAX_CONTENT_LENGTH - d) / 10) return false;
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

static void note_content_length(head_info *hi, sg_str v)
{
    uint64_t x;
    if (!parse_content_length(v, &x)) { hi->cl_bad = true; return; }
    if (hi->n_cl && x != hi->cl) hi->cl_differ = true;
    hi->cl = x;
    hi->n_cl++;
}

static void note_transfer_encoding(head_info *hi, sg_str v)
{
    size_t i = 0;
    sg_str tok, params;
    int r;
    hi->n_te++;
    if (v.n == 0) { hi->te_bad = true; return; }
    while ((r = next_elem(v, &i, true, &tok, &params)) == 1) {
        if (CASEEQ(tok, "chunked")) {
            if (params.n) hi->te_bad = true;    /* chunked takes no parameters */
            hi->te_chunked++;
            hi->te_last_chunked = true;
        } else {
            if (!hi->te_chunked) hi->te_other = true;
            hi->te_last_chunked = false;
        }
    }
    if (r < 0) hi->te_bad = true;
}

static void note_connection(head_info *hi, sg_str v)
{
    size_t i = 0;
    sg_str tok, params;
    while (next_elem(v, &i, false, &tok, &params) == 1) {
        if (CASEEQ(tok, "close")) hi->conn_close = true;
        else if (CASEEQ(tok, "keep-alive")) hi->conn_keepalive = true;
        else if (CASEEQ(tok, "upgrade")) hi->conn_upgrade = true;
        else hi->conn_other = true;
    }
}

static void note_te_request(head_info *hi, sg_str v)
{
    size_t i = 0;
    sg_str tok, params;
    while (next_elem(v, &i, false, &tok, &params) == 1)
        if (CASEEQ(tok, "trailers")) hi->te_trailers = true;
}

/* Records one field's meaning and sets its hop-by-hop flag. */
static void note_header(head_info *hi, sg_h1_header *h)
{
    switch (classify(h->name)) {
    case H_HOST:
        if (!hi->n_host++) hi->host = h->value;
        break;
    case H_CL:
        note_content_length(hi, h->value);
        break;
    case H_TE:
        h->flags |= SG_H1_HDR_HOP;
        note_transfer_encoding(hi, h->value);
        break;
    case H_CONNECTION:
        h->flags |= SG_H1_HDR_HOP;
        note_connection(hi, h->value);
        break;
    case H_UPGRADE:
        h->flags |= SG_H1_HDR_HOP;
        if (!hi->n_upgrade++) hi->upgrade = h->value;
        break;
    case H_EXPECT:
        if (CASEEQ(h->value, "100-continue")) hi->expect_continue = true;
        break;
    case H_TE_REQ:
        h->flags |= SG_H1_HDR_HOP;
        note_te_request(hi, h->value);
        break;
    case H_KEEPALIVE: case H_PROXY_CONN: case H_TRAILER:
        h->flags |= SG_H1_HDR_HOP;
        break;
    case H_OTHER:
        break;
    }
}

/* Fields named by a Connection token are hop-by-hop too (RFC 9110 7.6.1).
 * Host and Content-Length are never dropped that way: a client listing them
 * in Connection must not be able to strip routing or framing. Rare path. */
static void mark_connection_tokens(sg_h1_message *m)
{
    for (size_t c = 0; c < m->num_headers; c++) {
        if (classify(m->headers[c].name) != H_CONNECTION) continue;
        sg_str v = m->headers[c].value, tok, params;
        size_t i = 0;
        while (next_elem(v, &i, false, &tok, &params) == 1) {
            enum hdr_kind k = classify(tok);
            if (k == H_HOST || k == H_CL) continue;
            for (size_t j = 0; j < m->num_headers; j++)
                if (sg_str_caseeq(m->headers[j].name, tok))
                    m->headers[j].flags |= SG_H1_HDR_HOP;
        }
    }
}

/* Host = uri-host [ ":" port ], checked as nginx's validate_host
 * (http/host.c, shared with HTTP/2). */
static bool host_valid(sg_str h)
{
    return sg_http_host_check(h) >= 0;
}

static void init_message(sg_h1_message *m)
{
    m->method = m->target = m->reason = SG_STR_NULL;
    m->host = m->upgrade = SG_STR_NULL;
    m->status = 0;
    m->minor_version = 1;
    m->num_headers = 0;
    m->body = SG_H1_BODY_NONE;
    m->content_length = 0;
    m->keep_alive = m->expect_continue = m->has_te_trailers = false;
    m->connection_close = false;
    m->head_len = 0;
}

/* Parses the field lines from b[p] to the empty line ending the head.
 * `err` is the status for syntax errors (-400 or -502); `too_long` for limit
 * overruns (-431 or -502). */
static int parse_fields(const char *b, size_t p, size_t end, size_t max_line, size_t max_fields,
                        int err, int too_long, sg_h1_message *m, head_info *hi)
{
    for (;;) {
        if (b[p] == '\n' || (b[p] == '\r' && b[p + 1] == '\n')) return 0;
        if (is_ows(b[p])) return err;            /* obs-fold, or SP after start line */
        if (m->num_headers >= max_fields) return err;   /* nginx's max_headers: 400 */
        sg_h1_header *h = &m->headers[m->num_headers];
        int r = parse_header_line(b, &p, end, max_line, h);
        if (r) return r == -431 ? too_long : err;
        m->num_headers++;
        note_header(hi, h);
    }
}

static void apply_connection(sg_h1_message *m, const head_info *hi)
{
    m->keep_alive = m->minor_version == 1 || hi->conn_keepalive;
    if (hi->conn_close) {
        m->keep_alive = false;
        m->connection_close = true;
    }
    if (hi->conn_upgrade && hi->n_upgrade) m->upgrade = hi->upgrade;
}

/* ---------------------------------------------------------------------- */
/* Requests                                                                */

/* "HTTP/1.0" -> 0, "HTTP/1.1" and later 1.x -> 1 (RFC 9110 2.5: a higher
 * minor version is processed as the highest one we implement, as nginx
 * does); other well-formed major versions -> -505. */
static int parse_version(const char *v, size_t n, int *minor)
{
    if (n < 6 || memcmp(v, "HTTP/", 5) != 0 || !is_digit(v[5])) return -400;
    if (n == 6) return -505;                              /* "HTTP/2", "HTTP/3" */
    if (n != 8 || v[6] != '.' || !is_digit(v[7])) return -400;
    if (v[5] != '1') return -505;
    *minor = v[7] == '0' ? 0 : 1;
    return 0;
}

/* authority-form (CONNECT only): host ":" port. */
static bool authority_form_valid(sg_str t)
{
    size_t c = t.n;
    while (c && t.p[c - 1] != ':') c--;
    if (c < 2 || c == t.n) return false;                 /* no host or no port */
    for (size_t i = c; i < t.n; i++)
        if (!is_digit(t.p[i])) return false;
    return host_valid((sg_str){ t.p, c - 1 });
}

static inline bool is_alpha(char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/* absolute-form: scheme "://" authority...; the caller deals with the rest. */
static bool absolute_form_valid(sg_str t)
{
    if (!is_alpha(t.p[0])) return false;
    size_t i = 1;
    while (i < t.n && (is_alpha(t.p[i]) || is_digit(t.p[i]) || t.p[i] == '+' ||
                       t.p[i] == '-' || t.p[i] == '.'))
        i++;
    return t.n - i > 3 && memcmp(t.p + i, "://", 3) == 0;
}

static int check_target_form(sg_str method, sg_str t)
{
    bool connect = sg_str_eq_lit(method, "CONNECT");
    if (connect) return authority_form_valid(t) ? 0 : -400;
    if (t.p[0] == '/') return 0;
    if (t.n == 1 && t.p[0] == '*') return sg_str_eq_lit(method, "OPTIONS") ? 0 : -400;
    return absolute_form_valid(t) ? 0 : -400;
}

/* method SP request-target SP HTTP-version EOL, starting at b[*p]. */
static int parse_request_line(const char *b, size_t *p, size_t end,
                              const sg_h1_limits *lim, sg_h1_message *m)
{
    size_t s = *p, i = s;
    while (IS(b[i], C_TCHAR)) i++;
    if (i == s || b[i] != ' ') return -400;
    m->method = (sg_str){ b + s, i - s };
    size_t ts = ++i;
    i = scan_target(b, i, end);
    if (i == ts || b[i] != ' ') return i - s > lim->max_request_line ? -414 : -400;
    m->target = (sg_str){ b + ts, i - ts };
    size_t vs = ++i;
    while (b[i] != '\r' && b[i] != '\n') i++;
    if (i - s > lim->max_request_line) return -414;
    int r = parse_version(b + vs, i - vs, &m->minor_version);
    if (r) return r;
    if (!eat_eol(b, &i)) return -400;
    *p = i;
    return check_target_form(m->method, m->target);
}

/* RFC 9112 6.1 and 6.3 for requests; anything ambiguous is refused. */
static int request_framing(sg_h1_message *m, const head_info *hi)
{
    if (hi->cl_bad || hi->n_cl > 1) return -400;   /* nginx: duplicate header line */
    if (hi->n_te) {
        if (m->minor_version == 0) return -400;
        if (hi->n_cl) return -400;
        if (hi->te_bad || hi->te_chunked != 1 || !hi->te_last_chunked) return -400;
        if (hi->te_other) return -501;
        m->body = SG_H1_BODY_CHUNKED;
        return 0;
    }
    if (hi->n_cl) {
        m->content_length = hi->cl;
        m->body = hi->cl ? SG_H1_BODY_LENGTH : SG_H1_BODY_NONE;
    }
    return 0;
}

static int finish_request(sg_h1_message *m, const head_info *hi)
{
    if (hi->n_host > 1) return -400;
    if (hi->n_host == 1 && !host_valid(hi->host)) return -400;
    if (hi->n_host == 0 && m->minor_version == 1) return -400;
    m->host = hi->host;
    int r = request_framing(m, hi);
    if (r) return r;
    apply_connection(m, hi);
    m->expect_continue = hi->expect_continue && m->minor_version == 1;
    m->has_te_trailers = hi->te_trailers;
    if (hi->conn_other) mark_connection_tokens(m);
    return 0;
}

int sg_h1_parse_request(const char *buf, size_t len, size_t prev_len,
                        const sg_h1_limits *limits, sg_h1_message *msg)
{
    const sg_h1_limits *lim = limits ? limits : &default_limits;
    long st = skip_empty_lines(buf, len);
    if (st == -1) return -400;
    if (st == -2) return 0;
    size_t start = (size_t)st;
    size_t end = find_head_end(buf, start, search_from(prev_len, len), len);
    if (!end) return check_incomplete_request(buf, start, len, lim);
    if (end - start > lim->max_head || end > INT_MAX) return -431;

    init_message(msg);
    size_t p = start;
    int r = parse_request_line(buf, &p, end, lim, msg);
    if (r) return r;
    size_t max_fields = lim->max_headers < SG_H1_MAX_HEADERS ? lim->max_headers
                                                              : SG_H1_MAX_HEADERS;
    head_info hi = { 0 };
    r = parse_fields(buf, p, end, lim->max_header_line, max_fields, -400, -431, msg, &hi);
    if (r) return r;
    r = finish_request(msg, &hi);
    if (r) return r;
    msg->head_len = end;
    return (int)end;
}

/* ---------------------------------------------------------------------- */
/* Responses                                                               */

/* "HTTP/1.x" SP 3DIGIT [ SP reason ] EOL. */
static int parse_status_line(const char *b, size_t *p, sg_h1_message *m)
{
    const char *s = b + *p;
    if (memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return -502;
    m->minor_version = s[7] - '0';
    if (s[9] < '1' || s[9] > '9' || !is_digit(s[10]) || !is_digit(s[11])) return -502;
    m->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    size_t i = *p + 12;
    if (b[i] == ' ') {
        size_t rs = ++i;
        while (IS(b[i], C_VALUE)) i++;
        m->reason = (sg_str){ b + rs, i - rs };
    } else {
        m->reason = (sg_str){ b + i, 0 };
    }
    if (!eat_eol(b, &i)) return -502;
    *p = i;
    return 0;
}

/* RFC 9112 6.3, in its order. */
static int response_framing(sg_h1_message *m, const head_info *hi, sg_str method)
{
    int s = m->status;
    /* As nginx, whatever the status: a second Content-Length (even an equal
     * one), a Transfer-Encoding other than exactly "chunked", or both
     * fields together is a response a cache or client behind us could
     * split differently than we do (response smuggling): 502. */
    if (hi->cl_bad || hi->n_cl > 1) return -502;
    if (hi->n_te && (hi->n_cl || hi->n_te > 1 || hi->te_bad || hi->te_chunked != 1 || hi->te_other ||
                     !hi->te_last_chunked))
        return -502;
    if (sg_str_eq_lit(method, "HEAD") || s < 200 || s == 204 || s == 304) return 0;
    if (sg_str_eq_lit(method, "CONNECT") && s < 300) {
        m->keep_alive = false;              /* the connection becomes a tunnel */
        return 0;
    }
    if (hi->n_te) {
        if (m->minor_version == 0) m->keep_alive = false;   /* faulty framing */
        m->body = SG_H1_BODY_CHUNKED;
        return 0;
    }
    if (hi->n_cl) {
        m->content_length = hi->cl;
        m->body = hi->cl ? SG_H1_BODY_LENGTH : SG_H1_BODY_NONE;
        return 0;
    }
    m->body = SG_H1_BODY_UNTIL_CLOSE;
    m->keep_alive = false;
    return 0;
}

int sg_h1_parse_response(const char *buf, size_t len, size_t prev_len,
                         sg_str request_method, sg_h1_message *msg)
{
    if (len && buf[0] != 'H') return -502;     /* fail fast on garbage */
    size_t end = find_head_end(buf, 0, search_from(prev_len, len), len);
    if (!end) return len > SG_H1_MAX_RESPONSE_HEAD ? -502 : 0;
    if (end > SG_H1_MAX_RESPONSE_HEAD || end < 13) return -502;

    init_message(msg);
    size_t p = 0;
    int r = parse_status_line(buf, &p, msg);
    if (r) return r;
    head_info hi = { 0 };
    r = parse_fields(buf, p, end, SG_H1_MAX_RESPONSE_HEAD, SG_H1_MAX_HEADERS, -502, -502,
                     msg, &hi);
    if (r) return r;
    apply_connection(msg, &hi);
    r = response_framing(msg, &hi, request_method);
    if (r) return r;
    if (hi.conn_other) mark_connection_tokens(msg);
    msg->head_len = end;
    return (int)end;
}

const sg_h1_header *sg_h1_find(const sg_h1_message *msg, const char *name)
{
    sg_str n = sg_str_from(name);
    for (size_t i = 0; i < msg->num_headers; i++)
        if (sg_str_caseeq(msg->headers[i].name, n)) return &msg->headers[i];
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Chunked transfer coding (RFC 9112 7.1)                                  */

void sg_chunked_init(sg_chunked_decoder *d)
{
    memset(d, 0, sizeof(*d));
    d->state = SG_CHUNK_SIZE;
}

static bool in_trailer(sg_chunked_state s)
{
    return s == SG_CHUNK_TRAILER_START || s == SG_CHUNK_TRAILER_LINE ||
           s == SG_CHUNK_TRAILER_VALUE || s == SG_CHUNK_TRAILER_LF;
}

static void start_size_line(sg_chunked_decoder *d)
{
    d->state = SG_CHUNK_SIZE;
    d->remaining = 0;
    d->size_digits = 0;
    d->line_len = 0;
}

/* chunk-size [ BWS ";" chunk-ext ] CRLF, one byte. */
static bool size_line_byte(sg_chunked_decoder *d, unsigned char c)
{
    if (++d->line_len > CHUNK_LINE_MAX) return false;
    switch (d->state) {
    case SG_CHUNK_SIZE: {
        int h = hex_val(c);
        if (h >= 0) {
            if (d->remaining >> 56) return false;   /* a 16th significant digit */
            d->remaining = (d->remaining << 4) | (unsigned)h;
            d->size_digits++;
            return true;
        }
        if (!d->size_digits) return false;
        if (c == '\r') d->state = SG_CHUNK_SIZE_LF;
        else if (c == ';') d->state = SG_CHUNK_EXT;
        else if (is_ows((char)c)) d->state = SG_CHUNK_SIZE_BWS;
        else return false;
        return true;
    }
    case SG_CHUNK_SIZE_BWS:
        if (c == ';') d->state = SG_CHUNK_EXT;
        else if (!is_ows((char)c)) return false;       /* "5 \r\n" */
        return true;
    case SG_CHUNK_EXT:
        if (c == '\r') d->state = SG_CHUNK_SIZE_LF;
        else if (!IS(c, C_VALUE)) return false;
        return true;
    default:
        return false;
    }
}

/* Trailer section bytes, checked like header fields; true if accepted. The
 * CR of the empty line ending the message moves to SG_CHUNK_FINAL_LF. */
static bool trailer_byte(sg_chunked_decoder *d, unsigned char c)
{
    if (++d->trailer_bytes > CHUNK_TRAILERS_MAX) return false;
    switch (d->state) {
    case SG_CHUNK_TRAILER_START:
        if (c == '\r') { d->state = SG_CHUNK_FINAL_LF; return true; }
        if (!IS(c, C_TCHAR)) return false;               /* bare LF, obs-fold */
        d->state = SG_CHUNK_TRAILER_LINE;
        return true;
    case SG_CHUNK_TRAILER_LINE:
        if (c == ':') d->state = SG_CHUNK_TRAILER_VALUE;
        else if (!IS(c, C_TCHAR)) return false;
        return true;
    case SG_CHUNK_TRAILER_VALUE:
        if (c == '\r') d->state = SG_CHUNK_TRAILER_LF;
        else if (!IS(c, C_VALUE)) return false;
        return true;
    case SG_CHUNK_TRAILER_LF:
        if (c != '\n') return false;
        d->state = SG_CHUNK_TRAILER_START;
        return true;
    default:
        return false;
    }
}

static void append_trailers(sg_strbuf *out, const char *p, size_t n)
{
    if (out && n) sg_strbuf_append(out, p, n);
}

sg_chunked_result sg_chunked_decode(sg_chunked_decoder *d, const char *in, size_t len,
                                    size_t *consumed, const char **data, size_t *data_len,
                                    sg_strbuf *trailers_out)
{
    size_t i = 0, tstart = 0;   /* tstart: where this call's trailer bytes begin */
    *data = NULL;
    *data_len = 0;
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        switch (d->state) {
        case SG_CHUNK_SIZE: case SG_CHUNK_SIZE_BWS: case SG_CHUNK_EXT:
            if (!size_line_byte(d, c)) goto error;
            i++;
            break;
        case SG_CHUNK_SIZE_LF:
            if (c != '\n') goto error;
            i++;
            if (d->remaining) {
                d->state = SG_CHUNK_DATA;
            } else {
                d->state = SG_CHUNK_TRAILER_START;   /* last-chunk */
                tstart = i;
            }
            break;
        case SG_CHUNK_DATA: {
            size_t n = len - i;
            if (n > d->remaining) n = (size_t)d->remaining;
            *data = in + i;
            *data_len = n;
            d->remaining -= n;
            if (!d->remaining) d->state = SG_CHUNK_DATA_CR;
            *consumed = i + n;
            return SG_CHUNKED_DATA;
        }
        case SG_CHUNK_DATA_CR:
            if (c != '\r') goto error;
            d->state = SG_CHUNK_DATA_LF;
            i++;
            break;
        case SG_CHUNK_DATA_LF:
            if (c != '\n') goto error;
            start_size_line(d);
            i++;
            break;
        case SG_CHUNK_TRAILER_START: case SG_CHUNK_TRAILER_LINE:
        case SG_CHUNK_TRAILER_VALUE: case SG_CHUNK_TRAILER_LF:
            if (!trailer_byte(d, c)) goto error;
            if (d->state == SG_CHUNK_FINAL_LF) append_trailers(trailers_out, in + tstart, i - tstart);
            i++;
            break;
        case SG_CHUNK_FINAL_LF:
            if (c != '\n') goto error;
            d->state = SG_CHUNK_DONE;
            *consumed = i + 1;
            return SG_CHUNKED_END;
        case SG_CHUNK_DONE:
            *consumed = i;
            return SG_CHUNKED_END;
        default:
            goto error;                         /* corrupted decoder */
        }
    }
    if (in_trailer(d->state)) append_trailers(trailers_out, in + tstart, len - tstart);
    *consumed = len;
    return d->state == SG_CHUNK_DONE ? SG_CHUNKED_END : SG_CHUNKED_MORE;
error:
    *consumed = i;
    return SG_CHUNKED_ERROR;
}

/* ---------------------------------------------------------------------- */
/* Path normalization: the algorithm of nginx's ngx_http_parse_complex_uri */

enum path_state { P_USUAL, P_SLASH, P_DOT, P_DOT_DOT };

/* Removes the segment before "/..": `u` is just past "/..". Returns the new
 * output length (just past the parent's '/'), or -1 above the root. */
static long climb(const char *out, long u)
{
    u -= 4;
    while (u >= 0 && out[u] != '/') u--;
    return u < 0 ? -1 : u + 1;
}

/* One (possibly decoded) character in state *st. Returns the new output
 * length, or -1 for ".." above the root. */
static long path_char(char *out, long u, enum path_state *st, char ch)
{
    switch (*st) {
    case P_USUAL:
        if (ch == '/') *st = P_SLASH;
        out[u++] = ch;
        return u;
    case P_SLASH:
        if (ch == '/') return u;                  /* merge_slashes */
        *st = ch == '.' ? P_DOT : P_USUAL;
        out[u++] = ch;
        return u;
    case P_DOT:
        if (ch == '/') { *st = P_SLASH; return u - 1; }
        *st = ch == '.' ? P_DOT_DOT : P_USUAL;
        out[u++] = ch;
        return u;
    case P_DOT_DOT:
        if (ch == '/') { *st = P_SLASH; return climb(out, u); }
        *st = P_USUAL;
        out[u++] = ch;
        return u;
    }
    return -1;
}

long sg_h1_normalize_path(sg_str path, char *out)
{
    if (path.n == 0 || path.p[0] != '/') return -1;
    enum path_state st = P_USUAL;
    long u = 0;
    for (size_t i = 0; i < path.n; i++) {
        char ch = path.p[i];
        if (ch == '?' || ch == '#') break;     /* nginx: the path ends there */
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= path.n) return -1;
            hi = hex_val((unsigned char)path.p[i + 1]);
            lo = hex_val((unsigned char)path.p[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            ch = (char)(hi << 4 | lo);
            i += 2;
            if (ch == '\0') return -1;
            if (ch == '%' || ch == '#' || ch == '?') {   /* literal, never special */
                out[u++] = ch;
                st = P_USUAL;
                continue;
            }
        }
        u = path_char(out, u, &st, ch);
        if (u < 0) return -1;
    }
    /* A trailing "/." or "/.." is a directory reference too. */
    if (st == P_DOT) u--;
    else if (st == P_DOT_DOT) u = climb(out, u);
    return u;
}
