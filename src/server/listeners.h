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
#include <sys/types.h>
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

/* Binary upgrade. The new process hands the descriptors it inherited to
 * sg_listeners_inherit() before its first sg_listeners_open(), which then
 * adopts the one bound to each address it listens on instead of binding
 * (a unix socket's file exists: bind would fail; a TCP address keeps its
 * accept queue, so nothing is refused). sg_listeners_inherit_done() closes
 * the ones the configuration does not use and returns how many. `from` is
 * the old process: while it runs, unix socket files we inherited are not
 * removed when we close them. */
void sg_listeners_inherit(const int *fds, size_t n, pid_t from);
/* "3;4;5;" (nginx's NGINX= format; ':' is accepted too) into fds, at most
 * max; 0 for anything else but numbers and separators. */
size_t sg_listeners_parse_fds(const char *v, int *fds, size_t max);
size_t sg_listeners_inherit_done(void);
/* The old process: every listening descriptor to pass on (*out, freed by
 * the caller); returns the count. */
size_t sg_listeners_all_fds(int n, int **out);
/* While a new binary listens on our sockets, closing them leaves unix
 * socket files in place. */
void sg_listeners_keep_files(bool keep);

#endif
