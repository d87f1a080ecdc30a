/* limit_req_zone / limit_req and limit_conn_zone / limit_conn, in http
 * and stream{} (nginx's ngx_http_limit_req_module,
 * ngx_http_limit_conn_module, ngx_stream_limit_conn_module): their
 * directives, the zones a generation declares, and the limits each
 * location or stream server applies. The zones' state lives in
 * core/zone.h (shared by every worker thread, kept across reloads); the
 * limits run in proxy/limit.h. */
#ifndef SG_CONF_LIMIT_CONF_H
#define SG_CONF_LIMIT_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include "conf/conf.h"

struct sg_cctx;
struct sg_cnode;
struct sg_cmd;
struct sg_zone;
struct sg_stream_val;

/* One zone of the generation: limit_req_zone or limit_conn_zone (http
 * or stream). Named first by a limit_req/limit_conn line, it may be
 * declared later in the file, as nginx allows. */
typedef struct sg_limit_zone {
    char *name;
    int kind;                          /* SG_ZONE_* (core/zone.h) */
    uint64_t size;                     /* 0: not declared (yet) */
    sg_conf_pos pos;                   /* its first mention */
    sg_cval key;                       /* http zones */
    struct sg_stream_val *skey;        /* stream zones */
    uint64_t rate;                     /* limit_req: milli-requests per second (nginx: r/s * 1000, r/m * 1000 / 60) */
    struct sg_zone *zone;              /* the state, taken when the generation is built */
} sg_limit_zone;

/* One limit_req or limit_conn line. */
typedef struct sg_limit_ref {
    sg_limit_zone *zone;
    uint64_t burst;                    /* limit_req: milli-requests (burst=N * 1000) */
    uint64_t delay;                    /* limit_req: milli-requests passed without delay (nodelay: all) */
    uint32_t conn;                     /* limit_conn: connections per key */
} sg_limit_ref;

/* $limit_req_status and $limit_conn_status values (0: none). */
enum {
    SG_LIMIT_PASSED = 1, SG_LIMIT_DELAYED, SG_LIMIT_REJECTED, SG_LIMIT_DELAYED_DRY_RUN, SG_LIMIT_REJECTED_DRY_RUN,
};
/* "PASSED", "DELAYED", ... */
const char *sg_limit_status_name(int status);

/* Defaults where the field is 0 (unset at every level). */
#define SG_LIMIT_DEFAULT_STATUS 503

/* The level a limit's rejection is logged at (the field: level + 1, 0
 * unset = error), and a delay's: one lower, as nginx (info stays info). */
sg_log_level sg_limit_log_level(uint32_t field);
sg_log_level sg_limit_delay_log_level(uint32_t field);

/* Directive setters (tables of conf/directives.c and conf/stream_conf.c). */
bool sg_limit_set_req_zone(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
bool sg_limit_set_req(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
bool sg_limit_set_conn_zone(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
bool sg_limit_set_conn(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
bool sg_limit_set_stream_conn_zone(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd,
                                   void *base);
bool sg_limit_set_stream_conn(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
/* limit_req_status / limit_conn_status: 400..599 (a uint32_t field). */
bool sg_limit_set_status(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);
/* limit_req_log_level / limit_conn_log_level: info | notice | warn | error. */
bool sg_limit_set_log_level(struct sg_cctx *cx, const struct sg_cnode *n, const struct sg_cmd *cmd, void *base);

/* After the whole file: every zone named is declared, and takes its
 * state (released when the generation is freed). */
bool sg_limit_conf_finish(struct sg_cctx *cx);

#endif
