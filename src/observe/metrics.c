/* Metrics (observe/metrics.h): the layout of the labelled slots, the
 * label registries, and the text of the exposition and of stub_status. */
#include "observe/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- slot layout (after core/stats.h's named slots) ---- */

/* per location row: status class 0 (none) and 1xx..5xx, bytes in, bytes out */
#define LOC_W 8
#define LOC_IN 6
#define LOC_OUT 7
#define LOC_BASE SG_ST_FIRST_FREE
/* per method row: grpc-status 0..16, messages in, messages out */
#define GRPC_NSTATUS 17
#define GRPC_W (GRPC_NSTATUS + 2)
#define GRPC_BASE (LOC_BASE + SG_MX_LOCS * LOC_W)
/* histograms: buckets (the last is +Inf), sum in microseconds, count */
#define NB 14
#define HIST_W (NB + 2)
#define HIST_BASE (GRPC_BASE + (SG_MX_METHODS + 1) * GRPC_W)
enum { H_REQUEST, H_UP_CONNECT, H_UP_HEADER, H_GRPC, NHIST };
#define SLOTS_USED (HIST_BASE + NHIST * HIST_W)
_Static_assert(SLOTS_USED <= SG_STATS_SLOTS, "raise SG_STATS_SLOTS");

static const uint64_t bucket_us[NB - 1] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
static const char *const bucket_le[NB] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
};

static void observe(int h, uint64_t us)
{
    size_t base = HIST_BASE + (size_t)h * HIST_W;
    int b = 0;
    while (b < NB - 1 && us > bucket_us[b]) b++;
    sg_stats_add(base + (size_t)b, 1);
    sg_stats_add(base + NB, (int64_t)us);
    sg_stats_add(base + NB + 1, 1);
}

/* ---- locations ---- */

typedef struct loc_label {
    char *server, *location;
} loc_label;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static loc_label locs[SG_MX_LOCS];
static int nlocs = 1;              /* row 0: "_other_" */
static uint64_t generation;        /* generations installed so far */

static int loc_row(sg_str server, sg_str location)
{
    for (int i = 1; i < nlocs; i++)
        if (strlen(locs[i].server) == server.n && memcmp(locs[i].server, server.p, server.n) == 0 &&
            strlen(locs[i].location) == location.n && memcmp(locs[i].location, location.p, location.n) == 0)
            return i;
    if (nlocs >= SG_MX_LOCS) return 0;
    locs[nlocs].server = strndup(server.p ? server.p : "", server.n);
    locs[nlocs].location = strndup(location.p ? location.p : "", location.n);
    return nlocs++;
}

/* An `if` or `limit_except` block (named "(if)", "(limit_except)") is
 * counted as the location it is in. */
static void install_loc(sg_str server, sg_location *l, int parent_row)
{
    if (!l) return;
    bool block = l->parent && l->name.n && l->name.p[0] == '(';
    l->conf.mx_id = block ? parent_row : loc_row(server, l->name);
    for (size_t i = 0; i < l->nchildren; i++) install_loc(server, l->children[i], l->conf.mx_id);
}

void sg_mx_conf_install(sg_conf *c, bool reload)
{
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        sg_str name = s->nnames ? s->names[0].name : SG_STR("");
        install_loc(name, s->root, 0);
        for (size_t k = 0; k < s->nnamed; k++) install_loc(name, s->named[k], 0);
    }
    generation++;
    pthread_mutex_unlock(&reg_lock);
    if (reload) sg_stats_add(SG_ST_RELOADS, 1);
}

static uint64_t elapsed_us(const struct timespec *start)
{
    if (!start->tv_sec && !start->tv_nsec) return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - start->tv_sec) * 1000000 + (now.tv_nsec - start->tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

void sg_mx_request_done(const sg_exchange *ex)
{
    const sg_http_req *r = &ex->req;
    int row = r->loc ? r->loc->conf.mx_id : 0;
    if (row < 0 || row >= SG_MX_LOCS) row = 0;
    int cls = r->status / 100;
    if (cls < 1 || cls > 5) cls = 0;
    size_t base = LOC_BASE + (size_t)row * LOC_W;
    sg_stats_add(base + (size_t)cls, 1);
    sg_stats_add(base + LOC_IN, (int64_t)(r->head_length + r->body_received));
    sg_stats_add(base + LOC_OUT, (int64_t)r->bytes_sent);
    observe(H_REQUEST, elapsed_us(&r->start_mono));
    sg_mx_upstream_times(ex->up_connect_ms, ex->up_header_ms);
    if (ex->tunnel) sg_stats_add(SG_ST_WS_H2, -1);
}

void sg_mx_upstream_times(uint64_t connect_ms1, uint64_t header_ms1)
{
    if (connect_ms1) observe(H_UP_CONNECT, (connect_ms1 - 1) * 1000);
    if (header_ms1) observe(H_UP_HEADER, (header_ms1 - 1) * 1000);
}

/* ---- gRPC methods ---- */

#define NAME_MAX_LEN 192
#define MTAB 1024                  /* open addressing, at most a quarter full */

typedef struct method {
    uint32_t hash;
    uint16_t len;
    char name[NAME_MAX_LEN];       /* "/pkg.Service/Method" */
} method;

static method methods[SG_MX_METHODS];
static _Atomic int mtab[MTAB];     /* 0: empty; else row (index + 1) */
static int nmethods;               /* under reg_lock */

static uint32_t hash_of(sg_str s)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < s.n; i++) h = (h ^ (unsigned char)s.p[i]) * 16777619u;
    return h;
}

