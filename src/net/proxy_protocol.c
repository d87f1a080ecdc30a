/* PROXY protocol v1 and v2 parsing; see proxy_protocol.h. The parser is a
 * pure function of the bytes read so far, so a header split across reads
 * is simply parsed again when more arrives (it is at most a few hundred
 * bytes, once per connection). */
#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/un.h>

static const uint8_t v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* ---------------- version 1: "PROXY TCP4 SRC DST SPORT DPORT\r\n" ---------------- */

#define V1_MAX 107

/* The next space-separated word of line[*i..n); false if empty. */
static bool word(const char *line, size_t n, size_t *i, char *out, size_t cap)
{
    size_t s = *i, e = s;
    while (e < n && line[e] != ' ') e++;
    if (e == s || e - s >= cap) return false;
    memcpy(out, line + s, e - s);
    out[e - s] = '\0';
    *i = e < n ? e + 1 : e;
    return true;
}

static bool port_of(const char *s, uint16_t *port)
{
    /* 0..65535, decimal, no sign, no leading zeros (the spec's form) */
    size_t len = strlen(s);
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0')) return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) return false;
    *port = (uint16_t)v;
    return true;
}

static bool set_addr(int family, const char *text, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, text, &sin->sin_addr) != 1) return false;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1) return false;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
    }
    return true;
}

static sg_pp_result parse_v1(const uint8_t *p, size_t n, sg_pp_info *out, size_t *used)
{
    size_t lim = n < V1_MAX ? n : V1_MAX;
    size_t eol = 0;
    while (eol + 1 < lim && !(p[eol] == '\r' && p[eol + 1] == '\n')) eol++;
    if (eol + 1 >= lim) return n < V1_MAX ? SG_PP_MORE : SG_PP_INVALID;
    const char *line = (const char *)p;
    size_t i = 6;   /* after "PROXY " */
    char proto[8], src[48], dst[48], sport[8], dport[8];
    if (!word(line, eol, &i, proto, sizeof(proto))) return SG_PP_INVALID;
    memset(out, 0, sizeof(*out));
    *used = eol + 2;
    if (strcmp(proto, "UNKNOWN") == 0) return SG_PP_DONE;   /* the rest of the line is ignored */
    int family = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    uint16_t sp, dp;
    if (!family || !word(line, eol, &i, src, sizeof(src)) || !word(line, eol, &i, dst, sizeof(dst)) ||
        !word(line, eol, &i, sport, sizeof(sport)) || !word(line, eol, &i, dport, sizeof(dport)) ||
        i != eol || line[eol - 1] == ' ' || !port_of(sport, &sp) || !port_of(dport, &dp) ||
        !set_addr(family, src, sp, &out->src, &out->srclen) ||
        !set_addr(family, dst, dp, &out->dst, &out->dstlen))
        return SG_PP_INVALID;
    out->has_addrs = true;
    return SG_PP_DONE;
}

/* ---------------- version 2: binary ---------------- */

#define PP2_TYPE_SSL 0x20
#define PP2_SSL_HEAD 5                 /* client (1 byte) and verify (4 bytes) before the sub-TLVs */

/* TLVs are type, a 2-byte length and the value: each must fit in what is
 * left, and so must the sub-TLVs of a PP2_TYPE_SSL, which are read by
 * $proxy_protocol_tlv_ssl_*; a broken one makes the whole header invalid
 * (the connection is closed and logged) rather than be found later. */
static bool tlvs_fit_depth(const uint8_t *t, size_t n, bool top)
{
    for (size_t i = 0; i < n;) {
        if (n - i < 3) return false;
        size_t tl = (size_t)t[i + 1] << 8 | t[i + 2];
        if (n - i - 3 < tl) return false;
        if (top && t[i] == PP2_TYPE_SSL &&
            (tl < PP2_SSL_HEAD || !tlvs_fit_depth(t + i + 3 + PP2_SSL_HEAD, tl - PP2_SSL_HEAD, false)))
            return false;
        i += 3 + tl;
    }
    return true;
}

static bool tlvs_fit(const uint8_t *t, size_t n)
{
    return tlvs_fit_depth(t, n, true);
}

