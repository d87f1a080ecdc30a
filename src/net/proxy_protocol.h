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
    /* v2: the TLVs after the addresses (pointing into the parsed bytes),
     * every one checked to fit, and those of a PP2_TYPE_SSL too */
    const uint8_t *tlv;
    size_t tlv_len;
} sg_pp_info;

typedef enum sg_pp_result {
    SG_PP_DONE,          /* *used bytes were the header; *out is filled */
    SG_PP_MORE,          /* a valid beginning: read more */
    SG_PP_INVALID,       /* not a PROXY header, or a broken one */
} sg_pp_result;

sg_pp_result sg_pp_parse(const uint8_t *p, size_t n, sg_pp_info *out, size_t *used);

/* What a connection keeps of its header: a block whose [0] is the
 * client's address and [1] the address it connected to (what the rest of
 * the code reads), followed by a copy of the TLVs. NULL when the header
 * gave no addresses (LOCAL, UNKNOWN, AF_UNSPEC: nginx keeps nothing
 * then either). free() releases it. */
struct sockaddr_storage *sg_pp_block_new(const sg_pp_info *info);
/* The TLVs of such a block (NULL block: none). */
void sg_pp_block_tlvs(const struct sockaddr_storage *block, const uint8_t **tlv, size_t *len);

/* nginx's $proxy_protocol_tlv_NAME (1.23.2): NAME is alpn, authority,
 * unique_id, netns, ssl (the raw PP2_TYPE_SSL value), a type in hex
 * ("0x1", "0x000ae": at most 0xff), ssl_verify (the SSL TLV's verify
 * field in decimal, written into num), or ssl_version, ssl_cn,
 * ssl_cipher, ssl_sig_alg, ssl_key_alg, ssl_0xNN (a sub-TLV of the SSL
 * TLV); names are case-insensitive. The first TLV of the type is the
 * answer. Returns 1 (found: *val, *vlen), 0 (not there), -1 (NAME is
 * no TLV name: nginx logs "unknown PROXY protocol TLV"). */
#define SG_PP_TLV_NUM_MAX 12
int sg_pp_tlv_find(const uint8_t *tlv, size_t len, const char *name, size_t namelen,
                   const uint8_t **val, size_t *vlen, char num[SG_PP_TLV_NUM_MAX]);

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

/* The room sg_pp_write_v2 needs: 16 bytes of header and 216 of AF_UNIX
 * addresses at most. */
#define SG_PP_V2_WRITE_MAX 232

/* streamgate's `proxy_protocol_version 2`: the version 2 (binary) header,
 * command PROXY, TCP over IPv4 or IPv6 with both addresses; for other
 * families or when the two differ, command LOCAL with AF_UNSPEC (as a v1
 * "PROXY UNKNOWN": the receiver uses the connection's own addresses).
 * No TLVs. buf has SG_PP_V2_WRITE_MAX bytes; returns the length. */
size_t sg_pp_write_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *buf);

#endif
