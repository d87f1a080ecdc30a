/* Strings, arenas and checked allocation. */
#include "core/str.h"
#include "core/blockcache.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sg_arena_chunk {
    sg_arena_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

static void sg_oom(void)
{
    static const char msg[] = "streamgate: out of memory\n";
    if (fwrite(msg, 1, sizeof(msg) - 1, stderr) == 0) { /* nothing more to do */ }
    abort();
}

void *sg_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) sg_oom();
    return p;
}

void *sg_xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) sg_oom();
    return p;
}

void *sg_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) sg_oom();
    return p;
}

char *sg_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(sg_xmalloc(n), s, n);
}

bool sg_str_eq(sg_str a, sg_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* Most names compared are equal byte for byte (HTTP/2's are lowercase, as
 * the tables'): equal words are skipped 8 bytes at a time, and a byte
 * that differs must differ only in the case bit of a letter. */
bool sg_mem_caseeq(const char *a, const char *b, size_t n)
{
    while (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) break;
        a += 8;
        b += 8;
        n -= 8;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x == y) continue;
        if ((x | 0x20) != (y | 0x20)) return false;
        x |= 0x20;
        if (x < 'a' || x > 'z') return false;
    }
    return true;
}

sg_str sg_str_from(const char *cstr)
{
    return (sg_str){ cstr, cstr ? strlen(cstr) : 0 };
}

bool sg_str_to_u64(sg_str s, uint64_t *out)
{
    uint64_t v = 0;
    if (s.n == 0) return false;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c < '0' || c > '9') return false;
        if (v > (UINT64_MAX - (c - '0')) / 10) return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

/* Chunks come from the per-thread block cache (core/blockcache.h): every
 * request's arena takes one of the same size. */
static sg_arena_chunk *arena_chunk_new(size_t size)
{
    sg_arena_chunk *c = sg_block_alloc(sizeof(sg_arena_chunk) + size);
    return c;
}

static void arena_chunk_free(sg_arena_chunk *c)
{
    sg_block_free(c, sizeof(*c) + c->size);
}

void sg_arena_init(sg_arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 4096;
}

void *sg_arena_alloc(sg_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    sg_arena_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > a->chunk_size ? n : a->chunk_size;
        c = arena_chunk_new(size);
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *sg_arena_strndup(sg_arena *a, const char *p, size_t n)
{
    char *s = sg_arena_alloc(a, n + 1);
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

sg_str sg_arena_str(sg_arena *a, sg_str s)
{
    return (sg_str){ sg_arena_strndup(a, s.p, s.n), s.n };
}

void sg_arena_reset(sg_arena *a)
{
    sg_arena_chunk *c = a->head;
    if (!c) return;
    /* Keep the oldest chunk (the one sized for typical use), free the rest. */
    while (c->next) {
        sg_arena_chunk *next = c->next;
        arena_chunk_free(c);
        c = next;
    }
    c->used = 0;
    a->head = c;
}

void sg_arena_free(sg_arena *a)
{
    sg_arena_chunk *c = a->head;
    while (c) {
        sg_arena_chunk *next = c->next;
        arena_chunk_free(c);
        c = next;
    }
    a->head = NULL;
}

void sg_strbuf_append(sg_strbuf *b, const char *p, size_t n)
{
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n + 1) cap *= 2;
        b->p = sg_xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void sg_strbuf_append_str(sg_strbuf *b, sg_str s)
{
    sg_strbuf_append(b, s.p, s.n);
}

void sg_strbuf_append_log_escaped(sg_strbuf *out, sg_str v)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') continue;
        sg_strbuf_append(out, v.p + run, i - run);
        char e[4] = { '\\', 'x', hex[ch >> 4], hex[ch & 0xf] };
        sg_strbuf_append(out, e, 4);
        run = i + 1;
    }
    sg_strbuf_append(out, v.p + run, v.n - run);
}

void sg_strbuf_append_json_escaped(sg_strbuf *out, sg_str v)
{
    static const char hex[] = "0123456789ABCDEF";   /* nginx: "\u001B" */
    size_t run = 0;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch > 0x1f && ch != '"' && ch != '\\') continue;
        sg_strbuf_append(out, v.p + run, i - run);
        char e[6] = { '\\', (char)ch, 0, 0, 0, 0 };
        size_t n = 2;
        switch (ch) {
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '"': case '\\': break;
        default:
            memcpy(e + 1, "u00", 3);
            e[4] = hex[ch >> 4];
            e[5] = hex[ch & 0xf];
            n = 6;
        }
        sg_strbuf_append(out, e, n);
        run = i + 1;
    }
    sg_strbuf_append(out, v.p + run, v.n - run);
}

void sg_strbuf_appendf(sg_strbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(tmp)) {
        sg_strbuf_append(b, tmp, (size_t)n);
        return;
    }
    char *big = sg_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sg_strbuf_append(b, big, (size_t)n);
    free(big);
}

void sg_strbuf_free(sg_strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

size_t sg_u64_to_dec(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}
