/* sgback [-l ADDR:PORT]... [-2 ADDR:PORT]... [-t THREADS] [-d MS] [-q]
 *
 * -d answers the default route ("sgback PORT\n") of HTTP/1.1 after MS ms, as
 * /delay/MS does: a slow backend for the skewed-latency benchmark, whose
 * proxies pass the same path to every server.
 * -l listens for HTTP/1.1 (server.c), -2 for HTTP/2 cleartext with prior
 * knowledge and the gRPC service (h2.c, grpc.c). Each kind has its own
 * THREADS worker threads.
 *
 * Every worker thread gets its own SO_REUSEPORT socket per address and its
 * own epoll loop, so threads share nothing on the request path. The main
 * thread only waits for SIGTERM/SIGINT and then wakes the workers through
 * an eventfd they all watch. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sgback.h"
#include "core/str.h"

#define MAX_ADDRS 64
#define MAX_THREADS 256

typedef struct addr {
    const char *text;              /* as given, for messages */
    struct sockaddr_storage sa;
    socklen_t len;
} addr;

static void usage(void)
{
    fprintf(stderr, "usage: sgback [-l ADDR:PORT]... [-2 ADDR:PORT]... [-t THREADS] [-d MS] [-q]\n"
                    "  -l: HTTP/1.1, -2: h2c (prior knowledge) + gRPC chat.Chat\n"
                    "  -d: HTTP/1.1 default route answers after MS ms\n"
                    "  default -l 127.0.0.1:9001 -t 1; ADDR may be [v6addr]\n");
    exit(2);
}

/* "127.0.0.1:9001", "[::1]:9001", ":9001" or "9001" (all: 127.0.0.1). */
static bool parse_addr(const char *text, addr *out)
{
    char host[256];
    const char *colon = strrchr(text, ':'), *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof host)
            return false;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = 0;
        port = close + 2;
    } else if (colon) {
        if ((size_t)(colon - text) >= sizeof host)
            return false;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = 0;
        port = colon + 1;
    } else {
        host[0] = 0;
        port = text;
    }
    if (host[0] == 0)
        strcpy(host, "127.0.0.1");
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
    struct addrinfo *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return false;
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    out->text = text;
    freeaddrinfo(res);
    return true;
}

