/* The request body as the proxy keeps it: see reqbody.h. */
#include "proxy/reqbody.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "exchange/upstream_link.h"
#include "exchange/vars.h"
#include "proxy/proxy.h"
#include "proxy/respond.h"

typedef enum {
    RB_COPY = 1,       /* streamed; a copy kept for $request_body */
    RB_BUFFER,         /* read whole before the first attempt */
    RB_DROP,           /* proxy_set_body / proxy_pass_request_body off */
} rb_mode;

struct sg_reqbody {
    rb_mode mode;
    bool reading;      /* RB_BUFFER: the first attempt waits for the body's end */
    bool overflow;     /* RB_COPY: the body outgrew the buffer, the copy is gone */
    bool failed;       /* RB_BUFFER: the file could not be written (answered 500) */
    bool to_file;
    bool keep_file;    /* client_body_in_file_only on: the file outlives the request */
    bool ended;        /* the current link got its end */
    sg_strbuf mem;
    int fd;
    char *path;        /* in the request's arena */
    uint64_t size;     /* bytes stored */
    uint64_t sent;     /* of them, sent to the current link */
    sg_str set_body;   /* RB_DROP: what goes instead (proxy_set_body), may be empty */
};

static const sg_loc_conf *loc_conf(const sg_exchange *ex)
{
    return &ex->req.loc->conf;
}

/* Reads the whole body first? nginx's default, proxy_request_buffering
 * on, applies where it is written, where the location asks for the body
 * in a buffer or a file, and where the configuration reads the body
 * ($request_body, $request_body_file); elsewhere streamgate streams. */
static bool wants_buffering(const sg_exchange *ex, const sg_loc_conf *lc)
{
    if (lc->request_buffering == SG_RBUF_ON) return true;
    if (lc->request_buffering == SG_RBUF_OFF) return false;
    return lc->body_in_file_only != SG_BODY_FILE_OFF || lc->body_in_single_buffer ||
           ex->req.gen->uses_request_body;
}

bool sg_reqbody_setup(sg_exchange *ex)
{
    const sg_loc_conf *lc = loc_conf(ex);
    if (ex->rbody) {
        /* An internal redirect (error_page) to a proxied location: a body
         * read whole goes there too, as nginx's kept request body does;
         * anything else of the first location's is let go. */
        sg_reqbody *old = ex->rbody;
        if (old->mode == RB_BUFFER && !old->reading && !old->failed && ex->req_body_done &&
            !lc->has_set_body && lc->pass_request_body)
            return false;
        sg_reqbody_free(ex);
    }
    /* Tunnels and gRPC streams are no bodies to hold. */
    if (ex->upgrade || ex->req.protocol.n || ex->grpc || lc->is_grpc) return false;
    rb_mode mode;
    if (lc->has_set_body || !lc->pass_request_body) mode = RB_DROP;
    else if (wants_buffering(ex, lc)) mode = RB_BUFFER;
    else if (ex->req.gen->uses_request_body && ex->req_length != 0) mode = RB_COPY;
    else return false;
    sg_reqbody *rb = sg_arena_alloc(&ex->req.arena, sizeof(*rb));
    memset(rb, 0, sizeof(*rb));
    rb->mode = mode;
    rb->fd = -1;
    rb->keep_file = lc->body_in_file_only == SG_BODY_FILE_ON;
    ex->rbody = rb;
    if (mode == RB_DROP) {
        if (lc->has_set_body) rb->set_body = sg_cval_eval(&lc->set_body, &ex->req);
        return false;
    }
    if (mode != RB_BUFFER || ex->req_length == 0 || ex->req_body_done) return false;
    rb->reading = true;
    ex->down->want_body(ex, true);
    return true;
}

/* nginx names its body files with ten digits in client_body_temp_path;
 * the folder is made when the first body needs it. */
