/* The L4 proxy of `stream {}` servers (nginx's ngx_stream_proxy_module).
 *
 * An accepted connection becomes a session: pick a peer with the stream
 * upstream's balancer, connect without blocking (proxy_connect_timeout),
 * and on failure mark the peer failed and try the next one
 * (proxy_next_upstream, bounded by _tries and _timeout). Nothing is read
 * from the client before the upstream is connected, so failing over is
 * always safe; meanwhile the client socket is registered only to notice a
 * reset. Once connected, both sockets go to a tunnel (proxy/tunnel.h) and
 * the session's memory is freed: what stays is the tunnel, whose close
 * callback ends the peer's use (least_conn counts open sessions, as
 * nginx's peer.free at session end does). */
#include "proxy/stream_proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conf/stream_conf.h"
#include "core/log.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "proxy/tunnel.h"
#include "upstream/pool.h"

typedef struct sp_session {
    sg_conn_node node;           /* counted as a worker connection while connecting */
    sg_io client;                /* registered for hang-up detection only */
    sg_io up;                    /* the connect in progress; fd -1 between attempts */
    sg_timer timer;              /* proxy_connect_timeout */
    sg_deferred reap;            /* frees the session after the event batch */
    bool dead;                   /* ended: events still queued in this batch are ignored */
    sg_worker *w;
    sg_conf *gen;
    const sg_stream_server_conf *srv;
    sg_balancer *b;
    sg_peer *peer;               /* the current attempt's peer */
    uint64_t start_ms;
    unsigned attempts;
    struct sockaddr_storage client_addr, local_addr;
    size_t key_len;
    uint64_t *tried;             /* points into the allocation, after the key */
    char key[];                  /* the hash key, if the upstream uses `hash` */
} sp_session;

/* ---- values of stream{} (the hash key) for a connection ---- */

static size_t put(char *buf, size_t n, const void *p, size_t len)
{
    if (len > SG_STREAM_VAL_MAX - n) len = SG_STREAM_VAL_MAX - n;
    memcpy(buf + n, p, len);
    return n + len;
}

static size_t put_var(char *buf, size_t n, int var, const struct sockaddr *client,
                      const struct sockaddr *local)
{
    char tmp[64];
    switch (var) {
    case SG_SVAR_REMOTE_ADDR:
    case SG_SVAR_SERVER_ADDR:
        sg_sockaddr_host(var == SG_SVAR_REMOTE_ADDR ? client : local, tmp, sizeof(tmp));
        return put(buf, n, tmp, strlen(tmp));
    case SG_SVAR_REMOTE_PORT:
    case SG_SVAR_SERVER_PORT:
        snprintf(tmp, sizeof(tmp), "%d", sg_sockaddr_port(var == SG_SVAR_REMOTE_PORT ? client : local));
        return put(buf, n, tmp, strlen(tmp));
    case SG_SVAR_BINARY_REMOTE_ADDR:
        if (client->sa_family == AF_INET)
            return put(buf, n, &((const struct sockaddr_in *)client)->sin_addr, 4);
        if (client->sa_family == AF_INET6)
            return put(buf, n, &((const struct sockaddr_in6 *)client)->sin6_addr, 16);
        return n;
    case SG_SVAR_PROTOCOL:
        return put(buf, n, "TCP", 3);
    default:
        return n;
    }
}

size_t sg_stream_proxy_value(const sg_stream_val *v, const struct sockaddr *client,
                             const struct sockaddr *local, char *buf)
{
    size_t n = 0;
    for (size_t i = 0; i < v->nparts; i++) {
        const sg_stream_val_part *p = &v->parts[i];
        n = p->var < 0 ? put(buf, n, p->lit.p, p->lit.n) : put_var(buf, n, p->var, client, local);
    }
    return n;
}

static void connect_next(sp_session *s);

static uint64_t now_ms(const sp_session *s)
{
    return sg_loop_now(sg_worker_loop(s->w));
}

/* ", client: 1.2.3.4, server: 0.0.0.0:12345, upstream: "10.0.0.1:80"" as nginx's stream log lines. */
static void log_error(const sp_session *s, int err, const char *what)
{
    char client[64], server[80];
    sg_sockaddr_host((const struct sockaddr *)&s->client_addr, client, sizeof(client));
    sg_sockaddr_str((const struct sockaddr *)&s->local_addr, server, sizeof(server));
    const char *up = s->peer && s->peer->conf->name ? s->peer->conf->name : s->srv->upstream->name;
    if (err)
        sg_log_error("%s (%d: %s) while connecting to upstream, client: %s, server: %s, upstream: \"%s\"",
                     what, err, strerror(err), client, server, up);
    else
        sg_log_error("%s while connecting to upstream, client: %s, server: %s, upstream: \"%s\"",
                     what, client, server, up);
}

