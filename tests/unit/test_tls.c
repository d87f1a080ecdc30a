/* TLS: the server side through net/tls.h against a plain OpenSSL client
 * (a thread on the other end of a socket pair), the client side against
 * our own server, and the ssl_* / proxy_ssl_* directives as a user of
 * nginx configurations would check them. Certificates are made once per
 * run with the openssl tool, in a temporary folder. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "conf/ssl_conf.h"
#include "core/loop.h"
#include "net/tls.h"
#include "proxy/router.h"
#include "upstream/pool.h"

#include "seed_dir.h"

/* ---------------- certificates (once per run) ---------------- */

static const char *const gen_cmds[] = {
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=a.test "
    "-addext subjectAltName=DNS:a.test -keyout a-ec.key -out a-ec.pem",
    "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=a.test "
    "-addext subjectAltName=DNS:a.test -keyout a-rsa.key -out a-rsa.pem",
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=b.test "
    "-addext subjectAltName=DNS:b.test,DNS:*.b.test -keyout b.key -out b.pem",
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=c.test "
    "-addext subjectAltName=DNS:c1.test -keyout c.key -out c.pem",
    "openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out dh.pem",
    "openssl pkey -in a-ec.key -aes128 -passout pass:secret -out enc.key",
    "mkdir -p certs && cp a-rsa.pem certs/cert.pem && cp a-rsa.key certs/key.pem",
};

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    char dir[] = "/tmp/sg-tls-test-XXXXXX", cmd[1024];
    if (!mkdtemp(dir)) return;
    for (size_t i = 0; i < sizeof(gen_cmds) / sizeof(gen_cmds[0]); i++) {
        snprintf(cmd, sizeof(cmd), "cd %s && %s >/dev/null 2>&1", dir, gen_cmds[i]);
        if (system(cmd) != 0) fprintf(stderr, "test_tls: failed: %s\n", gen_cmds[i]);
    }
    setenv("SG_TLS_TEST_CERTS", dir, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    const char *d = getenv("SG_TLS_TEST_CERTS");
    char cmd[256];
    if (d && strncmp(d, "/tmp/sg-tls-test-", 17) == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
        if (system(cmd) != 0) fprintf(stderr, "test_tls: could not remove %s\n", d);
    }
}

static const char *certdir(void)
{
    const char *d = getenv("SG_TLS_TEST_CERTS");
    if (!d) cr_skip_test("no test certificates");
    return d;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    sg_tls_init(sg_router_sni);        /* as main() does before loading: SNI and ALPN */
}

TestSuite(tls, .init = setup, .timeout = 30);
TestSuite(tls_conf, .init = setup, .timeout = 30);

/* ---------------- configurations ---------------- */

static char err[2048];

static sg_conf *load(const char *text)
{
    err[0] = '\0';
    return sg_conf_load_string(text, strlen(text), "t.conf", certdir(), err, sizeof(err));
}

static void expect_error(const char *text, const char *want)
{
    sg_conf *c = load(text);
    if (c) sg_conf_unref(c);
    cr_assert_null(c, "loaded, expected: %s", want);
    cr_assert(strstr(err, want), "error \"%s\" does not contain \"%s\"", err, want);
}

/* Three servers on one ssl+http2 address (a: ECDSA + RSA, b with a
 * wildcard, c by regex) and one plain-ALPN ssl address. */
#define SERVERS \
    "events {}\nhttp {\n" \
    "  server { listen 127.0.0.1:4431 ssl http2; server_name a.test;\n" \
    "    ssl_certificate a-ec.pem; ssl_certificate_key a-ec.key;\n" \
    "    ssl_certificate a-rsa.pem; ssl_certificate_key a-rsa.key; }\n" \
    "  server { listen 127.0.0.1:4431 ssl; listen 127.0.0.1:4432 ssl; server_name b.test *.b.test;\n" \
    "    ssl_certificate b.pem; ssl_certificate_key b.key; }\n" \
    "  server { listen 127.0.0.1:4431; server_name ~^c\\d+\\.test$;\n" \
    "    ssl_certificate c.pem; ssl_certificate_key c.key; }\n" \
    "}\n"

static const sg_listen_group *group(sg_conf *c, const char *text)
{
    for (size_t i = 0; i < c->nlistens; i++)
        if (strcmp(c->listens[i].text, text) == 0) return &c->listens[i];
    cr_assert_fail("no listen group %s", text);
    return NULL;
}

static sg_server_conf *server_named(sg_conf *c, const char *name)
{
    for (size_t i = 0; i < c->nservers; i++)
        for (size_t k = 0; k < c->servers[i]->nnames; k++)
            if (sg_str_eq_lit(c->servers[i]->names[k].name, name)) return c->servers[i];
    cr_assert_fail("no server %s", name);
    return NULL;
}

/* ---------------- a plain OpenSSL client in a thread ---------------- */

typedef struct cli {
    int fd;
    const char *sni;
    const char *alpn;                  /* wire format, NUL-terminated (no NUL inside) */
    const char *sigalgs;
    int max_version;
    SSL_SESSION *resume;
    const char *garbage;               /* sent raw instead of a ClientHello */
    size_t garbage_len;
    size_t big;                        /* bytes both ways; 0: "hello" / "bye" */
    /* results */
    bool connected, data_ok, reused;
    char cn[64], alpn_got[32];
    int keytype;
    SSL_SESSION *session;
} cli;

static unsigned char pattern(size_t i, unsigned seed)
{
    return (unsigned char)((i * 31 + seed) ^ (i >> 9));
}

static bool cli_exchange(cli *k, SSL *ssl)
{
    if (k->big) {
        unsigned char *buf = malloc(k->big);
        for (size_t i = 0; i < k->big; i++) buf[i] = pattern(i, 7);
        size_t off = 0;
        while (off < k->big) {
            size_t w = 0;
            if (SSL_write_ex(ssl, buf + off, k->big - off, &w) != 1) break;
            off += w;
        }
        bool ok = off == k->big;
        off = 0;
        while (ok && off < k->big) {
            size_t r = 0;
            if (SSL_read_ex(ssl, buf + off, k->big - off, &r) != 1) break;
            off += r;
        }
        for (size_t i = 0; ok && i < k->big; i++) ok = buf[i] == pattern(i, 11);
        free(buf);
        return ok && off == k->big;
    }
    char buf[8] = { 0 };
    size_t r = 0, got = 0;
    while (got < 5 && SSL_read_ex(ssl, buf + got, 5 - got, &r) == 1) got += r;
    if (got != 5 || memcmp(buf, "hello", 5) != 0) return false;
    size_t w;
    return SSL_write_ex(ssl, "bye", 3, &w) == 1;
}

