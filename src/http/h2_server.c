/* Placeholder until the HTTP/2 server codec lands. */
#include "http/h2_server.h"

#include <unistd.h>
#include "core/log.h"

void sg_h2_server_accept(sg_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen,
                         const struct sockaddr *local, socklen_t locallen,
                         const char *pre, size_t npre)
{
    (void)w; (void)peer; (void)peerlen; (void)local; (void)locallen; (void)pre; (void)npre;
    sg_log_error("HTTP/2 is not supported yet");
    close(fd);
}
