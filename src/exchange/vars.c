/* Reading variables and complex values for a request: the run-time side
 * of conf/vars.h, next to the request it reads.
 *
 * Convention inside this module and for callers that care: sg_var_get()
 * returns {NULL, 0} for nginx's "not found" (no such header, no upstream
 * yet...) and a non-NULL pointer for a found value, even an empty one.
 * The access log needs the difference: nginx writes "-" only for "not found". */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "exchange/vars.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "conf/directives.h"
#include "core/sockaddr.h"
#include "core/stats.h"
#include "conf/geo.h"
#include "exchange/forwarded.h"
#include "conf/limit_conf.h"
#include "conf/map.h"
#include "conf/ssl_conf.h"
#include "net/proxy_protocol.h"
#include "net/tls_vars.h"

#define NOT_FOUND ((sg_str){ NULL, 0 })
#define EMPTY ((sg_str){ "", 0 })

/* ---------------- helpers ---------------- */

static sg_str arena_printf(sg_http_req *r, size_t max, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static sg_str arena_printf(sg_http_req *r, size_t max, const char *fmt, ...)
{
    char *p = sg_arena_alloc(&r->arena, max);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p, max, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= max) n = (int)max - 1;
    return (sg_str){ p, (size_t)n };
}

static sg_str str_or_not_found(const char *p, size_t n)
{
    return p ? (sg_str){ p, n } : NOT_FOUND;
}

static sg_str addr_text(sg_http_req *r, const struct sockaddr *sa)
{
    char buf[INET6_ADDRSTRLEN];
    if (!sa) return EMPTY;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, sizeof(buf));
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, sizeof(buf));
    } else if (sa->sa_family == AF_UNIX) {
        /* "unix:" for a client (unnamed), "unix:/path" for the listener */
        char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
        return sg_arena_str(&r->arena, sg_str_from(sg_sockaddr_host(sa, path, sizeof(path))));
    } else {
        return EMPTY;
    }
    return sg_arena_str(&r->arena, sg_str_from(buf));
}

static sg_str addr_binary(const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET)
        return (sg_str){ (const char *)&((const struct sockaddr_in *)sa)->sin_addr, 4 };
    if (sa && sa->sa_family == AF_INET6)
        return (sg_str){ (const char *)&((const struct sockaddr_in6 *)sa)->sin6_addr, 16 };
    return EMPTY;
}

static sg_str port_text(sg_http_req *r, const struct sockaddr *sa)
{
    unsigned port;
    if (sa && sa->sa_family == AF_INET) port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    else if (sa && sa->sa_family == AF_INET6) port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    else return EMPTY;
    return arena_printf(r, 8, "%u", port);
}

/* Values of every header called `name`, joined by `sep` (NULL: first only). */
static sg_str header_join(sg_http_req *r, sg_str name, const char *sep)
{
    sg_strbuf b = { 0 };
    const char *first = NULL;
    size_t firstn = 0, count = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!sg_str_caseeq(r->headers[i].name, name)) continue;
        if (count == 0) { first = r->headers[i].value.p ? r->headers[i].value.p : ""; firstn = r->headers[i].value.n; }
        if (!sep && count == 0) return (sg_str){ first, firstn };
        if (count++) sg_strbuf_append(&b, sep, strlen(sep));
        sg_strbuf_append_str(&b, r->headers[i].value);
    }
    if (count <= 1) { sg_strbuf_free(&b); return str_or_not_found(first, firstn); }
    sg_str out = sg_arena_str(&r->arena, (sg_str){ b.p, b.n });
    sg_strbuf_free(&b);
    return out;
}

/* nginx 1.23: every field of that name, joined ("; " for Cookie). */
static sg_str http_header(sg_http_req *r, sg_str name)
{
    if (sg_str_caseeq_lit(name, "cookie")) return header_join(r, name, "; ");
    return header_join(r, name, ", ");
}

/* $remote_user: the user of "Authorization: Basic base64(user:password)". */
static sg_str remote_user(sg_http_req *r)
{
    const sg_header *h = sg_req_find_header(r, SG_STR("authorization"));
    if (!h || h->value.n < 7 || !sg_str_caseeq((sg_str){ h->value.p, 6 }, SG_STR("basic "))) return NOT_FOUND;
    sg_str b = { h->value.p + 6, h->value.n - 6 };
    while (b.n && *b.p == ' ') { b.p++; b.n--; }
    char *out = sg_arena_alloc(&r->arena, b.n + 1);
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < b.n; i++) {
        char ch = b.p[i];
        int v;
        if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
        else if (ch == '+') v = 62;
        else if (ch == '/') v = 63;
        else if (ch == '=') break;
        else return NOT_FOUND;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    const char *colon = memchr(out, ':', n);
    if (!colon) return NOT_FOUND;
    return (sg_str){ out, (size_t)(colon - out) };
}

static sg_str server_name_text(sg_http_req *r)
{
    const sg_server_conf *s = r->srv;
    if (!s || s->nnames == 0) return EMPTY;
    const sg_server_name *n = &s->names[0];
    switch (n->kind) {
    case SG_SN_WILDCARD_HEAD: return arena_printf(r, n->name.n + 3, "*.%.*s", (int)n->name.n, n->name.p);
    case SG_SN_WILDCARD_TAIL: return arena_printf(r, n->name.n + 3, "%.*s.*", (int)n->name.n, n->name.p);
    case SG_SN_DOT: return n->name;   /* nginx: ".example.com" is stored as "example.com" */
    case SG_SN_REGEX: return arena_printf(r, n->name.n + 2, "~%.*s", (int)n->name.n, n->name.p);
    default: return n->name;
    }
}

