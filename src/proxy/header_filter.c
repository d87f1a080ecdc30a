/* nginx's header filters for every response streamgate sends: which
 * upstream fields reach the client (proxy_hide_header, proxy_pass_header),
 * expires, add_trailer, the Location of redirects streamgate makes
 * (absolute_redirect, port_in_redirect, server_name_in_redirect). */
#include "proxy/header_filter.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/sockaddr.h"
#include "exchange/vars.h"
#include "http/status.h"
#include "proxy/respond.h"
#include "proxy/router.h"

/* ---------------- upstream fields ---------------- */

/* What nginx hides of an upstream's answer unless proxy_pass_header
 * names it (ngx_http_proxy_hide_headers). */
static const sg_str hidden_by_default[] = {
    SG_STR("date"), SG_STR("server"), SG_STR("x-pad"), SG_STR("x-accel-expires"), SG_STR("x-accel-redirect"),
    SG_STR("x-accel-limit-rate"), SG_STR("x-accel-buffering"), SG_STR("x-accel-charset"),
};

static bool in_list(const sg_str *list, size_t n, sg_str name)
{
    for (size_t i = 0; i < n; i++)
        if (sg_str_caseeq(list[i], name)) return true;
    return false;
}

bool sg_hf_hidden(const sg_upstream_opts *o, sg_str name)
{
    if (in_list(o->hide_headers, o->nhide_headers, name)) return true;
    for (size_t i = 0; i < sizeof(hidden_by_default) / sizeof(hidden_by_default[0]); i++)
        if (sg_str_caseeq(name, hidden_by_default[i]))
            return !in_list(o->pass_headers, o->npass_headers, name);
    return false;
}

/* ---------------- expires ---------------- */

static const char *const wday[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

sg_str sg_hf_http_time(sg_arena *a, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    char *p = sg_arena_alloc(a, 40);
    int n = snprintf(p, 40, "%s, %02d %s %d %02d:%02d:%02d GMT", wday[tm.tm_wday], tm.tm_mday,
                     mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return (sg_str){ p, n > 0 ? (size_t)n : 0 };
}

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); -1 when it is not one. */
static time_t parse_http_time(sg_str v)
{
    char buf[64];
    if (v.n == 0 || v.n >= sizeof(buf)) return -1;
    memcpy(buf, v.p, v.n);
    buf[v.n] = '\0';
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end) return -1;
    return timegm(&tm);
}

/* The Expires and Cache-Control fields that `e` makes (nginx's
 * ngx_http_set_expires); 0 fields for off or a modified time without
 * Last-Modified. */
