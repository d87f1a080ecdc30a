/* The charset filter: see charset_filter.h. */
#include "proxy/charset_filter.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "exchange/vars.h"

/* nginx reads a Content-Type as its upstream module does: the charset is
 * what follows "charset=" after a ';' up to the end (quotes dropped), and
 * the type is what precedes that ';'. Without a charset the whole value is
 * the type, parameters included (so "text/html; q=1" is not text/html). */
static sg_str split_charset(sg_str ct, size_t *type_len)
{
    *type_len = ct.n;
    for (size_t i = 0; i < ct.n; i++) {
        if (ct.p[i] != ';') continue;
        size_t semi = i, p = i + 1;
        while (p < ct.n && ct.p[p] == ' ') p++;
        if (p + 8 > ct.n || strncasecmp(ct.p + p, "charset=", 8) != 0) continue;
        p += 8;
        size_t end = ct.n;
        if (p < end && ct.p[p] == '"') p++;
        if (end > p && ct.p[end - 1] == '"') end--;
        *type_len = semi;
        return (sg_str){ ct.p + p, end - p };
    }
    return (sg_str){ ct.p, 0 };
}

sg_str sg_charset_of(sg_str content_type)
{
    size_t type_len;
    return split_charset(content_type, &type_len);
}

bool sg_charset_type_ok(const sg_loc_conf *lc, sg_str content_type)
{
    if (lc->charset_types_any) return true;
    size_t type_len;
    split_charset(content_type, &type_len);
    for (size_t i = 0; i < lc->ncharset_types; i++) {
        const sg_str *t = &lc->charset_types[i];
        if (t->n == type_len && strncasecmp(t->p, content_type.p, type_len) == 0) return true;
    }
    return false;
}

static bool same_charset(sg_str a, sg_str b)
{
    return a.n == b.n && strncasecmp(a.p, b.p, a.n) == 0;
}

void sg_charset_head(sg_exchange *ex, sg_response *resp)
{
    const sg_loc_conf *lc = ex->req.loc ? &ex->req.loc->conf : NULL;
    if (!lc || !lc->charset_on) return;
    size_t ict = resp->nheaders;
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (sg_str_caseeq_lit(resp->headers[i].name, "content-type")) ict = i;
        /* an encoded body (the backend's gzip) is not text nginx would
         * touch: it names no charset then either */
        if (sg_str_caseeq_lit(resp->headers[i].name, "content-encoding") && resp->headers[i].value.n) return;
    }
    if (ict == resp->nheaders || resp->headers[ict].value.n == 0) return;
    sg_str ct = resp->headers[ict].value;
    size_t type_len;
    sg_str src = split_charset(ct, &type_len);
    if (src.n) {
        if (!lc->override_charset) return;
    } else if (!sg_charset_type_ok(lc, ct)) {
        return;
    }
    sg_str dst = sg_cval_eval(&lc->charset, &ex->req);
    if (!src.n && lc->source_charset_on) src = sg_cval_eval(&lc->source_charset, &ex->req);
    if (src.n && !same_charset(src, dst)) {
        sg_ex_log(ex, SG_LOG_ERROR, "no \"charset_map\" between the charsets \"%.*s\" and \"%.*s\"",
                  (int)src.n, src.p, (int)dst.n, dst.p);
        return;
    }
    /* nginx names no charset on a redirect: old browsers took it for the
     * next page's */
    if (dst.n == 0 || resp->status == 301 || resp->status == 302) return;
    sg_arena *a = &ex->req.arena;
    size_t n = type_len + 10 + dst.n;
    char *v = sg_arena_alloc(a, n);
    memcpy(v, ct.p, type_len);
    memcpy(v + type_len, "; charset=", 10);
    memcpy(v + type_len + 10, dst.p, dst.n);
    sg_header *h = sg_arena_alloc(a, sizeof(sg_header) * resp->nheaders);
    memcpy(h, resp->headers, sizeof(sg_header) * resp->nheaders);
    h[ict].value = (sg_str){ v, n };
    resp->headers = h;
}
