/* SSL_CTX from compiled ssl_* / proxy_ssl_* / grpc_ssl_* settings: pure
 * OpenSSL calls on conf's structs, so that a bad certificate is reported
 * at load time (`-t`) with the position of the directive to blame. What
 * runs per handshake (SNI, ALPN) is the transport's: net/tls.c adds it
 * through sg_ssl_set_server_setup(). See ssl_ctx.h. */
#include "conf/ssl_ctx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Written once at start, before any context is built or any thread runs. */
static sg_ssl_server_setup_fn server_setup;

void sg_ssl_set_server_setup(sg_ssl_server_setup_fn fn)
{
    server_setup = fn;
}

static sg_ssl_server_setup_fn client_setup;

void sg_ssl_set_client_setup(sg_ssl_server_setup_fn fn)
{
    client_setup = fn;
}

/* ---------------- errors ---------------- */

void sg_ssl_errors(char *buf, size_t n)
{
    size_t off = (size_t)snprintf(buf, n, "SSL:");
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        if (off + 1 < n) off += (size_t)snprintf(buf + off, n - off, " %s", one);
    }
    ERR_clear_error();
}

/* msg = "what (SSL: ...)"; false always, for one-line failure returns. */
static bool ctx_fail(char *msg, size_t msglen, sg_conf_pos *where, sg_conf_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static bool ctx_fail(char *msg, size_t msglen, sg_conf_pos *where, sg_conf_pos pos, const char *fmt, ...)
{
    char what[600], ssl[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    sg_ssl_errors(ssl, sizeof(ssl));
    if (strcmp(ssl, "SSL:") == 0) snprintf(msg, msglen, "%s", what);
    else snprintf(msg, msglen, "%s (%s)", what, ssl);
    *where = pos;
    return false;
}

/* ---------------- contexts: common parts ---------------- */

static void set_protocols(SSL_CTX *ctx, uint32_t mask)
{
    static const struct { uint32_t bit; int version; uint64_t no; } v[] = {
        { SG_SSL_TLSv1, TLS1_VERSION, SSL_OP_NO_TLSv1 },
        { SG_SSL_TLSv1_1, TLS1_1_VERSION, SSL_OP_NO_TLSv1_1 },
        { SG_SSL_TLSv1_2, TLS1_2_VERSION, SSL_OP_NO_TLSv1_2 },
        { SG_SSL_TLSv1_3, TLS1_3_VERSION, SSL_OP_NO_TLSv1_3 },
    };
    int lo = 0, hi = 0;
    uint64_t no = 0;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (mask & v[i].bit) {
            if (!lo) lo = v[i].version;
            hi = v[i].version;
        } else {
            no |= v[i].no;                 /* a hole such as "TLSv1 TLSv1.2" */
        }
    }
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    SSL_CTX_set_options(ctx, no);
}

/* What every context shares: partial writes from a buffer that may move
 * (the codec's queue), record buffers released when empty (idle
 * connections cost little), no renegotiation, and a peer's missing
 * close_notify treated as an end of stream (HTTP frames its messages). */
static SSL_CTX *ctx_base(const SSL_METHOD *method, uint32_t protocols, const sg_ssl_value *ciphers,
                         char *msg, size_t msglen, sg_conf_pos *where)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        ctx_fail(msg, msglen, where, ciphers->pos, "SSL_CTX_new() failed");
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    /* AUTO_RETRY (on by default, kept): after a record that is not data
     * (a TLS 1.3 ticket, a key update) OpenSSL reads on instead of
     * reporting WANT_READ while the socket may still hold bytes, which an
     * edge-triggered reader would never be woken for again. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_read_ahead(ctx, 1);        /* one read() takes several records */
    set_protocols(ctx, protocols);
    if (ciphers->s && SSL_CTX_set_cipher_list(ctx, ciphers->s) != 1) {
        ctx_fail(msg, msglen, where, ciphers->pos, "SSL_CTX_set_cipher_list(\"%s\") failed", ciphers->s);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The passphrase tried on an encrypted key: never a prompt on the
 * terminal (OpenSSL's default), only a line of ssl_password_file. */
static int give_password(char *buf, int size, int rwflag, void *u)
{
    const char *pw = u;
    if (!pw) return 0;
    int n = (int)strlen(pw);
    if (n > size) n = size;
    memcpy(buf, pw, (size_t)n);
    return n;
}

static bool readable(const sg_ssl_value *v, const char *what, char *msg, size_t msglen, sg_conf_pos *where)
{
    FILE *f = fopen(v->s, "r");
    if (f) {
        fclose(f);
        return true;
    }
    int e = errno;
    return ctx_fail(msg, msglen, where, v->pos, "cannot load %s \"%s\": open() failed (%d: %s)",
                    what, v->s, e, strerror(e));
}

static EVP_PKEY *read_key_with(const char *path, const char *pw)
{
    BIO *b = BIO_new_file(path, "r");
    if (!b) return NULL;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, give_password, (void *)pw);
    BIO_free(b);
    return k;
}

/* tls: the key, trying each line of the password file in turn (nginx's
 * ssl_password_file), as is without one. */
static EVP_PKEY *read_key(const char *path, const sg_ssl_value *password_file, char *msg, size_t msglen,
                          sg_conf_pos *where)
{
    if (!password_file || !password_file->s) return read_key_with(path, NULL);
    FILE *f = fopen(password_file->s, "r");
    if (!f) {
        int e = errno;
        ctx_fail(msg, msglen, where, password_file->pos, "cannot open \"%s\": open() failed (%d: %s)",
                 password_file->s, e, strerror(e));
        return NULL;
    }
    char line[1024];
    EVP_PKEY *k = NULL;
    bool any = false;
    while (!k && fgets(line, sizeof(line), f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        any = true;
        ERR_clear_error();
        k = read_key_with(path, line);
    }
    fclose(f);
    OPENSSL_cleanse(line, sizeof(line));
    if (!any) ctx_fail(msg, msglen, where, password_file->pos, "empty password file \"%s\"", password_file->s);
    return k;
}

/* One ssl_certificate + ssl_certificate_key pair; OpenSSL files it by key
 * type, so an RSA and an ECDSA pair live side by side. */
static bool load_pair(SSL_CTX *ctx, const sg_ssl_value *cert, const sg_ssl_value *key, const sg_ssl_value *pwfile,
                      char *msg, size_t msglen, sg_conf_pos *where)
{
    ERR_clear_error();
    if (!readable(cert, "certificate", msg, msglen, where)) return false;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert->s) != 1)
        return ctx_fail(msg, msglen, where, cert->pos, "cannot load certificate \"%s\"", cert->s);
    X509 *x = SSL_CTX_get0_certificate(ctx);          /* the one just loaded */
    if (!readable(key, "certificate key", msg, msglen, where)) return false;
    msg[0] = '\0';
    EVP_PKEY *k = read_key(key->s, pwfile, msg, msglen, where);
    if (!k && msg[0]) return false;
    if (!k) return ctx_fail(msg, msglen, where, key->pos, "cannot load certificate key \"%s\"", key->s);
    bool ok = true;
    if (!x || X509_check_private_key(x, k) != 1)
        ok = ctx_fail(msg, msglen, where, key->pos, "certificate key \"%s\" does not match certificate \"%s\"",
                      key->s, cert->s);
    else if (SSL_CTX_use_PrivateKey(ctx, k) != 1)
        ok = ctx_fail(msg, msglen, where, key->pos, "cannot use certificate key \"%s\"", key->s);
    EVP_PKEY_free(k);
    return ok;
}

/* ---------------- server contexts ---------------- */

static bool set_session_cache(SSL_CTX *ctx, const sg_ssl_conf *sc, const unsigned char keys[80],
                              char *msg, size_t msglen, sg_conf_pos *where)
{
    SSL_CTX_set_timeout(ctx, (long)(sc->session_timeout_ms / 1000));
    if (sc->session_cache == SG_SSL_CACHE_OFF) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    } else if (sc->session_cache == SG_SSL_CACHE_NONE) {
        /* nginx's "none": claim a cache (some clients misbehave when a
         * server says it has none) but store nothing */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_AUTO_CLEAR |
                                            SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_cache_size(ctx, 1);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, sc->session_cache_size);
    }
    if (!sc->session_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        /* TLS 1.3 would still send (stateful) tickets nobody can use */
        if (sc->session_cache != SG_SSL_CACHE_ON) SSL_CTX_set_num_tickets(ctx, 0);
        return true;
    }
    if (SSL_CTX_set_tlsext_ticket_keys(ctx, (void *)keys, 80) != 1)
        return ctx_fail(msg, msglen, where, sc->ciphers.pos, "cannot set session ticket keys");
    return true;
}

