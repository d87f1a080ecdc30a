/* Building a configuration generation: read (parser.c), apply directives
 * (directives.c), then what needs the whole file: inheritance, binding
 * proxy_pass to upstreams, listen groups, variables, regexes and TLS
 * contexts. */
#include "conf/conf.h"
#include "conf/directives.h"
#include "conf/limit_conf.h"
#include "conf/map.h"
#include "conf/parser.h"
#include "conf/rewrite.h"
#include "conf/stream_conf.h"
#include "conf/ssl_conf.h"
#include "conf/health_conf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <arpa/inet.h>
#include <stddef.h>
#include <sys/un.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

struct sg_conf_cleanup {
    struct sg_conf_cleanup *next;
    void (*fn)(void *);
    void *arg;
};

/* ---------------- addresses ---------------- */

bool sg_conf_split_hostport(sg_str s, sg_str *host, int *port)
{
    const char *colon = NULL;
    *port = -1;
    if (s.n && s.p[0] == '[') {
        const char *close = memchr(s.p, ']', s.n);
        if (!close || close == s.p + 1) return false;
        *host = (sg_str){ s.p + 1, (size_t)(close - s.p - 1) };
        size_t rest = s.n - (size_t)(close + 1 - s.p);
        if (rest == 0) return true;
        if (close[1] != ':') return false;
        colon = close + 1;
    } else {
        for (size_t i = s.n; i > 0; i--)
            if (s.p[i - 1] == ':') { colon = s.p + i - 1; break; }
        if (colon && memchr(s.p, ':', (size_t)(colon - s.p))) return false;  /* bare IPv6 */
        *host = (sg_str){ s.p, colon ? (size_t)(colon - s.p) : s.n };
        if (host->n == 0) return false;
        if (!colon) return true;
    }
    uint64_t v;
    sg_str ps = { colon + 1, s.n - (size_t)(colon + 1 - s.p) };
    if (!sg_str_to_u64(ps, &v) || v > 65535) return false;
    *port = (int)v;
    return true;
}

bool sg_conf_unix_addr(sg_str path, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;
    if (path.n == 0 || path.n >= sizeof(sun->sun_path) || memchr(path.p, '\0', path.n)) return false;
    memset(ss, 0, sizeof(*ss));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path.p, path.n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path.n + 1);
    return true;
}

bool sg_conf_resolve(sg_conf *c, sg_str host, int port,
                     struct sockaddr_storage **out, socklen_t **lens, size_t *n)
{
    char name[256], serv[8];
    if (host.n == 0 || host.n >= sizeof(name) || memchr(host.p, '\0', host.n)) return false;
    memcpy(name, host.p, host.n);
    name[host.n] = '\0';
    snprintf(serv, sizeof(serv), "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV }, *res = NULL;
#ifdef SG_FUZZING
    /* no DNS while fuzzing: numeric addresses and localhost only */
    if (strcmp(name, "localhost") == 0) snprintf(name, sizeof(name), "127.0.0.1");
    hints.ai_flags |= AI_NUMERICHOST;
#endif
    if (getaddrinfo(name, serv, &hints, &res) != 0) return false;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(struct sockaddr_storage)) continue;
        bool dup = false;                      /* getaddrinfo may repeat an address */
        for (size_t i = 0; i < *n && !dup; i++)
            dup = (*lens)[i] == ai->ai_addrlen && memcmp(&(*out)[i], ai->ai_addr, ai->ai_addrlen) == 0;
        if (dup) continue;
        *out = sg_conf_push(&c->arena, *out, *n, sizeof(**out));
        *lens = sg_conf_push(&c->arena, *lens, *n, sizeof(**lens));
        memcpy(&(*out)[*n], ai->ai_addr, ai->ai_addrlen);
        (*lens)[(*n)++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    return *n > 0;
}

char *sg_conf_addr_text(sg_conf *c, const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN + 10];
    if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t n = strnlen(un->sun_path, sizeof(un->sun_path));
        char *t = sg_arena_alloc(&c->arena, n + 6);
        memcpy(t, "unix:", 5);
        memcpy(t + 5, un->sun_path, n);
        t[n + 5] = '\0';
        return t;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "%s:%u", ip, ntohs(s4->sin_port));
    }
    return sg_arena_strndup(&c->arena, out, strlen(out));
}

/* ---------------- log formats ---------------- */

sg_log_format *sg_conf_find_log_format(sg_conf *c, sg_str name)
{
    for (size_t i = 0; i < c->nlog_formats; i++)
        if (sg_str_eq_lit(name, c->log_formats[i]->name)) return c->log_formats[i];
    return NULL;
}

