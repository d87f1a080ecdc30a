/* streamgate command line, nginx's: -c FILE, -p PREFIX, -e FILE, -g DIRECTIVES,
 * -t, -T, -q, -s SIGNAL, -v, -V.
 *
 * One process in the foreground (right for systemd and containers) unless
 * the file says `daemon on`. The main thread only waits for signals and
 * drives reloads; worker threads do all the I/O. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include "conf/conf.h"
#include "conf/directives.h"
#include "core/log.h"
#include "net/tls.h"
#include "observe/access_log.h"
#include "proxy/handler.h"
#include "proxy/router.h"
#include "server/listeners.h"
#include "server/pidfile.h"
#include "server/sdnotify.h"
#include "server/server.h"

#define SG_VERSION "0.1.0"

/* The built-in demo: two sgback instances behind a round-robin upstream. */
static const char demo_conf[] =
    "# streamgate built-in demo (run streamgate -T to see it)\n"
    "worker_processes 1;\n"
    "events {}\n"
    "http {\n"
    "    upstream demo_backends {\n"
    "        server 127.0.0.1:9001;\n"
    "        server 127.0.0.1:9002;\n"
    "        keepalive 16;\n"
    "    }\n"
    "    upstream demo_grpc {\n"
    "        server 127.0.0.1:9101;\n"
    "        server 127.0.0.1:9102;\n"
    "    }\n"
    "    server {\n"
    "        # HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on the same port.\n"
    "        listen 127.0.0.1:8080 http2;\n"
    "        location / {\n"
    "            proxy_pass http://demo_backends;\n"
    "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
    "        }\n"
    "        location = /streamgate {\n"
    "            return 200 \"streamgate " SG_VERSION ": this answer comes from the proxy itself\\n\";\n"
    "        }\n"
    "        # The chat: the page /chat comes through location /, its WebSocket\n"
    "        # (/ws/chat; /ws/echo too) through this one. Upgrades pass by themselves;\n"
    "        # the long read timeout lets a quiet chat tab stay connected.\n"
    "        location /ws/ {\n"
    "            proxy_pass http://demo_backends;\n"
    "            proxy_read_timeout 1h;\n"
    "        }\n"
    "        # gRPC: sgback's chat.Chat service; every call is balanced on its own,\n"
    "        # streams may stay silent, big messages pass. Nothing to tune.\n"
    "        location /chat.Chat/ {\n"
    "            grpc_pass grpc://demo_grpc;\n"
    "        }\n"
    "    }\n"
    "}\n";

typedef struct options {
    const char *file;
    const char *prefix;
    const char *error_file;    /* -e: startup errors (and the default error_log) */
    const char *params;        /* -g: main-context directives */
    bool test, dump, quiet, version, configure;
    const char *signal;
} options;

static void usage(void)
{
    fprintf(stderr,
            "usage: streamgate [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] [-g directives]\n"
            "  -?,-h          this help\n"
            "  -v             print the version and exit\n"
            "  -V             print the version, the TLS library and the nginx modules streamgate has\n"
            "  -t             check the configuration and exit\n"
            "  -T             check, then print the configuration files\n"
            "  -q             no messages but errors while checking (-t, -T)\n"
            "  -s signal      send reload, stop, quit or reopen to the running process (pid file)\n"
            "  -p prefix      folder that relative paths resolve against (default: the file's folder)\n"
            "  -e filename    error log while starting, and without error_log (default: stderr)\n"
            "  -c filename    configuration file (nginx syntax; relative to -p when given);\n"
            "                 without it, a built-in demo runs\n"
            "  -g directives  main-context directives before the file's: -g \"pid /run/sg.pid;\"\n");
}

/* "-c FILE" and "-cFILE" alike, as nginx. */
static bool take_value(int argc, char **argv, int *i, const char **out)
{
    const char *a = argv[*i];
    if (a[2]) {
        *out = a + 2;
        return true;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "streamgate: option \"%s\" requires %s\n", a,
                a[1] == 's' ? "signal" : a[1] == 'g' ? "directives" : a[1] == 'p' ? "prefix" : "file name");
        return false;
    }
    *out = argv[++*i];
    return true;
}