static bool open_file(sg_exchange *ex, sg_reqbody *rb)
{
    static atomic_uint seq;
    sg_str dir = loc_conf(ex)->client_body_temp_path;
    size_t cap = dir.n + 16;
    char *path = sg_arena_alloc(&ex->req.arena, cap);
    for (int attempt = 0; attempt < 2; attempt++) {
        for (int k = 0; k < 16; k++) {
            unsigned n = ((unsigned)getpid() * 7919u + atomic_fetch_add(&seq, 1)) % 1000000000u;
            snprintf(path, cap, "%.*s/%010u", (int)dir.n, dir.p, n);
            rb->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (rb->fd >= 0) {
                rb->path = path;
                return true;
            }
            if (errno != EEXIST) break;
        }
        if (errno != ENOENT || attempt) break;
        char *d = sg_arena_strndup(&ex->req.arena, dir.p, dir.n);
        if (mkdir(d, 0700) != 0 && errno != EEXIST) break;
    }
    sg_ex_log(ex, SG_LOG_CRIT, "open() \"%s\" failed (%s) while reading the client request body", path,
              strerror(errno));
    return false;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static void store_failed(sg_exchange *ex, sg_reqbody *rb)
{
    rb->failed = true;
    ex->close_connection = true;
    ex->down->want_body(ex, false);
    if (!ex->resp_head_sent) sg_respond_error(ex, 500);
}

static void store(sg_exchange *ex, sg_reqbody *rb, const char *p, size_t n)
{
    const sg_loc_conf *lc = loc_conf(ex);
    if (!rb->to_file && (lc->body_in_file_only != SG_BODY_FILE_OFF || rb->mem.n + n > lc->client_body_buffer_size)) {
        if (!open_file(ex, rb) || !write_all(rb->fd, rb->mem.p ? rb->mem.p : "", rb->mem.n)) {
            store_failed(ex, rb);
            return;
        }
        sg_strbuf_free(&rb->mem);
        rb->to_file = true;
    }
    if (rb->to_file) {
        if (!write_all(rb->fd, p, n)) {
            sg_ex_log(ex, SG_LOG_CRIT, "write() \"%s\" failed (%s) while reading the client request body",
                      rb->path, strerror(errno));
            store_failed(ex, rb);
            return;
        }
    } else {
        sg_strbuf_append(&rb->mem, p, n);
    }
    rb->size += n;
}

bool sg_reqbody_on_data(sg_exchange *ex, const char *p, size_t n)
{
    sg_reqbody *rb = ex->rbody;
    if (!rb) return false;
    switch (rb->mode) {
    case RB_COPY:
        if (rb->overflow) return false;
        if (rb->mem.n + n > loc_conf(ex)->client_body_buffer_size) {
            sg_strbuf_free(&rb->mem);
            rb->overflow = true;
        } else {
            sg_strbuf_append(&rb->mem, p, n);
        }
        return false;
    case RB_BUFFER:
        if (!rb->failed) store(ex, rb, p, n);
        return true;
    case RB_DROP:
        return true;
    }
    return false;
}

bool sg_reqbody_on_end(sg_exchange *ex)
{
    sg_reqbody *rb = ex->rbody;
    if (!rb) return false;
    if (rb->mode == RB_DROP) return true;
    if (rb->mode == RB_COPY) {
        if (!rb->overflow && rb->mem.n) ex->req.request_body = (sg_str){ rb->mem.p, rb->mem.n };
        return false;
    }
    if (rb->failed) return true;
    /* client_body_in_file_only: an empty body gets its (empty) file too */
    if (!rb->to_file && loc_conf(ex)->body_in_file_only != SG_BODY_FILE_OFF) {
        if (!open_file(ex, rb)) {
            store_failed(ex, rb);
            return true;
        }
        rb->to_file = true;
    }
    if (rb->to_file) ex->req.request_body_file = sg_str_from(rb->path);
    else if (rb->mem.n) ex->req.request_body = (sg_str){ rb->mem.p, rb->mem.n };
    if (rb->reading) {
        rb->reading = false;
        sg_proxy_body_ready(ex);
    }
    return true;
}

bool sg_reqbody_stored(sg_exchange *ex, int64_t *len)
{
    sg_reqbody *rb = ex->rbody;
    if (!rb || rb->mode == RB_COPY) return false;
    *len = rb->mode == RB_DROP ? (int64_t)rb->set_body.n : (int64_t)rb->size;
    return true;
}

bool sg_reqbody_replayable(const sg_exchange *ex)
{
    const sg_reqbody *rb = ex->rbody;
    /* as nginx: a body streamed (proxy_request_buffering off) is never sent twice */
    return rb && rb->mode != RB_COPY;
}

static void send_end(sg_exchange *ex, sg_reqbody *rb)
{
    rb->ended = true;
    if (ex->up) ex->up->ops->send_end(ex->up);
}

/* RB_BUFFER: as much of the store as the link's queue takes. */
static void pump(sg_exchange *ex, sg_reqbody *rb)
{
    char buf[32 * 1024];
    while (ex->up && rb->sent < rb->size && ex->up->ops->pending(ex->up) <= SG_HIGH_WATER) {
        uint64_t left = rb->size - rb->sent;
        if (rb->to_file) {
            size_t want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
            ssize_t k = pread(rb->fd, buf, want, (off_t)rb->sent);
            if (k <= 0) {
                sg_ex_log(ex, SG_LOG_CRIT, "pread() \"%s\" failed (%s) while sending the request body",
                          rb->path, k < 0 ? strerror(errno) : "file shrank");
                ex->close_connection = true;
                sg_proxy_detach(ex, false);
                if (!ex->resp_head_sent) sg_respond_error(ex, 500);
                else ex->down->abort(ex);
                return;
            }
            rb->sent += (uint64_t)k;
            ex->up->ops->send_data(ex->up, buf, (size_t)k);
        } else {
            rb->sent = rb->size;
            ex->up->ops->send_data(ex->up, rb->mem.p, (size_t)left);
        }
    }
    if (ex->up && rb->sent == rb->size && !rb->ended) send_end(ex, rb);
}

void sg_reqbody_send(sg_exchange *ex)
{
    sg_reqbody *rb = ex->rbody;
    rb->sent = 0;
    rb->ended = false;
    switch (rb->mode) {
    case RB_BUFFER:
        pump(ex, rb);
        return;
    case RB_DROP:
        if (rb->set_body.n) ex->up->ops->send_data(ex->up, rb->set_body.p, rb->set_body.n);
        send_end(ex, rb);
        /* the client's body is still read, and dropped */
        if (!ex->req_body_done && ex->req_length != 0) ex->down->want_body(ex, true);
        return;
    case RB_COPY:
        /* streams as without a copy (no attempt follows one that sent body bytes) */
        if (ex->req_length == 0 || ex->req_body_done) send_end(ex, rb);
        else ex->down->want_body(ex, true);
        return;
    }
}

bool sg_reqbody_on_drain(sg_exchange *ex)
{
    sg_reqbody *rb = ex->rbody;
    if (!rb || rb->mode != RB_BUFFER) return false;
    if (!rb->ended && !rb->reading) pump(ex, rb);
    return true;
}

void sg_reqbody_free(sg_exchange *ex)
{
    sg_reqbody *rb = ex->rbody;
    if (!rb) return;
    if (rb->fd >= 0) {
        close(rb->fd);
        rb->fd = -1;
        if (!rb->keep_file) unlink(rb->path);
    }
    ex->req.request_body = SG_STR_NULL;
    sg_strbuf_free(&rb->mem);
    ex->rbody = NULL;
}