static bool predefine_format(sg_conf *c, const char *name, const char *fmt, char *err, size_t errlen)
{
    sg_log_format *f = sg_arena_alloc(&c->arena, sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->name = (char *)name;
    if (!sg_cval_compile(c, sg_str_from(fmt), (sg_conf_pos){ "<builtin>", 0, 0 }, &f->format, err, errlen))
        return false;
    c->log_formats = sg_conf_push(&c->arena, c->log_formats, c->nlog_formats, sizeof(*c->log_formats));
    c->log_formats[c->nlog_formats++] = f;
    return true;
}

static bool predefine_formats(sg_conf *c, char *err, size_t errlen)
{
    return predefine_format(c, "combined",
                            "$remote_addr - $remote_user [$time_local] \"$request\" $status "
                            "$body_bytes_sent \"$http_referer\" \"$http_user_agent\"", err, errlen) &&
           predefine_format(c, "main",
                            "$remote_addr - $remote_user [$time_local] \"$request\" $status "
                            "$body_bytes_sent \"$http_referer\" \"$http_user_agent\" "
                            "\"$http_x_forwarded_for\"", err, errlen);
}

/* ---------------- proxy_pass -> upstream ---------------- */

sg_upstream_conf *sg_conf_implicit_upstream(sg_conf *c, const char *name, sg_conf_pos pos,
                                            const struct sockaddr_storage *addrs,
                                            const socklen_t *lens, size_t n)
{
    sg_upstream_conf *u = sg_arena_alloc(&c->arena, sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->name = sg_arena_strndup(&c->arena, name, strlen(name));
    u->pos = pos;
    u->implicit = true;
    u->servers = sg_arena_alloc(&c->arena, n * sizeof(*u->servers));
    for (size_t i = 0; i < n; i++) {
        u->servers[i] = (sg_upstream_server_conf){ .name = u->name, .addr = addrs[i], .addrlen = lens[i],
                                                   .weight = 1, .max_fails = 1, .fail_timeout_ms = 10000 };
    }
    u->nservers = n;
    return u;
}

static sg_upstream_conf *implicit_upstream(sg_cctx *cx, const sg_pending_pass *p, int port)
{
    sg_conf *c = cx->c;
    char name[300];
    if (p->unix_sock) snprintf(name, sizeof(name), "%.*s", (int)p->host.n, p->host.p);
    else snprintf(name, sizeof(name), "%.*s:%d", (int)p->host.n, p->host.p, port);
    for (size_t i = 0; i < c->nupstreams; i++)
        if (c->upstreams[i]->implicit && strcasecmp(c->upstreams[i]->name, name) == 0)
            return c->upstreams[i];
    struct sockaddr_storage *addrs = NULL;
    socklen_t *lens = NULL;
    size_t n = 0;
    if (p->unix_sock) {   /* passvar: http://unix:/path */
        addrs = sg_arena_alloc(&c->arena, sizeof(*addrs));
        lens = sg_arena_alloc(&c->arena, sizeof(*lens));
        if (!sg_conf_unix_addr((sg_str){ p->host.p + 5, p->host.n - 5 }, addrs, lens)) {
            sg_cerr(cx, p->host_pos, "invalid host in upstream \"%.*s\"", (int)p->host.n, p->host.p);
            return NULL;
        }
        n = 1;
    } else if (!sg_conf_resolve(c, p->host, port, &addrs, &lens, &n)) {
        sg_cerr(cx, p->host_pos, "host not found in upstream \"%.*s\"", (int)p->pp->host.n, p->pp->host.p);
        return NULL;
    }
    sg_upstream_conf *u = sg_conf_implicit_upstream(c, name, p->pp->pos, addrs, lens, n);
    /* $upstream_addr names the address tried, as nginx ("127.0.0.1:80, [::1]:80") */
    for (size_t i = 0; !p->unix_sock && i < n; i++) u->servers[i].name = sg_conf_addr_text(c, &addrs[i]);
    u->keepalive = 32;                      /* same as an upstream{} block without "keepalive" */
    u->keepalive_timeout_ms = 60000;
    u->keepalive_requests = 1000;
    u->keepalive_time_ms = 3600 * 1000;
    u->h2_ping_interval_ms = SG_UPSTREAM_PING_INTERVAL_MS;
    u->h2_ping_timeout_ms = SG_UPSTREAM_PING_TIMEOUT_MS;
    c->upstreams = sg_conf_push(&c->arena, c->upstreams, c->nupstreams, sizeof(*c->upstreams));
    c->upstreams[c->nupstreams++] = u;
    return u;
}

static bool bind_pass(sg_cctx *cx, const sg_pending_pass *p)
{
    sg_conf *c = cx->c;
    sg_proxy_pass *pp = p->pp;
    if (pp->has_vars) return true;   /* passvar: found per request (proxy/pass_vars.c) */
    if (p->unix_sock) {
        pp->upstream = implicit_upstream(cx, p, 0);
        pp->host = SG_STR("localhost");   /* nginx: Host and $proxy_host of a unix socket */
        return pp->upstream != NULL;
    }
    for (size_t i = 0; i < c->nupstreams; i++) {
        sg_upstream_conf *u = c->upstreams[i];
        if (u->implicit || !sg_str_caseeq(p->host, sg_str_from(u->name))) continue;
        if (p->port >= 0)
            return sg_cerr(cx, p->host_pos, "upstream \"%s\" may not have port %d", u->name, p->port);
        pp->upstream = u;
        pp->host = sg_str_from(u->name);
        return true;
    }
    int default_port = pp->ssl ? 443 : 80;
    int port = p->port >= 0 ? p->port : default_port;
    pp->upstream = implicit_upstream(cx, p, port);
    /* $proxy_host: host[:port], the port only when it is not the scheme's (nginx) */
    if (port == default_port) pp->host = sg_arena_str(&c->arena, p->host);
    return pp->upstream != NULL;
}

/* ---------------- listen groups ---------------- */

sg_listen_group *sg_conf_new_group(sg_conf *c, const sg_listen_conf *l)
{
    c->listens = sg_conf_push(&c->arena, c->listens, c->nlistens, sizeof(sg_listen_group));
    sg_listen_group *g = &c->listens[c->nlistens++];
    g->addr = l->addr;
    g->addrlen = l->addrlen;
    g->text = l->text;
    g->backlog = l->backlog;
    return g;
}

static sg_listen_group *find_group(sg_conf *c, const sg_listen_conf *l)
{
    for (size_t i = 0; i < c->nlistens; i++)
        if (c->listens[i].addrlen == l->addrlen && memcmp(&c->listens[i].addr, &l->addr, l->addrlen) == 0)
            return &c->listens[i];
    return sg_conf_new_group(c, l);
}

static bool default_listen(sg_cctx *cx, sg_server_conf *s)
{
    sg_listen_conf l = { .backlog = 511, .pos = s->pos };
    struct sockaddr_in *sin = (struct sockaddr_in *)&l.addr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(80);
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
    l.addrlen = sizeof(*sin);
    l.text = sg_conf_addr_text(cx->c, &l.addr);
    s->listens = sg_arena_alloc(&cx->c->arena, sizeof(l));
    s->listens[0] = l;
    s->nlistens = 1;
    return true;
}

static bool build_listen_groups(sg_cctx *cx)
{
    sg_conf *c = cx->c;
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        if (s->nlistens == 0) default_listen(cx, s);
        for (size_t j = 0; j < s->nlistens; j++) {
            const sg_listen_conf *l = &s->listens[j];
            sg_listen_group *g = find_group(c, l);
            if (l->default_server) {
                if (g->default_server)
                    return sg_cerr(cx, l->pos, "a duplicate default server for %s", l->text);
                g->default_server = s;
            }
            if (l->backlog != 511) g->backlog = l->backlog;
            if (l->http2) g->http2 = true;
            if (l->ssl) g->ssl = true;
            if (l->proxy_protocol) g->proxy_protocol = true;
            /* header controls and small directives (issue 9): socket options */
            if (l->sndbuf && !g->sndbuf) g->sndbuf = l->sndbuf;
            if (l->rcvbuf && !g->rcvbuf) g->rcvbuf = l->rcvbuf;
            if (l->so_keepalive && !g->so_keepalive) {
                g->so_keepalive = l->so_keepalive;
                g->keepidle = l->keepidle;
                g->keepintvl = l->keepintvl;
                g->keepcnt = l->keepcnt;
            }
            g->servers = sg_conf_push(&c->arena, g->servers, g->nservers, sizeof(*g->servers));
            g->servers[g->nservers++] = s;
        }
    }
    for (size_t i = 0; i < c->nlistens; i++)
        if (!c->listens[i].default_server) c->listens[i].default_server = c->listens[i].servers[0];
    return true;
}

/* ---------------- regexes ---------------- */

static void pos_err(char *err, size_t errlen, sg_conf_pos pos, const char *msg)
{
    snprintf(err, errlen, "%s:%d:%d: %s", pos.file ? pos.file : "<config>", pos.line, pos.col, msg);
}

static bool location_regexes(sg_location *l, char *err, size_t errlen)
{
    if ((l->match == SG_LOC_REGEX || l->match == SG_LOC_REGEX_CASELESS) && !l->regex) {
        char msg[512];
        l->regex = sg_regex_compile(l->name, l->match == SG_LOC_REGEX_CASELESS, msg, sizeof(msg));
        if (!l->regex) { pos_err(err, errlen, l->pos, msg); return false; }
    }
    for (size_t i = 0; i < l->nchildren; i++)
        if (!location_regexes(l->children[i], err, errlen)) return false;
    return true;
}

static bool server_regexes(sg_server_conf *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->nnames; i++) {
        sg_server_name *n = &s->names[i];
        if (n->kind != SG_SN_REGEX || n->regex) continue;
        char msg[512];
        /* nginx compiles server_name regexes caselessly: host names are. */
        n->regex = sg_regex_compile(n->name, true, msg, sizeof(msg));
        if (!n->regex) { pos_err(err, errlen, s->pos, msg); return false; }
    }
    if (s->root && !location_regexes(s->root, err, errlen)) return false;
    for (size_t i = 0; i < s->nnamed; i++)
        if (!location_regexes(s->named[i], err, errlen)) return false;
    return true;
}

