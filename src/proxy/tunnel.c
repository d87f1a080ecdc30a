/* Tunnels: two sockets relaying bytes both ways (see tunnel.h).
 *
 * A read goes into the worker's scratch buffer and is written to the
 * other socket at once; only what that socket does not take is copied
 * into the queue towards it. So an idle tunnel holds no buffer at all,
 * and a busy one costs one read and one write system call per chunk.
 *
 * Sides are indexed 0 (client) and 1 (upstream); q[i] holds the bytes
 * waiting to be written to side i, which were read from the other side.
 *
 * A side may speak TLS (net/tls.h keeps the socket calls' conventions):
 * its writes always go through its queue, which is what OpenSSL's retry
 * rule needs (the same bytes first after EAGAIN), and a short read has
 * drained it only if OpenSSL holds nothing more either.
 *
 * Timeouts cost one timer per tunnel that is not re-armed per byte: the
 * last activity is stamped, and when the timer fires it either ends the
 * tunnel or is re-armed for what is left.
 *
 * Reloads: a tunnel keeps the generation it started on. A per-thread
 * sweep, armed only while the thread has tunnels, notices once a second
 * that the worker moved to a new generation; tunnels on an older one that
 * has worker_shutdown_timeout set are closed that long after the sweep
 * saw the change (so within the timeout plus a second of the reload). */
#include "proxy/tunnel.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "exchange/exchange.h"
#include "proxy/rate_limit.h"

enum { CL = 0, UP = 1 };
#define BIT(side) ((uint8_t)(1u << (side)))
#define SWEEP_MS 1000

struct sg_tunnel {
    sg_io io[2];                   /* io[CL] first: on_client finds t at offset 0 */
    sg_outq q[2];                  /* bytes waiting to be written to side i */
    sg_tls_conn *tls[2];           /* NULL: a plain socket */
    sg_conn_node node;
    sg_timer timer;
    sg_list_node link;             /* in the thread's live list, then its dead list */
    sg_conf *gen;
    uint64_t nread[2], nwritten[2];
    uint64_t up_first_ms;               /* when the upstream's first byte came (least_time first_byte) */
    /* Loop milliseconds, truncated: only differences are used, and every
     * timeout fits in 32 bits (49 days), so wrap-around is harmless. */
    uint32_t active_ms, up_rx_ms, retire_ms;
    uint32_t idle_ms, up_read_ms;
    void (*on_close)(const sg_tunnel_end *e, void *arg, void *arg2);
    void *arg, *arg2;
    uint8_t readable, writable, rdhup, eof, shut;   /* BIT(side) masks */
    uint8_t notify_due;            /* BIT(side): its close_notify (and FIN) wait for EPOLLOUT */
    bool closed, close_on_eof, retiring;
    struct tunnel_rate *rate;      /* rate (issue 10): NULL unless a side is limited */
};

/* rate (issue 10): the read budget of limited sides (only tunnels that
 * have one pay for it). */
typedef struct tunnel_rate {
    sg_tunnel *t;
    uint64_t rate[2];              /* bytes per second read from side i; 0: no limit */
    uint64_t start_ms;
    uint64_t until_ms[2];          /* side i is not read before (nginx's delayed read) */
    uint64_t wake_ms[2];           /* when a delayed side may be read again */
    uint8_t delayed;               /* BIT(side): waiting for its budget */
    sg_timer timer;
} tunnel_rate;

/* Per worker thread. */
typedef struct tstate {
    sg_worker *w;
    sg_loop *loop;
    sg_list live, dead;
    size_t nlive;
    sg_deferred reap;
    sg_timer sweep;
    sg_conf *seen;                 /* the worker's generation at the last sweep */
} tstate;

static _Thread_local tstate ts;

static void tunnel_end(sg_tunnel *t, sg_tunnel_end_reason why);
static bool pump(sg_tunnel *t, int src);

size_t sg_tunnel_size(void)
{
    return sizeof(sg_tunnel);
}

static uint32_t now32(void)
{
    return (uint32_t)sg_loop_now(ts.loop);
}

static int other(int side)
{
    return 1 - side;
}

/* ---------- lists ---------- */

