/* Variables and complex values.
 *
 * Convention inside this module and for callers that care: sg_var_get()
 * returns {NULL, 0} for nginx's "not found" (no such header, no upstream
 * yet...) and a non-NULL pointer for a found value, even an empty one.
 * The access log needs the difference: nginx writes "-" only for "not found". */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "conf/vars.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "conf/conf.h"
#include "conf/map.h"
#include "exchange/request.h"

#define NOT_FOUND ((sg_str){ NULL, 0 })
#define EMPTY ((sg_str){ "", 0 })

/* Indexed by sg_var_kind, up to SG_VAR_HTTP_USER_AGENT. */
static const char *const builtin_names[] = {
    "host", "remote_addr", "binary_remote_addr", "remote_port",
    "scheme", "request_method", "request_uri", "uri",
    "document_uri", "args", "query_string", "is_args",
    "server_port", "server_addr", "server_name", "server_protocol",
    "request", "status", "body_bytes_sent", "bytes_sent",
    "request_time", "upstream_addr", "upstream_status",
    "upstream_response_time", "proxy_add_x_forwarded_for", "proxy_host",
    "time_local", "time_iso8601", "msec", "remote_user",
    "http_referer", "http_user_agent",
};
#define NBUILTINS (sizeof(builtin_names) / sizeof(builtin_names[0]))
_Static_assert(NBUILTINS == SG_VAR_HTTP_HEADER, "builtin_names matches sg_var_kind");

static const char *pos_file(sg_conf_pos pos)
{
    return pos.file ? pos.file : "<config>";
}

/* ---------------- compile time ---------------- */

static int var_find(const sg_var_table *t, sg_str name)
{
    for (size_t i = 0; i < t->n; i++)
        if (sg_str_eq(t->defs[i].name, name)) return (int)i;
    return -1;
}

static bool has_prefix(sg_str s, const char *pfx, sg_str *rest)
{
    size_t n = strlen(pfx);
    if (s.n <= n || memcmp(s.p, pfx, n) != 0) return false;
    *rest = (sg_str){ s.p + n, s.n - n };
    return true;
}

/* Table growth copies into the arena: compile time only, waste is bounded
 * by doubling. */
static sg_var_def *var_push(sg_conf *c)
{
    sg_var_table *t = &c->vars;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        sg_var_def *d = sg_arena_alloc(&c->arena, cap * sizeof(*d));
        if (t->n) memcpy(d, t->defs, t->n * sizeof(*d));
        t->defs = d;
        t->cap = cap;
    }
    sg_var_def *d = &t->defs[t->n++];
    memset(d, 0, sizeof(*d));
    return d;
}

/* "x_forwarded_for" -> "x-forwarded-for" (header names compare caselessly). */
static sg_str header_param(sg_conf *c, sg_str rest)
{
    char *p = sg_arena_strndup(&c->arena, rest.p, rest.n);
    for (size_t i = 0; i < rest.n; i++) {
        if (p[i] == '_') p[i] = '-';
        else if (p[i] >= 'A' && p[i] <= 'Z') p[i] = (char)(p[i] | 0x20);
    }
    return (sg_str){ p, rest.n };
}

static void var_classify(sg_conf *c, sg_var_def *d)
{
    sg_str rest;
    for (size_t k = 0; k < NBUILTINS; k++)
        if (sg_str_eq_lit(d->name, builtin_names[k])) { d->kind = (sg_var_kind)k; return; }
    if (d->name.n == 1 && d->name.p[0] >= '0' && d->name.p[0] <= '9') {
        d->kind = SG_VAR_CAPTURE;
        d->capture = d->name.p[0] - '0';
    } else if (has_prefix(d->name, "http_", &rest)) {
        d->kind = SG_VAR_HTTP_HEADER;
        d->param = header_param(c, rest);
    } else if (has_prefix(d->name, "arg_", &rest)) {
        d->kind = SG_VAR_ARG;
        d->param = rest;
    } else if (has_prefix(d->name, "cookie_", &rest)) {
        d->kind = SG_VAR_COOKIE;
        d->param = rest;
    } else {
        d->kind = SG_VAR_MAP;          /* pending until sg_var_define_map */
    }
}

int sg_var_index(sg_conf *c, sg_str name, sg_conf_pos pos)
{
    int i = var_find(&c->vars, name);
    if (i >= 0) return i;
    sg_var_def *d = var_push(c);
    d->name = sg_arena_str(&c->arena, name);
    d->first_use = pos;
    var_classify(c, d);
    return (int)(c->vars.n - 1);
}

