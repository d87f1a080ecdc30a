/* Fuzzes the HTTP/2 client codec: arbitrary bytes are the backend's side
 * of an upstream connection (read from a socket as in production) that
 * carries one to three requests of a stub core, which reads, pauses and
 * drops responses as the proxy core may; refused streams reconnect, then
 * everything is closed. The codec is driven only through what the proxy
 * core uses: sg_h2_client_open() with link options, the link ops, and the
 * events table it reports to. ASan/UBSan and LeakSanitizer catch what
 * goes wrong.
 *
 * Input: byte 0 = options (FZ_* below: number of requests, body,
 * extended CONNECT, pause, drops, EOF), byte 1 = read size - 1, then the
 * backend's bytes (SETTINGS first). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "exchange/exchange.h"
#include "http/h2_client.h"

#define FUZZ_EXCHANGES 3
#define FUZZ_BODY 70000          /* above the peer's default window: needs its WINDOW_UPDATEs */

enum {
    /* bits 0-1: how many exchanges (1-3); bit 0 also: read timeout set */
    FZ_BODY = 1 << 2,            /* POST with a body */
    FZ_CONNECT = 1 << 3,         /* the first exchange is an extended CONNECT */
    FZ_PAUSE = 1 << 4,           /* want_response(false) after each event, resumed each round */
    FZ_DROP_DATA = 1 << 5,       /* the client goes away at the first DATA */
    FZ_DROP_5XX = 1 << 6,        /* a 5xx head is retried elsewhere: link closed */
    FZ_EOF = 1 << 7,             /* the peer closes after its bytes */
};

static struct {
    uint8_t opt;
    sg_exchange ex[FUZZ_EXCHANGES];
    bool paused[FUZZ_EXCHANGES];
    volatile uint64_t sum;
} fz;

/* Every byte the codec hands over is read, so that ASan checks it. */
static void touch(const char *p, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += (unsigned char)p[i];
    fz.sum += s;
}

static void drop(sg_exchange *ex)
{
    sg_upstream_link *l = ex->up;
    ex->up = NULL;
    if (l) l->ops->close(l);
}

static void pause_maybe(sg_exchange *ex)
{
    if (!(fz.opt & FZ_PAUSE) || !ex->up) return;
    ex->up->ops->want_response(ex->up, false);
    fz.paused[ex - fz.ex] = true;
}

static void on_connected(sg_exchange *ex)
{
    sg_upstream_link *l = ex->up;
    bool connect = ex == &fz.ex[0] && (fz.opt & FZ_CONNECT), body = !connect && (fz.opt & FZ_BODY);
    static char buf[FUZZ_BODY];
    sg_header h[] = {
        { SG_STR("Host"), SG_STR("backend.test"), 0 }, { SG_STR("TE"), SG_STR("trailers"), 0 },
        { SG_STR("Connection"), SG_STR("keep-alive"), 0 }, { SG_STR("X-Fuzz"), SG_STR("1"), 0 },
    };
    sg_upstream_request req = {
        .method = body ? SG_STR("POST") : SG_STR("GET"), .target = SG_STR("/fuzz?a=1"),
        .headers = h, .nheaders = 4, .content_length = body ? FUZZ_BODY : 0, .http_minor = 1,
        .protocol = connect ? SG_STR("websocket") : SG_STR_NULL,
    };
    l->ops->send_head(l, &req);
    if (body) l->ops->send_data(l, buf, sizeof(buf));
    if (connect) l->ops->send_data(l, "hello", 5);
    else l->ops->send_end(l);
}

static void on_error(sg_exchange *ex, sg_up_error err, bool nothing_received)
{
    ex->up = NULL;
}

static void on_head(sg_exchange *ex, const sg_upstream_response *m)
{
    for (size_t i = 0; i < m->nheaders; i++) {
        touch(m->headers[i].name.p, m->headers[i].name.n);
        touch(m->headers[i].value.p, m->headers[i].value.n);
    }
    if (m->status == 101 || (m->status >= 500 && (fz.opt & FZ_DROP_5XX))) drop(ex);
    else pause_maybe(ex);
}

static void on_data(sg_exchange *ex, const char *p, size_t n)
{
    touch(p, n);
    if (fz.opt & FZ_DROP_DATA) drop(ex);
    else pause_maybe(ex);
}

static void on_end(sg_exchange *ex, const sg_header *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        touch(t[i].name.p, t[i].name.n);
        touch(t[i].value.p, t[i].value.n);
    }
    sg_upstream_link *l = ex->up;
    ex->up = NULL;
    l->ops->release(l);
}

