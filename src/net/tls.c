/* TLS transport on OpenSSL 3: connections driven by edge-triggered
 * non-blocking sockets, and the per-handshake callbacks (SNI, ALPN) of the
 * server contexts conf builds (conf/ssl_ctx.h). See tls.h. */
#include "net/tls.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conf/ssl_ctx.h"
#include "core/list.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/sockaddr.h"
#include "net/sock.h"

struct sg_tls_conn {
    SSL *ssl;
    const sg_listen_group *group;      /* server side: SNI and ALPN choose within it */
    const sg_server_conf *server;      /* server side: the block SNI chose */
    bool server_side;
    bool hs_done;
    bool hs_want_write;
    bool read_wants_write, write_wants_read;
    bool eof;                          /* close_notify or FIN seen: reads return 0 */
    bool fatal;                        /* a TLS or socket error: no more I/O, no close_notify */
    int err;                           /* errno reported again after a fatal error */
    const sg_log_target *log;          /* client side: the location's error_log (NULL: main) */
    char peer[56];                     /* "1.2.3.4:5678" / "[v6]:port" for log lines */
    /* stream{} servers (no group): their ssl_alpn list, wire format */
    const unsigned char *stream_alpn;
    unsigned stream_alpn_len;
    /* client side: sg_tls_on_session's callback */
    void (*on_session)(void *arg, sg_tls_session *s);
    void *on_session_arg;
    size_t record;                     /* largest record written: ssl_buffer_size, at most SG_TLS_RECORD */
};

/* ---------------- errors ---------------- */

/* Logs a failed call on connection c; a peer's garbage is worth "info"
 * (nginx's level for client-side errors), an upstream's an "error". */
static void conn_log(const sg_tls_conn *c, const char *call, int sslerr, int sys_errno)
{
    char detail[600];
    if (sslerr == SSL_ERROR_ZERO_RETURN || (sslerr == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
        ERR_clear_error();
        if (sslerr == SSL_ERROR_SYSCALL && sys_errno)
            snprintf(detail, sizeof(detail), "%d: %s", sys_errno, strerror(sys_errno));
        else
            snprintf(detail, sizeof(detail), "peer closed connection");
    } else {
        sg_ssl_errors(detail, sizeof(detail));
    }
    const char *when = c->hs_done ? "" : " while SSL handshaking";
    if (c->server_side) {
        sg_log(SG_LOG_INFO, "%s failed (%s)%s, client: %s", call, detail, when, c->peer);
        return;
    }
    /* Without verification OpenSSL still records a verify result and goes
     * on: the failure is then something else, and its reason is what to log. */
    long vr = SSL_get_verify_result(c->ssl);
    bool verifying = SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER;
    if (!c->hs_done && verifying && vr != X509_V_OK)
        sg_log_to(c->log, SG_LOG_ERROR, "upstream SSL certificate verify error: (%ld:%s)%s to upstream, upstream: %s",
                  vr, X509_verify_cert_error_string(vr), when, c->peer);
    else
        sg_log_to(c->log, SG_LOG_ERROR, "%s failed (%s)%s to upstream, upstream: %s", call, detail, when, c->peer);
}

/* ---------------- server contexts: SNI and ALPN ---------------- */

static bool host_char(unsigned char ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_';
}

bool sg_tls_sni_parse(const unsigned char *p, size_t n, const unsigned char **name, size_t *len)
{
    if (!p || n < 2) return false;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 != n) return false;
    p += 2;
    n -= 2;
    while (n >= 3) {
        size_t k = ((size_t)p[1] << 8) | p[2];
        if (k + 3 > n) return false;
        if (p[0] == TLSEXT_NAMETYPE_host_name) {
            *name = p + 3;
            *len = k;
            return true;
        }
        p += 3 + k;
        n -= 3 + k;
    }
    return false;
}

static bool hello_server_name(SSL *ssl, const unsigned char **name, size_t *len)
{
    const unsigned char *p;
    size_t n;
    return SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &n) == 1 &&
           sg_tls_sni_parse(p, n, name, len);
}

/* Moves the handshake to the context of server s: certificates, then
 * what SSL_set_SSL_CTX does not carry over (options, protocol versions,
 * ciphers, client verification), as nginx does. Runs on the ClientHello,
 * before the protocol version is chosen, so ssl_protocols of the server
 * SNI names apply. */
