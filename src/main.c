/* streamgate command line: -c FILE, -p PREFIX, -t, -T, -s SIGNAL, -v.
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

#include "conf/conf.h"
#include "core/log.h"
#include "net/tls.h"
#include "observe/access_log.h"
#include "proxy/handler.h"
#include "proxy/router.h"
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
    bool test, dump, version;
    const char *signal;
} options;

static void usage(void)
{
    fprintf(stderr,
            "usage: streamgate [-c FILE] [-p PREFIX] [-t] [-T] [-s reload|stop|quit|reopen] [-v]\n"
            "  -c FILE    configuration file (nginx syntax); without it, a built-in demo runs\n"
            "  -p PREFIX  folder that relative paths resolve against (default: the file's folder)\n"
            "  -t         check the configuration and exit\n"
            "  -T         check, then print the configuration files\n"
            "  -s SIGNAL  send reload, stop, quit or reopen to the running process (pid file)\n"
            "  -v         print the version\n");
}

static bool parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-t") == 0) o->test = true;
        else if (strcmp(a, "-T") == 0) o->test = o->dump = true;
        else if (strcmp(a, "-v") == 0 || strcmp(a, "-V") == 0) o->version = true;
        else if ((strcmp(a, "-c") == 0 || strcmp(a, "-p") == 0 || strcmp(a, "-s") == 0) && i + 1 < argc) {
            const char *v = argv[++i];
            if (a[1] == 'c') o->file = v;
            else if (a[1] == 'p') o->prefix = v;
            else o->signal = v;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "-?") == 0) {
            usage();
            exit(0);
        } else {
            fprintf(stderr, "streamgate: invalid option: \"%s\"\n", a);
            usage();
            return false;
        }
    }
    return true;
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
    if (o->file) return sg_conf_load(o->file, o->prefix, err, errlen);
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

static bool write_pid(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f, "%d\n", (int)getpid());
    return fclose(f) == 0;
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

static int run(const options *o, sg_conf *c)
{
    if (!o->file && !start_demo_backend()) return 1;
    if (c->daemon && !daemonize()) {
        fprintf(stderr, "streamgate: [emerg] fork() failed\n");
        return 1;
    }
    open_error_log(c);
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaddset(&set, sigs[i]);
    pthread_sigmask(SIG_BLOCK, &set, NULL);   /* workers inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    char err[1024];
    int n = c->worker_processes;
    /* The pid file exists before the first connection is served, so
     * `-s` works as soon as the port answers. */
    char *pid_path = strdup(c->pid_path);
    if (!write_pid(pid_path)) sg_log_error("open() \"%s\" failed (%s)", pid_path, strerror(errno));
    sg_exchange_set_handler(&sg_handler_ops);
    if (!sg_server_start(c, n, err, sizeof(err))) {
        sg_log(SG_LOG_EMERG, "%s", err);
        unlink(pid_path);
        free(pid_path);
        stop_demo_backend();
        return 1;
    }
    sg_log_notice("streamgate %s started, %d worker thread%s", SG_VERSION, n, n == 1 ? "" : "s");
    bool graceful = false;
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGHUP) {
            reload(o);
        } else if (sig == SIGUSR1) {
            sg_server_flush_logs();   /* lines logged before the signal go to the old file */
            sg_log_reopen();
            sg_access_log_reopen_all();
            sg_log_notice("reopened log files");
        } else if (sig == SIGCHLD) {
            while (waitpid(-1, NULL, WNOHANG) > 0) {}
        } else if (sig == SIGQUIT) {
            graceful = true;
            break;
        } else if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
    }
    sg_log_notice("%s", graceful ? "gracefully shutting down" : "exiting");
    sg_server_stop(graceful);
    stop_demo_backend();
    unlink(pid_path);
    free(pid_path);
    sg_log_notice("exit");
    return 0;
}

int main(int argc, char **argv)
{
    options o = { 0 };
    if (!parse_args(argc, argv, &o)) return 1;
    sg_tls_init(sg_router_sni);                /* before any load: SNI and ALPN on server contexts */
    if (o.version) {
        printf("streamgate version " SG_VERSION "\n");
        return 0;
    }
    if (o.signal) return send_signal(&o);
    char err[1024];
    sg_conf *c = load(&o, err, sizeof(err));
    const char *name = o.file ? o.file : "<builtin demo>";
    if (!c) {
        fprintf(stderr, "streamgate: [emerg] %s\n", err);
        if (o.test) fprintf(stderr, "streamgate: configuration file %s test failed\n", name);
        return 1;
    }
    for (size_t i = 0; o.test && i < c->nnotices; i++)
        fprintf(stderr, "streamgate: [notice] %s\n", c->notices[i]);
    if (o.test) {
        fprintf(stderr, "streamgate: the configuration file %s syntax is ok\n", name);
        fprintf(stderr, "streamgate: configuration file %s test is successful\n", name);
        if (o.dump) sg_conf_dump(c, stdout);
        sg_conf_unref(c);
        return 0;
    }
    return run(&o, c);
}