/* Host header without port, lowercased ("[::1]:80" keeps the brackets). */
static sg_str host_var(sg_http_req *r)
{
    if (r->host.n) return r->host;
    const sg_header *h = sg_req_find_header(r, SG_STR("host"));
    if (!h || h->value.n == 0) return server_name_text(r);
    size_t n = h->value.n;
    const char *p = h->value.p;
    const char *end = p[0] == '[' ? memchr(p, ']', n) : NULL;
    const char *colon = memchr(end ? end : p, ':', n - (size_t)((end ? end : p) - p));
    if (colon) n = (size_t)(colon - p);
    if (n && p[n - 1] == '.') n--;     /* "example.com." is example.com */
    char *o = sg_arena_strndup(&r->arena, p, n);
    for (size_t i = 0; i < n; i++)
        if (o[i] >= 'A' && o[i] <= 'Z') o[i] = (char)(o[i] | 0x20);
    return (sg_str){ o, n };
}

static sg_str protocol_text(sg_http_req *r)
{
    return arena_printf(r, 16, "HTTP/%d.%d", r->http_major, r->http_minor);
}

static sg_str request_line(sg_http_req *r)
{
    sg_str proto = protocol_text(r);
    return arena_printf(r, r->method.n + r->request_uri.n + proto.n + 3, "%.*s %.*s %.*s",
                        (int)r->method.n, r->method.p, (int)r->request_uri.n, r->request_uri.p,
                        (int)proto.n, proto.p);
}

static sg_str request_time(sg_http_req *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (long long)(now.tv_sec - r->start_mono.tv_sec) * 1000 +
                   (now.tv_nsec - r->start_mono.tv_nsec) / 1000000;
    if (ms < 0) ms = 0;
    return arena_printf(r, 32, "%lld.%03lld", ms / 1000, ms % 1000);
}

/* Formatting dates is costly next to a request; a thread formats them at
 * most once per second. */
typedef struct time_cache {
    time_t sec;
    char local[40], iso[40];
    size_t nlocal, niso;
} time_cache;

static _Thread_local time_cache tcache = { .sec = -1 };

static const time_cache *time_now(void)
{
    time_t now = time(NULL);
    if (now == tcache.sec) return &tcache;
    static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    localtime_r(&now, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    int n = snprintf(tcache.local, sizeof(tcache.local), "%02d/%s/%d:%02d:%02d:%02d %c%02ld%02ld",
                     tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, sign, off / 60, off % 60);
    tcache.nlocal = n > 0 ? (size_t)n : 0;
    n = snprintf(tcache.iso, sizeof(tcache.iso), "%d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 sign, off / 60, off % 60);
    tcache.niso = n > 0 ? (size_t)n : 0;
    tcache.sec = now;
    return &tcache;
}

static sg_str msec_now(sg_http_req *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return arena_printf(r, 32, "%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
}

/* nginx's ngx_http_arg: "name=" at the start or after '&', name caseless. */
static sg_str arg_var(sg_http_req *r, sg_str name)
{
    const char *p = r->args.p, *end = p ? p + r->args.n : NULL;   /* no arguments: p is NULL (no NULL + 0) */
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > name.n && p[name.n] == '=' &&
            sg_str_caseeq((sg_str){ p, name.n }, name))
            return (sg_str){ p + name.n + 1, (size_t)(stop - p - (long)name.n - 1) };
        p = amp ? amp + 1 : end;
    }
    return NOT_FOUND;
}

static sg_str cookie_var(sg_http_req *r, sg_str name)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!sg_str_caseeq_lit(r->headers[i].name, "cookie")) continue;
        const char *p = r->headers[i].value.p, *end = p + r->headers[i].value.n;
        while (p && p < end) {
            while (p < end && (*p == ' ' || *p == '\t')) p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            if ((size_t)(stop - p) > name.n && p[name.n] == '=' &&
                sg_str_caseeq((sg_str){ p, name.n }, name)) {
                const char *v = p + name.n + 1, *ve = stop;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
                return (sg_str){ v, (size_t)(ve - v) };
            }
            p = semi ? semi + 1 : end;
        }
    }
    return NOT_FOUND;
}

static sg_str capture_var(sg_http_req *r, int n)
{
    if (n >= r->ncaptures || n >= SG_MAX_CAPTURES) return NOT_FOUND;
    long a = r->captures[2 * n], b = r->captures[2 * n + 1];
    if (a < 0 || b < a || (size_t)b > r->capture_subject.n) return NOT_FOUND;
    return (sg_str){ r->capture_subject.p + a, (size_t)(b - a) };
}

/* $upstream_response_time, _connect_time, _header_time, _response_length,
 * _bytes_received, _bytes_sent: one entry per attempt, formatted from its
 * record (proxy.c notes numbers only). */
enum attempt_field { AT_RESPONSE_TIME, AT_CONNECT_TIME, AT_HEADER_TIME, AT_LENGTH, AT_RECEIVED, AT_SENT };

