/* allow / deny, as ngx_http_access_module: rules are tried in the order
 * written and the first whose family and masked address match decides. */
#include "proxy/access.h"

#include <netinet/in.h>
#include <string.h>

static bool masked_equal(const uint8_t *a, const sg_access_rule *r, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((a[i] & r->mask[i]) != r->addr[i]) return false;
    return true;
}

static bool matches(const sg_access_rule *r, const struct sockaddr *client)
{
    if (r->family == 0) return true;                       /* all */
    if (!client) return false;
    switch (r->family) {
    case AF_UNIX:
        return client->sa_family == AF_UNIX;
    case AF_INET:
        if (client->sa_family == AF_INET)
            return masked_equal((const uint8_t *)&((const struct sockaddr_in *)client)->sin_addr, r, 4);
        if (client->sa_family == AF_INET6) {
            const struct in6_addr *a6 = &((const struct sockaddr_in6 *)client)->sin6_addr;
            return IN6_IS_ADDR_V4MAPPED(a6) && masked_equal(a6->s6_addr + 12, r, 4);
        }
        return false;
    case AF_INET6:
        return client->sa_family == AF_INET6 &&
               masked_equal(((const struct sockaddr_in6 *)client)->sin6_addr.s6_addr, r, 16);
    default:
        return false;
    }
}

bool sg_access_allows(const sg_access_rule *rules, size_t n, const struct sockaddr *client)
{
    for (size_t i = 0; i < n; i++)
        if (matches(&rules[i], client)) return !rules[i].deny;
    return true;
}
