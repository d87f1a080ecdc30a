/* Status texts and error bodies. */
#include "http/status.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *sg_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Moved Temporarily";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Time-out";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Requested Range Not Satisfiable";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 494: return "Request Header Or Cookie Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Temporarily Unavailable";
    case 504: return "Gateway Time-out";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

sg_str sg_http_error_body(int status)
{
    static _Thread_local char buf[512];
    static _Thread_local int cached;
    if (status < 300 || status == 304) return SG_STR("");
    if (cached != status && status >= 495 && status <= 497) {
        /* tls: nginx's pages for its internal codes, sent as 400 */
        static const char *const why[] = { "The SSL certificate error", "No required SSL certificate was sent",
                                           "The plain HTTP request was sent to HTTPS port" };
        snprintf(buf, sizeof(buf),
                 "<html>\r\n<head><title>400 %s</title></head>\r\n<body>\r\n"
                 "<center><h1>400 Bad Request</h1></center>\r\n<center>%s</center>\r\n"
                 "<hr><center>streamgate</center>\r\n</body>\r\n</html>\r\n",
                 why[status - 495], why[status - 495]);
        cached = status;
    }
    if (cached != status) {
        const char *r = sg_http_reason(status);
        snprintf(buf, sizeof(buf),
                 "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
                 "<center><h1>%d %s</h1></center>\r\n<hr><center>streamgate</center>\r\n"
                 "</body>\r\n</html>\r\n",
                 status, r, status, r);
        cached = status;
    }
    return sg_str_from(buf);
}

sg_str sg_http_date(void)
{
    static _Thread_local char buf[40];
    static _Thread_local time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return sg_str_from(buf);
}