static size_t put_ms(char *p, uint64_t ms)
{
    size_t n = sg_u64_to_dec(p, ms / 1000);
    p[n++] = '.';
    p[n++] = (char)('0' + ms / 100 % 10);
    p[n++] = (char)('0' + ms / 10 % 10);
    p[n++] = (char)('0' + ms % 10);
    return n;
}

static sg_str attempts_var(sg_http_req *r, enum attempt_field f)
{
    if (!r->nattempts) return NOT_FOUND;
    char *out = sg_arena_alloc(&r->arena, (size_t)r->nattempts * 26);
    size_t n = 0;
    for (uint32_t i = 0; i < r->nattempts; i++) {
        const sg_attempt *a = sg_req_attempt(r, i);
        if (i) { out[n++] = ','; out[n++] = ' '; }
        uint64_t ms1 = f == AT_CONNECT_TIME ? a->connect_ms1 : a->header_ms1;
        switch (f) {
        case AT_RESPONSE_TIME: n += put_ms(out + n, a->response_ms); break;
        case AT_CONNECT_TIME: case AT_HEADER_TIME:
            if (ms1) n += put_ms(out + n, ms1 - 1);
            else out[n++] = '-';
            break;
        case AT_LENGTH: n += sg_u64_to_dec(out + n, a->body_len); break;
        case AT_RECEIVED: n += sg_u64_to_dec(out + n, a->recv); break;
        case AT_SENT: n += sg_u64_to_dec(out + n, a->sent); break;
        }
    }
    return (sg_str){ out, n };
}

static sg_str xff_var(sg_http_req *r)
{
    sg_str addr = addr_text(r, r->peer);
    sg_str xff = http_header(r, SG_STR("x-forwarded-for"));
    if (!xff.p) return addr;
    return arena_printf(r, xff.n + addr.n + 3, "%.*s, %.*s", (int)xff.n, xff.p, (int)addr.n, addr.p);
}

/* User variables (`set`, named captures) live in the same per-request
 * cache as map results; one never set is "not found". */
static void var_cache_init(sg_http_req *r)
{
    size_t n = r->gen->vars.n;
    if (r->var_cache) return;
    r->var_cache = sg_arena_alloc(&r->arena, n * sizeof(sg_str));
    r->var_cached = sg_arena_alloc(&r->arena, n);
    memset(r->var_cached, 0, n);
}

static sg_str user_var(sg_http_req *r, int index)
{
    if (!r->var_cache || r->var_cached[index] != 1) return NOT_FOUND;
    return r->var_cache[index];
}

void sg_var_set(sg_http_req *r, int index, sg_str v)
{
    if (!r->gen || index < 0 || (size_t)index >= r->gen->vars.n) return;
    if (r->gen->vars.defs[index].kind == SG_VAR_ARGS) {
        r->args = v.p ? v : EMPTY;
        r->has_args = true;
        r->uri_rewritten = true;       /* proxy_pass then sends $uri?$args, as nginx */
        return;
    }
    if (r->gen->vars.defs[index].kind == SG_VAR_LIMIT_RATE) {
        /* nginx keeps the rate as a number: "40k" reads back as 40960; an
         * invalid size is logged and leaves the rate as it was */
        char buf[32];
        uint64_t rate;
        bool ok = v.p && v.n < sizeof(buf);
        if (ok) {
            memcpy(buf, v.p, v.n);
            buf[v.n] = '\0';
            ok = sg_conf_parse_size(buf, &rate);
        }
        if (!ok) {
            sg_log_to(r->loc ? r->loc->conf.error_log : NULL, SG_LOG_ERROR, "invalid $limit_rate \"%.*s\"",
                      v.p ? (int)v.n : 0, v.p ? v.p : "");
            return;
        }
        /* rate (issue 10): the response's limit (proxy/rate_limit.c) */
        r->limit_rate = rate;
        r->limit_rate_set = true;
        return;
    }
    var_cache_init(r);
    r->var_cache[index] = v.p ? v : EMPTY;
    r->var_cached[index] = 1;
}

/* Map results are computed once per request: a map may be used by several
 * headers and the log line, and its value must not change in between.
 * State 2 marks "being computed" to break cycles (map $a $b {default $b;}). */
static sg_str map_var(sg_http_req *r, int index, const sg_var_def *d)
{
    var_cache_init(r);
    if (r->var_cached[index] == 1) return r->var_cache[index];
    if (r->var_cached[index] == 2 || !d->map) return NOT_FOUND;
    r->var_cached[index] = 2;
    sg_str v = sg_map_eval(d->map, r);
    if (!v.p) v = EMPTY;
    r->var_cache[index] = v;
    /* volatile: not kept (the cycle mark is cleared the same way) */
    r->var_cached[index] = sg_map_is_volatile(d->map) ? 0 : 1;
    return v;
}

