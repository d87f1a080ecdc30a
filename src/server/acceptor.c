/* Accepting connections and handing them to their protocol. */
#include "server/acceptor.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/stats.h"
#include "http/h1_server.h"
#include "http/h2_server.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "proxy/stream_proxy.h"
#include "server/proxy_header.h"

struct sg_acceptor_listener {
    sg_io io;
    sg_acceptor *a;
    bool stale;                      /* replaced by a reload: ignore late events */
    size_t group;                    /* index into the current generation's listens[] */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* The group of generation c a connection accepted on `local` belongs to:
 * the one listening on that address, else one on the same port (a
 * wildcard address accepted it); NULL when c does not listen there. */
static const sg_listen_group *group_in(const sg_conf *c, const struct sockaddr *local)
{
    const sg_listen_group *wild = NULL;
    for (size_t i = 0; i < c->nlistens; i++) {
        const sg_listen_group *g = &c->listens[i];
        const struct sockaddr *a = (const struct sockaddr *)&g->addr;
        if (sg_sockaddr_eq(a, local)) return g;
        /* a unix socket has no port and no wildcard: only its own file matches */
        if (a->sa_family == local->sa_family && a->sa_family != AF_UNIX &&
            sg_sockaddr_port(a) == sg_sockaddr_port(local))
            wild = g;
    }
    return wild;
}

static void regroup(sg_conn_node *n, void *arg)
{
    if (n->local) n->group = group_in(arg, n->local);
}

void sg_acceptor_regroup(sg_worker *w, const sg_conf *c)
{
    sg_worker_each_conn(w, regroup, (void *)c);
}

/* `arg` is the group of the handshake's generation; when a reload came
 * during the handshake, the connection takes its group in the current one. */
/* PROXY protocol addresses of connections on `listen ... ssl
 * proxy_protocol` while their TLS handshake runs, by socket: the handshake
 * layer carries only the group. An entry a failed handshake left behind is
 * dropped when its fd number is accepted again. */
typedef struct pending_proxy {
    int fd;
    struct sockaddr_storage *proxy;
} pending_proxy;
static _Thread_local pending_proxy *pending;
static _Thread_local size_t npending;

static struct sockaddr_storage *pending_take(int fd)
{
    for (size_t i = 0; i < npending; i++) {
        if (pending[i].fd != fd) continue;
        struct sockaddr_storage *p = pending[i].proxy;
        pending[i] = pending[--npending];
        return p;
    }
    return NULL;
}

static void pending_put(int fd, struct sockaddr_storage *proxy)
{
    free(pending_take(fd));
    pending = sg_xrealloc(pending, (npending + 1) * sizeof(*pending));
    pending[npending++] = (pending_proxy){ fd, proxy };
}

/* An HTTP codec takes the connection; `proxy` (heap or NULL) goes with it. */
static void start_http(sg_worker *w, const sg_listen_group *g, int fd, sg_tls_conn *tls,
                       const struct sockaddr *peer, socklen_t peerlen,
                       const struct sockaddr *local, socklen_t locallen,
                       struct sockaddr_storage *proxy)
{
    free(sg_worker_pass_proxy(w, proxy));
    if (tls && sg_tls_alpn_is_h2(tls))
        sg_h2_server_accept_tls(w, g, fd, tls, peer, peerlen, local, locallen);
    else if (tls)
        sg_h1_server_accept_tls(w, g, fd, tls, peer, peerlen, local, locallen);
    else if (g->http2)
        sg_h2_server_accept(w, g, fd, peer, peerlen, local, locallen, NULL, 0);
    else
        sg_h1_server_accept(w, g, fd, peer, peerlen, local, locallen);
    free(sg_worker_pass_proxy(w, NULL));   /* not taken: the codec refused the connection */
}

/* A group pointer kept across a wait (TLS handshake, PROXY header) may be
 * of a generation a reload replaced: then the current one's is used. */
static const sg_listen_group *current_group(const sg_listen_group *g, const struct sockaddr *local)
{
    const sg_conf *cur = sg_worker_conf(sg_worker_self());
    uintptr_t p = (uintptr_t)g, first = (uintptr_t)cur->listens;
    if (p < first || p >= first + cur->nlistens * sizeof(*g)) g = group_in(cur, local);
    return g;
}

static void on_tls_ready(const sg_tls_accepted *a, void *arg)
{
    sg_worker *w = sg_worker_self();
    const sg_listen_group *g = current_group(arg, a->local);
    struct sockaddr_storage *proxy = npending ? pending_take(a->fd) : NULL;
    sg_sock_tune(a->fd);
    start_http(w, g, a->fd, a->tls, a->peer, a->peerlen, a->local, a->locallen, proxy);
}

/* After the PROXY header if the listener wants one: TLS, then a codec. */
static void start_connection(sg_worker *w, const sg_listen_group *g, int fd,
                             const struct sockaddr *peer, socklen_t peerlen,
                             const struct sockaddr *local, socklen_t locallen,
                             struct sockaddr_storage *proxy)
{
    sg_conf *c = sg_worker_conf(w);
    g = current_group(g, local);
    if (!g) {                           /* a reload stopped listening there */
        free(proxy);
        close(fd);
        return;
    }
    if (g->ssl) {
        if (proxy) pending_put(fd, proxy);
        sg_tls_accept(sg_worker_loop(w), c, g, fd, peer, peerlen, local, locallen,
                      g->default_server->client_header_timeout_ms, on_tls_ready, (void *)g);
    } else {
        start_http(w, g, fd, NULL, peer, peerlen, local, locallen, proxy);
    }
}

/* A stream `listen ... udp` socket: each datagram goes to the stream
 * proxy, which keeps a session per client address. */
static void on_datagrams(sg_acceptor_listener *l, sg_worker *w, sg_conf *c)
{
    static _Thread_local char buf[65536];
    for (int i = 0; i < 64 && !sg_worker_quitting(w); i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        ssize_t n = recvfrom(l->io.fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNREFUSED)
                sg_log_error("recvfrom() failed: %s", strerror(errno));
            return;
        }
        sg_stream_udp_datagram(w, &c->listens[l->group], l->io.fd, buf, (size_t)n, (struct sockaddr *)&peer,
                               plen, (const struct sockaddr *)&l->addr, l->addrlen);
    }
}

