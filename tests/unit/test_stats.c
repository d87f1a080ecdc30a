/* core/stats.c: per-thread counters summed over threads, and the
 * connection phases stub_status reads. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "core/stats.h"
#include "proxy/grpc.h"

#define SLOT (SG_ST_FIRST_FREE + 5)

static void *count_on_a_thread(void *arg)
{
    for (int i = 0; i < 1000; i++) sg_stats_add(SLOT, 1);
    sg_stats_add(SG_ST_WS, (intptr_t)arg);
    return NULL;
}

Test(stats, threads_sum_and_keep_their_counts_after_exit)
{
    int64_t before = sg_stats_sum(SLOT), ws = sg_stats_sum(SG_ST_WS);
    pthread_t t[4];
    for (intptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, count_on_a_thread, (void *)(i + 1));
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    sg_stats_add(SLOT, -10);
    cr_assert_eq(sg_stats_sum(SLOT) - before, 4000 - 10);
    cr_assert_eq(sg_stats_sum(SG_ST_WS) - ws, 1 + 2 + 3 + 4);
}

Test(stats, http1_phases_follow_nginx)
{
    sg_stub_status a, b;
    sg_stats_stub(&a);
    sg_conn_stat s;
    sg_conn_stat_open(&s, SG_CS_H1);
    sg_conn_stat_tls(&s);
    sg_conn_stat_phase(&s, SG_CS_READING);
    sg_conn_stat_phase(&s, SG_CS_WRITING);
    sg_stats_stub(&b);
    cr_assert_eq(b.active - a.active, 1);
    cr_assert_eq(b.requests - a.requests, 1);          /* one request, read then written */
    cr_assert_eq(b.writing - a.writing, 1);
    cr_assert_eq(b.reading - a.reading, 0);
    cr_assert_eq(sg_stats_sum(SG_ST_TLS), 1);
    sg_conn_stat_phase(&s, SG_CS_WAITING);
    sg_conn_stat_phase(&s, SG_CS_WRITING);             /* a whole head at once: a second request */
    sg_conn_stat_close(&s);
    sg_conn_stat_close(&s);                            /* twice: no effect */
    sg_stats_stub(&b);
    cr_assert_eq(b.active, a.active);
    cr_assert_eq(b.requests - a.requests, 2);
    cr_assert_eq(b.writing, a.writing);
    cr_assert_eq(sg_stats_sum(SG_ST_TLS), 0);
    cr_assert_eq(sg_stats_sum(SG_ST_H1_IDLE) + sg_stats_sum(SG_ST_H1_ACTIVE), 0);
}

Test(stats, http2_connection_busy_while_streams_open)
{
    sg_conn_stat s;
    sg_conn_stat_open(&s, SG_CS_H2);
    cr_assert_eq(sg_stats_sum(SG_ST_H2_IDLE), 1);
    sg_conn_stat_busy(&s, true);
    sg_stats_req_begin();
    sg_stats_req_head();
    cr_assert_eq(sg_stats_sum(SG_ST_H2_ACTIVE), 1);
    cr_assert_eq(sg_stats_sum(SG_ST_H2_IDLE), 0);
    sg_stats_req_end(true);
    sg_conn_stat_busy(&s, false);
    sg_conn_stat_close(&s);
    cr_assert_eq(sg_stats_sum(SG_ST_H2_ACTIVE) + sg_stats_sum(SG_ST_H2_IDLE), 0);
}

Test(stats, grpc_framing_counts_messages_in_any_chunks)
{
    /* three messages: 2, 0 and 3 payload bytes */
    const char s[] = "\0\0\0\0\2ab" "\0\0\0\0\0" "\0\0\0\0\3xyz";
    size_t n = sizeof(s) - 1;
    for (size_t chunk = 1; chunk <= n; chunk++) {
        sg_grpc_framing f = { 0 };
        uint64_t len;
        for (size_t off = 0; off < n; off += chunk)
            cr_assert(sg_grpc_framing_scan(&f, s + off, n - off < chunk ? n - off : chunk, UINT64_MAX, &len));
        cr_assert_eq(f.msgs, 3, "chunk %zu", chunk);
    }
}