static sg_str var_get_conn(sg_http_req *r, const sg_var_def *d)
{
    switch (d->kind) {
    case SG_VAR_REMOTE_ADDR: return addr_text(r, r->peer);
    case SG_VAR_BINARY_REMOTE_ADDR: return addr_binary(r->peer);
    case SG_VAR_REMOTE_PORT: return port_text(r, r->peer);
    case SG_VAR_PROXY_PROTOCOL_ADDR:
        return r->proxy_protocol ? addr_text(r, (const struct sockaddr *)&r->proxy_protocol[0]) : EMPTY;
    case SG_VAR_PROXY_PROTOCOL_PORT:
        return r->proxy_protocol ? port_text(r, (const struct sockaddr *)&r->proxy_protocol[0]) : EMPTY;
    case SG_VAR_PROXY_PROTOCOL_SERVER_ADDR:
        return r->proxy_protocol ? addr_text(r, (const struct sockaddr *)&r->proxy_protocol[1]) : EMPTY;
    case SG_VAR_PROXY_PROTOCOL_SERVER_PORT:
        return r->proxy_protocol ? port_text(r, (const struct sockaddr *)&r->proxy_protocol[1]) : EMPTY;
    case SG_VAR_REALIP_REMOTE_ADDR: return addr_text(r, r->conn_peer ? r->conn_peer : r->peer);
    case SG_VAR_REALIP_REMOTE_PORT: return port_text(r, r->conn_peer ? r->conn_peer : r->peer);
    case SG_VAR_SERVER_ADDR: return addr_text(r, r->local);
    case SG_VAR_SERVER_PORT: return port_text(r, r->local);
    case SG_VAR_SCHEME: return r->https ? SG_STR("https") : SG_STR("http");
    case SG_VAR_PROXY_ADD_X_FORWARDED_FOR: return xff_var(r);
    default: return NOT_FOUND;
    }
}

static sg_str var_get_request(sg_http_req *r, const sg_var_def *d)
{
    switch (d->kind) {
    case SG_VAR_HOST: return host_var(r);
    case SG_VAR_REQUEST_METHOD: return r->method;
    case SG_VAR_REQUEST_URI: return r->request_uri;
    case SG_VAR_URI: case SG_VAR_DOCUMENT_URI: return r->uri;
    case SG_VAR_ARGS: case SG_VAR_QUERY_STRING:
        return r->has_args ? (r->args.p ? r->args : EMPTY) : NOT_FOUND;
    case SG_VAR_IS_ARGS: return r->args.n ? SG_STR("?") : EMPTY;
    case SG_VAR_SERVER_NAME: return server_name_text(r);
    case SG_VAR_SERVER_PROTOCOL: return protocol_text(r);
    case SG_VAR_REQUEST: return request_line(r);
    case SG_VAR_HTTP_REFERER: return http_header(r, SG_STR("referer"));
    case SG_VAR_HTTP_USER_AGENT: return http_header(r, SG_STR("user-agent"));
    case SG_VAR_HTTP_HEADER: return http_header(r, d->param);
    case SG_VAR_ARG: return arg_var(r, d->param);
    case SG_VAR_COOKIE: return cookie_var(r, d->param);
    case SG_VAR_CAPTURE: return capture_var(r, d->capture);
    default: return var_get_conn(r, d);
    }
}

/* gzip: "3.45", rounded as nginx (ngx_http_gzip_ratio_variable); not
 * found unless a compressed response completed. */
static sg_str gzip_ratio(sg_http_req *r)
{
    if (!r->gzip_in || !r->gzip_out) return NOT_FOUND;
    unsigned long long zint = r->gzip_in / r->gzip_out;
    unsigned long long zfrac = r->gzip_in * 100 / r->gzip_out % 100;
    if (r->gzip_in * 1000 / r->gzip_out % 10 > 4 && ++zfrac > 99) {
        zint++;
        zfrac = 0;
    }
    return arena_printf(r, 48, "%llu.%02llu", zint, zfrac);
}

static sg_str var_get_response(sg_http_req *r, const sg_var_def *d)
{
    const time_cache *t;
    switch (d->kind) {
    case SG_VAR_STATUS: return arena_printf(r, 16, "%03d", r->status);
    case SG_VAR_BODY_BYTES_SENT: return arena_printf(r, 24, "%llu", (unsigned long long)r->body_bytes_sent);
    case SG_VAR_BYTES_SENT: return arena_printf(r, 24, "%llu", (unsigned long long)r->bytes_sent);
    case SG_VAR_REQUEST_TIME: return request_time(r);
    case SG_VAR_UPSTREAM_ADDR: return r->upstream_addr.n ? r->upstream_addr : NOT_FOUND;
    case SG_VAR_UPSTREAM_STATUS: return r->upstream_status.n ? r->upstream_status : NOT_FOUND;
    case SG_VAR_UPSTREAM_RESPONSE_TIME: return attempts_var(r, AT_RESPONSE_TIME);
    case SG_VAR_PROXY_HOST:
        if (r->pass) return r->pass->host;   /* made from the pass's variables */
        return r->loc && r->loc->conf.proxy_pass && !r->loc->conf.proxy_pass->has_vars
                   ? r->loc->conf.proxy_pass->host : NOT_FOUND;
    case SG_VAR_TIME_LOCAL:
        t = time_now();
        return sg_arena_str(&r->arena, (sg_str){ t->local, t->nlocal });
    case SG_VAR_TIME_ISO8601:
        t = time_now();
        return sg_arena_str(&r->arena, (sg_str){ t->iso, t->niso });
    case SG_VAR_MSEC: return msec_now(r);
    case SG_VAR_REMOTE_USER: return remote_user(r);
    case SG_VAR_GZIP_RATIO: return gzip_ratio(r);
    /* request body (area: body) */
    case SG_VAR_REQUEST_BODY: return r->request_body.n ? r->request_body : NOT_FOUND;
    case SG_VAR_REQUEST_BODY_FILE: return r->request_body_file.n ? r->request_body_file : NOT_FOUND;
    case SG_VAR_REQUEST_LENGTH:
        return arena_printf(r, 24, "%llu", (unsigned long long)(r->head_length + r->body_received));
    default: return var_get_request(r, d);
    }
}

