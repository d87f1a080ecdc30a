/* Evaluating stream{} values (see stream_vars.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "proxy/stream_vars.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf/geo.h"
#include "core/log.h"
#include "conf/limit_conf.h"
#include "core/sockaddr.h"
#include "core/split.h"
#include "net/proxy_protocol.h"
#include "net/tls.h"

/* What nginx-tests and scripts read as nginx's version. */
#define SG_STREAM_NGINX_VERSION "1.29.0"

/* Maps whose source uses a map: a loop in the configuration ends here. */
#define MAX_DEPTH 8

typedef struct ev_ctx {
    const sg_stream_info *in;
    const char *subj;                  /* the subject of the regex match, for captures */
    const PCRE2_SIZE *ovec;
    int ncap;
    int depth;
} ev_ctx;

static size_t eval(const sg_stream_val *v, ev_ctx *x, char *buf, size_t n);

static atomic_uint_fast64_t connections;

uint64_t sg_stream_next_connection(void)
{
    return atomic_fetch_add(&connections, 1) + 1;
}

static size_t put(char *buf, size_t n, const void *p, size_t len)
{
    if (len > SG_STREAM_VAL_MAX - n) len = SG_STREAM_VAL_MAX - n;
    memcpy(buf + n, p, len);
    return n + len;
}

static size_t puts_(char *buf, size_t n, const char *s)
{
    return s ? put(buf, n, s, strlen(s)) : n;
}