static void on_accept(sg_io *io, uint32_t events)
{
    sg_acceptor_listener *l = (sg_acceptor_listener *)io;
    sg_worker *w = l->a->w;
    if (l->stale) return;
    sg_conf *c = sg_worker_conf(w);
    if (c->listens[l->group].udp) {
        on_datagrams(l, w, c);
        return;
    }
    /* Accept a bounded batch per wake-up so one busy listener cannot
     * starve the connections already open. */
    for (int i = 0; i < 64 && !sg_worker_quitting(w); i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                sg_log_error("accept4() failed: %s", strerror(errno));
            return;
        }
        if (npending) free(pending_take(fd));   /* left by a handshake that failed */
        sg_stats_add(SG_ST_ACCEPTED, 1);
        if (sg_worker_conn_count(w) >= c->worker_connections) {
            sg_log_warn("%u worker_connections are not enough", c->worker_connections);
            close(fd);
            continue;
        }
        sg_stats_add(SG_ST_HANDLED, 1);
        const sg_listen_group *g = &c->listens[l->group];
        const struct sockaddr *local = (const struct sockaddr *)&l->addr;
        if (g->stream_server && g->proxy_protocol)
            sg_proxy_header_read(w, c, g, fd, (struct sockaddr *)&peer, plen, local, l->addrlen,
                                 g->stream_server->proxy.proxy_protocol_timeout_ms, sg_stream_proxy_accept);
        else if (g->stream_server)
            sg_stream_proxy_accept(w, g, fd, (struct sockaddr *)&peer, plen, local, l->addrlen, NULL);
        else if (g->proxy_protocol)
            sg_proxy_header_read(w, c, g, fd, (struct sockaddr *)&peer, plen, local, l->addrlen,
                                 g->default_server->client_header_timeout_ms, start_connection);
        else
            start_connection(w, g, fd, (struct sockaddr *)&peer, plen, local, l->addrlen, NULL);
    }
}

static void on_free_old(sg_deferred *d)
{
    sg_acceptor *a = (sg_acceptor *)((char *)d - offsetof(sg_acceptor, free_old));
    free(a->old);
    a->old = NULL;
}

void sg_acceptor_init(sg_acceptor *a, sg_worker *w)
{
    memset(a, 0, sizeof(*a));
    a->w = w;
    sg_deferred_init(&a->free_old, on_free_old);
}

/* Events of the current epoll batch may still point at the old array, so
 * it is marked stale and freed only once the batch is handled. */
void sg_acceptor_set(sg_acceptor *a, const sg_conf *c, const int *fds)
{
    sg_loop *loop = sg_worker_loop(a->w);
    for (size_t i = 0; i < a->nlisteners; i++) {
        bool kept = false;
        for (size_t j = 0; fds && j < c->nlistens; j++)
            if (fds[j] == a->listeners[i].io.fd) kept = true;
        if (!kept) sg_loop_del(loop, &a->listeners[i].io);
        a->listeners[i].stale = true;
    }
    if (a->listeners) {
        free(a->old);
        a->old = a->listeners;
        sg_loop_defer(loop, &a->free_old);
    }
    a->listeners = NULL;
    a->nlisteners = 0;
    if (!fds) return;
    a->listeners = sg_xcalloc(c->nlistens, sizeof(sg_acceptor_listener));
    for (size_t j = 0; j < c->nlistens; j++) {
        sg_acceptor_listener *l = &a->listeners[j];
        l->io.fd = fds[j];
        l->io.on_event = on_accept;
        l->a = a;
        l->group = j;
        memcpy(&l->addr, &c->listens[j].addr, c->listens[j].addrlen);
        l->addrlen = c->listens[j].addrlen;
        /* Re-adding a kept fd fails with EEXIST: its registration stays, but
         * it must point at the new listener, so modify it instead. */
        sg_loop_del(loop, &l->io);
        sg_loop_add_reader(loop, &l->io);
    }
    a->nlisteners = c->nlistens;
}

void sg_acceptor_thread_done(void)
{
    for (size_t i = 0; i < npending; i++) free(pending[i].proxy);
    free(pending);
    pending = NULL;
    npending = 0;
}

void sg_acceptor_done(sg_acceptor *a)
{
    free(a->listeners);
    free(a->old);
    a->listeners = a->old = NULL;
    a->nlisteners = 0;
}
