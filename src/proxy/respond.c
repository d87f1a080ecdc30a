/* Local answers: return, error pages and error_page redirects, static
 * files. */
#include "proxy/handler.h"
#include "proxy/respond.h"
#include "proxy/rate_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "exchange/vars.h"
#include "http/status.h"
#include "core/sockaddr.h"
#include "net/sock.h"
#include "proxy/charset_filter.h"
#include "proxy/grpc.h"
#include "proxy/gzip_filter.h"
#include "proxy/header_filter.h"
#include "proxy/proxy.h"
#include "proxy/rewrite.h"
#include "proxy/router.h"

/* nginx follows one error_page redirect (recursive_error_pages off): an
 * error on the error page gets the standard page. */
#define MAX_REDIRECTS 1

static const sg_loc_conf *loc_conf(const sg_exchange *ex)
{
    return &ex->req.loc->conf;
}

void sg_respond_head(sg_exchange *ex, int status, const sg_header *extra, size_t nextra,
                     int64_t content_length, bool has_body)
{
    if (ex->status_override > 0) status = ex->status_override;
    const sg_loc_conf *lc = loc_conf(ex);
    sg_header *h = sg_arena_alloc(&ex->req.arena, sizeof(sg_header) * (nextra + lc->nadd_headers + ex->ncarry + 3));
    size_t n = 0;
    for (size_t i = 0; i < nextra; i++) {
        /* a carried field stands in for the answer's own of that name
         * (X-Accel-Redirect keeps the backend's Content-Type, as nginx) */
        bool carried = false;
        for (size_t j = 0; j < ex->ncarry && !carried; j++) carried = sg_str_caseeq(extra[i].name, ex->carry[j].name);
        if (!carried) h[n++] = extra[i];
    }
    for (size_t i = 0; i < ex->ncarry; i++) h[n++] = ex->carry[i];
    n = sg_hf_expires(ex, status, h, n);
    bool allowed = sg_hf_status_allowed(status);
    ex->req.status = status;
    ex->req.resp_content_length = content_length;
    for (size_t i = 0; i < lc->nadd_headers; i++) {
        const sg_header_set *a = &lc->add_headers[i];
        if (!a->always && !allowed) continue;
        ex->req.resp_headers = h;            /* $sent_http_ sees the fields added so far */
        ex->req.nresp_headers = n;
        sg_str v = sg_cval_eval(&a->value, &ex->req);
        /* ETag and Last-Modified are single fields in nginx: add_header
         * replaces them, and an empty value removes them */
        if (sg_str_caseeq_lit(a->name, "etag") || sg_str_caseeq_lit(a->name, "last-modified")) {
            size_t m = 0;
            for (size_t j = 0; j < n; j++)
                if (!sg_str_caseeq(h[j].name, a->name)) h[m++] = h[j];
            n = m;
        }
        if (v.n == 0) continue;   /* nginx skips empty add_header values */
        h[n++] = (sg_header){ a->name, v, 0 };
    }
    ex->req.resp_headers = h;
    ex->req.nresp_headers = n;
    bool own_trailers = sg_hf_trailers_wanted(ex, status, has_body);
    sg_response resp = {
        .status = status, .headers = h, .nheaders = n,
        .content_length = content_length, .has_body = has_body,
        .trailers = (ex->resp_trailers || own_trailers) && has_body,
        .own_trailers = own_trailers,
    };
    if (own_trailers) sg_hf_trailers_begin(ex);
    if (sg_hf_keepalive_disabled(ex)) ex->close_connection = true;
    sg_charset_head(ex, &resp);   /* may name the charset in Content-Type */
    sg_rate_head(ex, &resp);   /* rate (issue 10): may limit the body; before gzip, which then wraps it */
    sg_gzip_head(ex, &resp);   /* may compress the body: then ex->down is the filter */
    ex->down->send_head(ex, &resp);
}

/* nginx makes a relative redirect absolute (absolute_redirect on) with
 * the Host the client used and the port it connected to. */