static bool invalid_option(const char *a)
{
    fprintf(stderr, "streamgate: invalid option: \"%s\"\n", a);
    usage();
    return false;
}

static bool parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) return invalid_option(a);
        if (strchr("cpsge", a[1])) {
            const char *v;
            if (!take_value(argc, argv, &i, &v)) return false;
            switch (a[1]) {
            case 'c': o->file = v; break;
            case 'p': o->prefix = v; break;
            case 's': o->signal = v; break;
            case 'g': o->params = v; break;
            default: o->error_file = v; break;
            }
            continue;
        }
        /* flags may be grouped: -tq */
        for (const char *f = a + 1; *f; f++) {
            switch (*f) {
            case 't': o->test = true; break;
            case 'T': o->test = o->dump = true; break;
            case 'q': o->quiet = true; break;
            case 'v': o->version = true; break;
            case 'V': o->version = o->configure = true; break;
            case 'h': case '?': usage(); exit(0);
            default: return invalid_option(a);
            }
        }
    }
    return true;
}

/* nginx's modules, as -V names them in "configure arguments:" (what
 * nginx-tests' has() reads): a module counts as present when streamgate
 * implements its `key` directive (NULL: always). nginx builds the
 * `dflt` ones unless told --without-..., the others only --with-... */
static const struct nginx_module {
    const char *name, *key;
    bool stream, dflt;
} nginx_modules[] = {
    { "http_ssl_module", "ssl_certificate", false, false },
    { "http_v2_module", NULL, false, false },
    { "http_realip_module", "set_real_ip_from", false, false },
    { "http_addition_module", "add_before_body", false, false },
    { "http_sub_module", "sub_filter", false, false },
    { "http_dav_module", "dav_methods", false, false },
    { "http_flv_module", "flv", false, false },
    { "http_mp4_module", "mp4", false, false },
    { "http_gunzip_module", "gunzip", false, false },
    { "http_gzip_static_module", "gzip_static", false, false },
    { "http_auth_request_module", "auth_request", false, false },
    { "http_random_index_module", "random_index", false, false },
    { "http_secure_link_module", "secure_link", false, false },
    { "http_slice_module", "slice", false, false },
    { "http_stub_status_module", "stub_status", false, false },
    { "stream", NULL, true, false },
    { "stream_ssl_module", "ssl_certificate", true, false },
    { "stream_realip_module", "set_real_ip_from", true, false },
    { "stream_ssl_preread_module", "ssl_preread", true, false },
    { "http_charset_module", "charset", false, true },
    { "http_gzip_module", "gzip", false, true },
    { "http_ssi_module", "ssi", false, true },
    { "http_userid_module", "userid", false, true },
    { "http_access_module", "allow", false, true },
    { "http_auth_basic_module", "auth_basic", false, true },
    { "http_mirror_module", "mirror", false, true },
    { "http_autoindex_module", "autoindex", false, true },
    { "http_geo_module", "geo", false, true },
    { "http_map_module", "map", false, true },
    { "http_split_clients_module", "split_clients", false, true },
    { "http_referer_module", "valid_referers", false, true },
    { "http_rewrite_module", "return", false, true },
    { "http_proxy_module", "proxy_pass", false, true },
    { "http_fastcgi_module", "fastcgi_pass", false, true },
    { "http_uwsgi_module", "uwsgi_pass", false, true },
    { "http_scgi_module", "scgi_pass", false, true },
    { "http_grpc_module", "grpc_pass", false, true },
    { "http_memcached_module", "memcached_pass", false, true },
    { "http_limit_conn_module", "limit_conn", false, true },
    { "http_limit_req_module", "limit_req", false, true },
    { "http_empty_gif_module", "empty_gif", false, true },
    { "http_browser_module", "ancient_browser", false, true },
    { "http_upstream_hash_module", "hash", false, true },
    { "http_upstream_ip_hash_module", "ip_hash", false, true },
    { "http_upstream_least_conn_module", "least_conn", false, true },
    { "http_upstream_random_module", "random", false, true },
    { "http_upstream_keepalive_module", "keepalive", false, true },
    { "http_upstream_zone_module", "zone", false, true },
    { "http_tunnel_module", "tunnel_pass", false, true },
    { "http-cache", "proxy_cache", false, true },
    { "stream_access_module", "allow", true, true },
    { "stream_geo_module", "geo", true, true },
    { "stream_limit_conn_module", "limit_conn", true, true },
    { "stream_map_module", "map", true, true },
    { "stream_pass_module", "pass", true, true },
    { "stream_return_module", "return", true, true },
    { "stream_set_module", "set", true, true },
    { "stream_split_clients_module", "split_clients", true, true },
    { "stream_upstream_hash_module", "hash", true, true },
    { "stream_upstream_least_conn_module", "least_conn", true, true },
    { "stream_upstream_random_module", "random", true, true },
    { "stream_upstream_zone_module", "zone", true, true },
    /* balancers (issue 11, area: balance) */
    { "http_upstream_least_time_module", "least_time", false, true },
    { "stream_upstream_least_time_module", "least_time", true, true },
    { "http_upstream_sticky_module", "sticky", false, true },
};

