/* A per-thread cache of memory blocks of a few fixed sizes.
 *
 * Every request takes an arena chunk and every response an output chunk,
 * each for a moment, and every HTTP/2 request an exchange and a stream on
 * each side; those sizes are outside glibc's fast caches (or overflow
 * them at a hundred streams in flight), so their malloc/free showed up in
 * profiles. Blocks of a cached size are kept on a
 * short per-thread list instead (bounded: an idle thread keeps little). */
#ifndef SG_CORE_BLOCKCACHE_H
#define SG_CORE_BLOCKCACHE_H

#include <stddef.h>

/* A block of `size` bytes: from the cache when one of that size is there. */
void *sg_block_alloc(size_t size);
/* The same, zeroed (calloc). */
void *sg_block_calloc(size_t size);
/* Gives back a block obtained with sg_block_alloc(size). */
void sg_block_free(void *p, size_t size);
/* Frees the calling thread's cached blocks (at thread exit). */
void sg_block_thread_done(void);

#endif
