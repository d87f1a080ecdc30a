/* Bandwidth limits of HTTP responses (see rate_limit.h). */
#include "proxy/rate_limit.h"
#include "conf/directives.h"
#include "exchange/vars.h"
#include "core/log.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* One budget: `rate` bytes per second from `start_ms`, plus `after`. */
typedef struct rate_budget {
    uint64_t rate;               /* 0: this budget does not apply */
    uint64_t after;
    uint64_t start_ms;
    uint64_t sent;               /* bytes it counted */
} rate_budget;

struct sg_rate {
    sg_exchange *ex;
    const sg_downstream_ops *inner;
    rate_budget resp;            /* limit_rate / $limit_rate / X-Accel-Limit-Rate */
    rate_budget up;              /* proxy_limit_rate */
    uint64_t up_rate;            /* proxy_limit_rate evaluated at the upstream head */
    uint64_t until_ms;           /* nothing goes out before (nginx's delay after each send) */
    sg_outq held;                /* what the budgets did not allow yet */
    sg_timer timer;
    bool installed;              /* ex->down is ours */
    bool ending;                 /* the producer ended: end once `held` is out */
    bool failed;                 /* aborted: nothing more goes out */
    const sg_header *trailers;   /* the end's trailers (req.arena), if any */
    size_t ntrailers;
    bool with_trailers;
};

/* Bytes let go per timer tick at most about a tenth of a second's worth
 * (not fewer than 1 KB): smooth without a timer per few bytes. */
#define MIN_QUANTUM 1024

int64_t sg_rate_allowance(uint64_t rate, uint64_t after, uint64_t elapsed_ms, uint64_t sent)
{
    /* whole seconds, as nginx's ngx_time(): a late timer does not let
     * the next piece go early */
    unsigned __int128 budget = (unsigned __int128)rate * (elapsed_ms / 1000 + 1) + after;
    if (budget > (unsigned __int128)INT64_MAX) budget = INT64_MAX;
    if (sent > (uint64_t)INT64_MAX) sent = INT64_MAX;
    return (int64_t)budget - (int64_t)sent;
}

uint64_t sg_rate_wait_ms(uint64_t rate, uint64_t after, uint64_t elapsed_ms, uint64_t sent, uint64_t want)
{
    const uint64_t day = 24ull * 3600 * 1000;
    if (rate == 0) return 1;
    /* the first whole second k with rate * (k + 1) + after >= sent + want */
    unsigned __int128 need = (unsigned __int128)sent + want;
    if (need <= after) return 1;
    need -= after;
    unsigned __int128 k = (need + rate - 1) / rate;   /* k + 1 seconds' worth */
    k = k ? k - 1 : 0;
    if (k > day / 1000) return day;
    uint64_t at = (uint64_t)k * 1000;
    return at > elapsed_ms ? (at - elapsed_ms > day ? day : at - elapsed_ms) : 1;
}

bool sg_rate_parse(sg_str s, uint64_t *out)
{
    char buf[32];
    if (!s.p || s.n == 0 || s.n >= sizeof(buf)) return false;
    memcpy(buf, s.p, s.n);
    buf[s.n] = '\0';
    return sg_conf_parse_size(buf, out);
}

static uint64_t now_ms(const sg_exchange *ex)
{
    return sg_loop_now(sg_worker_loop(ex->w));
}

static uint64_t request_start_ms(const sg_exchange *ex)
{
    const struct timespec *t = &ex->req.start_mono;
    if (t->tv_sec == 0 && t->tv_nsec == 0) return now_ms(ex);
    return (uint64_t)t->tv_sec * 1000 + (uint64_t)t->tv_nsec / 1000000;
}

static int64_t budget_left(const rate_budget *b, uint64_t now)
{
    if (!b->rate) return INT64_MAX;
    uint64_t elapsed = now > b->start_ms ? now - b->start_ms : 0;
    return sg_rate_allowance(b->rate, b->after, elapsed, b->sent);
}

static int64_t allowance(const sg_rate *r, uint64_t now)
{
    if (now < r->until_ms) return 0;
    int64_t a = budget_left(&r->resp, now), u = budget_left(&r->up, now);
    return a < u ? a : u;
}

/* The time n more bytes are worth in budget b (beyond its `after`). */
static uint64_t worth_ms(rate_budget *b, size_t n)
{
    if (!b->rate) return 0;
    uint64_t before = b->sent > b->after ? b->sent - b->after : 0;
    b->sent += n;
    uint64_t now_past = b->sent > b->after ? b->sent - b->after : 0;
    return (now_past - before) * 1000 / b->rate;
}

/* n bytes went out: counted in both budgets, and the next send waits for
 * what they were worth (as nginx's write filter delays the connection). */
static void count(sg_rate *r, size_t n, uint64_t now)
{
    uint64_t a = worth_ms(&r->resp, n), b = worth_ms(&r->up, n);
    uint64_t d = a > b ? a : b;
    if (d) r->until_ms = now + d;
}

