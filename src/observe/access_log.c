/* Access log files and per-thread buffers.
 *
 * A file object lives in a global registry keyed by path, so generations
 * share it and a reload reopens nothing. Its descriptor number never
 * changes: SIGUSR1 opens the path again and dup3()s the new file onto the
 * old number, so a writer holding the number can never hit a closed or
 * reused descriptor. A file is referenced by every sg_access_log of every
 * live generation and by every thread buffer that holds lines for it; it is
 * closed when the last reference goes. */
#include "observe/access_log.h"
#include "conf/stream_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "exchange/vars.h"
#include "core/loop.h"
#include "core/worker.h"
#include "core/syslog.h"

#define DEFAULT_BUFFER (64 * 1024)

struct sg_log_file {
    char *path;
    int fd;
    int refs;                    /* under reg_lock */
    atomic_int gen_refs;         /* references from generations only */
    struct sg_log_file *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static sg_log_file *registry;

typedef struct thread_buf {
    sg_log_file *file;
    char *p;
    size_t n, cap;
    bool eager;                  /* holds a line of a log without buffer= */
    int gzip;                    /* gzip=LEVEL of the log that made it: each write is one gzip member */
    uint32_t flush_ms;           /* flush=TIME: the oldest line waits at most this long */
    sg_timer flush_timer;
} thread_buf;

/* Pointers: a buffer's timer must not move when the array grows. */
static _Thread_local thread_buf **tbufs;
static _Thread_local size_t ntbufs, captbufs;
static _Thread_local sg_strbuf line;

/* A thread that ever logged gets a key whose destructor writes out and
 * frees its buffers when it exits, whoever forgets to flush. */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static int open_log(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* Takes a reference; `gen` tells a generation's reference from a buffer's. */
static sg_log_file *file_acquire(const char *path, bool gen)
{
    pthread_mutex_lock(&reg_lock);
    sg_log_file *f = registry;
    while (f && strcmp(f->path, path) != 0) f = f->next;
    if (!f) {
        int fd = open_log(path);
        if (fd < 0) { pthread_mutex_unlock(&reg_lock); return NULL; }
        f = sg_xcalloc(1, sizeof(*f));
        f->path = sg_xstrdup(path);
        f->fd = fd;
        atomic_init(&f->gen_refs, 0);
        f->next = registry;
        registry = f;
    }
    f->refs++;
    if (gen) atomic_fetch_add(&f->gen_refs, 1);
    pthread_mutex_unlock(&reg_lock);
    return f;
}

/* A thread buffer's reference to a file a generation already holds. */
static void file_hold(sg_log_file *f)
{
    pthread_mutex_lock(&reg_lock);
    f->refs++;
    pthread_mutex_unlock(&reg_lock);
}

static void file_release(sg_log_file *f, bool gen)
{
    pthread_mutex_lock(&reg_lock);
    if (gen) atomic_fetch_sub(&f->gen_refs, 1);
    if (--f->refs == 0) {
        sg_log_file **pp = &registry;
        while (*pp != f) pp = &(*pp)->next;
        *pp = f->next;
        close(f->fd);
        free(f->path);
        free(f);
    }
    pthread_mutex_unlock(&reg_lock);
}

static void write_all(sg_log_file *f, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            sg_log_error("write() to \"%s\" failed (%d: %s)", f->path, errno, strerror(errno));
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* gzip: the buffer is written as one complete gzip member (nginx does
 * the same), so the file is a concatenation of members that zcat and
 * gzip readers take whole, and a crash loses at most one buffer. */
static void write_gzip(sg_log_file *f, int level, const char *p, size_t n)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        sg_log_error("deflateInit2() for \"%s\" failed, lines written uncompressed", f->path);
        write_all(f, p, n);
        return;
    }
    uLong bound = deflateBound(&zs, (uLong)n);
    unsigned char *out = sg_xmalloc(bound);
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)bound;
    int rc = deflate(&zs, Z_FINISH);
    if (rc == Z_STREAM_END) write_all(f, (const char *)out, bound - zs.avail_out);
    else sg_log_error("deflate() for \"%s\" failed (%d)", f->path, rc);
    deflateEnd(&zs);
    free(out);
}

static void tbuf_write(thread_buf *b, const char *p, size_t n)
{
    if (b->gzip) write_gzip(b->file, b->gzip, p, n);
    else write_all(b->file, p, n);
}

static void tbuf_flush(thread_buf *b)
{
    if (sg_timer_armed(&b->flush_timer)) sg_timer_disarm(&b->flush_timer);
    if (b->n) tbuf_write(b, b->p, b->n);
    b->n = 0;
}

