/* DNS discovery for upstreams (upstream/resolve.h). */
#include "upstream/resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>

#include "core/log.h"
#include "core/sockaddr.h"
#include "core/str.h"
#include "net/resolver.h"
#include "upstream/balancer.h"
#include "upstream/pool.h"

#define RETRY_MS 5000                  /* a failed lookup, without valid= */
#define DEFAULT_TIMEOUT_MS 30000       /* resolver_timeout's default (nginx) */

/* One address a name resolved to, with what its server entry gets. */
typedef struct dns_addr {
    struct sockaddr_storage addr;
    socklen_t len;
    int weight;
    bool backup;
} dns_addr;

/* A set of balancers and the configuration copies they read: what one
 * publication made, kept until the runtime goes. */
typedef struct dns_gen {
    struct dns_gen *next;
    sg_balancer *balancer;             /* NULL: the runtime's current one (freed by it) */
    sg_upstream_conf *conf;            /* NULL: the generation's own */
    char **names;
    size_t nnames;
} dns_gen;

typedef struct dns_ups dns_ups;

/* One SRV record being looked up. */
typedef struct dns_srv_slot {
    struct dns_name *name;
    int weight, port;
    bool backup;
} dns_srv_slot;

typedef struct dns_name {
    dns_ups *du;
    const sg_upstream_resolve *rc;
    sg_timer timer;
    bool busy;                         /* a lookup is in progress */
    bool resolved;                     /* addrs hold a good answer */
    dns_addr *addrs;                   /* the last good set */
    size_t naddrs;
    /* the lookup in progress */
    dns_addr *pending;
    size_t npending;
    int outstanding;                   /* SRV targets not answered yet */
    bool failed;                       /* some part failed (not "not found") */
    const char *err;
    uint32_t ttl_s;
    dns_srv_slot *slots;
} dns_name;

struct dns_ups {
    sg_upstream_rt *rt;
    const sg_upstream_conf *u;
    sg_dns_set *set;                   /* NULL once stopped */
    sg_resolver *res;
    uint32_t valid_ms;
    dns_name *names;
    size_t nnames;
    dns_gen *cur;                      /* what the current balancer reads */
    dns_gen *retired;
};

struct sg_dns_set {
    sg_loop *loop;
    dns_ups **ups;
    size_t n;
    bool stopping;
};

static void lookup(dns_name *nm);

static void on_timer(sg_timer *t)
{
    dns_name *nm = (dns_name *)((char *)t - offsetof(dns_name, timer));
    lookup(nm);
}

static void publish(dns_ups *du);

/* The same name in the previous generation's upstream of the same name. */
static const dns_name *prev_name(const sg_dns_set *prev, const sg_upstream_conf *u, const sg_upstream_resolve *rc)
{
    for (size_t i = 0; prev && i < prev->n; i++) {
        const dns_ups *pu = prev->ups[i];
        if (strcmp(pu->u->name, u->name) != 0) continue;
        for (size_t k = 0; k < pu->nnames; k++) {
            const sg_upstream_resolve *o = pu->names[k].rc;
            if (pu->names[k].resolved && strcasecmp(o->host, rc->host) == 0 &&
                (o->service == NULL) == (rc->service == NULL) &&
                (!o->service || strcasecmp(o->service, rc->service) == 0))
                return &pu->names[k];
        }
    }
    return NULL;
}

/* A new generation's name starts with what the previous one resolved. */
static bool seed(dns_name *nm, const dns_name *old)
{
    if (!old) return false;
    nm->addrs = sg_xcalloc(old->naddrs ? old->naddrs : 1, sizeof(dns_addr));
    nm->naddrs = old->naddrs;
    for (size_t i = 0; i < old->naddrs; i++) {
        dns_addr *a = &nm->addrs[i];
        *a = old->addrs[i];
        if (!nm->rc->service) {        /* the new line's port and weight; SRV ones are the records' */
            if (a->addr.ss_family == AF_INET) ((struct sockaddr_in *)&a->addr)->sin_port = htons((uint16_t)nm->rc->port);
            else ((struct sockaddr_in6 *)&a->addr)->sin6_port = htons((uint16_t)nm->rc->port);
            a->weight = nm->rc->tmpl.weight;
            a->backup = nm->rc->tmpl.backup;
        }
    }
    nm->resolved = true;
    return nm->naddrs > 0;
}

