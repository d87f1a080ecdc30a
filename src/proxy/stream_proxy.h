/* The L4 proxy of `stream {}` servers: a client connection becomes a
 * tunnel to a peer picked by the stream upstream's balancer, with connect
 * failover to the next peer before the first byte is relayed. */
#ifndef SG_PROXY_STREAM_PROXY_H
#define SG_PROXY_STREAM_PROXY_H

#include <sys/socket.h>
#include "conf/stream_conf.h"
#include "core/worker.h"

struct sg_listen_group;

/* Takes ownership of a non-blocking socket accepted on listen group g
 * (a stream server's: g->stream_server). `proxy`: for `listen ...
 * proxy_protocol`, the header's source and destination ([0], [1]; heap,
 * freed here), NULL when none came or it named no addresses. */
void sg_stream_proxy_accept(sg_worker *w, const struct sg_listen_group *g, int fd,
                            const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen,
                            struct sockaddr_storage *proxy);

/* One datagram received on stream `listen ... udp` socket lfd (group g):
 * it goes to the session of its client address, or starts one. The
 * replies go out through lfd. */
void sg_stream_udp_datagram(sg_worker *w, const struct sg_listen_group *g, int lfd, const char *data, size_t n,
                            const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen);

/* Evaluates a stream{} value (the hash key) for a connection into buf
 * (SG_STREAM_VAL_MAX bytes); returns the length. `local` is the address
 * that accepted the connection (not a wildcard: getsockname() for those). */
size_t sg_stream_proxy_value(const sg_stream_val *v, const struct sockaddr *client,
                             const struct sockaddr *local, char *buf);

#endif
