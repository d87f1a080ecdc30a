/* Setters of the header controls and small http directives (issue 9);
 * internal to src/conf/ (their rows are in directives.c's table). */
#ifndef SG_CONF_HEADER_CONF_H
#define SG_CONF_HEADER_CONF_H

#include <stdbool.h>
#include "conf/directives.h"

bool sg_hc_set_name_list(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_hc_set_ignore_headers(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_hc_set_expires(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_hc_set_alias(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
bool sg_hc_set_keepalive_disable(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);
/* listen ... so_keepalive=VALUE into lc; false: invalid */
bool sg_hc_listen_keepalive(const char *v, sg_listen_conf *lc);
/* listen ADDR:LO-HI: the ports, and "ADDR:" in text */
bool sg_hc_listen_range(const char *arg, int *lo, int *hi, char *text, size_t textlen);
/* cmd->post: why it has no effect (a string) */
bool sg_hc_set_noeffect(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base);

#endif
