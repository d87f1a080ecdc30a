/* nginx's $ssl_* variables and the client-certificate check, read from a
 * connection's SSL object. See tls_vars.h. */
#include "net/tls_vars.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/conf.h"

#define NOT_FOUND ((sg_str){ NULL, 0 })

static sg_str copy(sg_arena *a, const char *s, size_t n)
{
    return (sg_str){ sg_arena_strndup(a, s ? s : "", s ? n : 0), s ? n : 0 };
}

static sg_str copy_c(sg_arena *a, const char *s)
{
    return s ? copy(a, s, strlen(s)) : NOT_FOUND;
}

/* What a memory BIO holds, copied into the arena; the BIO is freed. */
static sg_str bio_take(BIO *b, sg_arena *a)
{
    if (!b) return NOT_FOUND;
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    sg_str v = n >= 0 ? copy(a, p, (size_t)n) : NOT_FOUND;
    BIO_free(b);
    return v;
}

static sg_str hex(sg_arena *a, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *o = sg_arena_alloc(a, 2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = digits[p[i] >> 4];
        o[2 * i + 1] = digits[p[i] & 15];
    }
    o[2 * n] = '\0';
    return (sg_str){ o, 2 * n };
}

/* A group (curve) as nginx names it: OpenSSL's short name, else its code. */
static void group_name(int nid, char *buf, size_t n)
{
    const char *sn = (nid & TLSEXT_nid_unknown) ? NULL : OBJ_nid2sn(nid);
    if (sn) snprintf(buf, n, "%s", sn);
    else snprintf(buf, n, "0x%04x", nid & 0xffff);
}

static sg_str curve(SSL *ssl, sg_arena *a)
{
    int nid = SSL_get_negotiated_group(ssl);
    if (nid == NID_undef || nid == 0) return copy(a, "", 0);
    char name[32];
    group_name(nid, name, sizeof(name));
    return copy_c(a, name);
}

static sg_str curves(SSL *ssl, sg_arena *a)
{
    int n = SSL_get1_curves(ssl, NULL);
    if (n <= 0) return copy(a, "", 0);
    int *nids = sg_arena_alloc(a, (size_t)n * sizeof(int));
    SSL_get1_curves(ssl, nids);
    char *o = sg_arena_alloc(a, (size_t)n * 32 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        char name[32];
        group_name(nids[i], name, sizeof(name));
        len += (size_t)snprintf(o + len, 32, "%s%s", i ? ":" : "", name);
    }
    return (sg_str){ o, len };
}

/* The client's offered ciphers, by name where OpenSSL knows them. */
static sg_str ciphers(SSL *ssl, sg_arena *a)
{
    const unsigned char *raw = NULL;
    size_t n = SSL_get0_raw_cipherlist(ssl, &raw);
    if (!raw || n < 2) return copy(a, "", 0);
    sg_strbuf b = { 0 };
    for (size_t i = 0; i + 1 < n; i += 2) {
        const SSL_CIPHER *c = SSL_CIPHER_find(ssl, raw + i);
        if (b.n) sg_strbuf_append(&b, ":", 1);
        if (c) sg_strbuf_append_str(&b, sg_str_from(SSL_CIPHER_get_name(c)));
        else sg_strbuf_appendf(&b, "0x%02x%02x", raw[i], raw[i + 1]);
    }
    sg_str v = copy(a, b.p, b.n);
    sg_strbuf_free(&b);
    return v;
}

static sg_str session_id(SSL *ssl, sg_arena *a)
{
    SSL_SESSION *s = SSL_get0_session(ssl);
    unsigned int n = 0;
    const unsigned char *id = s ? SSL_SESSION_get_id(s, &n) : NULL;
    return id && n ? hex(a, id, n) : copy(a, "", 0);
}