static bool switch_ctx(SSL *ssl, const sg_server_conf *s)
{
    SSL_CTX *ctx = s->ssl.ctx;
    if (!ctx || ctx == SSL_get_SSL_CTX(ssl)) return true;
    if (!SSL_set_SSL_CTX(ssl, ctx)) return false;
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(ctx));
    SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(ctx));
    SSL_set_max_proto_version(ssl, SSL_CTX_get_max_proto_version(ctx));
    if (s->ssl.ciphers.s) SSL_set_cipher_list(ssl, s->ssl.ciphers.s);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    return true;
}

/* Given once at start (sg_tls_init), read by every worker thread. */
static sg_tls_sni_fn sni_choose;

/* SNI, on the ClientHello: the server block of the connection's listen
 * group for that name (as sni_choose finds it: the router's server_name
 * rules), and its context if it has its own certificates. A server with
 * ssl_reject_handshake (the default server too, when no name or an
 * unknown one was sent) ends the handshake with unrecognized_name. */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    sg_tls_conn *c = SSL_get_app_data(ssl);
    if (!c || !c->group) return SSL_CLIENT_HELLO_SUCCESS;
    const unsigned char *name;
    size_t n;
    if (hello_server_name(ssl, &name, &n)) {
        char host[256];
        if (n > 0 && name[n - 1] == '.') n--;  /* "a.test." is "a.test" */
        if (n == 0 || n >= sizeof(host)) goto bad;
        for (size_t i = 0; i < n; i++) {
            if (!host_char(name[i])) goto bad;
            host[i] = (char)tolower(name[i]);
        }
        host[n] = '\0';
        const sg_server_conf *s = sni_choose ? sni_choose(c->group, (sg_str){ host, n }) : NULL;
        if (s) {
            c->server = s;
            c->record = s->ssl.buffer_size && s->ssl.buffer_size < SG_TLS_RECORD ? s->ssl.buffer_size : SG_TLS_RECORD;
            if (!switch_ctx(ssl, s)) {
                *alert = SSL_AD_INTERNAL_ERROR;
                return SSL_CLIENT_HELLO_ERROR;
            }
        }
    }
    ERR_clear_error();
    if (c->server && c->server->ssl.reject_handshake) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
bad:
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;
}

