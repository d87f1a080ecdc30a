/* The endpoints (path only; every response has X-Backend: <local port>):
 *   /, anything else   200 "sgback PORT\n"
 *   /headers           200, body = the raw request head as received
 *   /echo              200, body = request body, streamed (Content-Length if
 *                      the request had one, else chunked)
 *   /sink              reads the body, 200 "received N\n"
 *   /bytes/N           N pattern bytes; ?chunked=1: 16 KB chunks + X-Trailer
 *   /status/CODE       that status, body "status CODE\n" (none for 1xx/204/304;
 *                      a 1xx is sent alone and the connection closed)
 *   /delay/MS          "sgback PORT\n" after MS ms
 *   /close             "sgback PORT\n" with Connection: close
 *   /drop              closes at once, no answer
 *   /stats, /stats/reset   counters as JSON (reset zeroes accepted, requests)
 *   /ws/echo, /ws/chat WebSocket upgrades (ws.c: echo; chat.c: the chat room);
 *                      without a valid handshake 426 or 400
 *   /chat              the chat web page (chat_page.h)
 * A malformed number in /bytes, /status, /delay answers 400 (keep-alive).
 *
 * Each request goes through sgb_route_begin (head parsed),
 * optionally sgb_route_echo (body bytes), sgb_route_body_done (body fully
 * read), and then sgb_route_generate or sgb_route_timer if its answer
 * takes longer. Everything but /echo and /headers answers only after the
 * whole request body has been read, so that a keep-alive connection is
 * always positioned at the next request when the answer ends. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "sgback.h"
#include "chat_page.h"
#include "core/str.h"

#define PATTERN "0123456789abcdef"
#define PATTERN_LEN 16
#define BYTES_SEG (64 * 1024)     /* one static segment of /bytes output */
#define BYTES_CHUNK (16 * 1024)   /* chunk size of /bytes?chunked=1 */
#define TRAILER "0\r\nX-Trailer: done\r\n\r\n"

/* Body bytes are served straight from this buffer (no copy): byte i of a
 * /bytes body is PATTERN[i % 16], so any offset starts at pattern + i%16. */
static char pattern[BYTES_SEG + PATTERN_LEN];

void sgb_routes_init(void)
{
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = PATTERN[i % PATTERN_LEN];
}

/* ---------------- response heads ---------------- */

typedef enum framing {
    FR_LENGTH,     /* Content-Length */
    FR_CHUNKED,    /* Transfer-Encoding: chunked */
    FR_NONE,       /* 204/304: no body and no length */
    FR_CLOSE,      /* HTTP/1.0 peer, unknown length: delimited by close */
} framing;

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

/* `extra` holds whole header lines (each ending in CRLF) or is "". */
static void resp_head(sgb_conn *c, int status, const char *ctype, framing fr,
                      uint64_t len, const char *extra)
{
    sgb_req *r = &c->req;
    char framing_line[64] = "";
    if (fr == FR_CLOSE)
        r->keep_alive = false;
    if (fr == FR_LENGTH)
        snprintf(framing_line, sizeof framing_line, "Content-Length: %" PRIu64 "\r\n", len);
    else if (fr == FR_CHUNKED)
        snprintf(framing_line, sizeof framing_line, "Transfer-Encoding: chunked\r\n");
    const char *conn = !r->keep_alive ? "Connection: close\r\n"
                     : r->http10 ? "Connection: keep-alive\r\n" : "";
    sgb_out_printf(c, "HTTP/1.1 %d %s\r\nX-Backend: %u\r\n%s%s%s%s%s%s\r\n",
                   status, reason(status), (unsigned)c->port,
                   ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
                   framing_line, extra, conn);
    r->started = true;
    r->chunked_out = fr == FR_CHUNKED;
}

/* A complete small response; the body is dropped for HEAD. */
static void respond(sgb_conn *c, int status, const char *ctype, const char *body, size_t n)
{
    resp_head(c, status, ctype, FR_LENGTH, n, "");
    if (!c->req.head_method)
        sgb_out_copy(c, body, n);
    sgb_req_done(c);
}

static void respond_hello(sgb_conn *c)
{
    char body[32];
    int n = snprintf(body, sizeof body, "sgback %u\n", (unsigned)c->port);
    respond(c, 200, "text/plain", body, (size_t)n);
}

/* ---------------- request targets ---------------- */

/* Splits the target into path and query; absolute-form targets
 * ("http://host/p") are reduced to their path. */
