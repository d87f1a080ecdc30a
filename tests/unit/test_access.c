#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <string.h>

#include "conf/directives.h"
#include "proxy/access.h"

static struct sockaddr_storage v4(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, a, &sin->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, a, &sin6->sin6_addr);
    return ss;
}

static sg_access_rule rule(const char *text, bool deny)
{
    sg_access_rule r;
    bool low;
    cr_assert(sg_conf_parse_access_rule(text, deny, &r, &low), "%s", text);
    return r;
}

static bool allows(const sg_access_rule *rules, size_t n, struct sockaddr_storage ss)
{
    return sg_access_allows(rules, n, (const struct sockaddr *)&ss);
}

Test(access, first_match_decides)
{
    sg_access_rule rules[] = { rule("10.0.0.1", false), rule("10.0.0.0/8", true), rule("all", false) };
    cr_assert(allows(rules, 3, v4("10.0.0.1")));
    cr_assert_not(allows(rules, 3, v4("10.200.0.1")));
    cr_assert(allows(rules, 3, v4("11.0.0.1")));
}

Test(access, no_rule_matching_allows)
{
    sg_access_rule rules[] = { rule("192.168.0.0/16", true) };
    cr_assert(allows(rules, 1, v4("10.0.0.1")));
    cr_assert(allows(rules, 0, v4("10.0.0.1")));
}

Test(access, ipv6_and_mapped_ipv4)
{
    sg_access_rule rules[] = { rule("2001:db8::/32", true), rule("127.0.0.0/8", true), rule("all", false) };
    cr_assert_not(allows(rules, 3, v6("2001:db8:1::5")));
    cr_assert(allows(rules, 3, v6("2001:db9::5")));
    cr_assert_not(allows(rules, 3, v6("::ffff:127.0.0.1")));   /* dual-stack listener */
    cr_assert(allows(rules, 3, v6("::1")));
}

Test(access, masks_and_low_bits)
{
    sg_access_rule r;
    bool low;
    cr_assert(sg_conf_parse_access_rule("10.1.2.3/8", false, &r, &low));
    cr_assert(low);
    cr_assert(sg_conf_parse_access_rule("10.0.0.0/8", false, &r, &low));
    cr_assert_not(low);
    cr_assert(sg_conf_parse_access_rule("0.0.0.0/0", true, &r, &low));
    sg_access_rule rules[] = { r };
    cr_assert_not(allows(rules, 1, v4("8.8.8.8")));
    const char *bad[] = { "300.1.1.1", "10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/-1", "host", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(sg_conf_parse_access_rule(bad[i], false, &r, &low), "%s", bad[i]);
}
