/* Thread-exit cleanup of the per-thread caches (see thread_exit.h). */
#include "core/thread_exit.h"

#include <pthread.h>

#include "core/blockcache.h"
#include "core/smallalloc.h"

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static _Thread_local int armed;

static void on_thread_exit(void *unused)
{
    (void)unused;
    sg_block_thread_done();
    sg_small_thread_done();
}

static void make_exit_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

void sg_thread_exit_arm(void)
{
    if (armed) return;
    pthread_once(&exit_once, make_exit_key);
    pthread_setspecific(exit_key, &armed);   /* any non-NULL value runs the destructor */
    armed = 1;
}