/* ALPN: "h2" first where the address serves HTTP/2, then HTTP/1.x. A
 * client that offers none of these is refused (no_application_protocol),
 * as nginx >= 1.21.4 does. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char with_h2[] = "\x02h2\x08http/1.1\x08http/1.0\x08http/0.9";
    static const unsigned char h1_only[] = "\x08http/1.1\x08http/1.0\x08http/0.9";
    sg_tls_conn *c = SSL_get_app_data(ssl);
    if (c && !c->group) {              /* stream{}: ssl_alpn, in the server's order (nginx) */
        if (!c->stream_alpn) return SSL_TLSEXT_ERR_NOACK;
        if (SSL_select_next_proto((unsigned char **)out, outlen, c->stream_alpn, c->stream_alpn_len,
                                  in, inlen) != OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        return SSL_TLSEXT_ERR_OK;
    }
    bool h2 = c && c->group && c->group->http2;
    const unsigned char *srv = h2 ? with_h2 : h1_only;
    unsigned int srvlen = h2 ? sizeof(with_h2) - 1 : sizeof(h1_only) - 1;
    if (SSL_select_next_proto((unsigned char **)out, outlen, srv, srvlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

/* Installed on every server context conf builds (sg_ssl_set_server_setup). */
static void server_ctx_setup(SSL_CTX *ctx)
{
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
}

/* A session the server sent (a TLS 1.3 ticket after the handshake, or a
 * TLS 1.2 session at its end): to the connection's callback, if any. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    sg_tls_conn *c = SSL_get_app_data(ssl);
    if (!c || !c->on_session || !SSL_SESSION_is_resumable(sess)) return 0;
    c->on_session(c->on_session_arg, sess);
    return 1;                          /* the callback owns the reference */
}

/* Client contexts: sessions are announced (not stored internally; the
 * pools keep theirs with sg_tls_session_get). */
static void client_ctx_setup(SSL_CTX *ctx)
{
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
}

void sg_tls_init(sg_tls_sni_fn choose)
{
    sni_choose = choose;
    sg_ssl_set_server_setup(server_ctx_setup);
    sg_ssl_set_client_setup(client_ctx_setup);
}

void sg_tls_on_session(sg_tls_conn *c, void (*cb)(void *arg, sg_tls_session *s), void *arg)
{
    c->on_session = cb;
    c->on_session_arg = arg;
}

void sg_tls_no_alpn(sg_tls_conn *c)
{
    SSL_set_alpn_protos(c->ssl, NULL, 0);
}

/* ---------------- connections ---------------- */

static sg_tls_conn *conn_new(SSL_CTX *ctx, int fd, const struct sockaddr *peer, bool server)
{
    ERR_clear_error();
    sg_tls_conn *c = sg_xcalloc(1, sizeof(*c));
    c->server_side = server;
    if (peer) sg_sockaddr_str(peer, c->peer, sizeof(c->peer));
    else snprintf(c->peer, sizeof(c->peer), "-");
    c->ssl = SSL_new(ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        char e[512];
        sg_ssl_errors(e, sizeof(e));
        sg_log_error("SSL_new() failed (%s), %s: %s", e, server ? "client" : "upstream", c->peer);
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    SSL_set_app_data(c->ssl, c);
    c->record = SG_TLS_RECORD;
    if (server) SSL_set_accept_state(c->ssl);
    else SSL_set_connect_state(c->ssl);
    return c;
}

sg_tls_conn *sg_tls_server_new(const sg_listen_group *g, int fd, const struct sockaddr *peer)
{
    const sg_server_conf *s = g->default_server;
    if (!s || !s->ssl.ctx) {
        sg_log_error("no SSL context for %s", g->text ? g->text : "?");
        return NULL;
    }
    sg_tls_conn *c = conn_new(s->ssl.ctx, fd, peer, true);
    if (!c) return NULL;
    c->group = g;
    c->server = s;
    c->record = s->ssl.buffer_size && s->ssl.buffer_size < SG_TLS_RECORD ? s->ssl.buffer_size : SG_TLS_RECORD;
    return c;
}

sg_tls_conn *sg_tls_server_new_ctx(SSL_CTX *ctx, int fd, const struct sockaddr *peer,
                                   const unsigned char *alpn, size_t alpnlen)
{
    sg_tls_conn *c = conn_new(ctx, fd, peer, true);
    if (!c) return NULL;
    c->stream_alpn = alpn;
    c->stream_alpn_len = (unsigned)alpnlen;
    return c;
}

static bool is_ip(const char *name)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

sg_tls_conn *sg_tls_client_new(SSL_CTX *ctx, int fd, const char *sni, const char *verify_name,
                               sg_tls_session *reuse, const struct sockaddr *peer)
{
    sg_tls_conn *c = conn_new(ctx, fd, peer, false);
    if (!c) return NULL;
    bool ok = true;
    if (sni && *sni && !is_ip(sni)) ok = SSL_set_tlsext_host_name(c->ssl, sni) == 1;  /* RFC 6066: no IPs */
    if (ok && verify_name && *verify_name && (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER)) {
        if (is_ip(verify_name)) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), verify_name) == 1;
        } else {
            SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(c->ssl, verify_name) == 1;
        }
    }
    if (ok && reuse) ok = SSL_set_session(c->ssl, reuse) == 1;
    if (!ok) {
        conn_log(c, "SSL_set1_host()", SSL_ERROR_SSL, 0);
        sg_tls_free(c);
        return NULL;
    }
    return c;
}

void sg_tls_set_log(sg_tls_conn *c, const sg_log_target *log)
{
    c->log = log;
}

/* A failure that ends the connection: remembered, so later calls report
 * it again instead of touching a broken SSL object. */
static void conn_fatal(sg_tls_conn *c, const char *call, int sslerr, int sys_errno)
{
    conn_log(c, call, sslerr, sys_errno);
    c->fatal = true;
    if (sslerr == SSL_ERROR_SYSCALL) c->err = sys_errno ? sys_errno : ECONNRESET;
    else c->err = sslerr == SSL_ERROR_ZERO_RETURN ? ECONNRESET : EPROTO;
    errno = c->err;
}

sg_io_result sg_tls_handshake(sg_tls_conn *c)
{
    if (c->fatal) {
        errno = c->err;
        return SG_IO_ERROR;
    }
    if (c->hs_done) return SG_IO_DONE;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    int sys = errno;
    if (r == 1) {
        c->hs_done = true;
        return SG_IO_DONE;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->hs_want_write = e == SSL_ERROR_WANT_WRITE;
        ERR_clear_error();
        return SG_IO_AGAIN;
    }
    conn_fatal(c, "SSL_do_handshake()", e, sys);
    return SG_IO_ERROR;
}

bool sg_tls_want_write(const sg_tls_conn *c)
{
    return c->hs_want_write;
}