static void on_drain(sg_exchange *ex)
{
}

static const sg_upstream_events events = {
    .connected = on_connected,
    .error = on_error,
    .head = on_head,
    .data = on_data,
    .end = on_end,
    .drain = on_drain,
};

/* The backend's end of the connection: an abstract unix socket, so that
 * the codec connects (and reconnects, for refused streams) as it would. */
static int backend_listener(sg_upstream_server_conf *sc)
{
    static int lfd = -1;
    struct sockaddr_un *sun = (struct sockaddr_un *)&sc->addr;
    if (lfd < 0) {
        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        int k = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "sg-h2-client-fuzz-%d", (int)getpid());
        sc->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd >= 0 && (bind(lfd, (struct sockaddr *)sun, sc->addrlen) < 0 || listen(lfd, 64) < 0)) {
            close(lfd);
            lfd = -1;
        }
    }
    return lfd;
}

static void drain(int fd)
{
    char buf[65536];
    while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0) {
    }
}

/* One turn of the loop without waiting, then what the backend was sent. */
static void turn(sg_loop *loop, int sfd)
{
    sg_loop_run_once(loop, 0);
    drain(sfd);
}

static void cleanup(sg_loop *loop, sg_pool *p, int lfd)
{
    for (int i = 0; i < FUZZ_EXCHANGES; i++) drop(&fz.ex[i]);
    sg_loop_run_deferred(loop);
    if (p->h2) p->h2_retire(p);   /* closes the connections without exchanges: all */
    sg_loop_run_deferred(loop);
    if (p->h2) abort();           /* a connection outlived its pool's retirement */
    int fd;
    while ((fd = accept(lfd, NULL, NULL)) >= 0) close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sg_loop *loop;
    static sg_upstream_conf u = { .name = "fuzz", .keepalive = 1, .keepalive_timeout_ms = 60000,
                                  .h2_ping_interval_ms = 30000, .h2_ping_timeout_ms = 20000 };
    static sg_upstream_server_conf sc = { .name = "fuzz" };
    static sg_peer peer = { .conf = &sc };
    static sg_upstream_rt *rt;
    if (!loop) {
        /* the codec logs every upstream error it sees: thousands a second */
        sg_log_open("/dev/null", SG_LOG_EMERG);
        loop = sg_loop_new();
        rt = calloc(1, sizeof(*rt) + sizeof(sg_pool));
        rt->conf = &u;
        rt->nworkers = 1;
    }
    int lfd = backend_listener(&sc);
    if (size < 2 || lfd < 0) return 0;
    memset(&fz, 0, sizeof(fz));
    memset(&rt->pools[0], 0, sizeof(sg_pool));
    fz.opt = data[0];
    size_t step = (size_t)data[1] + 1, nex = 1 + (size_t)(data[0] & 3) % FUZZ_EXCHANGES;
    sg_link_opts o = {
        .loop = loop,
        .connect_timeout_ms = 60000, .read_timeout_ms = 60000, .send_timeout_ms = 60000,
        .tunnel_timeout_ms = 3600000, .read_timeout_set = fz.opt & 1,
    };
    bool placed = false;
    for (size_t i = 0; i < nex; i++) {
        bool ready;
        fz.ex[i].up = sg_h2_client_open(&fz.ex[i], &events, rt, &peer, &o, &ready);
        if (!fz.ex[i].up) break;
        placed = true;
    }
    int sfd = placed ? accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC) : -1;
    if (sfd >= 0) turn(loop, sfd);   /* connected: preface and SETTINGS */
    for (size_t off = 2; sfd >= 0 && off < size; off += step) {
        size_t k = size - off < step ? size - off : step;
        if (send(sfd, data + off, k, MSG_NOSIGNAL) != (ssize_t)k) break;   /* the codec closed */
        turn(loop, sfd);
        for (int i = 0; i < FUZZ_EXCHANGES; i++) {
            if (!fz.paused[i] || !fz.ex[i].up) continue;
            fz.paused[i] = false;
            fz.ex[i].up->ops->want_response(fz.ex[i].up, true);
        }
        turn(loop, sfd);
    }
    if (sfd >= 0 && (fz.opt & FZ_EOF)) {
        shutdown(sfd, SHUT_WR);
        turn(loop, sfd);
    }
    cleanup(loop, &rt->pools[0], lfd);
    if (sfd >= 0) close(sfd);
    return 0;
}
