/* Run-time implicit upstreams and their cache (upstream/dynamic.h). */
#include "upstream/dynamic.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/sockaddr.h"
#include "core/str.h"
#include "upstream/pool.h"

/* A retired entry is freed this long after its retirement at the
 * earliest: the idle connections its pool closed are freed by deferred
 * work, after the call that closed them. */
#define GRACE_MS 1000

struct sg_dyn_entry {
    char *key;
    char *uname;                       /* the upstream's name: the key up to a space */
    sg_upstream_conf conf;             /* malloc'd servers and names */
    sg_upstream_rt *rt;
    uint64_t expires_ms;               /* 0: never */
    int refs;
    uint64_t retired_ms;
    sg_dyn *d;
};

struct sg_dyn {
    int worker, nworkers;
    sg_loop *loop;
    sg_dyn_entry **live;
    size_t nlive;
    sg_dyn_entry **dead;               /* retired, freed when unused (sweep) */
    size_t ndead;
    sg_resolver **res;                 /* by sg_resolver_conf.id */
    size_t nres;
    void *pending;                     /* the proxy's lookups in progress (sg_dyn_pending) */
};

sg_dyn *sg_dyn_new(int worker, int nworkers, sg_loop *loop)
{
    sg_dyn *d = sg_xcalloc(1, sizeof(*d));
    d->worker = worker;
    d->nworkers = nworkers;
    d->loop = loop;
    return d;
}

static void entry_free(sg_dyn_entry *e)
{
    sg_upstream_rt_free(e->rt);
    for (size_t i = 0; i < e->conf.nservers; i++) free(e->conf.servers[i].name);
    free(e->conf.servers);
    free(e->key);
    free(e->uname);
    free(e);
}

static void entry_retire(sg_dyn *d, sg_dyn_entry *e, uint64_t now_ms)
{
    sg_pool_retire(&e->rt->pools[d->worker]);
    e->retired_ms = now_ms;
    d->dead = sg_xrealloc(d->dead, (d->ndead + 1) * sizeof(*d->dead));
    d->dead[d->ndead++] = e;
}

static void sweep(sg_dyn *d, uint64_t now_ms)
{
    for (size_t i = 0; i < d->ndead;) {
        sg_dyn_entry *e = d->dead[i];
        if (e->refs == 0 && !e->rt->pools[d->worker].h2 && now_ms - e->retired_ms >= GRACE_MS) {
            entry_free(e);
            d->dead[i] = d->dead[--d->ndead];
        } else {
            i++;
        }
    }
}

void sg_dyn_free(sg_dyn *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->nres; i++) sg_resolver_free(d->res[i]);
    free(d->res);
    for (size_t i = 0; i < d->nlive; i++) entry_free(d->live[i]);
    for (size_t i = 0; i < d->ndead; i++) entry_free(d->dead[i]);
    free(d->live);
    free(d->dead);
    free(d);
}

void sg_dyn_retire(sg_dyn *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->nlive; i++) sg_pool_retire(&d->live[i]->rt->pools[d->worker]);
}

sg_dyn_entry *sg_dyn_find(sg_dyn *d, const char *key, uint64_t now_ms)
{
    for (size_t i = 0; i < d->nlive; i++) {
        sg_dyn_entry *e = d->live[i];
        if (strcasecmp(e->key, key) != 0) continue;
        if (e->expires_ms && now_ms >= e->expires_ms) {
            /* expired: looked up again; the old one goes when unused */
            d->live[i] = d->live[--d->nlive];
            entry_retire(d, e, now_ms);
            return NULL;
        }
        return e;
    }
    return NULL;
}

sg_dyn_entry *sg_dyn_add(sg_dyn *d, const char *key, const char *name, const struct sockaddr_storage *addrs,
                         const socklen_t *lens, size_t n, uint64_t expires_ms, uint64_t now_ms)
{
    sg_dyn_entry *old = sg_dyn_find(d, key, now_ms);
    if (old) return old;   /* two lookups of one name ran at once */
    sweep(d, now_ms);
    if (d->nlive >= SG_DYN_MAX) {
        /* the least recently added one no exchange holds makes room */
        for (size_t i = 0; i < d->nlive; i++) {
            if (d->live[i]->refs) continue;
            sg_dyn_entry *e = d->live[i];
            memmove(&d->live[i], &d->live[i + 1], (d->nlive - i - 1) * sizeof(*d->live));
            d->nlive--;
            entry_retire(d, e, now_ms);
            break;
        }
    }
    sg_dyn_entry *e = sg_xcalloc(1, sizeof(*e));
    e->d = d;
    e->key = sg_xstrdup(key);
    e->expires_ms = expires_ms;
    sg_upstream_conf *u = &e->conf;
    size_t un = strcspn(key, " ");
    e->uname = sg_xmalloc(un + 1);
    memcpy(e->uname, key, un);
    e->uname[un] = '\0';
    u->name = e->uname;
    u->implicit = true;
    /* as an implicit upstream of the configuration (conf/conf.c) */
    u->keepalive = 32;
    u->keepalive_timeout_ms = 60000;
    u->keepalive_requests = 1000;
    u->h2_ping_interval_ms = SG_UPSTREAM_PING_INTERVAL_MS;
    u->h2_ping_timeout_ms = SG_UPSTREAM_PING_TIMEOUT_MS;
    u->servers = sg_xcalloc(n, sizeof(*u->servers));
    for (size_t i = 0; i < n; i++) {
        char text[128];
        const char *nm = name ? name : sg_sockaddr_str((const struct sockaddr *)&addrs[i], text, sizeof(text));
        u->servers[i] = (sg_upstream_server_conf){ .name = sg_xstrdup(nm), .addr = addrs[i], .addrlen = lens[i],
                                                   .weight = 1, .max_fails = 0, .fail_timeout_ms = 10000 };
        /* max_fails=0: nginx makes a resolved name's peers for each request
         * (ngx_http_upstream_create_round_robin_peer), so a failure never
         * outlives its request; the next one tries every address again */
    }
    u->nservers = n;
    e->rt = sg_upstream_rt_new(u, d->nworkers);
    u->runtime = e->rt;
    d->live = sg_xrealloc(d->live, (d->nlive + 1) * sizeof(*d->live));
    d->live[d->nlive++] = e;
    return e;
}

void **sg_dyn_pending(sg_dyn *d) { return &d->pending; }

const sg_upstream_conf *sg_dyn_upstream(const sg_dyn_entry *e) { return &e->conf; }
void sg_dyn_hold(sg_dyn_entry *e) { e->refs++; }
void sg_dyn_drop(sg_dyn_entry *e) { e->refs--; }

sg_resolver *sg_dyn_resolver(sg_dyn *d, const sg_resolver_conf *rc, uint32_t timeout_ms,
                             char *err, size_t errlen)
{
    size_t id = (size_t)rc->id;
    if (id >= d->nres) {
        d->res = sg_xrealloc(d->res, (id + 1) * sizeof(*d->res));
        memset(d->res + d->nres, 0, (id + 1 - d->nres) * sizeof(*d->res));
        d->nres = id + 1;
    }
    if (!d->res[id]) d->res[id] = sg_resolver_new(d->loop, rc, timeout_ms, err, errlen);
    return d->res[id];
}
