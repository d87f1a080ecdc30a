/* The chat room behind /ws/chat: JSON text messages, one per frame, in the
 * style of the classic Go WebSocket IM (cmd + optional seq, answers that
 * carry the same seq and a response code).
 *
 *   -> {"cmd":"login","user":"alice","room":"lobby"}     (room: default "lobby";
 *                                                         "userId" is accepted too)
 *   <- {"cmd":"login","ok":true,"user":"alice","room":"lobby","online":2,
 *       "response":{"code":200,"codeMsg":"Success"}}
 *   <- {"cmd":"join","user":"alice","room":"lobby","online":2,"ts":...}   (to the room)
 *   -> {"cmd":"heartbeat"}
 *   <- {"cmd":"heartbeat","ok":true,"online":2,"response":{...}}
 *   -> {"cmd":"message","text":"hi"}
 *   <- {"cmd":"message","user":"alice","room":"lobby","text":"hi","ts":...}
 *                                  (to everyone in the room, the sender too)
 *   <- {"cmd":"leave","user":"alice","room":"lobby","online":1,"ts":...}
 * Errors answer {"cmd":...,"ok":false,"error":"...","response":{"code":4xx,...}}.
 * "ts" is milliseconds since the epoch. Rooms larger than NOTICE_MAX get no
 * join/leave notices (thousands of members would turn each join into
 * thousands of writes); "online" still counts them.
 *
 * Threads: a room's members may be spread over sgback's worker threads.
 * Each thread keeps its own members per room and has a mailbox (an
 * eventfd in its epoll set); a broadcast is framed once and posted, by
 * reference, to every thread's mailbox. A thread delivers a batch of
 * mailbox messages with one writev per member, the frames of a room in
 * the order they were posted. The member counts ("online") are global,
 * under one mutex, touched only at login and leave. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "sgback.h"
#include "core/str.h"

#define NAME_MAX_BYTES 32     /* user and room names */
#define NOTICE_MAX 200
#define BUCKETS 256
#define MAX_BOXES 512
#define BATCH 64              /* mailbox messages delivered per wakeup */

struct sgb_chat_room {
    struct sgb_chat_room *next;    /* hash chain */
    sgb_ws *members;               /* per-thread table: this thread's members */
    size_t n;                      /* members (global table: in all threads) */
    char name[NAME_MAX_BYTES + 1];
};

typedef struct chat_msg {
    atomic_uint refs;              /* mailboxes still holding it */
    char room[NAME_MAX_BYTES + 1];
    size_t len;
    uint8_t frame[];               /* a whole unmasked text frame */
} chat_msg;

typedef struct chat_box {
    int kind;                      /* SGB_EV_CHAT */
    int efd;
    pthread_mutex_t lock;
    chat_msg **q;
    size_t n, cap;
} chat_box;

typedef struct chat_thread {
    chat_box box;
    sgb_chat_room *rooms[BUCKETS];
    bool delivering;               /* empty rooms are freed after the delivery loop */
    sg_strbuf json;                /* reused to build answers */
} chat_thread;

static struct {
    pthread_mutex_t lock;
    chat_box *boxes[MAX_BOXES];
    size_t n;
    sgb_chat_room *counts[BUCKETS];
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

static _Thread_local chat_thread *ct;

/* ---------------- JSON: a tolerant reader, a strict writer ---------------- */

static size_t skip_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i;
}