/* ---------------- generations ---------------- */

typedef bool (*log_fn)(sg_access_log *al, char *err, size_t errlen);

static bool walk_location(sg_location *l, log_fn fn, char *err, size_t errlen)
{
    for (size_t i = 0; i < l->conf.naccess_logs; i++)
        if (!fn(&l->conf.access_logs[i], err, errlen)) return false;
    for (size_t i = 0; i < l->nchildren; i++)
        if (!walk_location(l->children[i], fn, err, errlen)) return false;
    return true;
}

static bool walk_logs(sg_conf *c, log_fn fn, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        if (s->root && !walk_location(s->root, fn, err, errlen)) return false;
        for (size_t k = 0; k < s->nnamed; k++)
            if (!walk_location(s->named[k], fn, err, errlen)) return false;
    }
    return true;
}

/* Locations may share one sg_access_log after merging: `file` set means
 * this generation already holds its reference. */
static bool open_one(sg_access_log *al, char *err, size_t errlen)
{
    if (al->file || !al->path) return true;
    al->file = file_acquire(al->path, true);
    if (al->file) return true;
    snprintf(err, errlen, "open() \"%s\" failed (%d: %s)", al->path, errno, strerror(errno));
    return false;
}

static bool close_one(sg_access_log *al, char *err, size_t errlen)
{
    if (al->file) file_release(al->file, true);
    al->file = NULL;
    return true;
}

/* error_log in http/server/location: a location whose log is the main
 * one keeps NULL (sg_log_to then writes to the main log). */
static bool open_error_log(const sg_conf *c, sg_loc_conf *lc, char *err, size_t errlen)
{
    if (!lc->error_log_path || lc->error_log ||
        (strcmp(lc->error_log_path, c->error_log_path) == 0 && lc->error_log_level == c->error_log_level))
        return true;
    lc->error_log = sg_log_target_open(lc->error_log_path, lc->error_log_level);
    if (lc->error_log) return true;
    snprintf(err, errlen, "open() \"%s\" failed (%d: %s)", lc->error_log_path, errno, strerror(errno));
    return false;
}

static bool open_error_logs_in(const sg_conf *c, sg_location *l, char *err, size_t errlen)
{
    if (!open_error_log(c, &l->conf, err, errlen)) return false;
    for (size_t i = 0; i < l->nchildren; i++)
        if (!open_error_logs_in(c, l->children[i], err, errlen)) return false;
    return true;
}

static bool open_error_logs(sg_conf *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        if (s->root && !open_error_logs_in(c, s->root, err, errlen)) return false;
        for (size_t k = 0; k < s->nnamed; k++)
            if (!open_error_logs_in(c, s->named[k], err, errlen)) return false;
    }
    return true;
}

/* stream{}'s access logs (stream level and servers; a server's list may
 * be the inherited one, so `file` set means already held). Without
 * buffer=, a stream line is one write() when its session ends. */
static bool walk_stream_list(sg_stream_log *l, size_t n, bool open, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (!l[i].path) continue;     /* syslog:, or a path with variables */
        if (open && !l[i].file) {
            l[i].file = file_acquire(l[i].path, true);
            if (!l[i].file) {
                snprintf(err, errlen, "open() \"%s\" failed (%d: %s)", l[i].path, errno, strerror(errno));
                return false;
            }
        } else if (!open && l[i].file) {
            file_release(l[i].file, true);
            l[i].file = NULL;
        }
    }
    return true;
}

/* error_log of stream{} and its servers: a level whose list is the main
 * log's keeps NULL (sg_log_to then writes to the main log). */
static bool open_stream_error_log(const sg_conf *c, sg_stream_proxy_conf *p, char *err, size_t errlen)
{
    if (!p->error_log_path || p->error_log ||
        (strcmp(p->error_log_path, c->error_log_path) == 0 && p->error_log_level == c->error_log_level))
        return true;
    p->error_log = sg_log_target_open(p->error_log_path, p->error_log_level);
    if (p->error_log) return true;
    snprintf(err, errlen, "open() \"%s\" failed (%d: %s)", p->error_log_path, errno, strerror(errno));
    return false;
}

static bool walk_stream_logs(sg_conf *c, bool open, char *err, size_t errlen)
{
    sg_stream_conf *sc = c->stream;
    if (!sc) return true;
    if (open) {
        if (!open_stream_error_log(c, &sc->proxy, err, errlen)) return false;
        for (size_t i = 0; i < sc->nservers; i++)
            if (!open_stream_error_log(c, &sc->servers[i]->proxy, err, errlen)) return false;
    }
    if (!walk_stream_list(sc->proxy.logs, sc->proxy.nlogs, open, err, errlen)) return false;
    for (size_t i = 0; i < sc->nservers; i++)
        if (!walk_stream_list(sc->servers[i]->proxy.logs, sc->servers[i]->proxy.nlogs, open, err, errlen))
            return false;
    return true;
}

