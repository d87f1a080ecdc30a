/* Reading the PROXY protocol header; see proxy_header.h. The bytes are
 * peeked (MSG_PEEK) until a whole header is there, then exactly the header
 * is consumed, so what the client sent after it stays in the socket for
 * TLS or the HTTP codec, which register the socket afresh. */
#include "server/proxy_header.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/list.h"
#include "core/log.h"
#include "core/sockaddr.h"
#include "core/str.h"
#include "net/proxy_protocol.h"

typedef struct reader {
    sg_io io;                          /* first: the loop hands back &io */
    sg_timer timer;
    sg_worker *w;
    sg_conf *gen;                      /* held while waiting: `g` lives in it */
    const sg_listen_group *g;
    sg_proxy_header_fn done;
    struct sockaddr_storage peer, local;
    socklen_t peerlen, locallen;
    sg_list_node link;
} reader;

static _Thread_local sg_list readers;

static void reader_end(reader *r, bool close_fd)
{
    sg_timer_disarm(&r->timer);
    sg_loop_del(sg_worker_loop(r->w), &r->io);
    sg_list_remove(&r->link);
    if (close_fd) close(r->io.fd);
    sg_conf_unref(r->gen);
    free(r);
}

static void peer_text(const reader *r, char *buf, size_t cap)
{
    sg_sockaddr_host((const struct sockaddr *)&r->peer, buf, cap);
}

static void reader_step(reader *r)
{
    uint8_t buf[SG_PP_MAX_HEADER];
    ssize_t n = recv(r->io.fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    char who[64];
    peer_text(r, who, sizeof(who));
    if (n <= 0) {
        sg_log(SG_LOG_INFO, "client closed connection while reading PROXY protocol header, client: %s", who);
        reader_end(r, true);
        return;
    }
    sg_pp_info info;
    size_t used = 0;
    sg_pp_result res = sg_pp_parse(buf, (size_t)n, &info, &used);
    if (res == SG_PP_MORE) {
        if ((size_t)n < sizeof(buf)) return;   /* wait for the rest (a new edge will come) */
        res = SG_PP_INVALID;
    }
    if (res == SG_PP_INVALID) {
        size_t show = (size_t)n < 60 ? (size_t)n : 60;
        for (size_t i = 0; i < show; i++)
            if (buf[i] < 0x20 || buf[i] > 0x7e) buf[i] = '.';
        sg_log(SG_LOG_ERROR, "broken header: \"%.*s\" while reading PROXY protocol, client: %s",
               (int)show, (const char *)buf, who);
        reader_end(r, true);
        return;
    }
    if (recv(r->io.fd, buf, used, 0) != (ssize_t)used) {   /* peeked, so all there */
        reader_end(r, true);
        return;
    }
    /* the addresses and TLVs ($proxy_protocol_tlv_*); NULL for LOCAL/UNKNOWN */
    struct sockaddr_storage *proxy = sg_pp_block_new(&info);
    if (info.has_addrs && !proxy) {
        reader_end(r, true);
        return;
    }
    /* What the callback needs outlives r, which is freed first. */
    sg_worker *w = r->w;
    int fd = r->io.fd;
    struct sockaddr_storage peer = r->peer, local = r->local;
    socklen_t peerlen = r->peerlen, locallen = r->locallen;
    const sg_listen_group *g = r->g;
    sg_proxy_header_fn done = r->done;
    sg_conf *gen = r->gen;
    sg_conf_ref(gen);
    reader_end(r, false);
    done(w, g, fd, (const struct sockaddr *)&peer, peerlen, (const struct sockaddr *)&local, locallen, proxy);
    sg_conf_unref(gen);
}

static void reader_on_event(sg_io *io, uint32_t events)
{
    reader_step((reader *)io);
}

static void reader_on_timeout(sg_timer *t)
{
    reader *r = (reader *)((char *)t - offsetof(reader, timer));
    char who[64];
    peer_text(r, who, sizeof(who));
    sg_log(SG_LOG_INFO, "client timed out while reading PROXY protocol header, client: %s", who);
    reader_end(r, true);
}

void sg_proxy_header_read(sg_worker *w, sg_conf *gen, const sg_listen_group *g, int fd,
                          const struct sockaddr *peer, socklen_t peerlen,
                          const struct sockaddr *local, socklen_t locallen,
                          uint32_t timeout_ms, sg_proxy_header_fn done)
{
    reader *r = sg_xcalloc(1, sizeof(*r));
    r->io.fd = fd;
    r->io.on_event = reader_on_event;
    r->w = w;
    r->gen = gen;
    sg_conf_ref(gen);
    r->g = g;
    r->done = done;
    if (peerlen > sizeof(r->peer)) peerlen = sizeof(r->peer);
    if (locallen > sizeof(r->local)) locallen = sizeof(r->local);
    memcpy(&r->peer, peer, peerlen);
    memcpy(&r->local, local, locallen);
    r->peerlen = peerlen;
    r->locallen = locallen;
    sg_list_push(&readers, &r->link);
    sg_timer_init(&r->timer, reader_on_timeout);
    if (sg_loop_add(sg_worker_loop(w), &r->io) < 0) {
        sg_log_error("epoll_ctl() failed: %s", strerror(errno));
        reader_end(r, true);
        return;
    }
    sg_timer_arm(sg_worker_loop(w), &r->timer, timeout_ms);
    reader_step(r);                    /* the header may be there already */
}

void sg_proxy_header_close_all(void)
{
    while (!sg_list_empty(&readers)) reader_end(sg_list_entry(sg_list_first(&readers), reader, link), true);
}