static void on_reap(sg_deferred *d)
{
    sg_list_node *n;
    while ((n = sg_list_first(&ts.dead)) != NULL) {
        sg_list_remove(n);
        sg_tunnel *t = sg_list_entry(n, sg_tunnel, link);
        free(t->rate);
        free(t);
    }
}

/* ---------- timers ---------- */

/* Milliseconds until the first deadline, or 0 when there is none. */
static uint32_t next_deadline(const sg_tunnel *t)
{
    uint32_t now = now32(), best = 0;
    if (t->idle_ms) {
        uint32_t spent = now - t->active_ms;
        best = spent >= t->idle_ms ? 1 : t->idle_ms - spent;
    }
    if (t->up_read_ms) {
        uint32_t spent = now - t->up_rx_ms;
        uint32_t left = spent >= t->up_read_ms ? 1 : t->up_read_ms - spent;
        if (!best || left < best) best = left;
    }
    if (t->retiring) {
        int32_t left = (int32_t)(t->retire_ms - now);
        uint32_t l = left <= 0 ? 1 : (uint32_t)left;
        if (!best || l < best) best = l;
    }
    return best;
}

static void arm(sg_tunnel *t)
{
    uint32_t ms = next_deadline(t);
    if (ms) sg_timer_arm(ts.loop, &t->timer, ms);
    else sg_timer_disarm(&t->timer);
}

static void log_end(const sg_tunnel *t, const char *what)
{
    char c[64] = "-", u[64] = "-";
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    if (getpeername(t->io[CL].fd, (struct sockaddr *)&a, &len) == 0)
        sg_sockaddr_str((struct sockaddr *)&a, c, sizeof(c));
    len = sizeof(a);
    if (getpeername(t->io[UP].fd, (struct sockaddr *)&a, &len) == 0)
        sg_sockaddr_str((struct sockaddr *)&a, u, sizeof(u));
    sg_log_info("%s while proxying upgraded connection, client: %s, upstream: %s", what, c, u);
}

static void on_timer(sg_timer *tm)
{
    sg_tunnel *t = (sg_tunnel *)((char *)tm - offsetof(sg_tunnel, timer));
    uint32_t now = now32();
    /* With the client behind, the upstream is not silent: we stopped
     * reading it (nginx does not time a read it is not waiting for). */
    if (t->q[CL].bytes >= SG_LOW_WATER) t->up_rx_ms = now;
    if (t->idle_ms && now - t->active_ms >= t->idle_ms) {
        log_end(t, "tunnel timed out (110: Connection timed out)");
        tunnel_end(t, SG_TUNNEL_IDLE_TIMEOUT);
    } else if (t->up_read_ms && now - t->up_rx_ms >= t->up_read_ms) {
        log_end(t, "upstream timed out (110: Connection timed out)");
        tunnel_end(t, SG_TUNNEL_UPSTREAM_TIMEOUT);
    } else if (t->retiring && (int32_t)(t->retire_ms - now) <= 0) {
        log_end(t, "worker_shutdown_timeout after reload");
        tunnel_end(t, SG_TUNNEL_SHUTDOWN);
    } else {
        arm(t);
    }
}

static void retire(sg_tunnel *t)
{
    uint32_t ms = t->gen ? t->gen->worker_shutdown_timeout_ms : 0;
    if (t->retiring || ms == 0 || ms == SG_UNSET_MS) return;
    t->retiring = true;
    t->retire_ms = now32() + ms;
    arm(t);
}

static void on_sweep(sg_timer *tm)
{
    sg_conf *cur = sg_worker_conf(ts.w);
    if (cur != ts.seen) {
        ts.seen = cur;
        for (sg_list_node *n = sg_list_first(&ts.live); n; n = n->next) {
            sg_tunnel *t = sg_list_entry(n, sg_tunnel, link);
            if (t->gen != cur) retire(t);
        }
    }
    if (ts.nlive) sg_timer_arm(ts.loop, &ts.sweep, SWEEP_MS);
}

/* ---------- I/O ---------- */

