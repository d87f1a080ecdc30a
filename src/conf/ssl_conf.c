/* TLS directives and the contexts of a generation. See ssl_conf.h. */
#include "conf/ssl_conf.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>

#include "conf/parser.h"
#include "conf/ssl_ctx.h"

typedef struct client_ctx {
    const sg_ssl_upstream_conf *u;
    bool h2;
    struct ssl_ctx_st *ctx;
} client_ctx;

/* Every context of a generation, freed with it. */
struct sg_ssl_state {
    struct ssl_ctx_st **ctxs;
    size_t nctxs;
    client_ctx *clients;
    size_t nclients;
};

/* ---------------- setters ---------------- */

/* Certificates named by variables ($ssl_server_name) or given inline
 * (data:, engine:) are nginx features streamgate does not have yet. */
static bool file_arg_ok(sg_cctx *cx, const sg_cnode *n, const sg_carg *a)
{
    if (a->n == 0) return sg_cerr(cx, a->pos, "invalid value \"\" in \"%s\" directive", n->name.s);
    if (strchr(a->s, '$'))
        return sg_cerr(cx, a->pos, "variables in \"%s\" are not supported yet", n->name.s);
    if (strncmp(a->s, "data:", 5) == 0 || strncmp(a->s, "engine:", 7) == 0)
        return sg_cerr(cx, a->pos, "\"%.*s\" in \"%s\" is not supported yet",
                       (int)(strchr(a->s, ':') - a->s + 1), a->s, n->name.s);
    return true;
}

bool sg_ssl_set_certificate(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    if (!file_arg_ok(cx, n, a)) return false;
    sg_ssl_value **list = (sg_ssl_value **)((char *)base + cmd->offset);
    size_t *count = (size_t *)((char *)base + cmd->offset + sizeof(sg_ssl_value *));
    if (cx->first) {                       /* a level's own list replaces the inherited one */
        *list = NULL;
        *count = 0;
    }
    *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(sg_ssl_value));
    (*list)[(*count)++] = (sg_ssl_value){ sg_conf_full_path(cx->c, a->s), a->pos };
    return true;
}

bool sg_ssl_set_file(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    if (!file_arg_ok(cx, n, a)) return false;
    *(sg_ssl_value *)((char *)base + cmd->offset) = (sg_ssl_value){ sg_conf_full_path(cx->c, a->s), a->pos };
    return true;
}

bool sg_ssl_set_string(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    if (a->n == 0) return sg_cerr(cx, a->pos, "invalid value \"\" in \"%s\" directive", n->name.s);
    *(sg_ssl_value *)((char *)base + cmd->offset) =
        (sg_ssl_value){ sg_arena_strndup(&cx->c->arena, a->s, a->n), a->pos };
    return true;
}

bool sg_ssl_set_protocols(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    static const struct { const char *name; uint32_t bit; } v[] = {
        { "SSLv2", SG_SSL_SSLv2 }, { "SSLv3", SG_SSL_SSLv3 }, { "TLSv1", SG_SSL_TLSv1 },
        { "TLSv1.1", SG_SSL_TLSv1_1 }, { "TLSv1.2", SG_SSL_TLSv1_2 }, { "TLSv1.3", SG_SSL_TLSv1_3 },
    };
    uint32_t mask = 0;
    for (size_t i = 0; i < n->nargs; i++) {
        size_t k = 0;
        while (k < sizeof(v) / sizeof(v[0]) && strcmp(v[k].name, n->args[i].s) != 0) k++;
        if (k == sizeof(v) / sizeof(v[0]))
            return sg_cerr(cx, n->args[i].pos, "invalid value \"%s\" in \"%s\" directive", n->args[i].s, n->name.s);
        mask |= v[k].bit;
    }
    if (!(mask & (SG_SSL_TLSv1 | SG_SSL_TLSv1_1 | SG_SSL_TLSv1_2 | SG_SSL_TLSv1_3)))
        return sg_cerr(cx, n->name.pos, "\"%s\" names no protocol OpenSSL 3 supports (SSLv2 and SSLv3 are gone)",
                       n->name.s);
    *(uint32_t *)((char *)base + cmd->offset) = mask;
    return true;
}

