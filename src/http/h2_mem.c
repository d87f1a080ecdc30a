/* nghttp2_mem over core/smallalloc.h (see h2_mem.h). */
#include "http/h2_mem.h"

#include "core/smallalloc.h"

static void *mem_malloc(size_t size, void *ud) { (void)ud; return sg_small_malloc(size); }
static void mem_free(void *p, void *ud) { (void)ud; sg_small_free(p); }
static void *mem_calloc(size_t n, size_t size, void *ud) { (void)ud; return sg_small_calloc(n, size); }
static void *mem_realloc(void *p, size_t size, void *ud) { (void)ud; return sg_small_realloc(p, size); }

static nghttp2_mem mem = { NULL, mem_malloc, mem_free, mem_calloc, mem_realloc };

nghttp2_mem *sg_h2_mem(void)
{
    return &mem;
}
