/* The rewrite module's compile side: what each directive becomes in the
 * level's operation list (conf/rewrite.h). */
#include <criterion/criterion.h>

#include <string.h>

#include "conf/conf.h"
#include "conf/rewrite.h"

static char err[2048];

static sg_conf *load(const char *server_body)
{
    char text[4096];
    snprintf(text, sizeof(text), "events {}\nhttp {\nserver { listen 127.0.0.1:1; %s }\n}\n", server_body);
    err[0] = '\0';
    return sg_conf_load_string(text, strlen(text), "t.conf", "/tmp", err, sizeof(err));
}

static const sg_location *child(const sg_conf *c, size_t i)
{
    return c->servers[0]->root->children[i];
}

Test(rewrite_conf, if_block_is_inlined_with_a_jump)
{
    sg_conf *c = load("location / { set $a 1; if ($a) { set $b 2; rewrite ^ /x; } return 204; }");
    cr_assert_not_null(c, "%s", err);
    const sg_location *l = child(c, 0);
    const sg_rw_ops *ops = l->conf.rw;
    cr_assert_not_null(ops);
    cr_assert_eq(ops->n, 5);
    cr_assert_eq(ops->ops[0].kind, SG_RW_SET);
    cr_assert_eq(ops->ops[1].kind, SG_RW_IF);
    cr_assert_eq(ops->ops[1].cond, SG_RWC_VAR);
    cr_assert_eq(ops->ops[1].jump, 4, "a false condition skips the block's two ops");
    cr_assert_eq(ops->ops[2].kind, SG_RW_SET);
    cr_assert_eq(ops->ops[3].kind, SG_RW_REWRITE);
    cr_assert_eq(ops->ops[4].kind, SG_RW_RETURN);
    /* the block is a location of its own, child of the one it is in */
    const sg_location *ifl = ops->ops[1].ifloc;
    cr_assert_eq(ifl->match, SG_LOC_IF);
    cr_assert_eq(ifl->parent, l);
    cr_assert_eq(sg_rw_real_location(ifl), l);
    cr_assert_null(ifl->conf.rw, "its ops live in the location's list");
    sg_conf_unref(c);
}

Test(rewrite_conf, conditions_and_flags)
{
    sg_conf *c = load("location / { if ($uri !~* \"^/(?<first>[a-z]+)\") { break; }"
                      " if (!-d /tmp) { break; } if ( $host != a ) { break; }"
                      " rewrite ^/(.*)$ http://e/$1?x=1? permanent; rewrite ^ /y last; }");
    cr_assert_not_null(c, "%s", err);
    const sg_rw_ops *ops = child(c, 0)->conf.rw;
    cr_assert_eq(ops->ops[0].cond, SG_RWC_MATCH);
    cr_assert(ops->ops[0].negate);
    cr_assert_eq(ops->ops[0].nnamed, 1);
    cr_assert_eq(ops->ops[0].named[0].group, 1);
    cr_assert_eq(c->vars.defs[ops->ops[0].named[0].var].kind, SG_VAR_USER);
    cr_assert_eq(ops->ops[2].cond, SG_RWC_DIR);
    cr_assert(ops->ops[2].negate);
    cr_assert_eq(ops->ops[4].cond, SG_RWC_NE);
    const sg_rw_op *r = &ops->ops[6];
    cr_assert_eq(r->kind, SG_RW_REWRITE);
    cr_assert_eq(r->flag, SG_RWF_PERMANENT);
    cr_assert(r->redirect);
    cr_assert_not(r->add_args, "a final '?' drops the request's arguments");
    cr_assert(r->has_args);
    cr_assert_eq(ops->ops[7].flag, SG_RWF_LAST);
    cr_assert_not(ops->ops[7].redirect);
    cr_assert(ops->ops[7].add_args);
    sg_conf_unref(c);
}

Test(rewrite_conf, server_level_ops_and_if_pass_inheritance)
{
    sg_conf *c = load("if ($http_x) { return 403; } rewrite ^/a /b;"
                      " location / { proxy_pass http://127.0.0.1:2/p/; if ($arg_x) { add_header X y; } }");
    cr_assert_not_null(c, "%s", err);
    const sg_location *root = c->servers[0]->root;
    cr_assert_eq(root->conf.rw->n, 3);
    cr_assert_eq(root->conf.rw->ops[1].kind, SG_RW_RETURN);
    const sg_location *l = child(c, 1);   /* the server's if block is child 0 */
    const sg_location *ifl = l->conf.rw->ops[0].ifloc;
    cr_assert_eq(ifl->conf.proxy_pass, l->conf.proxy_pass, "an if block proxies as its location");
    cr_assert_eq(ifl->conf.nadd_headers, 1);
    sg_conf_unref(c);
}

Test(rewrite_conf, set_variable_used_before_its_set)
{
    sg_conf *c = load("location /a { return 200 $later; } location /b { set $later x; }");
    cr_assert_not_null(c, "%s", err);
    sg_conf_unref(c);
    c = load("location /a { return 200 $never; }");
    cr_assert_null(c);
    cr_assert(strstr(err, "unknown \"never\" variable"), "%s", err);
}

Test(rewrite_conf, errors_name_their_place)
{
    sg_conf *c = load("location / { if ($a ~ \"(\") { } }");
    cr_assert_null(c);
    cr_assert(strstr(err, "t.conf:3:") && strstr(err, "pcre2_compile() failed"), "%s", err);
    c = load("if ($a) { add_header X y; }");
    cr_assert_null(c);
    cr_assert(strstr(err, "\"add_header\" directive is not allowed here"), "%s", err);
    c = load("location / { limit_except FOO { } }");
    cr_assert_null(c);
    cr_assert(strstr(err, "invalid method \"FOO\""), "%s", err);
}
