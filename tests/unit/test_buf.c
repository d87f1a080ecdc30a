/* Output queue and input buffer: bytes come out as they went in, in order,
 * and memory is given back when a queue empties. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"

Test(outq, flush_writes_everything_in_order)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sg_outq q = { 0 };
    sg_outq_append(&q, "hello ", 6);
    char *p = sg_outq_reserve(&q, 5);
    memcpy(p, "world", 5);
    sg_outq_commit(&q, 5);
    cr_assert_eq(q.bytes, 11);
    size_t w = 0;
    cr_assert_eq(sg_outq_flush(&q, sv[0], &w), SG_IO_DONE);
    cr_assert_eq(w, 11);
    cr_assert_eq(q.bytes, 0);
    cr_assert_null(q.head);
    char buf[32] = { 0 };
    cr_assert_eq(read(sv[1], buf, sizeof(buf)), 11);
    cr_assert_str_eq(buf, "hello world");
    close(sv[0]);
    close(sv[1]);
}

Test(outq, full_socket_keeps_the_rest)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    static char big[4 << 20];
    for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)(i * 7);
    sg_outq q = { 0 };
    sg_outq_append(&q, big, sizeof(big));
    size_t w = 0;
    cr_assert_eq(sg_outq_flush(&q, sv[0], &w), SG_IO_AGAIN);
    cr_assert_eq(w + q.bytes, sizeof(big));
    /* drain the peer and finish: the stream must be intact */
    static char got[4 << 20];
    size_t have = 0;
    while (have < sizeof(big)) {
        ssize_t n = read(sv[1], got + have, sizeof(got) - have);
        cr_assert_gt(n, 0);
        have += (size_t)n;
        if (q.bytes) sg_outq_flush(&q, sv[0], NULL);
    }
    cr_assert_eq(memcmp(big, got, sizeof(big)), 0);
    sg_outq_clear(&q);
    close(sv[0]);
    close(sv[1]);
}

/* HTTP/2 data sources take frame-sized pieces across chunk boundaries. */
Test(outq, take_and_move_keep_order_across_chunks)
{
    static char big[40000], out[40000];
    for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)('a' + i % 26);
    sg_outq q = { 0 }, dst = { 0 };
    sg_outq_append(&q, big, sizeof(big));
    cr_assert_eq(sg_outq_take(&q, out, 20000), 20000);
    cr_assert_eq(memcmp(out, big, 20000), 0);
    sg_outq_move(&q, &dst, 15000);
    cr_assert_eq(q.bytes, 5000);
    cr_assert_eq(dst.bytes, 15000);
    cr_assert_eq(sg_outq_take(&dst, out, sizeof(out)), 15000);
    cr_assert_eq(memcmp(out, big + 20000, 15000), 0);
    cr_assert_eq(sg_outq_take(&q, out, sizeof(out)), 5000);
    cr_assert_eq(memcmp(out, big + 35000, 5000), 0);
    cr_assert_null(q.head);
    cr_assert_null(dst.head);
}

Test(inbuf, consume_keeps_the_tail_and_frees_when_empty)
{
    sg_inbuf b = { 0 };
    sg_inbuf_append(&b, "GET / HTTP/1.1\r\n", 16);
    sg_inbuf_consume(&b, 4);
    cr_assert_eq(b.len, 12);
    cr_assert_eq(memcmp(b.p, "/ HTTP/1.1\r\n", 12), 0);
    sg_inbuf_consume(&b, 12);
    cr_assert_null(b.p);
    cr_assert_eq(b.cap, 0);
}

/* An empty append to a buffer that has no memory yet (an HTTP/2 cookie
 * crumb of zero bytes): nothing happens, and no NULL + 0 (UBSan). */
Test(inbuf, empty_append_to_an_empty_buffer_allocates_nothing)
{
    sg_inbuf b = { 0 };
    sg_inbuf_append(&b, "", 0);
    cr_assert_null(b.p);
    cr_assert_eq(b.len, 0);
    sg_inbuf_append(&b, "x", 1);
    cr_assert_eq(b.len, 1);
    sg_inbuf_free(&b);
}

/* A lean queue's first small write takes a small chunk; what follows (a
 * burst after it, a reserve, a large write) still comes out whole and in
 * order, and the queue stays lean once emptied. */
Test(outq, lean_queue_small_then_large_writes_keep_order)
{
    static char big[100000];
    for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)('a' + i % 26);
    sg_outq q = { .lean = true };
    sg_outq_append(&q, "12345", 5);
    for (int i = 0; i < 300; i++) sg_outq_append(&q, "xy", 2);
    char *p = sg_outq_reserve(&q, 3);
    memcpy(p, "END", 3);
    sg_outq_commit(&q, 3);
    sg_outq_append(&q, big, sizeof(big));
    cr_assert_eq(q.bytes, 5 + 600 + 3 + sizeof(big));
    static char out[sizeof(big) + 1000];
    cr_assert_eq(sg_outq_take(&q, out, sizeof(out)), 5 + 600 + 3 + sizeof(big));
    cr_assert_eq(memcmp(out, "12345", 5), 0);
    for (int i = 0; i < 300; i++) cr_assert_eq(memcmp(out + 5 + 2 * i, "xy", 2), 0);
    cr_assert_eq(memcmp(out + 605, "END", 3), 0);
    cr_assert_eq(memcmp(out + 608, big, sizeof(big)), 0);
    cr_assert_null(q.head);
    cr_assert(q.lean);
    sg_outq_append(&q, "again", 5);
    sg_outq_clear(&q);
    cr_assert(q.lean);
    cr_assert_eq(q.bytes, 0);
}

Test(inbuf, small_first_append_grows_for_more)
{
    sg_inbuf b = { 0 };
    sg_inbuf_append(&b, "abc", 3);
    cr_assert_geq(b.cap, 3);
    static char more[5000];
    memset(more, 'm', sizeof(more));
    sg_inbuf_append(&b, more, sizeof(more));
    cr_assert_eq(b.len, 3 + sizeof(more));
    cr_assert_geq(b.cap, b.len);
    cr_assert_eq(memcmp(b.p, "abc", 3), 0);
    cr_assert_eq(memcmp(b.p + 3, more, sizeof(more)), 0);
    sg_inbuf_free(&b);
}
