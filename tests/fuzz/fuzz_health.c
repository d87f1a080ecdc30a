/* Fuzzes what an active health check reads from a peer (upstream/health.c):
 * an HTTP/1 answer (status line, headers, body) evaluated against a
 * `match` block, and a gRPC HealthCheckResponse. Memory safety, plus:
 * what the parser returns lies inside the input. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/health_conf.h"
#include "upstream/health.h"

static sg_conf *conf;

static const char conf_text[] =
    "events {}\nhttp {\n"
    "  match m { status 200-399; status ! 302; header Content-Type ~ \"^text/\"; header X-A != b;\n"
    "            header ! X-Bad; body ~ \"o+k\"; body !~ \"fail\"; }\n"
    "}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!conf) {
        char err[512];
        conf = sg_conf_load_string(conf_text, sizeof(conf_text) - 1, "fuzz.conf", "/nonexistent-fuzz", err,
                                   sizeof(err));
        assert(conf && conf->health && conf->health->nmatches == 1);
    }
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    int status;
    const char *hs, *body;
    size_t hl, bl;
    if (sg_health_parse_http1(buf, size, &status, &hs, &hl, &body, &bl)) {
        assert(hs >= buf && hs + hl <= buf + size && body >= buf && body + bl <= buf + size);
        assert(status >= 0 && status <= 999);
        bool a = sg_hc_match_http(conf->health->matches[0], status, hs, hl, body, bl);
        assert(a == sg_hc_match_http(conf->health->matches[0], status, hs, hl, body, bl));
        (void)sg_hc_match_http(NULL, status, hs, hl, body, bl);
    }
    long s = sg_health_grpc_serving_status((const uint8_t *)buf, size);
    (void)s;
    free(buf);
    return 0;
}