static size_t put_ms(char *buf, size_t n, int64_t ms)
{
    char tmp[32];
    if (ms < 0) return put(buf, n, "-", 1);
    snprintf(tmp, sizeof(tmp), "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
    return puts_(buf, n, tmp);
}

/* One value per try, ", " between (as nginx's $upstream_* in stream). */
static size_t put_tries(char *buf, size_t n, const sg_stream_info *in, int var)
{
    char tmp[32];
    for (unsigned i = 0; i < in->ntries; i++) {
        const sg_stream_try *t = &in->tries[i];
        if (i) n = put(buf, n, ", ", 2);
        switch (var) {
        case SG_SVAR_UPSTREAM_ADDR: n = puts_(buf, n, t->name); break;
        case SG_SVAR_UPSTREAM_BYTES_SENT:
        case SG_SVAR_UPSTREAM_BYTES_RECEIVED:
            snprintf(tmp, sizeof(tmp), "%llu",
                     (unsigned long long)(var == SG_SVAR_UPSTREAM_BYTES_SENT ? t->sent : t->received));
            n = puts_(buf, n, tmp);
            break;
        case SG_SVAR_UPSTREAM_CONNECT_TIME: n = put_ms(buf, n, t->connect_ms); break;
        case SG_SVAR_UPSTREAM_FIRST_BYTE_TIME: n = put_ms(buf, n, t->first_byte_ms); break;
        default: n = put_ms(buf, n, t->session_ms); break;
        }
    }
    return n;
}

static size_t put_time(char *buf, size_t n, int var)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char tmp[64];
    if (var == SG_SVAR_MSEC) {
        snprintf(tmp, sizeof(tmp), "%lld.%03d", (long long)tv.tv_sec, (int)(tv.tv_usec / 1000));
        return puts_(buf, n, tmp);
    }
    struct tm tm;
    time_t t = tv.tv_sec;
    localtime_r(&t, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    char date[40];
    if (var == SG_SVAR_TIME_LOCAL) {
        strftime(date, sizeof(date), "%d/%b/%Y:%H:%M:%S", &tm);
        snprintf(tmp, sizeof(tmp), "%s %c%02ld%02ld", date, sign, off / 60, off % 60);
    } else {
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(tmp, sizeof(tmp), "%s%c%02ld:%02ld", date, sign, off / 60, off % 60);
    }
    return puts_(buf, n, tmp);
}

/* A map's value: exact keys, then regexes in order, then the default. */
static size_t put_map(char *buf, size_t n, const sg_stream_map *m, ev_ctx *x)
{
    if (x->depth >= MAX_DEPTH) return n;
    char src[SG_STREAM_VAL_MAX];
    ev_ctx sub = { x->in, NULL, NULL, 0, x->depth + 1 };
    size_t sn = eval(&m->source, &sub, src, 0);
    if (m->geo) {                      /* text that is no address: 255.255.255.255, as nginx */
        struct sockaddr_storage ss;
        sg_geo_text_addr((sg_str){ src, sn }, &ss);
        const sg_cval *gv = sg_geo_find(m->geo_base, (const struct sockaddr *)&ss);
        return gv ? put(buf, n, gv->text.p, gv->text.n) : n;
    }
    if (m->split) {
        size_t i = sg_split_pick(m->split_limit, m->nexact, sg_murmur_hash2(src, sn));
        return i < m->nexact ? eval(&m->exact[i].val, &sub, buf, n) : n;
    }
    for (size_t i = 0; i < m->nexact; i++)
        if (m->exact[i].key.n == sn && memcmp(m->exact[i].key.p, src, sn) == 0)
            return eval(&m->exact[i].val, &sub, buf, n);
    for (size_t i = 0; i < m->nregex; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(m->regex[i].re, NULL);
        if (!md) return n;
        int rc = pcre2_match(m->regex[i].re, (PCRE2_SPTR)src, sn, 0, 0, md, NULL);
        if (rc >= 0) {
            ev_ctx cap = { x->in, src, pcre2_get_ovector_pointer(md), rc == 0 ? 1 : rc, x->depth + 1 };
            if (rc == 0) cap.ncap = (int)pcre2_get_ovector_count(md);
            n = eval(&m->regex[i].val, &cap, buf, n);
            pcre2_match_data_free(md);
            return n;
        }
        pcre2_match_data_free(md);
    }
    return m->has_default ? eval(&m->def, &sub, buf, n) : n;
}

static size_t put_var(char *buf, size_t n, const sg_stream_val_part *p, ev_ctx *x)
{
    const sg_stream_info *in = x->in;
    const struct sockaddr *client = in->client, *local = in->local;
    char tmp[300];
    int var = p->var;
    switch (var) {
    case SG_SVAR_REMOTE_ADDR:
    case SG_SVAR_SERVER_ADDR:
        sg_sockaddr_host(var == SG_SVAR_REMOTE_ADDR ? client : local, tmp, sizeof(tmp));
        return puts_(buf, n, tmp);
    case SG_SVAR_REMOTE_PORT:
    case SG_SVAR_SERVER_PORT:
        if ((var == SG_SVAR_REMOTE_PORT ? client : local)->sa_family == AF_UNIX) return n;   /* no port: empty */
        snprintf(tmp, sizeof(tmp), "%d", sg_sockaddr_port(var == SG_SVAR_REMOTE_PORT ? client : local));
        return puts_(buf, n, tmp);
    case SG_SVAR_BINARY_REMOTE_ADDR:
        if (client->sa_family == AF_INET)
            return put(buf, n, &((const struct sockaddr_in *)client)->sin_addr, 4);
        if (client->sa_family == AF_INET6)
            return put(buf, n, &((const struct sockaddr_in6 *)client)->sin6_addr, 16);
        return n;
    case SG_SVAR_PROTOCOL: return puts_(buf, n, in->udp ? "UDP" : "TCP");
    case SG_SVAR_CONNECTION:
        snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)in->connection);
        return puts_(buf, n, tmp);
    case SG_SVAR_NGINX_VERSION: return puts_(buf, n, SG_STREAM_NGINX_VERSION);
    case SG_SVAR_HOSTNAME:
        if (gethostname(tmp, sizeof(tmp)) != 0) return n;
        tmp[sizeof(tmp) - 1] = 0;
        for (char *c = tmp; *c; c++) if (*c >= 'A' && *c <= 'Z') *c += 'a' - 'A';   /* nginx lowercases it */
        return puts_(buf, n, tmp);
    case SG_SVAR_PID:
        snprintf(tmp, sizeof(tmp), "%d", (int)getpid());
        return puts_(buf, n, tmp);
    case SG_SVAR_BYTES_SENT:
    case SG_SVAR_BYTES_RECEIVED:
        snprintf(tmp, sizeof(tmp), "%llu",
                 (unsigned long long)(var == SG_SVAR_BYTES_SENT ? in->bytes_sent : in->bytes_received));
        return puts_(buf, n, tmp);
    case SG_SVAR_SESSION_TIME:
        return put_ms(buf, n, (int64_t)(in->now_ms - in->start_ms));
    case SG_SVAR_STATUS:
        snprintf(tmp, sizeof(tmp), "%03d", in->status);
        return puts_(buf, n, tmp);
    case SG_SVAR_MSEC:
    case SG_SVAR_TIME_LOCAL:
    case SG_SVAR_TIME_ISO8601:
        return put_time(buf, n, var);
    case SG_SVAR_UPSTREAM_ADDR:
    case SG_SVAR_UPSTREAM_BYTES_SENT:
    case SG_SVAR_UPSTREAM_BYTES_RECEIVED:
    case SG_SVAR_UPSTREAM_CONNECT_TIME:
    case SG_SVAR_UPSTREAM_FIRST_BYTE_TIME:
    case SG_SVAR_UPSTREAM_SESSION_TIME:
        return put_tries(buf, n, in, var);
    case SG_SVAR_SSL_PROTOCOL: return in->tls ? puts_(buf, n, sg_tls_protocol(in->tls)) : n;
    case SG_SVAR_SSL_CIPHER: return in->tls ? puts_(buf, n, sg_tls_cipher(in->tls)) : n;
    case SG_SVAR_SSL_SERVER_NAME: return in->tls ? puts_(buf, n, sg_tls_server_name(in->tls)) : n;
    case SG_SVAR_SSL_ALPN_PROTOCOL:
        if (in->tls) {
            sg_str a = sg_tls_alpn(in->tls);
            return put(buf, n, a.p, a.n);
        }
        return n;
    case SG_SVAR_SSL_SESSION_REUSED:
        return in->tls ? puts_(buf, n, sg_tls_session_reused(in->tls) ? "r" : ".") : n;
    case SG_SVAR_SSL_SESSION_ID:
        return in->tls ? put(buf, n, tmp, sg_tls_session_id(in->tls, tmp, sizeof(tmp))) : n;
    case SG_SVAR_SSL_PREREAD_SERVER_NAME: return puts_(buf, n, in->preread_server_name);
    case SG_SVAR_SSL_PREREAD_ALPN_PROTOCOLS: return puts_(buf, n, in->preread_alpn);
    case SG_SVAR_SSL_PREREAD_PROTOCOL: return puts_(buf, n, in->preread_protocol);
    case SG_SVAR_PROXY_PROTOCOL_ADDR:
    case SG_SVAR_PROXY_PROTOCOL_SERVER_ADDR: {
        const struct sockaddr *a = var == SG_SVAR_PROXY_PROTOCOL_ADDR ? in->pp_src : in->pp_dst;
        if (!a) return n;
        sg_sockaddr_host(a, tmp, sizeof(tmp));
        return puts_(buf, n, tmp);
    }
    case SG_SVAR_PROXY_PROTOCOL_PORT:
    case SG_SVAR_PROXY_PROTOCOL_SERVER_PORT: {
        const struct sockaddr *a = var == SG_SVAR_PROXY_PROTOCOL_PORT ? in->pp_src : in->pp_dst;
        if (!a) return n;
        snprintf(tmp, sizeof(tmp), "%d", sg_sockaddr_port(a));
        return puts_(buf, n, tmp);
    }
    case SG_SVAR_PROXY_PROTOCOL_TLV: {   /* real client address (issue 10) */
        const uint8_t *v;
        size_t vlen;
        char num[SG_PP_TLV_NUM_MAX];
        int rc = sg_pp_tlv_find(in->pp_tlv, in->pp_tlv_len, p->lit.p, p->lit.n, &v, &vlen, num);
        if (rc < 0) sg_log_error("unknown PROXY protocol TLV \"%.*s\"", (int)p->lit.n, p->lit.p);
        return rc > 0 ? put(buf, n, v, vlen) : n;
    }
    case SG_SVAR_REALIP_REMOTE_ADDR:
        sg_sockaddr_host(in->realip_peer ? in->realip_peer : client, tmp, sizeof(tmp));
        return puts_(buf, n, tmp);
    case SG_SVAR_REALIP_REMOTE_PORT:
        snprintf(tmp, sizeof(tmp), "%d", sg_sockaddr_port(in->realip_peer ? in->realip_peer : client));
        return puts_(buf, n, tmp);
    case SG_SVAR_LIMIT_CONN_STATUS:   /* limits (issue 10) */
        return in->limit_conn_status ? puts_(buf, n, sg_limit_status_name(in->limit_conn_status)) : n;
    case SG_SVAR_CAPTURE:
        if (x->ovec && p->arg < x->ncap && x->ovec[2 * p->arg] != PCRE2_UNSET)
            return put(buf, n, x->subj + x->ovec[2 * p->arg], x->ovec[2 * p->arg + 1] - x->ovec[2 * p->arg]);
        return n;
    case SG_SVAR_MAP:
        for (size_t i = in->nsets; i > 0; i--)
            if (in->sets[i - 1].var == p->arg) return put(buf, n, in->sets[i - 1].p, in->sets[i - 1].n);
        if (in->sc && (size_t)p->arg < in->sc->nmaps && in->sc->maps[p->arg]->defined)
            return put_map(buf, n, in->sc->maps[p->arg], x);
        return n;
    default:
        return n;
    }
}