/* -V: as nginx's, so that tools reading nginx -V (nginx-tests) see what
 * streamgate implements. Mail, HTTP/3, perl, xslt, image_filter and geoip
 * are not built by default and are not listed. */
static void print_configure(void)
{
    printf("streamgate version " SG_VERSION "\n");
    const char *run = OpenSSL_version(OPENSSL_VERSION);
    if (strcmp(run, OPENSSL_VERSION_TEXT) == 0) printf("built with %s\n", OPENSSL_VERSION_TEXT);
    else printf("built with %s (running with %s)\n", OPENSSL_VERSION_TEXT, run);
    printf("TLS SNI support enabled\n");
    printf("configure arguments:");
    for (size_t i = 0; i < sizeof(nginx_modules) / sizeof(nginx_modules[0]); i++) {
        const struct nginx_module *m = &nginx_modules[i];
        bool has = !m->key || sg_directive_known(m->key, m->stream);
        if (has != m->dflt) printf(" --with%s-%s", has ? "" : "out", m->name);
    }
    printf("\n");
}

static char *self_dir(void)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0) return strdup(".");
    path[n] = '\0';
    return strdup(dirname(path));
}

static sg_conf *load_conf(const options *o, char *err, size_t errlen)
{
    if (o->file) return sg_conf_load_params(o->file, o->prefix, o->params, err, errlen);
    char *dir = self_dir();
    const char *prefix = o->prefix ? o->prefix : dir;
    sg_conf *c = sg_conf_load_string(demo_conf, sizeof(demo_conf) - 1, "<builtin demo>", prefix, err, errlen);
    free(dir);
    return c;
}

/* Every generation (start, reload, -t) comes from here: conf compiles it,
 * the router indexes its locations before any worker sees it. */
static sg_conf *load(const options *o, char *err, size_t errlen)
{
    sg_conf *c = load_conf(o, err, errlen);
    if (c) sg_router_build(c);
    return c;
}

static int send_signal(const options *o)
{
    static const struct { const char *name; int sig; } sigs[] = {
        { "reload", SIGHUP }, { "stop", SIGTERM }, { "quit", SIGQUIT }, { "reopen", SIGUSR1 },
    };
    int sig = 0;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (strcmp(o->signal, sigs[i].name) == 0) sig = sigs[i].sig;
    if (!sig) {
        fprintf(stderr, "streamgate: invalid signal \"%s\" (reload, stop, quit or reopen)\n", o->signal);
        return 1;
    }
    char err[1024];
    sg_conf *c = load(o, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "streamgate: [emerg] %s\n", err);
        return 1;
    }
    FILE *f = fopen(c->pid_path, "r");
    long pid = 0;
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "streamgate: [error] invalid PID number in \"%s\"\n", c->pid_path);
        if (f) fclose(f);
        sg_conf_unref(c);
        return 1;
    }
    fclose(f);
    sg_conf_unref(c);
    if (kill((pid_t)pid, sig) < 0) {
        fprintf(stderr, "streamgate: [error] kill(%ld, %d) failed (%s)\n", pid, sig, strerror(errno));
        return 1;
    }
    return 0;
}

