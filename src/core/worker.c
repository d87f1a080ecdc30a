/* Worker threads, listeners and configuration generations.
 *
 * The main thread owns the listening sockets: one SO_REUSEPORT socket per
 * address per worker, kept across reloads for every address the new
 * configuration still has, so a reload never refuses a connection. A
 * reload opens what is new first (and fails without changing anything if
 * it cannot), then hands each worker its new generation and sockets through
 * a mailbox, waits until all have switched, and only then closes what the
 * new generation no longer listens on. */
#include "core/worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/blockcache.h"
#include "conf/stream_conf.h"
#include "core/log.h"
#include "exchange/vars.h"
#include "http/h1_server.h"
#include "http/h2_server.h"
#include "proxy/stream_proxy.h"
#include "net/sock.h"
#include "net/tls.h"
#include "observe/access_log.h"
#include "upstream/pool.h"


enum { CMD_NONE = 0, CMD_RELOAD, CMD_QUIT, CMD_STOP, CMD_FLUSH_LOGS };

typedef struct wlistener {
    sg_io io;
    sg_worker *w;
    bool stale;                      /* replaced by a reload: ignore late events */
    size_t group;                    /* index into the current generation's listens[] */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} wlistener;

struct sg_worker {
    int id;
    pthread_t thread;
    sg_loop *loop;
    char *scratch;
    sg_conf *conf;
    sg_worker_gen *gens;             /* generations this worker still uses (grows on reloads) */
    size_t ngens, capgens;
    sg_conn_node *conns;
    size_t nconns;
    bool quitting;
    wlistener *listeners;
    size_t nlisteners;
    wlistener *old_listeners;        /* freed at the end of the iteration */
    sg_deferred free_old;
    sg_io wake;
    sg_timer log_timer, quit_timer;
    /* mailbox from the main thread */
    pthread_mutex_t mbox_lock;
    int mbox_cmd;
    sg_conf *mbox_conf;
    int *mbox_fds;                   /* one per listen group of mbox_conf */
};

/* A generation is in use by the main thread and by every worker that has
 * it as current or still runs exchanges on it. */
typedef struct live_gen {
    sg_conf *conf;
    int users;
} live_gen;

static sg_worker workers[SG_MAX_WORKERS];
static int nworkers;
static _Thread_local sg_worker *tls_worker;

static pthread_mutex_t gens_lock = PTHREAD_MUTEX_INITIALIZER;
static live_gen *live;               /* grows: long-lived exchanges may pin many generations */
static size_t nlive, caplive;
static sg_conf *main_conf;

static pthread_mutex_t ack_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ack_cond = PTHREAD_COND_INITIALIZER;
static int acks;

typedef struct listen_slot {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fds[SG_MAX_WORKERS];
    bool keep;
} listen_slot;

static listen_slot *slots;
static size_t nslots;

/* ---------- generation bookkeeping ---------- */

static void runtime_free(sg_conf *c)
{
    for (size_t i = 0; i < c->nupstreams; i++) {
        sg_upstream_rt_free(c->upstreams[i]->runtime);
        c->upstreams[i]->runtime = NULL;
    }
}

static void gen_acquire(sg_conf *c)
{
    pthread_mutex_lock(&gens_lock);
    for (size_t i = 0; i < nlive; i++) {
        if (live[i].conf == c) {
            live[i].users++;
            pthread_mutex_unlock(&gens_lock);
            return;
        }
    }
    if (nlive == caplive) {
        caplive = caplive ? caplive * 2 : 8;
        live = sg_xrealloc(live, caplive * sizeof(*live));
    }
    live[nlive++] = (live_gen){ c, 1 };
    pthread_mutex_unlock(&gens_lock);
}

static void gen_drop(sg_conf *c)
{
    bool last = false;
    pthread_mutex_lock(&gens_lock);
    for (size_t i = 0; i < nlive; i++) {
        if (live[i].conf == c && --live[i].users == 0) {
            live[i] = live[--nlive];
            last = true;
            break;
        }
    }
    pthread_mutex_unlock(&gens_lock);
    if (last) {
        runtime_free(c);
        sg_conf_unref(c);
    }
}

static void worker_gen_add(sg_worker *w, sg_conf *c, size_t users)
{
    if (w->ngens == w->capgens) {
        w->capgens = w->capgens ? w->capgens * 2 : 4;
        w->gens = sg_xrealloc(w->gens, w->capgens * sizeof(*w->gens));
    }
    w->gens[w->ngens++] = (sg_worker_gen){ c, users };
}

