/*
 * wsload: idle-WebSocket load tool for streamgate's benchmarks
 * (bench/ws_idle.py; never part of the tests).
 *
 * Client mode:  wsload [options] ADDR:PORT [PATH]
 *   opens N WebSocket connections (RFC 6455 handshake, Sec-WebSocket-Accept
 *   checked) at a bounded rate, holds them idle, then has each send one masked
 *   text message and times its echo, then closes them all. The memory of the
 *   given processes (-p PID: PSS and RSS from /proc/PID/smaps_rollup) and of
 *   the kernel (/proc/net/sockstat, /proc/meminfo, /proc/slabinfo) is sampled
 *   before the first connection and after all of them have been idle. Prints
 *   one JSON line on stdout and a summary on stderr.
 *
 * Server mode:  wsload --serve ADDR:PORT
 *   a minimal WebSocket echo backend (any path), so that every proxy can be
 *   measured against the same backend.
 *
 * One thread, epoll, level-triggered. Every client phase has a deadline, so a
 * run always ends by itself; the open-files limit is respected, never raised.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "http/ws_frame.h"

#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_PIDS   32
#define MAX_HEAD   8192          /* longest HTTP head accepted */
#define MAX_FRAME  (1u << 20)    /* longest frame payload accepted */
#define READ_CHUNK 4096
#define NSTATUS    8             /* distinct non-101 statuses remembered */

/* ------------------------------------------------------------ utilities */

static volatile sig_atomic_t stop_flag;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(2);
    }
    return q;
}

static void on_stop(int sig) { stop_flag = 1; }

static void on_alarm(int sig)
{
    static const char msg[] = "wsload: watchdog: run exceeded its time bound\n";
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing left to do */ }
    _exit(3);
}

static void install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;          /* no SA_RESTART: epoll_wait returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Masks need no strength, only variety: xorshift64* seeded once. */
static uint64_t rng_state;

static uint32_t rng32(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static void rng_seed(void)
{
    if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state)
        rng_state = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    rng_state |= 1;
}

/* ------------------------------------------------------------ buffers */

/* Grows on demand and is freed when drained: an idle connection owns none. */
struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_free(struct buf *b)
{
    free(b->p);
    *b = (struct buf){0};
}

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap - b->len < extra)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_free(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* ------------------------------------------------------------ WebSocket */

/* base64(SHA-1(key + GUID)), RFC 6455 section 4.2.2; out gets 28 chars + NUL. */
static void ws_accept(const char *key, size_t klen, char out[29])
{
    char in[128 + sizeof WS_GUID];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (klen > 128)
        klen = 128;
    memcpy(in, key, klen);
    memcpy(in + klen, WS_GUID, sizeof WS_GUID - 1);
    EVP_Digest(in, klen + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* A fresh Sec-WebSocket-Key: base64 of 16 random bytes (24 chars + NUL). */
static void ws_key(char out[25])
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != sizeof raw)
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)rng32();
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
}

struct frame {
    bool fin, masked;
    uint8_t op;
    uint8_t mask[4];
    size_t hdr, len;
};

/* 1: a whole frame is in p[0, hdr + len); 0: need more bytes; -1: invalid. */
static int frame_parse(const uint8_t *p, size_t n, struct frame *f)
{
    if (n >= 2 && (p[0] & 0x70))
        return -1;                    /* RSV bits: no extension negotiated */
    sg_ws_frame_head h;
    int hl = sg_ws_parse_head(p, n, &h);
    if (hl <= 0)
        return hl;                    /* -1: a 64-bit length with the top bit set */
    if (h.len > MAX_FRAME || (h.opcode >= 8 && (h.len > SG_WS_MAX_CONTROL || !h.fin)))
        return -1;
    f->fin = h.fin;
    f->op = h.opcode;
    f->masked = h.masked;
    memcpy(f->mask, h.mask, 4);
    f->hdr = h.head_len;
    f->len = (size_t)h.len;
    return n >= f->hdr + f->len ? 1 : 0;
}

/* Appends one frame; clients mask (RFC 6455 5.3), servers do not. */
static void frame_put(struct buf *b, uint8_t op, bool fin, const uint8_t *p,
                      size_t n, bool mask)
{
    uint8_t h[SG_WS_MAX_HEAD], key[4] = {0};
    if (mask) {
        uint32_t r = rng32();
        memcpy(key, &r, 4);
    }
    buf_append(b, h, sg_ws_write_head(h, fin, op, n, mask ? key : NULL));
    buf_reserve(b, n);
    uint8_t *d = b->p + b->len;
    if (n)
        memcpy(d, p, n);
    if (mask)
        sg_ws_unmask(d, n, key, 0);
    b->len += n;
}

/* ------------------------------------------------------------ HTTP heads */

/* Value of header `name` (first one) in a NUL-terminated head, trimmed. */
static const char *head_value(const char *head, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");

    while (line && line[2] != '\r' && line[2] != '\0') {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            return NULL;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

/* Whether a comma-separated header value holds `token` (case-insensitive). */
static bool has_token(const char *v, size_t vlen, const char *token)
{
    size_t tlen = strlen(token);
    const char *end = v + vlen;

    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *s = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tlen && strncasecmp(s, token, tlen) == 0)
            return true;
    }
    return false;
}

static bool header_has(const char *head, const char *name, const char *token)
{
    size_t vlen;
    const char *v = head_value(head, name, &vlen);
    return v && has_token(v, vlen, token);
}

/* Offset just past the blank line ending the head, 0 if not there yet. */
static size_t head_end(const struct buf *b)
{
    if (!b->len)
        return 0;
    const uint8_t *e = memmem(b->p, b->len, "\r\n\r\n", 4);
    return e ? (size_t)(e - b->p) + 4 : 0;
}