/* ---------------- header controls and variables (issue 9) ---------------- */

/* The nginx version streamgate's configurations follow ($nginx_version). */
#define SG_NGINX_COMPAT_VERSION "1.29.3"

/* Every field `name` of a list, joined by ", " (nginx 1.23: multi-valued
 * $sent_http_, $upstream_http_); NOT_FOUND when there is none. */
static sg_str list_join(sg_http_req *r, const sg_header *h, size_t n, sg_str name)
{
    sg_strbuf b = { 0 };
    const sg_header *first = NULL;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sg_str_caseeq(h[i].name, name)) continue;
        if (count++ == 0) { first = &h[i]; continue; }
        if (count == 2) sg_strbuf_append_str(&b, first->value);
        sg_strbuf_append(&b, ", ", 2);
        sg_strbuf_append_str(&b, h[i].value);
    }
    if (count == 0) return NOT_FOUND;
    if (count == 1) return first->value.p ? first->value : EMPTY;
    sg_str out = sg_arena_str(&r->arena, (sg_str){ b.p, b.n });
    sg_strbuf_free(&b);
    return out;
}

static sg_str sent_http(sg_http_req *r, sg_str name)
{
    if (sg_str_caseeq_lit(name, "content-length")) {
        sg_str v = list_join(r, r->resp_headers, r->nresp_headers, name);
        if (v.p || r->resp_content_length < 0) return v;
        return arena_printf(r, 24, "%lld", (long long)r->resp_content_length);
    }
    return list_join(r, r->resp_headers, r->nresp_headers, name);
}

/* logs (issue 12): $grpc_status / $grpc_message, the call's last word as
 * the client got it: the trailers that ended the response (the backend's
 * or the proxy's own), else the head of a Trailers-Only answer, else the
 * backend's trailers when the client could not take them. Not found
 * (a log shows "-") for a response that carries none: not a gRPC call. */
static sg_str grpc_end_field(sg_http_req *r, sg_str name)
{
    const sg_header *lists[3] = { r->final_trailers, r->resp_headers, r->up_trailers };
    size_t counts[3] = { r->nfinal_trailers, r->nresp_headers, r->nup_trailers };
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < counts[k]; i++)
            if (sg_str_caseeq(lists[k][i].name, name))
                return lists[k][i].value.p ? lists[k][i].value : EMPTY;
    return NOT_FOUND;
}

/* $grpc_method: "/package.Service/Method" of a gRPC call (a request
 * with content-type application/grpc or application/grpc+...), as sent;
 * not found for other requests. */
static sg_str grpc_method(sg_http_req *r)
{
    const sg_header *ct = sg_req_find_header(r, SG_STR("content-type"));
    if (!ct || ct->value.n < 16 || !sg_str_caseeq((sg_str){ ct->value.p, 16 }, SG_STR("application/grpc")) ||
        (ct->value.n > 16 && !strchr("+; \t", ct->value.p[16])))   /* as proxy/grpc.c's sg_grpc_is_call */
        return NOT_FOUND;
    sg_str u = r->request_uri;
    const char *q = u.n ? memchr(u.p, '?', u.n) : NULL;
    if (q) u.n = (size_t)(q - u.p);
    return u;
}

/* $upstream_cookie_NAME: the value of cookie NAME in the upstream's Set-Cookie fields. */
static sg_str upstream_cookie(sg_http_req *r, sg_str name)
{
    for (size_t i = 0; i < r->nup_headers; i++) {
        const sg_header *h = &r->up_headers[i];
        if (!sg_str_caseeq_lit(h->name, "set-cookie")) continue;
        const char *p = h->value.p, *end = p + h->value.n;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || (size_t)(eq - p) != name.n || !sg_str_caseeq((sg_str){ p, name.n }, name)) continue;
        const char *v = eq + 1, *semi = memchr(v, ';', (size_t)(end - v));
        return (sg_str){ v, (size_t)((semi ? semi : end) - v) };
    }
    return NOT_FOUND;
}

/* The port the client named: in an absolute request target, else in Host. */
static sg_str request_port(sg_http_req *r)
{
    sg_str a = r->request_uri;
    sg_str auth = NOT_FOUND;
    const char *sep = a.n > 3 && a.p[0] != '/' ? memchr(a.p, ':', a.n) : NULL;
    if (sep && (size_t)(a.p + a.n - sep) > 3 && sep[1] == '/' && sep[2] == '/') {
        const char *s = sep + 3, *end = a.p + a.n, *e = s;
        while (e < end && *e != '/' && *e != '?') e++;
        auth = (sg_str){ s, (size_t)(e - s) };
    } else {
        const sg_header *h = sg_req_find_header(r, SG_STR("host"));
        if (h) auth = h->value;
    }
    if (!auth.p) return NOT_FOUND;
    const char *end = auth.p + auth.n;
    const char *close = auth.n && auth.p[0] == '[' ? memchr(auth.p, ']', auth.n) : NULL;
    const char *colon = memchr(close ? close : auth.p, ':', (size_t)(end - (close ? close : auth.p)));
    if (!colon || colon + 1 >= end) return NOT_FOUND;
    return (sg_str){ colon + 1, (size_t)(end - colon - 1) };
}

