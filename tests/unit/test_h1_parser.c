/* HTTP/1.1 parser: what a client or a backend sending these bytes gets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parser.h"

static const sg_h1_limits lim = { 1024, 1024, 4096, 20 };
static sg_h1_message M;   /* large: keep it off the stack */

/* Parses a copy of exactly n bytes so that ASan catches any read past it. */
static int parse_n(const char *s, size_t n, size_t prev, const sg_h1_limits *l)
{
    char *b = malloc(n ? n : 1);
    memcpy(b, s, n);
    int r = sg_h1_parse_request(b, n, prev, l, &M);
    /* slices must not outlive b: tests only look at them through `s` */
    for (size_t i = 0; r > 0 && i < M.num_headers; i++) {
        M.headers[i].name.p = s + (M.headers[i].name.p - b);
        M.headers[i].value.p = s + (M.headers[i].value.p - b);
    }
    if (r > 0) {
        M.method.p = s + (M.method.p - b);
        M.target.p = s + (M.target.p - b);
        if (M.host.p) M.host.p = s + (M.host.p - b);
        if (M.upgrade.p) M.upgrade.p = s + (M.upgrade.p - b);
    }
    free(b);
    return r;
}

static int req(const char *s)
{
    return parse_n(s, strlen(s), 0, &lim);
}

/* Feeds the request one byte at a time, as a slow client would: every
 * prefix must answer 0 until the head is complete. Returns the final answer. */
static int req_bytewise(const char *s, const sg_h1_limits *l)
{
    size_t n = strlen(s);
    for (size_t i = 1; i <= n; i++) {
        int r = parse_n(s, i, i - 1, l);
        if (r != 0 || i == n) return r;
    }
    return 0;
}

static int resp_n(const char *s, size_t n, size_t prev, const char *method)
{
    char *b = malloc(n ? n : 1);
    memcpy(b, s, n);
    int r = sg_h1_parse_response(b, n, prev, sg_str_from(method), &M);
    if (r > 0) {
        M.reason.p = s + (M.reason.p - b);
        if (M.upgrade.p) M.upgrade.p = s + (M.upgrade.p - b);
        for (size_t i = 0; i < M.num_headers; i++) {
            M.headers[i].name.p = s + (M.headers[i].name.p - b);
            M.headers[i].value.p = s + (M.headers[i].value.p - b);
        }
    }
    free(b);
    return r;
}

static int resp(const char *s, const char *method)
{
    return resp_n(s, strlen(s), 0, method);
}

#define HDR_EQ(idx, nm, val) do { \
        cr_assert(sg_str_eq_lit(M.headers[idx].name, nm), "header %d name", idx); \
        cr_assert(sg_str_eq_lit(M.headers[idx].value, val), "header %d value '%.*s'", idx, \
                  (int)M.headers[idx].value.n, M.headers[idx].value.p); \
    } while (0)

/* ---------------------------------------------------------------- requests */

Test(h1_request, simple_get)
{
    const char *s = "GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\n"
                    "User-Agent:  curl/8 \t\r\nAccept: */*\r\n\r\n";
    cr_assert_eq(req(s), (int)strlen(s));
    cr_assert(sg_str_eq_lit(M.method, "GET"));
    cr_assert(sg_str_eq_lit(M.target, "/index.html?a=1"));
    cr_assert_eq(M.minor_version, 1);
    cr_assert_eq(M.num_headers, 3);
    HDR_EQ(0, "Host", "example.com");
    HDR_EQ(1, "User-Agent", "curl/8");
    HDR_EQ(2, "Accept", "*/*");
    cr_assert(sg_str_eq_lit(M.host, "example.com"));
    cr_assert(M.keep_alive);
    cr_assert_not(M.connection_close);
    cr_assert_eq(M.body, SG_H1_BODY_NONE);
    cr_assert_eq(M.head_len, strlen(s));
    cr_assert_eq(M.headers[0].flags, 0);
}

Test(h1_request, incomplete_returns_zero)
{
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a\r\n"), 0);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0);
    cr_assert_eq(req(""), 0);
    cr_assert_eq(req("\r"), 0);
    cr_assert_eq(req("\r\n"), 0);
}

