/* Socket helpers: non-blocking setup, addresses as text, connect. */
#ifndef SG_NET_SOCK_H
#define SG_NET_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "127.0.0.1:8080" / "[::1]:8080" into buf; returns buf. */
char *sg_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);
/* Address only ("127.0.0.1"), and the port. */
char *sg_sockaddr_host(const struct sockaddr *sa, char *buf, size_t len);
int sg_sockaddr_port(const struct sockaddr *sa);
bool sg_sockaddr_eq(const struct sockaddr *a, const struct sockaddr *b);

/* Opens a listening socket with SO_REUSEADDR and SO_REUSEPORT (one per
 * worker thread on the same address). -1 + errno on failure. */
int sg_listen_socket(const struct sockaddr *sa, socklen_t len, int backlog);

/* Starts a non-blocking connect. Returns the fd (connect in progress or
 * done), -1 + errno on immediate failure. */
int sg_connect_nonblock(const struct sockaddr *sa, socklen_t len);

/* Result of a finished non-blocking connect (SO_ERROR): 0 or an errno. */
int sg_connect_result(int fd);

void sg_sock_tune(int fd);   /* TCP_NODELAY for proxied traffic */

#endif