bool sg_conf_compile_regexes(sg_conf *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nservers; i++)
        if (!server_regexes(c->servers[i], err, errlen)) return false;
    return true;
}

static void location_free(sg_location *l)
{
    if (l->regex) { sg_regex_free(l->regex); l->regex = NULL; }
    for (size_t i = 0; i < l->nchildren; i++) location_free(l->children[i]);
}

void sg_conf_free_regexes(sg_conf *c)
{
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        for (size_t k = 0; k < s->nnames; k++)
            if (s->names[k].regex) { sg_regex_free(s->names[k].regex); s->names[k].regex = NULL; }
        if (s->root) location_free(s->root);
        for (size_t k = 0; k < s->nnamed; k++) location_free(s->named[k]);
    }
    for (size_t i = 0; i < c->vars.n; i++)
        if (c->vars.defs[i].kind == SG_VAR_MAP && c->vars.defs[i].map)
            sg_map_free(c->vars.defs[i].map);
}

/* ---------------- loading ---------------- */

static uint32_t default_worker_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 65536;
    uint64_t n = rl.rlim_cur > 32 ? rl.rlim_cur - 32 : 0;   /* a reserve for logs, listeners */
    if (n > 1u << 20) n = 1u << 20;
    return n < 64 ? 64 : (uint32_t)n;
}

