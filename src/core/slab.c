/* Per-worker small-object heap (see slab.h). */
#include "core/slab.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/str.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_PASSTHROUGH 1
#endif
#endif

#define REGION ((size_t)1 << 30)     /* address space per worker; pages are touched when used */
#define PAGE ((size_t)4096)          /* one size class per page while it holds blocks */
#define NPAGES (REGION / PAGE)
#define NCLASS 32
#define NONE UINT32_MAX
#define KEEP_PAGES 64                /* empty pages kept touched; more are given back (MADV_DONTNEED) */
#define MAX_HEAPS 256                /* workers that may have a heap */

typedef struct free_block { struct free_block *next; } free_block;

/* Each page keeps its own free blocks and count of live ones, so that a
 * page whose blocks are all free goes back to a pool any class may take
 * from: a burst of one size (a thousand frames queued at once) does not
 * stay reserved for that size. */
typedef struct page_meta {
    free_block *free;
    uint32_t next, prev;             /* in its class's list of pages with room, or the empty pool */
    uint16_t live;                   /* blocks handed out */
    uint16_t bump;                   /* bytes never handed out start here */
    uint8_t cls;
} page_meta;

typedef struct slab_heap {
    char *base, *end;                /* the reserved range */
    uint32_t first;                  /* the first page after this header */
    uint32_t brk;                    /* the first page never used */
    uint32_t room[NCLASS];           /* per class: its pages with room */
    uint32_t pool;                   /* empty pages */
    uint32_t npool;
    _Atomic(free_block *) remote;    /* blocks other threads freed */
    page_meta page[NPAGES];
} slab_heap;

static _Atomic(slab_heap *) heaps[MAX_HEAPS];
static atomic_int nheaps;
#ifndef SLAB_PASSTHROUGH
static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;   /* registering a heap */
#endif
static _Thread_local slab_heap *self;

/* 16-byte steps to 256, 32-byte steps to 512, 64-byte steps to 1024: at
 * most 15, 31 or 63 bytes of a block unused. */
static inline unsigned class_of(size_t n)
{
    if (n <= 256) return (unsigned)((n + 15) / 16) - 1;
    if (n <= 512) return 16 + (unsigned)((n - 257) / 32);
    return 24 + (unsigned)((n - 513) / 64);
}

static inline size_t class_size(unsigned c)
{
    if (c < 16) return (size_t)(c + 1) * 16;
    if (c < 24) return 256 + (size_t)(c - 15) * 32;
    return 512 + (size_t)(c - 23) * 64;
}

static inline uint32_t page_of(const slab_heap *h, const void *p)
{
    return (uint32_t)((size_t)((const char *)p - h->base) / PAGE);
}

static inline char *page_addr(const slab_heap *h, uint32_t pg)
{
    return h->base + (size_t)pg * PAGE;
}

static inline bool owns(const slab_heap *h, const void *p)
{
    return (const char *)p >= page_addr(h, h->first) && (const char *)p < page_addr(h, h->brk);
}

static slab_heap *owner_of(const void *p)
{
    int n = atomic_load_explicit(&nheaps, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        slab_heap *h = atomic_load_explicit(&heaps[i], memory_order_acquire);
        /* base and end never change; p was handed out inside them */
        if ((const char *)p >= h->base && (const char *)p < h->end) return h;
    }
    return NULL;
}

static inline size_t block_size(const slab_heap *h, const void *p)
{
    return class_size(h->page[page_of(h, p)].cls);
}

static void list_unlink(slab_heap *h, uint32_t *head, uint32_t pg)
{
    page_meta *m = &h->page[pg];
    if (m->prev != NONE) h->page[m->prev].next = m->next;
    else *head = m->next;
    if (m->next != NONE) h->page[m->next].prev = m->prev;
    m->next = m->prev = NONE;
}

static void list_push(slab_heap *h, uint32_t *head, uint32_t pg)
{
    page_meta *m = &h->page[pg];
    m->prev = NONE;
    m->next = *head;
    if (*head != NONE) h->page[*head].prev = pg;
    *head = pg;
}

bool sg_slab_thread_init(void)
{
#ifdef SLAB_PASSTHROUGH
    return false;
#else
    if (self) return true;
    void *m = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    slab_heap *h = m;
    h->base = m;
    h->end = (char *)m + REGION;
    h->first = h->brk = (uint32_t)((sizeof(slab_heap) + PAGE - 1) / PAGE);
    for (unsigned c = 0; c < NCLASS; c++) h->room[c] = NONE;
    h->pool = NONE;
    pthread_mutex_lock(&heaps_lock);
    int n = atomic_load(&nheaps);
    if (n == MAX_HEAPS) {
        pthread_mutex_unlock(&heaps_lock);
        munmap(m, REGION);
        return false;
    }
    atomic_store_explicit(&heaps[n], h, memory_order_release);
    atomic_store_explicit(&nheaps, n + 1, memory_order_release);
    pthread_mutex_unlock(&heaps_lock);
    self = h;
    return true;
#endif
}