static void cli_record(cli *k, SSL *ssl)
{
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (x) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, k->cn, sizeof(k->cn));
        k->keytype = EVP_PKEY_get_base_id(X509_get0_pubkey(x));
        X509_free(x);
    }
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(ssl, &p, &n);
    snprintf(k->alpn_got, sizeof(k->alpn_got), "%.*s", (int)n, p ? (const char *)p : "");
    k->reused = SSL_session_reused(ssl) == 1;
}

static void *cli_run(void *arg)
{
    cli *k = arg;
    if (k->garbage) {
        ssize_t w = write(k->fd, k->garbage, k->garbage_len);
        char buf[256];
        (void)w;
        while (read(k->fd, buf, sizeof(buf)) > 0) {}
        close(k->fd);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (k->max_version) SSL_CTX_set_max_proto_version(ctx, k->max_version);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, k->fd);
    if (k->sni) SSL_set_tlsext_host_name(ssl, k->sni);
    if (k->alpn) SSL_set_alpn_protos(ssl, (const unsigned char *)k->alpn, (unsigned)strlen(k->alpn));
    if (k->sigalgs) SSL_set1_sigalgs_list(ssl, k->sigalgs);
    if (k->resume) SSL_set_session(ssl, k->resume);
    if (SSL_connect(ssl) == 1) {
        k->connected = true;
        cli_record(k, ssl);
        k->data_ok = cli_exchange(k, ssl);
        k->session = SSL_get1_session(ssl);     /* after reading: TLS 1.3 tickets came */
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(k->fd);
    return NULL;
}

/* ---------------- the server side through our API ---------------- */

static int pair(int fds[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    return fds[0];
}

static bool wait_fd(int fd, bool out)
{
    struct pollfd p = { .fd = fd, .events = out ? POLLOUT : POLLIN };
    return poll(&p, 1, 5000) > 0;
}

static sg_io_result server_handshake(sg_tls_conn *t, int fd)
{
    for (;;) {
        sg_io_result r = sg_tls_handshake(t);
        if (r != SG_IO_AGAIN) return r;
        if (!wait_fd(fd, sg_tls_want_write(t))) return SG_IO_ERROR;
    }
}

static bool server_write(sg_tls_conn *t, int fd, const char *p, size_t n)
{
    while (n > 0) {
        struct iovec iov = { (void *)p, n };
        ssize_t w = sg_tls_writev(t, &iov, 1);
        if (w < 0 && errno == EAGAIN && wait_fd(fd, !sg_tls_write_wants_read(t))) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads until n bytes or the end; returns the count (-1 on error). */
static ssize_t server_read(sg_tls_conn *t, int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = sg_tls_read(t, buf + got, n - got);
        if (r < 0 && errno == EAGAIN && wait_fd(fd, sg_tls_read_wants_write(t))) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

typedef struct served {
    sg_io_result hs;
    const sg_server_conf *server;
    char alpn[32], sni[64];
    bool reused, saw_eof;
} served;

/* One connection: handshake, "hello" out, "bye" in, then the end. */
static served serve(const sg_listen_group *g, cli *k)
{
    int fds[2];
    int fd = pair(fds);
    k->fd = fds[1];
    pthread_t th;
    pthread_create(&th, NULL, cli_run, k);
    served s = { 0 };
    sg_tls_conn *t = sg_tls_server_new(g, fd, NULL);
    cr_assert_not_null(t);
    s.hs = server_handshake(t, fd);
    if (s.hs == SG_IO_DONE) {
        s.server = sg_tls_server(t);
        sg_str a = sg_tls_alpn(t);
        snprintf(s.alpn, sizeof(s.alpn), "%.*s", (int)a.n, a.p);
        const char *sni = sg_tls_server_name(t);
        snprintf(s.sni, sizeof(s.sni), "%s", sni ? sni : "");
        s.reused = sg_tls_session_reused(t);
        char buf[8];
        if (server_write(t, fd, "hello", 5) && server_read(t, fd, buf, 3) == 3)
            s.saw_eof = server_read(t, fd, buf, sizeof(buf)) == 0;
        sg_tls_shutdown(t);
    }
    sg_tls_free(t);
    close(fd);
    pthread_join(th, NULL);
    cr_assert_eq(ERR_peek_error(), 0, "OpenSSL error queue left non-empty");
    return s;
}

/* ---------------- handshake, SNI, ALPN ---------------- */

Test(tls, handshake_and_data_both_ways)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    cli k = { .sni = "a.test" };
    served s = serve(group(c, "127.0.0.1:4431"), &k);
    cr_assert_eq(s.hs, SG_IO_DONE);
    cr_assert(k.connected && k.data_ok);
    cr_assert(s.saw_eof, "close_notify should read as the end (0)");
    cr_assert_str_eq(k.cn, "a.test");
    cr_assert_str_eq(s.sni, "a.test");
    SSL_SESSION_free(k.session);
    sg_conf_unref(c);
}

Test(tls, sni_selects_the_server_and_its_certificate)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    const sg_listen_group *g = group(c, "127.0.0.1:4431");
    static const struct { const char *sni, *cn, *server; } cases[] = {
        { "a.test", "a.test", "a.test" },
        { "b.test", "b.test", "b.test" },
        { "B.Test", "b.test", "b.test" },          /* names are caseless */
        { "x.b.test", "b.test", "b.test" },        /* *.b.test */
        { "b.test.", "b.test", "b.test" },         /* trailing dot */
        { "c1.test", "c.test", "c\\d+\\.test$" },  /* regex server_name (no "~") */
        { "nobody.test", "a.test", "a.test" },     /* default server */
        { NULL, "a.test", "a.test" },              /* no SNI: default server */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli k = { .sni = cases[i].sni };
        served s = serve(g, &k);
        cr_assert_eq(s.hs, SG_IO_DONE, "%s", cases[i].sni);
        cr_assert(k.data_ok, "%s", cases[i].sni);
        cr_assert_str_eq(k.cn, cases[i].cn, "SNI %s", cases[i].sni);
        const char *want = cases[i].server;
        if (want[0] == 'c') cr_assert_str_eq(s.server->names[0].name.p, "^c\\d+\\.test$");
        else cr_assert_eq(s.server, server_named(c, want), "SNI %s", cases[i].sni);
        SSL_SESSION_free(k.session);
    }
    sg_conf_unref(c);
}

Test(tls, rsa_and_ecdsa_certificates_side_by_side)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    const sg_listen_group *g = group(c, "127.0.0.1:4431");
    cli rsa = { .sni = "a.test", .sigalgs = "rsa_pss_rsae_sha256:rsa_pkcs1_sha256" };
    cli ec = { .sni = "a.test", .sigalgs = "ecdsa_secp256r1_sha256" };
    cr_assert_eq(serve(g, &rsa).hs, SG_IO_DONE);
    cr_assert_eq(serve(g, &ec).hs, SG_IO_DONE);
    cr_assert_eq(rsa.keytype, EVP_PKEY_RSA);
    cr_assert_eq(ec.keytype, EVP_PKEY_EC);
    SSL_SESSION_free(rsa.session);
    SSL_SESSION_free(ec.session);
    sg_conf_unref(c);
}

Test(tls, alpn_offers_h2_only_where_http2_is_on)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    const sg_listen_group *h2 = group(c, "127.0.0.1:4431"), *h1 = group(c, "127.0.0.1:4432");
    static const struct { const char *alpn; bool h2group; const char *want; } cases[] = {
        { "\x02h2\x08http/1.1", true, "h2" },
        { "\x08http/1.1\x02h2", true, "h2" },          /* the server's preference */
        { "\x08http/1.1", true, "http/1.1" },
        { NULL, true, "" },                            /* no ALPN at all */
        { "\x02h2\x08http/1.1", false, "http/1.1" },
        { "\x08http/1.0", false, "http/1.0" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli k = { .sni = "b.test", .alpn = cases[i].alpn };
        served s = serve(cases[i].h2group ? h2 : h1, &k);
        cr_assert_eq(s.hs, SG_IO_DONE, "case %zu", i);
        cr_assert_str_eq(s.alpn, cases[i].want, "case %zu", i);
        cr_assert_str_eq(k.alpn_got, cases[i].want, "case %zu", i);
        SSL_SESSION_free(k.session);
    }
    /* a client that speaks only h2 to an address without http2: refused,
     * as nginx does (no_application_protocol) */
    cli k = { .sni = "b.test", .alpn = "\x02h2" };
    served s = serve(h1, &k);
    cr_assert_eq(s.hs, SG_IO_ERROR);
    cr_assert(!k.connected);
    sg_conf_unref(c);
}

Test(tls, garbage_instead_of_a_client_hello_is_an_error)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    static const char http[] = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    static const char bad_record[] = "\x16\x03\x01\x00\x05garbage-after-a-record-header";
    static const char cut[] = "\x16\x03\x03\x40\x00short";   /* a record that never completes */
    static const struct { const char *p; size_t n; } junk[] = {
        { http, sizeof(http) - 1 }, { bad_record, sizeof(bad_record) - 1 }, { cut, sizeof(cut) - 1 },
    };
    for (size_t i = 0; i < 3; i++) {
        int fds[2];
        int fd = pair(fds);
        sg_tls_conn *t = sg_tls_server_new(group(c, "127.0.0.1:4431"), fd, NULL);
        ssize_t w = write(fds[1], junk[i].p, junk[i].n);
        cr_assert_eq(w, (ssize_t)junk[i].n);
        if (i == 2) close(fds[1]);     /* cut short by the peer's close: an error, not a hang */
        cr_assert_eq(server_handshake(t, fd), SG_IO_ERROR, "junk %zu", i);
        cr_assert(errno == EPROTO || errno == ECONNRESET, "junk %zu: %s", i, strerror(errno));
        cr_assert_eq(ERR_peek_error(), 0, "the error queue is left empty");
        /* and the connection stays failed, whatever is called next */
        char buf[4];
        cr_assert_eq(sg_tls_read(t, buf, sizeof(buf)), -1);
        struct iovec iov = { "x", 1 };
        cr_assert_eq(sg_tls_writev(t, &iov, 1), -1);
        cr_assert_eq(sg_tls_shutdown(t), SG_IO_DONE);
        sg_tls_free(t);
        close(fd);
        if (i != 2) close(fds[1]);
    }
    sg_conf_unref(c);
}

/* 1 MB each way at once, the server writing from several iovecs through
 * the writev contract (retry with the same bytes first). */
Test(tls, one_megabyte_both_ways)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    const size_t big = 1 << 20;
    int fds[2];
    int fd = pair(fds);
    cli k = { .fd = fds[1], .sni = "a.test", .big = big };
    pthread_t th;
    pthread_create(&th, NULL, cli_run, &k);
    sg_tls_conn *t = sg_tls_server_new(group(c, "127.0.0.1:4431"), fd, NULL);
    cr_assert_eq(server_handshake(t, fd), SG_IO_DONE);
    unsigned char *out = malloc(big), *in = malloc(big);
    for (size_t i = 0; i < big; i++) out[i] = pattern(i, 11);
    size_t sent = 0, got = 0;
    while (sent < big || got < big) {
        bool blocked_out = sent == big, blocked_in = got == big;
        if (sent < big) {
            size_t left = big - sent, a = left < 7 ? left : 7, b = left - a < 5000 ? left - a : 5000;
            struct iovec iov[3] = { { out + sent, a }, { out + sent + a, b }, { out + sent + a + b, left - a - b } };
            ssize_t w = sg_tls_writev(t, iov, 3);
            if (w > 0) sent += (size_t)w;
            else cr_assert(w < 0 && errno == EAGAIN, "writev: %s", strerror(errno));
            blocked_out = w < 0;
        }
        if (got < big) {
            ssize_t r = sg_tls_read(t, in + got, big - got);
            if (r > 0) got += (size_t)r;
            else cr_assert(r < 0 && errno == EAGAIN, "read: %zd %s", r, strerror(errno));
            blocked_in = r < 0;
        }
        if (blocked_out && blocked_in) {
            struct pollfd p = { .fd = fd, .events = (short)((sent < big ? POLLOUT : 0) | POLLIN) };
            cr_assert_gt(poll(&p, 1, 5000), 0, "stalled at sent %zu got %zu", sent, got);
        }
    }
    for (size_t i = 0; i < big; i++)
        if (in[i] != pattern(i, 7)) cr_assert_fail("byte %zu differs", i);
    char end;
    cr_assert_eq(server_read(t, fd, &end, 1), 0);
    pthread_join(th, NULL);
    cr_assert(k.data_ok, "the client saw other bytes than were sent");
    SSL_SESSION_free(k.session);
    sg_tls_free(t);
    close(fd);
    free(out);
    free(in);
    sg_conf_unref(c);
}

