/* Per-request decisions of the http ssl module. See tls_request.h. */
#include "proxy/tls_request.h"

#include <string.h>

#include "core/log.h"
#include "net/tls.h"
#include "net/tls_vars.h"
#include "proxy/router.h"

const sg_server_conf *sg_tls_request_server(sg_http_req *r, int *status)
{
    const sg_server_conf *hs = sg_tls_server(r->tls);
    if (r->host.n == 0) return hs;
    const char *sni = sg_tls_server_name(r->tls);
    if (!sni) return NULL;
    size_t n = strlen(sni);
    if (n && sni[n - 1] == '.') n--;
    if (sg_str_caseeq((sg_str){ sni, n }, r->host)) return NULL;   /* the router finds the same */
    /* nginx: a client that verified against one server's CAs must not
     * reach another server by naming it in Host */
    const sg_server_conf *s = r->group ? sg_router_server(r->group, r->host, r) : NULL;
    if (s && s->ssl.verify_client != SG_SSL_VERIFY_OFF) *status = 421;
    return NULL;
}

int sg_tls_request_check(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    if (!r->srv || r->srv->ssl.verify_client == SG_SSL_VERIFY_OFF) return 0;
    char why[256];
    int st = sg_tls_client_check(r->tls, r->srv->ssl.verify_client, why, sizeof(why));
    if (st) sg_ex_log(ex, SG_LOG_INFO, "%s", why);
    return st;
}
