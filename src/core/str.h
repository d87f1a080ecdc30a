/* Strings and arenas shared by every layer.
 *
 * sg_str is a borrowed slice (pointer + length, not NUL-terminated): parsers
 * hand out slices into the bytes they read instead of copying them.
 * sg_arena is a bump allocator for things that live exactly as long as one
 * request or one configuration generation, so they are freed in one call. */
#ifndef SG_CORE_STR_H
#define SG_CORE_STR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

typedef struct sg_str {
    const char *p;
    size_t n;
} sg_str;

#define SG_STR(lit) ((sg_str){ (lit), sizeof(lit) - 1 })
#define SG_STR_NULL ((sg_str){ NULL, 0 })

bool sg_str_eq(sg_str a, sg_str b);
/* ASCII case-insensitive comparison (header names, host names). Inline
 * so that a length that differs, the common case, costs no call. */
bool sg_mem_caseeq(const char *a, const char *b, size_t n);
static inline bool sg_str_caseeq(sg_str a, sg_str b)
{
    return a.n == b.n && sg_mem_caseeq(a.p, b.p, a.n);
}
/* Inline so that strlen of a literal folds to a constant and a length that
 * differs costs no call: the header filters compare every header name
 * with a dozen literals on each request. */
static inline bool sg_str_eq_lit(sg_str a, const char *lit)
{
    size_t n = lit ? strlen(lit) : 0;
    return a.n == n && (n == 0 || memcmp(a.p, lit, n) == 0);
}
static inline bool sg_str_caseeq_lit(sg_str a, const char *lit)
{
    size_t n = lit ? strlen(lit) : 0;
    return a.n == n && sg_str_caseeq(a, (sg_str){ lit, n });
}
sg_str sg_str_from(const char *cstr);
/* Parses a decimal unsigned number; false on empty, junk or overflow. */
bool sg_str_to_u64(sg_str s, uint64_t *out);

typedef struct sg_arena_chunk sg_arena_chunk;
typedef struct sg_arena {
    sg_arena_chunk *head;
    size_t chunk_size;
} sg_arena;

void sg_arena_init(sg_arena *a, size_t chunk_size);
void *sg_arena_alloc(sg_arena *a, size_t n);        /* 16-byte aligned; aborts on OOM */
char *sg_arena_strndup(sg_arena *a, const char *p, size_t n); /* NUL-terminated copy */
sg_str sg_arena_str(sg_arena *a, sg_str s);
void sg_arena_reset(sg_arena *a);   /* keeps the first chunk for reuse */
void sg_arena_free(sg_arena *a);

/* A growable byte buffer (heap). Used for output that is built piecewise. */
typedef struct sg_strbuf {
    char *p;
    size_t n, cap;
} sg_strbuf;

void sg_strbuf_append(sg_strbuf *b, const char *p, size_t n);
void sg_strbuf_append_str(sg_strbuf *b, sg_str s);
void sg_strbuf_appendf(sg_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sg_strbuf_free(sg_strbuf *b);
/* Access log escaping, as nginx's log_format escape=default (", \ and bytes
 * outside 0x20..0x7e as \xHH) and escape=json (\n, \u001B...). Shared by
 * the http and stream access logs. */
void sg_strbuf_append_log_escaped(sg_strbuf *b, sg_str v);
void sg_strbuf_append_json_escaped(sg_strbuf *b, sg_str v);

void *sg_xmalloc(size_t n);
/* v in decimal into buf (at least 20 bytes, not terminated); its length.
 * For the request path, where snprintf's format parsing shows in profiles. */
size_t sg_u64_to_dec(char *buf, uint64_t v);
void *sg_xcalloc(size_t n, size_t m);
void *sg_xrealloc(void *p, size_t n);
char *sg_xstrdup(const char *s);

#endif
