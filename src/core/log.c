/* Error log. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/syslog.h"

/* A target is the set of places one error_log level writes to: every
 * `error_log` line of that level (nginx: "error_log" may repeat), each
 * with its own level, to a file, stderr or syslog. */
typedef struct log_sink {
    char *path;                  /* a file or "stderr"; NULL for syslog */
    _Atomic int fd;
    const sg_syslog *syslog;
    sg_log_level level;
} log_sink;

struct sg_log_target {
    sg_log_target *next;
    char *spec;                  /* as given to sg_log_target_open, with its level */
    sg_log_level spec_level;
    sg_log_level min;            /* the lowest level of its sinks: a quick filter */
    size_t nsinks;
    log_sink *sinks;
};

static log_sink stderr_sink = { .path = "stderr", .fd = 2, .level = SG_LOG_NOTICE };
static sg_log_target stderr_target = { .spec = "stderr", .spec_level = SG_LOG_NOTICE, .min = SG_LOG_NOTICE,
                                       .nsinks = 1, .sinks = &stderr_sink };
static _Atomic(sg_log_target *) main_target;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static sg_log_target *targets;          /* under log_lock; never freed */

static const char *const level_names[] = {
    "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg",
};

static sg_log_target *main_log(void)
{
    sg_log_target *t = atomic_load_explicit(&main_target, memory_order_acquire);
    return t ? t : &stderr_target;
}

bool sg_log_level_parse(const char *name, sg_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (sg_log_level)i;
            return true;
        }
    }
    return false;
}

static int open_target(const char *path)
{
    if (strcmp(path, "stderr") == 0) return 2;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* One sink from "PATH" or "syslog:...". */
static bool sink_open(log_sink *s, const char *path, size_t len, sg_log_level level)
{
    s->level = level;
    s->path = strndup(path, len);
    if (!s->path) abort();
    if (strncmp(s->path, "syslog:", 7) == 0) {
        char err[256];
        s->syslog = sg_syslog_get(s->path + 7, err, sizeof(err));
        free(s->path);
        s->path = NULL;
        s->fd = -1;
        if (!s->syslog) errno = EINVAL;
        return s->syslog != NULL;
    }
    int fd = open_target(s->path);
    s->fd = fd;
    return fd >= 0;
}

static void target_free(sg_log_target *t)
{
    for (size_t i = 0; i < t->nsinks; i++) {
        int fd = t->sinks[i].fd;
        if (fd > 2) close(fd);
        free(t->sinks[i].path);
    }
    free(t->sinks);
    free(t->spec);
    free(t);
}

/* spec: a path with `level`, or sg_log_spec_add()'s list of entries. */
static sg_log_target *target_new(const char *spec, sg_log_level level)
{
    sg_log_target *t = calloc(1, sizeof(*t));
    if (!t || !(t->spec = strdup(spec))) abort();
    t->spec_level = level;
    t->min = SG_LOG_EMERG;
    size_t n = 1;
    if (spec[0] == SG_LOG_SPEC_SEP) {
        n = 0;
        for (const char *p = spec; *p; p++) n += *p == SG_LOG_SPEC_SEP;
    }
    t->sinks = calloc(n, sizeof(*t->sinks));
    if (!t->sinks) abort();
    bool ok = true;
    if (spec[0] != SG_LOG_SPEC_SEP) {
        ok = sink_open(&t->sinks[t->nsinks++], spec, strlen(spec), level);
        t->min = level;
    } else {
        for (const char *p = spec; ok && *p == SG_LOG_SPEC_SEP;) {
            p++;
            sg_log_level l = (sg_log_level)(*p - '0');
            if (*p) p++;
            const char *end = strchr(p, SG_LOG_SPEC_SEP);
            size_t len = end ? (size_t)(end - p) : strlen(p);
            ok = sink_open(&t->sinks[t->nsinks++], p, len, l);
            if (l < t->min) t->min = l;
            p += len;
        }
    }
    if (!ok) {
        int saved = errno;
        target_free(t);
        errno = saved;
        return NULL;
    }
    return t;
}

char *sg_log_spec_add(const char *old, const char *path, sg_log_level level)
{
    size_t ol = old ? strlen(old) : 0, pl = strlen(path);
    char *s = malloc(ol + pl + 3);
    if (!s) abort();
    if (ol) memcpy(s, old, ol);
    s[ol] = SG_LOG_SPEC_SEP;
    s[ol + 1] = (char)('0' + level);
    memcpy(s + ol + 2, path, pl + 1);
    return s;
}

static sg_log_target *target_find(const char *spec, sg_log_level level)
{
    for (sg_log_target *t = targets; t; t = t->next)
        if (t->spec_level == level && strcmp(t->spec, spec) == 0) return t;
    return NULL;
}

const sg_log_target *sg_log_target_open(const char *spec, sg_log_level level)
{
    pthread_mutex_lock(&log_lock);
    sg_log_target *t = target_find(spec, level);
    if (!t && (t = target_new(spec, level))) {
        t->next = targets;
        targets = t;
    }
    pthread_mutex_unlock(&log_lock);
    return t;
}

bool sg_log_open(const char *spec, sg_log_level level)
{
    sg_log_target *t = (sg_log_target *)sg_log_target_open(spec, level);
    if (!t) return false;
    atomic_store_explicit(&main_target, t, memory_order_release);
    return true;
}

/* SIGUSR1 (log rotation): every file is opened again by path. */
void sg_log_reopen(void)
{
    pthread_mutex_lock(&log_lock);
    for (sg_log_target *t = targets; t; t = t->next) {
        for (size_t i = 0; i < t->nsinks; i++) {
            log_sink *s = &t->sinks[i];
            if (!s->path || strcmp(s->path, "stderr") == 0) continue;
            int fd = open_target(s->path);
            if (fd < 0) continue;
            int old = atomic_exchange(&s->fd, fd);
            if (old > 2) close(old);
        }
    }
    pthread_mutex_unlock(&log_lock);
}

static void log_write(const sg_log_target *t, sg_log_level level, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, " [%s] %d#%ld: ", level_names[level],
                  (int)getpid(), (long)syscall(SYS_gettid));
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0) m = 0;
    n += m;
    if ((size_t)n > sizeof(line) - 2) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    int saved = errno;
    for (size_t i = 0; i < t->nsinks; i++) {
        log_sink *s = &t->sinks[i];
        if (level < s->level) continue;
        if (s->syslog) {
            /* nginx sends the whole line, its time included, at the
             * message's own severity (syslog counts 0 emerg .. 7 debug) */
            sg_syslog_send(s->syslog, SG_LOG_EMERG - (int)level, line, (size_t)n - 1);
        } else {
            ssize_t w = write(atomic_load(&s->fd), line, (size_t)n);
            (void)w;
        }
    }
    errno = saved;
}

bool sg_log_enabled(const sg_log_target *t, sg_log_level level)
{
    return level >= (t ? t : main_log())->min;
}

void sg_log_to(const sg_log_target *t, sg_log_level level, const char *fmt, ...)
{
    if (!t) t = main_log();
    if (level < t->min) return;
    va_list ap;
    va_start(ap, fmt);
    log_write(t, level, fmt, ap);
    va_end(ap);
}

void sg_log(sg_log_level level, const char *fmt, ...)
{
    const sg_log_target *t = main_log();
    if (level < t->min) return;
    va_list ap;
    va_start(ap, fmt);
    log_write(t, level, fmt, ap);
    va_end(ap);
}