/* Index of the closing quote of a string whose body starts at i (or n). */
static size_t string_end(const char *p, size_t n, size_t i)
{
    while (i < n && p[i] != '"')
        i += p[i] == '\\' ? 2 : 1;
    return i < n ? i : n;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t utf8_put(unsigned cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A \u escape at p[i] ('u' position + 1), a surrogate pair if it is one;
 * a lone surrogate becomes U+FFFD so the output stays valid UTF-8. */
static unsigned unicode_escape(const char *p, size_t e, size_t *i)
{
    if (*i + 4 > e)
        return 0xFFFD;
    int v = hex4(p + *i);
    if (v < 0)
        return 0xFFFD;
    *i += 4;
    if (v >= 0xD800 && v <= 0xDBFF && *i + 6 <= e && p[*i] == '\\' && p[*i + 1] == 'u') {
        int lo = hex4(p + *i + 2);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            *i += 6;
            return 0x10000 + (((unsigned)v - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
        }
    }
    return v >= 0xD800 && v <= 0xDFFF ? 0xFFFD : (unsigned)v;
}

/* Decodes the string body p[s..e) into out (cap >= 1), NUL-terminated;
 * characters that do not fit whole are dropped (names are truncated). */
static void decode_string(const char *p, size_t s, size_t e, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = s; i < e;) {
        char tmp[4];
        size_t len = 1;
        unsigned char c = (unsigned char)p[i];
        if (c == '\\' && i + 1 < e && (unsigned char)p[i + 1] < 0x80) {
            char x = p[i + 1];
            i += 2;
            tmp[0] = x == 'n' ? '\n' : x == 't' ? '\t' : x == 'r' ? '\r' : x == 'b' ? '\b'
                   : x == 'f' ? '\f' : x;
            if (x == 'u')
                len = utf8_put(unicode_escape(p, e, &i), tmp);
        } else if (c == '\\') {   /* before a non-ASCII character: dropped */
            i++;
            continue;
        } else {
            /* a raw character is copied whole (the frame was valid UTF-8) */
            len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            if (i + len > e)
                len = e - i;
            memcpy(tmp, p + i, len);
            i += len;
        }
        if (o + len >= cap)
            break;
        memcpy(out + o, tmp, len);
        o += len;
    }
    out[o] = 0;
}

/* Finds "key": value at any depth (the seed protocol nests its fields in
 * "data"). A string value is decoded; a number or literal is copied as
 * is. false if there is no such key. */
static bool json_get(const char *p, size_t n, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '"')
            continue;
        size_t s = i + 1, e = string_end(p, n, s);
        if (e >= n)
            return false;
        size_t j = skip_ws(p, n, e + 1);
        i = e;
        if (j >= n || p[j] != ':' || e - s != klen || memcmp(p + s, key, klen) != 0)
            continue;
        j = skip_ws(p, n, j + 1);
        if (j < n && p[j] == '"') {
            decode_string(p, j + 1, string_end(p, n, j + 1), out, cap);
            return true;
        }
        size_t k = j;
        while (k < n && k - j < cap - 1 && !strchr(",{}[] \t\r\n", p[k]))
            k++;
        if (k == j)
            continue;   /* an object or array: look further */
        memcpy(out, p + j, k - j);
        out[k - j] = 0;
        return true;
    }
    return false;
}

static void json_escape(sg_strbuf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            sg_strbuf_append(b, e, 2);
        } else if (c == '\n') {
            sg_strbuf_append(b, "\\n", 2);
        } else if (c < 0x20 || c == 0x7F) {
            sg_strbuf_appendf(b, "\\u%04x", c);
        } else {
            sg_strbuf_append(b, s, 1);
        }
    }
}

/* ,"key":"value" */
static void json_field(sg_strbuf *b, const char *key, const char *value)
{
    sg_strbuf_appendf(b, ",\"%s\":\"", key);
    json_escape(b, value);
    sg_strbuf_append(b, "\"", 1);
}

/* Names: control characters dropped, spaces trimmed. */
static void clean_name(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++)
        if ((unsigned char)s[i] >= 0x20 && s[i] != 0x7F)
            s[o++] = s[i];
    while (o > 0 && s[o - 1] == ' ')
        o--;
    s[o] = 0;
    size_t lead = strspn(s, " ");
    memmove(s, s + lead, o - lead + 1);
}

static unsigned long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u;
}

/* ---------------- rooms ---------------- */

static size_t bucket(const char *name)
{
    uint32_t h = 2166136261u;
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 16777619u;
    return h % BUCKETS;
}

