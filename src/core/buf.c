/* Output queue and input leftovers. */
#include "core/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "core/blockcache.h"
#include "core/slab.h"
#include "core/str.h"

#define CHUNK_SIZE 16384
#define LEAN_MAX 1024    /* lean queues: larger first writes still take a full chunk */
#define MAX_IOV 64

struct sg_outq_chunk {
    sg_outq_chunk *next;
    size_t start, end, cap;
    char data[];
};

/* Chunks come from the per-thread block cache (core/blockcache.h); the
 * small ones of lean queues from the worker's slab (core/slab.h: their
 * sizes vary, one per stream in flight). */
static void chunk_free(sg_outq_chunk *c)
{
    if (c->cap < CHUNK_SIZE) sg_slab_free(c);
    else sg_block_free(c, sizeof(*c) + c->cap);
}

static sg_outq_chunk *chunk_new(const sg_outq *q, size_t need)
{
    size_t cap = need > CHUNK_SIZE ? need : CHUNK_SIZE;
    sg_outq_chunk *c;
    if (q->lean && !q->tail && need <= LEAN_MAX) {
        cap = (need + 63) & ~(size_t)63;
        c = sg_slab_xmalloc(sizeof(*c) + cap);
    } else {
        c = sg_block_alloc(sizeof(*c) + cap);
    }
    c->next = NULL;
    c->start = c->end = 0;
    c->cap = cap;
    return c;
}

char *sg_outq_reserve(sg_outq *q, size_t n)
{
    sg_outq_chunk *t = q->tail;
    if (!t || t->cap - t->end < n) {
        sg_outq_chunk *c = chunk_new(q, n);
        if (t) t->next = c;
        else q->head = c;
        q->tail = t = c;
    }
    return t->data + t->end;
}

void sg_outq_commit(sg_outq *q, size_t used)
{
    q->tail->end += used;
    q->bytes += used;
}

void sg_outq_append(sg_outq *q, const void *p, size_t n)
{
    const char *src = p;
    while (n > 0) {
        sg_outq_chunk *t = q->tail;
        size_t room = t ? t->cap - t->end : 0;
        if (room == 0) {
            sg_outq_reserve(q, n < CHUNK_SIZE ? n : CHUNK_SIZE);
            continue;
        }
        size_t k = n < room ? n : room;
        memcpy(t->data + t->end, src, k);
        t->end += k;
        q->bytes += k;
        src += k;
        n -= k;
    }
}

static void drop_written(sg_outq *q, size_t n)
{
    q->bytes -= n;
    while (n > 0 && q->head) {
        sg_outq_chunk *c = q->head;
        size_t avail = c->end - c->start;
        if (n < avail) {
            c->start += n;
            return;
        }
        n -= avail;
        q->head = c->next;
        chunk_free(c);
    }
    if (!q->head) q->tail = NULL;
    /* Keep a half-used tail chunk only while it still has bytes. */
}

sg_io_result sg_outq_flush(sg_outq *q, int fd, size_t *written)
{
    size_t total = 0;
    while (q->bytes > 0) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        for (sg_outq_chunk *c = q->head; c && n < MAX_IOV; c = c->next) {
            if (c->end == c->start) continue;
            iov[n].iov_base = c->data + c->start;
            iov[n].iov_len = c->end - c->start;
            n++;
        }
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (written) *written = total;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return SG_IO_AGAIN;
            return SG_IO_ERROR;
        }
        total += (size_t)w;
        drop_written(q, (size_t)w);
    }
    if (written) *written = total;
    return SG_IO_DONE;
}

int sg_outq_iov(const sg_outq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (sg_outq_chunk *c = q->head; c && n < max; c = c->next) {
        if (c->end == c->start) continue;
        iov[n].iov_base = c->data + c->start;
        iov[n].iov_len = c->end - c->start;
        n++;
    }
    return n;
}

size_t sg_outq_take(sg_outq *q, void *dst, size_t n)
{
    char *d = dst;
    size_t got = 0;
    for (sg_outq_chunk *c = q->head; c && got < n; c = c->next) {
        size_t k = c->end - c->start < n - got ? c->end - c->start : n - got;
        memcpy(d + got, c->data + c->start, k);
        got += k;
    }
    drop_written(q, got);
    return got;
}

void sg_outq_move(sg_outq *src, sg_outq *dst, size_t n)
{
    size_t moved = 0;
    for (sg_outq_chunk *c = src->head; c && moved < n; c = c->next) {
        size_t k = c->end - c->start < n - moved ? c->end - c->start : n - moved;
        sg_outq_append(dst, c->data + c->start, k);
        moved += k;
    }
    drop_written(src, moved);
}

void sg_outq_consume(sg_outq *q, size_t n)
{
    drop_written(q, n);
}

void sg_outq_clear(sg_outq *q)
{
    sg_outq_chunk *c = q->head;
    while (c) {
        sg_outq_chunk *next = c->next;
        chunk_free(c);
        c = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;   /* lean stays: it is the owner's setting */
}

void sg_inbuf_append(sg_inbuf *b, const char *p, size_t n)
{
    if (n == 0) return;   /* an empty buffer has no memory: b->p + 0 would be NULL + 0 */
    if (b->cap - b->len < n) {
        /* A first small leftover gets about its size: a stream holding one
         * small message (HTTP/2 request DATA waiting for the upstream)
         * should not take a kilobyte each. */
        size_t cap = b->cap ? b->cap : n < 1024 ? (n + 63) & ~(size_t)63 : 1024;
        while (cap - b->len < n) cap *= 2;
        b->p = sg_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void sg_inbuf_consume(sg_inbuf *b, size_t n)
{
    if (n >= b->len) {
        sg_inbuf_free(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

void sg_inbuf_free(sg_inbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
