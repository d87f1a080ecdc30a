/* Active health checks: see health.h. A few checker threads (at most
 * HC_MAX_THREADS, one per checked peer when fewer) take the due checks in
 * turn; each check runs with non-blocking sockets and poll() and has a
 * deadline (the location's connect + read timeouts, at most max(interval,
 * 2 s)). The stop eventfd is polled with every wait, so a generation that
 * drains stops its checkers at once. */
#include "upstream/health.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pcre2.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include "conf/health_conf.h"
#include "conf/stream_conf.h"
#include "core/log.h"
#include "core/sockaddr.h"
#include "core/str.h"
#include "upstream/pool.h"

#define HC_MAX_BODY (64 * 1024)
#define HC_MAX_HEAD (32 * 1024)

/* ---------------- process-wide last known state ---------------- */

typedef struct known_state {
    char *upstream, *server;
    sg_health_info info;
} known_state;

static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;
static known_state *known;
static size_t nknown, capknown;

static known_state *known_find(const char *upstream, const char *server)
{
    for (size_t i = 0; i < nknown; i++)
        if (strcmp(known[i].upstream, upstream) == 0 && strcmp(known[i].server, server) == 0) return &known[i];
    return NULL;
}

/* One check's outcome (why: NULL when it passed) and the state it leaves. */
static void record_state(const char *upstream, const char *server, bool healthy, const char *why)
{
    pthread_mutex_lock(&known_lock);
    known_state *k = known_find(upstream, server);
    if (!k) {
        if (nknown == capknown) {
            capknown = capknown ? capknown * 2 : 16;
            known = sg_xrealloc(known, capknown * sizeof(*known));
        }
        k = &known[nknown++];
        memset(k, 0, sizeof(*k));
        k->upstream = sg_xstrdup(upstream);
        k->server = sg_xstrdup(server);
    }
    k->info.result = healthy ? SG_HEALTH_HEALTHY : SG_HEALTH_UNHEALTHY;
    k->info.checks++;
    if (why) k->info.failed_checks++;
    snprintf(k->info.last_failure, sizeof(k->info.last_failure), "%s", why ? why : "");
    pthread_mutex_unlock(&known_lock);
}

bool sg_health_info_get(const char *upstream, const char *server, sg_health_info *out)
{
    pthread_mutex_lock(&known_lock);
    known_state *k = known_find(upstream, server);
    if (k) *out = k->info;
    pthread_mutex_unlock(&known_lock);
    return k != NULL;
}

sg_health_result sg_health_state(const char *upstream, const char *server)
{
    sg_health_info info;
    return sg_health_info_get(upstream, server, &info) ? info.result : SG_HEALTH_UNKNOWN;
}

/* ---------------- runtime ---------------- */

typedef struct hc_peer {
    sg_peer *peer;
    bool healthy;
    unsigned fails, passes;            /* consecutive results against the current state */
    uint64_t next_ms;
    bool busy;                         /* a checker thread is checking it */
} hc_peer;

typedef struct hc_check {
    const sg_health_check *conf;
    const char *upstream;
    sg_upstream_rt *rt;
    sg_balancer *balancer;             /* the one `peers` point into */
    hc_peer *peers;
    size_t npeers;
} hc_check;

/* A few checker threads share the checks (so a peer that accepts and
 * never answers delays no other peer's check): the state below is theirs,
 * under `mu`; each takes the next due peer, checks it without the lock and
 * records the result. */
#define HC_MAX_THREADS 4

typedef struct hc_runtime {
    pthread_t threads[HC_MAX_THREADS];
    int nthreads;
    int stopfd;                        /* readable once stopping: ends waits and checks at once */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
    hc_check *checks;
    size_t nchecks;
} hc_runtime;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *up_name(const sg_upstream_conf *u)
{
    return u->name ? u->name : "";
}

static const char *peer_name(const sg_peer *p)
{
    return p->conf->name ? p->conf->name : "";
}

/* ---------------- one connection ---------------- */

typedef struct hc_conn {
    int fd;
    int stopfd;
    SSL *ssl;
    uint64_t deadline;
    bool stopped;
} hc_conn;

/* Waits for `events` on c->fd until the deadline; false on timeout, error
 * or stop. */
