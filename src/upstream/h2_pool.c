/* Per-worker pools of HTTP/2 upstream connections (bookkeeping only). */
#include "upstream/h2_pool.h"

#include <stdlib.h>

#include "core/str.h"

struct sg_h2_pool {
    sg_pool *owner;                 /* owner->h2 == this pool */
    const sg_upstream_conf *u;
    sg_h2_member *members, **tail;
    size_t nidle;
    uint64_t idle_seq;
    bool retired;
    bool retiring;                  /* inside h2_retire: members leave, the pool stays */
};

static void pool_free_if_done(sg_h2_pool *hp)
{
    if (!hp->retired || hp->members || hp->retiring) return;
    if (hp->owner->h2 == hp) hp->owner->h2 = NULL;
    free(hp);
}

static void h2_retire(sg_pool *p)
{
    sg_h2_pool *hp = p->h2;
    if (!hp) return;
    hp->retired = true;
    hp->retiring = true;
    sg_h2_member *m = hp->members;
    while (m) {
        sg_h2_member *next = m->next;   /* m may leave; it never takes others with it */
        m->closing = true;
        m->retire(m);
        m = next;
    }
    hp->retiring = false;
    pool_free_if_done(hp);
}

sg_h2_pool *sg_h2_pool_of(sg_pool *p, const sg_upstream_conf *u)
{
    if (p->h2) return p->h2;
    sg_h2_pool *hp = sg_xcalloc(1, sizeof(*hp));
    hp->owner = p;
    hp->u = u;
    hp->tail = &hp->members;
    /* An attempt of an exchange that started before its generation was
     * retired: its connections close as soon as they are done. */
    hp->retired = p->retired;
    p->h2 = hp;
    p->h2_retire = h2_retire;
    return hp;
}

bool sg_h2_pool_retired(const sg_h2_pool *hp)
{
    return hp->retired;
}

static bool has_slot(const sg_h2_member *m)
{
    return !m->closing && m->streams < m->max_streams;
}

sg_h2_member *sg_h2_pool_pick(sg_h2_pool *hp, const sg_peer *peer, const sg_tls_key *tls,
                              const sg_h2_member *avoid)
{
    sg_h2_member *idle = NULL;
    for (sg_h2_member *m = hp->members; m; m = m->next) {
        if (m->peer != peer || m == avoid || !has_slot(m) || !sg_tls_key_eq(&m->tls, tls)) continue;
        if (!m->idle_seq) return m;                 /* busy: pack streams together */
        if (!idle || m->idle_seq > idle->idle_seq) idle = m;
    }
    return idle;
}

void sg_h2_pool_add(sg_h2_pool *hp, sg_h2_member *m, sg_peer *peer, const sg_tls_key *tls)
{
    m->pool = hp;
    m->peer = peer;
    m->tls = *tls;
    m->streams = 0;
    m->max_streams = SG_H2_ASSUMED_STREAMS;
    m->idle_seq = 0;
    m->closing = false;
    m->next = NULL;
    m->pprev = hp->tail;
    *hp->tail = m;
    hp->tail = &m->next;
}

void sg_h2_pool_set_max(sg_h2_member *m, uint32_t peer_max)
{
    m->max_streams = peer_max < SG_H2_MAX_STREAMS ? peer_max : SG_H2_MAX_STREAMS;
}

static void leave_idle(sg_h2_member *m)
{
    if (!m->idle_seq) return;
    m->idle_seq = 0;
    m->pool->nidle--;
}

void sg_h2_pool_stream_open(sg_h2_member *m)
{
    leave_idle(m);
    m->streams++;
}

void sg_h2_pool_stream_close(sg_h2_member *m)
{
    if (m->streams) m->streams--;
}

/* Idle connections that could serve what m serves. */
static size_t idle_like(const sg_h2_pool *hp, const sg_h2_member *m)
{
    size_t n = 0;
    for (const sg_h2_member *o = hp->members; o; o = o->next)
        if (o->idle_seq && o->peer == m->peer && sg_tls_key_eq(&o->tls, &m->tls)) n++;
    return n;
}

sg_h2_idle sg_h2_pool_idle(sg_h2_member *m)
{
    sg_h2_pool *hp = m->pool;
    leave_idle(m);
    if (hp->retired || m->closing) return SG_H2_CLOSE;
    bool surplus = hp->u->keepalive ? hp->nidle >= hp->u->keepalive : idle_like(hp, m) >= 1;
    m->idle_seq = ++hp->idle_seq;
    hp->nidle++;
    return surplus ? SG_H2_KEEP_BRIEFLY : SG_H2_KEEP;
}

void sg_h2_pool_leave(sg_h2_member *m)
{
    sg_h2_pool *hp = m->pool;
    if (!hp || !m->pprev) return;
    leave_idle(m);
    *m->pprev = m->next;
    if (m->next) m->next->pprev = m->pprev;
    else hp->tail = m->pprev;
    m->next = NULL;
    m->pprev = NULL;
    m->pool = NULL;
    pool_free_if_done(hp);
}