bool sg_var_define_map(sg_conf *c, sg_str name, sg_map *map, char *err, size_t errlen)
{
    sg_var_def *d = &c->vars.defs[sg_var_index(c, name, (sg_conf_pos){ 0 })];
    /* As in nginx, a map may shadow a prefix variable ($http_x, $arg_x,
     * $cookie_x) but not a built-in or another map. */
    bool prefixed = d->kind == SG_VAR_HTTP_HEADER || d->kind == SG_VAR_ARG ||
                    d->kind == SG_VAR_COOKIE;
    if ((d->kind == SG_VAR_MAP && d->map == NULL) || prefixed) {
        d->kind = SG_VAR_MAP;
        d->map = map;
        return true;
    }
    snprintf(err, errlen, "the duplicate \"%.*s\" variable", (int)name.n, name.p);
    return false;
}

/* nginx variables streamgate does not provide yet: a file using them is
 * refused with "not supported yet" rather than a message that suggests a typo. */
static bool nginx_knows(sg_str name)
{
    static const char *const names[] = {
        "request_length", "request_id", "hostname", "pid", "connection", "connection_requests",
        "connection_time", "content_length", "content_type", "document_root", "realpath_root",
        "request_body", "request_body_file", "request_completion", "request_filename",
        "nginx_version", "pipe", "tcpinfo_rtt", "tcpinfo_rttvar", "tcpinfo_snd_cwnd",
        "tcpinfo_rcv_space", "limit_rate", "https", "ssl_protocol", "ssl_cipher",
        "ssl_server_name", "ssl_client_verify", "realip_remote_addr", "realip_remote_port",
        "upstream_connect_time", "upstream_header_time", "upstream_bytes_received",
        "upstream_bytes_sent", "upstream_response_length", "upstream_cache_status",
        "upstream_queue_time", "upstream_trailer_", "upstream_http_", "upstream_cookie_",
        "sent_http_", "sent_trailer_", "gzip_ratio", "proxy_protocol_addr",
        "proxy_protocol_port", "http2", "http3", "date_local", "date_gmt", NULL,
    };
    for (size_t i = 0; names[i]; i++) {
        size_t n = strlen(names[i]);
        bool prefix = names[i][n - 1] == '_';
        if (prefix ? (name.n > n && strncmp(name.p, names[i], n) == 0)
                   : (name.n == n && strncmp(name.p, names[i], n) == 0))
            return true;
    }
    return false;
}

bool sg_vars_finish(sg_conf *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->vars.n; i++) {
        const sg_var_def *d = &c->vars.defs[i];
        if (d->kind == SG_VAR_MAP && d->map == NULL) {
            snprintf(err, errlen, nginx_knows(d->name) ? "%s:%d:%d: variable \"$%.*s\" is not supported yet"
                                                       : "%s:%d:%d: unknown \"%.*s\" variable",
                     pos_file(d->first_use), d->first_use.line, d->first_use.col, (int)d->name.n, d->name.p);
            return false;
        }
    }
    return true;
}

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_';
}

/* Reads the variable name after a '$' at s[*i]; nginx's rules: one digit
 * is a capture, "${name}" may be followed by name characters. */
static bool parse_var_name(sg_str s, size_t *i, sg_str *name, char *msg, size_t msglen)
{
    size_t k = *i;
    bool brace = k < s.n && s.p[k] == '{';
    if (brace) k++;
    size_t start = k;
    if (!brace && k < s.n && s.p[k] >= '0' && s.p[k] <= '9') {
        k++;
    } else {
        while (k < s.n && name_char(s.p[k])) k++;
    }
    *name = (sg_str){ s.p + start, k - start };
    if (brace) {
        if (k >= s.n) {
            snprintf(msg, msglen, "the closing bracket in \"%.*s\" variable is missing",
                     (int)name->n, name->p);
            return false;
        }
        if (s.p[k] != '}') name->n = 0;
        else k++;
    }
    if (name->n == 0) {
        snprintf(msg, msglen, "invalid variable name in \"%.*s\"", (int)s.n, s.p);
        return false;
    }
    *i = k;
    return true;
}