static pid_t demo_child = -1;

/* The demo's backend: sgback next to our own binary, two HTTP/1.1 ports
 * and two h2c (gRPC) ones. */
static bool start_demo_backend(void)
{
    char *dir = self_dir();
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/sgback", dir);
    free(dir);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "streamgate: demo backend %s not found (run make)\n", path);
        return false;
    }
    demo_child = fork();
    if (demo_child == 0) {
        execl(path, path, "-l", "127.0.0.1:9001", "-l", "127.0.0.1:9002", "-2", "127.0.0.1:9101", "-2",
              "127.0.0.1:9102", "-q", (char *)NULL);
        _exit(127);
    }
    fprintf(stderr,
            "streamgate demo: http://127.0.0.1:8080/ is proxied (round robin, keep-alive) to sgback\n"
            "on 127.0.0.1:9001 and 127.0.0.1:9002. Try: curl -i http://127.0.0.1:8080/\n"
            "(repeat it to see both backends), curl http://127.0.0.1:8080/streamgate\n"
            "Chat through the proxy (WebSocket): open http://127.0.0.1:8080/chat in two browser tabs.\n"
            "HTTP/2: curl --http2-prior-knowledge http://127.0.0.1:8080/\n"
            "gRPC (chat.Chat on sgback 9101 and 9102): bash scripts/grpc-demo-call.sh\n");
    return demo_child > 0;
}

static void stop_demo_backend(void)
{
    if (demo_child > 0) {
        kill(demo_child, SIGTERM);
        waitpid(demo_child, NULL, 0);
    }
}

static bool daemonize(void)
{
    pid_t p = fork();
    if (p < 0) return false;
    if (p > 0) _exit(0);
    setsid();
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        if (fd > 2) close(fd);
    }
    return true;
}

static void open_error_log(const sg_conf *c)
{
    if (!sg_log_open(c->error_log_path, c->error_log_level))
        sg_log_error("open() \"%s\" failed (%s), logging to stderr", c->error_log_path, strerror(errno));
}

static void reload(const options *o)
{
    char err[1024];
    sg_conf *c = load(o, err, sizeof(err));
    if (!c) {
        sg_log_error("reload failed, the old configuration stays: %s", err);
        return;
    }
    if (!sg_server_reload(c, err, sizeof(err))) {
        sg_log_error("reload failed, the old configuration stays: %s", err);
        sg_conf_unref(c);
        return;
    }
    open_error_log(c);
    sg_log_notice("reloaded configuration");
}

/* ---------- binary upgrade (nginx's USR2 dance) ----------
 *
 * USR2: the pid file becomes PID.oldbin and this process fork+execs its
 * own executable with the same arguments, the listening sockets passed in
 * STREAMGATE_LISTEN_FDS="fd;fd;..." (nginx's NGINX= is read too). The new
 * process adopts the ones its configuration listens on, binds the rest,
 * writes PID and serves beside the old one; the operator then sends QUIT
 * to the old one, which stops accepting and drains. If the new one exits
 * first (failed to start, or was stopped), the old one takes PID back. */

#define SG_LISTEN_FDS_ENV "STREAMGATE_LISTEN_FDS"

static char **saved_argv;
static pid_t new_binary = -1;
static char *pid_path_cur;          /* where our pid file is now (PID or PID.oldbin) */
static char *pid_path_main;         /* the configuration's PID */
static pid_t upgraded_from;         /* we are the new binary of this (old) process */

/* systemd hears from the process that serves: not from an old one whose
 * new binary runs and announced itself with MAINPID= (the old one's
 * STOPPING=1 would stop the whole service). */
static void notify(const char *state)
{
    if (new_binary > 0) return;
    sg_sd_notify(state);
}

static void notify_ready(void)
{
    char ready[64];
    snprintf(ready, sizeof(ready), "READY=1\nMAINPID=%ld", (long)getpid());
    notify(ready);
}

/* The sockets the old process passed ("3;4;5;"), adopted by
 * sg_listeners_open; true when there were any. */