/* Servers with the same certificates resume each other's sessions (as
 * nginx's context id, a hash of the certificates, allows); others not. */
static void set_sid_context(SSL_CTX *ctx, const sg_ssl_conf *sc)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(h, "streamgate", 10);
        for (size_t i = 0; i < sc->ncerts; i++) EVP_DigestUpdate(h, sc->certs[i].s, strlen(sc->certs[i].s) + 1);
        EVP_DigestFinal_ex(h, md, &mdlen);
    }
    EVP_MD_CTX_free(h);
    if (mdlen > SSL_MAX_SID_CTX_LENGTH) mdlen = SSL_MAX_SID_CTX_LENGTH;
    if (mdlen) SSL_CTX_set_session_id_context(ctx, md, mdlen);
    ERR_clear_error();
}

static bool set_dh_and_curves(SSL_CTX *ctx, const sg_ssl_conf *sc, char *msg, size_t msglen, sg_conf_pos *where)
{
    if (sc->dhparam.s) {
        if (!readable(&sc->dhparam, "DH parameters", msg, msglen, where)) return false;
        BIO *b = BIO_new_file(sc->dhparam.s, "r");
        EVP_PKEY *dh = b ? PEM_read_bio_Parameters(b, NULL) : NULL;
        BIO_free(b);
        if (!dh || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
            EVP_PKEY_free(dh);
            return ctx_fail(msg, msglen, where, sc->dhparam.pos, "cannot load DH parameters \"%s\"", sc->dhparam.s);
        }
    }
    const char *curves = sc->ecdh_curve.s;
    if (curves && strcmp(curves, "auto") != 0 && SSL_CTX_set1_groups_list(ctx, curves) != 1)
        return ctx_fail(msg, msglen, where, sc->ecdh_curve.pos, "SSL_CTX_set1_curves_list(\"%s\") failed", curves);
    return true;
}

