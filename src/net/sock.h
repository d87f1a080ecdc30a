/* Socket helpers: non-blocking setup, listen, connect (addresses as
 * text: core/sockaddr.h). */
#ifndef SG_NET_SOCK_H
#define SG_NET_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Opens a listening socket with SO_REUSEADDR and SO_REUSEPORT (one per
 * worker thread on the same address). -1 + errno on failure. */
int sg_listen_socket(const struct sockaddr *sa, socklen_t len, int backlog);
/* listen ... sndbuf= rcvbuf= so_keepalive= (0: leave the system's; keep
 * -1: off). Accepted sockets inherit them. */
void sg_listen_socket_opts(int fd, int sndbuf, int rcvbuf, int keepalive, int idle, int intvl, int cnt);

/* A bound datagram socket (stream `listen ... udp`), SO_REUSEPORT like
 * the above: the kernel keeps each client on one worker's socket.
 * connect_udp: a non-blocking datagram socket connected to sa (toward a
 * UDP upstream). -1 + errno on failure. */
int sg_udp_socket(const struct sockaddr *sa, socklen_t len);
int sg_connect_udp(const struct sockaddr *sa, socklen_t len);

/* Starts a non-blocking connect. Returns the fd (connect in progress or
 * done), -1 + errno on immediate failure. */
int sg_connect_nonblock(const struct sockaddr *sa, socklen_t len);

/* Result of a finished non-blocking connect (SO_ERROR): 0 or an errno. */
int sg_connect_result(int fd);

void sg_sock_tune(int fd);   /* TCP_NODELAY for proxied traffic */

#endif