static char *absolute(sg_arena *a, const char *path)
{
    char cwd[4096];
    if (path[0] == '/' || !getcwd(cwd, sizeof(cwd))) return sg_arena_strndup(a, path, strlen(path));
    size_t cl = strlen(cwd), pl = strlen(path);
    char *out = sg_arena_alloc(a, cl + pl + 2);
    memcpy(out, cwd, cl);
    out[cl] = '/';
    memcpy(out + cl + 1, path, pl + 1);
    return out;
}

/* `file` is made absolute only when it names a real file (not load_string's name). */
static sg_conf *conf_new(const char *file, bool real_file, const char *prefix)
{
    sg_conf *c = sg_xcalloc(1, sizeof(*c));
    c->refs = 1;
    sg_arena_init(&c->arena, 64 * 1024);
    c->file = real_file ? absolute(&c->arena, file) : sg_arena_strndup(&c->arena, file, strlen(file));
    if (prefix) {
        c->prefix = absolute(&c->arena, prefix);
    } else {
        c->prefix = sg_arena_strndup(&c->arena, c->file, strlen(c->file));
        char *slash = strrchr(c->prefix, '/');  /* c->file is absolute: a '/' exists */
        if (slash == c->prefix) slash[1] = '\0';
        else *slash = '\0';
    }
    size_t pl = strlen(c->prefix);
    while (pl > 1 && c->prefix[pl - 1] == '/') c->prefix[--pl] = '\0';
    c->worker_processes = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (c->worker_processes < 1) c->worker_processes = 1;
    c->worker_connections = default_worker_connections();
    c->pid_path = sg_conf_full_path(c, "streamgate.pid");
    c->error_log_path = "stderr";
    c->error_log_level = SG_LOG_NOTICE;   /* stderr by default: start, reload and stop are worth seeing */
    return c;
}

/* Everything after parsing: directives, then what needs the whole file. */

/* dns: an upstream with `resolve` servers needs a resolver, its own or the
 * http{} / stream{} level's (nginx 1.27.3: at load time). */
