/* Upgrade requests and the WebSocket handshake (RFC 6455 section 4). */
#include "proxy/upgrade.h"

#include <string.h>
#include <sys/random.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The next element of a comma-separated list, trimmed; false at the end. */
static bool next_token(sg_str *rest, sg_str *tok)
{
    if (rest->n == 0) return false;   /* an empty list may have p == NULL */
    const char *p = rest->p, *end = rest->p + rest->n;
    while (p < end && (is_ows(*p) || *p == ',')) p++;
    if (p == end) {
        *rest = (sg_str){ end, 0 };
        return false;
    }
    const char *s = p;
    while (p < end && *p != ',') p++;
    const char *e = p;
    while (e > s && is_ows(e[-1])) e--;
    *tok = (sg_str){ s, (size_t)(e - s) };
    *rest = (sg_str){ p, (size_t)(end - p) };
    return true;
}

bool sg_token_list_has(sg_str list, sg_str tok)
{
    sg_str t;
    while (next_token(&list, &t))
        if (sg_str_caseeq(t, tok)) return true;
    return false;
}

static bool connection_has_upgrade(const sg_http_req *r)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (sg_str_caseeq_lit(r->headers[i].name, "connection") &&
            sg_token_list_has(r->headers[i].value, SG_STR("upgrade")))
            return true;
    return false;
}

/* The Upgrade value without its h2c tokens (copied only when one is there). */
static sg_str without_h2c(sg_str v, sg_arena *a)
{
    if (!sg_token_list_has(v, SG_STR("h2c"))) return v;
    /* each ", " replaces at least one byte (a comma), so twice the input is enough */
    char *out = sg_arena_alloc(a, 2 * v.n);
    size_t n = 0;
    sg_str rest = v, t;
    while (next_token(&rest, &t)) {
        if (sg_str_caseeq_lit(t, "h2c")) continue;
        if (n) {
            memcpy(out + n, ", ", 2);
            n += 2;
        }
        memcpy(out + n, t.p, t.n);
        n += t.n;
    }
    return (sg_str){ out, n };
}

sg_upgrade_kind sg_upgrade_offered(const sg_http_req *r, sg_arena *a, sg_str *offer)
{
    *offer = SG_STR_NULL;
    const sg_header *up = sg_req_find_header(r, SG_STR("upgrade"));
    if (!up || !connection_has_upgrade(r)) return SG_UPGRADE_NONE;
    sg_str v = without_h2c(up->value, a);
    sg_str rest = v, t;
    if (!next_token(&rest, &t)) return SG_UPGRADE_NONE;
    *offer = v;
    return sg_token_list_has(v, SG_STR("websocket")) ? SG_UPGRADE_WEBSOCKET : SG_UPGRADE_OTHER;
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

bool sg_ws_key_valid(sg_str key)
{
    if (key.n != SG_WS_KEY_LEN || key.p[22] != '=' || key.p[23] != '=') return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(key.p[i])) return false;
    return true;
}

sg_ws_check sg_ws_check_request(const sg_http_req *r)
{
    if (!sg_str_eq_lit(r->method, "GET")) return SG_WS_BAD_REQUEST;
    if (r->http_major == 1 && r->http_minor < 1) return SG_WS_BAD_REQUEST;
    const sg_header *key = NULL, *version = NULL;
    for (size_t i = 0; i < r->nheaders; i++) {
        const sg_header *h = &r->headers[i];
        if (sg_str_caseeq_lit(h->name, "sec-websocket-key")) {
            if (key) return SG_WS_BAD_REQUEST;   /* RFC 6455 4.2.1: exactly one */
            key = h;
        } else if (sg_str_caseeq_lit(h->name, "sec-websocket-version")) {
            if (version && !sg_str_eq(version->value, h->value)) return SG_WS_BAD_REQUEST;
            version = h;
        }
    }
    if (!key || !sg_ws_key_valid(key->value) || !version || version->value.n == 0)
        return SG_WS_BAD_REQUEST;
    if (!sg_str_eq_lit(version->value, "13")) return SG_WS_BAD_VERSION;
    return SG_WS_OK;
}

void sg_ws_accept(sg_str key, char out[SG_WS_ACCEPT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    EVP_DigestUpdate(ctx, key.p, key.n);
    EVP_DigestUpdate(ctx, WS_GUID, sizeof(WS_GUID) - 1);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);   /* 20 bytes -> 28 chars + NUL */
}

void sg_ws_key_new(char out[SG_WS_KEY_LEN + 1])
{
    unsigned char raw[16];
    /* The key only proves that the backend read this request: it must
     * not repeat, it need not be secret; the kernel's source is enough
     * should OpenSSL's fail. */
    if (RAND_bytes(raw, sizeof(raw)) != 1 && getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        memset(raw, 0x5a, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
}

static const sg_header *find_field(const sg_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (sg_str_caseeq_lit(h[i].name, name)) return &h[i];
    return NULL;
}

const char *sg_upgrade_check_101(const sg_header *h, size_t n, sg_str offer, sg_str ws_key)
{
    const sg_header *up = find_field(h, n, "upgrade");
    if (!up) return "101 without an Upgrade header";
    sg_str rest = up->value, proto, extra;
    if (!next_token(&rest, &proto) || next_token(&rest, &extra))
        return "101 must name exactly one protocol in Upgrade";
    if (!sg_token_list_has(offer, proto)) return "101 switches to a protocol the client did not offer";
    if (!sg_str_caseeq_lit(proto, "websocket") || !ws_key.n) return NULL;   /* no key: nothing to prove */
    const sg_header *acc = find_field(h, n, "sec-websocket-accept");
    if (!acc) return "101 without Sec-WebSocket-Accept";
    char want[SG_WS_ACCEPT_LEN + 1];
    sg_ws_accept(ws_key, want);
    if (!sg_str_eq(acc->value, (sg_str){ want, SG_WS_ACCEPT_LEN }))
        return "Sec-WebSocket-Accept does not match the request's key";
    return NULL;
}