/* ---------------- open_log_file_cache ----------------
 *
 * One cache per open_log_file_cache directive, shared by the threads (a
 * mutex: paths with variables cost an open() per line without it, so the
 * lock is the cheap part), as nginx's per-worker cache: the entries of the
 * paths used within `inactive`, the most recent first, at most `max` of
 * them (the least recently used goes first); a path's descriptor is kept
 * once it was used `min_uses` times, and checked against the path (same
 * file?) every `valid`. Lines are written under the lock, so an entry's
 * descriptor is never closed under a writer. */

typedef struct cache_entry {
    struct cache_entry *prev, *next;
    char *path;
    int fd;                      /* -1: not kept (yet) */
    uint32_t uses;
    uint64_t last_ms, checked_ms;
} cache_entry;

typedef struct cache_rt {
    pthread_mutex_t lock;
    cache_entry *head, *tail;
    size_t n;
} cache_rt;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void cache_unlink(cache_rt *rt, cache_entry *e)
{
    if (e->prev) e->prev->next = e->next; else rt->head = e->next;
    if (e->next) e->next->prev = e->prev; else rt->tail = e->prev;
    e->prev = e->next = NULL;
}

static void cache_push_front(cache_rt *rt, cache_entry *e)
{
    e->prev = NULL;
    e->next = rt->head;
    if (rt->head) rt->head->prev = e; else rt->tail = e;
    rt->head = e;
}

static void cache_drop(cache_rt *rt, cache_entry *e)
{
    cache_unlink(rt, e);
    if (e->fd >= 0) close(e->fd);
    free(e->path);
    free(e);
    rt->n--;
}

/* Still the file the path names? (it may have been rotated or removed) */
static bool same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void write_cached(sg_log_cache *c, const char *path, const char *p, size_t n)
{
    cache_rt *rt = c->rt;
    uint64_t now = mono_ms();
    pthread_mutex_lock(&rt->lock);
    while (rt->tail && rt->tail->last_ms + c->inactive_ms < now) cache_drop(rt, rt->tail);
    cache_entry *e = rt->head;
    while (e && strcmp(e->path, path) != 0) e = e->next;
    int fd = -1;
    if (e) {
        cache_unlink(rt, e);
        e->uses++;
        if (e->fd >= 0 && now - e->checked_ms >= c->valid_ms) {
            e->checked_ms = now;
            if (!same_file(e->fd, path)) {     /* rotated or removed: the path again */
                close(e->fd);
                e->fd = -1;
            }
        }
        fd = e->fd;
    }
    if (fd < 0 && (fd = open_log(path)) < 0) {
        /* nginx: a path that cannot be opened gets no entry (and pushes
         * no other out) */
        sg_log_error("open() \"%s\" failed (%d: %s)", path, errno, strerror(errno));
        if (e) cache_push_front(rt, e);
        pthread_mutex_unlock(&rt->lock);
        return;
    }
    if (!e) {
        while (rt->n >= c->max && rt->tail) cache_drop(rt, rt->tail);
        e = sg_xcalloc(1, sizeof(*e));
        e->path = sg_xstrdup(path);
        e->fd = -1;
        e->uses = 1;
        rt->n++;
    }
    cache_push_front(rt, e);
    e->last_ms = now;
    if (e->fd < 0 && e->uses >= c->min_uses) {
        e->fd = fd;
        e->checked_ms = now;
    }
    sg_log_file f = { .path = (char *)path, .fd = fd };
    write_all(&f, p, n);
    if (fd != e->fd) close(fd);
    pthread_mutex_unlock(&rt->lock);
}

static void cache_rt_free(sg_log_cache *c)
{
    cache_rt *rt = c->rt;
    if (!rt) return;
    while (rt->head) cache_drop(rt, rt->head);
    pthread_mutex_destroy(&rt->lock);
    free(rt);
    c->rt = NULL;
}

static void caches_in(sg_location *l, bool open)
{
    sg_log_cache *c = l->conf.log_cache;
    if (c && open && !c->rt) {
        cache_rt *rt = sg_xcalloc(1, sizeof(*rt));
        pthread_mutex_init(&rt->lock, NULL);
        c->rt = rt;
    } else if (c && !open) {
        cache_rt_free(c);
    }
    for (size_t i = 0; i < l->nchildren; i++) caches_in(l->children[i], open);
}