/* ---------------- sessions ---------------- */

static void resume_twice(const sg_listen_group *g, int max_version, const char *sni, bool want_reused)
{
    cli first = { .sni = sni, .max_version = max_version };
    cr_assert_eq(serve(g, &first).hs, SG_IO_DONE);
    cr_assert_not_null(first.session);
    cli again = { .sni = sni, .max_version = max_version, .resume = first.session };
    served s = serve(g, &again);
    cr_assert_eq(s.hs, SG_IO_DONE);
    cr_assert(again.data_ok);
    cr_assert_eq(again.reused, want_reused, "%s via %s: reused %d", sni, max_version ? "TLS 1.2" : "TLS 1.3",
                 again.reused);
    cr_assert_eq(s.reused, want_reused);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
}

Test(tls, tickets_resume_sessions)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    const sg_listen_group *g = group(c, "127.0.0.1:4431");
    resume_twice(g, 0, "a.test", true);
    resume_twice(g, TLS1_2_VERSION, "a.test", true);
    resume_twice(g, 0, "b.test", true);        /* a server SNI switched to */
    sg_conf_unref(c);
}

Test(tls, session_cache_without_tickets)
{
    sg_conf *c = load("events {}\nhttp {\n"
                      "  server { listen 127.0.0.1:4431 ssl; ssl_certificate b.pem; ssl_certificate_key b.key;\n"
                      "    ssl_session_tickets off; ssl_session_cache shared:SSL:1m; ssl_session_timeout 1h; }\n"
                      "  server { listen 127.0.0.1:4432 ssl; ssl_certificate b.pem; ssl_certificate_key b.key;\n"
                      "    ssl_session_tickets off; }\n"
                      "}\n");
    cr_assert_not_null(c, "%s", err);
    resume_twice(group(c, "127.0.0.1:4431"), TLS1_2_VERSION, "b.test", true);   /* session ids */
    resume_twice(group(c, "127.0.0.1:4431"), 0, "b.test", true);                /* stateful TLS 1.3 tickets */
    resume_twice(group(c, "127.0.0.1:4432"), TLS1_2_VERSION, "b.test", false);  /* cache "none" */
    sg_conf_unref(c);
}

