/* c-ares on the worker's loop (net/resolver.h). */
#include "net/resolver.h"

#include <ares.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>

#include "core/str.h"

/* One socket c-ares opened, registered as a level-triggered reader (its
 * UDP answers are read one datagram per ares_process_fd, so an
 * edge-triggered registration could leave answers unread). */
typedef struct res_sock {
    sg_io io;
    struct sg_resolver *r;
    bool want_write;
    struct res_sock *next;
} res_sock;

struct sg_resolver {
    sg_loop *loop;
    ares_channel ch;
    int family;                        /* AF_UNSPEC, AF_INET or AF_INET6 */
    res_sock *socks;
    sg_timer timer;
    bool freeing;
    struct res_query *deferred;        /* answered, waiting for the loop to report them */
};

/* One lookup: an A and/or an AAAA query (ares_query sends the name as
 * it is; ares_getaddrinfo would answer "localhost" itself, which nginx's
 * resolver asks its servers about). */
enum { MAX_ADDRS = 32 };
typedef struct res_query {
    struct res_query *next_deferred;
    sg_resolver *r;
    sg_resolve_cb cb;
    void *arg;
    int port;
    int pending;                       /* queries not answered yet */
    int status;                        /* the first failure, if nothing was found */
    sg_deferred later;                 /* an answer c-ares gave at once is reported from the loop */
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t lens[MAX_ADDRS];
    size_t n;
    uint32_t ttl;
    int cnames;                        /* dns: CNAME targets asked for so far */
} res_query;

static void report(res_query *q);

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static void ares_global_init(void) { ares_library_init(ARES_LIB_INIT_ALL); }

static void arm_timer(sg_resolver *r)
{
    if (r->freeing) return;
    struct timeval tv, *t = ares_timeout(r->ch, NULL, &tv);
    bool writers = false;
    for (res_sock *s = r->socks; s; s = s->next) writers |= s->want_write;
    sg_timer_disarm(&r->timer);
    if (writers) {
        /* A TCP connection (a truncated answer) waits to be writable: the
         * loop watches only input here, so c-ares is polled soon. */
        sg_timer_arm(r->loop, &r->timer, 5);
    } else if (t) {
        uint64_t ms = (uint64_t)t->tv_sec * 1000 + (uint64_t)t->tv_usec / 1000;
        sg_timer_arm(r->loop, &r->timer, ms ? ms : 1);
    }
}

static void on_sock(sg_io *io, uint32_t events)
{
    res_sock *s = (res_sock *)io;
    sg_resolver *r = s->r;
    ares_process_fd(r->ch, io->fd, s->want_write ? io->fd : ARES_SOCKET_BAD);
    arm_timer(r);
}

static void on_timer(sg_timer *t)
{
    sg_resolver *r = (sg_resolver *)((char *)t - offsetof(sg_resolver, timer));
    fd_set rd, wr;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    bool writers = false;
    for (res_sock *s = r->socks; s; s = s->next) {
        if (s->want_write && s->io.fd < FD_SETSIZE) {
            FD_SET(s->io.fd, &wr);
            writers = true;
        }
    }
    if (writers) ares_process(r->ch, &rd, &wr);   /* connects done, and timeouts */
    else ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);   /* timeouts */
    arm_timer(r);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    sg_resolver *r = data;
    res_sock **pp = &r->socks;
    while (*pp && (*pp)->io.fd != fd) pp = &(*pp)->next;
    if (!readable && !writable) {
        if (*pp) {
            res_sock *s = *pp;
            *pp = s->next;
            sg_loop_del(r->loop, &s->io);
            free(s);
        }
        return;
    }
    if (!*pp) {
        res_sock *s = sg_xcalloc(1, sizeof(*s));
        s->io.fd = fd;
        s->io.on_event = on_sock;
        s->r = r;
        if (sg_loop_add_reader(r->loop, &s->io) < 0) {
            free(s);
            return;   /* c-ares times the query out */
        }
        s->next = r->socks;
        r->socks = s;
        pp = &r->socks;
    }
    (*pp)->want_write = writable != 0;
}

