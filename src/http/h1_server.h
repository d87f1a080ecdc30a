/* The HTTP/1.1 server codec: client connections, keep-alive, pipelining,
 * request bodies streamed into the exchange with backpressure, responses
 * framed with Content-Length or chunked. */
#ifndef SG_HTTP_H1_SERVER_H
#define SG_HTTP_H1_SERVER_H

#include <sys/socket.h>
#include "core/worker.h"

struct sg_listen_group;

/* Takes ownership of a non-blocking socket accepted on listen group g of
 * the worker's current generation (NULL: the address is no longer
 * listened on), which the connection keeps (sg_conn_node.group). */
void sg_h1_server_accept(sg_worker *w, const struct sg_listen_group *g, int fd,
                         const struct sockaddr *peer, socklen_t peerlen,
                         const struct sockaddr *local, socklen_t locallen);

/* The same for a connection another codec started reading (an http2
 * listener that did not get the HTTP/2 preface): `pre` holds the bytes it
 * read, processed first as if just read. */
void sg_h1_server_accept_pre(sg_worker *w, const struct sg_listen_group *g, int fd,
                             const struct sockaddr *peer, socklen_t peerlen,
                             const struct sockaddr *local, socklen_t locallen,
                             const char *pre, size_t npre);

typedef struct sg_tls_conn sg_tls_conn;
void sg_h1_server_accept_tls(sg_worker *w, const struct sg_listen_group *g, int fd, sg_tls_conn *tls,
                             const struct sockaddr *peer, socklen_t peerlen,
                             const struct sockaddr *local, socklen_t locallen);
#endif