sg_dns_set *sg_dns_start(sg_loop *loop, sg_upstream_conf *const *ups, size_t n,
                         const sg_resolver_conf *dflt, uint32_t dflt_timeout_ms, const sg_dns_set *prev)
{
    sg_dns_set *s = NULL;
    for (size_t i = 0; i < n; i++) {
        sg_upstream_conf *u = ups[i];
        sg_upstream_rt *rt = u->runtime;
        if (!u->nresolves || !rt || rt->dns) continue;
        const sg_resolver_conf *rc = u->dns_resolver ? u->dns_resolver : dflt;
        if (!rc) {
            sg_log_error("no resolver defined to resolve names at run time in upstream \"%s\"", u->name);
            continue;
        }
        uint32_t tmo = u->dns_resolver_timeout_ms ? u->dns_resolver_timeout_ms
                     : dflt_timeout_ms ? dflt_timeout_ms : DEFAULT_TIMEOUT_MS;
        char err[256];
        sg_resolver *res = sg_resolver_new(loop, rc, tmo, err, sizeof(err));
        if (!res) {
            sg_log_error("upstream \"%s\": %s", u->name, err);
            continue;
        }
        if (!s) {
            s = sg_xcalloc(1, sizeof(*s));
            s->loop = loop;
        }
        dns_ups *du = sg_xcalloc(1, sizeof(*du));
        du->rt = rt;
        du->u = u;
        du->set = s;
        du->res = res;
        du->valid_ms = rc->valid_ms;
        du->names = sg_xcalloc(u->nresolves, sizeof(dns_name));
        du->nnames = u->nresolves;
        /* The balancer the runtime started with reads the generation's conf. */
        du->cur = sg_xcalloc(1, sizeof(dns_gen));
        bool seeded = false;
        for (size_t k = 0; k < u->nresolves; k++) {
            dns_name *nm = &du->names[k];
            nm->du = du;
            nm->rc = &u->resolves[k];
            seeded |= seed(nm, prev_name(prev, u, nm->rc));
            sg_timer_init(&nm->timer, on_timer);
            sg_timer_arm(loop, &nm->timer, 0);   /* from the loop: it may not run yet */
        }
        rt->dns = du;
        if (seeded) publish(du);
        s->ups = sg_xrealloc(s->ups, (s->n + 1) * sizeof(*s->ups));
        s->ups[s->n++] = du;
    }
    return s;
}

void sg_dns_stop(sg_dns_set *s)
{
    if (!s) return;
    s->stopping = true;
    for (size_t i = 0; i < s->n; i++) {
        dns_ups *du = s->ups[i];
        for (size_t k = 0; k < du->nnames; k++) sg_timer_disarm(&du->names[k].timer);
        sg_resolver_free(du->res);     /* pending callbacks run now and see `stopping` */
        du->res = NULL;
        for (size_t k = 0; k < du->nnames; k++) {
            dns_name *nm = &du->names[k];
            free(nm->addrs);
            free(nm->pending);
            free(nm->slots);
        }
        free(du->names);
        du->names = NULL;
        du->nnames = 0;
        du->set = NULL;
    }
    free(s->ups);
    free(s);
}

static void gen_free(dns_gen *g, bool with_balancer)
{
    if (with_balancer) sg_balancer_free(g->balancer);
    for (size_t i = 0; i < g->nnames; i++) free(g->names[i]);
    free(g->names);
    if (g->conf) free(g->conf->servers);
    free(g->conf);
    free(g);
}

void sg_dns_rt_free(void *dns)
{
    dns_ups *du = dns;
    if (!du) return;
    while (du->retired) {
        dns_gen *g = du->retired;
        du->retired = g->next;
        gen_free(g, true);
    }
    if (du->cur) gen_free(du->cur, false);   /* its balancer is the runtime's to free */
    free(du);
}

/* ---- publishing a new set ---- */

static bool same_addr(const dns_addr *a, const dns_addr *b)
{
    return a->len == b->len && a->weight == b->weight && a->backup == b->backup &&
           sg_sockaddr_eq((const struct sockaddr *)&a->addr, (const struct sockaddr *)&b->addr);
}

static bool same_set(const dns_addr *a, size_t na, const dns_addr *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!same_addr(&a[i], &b[i])) return false;
    return true;
}

/* A peer of the new set takes the state of the old peer with its address
 * (the first not taken yet, so two entries of one address map one to one),
 * open attempts included. nb is not published yet: only ob's lock counts. */
