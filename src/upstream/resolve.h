/* DNS discovery for upstreams: `server NAME resolve [service=NAME]`
 * (nginx 1.27.3), re-resolved at run time with net/resolver.c.
 *
 * Once per process, not per thread: one worker's loop (server/runtime.c
 * gives it worker 0's) resolves every name of a generation and re-resolves
 * each when its TTL (or the resolver's valid=) ends. When a name's
 * addresses change, the upstream gets a new balancer over the new set
 * (the static servers plus every name's addresses), built aside and
 * published with one atomic store of sg_upstream_rt.balancer: every thread
 * picks from it at once, without a lock on the request path.
 *
 * - Addresses that remain keep their peer state (failures, fail_timeout
 *   window, weights in progress, open attempts: sg_peer.moved_to); their
 *   connections, pooled or busy, are not touched (a pooled one is reused
 *   by address).
 * - Addresses that go get no new attempts; what is open on them ends as
 *   usual (sg_peer.owner: an attempt picked from a replaced balancer ends
 *   on it). Replaced balancers stay until the runtime goes (a reload or
 *   exit), so nothing still pointing at their peers dangles; each change
 *   costs its set's few hundred bytes until then.
 * - A lookup that fails (timeout, SERVFAIL, refused) keeps the last good
 *   set and logs it; NXDOMAIN and an empty answer empty the name's set, as
 *   in nginx.
 * - SRV (service=): the records of the lowest priority are primary
 *   servers, the others backup ones (with `backup` on the line: the lowest
 *   priority are backup servers and the others are ignored); each target
 *   is looked up for A/AAAA with the record's port and weight. */
#ifndef SG_UPSTREAM_RESOLVE_H
#define SG_UPSTREAM_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/loop.h"

typedef struct sg_dns_set sg_dns_set;

/* Starts resolving the `resolve` servers of upstreams ups[0..n) (each with
 * its runtime, upstream/pool.h) on `loop`, with each upstream's resolver
 * or else `dflt` / `dflt_timeout_ms` (0: 30 s). The first lookups run from
 * the loop. NULL when no upstream has a `resolve` server.
 *
 * `prev` (NULL: none) is the previous generation's set, still running on
 * the same loop: an upstream of the same name starts with the addresses
 * it had for the same names (with the new line's port and parameters),
 * as nginx keeps them across a reload, so a reload while the resolver is
 * down loses nothing. */
sg_dns_set *sg_dns_start(sg_loop *loop, sg_upstream_conf *const *ups, size_t n,
                         const sg_resolver_conf *dflt, uint32_t dflt_timeout_ms, const sg_dns_set *prev);

/* Stops every lookup of the set (on the loop's thread). The balancers it
 * made stay with their runtimes. */
void sg_dns_stop(sg_dns_set *s);

/* The runtime goes: frees the balancers and sets the lookups replaced
 * (upstream/pool.c calls it before freeing the current balancer). */
void sg_dns_rt_free(void *dns);

#endif