void sg_worker_gen_hold(sg_worker *w, sg_conf *c)
{
    for (size_t i = 0; i < w->ngens; i++) {
        if (w->gens[i].conf == c) {
            w->gens[i].users++;
            return;
        }
    }
    gen_acquire(c);
    worker_gen_add(w, c, 1);
}

static void worker_gen_check(sg_worker *w, size_t i)
{
    if (w->gens[i].users == 0 && w->gens[i].conf != w->conf) {
        sg_conf *c = w->gens[i].conf;
        w->gens[i] = w->gens[--w->ngens];
        gen_drop(c);
    }
}

void sg_worker_gen_release(sg_worker *w, sg_conf *c)
{
    for (size_t i = 0; i < w->ngens; i++) {
        if (w->gens[i].conf == c) {
            w->gens[i].users--;
            worker_gen_check(w, i);
            return;
        }
    }
}

/* Stream upstreams' runtimes go with their generation (sg_conf_on_free). */
static void stream_runtime_free(void *arg)
{
    sg_stream_conf *sc = arg;
    for (size_t i = 0; i < sc->nupstreams; i++) {
        sg_upstream_rt_free(sc->upstreams[i]->runtime);
        sc->upstreams[i]->runtime = NULL;
    }
}

bool sg_runtime_attach(sg_conf *c, int n)
{
    for (size_t i = 0; i < c->nupstreams; i++)
        c->upstreams[i]->runtime = sg_upstream_rt_new(c->upstreams[i], n);
    if (c->stream) {
        for (size_t i = 0; i < c->stream->nupstreams; i++)
            c->stream->upstreams[i]->runtime = sg_upstream_rt_new(c->stream->upstreams[i], n);
        sg_conf_on_free(c, stream_runtime_free, c->stream);
    }
    return true;
}

/* ---------- per-worker accessors ---------- */

sg_worker *sg_worker_self(void) { return tls_worker; }
sg_loop *sg_worker_loop(sg_worker *w) { return w->loop; }
int sg_worker_id(const sg_worker *w) { return w->id; }
char *sg_worker_scratch(sg_worker *w) { return w->scratch; }
sg_conf *sg_worker_conf(sg_worker *w) { return w->conf; }
bool sg_worker_quitting(const sg_worker *w) { return w->quitting; }
int sg_workers_count(void) { return nworkers; }

void sg_worker_conn_add(sg_worker *w, sg_conn_node *n)
{
    n->next = w->conns;
    if (n->next) n->next->pprev = &n->next;
    n->pprev = &w->conns;
    w->conns = n;
    w->nconns++;
}

void sg_worker_conn_del(sg_worker *w, sg_conn_node *n)
{
    if (!n->pprev) return;
    *n->pprev = n->next;
    if (n->next) n->next->pprev = n->pprev;
    n->next = NULL;
    n->pprev = NULL;
    w->nconns--;
    if (w->quitting && w->nconns == 0) sg_loop_stop(w->loop);
}

/* ---------- listeners ---------- */

static void on_tls_ready(const sg_tls_accepted *a, void *arg)
{
    sg_worker *w = arg;
    sg_sock_tune(a->fd);
    if (sg_tls_alpn_is_h2(a->tls))
        sg_h2_server_accept_tls(w, a->fd, a->tls, a->peer, a->peerlen, a->local, a->locallen);
    else
        sg_h1_server_accept_tls(w, a->fd, a->tls, a->peer, a->peerlen, a->local, a->locallen);
}

static void on_accept(sg_io *io, uint32_t events)
{
    wlistener *l = (wlistener *)io;
    sg_worker *w = l->w;
    if (l->stale) return;
    /* Accept a bounded batch per wake-up so one busy listener cannot
     * starve the connections already open. */
    for (int i = 0; i < 64 && !w->quitting; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                sg_log_error("accept4() failed: %s", strerror(errno));
            return;
        }
        if (w->nconns >= w->conf->worker_connections) {
            sg_log_warn("%u worker_connections are not enough", w->conf->worker_connections);
            close(fd);
            continue;
        }
        const sg_listen_group *g = &w->conf->listens[l->group];
        const struct sockaddr *local = (const struct sockaddr *)&l->addr;
        if (g->stream_server)
            sg_stream_proxy_accept(w, fd, (struct sockaddr *)&peer, plen, local, l->addrlen, g->stream_server);
        else if (g->ssl)
            sg_tls_accept(w->loop, w->conf, g, fd, (struct sockaddr *)&peer, plen, local, l->addrlen,
                          g->default_server->client_header_timeout_ms, on_tls_ready, w);
        else if (g->http2)
            sg_h2_server_accept(w, fd, (struct sockaddr *)&peer, plen, local, l->addrlen, NULL, 0);
        else
            sg_h1_server_accept(w, fd, (struct sockaddr *)&peer, plen, local, l->addrlen);
    }
}