static bool conn_wait(hc_conn *c, short events)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= c->deadline) return false;
        struct pollfd pfd[2] = { { c->fd, events, 0 }, { c->stopfd, POLLIN, 0 } };
        int rc = poll(pfd, 2, (int)(c->deadline - now));
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) return false;
        if (pfd[1].revents) { c->stopped = true; return false; }
        if (pfd[0].revents) return true;
    }
}

static bool conn_open(hc_conn *c, const sg_health_check *h, const sg_peer *p)
{
    struct sockaddr_storage ss = p->conf->addr;
    socklen_t len = p->conf->addrlen;
    if (h->port) {
        if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)h->port);
        else if (ss.ss_family == AF_INET6) ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)h->port);
    }
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return false;
    if (ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(c->fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno != EINPROGRESS) return false;
        if (!conn_wait(c, POLLOUT)) return false;
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) return false;
    }
    if (!h->ssl) return true;
    if (!h->ssl_conf || !h->ssl_conf->ctx) return false;
    c->ssl = SSL_new(h->ssl_conf->ctx);
    if (!c->ssl) return false;
    SSL_set_fd(c->ssl, c->fd);
    if (h->host.n && (h->ssl_conf->server_name || h->ssl_conf->verify)) {
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)h->host.n, h->host.p);
        char *colon = strrchr(name, ':');
        if (colon && !strchr(name, ']') && strchr(name, ':') == colon) *colon = '\0';
        if (h->ssl_conf->server_name) SSL_set_tlsext_host_name(c->ssl, name);
        if (h->ssl_conf->verify) SSL_set1_host(c->ssl, name);
    }
    for (;;) {
        ERR_clear_error();
        int rc = SSL_connect(c->ssl);
        if (rc == 1) return true;
        int e = SSL_get_error(c->ssl, rc);
        if (e == SSL_ERROR_WANT_READ) { if (!conn_wait(c, POLLIN)) return false; }
        else if (e == SSL_ERROR_WANT_WRITE) { if (!conn_wait(c, POLLOUT)) return false; }
        else return false;
    }
}

static void conn_close(hc_conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static bool conn_write(hc_conn *c, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            ERR_clear_error();
            int rc = SSL_write(c->ssl, p, (int)n);
            if (rc <= 0) {
                int e = SSL_get_error(c->ssl, rc);
                if (e == SSL_ERROR_WANT_READ) { if (!conn_wait(c, POLLIN)) return false; continue; }
                if (e == SSL_ERROR_WANT_WRITE) { if (!conn_wait(c, POLLOUT)) return false; continue; }
                return false;
            }
            w = rc;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) { if (!conn_wait(c, POLLOUT)) return false; continue; }
                return false;
            }
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Bytes read (> 0), 0 at the end of the stream, -1 on error or timeout. */
static ssize_t conn_read(hc_conn *c, void *buf, size_t n)
{
    for (;;) {
        if (c->ssl) {
            ERR_clear_error();
            int rc = SSL_read(c->ssl, buf, (int)n);
            if (rc > 0) return rc;
            int e = SSL_get_error(c->ssl, rc);
            if (e == SSL_ERROR_ZERO_RETURN) return 0;
            if (e == SSL_ERROR_WANT_READ) { if (!conn_wait(c, POLLIN)) return -1; continue; }
            if (e == SSL_ERROR_WANT_WRITE) { if (!conn_wait(c, POLLOUT)) return -1; continue; }
            return e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? 0 : -1;
        }
        ssize_t r = recv(c->fd, buf, n, 0);
        if (r >= 0) return r;
        if (errno == EAGAIN || errno == EINTR) { if (!conn_wait(c, POLLIN)) return -1; continue; }
        return -1;
    }
}

/* ---------------- HTTP/1 ---------------- */