static size_t eval(const sg_stream_val *v, ev_ctx *x, char *buf, size_t n)
{
    for (size_t i = 0; i < v->nparts; i++) {
        const sg_stream_val_part *p = &v->parts[i];
        n = p->var < 0 ? put(buf, n, p->lit.p, p->lit.n) : put_var(buf, n, p, x);
    }
    return n;
}

size_t sg_stream_eval(const sg_stream_val *v, const sg_stream_info *in, char *buf)
{
    ev_ctx x = { in, NULL, NULL, 0, 0 };
    return eval(v, &x, buf, 0);
}

/* ---------------- access log lines ---------------- */

size_t sg_stream_eval_log(const sg_stream_log_format *f, const sg_stream_info *in, char *buf)
{
    ev_ctx x = { in, NULL, NULL, 0, 0 };
    size_t n = 0;
    sg_strbuf esc = { 0 };
    for (size_t i = 0; i < f->val.nparts; i++) {
        const sg_stream_val_part *p = &f->val.parts[i];
        if (p->var < 0) {
            n = put(buf, n, p->lit.p, p->lit.n);
            continue;
        }
        char v[SG_STREAM_VAL_MAX];
        size_t len = put_var(v, 0, p, &x);
        if (f->escape_none) { n = put(buf, n, v, len); continue; }
        if (!f->escape_json && len == 0) { n = put(buf, n, "-", 1); continue; }  /* an empty value logs as "-" */
        esc.n = 0;
        if (f->escape_json) sg_strbuf_append_json_escaped(&esc, (sg_str){ v, len });
        else sg_strbuf_append_log_escaped(&esc, (sg_str){ v, len });
        n = put(buf, n, esc.p, esc.n);
    }
    sg_strbuf_free(&esc);
    return n;
}

void sg_stream_sets_apply(const sg_stream_server_conf *srv, sg_stream_info *in)
{
    if (!srv->nsets) return;
    in->sets = sg_xcalloc(srv->nsets, sizeof(*in->sets));
    in->nsets = 0;
    for (size_t i = 0; i < srv->nsets; i++) {
        char v[SG_STREAM_VAL_MAX];
        size_t n = sg_stream_eval(&srv->sets[i].val, in, v);   /* earlier sets are visible */
        sg_stream_setval *sv = &in->sets[in->nsets];
        sv->p = sg_xmalloc(n ? n : 1);
        memcpy(sv->p, v, n);
        sv->n = n;
        sv->var = srv->sets[i].var;
        in->nsets++;
    }
}

void sg_stream_sets_free(sg_stream_info *in)
{
    for (size_t i = 0; i < in->nsets; i++) free(in->sets[i].p);
    free(in->sets);
    in->sets = NULL;
    in->nsets = 0;
}
