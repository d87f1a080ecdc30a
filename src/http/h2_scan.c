/* HTTP/2 frame headers as the client sent them, and what is left of
 * closed streams (see h2_scan.h). */
#include "http/h2_scan.h"

#include <stdlib.h>
#include <string.h>

#include "core/str.h"

/* ---------- frame boundaries ---------- */

void sg_h2_scan_init(sg_h2_scan *s, size_t skip)
{
    *s = (sg_h2_scan){ .skip = skip, .need = SG_H2_FRAME_HD_LEN };
}

static uint32_t be31(const uint8_t *p)
{
    return ((uint32_t)(p[0] & 0x7f) << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

size_t sg_h2_scan_next(sg_h2_scan *s, const uint8_t *p, size_t n, sg_h2_frame *f, size_t *start,
                       bool *found)
{
    size_t off = 0;
    *found = false;
    *start = 0;
    while (off < n) {
        if (s->skip) {
            size_t k = s->skip < n - off ? (size_t)s->skip : n - off;
            s->skip -= k;
            off += k;
            continue;
        }
        if (s->have == 0) *start = off;
        size_t k = (size_t)(s->need - s->have) < n - off ? (size_t)(s->need - s->have) : n - off;
        memcpy(s->buf + s->have, p + off, k);
        s->have += (uint8_t)k;
        off += k;
        if (s->have < s->need) break;
        const uint8_t *b = s->buf;
        uint32_t len = ((uint32_t)b[0] << 16) | ((uint32_t)b[1] << 8) | b[2];
        if (s->need == SG_H2_FRAME_HD_LEN && b[3] == SG_H2_T_PRIORITY && len == 5) {
            s->need += 4;   /* the dependency too: a stream may not depend on itself */
            continue;
        }
        *f = (sg_h2_frame){ .length = len, .type = b[3], .flags = b[4], .stream_id = (int32_t)be31(b + 5),
                            .dep = s->need > SG_H2_FRAME_HD_LEN ? (int32_t)be31(b + 9) : -1 };
        s->skip = len - (s->need - SG_H2_FRAME_HD_LEN);
        s->have = 0;
        s->need = SG_H2_FRAME_HD_LEN;
        *found = true;
        break;
    }
    return off;
}

/* ---------- closed streams ---------- */

void sg_h2_closed_init(sg_h2_closed *m, uint32_t cap)
{
    *m = (sg_h2_closed){ .cap = cap ? cap : 1 };
}

void sg_h2_closed_free(sg_h2_closed *m)
{
    free(m->reset);
    m->reset = NULL;
}

void sg_h2_closed_opened(sg_h2_closed *m, int32_t id)
{
    if (id <= m->last) return;
    if ((int64_t)id > (int64_t)m->last + 2) {   /* ids skipped: never opened, and never can be */
        uint32_t i = m->nskips++ % SG_H2_SKIP_RANGES;
        m->skip_lo[i] = m->last ? m->last + 2 : 1;
        m->skip_hi[i] = id - 2;
    }
    m->last = id;
}

static uint32_t ring_find(const sg_h2_closed *m, int32_t id)
{
    if (m->reset)
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->reset[i] == id) return i;
    return UINT32_MAX;
}

void sg_h2_closed_reset(sg_h2_closed *m, int32_t id)
{
    if (id <= 0 || ring_find(m, id) != UINT32_MAX) return;
    if (!m->reset) m->reset = sg_xcalloc(m->cap, sizeof(*m->reset));   /* 0 is never a client stream */
    m->reset[m->next] = id;
    m->next = (m->next + 1) % m->cap;
}

void sg_h2_closed_peer_done(sg_h2_closed *m, int32_t id)
{
    uint32_t i = ring_find(m, id);
    if (i != UINT32_MAX) m->reset[i] = 0;
}

static bool skipped(const sg_h2_closed *m, int32_t id)
{
    uint32_t n = m->nskips < SG_H2_SKIP_RANGES ? m->nskips : SG_H2_SKIP_RANGES;
    for (uint32_t i = 0; i < n; i++)
        if (id >= m->skip_lo[i] && id <= m->skip_hi[i]) return true;
    return false;
}

sg_h2_closed_verdict sg_h2_closed_frame(const sg_h2_closed *m, int32_t id, bool headers)
{
    /* Even ids and ids above the last one are idle streams: nghttp2's. */
    if (id <= 0 || !(id & 1) || id > m->last) return SG_H2_CLOSED_OK;
    if (ring_find(m, id) != UINT32_MAX) return SG_H2_CLOSED_OK;
    /* Ids skipped are closed too (5.1.1), but HEADERS there is a new stream
     * numbered below a later one; skipped ranges forgotten read as closed,
     * a connection error all the same. */
    if (headers && skipped(m, id)) return SG_H2_CLOSED_BAD_ID;
    return SG_H2_CLOSED_STREAM;
}