sg_resolver *sg_resolver_new(sg_loop *loop, const sg_resolver_conf *rc, uint32_t timeout_ms,
                             char *err, size_t errlen)
{
    pthread_once(&ares_once, ares_global_init);
    sg_resolver *r = sg_xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->family = rc->ipv4 && rc->ipv6 ? AF_UNSPEC : rc->ipv4 ? AF_INET : AF_INET6;
    sg_timer_init(&r->timer, on_timer);
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = r;
    /* dns: as nginx's resolver, a SERVFAIL/REFUSED answer is the answer
     * (NOCHECKRESP: c-ares would otherwise ask the next server, or the
     * same one again, and a failing server would look like a slow good
     * one), and the servers of one `resolver` line take turns (ROTATE). */
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_NOCHECKRESP;
    o.lookups = (char *)"b";           /* DNS only: nginx's resolver never reads /etc/hosts */
    o.ndots = 1;
    o.ndomains = 0;
    o.domains = NULL;
    uint32_t per_try = timeout_ms / 3;   /* two tries: t/3, then 2t/3 (c-ares doubles) */
    o.timeout = (int)(per_try ? per_try : 1);
    o.tries = 2;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS | ARES_OPT_LOOKUPS | ARES_OPT_NDOTS |
               ARES_OPT_DOMAINS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_ROTATE;
    int st = ares_init_options(&r->ch, &o, mask);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
        free(r);
        return NULL;
    }
    st = ares_set_servers_ports_csv(r->ch, rc->servers);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: resolver \"%s\": %s", rc->servers, ares_strerror(st));
        ares_destroy(r->ch);
        free(r);
        return NULL;
    }
    return r;
}

void sg_resolver_free(sg_resolver *r)
{
    if (!r) return;
    r->freeing = true;
    sg_timer_disarm(&r->timer);
    ares_destroy(r->ch);               /* pending callbacks run (ARES_EDESTRUCTION), sockets close */
    while (r->deferred) {              /* answers the loop did not report yet (it stopped) */
        res_query *q = r->deferred;
        r->deferred = q->next_deferred;
        sg_loop_cancel(&q->later);
        report(q);
    }
    while (r->socks) {
        res_sock *s = r->socks;
        r->socks = s->next;
        sg_loop_del(r->loop, &s->io);
        free(s);
    }
    free(r);
}

static void report(res_query *q)
{
    sg_resolve_result res = { .ok = q->n > 0, .addrs = q->addrs, .lens = q->lens, .n = q->n };
    res.ttl_s = q->ttl == UINT32_MAX ? 0 : q->ttl;
    if (!res.ok) {
        res.notfound = q->status == ARES_SUCCESS || q->status == ARES_ENOTFOUND || q->status == ARES_ENODATA;
        /* nginx's wording, with its codes (the DNS RCODE, or 110) */
        switch (q->status) {
        case ARES_SUCCESS: case ARES_ENOTFOUND: case ARES_ENODATA: res.err = "3: Host not found"; break;
        case ARES_ETIMEOUT: res.err = "110: Operation timed out"; break;
        case ARES_EFORMERR: res.err = "1: Format error"; break;
        case ARES_EREFUSED: res.err = "5: Operation refused"; break;
        case ARES_ENOTIMP: res.err = "4: Unimplemented"; break;
        default: res.err = "2: Server failure"; break;
        }
    }
    q->cb(q->arg, &res);
    free(q);
}

static void unlink_deferred(res_query *q)
{
    for (res_query **pp = &q->r->deferred; *pp; pp = &(*pp)->next_deferred) {
        if (*pp == q) {
            *pp = q->next_deferred;
            return;
        }
    }
}

static void on_later(sg_deferred *d)
{
    res_query *q = (res_query *)((char *)d - offsetof(res_query, later));
    unlink_deferred(q);
    report(q);
}

