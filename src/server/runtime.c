/* Upstream runtimes of a generation. */
#include "server/runtime.h"

#include <stdlib.h>

#include "conf/stream_conf.h"
#include "proxy/pass_vars.h"
#include "upstream/dynamic.h"
#include "upstream/health.h"
#include "upstream/pool.h"
#include "upstream/resolve.h"

/* Stream upstreams' runtimes go with their generation (sg_conf_on_free). */
static void stream_runtime_free(void *arg)
{
    sg_stream_conf *sc = arg;
    for (size_t i = 0; i < sc->nupstreams; i++) {
        sg_upstream_rt_free(sc->upstreams[i]->runtime);
        sc->upstreams[i]->runtime = NULL;
    }
}

bool sg_runtime_attach(sg_conf *c, int n)
{
    for (size_t i = 0; i < c->nupstreams; i++)
        c->upstreams[i]->runtime = sg_upstream_rt_new(c->upstreams[i], n);
    sg_pass_vars_attach(c);            /* dns: answers shared by the threads */
    /* passvar: each worker's run-time upstreams, made on first use */
    if (!c->dyn) {
        c->dyn = sg_xcalloc((size_t)n, sizeof(*c->dyn));
        c->ndyn = n;
    }
    if (c->stream) {
        for (size_t i = 0; i < c->stream->nupstreams; i++)
            c->stream->upstreams[i]->runtime = sg_upstream_rt_new(c->stream->upstreams[i], n);
        sg_conf_on_free(c, stream_runtime_free, c->stream);
    }
    sg_health_start(c);   /* health (issue 11): before the generation takes traffic */
    return true;
}

void sg_runtime_free(sg_conf *c)
{
    sg_health_stop(c);    /* health (issue 11): drained, its checker goes first */
    for (int i = 0; c->dyn && i < c->ndyn; i++) sg_dyn_free(c->dyn[i]);   /* normally gone already */
    free(c->dyn);
    c->dyn = NULL;
    for (size_t i = 0; i < c->nupstreams; i++) {
        sg_upstream_rt_free(c->upstreams[i]->runtime);
        c->upstreams[i]->runtime = NULL;
    }
}

void sg_runtime_activate(sg_conf *c, sg_conf *old, int worker, sg_loop *loop)
{
    /* dns: names of `resolve` servers are looked up once per process, on
     * worker 0's loop; the sets they make are shared by every thread */
    if (worker != 0 || c->dns_sets[0] || c->dns_sets[1]) return;
    c->dns_sets[0] = sg_dns_start(loop, c->upstreams, c->nupstreams, c->dns_http_resolver, c->dns_http_timeout_ms,
                                  old ? old->dns_sets[0] : NULL);
    if (c->stream)
        c->dns_sets[1] = sg_dns_start(loop, c->stream->upstreams, c->stream->nupstreams, c->dns_stream_resolver,
                                      c->dns_stream_timeout_ms, old ? old->dns_sets[1] : NULL);
}

void sg_runtime_retire(sg_conf *c, int worker)
{
    if (worker == 0) {                 /* dns: worker 0 stops looking up for c */
        sg_dns_stop(c->dns_sets[0]);
        sg_dns_stop(c->dns_sets[1]);
        c->dns_sets[0] = c->dns_sets[1] = NULL;
    }
    for (size_t i = 0; i < c->nupstreams; i++) {
        sg_upstream_rt *rt = c->upstreams[i]->runtime;
        if (rt) sg_pool_retire(&rt->pools[worker]);
    }
    if (c->dyn && worker < c->ndyn) sg_dyn_retire(c->dyn[worker]);
}

void sg_runtime_worker_done(sg_conf *c, int worker)
{
    if (!c->dyn || worker >= c->ndyn) return;
    sg_dyn_free(c->dyn[worker]);
    c->dyn[worker] = NULL;
}