static sg_pp_result parse_v2(const uint8_t *p, size_t n, sg_pp_info *out, size_t *used)
{
    if (n < 16) return SG_PP_MORE;
    uint8_t ver_cmd = p[12], fam = p[13];
    size_t len = (size_t)p[14] << 8 | p[15];
    if ((ver_cmd >> 4) != 2 || (ver_cmd & 0x0F) > 1) return SG_PP_INVALID;
    if (16 + len > SG_PP_MAX_HEADER) return SG_PP_INVALID;
    if (n < 16 + len) return SG_PP_MORE;
    const uint8_t *a = p + 16;
    size_t alen;
    memset(out, 0, sizeof(*out));
    switch (fam >> 4) {
    case 0: alen = 0; break;                /* AF_UNSPEC */
    case 1: alen = 12; break;               /* AF_INET: 4 + 4 + 2 + 2 */
    case 2: alen = 36; break;               /* AF_INET6: 16 + 16 + 2 + 2 */
    case 3: alen = 216; break;              /* AF_UNIX: 108 + 108 */
    default:                                /* a family of a later revision: as UNSPEC, as nginx */
        *used = 16 + len;
        return SG_PP_DONE;
    }
    uint8_t transport = fam & 0x0F;
    if (len < alen) return SG_PP_INVALID;
    if (!tlvs_fit(a + alen, len - alen)) return SG_PP_INVALID;
    out->tlv = a + alen;
    out->tlv_len = len - alen;
    *used = 16 + len;
    bool local = (ver_cmd & 0x0F) == 0;
    /* LOCAL: the balancer's own connection; UNSPEC or an unknown transport: no addresses */
    if (local || alen == 0 || transport == 0 || transport > 2) return SG_PP_DONE;
    if ((fam >> 4) == 1) {
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        out->srclen = out->dstlen = sizeof(struct sockaddr_in);
    } else if ((fam >> 4) == 2) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        out->srclen = out->dstlen = sizeof(struct sockaddr_in6);
    } else {
        struct sockaddr_un *s = (struct sockaddr_un *)&out->src, *d = (struct sockaddr_un *)&out->dst;
        s->sun_family = d->sun_family = AF_UNIX;
        memcpy(s->sun_path, a, sizeof(s->sun_path) - 1);
        memcpy(d->sun_path, a + 108, sizeof(d->sun_path) - 1);
        out->srclen = out->dstlen = sizeof(struct sockaddr_un);
    }
    out->has_addrs = true;
    return SG_PP_DONE;
}

sg_pp_result sg_pp_parse(const uint8_t *p, size_t n, sg_pp_info *out, size_t *used)
{
    static const char v1_sig[6] = { 'P', 'R', 'O', 'X', 'Y', ' ' };
    size_t k1 = n < 6 ? n : 6, k2 = n < 12 ? n : 12;
    if (memcmp(p, v1_sig, k1) == 0) return n < 6 ? SG_PP_MORE : parse_v1(p, n, out, used);
    if (memcmp(p, v2_sig, k2) == 0) return n < 12 ? SG_PP_MORE : parse_v2(p, n, out, used);
    return SG_PP_INVALID;
}

/* ---------------- what a connection keeps: addresses and TLVs ---------------- */

struct sockaddr_storage *sg_pp_block_new(const sg_pp_info *info)
{
    if (!info->has_addrs) return NULL;
    size_t head = 2 * sizeof(struct sockaddr_storage);
    struct sockaddr_storage *b = calloc(1, head + sizeof(size_t) + info->tlv_len);
    if (!b) return NULL;
    b[0] = info->src;
    b[1] = info->dst;
    memcpy((char *)b + head, &info->tlv_len, sizeof(size_t));
    if (info->tlv_len) memcpy((char *)b + head + sizeof(size_t), info->tlv, info->tlv_len);
    return b;
}

void sg_pp_block_tlvs(const struct sockaddr_storage *block, const uint8_t **tlv, size_t *len)
{
    *tlv = NULL;
    *len = 0;
    if (!block) return;
    size_t head = 2 * sizeof(struct sockaddr_storage);
    memcpy(len, (const char *)block + head, sizeof(size_t));
    *tlv = (const uint8_t *)block + head + sizeof(size_t);
}

/* ---------------- $proxy_protocol_tlv_NAME ---------------- */

typedef struct tlv_name {
    const char *name;
    uint8_t type;
} tlv_name;

static const tlv_name top_names[] = {
    { "alpn", 0x01 }, { "authority", 0x02 }, { "unique_id", 0x05 }, { "ssl", 0x20 }, { "netns", 0x30 },
    { NULL, 0 },
};

static const tlv_name ssl_names[] = {
    { "version", 0x21 }, { "cn", 0x22 }, { "cipher", 0x23 }, { "sig_alg", 0x24 }, { "key_alg", 0x25 },
    { NULL, 0 },
};

static bool name_is(const char *name, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(name, lit, n) == 0;
}

/* The first TLV of `type` in t[0..n) (already checked to fit). */
static bool tlv_lookup(const uint8_t *t, size_t n, unsigned type, const uint8_t **val, size_t *vlen)
{
    for (size_t i = 0; i + 3 <= n;) {
        size_t tl = (size_t)t[i + 1] << 8 | t[i + 2];
        if (i + 3 + tl > n) return false;
        if (t[i] == type) {
            *val = t + i + 3;
            *vlen = tl;
            return true;
        }
        i += 3 + tl;
    }
    return false;
}

