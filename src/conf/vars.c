/* Variables and complex values: the compile side. Names become indexes
 * into the generation's table and "text with $vars" a list of pieces;
 * reading them for a request is exchange/vars.c's. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "conf/vars.h"

#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"

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
    "realip_remote_addr", "realip_remote_port",
    "proxy_protocol_addr", "proxy_protocol_port", "proxy_protocol_server_addr", "proxy_protocol_server_port",
};
#define NBUILTINS (sizeof(builtin_names) / sizeof(builtin_names[0]))
_Static_assert(NBUILTINS == SG_VAR_HTTP_HEADER, "builtin_names matches sg_var_kind");

/* tls: indexed by sg_tls_var_id. */
static const char *const tls_names[] = {
    "https", "ssl_protocol", "ssl_cipher", "ssl_ciphers", "ssl_curve",
    "ssl_curves", "ssl_server_name", "ssl_session_id", "ssl_session_reused",
    "ssl_alpn_protocol", "ssl_early_data", "ssl_client_verify", "ssl_client_s_dn",
    "ssl_client_i_dn", "ssl_client_s_dn_legacy", "ssl_client_i_dn_legacy", "ssl_client_cert",
    "ssl_client_raw_cert", "ssl_client_escaped_cert", "ssl_client_fingerprint",
    "ssl_client_serial", "ssl_client_v_start", "ssl_client_v_end", "ssl_client_v_remain",
};
_Static_assert(sizeof(tls_names) / sizeof(tls_names[0]) == SG_TLS_VAR_COUNT, "tls_names matches sg_tls_var_id");

const char *sg_tls_var_name(int id)
{
    return id >= 0 && id < SG_TLS_VAR_COUNT ? tls_names[id] : "";
}

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

/* request body (area: body): built-ins appended after SG_VAR_MAP */
static const struct { const char *name; sg_var_kind kind; } body_vars[] = {
    { "request_body", SG_VAR_REQUEST_BODY },
    { "request_body_file", SG_VAR_REQUEST_BODY_FILE },
    { "request_length", SG_VAR_REQUEST_LENGTH },
};

/* header controls and variables (issue 9): names past SG_VAR_MAP */
static const struct { const char *name; sg_var_kind kind; } more_names[] = {
    { "connection", SG_VAR_CONNECTION }, { "connection_time", SG_VAR_CONNECTION_TIME },
    { "connection_requests", SG_VAR_CONNECTION_REQUESTS },
    { "http2", SG_VAR_HTTP2 }, { "proxy_port", SG_VAR_PROXY_PORT },
    { "upstream_connect_time", SG_VAR_UPSTREAM_CONNECT_TIME },
    { "upstream_header_time", SG_VAR_UPSTREAM_HEADER_TIME },
    { "upstream_response_length", SG_VAR_UPSTREAM_RESPONSE_LENGTH },
    { "upstream_bytes_received", SG_VAR_UPSTREAM_BYTES_RECEIVED },
    { "upstream_bytes_sent", SG_VAR_UPSTREAM_BYTES_SENT },
    { "is_request_port", SG_VAR_IS_REQUEST_PORT }, { "request_port", SG_VAR_REQUEST_PORT },
    { "hostname", SG_VAR_HOSTNAME }, { "pid", SG_VAR_PID }, { "nginx_version", SG_VAR_NGINX_VERSION },
    { "request_id", SG_VAR_REQUEST_ID }, { "realpath_root", SG_VAR_REALPATH_ROOT },
    { "document_root", SG_VAR_DOCUMENT_ROOT }, { "content_length", SG_VAR_CONTENT_LENGTH },
    { "content_type", SG_VAR_CONTENT_TYPE }, { "limit_rate", SG_VAR_LIMIT_RATE }, { "pipe", SG_VAR_PIPE },
    { "request_completion", SG_VAR_REQUEST_COMPLETION }, { "request_filename", SG_VAR_REQUEST_FILENAME },
    /* limits (issue 10) */
    { "limit_req_status", SG_VAR_LIMIT_REQ_STATUS }, { "limit_conn_status", SG_VAR_LIMIT_CONN_STATUS },
    /* logs (issue 12) */
    { "grpc_status", SG_VAR_GRPC_STATUS }, { "grpc_message", SG_VAR_GRPC_MESSAGE },
    { "grpc_method", SG_VAR_GRPC_METHOD }, { "http2_stream_id", SG_VAR_HTTP2_STREAM_ID },
    /* metrics (issue 12) */
    { "connections_active", SG_VAR_CONNECTIONS_ACTIVE }, { "connections_reading", SG_VAR_CONNECTIONS_READING },
    { "connections_writing", SG_VAR_CONNECTIONS_WRITING }, { "connections_waiting", SG_VAR_CONNECTIONS_WAITING },
};