static void walk_caches(sg_conf *c, bool open)
{
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        if (s->root) caches_in(s->root, open);
        for (size_t k = 0; k < s->nnamed; k++) caches_in(s->named[k], open);
    }
}

bool sg_access_log_open_all(sg_conf *c, char *err, size_t errlen)
{
    if (!open_error_logs(c, err, errlen)) return false;
    walk_caches(c, true);
    if (walk_logs(c, open_one, err, errlen) && walk_stream_logs(c, true, err, errlen)) return true;
    sg_access_log_close_all(c);
    return false;
}

void sg_access_log_close_all(sg_conf *c)
{
    walk_logs(c, close_one, NULL, 0);
    walk_stream_logs(c, false, NULL, 0);
    walk_caches(c, false);
}

/* ---------------- writing ---------------- */

static void tbuf_free(thread_buf *b)
{
    if (sg_timer_armed(&b->flush_timer)) sg_timer_disarm(&b->flush_timer);
    file_release(b->file, false);
    free(b->p);
    free(b);
}

static void thread_exit(void *unused)
{
    sg_access_log_flush_thread();
    for (size_t i = 0; i < ntbufs; i++) tbuf_free(tbufs[i]);
    free(tbufs);
    tbufs = NULL;
    ntbufs = captbufs = 0;
    sg_strbuf_free(&line);
}

static void exit_key_create(void)
{
    if (pthread_key_create(&exit_key, thread_exit) != 0)
        sg_log_error("pthread_key_create() failed: thread log buffers leak at thread exit");
}

/* The first time a thread keeps anything here (a buffer, or the line it
 * formats into, also used for logs whose path has variables), thread_exit
 * is set to free it when the thread ends. */
static void arm_thread_exit(void)
{
    static _Thread_local bool armed;
    if (armed) return;
    armed = true;
    pthread_once(&exit_once, exit_key_create);
    pthread_setspecific(exit_key, &tbufs);   /* any non-NULL value: the destructor runs */
}

static void on_flush_timer(sg_timer *t)
{
    thread_buf *b = (thread_buf *)((char *)t - offsetof(thread_buf, flush_timer));
    tbuf_flush(b);
}

/* The buffer of file f in this thread. A log with buffer= sets its size,
 * gzip level and flush time the first time it writes there; a log without
 * (size 0) shares it as it is. */
static thread_buf *tbuf_get(sg_log_file *f, size_t size, int gzip, uint32_t flush_ms)
{
    for (size_t i = 0; i < ntbufs; i++)
        if (tbufs[i]->file == f) return tbufs[i];
    arm_thread_exit();
    if (ntbufs == captbufs) {
        captbufs = captbufs ? captbufs * 2 : 4;
        tbufs = sg_xrealloc(tbufs, captbufs * sizeof(*tbufs));
    }
    thread_buf *b = sg_xcalloc(1, sizeof(*b));
    tbufs[ntbufs++] = b;
    file_hold(f);
    b->file = f;
    b->cap = size ? size : DEFAULT_BUFFER;
    b->p = sg_xmalloc(b->cap);
    b->gzip = gzip;
    b->flush_ms = flush_ms;
    sg_timer_init(&b->flush_timer, on_flush_timer);
    return b;
}

