/* Upgrade requests and the WebSocket handshake checks (RFC 6455 section 4). */
#include <criterion/criterion.h>
#include <string.h>

#include "http/h1_parser.h"
#include "proxy/upgrade.h"

/* A request as a codec would fill it, from "Name: value" pairs. */
typedef struct req_fixture {
    sg_http_req r;
    sg_header h[16];
} req_fixture;

static void mkreq(req_fixture *f, const char *method, int minor, const char *const *hdrs)
{
    memset(f, 0, sizeof(*f));
    f->r.method = sg_str_from(method);
    f->r.http_major = 1;
    f->r.http_minor = minor;
    size_t n = 0;
    for (; hdrs[n]; n++) {
        const char *colon = strchr(hdrs[n], ':');
        f->h[n].name = (sg_str){ hdrs[n], (size_t)(colon - hdrs[n]) };
        f->h[n].value = sg_str_from(colon + 2);
    }
    f->r.headers = f->h;
    f->r.nheaders = n;
}

#define WS_HEADERS(...) ((const char *const[]){ "Host: example.com", "Upgrade: websocket", \
    "Connection: Upgrade", __VA_ARGS__, NULL })

Test(ws_accept, rfc6455_example)
{
    char out[SG_WS_ACCEPT_LEN + 1];
    sg_ws_accept(SG_STR("dGhlIHNhbXBsZSBub25jZQ=="), out);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws_key, fresh_keys_are_valid_and_differ)
{
    char a[SG_WS_KEY_LEN + 1], b[SG_WS_KEY_LEN + 1];
    sg_ws_key_new(a);
    sg_ws_key_new(b);
    cr_assert_eq(strlen(a), 24);
    cr_assert(sg_ws_key_valid(sg_str_from(a)), "%s", a);
    cr_assert(sg_ws_key_valid(sg_str_from(b)), "%s", b);
    cr_assert_str_neq(a, b);
}

Test(ws_key, validity)
{
    cr_assert(sg_ws_key_valid(SG_STR("dGhlIHNhbXBsZSBub25jZQ==")));
    cr_assert_not(sg_ws_key_valid(SG_STR("dGhlIHNhbXBsZSBub25jZQ")));      /* no padding */
    cr_assert_not(sg_ws_key_valid(SG_STR("dGhlIHNhbXBsZSBub25jZQ=")));
    cr_assert_not(sg_ws_key_valid(SG_STR("dGhlIHNhbXBsZSBub25jZ!==")));    /* not base64 */
    cr_assert_not(sg_ws_key_valid(SG_STR("aGVsbG8=")));                    /* 5 bytes */
    cr_assert_not(sg_ws_key_valid(SG_STR("")));
}

Test(ws_request, valid_handshake_passes)
{
    req_fixture f;
    sg_arena a;
    sg_arena_init(&a, 1024);
    mkreq(&f, "GET", 1, WS_HEADERS("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version: 13"));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_OK);
    sg_str offer;
    cr_assert_eq(sg_upgrade_offered(&f.r, &a, &offer), SG_UPGRADE_WEBSOCKET);
    cr_assert(sg_str_eq_lit(offer, "websocket"));
    sg_arena_free(&a);
}

Test(ws_request, missing_or_bad_key_is_refused)
{
    req_fixture f;
    mkreq(&f, "GET", 1, WS_HEADERS("Sec-WebSocket-Version: 13"));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_BAD_REQUEST);
    mkreq(&f, "GET", 1, WS_HEADERS("Sec-WebSocket-Key: short", "Sec-WebSocket-Version: 13"));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_BAD_REQUEST);
    mkreq(&f, "GET", 1, WS_HEADERS("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version: 13"));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_BAD_REQUEST, "two keys");
}

