/* WebSocket server side (RFC 6455) for sgback: the handshake check, and
 * upgraded connections running /ws/echo or the chat room (chat.c).
 *
 * /ws/echo answers every text/binary message with the same message (one
 * frame, whatever its fragmentation was), every ping with a pong, and a
 * close with a close carrying the same code and reason.
 *
 * Memory follows traffic, so that tens of thousands of idle connections
 * cost a few hundred bytes each: reads go into a per-thread scratch
 * buffer, frames are decoded in place, and only a partial frame is kept
 * (sgb_ws.carry). A message split over several frames or reads is
 * assembled in a heap buffer that is freed when it is answered. Output is
 * written at once; what the socket refuses is queued in `out`, freed when
 * sent, and the connection reads nothing more until then (backpressure).
 *
 * Closing: after our close frame (an answer to the peer's, or a protocol
 * error) the write side is shut once it is sent, and input is discarded
 * until the peer closes. A closed connection stays allocated, marked dead,
 * until the end of the event batch (sgb_ws_tick). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "sgback.h"
#include "core/str.h"

#define SCRATCH (64 * 1024)
#define ECHO_MAX_MESSAGE (16u << 20)
#define CHAT_MAX_MESSAGE (64u << 10)
/* A chat member whose unsent output passes this is too slow: closed. */
#define CHAT_MAX_BACKLOG (4u << 20)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#define SLAB_OBJS 128

/* Connection structs come from per-thread slabs: carved from the heap
 * like any small object, each would split one of the 64 KB HTTP buffers
 * freed at the upgrade, so the next handshakes could not reuse them and
 * the heap would grow by kilobytes per idle connection. (Plain malloc
 * under ASan, which then sees every use after free.) */
typedef struct ws_slab {
    struct ws_slab *next;
    sgb_ws objs[SLAB_OBJS];
} ws_slab;

typedef struct ws_thread {
    int epfd;
    uint8_t *scratch;      /* SG_WS_CARRY_MAX + SCRATCH */
    sgb_ws *conns;         /* open connections (for shutdown) */
    sgb_ws *zombies;       /* dead, freed by sgb_ws_tick (linked by `next`) */
    sgb_ws *free_objs;     /* linked by `next` */
    ws_slab *slabs;
} ws_thread;

#if defined(__SANITIZE_ADDRESS__)
#define WS_PLAIN_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WS_PLAIN_MALLOC 1
#endif
#endif

static _Thread_local ws_thread *tl;

/* ---------------- handshake ---------------- */

/* The next element of a comma-separated list at *p (before end), without
 * its surrounding blanks; *p moves past its comma. */
static sg_str list_next(const char **p, const char *end)
{
    const char *comma = memchr(*p, ',', (size_t)(end - *p));
    const char *e = comma ? comma : end;
    sg_str t = { *p, (size_t)(e - *p) };
    while (t.n && (*t.p == ' ' || *t.p == '\t'))
        t.p++, t.n--;
    while (t.n && (t.p[t.n - 1] == ' ' || t.p[t.n - 1] == '\t'))
        t.n--;
    *p = e + 1;
    return t;
}

/* True if the comma-separated list holds `tok` (case-insensitive). */
static bool list_has(sg_str list, const char *tok)
{
    const char *p = list.p, *end = list.p + list.n;
    while (p < end)
        if (sg_str_caseeq_lit(list_next(&p, end), tok))
            return true;
    return false;
}

/* 16 random bytes in base64: 22 alphabet characters and "==". */
static bool key_ok(sg_str k)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (k.n != 24 || k.p[22] != '=' || k.p[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!k.p[i] || !strchr(b64, k.p[i]))
            return false;
    return true;
}

static size_t header_count(const sg_h1_message *m, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < m->num_headers; i++)
        n += sg_str_caseeq_lit(m->headers[i].name, name);
    return n;
}

/* The subprotocols offered, in the client's order (every
 * Sec-WebSocket-Protocol header, comma-separated tokens): the first one
 * that is `want` (or, with want empty, one we know) goes into proto. */
static bool pick_protocol(const sg_h1_message *m, sg_str want, char proto[64])
{
    static const char *const known[] = { "chat", "superchat", "echo" };
    for (size_t i = 0; i < m->num_headers; i++) {
        if (!sg_str_caseeq_lit(m->headers[i].name, "Sec-WebSocket-Protocol"))
            continue;
        const char *p = m->headers[i].value.p, *end = p + m->headers[i].value.n;
        while (p < end) {
            sg_str t = list_next(&p, end);
            bool ok = want.n ? sg_str_eq(t, want) : false;
            for (size_t k = 0; !want.n && k < sizeof known / sizeof known[0]; k++)
                ok = ok || sg_str_eq_lit(t, known[k]);   /* names are case-sensitive */
            if (ok && t.n < 64) {
                memcpy(proto, t.p, t.n);
                proto[t.n] = 0;
                return true;
            }
        }
    }
    return false;
}

