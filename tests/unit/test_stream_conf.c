/* stream {}: what a user moving an nginx L4 configuration would check. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/stream_conf.h"
#include "proxy/stream_proxy.h"

static char serr[2048];

static sg_conf *sload(const char *text)
{
    serr[0] = '\0';
    return sg_conf_load_string(text, strlen(text), "stream.conf", "/tmp", serr, sizeof(serr));
}

/* The listen group of a stream address, or NULL. */
static const sg_listen_group *group_of(const sg_conf *c, const char *text)
{
    for (size_t i = 0; i < c->nlistens; i++)
        if (strcmp(c->listens[i].text, text) == 0) return &c->listens[i];
    return NULL;
}

static int port_of(const struct sockaddr_storage *ss)
{
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

Test(stream_conf, server_and_upstream)
{
    sg_conf *c = sload("events {}\n"
                       "stream {\n"
                       "    upstream backend {\n"
                       "        server 127.0.0.1:9001 weight=3 max_fails=2 fail_timeout=5s;\n"
                       "        server 127.0.0.1:9002 backup;\n"
                       "        server 127.0.0.1:9003 down;\n"
                       "        least_conn;\n"
                       "    }\n"
                       "    server {\n"
                       "        listen 127.0.0.1:12345 reuseport backlog=100;\n"
                       "        proxy_pass backend;\n"
                       "    }\n"
                       "}\n");
    cr_assert_not_null(c, "%s", serr);
    cr_assert_not_null(c->stream);
    cr_assert_eq(c->stream->nservers, 1);
    const sg_listen_group *g = group_of(c, "127.0.0.1:12345");
    cr_assert_not_null(g);
    cr_expect_eq(g->nservers, 0);
    cr_expect_eq(g->backlog, 100);
    const sg_stream_server_conf *s = g->stream_server;
    cr_assert_eq(s, c->stream->servers[0]);
    sg_upstream_conf *u = s->upstream;
    cr_assert_not_null(u);
    cr_expect_str_eq(u->name, "backend");
    cr_expect_eq(u->lb, SG_LB_LEAST_CONN);
    cr_assert_eq(u->nservers, 3);
    cr_expect_eq(u->servers[0].weight, 3);
    cr_expect_eq(u->servers[0].max_fails, 2);
    cr_expect_eq(u->servers[0].fail_timeout_ms, 5000);
    cr_expect(u->servers[1].backup);
    cr_expect(u->servers[2].down);
    cr_expect_eq(u->keepalive, 0, "no idle pool for L4 sessions");
    cr_expect_null(s->hash_key);
    sg_conf_unref(c);
}

Test(stream_conf, defaults)
{
    sg_conf *c = sload("events {} stream { server { listen 12345; proxy_pass 127.0.0.1:9000; } }");
    cr_assert_not_null(c, "%s", serr);
    const sg_stream_proxy_conf *p = &c->stream->servers[0]->proxy;
    cr_expect_eq(p->timeout_ms, 3600000, "streamgate: 1h (nginx: 10m)");
    cr_expect_eq(p->connect_timeout_ms, 60000);
    cr_expect(p->next_upstream);
    cr_expect_eq(p->next_upstream_tries, 0);
    cr_expect_eq(p->next_upstream_timeout_ms, 0);
    cr_expect(!p->half_close, "nginx: proxy_half_close off");
    cr_expect(p->tcp_nodelay);
    cr_expect_not_null(group_of(c, "0.0.0.0:12345"));
    sg_conf_unref(c);
}

Test(stream_conf, server_inherits_stream_level_values)
{
    sg_conf *c = sload("events {}\n"
                       "stream {\n"
                       "    server { listen 1201; proxy_pass 127.0.0.1:9000; proxy_connect_timeout 2s; }\n"
                       "    proxy_timeout 30s;\n"
                       "    proxy_next_upstream off;\n"
                       "    proxy_half_close on;\n"
                       "    server { listen 1202; proxy_pass 127.0.0.1:9000; proxy_timeout 1m30s;\n"
                       "             proxy_next_upstream_tries 3; proxy_next_upstream_timeout 10s; }\n"
                       "}\n");
    cr_assert_not_null(c, "%s", serr);
    const sg_stream_proxy_conf *a = &c->stream->servers[0]->proxy, *b = &c->stream->servers[1]->proxy;
    cr_expect_eq(a->timeout_ms, 30000, "stream{} values apply, wherever written in the block");
    cr_expect_eq(a->connect_timeout_ms, 2000);
    cr_expect(!a->next_upstream);
    cr_expect(a->half_close);
    cr_expect_eq(b->timeout_ms, 90000);
    cr_expect_eq(b->connect_timeout_ms, 60000);
    cr_expect_eq(b->next_upstream_tries, 3);
    cr_expect_eq(b->next_upstream_timeout_ms, 10000);
    sg_conf_unref(c);
}

Test(stream_conf, upstream_names_are_their_own_namespace)
{
    sg_conf *c = sload("events {}\n"
                       "http {\n"
                       "    upstream be { server 127.0.0.1:8001; }\n"
                       "    server { listen 127.0.0.1:8080; location / { proxy_pass http://be; } }\n"
                       "}\n"
                       "stream {\n"
                       "    upstream be { server 127.0.0.1:9001; }\n"
                       "    server { listen 127.0.0.1:8081; proxy_pass be; }\n"
                       "}\n");
    cr_assert_not_null(c, "%s", serr);
    const sg_stream_server_conf *s = group_of(c, "127.0.0.1:8081")->stream_server;
    cr_expect_eq(port_of(&s->upstream->servers[0].addr), 9001);
    const sg_listen_group *h = group_of(c, "127.0.0.1:8080");
    cr_assert_not_null(h);
    cr_expect_null(h->stream_server);
    cr_expect_eq(h->nservers, 1);
    sg_conf_unref(c);
}

Test(stream_conf, stream_without_http)
{
    sg_conf *c = sload("events {} stream { server { listen 127.0.0.1:7000; proxy_pass localhost:7001; } }");
    cr_assert_not_null(c, "%s", serr);
    cr_expect(!c->has_http);
    cr_expect_eq(c->nlistens, 1);
    cr_expect(c->stream->servers[0]->upstream->implicit);
    sg_conf_unref(c);
}

Test(stream_conf, implicit_upstreams_are_shared)
{
    sg_conf *c = sload("events {} stream {\n"
                       "  server { listen 7000; proxy_pass 127.0.0.1:7001; }\n"
                       "  server { listen 7002; proxy_pass 127.0.0.1:7001; }\n"
                       "}");
    cr_assert_not_null(c, "%s", serr);
    cr_expect_eq(c->stream->servers[0]->upstream, c->stream->servers[1]->upstream);
    cr_expect_eq(c->stream->nupstreams, 1);
    sg_conf_unref(c);
}

Test(stream_conf, hash_key_is_compiled)
{
    sg_conf *c = sload("events {} stream {\n"
                       "  upstream h { server 127.0.0.1:7001; server 127.0.0.1:7002; hash \"$remote_addr-${server_port}\" consistent; }\n"
                       "  server { listen 127.0.0.1:7000; proxy_pass h; }\n"
                       "}");
    cr_assert_not_null(c, "%s", serr);
    const sg_stream_server_conf *s = c->stream->servers[0];
    cr_expect_eq(s->upstream->lb, SG_LB_HASH_CONSISTENT);
    cr_assert_not_null(s->hash_key);
    struct sockaddr_in client = { .sin_family = AF_INET, .sin_port = htons(5555) };
    struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = htons(7000) };
    inet_pton(AF_INET, "10.1.2.3", &client.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
    char buf[SG_STREAM_VAL_MAX];
    size_t n = sg_stream_proxy_value(s->hash_key, (struct sockaddr *)&client, (struct sockaddr *)&local, buf);
    cr_expect_eq(n, strlen("10.1.2.3-7000"));
    cr_expect(memcmp(buf, "10.1.2.3-7000", n) == 0, "%.*s", (int)n, buf);
    sg_conf_unref(c);
}

Test(stream_conf, stream_variables)
{
    sg_conf *c = sload("events {}");
    cr_assert_not_null(c, "%s", serr);
    sg_stream_val v;
    cr_assert(sg_stream_val_compile(c, SG_STR("$binary_remote_addr|$remote_port|$server_addr|$protocol"),
                                    (sg_conf_pos){ "x", 1, 1 }, &v, serr, sizeof(serr)), "%s", serr);
    struct sockaddr_in6 client = { .sin6_family = AF_INET6, .sin6_port = htons(40000) };
    struct sockaddr_in6 local = { .sin6_family = AF_INET6, .sin6_port = htons(80) };
    inet_pton(AF_INET6, "2001:db8::1", &client.sin6_addr);
    inet_pton(AF_INET6, "::1", &local.sin6_addr);
    char buf[SG_STREAM_VAL_MAX];
    size_t n = sg_stream_proxy_value(&v, (struct sockaddr *)&client, (struct sockaddr *)&local, buf);
    char want[64];
    memcpy(want, &client.sin6_addr, 16);
    memcpy(want + 16, "|40000|::1|TCP", 14);
    cr_expect_eq(n, 30);
    cr_expect(memcmp(buf, want, 30) == 0);
    cr_expect(!sg_stream_val_compile(c, SG_STR("$host"), (sg_conf_pos){ "x", 2, 3 }, &v, serr, sizeof(serr)));
    cr_expect_str_eq(serr, "x:2:3: unknown \"host\" variable");
    sg_conf_unref(c);
}

/* Errors name file:line:col and use nginx's words. */
static void expect_error(const char *text, const char *want)
{
    sg_conf *c = sload(text);
    cr_expect_null(c, "accepted: %s", text);
    if (c) sg_conf_unref(c);
    cr_expect(strstr(serr, want) != NULL, "got \"%s\", want \"%s\"", serr, want);
}

Test(stream_conf, errors)
{
    expect_error("events {}\nstream {\n  server { listen 1; proxy_pass 127.0.0.1:2;\n  bogus 1; } }",
                 "stream.conf:4:3: unknown directive \"bogus\"");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; location / { } } }",
                 "stream.conf:2:53: \"location\" directive is not allowed here");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; proxy_set_header A b; } }",
                 "\"proxy_set_header\" directive is not allowed here");
    expect_error("events {}\nhttp { server { listen 1; location / { proxy_timeout 5s; } } }",
                 "\"proxy_timeout\" directive is not allowed here");
    expect_error("events {}\nstream { listen 1; }", "\"listen\" directive is not allowed here");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; ssl_password_file x; } }",
                 "\"ssl_password_file\" directive is not supported yet");
    expect_error("events {}\nstream { server { listen 1 ssl; proxy_pass 127.0.0.1:2; } }",
                 "no \"ssl_certificate\" is defined for server in stream");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; ssl_alpn \"\"; } }",
                 "invalid value \"\"");
    expect_error("events {}\nstream { server { listen 1 udp proxy_protocol; proxy_pass 127.0.0.1:2; } }",
                 "\"proxy_protocol\" parameter is incompatible with \"udp\"");
    expect_error("events {}\nstream { server { listen 1 udp ssl; proxy_pass 127.0.0.1:2; } }",
                 "\"ssl\" parameter is incompatible with \"udp\"");
    expect_error("events {}\nstream { server { listen 1 foo; proxy_pass 127.0.0.1:2; } }",
                 "the invalid \"foo\" parameter");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; proxy_protocol yes; } }",
                 "invalid value \"yes\"");
    expect_error("events {}\nstream { server { listen 1; } }", "stream.conf:2:10: no handler for server");
    expect_error("events {}\nstream { server { proxy_pass 127.0.0.1:2; } }",
                 "no \"listen\" is defined for server");
    expect_error("events {}\nstream { server { listen 1; proxy_pass be; } }", "no port in upstream \"be\"");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1:1; } server { listen 1; proxy_pass be:80; } }",
                 "upstream \"be\" may not have port 80");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1; } }", "no port in upstream \"127.0.0.1\"");
    expect_error("events {}\nstream { upstream be { } }", "no servers are inside upstream");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1:1; } upstream BE { server 127.0.0.1:2; } }",
                 "duplicate upstream \"BE\"");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1:1; keepalive 4; } }",
                 "\"keepalive\" directive is not allowed here");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1:1; hash $remote_addr foo; } }",
                 "invalid parameter \"foo\"");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1:1; server 127.0.0.1:2 backup; hash $remote_addr; } }",
                 "balancing method does not support parameter \"backup\"");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1:1 slow_start=4x; } }",
                 "invalid parameter \"slow_start=4x\"");
    expect_error("events {}\nstream { upstream be { server 127.0.0.1:1; server 127.0.0.1:2 backup; random; } }",
                 "balancing method does not support parameter \"backup\"");
    expect_error("events {}\nstream { server { listen 127.0.0.1:5; proxy_pass 127.0.0.1:2; }\n"
                 "server { listen 127.0.0.1:5; proxy_pass 127.0.0.1:2; } }",
                 "stream.conf:3:17: duplicate \"127.0.0.1:5\" address and port pair");
    expect_error("events {}\nhttp { server { listen 127.0.0.1:5; } }\n"
                 "stream { server { listen 127.0.0.1:5; proxy_pass 127.0.0.1:2; } }",
                 "stream.conf:3:19: duplicate \"127.0.0.1:5\" address and port pair");
    expect_error("events {}\nhttp { server { listen 5; } }\n"
                 "stream { server { listen 127.0.0.1:5; proxy_pass 127.0.0.1:2; } }",
                 "overlaps http listen \"0.0.0.0:5\"");
    expect_error("events {}\nstream { } stream { }", "\"stream\" directive is duplicate");
    expect_error("events {}\nstream { proxy_timeout 10x; }", "invalid value \"10x\" in \"proxy_timeout\" directive");
    expect_error("events {}\nstream { proxy_next_upstream error; }",
                 "it must be \"on\" or \"off\"");
    expect_error("events {}\nstream { proxy_timeout 1s; proxy_timeout 2s; }",
                 "\"proxy_timeout\" directive is duplicate");
    expect_error("events {}\nstream { server { listen 1; proxy_pass $x; } }",
                 "stream.conf:2:40: unknown \"x\" variable");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; access_log /x; } }",
                 "log format is not specified");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; access_log /x nosuch; } }",
                 "unknown log format \"nosuch\"");
    expect_error("events {}\nstream { map $server_port $remote_addr { default 1; } }",
                 "the duplicate \"remote_addr\" variable");
    expect_error("events {}\nstream { server { listen 1; return $host; } }",
                 "stream.conf:2:36: unknown \"host\" variable");
    expect_error("events {}\nstream { server { listen 127.0.0.1; proxy_pass 127.0.0.1:2; } }",
                 "no port in \"127.0.0.1\" of the \"listen\" directive");
    expect_error("events {}\nstream { upstream a { server 127.0.0.1:1; hash $host; } }",
                 "stream.conf:2:48: unknown \"host\" variable");
}

