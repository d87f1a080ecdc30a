/* The error log: "2026/11/21 19:50:11 [error] 1234#5: message", as nginx
 * writes it, to stderr or a file, filtered by level. Thread-safe: each
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

/* Opens `path` ("stderr" or a file, appended) as the error log. Keeps the
 * previous target on failure and returns false (errno set). */
bool sg_log_open(const char *path, sg_log_level level);
void sg_log_reopen(void);

void sg_log(sg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sg_log_error(...) sg_log(SG_LOG_ERROR, __VA_ARGS__)
#define sg_log_warn(...)  sg_log(SG_LOG_WARN, __VA_ARGS__)
#define sg_log_info(...)  sg_log(SG_LOG_INFO, __VA_ARGS__)
#define sg_log_notice(...) sg_log(SG_LOG_NOTICE, __VA_ARGS__)
#define sg_log_debug(...) sg_log(SG_LOG_DEBUG, __VA_ARGS__)

#endif
