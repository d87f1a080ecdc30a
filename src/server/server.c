/* Worker threads and the main thread's commands to them. */
#include "server/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "exchange/vars.h"
#include "core/blockcache.h"
#include "core/log.h"
#include "core/slab.h"
#include "core/worker.h"
#include "net/tls.h"
#include "observe/access_log.h"
#include "observe/metrics.h"
#include "server/acceptor.h"
#include "server/proxy_header.h"
#include "server/generations.h"
#include "server/listeners.h"
#include "server/runtime.h"

enum { CMD_NONE = 0, CMD_RELOAD, CMD_QUIT, CMD_STOP, CMD_FLUSH_LOGS };

typedef struct server_worker {
    sg_worker *w;
    pthread_t thread;
    sg_acceptor acceptor;
    sg_io wake;
    sg_timer log_timer, quit_timer;
    sg_timer retire_timer;             /* behave: worker_shutdown_timeout after a reload */
    /* mailbox from the main thread */
    pthread_mutex_t mbox_lock;
    int mbox_cmd;
    sg_conf *mbox_conf;
    int *mbox_fds;                   /* one per listen group of mbox_conf */
} server_worker;

static server_worker workers[SG_MAX_WORKERS];
static int nworkers;
static sg_conf *main_conf;           /* the running configuration: a use of its own */

static pthread_mutex_t ack_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ack_cond = PTHREAD_COND_INITIALIZER;
static int acks;

/* ---------- worker thread ---------- */

/* A thread's last use of a generation: what it made at run time for it
 * (upstream/dynamic.h) goes first, on this thread, which owns it. */
static void gen_release(sg_conf *c)
{
    sg_worker *w = sg_worker_self();
    if (w) sg_runtime_worker_done(c, sg_worker_id(w));
    sg_generation_release(c);
}

static void mark_retiring(sg_conn_node *n, void *arg)
{
    if (n->local) n->retiring = true;   /* HTTP connections; tunnels and streams retire themselves */
}

static void close_retiring(sg_conn_node *n, void *arg)
{
    if (n->retiring) n->shutdown(n, true);
}

/* nginx's old workers close what they still serve worker_shutdown_timeout
 * after a reload. Here connections move on to the new configuration; when
 * the old one sets the timeout, those open at the reload are closed that
 * long after it (busy or idle), as nginx's would be. */
static void on_retire_timeout(sg_timer *t)
{
    server_worker *sw = (server_worker *)((char *)t - offsetof(server_worker, retire_timer));
    sg_worker_each_conn(sw->w, close_retiring, NULL);
}

static void switch_generation(server_worker *sw, sg_conf *next, const int *fds)
{
    sg_worker *w = sw->w;
    sg_conf *old = sg_worker_switch_conf(w, next);
    uint32_t ms = old && old != next ? old->worker_shutdown_timeout_ms : 0;
    if (ms && ms != SG_UNSET_MS) {
        sg_worker_each_conn(w, mark_retiring, NULL);
        if (!sg_timer_armed(&sw->retire_timer)) sg_timer_arm(sg_worker_loop(w), &sw->retire_timer, ms);
    }
    sg_acceptor_set(&sw->acceptor, next, fds);
    sg_acceptor_regroup(w, next);
    if (old != next) sg_runtime_activate(next, old, sg_worker_id(w), sg_worker_loop(w));   /* dns */
    if (!old) return;
    if (old != next) sg_runtime_retire(old, sg_worker_id(w));
    sg_worker_gen_release(w, old);   /* may free old: last */
}

static void on_quit_timeout(sg_timer *t)
{
    server_worker *sw = (server_worker *)((char *)t - offsetof(server_worker, quit_timer));
    sg_worker_quit(sw->w, true);
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
    server_worker *sw = (server_worker *)((char *)io - offsetof(server_worker, wake));
    sg_worker *w = sw->w;
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) < 0) { /* spurious */ }
    pthread_mutex_lock(&sw->mbox_lock);
    int cmd = sw->mbox_cmd;
    sg_conf *next = sw->mbox_conf;
    int *fds = sw->mbox_fds;
    sw->mbox_cmd = CMD_NONE;
    sw->mbox_conf = NULL;
    sw->mbox_fds = NULL;
    pthread_mutex_unlock(&sw->mbox_lock);
    if (cmd == CMD_RELOAD) {
        switch_generation(sw, next, fds);
        free(fds);
        ack();
    } else if (cmd == CMD_QUIT) {
        sg_acceptor_set(&sw->acceptor, sg_worker_conf(w), NULL);
        ack();   /* the main thread may now close the listening sockets */
        sg_tls_accept_close_all();   /* handshakes in progress are idle connections */
        sg_proxy_header_close_all();
        uint32_t ms = sg_worker_conf(w)->worker_shutdown_timeout_ms;
        sg_worker_quit(w, false);
        if (ms) sg_timer_arm(sg_worker_loop(w), &sw->quit_timer, ms);
    } else if (cmd == CMD_FLUSH_LOGS) {
        sg_access_log_flush_thread();
        ack();
    } else if (cmd == CMD_STOP) {
        sg_acceptor_set(&sw->acceptor, sg_worker_conf(w), NULL);
        sg_tls_accept_close_all();
    sg_proxy_header_close_all();
        sg_worker_quit(w, true);
    }
}

static void on_log_timer(sg_timer *t)
{
    server_worker *sw = (server_worker *)((char *)t - offsetof(server_worker, log_timer));
    sg_access_log_flush_thread();
    sg_timer_arm(sg_worker_loop(sw->w), t, 1000);
}

