/* Freeing a thread's caches when it exits.
 *
 * core/blockcache.c and core/smallalloc.c keep freed memory on per-thread
 * lists. A thread that puts something there arms this once; when it exits
 * (a worker at shutdown, a test's thread), both caches are emptied, even
 * if nobody called their *_thread_done(). */
#ifndef SG_CORE_THREAD_EXIT_H
#define SG_CORE_THREAD_EXIT_H

void sg_thread_exit_arm(void);

#endif