/* ------------------------------------------------------------ connections */

enum state {
    ST_NEW, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_ECHO_WAIT, ST_ECHO_DONE,
    ST_CLOSING, ST_DONE
};

enum fail {
    F_NONE, F_CONNECT, F_HS_TIMEOUT, F_STATUS, F_ACCEPT, F_HS_CLOSED,
    F_DROPPED, F_PROTOCOL, F_ECHO_TIMEOUT, F_ECHO_MISMATCH, F_NOT_STARTED,
    F_COUNT
};

static const char *const fail_names[F_COUNT] = {
    "none", "connect", "handshake_timeout", "status", "bad_accept",
    "handshake_closed", "dropped", "protocol", "echo_timeout", "echo_mismatch",
    "not_started",
};

struct conn {
    int fd;
    uint32_t idx;
    uint8_t state, fail;
    bool want_out, closing;          /* closing: server, close once flushed */
    double t0;                       /* connect start, then echo send time */
    size_t msg_off;                  /* echo bytes matched so far */
    struct buf in, out;
    char accept[29];                 /* expected Sec-WebSocket-Accept */
};

static int ep = -1;

static void conn_events(struct conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (out)
        ev.events |= EPOLLOUT;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

/* Writes what the socket takes; -1 on a write error. */
static int conn_flush(struct conn *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            return -1;
        buf_consume(&c->out, (size_t)n);
    }
    if (c->want_out != (c->out.len > 0))
        conn_events(c, c->out.len > 0);
    return 0;
}

/* Reads all that is available: 1 still open, 0 EOF, -1 error. */
static int conn_read(struct conn *c)
{
    for (;;) {
        if (c->in.len > 2 * (size_t)MAX_FRAME)
            return -1;                /* the peer floods us: give up */
        buf_reserve(&c->in, READ_CHUNK);
        ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 1 : -1;
    }
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = ST_DONE;
    buf_free(&c->in);
    buf_free(&c->out);
}

/* ------------------------------------------------------------ client state */

struct pct {
    size_t n;
    double p50, p90, p99, max;
};

struct pidmem {
    long rss_kb, pss_kb;
};

#define NCACHES 6
#define TW_CACHE 5
static const char *const cache_names[NCACHES] = {
    "TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi", "tw_sock_TCP",
};

struct memsample {
    struct pidmem pid[MAX_PIDS];
    long tcp_inuse, tcp_tw, tcp_mem_pages;
    long slab_kb, sunreclaim_kb;
    bool slabinfo;
    long cache_objs[NCACHES], cache_objsize[NCACHES];
};

static struct {
    /* options */
    const char *target, *path, *host;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t n, max_inflight, msg_size;
    double rate, echo_rate, idle_s, timeout_s;
    int pids[MAX_PIDS];
    int npids;
    bool quiet;
    /* run */
    struct conn *conns;
    size_t started, in_flight, opened, open_now, dropped_idle;
    size_t echo_sent, echo_ok, echo_waiting, closed_clean, closed_eof, close_timeout;
    size_t unexpected_msgs;
    size_t fails[F_COUNT];
    int status_code[NSTATUS];
    size_t status_count[NSTATUS];
    char first_error[256];
    double *hs_lat, *echo_lat;
    size_t n_hs, n_echo;
    double t_open, t_echo;           /* phase durations, s */
    bool interrupted;
    struct memsample before, after;
    size_t open_at_sample;
    uint8_t *payload;                /* scratch: one echo message */
} C;

static void note_status(int code)
{
    for (int i = 0; i < NSTATUS; i++) {
        if (C.status_count[i] && C.status_code[i] != code)
            continue;
        C.status_code[i] = code;
        C.status_count[i]++;
        return;
    }
}

static void conn_fail(struct conn *c, enum fail why, const char *msg)
{
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE)
        C.in_flight--;
    else if (c->state >= ST_OPEN && c->state <= ST_CLOSING)
        C.open_now--;
    if (c->state == ST_ECHO_WAIT)
        C.echo_waiting--;
    c->fail = (uint8_t)why;
    C.fails[why]++;
    if (!C.first_error[0])
        snprintf(C.first_error, sizeof C.first_error, "connection %u: %s: %s",
                 c->idx, fail_names[why], msg);
    conn_close(c);
}

static uint8_t payload_byte(uint32_t idx, size_t i)
{
    if (i < 8)
        return (uint8_t)"0123456789abcdef"[(idx >> (28 - 4 * i)) & 15];
    return (uint8_t)('a' + (i * 7 + idx) % 26);
}