/* The value of `name=` in the query, or an empty string. */
static sg_str query_param(sg_str q, const char *name)
{
    size_t nl = strlen(name);
    const char *p = q.p, *end = q.p + q.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=')
            return (sg_str){ p + nl + 1, (size_t)(e - p - nl - 1) };
        p = e + 1;
    }
    return (sg_str){ "", 0 };
}

static void choose_protocol(const sg_h1_message *m, sg_str query, char proto[64])
{
    proto[0] = 0;
    sg_str want = query_param(query, "proto");
    if (want.n && pick_protocol(m, want, proto))
        return;
    pick_protocol(m, (sg_str){ "", 0 }, proto);
}

static void accept_key(sg_str key, char accept[32])
{
    char buf[64];
    memcpy(buf, key.p, key.n);
    memcpy(buf + key.n, WS_GUID, sizeof WS_GUID - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(buf, key.n + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)accept, md, (int)mdlen);
}

int sgb_ws_handshake(const sg_h1_message *m, sg_str query, char accept[32], char proto[64])
{
    accept[0] = proto[0] = 0;
    if (!list_has(m->upgrade, "websocket"))
        return 426;
    if (!sg_str_eq_lit(m->method, "GET") || m->minor_version != 1 ||
        m->body != SG_H1_BODY_NONE)
        return 400;
    const sg_h1_header *v = sg_h1_find(m, "Sec-WebSocket-Version");
    if (!v || !sg_str_eq_lit(v->value, "13") || header_count(m, "Sec-WebSocket-Version") != 1)
        return 426;
    const sg_h1_header *k = sg_h1_find(m, "Sec-WebSocket-Key");
    if (!k || !key_ok(k->value) || header_count(m, "Sec-WebSocket-Key") != 1)
        return 400;
    accept_key(k->value, accept);
    choose_protocol(m, query, proto);
    return 101;
}

/* ---------------- connections ---------------- */

static sgb_ws *ws_alloc(void)
{
#ifdef WS_PLAIN_MALLOC
    return sg_xcalloc(1, sizeof(sgb_ws));
#else
    if (!tl->free_objs) {
        ws_slab *s = sg_xmalloc(sizeof *s);
        s->next = tl->slabs;
        tl->slabs = s;
        for (size_t i = 0; i < SLAB_OBJS; i++) {
            s->objs[i].next = tl->free_objs;
            tl->free_objs = &s->objs[i];
        }
    }
    sgb_ws *ws = tl->free_objs;
    tl->free_objs = ws->next;
    memset(ws, 0, sizeof *ws);
    return ws;
#endif
}

static void ws_release(sgb_ws *ws)
{
    free(ws->out);
    free(ws->msg);
#ifdef WS_PLAIN_MALLOC
    free(ws);
#else
    ws->next = tl->free_objs;
    tl->free_objs = ws;
#endif
}

static void ws_unlink(sgb_ws *ws)
{
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        tl->conns = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    ws->prev = ws->next = NULL;
}

/* Closes the socket now; the struct and its buffers live until sgb_ws_tick. */
static void ws_kill(sgb_ws *ws)
{
    if (ws->dead)
        return;
    ws->dead = true;
    if (ws->mode == SGB_R_WS_CHAT)
        sgb_chat_leave(ws);
    close(ws->fd);
    ws->fd = -1;
    ws_unlink(ws);
    ws->next = tl->zombies;
    tl->zombies = ws;
    atomic_fetch_sub(&sgb_counters.open, 1);
}

static size_t backlog(const sgb_ws *ws)
{
    return ws->out_len - ws->out_off;
}

/* Keeps bytes the socket did not take. */
static void out_append(sgb_ws *ws, const char *p, size_t n)
{
    if (ws->out_off > 0) {
        memmove(ws->out, ws->out + ws->out_off, backlog(ws));
        ws->out_len -= ws->out_off;
        ws->out_off = 0;
    }
    if (ws->out_len + n > ws->out_cap) {
        size_t cap = ws->out_cap ? ws->out_cap : 4096;
        while (cap < ws->out_len + n)
            cap *= 2;
        ws->out = sg_xrealloc(ws->out, cap);
        ws->out_cap = cap;
    }
    memcpy(ws->out + ws->out_len, p, n);
    ws->out_len += n;
}