static size_t expires_fields(sg_http_req *r, const sg_expires *conf, time_t last_modified, sg_header *out)
{
    sg_expires e = *conf;
    if (e.kind == SG_EXPIRES_VAR) {
        sg_str v = sg_cval_eval(&conf->value, r);
        char buf[64];
        if (v.n == 0 || v.n >= sizeof(buf)) return 0;
        memcpy(buf, v.p, v.n);
        buf[v.n] = '\0';
        if (!sg_expires_parse(buf, conf->modified, &e)) {
            sg_log_to(r->loc ? r->loc->conf.error_log : NULL, SG_LOG_ERROR, "invalid \"expires\" value \"%s\"", buf);
            return 0;
        }
    }
    sg_str cc;
    time_t when;
    time_t now = time(NULL);
    switch (e.kind) {
    case SG_EXPIRES_OFF:
    case SG_EXPIRES_VAR:
        return 0;
    case SG_EXPIRES_EPOCH:
        out[0] = (sg_header){ SG_STR("Expires"), SG_STR("Thu, 01 Jan 1970 00:00:01 GMT"), 0 };
        out[1] = (sg_header){ SG_STR("Cache-Control"), SG_STR("no-cache"), 0 };
        return 2;
    case SG_EXPIRES_MAX:
        out[0] = (sg_header){ SG_STR("Expires"), SG_STR("Thu, 31 Dec 2037 23:55:55 GMT"), 0 };
        out[1] = (sg_header){ SG_STR("Cache-Control"), SG_STR("max-age=315360000"), 0 };
        return 2;
    case SG_EXPIRES_DAILY: {
        struct tm tm;
        localtime_r(&now, &tm);
        tm.tm_hour = (int)(e.secs / 3600);
        tm.tm_min = (int)(e.secs / 60 % 60);
        tm.tm_sec = (int)(e.secs % 60);
        tm.tm_isdst = -1;
        when = mktime(&tm);
        if (when <= now) {
            tm.tm_mday++;
            tm.tm_isdst = -1;
            when = mktime(&tm);
        }
        break;
    }
    case SG_EXPIRES_MODIFIED:
        /* without Last-Modified, from now (nginx) */
        when = (last_modified >= 0 ? last_modified : now) + e.secs;
        break;
    case SG_EXPIRES_ACCESS:
    default:
        when = now + e.secs;
        break;
    }
    long long max_age = (long long)(when - now);
    if (e.kind == SG_EXPIRES_ACCESS || (e.kind == SG_EXPIRES_MODIFIED && last_modified < 0)) max_age = e.secs;
    out[0] = (sg_header){ SG_STR("Expires"), sg_hf_http_time(&r->arena, when), 0 };
    if (e.secs < 0 || max_age < 0) {
        cc = SG_STR("no-cache");
    } else {
        char *p = sg_arena_alloc(&r->arena, 32);
        int n = snprintf(p, 32, "max-age=%lld", max_age);
        cc = (sg_str){ p, (size_t)n };
    }
    out[1] = (sg_header){ SG_STR("Cache-Control"), cc, 0 };
    return 2;
}

/* add_header and expires apply to these statuses unless "always" (nginx). */
bool sg_hf_status_allowed(int status)
{
    switch (status) {
    case 200: case 201: case 204: case 206: case 301: case 302:
    case 303: case 304: case 307: case 308:
        return true;
    default:
        return false;
    }
}

size_t sg_hf_expires(sg_exchange *ex, int status, sg_header *h, size_t n)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    if (lc->expires.kind == SG_EXPIRES_OFF || !sg_hf_status_allowed(status)) return n;
    time_t lm = -1;
    for (size_t i = 0; i < n; i++)
        if (sg_str_caseeq_lit(h[i].name, "last-modified")) lm = parse_http_time(h[i].value);
    sg_header add[2];
    size_t k = expires_fields(&ex->req, &lc->expires, lm, add);
    if (k == 0) return n;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!sg_str_caseeq_lit(h[i].name, "expires") && !sg_str_caseeq_lit(h[i].name, "cache-control")) h[m++] = h[i];
    for (size_t i = 0; i < k; i++) h[m++] = add[i];
    return m;
}

/* ---------------- add_trailer ---------------- */

/* While a response with add_trailer lines goes out, the exchange's
 * downstream ops are these: the body ends with the trailers evaluated
 * then (they may use $sent_http_ and $upstream_trailer_ values). */
static size_t own_trailers(sg_exchange *ex, sg_header *out, size_t n)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    bool allowed = sg_hf_status_allowed(ex->req.status);
    for (size_t i = 0; i < lc->nadd_trailers; i++) {
        const sg_header_set *a = &lc->add_trailers[i];
        if (!a->always && !allowed) continue;
        ex->req.resp_trailers = out;
        ex->req.nresp_trailers = n;
        sg_str v = sg_cval_eval(&a->value, &ex->req);
        if (v.n == 0) continue;
        out[n++] = (sg_header){ a->name, v, 0 };
    }
    ex->req.resp_trailers = out;
    ex->req.nresp_trailers = n;
    return n;
}