static uint16_t addr_port(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

static void addr_set_port(struct sockaddr_storage *sa, uint16_t port)
{
    if (sa->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
}

static int open_socket(const addr *a, bool reuseport)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* SO_REUSEPORT would let us silently share a port with a stale sgback (the
 * kernel would split connections between the two). A plain bind first
 * fails if anyone holds the port; its closing leaves no TIME_WAIT. With
 * port 0 it also picks the port all threads then share. */
static bool claim_port(addr *a)
{
    int fd = open_socket(a, false);
    if (fd < 0)
        return false;
    struct sockaddr_storage got;
    socklen_t len = sizeof got;
    getsockname(fd, (struct sockaddr *)&got, &len);
    addr_set_port(&a->sa, addr_port(&got));
    close(fd);
    return true;
}

static bool open_listener(const addr *a, sgb_listener *l)
{
    int fd = open_socket(a, true);
    if (fd < 0 || listen(fd, 4096) < 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    l->kind = SGB_EV_LISTENER;
    l->fd = fd;
    l->port = addr_port(&a->sa);
    return true;
}

static void print_listening(const char *what, const addr *addrs, size_t n)
{
    printf("sgback %slistening on", what);
    for (size_t i = 0; i < n; i++) {
        char host[128];
        getnameinfo((const struct sockaddr *)&addrs[i].sa, addrs[i].len, host, sizeof host,
                    NULL, 0, NI_NUMERICHOST);
        if (addrs[i].sa.ss_family == AF_INET6)
            printf(" [%s]:%u", host, (unsigned)addr_port(&addrs[i].sa));
        else
            printf(" %s:%u", host, (unsigned)addr_port(&addrs[i].sa));
    }
    printf("\n");
    fflush(stdout);
}

typedef struct options {
    addr addrs[MAX_ADDRS];
    size_t naddrs;
    addr h2addrs[MAX_ADDRS];   /* -2: h2c */
    size_t nh2;
    size_t threads;
    bool quiet;
} options;

static void parse_args(int argc, char **argv, options *o)
{
    int opt;
    o->threads = 1;
    while ((opt = getopt(argc, argv, "l:2:t:d:qh")) != -1) {
        if (opt == 'l') {
            if (o->naddrs == MAX_ADDRS || !parse_addr(optarg, &o->addrs[o->naddrs])) {
                fprintf(stderr, "sgback: bad listen address '%s'\n", optarg);
                exit(2);
            }
            o->naddrs++;
        } else if (opt == '2') {
            if (o->nh2 == MAX_ADDRS || !parse_addr(optarg, &o->h2addrs[o->nh2])) {
                fprintf(stderr, "sgback: bad listen address '%s'\n", optarg);
                exit(2);
            }
            o->nh2++;
        } else if (opt == 't') {
            char *end;
            long t = strtol(optarg, &end, 10);
            if (*end || t < 1 || t > MAX_THREADS) {
                fprintf(stderr, "sgback: bad thread count '%s'\n", optarg);
                exit(2);
            }
            o->threads = (size_t)t;
        } else if (opt == 'd') {
            char *end;
            long ms = strtol(optarg, &end, 10);
            if (*end || ms < 0 || ms > 3600 * 1000) {
                fprintf(stderr, "sgback: bad delay '%s'\n", optarg);
                exit(2);
            }
            sgb_default_delay_ms = (uint64_t)ms;
        } else if (opt == 'q') {
            o->quiet = true;
        } else {
            usage();
        }
    }
    if (optind != argc)
        usage();
    if (o->naddrs == 0 && o->nh2 == 0 && !parse_addr("127.0.0.1:9001", &o->addrs[o->naddrs++]))
        exit(2);
}

/* All sockets of all threads exist before anything is announced, so a
 * test that waits for the "listening" line can connect at once. */
static sgb_listener *open_all(addr *addrs, size_t naddrs, size_t threads)
{
    for (size_t i = 0; i < naddrs; i++) {
        if (!claim_port(&addrs[i])) {
            fprintf(stderr, "sgback: cannot listen on %s: %s\n", addrs[i].text, strerror(errno));
            exit(1);
        }
    }
    sgb_listener *ls = sg_xcalloc(threads * naddrs, sizeof *ls);
    for (size_t t = 0; t < threads; t++) {
        for (size_t i = 0; i < naddrs; i++) {
            if (!open_listener(&addrs[i], &ls[t * naddrs + i])) {
                fprintf(stderr, "sgback: cannot listen on %s: %s\n", addrs[i].text, strerror(errno));
                exit(1);
            }
        }
    }
    return ls;
}

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
}

static void wait_for_stop(void)
{
    sigset_t stop_sigs;
    stop_signals(&stop_sigs);
    int sig;
    while (sigwait(&stop_sigs, &sig) != 0)
        ;
}

int main(int argc, char **argv)
{
    static options o;
    parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals before any thread exists so that only
     * wait_for_stop receives them. */
    sigset_t stop_sigs;
    stop_signals(&stop_sigs);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);

    sgb_listener *ls = open_all(o.addrs, o.naddrs, o.threads);
    sgb_listener *h2ls = o.nh2 ? open_all(o.h2addrs, o.nh2, o.threads) : NULL;
    sgb_routes_init();
    int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) {
        perror("sgback: eventfd");
        return 1;
    }
    size_t nt = o.threads;
    pthread_t *tids = sg_xcalloc(2 * nt, sizeof *tids);         /* h1, then h2 */
    sgb_worker_args *args = sg_xcalloc(2 * nt, sizeof *args);
    for (size_t t = 0; t < nt; t++) {
        args[t] = (sgb_worker_args){ .ls = &ls[t * o.naddrs], .nls = o.naddrs, .stop_fd = stop_fd };
        int e = pthread_create(&tids[t], NULL, sgb_worker_main, &args[t]);
        if (e != 0) {
            fprintf(stderr, "sgback: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    for (size_t t = 0; h2ls && t < nt; t++) {
        args[nt + t] = (sgb_worker_args){ .ls = &h2ls[t * o.nh2], .nls = o.nh2, .stop_fd = stop_fd };
        int e = pthread_create(&tids[nt + t], NULL, sgb_h2_worker_main, &args[nt + t]);
        if (e != 0) {
            fprintf(stderr, "sgback: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    if (!o.quiet) {
        if (o.naddrs)
            print_listening("", o.addrs, o.naddrs);
        if (o.nh2)
            print_listening("h2c ", o.h2addrs, o.nh2);
    }

    wait_for_stop();
    uint64_t one = 1;
    if (write(stop_fd, &one, sizeof one) < 0)
        perror("sgback: eventfd write");
    for (size_t t = 0; t < (h2ls ? 2 * nt : nt); t++)
        pthread_join(tids[t], NULL);
    close(stop_fd);
    free(tids);
    free(args);
    free(ls);
    free(h2ls);
    return 0;
}