static sg_rate *rate_of(sg_exchange *ex)
{
    if (ex->rate) return ex->rate;
    sg_rate *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->ex = ex;
    ex->rate = r;
    return r;
}

/* ---- the filter ---- */

static void on_timer(sg_timer *t);

/* Arms the timer for when the budget lets a quantum (or all that is
 * held, if less) go. */
static void arm(sg_rate *r, uint64_t now)
{
    uint64_t quantum = 0, wait = UINT64_MAX;
    const rate_budget *bs[2] = { &r->resp, &r->up };
    for (int i = 0; i < 2; i++) {
        const rate_budget *b = bs[i];
        if (!b->rate) continue;
        quantum = b->rate / 10 > MIN_QUANTUM ? b->rate / 10 : MIN_QUANTUM;
        if (quantum > r->held.bytes) quantum = r->held.bytes;
        uint64_t elapsed = now > b->start_ms ? now - b->start_ms : 0;
        uint64_t w = sg_rate_wait_ms(b->rate, b->after, elapsed, b->sent, quantum);
        /* both budgets must allow it: wait for the later */
        if (wait == UINT64_MAX || w > wait) wait = w;
    }
    if (wait == UINT64_MAX) wait = 1;
    if (r->until_ms > now && r->until_ms - now > wait) wait = r->until_ms - now;
    sg_timer_arm(sg_worker_loop(r->ex->w), &r->timer, wait);
}

/* Lets go what the budgets allow; ends the response when all is out and
 * the producer ended. ex may end in here (then r is gone): returns false. */
static bool pump(sg_rate *r)
{
    sg_exchange *ex = r->ex;
    uint64_t now = now_ms(ex);
    while (r->held.bytes && !r->failed) {
        int64_t a = allowance(r, now);
        if (a <= 0) break;
        struct iovec iov[8];
        int k = sg_outq_iov(&r->held, iov, 8);
        size_t moved = 0;
        for (int i = 0; i < k && (int64_t)moved < a; i++) {
            size_t n = iov[i].iov_len;
            if ((int64_t)(moved + n) > a) n = (size_t)(a - (int64_t)moved);
            r->inner->send_data(ex, iov[i].iov_base, n);
            moved += n;
        }
        sg_outq_consume(&r->held, moved);
        count(r, moved, now);
        if (!moved) break;
    }
    if (r->failed) return true;
    if (r->held.bytes) {
        if (!sg_timer_armed(&r->timer)) arm(r, now);
        return true;
    }
    if (r->ending) {
        r->ending = false;
        const sg_downstream_ops *inner = r->inner;
        /* ex may end after this: touch nothing more */
        if (r->with_trailers && inner->send_trailers) inner->send_trailers(ex, r->trailers, r->ntrailers);
        else inner->send_end(ex);
        return false;
    }
    return true;
}

static void on_timer(sg_timer *t)
{
    sg_rate *r = (sg_rate *)((char *)t - offsetof(sg_rate, timer));
    pump(r);
}

static void rl_send_head(sg_exchange *ex, const sg_response *resp)
{
    ex->rate->inner->send_head(ex, resp);
}

static void rl_send_data(sg_exchange *ex, const char *p, size_t n)
{
    sg_rate *r = ex->rate;
    if (r->failed || r->ending) return;
    if (!r->held.bytes) {
        uint64_t now = now_ms(ex);
        int64_t a = allowance(r, now);
        if (a > 0) {
            size_t m = (int64_t)n > a ? (size_t)a : n;
            r->inner->send_data(ex, p, m);
            count(r, m, now);
            p += m;
            n -= m;
        }
    }
    if (!n) return;
    sg_outq_append(&r->held, p, n);
    if (!sg_timer_armed(&r->timer)) arm(r, now_ms(ex));
}

static void rl_send_end(sg_exchange *ex)
{
    sg_rate *r = ex->rate;
    if (r->failed) return;
    r->ending = true;
    r->with_trailers = false;
    pump(r);   /* ex may end */
}

static void rl_send_trailers(sg_exchange *ex, const sg_header *h, size_t n)
{
    sg_rate *r = ex->rate;
    if (r->failed) return;
    if (r->held.bytes) {   /* they go after the held bytes: keep a copy */
        sg_header *c = n ? sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * n) : NULL;
        for (size_t i = 0; i < n; i++)
            c[i] = (sg_header){ sg_arena_str(&ex->req.arena, h[i].name), sg_arena_str(&ex->req.arena, h[i].value), h[i].flags };
        h = c;
    }
    r->trailers = h;
    r->ntrailers = n;
    r->with_trailers = true;
    r->ending = true;
    pump(r);   /* ex may end */
}

static void rl_want_body(sg_exchange *ex, bool on)
{
    ex->rate->inner->want_body(ex, on);
}

static size_t rl_pending(sg_exchange *ex)
{
    sg_rate *r = ex->rate;
    return r->inner->pending(ex) + r->held.bytes;
}

static void rl_abort(sg_exchange *ex)
{
    sg_rate *r = ex->rate;
    r->failed = true;
    r->ending = false;
    sg_timer_disarm(&r->timer);
    sg_outq_clear(&r->held);
    r->inner->abort(ex);
}

