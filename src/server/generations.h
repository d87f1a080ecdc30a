/* Process-wide users of configuration generations.
 *
 * A generation is in use by the main thread while it is the running
 * configuration, and by every worker thread that has it as current or
 * still runs exchanges on it (the worker counts those locally, without a
 * lock, and comes here only for its first and last use: core/worker.h's
 * hooks). When the last user goes, the generation's upstream runtimes are
 * freed and the configuration unreferenced. */
#ifndef SG_SERVER_GENERATIONS_H
#define SG_SERVER_GENERATIONS_H

#include "conf/conf.h"

void sg_generation_acquire(sg_conf *c);
void sg_generation_release(sg_conf *c);   /* the last one frees c's runtimes and unrefs c */

#endif