/* The row of a known method, 0 if none. Lock-free: a slot is published
 * (release) after its method is written. */
static int method_find(sg_str path, uint32_t h)
{
    for (uint32_t i = 0; i < MTAB; i++) {
        int v = atomic_load_explicit(&mtab[(h + i) & (MTAB - 1)], memory_order_acquire);
        if (!v) return 0;
        const method *m = &methods[v - 1];
        if (m->hash == h && m->len == path.n && memcmp(m->name, path.p, path.n) == 0) return v;
    }
    return 0;
}

/* "/service/method": one more '/', printable, no quote or backslash. */
static bool valid_path(sg_str p)
{
    if (p.n < 4 || p.n >= NAME_MAX_LEN || p.p[0] != '/') return false;
    int slashes = 0;
    for (size_t i = 0; i < p.n; i++) {
        unsigned char ch = (unsigned char)p.p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') return false;
        if (ch == '/') slashes++;
    }
    return slashes == 2 && p.p[1] != '/' && p.p[p.n - 1] != '/';
}

static int method_add(sg_str path, uint32_t h)
{
    pthread_mutex_lock(&reg_lock);
    int row = method_find(path, h);
    if (!row && nmethods < SG_MX_METHODS) {
        method *m = &methods[nmethods];
        m->hash = h;
        m->len = (uint16_t)path.n;
        memcpy(m->name, path.p, path.n);
        row = ++nmethods;
        uint32_t i = h;
        while (atomic_load_explicit(&mtab[i & (MTAB - 1)], memory_order_relaxed)) i++;
        atomic_store_explicit(&mtab[i & (MTAB - 1)], row, memory_order_release);
    }
    pthread_mutex_unlock(&reg_lock);
    return row;
}

void sg_mx_grpc_call(sg_str path, int status, bool from_backend, uint64_t msgs_in, uint64_t msgs_out,
                     uint64_t duration_us)
{
    if (status < 0 || status >= GRPC_NSTATUS) status = 2;   /* UNKNOWN */
    int row = 0;
    if (valid_path(path)) {
        uint32_t h = hash_of(path);
        row = method_find(path, h);
        if (!row && from_backend && status != 12) row = method_add(path, h);
    }
    size_t base = GRPC_BASE + (size_t)row * GRPC_W;
    sg_stats_add(base + (size_t)status, 1);
    sg_stats_add(base + GRPC_NSTATUS, (int64_t)msgs_in);
    sg_stats_add(base + GRPC_NSTATUS + 1, (int64_t)msgs_out);
    observe(H_GRPC, duration_us);
}

/* ---- stub_status ---- */

size_t sg_mx_stub_text(char **out)
{
    sg_stub_status st;
    sg_stats_stub(&st);
    char *p = NULL;
    int n = asprintf(&p,
                     "Active connections: %lld \n"
                     "server accepts handled requests\n"
                     " %lld %lld %lld \n"
                     "Reading: %lld Writing: %lld Waiting: %lld \n",
                     (long long)st.active, (long long)st.accepted, (long long)st.handled, (long long)st.requests,
                     (long long)st.reading, (long long)st.writing, (long long)st.waiting);
    if (n < 0) {
        *out = NULL;
        return 0;
    }
    *out = p;
    return (size_t)n;
}

/* ---- exposition ---- */