/* Ticket keys are random per generation: a reload forgets them, and an
 * old ticket just means a full handshake. */
Test(tls, tickets_do_not_survive_a_new_generation)
{
    sg_conf *c1 = load(SERVERS), *c2 = load(SERVERS);
    cr_assert(c1 && c2, "%s", err);
    cli first = { .sni = "a.test" };
    cr_assert_eq(serve(group(c1, "127.0.0.1:4431"), &first).hs, SG_IO_DONE);
    cli again = { .sni = "a.test", .resume = first.session };
    served s = serve(group(c2, "127.0.0.1:4431"), &again);
    cr_assert_eq(s.hs, SG_IO_DONE);
    cr_assert(again.data_ok && !again.reused);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    sg_conf_unref(c1);
    sg_conf_unref(c2);
}

Test(tls, protocols_are_enforced)
{
    sg_conf *c = load("events {}\nhttp { server { listen 127.0.0.1:4431 ssl; ssl_protocols TLSv1.3;\n"
                      "  ssl_certificate b.pem; ssl_certificate_key b.key; } }\n");
    cr_assert_not_null(c, "%s", err);
    cli old = { .max_version = TLS1_2_VERSION };
    served s = serve(group(c, "127.0.0.1:4431"), &old);
    cr_assert_eq(s.hs, SG_IO_ERROR);
    cr_assert(!old.connected);
    sg_conf_unref(c);
}

/* ---------------- upstream side: our client against our server ---------------- */

/* Both ends through the API in one thread, interleaved. */
static void pump(sg_tls_conn *a, int fa, sg_tls_conn *b, int fb, sg_io_result *ra, sg_io_result *rb)
{
    *ra = *rb = SG_IO_AGAIN;
    for (int i = 0; i < 500 && (*ra == SG_IO_AGAIN || *rb == SG_IO_AGAIN); i++) {
        if (*ra == SG_IO_AGAIN) *ra = sg_tls_handshake(a);
        if (*rb == SG_IO_AGAIN) *rb = sg_tls_handshake(b);
        if (*ra == SG_IO_ERROR || *rb == SG_IO_ERROR) {
            /* let the other side read the alert */
            for (int j = 0; j < 20 && (*ra == SG_IO_AGAIN || *rb == SG_IO_AGAIN); j++) {
                poll(NULL, 0, 5);
                if (*ra == SG_IO_AGAIN) *ra = sg_tls_handshake(a);
                if (*rb == SG_IO_AGAIN) *rb = sg_tls_handshake(b);
            }
            return;
        }
        struct pollfd p[2] = { { .fd = fa, .events = POLLIN }, { .fd = fb, .events = POLLIN } };
        poll(p, 2, 20);
    }
}

typedef struct upstream_run {
    sg_io_result client, server;
    char alpn[16];
    bool reused;
    sg_tls_session *session;
} upstream_run;

/* Client cl on fds[0] against a server of g on fds[1]: the handshake and
 * one response. Frees the server side; cl and fds[0] stay the caller's. */
static upstream_run run_client(sg_tls_conn *cl, int fds[2], const sg_listen_group *g)
{
    sg_tls_conn *sv = sg_tls_server_new(g, fds[1], NULL);
    cr_assert(cl && sv);
    upstream_run u = { 0 };
    pump(cl, fds[0], sv, fds[1], &u.client, &u.server);
    if (u.client == SG_IO_DONE && u.server == SG_IO_DONE) {
        sg_str a = sg_tls_alpn(cl);
        snprintf(u.alpn, sizeof(u.alpn), "%.*s", (int)a.n, a.p);
        u.reused = sg_tls_session_reused(cl);
        /* a response, so that the TLS 1.3 ticket reaches the client */
        struct iovec iov = { "ok", 2 };
        cr_assert_eq(sg_tls_writev(sv, &iov, 1), 2);
        /* One read once the socket is readable, as an edge-triggered
         * codec does: the TLS 1.3 tickets in front of the data must not
         * make it say EAGAIN (no new edge would come). */
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        cr_assert_eq(poll(&p, 1, 5000), 1);
        char buf[4];
        cr_assert_eq(sg_tls_read(cl, buf, sizeof(buf)), 2);
        u.session = sg_tls_session_get(cl);
    }
    sg_tls_free(sv);
    close(fds[1]);
    cr_assert_eq(ERR_peek_error(), 0);
    return u;
}