static void tr_send_trailers(sg_exchange *ex, const sg_header *t, size_t nt)
{
    const sg_downstream_ops *orig = ex->hf_down;
    const sg_loc_conf *lc = &ex->req.loc->conf;
    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (nt + lc->nadd_trailers + 1));
    if (nt) memcpy(h, t, nt * sizeof(sg_header));
    size_t n = own_trailers(ex, h, nt);
    ex->down = orig;
    if (n && orig->send_trailers) orig->send_trailers(ex, h, n);
    else orig->send_end(ex);
}

static void tr_send_end(sg_exchange *ex)
{
    tr_send_trailers(ex, NULL, 0);
}

static void tr_send_head(sg_exchange *ex, const sg_response *r) { ex->hf_down->send_head(ex, r); }
static void tr_send_data(sg_exchange *ex, const char *p, size_t n) { ex->hf_down->send_data(ex, p, n); }
static void tr_want_body(sg_exchange *ex, bool on) { ex->hf_down->want_body(ex, on); }
static size_t tr_pending(sg_exchange *ex) { return ex->hf_down->pending(ex); }
static void tr_abort(sg_exchange *ex)
{
    const sg_downstream_ops *orig = ex->hf_down;
    ex->down = orig;
    orig->abort(ex);
}

static const sg_downstream_ops trailer_ops = {
    .send_head = tr_send_head, .send_data = tr_send_data, .send_end = tr_send_end,
    .want_body = tr_want_body, .pending = tr_pending, .abort = tr_abort,
    .detach = NULL, .send_trailers = tr_send_trailers,
};

bool sg_hf_trailers_wanted(const sg_exchange *ex, int status, bool has_body)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    if (!has_body || !lc->nadd_trailers || ex->down == &trailer_ops || ex->tunnel) return false;
    bool allowed = sg_hf_status_allowed(status);
    for (size_t i = 0; i < lc->nadd_trailers; i++)
        if (lc->add_trailers[i].always || allowed) return true;
    return false;
}

void sg_hf_trailers_begin(sg_exchange *ex)
{
    if (ex->down == &trailer_ops) return;
    ex->hf_down = ex->down;
    ex->down = &trailer_ops;
}

/* ---------------- redirects ---------------- */

sg_str sg_hf_location(sg_exchange *ex, sg_str location)
{
    if (location.n == 0 || location.p[0] != '/') return location;
    sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = r->loc ? &r->loc->conf : NULL;
    if (lc && !lc->absolute_redirect) return location;
    sg_str host = r->host;
    if (lc && lc->server_name_in_redirect && r->srv && r->srv->nnames && r->srv->names[0].kind == SG_SN_EXACT)
        host = r->srv->names[0].name;
    char hostbuf[64];
    if (host.n == 0) {
        /* nginx: the address the connection came to */
        const char *a = sg_sockaddr_host(r->local, hostbuf, sizeof(hostbuf));
        host = sg_str_from(a);
        if (r->local && r->local->sa_family == AF_INET6) {
            char *b = sg_arena_alloc(&r->arena, host.n + 3);
            int k = snprintf(b, host.n + 3, "[%.*s]", (int)host.n, host.p);
            host = (sg_str){ b, (size_t)k };
        }
    }
    int port = sg_sockaddr_port(r->local);
    bool default_port = port == (r->https ? 443 : 80);
    char portbuf[16] = "";
    if (!default_port && (!lc || lc->port_in_redirect)) snprintf(portbuf, sizeof(portbuf), ":%d", port);
    size_t n = 8 + host.n + strlen(portbuf) + location.n;
    char *p = sg_arena_alloc(&r->arena, n + 1);
    int k = snprintf(p, n + 1, "%s://%.*s%s%.*s", r->https ? "https" : "http", (int)host.n, host.p,
                     portbuf, (int)location.n, location.p);
    return (sg_str){ p, (size_t)k };
}

/* The URI as a client may send it back: nginx escapes what is not safe
 * in a Location (ngx_escape_uri, NGX_ESCAPE_URI). */