/* tls: nginx checks client certificates itself, per request (400 "The
 * SSL certificate error" or "No required SSL certificate was sent"), so
 * the handshake goes on whatever the verification found. */
static int verify_always(int ok, X509_STORE_CTX *x)
{
    return 1;
}

/* tls: ssl_crl / proxy_ssl_crl: revocation lists checked for the whole chain. */
static bool load_crl(SSL_CTX *ctx, const sg_ssl_value *v, char *msg, size_t msglen, sg_conf_pos *where)
{
    if (!readable(v, "CRL", msg, msglen, where)) return false;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP *lk = store ? X509_STORE_add_lookup(store, X509_LOOKUP_file()) : NULL;
    if (!lk || X509_load_crl_file(lk, v->s, X509_FILETYPE_PEM) <= 0)
        return ctx_fail(msg, msglen, where, v->pos, "X509_load_crl_file(\"%s\") failed", v->s);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    return true;
}

/* The names sent in CertificateRequest: the subjects of the file's
 * certificates, in order, each once. Read as nginx >= 1.27.2 does, so
 * that "TRUSTED CERTIFICATE" PEMs (trust settings) load too, which
 * SSL_load_client_CA_file() refuses. NULL if the file has none. */
static STACK_OF(X509_NAME) *ca_names(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    STACK_OF(X509_NAME) *names = b ? sk_X509_NAME_new_null() : NULL;
    X509 *x;
    while (names && (x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL)) != NULL) {
        const X509_NAME *n = X509_get_subject_name(x);
        bool seen = false;
        for (int i = 0; !seen && i < sk_X509_NAME_num(names); i++)
            seen = X509_NAME_cmp(sk_X509_NAME_value(names, i), n) == 0;
        X509_NAME *dup = seen ? NULL : X509_NAME_dup(n);
        if (dup && !sk_X509_NAME_push(names, dup)) X509_NAME_free(dup);
        X509_free(x);
    }
    BIO_free(b);
    if (names && sk_X509_NAME_num(names) == 0) {
        sk_X509_NAME_free(names);
        return NULL;
    }
    ERR_clear_error();                     /* the read that ended the loop */
    return names;
}