static void add_addr(res_query *q, int family, const void *a, int ttl)
{
    if (q->n >= MAX_ADDRS) return;
    struct sockaddr_storage *ss = &q->addrs[q->n];
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)q->port);
        memcpy(&sin->sin_addr, a, sizeof(sin->sin_addr));
        q->lens[q->n++] = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)q->port);
        memcpy(&sin6->sin6_addr, a, sizeof(sin6->sin6_addr));
        q->lens[q->n++] = sizeof(*sin6);
    }
    if (ttl >= 0 && (uint32_t)ttl < q->ttl) q->ttl = (uint32_t)ttl;
}

/* ---- dns: CNAME chains (ares_query does not follow them; nginx's
 * resolver asks for the target, and so do we) ---- */

static bool read_u16(const unsigned char *abuf, int alen, int at, int *v)
{
    if (at < 0 || at + 2 > alen) return false;
    *v = (abuf[at] << 8) | abuf[at + 1];
    return true;
}

/* Expands the name at `at` into out; *next: the byte after it. */
static bool read_name(const unsigned char *abuf, int alen, int at, char *out, size_t outlen, int *next)
{
    char *name = NULL;
    long len = 0;
    if (at < 0 || at >= alen) return false;
    if (ares_expand_name(abuf + at, abuf, alen, &name, &len) != ARES_SUCCESS) return false;
    bool ok = strlen(name) < outlen && len > 0;
    if (ok) {
        strcpy(out, name);
        *next = at + (int)len;
    }
    ares_free_string(name);
    return ok;
}

bool sg_resolver_cname_target(const unsigned char *abuf, int alen, char *out, size_t outlen)
{
    enum { T_CNAME = 5, MAX_RR = 64, MAX_CHAIN = 8 };
    int qd, an, at = 12;
    if (!read_u16(abuf, alen, 4, &qd) || !read_u16(abuf, alen, 6, &an) || qd != 1) return false;
    char cur[256], owner[256], target[256];
    if (!read_name(abuf, alen, at, cur, sizeof(cur), &at)) return false;
    at += 4;                           /* QTYPE, QCLASS */
    if (an > MAX_RR) an = MAX_RR;
    bool found = false;
    for (int step = 0; step < MAX_CHAIN; step++) {
        bool moved = false;
        int p = at;
        for (int i = 0; i < an; i++) {
            int type, rdlen;
            if (!read_name(abuf, alen, p, owner, sizeof(owner), &p)) return false;
            if (!read_u16(abuf, alen, p, &type) || !read_u16(abuf, alen, p + 8, &rdlen)) return false;
            p += 10;
            if (p + rdlen > alen) return false;
            if (type == T_CNAME && strcasecmp(owner, cur) == 0) {
                int end;
                if (!read_name(abuf, alen, p, target, sizeof(target), &end)) return false;
                strcpy(cur, target);
                moved = found = true;
                break;
            }
            p += rdlen;
        }
        if (!moved) break;
    }
    if (!found || strlen(cur) >= outlen) return false;
    strcpy(out, cur);
    return true;
}

static void on_a(void *arg, int status, int timeouts, unsigned char *abuf, int alen);
static void on_aaaa(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen, int family)
{
    res_query *q = arg;
    size_t before = q->n;
    bool answered = status == ARES_SUCCESS;
    if (status == ARES_SUCCESS) {
        if (family == AF_INET) {
            struct ares_addrttl t[MAX_ADDRS];
            int nt = MAX_ADDRS;
            status = ares_parse_a_reply(abuf, alen, NULL, t, &nt);
            for (int i = 0; status == ARES_SUCCESS && i < nt; i++) add_addr(q, AF_INET, &t[i].ipaddr, t[i].ttl);
        } else {
            struct ares_addr6ttl t[MAX_ADDRS];
            int nt = MAX_ADDRS;
            status = ares_parse_aaaa_reply(abuf, alen, NULL, t, &nt);
            for (int i = 0; status == ARES_SUCCESS && i < nt; i++) add_addr(q, AF_INET6, &t[i].ip6addr, t[i].ttl);
        }
    }
    char target[256];
    if (answered && q->n == before && !q->r->freeing && q->cnames < 8 &&
        sg_resolver_cname_target(abuf, alen, target, sizeof(target))) {
        /* no address but a CNAME: the same question for its target */
        enum { C_IN = 1, T_A = 1, T_AAAA = 28 };
        q->cnames++;
        ares_query(q->r->ch, target, C_IN, family == AF_INET ? T_A : T_AAAA, family == AF_INET ? on_a : on_aaaa, q);
        return;
    }
    if (status != ARES_SUCCESS && (q->status == ARES_SUCCESS || q->status == ARES_ENODATA)) q->status = status;
    if (--q->pending > 0) return;
    if (q->r->freeing || status == ARES_EDESTRUCTION) {
        report(q);
        return;
    }
    /* c-ares may answer inside ares_query (a failure): the caller is
     * still on the stack, so report from the loop. */
    q->next_deferred = q->r->deferred;
    q->r->deferred = q;
    sg_loop_defer(q->r->loop, &q->later);
}

