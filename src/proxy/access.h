/* allow / deny (nginx's access phase): whether a client address may use a
 * location. */
#ifndef SG_PROXY_ACCESS_H
#define SG_PROXY_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "conf/conf.h"

/* The first rule matching `client` decides; no rule matching allows. An
 * IPv4-mapped IPv6 client (a dual-stack listener) matches IPv4 rules. */
bool sg_access_allows(const sg_access_rule *rules, size_t n, const struct sockaddr *client);

#endif
