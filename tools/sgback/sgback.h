/* sgback: streamgate's own demo/test backend.
 *
 * Internal interfaces between its files, one concern each:
 *   main.c    arguments, listening sockets, threads, signals
 *   server.c  per-thread epoll loop, connections, input/output buffers,
 *             request-body decoding (HTTP/1.1)
 *   timer.c   per-thread min-heap of deadlines (/delay, lingering close)
 *   routes.c  the endpoints: what to answer to a parsed request
 *
 * Symbols shared between these files are prefixed `sgb_` so that they can
 * never collide with the `sg_` names of libstreamgate.a it links with. */
#ifndef SGBACK_H
#define SGBACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "http/h1_parser.h"

/* Per-connection memory is fixed: a read buffer that also bounds the
 * request head, a copy buffer for response heads and echoed data, and a
 * queue of output segments (copied bytes or static pattern bytes) sent
 * with one writev. Producers stop when SGB_HIGH bytes are queued, which
 * is how backpressure reaches the reader. */
#define SGB_IBUF (16 * 1024)
#define SGB_OBUF (48 * 1024)
#define SGB_NSEG 64
#define SGB_HIGH (256 * 1024)

/* Process-wide counters for /stats (all threads). */
typedef struct sgb_stats {
    atomic_ullong accepted, open, requests;
} sgb_stats;
extern sgb_stats sgb_counters;

/* What sits behind epoll_event.data.ptr: the first member says which. */
enum { SGB_EV_LISTENER = 1, SGB_EV_CONN, SGB_EV_STOP };

typedef struct sgb_listener {
    int kind;          /* SGB_EV_LISTENER */
    int fd;
    uint16_t port;     /* local port, reported as X-Backend */
} sgb_listener;

/* ---- timers (timer.c) ---- */
typedef struct sgb_timer {
    uint64_t at_ms;    /* CLOCK_MONOTONIC deadline */
    size_t idx;        /* position in the heap, SIZE_MAX when not armed */
} sgb_timer;

typedef struct sgb_heap {
    sgb_timer **v;
    size_t n, cap;
} sgb_heap;

uint64_t sgb_now_ms(void);
void sgb_timer_arm(sgb_heap *h, sgb_timer *t, uint64_t at_ms);
void sgb_timer_disarm(sgb_heap *h, sgb_timer *t);
/* The earliest timer if it is due at `now`, else NULL (does not remove it). */
sgb_timer *sgb_timer_due(sgb_heap *h, uint64_t now);
/* Milliseconds until the earliest deadline, -1 if none (epoll_wait timeout). */
int sgb_timer_wait_ms(const sgb_heap *h, uint64_t now);
void sgb_heap_free(sgb_heap *h);

/* ---- connections (server.c) ---- */
typedef enum sgb_state {
    SGB_ST_HEAD,       /* waiting for (or parsing) a request head */
    SGB_ST_BODY,       /* reading the request body */
    SGB_ST_WAIT,       /* body read; waiting for a timer (/delay) */
    SGB_ST_GEN,        /* generating a response body (/bytes) */
    SGB_ST_CLOSE,      /* flush queued output, then close */
    SGB_ST_LINGER,     /* write side shut; discard input until EOF or timeout */
} sgb_state;

typedef enum sgb_route {
    SGB_R_HELLO = 0, SGB_R_HEADERS, SGB_R_ECHO, SGB_R_SINK, SGB_R_BYTES,
    SGB_R_STATUS, SGB_R_DELAY, SGB_R_CLOSE, SGB_R_DROP, SGB_R_STATS,
    SGB_R_STATS_RESET,
} sgb_route;

/* The request being answered, as routes.c sees it. */
typedef struct sgb_req {
    sgb_route route;
    bool head_method;      /* HEAD: headers only */
    bool keep_alive;       /* the connection may serve another request */
    bool http10;
    bool chunked_out;      /* response body in chunked coding */
    bool echo;             /* request body is copied to the response */
    bool started;          /* the response head is queued already */
    uint64_t n;            /* /bytes length, /status code, /delay ms */
    uint64_t done;         /* response body bytes generated so far */
    uint64_t body_bytes;   /* request body bytes received */
} sgb_req;

typedef struct sgb_worker sgb_worker;

typedef struct sgb_conn {
    int kind;                      /* SGB_EV_CONN */
    int fd;
    uint16_t port;
    sgb_state st;
    bool readable;                 /* ET: the socket may hold unread bytes */
    bool eof;                      /* the peer shut its write side */
    bool dead;                     /* close at the end of this run */
    sgb_worker *w;
    struct sgb_conn *prev, *next;  /* the worker's list, for shutdown */
    sgb_timer timer;

    /* input: unconsumed bytes are in[in_start, in_end) */
    size_t in_start, in_end, scanned;
    sg_h1_body_kind body_kind;
    uint64_t body_left;            /* SG_H1_BODY_LENGTH: bytes still to read */
    sg_chunked_decoder dec;

    sgb_req req;

    /* output: seg[seg_head, seg_n) to send; `out` holds the copied bytes */
    struct iovec seg[SGB_NSEG];
    size_t seg_head, seg_n;
    size_t queued;                 /* bytes in the segment queue */
    size_t out_used;               /* bytes of `out` in use */

    char in[SGB_IBUF];
    char out[SGB_OBUF];
} sgb_conn;

/* Thread entry: runs one worker's loop over `ls` until the stop fd fires. */
typedef struct sgb_worker_args {
    sgb_listener *ls;
    size_t nls;
    int stop_fd;               /* eventfd shared by all workers */
} sgb_worker_args;
void *sgb_worker_main(void *arg);

/* Output, for routes.c. Room is checked by the caller (sgb_out_room)
 * before producing; copying beyond the buffer is a bug and aborts. */
size_t sgb_out_room(const sgb_conn *c);      /* copyable bytes available now */
size_t sgb_out_segs_free(const sgb_conn *c);
void sgb_out_copy(sgb_conn *c, const void *p, size_t n);
void sgb_out_static(sgb_conn *c, const void *p, size_t n);
void sgb_out_printf(sgb_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Ends the current exchange: next request, or close if not keep-alive. */
void sgb_req_done(sgb_conn *c);
/* Closes without a word (/drop, or a body that cannot be answered). */
void sgb_conn_drop(sgb_conn *c);
void sgb_conn_wait(sgb_conn *c, uint64_t ms);

/* ---- endpoints (routes.c) ---- */
void sgb_routes_init(void);
/* A head was parsed (`head` is the raw head bytes). Decides the route and
 * may already queue output (100 Continue, the /echo response head). */
void sgb_route_begin(sgb_conn *c, const sg_h1_message *m, const char *head, size_t head_len);
/* /echo: how many body bytes can be passed to sgb_route_echo now. */
size_t sgb_route_echo_room(const sgb_conn *c);
void sgb_route_echo(sgb_conn *c, const char *p, size_t n);
/* The whole request body has been read: answer (or start answering). */
void sgb_route_body_done(sgb_conn *c);
/* SGB_ST_GEN: produce more body while there is room; true if it produced. */
bool sgb_route_generate(sgb_conn *c);
/* SGB_ST_WAIT: the timer fired. */
void sgb_route_timer(sgb_conn *c);
/* An unparseable request: answer `status` and close. */
void sgb_route_bad(sgb_conn *c, int status);

#endif
