/* TLS on non-blocking, edge-triggered sockets (OpenSSL 3).
 *
 * Contexts are not built here: conf builds them from the compiled settings
 * at load time (conf/ssl_ctx.h) and frees them with the generation; they
 * are shared read-only by every worker thread. This module is the
 * transport on top of them:
 * - what a server handshake runs (SNI choosing the server block through
 *   the function given to sg_tls_init(), ALPN), installed on every server
 *   context conf builds through the hook sg_tls_init() registers;
 * - connections (sg_tls_conn): the transport the codecs use instead of
 *   read()/writev() on an ssl listen group or a TLS upstream. The calls keep
 *   the socket calls' conventions (-1 + errno EAGAIN when the socket would
 *   block, 0 at the end of the stream), so a codec changes its two I/O
 *   functions and nothing else.
 *
 * Memory follows traffic: SSL_MODE_RELEASE_BUFFERS frees OpenSSL's record
 * buffers whenever they are empty, and writes are coalesced into one
 * per-thread 16 KB buffer, so an idle TLS connection holds only its SSL
 * object (a few KB). Errors are logged with the peer's address, the
 * OpenSSL error queue is cleared around every call, and nothing here ever
 * aborts the process for a peer's doing. */
#ifndef SG_NET_TLS_H
#define SG_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/str.h"

typedef struct sg_tls_conn sg_tls_conn;
typedef struct ssl_session_st sg_tls_session;   /* OpenSSL's SSL_SESSION */

/* The largest plaintext one record carries: writes are cut at this size. */
#define SG_TLS_RECORD 16384

/* ---------------- start ---------------- */

/* The server block of listen group g for SNI name `host` (lowercased,
 * without a trailing dot); NULL keeps the group's default server. The
 * router's sg_router_sni (server_name rules) is the one the server uses. */
typedef const sg_server_conf *(*sg_tls_sni_fn)(const sg_listen_group *g, sg_str host);

/* Once at start, before any configuration is loaded and before any worker
 * thread runs (whoever owns accept: main): remembers `choose` for SNI and
 * registers the SNI and ALPN callbacks with conf, which installs them on
 * every server context it builds (sg_ssl_set_server_setup). Without this
 * call handshakes get neither: the default server, no ALPN. */
void sg_tls_init(sg_tls_sni_fn choose);

/* tls: the host_name of a ClientHello's server_name extension body (RFC
 * 6066 3), as the peer sent it: a pointer into p and its length; false
 * when the extension is malformed or names no host. Network input: any
 * bytes are safe (tests/fuzz/fuzz_sni.c). */
bool sg_tls_sni_parse(const unsigned char *p, size_t n, const unsigned char **name, size_t *len);

/* ---------------- connections ---------------- */

/* Server side of accepted socket fd on listen group g (SNI picks the
 * server among g's servers; ALPN offers "h2" only when g->http2). The
 * context is g's default server's. `peer` (may be NULL) is kept as text
 * for log lines. NULL if OpenSSL cannot allocate. Does not own fd. */
sg_tls_conn *sg_tls_server_new(const sg_listen_group *g, int fd, const struct sockaddr *peer);

/* Server side for a stream{} server (listen ... ssl): its own context,
 * no SNI switching; `alpn` (wire format, kept by the caller; NULL: none)
 * is its ssl_alpn list: a client offering none of them is refused. */
sg_tls_conn *sg_tls_server_new_ctx(struct ssl_ctx_st *ctx, int fd, const struct sockaddr *peer,
                                   const unsigned char *alpn, size_t alpnlen);

/* Client side on connected (or connecting) socket fd. `sni`: the name sent
 * as server_name (NULL: none); `verify_name`: the name or IP address the
 * certificate must match when the context verifies (NULL: any); `reuse`:
 * a session to resume (from sg_tls_session_get on an earlier connection
 * to the same peer), or NULL. */
sg_tls_conn *sg_tls_client_new(struct ssl_ctx_st *ctx, int fd, const char *sni, const char *verify_name,
                               sg_tls_session *reuse, const struct sockaddr *peer);

/* Client side: cb(arg, session) whenever the server sends a resumable
 * session (TLS 1.3 tickets arrive after the handshake, while reading);
 * cb owns it (sg_tls_session_free). arg must outlive the connection. */
void sg_tls_on_session(sg_tls_conn *c, void (*cb)(void *arg, sg_tls_session *s), void *arg);

/* Client side, before the handshake: offer no ALPN (stream's proxy_ssl,
 * as nginx without proxy_ssl_alpn; the shared contexts offer http/1.1). */
void sg_tls_no_alpn(sg_tls_conn *c);

/* Where a client connection's failures are logged: the error_log of the
 * location it serves (NULL, the default: the main log). */
void sg_tls_set_log(sg_tls_conn *c, const sg_log_target *log);

/* Advances the handshake: SG_IO_DONE when finished, SG_IO_AGAIN when the
 * socket would block (sg_tls_want_write() tells which readiness it waits
 * for; calling again on any event is fine too), SG_IO_ERROR when it failed
 * (logged; close the connection). */