bool sg_health_parse_http1(const char *buf, size_t len, int *status, const char **headers, size_t *hlen,
                           const char **body, size_t *blen)
{
    const char *end = buf + len, *e = NULL;
    for (const char *p = buf; p + 4 <= end; p++)
        if (memcmp(p, "\r\n\r\n", 4) == 0) { e = p; break; }
    if (!e || len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') return false;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return false;
        st = st * 10 + (buf[i] - '0');
    }
    const char *hs = memchr(buf, '\n', (size_t)(e + 2 - buf));
    hs = hs ? hs + 1 : e + 2;
    if (hs > e + 2) hs = e + 2;
    const char *b = e + 4;
    size_t bl = (size_t)(end - b);
    /* Content-Length, when given, bounds the body */
    for (const char *l = hs; l < e;) {
        const char *nl = memchr(l, '\n', (size_t)(e + 2 - l));
        if (!nl) break;
        if ((size_t)(nl - l) > 15 && strncasecmp(l, "content-length:", 15) == 0) {
            unsigned long long v = 0;
            const char *d = l + 15;
            while (d < nl && (*d == ' ' || *d == '\t')) d++;
            bool digits = false;
            while (d < nl && *d >= '0' && *d <= '9' && v < (1ull << 40)) { v = v * 10 + (unsigned)(*d++ - '0'); digits = true; }
            if (digits && v < bl) bl = (size_t)v;
        }
        l = nl + 1;
    }
    *status = st;
    *headers = hs;
    *hlen = (size_t)(e + 2 - hs);
    *body = b;
    *blen = bl;
    return true;
}

static const char *check_http1(hc_conn *c, const sg_health_check *h)
{
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "GET %.*s HTTP/1.0\r\nHost: %.*s\r\nUser-Agent: streamgate-health-check\r\n"
                     "Connection: close\r\n\r\n",
                     (int)h->uri.n, h->uri.p, (int)h->host.n, h->host.p);
    if (n <= 0 || (size_t)n >= sizeof(req) || !conn_write(c, req, (size_t)n)) return "sending request";

    size_t cap = HC_MAX_HEAD + HC_MAX_BODY, len = 0;
    char *buf = sg_xmalloc(cap + 1);
    const char *why = NULL;
    size_t head_end = 0;
    long clen = -1;
    for (;;) {
        if (head_end && clen >= 0 && len >= head_end + (size_t)clen) break;
        if (len == cap) break;
        ssize_t r = conn_read(c, buf + len, cap - len);
        if (r < 0) { why = "reading response"; break; }
        if (r == 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        if (!head_end) {
            char *e = strstr(buf, "\r\n\r\n");
            if (e) {
                head_end = (size_t)(e - buf) + 4;
                for (char *l = strchr(buf, '\n'); l && l < e; l = strchr(l + 1, '\n'))
                    if (strncasecmp(l + 1, "content-length:", 15) == 0) clen = strtol(l + 16, NULL, 10);
            } else if (len > HC_MAX_HEAD) {
                why = "reading response header";
                break;
            }
        }
    }
    if (!why && !head_end) why = "reading response header";
    if (!why) {
        int status;
        const char *hs, *body;
        size_t hl, bl;
        if (!sg_health_parse_http1(buf, len, &status, &hs, &hl, &body, &bl)) why = "reading status line";
        else if (!sg_hc_match_http(h->match, status, hs, hl, body, bl))
            why = h->match ? "checking match" : "checking status code";
    }
    free(buf);
    return why;
}

/* ---------------- HTTP/2 and gRPC ---------------- */

typedef struct h2_call {
    hc_conn *c;
    int status;
    int grpc_status;                   /* -1: none seen */
    char *head;                        /* "name: value\r\n" */
    size_t head_len, head_cap;
    char *body;
    size_t body_len;
    bool closed;
    uint32_t error_code;
    const uint8_t *req_body;
    size_t req_len, req_off;
} h2_call;

static void head_add(h2_call *k, const uint8_t *name, size_t nl, const uint8_t *val, size_t vl)
{
    if (k->head_len + nl + vl + 4 > HC_MAX_HEAD) return;
    if (k->head_len + nl + vl + 4 > k->head_cap) {
        k->head_cap = (k->head_len + nl + vl + 4) * 2;
        k->head = sg_xrealloc(k->head, k->head_cap);
    }
    memcpy(k->head + k->head_len, name, nl);
    k->head_len += nl;
    memcpy(k->head + k->head_len, ": ", 2);
    k->head_len += 2;
    memcpy(k->head + k->head_len, val, vl);
    k->head_len += vl;
    memcpy(k->head + k->head_len, "\r\n", 2);
    k->head_len += 2;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *val, size_t vl, uint8_t flags, void *ud)
{
    (void)s; (void)f; (void)flags;
    h2_call *k = ud;
    char v[16];
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        snprintf(v, sizeof(v), "%.*s", (int)(vl < 15 ? vl : 15), (const char *)val);
        k->status = atoi(v);
    } else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0) {
        snprintf(v, sizeof(v), "%.*s", (int)(vl < 15 ? vl : 15), (const char *)val);
        k->grpc_status = atoi(v);
    } else if (nl && name[0] != ':') {
        head_add(k, name, nl, val, vl);
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)s; (void)flags; (void)id;
    h2_call *k = ud;
    if (k->body_len + len > HC_MAX_BODY) len = HC_MAX_BODY - k->body_len;
    if (len) {
        memcpy(k->body + k->body_len, data, len);
        k->body_len += len;
    }
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s; (void)id;
    h2_call *k = ud;
    k->closed = true;
    k->error_code = code;
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s; (void)id; (void)src;
    h2_call *k = ud;
    size_t n = k->req_len - k->req_off;
    if (n > len) n = len;
    memcpy(buf, k->req_body + k->req_off, n);
    k->req_off += n;
    if (k->req_off == k->req_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v, vl) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE }

/* One request over a new HTTP/2 connection: GET uri, or the gRPC call
 * with `body`. NULL when the stream completed (k filled in). */
static const char *h2_request(hc_conn *c, const sg_health_check *h, h2_call *k, const uint8_t *body,
                              size_t blen)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session *s = NULL;
    const char *why = NULL;
    if (nghttp2_session_callbacks_new(&cb) != 0) return "starting HTTP/2";
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rv = nghttp2_session_client_new(&s, cb, k);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) return "starting HTTP/2";

    k->c = c;
    k->grpc_status = -1;
    k->body = sg_xmalloc(HC_MAX_BODY);
    k->req_body = body;
    k->req_len = blen;
    const char *scheme = h->ssl ? "https" : "http";
    const char *path = h->grpc ? "/grpc.health.v1.Health/Check" : NULL;
    nghttp2_nv grpc_nv[] = {
        NV(":method", "POST", 4), NV(":scheme", scheme, strlen(scheme)),
        NV(":path", path, path ? strlen(path) : 0), NV(":authority", h->host.p, h->host.n),
        NV("content-type", "application/grpc", 16), NV("te", "trailers", 8),
        NV("user-agent", "streamgate-health-check", 23),
    };
    nghttp2_nv get_nv[] = {
        NV(":method", "GET", 3), NV(":scheme", scheme, strlen(scheme)),
        NV(":path", h->uri.p, h->uri.n), NV(":authority", h->host.p, h->host.n),
        NV("user-agent", "streamgate-health-check", 23),
    };
    nghttp2_data_provider dp = { .read_callback = read_body };
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
    int32_t id = h->grpc ? nghttp2_submit_request(s, NULL, grpc_nv, sizeof(grpc_nv) / sizeof(grpc_nv[0]), &dp, k)
                         : nghttp2_submit_request(s, NULL, get_nv, sizeof(get_nv) / sizeof(get_nv[0]), NULL, k);
    if (id < 0) why = "sending request";
    uint8_t in[16384];
    while (!why && !k->closed) {
        const uint8_t *out;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(s, &out)) > 0) {
            if (!conn_write(c, out, (size_t)n)) { why = "sending request"; break; }
        }
        if (why) break;
        if (n < 0) { why = "sending request"; break; }
        if (k->closed) break;
        ssize_t r = conn_read(c, in, sizeof(in));
        if (r <= 0) { why = "reading response"; break; }
        if (nghttp2_session_mem_recv(s, in, (size_t)r) < 0) { why = "reading response"; break; }
    }
    if (!why && k->error_code != 0 && k->status == 0) why = "reading response";
    nghttp2_session_del(s);
    return why;
}

