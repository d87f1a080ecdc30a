/* sgback: streamgate's own demo/test backend.
 *
 * Internal interfaces between its files, one concern each:
 *   main.c    arguments, listening sockets, threads, signals
 *   server.c  per-thread epoll loop, connections, input/output buffers,
 *             request-body decoding (HTTP/1.1)
 *   timer.c   per-thread min-heap of deadlines (/delay, lingering close)
 *   routes.c  the endpoints: what to answer to a parsed request
 *   h2.c      HTTP/2 cleartext listeners (-2): loop, nghttp2 sessions, routes
 *   grpc.c    the gRPC service chat.Chat on the h2c side
 *   ws.c      WebSocket: handshake, upgraded connections, /ws/echo
 *   chat.c    the /ws/chat room (JSON commands, cross-thread broadcast)
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
#include "http/ws_frame.h"

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
/* -d MS: delay of the HTTP/1.1 default route (0: answer at once) */
extern uint64_t sgb_default_delay_ms;

/* What sits behind epoll_event.data.ptr: the first member says which. */
enum { SGB_EV_LISTENER = 1, SGB_EV_CONN, SGB_EV_STOP, SGB_EV_WS, SGB_EV_CHAT };

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
    SGB_ST_UPGRADE,    /* 101 queued: once sent, the socket becomes a WebSocket (ws.c) */
} sgb_state;

