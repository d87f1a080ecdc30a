/* TLS directives: ssl_* (server side, http and server level) and
 * proxy_ssl_* / grpc_ssl_* (upstream side, per location).
 *
 * The setters below fill conf.h's sg_ssl_conf / sg_ssl_upstream_conf from
 * lines of the main table (conf/directives.c), so inheritance is the
 * table's generic one. Once the whole file is read, sg_ssl_conf_finish()
 * builds one server SSL_CTX per distinct server setting (conf/ssl_ctx.h), and
 * whoever binds an upstream that speaks TLS asks sg_ssl_upstream_ctx() for
 * its client context. Every context is freed with the generation. */
#ifndef SG_CONF_SSL_CONF_H
#define SG_CONF_SSL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"
#include "conf/directives.h"

/* ssl_certificate, ssl_certificate_key: a list (several pairs per server,
 * e.g. RSA and ECDSA); a level that names any replaces the inherited list. */
bool sg_ssl_set_certificate(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* A file (sg_ssl_value, made absolute against the prefix): ssl_dhparam,
 * proxy_ssl_trusted_certificate, proxy_ssl_certificate(_key)... */
bool sg_ssl_set_file(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* A string (sg_ssl_value): ssl_ciphers, ssl_ecdh_curve, proxy_ssl_ciphers. */
bool sg_ssl_set_string(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* ssl_protocols / proxy_ssl_protocols: SSLv2 SSLv3 TLSv1 TLSv1.1 TLSv1.2 TLSv1.3. */
bool sg_ssl_set_protocols(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* ssl_session_cache off | none | [builtin[:size]] [shared:name:size]. */
bool sg_ssl_set_session_cache(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* proxy_ssl_name / grpc_ssl_name: a value with variables (sg_cval, then name_set). */
bool sg_ssl_set_name(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* `ssl on|off`: removed in nginx 1.25.1; refused with a pointer to `listen ... ssl`. */
bool sg_ssl_set_obsolete(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

/* tls: ssl_verify_client on | off | optional | optional_no_ca (an int). */
bool sg_ssl_set_verify_client(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* tls: ssl_conf_command NAME VALUE: appended to the level's list. */
bool sg_ssl_set_conf_command(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* tls: ssl_early_data on|off: accepted; 0-RTT data is never accepted (a notice says so). */
bool sg_ssl_set_early_data(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

/* Defaults of the http level (nginx's). */
void sg_ssl_conf_defaults(sg_loc_conf *lc, sg_server_conf *srv);

/* After listen groups are built and passes bound: checks certificate/key
 * pairs, builds the server contexts (shared by servers with identical
 * settings), requires a certificate on the default server of every ssl
 * address, and builds the client context of every location whose pass
 * URL is https:// or grpcs:// (moving those without a port to 443).
 * False + "file:line:col: message" (the directive to blame) in cx->err. */
bool sg_ssl_conf_finish(sg_cctx *cx);

/* The upstream TLS settings of location lc: grpc_ssl_* for grpc_pass
 * grpcs://, proxy_ssl_* for proxy_pass https://; NULL when its upstream
 * speaks plain text (or it proxies nothing). Their ctx is built. */
const sg_ssl_upstream_conf *sg_ssl_upstream_of(const sg_loc_conf *lc);

/* Whether `name` (sg_ssl_upstream_name(), exchange/vars.h: the name a
 * request makes) can be sent as SNI / checked against the certificate:
 * shorter than 256 bytes, and not empty when u verifies (nginx refuses
 * to match a certificate against nothing). A request-made name that is
 * not is the request's fault, never the peer's. */
bool sg_ssl_upstream_name_ok(const sg_ssl_upstream_conf *u, sg_str name);

/* Sets u->ctx to a client context for u (`h2`: ALPN h2, for grpcs://),
 * shared with identical settings of the same generation. `at` is the
 * position reported when no single ssl directive is to blame (the
 * proxy_pass / grpc_pass line). False + "file:line:col: message" in err. */
bool sg_ssl_upstream_ctx(sg_conf *c, sg_ssl_upstream_conf *u, bool h2, sg_conf_pos at,
                         char *err, size_t errlen);

#endif
