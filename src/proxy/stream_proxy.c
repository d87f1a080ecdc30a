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
 * nginx's peer.free at session end does). With an access_log the session
 * stays allocated (small) until the tunnel ends, to log what it did.
 *
 * `return VALUE` servers write the value and close; `proxy_pass` with
 * variables picks an upstream{} by name or an address per session. */
#include "proxy/stream_proxy.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conf/stream_conf.h"
#include "core/log.h"
#include "core/sockaddr.h"
#include "core/stats.h"
#include "net/proxy_protocol.h"
#include "net/sock.h"
#include "net/ssl_preread.h"
#include "net/tls.h"
#include "observe/access_log.h"
#include "proxy/access.h"
#include "proxy/limit.h"
#include "proxy/stream_vars.h"
#include "proxy/tunnel.h"
#include "proxy/rate_limit.h"
#include "upstream/pool.h"

typedef struct kept_session {
    const void *srv, *ups;
    struct sockaddr_storage addr;
    char name[128];
    sg_tls_session *session;
} kept_session;

typedef enum sp_phase {
    SP_CONNECTING = 0,           /* connecting to the upstream (up.fd) */
    SP_RETURN,                   /* writing the `return` value */
    SP_HANDSHAKE,                /* listen ... ssl: the client's handshake */
    SP_PREREAD,                  /* ssl_preread: reading the ClientHello */
    SP_UP_HANDSHAKE,             /* proxy_ssl: the upstream's handshake */
} sp_phase;

typedef struct sp_session {
    sg_conn_node node;           /* counted as a worker connection until the tunnel starts */
    sg_io client;                /* hang-up detection while connecting; writes for `return` */
    sg_io up;                    /* the connect in progress; fd -1 between attempts */
    sg_timer timer;              /* proxy_connect_timeout; proxy_timeout for `return` */
    sg_deferred reap;            /* frees the session after the event batch */
    bool dead;                   /* ended: events still queued in this batch are ignored */
    bool detached;               /* the tunnel runs; the session waits for its end to log */
    bool starting;               /* inside sg_tunnel_start: its on_close may run there */
    bool closed_early;           /* ... and did: the session ends when the start returns */
    sp_phase phase;
    sg_worker *w;
    sg_conf *gen;
    const sg_stream_server_conf *srv;
    sg_balancer *b;              /* NULL: one address (proxy_pass with variables) */
    const sg_upstream_conf *ups; /* the upstream of b */
    sg_peer *peer;               /* the current attempt's peer */
    struct sockaddr_storage direct;   /* the address when b is NULL */
    socklen_t direct_len;
    char direct_name[128];       /* room for "unix:" and a whole sun_path */
    uint64_t attempt_start_ms;
    unsigned attempts;
    struct sockaddr_storage client_addr, local_addr;
    sg_stream_info info;         /* what the variables read */
    char *out;                   /* `return`: the value, and how much is written */
    size_t out_len, out_off;
    sg_tls_conn *tls;            /* listen ... ssl: the client's TLS (the tunnel's once it runs) */
    sg_tls_conn *up_tls;         /* proxy_ssl: the upstream's */
    struct sockaddr_storage up_addr;   /* the current try's address */
    kept_session up_key;               /* proxy_ssl_session_reuse: where its session is kept */
    bool listen_ssl;
    unsigned char *pre;          /* ssl_preread: what the client sent so far, for the upstream */
    size_t pre_len;
    sg_preread_info pinfo;
    /* listen ... udp: replies go out through the listening socket lfd */
    bool udp;
    bool udp_linked;             /* in udp_sessions: takes its client's next datagrams */
    int lfd;
    socklen_t client_len;
    unsigned requests, responses;
    struct sp_session *udp_next;         /* this thread's UDP sessions */
    size_t key_len;
    uint64_t *tried;             /* sg_balancer_tried_words() words */
    char key[SG_STREAM_VAL_MAX]; /* the hash key, if the upstream uses `hash` */
    struct sockaddr_storage *pp;     /* listen ... proxy_protocol: the header's addresses and TLVs (info.pp_*) */
    /* access (issue 10): set_real_ip_from: the connection's own peer (info.realip_peer) */
    struct sockaddr_storage realip_peer;
    /* limits (issue 10): limit_conn slots, held until the session ends */
    sg_limit_slots *limit_slots;
    /* rate (issue 10): a UDP session's budgets (a TCP session's are its
     * tunnel's): [0] datagrams from the client, [1] from the upstream */
    uint64_t rate[2], rate_count[2], rate_until[2], rate_start_ms;
    bool down_delayed;           /* the upstream is not read until the timer */
    sg_timer rate_timer;
    struct udp_dgram *held, **held_tail;   /* client datagrams waiting for the budget */
    size_t nheld, held_bytes;
} sp_session;

/* rate (issue 10): a client datagram held for the upload budget. */
typedef struct udp_dgram {
    struct udp_dgram *next;
    size_t n;
    char data[];
} udp_dgram;

/* At most this much waits per session; more is dropped, as a full socket
 * buffer would drop it. */
#define UDP_HELD_MAX (256 * 1024)

/* ---- values of stream{} (the hash key) for a connection ---- */

size_t sg_stream_proxy_value(const sg_stream_val *v, const struct sockaddr *client,
                             const struct sockaddr *local, char *buf)
{
    sg_stream_info in = { .client = client, .local = local };
    return sg_stream_eval(v, &in, buf);
}

static void connect_next(sp_session *s);
static void udp_unlink(sp_session *s);
static void step_handshake(sp_session *s);
static void step_preread(sp_session *s);

static uint64_t now_ms(const sp_session *s)
{
    return sg_loop_now(sg_worker_loop(s->w));
}

static const char *up_name(const sp_session *s)
{
    if (s->peer && s->peer->conf->name) return s->peer->conf->name;
    if (!s->b) return s->direct_name;
    return s->ups && s->ups->name ? s->ups->name : "";
}

/* A message about session s, to its server's error_log (log writers,
 * issue 12; NULL: the main log). */
#define sp_log(s, level, ...) sg_log_to((s)->srv->proxy.error_log, (level), __VA_ARGS__)

