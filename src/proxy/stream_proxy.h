/* The L4 proxy of `stream {}` servers: a client connection becomes a
 * tunnel to a peer picked by the stream upstream's balancer, with connect
 * failover to the next peer before the first byte is relayed. */
#ifndef SG_PROXY_STREAM_PROXY_H
#define SG_PROXY_STREAM_PROXY_H

#include <sys/socket.h>
#include "core/worker.h"

struct sg_stream_server_conf;

/* Takes ownership of an accepted, non-blocking socket. */
void sg_stream_proxy_accept(sg_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen,
                            const struct sg_stream_server_conf *srv);

#endif