/* One directive engine reads http{} and stream{}: each table's names,
 * later lists and per-level duplicates, wherever they are written. */
Test(stream_conf, one_engine_for_both_tables)
{
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; proxy_pass 127.0.0.1:3; } }",
                 "stream.conf:2:53: \"proxy_pass\" directive is duplicate");
    expect_error("events {}\nstream { preread_timeout 1s; preread_timeout 2s; }",
                 "stream.conf:2:30: \"preread_timeout\" directive is duplicate");
    expect_error("events {}\nstream { proxy_buffer_size 0; }",
                 "stream.conf:2:28: invalid value \"0\" in \"proxy_buffer_size\" directive");
    expect_error("events {}\nstream { server { listen 1; proxy_pass 127.0.0.1:2; gzip on; } }",
                 "stream.conf:2:53: \"gzip\" directive is not allowed here");
    expect_error("events {}\nhttp { upstream u { server 127.0.0.1:1; sticky route $x; } }",
                 "stream.conf:2:54: unknown \"x\" variable");
    expect_error("events {}\nstream { upstream u { server 127.0.0.1:1; sticky route $x; } }",
                 "stream.conf:2:43: \"sticky\" directive is not supported yet");
    expect_error("events {}\nhttp { proxy_socket_keepalive on; }",
                 "stream.conf:2:8: \"proxy_socket_keepalive\" directive is not supported yet");
    /* rate (issue 10): stream's proxy_upload_rate exists now */
    expect_error("events {}\nhttp { proxy_upload_rate 1k; }",
                 "stream.conf:2:8: \"proxy_upload_rate\" directive is not allowed here");
    /* stream's directive in http{}: nginx's message for a known name in the wrong context */
    expect_error("events {}\nhttp { proxy_protocol on; }", "stream.conf:2:8: \"proxy_protocol\" directive is not allowed here");
    expect_error("events {}\nhttp { stream { } }", "stream.conf:2:8: \"stream\" directive is not allowed here");
    expect_error("events {}\nstream { http { } }", "stream.conf:2:10: \"http\" directive is not allowed here");
    sg_conf *c = sload("events {}\nhttp { proxy_buffer_size 0; }\n"
                       "stream { server { listen 1; proxy_pass 127.0.0.1:2; proxy_buffer_size 64k; } }");
    cr_expect_not_null(c, "http's proxy_buffer_size takes 0, stream's does not: %s", serr);
    if (c) sg_conf_unref(c);
}
