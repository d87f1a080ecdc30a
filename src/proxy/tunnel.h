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
 * on an error, or when it has been idle for idle_timeout_ms.
 *
 * A tunnel counts as a worker connection (sg_conn_node): a fast stop
 * closes it, a graceful stop waits for it. It holds its generation and
 * keeps it across reloads; if that generation sets worker_shutdown_timeout,
 * the tunnel is closed that long after the worker moved to a newer one. */
#ifndef SG_PROXY_TUNNEL_H
#define SG_PROXY_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "conf/conf.h"
#include "core/buf.h"
#include "core/worker.h"

typedef struct sg_tunnel sg_tunnel;

typedef enum sg_tunnel_end_reason {
    SG_TUNNEL_CLOSED = 0,          /* both sides closed (or one did, with close_on_eof) */
    SG_TUNNEL_ERROR,               /* a read or write failed (reset, broken pipe) */
    SG_TUNNEL_IDLE_TIMEOUT,        /* idle_timeout_ms without a byte either way */
    SG_TUNNEL_UPSTREAM_TIMEOUT,    /* upstream_read_timeout_ms without a byte from the upstream */
    SG_TUNNEL_SHUTDOWN,            /* fast stop, or worker_shutdown_timeout after a reload */
} sg_tunnel_end_reason;

/* What a tunnel did, handed to on_close (for access logs, $bytes_sent...). */
typedef struct sg_tunnel_end {
    sg_tunnel_end_reason reason;
    uint64_t client_read, client_written;       /* bytes from / to the client socket */
    uint64_t upstream_read, upstream_written;   /* bytes from / to the upstream socket */
    uint64_t upstream_first_ms;                 /* loop time of the upstream's first byte; 0: none (least_time) */
} sg_tunnel_end;

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
    /* For the access log / error log lines: "client 1.2.3.4:5, upstream 127.0.0.1:80".
     * Only used during sg_tunnel_start (not kept: the tunnel stays small);
     * later log lines name the sockets' addresses. */
    const char *what;
    /* nginx stream's `proxy_half_close off` (its default): the first FIN
     * from either side ends the tunnel once the bytes before it are
     * written. false: the FIN is passed on (shutdown(SHUT_WR)). */
    bool close_on_eof;
    /* Called once when the tunnel ends, after both sockets are closed and
     * before its generation is released (the generation's structures,
     * e.g. balancers, are still valid). May be NULL. Not called when
     * sg_tunnel_start fails. */
    void (*on_close)(const sg_tunnel_end *e, void *arg, void *arg2);
    void *arg, *arg2;
    /* A side that speaks TLS (its handshake done, e.g. a wss:// client of
     * an ssl listener): the tunnel reads and writes through it, sends
     * close_notify for a FIN, and frees it. NULL: a plain socket. */
    struct sg_tls_conn *client_tls, *upstream_tls;
    /* rate (issue 10): stream's proxy_upload_rate / proxy_download_rate,
     * bytes per second read from the client / from the upstream (0: no
     * limit), with nginx's budget (rate * (seconds since the start + 1)
     * bytes, each read followed by the time it is worth at that rate).
     * A limited side is read in pieces no larger than its budget, on a
     * timer of the worker's loop; nothing else waits. */
    uint64_t upload_rate, download_rate;
} sg_tunnel_opts;

/* Starts relaying between two connected, non-blocking sockets that are
 * not registered with the loop (callers sg_loop_del them first). Bytes
 * already read from one side and meant for the other are passed in:
 * `to_upstream` (read from the client) and `to_client` (read from the
 * upstream). Takes ownership of both fds, even on failure (NULL). */
sg_tunnel *sg_tunnel_start(sg_worker *w, int client_fd, int upstream_fd, const sg_tunnel_opts *o,
                           const char *to_upstream, size_t nto_upstream,
                           const char *to_client, size_t nto_client);

/* The same with queues the caller already holds (a codec's unsent output,
 * say): their chunks move into the tunnel and both are left empty, also
 * on failure. */
sg_tunnel *sg_tunnel_start_q(sg_worker *w, int client_fd, int upstream_fd, const sg_tunnel_opts *o,
                             sg_outq *to_upstream, sg_outq *to_client);

/* sizeof(struct sg_tunnel), for tests and memory accounting. */
size_t sg_tunnel_size(void);

#endif