static void on_free_old(sg_deferred *d)
{
    sg_worker *w = (sg_worker *)((char *)d - offsetof(sg_worker, free_old));
    free(w->old_listeners);
    w->old_listeners = NULL;
}

/* Events of the current epoll batch may still point at the old array, so
 * it is marked stale and freed only once the batch is handled. */
static void worker_set_listeners(sg_worker *w, const sg_conf *c, const int *fds)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        bool kept = false;
        for (size_t j = 0; fds && j < c->nlistens; j++)
            if (fds[j] == w->listeners[i].io.fd) kept = true;
        if (!kept) sg_loop_del(w->loop, &w->listeners[i].io);
        w->listeners[i].stale = true;
    }
    if (w->listeners) {
        free(w->old_listeners);
        w->old_listeners = w->listeners;
        sg_loop_defer(w->loop, &w->free_old);
    }
    w->listeners = NULL;
    w->nlisteners = 0;
    if (!fds) return;
    w->listeners = sg_xcalloc(c->nlistens, sizeof(wlistener));
    for (size_t j = 0; j < c->nlistens; j++) {
        wlistener *l = &w->listeners[j];
        l->io.fd = fds[j];
        l->io.on_event = on_accept;
        l->w = w;
        l->group = j;
        memcpy(&l->addr, &c->listens[j].addr, c->listens[j].addrlen);
        l->addrlen = c->listens[j].addrlen;
        /* Re-adding a kept fd fails with EEXIST: its registration stays, but
         * it must point at the new wlistener, so modify it instead. */
        sg_loop_del(w->loop, &l->io);
        sg_loop_add_reader(w->loop, &l->io);
    }
    w->nlisteners = c->nlistens;
}

/* ---------- worker thread ---------- */

static void retire_pools(sg_worker *w, sg_conf *c)
{
    for (size_t i = 0; i < c->nupstreams; i++) {
        sg_upstream_rt *rt = c->upstreams[i]->runtime;
        if (rt) sg_pool_retire(&rt->pools[w->id]);
    }
}

/* Being a worker's current generation counts as a use of its own (the
 * entry stays while users == 0 as long as it is current). */
static void gen_entry(sg_worker *w, sg_conf *c)
{
    for (size_t i = 0; i < w->ngens; i++)
        if (w->gens[i].conf == c) return;
    gen_acquire(c);
    worker_gen_add(w, c, 0);
}

static void switch_generation(sg_worker *w, sg_conf *next, const int *fds)
{
    sg_conf *old = w->conf;
    gen_entry(w, next);
    w->conf = next;
    worker_set_listeners(w, next, fds);
    if (!old || old == next) return;
    retire_pools(w, old);
    for (size_t i = 0; i < w->ngens; i++) {
        if (w->gens[i].conf == old) {
            worker_gen_check(w, i);
            break;
        }
    }
}

static void shutdown_conns(sg_worker *w, bool fast)
{
    sg_conn_node *n = w->conns;
    while (n) {
        sg_conn_node *next = n->next;
        n->shutdown(n, fast);
        n = next;
    }
}

static void on_quit_timeout(sg_timer *t)
{
    sg_worker *w = (sg_worker *)((char *)t - offsetof(sg_worker, quit_timer));
    shutdown_conns(w, true);
    sg_loop_stop(w->loop);
}

static void ack(void)
{
    pthread_mutex_lock(&ack_lock);
    acks++;
    pthread_cond_broadcast(&ack_cond);
    pthread_mutex_unlock(&ack_lock);
}

static void on_wake(sg_io *io, uint32_t events)
{
    sg_worker *w = (sg_worker *)((char *)io - offsetof(sg_worker, wake));
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) < 0) { /* spurious */ }
    pthread_mutex_lock(&w->mbox_lock);
    int cmd = w->mbox_cmd;
    sg_conf *next = w->mbox_conf;
    int *fds = w->mbox_fds;
    w->mbox_cmd = CMD_NONE;
    w->mbox_conf = NULL;
    w->mbox_fds = NULL;
    pthread_mutex_unlock(&w->mbox_lock);
    if (cmd == CMD_RELOAD) {
        switch_generation(w, next, fds);
        free(fds);
        ack();
    } else if (cmd == CMD_QUIT) {
        w->quitting = true;
        worker_set_listeners(w, w->conf, NULL);
        ack();   /* the main thread may now close the listening sockets */
        sg_tls_accept_close_all();   /* handshakes in progress are idle connections */
        shutdown_conns(w, false);
        if (w->conf->worker_shutdown_timeout_ms)
            sg_timer_arm(w->loop, &w->quit_timer, w->conf->worker_shutdown_timeout_ms);
        if (w->nconns == 0) sg_loop_stop(w->loop);
    } else if (cmd == CMD_FLUSH_LOGS) {
        sg_access_log_flush_thread();
        ack();
    } else if (cmd == CMD_STOP) {
        w->quitting = true;
        worker_set_listeners(w, w->conf, NULL);
        sg_tls_accept_close_all();
        shutdown_conns(w, true);
        sg_loop_stop(w->loop);
    }
}

