/* A per-thread allocator of small blocks, for a library's own allocations.
 *
 * nghttp2 allocates and frees several small blocks for every stream
 * (stream records, header buffers, frame items): about eight malloc/free
 * pairs per proxied HTTP/2 request, about a sixth of the proxy's
 * instructions. It lets the caller supply the allocator (nghttp2_mem);
 * this one keeps freed blocks of eight power-of-two sizes on short
 * per-thread lists (bounded in bytes per size, so an idle thread keeps
 * little) and hands them out again without a lock. Unlike core/blockcache.h
 * the size is not known at free: each block carries a 16-byte header. A
 * block may be freed on another thread than the one that took it: it then
 * joins that thread's lists. Under AddressSanitizer every call goes to
 * malloc/free, so that a use after free in the library is still caught. */
#ifndef SG_CORE_SMALLALLOC_H
#define SG_CORE_SMALLALLOC_H

#include <stddef.h>

void *sg_small_malloc(size_t size);
void sg_small_free(void *p);
void *sg_small_calloc(size_t n, size_t size);
void *sg_small_realloc(void *p, size_t size);
/* Frees the calling thread's cached blocks (also run at thread exit). */
void sg_small_thread_done(void);

#endif
