/* The map directive, matched in ngx_http_map_module's order: exact strings
 * (ignoring case), then with `hostnames` the longest "*.name" and the
 * longest "name.*" wildcard, then regexes in order, then the default.
 * Requests are not seen here: sg_map_eval (exchange/vars.c) evaluates the
 * source, hands its value to sg_map_find and the result back to the request. */
#include "conf/map.h"

#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/parser.h"
#include "core/split.h"

typedef struct map_entry {
    sg_str key;                 /* exact: lowercased; wildcard: without "*." / ".*" */
    sg_cval value;
    void *re;                   /* regex entries */
} map_entry;

typedef struct entry_list {
    map_entry *v;
    size_t n, cap;
} entry_list;

struct sg_map {
    sg_conf *c;
    sg_cval source;
    bool hostnames;
    bool has_default;
    bool is_volatile;           /* `volatile`: evaluated at each use, not once per request */
    sg_cval def;
    map_entry **slots;          /* exact keys: open addressing, power-of-two size */
    size_t nslots, nexact;
    entry_list head, tail, regex;
    struct sg_geo *geo;         /* a geo block: keys are addresses (conf/geo.h) */
    bool geo_client;            /* geo without $address: the client address itself */
    /* split_clients (issue 10, access): parts by percentage (core/split.h) */
    bool split;
    uint32_t *split_bound;
    sg_cval *split_value;
    size_t nsplit;
    uint64_t split_sum, split_last;
};

static unsigned char lower(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch | 0x20) : ch;
}

static uint64_t hash_caseless(sg_str s)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < s.n; i++) h = (h ^ lower((unsigned char)s.p[i])) * 1099511628211ull;
    return h;
}

static void perr(char *err, size_t errlen, sg_conf_pos pos, const char *msg)
{
    snprintf(err, errlen, "%s:%d:%d: %s", pos.file ? pos.file : "<config>", pos.line, pos.col, msg);
}

sg_map *sg_map_new(sg_conf *c, sg_str source, sg_conf_pos pos, char *err, size_t errlen)
{
    sg_map *m = sg_arena_alloc(&c->arena, sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->c = c;
    if (!sg_cval_compile(c, source, pos, &m->source, err, errlen)) return NULL;
    return m;
}

void sg_map_set_geo(sg_map *m, struct sg_geo *g, bool client_address)
{
    m->geo = g;
    m->geo_client = client_address;
}

const struct sg_geo *sg_map_geo(const sg_map *m, bool *client_address)
{
    *client_address = m->geo_client;
    return m->geo;
}

bool sg_map_set_hostnames(sg_map *m)
{
    m->hostnames = true;
    return true;
}

void sg_map_set_volatile(sg_map *m)
{
    m->is_volatile = true;
}

bool sg_map_is_volatile(const sg_map *m)
{
    return m->is_volatile;
}

static map_entry **exact_slot(const sg_map *m, sg_str key)
{
    size_t mask = m->nslots - 1;
    for (size_t i = hash_caseless(key) & mask;; i = (i + 1) & mask)
        if (!m->slots[i] || sg_str_caseeq(m->slots[i]->key, key)) return &m->slots[i];
}

static void exact_grow(sg_map *m)
{
    map_entry **old = m->slots;
    size_t nold = m->nslots;
    m->nslots = nold ? nold * 2 : 16;
    m->slots = sg_arena_alloc(&m->c->arena, m->nslots * sizeof(*m->slots));
    memset(m->slots, 0, m->nslots * sizeof(*m->slots));
    for (size_t i = 0; i < nold; i++)
        if (old[i]) *exact_slot(m, old[i]->key) = old[i];
}

static bool exact_add(sg_map *m, sg_str key, const sg_cval *value)
{
    if (2 * (m->nexact + 1) > m->nslots) exact_grow(m);
    map_entry **slot = exact_slot(m, key);
    if (*slot) return false;
    map_entry *e = sg_arena_alloc(&m->c->arena, sizeof(*e));
    e->key = sg_arena_str(&m->c->arena, key);
    for (size_t i = 0; i < key.n; i++) ((char *)e->key.p)[i] = (char)lower((unsigned char)key.p[i]);
    e->value = *value;
    e->re = NULL;
    *slot = e;
    m->nexact++;
    return true;
}

static map_entry *list_push(sg_conf *c, entry_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        map_entry *v = sg_arena_alloc(&c->arena, cap * sizeof(*v));
        if (l->n) memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
    }
    map_entry *e = &l->v[l->n++];
    memset(e, 0, sizeof(*e));
    return e;
}

static bool wildcard_add(sg_map *m, entry_list *l, sg_str name, const sg_cval *value)
{
    for (size_t i = 0; i < l->n; i++)
        if (sg_str_caseeq(l->v[i].key, name)) return false;
    map_entry *e = list_push(m->c, l);
    e->key = sg_arena_str(&m->c->arena, name);
    for (size_t i = 0; i < name.n; i++) ((char *)e->key.p)[i] = (char)lower((unsigned char)name.p[i]);
    e->value = *value;
    return true;
}

/* With `hostnames`: "*.example.com", ".example.com" (also the bare name)
 * and "www.example.*". Returns 1 added, 0 conflict, -1 not a wildcard. */
static int hostname_add(sg_map *m, sg_str key, const sg_cval *value)
{
    if (key.n > 2 && key.p[0] == '*' && key.p[1] == '.')
        return wildcard_add(m, &m->head, (sg_str){ key.p + 2, key.n - 2 }, value);
    if (key.n > 1 && key.p[0] == '.') {
        sg_str name = { key.p + 1, key.n - 1 };
        return exact_add(m, name, value) && wildcard_add(m, &m->head, name, value);
    }
    if (key.n > 2 && key.p[key.n - 1] == '*' && key.p[key.n - 2] == '.')
        return wildcard_add(m, &m->tail, (sg_str){ key.p, key.n - 2 }, value);
    return -1;
}

