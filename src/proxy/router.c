/* Server and location selection, following nginx's
 * ngx_http_find_virtual_server and ngx_http_core_find_location. */
#include "proxy/router.h"

#include <stdlib.h>
#include <string.h>

#include "exchange/vars.h"

/* The children of one location, split the way the lookup uses them.
 * Prefix locations are sorted longest first so that the first one that
 * matches is the longest match. */
typedef struct loc_level {
    const sg_location **exact;
    size_t nexact;
    const sg_location **prefix;        /* "" and "^~", longest first */
    size_t nprefix;
    const sg_location **regex;         /* "~" and "~*", declaration order */
    size_t nregex;
} loc_level;

static int by_length_desc(const void *a, const void *b)
{
    size_t la = (*(const sg_location *const *)a)->name.n;
    size_t lb = (*(const sg_location *const *)b)->name.n;
    return la < lb ? 1 : la > lb ? -1 : 0;
}

static loc_level *level_build(sg_conf *c, const sg_location *l)
{
    loc_level *lv = sg_arena_alloc(&c->arena, sizeof(*lv));
    size_t bytes = (l->nchildren ? l->nchildren : 1) * sizeof(sg_location *);
    lv->exact = sg_arena_alloc(&c->arena, bytes);
    lv->prefix = sg_arena_alloc(&c->arena, bytes);
    lv->regex = sg_arena_alloc(&c->arena, bytes);
    lv->nexact = lv->nprefix = lv->nregex = 0;
    for (size_t i = 0; i < l->nchildren; i++) {
        const sg_location *ch = l->children[i];
        switch (ch->match) {
        case SG_LOC_EXACT: lv->exact[lv->nexact++] = ch; break;
        case SG_LOC_PREFIX: case SG_LOC_PREFIX_NOREGEX: lv->prefix[lv->nprefix++] = ch; break;
        case SG_LOC_REGEX: case SG_LOC_REGEX_CASELESS: lv->regex[lv->nregex++] = ch; break;
        case SG_LOC_NAMED: break;      /* never matched by URI */
        case SG_LOC_IF: break;         /* an `if` block: chosen by its condition (proxy/rewrite.c) */
        }
    }
    qsort(lv->prefix, lv->nprefix, sizeof(*lv->prefix), by_length_desc);
    return lv;
}

static void location_index(sg_conf *c, sg_location *l)
{
    l->index = l->nchildren ? level_build(c, l) : NULL;
    for (size_t i = 0; i < l->nchildren; i++) location_index(c, l->children[i]);
}

void sg_router_build(sg_conf *c)
{
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        if (s->root) location_index(c, s->root);
        for (size_t k = 0; k < s->nnamed; k++) location_index(c, s->named[k]);
    }
}

/* ---------------- server ---------------- */

static bool ends_with_label(sg_str host, sg_str name)
{
    return host.n > name.n && host.p[host.n - name.n - 1] == '.' &&
           sg_str_caseeq((sg_str){ host.p + host.n - name.n, name.n }, name);
}

/* Length of the wildcard part of `n` that matches host, 0 if none. */
static size_t wildcard_match(const sg_server_name *n, sg_str host, bool head)
{
    if (head && n->kind == SG_SN_WILDCARD_HEAD)
        return ends_with_label(host, n->name) ? n->name.n + 1 : 0;
    if (head && n->kind == SG_SN_DOT)
        return (sg_str_caseeq(host, n->name) || ends_with_label(host, n->name)) ? n->name.n + 1 : 0;
    if (!head && n->kind == SG_SN_WILDCARD_TAIL)
        return host.n > n->name.n + 1 && host.p[n->name.n] == '.' &&
               sg_str_caseeq((sg_str){ host.p, n->name.n }, n->name) ? n->name.n + 1 : 0;
    return 0;
}

static const sg_server_conf *longest_wildcard(const sg_listen_group *g, sg_str host, bool head)
{
    const sg_server_conf *best = NULL;
    size_t bestn = 0;
    for (size_t i = 0; i < g->nservers; i++)
        for (size_t k = 0; k < g->servers[i]->nnames; k++) {
            size_t n = wildcard_match(&g->servers[i]->names[k], host, head);
            if (n > bestn) { bestn = n; best = g->servers[i]; }
        }
    return best;
}

const sg_server_conf *sg_router_server(const sg_listen_group *g, sg_str host, sg_http_req *r)
{
    for (size_t i = 0; i < g->nservers; i++)
        for (size_t k = 0; k < g->servers[i]->nnames; k++) {
            const sg_server_name *n = &g->servers[i]->names[k];
            if (n->kind == SG_SN_EXACT && sg_str_caseeq(n->name, host)) return g->servers[i];
        }
    const sg_server_conf *s = longest_wildcard(g, host, true);
    if (!s) s = longest_wildcard(g, host, false);
    if (s) return s;
    for (size_t i = 0; i < g->nservers; i++)
        for (size_t k = 0; k < g->servers[i]->nnames; k++) {
            const sg_server_name *n = &g->servers[i]->names[k];
            if (n->kind == SG_SN_REGEX && n->regex && sg_regex_exec(n->regex, host, r))
                return g->servers[i];
        }
    if (g->default_server) return g->default_server;
    return g->nservers ? g->servers[0] : NULL;
}

const sg_server_conf *sg_router_sni(const sg_listen_group *g, sg_str host)
{
    return sg_router_server(g, host, NULL);
}

/* ---------------- location ---------------- */

static bool starts_with(sg_str s, sg_str prefix)
{
    return s.n >= prefix.n && (prefix.n == 0 || memcmp(s.p, prefix.p, prefix.n) == 0);
}

/* One level of ngx_http_core_find_location. Sets *out to the best match
 * so far; true when the search is over (exact or regex match). As in
 * nginx, "^~" only keeps the regexes of its own level from being tried:
 * the enclosing levels still try theirs. */
static bool find_in(const sg_location *l, sg_str uri, sg_http_req *r, const sg_location **out)
{
    const loc_level *lv = l->index;
    if (!lv) return false;
    for (size_t i = 0; i < lv->nexact; i++)
        if (sg_str_eq(lv->exact[i]->name, uri)) { *out = lv->exact[i]; return true; }
    bool noregex = false;
    for (size_t i = 0; i < lv->nprefix; i++) {
        const sg_location *p = lv->prefix[i];
        if (!starts_with(uri, p->name)) continue;
        *out = p;
        noregex = p->match == SG_LOC_PREFIX_NOREGEX;
        if (find_in(p, uri, r, out)) return true;
        break;
    }
    if (noregex) return false;
    for (size_t i = 0; i < lv->nregex; i++) {
        const sg_location *x = lv->regex[i];
        if (!x->regex || !sg_regex_exec(x->regex, uri, r)) continue;
        *out = x;
        find_in(x, uri, r, out);      /* its nested locations may refine the match */
        return true;
    }
    return false;
}

const sg_location *sg_router_location(const sg_server_conf *s, sg_str uri, sg_http_req *r)
{
    const sg_location *out = NULL;
    if (s && s->root) find_in(s->root, uri, r, &out);
    return out;
}

const sg_location *sg_router_named(const sg_server_conf *s, sg_str name)
{
    for (size_t i = 0; i < s->nnamed; i++)
        if (sg_str_eq(s->named[i]->name, name)) return s->named[i];
    return NULL;
}