static sg_str proxy_port(sg_http_req *r)
{
    const sg_proxy_pass *pp = r->loc ? r->loc->conf.proxy_pass : NULL;
    if (!pp) return NOT_FOUND;
    sg_str h = pp->host;
    const char *close = h.n && h.p[0] == '[' ? memchr(h.p, ']', h.n) : NULL;
    const char *from = close ? close : h.p;
    const char *colon = memchr(from, ':', (size_t)(h.p + h.n - from));
    if (colon) return (sg_str){ colon + 1, (size_t)(h.p + h.n - colon - 1) };
    return pp->ssl ? SG_STR("443") : SG_STR("80");
}

static sg_str request_id(sg_http_req *r, int index)
{
    sg_str *cache = NULL;
    if (!r->var_cache) {
        size_t n = r->gen->vars.n;
        r->var_cache = sg_arena_alloc(&r->arena, n * sizeof(sg_str));
        r->var_cached = sg_arena_alloc(&r->arena, n);
        memset(r->var_cached, 0, n);
    }
    cache = &r->var_cache[index];
    if (r->var_cached[index] == 1) return *cache;
    unsigned char raw[16];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof(raw); i++) raw[i] = (unsigned char)(ts.tv_nsec >> (i % 8) ^ (uintptr_t)r >> i);
    }
    char *p = sg_arena_alloc(&r->arena, 33);
    for (size_t i = 0; i < sizeof(raw); i++) snprintf(p + 2 * i, 3, "%02x", raw[i]);
    *cache = (sg_str){ p, 32 };
    r->var_cached[index] = 1;
    return *cache;
}

static sg_str root_of(sg_http_req *r)
{
    const sg_loc_conf *lc = r->loc ? &r->loc->conf : NULL;
    if (!lc) return NOT_FOUND;
    return lc->has_alias ? lc->alias : lc->root;
}

static sg_str realpath_root(sg_http_req *r)
{
    sg_str root = root_of(r);
    char in[4096], out[PATH_MAX];
    if (!root.p || root.n >= sizeof(in)) return NOT_FOUND;
    memcpy(in, root.p, root.n);
    in[root.n] = '\0';
    if (!realpath(in, out)) return NOT_FOUND;
    return sg_arena_str(&r->arena, sg_str_from(out));
}

static sg_str named_capture(sg_http_req *r, const sg_var_def *d)
{
    char name[128];
    if (!r->capture_re || d->param.n >= sizeof(name)) return NOT_FOUND;
    memcpy(name, d->param.p, d->param.n);
    name[d->param.n] = '\0';
    int n = pcre2_substring_number_from_name(r->capture_re, (PCRE2_SPTR)name);
    if (n < 0) return NOT_FOUND;
    return capture_var(r, n);
}

static sg_str hostname_var(sg_http_req *r)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0) return EMPTY;
    host[sizeof(host) - 1] = '\0';
    return sg_arena_str(&r->arena, sg_str_from(host));
}

/* real client address (issue 10): $proxy_protocol_tlv_NAME, from the TLVs
 * kept with the connection's PROXY header (net/proxy_protocol.h) */
static sg_str proxy_protocol_tlv(sg_http_req *r, sg_str name)
{
    const uint8_t *tlv, *v;
    size_t len, vlen;
    char num[SG_PP_TLV_NUM_MAX];
    sg_pp_block_tlvs(r->proxy_protocol, &tlv, &len);
    int rc = sg_pp_tlv_find(tlv, len, name.p, name.n, &v, &vlen, num);
    if (rc < 0) sg_log_error("unknown PROXY protocol TLV \"%.*s\"", (int)name.n, name.p);
    if (rc <= 0) return NOT_FOUND;
    return sg_arena_str(&r->arena, (sg_str){ (const char *)v, vlen });
}