static bool take_inherited_fds(void)
{
    const char *v = getenv(SG_LISTEN_FDS_ENV);
    if (!v) v = getenv("NGINX");
    if (!v) return false;
    int fds[4096];
    size_t n = sg_listeners_parse_fds(v, fds, sizeof(fds) / sizeof(fds[0]));
    if (v[0] && !n) sg_log_warn("invalid " SG_LISTEN_FDS_ENV " \"%s\": no socket inherited", v);
    unsetenv(SG_LISTEN_FDS_ENV);
    unsetenv("NGINX");
    if (!n) return false;
    upgraded_from = getppid();
    sg_listeners_inherit(fds, n, upgraded_from);
    return true;
}

/* The executable to run: ours, where it is now. An upgrade replaces the
 * file, so the kernel names ours "PATH (deleted)": PATH is the new one. */
static bool self_exe(char *path, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", path, len - 1);
    if (n <= 0) {
        snprintf(path, len, "%s", saved_argv[0]);
        return strchr(path, '/') != NULL;
    }
    path[n] = '\0';
    static const char del[] = " (deleted)";
    size_t dl = sizeof(del) - 1;
    if ((size_t)n > dl && strcmp(path + n - dl, del) == 0) path[n - dl] = '\0';
    return true;
}

static void upgrade(void)
{
    if (new_binary > 0) {
        sg_log_error("the new binary (pid %ld) is already running: send it QUIT or TERM before another upgrade",
                     (long)new_binary);
        return;
    }
    if (upgraded_from > 1 && getppid() == upgraded_from) {
        /* PID.oldbin is the old process's: stop it (QUIT) first, as nginx asks */
        sg_log_error("the old binary (pid %ld) still runs: send it QUIT or TERM before another upgrade",
                     (long)upgraded_from);
        return;
    }
    char exe[PATH_MAX], oldbin[PATH_MAX + 8];
    if (!self_exe(exe, sizeof(exe))) {
        sg_log_error("binary upgrade: cannot find the executable");
        return;
    }
    snprintf(oldbin, sizeof(oldbin), "%s.oldbin", pid_path_main);
    if (!sg_pidfile_rename(pid_path_main, oldbin)) {
        sg_log_error("rename() \"%s\" to \"%s\" failed (%s): no binary upgrade", pid_path_main, oldbin,
                     strerror(errno));
        return;
    }
    int *fds;
    size_t nfds = sg_server_listen_fds(&fds);
    /* Everything the child needs is made before fork(): between fork and
     * exec a threaded process may only make async-signal-safe calls. */
    size_t vl = sizeof(SG_LISTEN_FDS_ENV) + nfds * 12 + 1;
    char *var = malloc(vl);
    extern char **environ;
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    char **envp = calloc(nenv + 2, sizeof(char *));
    if (!var || !envp) {
        free(var);
        free(envp);
        free(fds);
        sg_pidfile_rename(oldbin, pid_path_main);
        sg_log_error("binary upgrade: out of memory");
        return;
    }
    size_t off = (size_t)snprintf(var, vl, SG_LISTEN_FDS_ENV "=");
    for (size_t i = 0; i < nfds; i++) off += (size_t)snprintf(var + off, vl - off, "%d;", fds[i]);
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], SG_LISTEN_FDS_ENV "=", sizeof(SG_LISTEN_FDS_ENV)) != 0 &&
            strncmp(environ[i], "NGINX=", 6) != 0)
            envp[k++] = environ[i];
    envp[k++] = var;
    envp[k] = NULL;
    sg_listeners_keep_files(true);   /* from now on the unix socket files are the new one's too */
    sg_server_flush_logs();          /* the new process appends to the same files */
    pid_t p = fork();
    if (p == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (size_t i = 0; i < nfds; i++) fcntl(fds[i], F_SETFD, 0);   /* inherited across exec */
        execve(exe, saved_argv, envp);
        _exit(127);
    }
    free(var);
    free(envp);
    free(fds);
    if (p < 0) {
        sg_log_error("fork() failed (%s): no binary upgrade", strerror(errno));
        sg_listeners_keep_files(false);
        sg_pidfile_rename(oldbin, pid_path_main);
        return;
    }
    new_binary = p;
    free(pid_path_cur);
    pid_path_cur = strdup(oldbin);
    sg_log_notice("binary upgrade: started %s as pid %ld, pid file moved to \"%s\"", exe, (long)p, oldbin);
}

