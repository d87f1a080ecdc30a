/* OpenSSL contexts built from the compiled TLS settings (conf.h's
 * sg_ssl_conf, sg_ssl_upstream_conf), once per generation at load time by
 * sg_ssl_conf_finish() (conf/ssl_conf.c): certificates and keys,
 * protocols, ciphers, session cache, timeout and tickets, DH parameters,
 * curves; on the client side verification, a client certificate and the
 * ALPN offer. Building them is compilation: a bad file is reported by `-t`
 * with the position of the directive to blame.
 *
 * Contexts are shared read-only by every worker thread (OpenSSL 3 locks
 * its session cache itself) and freed with the generation. What runs per
 * handshake is the transport's (net/tls.c): it adds its callbacks to every
 * server context through the hook below, so conf never includes net. */
#ifndef SG_CONF_SSL_CTX_H
#define SG_CONF_SSL_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"

struct ssl_ctx_st;

/* The transport's part of a server context: the callbacks a handshake
 * runs (SNI choosing the server block, ALPN the protocol). net/tls.c
 * registers its setup once at start (sg_tls_init()), before any
 * configuration is loaded and before any worker thread exists; every
 * server context is passed to it right after it is built, before anyone
 * shares it. Without one (the default) contexts have no such callbacks,
 * which is enough to check a configuration. */
typedef void (*sg_ssl_server_setup_fn)(struct ssl_ctx_st *ctx);
void sg_ssl_set_server_setup(sg_ssl_server_setup_fn fn);
/* The same for client (upstream) contexts: net/tls.c's session callback
 * (sg_tls_on_session), for stream's proxy_ssl_session_reuse. */
void sg_ssl_set_client_setup(sg_ssl_server_setup_fn fn);

/* Server context for one server block's ssl_* values. `ticket_keys`: the
 * generation's 80 random bytes (name, HMAC and AES keys), the same for
 * every context so that a ticket issued under one server's context is
 * readable under the context SNI switches to. On error returns NULL, the
 * message in msg and the position of the directive to blame in *where.
 * `sc` must outlive the context's handshakes (it lives in the generation,
 * which they hold). */
struct ssl_ctx_st *sg_ssl_server_ctx_new(const sg_ssl_conf *sc, const unsigned char ticket_keys[80],
                                         char *msg, size_t msglen, sg_conf_pos *where);

/* Client context for proxy_ssl_* / grpc_ssl_* values. `h2` offers ALPN "h2"
 * (gRPC), else "http/1.1". `at` is reported when no single directive is to
 * blame (proxy_ssl_verify without a trusted certificate). */
struct ssl_ctx_st *sg_ssl_client_ctx_new(const sg_ssl_upstream_conf *u, bool h2, sg_conf_pos at,
                                         char *msg, size_t msglen, sg_conf_pos *where);

void sg_ssl_ctx_free(struct ssl_ctx_st *ctx);

/* "SSL: error:...: ... error:...: ..." from the thread's OpenSSL error
 * queue, which is left empty (a stale entry would make the next
 * SSL_get_error() lie). Shared with the transport's log lines. */
void sg_ssl_errors(char *buf, size_t n);

#endif
