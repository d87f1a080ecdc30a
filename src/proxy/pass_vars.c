/* proxy_pass / grpc_pass with variables (proxy/pass_vars.h). */
#include "proxy/pass_vars.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "conf/directives.h"
#include "core/log.h"
#include "exchange/vars.h"
#include "proxy/respond.h"
#include "upstream/balancer.h"
#include "upstream/dynamic.h"
#include "upstream/pool.h"

/* A request waiting for a name. The exchange may end first (the client
 * left): it then clears `ex`, and the answer only frees this. */
typedef struct pv_waiter {
    struct pv_waiter *next;
    sg_exchange *ex;
    void (*go)(sg_exchange *ex);
    sg_proxy_pass *pass;
} pv_waiter;

/* One lookup in progress per name, port and resolver on a worker: the
 * requests that need it meanwhile wait for the same answer (one query,
 * as nginx's resolver does). Listed in the worker's sg_dyn. */
typedef struct pv_lookup {
    struct pv_lookup *next;
    sg_dyn *d;
    int rid;
    uint32_t valid_ms;
    pv_waiter *waiters;
    char key[300];
    char name[256];
} pv_lookup;

/* dns: answers shared by every worker thread of a generation, as nginx's
 * one resolver cache per process: a name another thread looked up is not
 * asked again within its TTL (or valid=). Bounded; a mutex, taken only
 * when a thread's own cache (sg_dyn) has no live entry. */
enum { PV_SHARED_MAX = 256, PV_SHARED_ADDRS = 32 };
typedef struct pv_answer {
    char key[300];
    struct sockaddr_storage addrs[PV_SHARED_ADDRS];
    socklen_t lens[PV_SHARED_ADDRS];
    size_t n;
    uint64_t expires_ms;
} pv_answer;

typedef struct pv_shared {
    pthread_mutex_t lock;
    pv_answer *a;
    size_t n;
} pv_shared;

static void shared_free(void *arg)
{
    pv_shared *sh = arg;
    pthread_mutex_destroy(&sh->lock);
    free(sh->a);
    free(sh);
}

void sg_pass_vars_attach(sg_conf *c)
{
    if (c->dns_answers) return;
    pv_shared *sh = sg_xcalloc(1, sizeof(*sh));
    pthread_mutex_init(&sh->lock, NULL);
    sh->a = sg_xcalloc(PV_SHARED_MAX, sizeof(pv_answer));
    c->dns_answers = sh;
    sg_conf_on_free(c, shared_free, sh);
}

