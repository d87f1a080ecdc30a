/* The upstream side of an exchange: what the proxy core asks of an
 * upstream codec (HTTP/1.1 client now; an HTTP/2 stream later), and the
 * events the codec reports back. The request is protocol-neutral: method,
 * path, authority and end-to-end headers; the codec adds its framing. */
#ifndef SG_EXCHANGE_UPSTREAM_LINK_H
#define SG_EXCHANGE_UPSTREAM_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include "core/buf.h"
#include "http/h1_parser.h"
#include "exchange/request.h"

typedef struct sg_exchange sg_exchange;
typedef struct sg_upstream_link sg_upstream_link;
typedef struct sg_tls_conn sg_tls_conn;

typedef struct sg_upstream_request {
    sg_str method;
    sg_str target;                /* path and query as sent */
    const sg_header *headers;     /* end-to-end, including Host */
    size_t nheaders;
    int64_t content_length;       /* -1: chunked / unknown; 0: no body */
    int http_minor;               /* proxy_http_version 1.0 or 1.1 */
    /* Asks to switch protocols (Upgrade is among the headers): the head
     * goes without body framing and is the whole request; a 101 answer
     * makes the link raw: send_data writes bytes as they are, send_end
     * is a FIN (once the queue is written), and everything after the 101
     * comes back through sg_proxy_up_data until the peer closes. */
    bool upgrade;
    /* RFC 8441 extended CONNECT (HTTP/2 links only): the :protocol asked
     * for, method CONNECT. The stream is a tunnel from the start: no
     * content length, send_data carries tunnel bytes, send_end is the
     * END_STREAM; a 2xx head opens it, DATA after it is tunnel data. */
    sg_str protocol;
} sg_upstream_request;

typedef struct sg_upstream_link_ops {
    void (*send_head)(sg_upstream_link *l, const sg_upstream_request *req);
    void (*send_data)(sg_upstream_link *l, const char *p, size_t n);
    void (*send_end)(sg_upstream_link *l);
    size_t (*pending)(sg_upstream_link *l);
    void (*want_response)(sg_upstream_link *l, bool on);
    /* The exchange is done with the link: back to the pool if the
     * message exchange was complete and clean, else closed. */
    void (*release)(sg_upstream_link *l);
    void (*close)(sg_upstream_link *l);
    /* Called during sg_proxy_up_head() of a 101 on an upgrade request:
     * gives the socket up for a tunnel. Unsent request bytes move into
     * *to_upstream (empty on entry), bytes that followed the 101 are
     * appended to *to_client, and the connection's TLS state (NULL when
     * plain) goes to *tls. The link is gone afterwards. Returns the fd,
     * -1 if this codec cannot (a multiplexed HTTP/2 connection). */
    int (*detach)(sg_upstream_link *l, sg_outq *to_upstream, sg_outq *to_client, sg_tls_conn **tls);
} sg_upstream_link_ops;

struct sg_upstream_link {
    const sg_upstream_link_ops *ops;
    sg_exchange *ex;
    bool reused;                  /* came from the keep-alive pool */
};

typedef enum sg_up_error {
    SG_UP_CONNECT,                /* connect() failed */
    SG_UP_CONNECT_TIMEOUT,
    SG_UP_TIMEOUT,                /* proxy_read_timeout / proxy_send_timeout */
    SG_UP_CLOSED,                 /* closed or reset before the response completed */
    SG_UP_INVALID,                /* invalid response head */
    /* The peer cannot carry this request (an extended CONNECT to a peer
     * without SETTINGS_ENABLE_CONNECT_PROTOCOL): nothing was sent, and
     * the peer is not at fault. */
    SG_UP_UNSUPPORTED,
} sg_up_error;

/* ---- events from upstream codecs to the core (proxy/proxy.c) ---- */
void sg_proxy_up_connected(sg_exchange *ex);
void sg_proxy_up_error(sg_exchange *ex, sg_up_error err, bool nothing_received);
void sg_proxy_up_head(sg_exchange *ex, const sg_h1_message *resp);
void sg_proxy_up_data(sg_exchange *ex, const char *p, size_t n);
void sg_proxy_up_end(sg_exchange *ex);
void sg_proxy_up_drain(sg_exchange *ex);   /* upstream queue below the low mark */

#endif