static bool classify_more(sg_conf *c, sg_var_def *d)
{
    static const struct { const char *pfx; sg_var_kind kind; bool header; } prefixes[] = {
        { "sent_http_", SG_VAR_SENT_HTTP, true }, { "sent_trailer_", SG_VAR_SENT_TRAILER, true },
        { "upstream_http_", SG_VAR_UPSTREAM_HTTP, true }, { "upstream_trailer_", SG_VAR_UPSTREAM_TRAILER, true },
        { "upstream_cookie_", SG_VAR_UPSTREAM_COOKIE, false },
    };
    for (size_t k = 0; k < sizeof(more_names) / sizeof(more_names[0]); k++)
        if (sg_str_eq_lit(d->name, more_names[k].name)) { d->kind = more_names[k].kind; return true; }
    sg_str rest;
    for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
        if (!has_prefix(d->name, prefixes[k].pfx, &rest)) continue;
        d->kind = prefixes[k].kind;
        d->param = prefixes[k].header ? header_param(c, rest) : rest;
        return true;
    }
    if (has_prefix(d->name, "proxy_protocol_tlv_", &rest)) {   /* real client address (issue 10) */
        d->kind = SG_VAR_PROXY_PROTOCOL_TLV;
        d->param = rest;
        return true;
    }
    if (sg_str_eq_lit(d->name, "arg_")) {   /* nginx: $arg_ with no name is a variable too (never found) */
        d->kind = SG_VAR_ARG;
        d->param = SG_STR("");
        return true;
    }
    return false;
}

static void var_classify(sg_conf *c, sg_var_def *d)
{
    sg_str rest;
    for (size_t k = 0; k < NBUILTINS; k++)
        if (sg_str_eq_lit(d->name, builtin_names[k])) { d->kind = (sg_var_kind)k; return; }
    if (sg_str_eq_lit(d->name, "gzip_ratio")) { d->kind = SG_VAR_GZIP_RATIO; return; }   /* gzip */
    for (size_t k = 0; k < sizeof(body_vars) / sizeof(body_vars[0]); k++) {
        if (sg_str_eq_lit(d->name, body_vars[k].name)) {
            d->kind = body_vars[k].kind;
            /* a configuration that reads the body gets nginx's default
             * (proxy/reqbody.h) */
            if (d->kind != SG_VAR_REQUEST_LENGTH) c->uses_request_body = true;
            return;
        }
    }
    for (int k = 0; k < SG_TLS_VAR_COUNT; k++)        /* tls */
        if (sg_str_eq_lit(d->name, tls_names[k])) { d->kind = SG_VAR_TLS; d->tls = k; return; }
    if (classify_more(c, d)) return;
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

bool sg_var_define_map(sg_conf *c, sg_str name, struct sg_map *map, char *err, size_t errlen)
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

int sg_var_define_user(sg_conf *c, sg_str name, char *err, size_t errlen)
{
    int i = sg_var_index(c, name, (sg_conf_pos){ 0 });
    sg_var_def *d = &c->vars.defs[i];
    /* nginx's settable built-ins: they keep their kind, sg_var_set knows them */
    if (d->kind == SG_VAR_USER || d->kind == SG_VAR_ARGS || d->kind == SG_VAR_LIMIT_RATE) return i;
    bool prefixed = d->kind == SG_VAR_HTTP_HEADER || d->kind == SG_VAR_ARG ||
                    d->kind == SG_VAR_COOKIE;
    if ((d->kind == SG_VAR_MAP && d->map == NULL) || prefixed) {
        d->kind = SG_VAR_USER;
        return i;
    }
    snprintf(err, errlen, "the duplicate \"%.*s\" variable", (int)name.n, name.p);
    return -1;
}

/* nginx variables streamgate does not provide yet: a file using them is
 * refused with "not supported yet" rather than a message that suggests a typo. */
static bool nginx_knows(sg_str name)
{
    static const char *const names[] = {
        "request_id", "hostname", "pid", "connection", "connection_requests",
        "connection_time", "content_length", "content_type", "document_root", "realpath_root",
        "request_completion", "request_filename",
        "nginx_version", "pipe", "tcpinfo_rtt", "tcpinfo_rttvar", "tcpinfo_snd_cwnd",
        "tcpinfo_rcv_space", "limit_rate",
        "upstream_connect_time", "upstream_header_time", "upstream_bytes_received",
        "upstream_bytes_sent", "upstream_response_length", "upstream_cache_status",
        "upstream_queue_time", "upstream_trailer_", "upstream_http_", "upstream_cookie_",
        "sent_http_", "sent_trailer_", "http2", "http3", "date_local", "date_gmt", NULL,
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

void sg_var_note_captures(sg_conf *c, sg_str re)
{
    for (size_t i = 0; i + 3 < re.n; i++) {
        if (re.p[i] != '(' || re.p[i + 1] != '?' || (i && re.p[i - 1] == '\\')) continue;
        size_t k = i + 2;
        char close = '>';
        if (re.p[k] == 'P' && k + 1 < re.n && re.p[k + 1] == '<') k += 2;
        else if (re.p[k] == '<' && k + 1 < re.n && re.p[k + 1] != '=' && re.p[k + 1] != '!') k++;
        else if (re.p[k] == '\'') { k++; close = '\''; }
        else continue;
        size_t start = k;
        while (k < re.n && re.p[k] != close) k++;
        if (k >= re.n || k == start) continue;
        sg_var_def *d = &c->vars.defs[sg_var_index(c, (sg_str){ re.p + start, k - start }, (sg_conf_pos){ 0 })];
        if (d->kind == SG_VAR_MAP && d->map == NULL) {
            d->kind = SG_VAR_NAMED_CAPTURE;
            d->param = d->name;
        }
    }
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

void sg_regex_free(void *re)
{
    pcre2_code_free(re);
}