Test(h1_request, pipelined)
{
    const char *s = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                    "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t n = strlen(s);
    int r1 = parse_n(s, n, 0, &lim);
    cr_assert_eq(r1, (int)strlen("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
    cr_assert(sg_str_eq_lit(M.target, "/a"));
    int r2 = parse_n(s + r1, n - r1, 0, &lim);
    cr_assert_gt(r2, 0);
    cr_assert(sg_str_eq_lit(M.target, "/b"));
    cr_assert_eq(M.body, SG_H1_BODY_LENGTH);
    cr_assert_eq(M.content_length, 3);
    size_t off = (size_t)r1 + (size_t)r2 + 3;
    int r3 = parse_n(s + off, n - off, 0, &lim);
    cr_assert_eq((size_t)r3, n - off);
    cr_assert(sg_str_eq_lit(M.target, "/c"));
}

Test(h1_request, leading_empty_lines)
{
    const char *s = "\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    cr_assert_eq(req(s), (int)strlen(s));
    cr_assert(sg_str_eq_lit(M.method, "GET"));
    cr_assert_gt(req("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert_eq(req("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
}

Test(h1_request, bare_lf_accepted)
{
    const char *s = "GET / HTTP/1.1\nHost: h\nX: 1\n\n";
    cr_assert_eq(req(s), (int)strlen(s));
    cr_assert_eq(M.num_headers, 2);
    HDR_EQ(1, "X", "1");
    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: h\n\r\n"), 0);
    cr_assert_gt(req("GET / HTTP/1.1\nHost: h\r\n\n"), 0);
}

Test(h1_request, http10)
{
    cr_assert_gt(req("GET / HTTP/1.0\r\n\r\n"), 0);
    cr_assert_eq(M.minor_version, 0);
    cr_assert_not(M.keep_alive);
    cr_assert_eq(M.host.n, 0);
    cr_assert_gt(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0);
    cr_assert(M.keep_alive);
    cr_assert_gt(req("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), 0);
    cr_assert_not(M.keep_alive);
    cr_assert_gt(req("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), 0);
    cr_assert_not(M.expect_continue);
}

Test(h1_request, body_framing)
{
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_LENGTH);
    cr_assert_eq(M.content_length, 42);
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_NONE);
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n"), 0);
    cr_assert_eq(M.content_length, 7);
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n"), 0);
    cr_assert_eq(M.content_length, UINT64_C(1) << 62);
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_CHUNKED);
    cr_assert_eq(M.headers[1].flags & SG_H1_HDR_HOP, SG_H1_HDR_HOP);
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ChUnKeD\r\n\r\n"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_CHUNKED);
}

Test(h1_request, target_forms)
{
    cr_assert_gt(req("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"), 0);
    cr_assert(sg_str_eq_lit(M.target, "http://example.com/x?y"));
    cr_assert_gt(req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 0);
    cr_assert(sg_str_eq_lit(M.target, "example.com:443"));
    cr_assert_gt(req("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"), 0);
    cr_assert_gt(req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert(sg_str_eq_lit(M.target, "*"));
    cr_assert_eq(req("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET index.html HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET http:/x HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
}

Test(h1_request, request_line_errors)
{
    cr_assert_eq(req("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET /\r\nHost: h\r\n\r\n"), -400);          /* HTTP/0.9 */
    cr_assert_eq(req("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n"), -400);   /* bare CR */
    cr_assert_eq(req("GET / HTTP/1.1\rHost: h\r\n\r\n"), -400);
}

Test(h1_request, versions)
{
    cr_assert_eq(req("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), -505);
    /* RFC 9110 2.5: a later 1.x is handled as HTTP/1.1 */
    cr_assert_gt(req("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 0);
    cr_assert_eq(req("GET / HTTP/3\r\nHost: h\r\n\r\n"), -505);
    cr_assert_eq(req("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), -505);
    cr_assert_eq(req("GET / http/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/11\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.11\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1x\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / FTP/1.1\r\nHost: h\r\n\r\n"), -400);
}

Test(h1_request, header_syntax_errors)
{
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A\t: 1\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tfolded\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01" "b\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\r\n\r\n"), -400);
    /* NUL inside a value */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
    cr_assert_eq(parse_n(nul, sizeof(nul) - 1, 0, &lim), -400);
}

Test(h1_request, header_values)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Ws: \t \r\n"
                    "X-Obs: caf\xc3\xa9\r\nX-In:  a  b  \r\n\r\n";
    cr_assert_gt(req(s), 0);
    HDR_EQ(1, "X-Empty", "");
    HDR_EQ(2, "X-Ws", "");
    HDR_EQ(3, "X-Obs", "caf\xc3\xa9");
    HDR_EQ(4, "X-In", "a  b");
    cr_assert_not_null(sg_h1_find(&M, "x-in"));
    cr_assert_eq(sg_h1_find(&M, "x-in"), &M.headers[4]);
    cr_assert_null(sg_h1_find(&M, "x-none"));
}

Test(h1_request, host_rules)
{
    cr_assert_eq(req("GET / HTTP/1.1\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: u@h\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a..b\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.1\r\nHost:\r\n\r\n"), -400);
    cr_assert_eq(req("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), -400);
    cr_assert_gt(req("GET / HTTP/1.1\r\nhost: Example.COM:8080\r\n\r\n"), 0);
    cr_assert(sg_str_eq_lit(M.host, "Example.COM:8080"));
    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), 0);
    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n"), 0);
}

Test(h1_request, content_length_errors)
{
    const char *bad[] = { "+5", "-1", "5 5", "0x10", "5,5", "", "5.0", "1e3",
                          "99999999999999999999", "4611686018427387905",
                          "18446744073709551616" };
    char buf[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n", bad[i]);
        cr_assert_eq(req(buf), -400, "Content-Length: '%s'", bad[i]);
    }
    cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), -400);
    cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n"), -400);
}

Test(h1_request, transfer_encoding_rules)
{
#define TE_REQ(v) "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " v "\r\n\r\n"
    cr_assert_eq(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), -400);
    cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), -400);
    cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), -400);
    cr_assert_eq(req(TE_REQ("gzip")), -400);
    cr_assert_eq(req(TE_REQ("chunked, gzip")), -400);
    cr_assert_eq(req(TE_REQ("chunked, chunked")), -400);
    cr_assert_eq(req(TE_REQ("")), -400);
    cr_assert_eq(req(TE_REQ(", chunked")), -400);
    cr_assert_eq(req(TE_REQ("chunked,")), -400);
    cr_assert_eq(req(TE_REQ("chunked;a=b")), -400);
    cr_assert_eq(req(TE_REQ("\"chunked\"")), -400);
    cr_assert_eq(req(TE_REQ("chunked x")), -400);
    cr_assert_eq(req(TE_REQ("gzip, chunked")), -501);
    cr_assert_eq(req(TE_REQ("identity, chunked")), -501);
    cr_assert_eq(req(TE_REQ("gzip,chunked")), -501);
    cr_assert_gt(req(TE_REQ("chunked")), 0);
    cr_assert_gt(req(TE_REQ(" chunked ")), 0);
    /* the list continues over several field lines */
    cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"), -400);
    cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"), -501);
    cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                     "Transfer-Encoding: gzip\r\n\r\n"), -400);
#undef TE_REQ
}

Test(h1_request, connection_and_hop_headers)
{
    const char *s = "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade, X-Secret\r\n"
                    "Upgrade: websocket\r\nKeep-Alive: 300\r\nProxy-Connection: x\r\n"
                    "TE: trailers, deflate;q=0.5\r\nTrailer: X-T\r\nX-Secret: 1\r\n"
                    "Proxy-Authorization: Basic x\r\nX-Other: 2\r\n\r\n";
    cr_assert_gt(req(s), 0);
    cr_assert(M.keep_alive);
    cr_assert(sg_str_eq_lit(M.upgrade, "websocket"));
    cr_assert(M.has_te_trailers);
    for (size_t i = 1; i <= 7; i++)
        cr_assert(M.headers[i].flags & SG_H1_HDR_HOP, "header %zu should be hop", i);
    cr_assert_eq(M.headers[0].flags, 0);          /* Host */
    cr_assert_eq(M.headers[8].flags, 0);          /* Proxy-Authorization */
    cr_assert_eq(M.headers[9].flags, 0);

    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n"), 0);
    cr_assert_not(M.keep_alive);
    cr_assert(M.connection_close);
    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n"), 0);
    cr_assert_eq(M.upgrade.n, 0);                 /* no Upgrade header */
    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"), 0);
    cr_assert_eq(M.upgrade.n, 0);                 /* not a Connection token */
    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n"), 0);
    cr_assert_not(M.has_te_trailers);
    /* Listing Host in Connection does not strip it. */
    cr_assert_gt(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: host, content-length\r\n\r\n"), 0);
    cr_assert_eq(M.headers[0].flags, 0);
}

Test(h1_request, expect_continue)
{
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"), 0);
    cr_assert(M.expect_continue);
    cr_assert_gt(req("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continuex\r\n\r\n"), 0);
    cr_assert_not(M.expect_continue);
}

/* ------------------------------------------------------------------ limits */

static char *repeat(char c, size_t n)
{
    char *p = malloc(n + 1);
    memset(p, c, n);
    p[n] = 0;
    return p;
}

Test(h1_limits, request_line)
{
    const sg_h1_limits l = { 64, 128, 1024, 10 };
    char buf[512];
    /* "GET /" + pad + " HTTP/1.1" = 64 bytes exactly: accepted */
    char *pad = repeat('a', 64 - 14);
    snprintf(buf, sizeof buf, "GET /%s HTTP/1.1\r\nHost: h\r\n\r\n", pad);
    cr_assert_gt(parse_n(buf, strlen(buf), 0, &l), 0);
    free(pad);
    pad = repeat('a', 64 - 13);
    snprintf(buf, sizeof buf, "GET /%s HTTP/1.1\r\nHost: h\r\n\r\n", pad);
    cr_assert_eq(parse_n(buf, strlen(buf), 0, &l), -414);
    cr_assert_eq(req_bytewise(buf, &l), -414);
    free(pad);
    /* incomplete and already too long: answered at once */
    pad = repeat('a', 100);
    snprintf(buf, sizeof buf, "GET /%s", pad);
    cr_assert_eq(parse_n(buf, strlen(buf), 0, &l), -414);
    cr_assert_eq(parse_n(buf, 66, 0, &l), -414);
    cr_assert_eq(parse_n(buf, 64, 0, &l), 0);
    free(pad);
}

Test(h1_limits, header_line)
{
    const sg_h1_limits l = { 64, 32, 1024, 10 };
    char buf[512];
    char *pad = repeat('v', 32 - 3);            /* "X: " + pad = 32 */
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: %s\r\n\r\n", pad);
    cr_assert_gt(parse_n(buf, strlen(buf), 0, &l), 0);
    free(pad);
    pad = repeat('v', 32 - 2);
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: %s\r\n\r\n", pad);
    cr_assert_eq(parse_n(buf, strlen(buf), 0, &l), -431);
    cr_assert_eq(req_bytewise(buf, &l), -431);
    free(pad);
    /* an unterminated header line growing past the limit */
    pad = repeat('v', 200);
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: %s", pad);
    cr_assert_eq(parse_n(buf, strlen(buf), 0, &l), -431);
    free(pad);
}

Test(h1_limits, whole_head_and_count)
{
    const sg_h1_limits l = { 64, 64, 100, 3 };
    cr_assert_gt(parse_n("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", 40, 0, &l), 0);
    const char *four = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    cr_assert_eq(parse_n(four, strlen(four), 0, &l), -400, "more fields than max_headers: 400, as nginx");
    char buf[512] = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int i = 0; i < 8; i++) strcat(buf, "X-Long-Name: 0123456789\r\n");
    cr_assert_eq(parse_n(buf, strlen(buf), 0, &l), -431);      /* incomplete */
    strcat(buf, "\r\n");
    cr_assert_eq(parse_n(buf, strlen(buf), 0, &l), -431);
    cr_assert_eq(req_bytewise(buf, &l), -431);
    /* max_headers is capped by SG_H1_MAX_HEADERS */
    const sg_h1_limits big = { 1024, 1024, 1 << 20, 100000 };
    size_t cap = 64 + (SG_H1_MAX_HEADERS + 1) * 8;
    char *many = malloc(cap);
    strcpy(many, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < SG_H1_MAX_HEADERS; i++) strcat(many, "A: 1\r\n");
    strcat(many, "\r\n");
    cr_assert_eq(parse_n(many, strlen(many), 0, &big), -400);
    free(many);
}

Test(h1_limits, null_limits_use_defaults)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    cr_assert_eq(sg_h1_parse_request(s, strlen(s), 0, NULL, &M), (int)strlen(s));
}

/* -------------------------------------------------------------- incremental */

Test(h1_incremental, bytewise_same_result)
{
    const char *cases[] = {
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "\r\nGET /x HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\n\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int whole = req(cases[i]);
        cr_assert_eq(req_bytewise(cases[i], &lim), whole, "case %zu", i);
    }
}

Test(h1_incremental, split_anywhere_with_prev_len)
{
    const char *s = "PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nX: 1\r\n\r\n";
    size_t n = strlen(s);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(parse_n(s, k, 0, &lim), 0);
        cr_assert_eq(parse_n(s, n, k, &lim), (int)n, "split %zu", k);
        cr_assert_eq(M.content_length, 10);
    }
}

/* --------------------------------------------------------------- responses */

Test(h1_response, basic)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    cr_assert_eq(resp(s, "GET"), (int)strlen(s) - 5);
    cr_assert_eq(M.status, 200);
    cr_assert(sg_str_eq_lit(M.reason, "OK"));
    cr_assert_eq(M.body, SG_H1_BODY_LENGTH);
    cr_assert_eq(M.content_length, 5);
    cr_assert(M.keep_alive);
    cr_assert_gt(resp("HTTP/1.1 404 Not  Found \r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    cr_assert(sg_str_eq_lit(M.reason, "Not  Found "));
    cr_assert_eq(M.body, SG_H1_BODY_NONE);
    cr_assert_gt(resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    cr_assert_eq(M.reason.n, 0);
    cr_assert_gt(resp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    cr_assert_eq(M.reason.n, 0);
    cr_assert_gt(resp("HTTP/1.1 200 OK\nContent-Length: 0\n\n", "GET"), 0);
}

Test(h1_response, framing_no_body)
{
    const char *cl = "Content-Length: 10\r\n\r\n";
    char buf[256];
    const char *st[] = { "100 Continue", "101 Switching", "204 No Content", "304 Not Modified" };
    for (size_t i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "HTTP/1.1 %s\r\n%s", st[i], cl);
        cr_assert_gt(resp(buf, "GET"), 0);
        cr_assert_eq(M.body, SG_H1_BODY_NONE, "%s", st[i]);
    }
    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_NONE);
    cr_assert(M.keep_alive);
    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_NONE);
    cr_assert_gt(resp("HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_NONE);
    cr_assert_not(M.keep_alive);
    cr_assert_gt(resp("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", "CONNECT"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_LENGTH);
    cr_assert_gt(resp("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      "Upgrade: websocket\r\n\r\n", "GET"), 0);
    cr_assert(sg_str_eq_lit(M.upgrade, "websocket"));
}

Test(h1_response, framing_te_and_cl)
{
    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_CHUNKED);
    cr_assert(M.keep_alive);
    /* nginx: any coding but exactly "chunked", or Content-Length with it, is 502 */
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "GET"), -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"), -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"),
                 -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", "GET"),
                 -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                      "GET"), -502);
    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "GET"), 0);
    cr_assert_eq(M.body, SG_H1_BODY_UNTIL_CLOSE);
    cr_assert_not(M.keep_alive);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", "GET"), -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", "GET"), -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", "GET"), -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "GET"), -502);
    cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n", "GET"), -502);
}

