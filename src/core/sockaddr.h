/* Socket addresses as text, and compared: plain data, for every layer
 * (the configuration compares listen addresses, the logs print them). */
#ifndef SG_CORE_SOCKADDR_H
#define SG_CORE_SOCKADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "127.0.0.1:8080" / "[::1]:8080" into buf; returns buf. */
char *sg_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);
/* Address only ("127.0.0.1"), and the port. */
char *sg_sockaddr_host(const struct sockaddr *sa, char *buf, size_t len);
int sg_sockaddr_port(const struct sockaddr *sa);
bool sg_sockaddr_eq(const struct sockaddr *a, const struct sockaddr *b);

#endif