static void *worker_main(void *arg)
{
    server_worker *sw = arg;
    sg_worker *w = sw->w;
    sg_loop *loop = sg_worker_loop(w);
    sg_worker_bind(w);
    sg_slab_thread_init();   /* nghttp2's blocks (core/slab.h); malloc if it cannot */
    sg_timer_arm(loop, &sw->log_timer, 1000);
    sg_loop_run(loop);
    sg_tls_accept_close_all();
    sg_proxy_header_close_all();
    sg_acceptor_thread_done();
    /* Let closed connections' deferred frees run, then tidy up. */
    sg_runtime_retire(sg_worker_conf(w), sg_worker_id(w));
    sg_loop_run_deferred(loop);   /* frees of what sg_runtime_retire closed */
    sg_runtime_worker_done(sg_worker_conf(w), sg_worker_id(w));
    sg_access_log_flush_thread();
    sg_regex_thread_done();
    sg_block_thread_done();
    sg_acceptor_done(&sw->acceptor);
    return NULL;
}

/* ---------- main thread ---------- */

static void post(server_worker *sw, int cmd, sg_conf *c, int *fds)
{
    pthread_mutex_lock(&sw->mbox_lock);
    sw->mbox_cmd = cmd;
    sw->mbox_conf = c;
    sw->mbox_fds = fds;
    pthread_mutex_unlock(&sw->mbox_lock);
    uint64_t one = 1;
    if (write(sw->wake.fd, &one, sizeof(one)) < 0) sg_log_error("eventfd write failed: %s", strerror(errno));
}

bool sg_server_start(sg_conf *c, int n, char *err, size_t errlen)
{
    if (n < 1) n = 1;
    if (n > SG_MAX_WORKERS) n = SG_MAX_WORKERS;
    sg_worker_set_gen_hooks(sg_generation_acquire, gen_release);
    size_t mark;
    if (!sg_listeners_open(c, n, &mark, err, errlen)) return false;
    char aerr[512];
    if (!sg_access_log_open_all(c, aerr, sizeof(aerr))) {
        snprintf(err, errlen, "%s", aerr);
        sg_listeners_rollback(mark, n);
        return false;
    }
    sg_runtime_attach(c, n);
    sg_mx_conf_install(c, false);   /* metrics (issue 12): location rows */
    nworkers = n;
    main_conf = c;
    sg_generation_acquire(c);
    for (int i = 0; i < n; i++) {
        server_worker *sw = &workers[i];
        sw->w = sg_worker_new(i);
        pthread_mutex_init(&sw->mbox_lock, NULL);
        sw->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        sw->wake.on_event = on_wake;
        sg_loop_add_reader(sg_worker_loop(sw->w), &sw->wake);
        sg_timer_init(&sw->log_timer, on_log_timer);
        sg_timer_init(&sw->quit_timer, on_quit_timeout);
        sg_timer_init(&sw->retire_timer, on_retire_timeout);
        sg_acceptor_init(&sw->acceptor, sw->w);
        int *fds = sg_listeners_fds(c, i);
        sg_worker_bind(sw->w);   /* switch_generation's bookkeeping runs on this thread for now */
        switch_generation(sw, c, fds);
        sg_worker_bind(NULL);
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

/* Posts cmd (with a generation and its sockets for CMD_RELOAD) to every
 * worker and waits until each has acknowledged it. */
static void post_all_and_wait(int cmd, sg_conf *c)
{
    pthread_mutex_lock(&ack_lock);
    acks = 0;
    pthread_mutex_unlock(&ack_lock);
    for (int i = 0; i < nworkers; i++) post(&workers[i], cmd, c, c ? sg_listeners_fds(c, i) : NULL);
    pthread_mutex_lock(&ack_lock);
    while (acks < nworkers) pthread_cond_wait(&ack_cond, &ack_lock);
    pthread_mutex_unlock(&ack_lock);
}

bool sg_server_reload(sg_conf *c, char *err, size_t errlen)
{
    if (c->worker_processes != nworkers)
        sg_log_warn("worker_processes changed to %d: takes effect on restart (running %d)",
                    c->worker_processes, nworkers);
    size_t mark;
    if (!sg_listeners_open(c, nworkers, &mark, err, errlen)) return false;
    if (!sg_access_log_open_all(c, err, errlen)) {
        sg_listeners_rollback(mark, nworkers);
        return false;
    }
    sg_runtime_attach(c, nworkers);
    sg_mx_conf_install(c, true);    /* metrics (issue 12): location rows, reloads */
    sg_generation_acquire(c);
    post_all_and_wait(CMD_RELOAD, c);
    sg_listeners_close_unused(nworkers);
    sg_conf *old = main_conf;
    main_conf = c;
    sg_generation_release(old);
    return true;
}

size_t sg_server_listen_fds(int **out)
{
    return sg_listeners_all_fds(nworkers, out);
}

void sg_server_flush_logs(void)
{
    post_all_and_wait(CMD_FLUSH_LOGS, NULL);
}

void sg_server_stop(bool graceful)
{
    if (graceful) {
        /* Close the listening sockets as soon as no worker polls them, so
         * new connections are refused (not queued unanswered) while the
         * open ones finish, as nginx's graceful shutdown does. */
        post_all_and_wait(CMD_QUIT, NULL);
        sg_listeners_close_all(nworkers);
    } else {
        for (int i = 0; i < nworkers; i++) post(&workers[i], CMD_STOP, NULL, NULL);
    }
    for (int i = 0; i < nworkers; i++) pthread_join(workers[i].thread, NULL);
    sg_listeners_close_all(nworkers);
}
