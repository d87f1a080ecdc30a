/* The per-thread event loop and HTTP/1.1 connections.
 *
 * Edge-triggered epoll: every socket is registered once for IN|OUT|RDHUP
 * and never modified; a connection remembers whether it may still hold
 * unread bytes (`readable`) and simply tries to write whenever it has
 * queued output. One "run" of a connection loops read -> process -> write
 * until nothing moves, so pipelined requests are answered in order and
 * their responses leave in one writev.
 *
 * One request is handled at a time; the bytes of the next (pipelined) one
 * wait in the read buffer. Memory per connection is fixed (sgback.h), and
 * backpressure falls out of it: a producer only produces while the output
 * queue has room, and the socket is only read while the read buffer has. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sgback.h"
#include "core/str.h"

#define LINGER_MS 2000   /* how long a closing connection drains input */

struct sgb_worker {
    sgb_loop loop;       /* first: the loop's callbacks cast back */
    sgb_conn *conns;     /* all open connections, closed on stop */
};

sgb_stats sgb_counters;

static const sg_h1_limits limits = {
    .max_request_line = 8192,
    .max_header_line = 8192,
    .max_head = SGB_IBUF,
    .max_headers = 100,
};

/* ---------------- output queue ---------------- */

size_t sgb_out_room(const sgb_conn *c)
{
    return SGB_OBUF - c->out_used;
}

size_t sgb_out_segs_free(const sgb_conn *c)
{
    return SGB_NSEG - c->seg_n + c->seg_head;
}

/* Makes room for one more segment by sliding the unsent ones down. */
static struct iovec *seg_push(sgb_conn *c)
{
    if (c->seg_n == SGB_NSEG) {
        if (c->seg_head == 0)
            abort();   /* callers check sgb_out_segs_free() */
        memmove(c->seg, c->seg + c->seg_head, (c->seg_n - c->seg_head) * sizeof c->seg[0]);
        c->seg_n -= c->seg_head;
        c->seg_head = 0;
    }
    return &c->seg[c->seg_n++];
}

/* Queues `n` bytes just written at the end of the copy buffer. Consecutive
 * copies extend one segment: fewer iovecs per writev. */
static void out_commit(sgb_conn *c, size_t n)
{
    char *dst = c->out + c->out_used;
    c->out_used += n;
    c->queued += n;
    if (c->seg_n > c->seg_head) {
        struct iovec *last = &c->seg[c->seg_n - 1];
        if ((char *)last->iov_base + last->iov_len == dst) {
            last->iov_len += n;
            return;
        }
    }
    struct iovec *s = seg_push(c);
    s->iov_base = dst;
    s->iov_len = n;
}

void sgb_out_copy(sgb_conn *c, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (n > sgb_out_room(c))
        abort();   /* callers check sgb_out_room() */
    memcpy(c->out + c->out_used, p, n);
    out_commit(c, n);
}

void sgb_out_static(sgb_conn *c, const void *p, size_t n)
{
    if (n == 0)
        return;
    struct iovec *s = seg_push(c);
    s->iov_base = (void *)p;
    s->iov_len = n;
    c->queued += n;
}