/* The new binary exited (it failed to start, or was stopped): this
 * process is the one running again, under PID. */
static void new_binary_exited(int status)
{
    if (WIFEXITED(status))
        sg_log_notice("the new binary (pid %ld) exited with code %d", (long)new_binary, WEXITSTATUS(status));
    else
        sg_log_notice("the new binary (pid %ld) exited on signal %d", (long)new_binary,
                      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    new_binary = -1;
    sg_listeners_keep_files(false);
    if (!sg_pidfile_rename(pid_path_cur, pid_path_main))
        sg_log_error("rename() \"%s\" to \"%s\" failed (%s)", pid_path_cur, pid_path_main, strerror(errno));
    free(pid_path_cur);
    pid_path_cur = strdup(pid_path_main);
    /* the new one may have removed PID (it was its own) after our rename:
     * writing ours again makes sure the file names us */
    char err[256];
    pid_t holder;
    if (!sg_pidfile_write(pid_path_main, &holder, err, sizeof(err))) sg_log_error("%s", err);
    notify_ready();
}

static void reap_children(void)
{
    int status;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0)
        if (p == new_binary) new_binary_exited(status);
}

static int run(const options *o, sg_conf *c)
{
    char err[1024];
    pid_t holder;
    bool inherited = take_inherited_fds();
    /* Before anything binds: a running instance of this configuration
     * keeps its connections, this one refuses. */
    if (!sg_pidfile_lock(c->pid_path, &holder, err, sizeof(err))) {
        fprintf(stderr, "streamgate: [emerg] %s\n", err);
        sg_listeners_inherit_done();
        sg_conf_unref(c);
        return 1;
    }
    if (!o->file && !inherited && !start_demo_backend()) {
        sg_conf_unref(c);
        return 1;
    }
    /* an upgrade's new process stays the old one's child, as nginx's */
    if (c->daemon && !inherited && !daemonize()) {
        fprintf(stderr, "streamgate: [emerg] fork() failed\n");
        sg_conf_unref(c);
        return 1;
    }
    open_error_log(c);
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaddset(&set, sigs[i]);
    pthread_sigmask(SIG_BLOCK, &set, NULL);   /* workers inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    int n = c->worker_processes;
    pid_path_main = strdup(c->pid_path);
    pid_path_cur = strdup(c->pid_path);
    sg_exchange_set_handler(&sg_handler_ops);
    if (!sg_server_start(c, n, err, sizeof(err))) {
        sg_log(SG_LOG_EMERG, "%s", err);
        sg_listeners_inherit_done();
        sg_pidfile_remove(pid_path_main);
        free(pid_path_main);
        free(pid_path_cur);
        stop_demo_backend();
        sg_conf_unref(c);   /* LeakSanitizer reads the exit after a failed bind */
        return 1;
    }
    size_t unused = sg_listeners_inherit_done();
    if (inherited)
        sg_log_notice("binary upgrade: listening on the sockets of pid %ld%s", (long)getppid(),
                      unused ? " (closed the ones the configuration no longer has)" : "");
    /* Only now, every listener bound: a script that waits for the pid
     * file (nginx-tests does) may connect at once. Signals are blocked
     * until sigwaitinfo, so one sent right after is not lost. */
    if (!sg_pidfile_write(pid_path_main, &holder, err, sizeof(err))) {
        if (holder) {
            /* another one started at the same moment and wrote first */
            sg_log(SG_LOG_EMERG, "%s", err);
            fprintf(stderr, "streamgate: [emerg] %s\n", err);
            sg_server_stop(false);
            stop_demo_backend();
            free(pid_path_main);
            free(pid_path_cur);
            return 1;
        }
        sg_log_error("%s", err);
    }
    sg_log_notice("streamgate %s started, %d worker thread%s", SG_VERSION, n, n == 1 ? "" : "s");
    notify_ready();
    bool graceful = false;
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGHUP) {
            if (new_binary <= 0) sg_sd_notify_reloading();
            reload(o);
            notify("READY=1");
        } else if (sig == SIGUSR1) {
            sg_server_flush_logs();   /* lines logged before the signal go to the old file */
            sg_log_reopen();
            sg_access_log_reopen_all();
            sg_log_notice("reopened log files");
        } else if (sig == SIGUSR2) {
            upgrade();
        } else if (sig == SIGWINCH) {
            /* nginx's old master stops its worker processes here; the
             * threads here are the process, and QUIT drains them */
            sg_log_notice("SIGWINCH: nothing to do, send QUIT to drain and exit");
        } else if (sig == SIGCHLD) {
            reap_children();
        } else if (sig == SIGQUIT) {
            graceful = true;
            break;
        } else if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
    }
    if (upgraded_from > 1 && getppid() == upgraded_from) {
        /* a new binary stopped while its old one still serves: the old one
         * is the service's main process again, nothing stops */
        char back[48];
        snprintf(back, sizeof(back), "MAINPID=%ld", (long)upgraded_from);
        notify(back);
    } else {
        notify("STOPPING=1");
    }
    sg_log_notice("%s", graceful ? "gracefully shutting down" : "exiting");
    sg_server_stop(graceful);
    stop_demo_backend();
    sg_pidfile_remove(pid_path_cur);
    free(pid_path_main);
    free(pid_path_cur);
    sg_log_notice("exit");
    return 0;
}