/* One word of ssl_session_cache; adds to *sessions. */
static bool cache_word(sg_cctx *cx, const sg_carg *a, uint64_t *sessions)
{
    const char *p = a->s;
    uint64_t v;
    if (strcmp(p, "builtin") == 0) {
        *sessions += 20480;                /* OpenSSL's default */
        return true;
    }
    if (strncmp(p, "builtin:", 8) == 0) {
        if (!sg_str_to_u64(sg_str_from(p + 8), &v) || v == 0 || v > UINT32_MAX / 2) goto bad;
        *sessions += v;
        return true;
    }
    if (strncmp(p, "shared:", 7) == 0) {
        const char *name = p + 7, *colon = strchr(name, ':');
        if (!colon || colon == name || !sg_conf_parse_size(colon + 1, &v)) goto bad;
        if (v < 8 * 4096)
            return sg_cerr(cx, a->pos, "session cache \"%.*s\" is too small", (int)(colon - name), name);
        *sessions += v / 256;              /* nginx: 1m holds about 4000 sessions */
        return true;
    }
bad:
    return sg_cerr(cx, a->pos, "invalid session cache \"%s\"", p);
}

bool sg_ssl_set_session_cache(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_ssl_cache *mode = (sg_ssl_cache *)((char *)base + cmd->offset);
    uint32_t *size = (uint32_t *)((char *)base + cmd->offset + offsetof(sg_ssl_conf, session_cache_size) -
                                  offsetof(sg_ssl_conf, session_cache));
    const char *first = n->args[0].s;
    if (strcmp(first, "off") == 0 || strcmp(first, "none") == 0) {
        if (n->nargs > 1) return sg_cerr(cx, n->args[1].pos, "invalid session cache \"%s\"", n->args[1].s);
        *mode = first[0] == 'o' ? SG_SSL_CACHE_OFF : SG_SSL_CACHE_NONE;
        *size = 0;
        return true;
    }
    uint64_t sessions = 0;
    for (size_t i = 0; i < n->nargs; i++)
        if (!cache_word(cx, &n->args[i], &sessions)) return false;
    *mode = SG_SSL_CACHE_ON;
    *size = sessions > UINT32_MAX ? UINT32_MAX : (uint32_t)sessions;
    return true;
}

bool sg_ssl_set_name(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    const sg_carg *a = &n->args[0];
    sg_cval *cv = (sg_cval *)((char *)base + cmd->offset);
    if (!sg_cval_compile(cx->c, (sg_str){ a->s, a->n }, a->pos, cv, cx->err, cx->errlen)) return false;
    *(bool *)((char *)base + cmd->offset + offsetof(sg_ssl_upstream_conf, name_set) -
              offsetof(sg_ssl_upstream_conf, name)) = true;
    return true;
}

bool sg_ssl_set_obsolete(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    return sg_cerr(cx, n->name.pos, "the \"ssl\" directive was removed in nginx 1.25.1 and is not supported, "
                   "use the \"ssl\" parameter of the \"listen\" directive instead");
}

bool sg_ssl_set_verify_client(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    static const char *const v[] = { "off", "on", "optional", "optional_no_ca" };
    for (int i = 0; i < 4; i++) {
        if (strcmp(n->args[0].s, v[i]) == 0) {
            *(int *)((char *)base + cmd->offset) = i;   /* SG_SSL_VERIFY_* in this order */
            return true;
        }
    }
    return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\" in \"%s\" directive, it must be \"on\", \"off\", "
                   "\"optional\" or \"optional_no_ca\"", n->args[0].s, n->name.s);
}

