/* Per-thread small-block allocator (see smallalloc.h). */
#include "core/smallalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/thread_exit.h"

#if defined(__SANITIZE_ADDRESS__)
#define SG_SMALL_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SG_SMALL_PASSTHROUGH 1
#endif
#endif

#define MIN_SHIFT 5                 /* the smallest block: 32 bytes, header included */
#define CLASSES 8                   /* 32 .. 4096 bytes */
#define CACHED_BYTES (32 * 1024)    /* kept per size and thread at most */
#define LARGE 0xffffffffu           /* the header's class of a block malloc'd as it is */

/* 16 bytes, so that what follows keeps malloc's alignment */
typedef struct header {
    _Alignas(16) uint32_t cls;
} header;
_Static_assert(sizeof(header) == 16, "a block's header is 16 bytes");

typedef struct block { struct block *next; } block;

static _Thread_local struct {
    block *free[CLASSES];
    unsigned n[CLASSES];
} cache;

static inline size_t class_size(uint32_t cls) { return (size_t)1 << (cls + MIN_SHIFT); }

/* The class whose blocks hold size bytes after the header; CLASSES if none. */
static inline uint32_t class_of(size_t size)
{
    size_t need = size + sizeof(header);
    uint32_t cls = 0;
    while (cls < CLASSES && class_size(cls) < need) cls++;
    return cls;
}

void *sg_small_malloc(size_t size)
{
#ifdef SG_SMALL_PASSTHROUGH
    return malloc(size);
#else
    uint32_t cls = class_of(size);
    header *h;
    if (cls < CLASSES && cache.free[cls]) {
        h = (header *)cache.free[cls];
        cache.free[cls] = ((block *)h)->next;
        cache.n[cls]--;
    } else {
        if (size > SIZE_MAX - sizeof(header)) return NULL;
        h = malloc(cls < CLASSES ? class_size(cls) : size + sizeof(header));
        if (!h) return NULL;
    }
    h->cls = cls < CLASSES ? cls : LARGE;
    return h + 1;
#endif
}

void sg_small_free(void *p)
{
#ifdef SG_SMALL_PASSTHROUGH
    free(p);
#else
    if (!p) return;
    header *h = (header *)p - 1;
    uint32_t cls = h->cls;
    if (cls >= CLASSES || cache.n[cls] >= CACHED_BYTES / class_size(cls)) {
        free(h);
        return;
    }
    sg_thread_exit_arm();
    block *b = (block *)h;
    b->next = cache.free[cls];
    cache.free[cls] = b;
    cache.n[cls]++;
#endif
}

void *sg_small_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = sg_small_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *sg_small_realloc(void *p, size_t size)
{
#ifdef SG_SMALL_PASSTHROUGH
    return realloc(p, size);
#else
    if (!p) return sg_small_malloc(size);
    header *h = (header *)p - 1;
    if (h->cls == LARGE) {             /* stays a plain malloc block */
        if (size > SIZE_MAX - sizeof(header)) return NULL;
        header *g = realloc(h, size + sizeof(header));
        return g ? g + 1 : NULL;
    }
    size_t have = class_size(h->cls) - sizeof(header);
    if (size <= have) return p;
    void *q = sg_small_malloc(size);
    if (!q) return NULL;
    memcpy(q, p, have);
    sg_small_free(p);
    return q;
#endif
}

void sg_small_thread_done(void)
{
    for (int i = 0; i < CLASSES; i++) {
        while (cache.free[i]) {
            block *b = cache.free[i];
            cache.free[i] = b->next;
            free(b);
        }
        cache.n[i] = 0;
    }
}