/* -e FILE: nginx writes what goes wrong while starting there, and uses it
 * as the error log when the configuration names none. Both are stderr
 * here, so stderr becomes FILE (relative to the prefix); "stderr" keeps
 * it. -t/-T keep stderr, where their verdict is read. */
static bool startup_log(const options *o)
{
    const char *e = o->error_file;
    if (!e || strcmp(e, "stderr") == 0) return true;
    char path[PATH_MAX];
    if (e[0] != '/' && o->prefix) snprintf(path, sizeof(path), "%s/%s", o->prefix, e);
    else snprintf(path, sizeof(path), "%s", e);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "streamgate: [alert] could not open error log file: open() \"%s\" failed (%s)\n", path,
                strerror(errno));
        return false;
    }
    dup2(fd, 2);
    close(fd);
    return true;
}

int main(int argc, char **argv)
{
    options o = { 0 };
    saved_argv = argv;
    if (!parse_args(argc, argv, &o)) return 1;
    sg_tls_init(sg_router_sni);                /* before any load: SNI and ALPN on server contexts */
    if (o.configure) {
        print_configure();
        return 0;
    }
    if (o.version) {
        printf("streamgate version " SG_VERSION "\n");
        return 0;
    }
    char *file = NULL;
    if (o.file && o.file[0] != '/' && o.prefix) {
        /* nginx: a relative -c names a file under the prefix */
        size_t pl = strlen(o.prefix), fl = strlen(o.file);
        file = malloc(pl + fl + 2);
        if (!file) return 1;
        memcpy(file, o.prefix, pl);
        file[pl] = '/';
        memcpy(file + pl + 1, o.file, fl + 1);
        o.file = file;
    }
    if (o.signal) {
        int rc = send_signal(&o);
        free(file);
        return rc;
    }
    if (!o.test && !startup_log(&o)) {
        free(file);
        return 1;
    }
    char err[1024];
    sg_conf *c = load(&o, err, sizeof(err));
    const char *name = o.file ? o.file : "<builtin demo>";
    if (!c) {
        fprintf(stderr, "streamgate: [emerg] %s\n", err);
        if (o.test) fprintf(stderr, "streamgate: configuration file %s test failed\n", name);
        free(file);
        return 1;
    }
    for (size_t i = 0; o.test && !o.quiet && i < c->nnotices; i++)
        fprintf(stderr, "streamgate: [notice] %s\n", c->notices[i]);
    if (o.test) {
        if (!o.quiet) {
            fprintf(stderr, "streamgate: the configuration file %s syntax is ok\n", name);
            fprintf(stderr, "streamgate: configuration file %s test is successful\n", name);
        }
        if (o.dump) sg_conf_dump(c, stdout);
        sg_conf_unref(c);
        free(file);
        return 0;
    }
    int rc = run(&o, c);
    free(file);
    return rc;
}