/* Starts a non-blocking connect; failures are counted, never fatal. */
static void conn_start(struct conn *c)
{
    c->t0 = now_s();
    c->fd = socket(C.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = ST_CONNECTING;
    C.in_flight++;
    if (c->fd < 0) {
        conn_fail(c, F_CONNECT, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&C.addr, C.addrlen) < 0 &&
        errno != EINPROGRESS) {
        conn_fail(c, F_CONNECT, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP,
                             .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = true;
}

static void conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_fail(c, F_CONNECT, strerror(err));
        return;
    }
    char key[25], req[MAX_HEAD];
    ws_key(key);
    ws_accept(key, 24, c->accept);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", C.path, C.host, key);
    buf_append(&c->out, req, (size_t)n);
    c->state = ST_HANDSHAKE;
    if (conn_flush(c) < 0)
        conn_fail(c, F_HS_CLOSED, strerror(errno));
}

/* Checks the server's answer to the upgrade: 101 + the right accept value. */
static void client_head(struct conn *c, size_t hlen)
{
    char head[MAX_HEAD + 1], msg[160];
    memcpy(head, c->in.p, hlen);
    head[hlen] = '\0';
    buf_consume(&c->in, hlen);

    if (strncmp(head, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)head[9])) {
        conn_fail(c, F_STATUS, "not an HTTP/1.x response");
        return;
    }
    int status = atoi(head + 9);
    if (status != 101) {
        note_status(status);
        snprintf(msg, sizeof msg, "status %d instead of 101", status);
        conn_fail(c, F_STATUS, msg);
        return;
    }
    size_t alen = 0;
    const char *acc = head_value(head, "Sec-WebSocket-Accept", &alen);
    if (!header_has(head, "Upgrade", "websocket") ||
        !header_has(head, "Connection", "upgrade") ||
        !acc || alen != 28 || memcmp(acc, c->accept, 28) != 0) {
        conn_fail(c, F_ACCEPT, "101 without Upgrade: websocket, "
                  "Connection: upgrade or the right Sec-WebSocket-Accept");
        return;
    }
    C.in_flight--;
    C.opened++;
    C.open_now++;
    C.hs_lat[C.n_hs++] = (now_s() - c->t0) * 1e3;
    c->state = ST_OPEN;
}

/* A data frame: the echo of our message, compared byte by byte. */
static void client_data(struct conn *c, const struct frame *f, const uint8_t *p)
{
    if (c->state != ST_ECHO_WAIT) {
        C.unexpected_msgs++;
        return;
    }
    if ((c->msg_off == 0) != (f->op == 1) || c->msg_off + f->len > C.msg_size) {
        conn_fail(c, F_ECHO_MISMATCH, "wrong opcode or length");
        return;
    }
    for (size_t i = 0; i < f->len; i++)
        if (p[i] != payload_byte(c->idx, c->msg_off + i)) {
            conn_fail(c, F_ECHO_MISMATCH, "echoed bytes differ");
            return;
        }
    c->msg_off += f->len;
    if (!f->fin)
        return;
    if (c->msg_off != C.msg_size) {
        conn_fail(c, F_ECHO_MISMATCH, "echo shorter than the message");
        return;
    }
    C.echo_lat[C.n_echo++] = (now_s() - c->t0) * 1e3;
    C.echo_ok++;
    C.echo_waiting--;
    c->state = ST_ECHO_DONE;
}

static void client_frame(struct conn *c, const struct frame *f, const uint8_t *p)
{
    switch (f->op) {
    case 0: case 1: case 2:
        client_data(c, f, p);
        break;
    case 8:
        if (c->state == ST_CLOSING) {
            C.closed_clean++;
            C.open_now--;
            conn_close(c);
        } else {
            if (c->state == ST_OPEN)
                C.dropped_idle++;
            conn_fail(c, F_DROPPED, "the server sent a close frame");
        }
        break;
    case 9:
        frame_put(&c->out, 10, true, p, f->len, true);
        if (conn_flush(c) < 0)
            conn_fail(c, F_DROPPED, strerror(errno));
        break;
    case 10:
        break;
    default:
        conn_fail(c, F_PROTOCOL, "unknown opcode");
    }
}

static void client_frames(struct conn *c)
{
    struct frame f;
    int r;
    while (c->fd >= 0 && (r = frame_parse(c->in.p, c->in.len, &f)) != 0) {
        if (r < 0 || f.masked) {
            conn_fail(c, F_PROTOCOL, "invalid or masked frame from the server");
            return;
        }
        client_frame(c, &f, c->in.p + f.hdr);
        if (c->fd >= 0)
            buf_consume(&c->in, f.hdr + f.len);
    }
}

/* The connection ended (why: errno text or EOF) in whatever state it was. */
static void client_eof(struct conn *c, const char *why)
{
    if (c->state == ST_HANDSHAKE) {
        conn_fail(c, F_HS_CLOSED, why);
    } else if (c->state == ST_CLOSING) {
        C.closed_eof++;
        C.open_now--;
        conn_close(c);
    } else {
        if (c->state == ST_OPEN)
            C.dropped_idle++;
        conn_fail(c, F_DROPPED, why);
    }
}

static void client_readable(struct conn *c)
{
    int r = conn_read(c);
    const char *why = r < 0 ? strerror(errno) : "connection closed by the peer";
    if (c->state == ST_HANDSHAKE) {
        size_t hlen = head_end(&c->in);
        if (hlen > MAX_HEAD || (!hlen && c->in.len > MAX_HEAD)) {
            conn_fail(c, F_STATUS, "response head too long");
            return;
        }
        if (hlen)
            client_head(c, hlen);
    }
    if (c->fd >= 0 && c->state >= ST_OPEN)
        client_frames(c);
    if (c->fd >= 0 && r <= 0)
        client_eof(c, why);
    if (c->fd >= 0 && c->in.len == 0)
        buf_free(&c->in);
}

static void client_event(struct conn *c, uint32_t ev)
{
    if (c->state == ST_CONNECTING) {
        conn_connected(c);
        return;
    }
    if ((ev & EPOLLOUT) && conn_flush(c) < 0) {
        client_eof(c, strerror(errno));
        return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        client_readable(c);
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++)
        client_event(evs[i].data.ptr, evs[i].events);
}

/* ------------------------------------------------------------ memory */

static int read_pidmem(int pid, struct pidmem *m)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    FILE *f = fopen(path, "r");
    m->rss_kb = m->pss_kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "Rss: %ld kB", &m->rss_kb);
        sscanf(line, "Pss: %ld kB", &m->pss_kb);
    }
    fclose(f);
    return m->pss_kb < 0 ? -1 : 0;
}

