/* The map directive: a variable whose value is chosen by matching another
 * value against exact strings, wildcard host names (with `hostnames`) and
 * regular expressions, as nginx's ngx_http_map_module. Built while the
 * configuration is read; evaluated lazily per request and cached there
 * by sg_map_eval (exchange/vars.h). */
#ifndef SG_CONF_MAP_H
#define SG_CONF_MAP_H

#include <stdbool.h>
#include "core/str.h"
#include "conf/vars.h"

struct sg_conf;
typedef struct sg_map sg_map;

/* `source` is the first argument of `map` (e.g. "$http_upgrade"). */
sg_map *sg_map_new(struct sg_conf *c, sg_str source, sg_conf_pos pos, char *err, size_t errlen);

/* One line of the block. Keys: "default", "hostnames" (a flag, value
 * empty), "~regex", "~*regex", "\\~literal", exact strings. The value is a
 * complex value ("$1" captures work for regex keys). False + err on a
 * duplicate key or bad regex. */
bool sg_map_add(sg_map *m, sg_str key, sg_str value, sg_conf_pos pos, char *err, size_t errlen);
bool sg_map_set_hostnames(sg_map *m);

/* A geo block (conf/geo.h) behind the variable instead of keys: the
 * value is looked up by the client address (client_address) or by the
 * address the source value holds. */
struct sg_geo;
void sg_map_set_geo(sg_map *m, struct sg_geo *g, bool client_address);
const struct sg_geo *sg_map_geo(const sg_map *m, bool *client_address);
/* `volatile`: the value is computed at each use (after an internal
 * redirect, say), not once per request. */
void sg_map_set_volatile(sg_map *m);
bool sg_map_is_volatile(const sg_map *m);

/* split_clients: one part, "PERCENT%" or "*", and its value (a plain
 * string, as nginx's); sg_map_find then picks by the value's MurmurHash2
 * (core/split.h). False + err on a bad percent or a total over 100%. */
bool sg_map_add_split(sg_map *m, sg_str pct, sg_str value, sg_conf_pos pos, char *err, size_t errlen);

/* What the evaluator reads: the value matched (the first argument), and
 * the value chosen for `v` (that value, evaluated), in nginx's order;
 * regex keys are tried with match(re, v, arg), which may record the
 * captures ($1..$9 in the chosen value). NULL: nothing matched and there
 * is no default. */
typedef bool (*sg_map_match_fn)(const void *re, sg_str v, void *arg);
const sg_cval *sg_map_source(const sg_map *m);
const sg_cval *sg_map_find(const sg_map *m, sg_str v, sg_map_match_fn match, void *arg);

/* Frees the map's compiled regexes (its other memory is in the arena).
 * sg_conf_free_regexes() calls it for every map bound to a variable. */
void sg_map_free(sg_map *m);

#endif