static bool set_client_verify(SSL_CTX *ctx, const sg_ssl_conf *sc, char *msg, size_t msglen, sg_conf_pos *where)
{
    if (sc->verify_client == SG_SSL_VERIFY_OFF) return true;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_always);
    /* the certificate itself counts in OpenSSL's depth, as in nginx */
    SSL_CTX_set_verify_depth(ctx, (int)sc->verify_depth);
    if (sc->client_certificate.s) {
        const sg_ssl_value *v = &sc->client_certificate;
        if (!readable(v, "client certificate", msg, msglen, where)) return false;
        if (SSL_CTX_load_verify_locations(ctx, v->s, NULL) != 1)
            return ctx_fail(msg, msglen, where, v->pos, "SSL_CTX_load_verify_locations(\"%s\") failed", v->s);
        STACK_OF(X509_NAME) *names = ca_names(v->s);
        if (!names) return ctx_fail(msg, msglen, where, v->pos, "cannot load CA names from \"%s\"", v->s);
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (sc->trusted_certificate.s) {
        const sg_ssl_value *v = &sc->trusted_certificate;
        if (!readable(v, "trusted certificate", msg, msglen, where)) return false;
        if (SSL_CTX_load_verify_locations(ctx, v->s, NULL) != 1)
            return ctx_fail(msg, msglen, where, v->pos, "SSL_CTX_load_verify_locations(\"%s\") failed", v->s);
    }
    if (sc->crl.s && !load_crl(ctx, &sc->crl, msg, msglen, where)) return false;
    ERR_clear_error();
    return true;
}

/* tls: ssl_conf_command / proxy_ssl_conf_command, through OpenSSL's
 * SSL_CONF interface (cmds: name, value, name, value...). */
static bool conf_commands(SSL_CTX *ctx, const sg_ssl_value *cmds, size_t ncmds, bool server,
                          char *msg, size_t msglen, sg_conf_pos *where)
{
    if (ncmds == 0) return true;
    SSL_CONF_CTX *cc = SSL_CONF_CTX_new();
    if (!cc) return ctx_fail(msg, msglen, where, cmds[0].pos, "SSL_CONF_CTX_new() failed");
    SSL_CONF_CTX_set_flags(cc, SSL_CONF_FLAG_FILE | (server ? SSL_CONF_FLAG_SERVER : SSL_CONF_FLAG_CLIENT) |
                               SSL_CONF_FLAG_CERTIFICATE | SSL_CONF_FLAG_SHOW_ERRORS);
    SSL_CONF_CTX_set_ssl_ctx(cc, ctx);
    bool ok = true;
    for (size_t i = 0; ok && i + 1 < ncmds; i += 2) {
        const sg_ssl_value *k = &cmds[i], *v = &cmds[i + 1];
        if (SSL_CONF_cmd(cc, k->s, v->s) <= 0)
            ok = ctx_fail(msg, msglen, where, k->pos, "SSL_CONF_cmd(\"%s\", \"%s\") failed", k->s, v->s);
    }
    if (ok && SSL_CONF_CTX_finish(cc) != 1)
        ok = ctx_fail(msg, msglen, where, cmds[0].pos, "SSL_CONF_finish() failed");
    SSL_CONF_CTX_free(cc);
    return ok;
}