static void carry_state(sg_balancer *nb, sg_balancer *ob)
{
    size_t on = ob->nprimary + ob->nbackup, nn = nb->nprimary + nb->nbackup;
    bool *taken = sg_xcalloc(on ? on : 1, sizeof(bool));
    pthread_spin_lock(&ob->lock);
    for (size_t i = 0; i < nn; i++) {
        sg_peer *np = &nb->peers[i];
        for (size_t j = 0; j < on; j++) {
            sg_peer *op = &ob->peers[j];
            if (taken[j] || op->conf->backup != np->conf->backup || op->conf->addrlen != np->conf->addrlen ||
                !sg_sockaddr_eq((const struct sockaddr *)&op->conf->addr, (const struct sockaddr *)&np->conf->addr))
                continue;
            taken[j] = true;
            np->fails = op->fails;
            np->checked_ms = op->checked_ms;
            np->accessed_ms = op->accessed_ms;
            np->current_weight = op->current_weight;
            np->effective_weight = op->effective_weight < np->conf->weight ? op->effective_weight : np->conf->weight;
            np->lt_avg_us = op->lt_avg_us;   /* least_time and slow_start state (balancers) */
            np->picked_ms = op->picked_ms;
            np->recovered_ms = op->recovered_ms;
            /* not health_down: the health checker raises it on the new set itself */
            np->active = op->active;   /* what is open there now ends on np (sg_balancer_done) */
            op->active = 0;
            op->moved_to = np;
            break;
        }
    }
    pthread_spin_unlock(&ob->lock);
    free(taken);
}

static void publish(dns_ups *du)
{
    const sg_upstream_conf *u = du->u;
    size_t count = u->nservers;
    for (size_t k = 0; k < du->nnames; k++) count += du->names[k].naddrs;
    if (count > SG_DNS_MAX_PEERS) {
        sg_log_warn("upstream \"%s\": %zu addresses, only the first %d are used", u->name, count, SG_DNS_MAX_PEERS);
        count = SG_DNS_MAX_PEERS;
    }
    dns_gen *g = sg_xcalloc(1, sizeof(*g));
    g->conf = sg_xcalloc(1, sizeof(*g->conf));
    *g->conf = *u;
    sg_upstream_server_conf *sv = sg_xcalloc(count ? count : 1, sizeof(*sv));
    size_t n = 0;
    for (size_t i = 0; i < u->nservers && n < count; i++) sv[n++] = u->servers[i];
    g->names = sg_xcalloc(count ? count : 1, sizeof(char *));
    sg_strbuf log = { 0 };
    for (size_t k = 0; k < du->nnames; k++) {
        const dns_name *nm = &du->names[k];
        for (size_t i = 0; i < nm->naddrs && n < count; i++) {
            const dns_addr *a = &nm->addrs[i];
            sg_upstream_server_conf *s = &sv[n++];
            *s = nm->rc->tmpl;
            s->addr = a->addr;
            s->addrlen = a->len;
            s->weight = a->weight;
            s->backup = a->backup;
            char buf[128];
            sg_sockaddr_str((const struct sockaddr *)&a->addr, buf, sizeof(buf));
            s->name = g->names[g->nnames++] = sg_xstrdup(buf);
            if (log.n) sg_strbuf_append(&log, ", ", 2);
            sg_strbuf_append(&log, buf, strlen(buf));
        }
    }
    g->conf->servers = sv;
    g->conf->nservers = n;
    g->balancer = sg_balancer_new(g->conf);
    sg_balancer *old = sg_upstream_balancer(du->rt);
    carry_state(g->balancer, old);
    __atomic_store_n(&du->rt->balancer, g->balancer, __ATOMIC_RELEASE);
    du->cur->balancer = old;           /* it now goes with the retired ones */
    du->cur->next = du->retired;
    du->retired = du->cur;
    du->cur = g;
    sg_log_notice("upstream \"%s\" now has %zu resolved address%s%s%.*s", u->name, g->nnames,
                  g->nnames == 1 ? "" : "es", log.n ? ": " : "", (int)log.n, log.p ? log.p : "");
    sg_strbuf_free(&log);
}

/* ---- lookups ---- */

static void schedule(dns_name *nm, uint32_t ttl_s, bool failed)
{
    dns_ups *du = nm->du;
    uint64_t ms = du->valid_ms ? du->valid_ms : failed ? RETRY_MS : (uint64_t)ttl_s * 1000;
    if (ms < 1000 && !du->valid_ms) ms = 1000;   /* a TTL of 0 is no reason to ask all the time */
    sg_timer_arm(du->set->loop, &nm->timer, ms);
}

static void add_pending(dns_name *nm, const sg_resolve_result *res, int weight, bool backup)
{
    nm->pending = sg_xrealloc(nm->pending, (nm->npending + res->n) * sizeof(dns_addr));
    for (size_t i = 0; i < res->n; i++) {
        dns_addr *a = &nm->pending[nm->npending++];
        memset(a, 0, sizeof(*a));
        a->addr = res->addrs[i];
        a->len = res->lens[i];
        a->weight = weight;
        a->backup = backup;
    }
    if (res->ttl_s && (!nm->ttl_s || res->ttl_s < nm->ttl_s)) nm->ttl_s = res->ttl_s;
}

