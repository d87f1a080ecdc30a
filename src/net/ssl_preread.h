/* ssl_preread: what a TLS ClientHello says before any handshake
 * (nginx's ngx_stream_ssl_preread_module), read from the first bytes a
 * client sends: the SNI name, the ALPN protocols and the highest
 * protocol version it offers. The parser is pure (no I/O): it is given
 * everything read so far and tells whether it needs more. */
#ifndef SG_NET_SSL_PREREAD_H
#define SG_NET_SSL_PREREAD_H

#include <stddef.h>

typedef enum sg_preread_status {
    SG_PREREAD_AGAIN = 0,          /* a ClientHello is coming: read more */
    SG_PREREAD_DONE,               /* parsed: the fields below are set */
    SG_PREREAD_NOT_TLS,            /* not a ClientHello (or a malformed one): fields left empty */
} sg_preread_status;

typedef struct sg_preread_info {
    char server_name[256];         /* "" if none */
    char alpn[512];                /* "h2,http/1.1" ("" if none; cut if longer) */
    char protocol[16];             /* "TLSv1.2", "TLSv1.3", "SSLv3", "SSLv2"; "" if unknown */
} sg_preread_info;

/* Parses the client's first n bytes. `out` is zeroed first. */
sg_preread_status sg_ssl_preread_parse(const unsigned char *p, size_t n, sg_preread_info *out);

#endif
