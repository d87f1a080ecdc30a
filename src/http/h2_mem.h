/* The allocator nghttp2's sessions use: core/slab.h's per-worker
 * heap instead of malloc for their many small, short-lived blocks. */
#ifndef SG_HTTP_H2_MEM_H
#define SG_HTTP_H2_MEM_H

#include <nghttp2/nghttp2.h>

nghttp2_mem *sg_h2_mem(void);

#endif
