/* Upstream runtime, keep-alive pools and the TLS sessions they resume. */
#include "upstream/pool.h"

#include <stdlib.h>
#include <string.h>

#include "conf/ssl_conf.h"
#include "core/log.h"
#include "core/sockaddr.h"
#include "core/str.h"
#include "upstream/resolve.h"

/* One kept TLS session, per peer, client context and name. The list is
 * most recently kept first and holds at most SESSIONS_KEPT: names may come
 * from requests, and a short list is scanned faster than it is hashed. */
#define SESSIONS_KEPT 64

struct sg_pool_session {
    sg_pool_session *next;
    const sg_peer *peer;
    sg_tls_key key;                    /* its own copy of the name */
    sg_tls_session *session;
};

static void session_free(sg_pool_session *s);

static void sessions_free(sg_pool *p)
{
    while (p->sessions) {
        sg_pool_session *s = p->sessions;
        p->sessions = s->next;
        session_free(s);
    }
}

sg_upstream_rt *sg_upstream_rt_new(const sg_upstream_conf *u, int nworkers)
{
    sg_upstream_rt *rt = sg_xcalloc(1, sizeof(*rt) + sizeof(sg_pool) * (size_t)nworkers);
    rt->conf = u;
    rt->nworkers = nworkers;
    rt->balancer = sg_balancer_new(u);
    for (int i = 0; i < nworkers; i++) rt->pools[i].max_idle = u->keepalive;
    return rt;
}

void sg_upstream_rt_free(sg_upstream_rt *rt)
{
    if (!rt) return;
    for (int i = 0; i < rt->nworkers; i++) sessions_free(&rt->pools[i]);
    sg_dns_rt_free(rt->dns);           /* the balancers `resolve` replaced */
    sg_balancer_free(rt->balancer);
    free(rt);
}

sg_pool_node *sg_pool_take(sg_pool *p, const sg_peer *peer, const sg_tls_key *tls)
{
    for (sg_list_node *l = sg_list_first(&p->idle); l; l = l->next) {
        sg_pool_node *n = sg_list_entry(l, sg_pool_node, link);
        /* dns: a peer of a replaced set (upstream/resolve.h) whose address
         * remains is the same server; its connections stay usable */
        bool same = n->peer == peer ||
                    (peer->owner && peer->owner->conf->nresolves && n->peer->conf->addrlen == peer->conf->addrlen &&
                     sg_sockaddr_eq((const struct sockaddr *)&n->peer->conf->addr,
                                    (const struct sockaddr *)&peer->conf->addr));
        if (same && sg_tls_key_eq(&n->tls, tls)) {
            sg_pool_remove(p, n);
            return n;
        }
    }
    return NULL;
}

sg_pool_put_result sg_pool_put(sg_pool *p, sg_pool_node *n)
{
    if (p->retired || p->max_idle == 0) return SG_POOL_REFUSED;
    sg_pool_put_result r = p->nidle >= p->max_idle ? SG_POOL_SURPLUS : SG_POOL_KEPT;
    sg_list_push(&p->idle, &n->link);
    p->nidle++;
    return r;
}

void sg_pool_remove(sg_pool *p, sg_pool_node *n)
{
    if (!sg_list_linked(&n->link)) return;
    sg_list_remove(&n->link);
    p->nidle--;
}

void sg_pool_retire(sg_pool *p)
{
    p->retired = true;
    sessions_free(p);
    if (p->h2_retire) p->h2_retire(p);
    while (!sg_list_empty(&p->idle)) {
        sg_pool_node *n = sg_list_entry(sg_list_first(&p->idle), sg_pool_node, link);
        sg_pool_remove(p, n);
        n->close(n);
    }
}

/* ---------------- upstream TLS ---------------- */

bool sg_tls_key_eq(const sg_tls_key *a, const sg_tls_key *b)
{
    return a->ctx == b->ctx && sg_str_eq(a->name, b->name);
}

sg_tls_key sg_tls_key_dup(const sg_tls_key *k)
{
    sg_tls_key d = { k->ctx, SG_STR_NULL };
    if (k->name.n) {
        char *p = sg_xmalloc(k->name.n);
        memcpy(p, k->name.p, k->name.n);
        d.name = (sg_str){ p, k->name.n };
    }
    return d;
}

void sg_tls_key_free(sg_tls_key *k)
{
    free((char *)k->name.p);
    *k = (sg_tls_key){ 0 };
}

static sg_pool_session **session_slot(sg_pool *p, const sg_peer *peer, const sg_tls_key *k)
{
    sg_pool_session **s = &p->sessions;
    while (*s && !((*s)->peer == peer && sg_tls_key_eq(&(*s)->key, k))) s = &(*s)->next;
    return s;
}

static void session_free(sg_pool_session *s)
{
    sg_tls_session_free(s->session);
    sg_tls_key_free(&s->key);
    free(s);
}

/* A name may come from the request ($host, $http_...): without a bound,
 * clients choosing names would grow the list without end. The least
 * recently kept sessions go. */
static void drop_sessions_beyond(sg_pool *p, size_t max)
{
    sg_pool_session **s = &p->sessions;
    for (size_t i = 0; *s && i < max; i++) s = &(*s)->next;
    while (*s) {
        sg_pool_session *dead = *s;
        *s = dead->next;
        session_free(dead);
    }
}

sg_tls_conn *sg_pool_tls_new(sg_pool *p, sg_peer *peer, const sg_ssl_upstream_conf *u, const sg_tls_key *k,
                             int fd)
{
    char host[256];
    if (!sg_ssl_upstream_name_ok(u, k->name)) {   /* the core checked it already: a safety net */
        sg_log_error("invalid SSL name \"%.*s\" for upstream %s", (int)k->name.n, k->name.n ? k->name.p : "",
                     peer->conf->name);
        return NULL;
    }
    if (k->name.n) memcpy(host, k->name.p, k->name.n);
    host[k->name.n] = '\0';
    sg_pool_session *kept = u->session_reuse ? *session_slot(p, peer, k) : NULL;
    return sg_tls_client_new(u->ctx, fd, u->server_name ? host : NULL, host, kept ? kept->session : NULL,
                             (const struct sockaddr *)&peer->conf->addr);
}

bool sg_pool_tls_keep_session(sg_pool *p, sg_peer *peer, const sg_ssl_upstream_conf *u, const sg_tls_key *k,
                              sg_tls_conn *tls)
{
    /* A connection of a retired generation: its pool keeps nothing more. */
    if (!u->session_reuse || p->retired) return true;
    sg_tls_session *session = sg_tls_session_get(tls);
    if (!session) return false;
    sg_pool_session **slot = session_slot(p, peer, k), *s = *slot;
    if (s) {
        *slot = s->next;   /* moves to the front: the list is most recent first */
    } else {
        s = sg_xcalloc(1, sizeof(*s));
        s->peer = peer;
        s->key = sg_tls_key_dup(k);
    }
    sg_tls_session_free(s->session);
    s->session = session;
    s->next = p->sessions;
    p->sessions = s;
    drop_sessions_beyond(p, SESSIONS_KEPT);
    return true;
}

void sg_pool_tls_forget_session(sg_pool *p, const sg_peer *peer, const sg_tls_key *k)
{
    sg_pool_session **slot = session_slot(p, peer, k), *s = *slot;
    if (!s) return;
    *slot = s->next;
    session_free(s);
}