static void read_sockstat(struct memsample *s)
{
    char line[512];
    FILE *f = fopen("/proc/net/sockstat", "r");
    s->tcp_inuse = s->tcp_tw = s->tcp_mem_pages = -1;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "TCP:", 4) != 0)
            continue;
        char *p;
        if ((p = strstr(line, " inuse ")))
            s->tcp_inuse = atol(p + 7);
        if ((p = strstr(line, " tw ")))
            s->tcp_tw = atol(p + 4);
        if ((p = strstr(line, " mem ")))
            s->tcp_mem_pages = atol(p + 5);
    }
    fclose(f);
}

static void read_meminfo(struct memsample *s)
{
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    s->slab_kb = s->sunreclaim_kb = -1;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "Slab: %ld kB", &s->slab_kb);
        sscanf(line, "SUnreclaim: %ld kB", &s->sunreclaim_kb);
    }
    fclose(f);
}

/* Per-cache object counts (root only): what one socket costs, by type. */
static void read_slabinfo(struct memsample *s)
{
    char line[512], name[64];
    long active, total, size;
    FILE *f = fopen("/proc/slabinfo", "r");
    s->slabinfo = f != NULL;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63s %ld %ld %ld", name, &active, &total, &size) != 4)
            continue;
        for (int i = 0; i < NCACHES; i++)
            if (strcmp(name, cache_names[i]) == 0) {
                s->cache_objs[i] = active;
                s->cache_objsize[i] = size;
            }
    }
    fclose(f);
}

static void sample_memory(struct memsample *s)
{
    for (int i = 0; i < C.npids; i++)
        read_pidmem(C.pids[i], &s->pid[i]);
    read_sockstat(s);
    read_meminfo(s);
    read_slabinfo(s);
}

/* ------------------------------------------------------------ phases */

/* Scans the connections of one state for those older than the timeout. */
static void expire(uint8_t state, enum fail why, double t)
{
    for (size_t i = 0; i < C.started; i++) {
        struct conn *c = &C.conns[i];
        if (c->state == state && t - c->t0 > C.timeout_s)
            conn_fail(c, why, "no answer within the timeout");
    }
}

static void progress(const char *what, size_t done, size_t total)
{
    if (!C.quiet && isatty(2))
        fprintf(stderr, "\rwsload: %s %zu/%zu ", what, done, total);
}

static void progress_end(void)
{
    if (!C.quiet && isatty(2))
        fprintf(stderr, "\n");
}

/* Deadline of a paced phase: twice the pacing time plus two timeouts. */
static double phase_bound(double rate)
{
    return (rate > 0 ? 2.0 * (double)C.n / rate : 0) + 2 * C.timeout_s + 5;
}

/* Opens the N connections: at most `rate` new ones per second and at most
 * `max_inflight` handshakes at a time, so the listen queues never overflow.
 * Connections not started by the phase's deadline are counted as failed. */
static void phase_open(void)
{
    double start = now_s(), next_scan = start, end = start + phase_bound(C.rate);
    bool gave_up = false;
    while (!stop_flag && ((C.started < C.n && !gave_up) || C.in_flight > 0)) {
        double t = now_s();
        double allowed = C.rate > 0 ? (t - start) * C.rate + 1 : (double)C.n;
        while (t < end && C.started < C.n && (double)C.started < allowed &&
               C.in_flight < C.max_inflight)
            conn_start(&C.conns[C.started++]);
        if (t >= next_scan) {
            expire(ST_CONNECTING, F_HS_TIMEOUT, t);
            expire(ST_HANDSHAKE, F_HS_TIMEOUT, t);
            progress("open", C.opened, C.n);
            next_scan = t + 0.1;
        }
        if (t >= end && C.started < C.n && !gave_up) {
            gave_up = true;
            C.fails[F_NOT_STARTED] += C.n - C.started;
            if (!C.first_error[0])
                snprintf(C.first_error, sizeof C.first_error, "%zu connections "
                         "not started by the open phase's deadline",
                         C.n - C.started);
        }
        poll_once(C.started < C.n ? 2 : 50);
    }
    progress("open", C.opened, C.n);
    progress_end();
    C.t_open = now_s() - start;
}

static void phase_idle(void)
{
    double end = now_s() + C.idle_s;
    for (double t = now_s(); !stop_flag && t < end; t = now_s()) {
        int ms = (int)((end - t) * 1e3) + 1;
        poll_once(ms > 100 ? 100 : ms);
    }
}

static void echo_send(struct conn *c)
{
    for (size_t i = 0; i < C.msg_size; i++)
        C.payload[i] = payload_byte(c->idx, i);
    c->t0 = now_s();
    c->msg_off = 0;
    c->state = ST_ECHO_WAIT;
    C.echo_sent++;
    C.echo_waiting++;
    frame_put(&c->out, 1, true, C.payload, C.msg_size, true);
    if (conn_flush(c) < 0)
        conn_fail(c, F_DROPPED, strerror(errno));
}

/* One message per open connection, paced at echo_rate so the latencies are
 * those of a single message through the proxy, not of a burst's queue. */
static void phase_echo(void)
{
    double start = now_s(), next_scan = start, end = start + phase_bound(C.echo_rate);
    size_t next = 0;
    while (!stop_flag && (next < C.started || C.echo_waiting > 0)) {
        double t = now_s();
        double allowed = C.echo_rate > 0 ? (t - start) * C.echo_rate + 1
                                         : (double)C.n;
        for (; t < end && next < C.started && (double)C.echo_sent < allowed; next++)
            if (C.conns[next].state == ST_OPEN)
                echo_send(&C.conns[next]);
        if (t >= next_scan) {
            expire(ST_ECHO_WAIT, F_ECHO_TIMEOUT, t);
            progress("echo", C.echo_ok, C.open_at_sample);
            next_scan = t + 0.1;
        }
        if (t >= end)
            break;                    /* the remaining ones count as not echoed */
        poll_once(next < C.started ? 2 : 50);
    }
    progress("echo", C.echo_ok, C.open_at_sample);
    progress_end();
    C.t_echo = now_s() - start;
}