static void shut_wr(sg_tunnel *t, int side)
{
    if (t->shut & BIT(side)) return;
    t->shut |= BIT(side);
    /* close_notify before the FIN; with the socket full, both wait for
     * its EPOLLOUT (a FIN first would read as a truncation attack). */
    if (t->tls[side] && sg_tls_shutdown(t->tls[side]) == SG_IO_AGAIN) {
        t->notify_due |= BIT(side);
        return;
    }
    shutdown(t->io[side].fd, SHUT_WR);
}

static void retry_close_notify(sg_tunnel *t, int side)
{
    if (sg_tls_shutdown(t->tls[side]) == SG_IO_AGAIN) return;
    t->notify_due &= (uint8_t)~BIT(side);
    shutdown(t->io[side].fd, SHUT_WR);
}

static ssize_t side_read(sg_tunnel *t, int side, char *buf, size_t n)
{
    if (t->tls[side]) return sg_tls_read(t->tls[side], buf, n);
    return read(t->io[side].fd, buf, n);
}

/* A short read drained the socket, unless OpenSSL still holds bytes. */
static bool drained(const sg_tunnel *t, int side, size_t got, size_t asked)
{
    return got < asked && !(t->tls[side] && sg_tls_pending(t->tls[side]));
}

/* ---------- rate (issue 10) ---------- */

static void rate_arm(tunnel_rate *r)
{
    uint64_t now = sg_loop_now(ts.loop), first = 0;
    for (int side = CL; side <= UP; side++)
        if ((r->delayed & BIT(side)) && (!first || r->wake_ms[side] < first)) first = r->wake_ms[side];
    if (!first) {
        sg_timer_disarm(&r->timer);
        return;
    }
    sg_timer_arm(ts.loop, &r->timer, first > now ? first - now : 1);
}

static void rate_on_timer(sg_timer *tm)
{
    tunnel_rate *r = (tunnel_rate *)((char *)tm - offsetof(tunnel_rate, timer));
    sg_tunnel *t = r->t;
    uint64_t now = sg_loop_now(ts.loop);
    for (int side = CL; side <= UP; side++) {
        if (!(r->delayed & BIT(side)) || r->wake_ms[side] > now) continue;
        r->delayed &= (uint8_t)~BIT(side);
        if ((t->readable & BIT(side)) && !pump(t, side)) return;   /* the tunnel ended */
    }
    rate_arm(r);
}

/* May side `src` be read now, and how much (*size is lowered to the
 * budget)? When not, a timer reads it when its budget allows. */
static bool rate_may_read(sg_tunnel *t, int src, size_t *size)
{
    tunnel_rate *r = t->rate;
    if (!r || !r->rate[src]) return true;
    if (r->delayed & BIT(src)) return false;
    uint64_t now = sg_loop_now(ts.loop), wake = 0;
    int64_t a = sg_rate_allowance(r->rate[src], 0, now - r->start_ms, t->nread[src]);
    if (now < r->until_ms[src]) wake = r->until_ms[src];
    else if (a <= 0) wake = now + sg_rate_wait_ms(r->rate[src], 0, now - r->start_ms, t->nread[src], 1);
    if (wake) {
        r->delayed |= BIT(src);
        r->wake_ms[src] = wake;
        rate_arm(r);
        return false;
    }
    if ((uint64_t)a < *size) *size = (size_t)a;
    return true;
}

/* After n bytes were read from a limited side: that is worth n / rate
 * seconds before its next read (nginx's delay after each recv). */
static void rate_count(sg_tunnel *t, int src, size_t n)
{
    tunnel_rate *r = t->rate;
    if (!r || !r->rate[src]) return;
    r->until_ms[src] = sg_loop_now(ts.loop) + (uint64_t)n * 1000 / r->rate[src];
}

/* Writes what q[side] holds. */
static sg_io_result write_queue(sg_tunnel *t, int side, size_t *written)
{
    if (t->tls[side]) return sg_tls_flush(t->tls[side], &t->q[side], written);
    return sg_outq_flush(&t->q[side], t->io[side].fd, written);
}

/* Both directions finished: every FIN passed on and every byte written. */
static bool check_done(sg_tunnel *t)
{
    if ((t->eof & (BIT(CL) | BIT(UP))) != (BIT(CL) | BIT(UP))) return false;
    if (t->q[CL].bytes || t->q[UP].bytes) return false;
    tunnel_end(t, SG_TUNNEL_CLOSED);
    return true;
}