Test(h1_response, connection)
{
    cr_assert_gt(resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET"), 0);
    cr_assert_eq(M.minor_version, 0);
    cr_assert_not(M.keep_alive);
    cr_assert_gt(resp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", "GET"), 0);
    cr_assert(M.keep_alive);
    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nX-A: 1\r\nContent-Length: 1\r\n\r\n", "GET"), 0);
    cr_assert_not(M.keep_alive);
    cr_assert(M.connection_close);
    cr_assert(M.headers[1].flags & SG_H1_HDR_HOP);
    cr_assert_eq(M.headers[2].flags, 0);
}

Test(h1_response, errors)
{
    const char *bad[] = {
        "HTTP/2 200 OK\r\n\r\n", "HTTP/2.0 200 OK\r\n\r\n", "HTTP/1.2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1  200 OK\r\n\r\n", "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n", "HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded\r\n\r\n", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\r\n\r\n", "\r\nHTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(resp(bad[i], "GET"), -502, "case %zu: %s", i, bad[i]);
}

Test(h1_response, limits_and_incremental)
{
    size_t cap = 64 + (SG_H1_MAX_HEADERS + 1) * 8;
    char *many = malloc(cap);
    strcpy(many, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < SG_H1_MAX_HEADERS; i++) strcat(many, "A: 1\r\n");
    strcat(many, "\r\n");
    cr_assert_gt(resp(many, "GET"), 0);
    cr_assert_eq(M.num_headers, SG_H1_MAX_HEADERS);
    many[strlen(many) - 2] = 0;
    strcat(many, "B: 2\r\n\r\n");
    cr_assert_eq(resp(many, "GET"), -502);
    free(many);

    size_t n = SG_H1_MAX_RESPONSE_HEAD + 100;
    char *huge = malloc(n + 1);
    memcpy(huge, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(huge + 20, 'a', n - 20);
    huge[n] = 0;
    cr_assert_eq(resp_n(huge, n, 0, "GET"), -502);            /* incomplete */
    memcpy(huge + n - 4, "\r\n\r\n", 4);
    cr_assert_eq(resp_n(huge, n, 0, "GET"), -502);
    free(huge);

    const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n";
    size_t sl = strlen(s);
    for (size_t i = 1; i < sl; i++) cr_assert_eq(resp_n(s, i, i - 1, "GET"), 0);
    cr_assert_eq(resp_n(s, sl, sl - 1, "GET"), (int)sl);
    cr_assert_eq(M.body, SG_H1_BODY_CHUNKED);
}

/* ----------------------------------------------------------------- chunked */

typedef struct {
    sg_chunked_result res;
    size_t consumed;          /* total bytes consumed */
    char data[4096];
    size_t n;
    sg_strbuf trailers;
} dec_out;

/* Decodes `in` fed in pieces cut at `cuts` (increasing offsets). Each piece
 * is copied into its own exact-size buffer so overreads are caught. */
static void decode_pieces(const char *in, size_t len, const size_t *cuts, size_t ncuts, dec_out *o)
{
    sg_chunked_decoder d;
    sg_chunked_init(&d);
    memset(o, 0, sizeof(*o));
    size_t start = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t stop = c < ncuts ? cuts[c] : len;
        size_t plen = stop - start;
        char *piece = malloc(plen ? plen : 1);
        memcpy(piece, in + start, plen);
        size_t off = 0;
        for (;;) {
            size_t used;
            const char *data;
            size_t dlen;
            sg_chunked_result r = sg_chunked_decode(&d, piece + off, plen - off, &used, &data,
                                                    &dlen, &o->trailers);
            cr_assert_leq(used, plen - off);
            off += used;
            o->consumed += used;
            if (r == SG_CHUNKED_DATA) {
                cr_assert_gt(dlen, 0);
                cr_assert(data >= piece && data + dlen <= piece + plen);
                cr_assert_leq(o->n + dlen, sizeof o->data);
                memcpy(o->data + o->n, data, dlen);
                o->n += dlen;
                continue;
            }
            o->res = r;
            if (r == SG_CHUNKED_MORE) cr_assert_eq(off, plen);
            break;
        }
        free(piece);
        if (o->res != SG_CHUNKED_MORE) return;
        start = stop;
    }
}

static void decode_once(const char *in, dec_out *o)
{
    decode_pieces(in, strlen(in), NULL, 0, o);
}

/* Every way of cutting the input in two, then in three, then byte by byte:
 * same result, same data, same trailers. */
static void check_all_splits(const char *in, sg_chunked_result want, const char *want_data,
                             size_t want_consumed, const char *want_trailers)
{
    size_t len = strlen(in);
    dec_out *o = malloc(sizeof *o);
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b += (len / 7) + 1) {
            size_t cuts[2] = { a, b };
            decode_pieces(in, len, cuts, 2, o);
            cr_assert_eq(o->res, want, "cuts %zu,%zu on '%s'", a, b, in);
            if (want_data) {
                cr_assert_eq(o->n, strlen(want_data));
                cr_assert_eq(memcmp(o->data, want_data, o->n), 0);
            }
            if (want == SG_CHUNKED_END) cr_assert_eq(o->consumed, want_consumed);
            if (want_trailers) {
                cr_assert_eq(o->trailers.n, strlen(want_trailers), "cuts %zu,%zu", a, b);
                if (o->trailers.n)
                    cr_assert_eq(memcmp(o->trailers.p, want_trailers, o->trailers.n), 0);
            }
            sg_strbuf_free(&o->trailers);
        }
    }
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    for (size_t i = 0; i < len; i++) cuts[i] = i + 1;
    decode_pieces(in, len, cuts, len ? len - 1 : 0, o);
    cr_assert_eq(o->res, want, "bytewise on '%s'", in);
    if (want_data) cr_assert_eq(o->n, strlen(want_data));
    sg_strbuf_free(&o->trailers);
    free(cuts);
    free(o);
}

Test(chunked, basic_all_splits)
{
    const char *in = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    check_all_splits(in, SG_CHUNKED_END, "hello world", strlen(in), "");
}

Test(chunked, ext_bws_hex_trailers)
{
    const char *in = "0005;name=val\r\nhello\r\nA ; a=\"q\" ;b\r\n0123456789\r\n"
                     "1\t;x\r\n!\r\n0;last\r\nX-A: 1\r\nX-B:two  \r\n\r\n";
    check_all_splits(in, SG_CHUNKED_END, "hello0123456789!", strlen(in), "X-A: 1\r\nX-B:two  \r\n");
}

Test(chunked, stops_at_message_end)
{
    const char *in = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    check_all_splits(in, SG_CHUNKED_END, "abc", strlen("3\r\nabc\r\n0\r\n\r\n"), NULL);
    dec_out *o = malloc(sizeof *o);
    decode_once(in, o);
    cr_assert_eq(o->res, SG_CHUNKED_END);
    cr_assert_eq(o->consumed, strlen("3\r\nabc\r\n0\r\n\r\n"));
    free(o);
}

Test(chunked, big_sizes)
{
    sg_chunked_decoder d;
    size_t used, dl;
    const char *data;
    sg_chunked_init(&d);
    cr_assert_eq(sg_chunked_decode(&d, "fffffffffffffff\r\n", 17, &used, &data, &dl, NULL), SG_CHUNKED_MORE);
    cr_assert_eq(d.remaining, UINT64_C(0xfffffffffffffff));
    sg_chunked_init(&d);
    cr_assert_eq(sg_chunked_decode(&d, "0000000000000000000001\r\n", 24, &used, &data, &dl, NULL), SG_CHUNKED_MORE);
    cr_assert_eq(d.remaining, 1);
    sg_chunked_init(&d);
    cr_assert_eq(sg_chunked_decode(&d, "1000000000000000\r\n", 18, &used, &data, &dl, NULL), SG_CHUNKED_ERROR);
    sg_chunked_init(&d);
    cr_assert_eq(sg_chunked_decode(&d, "ffffffffffffffffffff\r\n", 22, &used, &data, &dl, NULL), SG_CHUNKED_ERROR);
}

Test(chunked, errors)
{
    const char *bad[] = {
        "5 \r\nhello\r\n0\r\n\r\n",          /* whitespace without extension */
        "5\nhello\r\n0\r\n\r\n",             /* bare LF after size */
        "5\r\nhello\n0\r\n\r\n",             /* bare LF after data */
        "5\r\nhelloX\r\n0\r\n\r\n",          /* data longer than size */
        "5\r\nhell\r\n0\r\n\r\n",            /* shorter */
        "\r\nhello\r\n0\r\n\r\n",            /* empty size */
        "g\r\n",
        "-5\r\n",
        " 5\r\n",
        "0x5\r\n",
        ";ext\r\n",
        "5;a\x01\r\nhello\r\n0\r\n\r\n",     /* CTL in extension */
        "5;a\nhello\r\n",
        "5\r\rhello",
        "0\r\n\n",                           /* bare LF ending the message */
        "0\r\nX-A: 1\n\r\n",
        "0\r\nX-A 1\r\n\r\n",
        "0\r\nX A: 1\r\n\r\n",
        "0\r\n: 1\r\n\r\n",
        "0\r\nX-A: 1\r\n folded\r\n\r\n",
        "0\r\nX-A: a\rb\r\n\r\n",
        "0\r\nX-A: a\x01\r\n\r\n",
        "0\r\n\rX",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_all_splits(bad[i], SG_CHUNKED_ERROR, NULL, 0, NULL);
}

Test(chunked, line_and_trailer_bounds)
{
    size_t n = 5000;
    char *in = malloc(n + 32);
    strcpy(in, "1;");
    memset(in + 2, 'x', 4000);
    strcpy(in + 4002, "\r\na\r\n0\r\n\r\n");
    dec_out *o = malloc(sizeof *o);
    decode_once(in, o);
    cr_assert_eq(o->res, SG_CHUNKED_END);
    memset(in + 2, 'x', 4100);
    strcpy(in + 4102, "\r\na\r\n0\r\n\r\n");
    decode_once(in, o);
    cr_assert_eq(o->res, SG_CHUNKED_ERROR);
    free(in);

    size_t tn = 20000;
    char *t = malloc(tn + 64);
    strcpy(t, "0\r\n");
    size_t p = 3;
    while (p < 17000) { memcpy(t + p, "X-Trailer: 0123456789\r\n", 23); p += 23; }
    strcpy(t + p, "\r\n");
    decode_once(t, o);
    cr_assert_eq(o->res, SG_CHUNKED_ERROR);
    sg_strbuf_free(&o->trailers);
    free(t);
    free(o);
}

Test(chunked, done_is_sticky)
{
    sg_chunked_decoder d;
    size_t used, dl;
    const char *data;
    sg_chunked_init(&d);
    cr_assert_eq(sg_chunked_decode(&d, "0\r\n\r\n", 5, &used, &data, &dl, NULL), SG_CHUNKED_END);
    cr_assert_eq(used, 5);
    cr_assert_eq(sg_chunked_decode(&d, "xyz", 3, &used, &data, &dl, NULL), SG_CHUNKED_END);
    cr_assert_eq(used, 0);
}

/* ---------------------------------------------------------- normalize path */

static void norm_ok(const char *in, const char *want)
{
    char out[256];
    long n = sg_h1_normalize_path(sg_str_from(in), out);
    cr_assert_eq(n, (long)strlen(want), "'%s' -> %ld", in, n);
    cr_assert_eq(memcmp(out, want, (size_t)n), 0, "'%s' -> '%.*s'", in, (int)n, out);
}

static void norm_bad(const char *in)
{
    char out[256];
    cr_assert_eq(sg_h1_normalize_path(sg_str_from(in), out), -1, "'%s' should be invalid", in);
}

Test(normalize_path, like_nginx)
{
    norm_ok("/", "/");
    norm_ok("/a/b.html", "/a/b.html");
    norm_ok("//a///b", "/a/b");
    norm_ok("/a/./b", "/a/b");
    norm_ok("/./", "/");
    norm_ok("/a/.", "/a/");
    norm_ok("/a/../b", "/b");
    norm_ok("/a/b/../../c", "/c");
    norm_ok("/a/..", "/");
    norm_ok("/a/b/../..", "/");
    norm_ok("/a//../b", "/b");
    norm_ok("/...", "/...");
    norm_ok("/a/..b/.c", "/a/..b/.c");
    norm_ok("/a.b./c", "/a.b./c");
    norm_ok("/%41%62c", "/Abc");
    norm_ok("/a%2Fb", "/a/b");
    norm_ok("/a%2f%2fb", "/a/b");
    norm_ok("/a/%2e%2E/b", "/b");
    norm_ok("/a/%2e/b", "/a/b");
    norm_ok("/a+b", "/a+b");
    norm_ok("/a%2Bb", "/a+b");
    norm_ok("/%25", "/%");
    norm_ok("/%252e%252e", "/%2e%2e");
    norm_ok("/%3F", "/?");
    norm_ok("/%23", "/#");
    norm_ok("/a%20b", "/a b");
    norm_ok("/caf%C3%A9", "/caf\xc3\xa9");
    norm_ok("/a?x=/../..", "/a");
    norm_ok("/a/.?x", "/a/");
    norm_ok("/a/b/..?x", "/a/");
    norm_ok("/a#frag", "/a");
}

Test(normalize_path, invalid)
{
    norm_bad("/..");
    norm_bad("/../");
    norm_bad("/../a");
    norm_bad("/a/../..");
    norm_bad("/a/../../b");
    norm_bad("/%2e%2e");
    norm_bad("/%2e%2e/x");
    norm_bad("/..%2f");
    norm_bad("/%00");
    norm_bad("/a%00b");
    norm_bad("/%zz");
    norm_bad("/%4");
    norm_bad("/%");
    norm_bad("/%g0");
    norm_bad("/..?a");
    norm_bad("");
    norm_bad("a/b");
}

Test(h1_misc, tchar)
{
    const char *yes = "!#$%&'*+-.^_`|~09AZaz";
    const char *no = " \t\"(),/:;<=>?@[\\]{}\x7f\x80\xff";
    for (const char *p = yes; *p; p++) cr_assert(sg_h1_is_tchar((unsigned char)*p), "%c", *p);
    for (const char *p = no; *p; p++) cr_assert_not(sg_h1_is_tchar((unsigned char)*p), "%02x", (unsigned char)*p);
    cr_assert_not(sg_h1_is_tchar(0));
}

/* Values and targets are scanned eight bytes at a time: a forbidden byte must
 * be caught at every offset. */
Test(h1_request, forbidden_byte_at_every_offset)
{
    const unsigned char bad_value[] = { 0x00, 0x01, 0x0b, 0x1f, 0x7f, '\r' };
    const unsigned char bad_target[] = { 0x00, 0x09, 0x7f, 0x80, 0xff, 0x1f };
    char buf[128];
    for (size_t pos = 0; pos < 40; pos++) {
        for (size_t k = 0; k < sizeof bad_value; k++) {
            int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: a%040d\r\n\r\n", 0);
            buf[28 + pos] = (char)bad_value[k];
            cr_assert_eq(parse_n(buf, (size_t)n, 0, &lim), -400, "value byte %02x at %zu",
                         bad_value[k], pos);
        }
        for (size_t k = 0; k < sizeof bad_target; k++) {
            int n = snprintf(buf, sizeof buf, "GET /%040d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
            buf[5 + pos] = (char)bad_target[k];
            cr_assert_eq(parse_n(buf, (size_t)n, 0, &lim), -400, "target byte %02x at %zu",
                         bad_target[k], pos);
        }
        int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: a%040d\r\n\r\n", 0);
        buf[28 + pos] = (char)0xe9;                      /* obs-text is fine */
        cr_assert_gt(parse_n(buf, (size_t)n, 0, &lim), 0);
        cr_assert_eq(M.headers[1].value.n, 41);
    }
}