/* Close handshake (code 1000) for every open connection, then waits for the
 * servers' close frames; whatever is left after the timeout is just closed. */
static void phase_close(void)
{
    static const uint8_t code[2] = {0x03, 0xe8};
    double t0 = now_s();
    for (size_t i = 0; i < C.started; i++) {
        struct conn *c = &C.conns[i];
        if (c->state != ST_OPEN && c->state != ST_ECHO_DONE &&
            c->state != ST_ECHO_WAIT)
            continue;
        if (c->state == ST_ECHO_WAIT)
            C.echo_waiting--;
        c->state = ST_CLOSING;
        frame_put(&c->out, 8, true, code, 2, true);
        if (conn_flush(c) < 0)
            client_eof(c, strerror(errno));
    }
    while (C.open_now > 0 && now_s() - t0 < C.timeout_s && !stop_flag)
        poll_once(50);
    for (size_t i = 0; i < C.started; i++)
        if (C.conns[i].fd >= 0) {
            if (C.conns[i].state == ST_CLOSING)
                C.close_timeout++;
            conn_close(&C.conns[i]);
        }
    for (size_t i = C.started; i < C.n; i++)
        C.conns[i].state = ST_DONE;
}

/* ------------------------------------------------------------ report */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentiles; sorts v. */
static struct pct percentiles(double *v, size_t n)
{
    struct pct p = {.n = n};
    if (!n)
        return p;
    qsort(v, n, sizeof *v, cmp_double);
    p.p50 = v[(50 * n + 99) / 100 - 1];
    p.p90 = v[(90 * n + 99) / 100 - 1];
    p.p99 = v[(99 * n + 99) / 100 - 1];
    p.max = v[n - 1];
    return p;
}

/* A minimal JSON writer: one line, commas handled per nesting level. */
static struct {
    int depth;
    bool first[8];
} J;

static void j_key(const char *key)
{
    if (!J.first[J.depth])
        putchar(',');
    J.first[J.depth] = false;
    if (key)
        printf("\"%s\":", key);
}

static void j_begin(const char *key)
{
    if (J.depth || key)
        j_key(key);
    putchar('{');
    J.first[++J.depth] = true;
}

static void j_end(void)
{
    putchar('}');
    J.depth--;
}

static void j_long(const char *key, long v)
{
    j_key(key);
    printf("%ld", v);
}

static void j_num(const char *key, double v)
{
    j_key(key);
    if (v != v || v > 1e300 || v < -1e300)
        printf("null");
    else
        printf("%.6g", v);
}

