/* The error log: "2026/11/21 19:50:11 [error] 1234#5: message", as nginx
 * writes it, to stderr, files or syslog (core/syslog.h), filtered by level. Thread-safe: each
 * message is one write(2). */
#ifndef SG_CORE_LOG_H
#define SG_CORE_LOG_H

#include <stdbool.h>

typedef enum sg_log_level {
    SG_LOG_DEBUG = 0, SG_LOG_INFO, SG_LOG_NOTICE, SG_LOG_WARN, SG_LOG_ERROR,
    SG_LOG_CRIT, SG_LOG_ALERT, SG_LOG_EMERG,
} sg_log_level;

/* Parses "debug".."emerg"; false if unknown. */
bool sg_log_level_parse(const char *name, sg_log_level *out);

/* Opens `path` ("stderr", a file (appended) or "syslog:...") with `level`,
 * or the list sg_log_spec_add() built, as the error log. Keeps the
 * previous target on failure and returns false (errno set). */
bool sg_log_open(const char *path, sg_log_level level);
void sg_log_reopen(void);

void sg_log(sg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Error logs of http, server and location blocks (`error_log` there):
 * messages about a request go to the log of its location. Targets live in
 * a process-wide registry keyed by path and level, are never freed (a
 * configuration names a handful) and are reopened by sg_log_reopen(). */
typedef struct sg_log_target sg_log_target;

/* error_log may repeat at one level: the list of its lines is kept as
 * one string (entries start with SG_LOG_SPEC_SEP, then the level's digit,
 * then the path), which sg_log_open and sg_log_target_open take in place
 * of a path. Returns a malloc'd copy of `old` (NULL: none) with
 * path+level appended. */
#define SG_LOG_SPEC_SEP '\x1f'
char *sg_log_spec_add(const char *old, const char *path, sg_log_level level);

/* The target for path (or list)+level, opened (created) on first use; NULL and errno
 * set if the file cannot be opened. */
const sg_log_target *sg_log_target_open(const char *path, sg_log_level level);
/* Whether a message of `level` to t (NULL: the main log) is written
 * anywhere: lets a caller skip formatting what nobody reads. */
bool sg_log_enabled(const sg_log_target *t, sg_log_level level);
/* sg_log() to `t`, or to the main log when t is NULL. */
void sg_log_to(const sg_log_target *t, sg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sg_log_error(...) sg_log(SG_LOG_ERROR, __VA_ARGS__)
#define sg_log_warn(...)  sg_log(SG_LOG_WARN, __VA_ARGS__)
#define sg_log_info(...)  sg_log(SG_LOG_INFO, __VA_ARGS__)
#define sg_log_notice(...) sg_log(SG_LOG_NOTICE, __VA_ARGS__)
#define sg_log_debug(...) sg_log(SG_LOG_DEBUG, __VA_ARGS__)

#endif
