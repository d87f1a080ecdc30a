/* A tunnel: two sockets relaying bytes both ways, what an exchange
 * becomes after a WebSocket upgrade (HTTP/1.1 client to HTTP/1.1 backend)
 * and what a `stream {}` connection is from its first byte.
 *
 * Memory follows traffic: reads go into the worker's scratch buffer and
 * only what the other socket would not take is kept (one sg_outq per
 * direction, empty while idle). A direction stops reading while its queue
 * is above SG_HIGH_WATER, so a slow reader stalls the writer and memory
 * stays bounded. A FIN is passed on as shutdown(SHUT_WR) once the queue
 * behind it is written; the tunnel ends when both directions are closed,
 * on an error, or when it has been idle for idle_timeout_ms. */
#ifndef SG_PROXY_TUNNEL_H
#define SG_PROXY_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/worker.h"

typedef struct sg_tunnel sg_tunnel;

typedef struct sg_tunnel_opts {
    /* No byte in either direction for this long: close both (0 = never). */
    uint32_t idle_timeout_ms;
    /* nginx's proxy_read_timeout semantics when the user set it: no byte
     * from the upstream for this long closes the tunnel (0 = not set). */
    uint32_t upstream_read_timeout_ms;
    /* Enable TCP keep-alive on both sockets so dead peers are found. */
    bool tcp_keepalive;
    /* The generation the tunnel belongs to: held (sg_worker_gen_hold)
     * while the tunnel lives; NULL for none. */
    sg_conf *gen;
    /* For the access log / error log lines: "client 1.2.3.4:5, upstream 127.0.0.1:80". */
    const char *what;
} sg_tunnel_opts;

/* Starts relaying between two connected, non-blocking sockets that are
 * not registered with the loop (callers sg_loop_del them first). Bytes
 * already read from one side and meant for the other are passed in:
 * `to_upstream` (read from the client) and `to_client` (read from the
 * upstream). Takes ownership of both fds, even on failure (NULL). */
sg_tunnel *sg_tunnel_start(sg_worker *w, int client_fd, int upstream_fd, const sg_tunnel_opts *o,
                           const char *to_upstream, size_t nto_upstream,
                           const char *to_client, size_t nto_client);

#endif