static void j_str(const char *key, const char *s)
{
    j_key(key);
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void j_pct(const char *key, const struct pct *p)
{
    j_begin(key);
    j_long("n", (long)p->n);
    j_num("p50", p->p50);
    j_num("p90", p->p90);
    j_num("p99", p->p99);
    j_num("max", p->max);
    j_end();
}

struct usermem {
    long pss_kb, rss_kb;             /* deltas over all pids, -1: unknown */
};

static struct usermem user_delta(void)
{
    struct usermem u = {0, 0};
    for (int i = 0; i < C.npids; i++) {
        const struct pidmem *a = &C.before.pid[i], *b = &C.after.pid[i];
        if (a->pss_kb < 0 || b->pss_kb < 0)
            return (struct usermem){-1, -1};
        u.pss_kb += b->pss_kb - a->pss_kb;
        u.rss_kb += b->rss_kb - a->rss_kb;
    }
    return u;
}

struct kernmem {
    long sockets, slab_kb, tcp_mem_kb, caches_b, tw_expired, tw_b;
    double per_socket_b;             /* < 0: not measurable */
};

static struct kernmem kernel_delta(void)
{
    const struct memsample *a = &C.before, *b = &C.after;
    struct kernmem k = {0};
    long page_kb = sysconf(_SC_PAGESIZE) / 1024;
    k.sockets = b->tcp_inuse - a->tcp_inuse;
    k.slab_kb = b->slab_kb - a->slab_kb;
    k.tcp_mem_kb = (b->tcp_mem_pages - a->tcp_mem_pages) * page_kb;
    for (int i = 0; i < NCACHES && a->slabinfo; i++)
        if (i != TW_CACHE)
            k.caches_b += (b->cache_objs[i] - a->cache_objs[i]) * b->cache_objsize[i];
    /* No connection closes between the samples, so TIME_WAIT sockets only
     * expire (from an earlier run): add back the slab they gave back. */
    k.tw_expired = a->tcp_tw > b->tcp_tw ? a->tcp_tw - b->tcp_tw : 0;
    k.tw_b = a->slabinfo ? k.tw_expired * b->cache_objsize[TW_CACHE] : 0;
    k.per_socket_b = k.sockets > 0 && a->slab_kb >= 0
        ? ((double)(k.slab_kb + k.tcp_mem_kb) * 1024 + (double)k.tw_b) /
          (double)k.sockets : -1;
    return k;
}

static void json_memory(void)
{
    struct usermem u = user_delta();
    double per = C.open_at_sample ? (double)C.open_at_sample : 1;
    j_begin("pids");
    for (int i = 0; i < C.npids; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", C.pids[i]);
        j_begin(key);
        j_long("pss_kb_before", C.before.pid[i].pss_kb);
        j_long("pss_kb_after", C.after.pid[i].pss_kb);
        j_long("rss_kb_before", C.before.pid[i].rss_kb);
        j_long("rss_kb_after", C.after.pid[i].rss_kb);
        j_end();
    }
    j_end();
    j_long("pss_delta_kb", u.pss_kb);
    j_long("rss_delta_kb", u.rss_kb);
    j_num("pss_bytes_per_conn", C.npids && u.pss_kb >= 0 ? u.pss_kb * 1024.0 / per : -1);
    j_num("rss_bytes_per_conn", C.npids && u.rss_kb >= 0 ? u.rss_kb * 1024.0 / per : -1);
}

static void json_kernel(void)
{
    struct kernmem k = kernel_delta();
    j_begin("kernel");
    j_long("tcp_inuse_before", C.before.tcp_inuse);
    j_long("tcp_inuse_after", C.after.tcp_inuse);
    j_long("tcp_tw_before", C.before.tcp_tw);
    j_long("tcp_tw_after", C.after.tcp_tw);
    j_long("tcp_mem_pages_before", C.before.tcp_mem_pages);
    j_long("tcp_mem_pages_after", C.after.tcp_mem_pages);
    j_long("slab_kb_before", C.before.slab_kb);
    j_long("slab_kb_after", C.after.slab_kb);
    j_long("sunreclaim_kb_before", C.before.sunreclaim_kb);
    j_long("sunreclaim_kb_after", C.after.sunreclaim_kb);
    j_long("sockets_opened", k.sockets);
    j_long("tw_expired", k.tw_expired);
    j_long("tw_expired_bytes", k.tw_b);
    j_num("bytes_per_socket", k.per_socket_b);
    if (C.before.slabinfo) {
        j_begin("slab_caches");
        for (int i = 0; i < NCACHES; i++) {
            j_begin(cache_names[i]);
            j_long("objsize", C.after.cache_objsize[i]);
            j_long("before", C.before.cache_objs[i]);
            j_long("after", C.after.cache_objs[i]);
            j_end();
        }
        j_end();
        j_num("named_caches_bytes_per_socket",
              k.sockets > 0 ? (double)k.caches_b / (double)k.sockets : -1);
    }
    j_end();
}

static void json_echo(void)
{
    struct pct echo = percentiles(C.echo_lat, C.n_echo);
    j_begin("echo");
    j_num("rate", C.echo_rate);
    j_num("seconds", C.t_echo);
    j_long("sent", (long)C.echo_sent);
    j_long("ok", (long)C.echo_ok);
    j_long("unexpected_msgs", (long)C.unexpected_msgs);
    j_pct("latency_ms", &echo);
    j_end();
}

static void json_report(int code)
{
    struct pct hs = percentiles(C.hs_lat, C.n_hs);
    j_begin(NULL);
    j_str("tool", "wsload");
    j_str("target", C.target);
    j_str("path", C.path);
    j_long("n", (long)C.n);
    j_num("rate", C.rate);
    j_num("idle_s", C.idle_s);
    j_long("msg_bytes", (long)C.msg_size);
    j_long("opened", (long)C.opened);
    j_long("failed", (long)(C.n - C.opened));
    j_begin("fail");
    for (int i = 1; i < F_COUNT; i++)
        j_long(fail_names[i], (long)C.fails[i]);
    j_end();
    j_begin("statuses");
    for (int i = 0; i < NSTATUS && C.status_count[i]; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", C.status_code[i]);
        j_long(key, (long)C.status_count[i]);
    }
    j_end();
    j_str("first_error", C.first_error);
    j_num("open_s", C.t_open);
    j_pct("handshake_ms", &hs);
    j_long("open_at_sample", (long)C.open_at_sample);
    j_long("dropped_idle", (long)C.dropped_idle);
    json_echo();
    j_long("closed_clean", (long)C.closed_clean);
    j_long("closed_eof", (long)C.closed_eof);
    j_long("close_timeout", (long)C.close_timeout);
    json_memory();
    json_kernel();
    j_long("interrupted", C.interrupted);
    j_long("exit", code);
    j_end();
    putchar('\n');
    fflush(stdout);
}

/* The human summary (stderr); the JSON line is the machine's. */
static void summary(void)
{
    if (C.quiet)
        return;
    struct pct hs = percentiles(C.hs_lat, C.n_hs);
    struct pct echo = percentiles(C.echo_lat, C.n_echo);
    fprintf(stderr, "wsload: %zu/%zu WebSockets open to %s%s in %.1f s "
            "(handshake ms p50 %.2f p99 %.2f max %.2f), idle %.0f s, "
            "%zu dropped while idle\n", C.opened, C.n, C.target, C.path,
            C.t_open, hs.p50, hs.p99, hs.max, C.idle_s, C.dropped_idle);
    if (C.opened < C.n)
        fprintf(stderr, "wsload: %zu failed to open; first error: %s\n",
                C.n - C.opened, C.first_error);
    if (C.echo_sent)
        fprintf(stderr, "wsload: echo %zu/%zu ok, %zu-byte messages at %.0f/s, "
                "latency ms p50 %.3f p90 %.3f p99 %.3f max %.3f\n",
                C.echo_ok, C.echo_sent, C.msg_size, C.echo_rate, echo.p50,
                echo.p90, echo.p99, echo.max);
    fprintf(stderr, "wsload: closed %zu with a close frame, %zu by EOF, "
            "%zu timed out\n", C.closed_clean, C.closed_eof, C.close_timeout);
}

static void summary_memory(void)
{
    if (C.quiet || !C.open_at_sample)
        return;
    struct usermem u = user_delta();
    double per = C.open_at_sample ? (double)C.open_at_sample : 1;
    if (C.npids && u.pss_kb >= 0)
        fprintf(stderr, "wsload: %d process(es): PSS %+ld kB, RSS %+ld kB over "
                "%zu idle connections: %.0f B PSS (%.0f B RSS) per connection\n",
                C.npids, u.pss_kb, u.rss_kb, C.open_at_sample,
                u.pss_kb * 1024.0 / per, u.rss_kb * 1024.0 / per);
    else if (C.npids)
        fprintf(stderr, "wsload: a watched process exited: no memory figure\n");
    struct kernmem k = kernel_delta();
    if (k.per_socket_b >= 0)
        fprintf(stderr, "wsload: kernel: %+ld TCP sockets, slab %+ld kB (%ld "
                "TIME_WAIT expired: %+ld kB), TCP buffers %+ld kB: %.0f B per "
                "socket\n", k.sockets, k.slab_kb, k.tw_expired, k.tw_b / 1024,
                k.tcp_mem_kb, k.per_socket_b);
}

/* ------------------------------------------------------------ server */

static int srv_port;

static void srv_head(struct conn *c, size_t hlen)
{
    char head[MAX_HEAD + 1], resp[512], accept[29];
    memcpy(head, c->in.p, hlen);
    head[hlen] = '\0';
    buf_consume(&c->in, hlen);

    size_t klen = 0;
    const char *key = head_value(head, "Sec-WebSocket-Key", &klen);
    bool upgrade = header_has(head, "Upgrade", "websocket") &&
                   header_has(head, "Connection", "upgrade");
    int n;
    if (upgrade && key && klen > 0 && strncmp(head, "GET ", 4) == 0) {
        ws_accept(key, klen, accept);
        n = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
        c->state = ST_OPEN;
    } else {
        /* X-Backend (as sgback sends) proves a proxy reaches *this* server. */
        n = snprintf(resp, sizeof resp, "HTTP/1.1 %s\r\nContent-Type: "
                     "text/plain\r\nContent-Length: 19\r\nX-Backend: %d\r\n"
                     "Connection: close\r\n\r\nwsload echo server\n",
                     upgrade ? "400 Bad Request" : "200 OK", srv_port);
        c->closing = true;
    }
    buf_append(&c->out, resp, (size_t)n);
}

/* Echoes data frames as they come (fragments stay fragments). */
static void srv_frames(struct conn *c)
{
    static const uint8_t proto_err[2] = {0x03, 0xea};
    struct frame f;
    int r;
    while (!c->closing && (r = frame_parse(c->in.p, c->in.len, &f)) != 0) {
        if (r < 0 || !f.masked) {
            frame_put(&c->out, 8, true, proto_err, 2, false);
            c->closing = true;
            return;
        }
        uint8_t *p = c->in.p + f.hdr;
        sg_ws_unmask(p, f.len, f.mask, 0);
        if (f.op <= 2)
            frame_put(&c->out, f.op, f.fin, p, f.len, false);
        else if (f.op == 9)
            frame_put(&c->out, 10, true, p, f.len, false);
        else if (f.op == 8) {
            frame_put(&c->out, 8, true, p, f.len < 2 ? f.len : 2, false);
            c->closing = true;
        }
        buf_consume(&c->in, f.hdr + f.len);
    }
}

static void srv_event(struct conn *c, uint32_t ev)
{
    int r = 1;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        r = conn_read(c);
    if (c->state == ST_HANDSHAKE) {
        size_t hlen = head_end(&c->in);
        if (hlen > MAX_HEAD || (!hlen && c->in.len > MAX_HEAD))
            r = -1;
        else if (hlen)
            srv_head(c, hlen);
    }
    if (c->state == ST_OPEN)
        srv_frames(c);
    if (c->in.len == 0)
        buf_free(&c->in);
    if (r <= 0 || conn_flush(c) < 0 || (c->closing && !c->out.len)) {
        conn_close(c);                /* the server closes TCP first (5.5.1) */
        free(c);
    }
}

/* Accepts until EAGAIN; on EMFILE pauses the listener (no busy loop). */
static double srv_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                fprintf(stderr, "wsload: accept: %s (pausing 100 ms)\n",
                        strerror(errno));
                return now_s() + 0.1;
            }
            return 0;                 /* EAGAIN, or an aborted connection */
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->state = ST_HANDSHAKE;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void srv_listener(int lfd, bool on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &ev);
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

