/* The per-thread event loop shared by the HTTP/1.1 (server.c) and HTTP/2
 * (h2.c) workers: edge-triggered epoll over the listeners and the shared
 * stop eventfd, plus a timer heap. What a connection is and does stays
 * with the worker, through sgb_loop_ops. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sgback.h"

#define MAX_EVENTS 256

bool sgb_loop_add(sgb_loop *lp, int fd, void *ptr, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = ptr };
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return true;
    perror("sgback: epoll_ctl");
    return false;
}

void sgb_loop_open(sgb_loop *lp, const sgb_worker_args *a)
{
    static int stop_tag = SGB_EV_STOP;
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lp->epfd < 0) {
        perror("sgback: epoll_create1");
        exit(1);
    }
    /* The stop eventfd is level-triggered and never read: every worker sees it. */
    if (!sgb_loop_add(lp, a->stop_fd, &stop_tag, EPOLLIN))
        exit(1);
    for (size_t i = 0; i < a->nls; i++)
        if (!sgb_loop_add(lp, a->ls[i].fd, &a->ls[i], EPOLLIN | EPOLLET))
            exit(1);
}

static void listener_accept(sgb_loop *lp, sgb_listener *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            lp->ops->accept(lp, l, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            perror("sgback: accept");   /* e.g. EMFILE: retried on the next connection */
        return;
    }
}

static void run_timers(sgb_loop *lp)
{
    uint64_t now = sgb_now_ms();
    sgb_timer *t;
    while ((t = sgb_timer_due(&lp->timers, now)) != NULL) {
        sgb_timer_disarm(&lp->timers, t);
        lp->ops->timer(lp, t);
    }
}

void sgb_loop_run(sgb_loop *lp)
{
    struct epoll_event evs[MAX_EVENTS];
    while (!lp->stop) {
        int n = epoll_wait(lp->epfd, evs, MAX_EVENTS, sgb_timer_wait_ms(&lp->timers, sgb_now_ms()));
        if (n < 0 && errno != EINTR) {
            perror("sgback: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            int kind = *(int *)evs[i].data.ptr;
            if (kind == SGB_EV_STOP)
                lp->stop = true;
            else if (kind == SGB_EV_LISTENER)
                listener_accept(lp, evs[i].data.ptr);
            else
                lp->ops->event(lp, &evs[i]);
        }
        run_timers(lp);
        if (lp->ops->tick)
            lp->ops->tick(lp);
    }
}

void sgb_loop_close(sgb_loop *lp, const sgb_worker_args *a)
{
    for (size_t i = 0; i < a->nls; i++)
        close(a->ls[i].fd);
    close(lp->epfd);
    sgb_heap_free(&lp->timers);
}
