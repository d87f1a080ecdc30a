/* Asynchronous DNS for names in proxy_pass/grpc_pass with variables:
 * c-ares on a worker's event loop (its UDP sockets are level-triggered
 * readers of the loop, its timeouts one loop timer), with the servers of
 * one `resolver` directive. nginx's resolver never reads /etc/hosts or
 * search domains, and neither does this one.
 *
 * One per resolver directive per worker thread, made when a request first
 * needs it (upstream/dynamic.c keeps them); caching the answers for their
 * TTL (or valid=) is the caller's. Only the loop's thread touches it. */
#ifndef SG_NET_RESOLVER_H
#define SG_NET_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "core/loop.h"

typedef struct sg_resolver sg_resolver;

/* The answer to one query. ok false: err says why as nginx does ("3:
 * Host not found", "110: Operation timed out" ...), addrs is empty. ttl_s: the smallest TTL of the records
 * (0 when unknown). addrs carry `port`. */
typedef struct sg_resolve_result {
    bool ok;
    const char *err;
    const struct sockaddr_storage *addrs;
    const socklen_t *lens;
    size_t n;
    uint32_t ttl_s;
    bool notfound;                     /* dns: !ok because the name has no such records (NXDOMAIN,
                                          no data), not because the lookup failed */
} sg_resolve_result;

typedef void (*sg_resolve_cb)(void *arg, const sg_resolve_result *res);

/* NULL (and a message in err) if c-ares refuses the servers. timeout_ms
 * bounds each query (resolver_timeout), over two tries. */
sg_resolver *sg_resolver_new(sg_loop *loop, const sg_resolver_conf *rc, uint32_t timeout_ms,
                             char *err, size_t errlen);
/* Pending queries end (their callbacks run with ok false) and the
 * sockets leave the loop. */
void sg_resolver_free(sg_resolver *r);

/* Looks `name` up (A and/or AAAA as the resolver's ipv4=/ipv6= say).
 * cb runs later, never from inside this call. */
void sg_resolver_query(sg_resolver *r, const char *name, int port, sg_resolve_cb cb, void *arg);

/* dns: where the CNAME records of a DNS answer (abuf, alen: a whole
 * message) lead from its question's name, into out (a name with no
 * CNAME in the answer ends the chain). False when the answer has no
 * CNAME for the name, or cannot be read. Exposed for fuzzing. */
bool sg_resolver_cname_target(const unsigned char *abuf, int alen, char *out, size_t outlen);

/* dns: one SRV record of an answer (upstream `server ... service=`). */
typedef struct sg_srv_record {
    int priority, weight, port;
    char *target;
} sg_srv_record;

typedef struct sg_srv_result {
    bool ok, notfound;                 /* as sg_resolve_result's */
    const char *err;
    const sg_srv_record *recs;
    size_t n;
} sg_srv_result;

typedef void (*sg_srv_cb)(void *arg, const sg_srv_result *res);

/* Looks up the SRV records of `name` (the full "_service._proto.name").
 * cb may run from inside this call when c-ares fails at once. */
void sg_resolver_query_srv(sg_resolver *r, const char *name, sg_srv_cb cb, void *arg);

#endif
