/* What a request can read of its connection's TLS state: nginx's $ssl_*
 * variables and $https, and the client-certificate check nginx makes
 * before a request is served (ssl_verify_client).
 *
 * Values are computed when asked for, from the live SSL object, into the
 * request's arena: a request that reads none costs nothing. */
#ifndef SG_NET_TLS_VARS_H
#define SG_NET_TLS_VARS_H

#include <stddef.h>
#include "conf/vars.h"
#include "core/str.h"
#include "net/tls.h"

/* The value of TLS variable `id` (sg_tls_var_id) on connection c, in
 * arena a. c NULL (a plain connection): $https is "" and the others are
 * "not found" (p == NULL), as in nginx. */
sg_str sg_tls_var(const sg_tls_conn *c, int id, sg_arena *a);

/* The client-certificate check of ssl_verify_client mode `mode`
 * (SG_SSL_VERIFY_*): 0 when the request may go on; 495 when the
 * certificate did not verify (optional_no_ca lets the errors of an
 * unknown issuer pass), 496 when `on` and the client sent none. The
 * reason for the log is written into why. */
int sg_tls_client_check(const sg_tls_conn *c, int mode, char *why, size_t whylen);

#endif