static bool regex_add(sg_map *m, sg_str key, const sg_cval *value, sg_conf_pos pos,
                      char *err, size_t errlen)
{
    bool caseless = key.n > 1 && key.p[1] == '*';
    sg_str src = caseless ? (sg_str){ key.p + 2, key.n - 2 } : (sg_str){ key.p + 1, key.n - 1 };
    char msg[512];
    void *re = sg_regex_compile(src, caseless, msg, sizeof(msg));
    if (!re) { perr(err, errlen, pos, msg); return false; }
    map_entry *e = list_push(m->c, &m->regex);
    e->key = sg_arena_str(&m->c->arena, src);
    e->value = *value;
    e->re = re;
    return true;
}

bool sg_map_add(sg_map *m, sg_str key, sg_str value, sg_conf_pos pos, char *err, size_t errlen)
{
    char msg[512];
    if (sg_str_eq_lit(key, "hostnames") && value.n == 0) return sg_map_set_hostnames(m);
    if (sg_str_eq_lit(key, "volatile") && value.n == 0) {
        sg_map_set_volatile(m);
        return true;
    }
    sg_cval cv;
    if (!sg_cval_compile(m->c, value, pos, &cv, err, errlen)) return false;
    if (sg_str_eq_lit(key, "default")) {
        if (m->has_default) { perr(err, errlen, pos, "duplicate default map parameter"); return false; }
        m->has_default = true;
        m->def = cv;
        return true;
    }
    if (key.n > 1 && key.p[0] == '~') {
        /* its named captures are variables, as those of a location's regex */
        sg_var_note_captures(m->c, key);
        return regex_add(m, key, &cv, pos, err, errlen);
    }
    if (key.n && key.p[0] == '\\') key = (sg_str){ key.p + 1, key.n - 1 };
    int rc = m->hostnames ? hostname_add(m, key, &cv) : -1;
    if (rc < 0) rc = exact_add(m, key, &cv);
    if (rc) return true;
    snprintf(msg, sizeof(msg), "conflicting parameter \"%.*s\"", (int)key.n, key.p);
    perr(err, errlen, pos, msg);
    return false;
}

static const map_entry *match_head(const sg_map *m, sg_str host)
{
    const map_entry *best = NULL;
    for (size_t i = 0; i < m->head.n; i++) {
        sg_str k = m->head.v[i].key;
        if (host.n > k.n && host.p[host.n - k.n - 1] == '.' &&
            sg_str_caseeq((sg_str){ host.p + host.n - k.n, k.n }, k) && (!best || k.n > best->key.n))
            best = &m->head.v[i];
    }
    return best;
}

static const map_entry *match_tail(const sg_map *m, sg_str host)
{
    const map_entry *best = NULL;
    for (size_t i = 0; i < m->tail.n; i++) {
        sg_str k = m->tail.v[i].key;
        if (host.n > k.n + 1 && host.p[k.n] == '.' && sg_str_caseeq((sg_str){ host.p, k.n }, k) &&
            (!best || k.n > best->key.n))
            best = &m->tail.v[i];
    }
    return best;
}

const sg_cval *sg_map_source(const sg_map *m)
{
    return &m->source;
}

bool sg_map_add_split(sg_map *m, sg_str pct, sg_str value, sg_conf_pos pos, char *err, size_t errlen)
{
    char msg[256];
    long p = 0;
    if (!sg_str_eq_lit(pct, "*") && (p = sg_split_percent(pct.p, pct.n)) <= 0) {
        snprintf(msg, sizeof(msg), "invalid percent value \"%.*s\"", (int)pct.n, pct.p);
        perr(err, errlen, pos, msg);
        return false;
    }
    uint32_t bound;
    if (!sg_split_bound(p, &m->split_sum, &m->split_last, &bound)) {
        perr(err, errlen, pos, "percent total is greater than 100%");
        return false;
    }
    m->split = true;
    m->split_bound = sg_conf_push(&m->c->arena, m->split_bound, m->nsplit, sizeof(*m->split_bound));
    m->split_value = sg_conf_push(&m->c->arena, m->split_value, m->nsplit, sizeof(*m->split_value));
    sg_cval cv = { 0 };
    cv.literal = true;                 /* nginx: the value is a plain string */
    cv.text = sg_arena_str(&m->c->arena, value);
    m->split_bound[m->nsplit] = bound;
    m->split_value[m->nsplit++] = cv;
    return true;
}

const sg_cval *sg_map_find(const sg_map *m, sg_str v, sg_map_match_fn match, void *arg)
{
    if (m->split) {
        size_t i = sg_split_pick(m->split_bound, m->nsplit, sg_murmur_hash2(v.p, v.n));
        return i < m->nsplit ? &m->split_value[i] : NULL;
    }
    if (m->hostnames && v.n && v.p[v.n - 1] == '.') v.n--;
    if (m->nexact) {
        map_entry *e = *exact_slot(m, v);
        if (e) return &e->value;
    }
    if (m->hostnames) {
        const map_entry *e = match_head(m, v);
        if (!e) e = match_tail(m, v);
        if (e) return &e->value;
    }
    /* nginx tries the regexes only on a non-empty value */
    for (size_t i = 0; v.n && i < m->regex.n; i++)
        if (match(m->regex.v[i].re, v, arg)) return &m->regex.v[i].value;
    return m->has_default ? &m->def : NULL;
}

void sg_map_free(sg_map *m)
{
    for (size_t i = 0; i < m->regex.n; i++) {
        sg_regex_free(m->regex.v[i].re);
        m->regex.v[i].re = NULL;
    }
    m->regex.n = 0;
}