static void out_reset(sgb_ws *ws)
{
    free(ws->out);
    ws->out = NULL;
    ws->out_off = ws->out_len = ws->out_cap = 0;
}

static bool would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

/* Writes the queue. false: the connection died. */
static bool ws_flush(sgb_ws *ws)
{
    while (backlog(ws) > 0) {
        ssize_t w = write(ws->fd, ws->out + ws->out_off, backlog(ws));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            if (would_block())
                return true;   /* EPOLLOUT (ET) says when to go on */
            ws_kill(ws);
            return false;
        }
        ws->out_off += (size_t)w;
    }
    out_reset(ws);
    if (ws->close_sent && !ws->shut) {
        shutdown(ws->fd, SHUT_WR);
        ws->shut = true;
    }
    return true;
}

void sgb_ws_send_frames(sgb_ws *ws, const struct iovec *iov, int cnt)
{
    if (ws->dead || ws->close_sent)
        return;
    size_t total = 0, done = 0;
    for (int i = 0; i < cnt; i++)
        total += iov[i].iov_len;
    if (backlog(ws) == 0) {
        ssize_t w;
        do
            w = writev(ws->fd, iov, cnt);
        while (w < 0 && errno == EINTR);
        if (w < 0 && !would_block()) {
            ws_kill(ws);
            return;
        }
        done = w > 0 ? (size_t)w : 0;
    }
    if (done == total)
        return;
    if (ws->mode == SGB_R_WS_CHAT && backlog(ws) + total - done > CHAT_MAX_BACKLOG) {
        ws_kill(ws);
        return;
    }
    for (int i = 0; i < cnt; i++) {
        size_t len = iov[i].iov_len;
        if (done >= len) {
            done -= len;
            continue;
        }
        out_append(ws, (const char *)iov[i].iov_base + done, len - done);
        done = 0;
    }
}

void sgb_ws_send(sgb_ws *ws, uint8_t opcode, const void *p, size_t n)
{
    uint8_t head[SG_WS_MAX_HEAD];
    size_t hl = sg_ws_write_head(head, true, opcode, n, NULL);
    struct iovec iov[2] = { { head, hl }, { (void *)p, n } };
    sgb_ws_send_frames(ws, iov, n ? 2 : 1);
}

void sgb_ws_close(sgb_ws *ws, uint16_t code, const char *reason)
{
    uint8_t payload[SG_WS_MAX_CONTROL];
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > sizeof payload - 2)
        rl = sizeof payload - 2;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, rl);
    sgb_ws_send(ws, SG_WS_OP_CLOSE, payload, rl + 2);
    ws->close_sent = true;
}

/* ---------------- input ---------------- */

static void on_control(sgb_ws *ws, const sg_ws_event *ev)
{
    if (ev->opcode == SG_WS_OP_PING) {
        sgb_ws_send(ws, SG_WS_OP_PONG, ev->data, ev->len);
    } else if (ev->opcode == SG_WS_OP_CLOSE) {
        /* the same code and reason back; an empty close gets an empty one */
        sgb_ws_send(ws, SG_WS_OP_CLOSE, ev->data, ev->len);
        ws->close_sent = true;
    }
}

/* One complete message. */
static void on_message(sgb_ws *ws, uint8_t opcode, const uint8_t *p, size_t n)
{
    if (ws->mode == SGB_R_WS_ECHO)
        sgb_ws_send(ws, opcode, p, n);
    else if (opcode == SG_WS_OP_TEXT)
        sgb_chat_text(ws, (const char *)p, n);
    else
        sgb_ws_close(ws, SG_WS_CLOSE_UNSUPPORTED, "the chat speaks JSON text messages");
}

static void on_data(sgb_ws *ws, const sg_ws_event *ev)
{
    if (ev->first && ev->fin) {   /* whole in this read: no copy */
        on_message(ws, ev->opcode, ev->data, ev->len);
        return;
    }
    if (ev->first)
        ws->msg_len = 0;
    if (ws->msg_len + ev->len > ws->msg_cap) {
        size_t cap = ws->msg_cap ? ws->msg_cap : 4096;
        while (cap < ws->msg_len + ev->len)
            cap *= 2;
        ws->msg = sg_xrealloc(ws->msg, cap);
        ws->msg_cap = cap;
    }
    memcpy(ws->msg + ws->msg_len, ev->data, ev->len);
    ws->msg_len += ev->len;
    if (!ev->fin)
        return;
    on_message(ws, ev->opcode, (const uint8_t *)ws->msg, ws->msg_len);
    free(ws->msg);   /* idle connections keep no buffer */
    ws->msg = NULL;
    ws->msg_len = ws->msg_cap = 0;
}

