/* Fuzzes the HTTP/2 server codec: arbitrary client bytes arrive on a
 * socket accepted as the server accepts them (sg_h2_server_accept on an
 * `http2` listen group of a real configuration, a worker of its own), so
 * they go through the same reads, preface check (and HTTP/1.1 fallback),
 * nghttp2, callbacks, abuse accounting and request building. Exchanges
 * are answered by a stub handler installed as the proxy core installs
 * its own (sg_exchange_set_handler): at once, after the body, or aborted.
 * Output is written to the socket pair and drained; at the end every
 * connection is closed as a fast stop would. ASan/UBSan and
 * LeakSanitizer catch what goes wrong.
 *
 * Input: byte 0 = options (bit 0: prepend the client preface; the value
 * also sets how the rest is split into reads), then raw client bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/worker.h"
#include "exchange/exchange.h"
#include "http/h2_server.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

/* Small limits, so that floods and big header blocks hit them. */
static const char conf_text[] =
    "events {}\n"
    "http {\n"
    "    access_log off;\n"
    "    server {\n"
    "        listen 127.0.0.1:1 http2;\n"
    "        http2_max_concurrent_streams 16;\n"
    "        http2_body_preread_size 4k;\n"
    "        http2_max_field_size 2k;\n"
    "        http2_max_header_size 4k;\n"
    "    }\n"
    "}\n";

static unsigned started;             /* exchanges so far: picks each one's fate */

static void respond(sg_exchange *ex)
{
    static const char body[] = "fuzz response body\n";
    sg_header h = { SG_STR("X-Fuzz"), SG_STR("1"), 0 };
    sg_response resp = { .status = ex->early_status ? ex->early_status : 200, .headers = &h,
                         .nheaders = 1, .content_length = -1, .has_body = true };
    ex->down->send_head(ex, &resp);
    for (int i = 0; i < 4; i++) ex->down->send_data(ex, body, sizeof(body) - 1);
    ex->down->send_end(ex);
}

/* Every path of the codec (queues, deferred data, resets, drains): some
 * exchanges are aborted, some answered at once, others after their body. */
static void on_start(sg_exchange *ex)
{
    unsigned k = ++started;
    if (k % 7 == 0) ex->down->abort(ex);
    else if (ex->req_length == 0 || k % 3 == 0) respond(ex);
    else ex->down->want_body(ex, true);
}

static void on_body(sg_exchange *ex, const char *p, size_t n)
{
    ex->req_body_bytes += n;
    /* the client chooses which bodies stall: by the length of its path */
    if (ex->req_body_bytes > 4096 && ex->req.uri.n % 5 == 0) ex->down->want_body(ex, false);
}

static void on_body_end(sg_exchange *ex)
{
    ex->req_body_done = true;
    if (!ex->resp_head_sent) respond(ex);
}

static void nop(sg_exchange *ex)
{
}

static const sg_exchange_handler stub = {
    .start = on_start,
    .on_body = on_body,
    .on_body_end = on_body_end,
    .on_drain = nop,
    .on_abort = nop,
    .finish = nop,
};

static void drain(int fd)
{
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void close_fast(sg_conn_node *n, void *arg)
{
    n->shutdown(n, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sg_worker *w;
    static sg_conf *conf;
    if (!w) {
        char err[512];
        sg_log_open("/dev/null", SG_LOG_EMERG);
        conf = sg_conf_load_string(conf_text, sizeof(conf_text) - 1, "fuzz_h2_server", "/tmp", err, sizeof(err));
        if (!conf) abort();
        w = sg_worker_new(0);
        sg_worker_bind(w);
        sg_worker_switch_conf(w, conf);
        sg_exchange_set_handler(&stub);
    }
    int sv[2];
    if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) return 0;
    sg_loop *loop = sg_worker_loop(w);
    struct sockaddr_storage sa = { .ss_family = AF_INET };
    sg_h2_server_accept(w, &conf->listens[0], sv[0], (struct sockaddr *)&sa, sizeof(sa),
                        (struct sockaddr *)&sa, sizeof(sa), NULL, 0);
    /* byte 0: low bit set = prepend the preface; the rest is split into
     * pieces of 1..256 bytes so that frames straddle reads */
    size_t step = (size_t)data[0] + 1;
    if (data[0] & 1) (void)!write(sv[1], PREFACE, sizeof(PREFACE) - 1);
    sg_loop_run_once(loop, 0);
    for (size_t off = 1; off < size; off += step) {
        size_t k = size - off < step ? size - off : step;
        if (send(sv[1], data + off, k, MSG_NOSIGNAL) != (ssize_t)k) break;   /* closed */
        sg_loop_run_once(loop, 0);
        drain(sv[1]);
    }
    sg_worker_each_conn(w, close_fast, NULL);
    sg_loop_run_deferred(loop);
    close(sv[1]);
    return 0;
}