/* ", client: 1.2.3.4, server: 0.0.0.0:12345, upstream: "10.0.0.1:80"" as nginx's stream log lines. */
static void log_error(const sp_session *s, int err, const char *what)
{
    char client[64], server[80];
    sg_sockaddr_host((const struct sockaddr *)&s->client_addr, client, sizeof(client));
    sg_sockaddr_str((const struct sockaddr *)&s->local_addr, server, sizeof(server));
    const char *up = up_name(s);
    if (err)
        sp_log(s, SG_LOG_ERROR, "%s (%d: %s) while connecting to upstream, client: %s, server: %s, upstream: \"%s\"",
                     what, err, strerror(err), client, server, up);
    else
        sp_log(s, SG_LOG_ERROR, "%s while connecting to upstream, client: %s, server: %s, upstream: \"%s\"",
                     what, client, server, up);
}

/* ---------------- access_log ---------------- */

static void write_logs(sp_session *s)
{
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    if (pc->logs_off || pc->nlogs == 0) return;
    s->info.now_ms = now_ms(s);
    for (size_t i = 0; i < pc->nlogs; i++) {
        const sg_stream_log *l = &pc->logs[i];
        if ((!l->file && !l->syslog && !l->var_path) || !l->format) continue;
        char line[SG_STREAM_VAL_MAX + 1], path[SG_STREAM_VAL_MAX];
        size_t pn = 0;
        if (l->has_cond) {                 /* if=COND: nginx skips "" and "0" */
            pn = sg_stream_eval(&l->cond, &s->info, path);
            if (pn == 0 || (pn == 1 && path[0] == '0')) continue;
        }
        if (l->var_path) pn = sg_stream_eval(&l->path_value, &s->info, path);
        size_t n = sg_stream_eval_log(l->format, &s->info, line);
        line[n++] = '\n';
        sg_access_log_stream_line(l, path, pn, line, n);
    }
}

static bool has_logs(const sp_session *s)
{
    return !s->srv->proxy.logs_off && s->srv->proxy.nlogs > 0;
}

static bool reuses_sessions(const sp_session *s)
{
    return s->srv->proxy.proxy_ssl_on && s->srv->proxy.proxy_ssl.session_reuse;
}

/* ---------------- proxy_ssl_session_reuse ---------------- */

/* The last TLS session per stream server, upstream, peer address and
 * name (so a session verified for one name is never offered for
 * another), shared by the worker threads as nginx's per-peer sessions
 * are by a process: offered on the next handshake. */
#define SESSIONS_KEPT 64


static kept_session sessions[SESSIONS_KEPT];
static unsigned sessions_next;
static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;

static int session_find(const kept_session *k)
{
    for (int i = 0; i < SESSIONS_KEPT; i++)
        if (sessions[i].session && sessions[i].srv == k->srv && sessions[i].ups == k->ups &&
            strcmp(sessions[i].name, k->name) == 0 &&
            sg_sockaddr_eq((const struct sockaddr *)&sessions[i].addr, (const struct sockaddr *)&k->addr))
            return i;
    return -1;
}

static void session_key(const sp_session *s, const char *name, kept_session *k)
{
    memset(k, 0, sizeof(*k));
    k->srv = s->srv;
    k->ups = s->ups;
    k->addr = s->up_addr;
    size_t n = strnlen(name, sizeof(k->name) - 1);   /* a longer name is cut: still one key per name */
    memcpy(k->name, name, n);
    k->name[n] = 0;
}

/* A reference to the kept session (SSL_SESSION is reference counted), or NULL. */
static sg_tls_session *session_take(const kept_session *k)
{
    pthread_mutex_lock(&sessions_lock);
    int i = session_find(k);
    sg_tls_session *r = i >= 0 ? sessions[i].session : NULL;
    if (r) SSL_SESSION_up_ref(r);
    pthread_mutex_unlock(&sessions_lock);
    return r;
}

static void session_keep(const kept_session *k, sg_tls_session *session);

static void on_up_session(void *arg, sg_tls_session *session)
{
    session_keep(arg, session);
}

static void session_keep(const kept_session *k, sg_tls_session *session)
{
    pthread_mutex_lock(&sessions_lock);
    int i = session_find(k);
    if (i < 0) i = (int)(sessions_next++ % SESSIONS_KEPT);
    sg_tls_session *old = sessions[i].session;
    sessions[i] = *k;
    sessions[i].session = session;
    pthread_mutex_unlock(&sessions_lock);
    sg_tls_session_free(old);
}

/* ---------------- ending a session ---------------- */

static void close_io(sp_session *s, sg_io *io)
{
    if (io->fd < 0) return;
    sg_loop_del(sg_worker_loop(s->w), io);
    close(io->fd);
    io->fd = -1;
}

static sg_stream_try *cur_try(sp_session *s)
{
    return s->info.ntries ? &s->info.tries[s->info.ntries - 1] : NULL;
}

/* The current attempt is over (`failed`: it counts towards max_fails). */
static void end_attempt(sp_session *s, bool failed)
{
    sg_timer_disarm(&s->timer);
    if (s->up_tls) {
        sg_tls_free(s->up_tls);
        s->up_tls = NULL;
    }
    close_io(s, &s->up);
    if (s->peer) sg_balancer_done(s->b, s->peer, failed, now_ms(s));
    s->peer = NULL;
}

static void on_reap(sg_deferred *d)
{
    sp_session *s = (sp_session *)((char *)d - offsetof(sp_session, reap));
    sg_limit_slots_free(s->limit_slots);
    while (s->held) {
        udp_dgram *g = s->held;
        s->held = g->next;
        free(g);
    }
    sg_stream_sets_free(&s->info);
    free(s->tried);
    free(s->pp);
    free(s->out);
    free(s->pre);
    free(s);
}

/* Logs the session (status `status`) and frees it at the end of the
 * iteration: the other socket may still have an event in this epoll batch
 * that points into the session. */
static void session_free(sp_session *s, int status)
{
    if (s->udp_linked) udp_unlink(s);
    if (!s->info.status) s->info.status = status;
    write_logs(s);                     /* first: $ssl_* still read the client's TLS */
    end_attempt(s, false);
    if (s->tls) {
        if (s->phase == SP_RETURN) sg_tls_shutdown(s->tls);   /* close_notify after the value */
        sg_tls_free(s->tls);
        s->tls = NULL;
        s->info.tls = NULL;
    }
    close_io(s, &s->client);
    s->dead = true;
    if (s->udp) sg_timer_disarm(&s->rate_timer);
    sg_loop_defer(sg_worker_loop(s->w), &s->reap);
    sg_worker_gen_release(s->w, s->gen);
    sg_worker_conn_del(s->w, &s->node);   /* last: may stop a quitting loop */
}

/* ---------------- the tunnel ---------------- */

