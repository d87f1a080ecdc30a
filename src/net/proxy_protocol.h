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

#endif