static void split_target(sg_str t, sg_str *path, sg_str *query)
{
    const char *p = t.p, *end = t.p + t.n;
    if (t.n > 0 && *p != '/') {
        const char *s = memmem(p, t.n, "://", 3);
        if (s) {
            const char *slash = memchr(s + 3, '/', (size_t)(end - s - 3));
            p = slash ? slash : end;
        }
    }
    const char *q = memchr(p, '?', (size_t)(end - p));
    *path = (sg_str){ p, (size_t)((q ? q : end) - p) };
    *query = q ? (sg_str){ q + 1, (size_t)(end - q - 1) } : (sg_str){ end, 0 };
}

/* True if the query holds exactly the parameter `param` (e.g. "chunked=1"). */
static bool query_has(sg_str query, const char *param)
{
    size_t plen = strlen(param);
    const char *p = query.p, *end = query.p + query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) == plen && memcmp(p, param, plen) == 0)
            return true;
        p = e + 1;
    }
    return false;
}

uint64_t sgb_default_delay_ms;

/* If `path` is `prefix` followed by a decimal number, stores it. */
static bool path_number(sg_str path, const char *prefix, uint64_t *out, bool *bad)
{
    size_t plen = strlen(prefix);
    if (path.n <= plen || memcmp(path.p, prefix, plen) != 0)
        return false;
    *bad = !sg_str_to_u64((sg_str){ path.p + plen, path.n - plen }, out);
    return true;
}

static sgb_route match(sgb_req *r, sg_str target, bool *bad)
{
    sg_str path, query;
    split_target(target, &path, &query);
    *bad = false;
    if (sg_str_eq_lit(path, "/headers"))
        return SGB_R_HEADERS;
    if (sg_str_eq_lit(path, "/echo"))
        return SGB_R_ECHO;
    if (sg_str_eq_lit(path, "/sink"))
        return SGB_R_SINK;
    if (sg_str_eq_lit(path, "/close"))
        return SGB_R_CLOSE;
    if (sg_str_eq_lit(path, "/drop"))
        return SGB_R_DROP;
    if (sg_str_eq_lit(path, "/stats"))
        return SGB_R_STATS;
    if (sg_str_eq_lit(path, "/stats/reset"))
        return SGB_R_STATS_RESET;
    if (sg_str_eq_lit(path, "/ws/echo"))
        return SGB_R_WS_ECHO;
    if (sg_str_eq_lit(path, "/ws/chat"))
        return SGB_R_WS_CHAT;
    if (sg_str_eq_lit(path, "/chat") || sg_str_eq_lit(path, "/chat/"))
        return SGB_R_CHAT_PAGE;
    if (path_number(path, "/bytes/", &r->n, bad)) {
        r->chunked_out = query_has(query, "chunked=1");
        return SGB_R_BYTES;
    }
    if (path_number(path, "/status/", &r->n, bad)) {
        *bad = *bad || r->n < 100 || r->n > 999;
        return SGB_R_STATUS;
    }
    if (path_number(path, "/delay/", &r->n, bad)) {
        *bad = *bad || r->n > 3600 * 1000;
        return SGB_R_DELAY;
    }
    if (sgb_default_delay_ms) {
        r->n = sgb_default_delay_ms;
        return SGB_R_DELAY;
    }
    return SGB_R_HELLO;
}

/* ---------------- request lifecycle ---------------- */

static void begin_echo(sgb_conn *c, const sg_h1_message *m)
{
    sgb_req *r = &c->req;
    const sg_h1_header *ct = sg_h1_find(m, "Content-Type");
    char extra[SGB_IBUF / 2];
    extra[0] = 0;
    if (ct && ct->value.n < sizeof extra - 32)
        snprintf(extra, sizeof extra, "Content-Type: %.*s\r\n", (int)ct->value.n, ct->value.p);
    const char *ctype = ct ? NULL : "application/octet-stream";
    if (m->body == SG_H1_BODY_CHUNKED)
        resp_head(c, 200, ctype, r->http10 ? FR_CLOSE : FR_CHUNKED, 0, extra);
    else
        resp_head(c, 200, ctype, FR_LENGTH,
                  m->body == SG_H1_BODY_LENGTH ? m->content_length : 0, extra);
    r->echo = !r->head_method;
}

/* A WebSocket handshake: a valid one queues the 101 now (the connection
 * is handed to ws.c when the request is done); else r->n is the status
 * answered after the body. */