/* ---------------- ending a session ---------------- */

static void close_io(sp_session *s, sg_io *io)
{
    if (io->fd < 0) return;
    sg_loop_del(sg_worker_loop(s->w), io);
    close(io->fd);
    io->fd = -1;
}

/* The current attempt is over (`failed`: it counts towards max_fails). */
static void end_attempt(sp_session *s, bool failed)
{
    sg_timer_disarm(&s->timer);
    close_io(s, &s->up);
    if (s->peer) sg_balancer_done(s->b, s->peer, failed, now_ms(s));
    s->peer = NULL;
}

static void on_reap(sg_deferred *d)
{
    free((char *)d - offsetof(sp_session, reap));
}

/* Freed at the end of the iteration: the other socket may still have an
 * event in this epoll batch that points into the session. */
static void session_free(sp_session *s)
{
    end_attempt(s, false);
    close_io(s, &s->client);
    s->dead = true;
    sg_loop_defer(sg_worker_loop(s->w), &s->reap);
    sg_worker_gen_release(s->w, s->gen);
    sg_worker_conn_del(s->w, &s->node);   /* last: may stop a quitting loop */
}

/* ---------------- the tunnel ---------------- */

static void on_tunnel_close(const sg_tunnel_end *e, void *arg, void *arg2)
{
    sg_worker *w = sg_worker_self();
    sg_balancer_done(arg, arg2, false, sg_loop_now(sg_worker_loop(w)));
}

