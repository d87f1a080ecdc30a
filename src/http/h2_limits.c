/* HTTP/2 abuse accounting: token buckets and header block limits. */
#include "http/h2_limits.h"

#include <string.h>

void sg_h2_bucket_init(sg_h2_bucket *b, uint32_t burst, uint32_t rate_per_s, uint64_t now_ms)
{
    b->burst = burst;
    b->rate = rate_per_s;
    b->milli = (uint64_t)burst * 1000;
    b->last_ms = now_ms;
}

bool sg_h2_bucket_take(sg_h2_bucket *b, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)b->burst * 1000;
    if (now_ms > b->last_ms) {
        /* rate tokens per second = rate milli-tokens per millisecond */
        uint64_t add = (now_ms - b->last_ms) * b->rate;
        b->milli = add >= cap - b->milli ? cap : b->milli + add;
        b->last_ms = now_ms;
    }
    if (b->milli < 1000) return false;
    b->milli -= 1000;
    return true;
}

void sg_h2_hblock_begin(sg_h2_hblock *h, uint32_t max_field, uint32_t max_list, uint32_t max_headers)
{
    *h = (sg_h2_hblock){ .max_field = max_field, .max_list = max_list, .max_headers = max_headers };
}

/* The compressed block may legitimately be a little larger than the
 * decoded list (literals without Huffman), never many times larger. */
static uint64_t wire_cap(const sg_h2_hblock *h)
{
    uint64_t c = (uint64_t)h->max_list * 2;
    return c < 65536 ? 65536 : c;
}

sg_h2_verdict sg_h2_hblock_frame(sg_h2_hblock *h, bool continuation, size_t len)
{
    if (continuation && ++h->continuations > SG_H2_MAX_CONTINUATIONS) return SG_H2_CALM;
    h->wire_bytes += len;
    if (h->wire_bytes > wire_cap(h)) return SG_H2_CALM;
    return SG_H2_OK;
}

static bool counts(const uint8_t *name, size_t namelen)
{
    if (namelen && name[0] == ':') return false;
    return !(namelen == 6 && memcmp(name, "cookie", 6) == 0);
}

sg_h2_verdict sg_h2_hblock_field(sg_h2_hblock *h, const uint8_t *name, size_t namelen, size_t valuelen)
{
    h->fields++;
    h->list_bytes += (uint64_t)namelen + valuelen + 32;
    /* An HPACK bomb: a few bytes on the wire that decode into far more
     * than any legitimate request carries. */
    if (h->list_bytes > (uint64_t)h->max_list * SG_H2_BOMB_FACTOR) return SG_H2_CALM;
    if (h->refused) return h->refused;
    if (counts(name, namelen) && ++h->counted > h->max_headers) h->refused = SG_H2_TOO_MANY;
    else if (namelen + valuelen > h->max_field || h->list_bytes > h->max_list || h->fields > SG_H2_MAX_FIELDS)
        h->refused = SG_H2_TOO_LARGE;
    return h->refused;
}
