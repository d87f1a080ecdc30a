/* nghttp2_mem over core/slab.h (see h2_mem.h). */
#include "http/h2_mem.h"

#include "core/slab.h"

static void *mem_malloc(size_t size, void *ud) { (void)ud; return sg_slab_malloc(size); }
static void mem_free(void *p, void *ud) { (void)ud; sg_slab_free(p); }
static void *mem_calloc(size_t n, size_t size, void *ud) { (void)ud; return sg_slab_calloc(n, size); }
static void *mem_realloc(void *p, size_t size, void *ud) { (void)ud; return sg_slab_realloc(p, size); }

static nghttp2_mem mem = { NULL, mem_malloc, mem_free, mem_calloc, mem_realloc };

nghttp2_mem *sg_h2_mem(void)
{
    return &mem;
}