static void on_log_timer(sg_timer *t)
{
    sg_worker *w = (sg_worker *)((char *)t - offsetof(sg_worker, log_timer));
    sg_access_log_flush_thread();
    sg_timer_arm(w->loop, t, 1000);
}

static void *worker_main(void *arg)
{
    sg_worker *w = arg;
    tls_worker = w;
    sg_timer_arm(w->loop, &w->log_timer, 1000);
    sg_loop_run(w->loop);
    sg_tls_accept_close_all();
    /* Let closed connections' deferred frees run, then tidy up. */
    retire_pools(w, w->conf);
    sg_loop_run_deferred(w->loop);   /* frees of what retire_pools closed */
    sg_access_log_flush_thread();
    sg_regex_thread_done();
    sg_block_thread_done();
    free(w->listeners);
    free(w->old_listeners);
    w->listeners = w->old_listeners = NULL;
    return NULL;
}

/* ---------- main thread ---------- */

static listen_slot *find_slot(const struct sockaddr *a)
{
    for (size_t i = 0; i < nslots; i++)
        if (sg_sockaddr_eq((struct sockaddr *)&slots[i].addr, a)) return &slots[i];
    return NULL;
}

/* Closes the slots opened since `old_n` and forgets which slots the failed
 * generation wanted: the running set stays exactly as it was. */
static void rollback_listeners(size_t old_n, int n)
{
    for (size_t m = old_n; m < nslots; m++)
        for (int q = 0; q < n; q++) close(slots[m].fds[q]);
    nslots = old_n;
    for (size_t m = 0; m < nslots; m++) slots[m].keep = true;
}

/* Opens sockets for every new address of c; marks the slots c uses.
 * On failure closes what it opened and leaves the old set intact.
 * *old_n receives the slot count before, for rollback_listeners(). */
static bool open_listeners(sg_conf *c, int n, size_t *old_n_out, char *err, size_t errlen)
{
    size_t old_n = nslots;
    *old_n_out = old_n;
    for (size_t i = 0; i < nslots; i++) slots[i].keep = false;
    slots = sg_xrealloc(slots, sizeof(listen_slot) * (nslots + c->nlistens + 1));
    for (size_t j = 0; j < c->nlistens; j++) {
        const sg_listen_group *g = &c->listens[j];
        listen_slot *s = find_slot((const struct sockaddr *)&g->addr);
        if (s) {
            s->keep = true;
            continue;
        }
        s = &slots[nslots];
        memset(s, 0, sizeof(*s));
        memcpy(&s->addr, &g->addr, g->addrlen);
        s->addrlen = g->addrlen;
        s->keep = true;
        for (int k = 0; k < n; k++) {
            s->fds[k] = sg_listen_socket((const struct sockaddr *)&g->addr, g->addrlen, g->backlog);
            if (s->fds[k] < 0) {
                snprintf(err, errlen, "bind() to %s failed (%d: %s)", g->text, errno, strerror(errno));
                for (int m = 0; m < k; m++) close(s->fds[m]);
                rollback_listeners(old_n, n);
                return false;
            }
        }
        nslots++;
    }
    return true;
}

static void close_unused_listeners(int n)
{
    size_t k = 0;
    for (size_t i = 0; i < nslots; i++) {
        if (!slots[i].keep) {
            for (int j = 0; j < n; j++) close(slots[i].fds[j]);
            continue;
        }
        slots[k++] = slots[i];
    }
    nslots = k;
}

static int *fds_for(const sg_conf *c, int worker)
{
    int *fds = sg_xcalloc(c->nlistens ? c->nlistens : 1, sizeof(int));
    for (size_t j = 0; j < c->nlistens; j++)
        fds[j] = find_slot((const struct sockaddr *)&c->listens[j].addr)->fds[worker];
    return fds;
}

