/* I/O buffers that exist only while they hold bytes.
 *
 * sg_outq: bytes waiting for a socket to take them, as a list of chunks
 * allocated on demand and freed as soon as they are written, so an idle
 * connection holds no output memory. Writers append (copying: the source
 * is usually a per-thread read buffer that is reused at once) and the
 * owner flushes once per loop iteration with one writev.
 *
 * sg_inbuf: the unconsumed tail of what was read (a partial head, a
 * pipelined request waiting its turn). Reads go to the worker's scratch
 * buffer first; only leftovers are copied here. */
#ifndef SG_CORE_BUF_H
#define SG_CORE_BUF_H

#include <stddef.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct sg_outq_chunk sg_outq_chunk;

typedef struct sg_outq {
    sg_outq_chunk *head, *tail;
    size_t bytes;
    /* The owner's choice: a small write into an empty queue gets a chunk
     * of its own size, not a full one. For per-stream queues: thousands of
     * streams each passing one small message at once would otherwise take
     * a 16 KB block each, and the heap pages those blocks touched stay
     * resident after they are freed (the cost of idle HTTP/2 streams). */
    bool lean;
} sg_outq;

void sg_outq_append(sg_outq *q, const void *p, size_t n);
/* Contiguous room for `n` bytes at the tail (for formatting in place);
 * finish with sg_outq_commit(q, used). */
char *sg_outq_reserve(sg_outq *q, size_t n);
void sg_outq_commit(sg_outq *q, size_t used);

typedef enum sg_io_result {
    SG_IO_DONE = 0,      /* everything written / the operation finished */
    SG_IO_AGAIN = 1,     /* would block: wait for EPOLLOUT / EPOLLIN */
    SG_IO_ERROR = -1,    /* errno tells */
} sg_io_result;

/* Writes as much as the socket takes, in one writev per call. */
sg_io_result sg_outq_flush(sg_outq *q, int fd, size_t *written);
void sg_outq_clear(sg_outq *q);

/* Copies up to n bytes from the head of q into dst and drops them; returns
 * how many (an HTTP/2 data source filling a frame). */
size_t sg_outq_take(sg_outq *q, void *dst, size_t n);
/* Moves n bytes (n <= src->bytes) from the head of src to the end of dst. */
void sg_outq_move(sg_outq *src, sg_outq *dst, size_t n);
struct iovec;
int sg_outq_iov(const sg_outq *q, struct iovec *iov, int max);
void sg_outq_consume(sg_outq *q, size_t n);

typedef struct sg_inbuf {
    char *p;
    size_t len, cap;
} sg_inbuf;

void sg_inbuf_append(sg_inbuf *b, const char *p, size_t n);
/* Drops the first n bytes; frees the memory when it becomes empty. */
void sg_inbuf_consume(sg_inbuf *b, size_t n);
void sg_inbuf_free(sg_inbuf *b);

#endif
