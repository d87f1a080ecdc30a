/* The per-worker cache of run-time upstreams (upstream/dynamic.h). */
#include <criterion/criterion.h>

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "upstream/dynamic.h"

static struct sockaddr_storage addr4(int port, socklen_t *len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(0x7f000001);
    *len = sizeof(*sin);
    return ss;
}

static sg_dyn_entry *add(sg_dyn *d, int port, uint64_t expires, uint64_t now)
{
    char key[32];
    socklen_t len;
    struct sockaddr_storage ss = addr4(port, &len);
    snprintf(key, sizeof(key), "127.0.0.1:%d", port);
    return sg_dyn_add(d, key, NULL, &ss, &len, 1, expires, now);
}

Test(dynamic, entry_is_an_implicit_upstream_named_by_address)
{
    sg_dyn *d = sg_dyn_new(0, 2, NULL);
    sg_dyn_entry *e = add(d, 8081, 0, 1000);
    const sg_upstream_conf *u = sg_dyn_upstream(e);
    cr_assert(u->implicit);
    cr_assert_str_eq(u->name, "127.0.0.1:8081");
    cr_assert_eq(u->nservers, 1);
    cr_assert_str_eq(u->servers[0].name, "127.0.0.1:8081");
    cr_assert_not_null(u->runtime);
    cr_assert_eq(sg_dyn_find(d, "127.0.0.1:8081", 5000), e);
    cr_assert_eq(add(d, 8081, 0, 5000), e, "the same key gives the live entry");
    sg_dyn_free(d);
}

Test(dynamic, key_suffix_is_not_part_of_the_name)
{
    sg_dyn *d = sg_dyn_new(0, 1, NULL);
    socklen_t len;
    struct sockaddr_storage ss = addr4(80, &len);
    sg_dyn_entry *e = sg_dyn_add(d, "a.example:80 resolver 0", NULL, &ss, &len, 1, 0, 0);
    cr_assert_str_eq(sg_dyn_upstream(e)->name, "a.example:80");
    cr_assert_null(sg_dyn_find(d, "a.example:80", 0));
    cr_assert_eq(sg_dyn_find(d, "A.EXAMPLE:80 resolver 0", 0), e);
    sg_dyn_free(d);
}

Test(dynamic, expired_entries_are_looked_up_again)
{
    sg_dyn *d = sg_dyn_new(0, 1, NULL);
    sg_dyn_entry *e = add(d, 9000, 2000, 1000);
    cr_assert_eq(sg_dyn_find(d, "127.0.0.1:9000", 1999), e);
    cr_assert_null(sg_dyn_find(d, "127.0.0.1:9000", 2000));
    sg_dyn_free(d);
}

Test(dynamic, bounded_and_held_entries_stay)
{
    sg_dyn *d = sg_dyn_new(0, 1, NULL);
    sg_dyn_entry *held = add(d, 1, 0, 0);
    sg_dyn_hold(held);
    for (int p = 2; p < 2 + 3 * SG_DYN_MAX; p++) add(d, p, 0, (uint64_t)p * 10);
    int live = 0;
    for (int p = 1; p < 2 + 3 * SG_DYN_MAX; p++) {
        char key[32];
        snprintf(key, sizeof(key), "127.0.0.1:%d", p);
        if (sg_dyn_find(d, key, 100000)) live++;
    }
    cr_assert_leq(live, SG_DYN_MAX, "%d live entries", live);
    cr_assert_eq(sg_dyn_find(d, "127.0.0.1:1", 100000), held, "a held entry is never evicted");
    char last[32];
    snprintf(last, sizeof(last), "127.0.0.1:%d", 1 + 3 * SG_DYN_MAX);
    cr_assert_not_null(sg_dyn_find(d, last, 100000));
    sg_dyn_drop(held);
    sg_dyn_free(d);
}