static struct sockaddr_in upstream_addr(void)
{
    return (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(443), .sin_addr.s_addr = htonl(0x7f000001) };
}

static upstream_run connect_upstream(struct ssl_ctx_st *ctx, const sg_listen_group *g, const char *sni,
                                     const char *verify_name, sg_tls_session *reuse)
{
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    struct sockaddr_in peer = upstream_addr();
    sg_tls_conn *cl = sg_tls_client_new(ctx, fds[0], sni, verify_name, reuse, (const struct sockaddr *)&peer);
    upstream_run u = run_client(cl, fds, g);
    sg_tls_free(cl);
    close(fds[0]);
    return u;
}

#define UPSTREAM_CONF(extra) \
    "events {}\nhttp {\n" \
    "  server { listen 127.0.0.1:4431 ssl http2; server_name a.test;\n" \
    "    ssl_certificate a-ec.pem; ssl_certificate_key a-ec.key;\n" extra " }\n" \
    "  server { listen 127.0.0.1:4432 ssl; server_name a.test;\n" \
    "    ssl_certificate a-ec.pem; ssl_certificate_key a-ec.key; }\n" \
    "}\n"

static const sg_conf_pos here = { "t.conf", 1, 1 };

Test(tls, upstream_verifies_name_and_chain)
{
    sg_conf *c = load(UPSTREAM_CONF("proxy_ssl_verify on; proxy_ssl_trusted_certificate a-ec.pem; "
                                    "proxy_ssl_server_name on; grpc_ssl_verify on; "
                                    "grpc_ssl_trusted_certificate a-ec.pem;"));
    cr_assert_not_null(c, "%s", err);
    sg_loc_conf *lc = &c->servers[0]->root->conf;
    cr_assert(lc->proxy.ssl.verify && lc->proxy.ssl.server_name);
    cr_assert(sg_ssl_upstream_ctx(c, &lc->proxy.ssl, false, here, err, sizeof(err)), "%s", err);
    cr_assert(sg_ssl_upstream_ctx(c, &lc->grpc.ssl, true, here, err, sizeof(err)), "%s", err);
    const sg_listen_group *h2 = group(c, "127.0.0.1:4431"), *h1 = group(c, "127.0.0.1:4432");

    upstream_run ok = connect_upstream(lc->proxy.ssl.ctx, h1, "a.test", "a.test", NULL);
    cr_assert_eq(ok.client, SG_IO_DONE);
    cr_assert_str_eq(ok.alpn, "http/1.1");
    upstream_run grpc = connect_upstream(lc->grpc.ssl.ctx, h2, "a.test", "a.test", NULL);
    cr_assert_eq(grpc.client, SG_IO_DONE);
    cr_assert_str_eq(grpc.alpn, "h2", "grpcs:// speaks h2");

    upstream_run bad = connect_upstream(lc->proxy.ssl.ctx, h1, "a.test", "wrong.test", NULL);
    cr_assert_eq(bad.client, SG_IO_ERROR, "a certificate for another name must fail");
    cr_assert_eq(bad.server, SG_IO_ERROR);

    /* session reuse: the next connection to the peer resumes */
    cr_assert_not_null(ok.session);
    upstream_run again = connect_upstream(lc->proxy.ssl.ctx, h1, "a.test", "a.test", ok.session);
    cr_assert_eq(again.client, SG_IO_DONE);
    cr_assert(again.reused);
    sg_tls_session_free(ok.session);
    sg_tls_session_free(again.session);
    sg_tls_session_free(grpc.session);
    sg_conf_unref(c);
}

/* A connection the worker's pool makes (sg_pool_tls_new) for a peer and
 * key (context and name), keeping its session for the next one. */
static upstream_run pool_connect(sg_pool *pool, sg_peer *peer, const sg_ssl_upstream_conf *u, const sg_tls_key *k,
                                 const sg_listen_group *g)
{
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    sg_tls_conn *cl = sg_pool_tls_new(pool, peer, u, k, fds[0]);
    upstream_run r = run_client(cl, fds, g);
    if (r.client == SG_IO_DONE) cr_assert(sg_pool_tls_keep_session(pool, peer, u, k, cl));
    sg_tls_session_free(r.session);
    sg_tls_free(cl);
    close(fds[0]);
    return r;
}

Test(tls, pool_resumes_the_session_of_the_same_peer_and_name)
{
    sg_conf *c = load(UPSTREAM_CONF("proxy_ssl_verify on; proxy_ssl_trusted_certificate a-ec.pem; "
                                    "proxy_ssl_server_name on;"));
    cr_assert_not_null(c, "%s", err);
    sg_ssl_upstream_conf *u = &c->servers[0]->root->conf.proxy.ssl;
    cr_assert(sg_ssl_upstream_ctx(c, u, false, here, err, sizeof(err)), "%s", err);
    const sg_listen_group *h1 = group(c, "127.0.0.1:4432");
    sg_upstream_server_conf sc = { .name = "a.test:443" };
    struct sockaddr_in addr = upstream_addr();
    memcpy(&sc.addr, &addr, sizeof(addr));
    sg_peer peers[2] = { { .conf = &sc }, { .conf = &sc, .index = 1 } };
    sg_pool pool = { 0 };
    const sg_tls_key key = { u->ctx, SG_STR("a.test") }, no_name = { u->ctx, SG_STR("") };

    cr_assert(!pool_connect(&pool, &peers[0], u, &key, h1).reused, "a first connection: full handshake");
    cr_assert(pool_connect(&pool, &peers[0], u, &key, h1).reused, "the next one resumes");
    cr_assert(!pool_connect(&pool, &peers[1], u, &key, h1).reused, "sessions are per peer");
    sg_pool_tls_forget_session(&pool, &peers[0], &key);   /* as after a failed handshake */
    cr_assert(!pool_connect(&pool, &peers[0], u, &key, h1).reused);
    cr_assert_null(sg_pool_tls_new(&pool, &peers[0], u, &no_name, -1), "verify on and no name: refused");
    sg_pool_retire(&pool);   /* frees the kept sessions (ASan: no leak) */
    cr_assert_null(pool.sessions);
    sg_conf_unref(c);
}

