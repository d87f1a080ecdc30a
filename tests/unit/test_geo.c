/* geo tables (conf/geo.c): nginx's longest network, deletes, duplicates,
 * ranges cut around a range inside them, the address rules. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/geo.h"

static sg_conf conf;
static char err[512];
static sg_conf_pos P = { "g.conf", 3, 5 };

static void setup(void)
{
    memset(&conf, 0, sizeof(conf));
    sg_arena_init(&conf.arena, 0);
    err[0] = '\0';
}

static void teardown(void)
{
    sg_arena_free(&conf.arena);
}

TestSuite(geo, .init = setup, .fini = teardown);

static void line(sg_geo *g, const char *k, const char *v)
{
    sg_str val = v ? sg_str_from(v) : SG_STR_NULL;
    cr_assert(sg_geo_line(g, sg_str_from(k), v ? &val : NULL, P, err, sizeof(err)), "%s %s: %s", k, v ? v : "", err);
}

static const char *at(const sg_geo *g, const char *addr)
{
    struct sockaddr_storage ss;
    sg_geo_text_addr(sg_str_from(addr), &ss);
    const sg_cval *v = sg_geo_find(g, (const struct sockaddr *)&ss);
    static char buf[64];
    if (!v) return "(none)";
    snprintf(buf, sizeof(buf), "%.*s", (int)v->text.n, v->text.p);
    return buf;
}

Test(geo, longest_network_delete_and_duplicates)
{
    sg_geo *g = sg_geo_new(&conf);
    line(g, "default", "world");
    line(g, "10.0.0.0/8", "ten");
    line(g, "10.1.0.0/16", "ten-one");
    line(g, "10.1.2.3", "host");
    line(g, "2001:db8::/32", "doc6");
    line(g, "2001:db8:1::/48", "doc6-1");
    cr_assert_str_eq(at(g, "10.9.9.9"), "ten");
    cr_assert_str_eq(at(g, "10.1.9.9"), "ten-one");
    cr_assert_str_eq(at(g, "10.1.2.3"), "host");
    cr_assert_str_eq(at(g, "::ffff:10.1.2.3"), "host");          /* IPv4-mapped counts as IPv4 */
    cr_assert_str_eq(at(g, "2001:db8:1::7"), "doc6-1");
    cr_assert_str_eq(at(g, "2001:db8:2::7"), "doc6");
    cr_assert_str_eq(at(g, "192.0.2.1"), "world");
    cr_assert_str_eq(at(g, "not an address"), "world");         /* 255.255.255.255 */
    line(g, "10.1.0.0/16", "again");                            /* a duplicate: the later value */
    cr_assert_str_eq(at(g, "10.1.9.9"), "again");
    line(g, "delete", "10.1.0.0/16");
    cr_assert_str_eq(at(g, "10.1.9.9"), "ten");
    line(g, "10.1.0.0/16", "back");                             /* deleted, then written again */
    cr_assert_str_eq(at(g, "10.1.9.9"), "back");
    line(g, "0.0.0.0/0", "all4");
    cr_assert_str_eq(at(g, "192.0.2.1"), "all4");
    cr_assert_str_eq(at(g, "2001:db9::1"), "world");            /* an IPv4 network never holds IPv6 */
}

Test(geo, many_networks)
{
    sg_geo *g = sg_geo_new(&conf);
    char k[32], v[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof(k), "%d.%d.%d.0/24", 1 + i / 65536, i / 256 % 256, i % 256);
        snprintf(v, sizeof(v), "n%d", i);
        line(g, k, v);
    }
    cr_assert_str_eq(at(g, "1.0.0.1"), "n0");
    cr_assert_str_eq(at(g, "1.19.135.200"), "n4999");
    cr_assert_str_eq(at(g, "1.19.136.1"), "(none)");
}

Test(geo, ranges)
{
    sg_geo *g = sg_geo_new(&conf);
    line(g, "ranges", NULL);
    line(g, "default", "none");
    line(g, "127.0.0.0-127.0.0.255", "test");
    line(g, "127.0.0.1-127.0.0.1", "loopback");                 /* cuts the range around itself */
    cr_assert_str_eq(at(g, "127.0.0.0"), "test");
    cr_assert_str_eq(at(g, "127.0.0.1"), "loopback");
    cr_assert_str_eq(at(g, "127.0.0.2"), "test");
    line(g, "delete", "127.0.0.0-127.0.0.0");
    line(g, "delete", "127.0.0.2-127.0.0.255");
    cr_assert_str_eq(at(g, "127.0.0.9"), "none");
    cr_assert_str_eq(at(g, "127.0.0.1"), "loopback");
    cr_assert_str_eq(at(g, "::1"), "none");                     /* IPv6: 255.255.255.255 in ranges */
    sg_str v = sg_str_from("x");
    cr_assert_not(sg_geo_line(g, sg_str_from("10.0.0.0/8"), &v, P, err, sizeof(err)));
    cr_assert(strstr(err, "invalid range \"10.0.0.0/8\""), "%s", err);
}

Test(geo, ordered_ranges_by_binary_search)
{
    sg_geo *g = sg_geo_new(&conf);
    line(g, "ranges", NULL);
    line(g, "10.0.0.0-10.0.0.9", "a");
    line(g, "10.0.0.20-10.0.0.29", "b");
    line(g, "10.0.1.0-10.0.255.255", "c");
    cr_assert_str_eq(at(g, "10.0.0.5"), "a");
    cr_assert_str_eq(at(g, "10.0.0.15"), "(none)");
    cr_assert_str_eq(at(g, "10.0.0.29"), "b");
    cr_assert_str_eq(at(g, "10.0.200.1"), "c");
    cr_assert_str_eq(at(g, "10.1.0.0"), "(none)");
    cr_assert_str_eq(at(g, "9.255.255.255"), "(none)");
}

Test(geo, ranges_after_addresses_are_refused)
{
    sg_geo *g = sg_geo_new(&conf);
    line(g, "10.0.0.0/8", "x");
    cr_assert_not(sg_geo_line(g, sg_str_from("ranges"), NULL, P, err, sizeof(err)));
    cr_assert(strstr(err, "\"ranges\" must be before any address in geo"), "%s", err);
}