void sg_mx_family(sg_strbuf *b, const char *name, const char *type, const char *help)
{
    sg_strbuf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void sg_mx_label_value(sg_strbuf *b, sg_str v)
{
    for (size_t i = 0; i < v.n; i++) {
        char ch = v.p[i];
        if (ch == '\\') sg_strbuf_append(b, "\\\\", 2);
        else if (ch == '"') sg_strbuf_append(b, "\\\"", 2);
        else if (ch == '\n') sg_strbuf_append(b, "\\n", 2);
        else sg_strbuf_append(b, &ch, 1);
    }
}

static void scalar(sg_strbuf *b, const char *name, const char *type, const char *help, int64_t v)
{
    sg_mx_family(b, name, type, help);
    sg_strbuf_appendf(b, "%s %lld\n", name, (long long)v);
}

static void histogram(sg_strbuf *b, const int64_t *v, int h, const char *name, const char *help)
{
    const int64_t *x = v + HIST_BASE + (size_t)h * HIST_W;
    sg_mx_family(b, name, "histogram", help);
    int64_t cum = 0;
    for (int i = 0; i < NB; i++) {
        cum += x[i];
        sg_strbuf_appendf(b, "%s_bucket{le=\"%s\"} %lld\n", name, bucket_le[i], (long long)cum);
    }
    sg_strbuf_appendf(b, "%s_sum %lld.%06lld\n", name, (long long)(x[NB] / 1000000), (long long)(x[NB] % 1000000));
    sg_strbuf_appendf(b, "%s_count %lld\n", name, (long long)x[NB + 1]);
}

static void method_labels(sg_strbuf *b, int row)
{
    if (row == 0) {
        sg_strbuf_appendf(b, "service=\"_other_\",method=\"_other_\"");
        return;
    }
    const method *m = &methods[row - 1];
    const char *slash = memchr(m->name + 1, '/', m->len - 1);
    size_t sn = (size_t)(slash - m->name) - 1;
    sg_strbuf_appendf(b, "service=\"%.*s\",method=\"%.*s\"", (int)sn, m->name + 1,
                      (int)(m->len - sn - 2), slash + 1);
}

static int64_t proc_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

static int64_t proc_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1;   /* not the directory's own descriptor */
}