static void on_tunnel_close(const sg_tunnel_end *e, void *arg, void *arg2)
{
    sg_worker *w = sg_worker_self();
    sg_stats_add(SG_ST_STREAM, -1);    /* metrics (issue 12) */
    if (arg2) sg_balancer_done(arg, arg2, false, sg_loop_now(sg_worker_loop(w)));
}

/* With an access log: the session learns what the tunnel did, logs, and goes. */
static void on_tunnel_close_log(const sg_tunnel_end *e, void *arg, void *arg2)
{
    sp_session *s = arg;
    uint64_t now = now_ms(s);
    sg_stats_add(SG_ST_STREAM, -1);    /* metrics (issue 12) */
    if (arg2) {
        /* least_time first_byte / last_byte (balancers, issue 11); a
         * session the upstream never wrote to counts whole for both. */
        int64_t ms = (int64_t)(now - s->attempt_start_ms);
        int64_t first = e->upstream_first_ms && e->upstream_first_ms >= s->attempt_start_ms
                            ? (int64_t)(e->upstream_first_ms - s->attempt_start_ms) : ms;
        sg_peer_times times = { .connect_ms = -1, .header_ms = -1, .first_byte_ms = first, .last_byte_ms = ms };
        sg_balancer_times(s->b, arg2, &times);
        sg_balancer_done(s->b, arg2, false, now);
    }
    s->info.bytes_sent = e->client_written;
    /* what ssl_preread read first is the client's too (the tunnel got it queued) */
    s->info.bytes_received = s->pre_len + e->client_read;
    sg_stream_try *t = cur_try(s);
    if (t) {
        t->sent = e->upstream_written;
        t->received = e->upstream_read;
        t->session_ms = (int64_t)(now - s->attempt_start_ms);
        if (e->upstream_first_ms && e->upstream_first_ms >= s->attempt_start_ms)
            t->first_byte_ms = (int64_t)(e->upstream_first_ms - s->attempt_start_ms);
    }
    s->info.status = 200;
    if (s->starting) {                 /* inside sg_tunnel_start: start_tunnel ends the session */
        s->closed_early = true;
        return;
    }
    write_logs(s);
    sg_limit_slots_free(s->limit_slots);
    sg_stream_sets_free(&s->info);
    free(s->tried);
    free(s->pp);
    free(s->out);
    free(s->pre);
    free(s);
}

static void set_nodelay(int fd, int on)
{
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* rate (issue 10): proxy_upload_rate / proxy_download_rate for this
 * session; an invalid size is logged and means no limit (nginx's
 * ngx_stream_complex_value_size). */
static uint64_t session_rate(sp_session *s, const sg_stream_val *v)
{
    if (!v) return 0;
    char buf[SG_STREAM_VAL_MAX];
    size_t n = sg_stream_eval(v, &s->info, buf);
    uint64_t rate = 0;
    if (n && !sg_rate_parse((sg_str){ buf, n }, &rate)) {
        char client[64];
        sg_sockaddr_host((const struct sockaddr *)&s->client_addr, client, sizeof(client));
        sp_log(s, SG_LOG_ERROR, "invalid size \"%.*s\" of a stream rate, client: %s", (int)n, buf, client);
        return 0;
    }
    return rate;
}

/* Ready (connected, and TLS done if proxy_ssl): both sockets go to a
 * tunnel, which now holds the peer. */
static void start_tunnel(sp_session *s)
{
    sg_loop *loop = sg_worker_loop(s->w);
    char client[80], what[240];
    sg_sockaddr_str((const struct sockaddr *)&s->client_addr, client, sizeof(client));
    snprintf(what, sizeof(what), "client %s, upstream %s", client, up_name(s));
    sg_timer_disarm(&s->timer);
    sg_loop_del(loop, &s->up);
    sg_loop_del(loop, &s->client);
    set_nodelay(s->client.fd, s->srv->proxy.tcp_nodelay);
    set_nodelay(s->up.fd, s->srv->proxy.tcp_nodelay);   /* sg_connect_nonblock set it on */
    /* the session waits for the tunnel's end (to log, keep a TLS session, or give back limit_conn slots) */
    bool log = has_logs(s) || (s->up_tls && reuses_sessions(s)) || s->limit_slots;
    /* least_time times the whole session: the session waits too (balancers, issue 11) */
    if (s->b && s->peer && s->b->conf->lt_mode != SG_LT_NONE && s->b->conf->lt_mode != SG_LT_CONNECT) log = true;
    sg_tunnel_opts o = {
        .idle_timeout_ms = s->srv->proxy.timeout_ms,
        .tcp_keepalive = true,
        .gen = s->gen,
        .what = what,
        .close_on_eof = !s->srv->proxy.half_close,
        .on_close = log ? on_tunnel_close_log : on_tunnel_close,   /* metrics (issue 12): always, for the gauge */
        .arg = log ? (void *)s : (void *)s->b,
        .arg2 = s->peer,
        .client_tls = s->tls,
        .upstream_tls = s->up_tls,
        .upload_rate = session_rate(s, s->srv->proxy.upload_rate),
        .download_rate = session_rate(s, s->srv->proxy.download_rate),
    };
    int cfd = s->client.fd, ufd = s->up.fd;
    s->client.fd = s->up.fd = -1;            /* the tunnel owns them now, even on failure */
    s->tls = s->up_tls = NULL;
    s->info.tls = NULL;                      /* freed by the tunnel: $ssl_* are empty in its log line */
    s->starting = true;
    sg_stats_add(SG_ST_STREAM, 1);           /* metrics (issue 12): until on_close */
    sg_tunnel *t = sg_tunnel_start(s->w, cfd, ufd, &o, (const char *)s->pre, s->pre_len, NULL, 0);
    s->starting = false;
    if (!t) {                                /* on_close was not called */
        sg_stats_add(SG_ST_STREAM, -1);
        session_free(s, 500);
        return;
    }
    s->peer = NULL;                          /* released by the tunnel's on_close */
    if (!log || s->closed_early) {           /* closed_early: it ended already, its line is due */
        session_free(s, 200);
        return;
    }
    /* the tunnel holds the generation and counts as the connection now */
    s->detached = true;
    sg_worker_gen_release(s->w, s->gen);
    sg_worker_conn_del(s->w, &s->node);
}

/* ---------------- connecting ---------------- */

static void attempt_failed(sp_session *s, int err, const char *what)
{
    log_error(s, err, what);
    end_attempt(s, true);
    s->phase = SP_CONNECTING;
    connect_next(s);
}

static void step_up_tls(sp_session *s)
{
    sg_io_result r = sg_tls_handshake(s->up_tls);
    if (r == SG_IO_AGAIN) return;
    if (r == SG_IO_ERROR) {
        attempt_failed(s, 0, "SSL handshake failed");   /* the reason is logged by net/tls.c */
        return;
    }
    start_tunnel(s);
}

/* The name proxy_ssl sends (SNI) and verifies: proxy_ssl_name, else the
 * host of proxy_pass. */
static void ssl_name(sp_session *s, char *buf)
{
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    size_t n;
    if (pc->proxy_ssl_name) {
        n = sg_stream_eval(pc->proxy_ssl_name, &s->info, buf);
    } else if (s->srv->pass_val) {
        n = sg_stream_eval(s->srv->pass_val, &s->info, buf);
        if (!s->b) {                               /* an address: its host part */
            while (n > 0 && buf[n - 1] != ':') n--;
            if (n > 0) n--;
            if (n >= 2 && buf[0] == '[' && buf[n - 1] == ']') {
                memmove(buf, buf + 1, n - 2);
                n -= 2;
            }
        }
    } else {
        n = s->srv->pass_host.n < SG_STREAM_VAL_MAX - 1 ? s->srv->pass_host.n : SG_STREAM_VAL_MAX - 1;
        memcpy(buf, s->srv->pass_host.p, n);
        if (n >= 2 && buf[0] == '[' && buf[n - 1] == ']') {
            memmove(buf, buf + 1, n - 2);
            n -= 2;
        }
    }
    buf[n < SG_STREAM_VAL_MAX ? n : SG_STREAM_VAL_MAX - 1] = 0;
}

/* proxy_protocol on: the PROXY header (v1, or v2 with proxy_protocol_version 2) goes first on every try, before
 * the client's bytes and (plain) before proxy_ssl's handshake, as nginx
 * sends it. A fresh socket's send buffer takes it whole; when it does not,
 * the try fails, as nginx's "could not send PROXY protocol header at once". */
static bool send_proxy_header(sp_session *s)
{
    /* the session's client (after stream realip, as nginx's c->sockaddr) and local address;
     * proxy_protocol_version 2 (streamgate): the binary header instead */
    uint8_t h[SG_PP_V1_WRITE_MAX > SG_PP_V2_WRITE_MAX ? SG_PP_V1_WRITE_MAX : SG_PP_V2_WRITE_MAX];
    size_t n = s->srv->proxy.proxy_protocol_version == 2 ? sg_pp_write_v2(s->info.client, s->info.local, h)
                                                         : sg_pp_write_v1(s->info.client, s->info.local, (char *)h);
    ssize_t w;
    do w = send(s->up.fd, h, n, MSG_NOSIGNAL); while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n) return true;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) attempt_failed(s, errno, "send() failed");
    else attempt_failed(s, 0, "could not send PROXY protocol header at once");
    return false;
}