/* The side `src` sent its FIN and everything before it is written out. */
static bool pass_eof(sg_tunnel *t, int src)
{
    int dst = other(src);
    if (t->q[dst].bytes) return true;
    if (t->close_on_eof) {
        tunnel_end(t, SG_TUNNEL_CLOSED);
        return false;
    }
    shut_wr(t, dst);
    return !check_done(t);
}

/* Writes q[side] out. False if the tunnel ended. */
static bool flush(sg_tunnel *t, int side)
{
    if (!t->q[side].bytes || !(t->writable & BIT(side))) return true;
    size_t before = t->q[side].bytes, written = 0;
    sg_io_result r = write_queue(t, side, &written);
    t->nwritten[side] += written;
    if (written) t->active_ms = now32();
    /* Upstream bytes held back for a slow client: the upstream's silence
     * is counted from when we read it again. */
    if (written && side == CL && before >= SG_LOW_WATER) t->up_rx_ms = t->active_ms;
    if (r == SG_IO_ERROR) {
        tunnel_end(t, SG_TUNNEL_ERROR);
        return false;
    }
    if (r == SG_IO_AGAIN) t->writable &= (uint8_t)~BIT(side);
    int src = other(side);
    if (t->q[side].bytes == 0 && (t->eof & BIT(src))) return pass_eof(t, src);
    /* The reader of the other side paused above the high mark: resume. */
    if (before >= SG_LOW_WATER && t->q[side].bytes < SG_LOW_WATER && (t->readable & BIT(src)))
        return pump(t, src);
    return true;
}

/* Sends bytes read from the other side to `dst`, queueing what it will
 * not take now. False if the tunnel ended. */
static bool relay(sg_tunnel *t, int dst, const char *p, size_t n)
{
    if (t->tls[dst]) {
        sg_outq_append(&t->q[dst], p, n);
        if (!(t->writable & BIT(dst))) return true;
        size_t written = 0;
        sg_io_result r = write_queue(t, dst, &written);
        t->nwritten[dst] += written;
        if (r == SG_IO_ERROR) {
            tunnel_end(t, SG_TUNNEL_ERROR);
            return false;
        }
        if (r == SG_IO_AGAIN) t->writable &= (uint8_t)~BIT(dst);
        return true;
    }
    if (t->q[dst].bytes == 0 && (t->writable & BIT(dst))) {
        ssize_t w;
        do w = send(t->io[dst].fd, p, n, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            tunnel_end(t, SG_TUNNEL_ERROR);
            return false;
        }
        if (w < 0) w = 0;
        t->nwritten[dst] += (size_t)w;
        p += w;
        n -= (size_t)w;
        /* A short write means the socket buffer is full: EPOLLOUT follows. */
        if (n) t->writable &= (uint8_t)~BIT(dst);
    }
    if (n) sg_outq_append(&t->q[dst], p, n);
    return true;
}

/* Reads side `src` and relays to the other side while it keeps up.
 * False if the tunnel ended. */
static bool pump(sg_tunnel *t, int src)
{
    int dst = other(src);
    size_t want = SG_SCRATCH_SIZE;
    while ((t->readable & BIT(src)) && !(t->eof & BIT(src)) && t->q[dst].bytes < SG_HIGH_WATER &&
           rate_may_read(t, src, &want)) {
        char *scratch = sg_worker_scratch(ts.w);
        ssize_t n = side_read(t, src, scratch, want);
        if (n > 0) {
            t->nread[src] += (size_t)n;
            rate_count(t, src, (size_t)n);
            t->active_ms = now32();
            if (src == UP) t->up_rx_ms = t->active_ms;
            if (src == UP && !t->up_first_ms) t->up_first_ms = sg_loop_now(ts.loop);
            /* A short read drained the socket (see h1_server.c), unless a
             * FIN is pending: it has no edge of its own. */
            if (drained(t, src, (size_t)n, want) && !(t->rdhup & BIT(src))) t->readable &= (uint8_t)~BIT(src);
            want = SG_SCRATCH_SIZE;
            if (!relay(t, dst, scratch, (size_t)n)) return false;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            t->readable &= (uint8_t)~BIT(src);
            break;
        }
        if (n < 0) {
            tunnel_end(t, SG_TUNNEL_ERROR);
            return false;
        }
        t->eof |= BIT(src);
        t->readable &= (uint8_t)~BIT(src);
        return pass_eof(t, src);
    }
    return true;
}