bool sg_cval_compile(sg_conf *c, sg_str text, sg_conf_pos pos, sg_cval *out,
                     char *err, size_t errlen)
{
    size_t ndollar = 0;
    for (size_t i = 0; i < text.n; i++) ndollar += text.p[i] == '$';
    memset(out, 0, sizeof(*out));
    out->text = sg_arena_str(&c->arena, text);
    out->literal = ndollar == 0;
    if (out->literal) return true;

    sg_str s = out->text;
    out->parts = sg_arena_alloc(&c->arena, (2 * ndollar + 1) * sizeof(sg_cval_part));
    size_t lit = 0, i = 0;
    while (i < s.n) {
        if (s.p[i] != '$') { i++; continue; }
        if (i > lit)
            out->parts[out->nparts++] = (sg_cval_part){ -1, { s.p + lit, i - lit } };
        i++;
        sg_str name;
        char msg[512];
        if (!parse_var_name(s, &i, &name, msg, sizeof(msg))) {
            snprintf(err, errlen, "%s:%d:%d: %s", pos_file(pos), pos.line, pos.col, msg);
            return false;
        }
        out->parts[out->nparts++] = (sg_cval_part){ sg_var_index(c, name, pos), SG_STR_NULL };
        lit = i;
    }
    if (i > lit) out->parts[out->nparts++] = (sg_cval_part){ -1, { s.p + lit, i - lit } };
    return true;
}

/* ---------------- run time: helpers ---------------- */

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
        return SG_STR("unix:");
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

static sg_str http_header(sg_http_req *r, sg_str name)
{
    if (sg_str_caseeq_lit(name, "cookie")) return header_join(r, name, "; ");
    if (sg_str_caseeq_lit(name, "x-forwarded-for")) return header_join(r, name, ", ");
    return header_join(r, name, NULL);
}