Test(tls, upstream_without_verification_and_shared_contexts)
{
    sg_conf *c = load("events {}\nhttp { proxy_ssl_protocols TLSv1.2;\n"
                      "  server { listen 127.0.0.1:4432 ssl; ssl_certificate b.pem; ssl_certificate_key b.key;\n"
                      "    location /x { proxy_ssl_name $host; }\n"
                      "    location /y { proxy_ssl_session_reuse off; } } }\n");
    cr_assert_not_null(c, "%s", err);
    sg_location *root = c->servers[0]->root;
    sg_ssl_upstream_conf *srv = &root->conf.proxy.ssl, *x = &root->children[0]->conf.proxy.ssl,
                         *y = &root->children[1]->conf.proxy.ssl;
    cr_assert(x->name_set && !x->name.literal);
    cr_assert(!y->session_reuse && srv->session_reuse);
    cr_assert_eq(x->protocols, SG_SSL_TLSv1_2, "inherited from http");
    cr_assert(sg_ssl_upstream_ctx(c, srv, false, here, err, sizeof(err)));
    cr_assert(sg_ssl_upstream_ctx(c, x, false, here, err, sizeof(err)));
    cr_assert(sg_ssl_upstream_ctx(c, y, false, here, err, sizeof(err)));
    cr_assert_eq(srv->ctx, x->ctx, "the same settings share one context");
    cr_assert_neq(srv->ctx, y->ctx);
    upstream_run u = connect_upstream(x->ctx, group(c, "127.0.0.1:4432"), NULL, NULL, NULL);
    cr_assert_eq(u.client, SG_IO_DONE);
    sg_tls_session_free(u.session);
    sg_conf_unref(c);
}

Test(tls_conf, upstream_verify_needs_a_trusted_certificate)
{
    sg_conf *c = load(UPSTREAM_CONF("grpc_ssl_verify on; proxy_ssl_certificate a-ec.pem;"));
    cr_assert_not_null(c, "%s", err);
    sg_loc_conf *lc = &c->servers[0]->root->conf;
    sg_conf_pos at = { "t.conf", 9, 3 };
    cr_assert(!sg_ssl_upstream_ctx(c, &lc->grpc.ssl, true, at, err, sizeof(err)));
    cr_assert_str_eq(err, "t.conf:9:3: no \"grpc_ssl_trusted_certificate\" for \"grpc_ssl_verify\"");
    cr_assert(!sg_ssl_upstream_ctx(c, &lc->proxy.ssl, false, at, err, sizeof(err)));
    cr_assert(strstr(err, "t.conf:5:"), "%s", err);
    cr_assert(strstr(err, "no \"proxy_ssl_certificate_key\" is defined for certificate"), "%s", err);
    sg_conf_unref(c);
}

/* ---------------- the accept driver on a real loop ---------------- */

typedef struct ready_state {
    sg_loop *loop;
    int calls;
    char got[8];
    char alpn[8];
    int peer_port, local_port;
} ready_state;

static void on_ready(const sg_tls_accepted *a, void *arg)
{
    ready_state *st = arg;
    st->calls++;
    st->peer_port = ntohs(((const struct sockaddr_in *)a->peer)->sin_port);
    st->local_port = ntohs(((const struct sockaddr_in *)a->local)->sin_port);
    sg_str p = sg_tls_alpn(a->tls);
    snprintf(st->alpn, sizeof(st->alpn), "%.*s", (int)p.n, p.p);
    /* read at once, as a codec must: the bytes may be in OpenSSL's buffer */
    for (int i = 0; i < 200; i++) {
        ssize_t r = sg_tls_read(a->tls, st->got, 5);
        if (r == 5) break;
        if (r < 0 && errno == EAGAIN) poll(NULL, 0, 5);
        else break;
    }
    struct iovec iov = { "hello", 5 };
    sg_tls_writev(a->tls, &iov, 1);
    sg_tls_free(a->tls);
    close(a->fd);
    sg_loop_stop(st->loop);
}

static void *early_client(void *arg)
{
    cli *k = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, k->fd);
    SSL_set_alpn_protos(ssl, (const unsigned char *)"\x02h2", 3);
    if (SSL_connect(ssl) == 1) {
        size_t w;
        k->connected = SSL_write_ex(ssl, "early", 5, &w) == 1;
        char buf[8];
        size_t r;
        k->data_ok = SSL_read_ex(ssl, buf, 5, &r) == 1 && memcmp(buf, "hello", 5) == 0;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(k->fd);
    return NULL;
}

typedef struct stopper {
    sg_timer t;
    sg_loop *l;
} stopper;

static void stop_cb(sg_timer *t)
{
    sg_loop_stop(((stopper *)t)->l);
}

Test(tls, accept_driver_hands_over_after_the_handshake)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    sg_loop *l = sg_loop_new();
    int fds[2];
    int fd = pair(fds);
    cli k = { .fd = fds[1] };
    pthread_t th;
    pthread_create(&th, NULL, early_client, &k);
    ready_state st = { .loop = l };
    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(5555) },
                       local = { .sin_family = AF_INET, .sin_port = htons(4431) };
    sg_tls_accept(l, c, group(c, "127.0.0.1:4431"), fd, (struct sockaddr *)&peer, sizeof(peer),
                  (struct sockaddr *)&local, sizeof(local), 5000, on_ready, &st);
    cr_assert_eq(sg_tls_accept_count(), 1);
    sg_loop_run(l);
    pthread_join(th, NULL);
    cr_assert_eq(st.calls, 1);
    cr_assert_eq(st.peer_port, 5555);
    cr_assert_eq(st.local_port, 4431);
    cr_assert_str_eq(st.alpn, "h2");
    cr_assert_str_eq(st.got, "early");
    cr_assert(k.data_ok);
    cr_assert_eq(sg_tls_accept_count(), 0);
    sg_loop_free(l);
    sg_conf_unref(c);
}

Test(tls, accept_driver_times_out_and_closes)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    sg_loop *l = sg_loop_new();
    sg_loop_update_time(l);
    int fds[2];
    int fd = pair(fds);
    ready_state st = { .loop = l };
    struct sockaddr_in peer = { .sin_family = AF_INET }, local = { .sin_family = AF_INET };
    sg_tls_accept(l, c, group(c, "127.0.0.1:4431"), fd, (struct sockaddr *)&peer, sizeof(peer),
                  (struct sockaddr *)&local, sizeof(local), 100, on_ready, &st);
    stopper stop = { .l = l };
    sg_timer_init(&stop.t, stop_cb);
    sg_timer_arm(l, &stop.t, 400);
    sg_loop_run(l);                    /* the client says nothing */
    cr_assert_eq(st.calls, 0);
    cr_assert_eq(sg_tls_accept_count(), 0);
    char buf[4];
    cr_assert_eq(read(fds[1], buf, sizeof(buf)), 0, "the socket is closed");
    close(fds[1]);
    sg_loop_free(l);
    sg_conf_unref(c);
}

