/* limit_req_zone, limit_req, limit_conn_zone, limit_conn and their
 * status / log level settings, as nginx reads them (conf/limit_conf.h). */
#include "conf/limit_conf.h"

#include <stdlib.h>
#include <string.h>

#include "conf/directives.h"
#include "conf/stream_conf.h"
#include "core/zone.h"

sg_log_level sg_limit_log_level(uint32_t field)
{
    return field ? (sg_log_level)(field - 1) : SG_LOG_ERROR;
}

sg_log_level sg_limit_delay_log_level(uint32_t field)
{
    sg_log_level l = sg_limit_log_level(field);
    return l == SG_LOG_INFO ? SG_LOG_INFO : (sg_log_level)(l - 1);
}

const char *sg_limit_status_name(int status)
{
    static const char *const names[] = { "", "PASSED", "DELAYED", "REJECTED", "DELAYED_DRY_RUN", "REJECTED_DRY_RUN" };
    return status > 0 && status <= SG_LIMIT_REJECTED_DRY_RUN ? names[status] : "";
}

static const char *kind_directive(int kind)
{
    return kind == SG_ZONE_LIMIT_REQ ? "limit_req_zone" : "limit_conn_zone";
}

/* The zone of that name, made (undeclared) when `make`. Zone names are
 * one namespace, as nginx's shared memory zones: another use of a name
 * is refused. */
static sg_limit_zone *zone_named(sg_cctx *cx, const char *name, size_t len, int kind, sg_conf_pos pos,
                                 bool *other_use)
{
    sg_conf *c = cx->c;
    *other_use = false;
    for (size_t i = 0; i < c->nlimit_zones; i++) {
        sg_limit_zone *z = c->limit_zones[i];
        if (strlen(z->name) == len && memcmp(z->name, name, len) == 0) {
            if (z->kind != kind) *other_use = true;
            return z;
        }
    }
    sg_limit_zone *z = sg_arena_alloc(&c->arena, sizeof(*z));
    memset(z, 0, sizeof(*z));
    z->name = sg_arena_strndup(&c->arena, name, len);
    z->kind = kind;
    z->pos = pos;
    c->limit_zones = sg_conf_push(&c->arena, c->limit_zones, c->nlimit_zones, sizeof(*c->limit_zones));
    c->limit_zones[c->nlimit_zones++] = z;
    return z;
}

/* KEY zone=NAME:SIZE [rate=R] for either zone directive; key compiled by the caller. */
static sg_limit_zone *zone_line(sg_cctx *cx, const sg_cnode *n, int kind)
{
    const char *name = NULL;
    size_t nlen = 0;
    uint64_t size = 0, rate = 0;
    sg_conf_pos zpos = n->name.pos;
    for (size_t i = 1; i < n->nargs; i++) {
        const char *a = n->args[i].s;
        if (strncmp(a, "zone=", 5) == 0) {
            const char *colon = strrchr(a + 5, ':');
            if (!colon || colon == a + 5) {
                sg_cerr(cx, n->args[i].pos, "invalid zone size \"%s\"", a);
                return NULL;
            }
            name = a + 5;
            nlen = (size_t)(colon - name);
            zpos = n->args[i].pos;
            if (!sg_conf_parse_size(colon + 1, &size) || size == 0) {
                sg_cerr(cx, n->args[i].pos, "invalid zone size \"%s\"", a);
                return NULL;
            }
            if (size < SG_ZONE_MIN_SIZE) {
                sg_cerr(cx, n->args[i].pos, "zone \"%.*s\" is too small", (int)nlen, name);
                return NULL;
            }
            continue;
        }
        if (kind == SG_ZONE_LIMIT_REQ && strncmp(a, "rate=", 5) == 0) {
            char *end;
            long long r = strtoll(a + 5, &end, 10);
            uint64_t scale = strcmp(end, "r/s") == 0 ? 1 : strcmp(end, "r/m") == 0 ? 60 : 0;
            if (end == a + 5 || r <= 0 || !scale || r > 1000000000LL) {
                sg_cerr(cx, n->args[i].pos, "invalid rate \"%s\"", a);
                return NULL;
            }
            rate = (uint64_t)r * 1000 / scale;
            continue;
        }
        sg_cerr(cx, n->args[i].pos, "invalid parameter \"%s\"", a);
        return NULL;
    }
    if (!name) {
        sg_cerr(cx, n->name.pos, "\"%s\" must have \"zone\" parameter", n->name.s);
        return NULL;
    }
    bool other;
    sg_limit_zone *z = zone_named(cx, name, nlen, kind, zpos, &other);
    if (other) {
        sg_cerr(cx, zpos, "the shared memory zone \"%s\" is already declared for a different use", z->name);
        return NULL;
    }
    if (z->size) {
        sg_cerr(cx, zpos, "%s \"%s\" is already bound to key \"%.*s\"", n->name.s, z->name,
                (int)(z->skey ? z->skey->text.n : z->key.text.n), z->skey ? z->skey->text.p : z->key.text.p);
        return NULL;
    }
    z->size = size;
    z->rate = kind == SG_ZONE_LIMIT_REQ ? (rate ? rate : 1000) : 0;   /* nginx's default: 1r/s */
    z->pos = zpos;
    return z;
}

