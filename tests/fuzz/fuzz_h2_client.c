/* Fuzzes the HTTP/2 client codec: arbitrary bytes are the backend's side
 * of an upstream connection (read from a socket as in production) that
 * carries one to three requests of a stub core, which reads, pauses and
 * drops responses as the proxy core may; refused streams reconnect, then
 * everything is closed. ASan/UBSan and LeakSanitizer catch what goes
 * wrong. Needs -DSG_FUZZING.
 *
 * Input: byte 0 = options (see sg_h2_client_fuzz in src/http/h2_client.c:
 * number of requests, body, extended CONNECT, pause, drops, EOF), byte 1 =
 * read size - 1, then the backend's bytes (SETTINGS first). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "http/h2_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet)   /* the codec logs every upstream error it sees: thousands a second */
        quiet = sg_log_open("/dev/null", SG_LOG_EMERG);
    sg_h2_client_fuzz(data, size);
    return 0;
}