Test(tls, accept_driver_close_all)
{
    sg_conf *c = load(SERVERS);
    cr_assert_not_null(c, "%s", err);
    sg_loop *l = sg_loop_new();
    int fds[2];
    int fd = pair(fds);
    ready_state st = { .loop = l };
    struct sockaddr_in peer = { .sin_family = AF_INET }, local = { .sin_family = AF_INET };
    sg_tls_accept(l, c, group(c, "127.0.0.1:4431"), fd, (struct sockaddr *)&peer, sizeof(peer),
                  (struct sockaddr *)&local, sizeof(local), 60000, on_ready, &st);
    cr_assert_eq(sg_tls_accept_count(), 1);
    sg_tls_accept_close_all();
    cr_assert_eq(sg_tls_accept_count(), 0);
    char buf[4];
    cr_assert_eq(read(fds[1], buf, sizeof(buf)), 0);
    close(fds[1]);
    sg_loop_free(l);
    sg_conf_unref(c);
}

/* ---------------- directives ---------------- */

Test(tls_conf, certificates_inherit_and_contexts_are_shared)
{
    sg_conf *c = load("events {}\nhttp { ssl_certificate b.pem; ssl_certificate_key b.key;\n"
                      "  server { listen 127.0.0.1:4431 ssl; server_name one; }\n"
                      "  server { listen 127.0.0.1:4431 ssl; server_name two; }\n"
                      "  server { listen 127.0.0.1:4432 ssl; server_name three; ssl_protocols TLSv1.3; }\n"
                      "  server { listen 127.0.0.1:4433; server_name plain; }\n"
                      "}\n");
    cr_assert_not_null(c, "%s", err);
    sg_server_conf *one = server_named(c, "one"), *two = server_named(c, "two"), *three = server_named(c, "three");
    cr_assert_eq(one->ssl.ncerts, 1);
    cr_assert_not_null(one->ssl.ctx);
    cr_assert_eq(one->ssl.ctx, two->ssl.ctx, "identical settings share a context");
    cr_assert_not_null(three->ssl.ctx);
    cr_assert_neq(three->ssl.ctx, one->ssl.ctx);
    /* as nginx, a server with certificates has a context on a plain address too
     * (-t checks it; shared here: the settings are the same) */
    cr_assert_eq(server_named(c, "plain")->ssl.ctx, one->ssl.ctx);
    cr_assert(group(c, "127.0.0.1:4431")->ssl);
    cr_assert(!group(c, "127.0.0.1:4433")->ssl);
    /* defaults */
    cr_assert_eq(one->ssl.protocols, SG_SSL_TLSv1_2 | SG_SSL_TLSv1_3);
    cr_assert_str_eq(one->ssl.ciphers.s, "HIGH:!aNULL:!MD5");
    cr_assert_eq(one->ssl.session_timeout_ms, 300000);
    cr_assert(one->ssl.session_tickets);
    cr_assert_eq(one->ssl.session_cache, SG_SSL_CACHE_NONE);
    sg_conf_unref(c);
}

Test(tls_conf, a_server_list_replaces_the_inherited_one)
{
    sg_conf *c = load("events {}\nhttp { ssl_certificate b.pem; ssl_certificate_key b.key;\n"
                      "  server { listen 127.0.0.1:4431 ssl; ssl_certificate a-ec.pem; ssl_certificate_key a-ec.key;\n"
                      "    ssl_certificate a-rsa.pem; ssl_certificate_key a-rsa.key; } }\n");
    cr_assert_not_null(c, "%s", err);
    sg_ssl_conf *sc = &c->servers[0]->ssl;
    cr_assert_eq(sc->ncerts, 2);
    cr_assert(strstr(sc->certs[0].s, "/a-ec.pem") && strstr(sc->certs[1].s, "/a-rsa.pem"));
    cr_assert_eq(sc->certs[0].s[0], '/', "resolved against the prefix");
    sg_conf_unref(c);
}

Test(tls_conf, session_cache_and_other_values)
{
    sg_conf *c = load("events {}\nhttp { ssl_certificate b.pem; ssl_certificate_key b.key;\n"
                      "  ssl_session_cache builtin:1000 shared:SSL:1m; ssl_session_timeout 10m;\n"
                      "  ssl_prefer_server_ciphers on; ssl_ecdh_curve prime256v1:secp384r1;\n"
                      "  ssl_dhparam dh.pem; ssl_ciphers ECDHE+AESGCM;\n"
                      "  ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n"
                      "  server { listen 127.0.0.1:4431 ssl; }\n"
                      "  server { listen 127.0.0.1:4432 ssl; ssl_session_cache off; ssl_session_tickets off; } }\n");
    cr_assert_not_null(c, "%s", err);
    sg_ssl_conf *a = &c->servers[0]->ssl, *b = &c->servers[1]->ssl;
    cr_assert_eq(a->session_cache, SG_SSL_CACHE_ON);
    cr_assert_eq(a->session_cache_size, 1000 + 1024 * 1024 / 256);
    cr_assert_eq(a->session_timeout_ms, 600000);
    cr_assert(a->prefer_server_ciphers);
    cr_assert_eq(a->protocols, SG_SSL_TLSv1 | SG_SSL_TLSv1_1 | SG_SSL_TLSv1_2 | SG_SSL_TLSv1_3);
    cr_assert_eq(b->session_cache, SG_SSL_CACHE_OFF);
    cr_assert(!b->session_tickets);
    cr_assert(a->ctx && b->ctx);
    sg_conf_unref(c);
}

#define ONE_SERVER(body) "events {}\nhttp {\n  server { listen 127.0.0.1:4431 ssl;\n" body "\n  }\n}\n"

