/* Fuzzes sg_h1_parse_request: no crash or overread, every slice inside the
 * head, and a head fed in two pieces (with prev_len) answers like one piece. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parser.h"

static const sg_h1_limits lim = { 256, 128, 1024, 16 };
static sg_h1_message m1, m2;

static void check_slice(sg_str s, const char *buf, size_t head)
{
    if (s.n == 0) return;
    assert(s.p >= buf && s.p + s.n <= buf + head);
}

static void check_message(const sg_h1_message *m, const char *buf, size_t n, int r)
{
    assert((size_t)r <= n && m->head_len == (size_t)r);
    assert(m->num_headers <= lim.max_headers);
    check_slice(m->method, buf, (size_t)r);
    check_slice(m->target, buf, (size_t)r);
    check_slice(m->host, buf, (size_t)r);
    check_slice(m->upgrade, buf, (size_t)r);
    assert(m->method.n > 0 && m->target.n > 0);
    assert(m->minor_version == 0 || m->minor_version == 1);
    for (size_t i = 0; i < m->num_headers; i++) {
        assert(m->headers[i].name.n > 0);
        check_slice(m->headers[i].name, buf, (size_t)r);
        check_slice(m->headers[i].value, buf, (size_t)r);
        for (size_t k = 0; k < m->headers[i].name.n; k++)
            assert(sg_h1_is_tchar((unsigned char)m->headers[i].name.p[k]));
    }
    assert(m->body != SG_H1_BODY_UNTIL_CLOSE);
    if (m->body == SG_H1_BODY_LENGTH)
        assert(m->content_length > 0 && m->content_length <= (UINT64_C(1) << 62));
    if (m->minor_version == 1) assert(m->host.n > 0);
}

static int parse_copy(const uint8_t *data, size_t n, size_t prev, sg_h1_message *m)
{
    char *b = malloc(n ? n : 1);     /* exact size: ASan sees any overread */
    memcpy(b, data, n);
    int r = sg_h1_parse_request(b, n, prev, &lim, m);
    if (r > 0) check_message(m, b, n, r);
    free(b);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t n = size - 2;
    size_t k = ((size_t)data[0] | (size_t)data[1] << 8) % (n + 1);
    data += 2;

    int whole = parse_copy(data, n, 0, &m1);
    assert(whole == 0 || whole > 0 || whole == -400 || whole == -414 || whole == -431 ||
           whole == -501 || whole == -505);

    int r1 = parse_copy(data, k, 0, &m2);
    if (r1 > 0) {
        assert(r1 == whole);
    } else if (r1 == 0) {
        int r2 = parse_copy(data, n, k, &m2);
        assert(r2 == whole);
        if (whole > 0) {
            assert(m1.num_headers == m2.num_headers && m1.body == m2.body);
            assert(m1.content_length == m2.content_length && m1.keep_alive == m2.keep_alive);
        }
    } else {
        /* The limits fired on the prefix: the whole is never accepted. */
        assert(whole <= 0);
    }
    return 0;
}
