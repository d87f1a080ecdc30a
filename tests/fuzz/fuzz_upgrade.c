/* Fuzzes the upgrade handshake checks of proxy/upgrade.c as the proxy
 * runs them (prepare_upgrade and switch_protocols in proxy/proxy.c): a
 * request head parsed by the HTTP/1.1 parser goes through
 * sg_upgrade_offered and sg_ws_check_request, then a response head
 * through sg_upgrade_check_101 with the offer and key found. Checks that
 * the offer keeps every offered token but h2c, in order, and that a
 * valid key's 101 is accepted with its Sec-WebSocket-Accept.
 *
 * Input: bytes 0-1 = length of the request part (little endian, modulo
 * the size), then the request head, then the response head. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parser.h"
#include "proxy/upgrade.h"

/* A parsed 101 as an upstream codec reports it: its fields, flags kept. */
static const char *check101(const sg_h1_message *m, sg_str offer, sg_str key)
{
    sg_header h[SG_H1_MAX_HEADERS];
    for (size_t i = 0; i < m->num_headers; i++)
        h[i] = (sg_header){ m->headers[i].name, m->headers[i].value, m->headers[i].flags };
    return sg_upgrade_check_101(h, m->num_headers, offer, key);
}

static const sg_h1_limits lim = { 8192, 8192, 16384, SG_H1_MAX_HEADERS };
static sg_h1_message req_m, resp_m;

/* The next token of a comma-separated list, as RFC 9110 5.6.1 reads it. */
static bool next_tok(sg_str *rest, sg_str *tok)
{
    size_t i = 0;
    while (i < rest->n && (rest->p[i] == ' ' || rest->p[i] == '\t' || rest->p[i] == ',')) i++;
    if (i == rest->n) return false;
    size_t s = i;
    while (i < rest->n && rest->p[i] != ',') i++;
    size_t e = i;
    while (e > s && (rest->p[e - 1] == ' ' || rest->p[e - 1] == '\t')) e--;
    *tok = (sg_str){ rest->p + s, e - s };
    *rest = (sg_str){ rest->p + i, rest->n - i };
    return true;
}

/* `offer` is `value` without its h2c tokens, the others in order. */
static void check_offer(sg_str value, sg_str offer)
{
    sg_str a = value, b = offer, ta, tb;
    for (;;) {
        bool more_a;
        while ((more_a = next_tok(&a, &ta)) && sg_str_caseeq_lit(ta, "h2c")) {
        }
        bool more_b = next_tok(&b, &tb);
        assert(more_a == more_b);
        if (!more_a) return;
        assert(sg_str_eq(ta, tb));
    }
}

static void check_request(const char *buf, size_t n, sg_str resp)
{
    if (sg_h1_parse_request(buf, n, 0, &lim, &req_m) <= 0) return;
    sg_header hdrs[SG_H1_MAX_HEADERS];
    for (size_t i = 0; i < req_m.num_headers; i++)
        hdrs[i] = (sg_header){ req_m.headers[i].name, req_m.headers[i].value, req_m.headers[i].flags };
    sg_http_req r = { .method = req_m.method, .request_uri = req_m.target, .http_major = 1,
                      .http_minor = req_m.minor_version, .headers = hdrs,
                      .nheaders = req_m.num_headers };
    sg_arena_init(&r.arena, 1);   /* an allocation per chunk: ASan sees overruns */
    sg_str offer;
    sg_upgrade_kind kind = sg_upgrade_offered(&r, &r.arena, &offer);
    const sg_header *up = sg_req_find_header(&r, SG_STR("upgrade"));
    if (kind == SG_UPGRADE_NONE) {
        assert(offer.n == 0);
    } else {
        assert(up && offer.n > 0 && !sg_token_list_has(offer, SG_STR("h2c")));
        check_offer(up->value, offer);
        assert((kind == SG_UPGRADE_WEBSOCKET) == sg_token_list_has(offer, SG_STR("websocket")));
    }
    sg_str key = SG_STR_NULL;
    sg_ws_check why = sg_ws_check_request(&r);
    if (why == SG_WS_OK) {
        key = sg_req_find_header(&r, SG_STR("sec-websocket-key"))->value;
        assert(sg_ws_key_valid(key) && sg_str_eq_lit(r.method, "GET"));
    }
    if (resp.n && sg_h1_parse_response(resp.p, resp.n, 0, req_m.method, &resp_m) > 0) {
        const char *bad = check101(&resp_m, offer, key);
        if (!bad && sg_token_list_has(offer, SG_STR("websocket")) && why == SG_WS_OK) {
            char want[SG_WS_ACCEPT_LEN + 1];
            sg_ws_accept(key, want);
            const sg_h1_header *acc = sg_h1_find(&resp_m, "sec-websocket-accept");
            const sg_h1_header *u = sg_h1_find(&resp_m, "upgrade");
            sg_str rest = u ? u->value : SG_STR_NULL, proto;
            assert(u && next_tok(&rest, &proto) && sg_token_list_has(offer, proto));
            if (sg_str_caseeq_lit(proto, "websocket"))
                assert(acc && sg_str_eq(acc->value, (sg_str){ want, SG_WS_ACCEPT_LEN }));
        }
    }
    sg_arena_free(&r.arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t n = size - 2;
    size_t k = ((size_t)data[0] | (size_t)data[1] << 8) % (n + 1);
    char *req = malloc(k ? k : 1), *resp = malloc(n - k ? n - k : 1);   /* exact: overreads show */
    memcpy(req, data + 2, k);
    memcpy(resp, data + 2 + k, n - k);
    check_request(req, k, (sg_str){ resp, n - k });
    free(req);
    free(resp);
    return 0;
}
