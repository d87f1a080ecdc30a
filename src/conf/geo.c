/* geo: see geo.h. Networks are found through a hash of (family, prefix
 * length, network), trying the prefix lengths in use from the longest
 * (at most 33 or 129 probes; nginx walks a radix tree); ranges in address
 * order by binary search, other ranges by a scan. Geo bases of 100,000s
 * of lines load and answer at once either way. */
#include "conf/geo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/directives.h"

typedef struct geo_entry {
    bool range;
    sg_access_rule net;          /* family, addr, mask (`range`: unused) */
    int prefix;                  /* mask length, for the longest match */
    uint32_t lo, hi;             /* `range`: host order, inclusive */
    sg_cval value;
    bool dead;                   /* a network removed by `delete` (its slot in the index stays) */
} geo_entry;

struct sg_geo {
    struct sg_conf *c;
    geo_entry *e;
    size_t n;
    bool ranges;
    bool has_default;
    sg_cval def;
    /* proxy ADDRESS|CIDR, proxy_recursive (issue 10, access): the address
     * a trusted proxy forwarded in X-Forwarded-For is the one looked up */
    sg_access_rule *proxies;
    size_t nproxies;
    bool proxy_recursive;
    /* Range files of geo bases hold 100,000s of lines, written in address
     * order: while every entry is a range and each starts after the one
     * before, a line is appended at once and a lookup is a binary search
     * (anything else falls back to the scans below). */
    bool unordered;
    uint32_t max_hi;
    /* networks: the index (entry number + 1 per slot, 0 empty, open
     * addressing) and the live networks of each prefix length */
    uint32_t *slots;
    size_t nslots, nnets;
    uint32_t cnt4[33], cnt6[129];
};

sg_geo *sg_geo_new(struct sg_conf *c)
{
    sg_geo *g = sg_arena_alloc(&c->arena, sizeof(*g));
    memset(g, 0, sizeof(*g));
    g->c = c;
    return g;
}

/* geo values are plain strings in nginx (no variables). */
static sg_cval literal(struct sg_conf *c, sg_str v)
{
    sg_cval cv = { 0 };
    cv.literal = true;
    cv.text = sg_arena_str(&c->arena, v);
    return cv;
}

static int prefix_of(const sg_access_rule *r)
{
    int n = 0;
    size_t len = r->family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < len; i++)
        for (int b = 7; b >= 0; b--) n += (r->mask[i] >> b) & 1;
    return n;
}

static bool parse_v4(const char *s, size_t n, uint32_t *out)
{
    char buf[INET_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(buf)) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1) return false;
    *out = ntohl(a.s_addr);
    return true;
}

static uint64_t net_hash(int family, int prefix, const uint8_t *addr)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(family * 131 + prefix);
    size_t len = family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < len; i++) h = (h ^ addr[i]) * 1099511628211ull;
    return h;
}

/* The slot of network (family, prefix, addr): its entry's, or the empty
 * one where it would go. */
static uint32_t *net_slot(const sg_geo *g, int family, int prefix, const uint8_t *addr)
{
    size_t mask = g->nslots - 1, len = family == AF_INET ? 4 : 16;
    for (size_t i = net_hash(family, prefix, addr) & mask;; i = (i + 1) & mask) {
        uint32_t v = g->slots[i];
        if (!v) return &g->slots[i];
        const geo_entry *o = &g->e[v - 1];
        if (o->net.family == family && o->prefix == prefix && memcmp(o->net.addr, addr, len) == 0)
            return &g->slots[i];
    }
}

static void net_index(sg_geo *g, uint32_t idx)
{
    if (2 * (g->nnets + 1) > g->nslots) {
        uint32_t *old = g->slots;
        size_t nold = g->nslots;
        g->nslots = nold ? 2 * nold : 64;
        g->slots = sg_arena_alloc(&g->c->arena, g->nslots * sizeof(*g->slots));
        memset(g->slots, 0, g->nslots * sizeof(*g->slots));
        for (size_t i = 0; i < nold; i++)
            if (old[i]) {
                const geo_entry *o = &g->e[old[i] - 1];
                *net_slot(g, o->net.family, o->prefix, o->net.addr) = old[i];
            }
    }
    const geo_entry *e = &g->e[idx];
    *net_slot(g, e->net.family, e->prefix, e->net.addr) = idx + 1;
    g->nnets++;
}

static const geo_entry *net_get(const sg_geo *g, int family, int prefix, const uint8_t *addr)
{
    if (!g->nslots) return NULL;
    uint32_t v = *net_slot(g, family, prefix, addr);
    return v ? &g->e[v - 1] : NULL;
}

static void net_count(sg_geo *g, const geo_entry *e, int by)
{
    uint32_t *c = e->net.family == AF_INET ? &g->cnt4[e->prefix] : &g->cnt6[e->prefix];
    *c = (uint32_t)((int)*c + by);
}