sg_str sg_respond_absolute_location(sg_exchange *ex, sg_str location)
{
    return sg_hf_location(ex, location);
}

void sg_respond_simple(sg_exchange *ex, int status, sg_str content_type, sg_str body,
                       sg_str location)
{
    /* A redirect is answered as it is, whatever error led to it (nginx);
     * without one, a `return 30x` Location waiting through its error_page
     * is sent. */
    if (location.n) {
        ex->status_override = 0;
        ex->req.rw_location = SG_STR_NULL;
    } else {
        location = ex->req.rw_location;
    }
    location = sg_respond_absolute_location(ex, location);
    sg_header h[2];
    size_t n = 0;
    int final = ex->status_override > 0 ? ex->status_override : status;
    bool bodyless = final == 204 || final == 304 || final < 200;
    if (content_type.n && !bodyless) h[n++] = (sg_header){ SG_STR("Content-Type"), content_type, 0 };
    if (location.n) h[n++] = (sg_header){ SG_STR("Location"), location, 0 };
    ex->down->want_body(ex, false);
    sg_respond_head(ex, status, h, n, bodyless ? -1 : (int64_t)body.n, !bodyless);
    if (!bodyless && body.n) ex->down->send_data(ex, body.p, body.n);
    ex->down->send_end(ex);   /* ex may end after this: touch nothing more */
}

static const sg_error_page *find_error_page(const sg_loc_conf *lc, int status)
{
    for (size_t i = 0; i < lc->nerror_pages; i++) {
        const sg_error_page *ep = &lc->error_pages[i];
        for (size_t j = 0; j < ep->ncodes; j++)
            if (ep->codes[j] == status) return ep;
    }
    return NULL;
}

bool sg_respond_has_error_page(const sg_exchange *ex, int status)
{
    return ex->redirects < MAX_REDIRECTS && find_error_page(loc_conf(ex), status) != NULL;
}

static bool closes_connection(int status)
{
    switch (status) {
    case 400: case 408: case 413: case 414: case 431: case 494: case 495: case 496: case 497: case 500: case 501:
        return true;
    default:
        return false;
    }
}

static bool is_url(sg_str s)
{
    return (s.n > 7 && strncmp(s.p, "http://", 7) == 0) ||
           (s.n > 8 && strncmp(s.p, "https://", 8) == 0);
}

/* error_page target: "@named", a URL (redirect) or a local URI. */
static void follow_error_page(sg_exchange *ex, const sg_error_page *ep, int status)
{
    sg_http_req *r = &ex->req;
    sg_str target = sg_cval_eval(&ep->uri, r);
    ex->redirects++;
    /* nginx (ngx_http_send_error_page): what starts with neither "/" nor
     * "@" is a redirect, "error_page 502 redirect;" included */
    if (is_url(target) || (target.n && target.p[0] != '/' && target.p[0] != '@')) {
        int code = ep->override > 0 ? ep->override : 302;
        ex->status_override = 0;
        sg_respond_simple(ex, code, SG_STR("text/html"), sg_http_error_body(code), target);
        return;
    }
    ex->status_override = ep->override == -1 ? status : (ep->override > 0 ? ep->override : 0);
    sg_respond_redirect(ex, target);
}