/* HealthCheckResponse { ServingStatus status = 1; }: the status, or -1. */
long sg_health_grpc_serving_status(const uint8_t *b, size_t n)
{
    if (n < 5 || b[0] != 0) return -1;   /* a compressed message is not expected */
    size_t mlen = ((size_t)b[1] << 24) | ((size_t)b[2] << 16) | ((size_t)b[3] << 8) | b[4];
    if (mlen > n - 5) return -1;
    const uint8_t *p = b + 5, *e = p + mlen;
    long status = 0;                     /* proto3: absent means 0 (UNKNOWN) */
    while (p < e) {
        uint64_t tag = 0;
        int shift = 0;
        while (p < e && shift < 64) { tag |= (uint64_t)(*p & 0x7f) << shift; shift += 7; if (!(*p++ & 0x80)) break; }
        unsigned wt = tag & 7;
        uint64_t v = 0;
        shift = 0;
        if (wt == 0) {
            while (p < e && shift < 64) { v |= (uint64_t)(*p & 0x7f) << shift; shift += 7; if (!(*p++ & 0x80)) break; }
            if ((tag >> 3) == 1) status = (long)v;
        } else if (wt == 2) {
            while (p < e && shift < 64) { v |= (uint64_t)(*p & 0x7f) << shift; shift += 7; if (!(*p++ & 0x80)) break; }
            if (v > (uint64_t)(e - p)) return -1;
            p += v;
        } else if (wt == 1) {
            if (e - p < 8) return -1;
            p += 8;
        } else if (wt == 5) {
            if (e - p < 4) return -1;
            p += 4;
        } else {
            return -1;
        }
    }
    return status;
}

static const char *check_h2(hc_conn *c, const sg_health_check *h)
{
    h2_call k = { 0 };
    const char *why;
    if (h->grpc) {
        /* HealthCheckRequest { string service = 1; } behind gRPC's 5-byte prefix */
        uint8_t req[5 + 2 + 10 + 256];
        size_t sl = h->grpc_service.n < 256 ? h->grpc_service.n : 255, m = 0;
        uint8_t msg[2 + 10 + 256];
        if (sl) {
            msg[m++] = 0x0a;
            size_t v = sl;
            do { msg[m++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
            memcpy(msg + m, h->grpc_service.p, sl);
            m += sl;
        }
        req[0] = 0;
        req[1] = (uint8_t)(m >> 24); req[2] = (uint8_t)(m >> 16); req[3] = (uint8_t)(m >> 8); req[4] = (uint8_t)m;
        memcpy(req + 5, msg, m);
        why = h2_request(c, h, &k, req, 5 + m);
        if (!why) {
            if (h->grpc_status >= 0) {
                if (k.grpc_status != h->grpc_status) why = "checking grpc status";
            } else if (k.status != 200 || k.grpc_status != 0) {
                why = "checking grpc status";
            } else if (sg_health_grpc_serving_status((const uint8_t *)k.body, k.body_len) != 1) {
                why = "checking grpc serving status";
            }
        }
    } else {
        why = h2_request(c, h, &k, NULL, 0);
        if (!why && !sg_hc_match_http(h->match, k.status, k.head ? k.head : "", k.head_len, k.body, k.body_len))
            why = h->match ? "checking match" : "checking status code";
    }
    free(k.head);
    free(k.body);
    return why;
}

/* ---------------- stream ---------------- */

static const char *check_stream(hc_conn *c, const sg_health_check *h)
{
    const sg_hc_match *m = h->match;
    if (!m) return NULL;                 /* connected: enough */
    if (m->send.n && !conn_write(c, m->send.p, m->send.n)) return "sending data";
    if (!m->expect.n && !m->expect_re) return NULL;
    char buf[HC_MAX_BODY];
    size_t len = 0;
    for (;;) {
        if (m->expect.n && len >= m->expect.n)
            return memcmp(buf, m->expect.p, m->expect.n) == 0 ? NULL : "checking expected data";
        if (m->expect_re && len) {
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(m->expect_re, NULL);
            int rc = md ? pcre2_match(m->expect_re, (PCRE2_SPTR)buf, len, 0, 0, md, NULL) : -1;
            pcre2_match_data_free(md);
            if (rc >= 0) return NULL;
        }
        if (len == sizeof(buf)) return "checking expected data";
        ssize_t r = conn_read(c, buf + len, sizeof(buf) - len);
        if (r < 0) return "reading data";
        if (r == 0) return "checking expected data";
        len += (size_t)r;
    }
}

/* NULL when the peer passed; else what failed ("connecting", ...). */
static const char *check_once(hc_runtime *rt, const sg_health_check *h, const sg_peer *p, bool *stopped)
{
    hc_conn c = { .fd = -1, .stopfd = rt->stopfd };
    uint64_t budget = (uint64_t)h->connect_timeout_ms + h->read_timeout_ms;
    uint64_t cap = h->interval_ms > 2000 ? h->interval_ms : 2000;
    if (budget == 0 || budget > cap) budget = cap;
    c.deadline = now_ms() + budget;
    const char *why;
    if (!conn_open(&c, h, p)) why = "connecting";
    else if (h->stream) why = check_stream(&c, h);
    else if (h->http_version == 20) why = check_h2(&c, h);
    else why = check_http1(&c, h);
    conn_close(&c);
    *stopped = c.stopped;
    return why;
}

static void mark_down(sg_peer *p)
{
    atomic_fetch_add(&p->health_down, 1);
}

static void set_healthy(hc_check *ck, hc_peer *hp, bool healthy, const char *why)
{
    hp->healthy = healthy;
    hp->fails = hp->passes = 0;
    if (healthy) {
        atomic_fetch_sub(&hp->peer->health_down, 1);
        sg_log_notice("peer %s in upstream \"%s\" is healthy", peer_name(hp->peer), ck->upstream);
    } else {
        mark_down(hp->peer);
        sg_log_warn("peer is unhealthy while %s, health check of peer %s in upstream \"%s\"", why,
                    peer_name(hp->peer), ck->upstream);
    }
}

static uint64_t next_due(const sg_health_check *h, uint64_t now)
{
    uint64_t j = 0;
    if (h->jitter_ms) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) r = (uint32_t)now;
        j = r % (h->jitter_ms + 1);
    }
    return now + h->interval_ms + j;
}

