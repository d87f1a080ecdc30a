/* stub_status and metrics locations (proxy/status_page.h). */
#include "proxy/status_page.h"

#include <stdlib.h>
#include <string.h>

#include "core/sockaddr.h"
#include "observe/metrics.h"
#include "proxy/respond.h"
#include "upstream/balancer.h"
#include "upstream/health.h"
#include "upstream/pool.h"

static bool get_or_head(const sg_exchange *ex)
{
    sg_str m = ex->req.method;
    return (m.n == 3 && memcmp(m.p, "GET", 3) == 0) || (m.n == 4 && memcmp(m.p, "HEAD", 4) == 0);
}

typedef struct peer_row {
    const char *upstream, *server;
    char addr[64];
    const char *state;
    uint64_t in_flight, requests, failures;
} peer_row;

static void labels(sg_strbuf *b, const peer_row *r)
{
    sg_strbuf_appendf(b, "{upstream=\"");
    sg_mx_label_value(b, sg_str_from(r->upstream));
    sg_strbuf_appendf(b, "\",server=\"");
    sg_mx_label_value(b, sg_str_from(r->server));
    sg_strbuf_appendf(b, "\",address=\"");
    sg_mx_label_value(b, sg_str_from(r->addr));
    sg_strbuf_appendf(b, "\"");
}

/* What a peer is now: down (configured), unhealthy (a health check holds
 * it out), failed (max_fails reached within fail_timeout) or up. */
static const char *peer_state(const sg_peer *p, uint64_t now)
{
    const sg_upstream_server_conf *c = p->conf;
    if (c->down) return "down";
    if (atomic_load_explicit(&p->health_down, memory_order_relaxed)) return "unhealthy";
    if (c->max_fails > 0 && p->fails >= (unsigned)c->max_fails && now - p->accessed_ms < c->fail_timeout_ms)
        return "failed";
    return "up";
}

/* Per upstream server of the request's generation, read under each
 * balancer's lock (the scrape's cost, not the request path's). */
static void render_upstreams(sg_exchange *ex, sg_strbuf *b)
{
    const sg_conf *c = ex->req.gen;
    uint64_t now = sg_loop_now(sg_worker_loop(ex->w));
    size_t n = 0, cap = 0;
    peer_row *rows = NULL;
    for (size_t i = 0; c && i < c->nupstreams; i++) {
        const sg_upstream_conf *u = c->upstreams[i];
        sg_upstream_rt *rt = u->runtime;
        if (!rt) continue;
        sg_balancer *bal = sg_upstream_balancer(rt);
        if (!bal) continue;
        pthread_spin_lock(&bal->lock);
        for (size_t k = 0; k < bal->nprimary + bal->nbackup; k++) {
            const sg_peer *p = &bal->peers[k];
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                rows = sg_xrealloc(rows, cap * sizeof(*rows));
            }
            peer_row *r = &rows[n++];
            r->upstream = u->name ? u->name : "";
            r->server = p->conf->name ? p->conf->name : "";
            if (!sg_sockaddr_str((const struct sockaddr *)&p->conf->addr, r->addr, sizeof(r->addr))) r->addr[0] = 0;
            r->state = peer_state(p, now);
            r->in_flight = p->active;
            r->requests = p->mx_requests;
            r->failures = p->mx_failures;
        }
        pthread_spin_unlock(&bal->lock);
    }
    static const char *const states[] = { "up", "down", "unhealthy", "failed" };
    sg_mx_family(b, "streamgate_upstream_server_state", "gauge",
                 "1 for the state an upstream server is in (up, down, unhealthy: held out by health checks, "
                 "failed: max_fails reached), by upstream, server and resolved address.");
    for (size_t i = 0; i < n; i++)
        for (size_t s = 0; s < 4; s++) {
            sg_strbuf_appendf(b, "streamgate_upstream_server_state");
            labels(b, &rows[i]);
            sg_strbuf_appendf(b, ",state=\"%s\"} %d\n", states[s], strcmp(states[s], rows[i].state) == 0);
        }
    sg_mx_family(b, "streamgate_upstream_server_in_flight", "gauge", "Attempts open on an upstream server.");
    for (size_t i = 0; i < n; i++) {
        sg_strbuf_appendf(b, "streamgate_upstream_server_in_flight");
        labels(b, &rows[i]);
        sg_strbuf_appendf(b, "} %llu\n", (unsigned long long)rows[i].in_flight);
    }
    sg_mx_family(b, "streamgate_upstream_server_requests_total", "counter",
                 "Attempts ended on an upstream server (this configuration generation).");
    for (size_t i = 0; i < n; i++) {
        sg_strbuf_appendf(b, "streamgate_upstream_server_requests_total");
        labels(b, &rows[i]);
        sg_strbuf_appendf(b, "} %llu\n", (unsigned long long)rows[i].requests);
    }
    sg_mx_family(b, "streamgate_upstream_server_failures_total", "counter",
                 "Attempts on an upstream server that failed (connect error, timeout, invalid answer).");
    for (size_t i = 0; i < n; i++) {
        sg_strbuf_appendf(b, "streamgate_upstream_server_failures_total");
        labels(b, &rows[i]);
        sg_strbuf_appendf(b, "} %llu\n", (unsigned long long)rows[i].failures);
    }
    sg_mx_family(b, "streamgate_upstream_server_health_checks_total", "counter",
                 "Active health checks of an upstream server, by result (since the process started).");
    for (size_t i = 0; i < n; i++) {
        sg_health_info hi;
        if (!sg_health_info_get(rows[i].upstream, rows[i].server, &hi)) continue;
        for (int failed = 0; failed < 2; failed++) {
            sg_strbuf_appendf(b, "streamgate_upstream_server_health_checks_total");
            labels(b, &rows[i]);
            sg_strbuf_appendf(b, ",result=\"%s\"} %llu\n", failed ? "failed" : "passed",
                              (unsigned long long)(failed ? hi.failed_checks : hi.checks - hi.failed_checks));
        }
    }
    free(rows);
}

bool sg_status_page_run(sg_exchange *ex)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    if (!lc->stub_status && !lc->metrics) return false;
    if (!get_or_head(ex)) {
        sg_respond_error(ex, 405);
        return true;
    }
    if (lc->stub_status) {
        char *text = NULL;
        size_t n = sg_mx_stub_text(&text);
        sg_respond_simple(ex, 200, SG_STR("text/plain"), (sg_str){ text, n }, SG_STR_NULL);
        free(text);
        return true;
    }
    sg_strbuf b = { 0 };
    sg_mx_render(&b);
    render_upstreams(ex, &b);
    sg_respond_simple(ex, 200, SG_STR("text/plain; version=0.0.4; charset=utf-8"), (sg_str){ b.p, b.n },
                      SG_STR_NULL);
    sg_strbuf_free(&b);
    return true;
}