sg_io_result sg_tls_handshake(sg_tls_conn *c);
bool sg_tls_want_write(const sg_tls_conn *c);

/* Like read(2) on the socket: >0 bytes of plaintext, 0 at the end of the
 * stream (close_notify or the peer's FIN), -1 + errno: EAGAIN (wait for
 * input, or for output when sg_tls_read_wants_write()), EPROTO (a TLS
 * error, logged) or the socket's errno. It fills `buf` until the socket
 * would block, so a short count means the socket was drained, as a short
 * read() does, unless sg_tls_pending() says more is waiting already. */
ssize_t sg_tls_read(sg_tls_conn *c, void *buf, size_t n);

/* Like writev(2): returns the bytes taken (possibly fewer than offered),
 * or -1 + errno EAGAIN (wait for output, or for input when
 * sg_tls_write_wants_read()), EPIPE/ECONNRESET/EPROTO. Bytes are cut into
 * records of at most SG_TLS_RECORD, small pieces coalesced.
 * Contract, as OpenSSL requires: after -1/EAGAIN the next call must offer
 * the same bytes first (at least as many): a queue that only appends at
 * its tail and drops only what was reported written does that. */
ssize_t sg_tls_writev(sg_tls_conn *c, const struct iovec *iov, int iovcnt);

sg_io_result sg_tls_flush(sg_tls_conn *c, sg_outq *q, size_t *written);

/* Whether a read would return something without new input on the socket
 * (decrypted or undecrypted bytes buffered, or an end/error to report).
 * Codecs that stop reading after a short read check this first. */
bool sg_tls_pending(const sg_tls_conn *c);
bool sg_tls_read_wants_write(const sg_tls_conn *c);
bool sg_tls_write_wants_read(const sg_tls_conn *c);

/* After the handshake: the ALPN protocol chosen ("h2", "http/1.1", ...;
 * empty when the client offered none), the SNI name (NULL if none), the
 * server block SNI chose (the group's default server without SNI; NULL on
 * a client connection), the protocol version ("TLSv1.3") and cipher names. */
sg_str sg_tls_alpn(const sg_tls_conn *c);
bool sg_tls_alpn_is_h2(const sg_tls_conn *c);
const char *sg_tls_server_name(const sg_tls_conn *c);
const sg_server_conf *sg_tls_server(const sg_tls_conn *c);
const char *sg_tls_protocol(const sg_tls_conn *c);
const char *sg_tls_cipher(const sg_tls_conn *c);
bool sg_tls_session_reused(const sg_tls_conn *c);
/* The session id in upper-case hex (as nginx's $ssl_session_id), NUL-terminated; its length. */
size_t sg_tls_session_id(const sg_tls_conn *c, char *hex, size_t n);
/* tls: OpenSSL's SSL object of the connection (for net/tls_vars.c). */
struct ssl_st *sg_tls_ssl(const sg_tls_conn *c);

/* Client side: the session to offer on the next connection to this peer
 * (NULL if not resumable). With TLS 1.3 the ticket arrives after the
 * handshake, so take it after the first response was read. */
sg_tls_session *sg_tls_session_get(sg_tls_conn *c);
void sg_tls_session_free(sg_tls_session *s);

/* Sends close_notify, without waiting for the peer's (SG_IO_AGAIN if the
 * socket is full: retrying is optional). Skipped after a fatal error. */
sg_io_result sg_tls_shutdown(sg_tls_conn *c);

/* Frees the TLS state; the socket is not closed (the codec owns it). */
void sg_tls_free(sg_tls_conn *c);

/* ---------------- server handshakes before a codec takes over ---------------- */

/* What sg_tls_accept() hands to its `ready` callback once the handshake is
 * done: the connection (owned by the callee from then on), its socket
 * (no longer registered with the loop: the codec registers it with its own
 * sg_io) and the addresses. The codec must read once right away rather
 * than wait for an event: the client's first bytes may already sit in
 * OpenSSL's buffer. */
typedef struct sg_tls_accepted {
    sg_tls_conn *tls;
    int fd;
    const struct sockaddr *peer, *local;
    socklen_t peerlen, locallen;
} sg_tls_accepted;

typedef void (*sg_tls_ready_fn)(const sg_tls_accepted *a, void *arg);

/* Drives the handshake of accepted socket fd on group g of generation gen
 * (held until the handshake ends) in loop l, at most timeout_ms, then
 * calls ready(a, arg) on the loop's thread. On failure or timeout the
 * socket is closed and ready is not called (the failure is logged at info
 * with the client's address, as nginx does). */
void sg_tls_accept(sg_loop *l, sg_conf *gen, const sg_listen_group *g, int fd,
                   const struct sockaddr *peer, socklen_t peerlen,
                   const struct sockaddr *local, socklen_t locallen,
                   uint32_t timeout_ms, sg_tls_ready_fn ready, void *arg);

/* Handshakes in progress on the calling thread: how many, and closing
 * them all (a worker that stops calls it before freeing its loop). */
size_t sg_tls_accept_count(void);
void sg_tls_accept_close_all(void);

#endif
