/* The HTTP/2 server codec (libnghttp2): client connections that speak h2
 * (prior knowledge on `listen ... http2`), each stream one exchange, flow
 * control carried end to end as backpressure. Extended CONNECT (RFC 8441)
 * streams become tunnels through the same exchange interface. */
#ifndef SG_HTTP_H2_SERVER_H
#define SG_HTTP_H2_SERVER_H

#include <stddef.h>
#include <sys/socket.h>
#include "core/worker.h"

struct sg_listen_group;

/* Takes ownership of a non-blocking socket accepted on listen group g of
 * the worker's current generation (NULL: the address is no longer
 * listened on), which the connection keeps (sg_conn_node.group).
 * `pre`/`npre`: bytes already read from it by someone else (may be
 * NULL/0); they are processed first, as if just read. */
void sg_h2_server_accept(sg_worker *w, const struct sg_listen_group *g, int fd,
                         const struct sockaddr *peer, socklen_t peerlen,
                         const struct sockaddr *local, socklen_t locallen,
                         const char *pre, size_t npre);

typedef struct sg_tls_conn sg_tls_conn;
void sg_h2_server_accept_tls(sg_worker *w, const struct sg_listen_group *g, int fd, sg_tls_conn *tls,
                             const struct sockaddr *peer, socklen_t peerlen,
                             const struct sockaddr *local, socklen_t locallen);

#endif
