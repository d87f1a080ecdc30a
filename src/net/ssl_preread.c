/* The ClientHello parser of ssl_preread (see ssl_preread.h).
 *
 * The handshake message may be split across TLS records (ticket #1317's
 * sibling: an SNI cut in two), so the records' payloads are first joined
 * into one buffer, then the ClientHello is read with every length checked
 * against the one around it: a length that points past its container
 * makes the hello malformed, and nothing of it is reported. */
#include "net/ssl_preread.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Handshake bytes kept while joining records: a ClientHello larger than
 * this is reported malformed (nginx's preread buffer is 16k by default). */
#define MAX_HELLO 65536

typedef struct rd {
    const unsigned char *p;
    size_t n;
} rd;

static bool take(rd *r, size_t k, rd *out)
{
    if (r->n < k) return false;
    if (out) *out = (rd){ r->p, k };
    r->p += k;
    r->n -= k;
    return true;
}

static bool u8(rd *r, unsigned *v)
{
    if (r->n < 1) return false;
    *v = r->p[0];
    return take(r, 1, NULL);
}

static bool u16(rd *r, unsigned *v)
{
    if (r->n < 2) return false;
    *v = (unsigned)r->p[0] << 8 | r->p[1];
    return take(r, 2, NULL);
}

/* A vector with a 1- or 2-byte length. */
static bool vec(rd *r, int lenbytes, rd *out)
{
    unsigned len;
    if (!(lenbytes == 1 ? u8(r, &len) : u16(r, &len))) return false;
    return take(r, len, out);
}

/* A 2-byte length and what follows, cut to what its container holds:
 * nginx reads a length that overshoots the hello's end as "the rest"
 * (clients with a wrong extension length still get their fields read),
 * while a field inside it that does not fit still makes it malformed. */
static bool clamped(rd *r, rd *out)
{
    unsigned len;
    if (!u16(r, &len)) return false;
    return take(r, len < r->n ? len : r->n, out);
}

static const char *version_name(unsigned v)
{
    if ((v & 0xff00) == 0x7f00) return "TLSv1.3";   /* TLS 1.3 drafts */
    switch (v) {
    case 0x0002: return "SSLv2";
    case 0x0300: return "SSLv3";
    case 0x0301: return "TLSv1";
    case 0x0302: return "TLSv1.1";
    case 0x0303: return "TLSv1.2";
    case 0x0304: return "TLSv1.3";
    default: return "";
    }
}

static bool is_grease(unsigned v)
{
    return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* Sorts versions as numbers, drafts (0x7fNN) as 1.3. */
static unsigned rank(unsigned v)
{
    return (v & 0xff00) == 0x7f00 ? 0x0304 : v;
}

static bool server_name(rd ext, sg_preread_info *out)
{
    rd list, name;
    if (!vec(&ext, 2, &list) || ext.n) return false;
    while (list.n) {
        unsigned type;
        if (!u8(&list, &type) || !vec(&list, 2, &name)) return false;
        if (type == 0 && !out->server_name[0]) {
            size_t k = name.n < sizeof(out->server_name) - 1 ? name.n : sizeof(out->server_name) - 1;
            memcpy(out->server_name, name.p, k);
            out->server_name[k] = 0;
        }
    }
    return true;
}

static bool alpn(rd ext, sg_preread_info *out)
{
    rd list, proto;
    if (!vec(&ext, 2, &list) || ext.n) return false;
    size_t len = 0;
    while (list.n) {
        if (!vec(&list, 1, &proto) || proto.n == 0) return false;
        if (len + proto.n + 2 > sizeof(out->alpn)) continue;   /* cut: keep what fits */
        if (len) out->alpn[len++] = ',';
        memcpy(out->alpn + len, proto.p, proto.n);
        len += proto.n;
        out->alpn[len] = 0;
    }
    return true;
}

static bool versions(rd ext, unsigned *best)
{
    rd list;
    if (!vec(&ext, 1, &list) || ext.n || list.n % 2) return false;
    while (list.n) {
        unsigned v = 0;
        u16(&list, &v);
        if (!is_grease(v) && rank(v) > rank(*best)) *best = v;
    }
    return true;
}

/* body: the ClientHello after its 4-byte handshake header. */
static bool client_hello(rd body, sg_preread_info *out)
{
    unsigned version, best = 0;
    rd ignore, exts = { NULL, 0 };
    if (!u16(&body, &version) || !take(&body, 32, NULL) || !vec(&body, 1, &ignore) ||
        !vec(&body, 2, &ignore) || !vec(&body, 1, &ignore))
        return false;
    if (body.n && !clamped(&body, &exts)) return false;
    while (exts.n) {
        unsigned type;
        rd ext;
        if (!u16(&exts, &type) || !clamped(&exts, &ext)) return false;
        if (type == 0 && !server_name(ext, out)) return false;
        if (type == 16 && !alpn(ext, out)) return false;
        if (type == 43 && !versions(ext, &best)) return false;
    }
    snprintf(out->protocol, sizeof(out->protocol), "%s", version_name(rank(best) > rank(version) ? best : version));
    return true;
}

/* SSLv2-compatible ClientHello: 2-byte length with the top bit set, type 1, version. */
static sg_preread_status sslv2(const unsigned char *p, size_t n, sg_preread_info *out)
{
    if (n < 5) return SG_PREREAD_AGAIN;
    if (p[2] != 1) return SG_PREREAD_NOT_TLS;
    snprintf(out->protocol, sizeof(out->protocol), "%s", version_name((unsigned)p[3] << 8 | p[4]));
    return SG_PREREAD_DONE;
}

sg_preread_status sg_ssl_preread_parse(const unsigned char *p, size_t n, sg_preread_info *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0) return SG_PREREAD_AGAIN;
    if (p[0] & 0x80) return sslv2(p, n, out);
    if (p[0] != 0x16) return SG_PREREAD_NOT_TLS;
    static _Thread_local unsigned char hs[MAX_HELLO];
    size_t have = 0, need = 0;             /* need: the whole handshake message, once its header is in */
    rd r = { p, n };
    for (;;) {
        if (r.n < 5) return SG_PREREAD_AGAIN;
        if (r.p[0] != 0x16 || r.p[1] != 3) return SG_PREREAD_NOT_TLS;   /* 3.x records only */
        size_t len = (size_t)r.p[3] << 8 | r.p[4];
        if (len == 0 || len > 16384 + 2048) return SG_PREREAD_NOT_TLS;
        if (r.n < 5 + len) {
            /* a partial record: its bytes may already hold the whole hello */
            len = r.n - 5;
            if (have + len > MAX_HELLO) return SG_PREREAD_NOT_TLS;
            memcpy(hs + have, r.p + 5, len);
            have += len;
            r.n = 0;
        } else {
            if (have + len > MAX_HELLO) return SG_PREREAD_NOT_TLS;
            memcpy(hs + have, r.p + 5, len);
            have += len;
            take(&r, 5 + len, NULL);
        }
        if (have >= 4 && !need) {
            if (hs[0] != 1) return SG_PREREAD_NOT_TLS;                  /* not a ClientHello */
            need = 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
            if (need > MAX_HELLO) return SG_PREREAD_NOT_TLS;
        }
        if (need && have >= need) break;
        if (r.n == 0) return SG_PREREAD_AGAIN;
    }
    if (!client_hello((rd){ hs + 4, need - 4 }, out)) {
        memset(out, 0, sizeof(*out));
        return SG_PREREAD_NOT_TLS;
    }
    return SG_PREREAD_DONE;
}