void sg_respond_redirect(sg_exchange *ex, sg_str target)
{
    sg_http_req *r = &ex->req;
    ex->req_internal = true;
    /* Part of the body went to the failed peer: it cannot be sent again,
     * so the redirected request has none and the rest is dropped. */
    if (ex->req_body_started || ex->req_body_done) {
        ex->req_length = 0;
        ex->req_body_dropped = true;
    }
    if (!(r->method.n == 4 && memcmp(r->method.p, "HEAD", 4) == 0)) r->method = SG_STR("GET");
    if (target.n && target.p[0] == '@') {
        const sg_location *loc = sg_router_named(r->srv, target);
        if (!loc) {
            r->loc = r->srv->root;
            ex->status_override = 0;
            sg_respond_simple(ex, 404, SG_STR("text/html"), sg_http_error_body(404), SG_STR_NULL);
            return;
        }
        sg_rewrite_run_named(ex, loc);
        return;
    }
    /* The error page's URI replaces the request's, arguments included;
     * the redirected request runs every phase again (rewrites too). */
    const char *q = memchr(target.p, '?', target.n);
    r->has_args = q != NULL;
    r->args = q ? (sg_str){ q + 1, (size_t)(target.p + target.n - q - 1) } : SG_STR("");
    if (q) target.n = (size_t)(q - target.p);
    r->uri = target;
    sg_rewrite_run(ex);
}

/* A gRPC call gets a trailers-only answer with the status gRPC maps the
 * HTTP error to, instead of an HTML page its client would report as
 * UNKNOWN or INTERNAL. The message is the status line. */
static void respond_grpc_error(sg_exchange *ex, int status)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "%d %s", status, sg_http_reason(status));
    sg_grpc_end_call(ex, sg_grpc_status_of_http(status), msg);
}

void sg_respond_error(sg_exchange *ex, int status)
{
    if (ex->resp_head_sent) {
        ex->down->abort(ex);
        return;
    }
    if (closes_connection(status)) ex->close_connection = true;
    const sg_error_page *ep = ex->redirects < MAX_REDIRECTS ? find_error_page(loc_conf(ex), status) : NULL;
    if (ep) {
        follow_error_page(ex, ep, status);
        return;
    }
    if (status == 444) {   /* nginx: close without a response */
        ex->req.status = 444;
        ex->down->abort(ex);
        return;
    }
    /* tls: nginx's 495/496/497 go out as 400 with their own page */
    int wire = status >= 495 && status <= 497 ? 400 : status;
    if (sg_grpc_is_call(ex)) {
        respond_grpc_error(ex, wire);
        return;
    }
    sg_respond_simple(ex, wire, SG_STR("text/html"), sg_http_error_body(status), SG_STR_NULL);
}

static sg_str mime_type(sg_str path, const sg_loc_conf *lc);

void sg_respond_return(sg_exchange *ex)
{
    sg_respond_return_conf(ex, loc_conf(ex));
}

void sg_respond_return_conf(sg_exchange *ex, const sg_loc_conf *lc)
{
    int code = lc->return_code;
    bool has_text = lc->return_text.text.n > 0 || lc->return_text.nparts > 0;
    sg_str text = has_text ? sg_cval_eval(&lc->return_text, &ex->req) : SG_STR("");
    if (code == 301 || code == 302 || code == 303 || code == 307 || code == 308) {
        if (has_text && sg_respond_has_error_page(ex, code)) {
            /* nginx keeps the Location through the error_page, and a new
             * redirect there replaces it */
            ex->req.rw_location = sg_respond_absolute_location(ex, text);
            sg_respond_error(ex, code);
            return;
        }
        if (has_text) {
            sg_respond_simple(ex, code, SG_STR("text/html"), sg_http_error_body(code), text);
            return;
        }
        sg_respond_error(ex, code);
        return;
    }
    if (has_text) {
        sg_respond_simple(ex, code, lc->default_type, text, SG_STR_NULL);
        return;
    }
    if (code >= 400) {
        /* an error `return` in an error_page target answers with its own
         * code (nginx 1.15.4) */
        ex->status_override = 0;
        sg_respond_error(ex, code);
        return;
    }
    /* nginx sends an empty body with the type of the URI, as for a file
     * (so that charset can name its charset) */
    sg_respond_simple(ex, code, mime_type(ex->req.uri, lc), SG_STR(""), SG_STR_NULL);
}

/* ---- static files ---- */

/* The type of a static file: from the location's `types` when it has
 * any (nginx uses only that list then), else a built-in table of common
 * types, else default_type. */