/* No detach: a 101 is never limited. */
static const sg_downstream_ops rate_ops = {
    .send_head = rl_send_head,
    .send_data = rl_send_data,
    .send_end = rl_send_end,
    .want_body = rl_want_body,
    .pending = rl_pending,
    .abort = rl_abort,
    .detach = NULL,
    .send_trailers = rl_send_trailers,
};

/* ---- deciding ---- */

/* nginx's ngx_http_complex_value_size: an invalid size is logged and
 * counts as 0 (no limit). */
static uint64_t eval_size(sg_exchange *ex, const sg_cval *cv, const char *what)
{
    sg_str v = sg_cval_eval(cv, &ex->req);
    uint64_t n;
    if (!v.p || v.n == 0) return 0;
    if (!sg_rate_parse(v, &n)) {
        sg_ex_log(ex, SG_LOG_ERROR, "invalid %s \"%.*s\"", what, (int)v.n, v.p);
        return 0;
    }
    return n;
}

void sg_rate_accel_limit(sg_exchange *ex)
{
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf : NULL;
    if (!lc || (lc->pass_opts && (lc->pass_opts->ignore_headers & SG_IGN_X_ACCEL_LIMIT_RATE))) return;
    for (size_t i = 0; i < ex->req.nup_headers; i++) {
        const sg_header *h = &ex->req.up_headers[i];
        if (!sg_str_caseeq_lit(h->name, "x-accel-limit-rate")) continue;
        /* nginx: ngx_atoi, digits only; anything else is ignored */
        uint64_t n = 0;
        bool ok = h->value.n > 0 && h->value.n < 20;
        for (size_t j = 0; ok && j < h->value.n; j++) {
            if (h->value.p[j] < '0' || h->value.p[j] > '9') ok = false;
            else n = n * 10 + (uint64_t)(h->value.p[j] - '0');
        }
        if (ok) {
            ex->req.limit_rate = n;
            ex->req.limit_rate_set = true;
        }
        return;
    }
}

void sg_rate_upstream_head(sg_exchange *ex)
{
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf : NULL;
    if (!lc) return;
    /* nginx applies proxy_limit_rate while buffering responses (the
     * default); proxy_buffering off reads at the client's pace only */
    if (!lc->has_proxy_limit_rate || lc->is_grpc || !lc->proxy_buffering) return;
    uint64_t rate = eval_size(ex, &lc->proxy_limit_rate, "proxy_limit_rate");
    if (!rate && !ex->rate) return;
    sg_rate *r = rate_of(ex);
    if (!r) return;
    r->up_rate = rate;
}

void sg_rate_head(sg_exchange *ex, const sg_response *resp)
{
    if (!resp->has_body || ex->tunnel || resp->status == 101 || (ex->rate && ex->rate->installed)) return;
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf : NULL;
    uint64_t rate = 0, after = 0;
    if (ex->req.limit_rate_set) rate = ex->req.limit_rate;
    else if (lc && lc->has_limit_rate) {
        rate = eval_size(ex, &lc->limit_rate, "limit_rate");
        ex->req.limit_rate = rate;   /* $limit_rate reads it back, as nginx's */
        ex->req.limit_rate_set = true;
    }
    if (rate && lc && lc->has_limit_rate_after) after = eval_size(ex, &lc->limit_rate_after, "limit_rate_after");
    uint64_t up_rate = ex->rate ? ex->rate->up_rate : 0;
    if (!rate && !up_rate) return;
    sg_rate *r = rate_of(ex);
    if (!r) return;
    uint64_t now = now_ms(ex);
    r->resp = (rate_budget){ .rate = rate, .after = after, .start_ms = request_start_ms(ex) };
    r->up = (rate_budget){ .rate = up_rate, .start_ms = now };
    r->inner = ex->down;
    sg_timer_init(&r->timer, on_timer);
    r->installed = true;
    ex->down = &rate_ops;
}

bool sg_rate_hold_drain(sg_exchange *ex)
{
    sg_rate *r = ex->rate;
    if (!r || !r->installed || r->failed || r->held.bytes < SG_LOW_WATER) return false;
    ex->waiting_drain = true;
    return true;
}

bool sg_rate_upstream_hold(const sg_exchange *ex)
{
    const sg_rate *r = ex->rate;
    return r && r->installed && r->up.rate && r->held.bytes > 0;
}

void sg_rate_stop(sg_exchange *ex)
{
    sg_rate *r = ex->rate;
    if (!r || !r->installed) return;
    r->failed = true;
    r->ending = false;
    sg_timer_disarm(&r->timer);
    sg_outq_clear(&r->held);
}

void sg_rate_release(sg_exchange *ex)
{
    sg_rate *r = ex->rate;
    if (!r) return;
    if (r->installed) {
        sg_timer_disarm(&r->timer);
        ex->down = r->inner;
    }
    sg_outq_clear(&r->held);
    ex->rate = NULL;
    free(r);
}