/* The whole lookup of a name is in: publish a changed set, or keep the
 * last good one when it failed. */
static void finish(dns_name *nm)
{
    dns_ups *du = nm->du;
    nm->busy = false;
    free(nm->slots);
    nm->slots = NULL;
    const char *what = nm->rc->service ? nm->rc->service : nm->rc->host;
    if (nm->failed) {
        sg_log_error("%s could not be resolved (%s) in upstream \"%s\", keeping its %zu address%s", what,
                     nm->err ? nm->err : "2: Server failure", du->u->name, nm->naddrs, nm->naddrs == 1 ? "" : "es");
        free(nm->pending);
        nm->pending = NULL;
        nm->npending = 0;
        schedule(nm, 0, true);
        return;
    }
    bool changed = !nm->resolved || !same_set(nm->addrs, nm->naddrs, nm->pending, nm->npending);
    free(nm->addrs);
    nm->addrs = nm->pending;
    nm->naddrs = nm->npending;
    nm->pending = NULL;
    nm->npending = 0;
    bool first = !nm->resolved;
    nm->resolved = true;
    if (changed && !(first && nm->naddrs == 0)) publish(du);
    schedule(nm, nm->ttl_s, false);
}

static void note_failure(dns_name *nm, bool notfound, const char *err)
{
    if (notfound) return;              /* no such records: an empty part of the set */
    nm->failed = true;
    if (!nm->err) nm->err = err;
}

static void on_addrs(void *arg, const sg_resolve_result *res)
{
    dns_name *nm = arg;
    if (!nm->du->set || nm->du->set->stopping) return;
    if (res->ok) add_pending(nm, res, nm->rc->tmpl.weight, nm->rc->tmpl.backup);
    else note_failure(nm, res->notfound, res->err);
    finish(nm);
}

static void on_target(void *arg, const sg_resolve_result *res)
{
    dns_srv_slot *sl = arg;
    dns_name *nm = sl->name;
    if (!nm->du->set || nm->du->set->stopping) return;
    if (res->ok) add_pending(nm, res, sl->weight, sl->backup);
    else note_failure(nm, res->notfound, res->err);
    if (--nm->outstanding == 0) finish(nm);
}

static void on_srv(void *arg, const sg_srv_result *res)
{
    dns_name *nm = arg;
    if (!nm->du->set || nm->du->set->stopping) return;
    if (!res->ok) {
        /* (c-ares may call this from inside sg_resolver_query_srv: lookup()
         * does nothing after it, so finishing here is safe) */
        note_failure(nm, res->notfound, res->err);
        finish(nm);
        return;
    }
    int lowest = res->recs[0].priority;
    for (size_t i = 1; i < res->n; i++)
        if (res->recs[i].priority < lowest) lowest = res->recs[i].priority;
    nm->slots = sg_xcalloc(res->n, sizeof(dns_srv_slot));
    size_t ns = 0;
    for (size_t i = 0; i < res->n; i++) {
        const sg_srv_record *r = &res->recs[i];
        bool primary = r->priority == lowest;
        if (nm->rc->tmpl.backup && !primary) continue;   /* nginx: backup takes the best ones only */
        dns_srv_slot *sl = &nm->slots[ns++];
        sl->name = nm;
        sl->port = r->port;
        sl->weight = r->weight > 0 ? r->weight : 1;
        sl->backup = nm->rc->tmpl.backup || !primary;
    }
    nm->outstanding = (int)ns;
    if (ns == 0) {
        finish(nm);
        return;
    }
    /* Answers come from the loop (sg_resolver_query never calls back
     * inside), so the count cannot reach 0 before every query is out. */
    size_t k = 0;
    for (size_t i = 0; i < res->n; i++) {
        const sg_srv_record *r = &res->recs[i];
        if (nm->rc->tmpl.backup && r->priority != lowest) continue;
        sg_resolver_query(nm->du->res, r->target, nm->slots[k].port, on_target, &nm->slots[k]);
        k++;
    }
}

static void lookup(dns_name *nm)
{
    dns_ups *du = nm->du;
    if (nm->busy || !du->res) return;
    nm->busy = true;
    nm->failed = false;
    nm->err = NULL;
    nm->ttl_s = 0;
    nm->npending = 0;
    if (nm->rc->service) sg_resolver_query_srv(du->res, nm->rc->service, on_srv, nm);
    else sg_resolver_query(du->res, nm->rc->host, nm->rc->port, on_addrs, nm);
}
