/* The server: worker threads, each running one event loop with its own
 * listening sockets (SO_REUSEPORT: the kernel spreads connections), its
 * own upstream connection pools and timers, so the request path shares
 * nothing but the configuration generation (read-only) and the balancers.
 *
 * This is the main thread's API. A reload opens what is new first (and
 * fails without changing anything if it cannot), then hands each worker
 * its new generation and sockets through a mailbox, waits until all have
 * switched, and only then closes what the new generation no longer
 * listens on. */
#ifndef SG_SERVER_SERVER_H
#define SG_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include "conf/conf.h"

#define SG_MAX_WORKERS 64

/* Starts `n` worker threads serving generation c (listeners opened here;
 * false + err if a listen address cannot be bound). */
bool sg_server_start(sg_conf *c, int n, char *err, size_t errlen);
/* Activates a new generation (reload). False + err, and nothing changed,
 * if its listeners or log files cannot be opened. */
bool sg_server_reload(sg_conf *c, char *err, size_t errlen);
/* Graceful (finish in-flight exchanges) or fast stop; returns when every
 * worker thread has exited. */
void sg_server_stop(bool graceful);
/* Every worker writes out its buffered access log lines (before a reopen). */
void sg_server_flush_logs(void);
/* Every listening descriptor (binary upgrade: what the new process
 * inherits); the caller frees *out. */
size_t sg_server_listen_fds(int **out);

#endif