void sgb_out_printf(sgb_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sgb_out_room(c);
    int n = vsnprintf(c->out + c->out_used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        abort();   /* heads are small and callers keep room for them */
    if (n > 0)
        out_commit(c, (size_t)n);
}

/* Sends what is queued. 1: sent something, 0: would block, -1: dead. */
static int flush_out(sgb_conn *c)
{
    int progress = 0;
    while (c->seg_head < c->seg_n) {
        size_t cnt = c->seg_n - c->seg_head;
        if (cnt > IOV_MAX)
            cnt = IOV_MAX;
        ssize_t w = writev(c->fd, c->seg + c->seg_head, (int)cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return progress;
            return -1;
        }
        progress = 1;
        size_t left = (size_t)w;
        c->queued -= left;
        while (left > 0) {
            struct iovec *s = &c->seg[c->seg_head];
            if (left < s->iov_len) {
                s->iov_base = (char *)s->iov_base + left;
                s->iov_len -= left;
                break;
            }
            left -= s->iov_len;
            c->seg_head++;
        }
    }
    /* Everything left: the copy buffer can be reused from the start. */
    c->seg_head = c->seg_n = 0;
    c->out_used = 0;
    return progress;
}

static bool out_empty(const sgb_conn *c)
{
    return c->seg_head == c->seg_n;
}

/* ---------------- connection lifecycle ---------------- */

/* Off the worker's list and timers (the socket stays open). */
static void conn_unlink(sgb_conn *c)
{
    sgb_worker *w = c->w;
    sgb_timer_disarm(&w->loop.timers, &c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void conn_free(sgb_conn *c)
{
    conn_unlink(c);
    close(c->fd);   /* also removes it from epoll */
    atomic_fetch_sub(&sgb_counters.open, 1);
    free(c);
}

void sgb_conn_drop(sgb_conn *c)
{
    c->dead = true;
}

void sgb_conn_wait(sgb_conn *c, uint64_t ms)
{
    c->st = SGB_ST_WAIT;
    sgb_timer_arm(&c->w->loop.timers, &c->timer, sgb_now_ms() + ms);
}

void sgb_conn_upgrade(sgb_conn *c)
{
    c->st = SGB_ST_UPGRADE;
}

void sgb_req_done(sgb_conn *c)
{
    c->st = c->req.keep_alive ? SGB_ST_HEAD : SGB_ST_CLOSE;
}

/* Output is flushed; close. If the peer may still send, shut our side and
 * drain its bytes for a while first: closing with unread input makes the
 * kernel send a RST that can destroy the response before it is read. */
static void start_close(sgb_conn *c)
{
    if (c->eof) {
        c->dead = true;
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->st = SGB_ST_LINGER;
    c->in_start = c->in_end = 0;
    sgb_timer_arm(&c->w->loop.timers, &c->timer, sgb_now_ms() + LINGER_MS);
}

static void conn_accept(sgb_loop *lp, sgb_listener *l, int fd)
{
    sgb_worker *w = (sgb_worker *)lp;
    sgb_conn *c = sg_xmalloc(sizeof *c);
    memset(c, 0, offsetof(sgb_conn, in));   /* the buffers need no clearing */
    c->kind = SGB_EV_CONN;
    c->fd = fd;
    c->port = l->port;
    c->st = SGB_ST_HEAD;
    c->w = w;
    c->timer.idx = SIZE_MAX;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add(&sgb_counters.accepted, 1);
    atomic_fetch_add(&sgb_counters.open, 1);
    if (!sgb_loop_add(lp, fd, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET))
        conn_free(c);
}

/* ---------------- input ---------------- */

/* Reads once into the free end of the buffer. 1: got bytes or EOF,
 * 0: nothing (would block, or no room), -1: error. */
static int read_in(sgb_conn *c)
{
    if (c->in_start == c->in_end) {
        c->in_start = c->in_end = 0;
    } else if (c->in_start > 0 && SGB_IBUF - c->in_end < SGB_IBUF / 4) {
        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
        c->in_start = 0;
    }
    size_t space = SGB_IBUF - c->in_end;
    if (space == 0)
        return 0;
    for (;;) {
        ssize_t n = read(c->fd, c->in + c->in_end, space);
        if (n > 0) {
            c->in_end += (size_t)n;
            /* A short read emptied the socket; ET reports the next bytes. */
            if ((size_t)n < space)
                c->readable = false;
            return 1;
        }
        if (n == 0) {
            c->eof = true;
            c->readable = false;
            return 1;
        }
        if (errno == EINTR)
            continue;
        c->readable = false;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
}

static bool want_read(const sgb_conn *c)
{
    return c->readable && !c->eof && c->st != SGB_ST_CLOSE && c->st != SGB_ST_UPGRADE;
}

/* ---------------- request processing ---------------- */

/* Room a response needs before its request is even looked at: /headers
 * copies the whole head, plus a response head. */
static bool room_for_response(const sgb_conn *c)
{
    return sgb_out_room(c) >= SGB_IBUF + 1024 && sgb_out_segs_free(c) >= 8;
}

static bool step_head(sgb_conn *c)
{
    if (!room_for_response(c))
        return false;
    size_t avail = c->in_end - c->in_start;
    if (avail == 0) {
        if (c->eof)
            c->st = SGB_ST_CLOSE;
        return false;
    }
    sg_h1_message msg;
    const char *head = c->in + c->in_start;
    int r = sg_h1_parse_request(head, avail, c->scanned, &limits, &msg);
    if (r == 0) {
        c->scanned = avail;
        if (avail == SGB_IBUF) {
            sgb_route_bad(c, 431);
            return true;
        }
        if (c->eof)   /* a truncated head gets no answer */
            c->st = SGB_ST_CLOSE;
        return false;
    }
    if (r < 0) {
        sgb_route_bad(c, -r);
        return true;
    }
    atomic_fetch_add(&sgb_counters.requests, 1);
    c->scanned = 0;
    c->body_kind = msg.body;
    c->body_left = msg.body == SG_H1_BODY_LENGTH ? msg.content_length : 0;
    sg_chunked_init(&c->dec);
    c->st = SGB_ST_BODY;
    sgb_route_begin(c, &msg, head, (size_t)r);
    c->in_start += (size_t)r;
    return true;
}

/* Hands `n` body bytes at `p` to the route; they are consumed. */
static void body_data(sgb_conn *c, const char *p, size_t n)
{
    c->req.body_bytes += n;
    if (c->req.echo)
        sgb_route_echo(c, p, n);
}

/* How many input bytes may be decoded now: all of them, unless echoed
 * bytes must wait for room in the output. */
static size_t body_budget(const sgb_conn *c, size_t avail)
{
    if (!c->req.echo)
        return avail;
    size_t room = sgb_route_echo_room(c);
    return room < avail ? room : avail;
}

static bool body_chunked(sgb_conn *c, size_t budget, bool *finished)
{
    size_t consumed = 0, dlen = 0;
    const char *data = NULL;
    sg_chunked_result r = sg_chunked_decode(&c->dec, c->in + c->in_start, budget,
                                            &consumed, &data, &dlen, NULL);
    c->in_start += consumed;
    if (r == SG_CHUNKED_ERROR) {
        /* Once the echo response has started, the only honest signal left
         * is to cut the connection. */
        if (c->req.started)
            sgb_conn_drop(c);
        else
            sgb_route_bad(c, 400);
        return false;
    }
    if (r == SG_CHUNKED_DATA)
        body_data(c, data, dlen);
    if (r == SG_CHUNKED_END)
        *finished = true;
    return consumed > 0;
}

static bool step_body(sgb_conn *c)
{
    bool progress = false, finished = false;
    while (!finished && c->st == SGB_ST_BODY && !c->dead) {
        if (c->body_kind == SG_H1_BODY_NONE ||
            (c->body_kind == SG_H1_BODY_LENGTH && c->body_left == 0)) {
            finished = true;
            break;
        }
        size_t avail = c->in_end - c->in_start;
        if (avail == 0) {
            if (c->eof)   /* the body was cut short */
                sgb_conn_drop(c);
            return progress;
        }
        size_t budget = body_budget(c, avail);
        if (budget == 0)
            return progress;
        if (c->body_kind == SG_H1_BODY_CHUNKED) {
            if (!body_chunked(c, budget, &finished))
                return progress;
        } else {
            size_t take = budget < c->body_left ? budget : (size_t)c->body_left;
            body_data(c, c->in + c->in_start, take);
            c->in_start += take;
            c->body_left -= take;
        }
        progress = true;
    }
    if (finished) {
        sgb_route_body_done(c);
        progress = true;
    }
    return progress;
}

/* Advances the state machine as far as buffers allow; true if it moved. */
static bool process(sgb_conn *c)
{
    switch (c->st) {
    case SGB_ST_HEAD:
        return step_head(c);
    case SGB_ST_BODY:
        return step_body(c);
    case SGB_ST_GEN:
        return sgb_route_generate(c);
    case SGB_ST_LINGER:
        c->in_start = c->in_end = 0;   /* discard */
        return false;
    case SGB_ST_WAIT:
    case SGB_ST_CLOSE:
    case SGB_ST_UPGRADE:
        return false;
    }
    return false;
}

/* Gives the pages of a buffer back to the kernel (it reads as zeros
 * after). The chunk itself goes back to malloc and is reused by a later
 * connection; without this, a burst of upgrades would leave every touched
 * page of every 64 KB buffer in flight resident behind small idle
 * WebSockets. Only whole pages strictly inside the buffer are dropped:
 * malloc keeps its bookkeeping at the start of a free chunk. */
static void drop_pages(void *p, size_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* The 101 is sent: the socket (still in epoll, and still counted as open)
 * and the bytes read after the request head go to ws.c; the 64 KB of
 * HTTP buffers are freed. */
static void conn_handoff(sgb_conn *c)
{
    conn_unlink(c);
    sgb_ws_adopt(c->fd, c->req.route, c->in + c->in_start, c->in_end - c->in_start);
    drop_pages(c->in, sizeof c->in + sizeof c->out);
    free(c);
}

static void conn_run(sgb_conn *c)
{
    for (;;) {
        bool progress = process(c);
        if (c->dead)
            break;
        if (!out_empty(c)) {
            int r = flush_out(c);
            if (r < 0) {
                c->dead = true;
                break;
            }
            progress |= r > 0;
        }
        if (c->st == SGB_ST_UPGRADE && out_empty(c)) {
            conn_handoff(c);
            return;
        }
        if (c->st == SGB_ST_CLOSE && out_empty(c)) {
            start_close(c);
            if (c->dead)
                break;
        }
        if (c->st == SGB_ST_LINGER && c->eof) {
            c->dead = true;
            break;
        }
        if (want_read(c)) {
            int r = read_in(c);
            if (r < 0) {
                c->dead = true;
                break;
            }
            progress |= r > 0;
        }
        if (!progress)
            break;
    }
    if (c->dead)
        conn_free(c);
}

static void conn_timer(sgb_conn *c)
{
    if (c->st == SGB_ST_LINGER) {
        conn_free(c);
        return;
    }
    if (c->st == SGB_ST_WAIT)
        sgb_route_timer(c);
    conn_run(c);
}

/* ---------------- the loop ---------------- */

static void on_timer(sgb_loop *lp, sgb_timer *t)
{
    conn_timer((sgb_conn *)((char *)t - offsetof(sgb_conn, timer)));
}

static void on_event(sgb_loop *lp, struct epoll_event *ev)
{
    int kind = *(int *)ev->data.ptr;
    if (kind == SGB_EV_WS || kind == SGB_EV_CHAT) {
        sgb_ws_event(ev->data.ptr, ev->events);
    } else {
        sgb_conn *c = ev->data.ptr;
        if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            c->readable = true;
        conn_run(c);
    }
}

static void on_tick(sgb_loop *lp)
{
    sgb_ws_tick();
}

static const sgb_loop_ops ops = {
    .accept = conn_accept, .event = on_event, .timer = on_timer, .tick = on_tick,
};

void *sgb_worker_main(void *arg)
{
    sgb_worker_args *a = arg;
    sgb_worker w = { .loop.ops = &ops };
    sgb_loop_open(&w.loop, a);
    sgb_ws_thread_init(w.loop.epfd);
    sgb_loop_run(&w.loop);
    while (w.conns)
        conn_free(w.conns);
    sgb_ws_thread_done();
    sgb_loop_close(&w.loop, a);
    return NULL;
}