bool sg_ssl_set_conf_command(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_ssl_value **list = (sg_ssl_value **)((char *)base + cmd->offset);
    size_t *count = (size_t *)((char *)base + cmd->offset + sizeof(sg_ssl_value *));
    if (cx->first) {                       /* a level's own list replaces the inherited one */
        *list = NULL;
        *count = 0;
    }
    /* OpenSSL's commands that name a file: relative to the prefix, as
     * every other path of the configuration */
    static const char *const file_cmds[] = {
        "Certificate", "PrivateKey", "ServerInfoFile", "DHParameters", "ChainCAFile", "ChainCAPath",
        "VerifyCAFile", "VerifyCAPath", "RequestCAFile", "RequestCAPath", "ClientCAFile", "ClientCAPath",
    };
    bool is_file = false;
    for (size_t i = 0; i < sizeof(file_cmds) / sizeof(file_cmds[0]); i++)
        is_file = is_file || strcasecmp(n->args[0].s, file_cmds[i]) == 0;
    for (size_t i = 0; i < 2; i++) {
        char *v = i == 1 && is_file ? sg_conf_full_path(cx->c, n->args[1].s)
                                    : sg_arena_strndup(&cx->c->arena, n->args[i].s, n->args[i].n);
        *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(sg_ssl_value));
        (*list)[(*count)++] = (sg_ssl_value){ v, n->args[i].pos };
    }
    return true;
}

bool sg_ssl_set_early_data(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (!sg_conf_set_flag(cx, n, cmd, base)) return false;
    if (*(bool *)((char *)base + cmd->offset))
        sg_cnotice(cx, n->name.pos, "\"ssl_early_data\" is accepted, but streamgate accepts no TLS 1.3 early data: "
                   "clients send it again after the handshake ($ssl_early_data is always empty)");
    return true;
}

/* ---------------- defaults ---------------- */

static void upstream_defaults(sg_ssl_upstream_conf *u)
{
    memset(u, 0, sizeof(*u));
    u->verify_depth = 1;
    u->protocols = SG_SSL_TLSv1_2 | SG_SSL_TLSv1_3;
    u->ciphers.s = "DEFAULT";
    u->session_reuse = true;
}

void sg_ssl_conf_defaults(sg_loc_conf *lc, sg_server_conf *srv)
{
    sg_ssl_conf *sc = &srv->ssl;
    memset(sc, 0, sizeof(*sc));
    sc->protocols = SG_SSL_TLSv1_2 | SG_SSL_TLSv1_3;
    sc->ciphers.s = "HIGH:!aNULL:!MD5";
    sc->session_cache = SG_SSL_CACHE_NONE;
    sc->session_timeout_ms = 5 * 60 * 1000;
    sc->session_tickets = true;
    sc->ecdh_curve.s = "auto";
    sc->verify_depth = 1;
    sc->buffer_size = 16384;
    upstream_defaults(&lc->proxy.ssl);
    upstream_defaults(&lc->grpc.ssl);
}

/* ---------------- contexts of a generation ---------------- */

static void state_free(void *arg)
{
    struct sg_ssl_state *st = arg;
    for (size_t i = 0; i < st->nctxs; i++) sg_ssl_ctx_free(st->ctxs[i]);
    st->nctxs = 0;
}

static struct sg_ssl_state *state(sg_conf *c)
{
    if (!c->ssl) {
        c->ssl = sg_arena_alloc(&c->arena, sizeof(*c->ssl));
        memset(c->ssl, 0, sizeof(*c->ssl));
        sg_conf_on_free(c, state_free, c->ssl);
    }
    return c->ssl;
}

static void state_add(sg_conf *c, struct ssl_ctx_st *ctx)
{
    struct sg_ssl_state *st = state(c);
    st->ctxs = sg_conf_push(&c->arena, st->ctxs, st->nctxs, sizeof(*st->ctxs));
    st->ctxs[st->nctxs++] = ctx;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_values(const sg_ssl_value *a, size_t na, const sg_ssl_value *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!same_str(a[i].s, b[i].s)) return false;
    return true;
}

/* Servers whose settings are the same (typically all inherited from
 * http{}) share one context: one copy of the certificates in memory. */
