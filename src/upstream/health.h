/* Active health checks (issue 11, health): nginx Plus's `health_check`.
 *
 * One checker thread per configuration generation that has health_check
 * lines, whatever the number of worker threads: it checks every peer of
 * every checked upstream at its interval (HTTP/1, HTTP/2 or gRPC's
 * grpc.health.v1.Health/Check, over TLS when the upstream uses it; a TCP
 * connect, optionally send/expect, in stream{}), and holds a peer out of
 * every balancer through its atomic sg_peer.health_down, so all worker
 * threads see a change at once. Exchanges, streams and tunnels already
 * open on a peer going unhealthy are left alone.
 *
 * The generation's checker starts with sg_health_start() (before the
 * generation takes traffic: `mandatory` peers are out from the start) and
 * stops with sg_health_stop() when the generation is drained. The last
 * known state of every checked peer (upstream name, server name) is kept
 * process-wide: `mandatory persistent` starts from it after a reload, and
 * a status handler reads it with sg_health_state(). */
#ifndef SG_UPSTREAM_HEALTH_H
#define SG_UPSTREAM_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "conf/conf.h"

/* Starts c's checks (none: nothing). c's upstream runtimes exist. */
void sg_health_start(sg_conf *c);
/* Stops and joins c's checker; safe when none was started. */
void sg_health_stop(sg_conf *c);

typedef enum sg_health_result {
    SG_HEALTH_UNKNOWN = 0,             /* not checked (yet) */
    SG_HEALTH_HEALTHY,
    SG_HEALTH_UNHEALTHY,
} sg_health_result;

/* The last state recorded for server `server` (sg_upstream_server_conf
 * name) of upstream `upstream`, by any generation. */
sg_health_result sg_health_state(const char *upstream, const char *server);

/* What a status handler shows of a checked server (issue 12). */
typedef struct sg_health_info {
    sg_health_result result;           /* the state the last check left */
    uint64_t checks, failed_checks;    /* since the process started */
    char last_failure[40];             /* what the last check failed at ("checking status code"); "" if it passed */
} sg_health_info;

/* False when no check of that server was recorded. */
bool sg_health_info_get(const char *upstream, const char *server, sg_health_info *out);

/* Network input, exposed for tests and fuzzing. An HTTP/1 answer in
 * buf[0, len): status, the header lines after the status line ("Name:
 * value\r\n"...), and the body (bounded by Content-Length). False when the
 * head is incomplete or the status line is not HTTP/1.x NNN. */
bool sg_health_parse_http1(const char *buf, size_t len, int *status, const char **headers, size_t *hlen,
                           const char **body, size_t *blen);
/* A gRPC message (5-byte prefix) holding a HealthCheckResponse: its
 * status field (1 = SERVING; absent: 0), or -1 if malformed/compressed. */
long sg_health_grpc_serving_status(const uint8_t *b, size_t n);

#endif