static thread_buf *tbuf_append(sg_log_file *f, size_t size, int gzip, uint32_t flush_ms, const char *p, size_t n)
{
    thread_buf *b = tbuf_get(f, size, gzip, flush_ms);
    if (b->n + n > b->cap) tbuf_flush(b);
    if (n > b->cap) {
        tbuf_write(b, p, n);
        return b;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    /* flush=: nginx's timer starts with the first line of an empty buffer */
    sg_worker *w;
    if (b->flush_ms && !sg_timer_armed(&b->flush_timer) && (w = sg_worker_self()))
        sg_timer_arm(sg_worker_loop(w), &b->flush_timer, b->flush_ms);
    return b;
}

/* A path with variables (issue 9): opened, written and closed for each
 * line, as nginx does without open_log_file_cache. */
static void write_path(const char *path, size_t len, const char *p, size_t n)
{
    char buf[4096];
    if (len == 0 || len >= sizeof(buf)) return;
    memcpy(buf, path, len);
    buf[len] = '\0';
    int fd = open_log(buf);
    if (fd < 0) {
        sg_log_error("open() \"%s\" failed (%d: %s)", buf, errno, strerror(errno));
        return;
    }
    sg_log_file f = { .path = buf, .fd = fd };
    write_all(&f, p, n);
    close(fd);
}

/* A log without buffer= (nginx writes each of its lines at once): its
 * lines reach the file at the end of the loop iteration that made them,
 * so a client that reads the log right after its answer finds the line,
 * and a busy thread still writes once per iteration, not per request. */
static _Thread_local sg_deferred eager_flush;

static void on_eager_flush(sg_deferred *d)
{
    (void)d;
    for (size_t i = 0; i < ntbufs; i++) {
        thread_buf *b = tbufs[i];
        if (!b->eager) continue;
        b->eager = false;
        tbuf_flush(b);
    }
}

static void eager_append(sg_log_file *f, const char *p, size_t n)
{
    sg_worker *w = sg_worker_self();
    thread_buf *b = tbuf_append(f, 0, 0, 0, p, n);
    if (!w) return;               /* not a worker thread: written with the others */
    b->eager = true;
    if (!eager_flush.cb) sg_deferred_init(&eager_flush, on_eager_flush);
    sg_loop_defer(sg_worker_loop(w), &eager_flush);
}

/* syslog: one message per line, without its newline */
static void send_syslog(const struct sg_syslog *s, const char *p, size_t n)
{
    if (n && p[n - 1] == '\n') n--;
    sg_syslog_send(s, -1, p, n);
}

void sg_access_log_write(sg_http_req *r)
{
    const sg_loc_conf *lc = r->loc ? &r->loc->conf
                          : (r->srv && r->srv->root) ? &r->srv->root->conf : NULL;
    if (!lc || lc->access_log_off) return;
    for (size_t i = 0; i < lc->naccess_logs; i++) {
        const sg_access_log *al = &lc->access_logs[i];
        if ((!al->file && !al->var_path && !al->syslog) || !al->format) continue;
        if (al->has_cond) {              /* if=COND: nginx skips "" and "0" */
            sg_str v = sg_cval_eval(&al->cond, r);
            if (v.n == 0 || (v.n == 1 && v.p[0] == '0')) continue;
        }
        arm_thread_exit();
        line.n = 0;
        sg_cval_eval_log(&al->format->format, r, al->format->escape_json,
                         al->format->escape_none, &line);
        sg_strbuf_append(&line, "\n", 1);
        if (al->syslog) {
            send_syslog(al->syslog, line.p, line.n);
        } else if (al->var_path && lc->log_cache && lc->log_cache->rt) {
            sg_str path = sg_cval_eval(&al->path_value, r);
            char buf[4096];
            if (path.n == 0 || path.n >= sizeof(buf)) continue;
            memcpy(buf, path.p, path.n);
            buf[path.n] = '\0';
            write_cached(lc->log_cache, buf, line.p, line.n);
        } else if (al->var_path) {
            sg_str path = sg_cval_eval(&al->path_value, r);
            write_path(path.p, path.n, line.p, line.n);
        } else if (al->buffer_size) {
            tbuf_append(al->file, al->buffer_size, al->gzip, al->flush_ms, line.p, line.n);
        } else {
            eager_append(al->file, line.p, line.n);
        }
    }
}

void sg_access_log_stream_line(const sg_stream_log *l, const char *path, size_t pathlen, const char *p, size_t n)
{
    if (l->syslog) send_syslog(l->syslog, p, n);
    else if (l->var_path) write_path(path, pathlen, p, n);
    else if (!l->file) return;
    else if (l->buffer_size) tbuf_append(l->file, l->buffer_size, l->gzip, l->flush_ms, p, n);
    else write_all(l->file, p, n);   /* one write() per session, as before buffer= */
}

void sg_access_log_flush_thread(void)
{
    for (size_t i = 0; i < ntbufs;) {
        thread_buf *b = tbufs[i];
        tbuf_flush(b);
        /* No generation logs to it any more: drop this thread's hold. */
        if (atomic_load(&b->file->gen_refs) == 0) {
            tbuf_free(b);
            tbufs[i] = tbufs[--ntbufs];
            continue;
        }
        i++;
    }
}

void sg_access_log_reopen_all(void)
{
    pthread_mutex_lock(&reg_lock);
    for (sg_log_file *f = registry; f; f = f->next) {
        int fd = open_log(f->path);
        if (fd < 0) {
            sg_log_error("open() \"%s\" failed (%d: %s)", f->path, errno, strerror(errno));
            continue;
        }
        if (dup3(fd, f->fd, O_CLOEXEC) < 0)
            sg_log_error("dup3() for \"%s\" failed (%d: %s)", f->path, errno, strerror(errno));
        close(fd);
    }
    pthread_mutex_unlock(&reg_lock);
}