/* One SSL_read_ex: 1 with bytes, 0 would block, -1 end of stream, -2 fatal. */
static int read_once(sg_tls_conn *c, char *buf, size_t n, size_t *got)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_read_ex(c->ssl, buf, n, got);
    int sys = errno;
    if (r == 1) return 1;
    int e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_WRITE:
        c->read_wants_write = true;
        /* fall through */
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        c->eof = true;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (sys == 0 && ERR_peek_error() == 0) {   /* a plain FIN */
            c->eof = true;
            return -1;
        }
        /* fall through */
    default:
        conn_fatal(c, "SSL_read()", e, sys);
        return -2;
    }
}

ssize_t sg_tls_read(sg_tls_conn *c, void *buf, size_t n)
{
    if (c->fatal) {
        errno = c->err;
        return -1;
    }
    if (c->eof) return 0;
    c->read_wants_write = false;
    size_t total = 0;
    int r = 1;
    /* Fill the buffer until the socket would block: codecs take a short
     * read as "drained", and with edge-triggered events an undrained
     * socket would never wake them again. */
    while (total < n) {
        size_t got = 0;
        r = read_once(c, (char *)buf + total, n - total, &got);
        if (r != 1) break;
        total += got;
    }
    if (total > 0) return (ssize_t)total;
    if (r == -1) return 0;
    if (r == -2) {
        errno = c->err;
        return -1;
    }
    errno = EAGAIN;
    return -1;
}

static _Thread_local unsigned char wbuf[SG_TLS_RECORD];

/* The next record's plaintext from position (i, off) of iov: a slice of
 * one big piece as is, or small pieces copied together into wbuf. */
static size_t next_record(const struct iovec *iov, int iovcnt, int i, size_t off, const void **p, size_t rec)
{
    size_t left = iov[i].iov_len - off;
    if (left >= rec) {
        *p = (const char *)iov[i].iov_base + off;
        return rec;
    }
    size_t n = 0;
    for (; i < iovcnt && n < rec; i++, off = 0) {
        size_t k = iov[i].iov_len - off;
        if (k > rec - n) k = rec - n;
        memcpy(wbuf + n, (const char *)iov[i].iov_base + off, k);
        n += k;
    }
    *p = wbuf;
    return n;
}

/* 1 written (*w bytes), 0 would block, -1 fatal. */
static int write_once(sg_tls_conn *c, const void *p, size_t n, size_t *w)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_write_ex(c->ssl, p, n, w);
    int sys = errno;
    if (r == 1) return 1;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->write_wants_read = e == SSL_ERROR_WANT_READ;
        ERR_clear_error();
        return 0;
    }
    conn_fatal(c, "SSL_write()", e, sys);
    return -1;
}

ssize_t sg_tls_writev(sg_tls_conn *c, const struct iovec *iov, int iovcnt)
{
    if (c->fatal) {
        errno = c->err;
        return -1;
    }
    c->write_wants_read = false;
    size_t total = 0, off = 0;
    int i = 0;
    for (;;) {
        while (i < iovcnt && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i == iovcnt) break;
        const void *p;
        size_t n = next_record(iov, iovcnt, i, off, &p, c->record), w = 0;
        int r = write_once(c, p, n, &w);
        if (r < 0) {
            if (total > 0) break;          /* report the bytes taken; the error comes next call */
            return -1;
        }
        if (r == 0) {
            if (total > 0) break;
            errno = EAGAIN;
            return -1;
        }
        total += w;
        for (size_t left = w; left > 0;) {     /* advance (i, off) by w */
            size_t k = iov[i].iov_len - off;
            if (left < k) {
                off += left;
                break;
            }
            left -= k;
            i++;
            off = 0;
        }
    }
    return (ssize_t)total;
}

sg_io_result sg_tls_flush(sg_tls_conn *c, sg_outq *q, size_t *written)
{
    size_t total = 0;
    while (q->bytes > 0) {
        struct iovec iov[64];
        int n = sg_outq_iov(q, iov, 64);
        ssize_t w = sg_tls_writev(c, iov, n);
        if (w < 0) {
            if (written) *written = total;
            return errno == EAGAIN ? SG_IO_AGAIN : SG_IO_ERROR;
        }
        total += (size_t)w;
        sg_outq_consume(q, (size_t)w);
    }
    if (written) *written = total;
    return SG_IO_DONE;
}

bool sg_tls_pending(const sg_tls_conn *c)
{
    return c->eof || c->fatal || SSL_has_pending(c->ssl);
}

