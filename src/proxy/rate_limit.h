/* Bandwidth limits of HTTP responses (nginx's limit_rate,
 * limit_rate_after, $limit_rate, X-Accel-Limit-Rate and
 * proxy_limit_rate).
 *
 * A filter between whoever produces a response and the downstream codec,
 * as gzip's: sg_rate_head() installs it in ex->down when the response
 * has a rate, before gzip does, so that what is limited is what goes to
 * the client (compressed). Bytes the budget does not allow yet are held
 * in the filter and let go by one timer on the worker's loop: nothing
 * sleeps, and other connections of the thread are not slowed. The held
 * bytes count in `pending`, so a producer stops at SG_HIGH_WATER as for a
 * slow client (the upstream is not read further: no unbounded buffer).
 *
 * The budget is nginx's (ngx_http_write_filter): t whole seconds after
 * the request started, rate * (t + 1) + limit_rate_after body bytes may
 * have gone out, and each send is followed by the time it is worth. Each exchange (an HTTP/2 stream too) has its
 * own. proxy_limit_rate is a second budget on the same filter, counted
 * from the upstream's head; while it holds bytes the upstream is not
 * read (see sg_rate_upstream_hold). */
#ifndef SG_PROXY_RATE_LIMIT_H
#define SG_PROXY_RATE_LIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include "exchange/exchange.h"

typedef struct sg_rate sg_rate;

/* The upstream's head came: X-Accel-Limit-Rate (unless
 * proxy_ignore_headers names it) sets the request's rate, which lasts
 * through an X-Accel-Redirect, as nginx's. */
void sg_rate_accel_limit(sg_exchange *ex);

/* The upstream's answer is relayed: proxy_limit_rate is evaluated (it may
 * use $upstream_http_*). */
void sg_rate_upstream_head(sg_exchange *ex);

/* A response head is about to go out: decides its rate (`set
 * $limit_rate` or X-Accel-Limit-Rate first, then limit_rate) and, when
 * some budget applies, installs the filter in ex->down. */
void sg_rate_head(sg_exchange *ex, const sg_response *resp);

/* The codec drained: true while the filter still holds SG_LOW_WATER or
 * more (the producer is not resumed yet; ex->waiting_drain stays set, so
 * the codec asks again after the next bytes the timer lets go). */
bool sg_rate_hold_drain(sg_exchange *ex);

/* proxy_limit_rate: true while the filter holds bytes of this response,
 * so the upstream is read about as fast as the rate (nginx reads it at
 * the rate; here at most one read ahead). */
bool sg_rate_upstream_hold(const sg_exchange *ex);

/* The client is gone: stops the timer and drops what is held (the
 * filter stays in ex->down until sg_rate_release). */
void sg_rate_stop(sg_exchange *ex);

/* The exchange is over: stops the timer, drops what is held,
 * gives ex->down back. No-op without a filter. */
void sg_rate_release(sg_exchange *ex);

/* Pure parts, for the unit tests. */
/* Bytes that may still go out now: rate * (whole seconds elapsed + 1) +
 * after - sent (negative: that much is already ahead of the budget). */
int64_t sg_rate_allowance(uint64_t rate, uint64_t after, uint64_t elapsed_ms, uint64_t sent);
/* Milliseconds from `elapsed_ms` until the allowance covers `want` more
 * bytes (at least 1, at most a day). */
uint64_t sg_rate_wait_ms(uint64_t rate, uint64_t after, uint64_t elapsed_ms, uint64_t sent, uint64_t want);
/* A size as limit_rate takes it ("12k", "1m", "300"); false: invalid. */
bool sg_rate_parse(sg_str s, uint64_t *out);

#endif
