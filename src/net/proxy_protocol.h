/* The PROXY protocol header a load balancer (HAProxy, LVS setups, cloud
 * balancers) puts in front of a connection to carry the client's address:
 * version 1 (text) and version 2 (binary, TLVs skipped after their bounds
 * are checked), as haproxy.org's proxy-protocol.txt specifies. */
#ifndef SG_NET_PROXY_PROTOCOL_H
#define SG_NET_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header accepted (nginx's NGX_PROXY_PROTOCOL_MAX_HEADER):
 * a v1 line is at most 107 bytes; v2 TLVs may take the rest. */
#define SG_PP_MAX_HEADER 4096

typedef struct sg_pp_info {
    /* false: a LOCAL (v2) or UNKNOWN (v1) header, a health check of the
     * balancer itself: the connection's own addresses stay in use. */
    bool has_addrs;
    struct sockaddr_storage src, dst;
    socklen_t srclen, dstlen;
} sg_pp_info;

typedef enum sg_pp_result {
    SG_PP_DONE,          /* *used bytes were the header; *out is filled */
    SG_PP_MORE,          /* a valid beginning: read more */
    SG_PP_INVALID,       /* not a PROXY header, or a broken one */
} sg_pp_result;

sg_pp_result sg_pp_parse(const uint8_t *p, size_t n, sg_pp_info *out, size_t *used);

/* The room sg_pp_write_v1 needs: "PROXY TCP6 " + two IPv6 addresses (up to
 * 45 characters each in the ::ffff:a.b.c.d form), two ports, the spaces,
 * CRLF and a NUL. */
#define SG_PP_V1_WRITE_MAX 128

/* Writes the version 1 header a proxy sends its upstream for a connection
 * from src to dst, as nginx's proxy_protocol on: "PROXY TCP4 SRC DST SPORT
 * DPORT\r\n" (TCP6 for IPv6), "PROXY UNKNOWN\r\n" for other families or
 * when the two differ. buf has SG_PP_V1_WRITE_MAX bytes; returns the length
 * (NUL-terminated, the NUL not counted). */
size_t sg_pp_write_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf);

#endif
