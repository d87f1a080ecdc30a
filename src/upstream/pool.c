/* Upstream runtime and keep-alive pools. */
#include "upstream/pool.h"

#include <stdlib.h>

#include "core/str.h"

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
    sg_balancer_free(rt->balancer);
    free(rt);
}

sg_pool_node *sg_pool_take(sg_pool *p, const sg_peer *peer)
{
    for (sg_pool_node *n = p->idle; n; n = n->next) {
        if (n->peer == peer) {
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
    n->next = p->idle;
    if (n->next) n->next->pprev = &n->next;
    n->pprev = &p->idle;
    p->idle = n;
    p->nidle++;
    return r;
}

void sg_pool_remove(sg_pool *p, sg_pool_node *n)
{
    if (!n->pprev) return;
    *n->pprev = n->next;
    if (n->next) n->next->pprev = n->pprev;
    n->next = NULL;
    n->pprev = NULL;
    p->nidle--;
}

void sg_pool_retire(sg_pool *p)
{
    p->retired = true;
    if (p->h2_retire) p->h2_retire(p);
    while (p->idle) {
        sg_pool_node *n = p->idle;
        sg_pool_remove(p, n);
        n->close(n);
    }
}
