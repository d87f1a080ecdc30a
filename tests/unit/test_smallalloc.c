/* core/smallalloc.c: nghttp2's allocator. What the library relies on is
 * C's contract: aligned, usable memory; calloc zeroes; realloc keeps the
 * contents; a block freed on another thread is fine. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "core/smallalloc.h"

Test(smallalloc, blocks_are_aligned_and_usable_at_every_size)
{
    for (size_t n = 0; n <= 9000; n += 37) {
        unsigned char *p = sg_small_malloc(n);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % 16, 0, "size %zu", n);
        memset(p, 0xab, n);
        sg_small_free(p);
    }
    sg_small_free(NULL);
}

Test(smallalloc, calloc_zeroes_a_reused_block)
{
    unsigned char *p = sg_small_malloc(100);
    memset(p, 0xff, 100);
    sg_small_free(p);                          /* cached, dirty */
    unsigned char *q = sg_small_calloc(10, 10);
    for (int i = 0; i < 100; i++) cr_assert_eq(q[i], 0);
    sg_small_free(q);
    cr_assert_null(sg_small_calloc(SIZE_MAX / 2, 4), "an overflowing calloc fails");
}

Test(smallalloc, realloc_keeps_the_contents_across_sizes)
{
    char *p = sg_small_realloc(NULL, 10);
    memcpy(p, "0123456789", 10);
    for (size_t n = 20; n <= 20000; n *= 3) {
        p = sg_small_realloc(p, n);
        cr_assert_not_null(p);
        cr_assert(memcmp(p, "0123456789", 10) == 0, "size %zu", n);
    }
    p = sg_small_realloc(p, 12);               /* shrinking a large block */
    cr_assert(memcmp(p, "0123456789", 10) == 0);
    sg_small_free(p);
}

static void *free_here(void *p)
{
    sg_small_free(p);
    sg_small_thread_done();
    return NULL;
}

Test(smallalloc, a_block_may_be_freed_on_another_thread)
{
    void *blocks[64];
    for (int i = 0; i < 64; i++) blocks[i] = sg_small_malloc((size_t)i * 50);
    for (int i = 0; i < 64; i++) {
        pthread_t t;
        pthread_create(&t, NULL, free_here, blocks[i]);
        pthread_join(t, NULL);
    }
    sg_small_thread_done();
}