/* Connected: straight to the tunnel, or first TLS with the upstream
 * (within what is left of proxy_connect_timeout, as nginx). */
static void connected(sp_session *s)
{
    sg_stream_try *t = cur_try(s);
    if (t) t->connect_ms = (int64_t)(now_ms(s) - s->attempt_start_ms);
    if (s->peer) {   /* least_time connect (balancers, issue 11) */
        sg_peer_times times = { .connect_ms = (int64_t)(now_ms(s) - s->attempt_start_ms),
                                .header_ms = -1, .first_byte_ms = -1, .last_byte_ms = -1 };
        sg_balancer_times(s->b, s->peer, &times);
    }
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    if (pc->proxy_protocol && !send_proxy_header(s)) return;
    if (!pc->proxy_ssl_on) {
        start_tunnel(s);
        return;
    }
    char name[SG_STREAM_VAL_MAX];
    ssl_name(s, name);
    const struct sockaddr *sa = s->peer ? (const struct sockaddr *)&s->peer->conf->addr
                                        : (const struct sockaddr *)&s->direct;
    memset(&s->up_addr, 0, sizeof(s->up_addr));
    memcpy(&s->up_addr, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                            : sa->sa_family == AF_UNIX ? sizeof(struct sockaddr_un) : sizeof(struct sockaddr_in));
    sg_tls_session *kept = NULL;
    if (reuses_sessions(s)) {
        session_key(s, name, &s->up_key);
        kept = session_take(&s->up_key);
    }
    s->up_tls = sg_tls_client_new(pc->proxy_ssl.ctx, s->up.fd, pc->proxy_ssl.server_name ? name : NULL,
                                  name, kept, sa);
    sg_tls_session_free(kept);         /* SSL_set_session took its own reference */
    if (s->up_tls) {
        sg_tls_no_alpn(s->up_tls);
        /* up_key lives as long as the connection: the session stays until the tunnel ends */
        if (reuses_sessions(s)) sg_tls_on_session(s->up_tls, on_up_session, &s->up_key);
    }
    if (!s->up_tls) {
        attempt_failed(s, 0, "SSL_new() failed");
        return;
    }
    s->phase = SP_UP_HANDSHAKE;
    step_up_tls(s);
}

static void udp_on_upstream(sp_session *s);

static void on_upstream(sg_io *io, uint32_t events)
{
    sp_session *s = (sp_session *)((char *)io - offsetof(sp_session, up));
    if (s->dead || io->fd < 0) return;
    if (s->udp) {
        udp_on_upstream(s);
        return;
    }
    if (s->phase == SP_UP_HANDSHAKE) {
        step_up_tls(s);
        return;
    }
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = sg_connect_result(io->fd);
    if (err == 0 && (events & EPOLLOUT) && !(events & EPOLLERR)) {
        connected(s);
        return;
    }
    attempt_failed(s, err ? err : ECONNRESET, "connect() failed");
}

static void on_timer(sg_timer *t)
{
    sp_session *s = (sp_session *)((char *)t - offsetof(sp_session, timer));
    if (s->udp) {                      /* proxy_timeout: the session is over */
        session_free(s, 200);
        return;
    }
    switch (s->phase) {
    case SP_RETURN:
        session_free(s, 200);
        return;
    case SP_HANDSHAKE:
        session_free(s, 500);   /* nginx: "SSL handshake timed out" */
        return;
    case SP_PREREAD:
        session_free(s, 200);   /* nginx ends the session (NGX_STREAM_OK) */
        return;
    default:
        attempt_failed(s, ETIMEDOUT, "upstream timed out");
    }
}