static bool same_server_ssl(const sg_ssl_conf *a, const sg_ssl_conf *b)
{
    return same_values(a->certs, a->ncerts, b->certs, b->ncerts) &&
           same_values(a->keys, a->ncerts, b->keys, b->ncerts) && a->protocols == b->protocols &&
           same_str(a->ciphers.s, b->ciphers.s) && a->prefer_server_ciphers == b->prefer_server_ciphers &&
           a->session_cache == b->session_cache && a->session_cache_size == b->session_cache_size &&
           a->session_timeout_ms == b->session_timeout_ms && a->session_tickets == b->session_tickets &&
           same_str(a->dhparam.s, b->dhparam.s) && same_str(a->ecdh_curve.s, b->ecdh_curve.s) &&
           a->verify_client == b->verify_client && a->verify_depth == b->verify_depth &&
           same_str(a->client_certificate.s, b->client_certificate.s) &&
           same_str(a->trusted_certificate.s, b->trusted_certificate.s) && same_str(a->crl.s, b->crl.s) &&
           a->reject_handshake == b->reject_handshake && same_str(a->password_file.s, b->password_file.s) &&
           same_values(a->conf_commands, a->nconf_commands, b->conf_commands, b->nconf_commands);
}

static bool on_ssl_address(const sg_conf *c, const sg_server_conf *s)
{
    for (size_t i = 0; i < c->nlistens; i++) {
        if (!c->listens[i].ssl) continue;
        for (size_t j = 0; j < c->listens[i].nservers; j++)
            if (c->listens[i].servers[j] == s) return true;
    }
    return false;
}

static bool server_ctx(sg_cctx *cx, size_t idx, const unsigned char keys[80])
{
    sg_conf *c = cx->c;
    sg_server_conf *s = c->servers[idx];
    sg_ssl_conf *sc = &s->ssl;
    if (sc->nkeys < sc->ncerts)
        return sg_cerr(cx, sc->certs[sc->nkeys].pos, "no \"ssl_certificate_key\" is defined for certificate \"%s\"",
                       sc->certs[sc->nkeys].s);
    /* As nginx, every server with certificates gets its context, on an
     * ssl address or not: -t checks them all, and password files (a FIFO
     * a script writes to) are read. A server that rejects handshakes
     * needs no certificate: its context only has to read the ClientHello. */
    if (sc->ncerts == 0 && !(sc->reject_handshake && on_ssl_address(c, s))) return true;
    if (sc->ncerts > 0 && sc->verify_client != SG_SSL_VERIFY_OFF && sc->verify_client != SG_SSL_VERIFY_OPTIONAL_NO_CA &&
        !sc->client_certificate.s && !sc->trusted_certificate.s)
        return sg_cerr(cx, s->pos, "no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client");
    for (size_t i = 0; i < idx; i++) {
        const sg_ssl_conf *o = &c->servers[i]->ssl;
        if (o->ctx && same_server_ssl(o, sc)) {
            sc->ctx = o->ctx;
            return true;
        }
    }
    char msg[1024];
    sg_conf_pos where = s->pos;
    sc->ctx = sg_ssl_server_ctx_new(sc, keys, msg, sizeof(msg), &where);
    if (!sc->ctx) return sg_cerr(cx, where, "%s", msg);
    state_add(c, sc->ctx);
    return true;
}

/* The listen line of g's default server, for the message below. */
static sg_conf_pos listen_pos(const sg_listen_group *g)
{
    const sg_server_conf *s = g->default_server;
    for (size_t i = 0; i < s->nlistens; i++)
        if (s->listens[i].addrlen == g->addrlen && memcmp(&s->listens[i].addr, &g->addr, g->addrlen) == 0)
            return s->listens[i].pos;
    return s->pos;
}

static bool upstream_tls_finish(sg_cctx *cx);

bool sg_ssl_conf_finish(sg_cctx *cx)
{
    sg_conf *c = cx->c;
    unsigned char keys[80];
    /* Ticket keys: random per generation, shared by its contexts. */
    if (getrandom(keys, sizeof(keys), 0) != (ssize_t)sizeof(keys))
        return sg_cerr(cx, (sg_conf_pos){ c->file, 0, 0 }, "getrandom() failed");
    bool ok = true;
    for (size_t i = 0; ok && i < c->nservers; i++) ok = server_ctx(cx, i, keys);
    memset(keys, 0, sizeof(keys));
    for (size_t i = 0; ok && i < c->nlistens; i++) {
        const sg_listen_group *g = &c->listens[i];
        if (g->ssl && g->default_server && !g->default_server->ssl.ctx)
            ok = sg_cerr(cx, listen_pos(g), "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive");
    }
    return ok && upstream_tls_finish(cx);
}