static bool same_peer(const sg_peer *a, const sg_peer *b)
{
    return a->conf->addrlen == b->conf->addrlen && a->conf->backup == b->conf->backup &&
           sg_sockaddr_eq((const struct sockaddr *)&a->conf->addr, (const struct sockaddr *)&b->conf->addr);
}

/* Points the check at its upstream's current balancer. The peer set may
 * change at run time (`resolve`: a new balancer is published with one
 * atomic store, the replaced one stays until the runtime goes): a peer of
 * the new set takes the check state of the old peer with its address (its
 * health_down starts at 0 and is raised here if that peer was unhealthy);
 * a new address is healthy, or with `mandatory` out until its first pass,
 * and is checked at once. */
static void sync_peers(hc_check *ck, bool first)
{
    sg_balancer *b = __atomic_load_n(&ck->rt->balancer, __ATOMIC_ACQUIRE);
    if (!b || b == ck->balancer) return;
    const sg_health_check *h = ck->conf;
    size_t n = b->nprimary + b->nbackup;
    hc_peer *np = sg_xcalloc(n ? n : 1, sizeof(*np));
    bool *taken = sg_xcalloc(ck->npeers ? ck->npeers : 1, sizeof(bool));
    for (size_t j = 0; j < n; j++) {
        hc_peer *hp = &np[j];
        hp->peer = &b->peers[j];
        hp->healthy = true;
        bool carried = false;
        for (size_t k = 0; !first && k < ck->npeers; k++) {
            if (taken[k] || !same_peer(ck->peers[k].peer, hp->peer)) continue;
            taken[k] = true;
            *hp = ck->peers[k];
            hp->peer = &b->peers[j];
            carried = true;
            break;
        }
        if (!carried && h->mandatory) {
            /* out until its first check passes, unless `persistent` and
             * the previous generation knew it healthy */
            sg_health_result was = h->persistent && first ? sg_health_state(ck->upstream, peer_name(hp->peer))
                                                          : SG_HEALTH_UNKNOWN;
            hp->healthy = was == SG_HEALTH_HEALTHY;
        }
        if (!hp->healthy) mark_down(hp->peer);
    }
    free(taken);
    free(ck->peers);
    ck->peers = np;
    ck->npeers = n;
    ck->balancer = b;
}

static void record(hc_check *ck, hc_peer *hp, const char *why)
{
    if (!why) {
        hp->fails = 0;
        if (!hp->healthy && ++hp->passes >= ck->conf->passes) set_healthy(ck, hp, true, NULL);
    } else {
        hp->passes = 0;
        if (hp->healthy && ++hp->fails >= ck->conf->fails) set_healthy(ck, hp, false, why);
        else if (!hp->healthy)
            sg_log_info("peer %s in upstream \"%s\" still unhealthy: %s", peer_name(hp->peer), ck->upstream, why);
    }
    record_state(ck->upstream, peer_name(hp->peer), hp->healthy, why);
}

