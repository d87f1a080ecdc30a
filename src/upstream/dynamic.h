/* Upstreams made at run time, for proxy_pass/grpc_pass with variables
 * whose value names no upstream{} block: an address (or a unix socket)
 * written in the value, or a name a resolver answered. Each is an
 * implicit upstream as nginx makes per request, with a runtime of its own
 * (balancer, keep-alive pool), kept in a small per-worker, per-generation
 * cache so that a request to the same address reuses connections.
 *
 * One sg_dyn per worker thread per generation (sg_conf.dyn[worker]),
 * made and freed by server/runtime.c on that worker's thread. Bounded:
 * beyond SG_DYN_MAX entries, ones no exchange holds are retired (their
 * idle connections close) and freed once their connections are gone, so
 * values made from requests cannot grow memory. A resolved entry expires
 * with its TTL (or the resolver's valid=); the resolvers of the
 * generation (net/resolver.h) are kept here too, one per directive. */
#ifndef SG_UPSTREAM_DYNAMIC_H
#define SG_UPSTREAM_DYNAMIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "core/loop.h"
#include "net/resolver.h"

#define SG_DYN_MAX 64

typedef struct sg_dyn sg_dyn;
typedef struct sg_dyn_entry sg_dyn_entry;

sg_dyn *sg_dyn_new(int worker, int nworkers, sg_loop *loop);
/* Everything goes: the generation has no more users on this thread. */
void sg_dyn_free(sg_dyn *d);
/* The generation is no longer current here: idle connections close. */
void sg_dyn_retire(sg_dyn *d);

/* The entry for key ("host:port", "unix:/path"; what follows a space
 * keeps keys apart without being part of the upstream's name), NULL if
 * none or expired. */
sg_dyn_entry *sg_dyn_find(sg_dyn *d, const char *key, uint64_t now_ms);
/* A new entry (or the live one of that key): one server per address,
 * named `name` (NULL: each by its address text). expires_ms 0: never. */
sg_dyn_entry *sg_dyn_add(sg_dyn *d, const char *key, const char *name, const struct sockaddr_storage *addrs,
                         const socklen_t *lens, size_t n, uint64_t expires_ms, uint64_t now_ms);

const sg_upstream_conf *sg_dyn_upstream(const sg_dyn_entry *e);
/* An exchange (or the tunnel it became) uses e / no longer does. */
void sg_dyn_hold(sg_dyn_entry *e);
void sg_dyn_drop(sg_dyn_entry *e);

/* The resolver of directive rc on this thread, made on first use (NULL,
 * message in err, when c-ares refuses it). */
sg_resolver *sg_dyn_resolver(sg_dyn *d, const sg_resolver_conf *rc, uint32_t timeout_ms,
                             char *err, size_t errlen);

/* A list head the proxy keeps its lookups in progress in (NULL at
 * first): they belong to this worker and generation, as the resolvers. */
void **sg_dyn_pending(sg_dyn *d);

#endif
