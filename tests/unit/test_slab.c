/* core/slab: blocks hold what was asked, sizes come from addresses, freed
 * blocks are reused, and blocks freed by another thread go back to their
 * owner. (Under AddressSanitizer the heap is malloc, and these tests check
 * that it still behaves as malloc.) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "core/slab.h"

static bool have_heap;

static void init(void)
{
    have_heap = sg_slab_thread_init();
}

TestSuite(slab, .init = init);

Test(slab, every_size_holds_its_bytes_and_is_aligned)
{
    void *blocks[SG_SLAB_MAX + 1];
    for (size_t n = 1; n <= SG_SLAB_MAX; n++) {
        blocks[n] = sg_slab_malloc(n);
        cr_assert_not_null(blocks[n]);
        cr_assert_eq((uintptr_t)blocks[n] % 16, 0, "size %zu", n);
        memset(blocks[n], (int)(n & 0xff), n);
        if (have_heap) {
            size_t got = sg_slab_block_size(blocks[n]);
            cr_assert(got >= n && got - n < 64, "size %zu got a block of %zu", n, got);
        }
    }
    for (size_t n = 1; n <= SG_SLAB_MAX; n++) {   /* nothing overlapped */
        const unsigned char *p = blocks[n];
        for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], (unsigned char)(n & 0xff), "size %zu byte %zu", n, i);
        sg_slab_free(blocks[n]);
    }
}

Test(slab, freed_blocks_are_reused_and_large_ones_are_malloc)
{
    void *a = sg_slab_malloc(100);
    sg_slab_free(a);
    void *b = sg_slab_malloc(100);
    if (have_heap) cr_assert_eq(a, b, "the freed block comes back first");
    sg_slab_free(b);
    void *big = sg_slab_malloc(SG_SLAB_MAX + 1);
    cr_assert_not_null(big);
    cr_assert_eq(sg_slab_block_size(big), 0, "a large block is not the heap's");
    sg_slab_free(big);
    sg_slab_free(NULL);
}

Test(slab, calloc_zeroes_and_realloc_keeps_the_bytes)
{
    unsigned char *p = sg_slab_malloc(64);
    memset(p, 0xab, 64);
    sg_slab_free(p);
    unsigned char *z = sg_slab_calloc(8, 8);   /* likely the same block: must be zeroed */
    for (int i = 0; i < 64; i++) cr_assert_eq(z[i], 0);
    for (int i = 0; i < 64; i++) z[i] = (unsigned char)i;
    z = sg_slab_realloc(z, 40);                /* smaller: stays */
    for (int i = 0; i < 40; i++) cr_assert_eq(z[i], (unsigned char)i);
    z = sg_slab_realloc(z, 600);               /* another class */
    for (int i = 0; i < 40; i++) cr_assert_eq(z[i], (unsigned char)i);
    z = sg_slab_realloc(z, 5000);              /* out to malloc */
    for (int i = 0; i < 40; i++) cr_assert_eq(z[i], (unsigned char)i);
    z = sg_slab_realloc(z, 32);                /* and back */
    for (int i = 0; i < 32; i++) cr_assert_eq(z[i], (unsigned char)i);
    cr_assert_null(sg_slab_calloc(SIZE_MAX / 2, 4), "an overflowing calloc fails");
    sg_slab_free(z);
}

static void *free_elsewhere(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < 1000; i++) sg_slab_free(blocks[i]);   /* this thread has no heap */
    return NULL;
}

Test(slab, blocks_freed_by_another_thread_go_back_to_the_owner)
{
    static void *blocks[1000];
    for (int i = 0; i < 1000; i++) blocks[i] = sg_slab_malloc(48);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_elsewhere, blocks), 0);
    pthread_join(t, NULL);
    if (!have_heap) return;
    /* the owner's next allocations of that size are those blocks again
     * (but for the room left in the page it was filling) */
    int reused = 0;
    for (int i = 0; i < 1000; i++) {
        void *p = sg_slab_malloc(48);
        for (int k = 0; k < 1000; k++)
            if (blocks[k] == p) {
                reused++;
                break;
            }
    }
    cr_assert_geq(reused, 900, "%d of 1000 blocks reused", reused);
}

Test(slab, a_burst_of_one_size_leaves_its_pages_to_the_others)
{
    if (!have_heap) return;
    static void *burst[1000];
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < 1000; i++) {
        burst[i] = sg_slab_malloc(352);
        if ((uintptr_t)burst[i] < lo) lo = (uintptr_t)burst[i];
        if ((uintptr_t)burst[i] > hi) hi = (uintptr_t)burst[i];
    }
    for (int i = 0; i < 1000; i++) sg_slab_free(burst[i]);
    /* 1000 blocks of 160 bytes fit in the pages the burst gave back */
    int inside = 0;
    for (int i = 0; i < 1000; i++) {
        uintptr_t p = (uintptr_t)sg_slab_malloc(160);
        if (p >= lo && p < (hi | 4095) + 1) inside++;   /* up to the end of the burst's last page */
    }
    cr_assert_eq(inside, 1000, "%d of 1000 smaller blocks reuse the burst's pages", inside);
}

Test(slab, one_block_taken_and_given_back_keeps_its_page)
{
    if (!have_heap) return;
    void *a = sg_slab_malloc(200);
    sg_slab_free(a);
    for (int i = 0; i < 100; i++) {
        void *b = sg_slab_malloc(200);
        cr_assert_eq(a, b, "the class kept its page and the block");
        sg_slab_free(b);
    }
}