/* "0xNN": the type, or -1 (no hex digits, another character, over 0xff). */
static int hex_type(const char *s, size_t n)
{
    if (n < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return -2;   /* not of that form */
    unsigned v = 0;
    for (size_t i = 2; i < n; i++) {
        int d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
              : s[i] >= 'A' && s[i] <= 'F' ? s[i] - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + (unsigned)d;
        if (v > 0xff) return -1;
    }
    return (int)v;
}

int sg_pp_tlv_find(const uint8_t *tlv, size_t len, const char *name, size_t namelen,
                   const uint8_t **val, size_t *vlen, char num[SG_PP_TLV_NUM_MAX])
{
    const uint8_t *ssl = NULL;
    size_t ssl_len = 0;
    bool have_ssl = tlv && tlv_lookup(tlv, len, PP2_TYPE_SSL, &ssl, &ssl_len) && ssl_len >= PP2_SSL_HEAD;
    if (name_is(name, namelen, "ssl_verify")) {
        if (!have_ssl) return 0;
        uint32_t v = (uint32_t)ssl[1] << 24 | (uint32_t)ssl[2] << 16 | (uint32_t)ssl[3] << 8 | ssl[4];
        snprintf(num, SG_PP_TLV_NUM_MAX, "%u", v);
        *val = (const uint8_t *)num;
        *vlen = strlen(num);
        return 1;
    }
    const tlv_name *names = top_names;
    const uint8_t *area = tlv;
    size_t area_len = len;
    if (namelen > 4 && strncasecmp(name, "ssl_", 4) == 0) {
        names = ssl_names;
        name += 4;
        namelen -= 4;
        area = have_ssl ? ssl + PP2_SSL_HEAD : NULL;
        area_len = have_ssl ? ssl_len - PP2_SSL_HEAD : 0;
    }
    int type = hex_type(name, namelen);
    if (type == -1) return -1;
    for (size_t k = 0; type == -2 && names[k].name; k++)
        if (name_is(name, namelen, names[k].name)) type = names[k].type;
    if (type < 0) return -1;
    return area && tlv_lookup(area, area_len, (unsigned)type, val, vlen) ? 1 : 0;
}

/* ---------------- writing version 1 (proxy_protocol on toward an upstream) ---------------- */

size_t sg_pp_write_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf)
{
    char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
    unsigned sp, dp;
    const char *proto;
    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)src, *d4 = (const void *)dst;
        inet_ntop(AF_INET, &s4->sin_addr, sa, sizeof(sa));
        inet_ntop(AF_INET, &d4->sin_addr, da, sizeof(da));
        sp = ntohs(s4->sin_port);
        dp = ntohs(d4->sin_port);
        proto = "TCP4";
    } else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)src, *d6 = (const void *)dst;
        inet_ntop(AF_INET6, &s6->sin6_addr, sa, sizeof(sa));
        inet_ntop(AF_INET6, &d6->sin6_addr, da, sizeof(da));
        sp = ntohs(s6->sin6_port);
        dp = ntohs(d6->sin6_port);
        proto = "TCP6";
    } else {
        /* a unix socket, or mixed families a receiver could not parse */
        memcpy(buf, "PROXY UNKNOWN\r\n", sizeof("PROXY UNKNOWN\r\n"));
        return sizeof("PROXY UNKNOWN\r\n") - 1;
    }
    int n = snprintf(buf, SG_PP_V1_WRITE_MAX, "PROXY %s %s %s %u %u\r\n", proto, sa, da, sp, dp);
    return n > 0 && n < SG_PP_V1_WRITE_MAX ? (size_t)n : 0;
}

/* ---------------- writing version 2 (proxy_protocol_version 2) ---------------- */

size_t sg_pp_write_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *buf)
{
    memcpy(buf, v2_sig, sizeof(v2_sig));
    uint8_t *a = buf + 16;
    size_t alen;
    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)src, *d4 = (const void *)dst;
        buf[12] = 0x21;                /* version 2, PROXY */
        buf[13] = 0x11;                /* AF_INET, STREAM */
        memcpy(a, &s4->sin_addr, 4);
        memcpy(a + 4, &d4->sin_addr, 4);
        memcpy(a + 8, &s4->sin_port, 2);
        memcpy(a + 10, &d4->sin_port, 2);
        alen = 12;
    } else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)src, *d6 = (const void *)dst;
        buf[12] = 0x21;
        buf[13] = 0x21;                /* AF_INET6, STREAM */
        memcpy(a, &s6->sin6_addr, 16);
        memcpy(a + 16, &d6->sin6_addr, 16);
        memcpy(a + 32, &s6->sin6_port, 2);
        memcpy(a + 34, &d6->sin6_port, 2);
        alen = 36;
    } else {
        buf[12] = 0x20;                /* version 2, LOCAL */
        buf[13] = 0x00;                /* AF_UNSPEC */
        alen = 0;
    }
    buf[14] = (uint8_t)(alen >> 8);
    buf[15] = (uint8_t)alen;
    return 16 + alen;
}
