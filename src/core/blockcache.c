/* Per-thread block cache. */
#include "core/blockcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"

#define CLASSES 8           /* distinct sizes cached per thread */
#define PER_CLASS 16        /* blocks kept per size */
#define MAX_CACHED 20480    /* larger blocks are rare: not worth keeping */

typedef struct block { struct block *next; } block;

typedef struct size_class {
    size_t size;
    block *free;
    unsigned n;
} size_class;

static _Thread_local size_class classes[CLASSES];

/* Any thread that caches a block gets a key destructor, so its cache is
 * freed when it exits even if nobody calls sg_block_thread_done(). */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static _Thread_local int exit_armed;

static void on_thread_exit(void *unused)
{
    (void)unused;
    sg_block_thread_done();
}

static void make_exit_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

static void arm_thread_exit(void)
{
    if (exit_armed) return;
    pthread_once(&exit_once, make_exit_key);
    pthread_setspecific(exit_key, &exit_armed);   /* any non-NULL value runs the destructor */
    exit_armed = 1;
}

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

void *sg_block_calloc(size_t size)
{
    void *p = sg_block_alloc(size);
    memset(p, 0, size);
    return p;
}

void sg_block_free(void *p, size_t size)
{
    size_class *c = size >= sizeof(block) && size <= MAX_CACHED ? class_for(size, 1) : NULL;
    if (!c || c->n >= PER_CLASS) {
        free(p);
        return;
    }
    arm_thread_exit();
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
    exit_armed = 0;
}
