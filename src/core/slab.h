/* Per-worker small-object heap for a library that frees without a size
 * (nghttp2's sessions, through nghttp2_mem).
 *
 * Why not malloc: at a hundred streams in flight per thread, glibc's
 * per-thread cache (7 blocks per size) overflows and most of nghttp2's
 * eight allocations per request take malloc's slow path. Why no header
 * per block (an earlier cache in front of malloc had one): an idle gRPC
 * stream keeps several of these blocks, and 16 bytes each showed in its
 * memory. Here a block's size is found from its address instead: each
 * worker reserves one range of address space (pages are touched only
 * when used) and carves it into 16 KB pages of one size class each.
 *
 * A thread that has not called sg_slab_thread_init() (the main thread,
 * health checkers) and any block over SG_SLAB_MAX bytes use malloc. A
 * block freed by a thread other than its owner is handed back to the
 * owner through a lock-free list. Under AddressSanitizer everything goes
 * to malloc, so that the sanitizer sees every block. */
#ifndef SG_CORE_SLAB_H
#define SG_CORE_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#define SG_SLAB_MAX 1024

/* Reserves this thread's range; false (and malloc for this thread) when
 * the address space cannot be had. */
bool sg_slab_thread_init(void);

void *sg_slab_malloc(size_t size);
void *sg_slab_calloc(size_t n, size_t size);
void *sg_slab_realloc(void *p, size_t size);
void sg_slab_free(void *p);

/* sg_slab_malloc that ends the process on out-of-memory, as sg_xmalloc:
 * for the proxy's own short-lived blocks of the request path (a request's
 * header array, its upstream head, a small output chunk), which glibc's
 * cache of 7 blocks per size cannot hold at a hundred streams in flight.
 * Freed with sg_slab_free. */
void *sg_slab_xmalloc(size_t size);

/* The usable size of a block from this heap; 0 for any other pointer. */
size_t sg_slab_block_size(const void *p);

#endif
