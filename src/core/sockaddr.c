/* Socket addresses as text, and compared. */
#include "core/sockaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

char *sg_sockaddr_host(const struct sockaddr *sa, char *buf, size_t len)
{
    buf[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
    else if (sa->sa_family == AF_UNIX)   /* as nginx: "unix:" and the path, empty for an unnamed peer */
        snprintf(buf, len, "unix:%.*s", (int)sizeof(((const struct sockaddr_un *)sa)->sun_path),
                 ((const struct sockaddr_un *)sa)->sun_path);
    else
        snprintf(buf, len, "unix:");
    return buf;
}

int sg_sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

char *sg_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[64];
    if (sa->sa_family == AF_UNIX) return sg_sockaddr_host(sa, buf, len);   /* "unix:/path": no port */
    sg_sockaddr_host(sa, host, sizeof(host));
    if (sa->sa_family == AF_INET6) snprintf(buf, len, "[%s]:%d", host, sg_sockaddr_port(sa));
    else snprintf(buf, len, "%s:%d", host, sg_sockaddr_port(sa));
    return buf;
}

bool sg_sockaddr_eq(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family) return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    if (a->sa_family == AF_UNIX) {     /* the same socket file (an unnamed peer has an empty path) */
        const struct sockaddr_un *x = (const void *)a, *y = (const void *)b;
        return strncmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0;
    }
    return false;
}
