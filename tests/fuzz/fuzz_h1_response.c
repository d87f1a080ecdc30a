/* Fuzzes sg_h1_parse_response: no crash or overread, slices inside the
 * head, framing consistent, and two pieces answer like one. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parser.h"

static sg_h1_message m1, m2;
static const char *const methods[] = { "GET", "HEAD", "CONNECT", "POST" };

static void check_slice(sg_str s, const char *buf, size_t head)
{
    if (s.n == 0) return;
    assert(s.p >= buf && s.p + s.n <= buf + head);
}

static int parse_copy(const uint8_t *data, size_t n, size_t prev, sg_str method,
                      sg_h1_message *m)
{
    char *b = malloc(n ? n : 1);
    memcpy(b, data, n);
    int r = sg_h1_parse_response(b, n, prev, method, m);
    assert(r >= 0 || r == -502);
    if (r > 0) {
        assert((size_t)r <= n && (size_t)r <= SG_H1_MAX_RESPONSE_HEAD);
        assert(m->status >= 100 && m->status <= 999);
        assert(m->num_headers <= SG_H1_MAX_HEADERS);
        check_slice(m->reason, b, (size_t)r);
        check_slice(m->upgrade, b, (size_t)r);
        for (size_t i = 0; i < m->num_headers; i++) {
            check_slice(m->headers[i].name, b, (size_t)r);
            check_slice(m->headers[i].value, b, (size_t)r);
        }
        if (m->body == SG_H1_BODY_UNTIL_CLOSE) assert(!m->keep_alive);
        if (m->status < 200 || m->status == 204 || m->status == 304)
            assert(m->body == SG_H1_BODY_NONE);
    }
    free(b);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    sg_str method = sg_str_from(methods[data[0] & 3]);
    size_t n = size - 3;
    size_t k = ((size_t)data[1] | (size_t)data[2] << 8) % (n + 1);
    data += 3;

    int whole = parse_copy(data, n, 0, method, &m1);
    int r1 = parse_copy(data, k, 0, method, &m2);
    if (r1 > 0) {
        assert(r1 == whole);
    } else if (r1 == 0) {
        assert(parse_copy(data, n, k, method, &m2) == whole);
        if (whole > 0) assert(m1.body == m2.body && m1.keep_alive == m2.keep_alive);
    } else {
        assert(whole < 0);
    }
    return 0;
}