static bool same_upstream_ssl(const sg_ssl_upstream_conf *a, const sg_ssl_upstream_conf *b)
{
    /* server_name is no context setting, but connections are pooled by
     * context: one that sent no SNI must not serve a location wanting it. */
    return a->verify == b->verify && a->verify_depth == b->verify_depth && a->server_name == b->server_name &&
           same_str(a->trusted_certificate.s, b->trusted_certificate.s) &&
           same_str(a->certificate.s, b->certificate.s) && same_str(a->certificate_key.s, b->certificate_key.s) &&
           a->protocols == b->protocols && same_str(a->ciphers.s, b->ciphers.s) &&
           a->session_reuse == b->session_reuse && same_str(a->password_file.s, b->password_file.s) &&
           same_str(a->crl.s, b->crl.s) &&
           same_values(a->conf_commands, a->nconf_commands, b->conf_commands, b->nconf_commands);
}

bool sg_ssl_upstream_ctx(sg_conf *c, sg_ssl_upstream_conf *u, bool h2, sg_conf_pos at,
                         char *err, size_t errlen)
{
    struct sg_ssl_state *st = state(c);
    for (size_t i = 0; i < st->nclients; i++) {
        if (st->clients[i].h2 == h2 && same_upstream_ssl(st->clients[i].u, u)) {
            u->ctx = st->clients[i].ctx;
            return true;
        }
    }
    char msg[1024];
    sg_conf_pos where = at;
    u->ctx = sg_ssl_client_ctx_new(u, h2, at, msg, sizeof(msg), &where);
    if (!u->ctx) {
        snprintf(err, errlen, "%s:%d:%d: %s", where.file ? where.file : c->file, where.line, where.col, msg);
        return false;
    }
    state_add(c, u->ctx);
    st->clients = sg_conf_push(&c->arena, st->clients, st->nclients, sizeof(*st->clients));
    st->clients[st->nclients++] = (client_ctx){ u, h2, u->ctx };
    return true;
}

/* ---------------- proxy_pass https://, grpc_pass grpcs:// ---------------- */

const sg_ssl_upstream_conf *sg_ssl_upstream_of(const sg_loc_conf *lc)
{
    if (!lc->proxy_pass || !lc->proxy_pass->ssl) return NULL;
    return &lc->pass_opts->ssl;
}

bool sg_ssl_upstream_name_ok(const sg_ssl_upstream_conf *u, sg_str name)
{
    return name.n < 256 && !(u->verify && name.n == 0);
}

/* The client context of every TLS location: errors name the directive
 * (a certificate file) or the pass line, as `-t` reports them. */
static bool location_tls(sg_cctx *cx, sg_location *loc)
{
    sg_loc_conf *lc = &loc->conf;
    /* passvar: a pass with variables may say https:// or grpcs:// at run
     * time: its context is made now, as nginx does */
    if (lc->proxy_pass && (lc->proxy_pass->ssl || lc->proxy_pass->has_vars)) {
        sg_ssl_upstream_conf *u = &lc->pass_opts->ssl;
        if (!sg_ssl_upstream_ctx(cx->c, u, lc->pass_opts->http_version == 20, lc->proxy_pass->pos, cx->err, cx->errlen))
            return false;
    }
    for (size_t i = 0; i < loc->nchildren; i++)
        if (!location_tls(cx, loc->children[i])) return false;
    return true;
}

static bool upstream_tls_finish(sg_cctx *cx)
{
    sg_conf *c = cx->c;
    for (size_t i = 0; i < c->nservers; i++) {
        sg_server_conf *s = c->servers[i];
        if (!location_tls(cx, s->root)) return false;
        for (size_t k = 0; k < s->nnamed; k++)
            if (!location_tls(cx, s->named[k])) return false;
    }
    return true;
}
