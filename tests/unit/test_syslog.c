#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/syslog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static void expect_bad(const char *spec, const char *msg)
{
    char err[256] = "";
    cr_assert_null(sg_syslog_get(spec, err, sizeof(err)), "%s accepted", spec);
    cr_assert(strstr(err, msg) != NULL, "%s: \"%s\" lacks \"%s\"", spec, err, msg);
}

Test(syslog, spec_errors_as_nginx)
{
    expect_bad("server=127.0.0.1:0", "invalid port");
    expect_bad("server=127.0.0.1:65536", "invalid port");
    expect_bad("server=[::1", "invalid address");
    expect_bad("server=", "unknown syslog parameter");
    expect_bad("facility=user", "no syslog server specified");
    expect_bad("server=127.0.0.1,facility=nope", "unknown syslog facility \"nope\"");
    expect_bad("server=127.0.0.1,severity=loud", "unknown syslog severity \"loud\"");
    expect_bad("server=127.0.0.1,tag=a-b", "only allows alphanumeric characters and underscore");
    expect_bad("server=127.0.0.1,tag=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "syslog tag length exceeds 32");
    expect_bad("server=127.0.0.1,hostname", "unknown syslog parameter \"hostname\"");
}

Test(syslog, addresses)
{
    char err[256];
    cr_assert_not_null(sg_syslog_get("server=127.0.0.1", err, sizeof(err)), "%s", err);
    cr_assert_not_null(sg_syslog_get("server=[::1]:5514,facility=local0", err, sizeof(err)), "%s", err);
    cr_assert_not_null(sg_syslog_get("server=::1", err, sizeof(err)), "%s", err);
    cr_assert_not_null(sg_syslog_get("server=unix:/nonexistent/log.sock", err, sizeof(err)), "%s", err);
    /* the same spec twice: one peer */
    cr_assert_eq(sg_syslog_get("server=127.0.0.1", err, sizeof(err)),
                 sg_syslog_get("server=127.0.0.1", err, sizeof(err)));
}

static int udp_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void receive(int fd, char *buf, size_t cap)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 5000), 1, "no datagram");
    ssize_t n = recv(fd, buf, cap - 1, 0);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
}

static void expect_match(const char *s, const char *re)
{
    regex_t rx;
    cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    cr_assert_eq(regexec(&rx, s, 0, NULL, 0), 0, "\"%s\" !~ %s", s, re);
    regfree(&rx);
}

Test(syslog, message_format)
{
    int port;
    int fd = udp_listener(&port);
    char spec[128], err[256], buf[8192];
    snprintf(spec, sizeof(spec), "server=127.0.0.1:%d,facility=user,tag=t_1,nohostname", port);
    const sg_syslog *s = sg_syslog_get(spec, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    sg_syslog_send(s, -1, "GET / 200", 9);     /* the peer's severity: info */
    receive(fd, buf, sizeof(buf));
    expect_match(buf, "^<14>(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3][0-9] "
                      "[0-9]{2}:[0-9]{2}:[0-9]{2} t_1: GET / 200$");
    sg_syslog_send(s, 3, "x", 1);              /* error_log: the message's own */
    receive(fd, buf, sizeof(buf));
    expect_match(buf, "^<11>.* t_1: x$");
    /* a long message is cut to one datagram, not split */
    static char big[10000];
    memset(big, 'a', sizeof(big));
    sg_syslog_send(s, -1, big, sizeof(big));
    receive(fd, buf, sizeof(buf));
    cr_assert_eq(strlen(buf), 4096);
    close(fd);
}

Test(syslog, error_log_spec_list)
{
    char *a = sg_log_spec_add(NULL, "/tmp/x.log", SG_LOG_WARN);
    char *b = sg_log_spec_add(a, "syslog:server=127.0.0.1", SG_LOG_INFO);
    cr_assert_str_eq(b, "\x1f" "3/tmp/x.log\x1f" "1syslog:server=127.0.0.1");
    free(a);
    free(b);
}