static void set_nodelay(int fd, int on)
{
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* Connected: both sockets go to a tunnel, which now holds the peer. */
static void connected(sp_session *s)
{
    sg_loop *loop = sg_worker_loop(s->w);
    char client[80], what[200];
    sg_sockaddr_str((const struct sockaddr *)&s->client_addr, client, sizeof(client));
    snprintf(what, sizeof(what), "client %s, upstream %s", client, s->peer->conf->name);
    sg_timer_disarm(&s->timer);
    sg_loop_del(loop, &s->up);
    sg_loop_del(loop, &s->client);
    set_nodelay(s->client.fd, s->srv->proxy.tcp_nodelay);
    set_nodelay(s->up.fd, s->srv->proxy.tcp_nodelay);   /* sg_connect_nonblock set it on */
    sg_tunnel_opts o = {
        .idle_timeout_ms = s->srv->proxy.timeout_ms,
        .tcp_keepalive = true,
        .gen = s->gen,
        .what = what,
        .close_on_eof = !s->srv->proxy.half_close,
        .on_close = on_tunnel_close,
        .arg = s->b,
        .arg2 = s->peer,
    };
    int cfd = s->client.fd, ufd = s->up.fd;
    s->client.fd = s->up.fd = -1;            /* the tunnel owns them now, even on failure */
    if (sg_tunnel_start(s->w, cfd, ufd, &o, NULL, 0, NULL, 0))
        s->peer = NULL;                      /* released by on_tunnel_close */
    session_free(s);
}

/* ---------------- connecting ---------------- */

static void attempt_failed(sp_session *s, int err, const char *what)
{
    log_error(s, err, what);
    end_attempt(s, true);
    connect_next(s);
}

static void on_upstream(sg_io *io, uint32_t events)
{
    sp_session *s = (sp_session *)((char *)io - offsetof(sp_session, up));
    if (s->dead || io->fd < 0 || !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = sg_connect_result(io->fd);
    if (err == 0 && (events & EPOLLOUT) && !(events & EPOLLERR)) {
        connected(s);
        return;
    }
    attempt_failed(s, err ? err : ECONNRESET, "connect() failed");
}

static void on_connect_timeout(sg_timer *t)
{
    sp_session *s = (sp_session *)((char *)t - offsetof(sp_session, timer));
    attempt_failed(s, ETIMEDOUT, "upstream timed out");
}

/* A reset or a full close of the client while connecting ends the
 * session; a half close (EPOLLRDHUP alone) does not: the client may have
 * sent all it has and wait for the answer. Bytes are left unread. */
static void on_client(sg_io *io, uint32_t events)
{
    sp_session *s = (sp_session *)((char *)io - offsetof(sp_session, client));
    if (!s->dead && io->fd >= 0 && (events & (EPOLLHUP | EPOLLERR))) session_free(s);
}

/* nginx's ngx_stream_proxy_next_upstream: another try unless turned off,
 * out of tries, or past proxy_next_upstream_timeout. */
static bool may_retry(const sp_session *s)
{
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    if (s->attempts == 0) return true;
    if (!pc->next_upstream) return false;
    if (pc->next_upstream_tries && s->attempts >= pc->next_upstream_tries) return false;
    return !pc->next_upstream_timeout_ms || now_ms(s) - s->start_ms < pc->next_upstream_timeout_ms;
}

static sg_peer *pick(sp_session *s)
{
    sg_pick_ctx ctx = {
        .client = (const struct sockaddr *)&s->client_addr,
        .now_ms = now_ms(s),
        .tried = s->tried,
        .key = s->key,
        .key_len = s->key_len,
    };
    return sg_balancer_pick(s->b, &ctx);
}

/* Starts the next attempt, or ends the session (the client sees a close). */
static void connect_next(sp_session *s)
{
    while (may_retry(s)) {
        s->peer = pick(s);
        if (!s->peer) {
            log_error(s, 0, "no live upstreams");
            break;
        }
        s->attempts++;
        const sg_upstream_server_conf *sc = s->peer->conf;
        s->up.fd = sg_connect_nonblock((const struct sockaddr *)&sc->addr, sc->addrlen);
        if (s->up.fd < 0 || sg_loop_add(sg_worker_loop(s->w), &s->up) < 0) {
            int err = errno;
            log_error(s, err, "connect() failed");
            if (s->up.fd >= 0) close(s->up.fd);
            s->up.fd = -1;
            end_attempt(s, true);
            continue;
        }
        sg_timer_arm(sg_worker_loop(s->w), &s->timer, s->srv->proxy.connect_timeout_ms);
        return;
    }
    session_free(s);
}

/* Graceful stop lets a connecting session become its tunnel (which then
 * lives as long as it lasts, as nginx's stream sessions do); fast stop
 * ends it now. */
static void on_shutdown(sg_conn_node *n, bool fast)
{
    sp_session *s = (sp_session *)((char *)n - offsetof(sp_session, node));
    if (fast) session_free(s);
}

/* ---------------- accepting ---------------- */

static bool is_wildcard(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (sa->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, &in6addr_any, sizeof(struct in6_addr)) == 0;
    return false;
}

static sp_session *session_new(sg_worker *w, const sg_stream_server_conf *srv, int fd,
                               const struct sockaddr *peer, socklen_t peerlen,
                               const struct sockaddr *local, socklen_t locallen)
{
    sg_balancer *b = ((sg_upstream_rt *)srv->upstream->runtime)->balancer;
    size_t words = sg_balancer_tried_words(b);
    char key[SG_STREAM_VAL_MAX];
    struct sockaddr_storage here = { 0 };
    memcpy(&here, local, locallen < sizeof(here) ? locallen : sizeof(here));
    socklen_t hl = sizeof(here);
    if (srv->hash_key && is_wildcard(local)) getsockname(fd, (struct sockaddr *)&here, &hl);
    struct sockaddr_storage client = { 0 };
    memcpy(&client, peer, peerlen < sizeof(client) ? peerlen : sizeof(client));
    size_t klen = srv->hash_key ? sg_stream_proxy_value(srv->hash_key, (const struct sockaddr *)&client,
                                                     (const struct sockaddr *)&here, key) : 0;
    size_t off = (sizeof(sp_session) + klen + 7) & ~(size_t)7;
    sp_session *s = sg_xcalloc(1, off + words * sizeof(uint64_t));
    s->tried = (uint64_t *)((char *)s + off);
    memcpy(s->key, key, klen);
    s->key_len = klen;
    s->client_addr = client;
    s->local_addr = here;
    s->b = b;
    return s;
}

void sg_stream_proxy_accept(sg_worker *w, const sg_listen_group *g, int fd,
                            const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen)
{
    const sg_stream_server_conf *srv = g->stream_server;
    if (!srv->upstream || !srv->upstream->runtime) {   /* not activated: cannot happen */
        close(fd);
        return;
    }
    sp_session *s = session_new(w, srv, fd, peer, peerlen, local, locallen);
    s->w = w;
    s->gen = sg_worker_conf(w);
    s->srv = srv;
    s->start_ms = now_ms(s);
    s->client = (sg_io){ fd, on_client };
    s->up = (sg_io){ -1, on_upstream };
    sg_timer_init(&s->timer, on_connect_timeout);
    sg_deferred_init(&s->reap, on_reap);
    s->node.shutdown = on_shutdown;
    sg_worker_gen_hold(w, s->gen);
    sg_worker_conn_add(w, &s->node);
    if (sg_loop_add(sg_worker_loop(w), &s->client) < 0) {
        sg_log_error("epoll_ctl() failed for a stream connection: %s", strerror(errno));
        session_free(s);
        return;
    }
    connect_next(s);
}