static void on_event(sg_tunnel *t, int side, uint32_t ev)
{
    if (t->closed) return;
    if (ev & (EPOLLERR | EPOLLHUP)) ev |= EPOLLIN | EPOLLRDHUP | EPOLLOUT;
    if (ev & EPOLLRDHUP) t->rdhup |= BIT(side);
    if (ev & (EPOLLIN | EPOLLRDHUP)) t->readable |= BIT(side);
    sg_tls_conn *tls = t->tls[side];
    /* OpenSSL may need the other readiness to go on (a record to send
     * while reading, one to read while writing). */
    if (tls && (ev & EPOLLOUT) && sg_tls_read_wants_write(tls)) t->readable |= BIT(side);
    if (tls && (ev & EPOLLIN) && sg_tls_write_wants_read(tls)) ev |= EPOLLOUT;
    if (ev & EPOLLOUT) {
        t->writable |= BIT(side);
        if (t->notify_due & BIT(side)) retry_close_notify(t, side);
        if (!flush(t, side)) return;
    }
    if (t->readable & BIT(side)) pump(t, side);
}

static void on_client(sg_io *io, uint32_t ev)
{
    on_event((sg_tunnel *)io, CL, ev);
}

static void on_upstream(sg_io *io, uint32_t ev)
{
    on_event((sg_tunnel *)((char *)io - offsetof(sg_tunnel, io[UP])), UP, ev);
}

/* ---------- start and end ---------- */

static void tunnel_end(sg_tunnel *t, sg_tunnel_end_reason why)
{
    if (t->closed) return;
    t->closed = true;
    sg_timer_disarm(&t->timer);
    if (t->rate) sg_timer_disarm(&t->rate->timer);
    for (int s = 0; s < 2; s++) {
        if (t->io[s].fd >= 0) {
            sg_loop_del(ts.loop, &t->io[s]);
            close(t->io[s].fd);
            t->io[s].fd = -1;
        }
        sg_outq_clear(&t->q[s]);
        sg_tls_free(t->tls[s]);
        t->tls[s] = NULL;
    }
    sg_list_remove(&t->link);
    ts.nlive--;
    if (ts.nlive == 0) sg_timer_disarm(&ts.sweep);
    /* Freed at the end of the iteration: the other socket may still have
     * an event in this epoll batch that points at t. */
    sg_list_push(&ts.dead, &t->link);
    sg_loop_defer(ts.loop, &ts.reap);
    if (t->on_close) {
        sg_tunnel_end e = {
            .reason = why,
            .client_read = t->nread[CL], .client_written = t->nwritten[CL],
            .upstream_read = t->nread[UP], .upstream_written = t->nwritten[UP],
            .upstream_first_ms = t->up_first_ms,
        };
        t->on_close(&e, t->arg, t->arg2);
    }
    if (t->gen) sg_worker_gen_release(ts.w, t->gen);
    sg_worker_conn_del(ts.w, &t->node);   /* last: may stop a quitting loop */
}

/* Graceful stop waits for tunnels (nginx keeps upgraded connections until
 * they close or worker_shutdown_timeout passes); a fast stop ends them. */
static void on_shutdown(sg_conn_node *n, bool fast)
{
    sg_tunnel *t = (sg_tunnel *)((char *)n - offsetof(sg_tunnel, node));
    if (fast) tunnel_end(t, SG_TUNNEL_SHUTDOWN);
}

/* Finds dead peers of long-lived, often silent connections (a phone that
 * left the network): 60 s idle, then 6 probes 10 s apart. */
