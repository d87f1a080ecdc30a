/* The exchange contract's own part: setting up an exchange for a codec,
 * and the end every exchange shares (its generation, its strings),
 * whichever handler answered it. */
#include "exchange/exchange.h"

#include <time.h>

static const sg_exchange_handler *installed;

void sg_exchange_set_handler(const sg_exchange_handler *h)
{
    installed = h;
}

void sg_exchange_init(sg_exchange *ex, sg_worker *w, sg_conf *gen, const sg_downstream_ops *down,
                      void *down_ctx)
{
    ex->w = w;
    ex->down = down;
    ex->down_ctx = down_ctx;
    ex->handler = installed;
    ex->file_fd = -1;
    /* 1 KB holds a typical request (fields, host, target) and what the
     * proxy adds; larger ones take more chunks. The arena lives as long
     * as the exchange, so on a long idle call (gRPC streaming) every byte
     * of this first chunk is held for the call's life. */
    sg_arena_init(&ex->req.arena, 1024);
    ex->req.gen = gen;
    if (w) sg_worker_gen_hold(w, gen);
    clock_gettime(CLOCK_MONOTONIC, &ex->req.start_mono);
    clock_gettime(CLOCK_REALTIME, &ex->req.start_real);
    if (ex->handler->init) ex->handler->init(ex);
}

void sg_exchange_finish(sg_exchange *ex)
{
    ex->handler->finish(ex);
    if (ex->on_closed && !ex->closed_later) {   /* limits (issue 10) */
        ex->on_closed(ex->on_closed_arg);
        ex->on_closed = NULL;
    }
    if (ex->w) sg_worker_gen_release(ex->w, ex->req.gen);
    ex->req.upstream_addr = ex->req.upstream_status = (sg_str){ 0 };   /* in the arena */
    sg_req_attempts_free(&ex->req);
}

bool sg_response_has(const sg_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (sg_str_caseeq_lit(resp->headers[i].name, name)) return true;
    return false;
}