static void free_local(slab_heap *h, void *p);

/* Blocks other threads gave back are freed here, by the owner. */
static void take_remote(slab_heap *h)
{
    free_block *b = atomic_exchange_explicit(&h->remote, NULL, memory_order_acquire);
    while (b) {
        free_block *next = b->next;
        free_local(h, b);
        b = next;
    }
}

/* A page for class c: an empty one from the pool, or one never used. */
static bool new_page(slab_heap *h, unsigned c)
{
    uint32_t pg = h->pool;
    if (pg != NONE) {
        list_unlink(h, &h->pool, pg);
        h->npool--;
    } else {
        if (h->brk >= NPAGES) return false;   /* the range is used up */
        pg = h->brk++;
    }
    page_meta *m = &h->page[pg];
    *m = (page_meta){ .free = NULL, .next = NONE, .prev = NONE, .live = 0, .bump = 0, .cls = (uint8_t)c };
    list_push(h, &h->room[c], pg);
    return true;
}

void *sg_slab_malloc(size_t size)
{
    slab_heap *h = self;
    if (!h || size > SG_SLAB_MAX) return malloc(size);
    unsigned c = class_of(size ? size : 1);
    if (h->room[c] == NONE && atomic_load_explicit(&h->remote, memory_order_relaxed)) take_remote(h);
    if (h->room[c] == NONE && !new_page(h, c)) return malloc(size);
    uint32_t pg = h->room[c];
    page_meta *m = &h->page[pg];
    size_t sz = class_size(c);
    void *p;
    if (m->free) {
        p = m->free;
        m->free = m->free->next;
    } else {
        p = page_addr(h, pg) + m->bump;
        m->bump = (uint16_t)(m->bump + sz);
    }
    m->live++;
    if (!m->free && m->bump + sz > PAGE) list_unlink(h, &h->room[c], pg);   /* full */
    return p;
}

static void free_local(slab_heap *h, void *p)
{
    uint32_t pg = page_of(h, p);
    page_meta *m = &h->page[pg];
    size_t sz = class_size(m->cls);
    bool was_full = !m->free && m->bump + sz > PAGE;
    free_block *b = p;
    b->next = m->free;
    m->free = b;
    if (--m->live == 0) {
        /* the class's only page with room stays with it: one block taken
         * and given back per request must not move a page each time */
        if (!was_full && h->room[m->cls] == pg && m->next == NONE) return;
        if (!was_full) list_unlink(h, &h->room[m->cls], pg);
        m->free = NULL;
        m->bump = 0;
        if (h->npool >= KEEP_PAGES) madvise(page_addr(h, pg), PAGE, MADV_DONTNEED);
        list_push(h, &h->pool, pg);
        h->npool++;
    } else if (was_full) {
        list_push(h, &h->room[m->cls], pg);
    }
}

void sg_slab_free(void *p)
{
    if (!p) return;
    slab_heap *h = self;
    if (h && owns(h, p)) {
        free_local(h, p);
        return;
    }
    slab_heap *o = owner_of(p);
    if (!o) {
        free(p);
        return;
    }
    free_block *b = p;
    b->next = atomic_load_explicit(&o->remote, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&o->remote, &b->next, b, memory_order_release,
                                                  memory_order_relaxed)) {
    }
}

void *sg_slab_xmalloc(size_t size)
{
    void *p = sg_slab_malloc(size);
    return p ? p : sg_xmalloc(size);   /* malloc failed: this ends the process, as sg_xmalloc does */
}

void *sg_slab_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    size_t total = n * size;
    if (!self || total > SG_SLAB_MAX) return calloc(n, size);
    void *p = sg_slab_malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void *sg_slab_realloc(void *p, size_t size)
{
    if (!p) return sg_slab_malloc(size);
    if (size == 0) {
        sg_slab_free(p);
        return NULL;
    }
    slab_heap *o = (self && owns(self, p)) ? self : owner_of(p);
    size_t old;
    if (o) {
        old = block_size(o, p);
        if (size <= old) return p;
    } else {
        if (!self || size > SG_SLAB_MAX) return realloc(p, size);
        old = malloc_usable_size(p);
    }
    void *q = sg_slab_malloc(size);
    if (!q) return NULL;
    memcpy(q, p, old < size ? old : size);
    sg_slab_free(p);
    return q;
}

size_t sg_slab_block_size(const void *p)
{
    slab_heap *o = owner_of(p);
    return o ? block_size(o, p) : 0;
}
