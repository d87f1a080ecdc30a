/* Process-wide generation users: a short list under one lock, touched
 * only when a thread starts or stops using a generation. */
#include "server/generations.h"

#include <pthread.h>
#include <stdbool.h>

#include "core/str.h"

#include "server/runtime.h"

typedef struct live_gen {
    sg_conf *conf;
    int users;
} live_gen;

static pthread_mutex_t gens_lock = PTHREAD_MUTEX_INITIALIZER;
static live_gen *live;               /* grows: long-lived exchanges may pin many generations */
static size_t nlive, caplive;

void sg_generation_acquire(sg_conf *c)
{
    pthread_mutex_lock(&gens_lock);
    for (size_t i = 0; i < nlive; i++) {
        if (live[i].conf == c) {
            live[i].users++;
            pthread_mutex_unlock(&gens_lock);
            return;
        }
    }
    if (nlive == caplive) {
        caplive = caplive ? caplive * 2 : 8;
        live = sg_xrealloc(live, caplive * sizeof(*live));
    }
    live[nlive++] = (live_gen){ c, 1 };
    pthread_mutex_unlock(&gens_lock);
}

void sg_generation_release(sg_conf *c)
{
    bool last = false;
    pthread_mutex_lock(&gens_lock);
    for (size_t i = 0; i < nlive; i++) {
        if (live[i].conf == c && --live[i].users == 0) {
            live[i] = live[--nlive];
            last = true;
            break;
        }
    }
    pthread_mutex_unlock(&gens_lock);
    if (last) {
        sg_runtime_free(c);
        sg_conf_unref(c);
    }
}
