/* The listening sockets, owned by the main thread: one SO_REUSEPORT
 * socket per address per worker (the kernel spreads connections), kept
 * across reloads for every address the new configuration still has, so a
 * reload never refuses a connection. A reload opens what is new first
 * (and fails without changing anything if it cannot), and closes what the
 * new generation no longer listens on only once every worker has
 * switched. A unix socket (`listen unix:/path`) is one socket shared by
 * the workers (a dup() each: Linux has no SO_REUSEPORT spreading for
 * AF_UNIX); its file is removed when its slot is closed. */
#ifndef SG_SERVER_LISTENERS_H
#define SG_SERVER_LISTENERS_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"

/* Opens sockets for every address of c not open yet (n per address) and
 * marks the ones c uses. On failure (false + err) closes what it opened
 * and leaves the open set as it was. *mark receives what
 * sg_listeners_rollback() needs to undo the call. */
bool sg_listeners_open(const sg_conf *c, int n, size_t *mark, char *err, size_t errlen);
/* Undoes sg_listeners_open() (c could not be activated after all). */
void sg_listeners_rollback(size_t mark, int n);
/* Closes the sockets of addresses the last opened generation dropped. */
void sg_listeners_close_unused(int n);
void sg_listeners_close_all(int n);
/* Worker `worker`'s socket for each listen group of c, in c->listens
 * order (the caller frees the array). */
int *sg_listeners_fds(const sg_conf *c, int worker);

#endif