static int serve_main(const char *addr, double lifetime)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    if (parse_addr(addr, &ss, &slen) < 0)
        return 2;
    int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, slen) < 0 ||
        listen(lfd, 4096) < 0) {
        fprintf(stderr, "wsload: cannot listen on %s: %s\n", addr, strerror(errno));
        return 2;
    }
    srv_port = ntohs(ss.ss_family == AF_INET6
                     ? ((struct sockaddr_in6 *)&ss)->sin6_port
                     : ((struct sockaddr_in *)&ss)->sin_port);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "wsload: WebSocket echo server on %s\n", addr);

    double end = lifetime > 0 ? now_s() + lifetime : 0, paused = 0;
    struct epoll_event evs[256];
    while (!stop_flag && (!end || now_s() < end)) {
        if (paused && now_s() >= paused) {
            srv_listener(lfd, true);
            paused = 0;
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr)
                srv_event(evs[i].data.ptr, evs[i].events);
            else if ((paused = srv_accept(lfd)) > 0)
                srv_listener(lfd, false);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ main */

/* "127.0.0.1:80" or "[::1]:80", numeric only (loopback benchmarks). */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    size_t hlen = colon ? (size_t)(colon - s) : 0;
    if (!colon || hlen == 0 || hlen >= sizeof host) {
        fprintf(stderr, "wsload: bad address '%s' (want ADDR:PORT)\n", s);
        return -1;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        fprintf(stderr, "wsload: bad address '%s': %s\n", s, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: wsload [options] ADDR:PORT [PATH]    load: open, idle, echo, close\n"
        "       wsload --serve ADDR:PORT [--serve-for S]   WebSocket echo server\n"
        "  -n N        connections (default 1000; needs N + 16 open files)\n"
        "  -r RATE     new connections per second (default 1000; 0 = no limit)\n"
        "  -c N        handshakes in flight at most (default 200)\n"
        "  -i SECONDS  time all connections stay idle (default 5)\n"
        "  -s BYTES    echo message size (default 32)\n"
        "  -e RATE     echo messages per second (default 2000; 0 = all at once)\n"
        "  -p PID      process whose memory (PSS, RSS) to sample; repeatable\n"
        "  -T SECONDS  timeout of each handshake, echo and of the close (default 10)\n"
        "  -H HOST     Host header (default ADDR:PORT)\n"
        "  -q          no summary on stderr (the JSON line is always printed)\n"
        "Prints one JSON line on stdout. Exit 0: every connection opened and\n"
        "echoed; 1: some failed; 2: usage; 3: watchdog.\n");
}

static double num_arg(const char *s, double min, double max)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < min || v > max) {
        fprintf(stderr, "wsload: bad number '%s' (%g..%g)\n", s, min, max);
        exit(2);
    }
    return v;
}