/* Handles every frame in buf[0..n) and keeps a trailing partial one. */
static void consume(sgb_ws *ws, uint8_t *buf, size_t n)
{
    size_t off = 0;
    while (!ws->dead && !ws->close_sent) {
        sg_ws_event ev;
        off += sg_ws_read(&ws->rd, buf + off, n - off, &ev);
        if (ev.kind == SG_WS_EV_NEED)
            break;
        if (ev.kind == SG_WS_EV_ERROR)
            sgb_ws_close(ws, ev.close_code, ev.error);
        else if (ev.kind == SG_WS_EV_CONTROL)
            on_control(ws, &ev);
        else
            on_data(ws, &ev);
    }
    ws->ncarry = 0;
    if (ws->dead || ws->close_sent)
        return;   /* nothing after a close matters */
    size_t keep = n - off;
    if (keep > sizeof ws->carry)
        abort();   /* sg_ws_read guarantees SG_WS_CARRY_MAX */
    memcpy(ws->carry, buf + off, keep);
    ws->ncarry = (uint8_t)keep;
}

/* One read into the scratch buffer, after the kept partial frame. */
static void read_some(sgb_ws *ws)
{
    uint8_t *buf = tl->scratch;
    size_t have = ws->ncarry;
    memcpy(buf, ws->carry, have);
    ssize_t r = read(ws->fd, buf + have, SCRATCH);
    if (r < 0) {
        if (errno == EINTR)
            return;
        ws->readable = false;
        if (!would_block())
            ws_kill(ws);
        return;
    }
    if (r == 0) {   /* the peer is gone (or finished the closing handshake) */
        ws_kill(ws);
        return;
    }
    if ((size_t)r < SCRATCH)
        ws->readable = false;   /* drained: ET reports the next bytes */
    consume(ws, buf, have + (size_t)r);
}

static void ws_run(sgb_ws *ws)
{
    while (!ws->dead) {
        if (!ws_flush(ws))
            return;
        if (!ws->readable || backlog(ws) > 0)
            return;
        read_some(ws);
    }
}

void sgb_ws_adopt(int fd, sgb_route mode, char *in, size_t n)
{
    sgb_ws *ws = ws_alloc();
    ws->kind = SGB_EV_WS;
    ws->fd = fd;
    ws->mode = (uint8_t)mode;
    ws->readable = true;
    sg_ws_reader_init(&ws->rd, true, mode == SGB_R_WS_CHAT ? CHAT_MAX_MESSAGE : ECHO_MAX_MESSAGE);
    ws->next = tl->conns;
    if (tl->conns)
        tl->conns->prev = ws;
    tl->conns = ws;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = ws };
    if (epoll_ctl(tl->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        perror("sgback: epoll_ctl");
        ws_kill(ws);
        return;
    }
    if (n > 0)
        consume(ws, (uint8_t *)in, n);
    ws_run(ws);
}

void sgb_ws_event(void *ptr, uint32_t events)
{
    if (*(int *)ptr == SGB_EV_CHAT) {
        sgb_chat_mailbox(ptr);
        return;
    }
    sgb_ws *ws = ptr;
    if (ws->dead)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        ws->readable = true;
    ws_run(ws);
}

void sgb_ws_tick(void)
{
    while (tl->zombies) {
        sgb_ws *ws = tl->zombies;
        tl->zombies = ws->next;
        /* freed only now: the message being handled when it died may still be read */
        ws_release(ws);
    }
}

void sgb_ws_thread_init(int epfd)
{
    tl = sg_xcalloc(1, sizeof *tl);
    tl->epfd = epfd;
    tl->scratch = sg_xmalloc(SG_WS_CARRY_MAX + SCRATCH);
    sgb_chat_thread_init(epfd);
}

/* Shutdown: every peer is told "going away" if its socket takes it now. */
void sgb_ws_thread_done(void)
{
    while (tl->conns) {
        sgb_ws *ws = tl->conns;
        if (!ws->close_sent && backlog(ws) == 0)
            sgb_ws_close(ws, SG_WS_CLOSE_GOING_AWAY, "sgback is stopping");
        ws_kill(ws);
    }
    sgb_ws_tick();
    sgb_chat_thread_done();
    while (tl->slabs) {
        ws_slab *s = tl->slabs;
        tl->slabs = s->next;
        free(s);
    }
    free(tl->scratch);
    free(tl);
    tl = NULL;
}