bool sg_limit_set_req_zone(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_limit_zone *z = zone_line(cx, n, SG_ZONE_LIMIT_REQ);
    if (!z) return false;
    return sg_cval_compile(cx->c, (sg_str){ n->args[0].s, n->args[0].n }, n->args[0].pos, &z->key, cx->err,
                           cx->errlen);
}

bool sg_limit_set_conn_zone(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (n->nargs != 2) return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"%s\" directive", n->name.s);
    sg_limit_zone *z = zone_line(cx, n, SG_ZONE_LIMIT_CONN);
    if (!z) return false;
    return sg_cval_compile(cx->c, (sg_str){ n->args[0].s, n->args[0].n }, n->args[0].pos, &z->key, cx->err,
                           cx->errlen);
}

bool sg_limit_set_stream_conn_zone(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    if (n->nargs != 2) return sg_cerr(cx, n->name.pos, "invalid number of arguments in \"%s\" directive", n->name.s);
    sg_limit_zone *z = zone_line(cx, n, SG_ZONE_STREAM_LIMIT_CONN);
    if (!z) return false;
    z->skey = sg_arena_alloc(&cx->c->arena, sizeof(*z->skey));
    memset(z->skey, 0, sizeof(*z->skey));
    return sg_stream_val_compile(cx->c, (sg_str){ n->args[0].s, n->args[0].n }, n->args[0].pos, z->skey, cx->err,
                                 cx->errlen);
}

/* The list a limit line goes to (cmd's field: the pointer, then its
 * count): this level's own from its first line on. */
static bool push_ref(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base, const sg_limit_ref *r)
{
    sg_limit_ref **list = (sg_limit_ref **)((char *)base + cmd->offset);
    size_t *count = (size_t *)((char *)base + cmd->offset + sizeof(sg_limit_ref *));
    if (cx->first) {
        *list = NULL;
        *count = 0;
    }
    for (size_t i = 0; i < *count; i++)
        if ((*list)[i].zone == r->zone) return sg_cerr(cx, n->name.pos, "duplicate limit \"%s\"", r->zone->name);
    *list = sg_conf_push(&cx->c->arena, *list, *count, sizeof(**list));
    (*list)[(*count)++] = *r;
    return true;
}

static bool parse_count(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || *s == '+') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v > 1000000000ULL) return false;
    *out = v;
    return true;
}