static void on_a(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    on_answer(arg, status, timeouts, abuf, alen, AF_INET);
}

static void on_aaaa(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    on_answer(arg, status, timeouts, abuf, alen, AF_INET6);
}

void sg_resolver_query(sg_resolver *r, const char *name, int port, sg_resolve_cb cb, void *arg)
{
    enum { C_IN = 1, T_A = 1, T_AAAA = 28 };
    res_query *q = sg_xcalloc(1, sizeof(*q));
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    q->ttl = UINT32_MAX;
    sg_deferred_init(&q->later, on_later);
    bool a = r->family != AF_INET6, aaaa = r->family != AF_INET;
    q->pending = a + aaaa;
    if (a) ares_query(r->ch, name, C_IN, T_A, on_a, q);
    if (aaaa) ares_query(r->ch, name, C_IN, T_AAAA, on_aaaa, q);
    arm_timer(r);
}

/* ---- dns: SRV (upstream servers with service=) ---- */

typedef struct srv_query {
    sg_resolver *r;
    sg_srv_cb cb;
    void *arg;
    int cnames;                        /* CNAME targets asked for so far */
} srv_query;

static const char *srv_err(int status)
{
    switch (status) {
    case ARES_ENOTFOUND: case ARES_ENODATA: return "3: Host not found";
    case ARES_ETIMEOUT: return "110: Operation timed out";
    case ARES_EFORMERR: return "1: Format error";
    case ARES_EREFUSED: return "5: Operation refused";
    case ARES_ENOTIMP: return "4: Unimplemented";
    default: return "2: Server failure";
    }
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    enum { C_IN = 1, T_SRV = 33 };
    srv_query *q = arg;
    struct ares_srv_reply *list = NULL;
    bool answered = status == ARES_SUCCESS;
    if (status == ARES_SUCCESS) status = ares_parse_srv_reply(abuf, alen, &list);
    char target[256];
    if (answered && !list && !q->r->freeing && q->cnames < 8 &&
        sg_resolver_cname_target(abuf, alen, target, sizeof(target))) {
        q->cnames++;                   /* no record but a CNAME: ask its target */
        ares_query(q->r->ch, target, C_IN, T_SRV, on_srv, q);
        return;
    }
    sg_srv_result res = { .ok = status == ARES_SUCCESS };
    enum { MAX_SRV = 64 };
    sg_srv_record recs[MAX_SRV];
    if (res.ok) {
        for (struct ares_srv_reply *s = list; s && res.n < MAX_SRV; s = s->next)
            recs[res.n++] = (sg_srv_record){ s->priority, s->weight, s->port, s->host };
        res.recs = recs;
        if (res.n == 0) {
            res.ok = false;
            res.notfound = true;
            res.err = "3: Host not found";
        }
    } else {
        res.notfound = status == ARES_ENOTFOUND || status == ARES_ENODATA;
        res.err = srv_err(status);
    }
    q->cb(q->arg, &res);
    if (list) ares_free_data(list);
    free(q);
}

void sg_resolver_query_srv(sg_resolver *r, const char *name, sg_srv_cb cb, void *arg)
{
    enum { C_IN = 1, T_SRV = 33 };
    srv_query *q = sg_xcalloc(1, sizeof(*q));
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    ares_query(r->ch, name, C_IN, T_SRV, on_srv, q);
    arm_timer(r);
}