static sg_str mime_type(sg_str path, const sg_loc_conf *lc)
{
    sg_str fallback = lc->default_type;
    static const struct { const char *ext, *type; } types[] = {
        { "html", "text/html" }, { "htm", "text/html" }, { "css", "text/css" },
        { "js", "application/javascript" }, { "json", "application/json" },
        { "txt", "text/plain" }, { "png", "image/png" }, { "jpg", "image/jpeg" },
        { "jpeg", "image/jpeg" }, { "gif", "image/gif" }, { "svg", "image/svg+xml" },
        { "ico", "image/x-icon" }, { "wasm", "application/wasm" }, { "xml", "text/xml" },
    };
    const char *dot = NULL;
    for (size_t i = path.n; i > 0; i--) {
        if (path.p[i - 1] == '.') { dot = path.p + i; break; }
        if (path.p[i - 1] == '/') break;
    }
    if (!dot) return fallback;
    sg_str ext = { dot, (size_t)(path.p + path.n - dot) };
    if (lc->ntypes) {
        for (size_t i = 0; i < lc->ntypes; i++)
            if (sg_str_caseeq(ext, lc->types[i].ext)) return lc->types[i].type;
        return fallback;
    }
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (sg_str_caseeq_lit(ext, types[i].ext)) return sg_str_from(types[i].type);
    return fallback;
}

/* File chunks are read here, not into the worker's scratch buffer: the
 * pump runs inside the codec's input processing, which may still be
 * parsing pipelined requests out of the scratch buffer. */
#define FILE_CHUNK 32768
static _Thread_local char file_chunk[FILE_CHUNK];

void sg_respond_file_pump(sg_exchange *ex)
{
    while (ex->file_fd >= 0 && ex->file_left > 0) {
        if (ex->down->pending(ex) >= SG_HIGH_WATER) {
            ex->waiting_drain = true;
            return;
        }
        char *buf = file_chunk;
        size_t want = ex->file_left < FILE_CHUNK ? (size_t)ex->file_left : FILE_CHUNK;
        ssize_t n = read(ex->file_fd, buf, want);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            sg_ex_log(ex, SG_LOG_ERROR, "read() failed on a static file (%s)", n < 0 ? strerror(errno) : "file shrank");
            close(ex->file_fd);
            ex->file_fd = -1;
            ex->down->abort(ex);
            return;
        }
        ex->file_left -= (uint64_t)n;
        ex->down->send_data(ex, buf, (size_t)n);
    }
    if (ex->file_fd >= 0) {
        close(ex->file_fd);
        ex->file_fd = -1;
    }
    ex->down->send_end(ex);
}

