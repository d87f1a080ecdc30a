/* sticky on the proxy's side: see sticky.h. */
#include "proxy/sticky.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "exchange/vars.h"

static sg_str first_value(const sg_cval *list, size_t n, sg_http_req *r)
{
    for (size_t i = 0; i < n; i++) {
        sg_str v = sg_cval_eval(&list[i], r);
        if (v.n) return v;
    }
    return (sg_str){ NULL, 0 };
}

void sg_sticky_request(sg_exchange *ex, const sg_upstream_conf *u, sg_pick_ctx *ctx)
{
    const sg_sticky_conf *st = u->sticky;
    sg_str v = first_value(st->lookup, st->nlookup, &ex->req);
    ctx->sticky = v.p;
    ctx->sticky_len = v.n;
}

void sg_sticky_done(sg_exchange *ex, const sg_upstream_conf *u, sg_balancer *b, sg_peer *peer, uint64_t now_ms)
{
    const sg_sticky_conf *st = u->sticky;
    if (st->kind != SG_STICKY_LEARN) return;
    sg_str key = first_value(st->create, st->ncreate, &ex->req);
    if (key.n) sg_balancer_learn(b, peer, key.p, key.n, now_ms);
}

/* "; NAME=VALUE" with a value that may hold variables; nothing when empty. */
static size_t attr(char *out, size_t room, const char *name, sg_str v)
{
    if (!v.n) return 0;
    int k = snprintf(out, room, "; %s=%.*s", name, (int)v.n, v.p);
    return k < 0 ? 0 : (size_t)k >= room ? room - 1 : (size_t)k;
}

bool sg_sticky_response(sg_exchange *ex, const sg_upstream_conf *u, sg_balancer *b, sg_peer *peer,
                        uint64_t now_ms, sg_header *h)
{
    const sg_sticky_conf *st = u->sticky;
    if (st->kind == SG_STICKY_LEARN) {
        if (st->header) sg_sticky_done(ex, u, b, peer, now_ms);
        return false;
    }
    if (st->kind != SG_STICKY_COOKIE || !peer->sticky_id[0]) return false;

    char buf[2048];
    size_t n = 0;
    int k = snprintf(buf, sizeof(buf), "%s=%s", st->cookie, peer->sticky_id);
    if (k < 0 || (size_t)k >= sizeof(buf)) return false;
    n = (size_t)k;
    if (st->expires_s == SG_STICKY_EXPIRES_MAX) {
        /* nginx's expires=max: the end of 2037, ten years of max-age */
        k = snprintf(buf + n, sizeof(buf) - n, "; expires=Thu, 31-Dec-37 23:55:55 GMT; max-age=315360000");
        if (k > 0 && (size_t)k < sizeof(buf) - n) n += (size_t)k;
    } else if (st->expires_s >= 0) {
        time_t when = time(NULL) + (time_t)st->expires_s;
        struct tm tm;
        char date[64];
        gmtime_r(&when, &tm);
        strftime(date, sizeof(date), "%a, %d-%b-%y %H:%M:%S GMT", &tm);
        k = snprintf(buf + n, sizeof(buf) - n, "; expires=%s; max-age=%lld", date, (long long)st->expires_s);
        if (k > 0 && (size_t)k < sizeof(buf) - n) n += (size_t)k;
    }
    if (st->has_domain) n += attr(buf + n, sizeof(buf) - n, "domain", sg_cval_eval(&st->domain, &ex->req));
    if (st->has_path) n += attr(buf + n, sizeof(buf) - n, "path", sg_cval_eval(&st->path, &ex->req));
    if (st->has_samesite) {
        sg_str v = sg_cval_eval(&st->samesite, &ex->req);
        /* a variable's value other than lax / none is nginx's default, strict */
        const char *s = "strict";
        if (v.n == 3 && strncasecmp(v.p, "lax", 3) == 0) s = "lax";
        else if (v.n == 4 && strncasecmp(v.p, "none", 4) == 0) s = "none";
        if (v.n) n += attr(buf + n, sizeof(buf) - n, "samesite", (sg_str){ s, strlen(s) });
    }
    if (st->secure && n + 8 < sizeof(buf)) n += (size_t)snprintf(buf + n, sizeof(buf) - n, "; secure");
    if (st->httponly && n + 10 < sizeof(buf)) n += (size_t)snprintf(buf + n, sizeof(buf) - n, "; httponly");
    *h = (sg_header){ SG_STR("Set-Cookie"), sg_arena_str(&ex->req.arena, (sg_str){ buf, n }), 0 };
    return true;
}
