/* A worker's side of the listening sockets: it polls its own socket of
 * each listen group of its current generation and hands every accepted
 * connection, with its listen group, to the protocol the group speaks
 * (stream proxy, TLS then HTTP/2 or HTTP/1.1 by ALPN, h2c, HTTP/1.1).
 * The group is looked up nowhere else: a codec keeps it on its connection
 * (sg_conn_node.group), and on a reload sg_acceptor_regroup() gives each
 * connection its group in the new generation. */
#ifndef SG_SERVER_ACCEPTOR_H
#define SG_SERVER_ACCEPTOR_H

#include <stddef.h>
#include "conf/conf.h"
#include "core/worker.h"

typedef struct sg_acceptor_listener sg_acceptor_listener;

typedef struct sg_acceptor {
    sg_worker *w;
    sg_acceptor_listener *listeners;
    size_t nlisteners;
    sg_acceptor_listener *old;         /* replaced by a reload: freed at the end of the iteration */
    sg_deferred free_old;
} sg_acceptor;

void sg_acceptor_init(sg_acceptor *a, sg_worker *w);
/* Polls fds[j] for c->listens[j] from now on (on w's thread); fds NULL:
 * stops accepting. Sockets not in fds are no longer polled (the main
 * thread closes them). */
void sg_acceptor_set(sg_acceptor *a, const sg_conf *c, const int *fds);
/* Gives each HTTP connection of w its listen group in generation c. */
void sg_acceptor_regroup(sg_worker *w, const sg_conf *c);
/* The worker thread ends: frees what is left. */
void sg_acceptor_done(sg_acceptor *a);
/* Frees what the calling worker thread kept for TLS handshakes that never
 * finished (PROXY protocol addresses). */
void sg_acceptor_thread_done(void);

#endif
