/* The per-thread worker: loop, scratch buffer, generation use counts and
 * the registry of client connections. */
#include "core/worker.h"

#include <stdatomic.h>
#include <time.h>

#include <stdlib.h>

#include "core/str.h"

/* How many users a generation has on this thread. */
typedef struct worker_gen {
    struct sg_conf *conf;
    size_t users;
} worker_gen;

struct sg_worker {
    int id;
    sg_loop *loop;
    char *scratch;
    struct sg_conf *conf;
    worker_gen *gens;                /* generations this worker still uses (grows on reloads) */
    size_t ngens, capgens;
    sg_list conns;
    size_t nconns;
    bool quitting;
    struct sockaddr_storage *next_proxy;   /* sg_worker_pass_proxy */
};

static _Thread_local sg_worker *tls_worker;
static void (*gen_acquire)(struct sg_conf *c);
static void (*gen_release)(struct sg_conf *c);

void sg_worker_set_gen_hooks(void (*acquire)(struct sg_conf *c), void (*release)(struct sg_conf *c))
{
    gen_acquire = acquire;
    gen_release = release;
}

sg_worker *sg_worker_new(int id)
{
    sg_worker *w = sg_xcalloc(1, sizeof(*w));
    w->id = id;
    w->loop = sg_loop_new();
    w->scratch = sg_xmalloc(SG_SCRATCH_SIZE);
    return w;
}

void sg_worker_free(sg_worker *w)
{
    if (!w) return;
    if (tls_worker == w) tls_worker = NULL;
    sg_loop_free(w->loop);
    free(w->scratch);
    free(w->gens);
    free(w->next_proxy);
    free(w);
}

void sg_worker_bind(sg_worker *w) { tls_worker = w; }
sg_worker *sg_worker_self(void) { return tls_worker; }
sg_loop *sg_worker_loop(sg_worker *w) { return w->loop; }
int sg_worker_id(const sg_worker *w) { return w->id; }
char *sg_worker_scratch(sg_worker *w) { return w->scratch; }
struct sg_conf *sg_worker_conf(sg_worker *w) { return w->conf; }
bool sg_worker_quitting(const sg_worker *w) { return w->quitting; }

/* ---------- generation use counts ---------- */

void sg_worker_gen_hold(sg_worker *w, struct sg_conf *c)
{
    for (size_t i = 0; i < w->ngens; i++) {
        if (w->gens[i].conf == c) {
            w->gens[i].users++;
            return;
        }
    }
    if (gen_acquire) gen_acquire(c);
    if (w->ngens == w->capgens) {
        w->capgens = w->capgens ? w->capgens * 2 : 4;
        w->gens = sg_xrealloc(w->gens, w->capgens * sizeof(*w->gens));
    }
    w->gens[w->ngens++] = (worker_gen){ c, 1 };
}

void sg_worker_gen_release(sg_worker *w, struct sg_conf *c)
{
    for (size_t i = 0; i < w->ngens; i++) {
        if (w->gens[i].conf == c) {
            if (--w->gens[i].users == 0) {
                w->gens[i] = w->gens[--w->ngens];
                if (gen_release) gen_release(c);   /* may free c: last */
            }
            return;
        }
    }
}

struct sg_conf *sg_worker_switch_conf(sg_worker *w, struct sg_conf *c)
{
    struct sg_conf *old = w->conf;
    sg_worker_gen_hold(w, c);
    w->conf = c;
    return old;
}

/* ---------- client connections ---------- */

static atomic_uint_least64_t conn_serial;

void sg_worker_conn_add(sg_worker *w, sg_conn_node *n)
{
    n->number = atomic_fetch_add(&conn_serial, 1) + 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    n->born_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    sg_list_push(&w->conns, &n->link);
    w->nconns++;
    n->proxy = w->next_proxy;
    w->next_proxy = NULL;
}

struct sockaddr_storage *sg_worker_pass_proxy(sg_worker *w, struct sockaddr_storage *proxy)
{
    struct sockaddr_storage *old = w->next_proxy;
    w->next_proxy = proxy;
    return old;
}

void sg_worker_conn_del(sg_worker *w, sg_conn_node *n)
{
    if (!sg_list_linked(&n->link)) return;
    sg_list_remove(&n->link);
    free(n->proxy);
    n->proxy = NULL;
    w->nconns--;
    if (w->quitting && w->nconns == 0) sg_loop_stop(w->loop);
}

size_t sg_worker_conn_count(const sg_worker *w)
{
    return w->nconns;
}

void sg_worker_each_conn(sg_worker *w, void (*fn)(sg_conn_node *n, void *arg), void *arg)
{
    sg_list_node *l = sg_list_first(&w->conns);
    while (l) {
        sg_list_node *next = l->next;
        fn(sg_list_entry(l, sg_conn_node, link), arg);
        l = next;
    }
}

static void shutdown_conn(sg_conn_node *n, void *arg)
{
    n->shutdown(n, *(bool *)arg);
}

void sg_worker_quit(sg_worker *w, bool fast)
{
    w->quitting = true;
    sg_worker_each_conn(w, shutdown_conn, &fast);
    if (fast || w->nconns == 0) sg_loop_stop(w->loop);
}