/* `return`: writes what is left of the value; the session ends when all is written. */
static void write_return(sp_session *s)
{
    while (s->out_off < s->out_len) {
        ssize_t w;
        if (s->tls) {
            struct iovec iov = { s->out + s->out_off, s->out_len - s->out_off };
            w = sg_tls_writev(s->tls, &iov, 1);
        } else {
            w = send(s->client.fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;     /* edge-triggered: EPOLLOUT comes */
        if (w <= 0) break;
        s->out_off += (size_t)w;
        s->info.bytes_sent += (size_t)w;
    }
    session_free(s, 200);
}

/* A reset or a full close of the client while connecting ends the
 * session; a half close (EPOLLRDHUP alone) does not: the client may have
 * sent all it has and wait for the answer. Bytes are left unread. */
static void on_client(sg_io *io, uint32_t events)
{
    sp_session *s = (sp_session *)((char *)io - offsetof(sp_session, client));
    if (s->dead || io->fd < 0) return;
    if (s->phase == SP_RETURN && (events & EPOLLOUT || s->tls)) {
        write_return(s);
        return;
    }
    if (s->phase == SP_HANDSHAKE) {
        step_handshake(s);
        return;
    }
    if (s->phase == SP_PREREAD) {
        step_preread(s);
        return;
    }
    if (events & (EPOLLHUP | EPOLLERR)) session_free(s, s->phase == SP_RETURN ? 200 : 499);
}

/* nginx's ngx_stream_proxy_next_upstream: another try unless turned off,
 * out of tries, or past proxy_next_upstream_timeout. */
static bool may_retry(const sp_session *s)
{
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    if (s->attempts == 0) return true;
    if (!s->b || !pc->next_upstream) return false;
    if (pc->next_upstream_tries && s->attempts >= pc->next_upstream_tries) return false;
    return !pc->next_upstream_timeout_ms || now_ms(s) - s->info.start_ms < pc->next_upstream_timeout_ms;
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

static bool udp_started(sp_session *s);

/* Starts the next attempt, or ends the session (the client sees a close). */
static void connect_next(sp_session *s)
{
    while (may_retry(s)) {
        const struct sockaddr *sa;
        socklen_t salen;
        if (s->b) {
            s->peer = pick(s);
            if (!s->peer) {
                log_error(s, 0, "no live upstreams");
                /* $upstream_addr: the upstream's name, as nginx, when no try was made at all
                 * (after tries nginx stops when its count of peers is spent instead) */
                if (s->attempts == 0 && s->info.ntries < SG_STREAM_MAX_TRIES)
                    s->info.tries[s->info.ntries++] = (sg_stream_try){ .name = up_name(s), .connect_ms = -1,
                                                                       .first_byte_ms = -1, .session_ms = -1 };
                break;
            }
            sa = (const struct sockaddr *)&s->peer->conf->addr;
            salen = s->peer->conf->addrlen;
        } else {
            sa = (const struct sockaddr *)&s->direct;
            salen = s->direct_len;
        }
        s->attempts++;
        s->attempt_start_ms = now_ms(s);
        if (s->info.ntries < SG_STREAM_MAX_TRIES) {
            s->info.tries[s->info.ntries++] = (sg_stream_try){ .name = up_name(s), .connect_ms = -1,
                                                               .first_byte_ms = -1, .session_ms = -1 };
        }
        s->up.fd = s->udp ? sg_connect_udp(sa, salen) : sg_connect_nonblock(sa, salen);
        if (s->up.fd < 0 || sg_loop_add(sg_worker_loop(s->w), &s->up) < 0) {
            int err = errno;
            log_error(s, err, "connect() failed");
            if (s->up.fd >= 0) close(s->up.fd);
            s->up.fd = -1;
            end_attempt(s, true);
            continue;
        }
        if (s->udp) {                  /* a datagram socket is ready at once */
            if (!udp_started(s)) continue;
            return;
        }
        sg_timer_arm(sg_worker_loop(s->w), &s->timer, s->srv->proxy.connect_timeout_ms);
        return;
    }
    session_free(s, 502);
}

/* Graceful stop lets a connecting session become its tunnel (which then
 * lives as long as it lasts, as nginx's stream sessions do); fast stop
 * ends it now. */
static void on_shutdown(sg_conn_node *n, bool fast)
{
    sp_session *s = (sp_session *)((char *)n - offsetof(sp_session, node));
    /* a UDP session has no connection to finish: it would only wait for
     * proxy_timeout, so a graceful stop ends it too */
    if (fast || s->udp) session_free(s, s->udp ? 200 : 499);
}

/* ---------------- choosing the target ---------------- */

static void use_balancer(sp_session *s, const sg_upstream_conf *u, const sg_stream_val *hash_key)
{
    s->b = sg_upstream_balancer(u->runtime);
    s->ups = u;
    s->tried = sg_xcalloc(sg_balancer_tried_words(s->b) + 1, sizeof(uint64_t));
    if (hash_key) s->key_len = sg_stream_eval(hash_key, &s->info, s->key);
}

/* "1.2.3.4:80", "[::1]:80" or "unix:/path" (no resolver: names other than
 * upstream{} blocks are refused, as nginx does without `resolver`). */
static bool parse_addr(const char *v, size_t n, struct sockaddr_storage *ss, socklen_t *len)
{
    if (n > 5 && memcmp(v, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (n - 5 >= sizeof(un->sun_path) || memchr(v + 5, '\0', n - 5)) return false;
        memset(ss, 0, sizeof(*ss));
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, v + 5, n - 5);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n - 5 + 1);
        return true;
    }
    char host[64];
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (v[i - 1] == ':') { colon = v + i - 1; break; }
    if (!colon || colon == v) return false;
    size_t hl = (size_t)(colon - v);
    const char *h = v;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { h++; hl -= 2; }
    if (hl >= sizeof(host)) return false;
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (end != v + n || colon + 1 == end || port == 0 || port > 65535) return false;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof(*in4);
        return true;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
        return true;
    }
    return false;
}

/* proxy_pass with variables: an upstream{} of this stream{} by name, or an address. */
static bool choose_target(sp_session *s)
{
    const sg_stream_server_conf *srv = s->srv;
    if (!srv->pass_val) {
        use_balancer(s, srv->upstream, srv->hash_key);
        return true;
    }
    char v[SG_STREAM_VAL_MAX + 1];
    size_t n = sg_stream_eval(srv->pass_val, &s->info, v);
    v[n] = 0;
    const sg_stream_conf *sc = s->info.sc;
    for (size_t i = 0; i < sc->nupstreams; i++) {
        const sg_upstream_conf *u = sc->upstreams[i];
        if (u->implicit || !u->runtime || strlen(u->name) != n || strncasecmp(u->name, v, n) != 0) continue;
        const sg_stream_val *key = (u->lb == SG_LB_HASH || u->lb == SG_LB_HASH_CONSISTENT)
                                       ? &((const sg_stream_upstream *)u)->hash_key : NULL;
        use_balancer(s, u, key);
        return true;
    }
    if (!parse_addr(v, n, &s->direct, &s->direct_len)) {
        char client[64];
        sg_sockaddr_host((const struct sockaddr *)&s->client_addr, client, sizeof(client));
        sp_log(s, SG_LOG_ERROR, "no upstream and no address in \"%s\" (no resolver), client: %s", v, client);
        return false;
    }
    sg_sockaddr_str((const struct sockaddr *)&s->direct, s->direct_name, sizeof(s->direct_name));
    return true;
}

/* The session's work, once the client side is ready: `return` or proxying. */
static void run(sp_session *s)
{
    const sg_stream_server_conf *srv = s->srv;
    if (srv->ret) {
        char v[SG_STREAM_VAL_MAX];
        s->out_len = sg_stream_eval(srv->ret, &s->info, v);
        s->out = sg_xmalloc(s->out_len + 1);
        memcpy(s->out, v, s->out_len);
        s->phase = SP_RETURN;
        sg_timer_arm(sg_worker_loop(s->w), &s->timer, srv->proxy.timeout_ms);
        write_return(s);
        return;
    }
    if (!choose_target(s)) {
        session_free(s, 502);
        return;
    }
    connect_next(s);
}

/* ---------------- before run: TLS handshake, ssl_preread ---------------- */

static void after_tls(sp_session *s)
{
    if (!s->tls && s->srv->proxy.ssl_preread) {
        s->phase = SP_PREREAD;
        s->pre = sg_xmalloc(s->srv->proxy.preread_buffer_size);
        sg_timer_arm(sg_worker_loop(s->w), &s->timer, s->srv->proxy.preread_timeout_ms);
        step_preread(s);
        return;
    }
    s->phase = SP_CONNECTING;
    run(s);
}

static void step_handshake(sp_session *s)
{
    sg_io_result r = sg_tls_handshake(s->tls);
    if (r == SG_IO_AGAIN) return;
    sg_timer_disarm(&s->timer);
    if (r == SG_IO_ERROR) {            /* logged by net/tls.c */
        session_free(s, 500);
        return;
    }
    s->info.tls = s->tls;
    after_tls(s);
}

static void preread_done(sp_session *s, sg_preread_status st)
{
    sg_timer_disarm(&s->timer);
    if (st == SG_PREREAD_DONE) {
        s->info.preread_server_name = s->pinfo.server_name;
        s->info.preread_alpn = s->pinfo.alpn;
        s->info.preread_protocol = s->pinfo.protocol;
    }
    s->phase = SP_CONNECTING;
    run(s);
}

/* Reads what the client sent until the parser has a ClientHello or knows
 * there is none; the bytes go to the upstream first. A hello larger than
 * preread_buffer_size ends the session (400), as in nginx. */
static void step_preread(sp_session *s)
{
    size_t cap = s->srv->proxy.preread_buffer_size;
    for (;;) {
        if (s->pre_len == cap) {
            char client[64];
            sg_sockaddr_host((const struct sockaddr *)&s->client_addr, client, sizeof(client));
            sp_log(s, SG_LOG_ERROR, "preread buffer full while prereading client data, client: %s", client);
            session_free(s, 400);
            return;
        }
        ssize_t n = recv(s->client.fd, s->pre + s->pre_len, cap - s->pre_len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {                  /* the client closed: go on with what it sent */
            sg_preread_status st = sg_ssl_preread_parse(s->pre, s->pre_len, &s->pinfo);
            if (st == SG_PREREAD_AGAIN) session_free(s, 200);
            else preread_done(s, st);
            return;
        }
        s->pre_len += (size_t)n;
        sg_preread_status st = sg_ssl_preread_parse(s->pre, s->pre_len, &s->pinfo);
        if (st != SG_PREREAD_AGAIN) {
            preread_done(s, st);
            return;
        }
    }
}

/* ---------------- nginx's post-accept and access phases ---------------- */

/* set_real_ip_from (ngx_stream_realip_module): a trusted peer that sent a
 * PROXY header with addresses is replaced by the header's source, which
 * $remote_addr, geo, hash and allow/deny then see. */
static void apply_realip(sp_session *s)
{
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    const struct sockaddr *src = s->info.pp_src;
    if (!pc->nrealip_from || !src || (src->sa_family != AF_INET && src->sa_family != AF_INET6)) return;
    const struct sockaddr *peer = (const struct sockaddr *)&s->client_addr;
    bool trusted = false;
    for (size_t i = 0; i < pc->nrealip_from && !trusted; i++) {
        sg_access_rule r = pc->realip_from[i];
        r.deny = true;                 /* "matches" is what we ask */
        trusted = !sg_access_allows(&r, 1, peer);
    }
    if (!trusted) return;
    s->realip_peer = s->client_addr;
    s->client_addr = s->pp[0];
    s->info.realip_peer = (const struct sockaddr *)&s->realip_peer;
}

/* allow / deny (ngx_stream_access_module): false after ending the session
 * (status 403: the client is closed without a byte, as nginx). */
static bool access_ok(sp_session *s)
{
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    if (!pc->naccess_rules || sg_access_allows(pc->access_rules, pc->naccess_rules, s->info.client)) return true;
    char client[64];
    sg_sockaddr_host(s->info.client, client, sizeof(client));
    sp_log(s, SG_LOG_ERROR, "access forbidden by rule, client: %s", client);
    session_free(s, 403);
    return false;
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

void sg_stream_proxy_accept(sg_worker *w, const sg_listen_group *g, int fd,
                            const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen,
                            struct sockaddr_storage *proxy)
{
    const sg_stream_server_conf *srv = g->stream_server;
    if (!srv->ret && !srv->pass_val && (!srv->upstream || !srv->upstream->runtime)) {   /* cannot happen */
        free(proxy);
        close(fd);
        return;
    }
    sp_session *s = sg_xcalloc(1, sizeof(*s));
    if (proxy) {
        s->pp = proxy;                 /* the session owns it now */
        s->info.pp_src = (const struct sockaddr *)&s->pp[0];
        s->info.pp_dst = (const struct sockaddr *)&s->pp[1];
        sg_pp_block_tlvs(s->pp, &s->info.pp_tlv, &s->info.pp_tlv_len);
    }
    memcpy(&s->local_addr, local, locallen < sizeof(s->local_addr) ? locallen : sizeof(s->local_addr));
    socklen_t hl = sizeof(s->local_addr);
    if (is_wildcard(local)) getsockname(fd, (struct sockaddr *)&s->local_addr, &hl);
    memcpy(&s->client_addr, peer, peerlen < sizeof(s->client_addr) ? peerlen : sizeof(s->client_addr));
    s->w = w;
    s->gen = sg_worker_conf(w);
    s->srv = srv;
    s->info.sc = s->gen->stream;
    s->info.client = (const struct sockaddr *)&s->client_addr;
    s->info.local = (const struct sockaddr *)&s->local_addr;
    s->info.connection = sg_stream_next_connection();
    s->info.start_ms = s->info.now_ms = now_ms(s);
    s->client = (sg_io){ fd, on_client };
    s->up = (sg_io){ -1, on_upstream };
    sg_timer_init(&s->timer, on_timer);
    sg_deferred_init(&s->reap, on_reap);
    s->node.shutdown = on_shutdown;
    if (sg_log_enabled(srv->proxy.error_log, SG_LOG_INFO)) {   /* nginx's info line (log writers, issue 12) */
        char client[80], server[80];
        sg_sockaddr_str(peer, client, sizeof(client));
        sg_sockaddr_str((const struct sockaddr *)&s->local_addr, server, sizeof(server));
        sp_log(s, SG_LOG_INFO, "*%llu client %s connected to %s", (unsigned long long)s->info.connection, client,
               server);
    }
    apply_realip(s);
    sg_stream_sets_apply(srv, &s->info);
    sg_worker_gen_hold(w, s->gen);
    sg_worker_conn_add(w, &s->node);
    if (sg_loop_add(sg_worker_loop(w), &s->client) < 0) {
        sp_log(s, SG_LOG_ERROR, "epoll_ctl() failed for a stream connection: %s", strerror(errno));
        session_free(s, 500);
        return;
    }
    /* limits (issue 10): limit_conn, nginx's preaccess phase (before access) */
    if (!sg_limit_stream(&srv->proxy, &s->info, &s->limit_slots)) {
        session_free(s, 503);
        return;
    }
    if (!access_ok(s)) return;
    if (g->ssl) {
        const sg_stream_proxy_conf *pc = &srv->proxy;
        s->tls = sg_tls_server_new_ctx(pc->ssl.ctx, fd, peer, pc->alpn, pc->alpn_len);
        if (!s->tls) {
            session_free(s, 500);
            return;
        }
        s->phase = SP_HANDSHAKE;
        sg_timer_arm(sg_worker_loop(w), &s->timer, pc->ssl_handshake_timeout_ms);
        step_handshake(s);
        return;
    }
    after_tls(s);
}

/* ---------------- UDP (listen ... udp) ---------------- */

/* A UDP session is the datagrams of one client address on one listening
 * socket (nginx's), until proxy_timeout of silence, proxy_responses
 * replies or proxy_requests datagrams. Its upstream socket is a
 * connected datagram socket. A peer that refuses the first datagram
 * (ICMP port unreachable, seen as ECONNREFUSED) counts as failed, and the
 * session ends: as in nginx, a datagram already sent is not sent to
 * the next peer. */

static _Thread_local sp_session *udp_sessions;

static void udp_unlink(sp_session *s)
{
    for (sp_session **pp = &udp_sessions; *pp; pp = &(*pp)->udp_next) {
        if (*pp == s) {
            *pp = s->udp_next;
            break;
        }
    }
    s->udp_linked = false;
}

static sp_session *udp_find(int lfd, const struct sockaddr *peer, socklen_t plen)
{
    for (sp_session *s = udp_sessions; s; s = s->udp_next)
        if (s->lfd == lfd && s->client_len == plen && memcmp(&s->client_addr, peer, plen) == 0) return s;
    return NULL;
}

/* rate (issue 10): nginx's budget for datagrams: one may go while the
 * budget is not spent (whole, never split), then the next waits the time
 * it was worth. False: not now, *wake says when. */
static bool udp_rate_ok(sp_session *s, int dir, uint64_t *wake)
{
    if (!s->rate[dir]) return true;
    uint64_t now = now_ms(s), elapsed = now - s->rate_start_ms;
    if (now < s->rate_until[dir]) {
        *wake = s->rate_until[dir];
        return false;
    }
    if (sg_rate_allowance(s->rate[dir], 0, elapsed, s->rate_count[dir]) > 0) return true;
    *wake = now + sg_rate_wait_ms(s->rate[dir], 0, elapsed, s->rate_count[dir], 1);
    return false;
}

static void udp_rate_count(sp_session *s, int dir, size_t n)
{
    if (!s->rate[dir]) return;
    s->rate_count[dir] += n;
    s->rate_until[dir] = now_ms(s) + (uint64_t)n * 1000 / s->rate[dir];
}

static void udp_rate_wait(sp_session *s, uint64_t wake)
{
    uint64_t now = now_ms(s);
    if (sg_timer_armed(&s->rate_timer) && s->rate_timer.expire_ms <= wake) return;
    sg_timer_arm(sg_worker_loop(s->w), &s->rate_timer, wake > now ? wake - now : 1);
}

static bool udp_send_up(sp_session *s, const char *data, size_t n)
{
    if (send(s->up.fd, data, n, 0) < 0 && errno != EAGAIN) return false;   /* a full socket drops, as UDP does */
    sg_stream_try *t = cur_try(s);
    if (t) t->sent += n;
    return true;
}

/* The peer's socket is connected: the first datagram goes out. */
static bool udp_started(sp_session *s)
{
    sg_stream_try *t = cur_try(s);
    if (t) t->connect_ms = 0;
    if (!udp_send_up(s, (const char *)s->pre, s->pre_len)) {
        log_error(s, errno, "send() failed");
        end_attempt(s, true);
        return false;
    }
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    if (pc->proxy_responses == 0) {    /* no reply expected: done */
        session_free(s, 200);
        return true;
    }
    sg_timer_arm(sg_worker_loop(s->w), &s->timer, pc->timeout_ms);
    return true;
}

static void udp_on_upstream(sp_session *s)
{
    static _Thread_local char buf[65536];
    const sg_stream_proxy_conf *pc = &s->srv->proxy;
    for (int i = 0; i < 64; i++) {
        uint64_t wake;
        if (!udp_rate_ok(s, 1, &wake)) {   /* rate: the datagrams wait in the socket */
            s->down_delayed = true;
            udp_rate_wait(s, wake);
            return;
        }
        ssize_t n = recv(s->up.fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            /* refused (ICMP): the peer failed; as nginx, no next upstream for a
             * datagram already sent */
            log_error(s, errno, "recv() failed");
            end_attempt(s, s->responses == 0);
            session_free(s, 502);
            return;
        }
        udp_rate_count(s, 1, (size_t)n);
        sendto(s->lfd, buf, (size_t)n, MSG_NOSIGNAL, (const struct sockaddr *)&s->client_addr, s->client_len);
        s->info.bytes_sent += (size_t)n;
        sg_stream_try *t = cur_try(s);
        if (t) t->received += (size_t)n;
        s->responses++;
        /* proxy_responses is per client datagram, as nginx counts it; with
         * proxy_requests the session first waits for that many (nginx's
         * ngx_stream_proxy_test_finalize) */
        if (pc->proxy_responses != UINT32_MAX && s->responses >= (uint64_t)pc->proxy_responses * s->requests &&
            !(pc->proxy_requests && s->requests < pc->proxy_requests)) {
            session_free(s, 200);
            return;
        }
        sg_timer_arm(sg_worker_loop(s->w), &s->timer, pc->timeout_ms);
    }
}

/* rate (issue 10): held client datagrams go while the budget allows;
 * a delayed upstream is read again. */
static void udp_on_rate_timer(sg_timer *t)
{
    sp_session *s = (sp_session *)((char *)t - offsetof(sp_session, rate_timer));
    if (s->dead) return;
    uint64_t wake;
    while (s->held && s->up.fd >= 0) {
        if (!udp_rate_ok(s, 0, &wake)) {
            udp_rate_wait(s, wake);
            break;
        }
        udp_dgram *g = s->held;
        s->held = g->next;
        s->nheld--;
        s->held_bytes -= g->n;
        udp_rate_count(s, 0, g->n);
        udp_send_up(s, g->data, g->n);
        free(g);
    }
    if (s->down_delayed && s->up.fd >= 0) {
        s->down_delayed = false;
        udp_on_upstream(s);            /* last: may end the session */
    }
}

void sg_stream_udp_datagram(sg_worker *w, const sg_listen_group *g, int lfd, const char *data, size_t n,
                            const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen)
{
    const sg_stream_server_conf *srv = g->stream_server;
    if (peerlen > sizeof(struct sockaddr_storage)) return;
    sp_session *s = udp_find(lfd, peer, peerlen);
    if (s && !s->dead && s->srv == srv && s->up.fd >= 0) {
        s->requests++;
        s->info.bytes_received += n;
        uint64_t wake;
        if (s->held || !udp_rate_ok(s, 0, &wake)) {   /* rate: held until the budget allows */
            if (s->held_bytes + n <= UDP_HELD_MAX) {
                udp_dgram *dg = sg_xmalloc(sizeof(*dg) + (n ? n : 1));
                dg->next = NULL;
                dg->n = n;
                memcpy(dg->data, data, n);
                if (!s->held) s->held_tail = &s->held;
                *s->held_tail = dg;
                s->held_tail = &dg->next;
                s->nheld++;
                s->held_bytes += n;
            }
            if (s->held && !sg_timer_armed(&s->rate_timer) && !udp_rate_ok(s, 0, &wake)) udp_rate_wait(s, wake);
        } else {
            udp_rate_count(s, 0, n);
            udp_send_up(s, data, n);
        }
        const sg_stream_proxy_conf *pc = &srv->proxy;
        if (pc->proxy_requests && s->requests >= pc->proxy_requests)
            udp_unlink(s);             /* the next datagram starts a new session; this one waits for replies */
        return;
    }
    if (!srv->ret && !srv->pass_val && (!srv->upstream || !srv->upstream->runtime)) return;
    s = sg_xcalloc(1, sizeof(*s));
    memcpy(&s->local_addr, local, locallen < sizeof(s->local_addr) ? locallen : sizeof(s->local_addr));
    socklen_t hl = sizeof(s->local_addr);
    if (is_wildcard(local)) getsockname(lfd, (struct sockaddr *)&s->local_addr, &hl);
    memcpy(&s->client_addr, peer, peerlen);
    s->client_len = peerlen;
    s->udp = true;
    s->lfd = lfd;
    s->requests = 1;
    s->w = w;
    s->gen = sg_worker_conf(w);
    s->srv = srv;
    s->info.sc = s->gen->stream;
    s->info.udp = true;
    s->info.client = (const struct sockaddr *)&s->client_addr;
    s->info.local = (const struct sockaddr *)&s->local_addr;
    s->info.connection = sg_stream_next_connection();
    s->info.start_ms = s->info.now_ms = now_ms(s);
    s->info.bytes_received = n;
    s->client = (sg_io){ -1, on_client };
    s->up = (sg_io){ -1, on_upstream };
    sg_timer_init(&s->timer, on_timer);
    sg_deferred_init(&s->reap, on_reap);
    s->node.shutdown = on_shutdown;
    sg_stream_sets_apply(srv, &s->info);
    /* rate (issue 10): the first datagram counts against the upload budget */
    sg_timer_init(&s->rate_timer, udp_on_rate_timer);
    s->rate[0] = session_rate(s, srv->proxy.upload_rate);
    s->rate[1] = session_rate(s, srv->proxy.download_rate);
    s->rate_start_ms = now_ms(s);
    udp_rate_count(s, 0, n);
    sg_worker_gen_hold(w, s->gen);
    sg_worker_conn_add(w, &s->node);
    s->udp_next = udp_sessions;
    udp_sessions = s;
    s->udp_linked = true;
    if (!sg_limit_stream(&srv->proxy, &s->info, &s->limit_slots)) {   /* limits (issue 10) */
        session_free(s, 503);
        return;
    }
    if (!access_ok(s)) return;         /* the datagram is dropped; the next one is checked again */
    if (srv->ret) {                    /* the value is the reply datagram */
        char v[SG_STREAM_VAL_MAX];
        size_t len = sg_stream_eval(srv->ret, &s->info, v);
        if (sendto(lfd, v, len, MSG_NOSIGNAL, peer, peerlen) >= 0) s->info.bytes_sent = len;
        s->phase = SP_RETURN;
        session_free(s, 200);
        return;
    }
    s->pre = sg_xmalloc(n ? n : 1);
    memcpy(s->pre, data, n);
    s->pre_len = n;
    if (srv->proxy.proxy_requests == 1) udp_unlink(s);
    if (!choose_target(s)) {
        session_free(s, 502);
        return;
    }
    connect_next(s);
}