static sg_str dn(X509_NAME *name, bool legacy, sg_arena *a)
{
    if (!name) return NOT_FOUND;
    if (legacy) {
        char *p = X509_NAME_oneline(name, NULL, 0);
        sg_str v = copy_c(a, p);
        OPENSSL_free(p);
        return v;
    }
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0) {
        BIO_free(b);
        return NOT_FOUND;
    }
    return bio_take(b, a);
}

static sg_str raw_cert(X509 *x, sg_arena *a)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_X509(b, x) != 1) {
        BIO_free(b);
        return NOT_FOUND;
    }
    return bio_take(b, a);
}

/* $ssl_client_cert (deprecated in nginx): the PEM without its last line
 * end, every other line end followed by a tab. */
static sg_str tabbed_cert(sg_str pem, sg_arena *a)
{
    if (pem.n && pem.p[pem.n - 1] == '\n') pem.n--;
    size_t lf = 0;
    for (size_t i = 0; i < pem.n; i++) lf += pem.p[i] == '\n';
    char *o = sg_arena_alloc(a, pem.n + lf + 1), *q = o;
    for (size_t i = 0; i < pem.n; i++) {
        *q++ = pem.p[i];
        if (pem.p[i] == '\n') *q++ = '\t';
    }
    *q = '\0';
    return (sg_str){ o, (size_t)(q - o) };
}

/* $ssl_client_escaped_cert: the PEM, URL-encoded as a query component. */
static sg_str escaped_cert(sg_str pem, sg_arena *a)
{
    static const char digits[] = "0123456789ABCDEF";
    char *o = sg_arena_alloc(a, 3 * pem.n + 1), *q = o;
    for (size_t i = 0; i < pem.n; i++) {
        unsigned char ch = (unsigned char)pem.p[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            *q++ = (char)ch;
        } else {
            *q++ = '%';
            *q++ = digits[ch >> 4];
            *q++ = digits[ch & 15];
        }
    }
    *q = '\0';
    return (sg_str){ o, (size_t)(q - o) };
}

static sg_str asn1_time(const ASN1_TIME *t, sg_arena *a)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !t || ASN1_TIME_print(b, t) != 1) {
        BIO_free(b);
        return NOT_FOUND;
    }
    return bio_take(b, a);
}

static sg_str client_verify(SSL *ssl, X509 *x, sg_arena *a)
{
    if (!x) return copy_c(a, "NONE");
    long rc = SSL_get_verify_result(ssl);
    if (rc == X509_V_OK) return copy_c(a, "SUCCESS");
    const char *why = X509_verify_cert_error_string(rc);
    size_t n = strlen(why) + 8;
    char *o = sg_arena_alloc(a, n);
    snprintf(o, n, "FAILED:%s", why);
    return (sg_str){ o, strlen(o) };
}

/* The variables about the client's certificate: not found without one. */
static sg_str client_cert_var(SSL *ssl, int id, sg_arena *a)
{
    X509 *x = SSL_get1_peer_certificate(ssl);
    sg_str v = NOT_FOUND;
    char buf[64];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (id == SG_TLS_VAR_CLIENT_VERIFY) {
        v = client_verify(ssl, x, a);
    } else if (x) {
        switch (id) {
        case SG_TLS_VAR_CLIENT_S_DN: v = dn(X509_get_subject_name(x), false, a); break;
        case SG_TLS_VAR_CLIENT_I_DN: v = dn(X509_get_issuer_name(x), false, a); break;
        case SG_TLS_VAR_CLIENT_S_DN_LEGACY: v = dn(X509_get_subject_name(x), true, a); break;
        case SG_TLS_VAR_CLIENT_I_DN_LEGACY: v = dn(X509_get_issuer_name(x), true, a); break;
        case SG_TLS_VAR_CLIENT_RAW_CERT: v = raw_cert(x, a); break;
        case SG_TLS_VAR_CLIENT_CERT:
            v = raw_cert(x, a);
            if (v.p) v = tabbed_cert(v, a);
            break;
        case SG_TLS_VAR_CLIENT_ESCAPED_CERT:
            v = raw_cert(x, a);
            if (v.p) v = escaped_cert(v, a);
            break;
        case SG_TLS_VAR_CLIENT_FINGERPRINT:
            if (X509_digest(x, EVP_sha1(), md, &mdlen) == 1) v = hex(a, md, mdlen);
            break;
        case SG_TLS_VAR_CLIENT_SERIAL: {
            BIO *b = BIO_new(BIO_s_mem());
            if (b && i2a_ASN1_INTEGER(b, X509_get0_serialNumber(x)) >= 0) v = bio_take(b, a);
            else BIO_free(b);
            break;
        }
        case SG_TLS_VAR_CLIENT_V_START: v = asn1_time(X509_get0_notBefore(x), a); break;
        case SG_TLS_VAR_CLIENT_V_END: v = asn1_time(X509_get0_notAfter(x), a); break;
        case SG_TLS_VAR_CLIENT_V_REMAIN: {
            int days = 0, secs = 0;
            if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1) {
                if (days < 0 || (days == 0 && secs < 0)) days = 0;
                snprintf(buf, sizeof(buf), "%d", days);
                v = copy_c(a, buf);
            }
            break;
        }
        default: break;
        }
    }
    X509_free(x);
    ERR_clear_error();
    return v;
}

