/* Per-thread timers: a binary min-heap of deadlines. Each timer remembers
 * its heap index so that a connection closing early can disarm in
 * O(log n) instead of leaving a dangling entry behind. */
#include <stdlib.h>
#include <time.h>
#include "sgback.h"
#include "core/str.h"

uint64_t sgb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void heap_set(sgb_heap *h, size_t i, sgb_timer *t)
{
    h->v[i] = t;
    t->idx = i;
}

static void sift_up(sgb_heap *h, size_t i)
{
    sgb_timer *t = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->v[parent]->at_ms <= t->at_ms)
            break;
        heap_set(h, i, h->v[parent]);
        i = parent;
    }
    heap_set(h, i, t);
}

static void sift_down(sgb_heap *h, size_t i)
{
    sgb_timer *t = h->v[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t best = t->at_ms;
        if (l < h->n && h->v[l]->at_ms < best) {
            m = l;
            best = h->v[l]->at_ms;
        }
        if (l + 1 < h->n && h->v[l + 1]->at_ms < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(h, i, h->v[m]);
        i = m;
    }
    heap_set(h, i, t);
}

void sgb_timer_arm(sgb_heap *h, sgb_timer *t, uint64_t at_ms)
{
    sgb_timer_disarm(h, t);
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = sg_xrealloc(h->v, h->cap * sizeof *h->v);
    }
    t->at_ms = at_ms;
    heap_set(h, h->n++, t);
    sift_up(h, t->idx);
}

void sgb_timer_disarm(sgb_heap *h, sgb_timer *t)
{
    size_t i = t->idx;
    if (i == SIZE_MAX)
        return;
    t->idx = SIZE_MAX;
    h->n--;
    if (i == h->n)
        return;
    sgb_timer *moved = h->v[h->n];
    heap_set(h, i, moved);
    sift_up(h, i);
    sift_down(h, moved->idx);
}

sgb_timer *sgb_timer_due(sgb_heap *h, uint64_t now)
{
    if (h->n == 0 || h->v[0]->at_ms > now)
        return NULL;
    return h->v[0];
}

int sgb_timer_wait_ms(const sgb_heap *h, uint64_t now)
{
    if (h->n == 0)
        return -1;
    if (h->v[0]->at_ms <= now)
        return 0;
    uint64_t d = h->v[0]->at_ms - now;
    return d > 60000 ? 60000 : (int)d;
}

void sgb_heap_free(sgb_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