/* A live shared answer for key, copied into *out. */
static bool shared_find(sg_conf *c, const char *key, uint64_t now, pv_answer *out)
{
    pv_shared *sh = c->dns_answers;
    bool found = false;
    if (!sh) return false;
    pthread_mutex_lock(&sh->lock);
    for (size_t i = 0; i < sh->n; i++) {
        if (sh->a[i].expires_ms > now && strcasecmp(sh->a[i].key, key) == 0) {
            *out = sh->a[i];
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return found;
}

static void shared_put(sg_conf *c, const char *key, const sg_resolve_result *res, uint64_t expires, uint64_t now)
{
    pv_shared *sh = c->dns_answers;
    if (!sh || res->n == 0) return;
    pthread_mutex_lock(&sh->lock);
    size_t at = sh->n, oldest = 0;
    for (size_t i = 0; i < sh->n; i++) {
        if (strcasecmp(sh->a[i].key, key) == 0 || sh->a[i].expires_ms <= now) { at = i; break; }
        if (sh->a[i].expires_ms < sh->a[oldest].expires_ms) oldest = i;
    }
    if (at == sh->n) {
        if (sh->n < PV_SHARED_MAX) sh->n++;
        else at = oldest;
    }
    pv_answer *a = &sh->a[at];
    snprintf(a->key, sizeof(a->key), "%s", key);
    a->n = res->n < PV_SHARED_ADDRS ? res->n : PV_SHARED_ADDRS;
    memcpy(a->addrs, res->addrs, a->n * sizeof(a->addrs[0]));
    memcpy(a->lens, res->lens, a->n * sizeof(a->lens[0]));
    a->expires_ms = expires;
    pthread_mutex_unlock(&sh->lock);
}

static uint64_t now_ms(sg_exchange *ex)
{
    return sg_loop_now(sg_worker_loop(ex->w));
}

static sg_dyn *dyn_of(sg_exchange *ex)
{
    sg_conf *c = ex->req.gen;
    if (!ex->w || !c->dyn) return NULL;
    int w = sg_worker_id(ex->w);
    if (w >= c->ndyn) return NULL;
    if (!c->dyn[w]) c->dyn[w] = sg_dyn_new(w, c->ndyn, sg_worker_loop(ex->w));
    return c->dyn[w];
}

static bool has_prefix(sg_str s, const char *p)
{
    size_t n = strlen(p);
    return s.n >= n && strncasecmp(s.p, p, n) == 0;
}

/* The URI part as the backend gets it: nginx sends it as evaluated; bytes
 * that would break the request line (controls, spaces) are escaped. */
static sg_str safe_uri(sg_exchange *ex, sg_str u)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t extra = 0;
    for (size_t i = 0; i < u.n; i++)
        if ((unsigned char)u.p[i] <= 0x20 || (unsigned char)u.p[i] == 0x7f) extra += 2;
    char *p = sg_arena_alloc(&ex->req.arena, u.n + extra + 1);
    size_t k = 0;
    for (size_t i = 0; i < u.n; i++) {
        unsigned char c = (unsigned char)u.p[i];
        if (c <= 0x20 || c == 0x7f) {
            p[k++] = '%';
            p[k++] = hex[c >> 4];
            p[k++] = hex[c & 15];
        } else {
            p[k++] = (char)c;
        }
    }
    return (sg_str){ p, k };
}

static void use_entry(sg_exchange *ex, sg_proxy_pass *np, sg_dyn_entry *e)
{
    sg_dyn_hold(e);
    ex->dyn = e;
    np->upstream = (sg_upstream_conf *)sg_dyn_upstream(e);
    ex->req.pass = np;
}

static void on_resolved(void *arg, const sg_resolve_result *res)
{
    pv_lookup *l = arg;
    for (pv_lookup **pp = (pv_lookup **)sg_dyn_pending(l->d); *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    sg_dyn_entry *e = NULL;
    while (l->waiters) {
        pv_waiter *w = l->waiters;
        l->waiters = w->next;
        sg_exchange *ex = w->ex;
        void (*go)(sg_exchange *) = w->go;
        sg_proxy_pass *pass = w->pass;
        free(w);
        if (!ex) continue;   /* its client left */
        ex->resolve_wait = NULL;
        if (!res->ok) {
            sg_ex_log(ex, SG_LOG_ERROR, "%s could not be resolved (%s)", l->name, res->err ? res->err : "error");
            sg_respond_error(ex, 502);
            continue;
        }
        if (!e) {
            uint64_t now = now_ms(ex);
            uint64_t life = l->valid_ms ? l->valid_ms : (uint64_t)res->ttl_s * 1000;
            e = sg_dyn_add(l->d, l->key, NULL, res->addrs, res->lens, res->n, now + (life ? life : 1), now);
            shared_put(ex->req.gen, l->key, res, now + (life ? life : 1), now);
        }
        use_entry(ex, pass, e);
        go(ex);
    }
    free(l);
}

static void fail(sg_exchange *ex, int status, const char *what, sg_str v)
{
    sg_ex_log(ex, SG_LOG_ERROR, "%s \"%.*s\"", what, (int)(v.n > 200 ? 200 : v.n), v.p ? v.p : "");
    sg_respond_error(ex, status);
}

void sg_pass_vars_start(sg_exchange *ex, void (*go)(sg_exchange *ex))
{
    sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = &r->loc->conf;
    const sg_proxy_pass *pp = lc->proxy_pass;
    sg_conf *c = r->gen;
    sg_str url = sg_cval_eval(&pp->url, r);
    sg_str rest = url;
    bool ssl = false;
    if (lc->is_grpc) {
        if (has_prefix(rest, "grpcs://")) ssl = true, rest.p += 8, rest.n -= 8;
        else if (has_prefix(rest, "grpc://")) rest.p += 7, rest.n -= 7;
    } else {
        if (has_prefix(rest, "https://")) ssl = true, rest.p += 8, rest.n -= 8;
        else if (has_prefix(rest, "http://")) rest.p += 7, rest.n -= 7;
        else return fail(ex, 500, "invalid URL prefix in", url);
    }
    sg_proxy_pass *np = sg_arena_alloc(&r->arena, sizeof(*np));
    memset(np, 0, sizeof(*np));
    np->ssl = ssl;
    np->pos = pp->pos;
    np->has_vars = true;
    sg_dyn *d = dyn_of(ex);
    uint64_t now = now_ms(ex);
    char key[300];

    if (has_prefix(rest, "unix:")) {
        /* unix:/path[:/uri] */
        const char *colon = memchr(rest.p + 5, ':', rest.n - 5);
        sg_str path = { rest.p + 5, colon ? (size_t)(colon - rest.p - 5) : rest.n - 5 };
        struct sockaddr_storage ss;
        socklen_t sl;
        if (!d || !sg_conf_unix_addr(path, &ss, &sl)) return fail(ex, 500, "invalid host in upstream", url);
        if (colon && !lc->is_grpc) {
            np->has_uri = true;
            np->uri = safe_uri(ex, (sg_str){ colon + 1, rest.n - (size_t)(colon + 1 - rest.p) });
        }
        np->host = SG_STR("localhost");
        snprintf(key, sizeof(key), "unix:%.*s", (int)path.n, path.p);
        sg_dyn_entry *e = sg_dyn_find(d, key, now);
        if (!e) e = sg_dyn_add(d, key, key, &ss, &sl, 1, 0, now);
        use_entry(ex, np, e);
        go(ex);
        return;
    }

    const char *slash = memchr(rest.p, '/', rest.n);
    sg_str hostport = { rest.p, slash ? (size_t)(slash - rest.p) : rest.n };
    if (slash && !lc->is_grpc) {
        np->has_uri = true;
        np->uri = safe_uri(ex, (sg_str){ slash, rest.n - hostport.n });
    }
    sg_str host;
    int port;
    if (hostport.n == 0) return fail(ex, 500, "no host in upstream", url);
    if (hostport.n > 255 || memchr(hostport.p, '\0', hostport.n) || !sg_conf_split_hostport(hostport, &host, &port) ||
        port == 0)
        return fail(ex, 500, "invalid host in upstream", url);
    int def = ssl ? 443 : 80;
    int eport = port < 0 ? def : port;
    bool v6 = hostport.p[0] == '[';
    /* $proxy_host and Host: the port only when it is not the scheme's */
    np->host = eport != def ? hostport : v6 ? (sg_str){ hostport.p, host.n + 2 } : host;

    /* an upstream{} block (no port written), or an implicit upstream of
     * the configuration with this host and port (nginx's lookup) */
    snprintf(key, sizeof(key), "%.*s:%d", (int)host.n, host.p, eport);
    for (size_t i = 0; i < c->nupstreams; i++) {
        sg_upstream_conf *u = c->upstreams[i];
        bool hit = u->implicit ? strcasecmp(u->name, key) == 0
                               : port < 0 && sg_str_caseeq(host, sg_str_from(u->name));
        if (!hit) continue;
        np->upstream = u;
        if (!u->implicit) np->host = sg_str_from(u->name);
        r->pass = np;
        go(ex);
        return;
    }
    if (!d) return fail(ex, 502, "no upstream for", url);

    /* an address: used as it is */
    char name[256];
    memcpy(name, host.p, host.n);
    name[host.n] = '\0';
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl = 0;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, name, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)eport);
        sl = sizeof(*sin);
    } else if (inet_pton(AF_INET6, name, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)eport);
        sl = sizeof(*sin6);
    }
    if (sl) {
        sg_dyn_entry *e = sg_dyn_find(d, key, now);
        if (!e) e = sg_dyn_add(d, key, NULL, &ss, &sl, 1, 0, now);
        use_entry(ex, np, e);
        go(ex);
        return;
    }

    /* a name: the resolver's. Its answers are kept apart per resolver
     * (a location without one never uses another's). */
    if (!lc->resolver) {
        sg_ex_log(ex, SG_LOG_ERROR, "no resolver defined to resolve %s", name);
        sg_respond_error(ex, 502);
        return;
    }
    size_t kn = strlen(key);
    snprintf(key + kn, sizeof(key) - kn, " resolver %d", lc->resolver->id);
    sg_dyn_entry *e = sg_dyn_find(d, key, now);
    if (!e) {                          /* dns: another thread's answer */
        pv_answer *a = sg_xcalloc(1, sizeof(*a));
        if (shared_find(ex->req.gen, key, now, a))
            e = sg_dyn_add(d, key, NULL, a->addrs, a->lens, a->n, a->expires_ms, now);
        free(a);
    }
    if (e) {
        use_entry(ex, np, e);
        go(ex);
        return;
    }
    char err[256];
    sg_resolver *res = sg_dyn_resolver(d, lc->resolver, lc->resolver_timeout_ms, err, sizeof(err));
    if (!res) {
        sg_ex_log(ex, SG_LOG_ERROR, "%s could not be resolved (%s)", name, err);
        sg_respond_error(ex, 502);
        return;
    }
    pv_waiter *w = sg_xcalloc(1, sizeof(*w));
    w->ex = ex;
    w->go = go;
    w->pass = np;
    ex->resolve_wait = w;
    pv_lookup **head = (pv_lookup **)sg_dyn_pending(d), *l;
    for (l = *head; l; l = l->next) {
        if (l->rid == lc->resolver->id && strcasecmp(l->key, key) == 0) {
            w->next = l->waiters;   /* the answer on its way serves this one too */
            l->waiters = w;
            return;
        }
    }
    l = sg_xcalloc(1, sizeof(*l));
    l->d = d;
    l->rid = lc->resolver->id;
    l->valid_ms = lc->resolver->valid_ms;
    l->waiters = w;
    snprintf(l->key, sizeof(l->key), "%s", key);
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->next = *head;
    *head = l;
    sg_resolver_query(res, name, eport, on_resolved, l);
}

void sg_pass_vars_end(sg_exchange *ex)
{
    if (ex->resolve_wait) {
        ((pv_waiter *)ex->resolve_wait)->ex = NULL;
        ex->resolve_wait = NULL;
    }
    if (ex->dyn) {
        sg_dyn_drop(ex->dyn);
        ex->dyn = NULL;
    }
}

void *sg_pass_vars_take(sg_exchange *ex)
{
    void *e = ex->dyn;
    ex->dyn = NULL;
    return e;
}

void sg_pass_vars_tunnel_done(void *held, void *peer, uint64_t now_ms)
{
    sg_dyn_entry *e = held;
    const sg_upstream_rt *rt = sg_dyn_upstream(e)->runtime;
    sg_balancer_done(sg_upstream_balancer(rt), peer, false, now_ms);
    sg_dyn_drop(e);
}