Test(ws_request, missing_version_or_unsupported_version)
{
    req_fixture f;
    mkreq(&f, "GET", 1, WS_HEADERS("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_BAD_REQUEST);
    mkreq(&f, "GET", 1, WS_HEADERS("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version: 8"));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_BAD_VERSION);
}

Test(ws_request, only_get_over_http11)
{
    req_fixture f;
    mkreq(&f, "POST", 1, WS_HEADERS("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                    "Sec-WebSocket-Version: 13"));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_BAD_REQUEST);
    mkreq(&f, "GET", 0, WS_HEADERS("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version: 13"));
    cr_assert_eq(sg_ws_check_request(&f.r), SG_WS_BAD_REQUEST);
}

Test(upgrade_offer, needs_connection_upgrade)
{
    req_fixture f;
    sg_str offer;
    sg_arena a;
    sg_arena_init(&a, 1024);
    mkreq(&f, "GET", 1, (const char *const[]){ "Upgrade: websocket", NULL });
    cr_assert_eq(sg_upgrade_offered(&f.r, &a, &offer), SG_UPGRADE_NONE);
    mkreq(&f, "GET", 1, (const char *const[]){ "Upgrade: WebSocket", "Connection: keep-alive, Upgrade", NULL });
    cr_assert_eq(sg_upgrade_offered(&f.r, &a, &offer), SG_UPGRADE_WEBSOCKET);
    mkreq(&f, "GET", 1, (const char *const[]){ "Connection: upgrade", NULL });
    cr_assert_eq(sg_upgrade_offered(&f.r, &a, &offer), SG_UPGRADE_NONE);
    sg_arena_free(&a);
}

Test(upgrade_offer, h2c_is_never_offered)
{
    req_fixture f;
    sg_str offer;
    sg_arena a;
    sg_arena_init(&a, 1024);
    mkreq(&f, "GET", 1, (const char *const[]){ "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings",
                                              "HTTP2-Settings: AAMAAABkAAQAAP__", NULL });
    cr_assert_eq(sg_upgrade_offered(&f.r, &a, &offer), SG_UPGRADE_NONE);
    mkreq(&f, "GET", 1, (const char *const[]){ "Upgrade: h2c, foo/2", "Connection: upgrade", NULL });
    cr_assert_eq(sg_upgrade_offered(&f.r, &a, &offer), SG_UPGRADE_OTHER);
    cr_assert(sg_str_eq_lit(offer, "foo/2"), "%.*s", (int)offer.n, offer.p);
    sg_arena_free(&a);
}

/* Found by fuzz_upgrade: without h2c the offer is rejoined with ", ", longer
 * than the header when its tokens were separated by bare commas. */
Test(upgrade_offer, h2c_removed_from_a_list_of_bare_commas)
{
    req_fixture f;
    sg_str offer;
    sg_arena a;
    sg_arena_init(&a, 1);
    mkreq(&f, "GET", 1, (const char *const[]){ "Upgrade: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,h2c",
                                              "Connection: upgrade", NULL });
    cr_assert_eq(sg_upgrade_offered(&f.r, &a, &offer), SG_UPGRADE_OTHER);
    cr_assert(sg_str_eq_lit(offer, "a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v, w"),
              "%.*s", (int)offer.n, offer.p);
    sg_arena_free(&a);
}

/* Parses a backend's answer as the client codec would. */
/* A parsed 101 as an upstream codec reports it: its fields, flags kept. */
static const char *check101(const sg_h1_message *m, sg_str offer, sg_str key)
{
    sg_header h[SG_H1_MAX_HEADERS];
    for (size_t i = 0; i < m->num_headers; i++)
        h[i] = (sg_header){ m->headers[i].name, m->headers[i].value, m->headers[i].flags };
    return sg_upgrade_check_101(h, m->num_headers, offer, key);
}

static int parse101(const char *text, sg_h1_message *m)
{
    return sg_h1_parse_response(text, strlen(text), 0, SG_STR("GET"), m);
}

Test(upgrade_101, websocket_accept_must_match_the_key)
{
    sg_h1_message m;
    sg_str key = SG_STR("dGhlIHNhbXBsZSBub25jZQ==");
    cr_assert_gt(parse101("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", &m), 0);
    cr_assert_null(check101(&m, SG_STR("websocket"), key));
    cr_assert_not_null(check101(&m, SG_STR("websocket"), SG_STR("AAAAAAAAAAAAAAAAAAAAAA==")));
    cr_assert_gt(parse101("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                          &m), 0);
    cr_assert_not_null(check101(&m, SG_STR("websocket"), key), "no accept");
}

Test(upgrade_101, must_echo_an_offered_protocol)
{
    sg_h1_message m;
    cr_assert_gt(parse101("HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/2\r\nConnection: upgrade\r\n\r\n", &m), 0);
    cr_assert_null(check101(&m, SG_STR("bar, foo/2"), SG_STR_NULL));
    cr_assert_not_null(check101(&m, SG_STR("bar"), SG_STR_NULL));
    cr_assert_gt(parse101("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n", &m), 0);
    cr_assert_not_null(check101(&m, SG_STR("foo/2"), SG_STR_NULL), "no Upgrade");
    cr_assert_gt(parse101("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", &m), 0);
    cr_assert_not_null(check101(&m, SG_STR("websocket"), SG_STR_NULL));
}
