/* stub_status and metrics locations (proxy/status_page.h). */
#include "proxy/status_page.h"

#include <stdlib.h>
#include <string.h>

#include "observe/metrics.h"
#include "proxy/respond.h"

static bool get_or_head(const sg_exchange *ex)
{
    sg_str m = ex->req.method;
    return (m.n == 3 && memcmp(m.p, "GET", 3) == 0) || (m.n == 4 && memcmp(m.p, "HEAD", 4) == 0);
}

bool sg_status_page_run(sg_exchange *ex)
{
    const sg_loc_conf *lc = &ex->req.loc->conf;
    if (!lc->stub_status && !lc->metrics) return false;
    if (!get_or_head(ex)) {
        sg_respond_error(ex, 405);
        return true;
    }
    if (lc->stub_status) {
        char *text = NULL;
        size_t n = sg_mx_stub_text(&text);
        sg_respond_simple(ex, 200, SG_STR("text/plain"), (sg_str){ text, n }, SG_STR_NULL);
        free(text);
        return true;
    }
    sg_strbuf b = { 0 };
    sg_mx_render(&b);
    sg_respond_simple(ex, 200, SG_STR("text/plain; version=0.0.4; charset=utf-8"), (sg_str){ b.p, b.n },
                      SG_STR_NULL);
    sg_strbuf_free(&b);
    return true;
}