static sg_str var_get_more(sg_http_req *r, int index, const sg_var_def *d)
{
    switch (d->kind) {
    case SG_VAR_CONNECTION: return arena_printf(r, 24, "%llu", (unsigned long long)r->conn_number);
    case SG_VAR_CONNECTION_REQUESTS: return arena_printf(r, 16, "%u", r->conn_requests);
    case SG_VAR_CONNECTION_TIME: {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        uint64_t ms = r->conn_born_ms && now > r->conn_born_ms ? now - r->conn_born_ms : 0;
        return arena_printf(r, 32, "%llu.%03llu", (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
    }
    case SG_VAR_HTTP2: return r->http_major == 2 ? (r->https ? SG_STR("h2") : SG_STR("h2c")) : EMPTY;
    case SG_VAR_PROXY_PORT: return proxy_port(r);
    case SG_VAR_UPSTREAM_CONNECT_TIME: return attempts_var(r, AT_CONNECT_TIME);
    case SG_VAR_UPSTREAM_HEADER_TIME: return attempts_var(r, AT_HEADER_TIME);
    case SG_VAR_UPSTREAM_RESPONSE_LENGTH: return attempts_var(r, AT_LENGTH);
    case SG_VAR_UPSTREAM_BYTES_RECEIVED: return attempts_var(r, AT_RECEIVED);
    case SG_VAR_UPSTREAM_BYTES_SENT: return attempts_var(r, AT_SENT);
    case SG_VAR_IS_REQUEST_PORT: return request_port(r).p ? SG_STR(":") : EMPTY;
    case SG_VAR_REQUEST_PORT: return request_port(r);
    case SG_VAR_HOSTNAME: return hostname_var(r);
    case SG_VAR_PID: return arena_printf(r, 16, "%d", (int)getpid());
    case SG_VAR_NGINX_VERSION: return SG_STR(SG_NGINX_COMPAT_VERSION);
    case SG_VAR_REQUEST_ID: return request_id(r, index);
    case SG_VAR_REALPATH_ROOT: return realpath_root(r);
    case SG_VAR_DOCUMENT_ROOT: return root_of(r);
    case SG_VAR_CONTENT_LENGTH: return header_join(r, SG_STR("content-length"), NULL);
    case SG_VAR_CONTENT_TYPE: return header_join(r, SG_STR("content-type"), ", ");
    case SG_VAR_LIMIT_RATE:                 /* rate (issue 10): nginx's r->limit_rate */
        return r->limit_rate_set ? arena_printf(r, 24, "%llu", (unsigned long long)r->limit_rate) : SG_STR("0");
    case SG_VAR_PIPE: return SG_STR(".");
    case SG_VAR_REQUEST_COMPLETION: return EMPTY;
    case SG_VAR_REQUEST_FILENAME: {
        sg_str root = root_of(r);
        if (!root.p) return NOT_FOUND;
        return arena_printf(r, root.n + r->uri.n + 1, "%.*s%.*s", (int)root.n, root.p, (int)r->uri.n, r->uri.p);
    }
    case SG_VAR_SENT_HTTP: return sent_http(r, d->param);
    case SG_VAR_SENT_TRAILER: return list_join(r, r->resp_trailers, r->nresp_trailers, d->param);
    case SG_VAR_UPSTREAM_HTTP: return list_join(r, r->up_headers, r->nup_headers, d->param);
    case SG_VAR_UPSTREAM_TRAILER: return list_join(r, r->up_trailers, r->nup_trailers, d->param);
    case SG_VAR_UPSTREAM_COOKIE: return upstream_cookie(r, d->param);
    case SG_VAR_NAMED_CAPTURE: return named_capture(r, d);
    case SG_VAR_PROXY_PROTOCOL_TLV: return proxy_protocol_tlv(r, d->param);   /* real client address (issue 10) */
    /* limits (issue 10): not found until a limit with a key ran */
    case SG_VAR_LIMIT_REQ_STATUS: return r->limit_req_status ? sg_str_from(sg_limit_status_name(r->limit_req_status))
                                                             : NOT_FOUND;
    case SG_VAR_LIMIT_CONN_STATUS: return r->limit_conn_status ? sg_str_from(sg_limit_status_name(r->limit_conn_status))
                                                               : NOT_FOUND;
    /* logs (issue 12) */
    case SG_VAR_GRPC_STATUS: return grpc_end_field(r, SG_STR("grpc-status"));
    case SG_VAR_GRPC_MESSAGE: return grpc_end_field(r, SG_STR("grpc-message"));
    case SG_VAR_GRPC_METHOD: return grpc_method(r);
    case SG_VAR_HTTP2_STREAM_ID: return r->h2_stream_id ? arena_printf(r, 16, "%u", r->h2_stream_id) : NOT_FOUND;
    /* metrics (issue 12): summed over the threads when read */
    case SG_VAR_CONNECTIONS_ACTIVE: case SG_VAR_CONNECTIONS_READING:
    case SG_VAR_CONNECTIONS_WRITING: case SG_VAR_CONNECTIONS_WAITING: {
        sg_stub_status st;
        sg_stats_stub(&st);
        int64_t v = d->kind == SG_VAR_CONNECTIONS_ACTIVE ? st.active : d->kind == SG_VAR_CONNECTIONS_READING ? st.reading
                  : d->kind == SG_VAR_CONNECTIONS_WRITING ? st.writing : st.waiting;
        return arena_printf(r, 24, "%lld", (long long)v);
    }
    default: return NOT_FOUND;
    }
}

sg_str sg_var_get(sg_http_req *r, int index)
{
    if (!r->gen || index < 0 || (size_t)index >= r->gen->vars.n) return NOT_FOUND;
    const sg_var_def *d = &r->gen->vars.defs[index];
    if (d->kind == SG_VAR_MAP) return map_var(r, index, d);
    if (d->kind == SG_VAR_TLS) return sg_tls_var(r->tls, d->tls, &r->arena);   /* tls */
    if (d->kind == SG_VAR_USER) return user_var(r, index);
    if (d->kind >= SG_VAR_CONNECTION) return var_get_more(r, index, d);
    return var_get_response(r, d);
}

sg_str sg_cval_eval(const sg_cval *cv, sg_http_req *r)
{
    if (cv->literal) return cv->text;
    if (cv->nparts == 1 && cv->parts[0].var >= 0) {
        sg_str v = sg_var_get(r, cv->parts[0].var);
        return v.p ? v : EMPTY;
    }
    sg_str *vals = sg_arena_alloc(&r->arena, cv->nparts * sizeof(sg_str));
    size_t total = 0;
    for (size_t i = 0; i < cv->nparts; i++) {
        vals[i] = cv->parts[i].var < 0 ? cv->parts[i].lit : sg_var_get(r, cv->parts[i].var);
        total += vals[i].n;
    }
    char *p = sg_arena_alloc(&r->arena, total + 1), *o = p;
    for (size_t i = 0; i < cv->nparts; i++) {
        if (vals[i].n) memcpy(o, vals[i].p, vals[i].n);
        o += vals[i].n;
    }
    *o = '\0';
    return (sg_str){ p, total };
}

void sg_cval_eval_log(const sg_cval *cv, sg_http_req *r, bool json, bool none, sg_strbuf *out)
{
    if (cv->literal) { sg_strbuf_append_str(out, cv->text); return; }
    for (size_t i = 0; i < cv->nparts; i++) {
        if (cv->parts[i].var < 0) { sg_strbuf_append_str(out, cv->parts[i].lit); continue; }
        sg_str v = sg_var_get(r, cv->parts[i].var);
        if (json) { if (v.p) sg_strbuf_append_json_escaped(out, v); }   /* not found: nothing, as nginx */
        else if (none) { if (v.p) sg_strbuf_append_str(out, v); }
        else if (!v.p) sg_strbuf_append(out, "-", 1);
        else sg_strbuf_append_log_escaped(out, v);
    }
}

/* ---------------- regexes ---------------- */

/* One match block per thread, big enough for $0..$9 and more. */
static _Thread_local pcre2_match_data *tmatch;

bool sg_regex_exec(const void *re, sg_str subject, sg_http_req *r)
{
    if (!tmatch) tmatch = pcre2_match_data_create(32, NULL);
    if (!tmatch) return false;
    int rc = pcre2_match(re, (PCRE2_SPTR)(subject.p ? subject.p : ""), subject.n, 0, 0, tmatch, NULL);
    if (rc < 0) return false;
    if (!r) return true;
    if (rc == 0 || rc > SG_MAX_CAPTURES) rc = SG_MAX_CAPTURES;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tmatch);
    r->capture_subject = subject;
    r->capture_re = re;
    r->ncaptures = rc;
    for (int i = 0; i < SG_MAX_CAPTURES; i++) {
        bool set = i < rc && ov[2 * i] != PCRE2_UNSET;
        r->captures[2 * i] = set ? (long)ov[2 * i] : -1;
        r->captures[2 * i + 1] = set ? (long)ov[2 * i + 1] : -1;
    }
    return true;
}

void sg_regex_thread_done(void)
{
    pcre2_match_data_free(tmatch);
    tmatch = NULL;
}

/* ---------------- maps ---------------- */

static bool map_match(const void *re, sg_str v, void *r)
{
    return sg_regex_exec(re, v, r);
}

sg_str sg_map_eval(const sg_map *m, sg_http_req *r)
{
    bool client;
    const sg_geo *g = sg_map_geo(m, &client);
    if (g) {
        struct sockaddr_storage ss, fwd;
        const struct sockaddr *a = r->peer;
        if (!client) {
            sg_geo_text_addr(sg_cval_eval(sg_map_source(m), r), &ss);
            a = (const struct sockaddr *)&ss;
        }
        /* proxy: the address a trusted proxy forwarded (X-Forwarded-For) */
        bool recursive;
        if (a && sg_geo_proxies(g, &recursive) && sg_geo_proxy_trusted(g, a)) {
            sg_str xff = sg_forwarded_values(r, SG_STR("X-Forwarded-For"));
            if (xff.p && sg_forwarded_addr(xff, recursive, sg_geo_proxy_trusted, g, &fwd))
                a = (const struct sockaddr *)&fwd;
        }
        const sg_cval *gv = sg_geo_find(g, a);
        return gv ? sg_cval_eval(gv, r) : EMPTY;
    }
    sg_str v = sg_cval_eval(sg_map_source(m), r);
    if (!v.p) v = EMPTY;
    const sg_cval *cv = sg_map_find(m, v, map_match, r);
    if (!cv) return EMPTY;
    return sg_cval_eval(cv, r);
}

/* ---------------- TLS names made per request ---------------- */

/* "host" of "host:port" and "[v6]:port"; a bare IPv6 address as it is. */
static sg_str without_port(sg_str s)
{
    if (s.n == 0) return s;
    if (s.p[0] == '[') {
        const char *close = memchr(s.p, ']', s.n);
        return close ? (sg_str){ s.p + 1, (size_t)(close - s.p - 1) } : s;
    }
    const char *colon = memchr(s.p, ':', s.n);
    if (colon && !memchr(colon + 1, ':', s.n - (size_t)(colon + 1 - s.p))) s.n = (size_t)(colon - s.p);
    return s;
}

sg_str sg_ssl_upstream_name(const sg_loc_conf *lc, sg_http_req *r)
{
    /* a pass with variables: this request's scheme and host */
    const sg_proxy_pass *pp = r->pass ? r->pass : lc->proxy_pass;
    const sg_ssl_upstream_conf *u = pp && pp->ssl ? &lc->pass_opts->ssl : NULL;
    if (!u || !(u->server_name || u->verify)) return SG_STR("");
    sg_str name = u->name_set ? sg_cval_eval(&u->name, r) : pp->host;
    return without_port(name);
}