bool sg_geo_line(sg_geo *g, sg_str key, const sg_str *value, sg_conf_pos pos, char *err, size_t errlen)
{
    char k[128];
    if (key.n >= sizeof(k)) goto bad;
    memcpy(k, key.p, key.n);
    k[key.n] = '\0';
    if (!value) {
        if (strcmp(k, "ranges") == 0) {
            if (g->n) {
                snprintf(err, errlen, "%s:%d:%d: \"ranges\" must be before any address in geo",
                         pos.file ? pos.file : "", pos.line, pos.col);
                return false;
            }
            g->ranges = true;
            return true;
        }
        if (strcmp(k, "proxy_recursive") == 0) {
            g->proxy_recursive = true;
            return true;
        }
        goto bad;
    }
    if (strcmp(k, "default") == 0) {
        g->has_default = true;
        g->def = literal(g->c, *value);
        return true;
    }
    if (strcmp(k, "proxy") == 0) {
        char buf[128];
        sg_access_rule r;
        bool low;
        if (value->n >= sizeof(buf)) goto bad_proxy;
        memcpy(buf, value->p, value->n);
        buf[value->n] = '\0';
        if (strcmp(buf, "all") == 0 || !sg_conf_parse_access_rule(buf, false, &r, &low)) goto bad_proxy;
        g->proxies = sg_conf_push(&g->c->arena, g->proxies, g->nproxies, sizeof(r));
        g->proxies[g->nproxies++] = r;
        return true;
    bad_proxy:
        snprintf(err, errlen, "%s:%d:%d: invalid parameter \"%.*s\"", pos.file ? pos.file : "", pos.line,
                 pos.col, (int)value->n, value->p);
        return false;
    }
    bool del = strcmp(k, "delete") == 0;
    const char *net = del ? value->p : k;
    size_t netlen = del ? value->n : key.n;
    geo_entry e = { 0 };
    const char *dash = g->ranges ? memchr(net, '-', netlen) : NULL;
    if (g->ranges && !dash) goto bad_net;   /* nginx: with `ranges`, every line is a range */
    if (dash) {
        if (!parse_v4(net, (size_t)(dash - net), &e.lo) ||
            !parse_v4(dash + 1, netlen - (size_t)(dash + 1 - net), &e.hi) || e.lo > e.hi)
            goto bad_net;
        e.range = true;
    } else {
        char buf[128];
        if (netlen >= sizeof(buf)) goto bad_net;
        memcpy(buf, net, netlen);
        buf[netlen] = '\0';
        bool low;
        if (strcmp(buf, "all") == 0 || strcmp(buf, "unix:") == 0 ||
            !sg_conf_parse_access_rule(buf, false, &e.net, &low))
            goto bad_net;
        e.prefix = prefix_of(&e.net);
        geo_entry *o = (geo_entry *)net_get(g, e.net.family, e.prefix, e.net.addr);
        if (del) {
            if (o && !o->dead) {
                o->dead = true;
                net_count(g, o, -1);
            }
            return true;
        }
        if (o) {                           /* nginx: a duplicate network's new value wins */
            if (o->dead) net_count(g, o, +1);
            o->dead = false;
            o->value = literal(g->c, *value);
            return true;
        }
        e.value = literal(g->c, *value);
        g->e = sg_conf_push(&g->c->arena, g->e, g->n, sizeof(e));
        g->e[g->n++] = e;
        net_index(g, (uint32_t)(g->n - 1));
        net_count(g, &g->e[g->n - 1], +1);
        return true;
    }
    if (!del && e.range && !g->unordered && (g->n == 0 || e.lo > g->max_hi)) {
        e.value = literal(g->c, *value);
        g->e = sg_conf_push(&g->c->arena, g->e, g->n, sizeof(e));
        g->e[g->n++] = e;
        g->max_hi = e.hi;
        return true;
    }
    if (!del) g->unordered = true;
    for (size_t i = 0; i < g->n; i++) {           /* ranges from here on */
        geo_entry *o = &g->e[i];
        if (!(o->lo == e.lo && o->hi == e.hi)) continue;
        if (del) {
            memmove(o, o + 1, (g->n - i - 1) * sizeof(*o));
            g->n--;
            return true;
        }
        o->value = literal(g->c, *value);   /* nginx: a duplicate network's new value wins */
        return true;
    }
    if (del) return true;
    e.value = literal(g->c, *value);
    /* nginx splits a range that holds the new one around it, so that a
     * later `delete` of each piece (exact ranges only) removes it all */
    for (size_t i = 0; e.range && i < g->n; i++) {
        geo_entry o = g->e[i];
        if (!o.range || e.lo < o.lo || e.hi > o.hi) continue;
        if (o.lo < e.lo) {
            g->e[i].hi = e.lo - 1;
            if (o.hi > e.hi) {
                geo_entry right = o;
                right.lo = e.hi + 1;
                g->e = sg_conf_push(&g->c->arena, g->e, g->n, sizeof(right));
                g->e[g->n++] = right;
            }
        } else {                           /* o.lo == e.lo: o.hi > e.hi (not the same range) */
            g->e[i].lo = e.hi + 1;
        }
        break;
    }
    g->e = sg_conf_push(&g->c->arena, g->e, g->n, sizeof(e));
    g->e[g->n++] = e;
    return true;
bad_net:
    snprintf(err, errlen, "%s:%d:%d: invalid %s \"%.*s\"", pos.file ? pos.file : "", pos.line, pos.col,
             g->ranges ? "range" : "network", (int)netlen, net);
    return false;
bad:
    snprintf(err, errlen, "%s:%d:%d: invalid number of the geo parameters", pos.file ? pos.file : "",
             pos.line, pos.col);
    return false;
}