Test(tls_conf, errors_name_the_directive)
{
    char want[512];
    snprintf(want, sizeof(want), "t.conf:4:21: cannot load certificate \"%s/nope.pem\": open() failed "
             "(2: No such file or directory)", certdir());
    expect_error(ONE_SERVER("    ssl_certificate nope.pem; ssl_certificate_key b.key;"), want);
    snprintf(want, sizeof(want), "t.conf:4:48: cannot load certificate key \"%s/nope.key\": open() failed",
             certdir());
    expect_error(ONE_SERVER("    ssl_certificate b.pem; ssl_certificate_key nope.key;"), want);
    /* a key that belongs to another certificate */
    expect_error(ONE_SERVER("    ssl_certificate b.pem;\n    ssl_certificate_key c.key;"),
                 "t.conf:5:25: certificate key \"");
    expect_error(ONE_SERVER("    ssl_certificate b.pem;\n    ssl_certificate_key c.key;"), "\" does not match certificate \"");
    /* RSA certificate, ECDSA key */
    expect_error(ONE_SERVER("    ssl_certificate a-rsa.pem;\n    ssl_certificate_key a-ec.key;"),
                 "does not match certificate");
    /* not a certificate at all; an encrypted key (never a password prompt) */
    expect_error(ONE_SERVER("    ssl_certificate dh.pem; ssl_certificate_key b.key;"),
                 "t.conf:4:21: cannot load certificate \"");
    expect_error(ONE_SERVER("    ssl_certificate a-ec.pem; ssl_certificate_key enc.key;"),
                 "t.conf:4:51: cannot load certificate key \"");
    expect_error(ONE_SERVER("    ssl_certificate b.pem;"),
                 "t.conf:4:21: no \"ssl_certificate_key\" is defined for certificate \"");
    expect_error(ONE_SERVER("    ssl_certificate b.pem; ssl_certificate_key b.key; ssl_ciphers NOTHING-AT-ALL;"),
                 "t.conf:4:67: SSL_CTX_set_cipher_list(\"NOTHING-AT-ALL\") failed");
    expect_error(ONE_SERVER("    ssl_certificate b.pem; ssl_certificate_key b.key; ssl_ecdh_curve bogus;"),
                 "t.conf:4:70: SSL_CTX_set1_curves_list(\"bogus\") failed");
    expect_error(ONE_SERVER("    ssl_certificate b.pem; ssl_certificate_key b.key; ssl_dhparam b.pem;"),
                 "t.conf:4:67: cannot load DH parameters \"");
}

Test(tls_conf, listen_ssl_needs_a_certificate)
{
    expect_error("events {}\nhttp {\n  server { listen 127.0.0.1:4431 ssl; }\n}\n",
                 "t.conf:3:12: no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive");
    /* only the default server of the address needs one (nginx) */
    sg_conf *c = load("events {}\nhttp {\n"
                      "  server { listen 127.0.0.1:4431 ssl; ssl_certificate b.pem; ssl_certificate_key b.key; }\n"
                      "  server { listen 127.0.0.1:4431 ssl; server_name other; }\n}\n");
    cr_assert_not_null(c, "%s", err);
    sg_conf_unref(c);
}

Test(tls_conf, refused_values)
{
    expect_error(ONE_SERVER("    ssl on;"),
                 "t.conf:4:5: the \"ssl\" directive was removed in nginx 1.25.1 and is not supported, "
                 "use the \"ssl\" parameter of the \"listen\" directive instead");
    expect_error(ONE_SERVER("    ssl_protocols TLSv1.2 TLSv9;"), "t.conf:4:27: invalid value \"TLSv9\" in \"ssl_protocols\"");
    expect_error(ONE_SERVER("    ssl_protocols SSLv3;"), "t.conf:4:5: \"ssl_protocols\" names no protocol");
    expect_error(ONE_SERVER("    ssl_session_cache shared:SSL;"), "t.conf:4:23: invalid session cache \"shared:SSL\"");
    expect_error(ONE_SERVER("    ssl_session_cache shared:SSL:1k;"), "t.conf:4:23: session cache \"SSL\" is too small");
    expect_error(ONE_SERVER("    ssl_session_cache off builtin;"), "t.conf:4:27: invalid session cache \"builtin\"");
    expect_error(ONE_SERVER("    ssl_session_cache builtin:x;"), "t.conf:4:23: invalid session cache \"builtin:x\"");
    expect_error(ONE_SERVER("    ssl_certificate $ssl_server_name.pem;"),
                 "t.conf:4:21: variables in \"ssl_certificate\" are not supported yet");
    expect_error(ONE_SERVER("    ssl_certificate data:-----BEGIN;"),
                 "t.conf:4:21: \"data:\" in \"ssl_certificate\" is not supported yet");
    expect_error(ONE_SERVER("    location / { ssl_protocols TLSv1.2; }"),
                 "t.conf:4:18: \"ssl_protocols\" directive is not allowed here");
    expect_error(ONE_SERVER("    ssl_stapling on;"), "t.conf:4:5: \"ssl_stapling\" directive is not supported yet");
    expect_error(ONE_SERVER("    ssl_certificate b.pem; ssl_certificate b.pem; ssl_certificate_key b.key;"),
                 "no \"ssl_certificate_key\" is defined for certificate");
}

/* ---------------- the seed configurations ---------------- */

/* With certs/cert.pem and certs/key.pem under the prefix, the TLS seeds
 * load, 03 with the client context of its grpc_pass grpcs://. */
Test(tls_conf, tls_seeds_get_past_the_ssl_directives)
{
    static const char *const seeds[] = {
        "02-grpc-tls-frontend.conf", "03-grpcs-backend.conf", "05-grpc-lb-error-page.conf",
        "12-http2-tls-to-http1.conf",
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", sg_test_seed_dir(), seeds[i]);
        if (access(path, R_OK) != 0) cr_assert_fail("seed %s not found (SG_SEED_DIR names another folder)", path);
        err[0] = '\0';
        sg_conf *c = sg_conf_load(path, certdir(), err, sizeof(err));
        cr_assert_not_null(c, "%s: %s", seeds[i], err);
        const sg_listen_group *g = &c->listens[0];
        cr_assert(g->ssl && g->http2, "%s", seeds[i]);
        cr_assert_not_null(g->default_server->ssl.ctx, "%s", seeds[i]);
        if (i == 1) {
            const sg_loc_conf *lc = &g->default_server->root->children[0]->conf;
            cr_assert(lc->is_grpc && lc->proxy_pass->ssl);
            cr_assert_not_null(lc->grpc.ssl.ctx, "grpcs:// has its client context");
            cr_assert_str_eq(lc->proxy_pass->upstream->name, "localhost:50443");
        }
        sg_conf_unref(c);
    }
    /* and without the files, -t names the line */
    err[0] = '\0';
    char path[512];
    snprintf(path, sizeof(path), "%s/12-http2-tls-to-http1.conf", sg_test_seed_dir());
    sg_conf *c = sg_conf_load(path, "/nonexistent", err, sizeof(err));
    cr_assert_null(c);
    cr_assert(strstr(err, "12-http2-tls-to-http1.conf:10:27: cannot load certificate \"/nonexistent/certs/cert.pem\""),
              "%s", err);
}
