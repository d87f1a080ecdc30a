/* Fuzz target: arbitrary bytes as a configuration file.
 *
 * Build with -DSG_FUZZING so that the loader resolves only numeric
 * addresses and "localhost" (no DNS) and refuses "include" (no reading of
 * the machine's files); the prefix points nowhere for the same reason. */
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "proxy/router.h"

#ifndef SG_FUZZING
#warning "build fuzz_conf with -DSG_FUZZING (no DNS, no include) or it may query DNS and read files"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    sg_conf *c = sg_conf_load_string((const char *)data, size, "fuzz.conf", "/nonexistent-fuzz",
                                     err, sizeof(err));
    if (!c) return 0;
    sg_router_build(c);                    /* what main.c does with every generation it loads */
    sg_conf_unref(c);
    return 0;
}
