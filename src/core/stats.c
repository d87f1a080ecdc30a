/* Per-thread counters (core/stats.h). */
#include "core/stats.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/str.h"

_Thread_local sg_stats_block *sg_stats_tls;

static sg_stats_block *_Atomic blocks[SG_STATS_MAX_THREADS];
static atomic_size_t nblocks;
static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;
static sg_stats_block *_Atomic overflow;

/* A thread's first count: off the fast path, once per thread. */
sg_stats_block *sg_stats_attach(void)
{
    pthread_mutex_lock(&attach_lock);
    size_t n = atomic_load_explicit(&nblocks, memory_order_relaxed);
    sg_stats_block *b;
    if (n < SG_STATS_MAX_THREADS) {
        b = sg_xcalloc(1, sizeof(*b));
        atomic_store_explicit(&blocks[n], b, memory_order_release);
        atomic_store_explicit(&nblocks, n + 1, memory_order_release);
    } else {
        b = atomic_load_explicit(&overflow, memory_order_relaxed);
        if (!b) {
            b = sg_xcalloc(1, sizeof(*b));
            b->shared = true;
            atomic_store_explicit(&overflow, b, memory_order_release);
        }
    }
    pthread_mutex_unlock(&attach_lock);
    sg_stats_tls = b;
    return b;
}

static size_t visible_blocks(void)
{
    return atomic_load_explicit(&nblocks, memory_order_acquire);
}

int64_t sg_stats_sum(size_t slot)
{
    int64_t s = 0;
    size_t n = visible_blocks();
    for (size_t i = 0; i < n; i++) {
        sg_stats_block *b = atomic_load_explicit(&blocks[i], memory_order_acquire);
        if (b) s += atomic_load_explicit(&b->v[slot], memory_order_relaxed);
    }
    sg_stats_block *o = atomic_load_explicit(&overflow, memory_order_acquire);
    if (o) s += atomic_load_explicit(&o->v[slot], memory_order_relaxed);
    return s;
}

void sg_stats_sum_range(size_t first, size_t n, int64_t *out)
{
    for (size_t k = 0; k < n; k++) out[k] = 0;
    size_t nb = visible_blocks();
    sg_stats_block *o = atomic_load_explicit(&overflow, memory_order_acquire);
    for (size_t i = 0; i <= nb; i++) {
        sg_stats_block *b = i < nb ? atomic_load_explicit(&blocks[i], memory_order_acquire) : o;
        if (!b) continue;
        for (size_t k = 0; k < n; k++) out[k] += atomic_load_explicit(&b->v[first + k], memory_order_relaxed);
    }
}

/* ---- connections ---- */

static size_t idle_slot(int proto)
{
    return proto == SG_CS_H2 ? SG_ST_H2_IDLE : SG_ST_H1_IDLE;
}

static size_t active_slot(int proto)
{
    return proto == SG_CS_H2 ? SG_ST_H2_ACTIVE : SG_ST_H1_ACTIVE;
}

void sg_conn_stat_open(sg_conn_stat *s, int proto)
{
    s->proto = (uint8_t)proto;
    s->phase = SG_CS_WAITING;
    s->tls = false;
    sg_stats_add(idle_slot(proto), 1);
}

void sg_conn_stat_tls(sg_conn_stat *s)
{
    if (s->phase == SG_CS_CLOSED || s->tls) return;
    s->tls = true;
    sg_stats_add(SG_ST_TLS, 1);
}

/* Leaves the current phase's gauges. */
static void leave(sg_conn_stat *s)
{
    switch (s->phase) {
    case SG_CS_WAITING: sg_stats_add(idle_slot(s->proto), -1); break;
    case SG_CS_READING: sg_stats_add(SG_ST_READING, -1); sg_stats_add(active_slot(s->proto), -1); break;
    case SG_CS_WRITING: sg_stats_add(SG_ST_WRITING, -1); sg_stats_add(active_slot(s->proto), -1); break;
    case SG_CS_BUSY: sg_stats_add(active_slot(s->proto), -1); break;
    default: break;
    }
}

static void enter(sg_conn_stat *s, int phase)
{
    switch (phase) {
    case SG_CS_WAITING: sg_stats_add(idle_slot(s->proto), 1); break;
    case SG_CS_READING: sg_stats_add(SG_ST_READING, 1); sg_stats_add(active_slot(s->proto), 1); break;
    case SG_CS_WRITING: sg_stats_add(SG_ST_WRITING, 1); sg_stats_add(active_slot(s->proto), 1); break;
    case SG_CS_BUSY: sg_stats_add(active_slot(s->proto), 1); break;
    default: break;
    }
    s->phase = (uint8_t)phase;
}

void sg_conn_stat_phase(sg_conn_stat *s, int phase)
{
    if (s->phase == SG_CS_CLOSED || s->phase == phase) return;
    if (s->phase == SG_CS_WAITING) sg_stats_add(SG_ST_REQUESTS, 1);
    leave(s);
    enter(s, phase);
}

void sg_conn_stat_busy(sg_conn_stat *s, bool busy)
{
    int phase = busy ? SG_CS_BUSY : SG_CS_WAITING;
    if (s->phase == SG_CS_CLOSED || s->phase == phase) return;
    leave(s);
    enter(s, phase);
}

void sg_conn_stat_close(sg_conn_stat *s)
{
    if (s->phase == SG_CS_CLOSED) return;
    leave(s);
    if (s->tls) sg_stats_add(SG_ST_TLS, -1);
    s->tls = false;
    s->phase = SG_CS_CLOSED;
}

void sg_stats_stub(sg_stub_status *st)
{
    int64_t v[SG_ST_STREAM + 1];
    sg_stats_sum_range(0, SG_ST_STREAM + 1, v);
    st->accepted = v[SG_ST_ACCEPTED];
    st->handled = v[SG_ST_HANDLED];
    st->requests = v[SG_ST_REQUESTS];
    st->reading = v[SG_ST_READING];
    st->writing = v[SG_ST_WRITING];
    st->active = v[SG_ST_H1_IDLE] + v[SG_ST_H1_ACTIVE] + v[SG_ST_H2_IDLE] + v[SG_ST_H2_ACTIVE] +
                 v[SG_ST_WS] + v[SG_ST_STREAM];
    if (st->reading < 0) st->reading = 0;
    if (st->writing < 0) st->writing = 0;
    st->waiting = st->active - st->reading - st->writing;
    if (st->waiting < 0) st->waiting = 0;
}
