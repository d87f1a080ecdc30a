/* Placeholder until the stream proxy lands. */
#include "proxy/stream_proxy.h"

#include <unistd.h>

void sg_stream_proxy_accept(sg_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen,
                            const struct sockaddr *local, socklen_t locallen,
                            const struct sg_stream_server_conf *srv)
{
    (void)w; (void)peer; (void)peerlen; (void)local; (void)locallen; (void)srv;
    close(fd);
}