static sg_str server_name_text(sg_http_req *r)
{
    const sg_server_conf *s = r->srv;
    if (!s || s->nnames == 0) return EMPTY;
    const sg_server_name *n = &s->names[0];
    switch (n->kind) {
    case SG_SN_WILDCARD_HEAD: return arena_printf(r, n->name.n + 3, "*.%.*s", (int)n->name.n, n->name.p);
    case SG_SN_WILDCARD_TAIL: return arena_printf(r, n->name.n + 3, "%.*s.*", (int)n->name.n, n->name.p);
    case SG_SN_DOT: return arena_printf(r, n->name.n + 2, ".%.*s", (int)n->name.n, n->name.p);
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
    const char *p = r->args.p, *end = r->args.p + r->args.n;
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

static sg_str strbuf_var(const sg_strbuf *b)
{
    return b->n ? (sg_str){ b->p, b->n } : NOT_FOUND;
}

static sg_str xff_var(sg_http_req *r)
{
    sg_str addr = addr_text(r, r->peer);
    sg_str xff = http_header(r, SG_STR("x-forwarded-for"));
    if (!xff.p) return addr;
    return arena_printf(r, xff.n + addr.n + 3, "%.*s, %.*s", (int)xff.n, xff.p, (int)addr.n, addr.p);
}

/* Map results are computed once per request: a map may be used by several
 * headers and the log line, and its value must not change in between.
 * State 2 marks "being computed" to break cycles (map $a $b {default $b;}). */
static sg_str map_var(sg_http_req *r, int index, const sg_var_def *d)
{
    size_t n = r->gen->vars.n;
    if (!r->var_cache) {
        r->var_cache = sg_arena_alloc(&r->arena, n * sizeof(sg_str));
        r->var_cached = sg_arena_alloc(&r->arena, n);
        memset(r->var_cached, 0, n);
    }
    if (r->var_cached[index] == 1) return r->var_cache[index];
    if (r->var_cached[index] == 2 || !d->map) return NOT_FOUND;
    r->var_cached[index] = 2;
    sg_str v = sg_map_eval(d->map, r);
    if (!v.p) v = EMPTY;
    r->var_cache[index] = v;
    r->var_cached[index] = 1;
    return v;
}

static sg_str var_get_conn(sg_http_req *r, const sg_var_def *d)
{
    switch (d->kind) {
    case SG_VAR_REMOTE_ADDR: return addr_text(r, r->peer);
    case SG_VAR_BINARY_REMOTE_ADDR: return addr_binary(r->peer);
    case SG_VAR_REMOTE_PORT: return port_text(r, r->peer);
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

static sg_str var_get_response(sg_http_req *r, const sg_var_def *d)
{
    const time_cache *t;
    switch (d->kind) {
    case SG_VAR_STATUS: return arena_printf(r, 16, "%03d", r->status);
    case SG_VAR_BODY_BYTES_SENT: return arena_printf(r, 24, "%llu", (unsigned long long)r->body_bytes_sent);
    case SG_VAR_BYTES_SENT: return arena_printf(r, 24, "%llu", (unsigned long long)r->bytes_sent);
    case SG_VAR_REQUEST_TIME: return request_time(r);
    case SG_VAR_UPSTREAM_ADDR: return strbuf_var(&r->upstream_addr);
    case SG_VAR_UPSTREAM_STATUS: return strbuf_var(&r->upstream_status);
    case SG_VAR_UPSTREAM_RESPONSE_TIME: return strbuf_var(&r->upstream_response_time);
    case SG_VAR_PROXY_HOST:
        return r->loc && r->loc->conf.proxy_pass ? r->loc->conf.proxy_pass->host : NOT_FOUND;
    case SG_VAR_TIME_LOCAL:
        t = time_now();
        return sg_arena_str(&r->arena, (sg_str){ t->local, t->nlocal });
    case SG_VAR_TIME_ISO8601:
        t = time_now();
        return sg_arena_str(&r->arena, (sg_str){ t->iso, t->niso });
    case SG_VAR_MSEC: return msec_now(r);
    case SG_VAR_REMOTE_USER: return NOT_FOUND;   /* no auth modules yet */
    default: return var_get_request(r, d);
    }
}

sg_str sg_var_get(sg_http_req *r, int index)
{
    if (!r->gen || index < 0 || (size_t)index >= r->gen->vars.n) return NOT_FOUND;
    const sg_var_def *d = &r->gen->vars.defs[index];
    if (d->kind == SG_VAR_MAP) return map_var(r, index, d);
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

static void escape_default(sg_str v, sg_strbuf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') continue;
        sg_strbuf_append(out, v.p + run, i - run);
        char e[4] = { '\\', 'x', hex[ch >> 4], hex[ch & 0xf] };
        sg_strbuf_append(out, e, 4);
        run = i + 1;
    }
    sg_strbuf_append(out, v.p + run, v.n - run);
}

static void escape_json(sg_str v, sg_strbuf *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    if (!v.p) return;                  /* not found: nothing, as nginx */
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch > 0x1f && ch != '"' && ch != '\\') continue;
        sg_strbuf_append(out, v.p + run, i - run);
        char e[6] = { '\\', (char)ch, 0, 0, 0, 0 };
        size_t n = 2;
        switch (ch) {
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '"': case '\\': break;
        default:
            memcpy(e + 1, "u00", 3);
            e[4] = hex[ch >> 4];
            e[5] = hex[ch & 0xf];
            n = 6;
        }
        sg_strbuf_append(out, e, n);
        run = i + 1;
    }
    sg_strbuf_append(out, v.p + run, v.n - run);
}

void sg_cval_eval_log(const sg_cval *cv, sg_http_req *r, bool json, bool none, sg_strbuf *out)
{
    if (cv->literal) { sg_strbuf_append_str(out, cv->text); return; }
    for (size_t i = 0; i < cv->nparts; i++) {
        if (cv->parts[i].var < 0) { sg_strbuf_append_str(out, cv->parts[i].lit); continue; }
        sg_str v = sg_var_get(r, cv->parts[i].var);
        if (json) escape_json(v, out);
        else if (none) { if (v.p) sg_strbuf_append_str(out, v); }
        else if (!v.p) sg_strbuf_append(out, "-", 1);
        else escape_default(v, out);
    }
}

/* ---------------- regexes ---------------- */

void *sg_regex_compile(sg_str re, bool caseless, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *rc = pcre2_compile((PCRE2_SPTR)re.p, re.n, caseless ? PCRE2_CASELESS : 0,
                                   &code, &off, NULL);
    if (!rc) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        snprintf(err, errlen, "pcre2_compile() failed: %s in \"%.*s\"", (const char *)msg,
                 (int)re.n, re.p);
        return NULL;
    }
    /* JIT is an optimisation only: without it (or if it fails) matching
     * falls back to the interpreter transparently. */
    (void)pcre2_jit_compile(rc, PCRE2_JIT_COMPLETE);
    return rc;
}

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
    r->ncaptures = rc;
    for (int i = 0; i < SG_MAX_CAPTURES; i++) {
        bool set = i < rc && ov[2 * i] != PCRE2_UNSET;
        r->captures[2 * i] = set ? (long)ov[2 * i] : -1;
        r->captures[2 * i + 1] = set ? (long)ov[2 * i + 1] : -1;
    }
    return true;
}

void sg_regex_free(void *re)
{
    pcre2_code_free(re);
}

void sg_regex_thread_done(void)
{
    pcre2_match_data_free(tmatch);
    tmatch = NULL;
}
