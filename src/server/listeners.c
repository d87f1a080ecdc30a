/* The main thread's listening sockets, one slot per address. */
#include "server/listeners.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/str.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "server/server.h"

typedef struct listen_slot {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fds[SG_MAX_WORKERS];
    bool keep;
    bool udp;                    /* a datagram socket: another slot than TCP's on the same address */
    bool inherited;              /* adopted from the process that exec'd us (binary upgrade) */
} listen_slot;

/* Binary upgrade: the sockets the old process passed (sg_listeners_inherit),
 * until the first generation has adopted what it listens on. */
static int *inherited_fds;
static size_t ninherited;
static pid_t inherited_from;     /* the old process, our parent */
static bool keep_files;          /* a new binary runs on our sockets: leave unix files */

/* A unix socket's file stays when another process still listens on it:
 * the new binary we started (keep_files), or, for a socket we inherited,
 * the old process as long as it runs (nginx's rule). */
static bool may_unlink(const listen_slot *s)
{
    if (keep_files) return false;
    return !(s->inherited && inherited_from > 1 && getppid() == inherited_from);
}

/* Closes a slot's sockets; a unix socket's file goes with them (nginx
 * removes it when it stops listening there too). */
static void slot_close(listen_slot *s, int n)
{
    for (int q = 0; q < n; q++) close(s->fds[q]);
    if (s->addr.ss_family == AF_UNIX && may_unlink(s)) unlink(((struct sockaddr_un *)&s->addr)->sun_path);
}

static listen_slot *slots;
static size_t nslots;

static listen_slot *find_slot(const struct sockaddr *a, bool udp)
{
    for (size_t i = 0; i < nslots; i++)
        if (slots[i].udp == udp && sg_sockaddr_eq((struct sockaddr *)&slots[i].addr, a)) return &slots[i];
    return NULL;
}

/* Closes the slots opened since `old_n` and forgets which slots the failed
 * generation wanted: the running set stays exactly as it was. */
void sg_listeners_rollback(size_t old_n, int n)
{
    for (size_t m = old_n; m < nslots; m++) slot_close(&slots[m], n);
    nslots = old_n;
    for (size_t m = 0; m < nslots; m++) slots[m].keep = true;
}

size_t sg_listeners_parse_fds(const char *v, int *fds, size_t max)
{
    size_t n = 0;
    while (*v && n < max) {
        while (*v == ';' || *v == ':') v++;
        if (!*v) break;
        if (*v < '0' || *v > '9') return 0;
        long fd = 0;
        while (*v >= '0' && *v <= '9') {
            fd = fd * 10 + (*v++ - '0');
            if (fd > 1 << 24) return 0;     /* no descriptor is that high */
        }
        if (*v && *v != ';' && *v != ':') return 0;
        fds[n++] = (int)fd;
    }
    return n;
}

void sg_listeners_inherit(const int *fds, size_t n, pid_t from)
{
    inherited_fds = sg_xrealloc(inherited_fds, sizeof(int) * (ninherited + n + 1));
    for (size_t i = 0; i < n; i++) {
        int type = 0, acc = 0;
        socklen_t tl = sizeof(type), al = sizeof(acc);
        if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &tl) < 0) continue;   /* not a socket */
        if (type == SOCK_STREAM && (getsockopt(fds[i], SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc)) {
            close(fds[i]);
            continue;
        }
        if (type != SOCK_STREAM && type != SOCK_DGRAM) {
            close(fds[i]);
            continue;
        }
        /* ours again: non-blocking, and not passed on to other children */
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        inherited_fds[ninherited++] = fds[i];
    }
    inherited_from = from;
}

/* An inherited socket bound to `a` (of the wanted type), taken out of the
 * pool; -1 if none. */
static int take_inherited(const struct sockaddr *a, bool udp)
{
    for (size_t i = 0; i < ninherited; i++) {
        int fd = inherited_fds[i];
        if (fd < 0) continue;
        int type = 0;
        socklen_t tl = sizeof(type);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
            continue;
        if ((type == SOCK_DGRAM) != udp || !sg_sockaddr_eq((struct sockaddr *)&ss, a)) continue;
        inherited_fds[i] = -1;
        return fd;
    }
    return -1;
}