static sgb_chat_room *room_get(sgb_chat_room **table, const char *name, bool create)
{
    sgb_chat_room **head = &table[bucket(name)];
    for (sgb_chat_room *r = *head; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    if (!create)
        return NULL;
    sgb_chat_room *r = sg_xcalloc(1, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->next = *head;
    *head = r;
    return r;
}

static void room_drop(sgb_chat_room **table, sgb_chat_room *room)
{
    for (sgb_chat_room **pp = &table[bucket(room->name)]; *pp; pp = &(*pp)->next) {
        if (*pp == room) {
            *pp = room->next;
            free(room);
            return;
        }
    }
}

/* Adds `delta` to the room's global member count; returns the new count. */
static size_t count_add(const char *name, int delta)
{
    pthread_mutex_lock(&reg.lock);
    sgb_chat_room *r = room_get(reg.counts, name, delta > 0);
    size_t n = 0;
    if (r) {
        r->n = delta > 0 ? r->n + 1 : r->n - 1;
        n = r->n;
        if (n == 0)
            room_drop(reg.counts, r);
    }
    pthread_mutex_unlock(&reg.lock);
    return n;
}

static size_t count_get(const char *name)
{
    pthread_mutex_lock(&reg.lock);
    sgb_chat_room *r = room_get(reg.counts, name, false);
    size_t n = r ? r->n : 0;
    pthread_mutex_unlock(&reg.lock);
    return n;
}

/* ---------------- mailboxes ---------------- */

static void msg_release(chat_msg *m)
{
    if (atomic_fetch_sub(&m->refs, 1) == 1)
        free(m);
}

static void box_push(chat_box *b, chat_msg *m)
{
    pthread_mutex_lock(&b->lock);
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->q = sg_xrealloc(b->q, b->cap * sizeof *b->q);
    }
    b->q[b->n++] = m;
    bool wake = b->n == 1;
    pthread_mutex_unlock(&b->lock);
    uint64_t one = 1;
    if (wake && write(b->efd, &one, sizeof one) < 0)
        perror("sgback: chat eventfd");
}

/* Frames `json` once and posts it to every thread (this one included). */
static void broadcast(const char *room, const sg_strbuf *json)
{
    chat_msg *m = sg_xmalloc(sizeof *m + SG_WS_MAX_HEAD + json->n);
    size_t hl = sg_ws_write_head(m->frame, true, SG_WS_OP_TEXT, json->n, NULL);
    memcpy(m->frame + hl, json->p, json->n);
    m->len = hl + json->n;
    snprintf(m->room, sizeof m->room, "%s", room);
    pthread_mutex_lock(&reg.lock);
    atomic_init(&m->refs, (unsigned)reg.n);
    for (size_t i = 0; i < reg.n; i++)
        box_push(reg.boxes[i], m);
    bool none = reg.n == 0;
    pthread_mutex_unlock(&reg.lock);
    if (none)
        free(m);
}

/* Sends the frames of v[from..n) that belong to v[from]'s room to this
 * thread's members of it, in order, and releases them. */
static void deliver_room(chat_msg **v, size_t from, size_t n)
{
    struct iovec iov[BATCH];
    int cnt = 0;
    const char *name = v[from]->room;
    for (size_t j = from; j < n; j++)
        if (v[j] && strcmp(v[j]->room, name) == 0)
            iov[cnt++] = (struct iovec){ v[j]->frame, v[j]->len };
    sgb_chat_room *r = room_get(ct->rooms, name, false);
    if (r) {
        ct->delivering = true;   /* a member that fails leaves; the room must stay */
        for (sgb_ws *w = r->members, *next; w; w = next) {
            next = w->rnext;
            sgb_ws_send_frames(w, iov, cnt);
        }
        ct->delivering = false;
        if (r->n == 0)
            room_drop(ct->rooms, r);
    }
    for (size_t j = n; j-- > from;) {
        if (v[j] && strcmp(v[j]->room, name) == 0) {
            msg_release(v[j]);
            v[j] = NULL;
        }
    }
}

void sgb_chat_mailbox(void *box)
{
    chat_box *b = box;
    uint64_t v;
    if (read(b->efd, &v, sizeof v) < 0) {
        /* EAGAIN: a wakeup we gave ourselves was already consumed */
    }
    chat_msg *batch[BATCH];
    pthread_mutex_lock(&b->lock);
    size_t n = b->n < BATCH ? b->n : BATCH;
    memcpy(batch, b->q, n * sizeof *batch);
    memmove(b->q, b->q + n, (b->n - n) * sizeof *b->q);
    b->n -= n;
    bool more = b->n > 0;
    pthread_mutex_unlock(&b->lock);
    uint64_t one = 1;
    if (more && write(b->efd, &one, sizeof one) < 0)
        perror("sgback: chat eventfd");
    for (size_t i = 0; i < n; i++)
        if (batch[i])
            deliver_room(batch, i, n);
}

/* ---------------- membership ---------------- */

static size_t join(sgb_ws *ws, const char *user, const char *room)
{
    ws->user = sg_xstrdup(user);
    sgb_chat_room *r = room_get(ct->rooms, room, true);
    ws->room = r;
    ws->rprev = NULL;
    ws->rnext = r->members;
    if (r->members)
        r->members->rprev = ws;
    r->members = ws;
    r->n++;
    return count_add(room, +1);
}

/* Builds {"cmd":"join"|"leave",...} for the room. */
static void notice(const char *cmd, const char *user, const char *room, size_t online)
{
    sg_strbuf *b = &ct->json;
    b->n = 0;
    sg_strbuf_appendf(b, "{\"cmd\":\"%s\"", cmd);
    json_field(b, "user", user);
    json_field(b, "room", room);
    sg_strbuf_appendf(b, ",\"online\":%zu,\"ts\":%llu}", online, wall_ms());
    broadcast(room, b);
}

void sgb_chat_leave(sgb_ws *ws)
{
    if (!ws->user)
        return;
    sgb_chat_room *r = ws->room;
    char room[sizeof r->name];
    snprintf(room, sizeof room, "%s", r->name);
    if (ws->rprev)
        ws->rprev->rnext = ws->rnext;
    else
        r->members = ws->rnext;
    if (ws->rnext)
        ws->rnext->rprev = ws->rprev;
    ws->rprev = ws->rnext = NULL;
    ws->room = NULL;
    if (--r->n == 0 && !ct->delivering)
        room_drop(ct->rooms, r);
    size_t online = count_add(room, -1);
    if (online < NOTICE_MAX)
        notice("leave", ws->user, room, online);
    free(ws->user);
    ws->user = NULL;
}

/* ---------------- commands ---------------- */

/* Starts an answer: {"cmd":CMD[,"seq":SEQ] */
static sg_strbuf *answer(const char *cmd, const char *seq)
{
    sg_strbuf *b = &ct->json;
    b->n = 0;
    sg_strbuf_append(b, "{\"cmd\":\"", 8);
    json_escape(b, cmd);
    sg_strbuf_append(b, "\"", 1);
    if (seq[0])
        json_field(b, "seq", seq);
    return b;
}

static void send_json(sgb_ws *ws, sg_strbuf *b)
{
    sgb_ws_send(ws, SG_WS_OP_TEXT, b->p, b->n);
}

static void reply_ok(sgb_ws *ws, sg_strbuf *b)
{
    sg_strbuf_appendf(b, ",\"response\":{\"code\":200,\"codeMsg\":\"Success\",\"data\":null}}");
    send_json(ws, b);
}

static void reply_error(sgb_ws *ws, const char *cmd, const char *seq, int code, const char *why)
{
    sg_strbuf *b = answer(cmd, seq);
    sg_strbuf_append(b, ",\"ok\":false", 11);
    json_field(b, "error", why);
    sg_strbuf_appendf(b, ",\"response\":{\"code\":%d,\"codeMsg\":\"", code);
    json_escape(b, why);
    sg_strbuf_append(b, "\",\"data\":null}}", 15);
    send_json(ws, b);
}

static void cmd_login(sgb_ws *ws, const char *p, size_t n, const char *seq)
{
    char user[NAME_MAX_BYTES + 1], room[NAME_MAX_BYTES + 1];
    if (!json_get(p, n, "user", user, sizeof user) && !json_get(p, n, "userId", user, sizeof user))
        user[0] = 0;
    clean_name(user);
    if (!user[0]) {
        reply_error(ws, "login", seq, 400, "login needs a \"user\"");
        return;
    }
    if (!json_get(p, n, "room", room, sizeof room))
        room[0] = 0;
    clean_name(room);
    if (!room[0])
        strcpy(room, "lobby");
    sgb_chat_leave(ws);   /* a second login moves to the new room/name */
    size_t online = join(ws, user, room);
    sg_strbuf *b = answer("login", seq);
    sg_strbuf_append(b, ",\"ok\":true", 10);
    json_field(b, "user", user);
    json_field(b, "room", room);
    sg_strbuf_appendf(b, ",\"online\":%zu", online);
    reply_ok(ws, b);
    if (online <= NOTICE_MAX)
        notice("join", user, room, online);
}

static void cmd_message(sgb_ws *ws, const char *p, size_t n, const char *seq)
{
    if (!ws->user) {
        reply_error(ws, "message", seq, 401, "log in first");
        return;
    }
    char *text = sg_xmalloc(n + 1);
    if (!json_get(p, n, "text", text, n + 1) || !text[0]) {
        free(text);
        reply_error(ws, "message", seq, 400, "message needs a \"text\"");
        return;
    }
    char room[NAME_MAX_BYTES + 1];
    snprintf(room, sizeof room, "%s", ws->room->name);
    sg_strbuf *b = answer("message", "");
    json_field(b, "user", ws->user);
    json_field(b, "room", room);
    json_field(b, "text", text);
    sg_strbuf_appendf(b, ",\"ts\":%llu}", wall_ms());
    free(text);
    broadcast(room, b);
    if (seq[0]) {   /* the seed protocol acknowledges requests that carry a seq */
        b = answer("message", seq);
        sg_strbuf_append(b, ",\"ok\":true", 10);
        reply_ok(ws, b);
    }
}

void sgb_chat_text(sgb_ws *ws, const char *p, size_t n)
{
    char cmd[32], seq[64];
    if (!json_get(p, n, "seq", seq, sizeof seq))
        seq[0] = 0;
    if (!json_get(p, n, "cmd", cmd, sizeof cmd)) {
        reply_error(ws, "error", seq, 400, "expected a JSON object with a \"cmd\"");
        return;
    }
    if (strcmp(cmd, "login") == 0) {
        cmd_login(ws, p, n, seq);
    } else if (strcmp(cmd, "message") == 0) {
        cmd_message(ws, p, n, seq);
    } else if (strcmp(cmd, "heartbeat") == 0) {
        sg_strbuf *b = answer("heartbeat", seq);
        sg_strbuf_append(b, ",\"ok\":true", 10);
        if (ws->user)
            sg_strbuf_appendf(b, ",\"online\":%zu", count_get(ws->room->name));
        reply_ok(ws, b);
    } else {
        reply_error(ws, cmd, seq, 404, "unknown cmd (login, heartbeat, message)");
    }
}

/* ---------------- threads ---------------- */

void sgb_chat_thread_init(int epfd)
{
    ct = sg_xcalloc(1, sizeof *ct);
    chat_box *b = &ct->box;
    b->kind = SGB_EV_CHAT;
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&b->lock, NULL);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = b };
    if (b->efd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, b->efd, &ev) < 0) {
        perror("sgback: chat mailbox");
        exit(1);
    }
    pthread_mutex_lock(&reg.lock);
    if (reg.n == MAX_BOXES) {
        fprintf(stderr, "sgback: too many threads for the chat\n");
        exit(1);
    }
    reg.boxes[reg.n++] = b;
    pthread_mutex_unlock(&reg.lock);
}

/* After every connection of the thread has left. */
void sgb_chat_thread_done(void)
{
    chat_box *b = &ct->box;
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.n; i++) {
        if (reg.boxes[i] == b) {
            reg.boxes[i] = reg.boxes[--reg.n];
            break;
        }
    }
    pthread_mutex_unlock(&reg.lock);
    for (size_t i = 0; i < b->n; i++)
        msg_release(b->q[i]);
    free(b->q);
    close(b->efd);
    pthread_mutex_destroy(&b->lock);
    for (size_t i = 0; i < BUCKETS; i++) {
        while (ct->rooms[i]) {
            sgb_chat_room *r = ct->rooms[i];
            ct->rooms[i] = r->next;
            free(r);
        }
    }
    sg_strbuf_free(&ct->json);
    free(ct);
    ct = NULL;
}
