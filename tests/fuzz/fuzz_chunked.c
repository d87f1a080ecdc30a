/* Fuzzes the chunked decoder: the input fed in random-sized pieces (sizes
 * drawn from the first input bytes) decodes to exactly what one-shot decoding
 * gives: same result, same data, same consumed length, same trailers. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parser.h"

typedef struct {
    sg_chunked_result res;
    size_t consumed;
    sg_strbuf data, trailers;
} outcome;

/* Feeds `in` in pieces; piece sizes come from a small PRNG seeded by `seed`
 * (seed 0: one piece). Each piece is its own exact-size heap copy. */
static void run(const uint8_t *in, size_t len, uint32_t seed, outcome *o)
{
    sg_chunked_decoder d;
    sg_chunked_init(&d);
    memset(o, 0, sizeof(*o));
    o->res = SG_CHUNKED_MORE;
    size_t pos = 0;
    while (pos < len || (pos == len && o->res == SG_CHUNKED_MORE && seed)) {
        size_t plen = len - pos;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t want = (seed >> 16) % 9;       /* 0..8, zero-length pieces too */
            if (want < plen) plen = want;
        }
        char *piece = malloc(plen ? plen : 1);
        memcpy(piece, in + pos, plen);
        size_t off = 0;
        for (;;) {
            size_t used, dlen;
            const char *data;
            sg_chunked_result r = sg_chunked_decode(&d, piece + off, plen - off, &used,
                                                    &data, &dlen, &o->trailers);
            assert(used <= plen - off);
            off += used;
            o->consumed += used;
            o->res = r;
            if (r != SG_CHUNKED_DATA) break;
            assert(dlen > 0 && data >= piece && data + dlen <= piece + plen);
            sg_strbuf_append(&o->data, data, dlen);
        }
        free(piece);
        if (o->res != SG_CHUNKED_MORE) return;
        assert(off == plen);
        pos += plen;
        if (pos == len) return;
    }
}

static bool same_buf(const sg_strbuf *a, const sg_strbuf *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint32_t seed = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                    (uint32_t)data[3] << 24;
    seed |= 1;
    data += 4;
    size -= 4;
    outcome one, many;
    run(data, size, 0, &one);
    run(data, size, seed, &many);
    /* Even on an error, the data before it and its position agree. */
    assert(one.res == many.res);
    assert(one.consumed == many.consumed);
    assert(same_buf(&one.data, &many.data));
    if (one.res != SG_CHUNKED_ERROR) assert(same_buf(&one.trailers, &many.trailers));
    if (one.res == SG_CHUNKED_END) assert(one.consumed <= size);
    sg_strbuf_free(&one.data);
    sg_strbuf_free(&one.trailers);
    sg_strbuf_free(&many.data);
    sg_strbuf_free(&many.trailers);
    return 0;
}