static void *checker(void *arg)
{
    hc_runtime *rt = arg;
    pthread_mutex_lock(&rt->mu);
    while (!rt->stop) {
        uint64_t now = now_ms(), soonest = UINT64_MAX;
        hc_check *ck = NULL;
        hc_peer *hp = NULL;
        for (size_t i = 0; i < rt->nchecks && !hp; i++) {
            hc_check *c = &rt->checks[i];
            sync_peers(c, false);
            for (size_t j = 0; j < c->npeers; j++) {
                hc_peer *p = &c->peers[j];
                if (p->busy) continue;
                if (p->next_ms <= now) { ck = c; hp = p; break; }
                if (p->next_ms < soonest) soonest = p->next_ms;
            }
        }
        if (!hp) {
            if (soonest == UINT64_MAX) {
                pthread_cond_wait(&rt->cond, &rt->mu);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t wait = soonest > now ? soonest - now : 0;
                ts.tv_sec += (time_t)(wait / 1000);
                ts.tv_nsec += (long)(wait % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
                pthread_cond_timedwait(&rt->cond, &rt->mu, &ts);
            }
            continue;
        }
        hp->busy = true;
        sg_peer *peer = hp->peer;
        pthread_mutex_unlock(&rt->mu);
        bool stopped = false;
        const char *why = check_once(rt, ck->conf, peer, &stopped);
        pthread_mutex_lock(&rt->mu);
        if (stopped || rt->stop) break;
        /* the set may have changed meanwhile: the peer with its address */
        for (size_t j = 0; j < ck->npeers; j++) {
            hc_peer *p = &ck->peers[j];
            if (p->busy && (p->peer == peer || same_peer(p->peer, peer))) {
                p->busy = false;
                record(ck, p, why);
                p->next_ms = next_due(ck->conf, now_ms());
                break;
            }
        }
        pthread_cond_signal(&rt->cond);   /* another thread may wait for a busy peer's next turn */
    }
    pthread_mutex_unlock(&rt->mu);
    return NULL;
}

void sg_health_start(sg_conf *c)
{
    sg_health_conf *hc = c->health;
    if (!hc || hc->nchecks == 0 || hc->runtime) return;
    hc_runtime *rt = sg_xcalloc(1, sizeof(*rt));
    rt->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rt->checks = sg_xcalloc(hc->nchecks, sizeof(*rt->checks));
    for (size_t i = 0; i < hc->nchecks; i++) {
        const sg_health_check *h = hc->checks[i];
        sg_upstream_rt *urt = h->upstream ? h->upstream->runtime : NULL;
        if (!urt || !urt->balancer) continue;
        hc_check *ck = &rt->checks[rt->nchecks++];
        ck->conf = h;
        ck->upstream = up_name(h->upstream);
        ck->rt = urt;
        sync_peers(ck, true);
    }
    pthread_mutex_init(&rt->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->cond, &ca);
    pthread_condattr_destroy(&ca);
    size_t total = 0;
    for (size_t i = 0; i < rt->nchecks; i++) total += rt->checks[i].npeers;
    int want = total < HC_MAX_THREADS ? (int)(total ? total : 1) : HC_MAX_THREADS;
    hc->runtime = rt;
    if (rt->stopfd < 0) {
        sg_log_error("health checks could not start: %s", strerror(errno));
        return;
    }
    for (int i = 0; i < want; i++) {
        if (pthread_create(&rt->threads[rt->nthreads], NULL, checker, rt) != 0) {
            sg_log_error("health checks: a checker thread could not start: %s", strerror(errno));
            break;
        }
        rt->nthreads++;
    }
}

void sg_health_stop(sg_conf *c)
{
    sg_health_conf *hc = c->health;
    if (!hc || !hc->runtime) return;
    hc_runtime *rt = hc->runtime;
    pthread_mutex_lock(&rt->mu);
    rt->stop = true;
    pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->mu);
    uint64_t one = 1;
    if (rt->stopfd >= 0 && write(rt->stopfd, &one, sizeof(one)) < 0) { /* an eventfd this new cannot be full */ }
    for (int i = 0; i < rt->nthreads; i++) pthread_join(rt->threads[i], NULL);
    if (rt->stopfd >= 0) close(rt->stopfd);
    pthread_cond_destroy(&rt->cond);
    pthread_mutex_destroy(&rt->mu);
    for (size_t i = 0; i < rt->nchecks; i++) free(rt->checks[i].peers);
    free(rt->checks);
    free(rt);
    hc->runtime = NULL;
}