sg_str sg_tls_var(const sg_tls_conn *c, int id, sg_arena *a)
{
    if (id == SG_TLS_VAR_HTTPS) return c ? SG_STR("on") : SG_STR("");
    SSL *ssl = c ? sg_tls_ssl(c) : NULL;
    if (!ssl) return NOT_FOUND;
    switch (id) {
    case SG_TLS_VAR_PROTOCOL: return copy_c(a, SSL_get_version(ssl));
    case SG_TLS_VAR_CIPHER: return copy_c(a, SSL_get_cipher_name(ssl));
    case SG_TLS_VAR_CIPHERS: return ciphers(ssl, a);
    case SG_TLS_VAR_CURVE: return curve(ssl, a);
    case SG_TLS_VAR_CURVES: return curves(ssl, a);
    case SG_TLS_VAR_SERVER_NAME: return copy_c(a, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    case SG_TLS_VAR_SESSION_ID: return session_id(ssl, a);
    case SG_TLS_VAR_SESSION_REUSED: return SSL_session_reused(ssl) == 1 ? SG_STR("r") : SG_STR(".");
    case SG_TLS_VAR_ALPN_PROTOCOL: {
        const unsigned char *p = NULL;
        unsigned int n = 0;
        SSL_get0_alpn_selected(ssl, &p, &n);
        return copy(a, (const char *)p, p ? n : 0);
    }
    case SG_TLS_VAR_EARLY_DATA: return SG_STR("");   /* no 0-RTT data is accepted */
    default: return client_cert_var(ssl, id, a);
    }
}

/* nginx's ngx_ssl_verify_error_optional: what optional_no_ca forgives. */
static bool unknown_issuer(long rc)
{
    return rc == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || rc == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT || rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           rc == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

int sg_tls_client_check(const sg_tls_conn *c, int mode, char *why, size_t whylen)
{
    SSL *ssl = c ? sg_tls_ssl(c) : NULL;
    if (!ssl || mode == SG_SSL_VERIFY_OFF) return 0;
    long rc = SSL_get_verify_result(ssl);
    if (rc != X509_V_OK && !(mode == SG_SSL_VERIFY_OPTIONAL_NO_CA && unknown_issuer(rc))) {
        snprintf(why, whylen, "client SSL certificate verify error: (%ld:%s)", rc, X509_verify_cert_error_string(rc));
        return 495;
    }
    if (mode == SG_SSL_VERIFY_ON) {
        X509 *x = SSL_get1_peer_certificate(ssl);
        if (!x) {
            snprintf(why, whylen, "client sent no required SSL certificate");
            return 496;
        }
        X509_free(x);
    }
    return 0;
}