static bool dns_check_resolvers(sg_cctx *cx)
{
    sg_conf *c = cx->c;
    for (int stream = 0; stream <= 1; stream++) {
        sg_upstream_conf **ups = stream ? (c->stream ? c->stream->upstreams : NULL) : c->upstreams;
        size_t n = stream ? (c->stream ? c->stream->nupstreams : 0) : c->nupstreams;
        const sg_resolver_conf *dflt = stream ? c->dns_stream_resolver : c->dns_http_resolver;
        for (size_t i = 0; i < n; i++) {
            if (ups[i]->nresolves && !ups[i]->dns_resolver && !dflt)
                return sg_cerr(cx, ups[i]->pos, "no resolver defined to resolve names at run time in upstream \"%s\"",
                               ups[i]->name);
        }
    }
    return true;
}

static bool build(sg_conf *c, const sg_cnode *root, char *err, size_t errlen)
{
    sg_cctx cx = { .c = c, .err = err, .errlen = errlen };
    if (!predefine_formats(c, err, errlen) || !sg_directives_run(&cx, root)) return false;
    if (!cx.has_events)
        return sg_cerr(&cx, (sg_conf_pos){ c->files[0], 1, 1 }, "no \"events\" section in configuration");
    sg_directives_merge(&cx);
    sg_rw_finish(&cx);
    for (size_t i = 0; i < cx.npasses; i++)
        if (!bind_pass(&cx, &cx.passes[i])) return false;
    if (!dns_check_resolvers(&cx)) return false;
    return build_listen_groups(&cx) && sg_stream_conf_finish(&cx) && sg_vars_finish(c, err, errlen) &&
           sg_limit_conf_finish(&cx) &&
           sg_conf_compile_regexes(c, err, errlen) && sg_ssl_conf_finish(&cx) &&
           sg_health_conf_finish(&cx);
}

static sg_conf *finish_load(sg_conf *c, bool parsed, const sg_cnode *root, char *err, size_t errlen)
{
    if (parsed && build(c, root, err, errlen)) return c;
    sg_conf_unref(c);
    return NULL;
}

sg_conf *sg_conf_load(const char *file, const char *prefix, char *err, size_t errlen)
{
    return sg_conf_load_params(file, prefix, NULL, err, errlen);
}

sg_conf *sg_conf_load_params(const char *file, const char *prefix, const char *params, char *err,
                             size_t errlen)
{
    sg_conf *c = conf_new(file, true, prefix);
    sg_cnode root = { .block = true };
    bool ok = (!params || sg_parse_params(c, params, &root, err, errlen)) &&
              sg_parse_file(c, c->file, &root, err, errlen);
    return finish_load(c, ok, &root, err, errlen);
}

sg_conf *sg_conf_load_string(const char *text, size_t len, const char *name,
                             const char *prefix, char *err, size_t errlen)
{
    char cwd[4096];
    if (!prefix) prefix = getcwd(cwd, sizeof(cwd)) ? cwd : "/";
    sg_conf *c = conf_new(name ? name : "<builtin>", false, prefix);
    sg_cnode root = { .block = true };
    bool ok = sg_parse_string(c, text, len, c->file, &root, err, errlen);
    return finish_load(c, ok, &root, err, errlen);
}

/* ---------------- lifetime ---------------- */

void sg_conf_ref(sg_conf *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void sg_conf_unref(sg_conf *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (struct sg_conf_cleanup *k = c->cleanups; k; k = k->next) k->fn(k->arg);
    sg_conf_free_regexes(c);
    for (size_t i = 0; i < c->nregexes; i++) pcre2_code_free(c->regexes[i]);
    sg_arena_free(&c->arena);
    free(c);
}

void sg_conf_add_regex(sg_conf *c, void *code)
{
    c->regexes = sg_conf_push(&c->arena, c->regexes, c->nregexes, sizeof(void *));
    c->regexes[c->nregexes++] = code;
}

void sg_conf_on_free(sg_conf *c, void (*fn)(void *arg), void *arg)
{
    struct sg_conf_cleanup *k = sg_arena_alloc(&c->arena, sizeof(*k));
    k->fn = fn;
    k->arg = arg;
    k->next = c->cleanups;
    c->cleanups = k;
}

void sg_conf_dump(const sg_conf *c, FILE *out)
{
    for (size_t i = 0; i < c->nfiles; i++) {
        bool seen = false;   /* a file included twice is printed once, as by nginx */
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(c->files[j], c->files[i]) == 0;
        if (seen) continue;
        fprintf(out, "# configuration file %s:\n", c->files[i]);
        fwrite(c->file_texts[i], 1, c->file_lens[i], out);
        fputc('\n', out);
    }
}