static void post(sg_worker *w, int cmd, sg_conf *c, int *fds)
{
    pthread_mutex_lock(&w->mbox_lock);
    w->mbox_cmd = cmd;
    w->mbox_conf = c;
    w->mbox_fds = fds;
    pthread_mutex_unlock(&w->mbox_lock);
    uint64_t one = 1;
    if (write(w->wake.fd, &one, sizeof(one)) < 0) sg_log_error("eventfd write failed: %s", strerror(errno));
}

bool sg_workers_start(sg_conf *c, int n, char *err, size_t errlen)
{
    if (n < 1) n = 1;
    if (n > SG_MAX_WORKERS) n = SG_MAX_WORKERS;
    size_t old_n;
    if (!open_listeners(c, n, &old_n, err, errlen)) return false;
    char aerr[512];
    if (!sg_access_log_open_all(c, aerr, sizeof(aerr))) {
        snprintf(err, errlen, "%s", aerr);
        rollback_listeners(old_n, n);
        return false;
    }
    sg_runtime_attach(c, n);
    nworkers = n;
    main_conf = c;
    gen_acquire(c);
    for (int i = 0; i < n; i++) {
        sg_worker *w = &workers[i];
        w->id = i;
        w->loop = sg_loop_new();
        w->scratch = sg_xmalloc(SG_SCRATCH_SIZE);
        pthread_mutex_init(&w->mbox_lock, NULL);
        w->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->wake.on_event = on_wake;
        sg_loop_add_reader(w->loop, &w->wake);
        sg_timer_init(&w->log_timer, on_log_timer);
        sg_deferred_init(&w->free_old, on_free_old);
        sg_timer_init(&w->quit_timer, on_quit_timeout);
        int *fds = fds_for(c, i);
        tls_worker = w;   /* switch_generation's bookkeeping runs on this thread for now */
        switch_generation(w, c, fds);
        tls_worker = NULL;
        free(fds);
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            snprintf(err, errlen, "pthread_create() failed");
            return false;
        }
    }
    return true;
}

bool sg_workers_reload(sg_conf *c, char *err, size_t errlen)
{
    if (c->worker_processes != nworkers)
        sg_log_warn("worker_processes changed to %d: takes effect on restart (running %d)",
                    c->worker_processes, nworkers);
    size_t old_n;
    if (!open_listeners(c, nworkers, &old_n, err, errlen)) return false;
    if (!sg_access_log_open_all(c, err, errlen)) {
        rollback_listeners(old_n, nworkers);
        return false;
    }
    sg_runtime_attach(c, nworkers);
    gen_acquire(c);
    pthread_mutex_lock(&ack_lock);
    acks = 0;
    pthread_mutex_unlock(&ack_lock);
    for (int i = 0; i < nworkers; i++) post(&workers[i], CMD_RELOAD, c, fds_for(c, i));
    pthread_mutex_lock(&ack_lock);
    while (acks < nworkers) pthread_cond_wait(&ack_cond, &ack_lock);
    pthread_mutex_unlock(&ack_lock);
    close_unused_listeners(nworkers);
    sg_conf *old = main_conf;
    main_conf = c;
    gen_drop(old);
    return true;
}

/* Posts cmd to every worker and waits until each has acknowledged it. */
static void post_all_and_wait(int cmd)
{
    pthread_mutex_lock(&ack_lock);
    acks = 0;
    pthread_mutex_unlock(&ack_lock);
    for (int i = 0; i < nworkers; i++) post(&workers[i], cmd, NULL, NULL);
    pthread_mutex_lock(&ack_lock);
    while (acks < nworkers) pthread_cond_wait(&ack_cond, &ack_lock);
    pthread_mutex_unlock(&ack_lock);
}

void sg_workers_flush_logs(void)
{
    post_all_and_wait(CMD_FLUSH_LOGS);
}

static void close_all_listeners(void)
{
    for (size_t i = 0; i < nslots; i++)
        for (int j = 0; j < nworkers; j++) close(slots[i].fds[j]);
    nslots = 0;
}

void sg_workers_stop(bool graceful)
{
    if (graceful) {
        /* Close the listening sockets as soon as no worker polls them, so
         * new connections are refused (not queued unanswered) while the
         * open ones finish, as nginx's graceful shutdown does. */
        post_all_and_wait(CMD_QUIT);
        close_all_listeners();
    } else {
        for (int i = 0; i < nworkers; i++) post(&workers[i], CMD_STOP, NULL, NULL);
    }
    for (int i = 0; i < nworkers; i++) pthread_join(workers[i].thread, NULL);
    close_all_listeners();
}