static void begin_ws(sgb_conn *c, const sg_h1_message *m)
{
    sgb_req *r = &c->req;
    sg_str path, query;
    split_target(m->target, &path, &query);
    char accept[32], proto[64];
    int status = sgb_ws_handshake(m, query, accept, proto);
    if (status != 101) {
        r->n = (uint64_t)status;
        return;
    }
    sgb_out_printf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s"
                      "X-Backend: %u\r\n\r\n",
                   accept, proto[0] ? "Sec-WebSocket-Protocol: " : "", proto,
                   proto[0] ? "\r\n" : "", (unsigned)c->port);
    r->upgrade = true;
    r->started = true;
    r->keep_alive = false;
}

static void respond_ws_refused(sgb_conn *c, int status)
{
    static const char need[] = "this is a WebSocket endpoint: send Upgrade: websocket, "
                               "Connection: Upgrade, Sec-WebSocket-Version: 13\n";
    static const char bad[] = "bad WebSocket handshake\n";
    const char *body = status == 426 ? need : bad;
    size_t n = strlen(body);
    /* RFC 9110 15.5.22: a 426 names the protocol to upgrade to */
    resp_head(c, status, "text/plain", FR_LENGTH, n,
              status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" : "");
    if (!c->req.head_method)
        sgb_out_copy(c, body, n);
    sgb_req_done(c);
}

static void respond_chat_page(sgb_conn *c)
{
    resp_head(c, 200, "text/html; charset=utf-8", FR_LENGTH, sizeof sgb_chat_page - 1,
              "Cache-Control: no-cache\r\n");
    if (!c->req.head_method)
        sgb_out_static(c, sgb_chat_page, sizeof sgb_chat_page - 1);
    sgb_req_done(c);
}

void sgb_route_begin(sgb_conn *c, const sg_h1_message *m, const char *head, size_t head_len)
{
    sgb_req *r = &c->req;
    memset(r, 0, sizeof *r);
    r->head_method = sg_str_eq_lit(m->method, "HEAD");
    r->keep_alive = m->keep_alive;
    r->http10 = m->minor_version == 0;
    bool bad;
    r->route = match(r, m->target, &bad);
    r->chunked_out = r->chunked_out && !bad;
    if (bad) {
        /* Answered like a bad request, but after the body (keep-alive
         * stays usable): remembered as a status route. */
        r->route = SGB_R_STATUS;
        r->n = 400;
        r->chunked_out = false;
    }
    if (r->route == SGB_R_DROP) {
        sgb_conn_drop(c);
        return;
    }
    if (m->expect_continue && m->body != SG_H1_BODY_NONE && !r->http10)
        sgb_out_copy(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (r->route == SGB_R_HEADERS) {
        resp_head(c, 200, "text/plain", FR_LENGTH, head_len, "");
        if (!r->head_method)
            sgb_out_copy(c, head, head_len);
    } else if (r->route == SGB_R_ECHO) {
        begin_echo(c, m);
    } else if (r->route == SGB_R_WS_ECHO || r->route == SGB_R_WS_CHAT) {
        begin_ws(c, m);
    }
}

size_t sgb_route_echo_room(const sgb_conn *c)
{
    /* Keep space for a chunk-size line and the last-chunk. */
    const size_t reserve = 64;
    size_t room = sgb_out_room(c);
    if (c->queued >= SGB_HIGH || sgb_out_segs_free(c) < 2 || room <= reserve)
        return 0;
    return room - reserve;
}

void sgb_route_echo(sgb_conn *c, const char *p, size_t n)
{
    if (c->req.chunked_out) {
        sgb_out_printf(c, "%zx\r\n", n);
        sgb_out_copy(c, p, n);
        sgb_out_copy(c, "\r\n", 2);
    } else {
        sgb_out_copy(c, p, n);
    }
}

static void respond_status(sgb_conn *c, int status)
{
    sgb_req *r = &c->req;
    if (status < 200) {
        /* An interim status alone: nothing final follows, so close. */
        sgb_out_printf(c, "HTTP/1.1 %d %s\r\nX-Backend: %u\r\n\r\n",
                       status, reason(status), (unsigned)c->port);
        r->started = true;
        r->keep_alive = false;
        sgb_req_done(c);
        return;
    }
    if (status == 204 || status == 304) {
        resp_head(c, status, NULL, FR_NONE, 0, "");
        sgb_req_done(c);
        return;
    }
    char body[32];
    int n = snprintf(body, sizeof body, "status %d\n", status);
    respond(c, status, "text/plain", body, (size_t)n);
}

static void respond_stats(sgb_conn *c, bool reset)
{
    if (reset) {
        atomic_store(&sgb_counters.accepted, 0);
        atomic_store(&sgb_counters.requests, 0);
    }
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"accepted\": %llu, \"open\": %llu, \"requests\": %llu}\n",
                     (unsigned long long)atomic_load(&sgb_counters.accepted),
                     (unsigned long long)atomic_load(&sgb_counters.open),
                     (unsigned long long)atomic_load(&sgb_counters.requests));
    respond(c, 200, "application/json", body, (size_t)n);
}

static void begin_bytes(sgb_conn *c)
{
    sgb_req *r = &c->req;
    if (r->chunked_out)
        resp_head(c, 200, "application/octet-stream", r->http10 ? FR_CLOSE : FR_CHUNKED, 0,
                  r->http10 ? "" : "Trailer: X-Trailer\r\n");
    else
        resp_head(c, 200, "application/octet-stream", FR_LENGTH, r->n, "");
    if (r->head_method)
        sgb_req_done(c);
    else
        c->st = SGB_ST_GEN;   /* sgb_route_generate produces the body */
}

void sgb_route_body_done(sgb_conn *c)
{
    sgb_req *r = &c->req;
    switch (r->route) {
    case SGB_R_HEADERS:
        sgb_req_done(c);
        break;
    case SGB_R_ECHO:
        if (r->chunked_out && !r->head_method)
            sgb_out_copy(c, "0\r\n\r\n", 5);
        sgb_req_done(c);
        break;
    case SGB_R_SINK: {
        char body[48];
        int n = snprintf(body, sizeof body, "received %" PRIu64 "\n", r->body_bytes);
        respond(c, 200, "text/plain", body, (size_t)n);
        break;
    }
    case SGB_R_BYTES:
        begin_bytes(c);
        break;
    case SGB_R_STATUS:
        respond_status(c, (int)r->n);
        break;
    case SGB_R_DELAY:
        sgb_conn_wait(c, r->n);
        break;
    case SGB_R_CLOSE:
        r->keep_alive = false;
        respond_hello(c);
        break;
    case SGB_R_STATS:
    case SGB_R_STATS_RESET:
        respond_stats(c, r->route == SGB_R_STATS_RESET);
        break;
    case SGB_R_WS_ECHO:
    case SGB_R_WS_CHAT:
        if (r->upgrade)
            sgb_conn_upgrade(c);
        else
            respond_ws_refused(c, (int)r->n);
        break;
    case SGB_R_CHAT_PAGE:
        respond_chat_page(c);
        break;
    case SGB_R_DROP:   /* never gets here: dropped at begin */
    case SGB_R_HELLO:
        respond_hello(c);
        break;
    }
}

void sgb_route_timer(sgb_conn *c)
{
    respond_hello(c);
}

/* Queues one more piece of /bytes; false when the queue is full. */
static bool generate_piece(sgb_conn *c)
{
    sgb_req *r = &c->req;
    uint64_t left = r->n - r->done;
    const char *from = pattern + r->done % PATTERN_LEN;
    if (c->queued >= SGB_HIGH)
        return false;
    if (!r->chunked_out || r->http10) {
        if (sgb_out_segs_free(c) < 1)
            return false;
        size_t take = left < BYTES_SEG ? (size_t)left : BYTES_SEG;
        sgb_out_static(c, from, take);
        r->done += take;
        return true;
    }
    if (sgb_out_segs_free(c) < 3 || sgb_out_room(c) < 32)
        return false;
    size_t take = left < BYTES_CHUNK ? (size_t)left : BYTES_CHUNK;
    sgb_out_printf(c, "%zx\r\n", take);
    sgb_out_static(c, from, take);
    sgb_out_static(c, "\r\n", 2);
    r->done += take;
    return true;
}

bool sgb_route_generate(sgb_conn *c)
{
    sgb_req *r = &c->req;
    bool progress = false;
    while (r->done < r->n && generate_piece(c))
        progress = true;
    if (r->done < r->n)
        return progress;
    if (r->chunked_out && !r->http10) {
        if (sgb_out_room(c) < sizeof TRAILER || sgb_out_segs_free(c) < 1)
            return progress;
        sgb_out_copy(c, TRAILER, sizeof TRAILER - 1);
    }
    sgb_req_done(c);
    return true;
}

void sgb_route_bad(sgb_conn *c, int status)
{
    sgb_req *r = &c->req;
    memset(r, 0, sizeof *r);
    r->route = SGB_R_STATUS;
    r->n = (uint64_t)status;
    r->keep_alive = false;
    char body[32];
    int n = snprintf(body, sizeof body, "status %d\n", status);
    respond(c, status, "text/plain", body, (size_t)n);
}