void sg_mx_render(sg_strbuf *b)
{
    int64_t *v = sg_xcalloc(SLOTS_USED, sizeof(int64_t));
    sg_stats_sum_range(0, SLOTS_USED, v);
    int64_t *lv = v + LOC_BASE, *gv = v + GRPC_BASE;

    sg_mx_family(b, "streamgate_connections", "gauge",
                 "Client connections open, by protocol and state (idle: between requests / no stream).");
    sg_strbuf_appendf(b, "streamgate_connections{protocol=\"http1\",state=\"active\"} %lld\n", (long long)v[SG_ST_H1_ACTIVE]);
    sg_strbuf_appendf(b, "streamgate_connections{protocol=\"http1\",state=\"idle\"} %lld\n", (long long)v[SG_ST_H1_IDLE]);
    sg_strbuf_appendf(b, "streamgate_connections{protocol=\"http2\",state=\"active\"} %lld\n", (long long)v[SG_ST_H2_ACTIVE]);
    sg_strbuf_appendf(b, "streamgate_connections{protocol=\"http2\",state=\"idle\"} %lld\n", (long long)v[SG_ST_H2_IDLE]);
    sg_strbuf_appendf(b, "streamgate_connections{protocol=\"websocket\",state=\"active\"} %lld\n",
                      (long long)(v[SG_ST_WS] + v[SG_ST_WS_H2]));
    sg_strbuf_appendf(b, "streamgate_connections{protocol=\"stream\",state=\"active\"} %lld\n", (long long)v[SG_ST_STREAM]);
    scalar(b, "streamgate_tls_connections", "gauge", "HTTP client connections open over TLS.", v[SG_ST_TLS]);
    scalar(b, "streamgate_connections_accepted_total", "counter", "Client connections accepted.", v[SG_ST_ACCEPTED]);
    scalar(b, "streamgate_connections_handled_total", "counter",
           "Client connections accepted and not refused for worker_connections.", v[SG_ST_HANDLED]);
    sg_mx_family(b, "streamgate_http_requests_in_progress", "gauge", "HTTP requests being read or answered.");
    sg_strbuf_appendf(b, "streamgate_http_requests_in_progress{state=\"reading\"} %lld\n", (long long)v[SG_ST_READING]);
    sg_strbuf_appendf(b, "streamgate_http_requests_in_progress{state=\"writing\"} %lld\n", (long long)v[SG_ST_WRITING]);

    pthread_mutex_lock(&reg_lock);
    static const char *const cls[6] = { "none", "1xx", "2xx", "3xx", "4xx", "5xx" };
    sg_mx_family(b, "streamgate_http_requests_total", "counter",
                 "HTTP requests finished, by server, location and status class.");
    for (int row = 0; row < nlocs; row++)
        for (int c = 0; c < 6; c++) {
            int64_t x = lv[row * LOC_W + c];
            if (!x) continue;
            sg_strbuf_appendf(b, "streamgate_http_requests_total{server=\"");
            sg_mx_label_value(b, sg_str_from(row ? locs[row].server : "_other_"));
            sg_strbuf_appendf(b, "\",location=\"");
            sg_mx_label_value(b, sg_str_from(row ? locs[row].location : "_other_"));
            sg_strbuf_appendf(b, "\",class=\"%s\"} %lld\n", cls[c], (long long)x);
        }
    for (int dir = 0; dir < 2; dir++) {
        const char *name = dir ? "streamgate_http_sent_bytes_total" : "streamgate_http_received_bytes_total";
        sg_mx_family(b, name, "counter", dir ? "Bytes sent to clients (heads and bodies), by server and location."
                                             : "Bytes received from clients (heads and bodies), by server and location.");
        for (int row = 0; row < nlocs; row++) {
            int64_t x = lv[row * LOC_W + (dir ? LOC_OUT : LOC_IN)];
            if (!x) continue;
            sg_strbuf_appendf(b, "%s{server=\"", name);
            sg_mx_label_value(b, sg_str_from(row ? locs[row].server : "_other_"));
            sg_strbuf_appendf(b, "\",location=\"");
            sg_mx_label_value(b, sg_str_from(row ? locs[row].location : "_other_"));
            sg_strbuf_appendf(b, "\"} %lld\n", (long long)x);
        }
    }
    int nm = nmethods;
    uint64_t gen = generation;
    pthread_mutex_unlock(&reg_lock);

    sg_mx_family(b, "streamgate_grpc_calls_total", "counter",
                 "gRPC calls finished, by service, method and grpc-status (methods no backend answered fold into _other_).");
    for (int row = 0; row <= nm; row++)
        for (int s = 0; s < GRPC_NSTATUS; s++) {
            int64_t x = gv[row * GRPC_W + s];
            if (!x) continue;
            sg_strbuf_appendf(b, "streamgate_grpc_calls_total{");
            method_labels(b, row);
            sg_strbuf_appendf(b, ",grpc_status=\"%d\"} %lld\n", s, (long long)x);
        }
    for (int dir = 0; dir < 2; dir++) {
        const char *name = dir ? "streamgate_grpc_messages_sent_total" : "streamgate_grpc_messages_received_total";
        sg_mx_family(b, name, "counter", dir ? "gRPC messages sent to clients, by service and method."
                                             : "gRPC messages received from clients, by service and method.");
        for (int row = 0; row <= nm; row++) {
            const int64_t *g = gv + row * GRPC_W;
            int64_t calls = 0;
            for (int s = 0; s < GRPC_NSTATUS; s++) calls += g[s];
            if (!calls) continue;
            sg_strbuf_appendf(b, "%s{", name);
            method_labels(b, row);
            sg_strbuf_appendf(b, "} %lld\n", (long long)g[GRPC_NSTATUS + dir]);
        }
    }
    histogram(b, v, H_REQUEST, "streamgate_http_request_duration_seconds",
              "Time from a request's first byte to its end.");
    histogram(b, v, H_UP_CONNECT, "streamgate_upstream_connect_duration_seconds",
              "Time to connect to an upstream (the last attempt of each request).");
    histogram(b, v, H_UP_HEADER, "streamgate_upstream_response_duration_seconds",
              "Time from the start of an upstream attempt to the response head.");
    histogram(b, v, H_GRPC, "streamgate_grpc_call_duration_seconds", "gRPC call duration.");

    scalar(b, "streamgate_tls_handshakes_total", "counter", "Client TLS handshakes completed.", v[SG_ST_TLS_HANDSHAKES]);
    scalar(b, "streamgate_tls_resumptions_total", "counter", "Client TLS handshakes that resumed a session.",
           v[SG_ST_TLS_RESUMED]);
    scalar(b, "streamgate_tls_handshake_failures_total", "counter", "Client TLS handshakes that failed or timed out.",
           v[SG_ST_TLS_FAILED]);
    scalar(b, "streamgate_limit_req_rejected_total", "counter", "Requests limit_req refused.", v[SG_ST_LIMIT_REQ_REJECTED]);
    scalar(b, "streamgate_limit_req_delayed_total", "counter", "Requests limit_req delayed.", v[SG_ST_LIMIT_REQ_DELAYED]);
    scalar(b, "streamgate_limit_conn_rejected_total", "counter", "Requests and sessions limit_conn refused.",
           v[SG_ST_LIMIT_CONN_REJECTED]);
    scalar(b, "streamgate_reloads_total", "counter", "Configurations reloaded.", v[SG_ST_RELOADS]);
    scalar(b, "streamgate_config_generation", "gauge", "Number of the configuration generation in use (1: the first).",
           (int64_t)gen);
    scalar(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", proc_rss_bytes());
    scalar(b, "process_open_fds", "gauge", "Number of open file descriptors.", proc_open_fds());
    free(v);
}
