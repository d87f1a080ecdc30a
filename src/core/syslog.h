/* syslog: targets of access_log and error_log ("syslog:server=ADDR[:PORT]
 * [,facility=F][,severity=S][,tag=T][,nohostname]", as nginx's
 * ngx_syslog.c). Messages are RFC 3164 datagrams
 * "<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG" sent over UDP (port 514 by
 * default) or a unix datagram socket, never blocking: a message the
 * socket cannot take at once is dropped, as nginx does. */
#ifndef SG_CORE_SYSLOG_H
#define SG_CORE_SYSLOG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sg_syslog sg_syslog;

/* Parses the part after "syslog:" and returns the process-wide peer for
 * it (peers are shared by every generation and never freed: a
 * configuration names a handful). NULL with a message in err (nginx's
 * wording) if the spec is invalid or the socket cannot be made. */
const sg_syslog *sg_syslog_get(const char *spec, char *err, size_t errlen);

/* Sends msg (no trailing newline) with the peer's severity, or with
 * `severity` (0 emerg .. 7 debug) when it is >= 0 (error_log: nginx
 * takes the message's level). */
void sg_syslog_send(const sg_syslog *s, int severity, const char *msg, size_t n);

#endif