bool sg_tls_read_wants_write(const sg_tls_conn *c)
{
    return c->read_wants_write;
}

bool sg_tls_write_wants_read(const sg_tls_conn *c)
{
    return c->write_wants_read;
}

sg_str sg_tls_alpn(const sg_tls_conn *c)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    return p && n ? (sg_str){ (const char *)p, n } : (sg_str){ "", 0 };
}

bool sg_tls_alpn_is_h2(const sg_tls_conn *c)
{
    return sg_str_eq_lit(sg_tls_alpn(c), "h2");
}

const char *sg_tls_server_name(const sg_tls_conn *c)
{
    return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

const sg_server_conf *sg_tls_server(const sg_tls_conn *c)
{
    return c->server;
}

const char *sg_tls_protocol(const sg_tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

const char *sg_tls_cipher(const sg_tls_conn *c)
{
    return SSL_get_cipher_name(c->ssl);
}

size_t sg_tls_session_id(const sg_tls_conn *c, char *hex, size_t n)
{
    static const char digits[] = "0123456789ABCDEF";
    const SSL_SESSION *sess = SSL_get_session(c->ssl);
    unsigned int len = 0;
    const unsigned char *id = sess ? SSL_SESSION_get_id(sess, &len) : NULL;
    size_t k = 0;
    for (unsigned int i = 0; id && i < len && k + 2 < n; i++) {
        hex[k++] = digits[id[i] >> 4];
        hex[k++] = digits[id[i] & 0xf];
    }
    if (n) hex[k] = 0;
    return k;
}

bool sg_tls_session_reused(const sg_tls_conn *c)
{
    return SSL_session_reused(c->ssl) == 1;
}

SSL *sg_tls_ssl(const sg_tls_conn *c)
{
    return c->ssl;
}

sg_tls_session *sg_tls_session_get(sg_tls_conn *c)
{
    SSL_SESSION *s = SSL_get1_session(c->ssl);
    if (s && !SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        s = NULL;
    }
    return s;
}

void sg_tls_session_free(sg_tls_session *s)
{
    SSL_SESSION_free(s);
}

sg_io_result sg_tls_shutdown(sg_tls_conn *c)
{
    if (!c->hs_done || c->fatal) return SG_IO_DONE;   /* OpenSSL forbids it after a fatal error */
    ERR_clear_error();
    int r = SSL_shutdown(c->ssl);
    int e = r < 0 ? SSL_get_error(c->ssl, r) : SSL_ERROR_NONE;
    ERR_clear_error();
    return e == SSL_ERROR_WANT_WRITE ? SG_IO_AGAIN : SG_IO_DONE;
}

void sg_tls_free(sg_tls_conn *c)
{
    if (!c) return;
    /* OpenSSL marks the session of a connection freed without a
     * close_notify exchange as not resumable; keep it usable unless the
     * connection failed (nginx does the same). */
    if (c->hs_done && !c->fatal) SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c->ssl);
    ERR_clear_error();
    free(c);
}

/* ---------------- server handshakes before a codec takes over ---------------- */

typedef struct hs_conn hs_conn;
struct hs_conn {
    sg_io io;                          /* first: the loop hands back &io */
    sg_timer timer;
    sg_loop *loop;
    sg_conf *gen;
    sg_tls_conn *tls;
    sg_tls_ready_fn ready;
    void *arg;
    struct sockaddr_storage peer, local;
    socklen_t peerlen, locallen;
    sg_list_node link;                 /* the thread's handshakes */
    bool peeked;                       /* tls: the first byte was looked at */
};

static _Thread_local sg_list hs_list;
static _Thread_local size_t hs_count;

static void hs_end(hs_conn *h, bool close_fd)
{
    sg_timer_disarm(&h->timer);
    sg_loop_del(h->loop, &h->io);
    sg_list_remove(&h->link);
    hs_count--;
    if (close_fd) {
        sg_tls_free(h->tls);
        close(h->io.fd);
    }
    sg_conf_unref(h->gen);
    free(h);
}

/* tls: a client speaking plain HTTP to a TLS port gets nginx's answer
 * (its 497 page, as a 400) instead of a TLS alert it cannot read. What it
 * sent is read first, so that closing does not reset the answer away. */
static void plain_http(hs_conn *h)
{
    static const char body[] =
        "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n"
        "<center><h1>400 Bad Request</h1></center>\r\n"
        "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
        "<hr><center>streamgate</center>\r\n</body>\r\n</html>\r\n";
    char head[160], buf[4096];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n", sizeof(body) - 1);
    sg_log(SG_LOG_INFO, "client sent plain HTTP request to HTTPS port, client: %s", h->tls->peer);
    for (int i = 0; i < 16 && read(h->io.fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf); i++) {}
    struct iovec iov[2] = { { head, (size_t)n }, { (void *)body, sizeof(body) - 1 } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
    (void)!sendmsg(h->io.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(h->io.fd, SHUT_WR);
    hs_end(h, true);
}

static void hs_step(hs_conn *h)
{
    if (!h->peeked) {
        unsigned char b;
        ssize_t k = recv(h->io.fd, &b, 1, MSG_PEEK);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        h->peeked = true;
        /* a TLS record (handshake: 22) or an SSLv2-style hello (high bit) */
        if (k == 1 && b != 0x16 && !(b & 0x80)) {
            plain_http(h);
            return;
        }
    }
    sg_io_result r = sg_tls_handshake(h->tls);
    if (r == SG_IO_AGAIN) return;
    if (r == SG_IO_ERROR) {
        sg_stats_add(SG_ST_TLS_FAILED, 1);
        hs_end(h, true);
        return;
    }
    sg_stats_add(SG_ST_TLS_HANDSHAKES, 1);
    if (sg_tls_session_reused(h->tls)) sg_stats_add(SG_ST_TLS_RESUMED, 1);
    struct sockaddr_storage peer = h->peer, local = h->local;   /* h is freed below */
    sg_tls_accepted a = {
        .tls = h->tls, .fd = h->io.fd,
        .peer = (const struct sockaddr *)&peer, .peerlen = h->peerlen,
        .local = (const struct sockaddr *)&local, .locallen = h->locallen,
    };
    sg_tls_ready_fn ready = h->ready;
    void *arg = h->arg;
    sg_conf_ref(h->gen);               /* the group stays valid while ready() looks at it */
    sg_conf *gen = h->gen;
    hs_end(h, false);
    ready(&a, arg);
    sg_conf_unref(gen);
}

static void hs_on_event(sg_io *io, uint32_t events)
{
    hs_step((hs_conn *)io);
}

static void hs_on_timeout(sg_timer *t)
{
    hs_conn *h = (hs_conn *)((char *)t - offsetof(hs_conn, timer));
    sg_log(SG_LOG_INFO, "client timed out while SSL handshaking, client: %s", h->tls->peer);
    sg_stats_add(SG_ST_TLS_FAILED, 1);
    hs_end(h, true);
}

void sg_tls_accept(sg_loop *l, sg_conf *gen, const sg_listen_group *g, int fd,
                   const struct sockaddr *peer, socklen_t peerlen,
                   const struct sockaddr *local, socklen_t locallen,
                   uint32_t timeout_ms, sg_tls_ready_fn ready, void *arg)
{
    sg_tls_conn *tls = sg_tls_server_new(g, fd, peer);
    if (!tls) {
        close(fd);
        return;
    }
    hs_conn *h = sg_xcalloc(1, sizeof(*h));
    h->io.fd = fd;
    h->io.on_event = hs_on_event;
    h->loop = l;
    h->gen = gen;
    sg_conf_ref(gen);
    h->tls = tls;
    h->ready = ready;
    h->arg = arg;
    if (!peer || peerlen > sizeof(h->peer)) peerlen = peer ? sizeof(h->peer) : 0;
    if (!local || locallen > sizeof(h->local)) locallen = local ? sizeof(h->local) : 0;
    if (peerlen) memcpy(&h->peer, peer, peerlen);
    if (locallen) memcpy(&h->local, local, locallen);
    h->peerlen = peerlen;
    h->locallen = locallen;
    sg_list_push(&hs_list, &h->link);
    hs_count++;
    sg_timer_init(&h->timer, hs_on_timeout);
    if (sg_loop_add(l, &h->io) < 0) {
        sg_log_error("epoll_ctl() failed: %s, client: %s", strerror(errno), tls->peer);
        hs_end(h, true);
        return;
    }
    sg_timer_arm(l, &h->timer, timeout_ms);
    hs_step(h);                        /* the ClientHello may be there already */
}

size_t sg_tls_accept_count(void)
{
    return hs_count;
}

void sg_tls_accept_close_all(void)
{
    while (!sg_list_empty(&hs_list)) hs_end(sg_list_entry(sg_list_first(&hs_list), hs_conn, link), true);
}