static void set_keepalive(int fd)
{
    int one = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static void thread_init(sg_worker *w)
{
    if (ts.w == w) return;
    ts.w = w;
    ts.loop = sg_worker_loop(w);
    ts.seen = sg_worker_conf(w);
    sg_deferred_init(&ts.reap, on_reap);
    sg_timer_init(&ts.sweep, on_sweep);
}

sg_tunnel *sg_tunnel_start_q(sg_worker *w, int client_fd, int upstream_fd, const sg_tunnel_opts *o,
                             sg_outq *to_upstream, sg_outq *to_client)
{
    thread_init(w);
    sg_tunnel *t = sg_xcalloc(1, sizeof(*t));
    t->io[CL] = (sg_io){ client_fd, on_client };
    t->io[UP] = (sg_io){ upstream_fd, on_upstream };
    t->tls[CL] = o->client_tls;
    t->tls[UP] = o->upstream_tls;
    if (to_upstream) {
        t->q[UP] = *to_upstream;
        *to_upstream = (sg_outq){ 0 };
    }
    if (to_client) {
        t->q[CL] = *to_client;
        *to_client = (sg_outq){ 0 };
    }
    if (sg_loop_add(ts.loop, &t->io[CL]) < 0 || sg_loop_add(ts.loop, &t->io[UP]) < 0) {
        sg_log_error("epoll_ctl() failed for tunnel %s: %s", o->what ? o->what : "", strerror(errno));
        sg_loop_del(ts.loop, &t->io[CL]);
        close(client_fd);
        close(upstream_fd);
        sg_outq_clear(&t->q[CL]);
        sg_outq_clear(&t->q[UP]);
        sg_tls_free(t->tls[CL]);
        sg_tls_free(t->tls[UP]);
        free(t);
        return NULL;
    }
    if (o->tcp_keepalive) {
        set_keepalive(client_fd);
        set_keepalive(upstream_fd);
    }
    /* Registration reports what is already readable or writable (fresh
     * edges), so the queued bytes go out on the first EPOLLOUT. */
    t->idle_ms = o->idle_timeout_ms == SG_UNSET_MS ? 0 : o->idle_timeout_ms;
    t->up_read_ms = o->upstream_read_timeout_ms == SG_UNSET_MS ? 0 : o->upstream_read_timeout_ms;
    t->active_ms = t->up_rx_ms = now32();
    t->close_on_eof = o->close_on_eof;
    t->on_close = o->on_close;
    t->arg = o->arg;
    t->arg2 = o->arg2;
    t->gen = o->gen;
    if (t->gen) sg_worker_gen_hold(w, t->gen);
    sg_timer_init(&t->timer, on_timer);
    if (o->upload_rate || o->download_rate) {
        tunnel_rate *r = sg_xcalloc(1, sizeof(*r));
        r->t = t;
        r->rate[CL] = o->upload_rate;
        r->rate[UP] = o->download_rate;
        r->start_ms = sg_loop_now(ts.loop);
        sg_timer_init(&r->timer, rate_on_timer);
        t->rate = r;
    }
    t->node.shutdown = on_shutdown;
    sg_worker_conn_add(w, &t->node);
    sg_list_push(&ts.live, &t->link);
    if (ts.nlive++ == 0) sg_timer_arm(ts.loop, &ts.sweep, SWEEP_MS);
    /* Started on a generation the worker already left (the upgrade
     * answer came after a reload): it is retiring from the start. */
    if (t->gen && t->gen != sg_worker_conf(w)) retire(t);
    arm(t);
    /* Records OpenSSL already read have no epoll edge left to announce them. */
    for (int side = CL; side <= UP; side++) {
        if (t->closed || !t->tls[side] || !sg_tls_pending(t->tls[side])) continue;
        t->readable |= BIT(side);
        pump(t, side);
    }
    return t;
}

sg_tunnel *sg_tunnel_start(sg_worker *w, int client_fd, int upstream_fd, const sg_tunnel_opts *o,
                           const char *to_upstream, size_t nto_upstream,
                           const char *to_client, size_t nto_client)
{
    sg_outq up = { 0 }, cl = { 0 };
    if (nto_upstream) sg_outq_append(&up, to_upstream, nto_upstream);
    if (nto_client) sg_outq_append(&cl, to_client, nto_client);
    return sg_tunnel_start_q(w, client_fd, upstream_fd, o, &up, &cl);
}
