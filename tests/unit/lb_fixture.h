/* An upstream block built in memory, as the config loader would: the
 * fixture of the balancer tests (test_balancer.c, test_hash_balancer.c). */
#ifndef SG_TEST_LB_FIXTURE_H
#define SG_TEST_LB_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "upstream/balancer.h"

#define LB_FX_MAXS 8

typedef struct lb_fixture {
    sg_upstream_conf u;
    sg_upstream_server_conf s[LB_FX_MAXS];
    char names[LB_FX_MAXS][32];
} lb_fixture;

static inline void lb_fx_init(lb_fixture *f, sg_lb_method lb)
{
    memset(f, 0, sizeof(*f));
    f->u.name = "backend";
    f->u.servers = f->s;
    f->u.lb = lb;
}

/* server 127.0.0.1:PORT weight=WEIGHT (max_fails 1, fail_timeout 10s). */
static inline sg_upstream_server_conf *lb_fx_add(lb_fixture *f, int port, int weight)
{
    size_t i = f->u.nservers++;
    sg_upstream_server_conf *s = &f->s[i];
    snprintf(f->names[i], sizeof(f->names[i]), "127.0.0.1:%d", port);
    s->name = f->names[i];
    struct sockaddr_in *sin = (struct sockaddr_in *)&s->addr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->addrlen = sizeof(*sin);
    s->weight = weight;
    s->max_fails = 1;
    s->fail_timeout_ms = 10000;
    return s;
}

#endif
