/* Protocol upgrades through the proxy: which requests ask for one, the
 * WebSocket handshake checks of RFC 6455 section 4, and whether a
 * backend's 101 really answers what was asked.
 *
 * The proxy forwards an upgrade request only when the client offered a
 * protocol (Upgrade + Connection: upgrade) other than h2c, which is never
 * honoured: streamgate speaks HTTP/2 to clients itself. A 101 is accepted
 * only if it names one of the offered protocols, and for WebSocket only if
 * its Sec-WebSocket-Accept proves the backend read this request's key. */
#ifndef SG_PROXY_UPGRADE_H
#define SG_PROXY_UPGRADE_H

#include <stdbool.h>
#include "core/str.h"
#include "exchange/request.h"

#define SG_WS_KEY_LEN 24        /* base64 of 16 bytes */
#define SG_WS_ACCEPT_LEN 28     /* base64 of a SHA-1 digest */

typedef enum sg_upgrade_kind {
    SG_UPGRADE_NONE = 0,
    SG_UPGRADE_OTHER,           /* a protocol token other than websocket */
    SG_UPGRADE_WEBSOCKET,       /* websocket among the offered tokens */
} sg_upgrade_kind;

/* True if the comma-separated list has `tok` (case-insensitive, OWS
 * around elements ignored). */
bool sg_token_list_has(sg_str list, sg_str tok);

/* What an HTTP/1.x request offers to upgrade to: NONE unless it has an
 * Upgrade header and "upgrade" among its Connection tokens. *offer gets
 * the Upgrade value to forward, without h2c tokens (allocated in `a`
 * when something had to be removed); only h2c offered is NONE. */
sg_upgrade_kind sg_upgrade_offered(const sg_http_req *r, sg_arena *a, sg_str *offer);

typedef enum sg_ws_check {
    SG_WS_OK = 0,
    SG_WS_BAD_REQUEST,          /* not GET, HTTP/1.0, missing/repeated/malformed key, no version */
    SG_WS_BAD_VERSION,          /* a version other than 13 */
} sg_ws_check;

/* RFC 6455 4.2.1 checks of a WebSocket upgrade request. Both failures
 * are answered 400; a bad version also gets "Sec-WebSocket-Version: 13"
 * (RFC 6455 4.4 asks for "an appropriate HTTP error code (such as 426)"
 * and that header). */
sg_ws_check sg_ws_check_request(const sg_http_req *r);

/* True if key is 24 base64 characters ending in "==" (16 bytes). */
bool sg_ws_key_valid(sg_str key);

/* base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), NUL-terminated. */
void sg_ws_accept(sg_str key, char out[SG_WS_ACCEPT_LEN + 1]);

/* A fresh random key (16 random bytes, base64), NUL-terminated. */
void sg_ws_key_new(char out[SG_WS_KEY_LEN + 1]);

/* Checks a backend's 101 against the request: its Upgrade must name one
 * of the `offer` tokens, and if that is websocket, Sec-WebSocket-Accept
 * must match `ws_key` (when the request had a valid one). `h`: the 101's fields, as the upstream codec
 * reported them. NULL if acceptable, else the reason (error log). */
const char *sg_upgrade_check_101(const sg_header *h, size_t n, sg_str offer, sg_str ws_key);

#endif