sg_str sg_hf_escape_uri(sg_arena *a, sg_str uri)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t extra = 0;
    for (size_t i = 0; i < uri.n; i++) {
        unsigned char ch = (unsigned char)uri.p[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("\"#%<>?\\^`{|}", ch)) extra += 2;
    }
    if (!extra) return uri;
    char *p = sg_arena_alloc(a, uri.n + extra + 1), *o = p;
    for (size_t i = 0; i < uri.n; i++) {
        unsigned char ch = (unsigned char)uri.p[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("\"#%<>?\\^`{|}", ch)) {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 0xf];
        } else {
            *o++ = (char)ch;
        }
    }
    *o = '\0';
    return (sg_str){ p, (size_t)(o - p) };
}

/* URI + "/" (escaped) + "?args" when there are any. */
sg_str sg_hf_slash_location(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    sg_str u = sg_hf_escape_uri(&r->arena, r->uri);
    size_t n = u.n + 2 + (r->args.n ? r->args.n + 1 : 0);
    char *p = sg_arena_alloc(&r->arena, n + 1);
    int k = snprintf(p, n + 1, "%.*s/%s%.*s", (int)u.n, u.p, r->args.n ? "?" : "", (int)r->args.n,
                     r->args.p ? r->args.p : "");
    return (sg_str){ p, (size_t)k };
}

/* ---------------- request fields nginx wants once ---------------- */

bool sg_hf_duplicate_field(const sg_http_req *r)
{
    static const sg_str unique[] = {
        SG_STR("if-modified-since"), SG_STR("if-unmodified-since"), SG_STR("if-match"), SG_STR("if-none-match"),
        SG_STR("content-range"), SG_STR("if-range"), SG_STR("expect"), SG_STR("authorization"),
    };
    for (size_t k = 0; k < sizeof(unique) / sizeof(unique[0]); k++) {
        int seen = 0;
        for (size_t i = 0; i < r->nheaders; i++)
            if (sg_str_caseeq(r->headers[i].name, unique[k]) && ++seen > 1) return true;
    }
    return false;
}

/* underscores_in_headers, ignore_invalid_headers: nginx drops (and logs
 * at info) a field whose name is not letters, digits and '-' ('_' too
 * when allowed). */
void sg_hf_drop_invalid_fields(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    const sg_server_conf *s = r->srv;
    if (!s || !s->ignore_invalid_headers) return;
    size_t m = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        sg_str nm = r->headers[i].name;
        bool ok = nm.n > 0;
        for (size_t k = 0; ok && k < nm.n; k++) {
            char ch = nm.p[k];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                 (ch == '_' && s->underscores_in_headers);
        }
        if (!ok) {
            sg_ex_log(ex, SG_LOG_INFO, "client sent invalid header line: \"%.*s\"", (int)nm.n, nm.p);
            continue;
        }
        r->headers[m++] = r->headers[i];
    }
    r->nheaders = m;
}

/* keepalive_disable: nginx's browser checks (ngx_http_process_user_agent). */
bool sg_hf_keepalive_disabled(const sg_exchange *ex)
{
    const sg_http_req *r = &ex->req;
    uint32_t mask = r->loc ? r->loc->conf.keepalive_disable : 0;
    if (!mask) return false;
    const sg_header *h = sg_req_find_header(r, SG_STR("user-agent"));
    if (!h || !h->value.p) return false;
    char ua[512];
    size_t n = h->value.n < sizeof(ua) - 1 ? h->value.n : sizeof(ua) - 1;
    memcpy(ua, h->value.p, n);
    ua[n] = '\0';
    if ((mask & SG_KA_DISABLE_MSIE6) && sg_str_eq_lit(r->method, "POST")) {
        const char *m = strstr(ua, "MSIE ");
        if (m && m[5] >= '0' && m[5] <= '6' && m[6] == '.' && !(m[5] == '6' && strstr(m, "SV1"))) return true;
    }
    if ((mask & SG_KA_DISABLE_SAFARI) && strstr(ua, "Safari/") && strstr(ua, "Mac OS X") && !strstr(ua, "Chrome/"))
        return true;
    return false;
}
