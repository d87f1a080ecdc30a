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

static const char *const level_names[] = {
    "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg",
};

static int log_fd = 2;
static sg_log_level log_level = SG_LOG_NOTICE;
static char *log_path;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

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

bool sg_log_open(const char *path, sg_log_level level)
{
    int fd = open_target(path);
    if (fd < 0) return false;
    pthread_mutex_lock(&log_lock);
    int old = log_fd;
    log_fd = fd;
    log_level = level;
    free(log_path);
    log_path = strdup(path);
    pthread_mutex_unlock(&log_lock);
    if (old > 2 && old != fd) close(old);
    return true;
}

struct sg_log_target {
    sg_log_target *next;
    char *path;
    sg_log_level level;
    _Atomic int fd;
};

static sg_log_target *targets;          /* under log_lock */

const sg_log_target *sg_log_target_open(const char *path, sg_log_level level)
{
    pthread_mutex_lock(&log_lock);
    sg_log_target *t = targets;
    while (t && !(t->level == level && strcmp(t->path, path) == 0)) t = t->next;
    if (!t) {
        int fd = open_target(path);
        if (fd >= 0) {
            t = calloc(1, sizeof(*t));
            t->path = strdup(path);
            if (!t->path) abort();
            t->level = level;
            t->fd = fd;
            t->next = targets;
            targets = t;
        }
    }
    pthread_mutex_unlock(&log_lock);
    return t;
}

/* SIGUSR1 (log rotation): every request log is reopened by path too. */
static void reopen_targets(void)
{
    pthread_mutex_lock(&log_lock);
    for (sg_log_target *t = targets; t; t = t->next) {
        int fd = open_target(t->path);
        if (fd < 0) continue;
        int old = atomic_exchange(&t->fd, fd);
        if (old > 2) close(old);
    }
    pthread_mutex_unlock(&log_lock);
}

void sg_log_reopen(void)
{
    pthread_mutex_lock(&log_lock);
    char *path = log_path ? strdup(log_path) : NULL;
    sg_log_level level = log_level;
    pthread_mutex_unlock(&log_lock);
    if (path) {
        sg_log_open(path, level);
        free(path);
    }
    reopen_targets();
}

static void log_write(int fd, sg_log_level level, const char *fmt, va_list ap)
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
    ssize_t w = write(fd, line, (size_t)n);
    (void)w;
    errno = saved;
}

void sg_log_to(const sg_log_target *t, sg_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (!t) {
        if (level >= log_level) log_write(log_fd, level, fmt, ap);
    } else if (level >= t->level) {
        log_write(atomic_load(&((sg_log_target *)t)->fd), level, fmt, ap);
    }
    va_end(ap);
}

void sg_log(sg_log_level level, const char *fmt, ...)
{
    if (level < log_level) return;
    va_list ap;
    va_start(ap, fmt);
    log_write(log_fd, level, fmt, ap);
    va_end(ap);
}