size_t sg_listeners_inherit_done(void)
{
    size_t closed = 0;
    for (size_t i = 0; i < ninherited; i++) {
        if (inherited_fds[i] >= 0) {
            close(inherited_fds[i]);
            closed++;
        }
    }
    free(inherited_fds);
    inherited_fds = NULL;
    ninherited = 0;
    return closed;
}

void sg_listeners_keep_files(bool keep)
{
    keep_files = keep;
}

size_t sg_listeners_all_fds(int n, int **out)
{
    size_t k = 0;
    int *fds = sg_xcalloc(nslots * (size_t)n + 1, sizeof(int));
    for (size_t i = 0; i < nslots; i++) {
        /* a unix socket's other descriptors are dup()s of the first */
        int m = slots[i].addr.ss_family == AF_UNIX ? 1 : n;
        for (int q = 0; q < m; q++) fds[k++] = slots[i].fds[q];
    }
    *out = fds;
    return k;
}

bool sg_listeners_open(const sg_conf *c, int n, size_t *old_n_out, char *err, size_t errlen)
{
    size_t old_n = nslots;
    *old_n_out = old_n;
    for (size_t i = 0; i < nslots; i++) slots[i].keep = false;
    slots = sg_xrealloc(slots, sizeof(listen_slot) * (nslots + c->nlistens + 1));
    for (size_t j = 0; j < c->nlistens; j++) {
        const sg_listen_group *g = &c->listens[j];
        listen_slot *s = find_slot((const struct sockaddr *)&g->addr, g->udp);
        if (s) {
            s->keep = true;
            continue;
        }
        s = &slots[nslots];
        memset(s, 0, sizeof(*s));
        memcpy(&s->addr, &g->addr, g->addrlen);
        s->addrlen = g->addrlen;
        s->keep = true;
        s->udp = g->udp;
        for (int k = 0; k < n; k++) {
            /* A unix socket is one file: one socket, and each worker gets a
             * dup() of it (the same queue, a descriptor of its own so that
             * closing and epoll stay per worker); the kernel has no
             * SO_REUSEPORT spreading for AF_UNIX, so the workers take turns
             * accepting from the one queue (the losers see EAGAIN). */
            bool shared = k > 0 && g->addr.ss_family == AF_UNIX;
            int adopted = shared ? -1 : take_inherited((const struct sockaddr *)&g->addr, g->udp);
            if (adopted >= 0) {
                s->fds[k] = adopted;   /* already bound, listening, with its options */
                s->inherited = true;
                continue;
            }
            if (shared)
                s->fds[k] = fcntl(s->fds[0], F_DUPFD_CLOEXEC, 0);
            else
                s->fds[k] = g->udp ? sg_udp_socket((const struct sockaddr *)&g->addr, g->addrlen)
                                   : sg_listen_socket((const struct sockaddr *)&g->addr, g->addrlen, g->backlog);
            if (s->fds[k] >= 0 && !g->udp && !shared)
                sg_listen_socket_opts(s->fds[k], g->sndbuf, g->rcvbuf, g->so_keepalive, g->keepidle,
                                      g->keepintvl, g->keepcnt);
            if (s->fds[k] < 0) {
                snprintf(err, errlen, "bind() to %s failed (%d: %s)", g->text, errno, strerror(errno));
                for (int m = 0; m < k; m++) close(s->fds[m]);
                if (k > 0 && g->addr.ss_family == AF_UNIX) unlink(((struct sockaddr_un *)&g->addr)->sun_path);
                sg_listeners_rollback(old_n, n);
                return false;
            }
        }
        nslots++;
    }
    return true;
}

void sg_listeners_close_unused(int n)
{
    size_t k = 0;
    for (size_t i = 0; i < nslots; i++) {
        if (!slots[i].keep) {
            slot_close(&slots[i], n);
            continue;
        }
        slots[k++] = slots[i];
    }
    nslots = k;
}

void sg_listeners_close_all(int n)
{
    for (size_t i = 0; i < nslots; i++) slot_close(&slots[i], n);
    nslots = 0;
}

int *sg_listeners_fds(const sg_conf *c, int worker)
{
    int *fds = sg_xcalloc(c->nlistens ? c->nlistens : 1, sizeof(int));
    for (size_t j = 0; j < c->nlistens; j++)
        fds[j] = find_slot((const struct sockaddr *)&c->listens[j].addr, c->listens[j].udp)->fds[worker];
    return fds;
}
