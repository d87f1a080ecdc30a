/* Where the unit tests find the seed configurations: $SG_SEED_DIR, else
 * ../shared/seed-configs beside the repository (as in CI), found from the
 * test binary's own path, REPO/BUILD/unit-tests. */
#ifndef SG_TEST_SEED_DIR_H
#define SG_TEST_SEED_DIR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *sg_test_seed_dir(void)
{
    static char dir[360];   /* sized so that callers' path[512] holds dir/NAME */
    const char *env = getenv("SG_SEED_DIR");
    if (env && *env) return env;
    if (!dir[0]) {
        char path[320];
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
        if (n < 0) n = 0;
        path[n] = '\0';
        for (int i = 0; i < 3; i++) {   /* unit-tests, BUILD, REPO */
            char *slash = strrchr(path, '/');
            if (slash) *slash = '\0';
        }
        snprintf(dir, sizeof(dir), "%s/shared/seed-configs", path);
    }
    return dir;
}

#endif
