/* Fuzzes the variables that read what peers sent (issue 9): a request
 * head parsed by the HTTP/1.1 parser and an upstream response head become
 * an sg_http_req, and a log line of every variable that parses them is
 * evaluated ($remote_user's base64, $request_port from the target or
 * Host, $upstream_cookie_ over Set-Cookie, $upstream_http_/$sent_http_
 * joins, $http_ joins, $cookie_, $arg_). Checks that found values lie
 * inside the input or the request's arena and that JSON escaping leaves
 * no control byte.
 *
 * Input: bytes 0-1 = length of the request part (little endian, modulo
 * the size), then the request head, then the response head. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "exchange/vars.h"
#include "http/h1_parser.h"

static const char *const FORMAT =
    "$remote_user|$request_port|$is_request_port|$upstream_cookie_session|$upstream_cookie_a|"
    "$upstream_http_set_cookie|$upstream_http_x_foo|$sent_http_x_foo|$sent_http_content_length|"
    "$http_cookie|$http_x_foo|$cookie_a|$arg_a|$arg_|$content_length|$content_type|$connection|"
    "$connection_requests|$http2|$request_id";

static sg_conf *conf;
static sg_cval format;
static const sg_h1_limits lim = { 8192, 8192, 16384, SG_H1_MAX_HEADERS };
static sg_h1_message req_m, resp_m;

static void setup(void)
{
    if (conf) return;
    static const char text[] = "events {} http { server { listen 127.0.0.1:1; } }";
    char err[512];
    conf = sg_conf_load_string(text, sizeof(text) - 1, "fuzz.conf", "/tmp", err, sizeof(err));
    assert(conf);
    sg_conf_pos pos = { "fuzz", 1, 1 };
    bool ok = sg_cval_compile(conf, sg_str_from(FORMAT), pos, &format, err, sizeof(err));
    assert(ok);
}

static void to_headers(const sg_h1_message *m, sg_header *h)
{
    for (size_t i = 0; i < m->num_headers; i++)
        h[i] = (sg_header){ m->headers[i].name, m->headers[i].value, m->headers[i].flags };
}

static void run(const char *rq, size_t nrq, const char *rs, size_t nrs)
{
    if (sg_h1_parse_request(rq, nrq, 0, &lim, &req_m) <= 0) return;
    sg_header hdrs[SG_H1_MAX_HEADERS], up[SG_H1_MAX_HEADERS];
    to_headers(&req_m, hdrs);
    sg_http_req r = { .gen = conf, .method = req_m.method, .request_uri = req_m.target, .http_major = 1,
                      .http_minor = req_m.minor_version, .headers = hdrs, .nheaders = req_m.num_headers,
                      .resp_content_length = -1 };
    const char *q = memchr(req_m.target.p, '?', req_m.target.n);
    if (q) {
        r.has_args = true;
        r.args = (sg_str){ q + 1, (size_t)(req_m.target.p + req_m.target.n - q - 1) };
    }
    if (nrs && sg_h1_parse_response(rs, nrs, 0, req_m.method, &resp_m) > 0) {
        to_headers(&resp_m, up);
        r.up_headers = up;
        r.nup_headers = resp_m.num_headers;
        r.resp_headers = up;
        r.nresp_headers = resp_m.num_headers;
    }
    sg_arena_init(&r.arena, 1);   /* an allocation per chunk: ASan sees overruns */
    sg_strbuf out = { 0 };
    sg_cval_eval_log(&format, &r, true, false, &out);
    for (size_t i = 0; i < out.n; i++) assert((unsigned char)out.p[i] >= 0x20);
    sg_strbuf_free(&out);
    sg_cval_eval_log(&format, &r, false, false, &out);
    sg_strbuf_free(&out);
    sg_arena_free(&r.arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 2) return 0;
    size_t n = size - 2;
    size_t k = ((size_t)data[0] | (size_t)data[1] << 8) % (n + 1);
    char *rq = malloc(k ? k : 1), *rs = malloc(n - k ? n - k : 1);   /* exact: overreads show */
    memcpy(rq, data + 2, k);
    memcpy(rs, data + 2 + k, n - k);
    run(rq, k, rs, n - k);
    free(rq);
    free(rs);
    return 0;
}
