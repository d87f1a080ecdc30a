/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one
 * datagram of "KEY=VALUE" lines to the unix socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). Does
 * nothing when the variable is unset (not started by systemd). */
#ifndef SG_SERVER_SDNOTIFY_H
#define SG_SERVER_SDNOTIFY_H

#include <stdbool.h>

/* Sends `state` ("READY=1", "RELOADING=1\nMONOTONIC_USEC=...", ...).
 * False when there is a socket and the send failed. */
bool sg_sd_notify(const char *state);
/* "RELOADING=1" with the MONOTONIC_USEC systemd's notify-reload wants. */
void sg_sd_notify_reloading(void);

#endif
