/* What nginx's http ssl module decides per request on a TLS connection,
 * before any location runs: which server block serves it when SNI named
 * one, 421 when the Host asks another server than the one whose
 * client-certificate rules the handshake applied, and the
 * ssl_verify_client check (495/496, answered as nginx's 400 pages). */
#ifndef SG_PROXY_TLS_REQUEST_H
#define SG_PROXY_TLS_REQUEST_H

#include "conf/conf.h"
#include "exchange/exchange.h"

/* The server for request r on a TLS connection when SNI decides it (no
 * Host: the server the handshake chose), else NULL (route by Host).
 * *status becomes 421 when the handshake's name differs from the Host and
 * the Host's server (or the default one) verifies client certificates. */
const sg_server_conf *sg_tls_request_server(sg_http_req *r, int *status);

/* ssl_verify_client of the request's server: 0, or 495 / 496 (logged at
 * info, as nginx). */
int sg_tls_request_check(sg_exchange *ex);

#endif
