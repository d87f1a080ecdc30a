/* Fuzzes the realip header walk (proxy/realip.c on exchange/forwarded.c,
 * which geo's `proxy` uses too): any X-Forwarded-For or
 * X-Real-IP value from a trusted peer, recursive or not. Checks: no crash,
 * and when the address changes it is an IPv4 or IPv6 one and the
 * connection's own address is kept in conn_peer. */
#include <arpa/inet.h>
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "conf/directives.h"
#include "proxy/realip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sg_access_rule rules[2];
    static bool ready;
    if (!ready) {
        bool low;
        sg_conf_parse_access_rule("127.0.0.0/8", false, &rules[0], &low);
        sg_conf_parse_access_rule("2001:db8::/32", false, &rules[1], &low);
        ready = true;
    }
    sg_loc_conf lc;
    memset(&lc, 0, sizeof(lc));
    lc.realip_from = rules;
    lc.nrealip_from = 2;
    lc.realip_header = SG_STR("X-Forwarded-For");
    lc.realip_recursive = size > 0 && (data[0] & 1);

    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(1234) };
    inet_pton(AF_INET, "127.0.0.1", &peer.sin_addr);
    sg_header h = { .name = SG_STR("x-forwarded-for"), .value = { (const char *)data, size } };
    sg_http_req r;
    memset(&r, 0, sizeof(r));
    sg_arena_init(&r.arena, 0);
    r.peer = (const struct sockaddr *)&peer;
    r.headers = &h;
    r.nheaders = 1;
    sg_realip_apply(&r, &lc);
    if (r.conn_peer) {
        assert(r.conn_peer == (const struct sockaddr *)&peer);
        assert(r.peer->sa_family == AF_INET || r.peer->sa_family == AF_INET6);
    } else {
        assert(r.peer == (const struct sockaddr *)&peer);
    }
    sg_arena_free(&r.arena);
    return 0;
}
