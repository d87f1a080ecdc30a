/* Upstream balancer directives of issue 11 (area: balance): least_time,
 * random two least_time=, sticky. Internal to src/conf/. */
#ifndef SG_CONF_BALANCE_CONF_H
#define SG_CONF_BALANCE_CONF_H

#include "conf/directives.h"

/* least_time MODE [inflight]; cmd->post non-NULL in stream{} (connect |
 * first_byte | last_byte), else http's header | last_byte. */
bool sg_balance_set_least_time(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* random two least_time=header|last_byte (http) / connect|first_byte|last_byte (stream). */
bool sg_balance_random_least_time(sg_cctx *cx, const sg_carg *a, bool stream);

/* sticky cookie NAME [expires=] [domain=] [path=] [httponly] [secure]
 * [samesite=] | route $var... | learn create= lookup= zone= [timeout=]
 * [header] [sync] */
bool sg_balance_set_sticky(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

#endif
