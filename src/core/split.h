/* split_clients (ngx_http_split_clients_module and its stream twin): the
 * source value's MurmurHash2 picks one of the parts by percentage, exactly
 * as nginx does, so a key lands in the same bucket behind either. The pure
 * parts shared by http (exchange/vars.c) and stream (proxy/stream_vars.c). */
#ifndef SG_CORE_SPLIT_H
#define SG_CORE_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* nginx's ngx_murmur_hash2 (MurmurHash2, seed the length, little endian). */
uint32_t sg_murmur_hash2(const void *data, size_t len);

/* "51.2%" -> 5120 (hundredths of a percent, as ngx_atofp(.., 2)); -1 if
 * invalid (no '%', not a number, more than two decimals, over 1000%). */
long sg_split_percent(const char *s, size_t n);

/* The bound of the next part, pct hundredths (0: "*", which takes the
 * rest: bound 0), after the parts before it (running state in *sum and
 * *last, both 0 at first). False when the total passes 100%. */
bool sg_split_bound(long pct, uint64_t *sum, uint64_t *last, uint32_t *bound);

/* The part `hash` falls in: the first whose bound is above it or 0 ("*");
 * n when none (the percentages total less than 100% and no "*"). */
size_t sg_split_pick(const uint32_t *bound, size_t n, uint32_t hash);

#endif
