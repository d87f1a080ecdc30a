/* Per-generation upstream runtimes: beside the immutable configuration,
 * each upstream of a generation gets its shared balancer and one pool of
 * idle connections per worker thread (upstream/pool.h), made when the
 * generation is activated. */
#ifndef SG_SERVER_RUNTIME_H
#define SG_SERVER_RUNTIME_H

#include <stdbool.h>
#include "conf/conf.h"

/* Gives every upstream of c (http and stream) its runtime for nworkers
 * workers. The stream ones go with the configuration (sg_conf_on_free). */
bool sg_runtime_attach(sg_conf *c, int nworkers);
/* Frees the http upstreams' runtimes (c has no more users). */
void sg_runtime_free(sg_conf *c);
/* Worker `worker` starts work on c (after `old`, NULL at start): worker 0
 * starts resolving the upstreams' `resolve` servers on `loop`, from the
 * addresses old had (upstream/resolve.h). */
struct sg_loop;
void sg_runtime_activate(sg_conf *c, sg_conf *old, int worker, struct sg_loop *loop);
/* Worker `worker` no longer starts work on c: its pools close their idle
 * connections and refuse new ones. */
void sg_runtime_retire(sg_conf *c, int worker);
/* passvar: worker `worker` has no more users of c (on its own thread):
 * the upstreams and resolvers it made at run time for c go. */
void sg_runtime_worker_done(sg_conf *c, int worker);

#endif
