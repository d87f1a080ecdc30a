/* `listen ... proxy_protocol`: before a connection goes to TLS, an HTTP
 * codec or a stream session, its PROXY protocol header is read
 * (net/proxy_protocol.h) on the worker's loop, bounded by a timeout. */
#ifndef SG_SERVER_PROXY_HEADER_H
#define SG_SERVER_PROXY_HEADER_H

#include <sys/socket.h>
#include "conf/conf.h"
#include "core/worker.h"

/* Called once the header is read: `proxy` ([0] client, [1] the address it
 * connected to; heap, the callee owns it) is NULL for a LOCAL/UNKNOWN
 * header. Not called when the header is broken, late or never comes: the
 * connection is closed and the error logged, as nginx does. */
typedef void (*sg_proxy_header_fn)(sg_worker *w, const sg_listen_group *g, int fd,
                                   const struct sockaddr *peer, socklen_t peerlen,
                                   const struct sockaddr *local, socklen_t locallen,
                                   struct sockaddr_storage *proxy);

void sg_proxy_header_read(sg_worker *w, sg_conf *gen, const sg_listen_group *g, int fd,
                          const struct sockaddr *peer, socklen_t peerlen,
                          const struct sockaddr *local, socklen_t locallen,
                          uint32_t timeout_ms, sg_proxy_header_fn done);

/* Closes this thread's connections still waiting for their header. */
void sg_proxy_header_close_all(void);

#endif
