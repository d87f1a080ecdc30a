/* Per-thread block cache. */
#include "core/blockcache.h"

#include <stdlib.h>

#include "core/str.h"
#include "core/thread_exit.h"

#define CLASSES 4           /* distinct sizes cached per thread */
#define PER_CLASS 16        /* blocks kept per size */
#define MAX_CACHED 20480    /* larger blocks are rare: not worth keeping */

typedef struct block { struct block *next; } block;

typedef struct size_class {
    size_t size;
    block *free;
    unsigned n;
} size_class;

static _Thread_local size_class classes[CLASSES];

static size_class *class_for(size_t size, int create)
{
    for (int i = 0; i < CLASSES; i++)
        if (classes[i].size == size) return &classes[i];
    if (!create) return NULL;
    for (int i = 0; i < CLASSES; i++)
        if (classes[i].size == 0) {
            classes[i].size = size;
            return &classes[i];
        }
    return NULL;
}

void *sg_block_alloc(size_t size)
{
    size_class *c = class_for(size, 0);
    if (c && c->free) {
        block *b = c->free;
        c->free = b->next;
        c->n--;
        return b;
    }
    return sg_xmalloc(size);
}

void sg_block_free(void *p, size_t size)
{
    size_class *c = size >= sizeof(block) && size <= MAX_CACHED ? class_for(size, 1) : NULL;
    if (!c || c->n >= PER_CLASS) {
        free(p);
        return;
    }
    sg_thread_exit_arm();
    block *b = p;
    b->next = c->free;
    c->free = b;
    c->n++;
}

void sg_block_thread_done(void)
{
    for (int i = 0; i < CLASSES; i++) {
        while (classes[i].free) {
            block *b = classes[i].free;
            classes[i].free = b->next;
            free(b);
        }
        classes[i] = (size_class){ 0 };
    }
}
