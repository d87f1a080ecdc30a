/* realip: see realip.h. The address is taken from the right of the header
 * value (the hop nearest to us); with real_ip_recursive, trusted addresses
 * are skipped leftwards and the first untrusted one is used, as
 * ngx_http_get_forwarded_addr(). */
#include "proxy/realip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "exchange/forwarded.h"
#include "proxy/access.h"

static bool trusted(const void *arg, const struct sockaddr *sa)
{
    const sg_loc_conf *lc = arg;
    for (size_t i = 0; i < lc->nrealip_from; i++) {
        sg_access_rule r = lc->realip_from[i];
        r.deny = true;   /* "matches" is what we ask */
        if (!sg_access_allows(&r, 1, sa)) return true;
    }
    return false;
}

void sg_realip_apply(sg_http_req *r, const sg_loc_conf *lc)
{
    if (r->conn_peer || lc->nrealip_from == 0 || !r->peer || !trusted(lc, r->peer)) return;
    if (sg_str_caseeq(lc->realip_header, SG_STR("proxy_protocol"))) {
        if (!r->proxy_protocol || r->proxy_protocol[0].ss_family == AF_UNSPEC) return;
        r->conn_peer = r->peer;
        r->peer = (const struct sockaddr *)&r->proxy_protocol[0];
        return;
    }
    sg_str v = sg_forwarded_values(r, lc->realip_header);
    struct sockaddr_storage found;
    if (!v.p || !sg_forwarded_addr(v, lc->realip_recursive, trusted, lc, &found)) return;
    struct sockaddr_storage *ss = sg_arena_alloc(&r->arena, sizeof(*ss));
    *ss = found;
    r->conn_peer = r->peer;
    r->peer = (const struct sockaddr *)ss;
}