typedef enum sgb_route {
    SGB_R_HELLO = 0, SGB_R_HEADERS, SGB_R_ECHO, SGB_R_SINK, SGB_R_BYTES,
    SGB_R_STATUS, SGB_R_DELAY, SGB_R_CLOSE, SGB_R_DROP, SGB_R_STATS,
    SGB_R_STATS_RESET,
    SGB_R_WS_ECHO, SGB_R_WS_CHAT, SGB_R_CHAT_PAGE,
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
    bool upgrade;          /* a 101 is queued: the connection becomes a WebSocket */
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

/* ---- the per-thread loop of server.c and h2.c (loop.c) ----
 * A worker embeds an sgb_loop; the loop accepts on the listeners (with
 * TCP_NODELAY), watches the stop fd and fires timers, and hands the rest
 * to the worker's ops. */
struct epoll_event;
typedef struct sgb_loop sgb_loop;
typedef struct sgb_loop_ops {
    void (*accept)(sgb_loop *lp, sgb_listener *l, int fd);   /* a new connection */
    void (*event)(sgb_loop *lp, struct epoll_event *ev);     /* not stop/listener */
    void (*timer)(sgb_loop *lp, sgb_timer *t);               /* due, already disarmed */
    void (*tick)(sgb_loop *lp);                              /* after each round; may be NULL */
} sgb_loop_ops;
struct sgb_loop {
    int epfd;
    sgb_heap timers;
    bool stop;
    const sgb_loop_ops *ops;
};
/* epoll over a's stop fd and listeners; exits the process on failure. */
void sgb_loop_open(sgb_loop *lp, const sgb_worker_args *a);
/* epoll_ctl ADD; false (after perror) on failure. */
bool sgb_loop_add(sgb_loop *lp, int fd, void *ptr, uint32_t events);
void sgb_loop_run(sgb_loop *lp);                            /* until the stop fd fires */
void sgb_loop_close(sgb_loop *lp, const sgb_worker_args *a);   /* listeners, epoll, timers */

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

/* ---- HTTP/2 cleartext (h2.c) and the gRPC service chat.Chat (grpc.c) ----
 * Listeners given with -2 are served by their own worker threads
 * (sgb_h2_worker_main), one per -t, with the same shape as the HTTP/1.1
 * loop: edge-triggered epoll, a timer heap, the shared stop eventfd. */
typedef struct sgb_h2_stats {
    atomic_ullong accepted, open;          /* h2 connections */
    atomic_ullong streams, open_streams;   /* request streams received / open now */
    atomic_ullong served;                  /* streams that ended normally */
    atomic_ullong cancelled;               /* reset by the client, or its connection
                                              went away, before they ended */
    atomic_ullong grpc;                    /* gRPC calls received */
} sgb_h2_stats;
extern sgb_h2_stats sgb_h2_counters;

void *sgb_h2_worker_main(void *arg);   /* arg: sgb_worker_args of -2 listeners */

/* What happens to the request DATA of a stream. */
typedef enum sgb_h2_in {
    SGB_H2_IN_DISCARD,   /* counted, window given back at once */
    SGB_H2_IN_ECHO,      /* held until echoed: the client's window follows the echo */
    SGB_H2_IN_BUFFER,    /* kept whole in `ibuf` (window given back at once) */
    SGB_H2_IN_GRPC,      /* handed to sgb_grpc_data, window given back at once */
} sgb_h2_in;

/* Where the response body comes from. */
typedef enum sgb_h2_out {
    SGB_H2_OUT_FIXED,    /* fixed[0, fixed_len) */
    SGB_H2_OUT_PATTERN,  /* `total` bytes of the /bytes pattern */
    SGB_H2_OUT_ECHO,     /* the request body, as it arrives */
    SGB_H2_OUT_REPEAT,   /* ibuf sent `repeat` times, `interval_ms` apart */
} sgb_h2_out;

typedef struct sgb_h2_buf {
    uint8_t *p;
    size_t start, end, cap;   /* bytes in [start, end) */
} sgb_h2_buf;

typedef struct sgb_h2_conn sgb_h2_conn;

typedef struct sgb_h2_stream {
    sgb_h2_conn *c;
    int32_t id;
    struct sgb_h2_stream *prev, *next;   /* the connection's streams */
    sgb_timer timer;                     /* /delay, Sleep, Repeat's interval */

    /* request: headers as "name\0value\0" pairs, pseudo-headers included */
    char *hdrs;
    size_t hlen, hcap;
    bool head_method, grpc, in_end, peer_reset, responded, deferred, waiting;
    bool overflow;                       /* IN_BUFFER: the body was too big to keep */
    sgb_h2_in in;
    uint64_t body_bytes;                 /* request DATA bytes received */
    sgb_h2_buf ibuf;

    /* response */
    sgb_h2_out out;
    uint64_t total, done;                /* PATTERN length / bytes sent of a piece */
    uint64_t repeat, copies;             /* REPEAT: copies wanted / sent */
    uint64_t interval_ms;
    int route;                           /* h2.c route or grpc.c method */
    uint64_t n;                          /* route parameter */

    /* gRPC deframing (grpc.c) */
    uint64_t msgs, msg_bytes, msg_left;
    uint8_t prefix[5], prefix_got;

    char fixed[512];
    size_t fixed_len;
    char hinline[512];                   /* first home of `hdrs` */
} sgb_h2_stream;

/* A response header or trailer for sgb_h2_respond / sgb_h2_trailers. */
typedef struct sgb_h2_nv {
    const char *name, *value;
} sgb_h2_nv;

/* For grpc.c (h2.c implements): */
/* The request header `name` (lowercase; ":path" too), NULL if absent. */
const char *sgb_h2_header(const sgb_h2_stream *s, const char *name, size_t *len);
/* Submits the response head (x-backend added); with `body`, the body comes
 * from s->out, else the HEADERS frame ends the stream (trailers-only). */
void sgb_h2_respond(sgb_h2_stream *s, int status, const sgb_h2_nv *extra, size_t n, bool body);
/* Trailers after a body; only from sgb_grpc_body_end. */
void sgb_h2_trailers(sgb_h2_stream *s, const sgb_h2_nv *nv, size_t n);
void sgb_h2_wait(sgb_h2_stream *s, uint64_t ms);
/* RST_STREAM with HTTP/2 error `code` instead of (the rest of) an answer. */
void sgb_h2_reset(sgb_h2_stream *s, uint32_t code);

/* For h2.c (grpc.c implements). A request is gRPC when its content-type
 * starts with application/grpc. */
void sgb_grpc_begin(sgb_h2_stream *s);                        /* request head */
void sgb_grpc_data(sgb_h2_stream *s, const uint8_t *p, size_t n);   /* SGB_H2_IN_GRPC */
void sgb_grpc_end(sgb_h2_stream *s);                          /* request END_STREAM */
void sgb_grpc_timer(sgb_h2_stream *s);
void sgb_grpc_body_end(sgb_h2_stream *s);   /* response body done: send trailers */

/* ---- WebSocket (ws.c) and the chat room (chat.c) ----
 * GET /ws/echo and /ws/chat upgrade in routes.c (101 queued, state
 * SGB_ST_UPGRADE); once the 101 is sent, server.c hands the socket to
 * sgb_ws_adopt and frees its sgb_conn. An upgraded connection is small
 * and holds no buffer while idle: input is read into a per-thread scratch
 * buffer and only a partial frame (at most SG_WS_CARRY_MAX bytes) is kept;
 * output is written at once and only what the socket refuses is queued.
 * Upgraded connections have no idle timeout. */
typedef struct sgb_chat_room sgb_chat_room;

typedef struct sgb_ws {
    int kind;                      /* SGB_EV_WS */
    int fd;
    uint8_t mode;                  /* SGB_R_WS_ECHO or SGB_R_WS_CHAT */
    bool readable;                 /* ET: the socket may hold unread bytes */
    bool dead;                     /* closed; freed by sgb_ws_tick */
    bool close_sent;               /* our close frame is queued: input is discarded */
    bool shut;                     /* write side shut after the close frame */
    uint8_t ncarry;                /* partial frame kept between reads */
    uint8_t carry[SG_WS_CARRY_MAX];
    sg_ws_reader rd;
    char *out;                     /* unsent output [out_off, out_len), NULL when empty */
    size_t out_off, out_len, out_cap;
    char *msg;                     /* a fragmented message being assembled */
    size_t msg_len, msg_cap;
    struct sgb_ws *prev, *next;    /* the thread's connections */
    /* chat.c */
    char *user;                    /* NULL until login */
    sgb_chat_room *room;
    struct sgb_ws *rprev, *rnext;  /* this thread's members of `room` */
} sgb_ws;

/* ws.c */
void sgb_ws_thread_init(int epfd);
void sgb_ws_thread_done(void);
/* An epoll event whose data.ptr is an SGB_EV_WS or SGB_EV_CHAT object. */
void sgb_ws_event(void *ptr, uint32_t events);
/* After each batch of events: frees the connections closed meanwhile
 * (an event later in the same batch may still name them). */
void sgb_ws_tick(void);
/* Checks an upgrade request. 101: `accept` (29 bytes with the NUL) holds
 * Sec-WebSocket-Accept and `proto` the chosen subprotocol ("" for none:
 * the first offered of chat, superchat, echo; ?proto=X picks X if offered).
 * Else the status to answer: 426 (no Upgrade: websocket, or a version
 * other than 13) or 400 (not GET/HTTP/1.1, bad key, a body). */
int sgb_ws_handshake(const sg_h1_message *m, sg_str query, char accept[32], char proto[64]);
/* Takes over a socket whose 101 is sent: re-registers it with epoll and
 * reads `in` (bytes that followed the request head; modified in place). */
void sgb_ws_adopt(int fd, sgb_route mode, char *in, size_t n);
/* One whole message (TEXT/BINARY) or control frame. */
void sgb_ws_send(sgb_ws *ws, uint8_t opcode, const void *p, size_t n);
/* Bytes that are already frames (a broadcast). */
void sgb_ws_send_frames(sgb_ws *ws, const struct iovec *iov, int cnt);
/* Sends a close frame; the connection ends when the peer answers or goes. */
void sgb_ws_close(sgb_ws *ws, uint16_t code, const char *reason);

/* chat.c: JSON commands login, heartbeat, message (see chat.c) */
void sgb_chat_thread_init(int epfd);
void sgb_chat_thread_done(void);
void sgb_chat_mailbox(void *box);                      /* SGB_EV_CHAT fired */
void sgb_chat_text(sgb_ws *ws, const char *p, size_t n);   /* a text message */
void sgb_chat_leave(sgb_ws *ws);                       /* the connection ends */

/* server.c: the 101 is queued; the socket goes to ws.c once it is sent. */
void sgb_conn_upgrade(sgb_conn *c);


#endif