/* limit_req zone=NAME [burst=N] [nodelay | delay=N] */
bool sg_limit_set_req(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    sg_limit_ref r = { 0 };
    uint64_t burst = 0, delay = 0;
    bool nodelay = false;
    for (size_t i = 0; i < n->nargs; i++) {
        const char *a = n->args[i].s;
        if (strncmp(a, "zone=", 5) == 0) {
            bool other;
            r.zone = zone_named(cx, a + 5, strlen(a + 5), SG_ZONE_LIMIT_REQ, n->args[i].pos, &other);
            if (other)
                return sg_cerr(cx, n->args[i].pos, "the shared memory zone \"%s\" is already declared for a different use",
                               r.zone->name);
        } else if (strncmp(a, "burst=", 6) == 0) {
            if (!parse_count(a + 6, &burst) || burst == 0)
                return sg_cerr(cx, n->args[i].pos, "invalid burst value \"%s\"", a);
        } else if (strncmp(a, "delay=", 6) == 0) {
            if (!parse_count(a + 6, &delay) || delay == 0)
                return sg_cerr(cx, n->args[i].pos, "invalid delay value \"%s\"", a);
        } else if (strcmp(a, "nodelay") == 0) {
            nodelay = true;
        } else {
            return sg_cerr(cx, n->args[i].pos, "invalid parameter \"%s\"", a);
        }
    }
    if (!r.zone) return sg_cerr(cx, n->name.pos, "\"%s\" must have \"zone\" parameter", n->name.s);
    r.burst = burst * 1000;
    r.delay = nodelay ? UINT64_MAX / 2 : delay * 1000;
    return push_ref(cx, n, cmd, base, &r);
}

static bool conn_line(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base, int kind)
{
    sg_limit_ref r = { 0 };
    bool other;
    r.zone = zone_named(cx, n->args[0].s, n->args[0].n, kind, n->args[0].pos, &other);
    if (other)
        return sg_cerr(cx, n->args[0].pos, "the shared memory zone \"%s\" is already declared for a different use",
                       r.zone->name);
    uint64_t v;
    if (!parse_count(n->args[1].s, &v) || v == 0 || v > 65535)
        return sg_cerr(cx, n->args[1].pos, "invalid number of connections \"%s\"", n->args[1].s);
    r.conn = (uint32_t)v;
    return push_ref(cx, n, cmd, base, &r);
}

bool sg_limit_set_conn(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    return conn_line(cx, n, cmd, base, SG_ZONE_LIMIT_CONN);
}

bool sg_limit_set_stream_conn(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    return conn_line(cx, n, cmd, base, SG_ZONE_STREAM_LIMIT_CONN);
}

bool sg_limit_set_status(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    uint64_t v;
    if (!parse_count(n->args[0].s, &v)) return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\"", n->args[0].s);
    if (v < 400 || v > 599) return sg_cerr(cx, n->args[0].pos, "value must be between 400 and 599");
    *(uint32_t *)((char *)base + cmd->offset) = (uint32_t)v;
    return true;
}

bool sg_limit_set_log_level(sg_cctx *cx, const sg_cnode *n, const sg_cmd *cmd, void *base)
{
    static const char *const names[] = { "info", "notice", "warn", "error" };
    static const sg_log_level levels[] = { SG_LOG_INFO, SG_LOG_NOTICE, SG_LOG_WARN, SG_LOG_ERROR };
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(n->args[0].s, names[i]) == 0) {
            *(uint32_t *)((char *)base + cmd->offset) = (uint32_t)levels[i] + 1;
            return true;
        }
    }
    return sg_cerr(cx, n->args[0].pos, "invalid value \"%s\"", n->args[0].s);
}

static void put_zone(void *arg)
{
    sg_zone_put(arg);
}

bool sg_limit_conf_finish(sg_cctx *cx)
{
    sg_conf *c = cx->c;
    for (size_t i = 0; i < c->nlimit_zones; i++) {
        sg_limit_zone *z = c->limit_zones[i];
        if (!z->size) return sg_cerr(cx, z->pos, "unknown %s \"%s\"", kind_directive(z->kind), z->name);
    }
    for (size_t i = 0; i < c->nlimit_zones; i++) {
        sg_limit_zone *z = c->limit_zones[i];
        z->zone = sg_zone_get(z->name, z->kind, z->size);
        sg_conf_on_free(c, put_zone, z->zone);
    }
    return true;
}