static int add_pid(const char *s)
{
    struct pidmem m;
    int pid = (int)num_arg(s, 1, 1 << 30);
    if (C.npids == MAX_PIDS) {
        fprintf(stderr, "wsload: at most %d -p\n", MAX_PIDS);
        return -1;
    }
    if (read_pidmem(pid, &m) < 0) {
        fprintf(stderr, "wsload: cannot read /proc/%d/smaps_rollup: %s\n",
                pid, strerror(errno));
        return -1;
    }
    C.pids[C.npids++] = pid;
    return 0;
}

static int parse_args(int argc, char **argv, const char **serve, double *serve_for)
{
    static const struct option longs[] = {
        {"serve", required_argument, NULL, 'S'},
        {"serve-for", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int opt;
    C.n = 1000, C.rate = 1000, C.max_inflight = 200, C.idle_s = 5;
    C.msg_size = 32, C.echo_rate = 2000, C.timeout_s = 10;
    while ((opt = getopt_long(argc, argv, "n:r:c:i:s:e:p:T:H:qh", longs, NULL)) != -1) {
        switch (opt) {
        case 'n': C.n = (size_t)num_arg(optarg, 1, 1e6); break;
        case 'r': C.rate = num_arg(optarg, 0, 1e7); break;
        case 'c': C.max_inflight = (size_t)num_arg(optarg, 1, 1e6); break;
        case 'i': C.idle_s = num_arg(optarg, 0, 86400); break;
        case 's': C.msg_size = (size_t)num_arg(optarg, 1, MAX_FRAME); break;
        case 'e': C.echo_rate = num_arg(optarg, 0, 1e7); break;
        case 'p': if (add_pid(optarg) < 0) return -1; break;
        case 'T': C.timeout_s = num_arg(optarg, 0.1, 3600); break;
        case 'H': C.host = optarg; break;
        case 'q': C.quiet = true; break;
        case 'S': *serve = optarg; break;
        case 'F': *serve_for = num_arg(optarg, 0, 1e7); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (*serve)
        return optind == argc ? 0 : -1;
    if (optind >= argc || argc - optind > 2) {
        usage(stderr);
        return -1;
    }
    C.target = argv[optind];
    C.path = optind + 1 < argc ? argv[optind + 1] : "/";
    if (!C.host)
        C.host = C.target;
    return parse_addr(C.target, &C.addr, &C.addrlen);
}

/* The open-files limit is a given of the machine: check it, never raise it. */
static int check_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        C.n + 16 > rl.rlim_cur) {
        fprintf(stderr, "wsload: -n %zu needs %zu open files, the limit is %lu\n",
                C.n, C.n + 16, (unsigned long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static void client_setup(void)
{
    C.conns = calloc(C.n, sizeof *C.conns);
    C.hs_lat = calloc(C.n, sizeof *C.hs_lat);
    C.echo_lat = calloc(C.n, sizeof *C.echo_lat);
    C.payload = malloc(C.msg_size);
    if (!C.conns || !C.hs_lat || !C.echo_lat || !C.payload) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < C.n; i++) {
        C.conns[i].fd = -1;
        C.conns[i].idx = (uint32_t)i;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    /* Belt and braces over the per-phase deadlines. */
    double bound = phase_bound(C.rate) + C.idle_s + phase_bound(C.echo_rate) +
                   C.timeout_s + 30;
    alarm((unsigned)bound + 1);
}

int main(int argc, char **argv)
{
    const char *serve = NULL;
    double serve_for = 0;
    install_signals();
    rng_seed();
    if (parse_args(argc, argv, &serve, &serve_for) < 0)
        return 2;
    if (serve)
        return serve_main(serve, serve_for);
    if (check_fd_limit() < 0)
        return 2;
    client_setup();

    sample_memory(&C.before);
    phase_open();
    if (!stop_flag)
        phase_idle();
    C.open_at_sample = C.open_now;
    sample_memory(&C.after);
    if (!stop_flag)
        phase_echo();
    phase_close();
    C.interrupted = stop_flag != 0;

    int code = C.opened == C.n && C.echo_ok == C.opened && !C.interrupted ? 0 : 1;
    json_report(code);
    summary();
    summary_memory();
    return code;
}