static int open_static(sg_exchange *ex, const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (fstat(fd, st) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* nginx's static module logs the file it could not open (at error level,
 * "log_not_found" on by default), to the location's error_log: operators
 * and its error_log tests rely on that line. */
static void log_open_failed(sg_exchange *ex, const char *path, int e)
{
    sg_http_req *r = &ex->req;
    char client[64] = "";
    if (r->peer) sg_sockaddr_host(r->peer, client, sizeof(client));
    sg_str srv = r->srv && r->srv->nnames ? r->srv->names[0].name : SG_STR("");
    sg_ex_log(ex, SG_LOG_ERROR,
              "open() \"%s\" failed (%d: %s), client: %s, server: %.*s, request: \"%.*s %.*s HTTP/%d.%d\", host: \"%.*s\"",
              path, e, strerror(e), client, (int)srv.n, srv.p, (int)r->method.n, r->method.p, (int)r->request_uri.n,
              r->request_uri.p, r->http_major, r->http_minor, (int)r->host.n, r->host.p);
}

/* `index /uri` (or a variable giving one): an internal redirect to that
 * URI with the request's arguments, as nginx's index module does; at most
 * 10 in a row (nginx: "rewrite or internal redirection cycle"). */
static void index_redirect(sg_exchange *ex, sg_str uri)
{
    sg_http_req *r = &ex->req;
    if (++ex->index_redirects > 10) {
        sg_ex_log(ex, SG_LOG_ERROR, "rewrite or internal redirection cycle while internally redirecting to \"%.*s\"",
                  (int)uri.n, uri.p);
        sg_respond_error(ex, 500);
        return;
    }
    ex->req_internal = true;
    r->uri = uri;
    sg_rewrite_run(ex);   /* every phase from the server rewrite on, as nginx's internal redirect */
}

void sg_respond_static(sg_exchange *ex)
{
    sg_http_req *r = &ex->req;
    const sg_loc_conf *lc = loc_conf(ex);
    bool head = sg_str_eq_lit(r->method, "HEAD");
    if (!head && !sg_str_eq_lit(r->method, "GET")) {
        sg_respond_error(ex, 405);
        return;
    }
    char path[4096];
    struct stat st;
    int fd = -1;
    /* alias: the location's prefix is replaced (a regex location's whole
     * URI, as nginx without captures); root: appended to */
    sg_str base = lc->has_alias ? lc->alias : lc->root;
    sg_str rest = r->uri;
    if (lc->has_alias && r->loc->match != SG_LOC_REGEX && r->loc->match != SG_LOC_REGEX_CASELESS) {
        size_t skip = r->loc->name.n <= rest.n ? r->loc->name.n : rest.n;
        rest.p += skip;
        rest.n -= skip;
    } else if (lc->has_alias) {
        rest = SG_STR("");
    }
    int n = snprintf(path, sizeof(path), "%.*s%.*s", (int)base.n, base.p, (int)rest.n, rest.p);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        sg_respond_error(ex, 414);
        return;
    }
    if (r->uri.n && r->uri.p[r->uri.n - 1] == '/') {
        for (size_t i = 0; i < lc->nindex && fd < 0; i++) {
            sg_str name = sg_cval_eval(&lc->index[i], r);
            if (name.n && name.p[0] == '/') {   /* nginx: an absolute index is a URI, not tested */
                index_redirect(ex, name);
                return;
            }
            if (name.n == 0) continue;
            int k = snprintf(path + n, sizeof(path) - (size_t)n, "%.*s", (int)name.n, name.p);
            if (k < 0 || (size_t)k >= sizeof(path) - (size_t)n) continue;
            fd = open_static(ex, path, &st);
            if (fd >= 0 && !S_ISREG(st.st_mode)) {
                close(fd);
                fd = -1;
            }
        }
        if (fd < 0) {
            path[n] = '\0';
            sg_respond_error(ex, access(path, F_OK) == 0 ? 403 : 404);
            return;
        }
    } else {
        fd = open_static(ex, path, &st);
        if (fd < 0) {
            int e = errno;
            log_open_failed(ex, path, e);
            sg_respond_error(ex, e == EACCES ? 403 : 404);
            return;
        }
        if (S_ISDIR(st.st_mode)) {
            close(fd);
            sg_respond_simple(ex, 301, SG_STR("text/html"), sg_http_error_body(301), sg_hf_slash_location(ex));
            return;
        }
        if (!S_ISREG(st.st_mode)) {
            close(fd);
            sg_respond_error(ex, 404);
            return;
        }
    }
    sg_str ctype = mime_type(sg_str_from(path), lc);
    sg_header h[2];
    size_t nh = 0;
    if (ctype.n) h[nh++] = (sg_header){ SG_STR("Content-Type"), ctype, 0 };
    h[nh++] = (sg_header){ SG_STR("Last-Modified"), sg_hf_http_time(&r->arena, st.st_mtime), 0 };
    ex->down->want_body(ex, false);
    sg_respond_head(ex, 200, h, nh, (int64_t)st.st_size, true);
    if (head) {
        close(fd);
        ex->down->send_end(ex);
        return;
    }
    ex->file_fd = fd;
    ex->file_left = (uint64_t)st.st_size;
    sg_respond_file_pump(ex);
}
