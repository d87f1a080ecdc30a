/* Access log: lines formatted by log_format, appended to a buffer per
 * file and thread and written at the end of the loop iteration (a log
 * without buffer=), or when the buffer fills or `flush` time passes
 * (gzip: each write one gzip member), so a request costs no system call
 * of its own; or sent to syslog (core/syslog.h), one datagram a line. Files are shared between generations
 * by path, so a reload does not reopen them (SIGUSR1 does). */
#ifndef SG_OBSERVE_ACCESS_LOG_H
#define SG_OBSERVE_ACCESS_LOG_H

#include "conf/conf.h"
#include "conf/stream_conf.h"
#include "exchange/request.h"

/* Opens (or finds already open) every access log file of generation c,
 * and the error logs its http/server/location blocks name.
 * False + err ("open() \"path\" failed: reason") if one cannot be opened. */
bool sg_access_log_open_all(sg_conf *c, char *err, size_t errlen);

/* Logs request r to every log of its location (r->loc->conf.access_logs). */
void sg_access_log_write(sg_http_req *r);

/* A stream{} session's line (with its newline) for log l: sent to syslog,
 * written to `path` (l->var_path: the evaluated path), buffered
 * (buffer=, flush=, gzip) or written at once. */
void sg_access_log_stream_line(const sg_stream_log *l, const char *path, size_t pathlen, const char *p, size_t n);

/* Writes out this thread's buffered lines (called by the loop's timer
 * and at exit). */
void sg_access_log_flush_thread(void);

/* SIGUSR1: reopen every file by path (after log rotation). */
void sg_access_log_reopen_all(void);

/* Drops generation c's references to its files (sg_conf_unref() calls it
 * before freeing the arena); a file closes when nothing uses it. */
void sg_access_log_close_all(sg_conf *c);

#endif
