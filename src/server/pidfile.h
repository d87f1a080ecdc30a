/* The pid file, locked for the process's life (flock on its open file),
 * so that a second streamgate of the same configuration refuses to start
 * instead of binding the same ports beside the first (SO_REUSEPORT would
 * let it, and it would silently take half the connections).
 *
 * The lock is taken before the listeners are bound when the file exists
 * (a running instance always has one); the file is written only once
 * every listener is bound, because scripts (nginx-tests, systemd's
 * PIDFile=) read its appearance as "ready". A stale file (nobody holds its
 * lock) is taken over. The descriptor is close-on-exec, so a binary
 * upgrade's new process does not inherit the old one's lock: the old one
 * renames its file to PID.oldbin and the new one locks a new PID. */
#ifndef SG_SERVER_PIDFILE_H
#define SG_SERVER_PIDFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Before binding: false when a running process holds the lock on `path`
 * (*holder: its pid from the file, 0 if unreadable) or the file cannot be
 * opened (err). A missing file is fine: sg_pidfile_write creates it. */
bool sg_pidfile_lock(const char *path, pid_t *holder, char *err, size_t errlen);
/* Once listening: writes our pid into the locked file (creating and
 * locking it if there was none). False + err if another process took the
 * lock in between (two started at once) or the file cannot be written. */
bool sg_pidfile_write(const char *path, pid_t *holder, char *err, size_t errlen);
/* Moves the file (binary upgrade: PID -> PID.oldbin, and back); the lock
 * stays, it belongs to the open file. */
bool sg_pidfile_rename(const char *from, const char *to);
/* At exit: removes the file at `path` if it is still ours, drops the lock. */
void sg_pidfile_remove(const char *path);
/* The pid written in `path` (0 if none). */
pid_t sg_pidfile_read(const char *path);

#endif
