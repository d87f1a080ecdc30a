/* syslog targets: see syslog.h. */
#include "core/syslog.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SG_SYSLOG_MAX 4096       /* one datagram; longer messages are cut, as nginx's 2 KB line limit */

struct sg_syslog {
    struct sg_syslog *next;
    char *spec;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fd;
    int facility;                /* 0..23 */
    int severity;                /* 0..7; default 6 (info) */
    char tag[33];
    bool nohostname;
};

static pthread_mutex_t peers_lock = PTHREAD_MUTEX_INITIALIZER;
static sg_syslog *peers;
static char hostname[256];

static const char *const facilities[] = {
    "kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news", "uucp",
    "clock", "authpriv", "ftp", "ntp", "audit", "alert", "cron", "local0",
    "local1", "local2", "local3", "local4", "local5", "local6", "local7",
};
/* nginx's error_log level names, in syslog's severity order */
static const char *const severities[] = {
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug",
};

static int find_name(const char *const *names, size_t n, const char *p, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], p, len) == 0) return (int)i;
    return -1;
}

/* server=ADDR[:PORT] | server=unix:/path; ADDR may be [v6] or a host name
 * (resolved now, as nginx resolves it when reading the configuration). */
static bool parse_server(sg_syslog *s, const char *p, size_t len, char *err, size_t errlen)
{
    if (len > 5 && memcmp(p, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&s->addr;
        if (len - 5 >= sizeof(un->sun_path)) {
            snprintf(err, errlen, "path is too long in \"server=%.*s\"", (int)len, p);
            return false;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, p + 5, len - 5);
        un->sun_path[len - 5] = '\0';
        s->addrlen = (socklen_t)sizeof(*un);
        return true;
    }
    char host[256], port[16] = "514";
    const char *h = p, *colon = NULL;
    size_t hl = len;
    if (len && p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (!close) goto bad;
        h = p + 1;
        hl = (size_t)(close - h);
        if (close + 1 < p + len) {
            if (close[1] != ':') goto bad;
            colon = close + 1;
        }
    } else {
        colon = memchr(p, ':', len);
        if (colon && memchr(colon + 1, ':', (size_t)(p + len - colon - 1))) colon = NULL;   /* bare IPv6 */
        if (colon) hl = (size_t)(colon - p);
    }
    if (colon) {
        size_t pl = (size_t)(p + len - colon - 1);
        if (pl == 0 || pl >= sizeof(port)) goto bad;
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
        char *end;
        long v = strtol(port, &end, 10);
        if (*end || v < 1 || v > 65535) {
            snprintf(err, errlen, "invalid port in \"server=%.*s\"", (int)len, p);
            return false;
        }
    }
    if (hl == 0 || hl >= sizeof(host)) goto bad;
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "host not found in \"server=%.*s\"", (int)len, p);
        return false;
    }
    memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
    s->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
bad:
    snprintf(err, errlen, "invalid address in \"server=%.*s\"", (int)len, p);
    return false;
}

static bool parse(sg_syslog *s, const char *spec, char *err, size_t errlen)
{
    bool have_server = false;
    s->facility = 23;            /* local7 */
    s->severity = 6;             /* info */
    strcpy(s->tag, "nginx");     /* nginx's default, so configurations and log filters keep working */
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 7 && memcmp(p, "server=", 7) == 0) {
            if (!parse_server(s, p + 7, len - 7, err, errlen)) return false;
            have_server = true;
        } else if (len > 9 && memcmp(p, "facility=", 9) == 0) {
            s->facility = find_name(facilities, sizeof(facilities) / sizeof(facilities[0]), p + 9, len - 9);
            if (s->facility < 0) {
                snprintf(err, errlen, "unknown syslog facility \"%.*s\"", (int)len - 9, p + 9);
                return false;
            }
        } else if (len > 9 && memcmp(p, "severity=", 9) == 0) {
            s->severity = find_name(severities, sizeof(severities) / sizeof(severities[0]), p + 9, len - 9);
            if (s->severity < 0) {
                snprintf(err, errlen, "unknown syslog severity \"%.*s\"", (int)len - 9, p + 9);
                return false;
            }
        } else if (len > 4 && memcmp(p, "tag=", 4) == 0) {
            if (len - 4 > 32) {
                snprintf(err, errlen, "syslog tag length exceeds 32");
                return false;
            }
            for (size_t i = 4; i < len; i++) {
                if (!isalnum((unsigned char)p[i]) && p[i] != '_') {
                    snprintf(err, errlen, "syslog \"tag\" only allows alphanumeric characters and underscore");
                    return false;
                }
            }
            memcpy(s->tag, p + 4, len - 4);
            s->tag[len - 4] = '\0';
        } else if (len == 10 && memcmp(p, "nohostname", 10) == 0) {
            s->nohostname = true;
        } else {
            snprintf(err, errlen, "unknown syslog parameter \"%.*s\"", (int)len, p);
            return false;
        }
        p += len;
        if (*p == ',') p++;
    }
    if (!have_server) {
        snprintf(err, errlen, "no syslog server specified");
        return false;
    }
    return true;
}

const sg_syslog *sg_syslog_get(const char *spec, char *err, size_t errlen)
{
    sg_syslog tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (!parse(&tmp, spec, err, errlen)) return NULL;
    pthread_mutex_lock(&peers_lock);
    sg_syslog *s = peers;
    while (s && strcmp(s->spec, spec) != 0) s = s->next;
    if (!s) {
        /* Unconnected: sendto() names the peer each time, so a unix
         * socket that appears (or a collector that restarts) later is
         * reached without reconnecting. */
        int fd = socket(tmp.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            pthread_mutex_unlock(&peers_lock);
            snprintf(err, errlen, "socket() for syslog failed (%d: %s)", errno, strerror(errno));
            return NULL;
        }
        if (!hostname[0]) {
            if (gethostname(hostname, sizeof(hostname) - 1) != 0) strcpy(hostname, "localhost");
            for (char *h = hostname; *h; h++) *h = (char)tolower((unsigned char)*h);   /* nginx lowercases it */
        }
        s = malloc(sizeof(*s));
        char *copy = strdup(spec);
        if (!s || !copy) abort();
        *s = tmp;
        s->spec = copy;
        s->fd = fd;
        s->next = peers;
        peers = s;
    }
    pthread_mutex_unlock(&peers_lock);
    return s;
}

void sg_syslog_send(const sg_syslog *s, int severity, const char *msg, size_t n)
{
    static const char months[][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    char buf[SG_SYSLOG_MAX];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int pri = s->facility * 8 + (severity >= 0 && severity <= 7 ? severity : s->severity);
    int h;
    if (s->nohostname)
        h = snprintf(buf, sizeof(buf), "<%d>%s %2d %02d:%02d:%02d %s: ", pri, months[tm.tm_mon], tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, s->tag);
    else
        h = snprintf(buf, sizeof(buf), "<%d>%s %2d %02d:%02d:%02d %s %s: ", pri, months[tm.tm_mon], tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, hostname, s->tag);
    if (h < 0 || (size_t)h >= sizeof(buf)) return;
    if (n > sizeof(buf) - (size_t)h) n = sizeof(buf) - (size_t)h;
    memcpy(buf + h, msg, n);
    int saved = errno;
    /* MSG_DONTWAIT on a non-blocking socket: a full socket buffer or an
     * absent collector (ECONNREFUSED, ENOENT) drops this message only. */
    ssize_t w = sendto(s->fd, buf, (size_t)h + n, MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)&s->addr, s->addrlen);
    (void)w;
    errno = saved;
}