SSL_CTX *sg_ssl_server_ctx_new(const sg_ssl_conf *sc, const unsigned char ticket_keys[80],
                               char *msg, size_t msglen, sg_conf_pos *where)
{
    SSL_CTX *ctx = ctx_base(TLS_server_method(), sc->protocols, &sc->ciphers, msg, msglen, where);
    if (!ctx) return NULL;
    if (sc->prefer_server_ciphers) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    bool ok = true;
    for (size_t i = 0; ok && i < sc->ncerts; i++) ok = load_pair(ctx, &sc->certs[i], &sc->keys[i], &sc->password_file, msg, msglen, where);
    ok = ok && set_dh_and_curves(ctx, sc, msg, msglen, where) &&
         set_session_cache(ctx, sc, ticket_keys, msg, msglen, where) &&
         set_client_verify(ctx, sc, msg, msglen, where) &&
         conf_commands(ctx, sc->conf_commands, sc->nconf_commands, true, msg, msglen, where);
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    set_sid_context(ctx, sc);
    if (server_setup) server_setup(ctx);
    ERR_clear_error();
    return ctx;
}

/* ---------------- client contexts ---------------- */

SSL_CTX *sg_ssl_client_ctx_new(const sg_ssl_upstream_conf *u, bool h2, sg_conf_pos at,
                               char *msg, size_t msglen, sg_conf_pos *where)
{
    const char *pfx = h2 ? "grpc_ssl" : "proxy_ssl";
    if (u->verify && !u->trusted_certificate.s) {
        ctx_fail(msg, msglen, where, at, "no \"%s_trusted_certificate\" for \"%s_verify\"", pfx, pfx);
        return NULL;
    }
    if (u->certificate.s && !u->certificate_key.s) {
        ctx_fail(msg, msglen, where, u->certificate.pos,
                 "no \"%s_certificate_key\" is defined for certificate \"%s\"", pfx, u->certificate.s);
        return NULL;
    }
    SSL_CTX *ctx = ctx_base(TLS_client_method(), u->protocols, &u->ciphers, msg, msglen, where);
    if (!ctx) return NULL;
    bool ok = true;
    if (u->trusted_certificate.s) {
        ok = readable(&u->trusted_certificate, "trusted certificate", msg, msglen, where);
        if (ok && SSL_CTX_load_verify_locations(ctx, u->trusted_certificate.s, NULL) != 1)
            ok = ctx_fail(msg, msglen, where, u->trusted_certificate.pos,
                          "SSL_CTX_load_verify_locations(\"%s\") failed", u->trusted_certificate.s);
    }
    if (ok && u->certificate.s) ok = load_pair(ctx, &u->certificate, &u->certificate_key, &u->password_file, msg, msglen, where);
    if (ok && u->crl.s) ok = load_crl(ctx, &u->crl, msg, msglen, where);
    if (ok) ok = conf_commands(ctx, u->conf_commands, u->nconf_commands, false, msg, msglen, where);
    static const unsigned char alpn_h2[] = "\x02h2", alpn_h1[] = "\x08http/1.1";
    if (ok && SSL_CTX_set_alpn_protos(ctx, h2 ? alpn_h2 : alpn_h1, h2 ? 3 : 9) != 0)  /* 0 is success */
        ok = ctx_fail(msg, msglen, where, at, "SSL_CTX_set_alpn_protos() failed");
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (u->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_verify_depth(ctx, (int)u->verify_depth);
    }
    /* Sessions are kept by the caller per peer (sg_tls_session_get), not
     * in an internal cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!u->session_reuse) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (client_setup) client_setup(ctx);
    ERR_clear_error();
    return ctx;
}

void sg_ssl_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}