static bool net_has(const sg_access_rule *r, const uint8_t *a, int family)
{
    if (r->family != family) return false;
    size_t len = family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < len; i++)
        if ((a[i] & r->mask[i]) != r->addr[i]) return false;
    return true;
}

static const sg_cval *find(const sg_geo *g, int family, const uint8_t *a)
{
    if (!g->ranges) {                      /* the longest network first */
        int max = family == AF_INET ? 32 : 128;
        const uint32_t *cnt = family == AF_INET ? g->cnt4 : g->cnt6;
        for (int len = max; len >= 0; len--) {
            if (!cnt[len]) continue;
            uint8_t k[16] = { 0 };
            for (int i = 0; i < len / 8; i++) k[i] = a[i];
            if (len % 8) k[len / 8] = (uint8_t)(a[len / 8] & (0xff << (8 - len % 8)));
            const geo_entry *o = net_get(g, family, len, k);
            if (o && !o->dead) return &o->value;
        }
        return g->has_default ? &g->def : NULL;
    }
    const geo_entry *best = NULL;
    uint32_t v4 = family == AF_INET ? ((uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3]) : 0;
    if (!g->unordered) {                   /* ordered, disjoint ranges only (a delete keeps them so) */
        size_t lo = 0, hi = g->n;
        while (family == AF_INET && lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (g->e[mid].hi < v4) lo = mid + 1;
            else hi = mid;
        }
        if (family == AF_INET && lo < g->n && g->e[lo].lo <= v4) return &g->e[lo].value;
        return g->has_default ? &g->def : NULL;
    }
    for (size_t i = 0; i < g->n; i++) {
        const geo_entry *e = &g->e[i];
        if (family == AF_INET && v4 >= e->lo && v4 <= e->hi) best = e;   /* the last range wins */
    }
    if (best) return &best->value;
    return g->has_default ? &g->def : NULL;
}

const sg_cval *sg_geo_find(const sg_geo *g, const struct sockaddr *addr)
{
    static const uint8_t none[4] = { 255, 255, 255, 255 };
    if (addr && addr->sa_family == AF_INET)
        return find(g, AF_INET, (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr);
    if (addr && addr->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) return find(g, AF_INET, a6->s6_addr + 12);
        if (g->ranges) return find(g, AF_INET, none);   /* nginx: ranges are IPv4, others INADDR_NONE */
        return find(g, AF_INET6, a6->s6_addr);
    }
    return find(g, AF_INET, none);   /* unix: sockets, as nginx */
}

bool sg_geo_proxy_trusted(const void *arg, const struct sockaddr *sa)
{
    const sg_geo *g = arg;
    for (size_t i = 0; i < g->nproxies; i++) {
        const sg_access_rule *r = &g->proxies[i];
        if (r->family == AF_UNIX) {
            if (sa->sa_family == AF_UNIX) return true;
        } else if (sa->sa_family == AF_INET) {
            if (net_has(r, (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr, AF_INET)) return true;
        } else if (sa->sa_family == AF_INET6) {
            const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(a6) ? net_has(r, a6->s6_addr + 12, AF_INET) : net_has(r, a6->s6_addr, AF_INET6))
                return true;
        }
    }
    return false;
}

size_t sg_geo_proxies(const sg_geo *g, bool *recursive)
{
    *recursive = g->proxy_recursive;
    return g->nproxies;
}

void sg_geo_text_addr(sg_str text, struct sockaddr_storage *ss)
{
    char buf[INET6_ADDRSTRLEN];
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (text.n < sizeof(buf)) {
        memcpy(buf, text.p, text.n);
        buf[text.n] = '\0';
        if (inet_pton(AF_INET, buf, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            return;
        }
        if (inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            return;
        }
    }
    in4->sin_family = AF_INET;             /* not an address: 255.255.255.255, as nginx */
    in4->sin_addr.s_addr = htonl(INADDR_NONE);
}
