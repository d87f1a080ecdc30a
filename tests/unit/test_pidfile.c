/* The locked pid file (server/pidfile.h) and the inherited-sockets list of
 * a binary upgrade (sg_listeners_parse_fds). Criterion runs each test in
 * its own process, so the module's lock starts released. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "server/listeners.h"
#include "server/pidfile.h"

static char dir[64], path[96];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sg-pidfile-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sg.pid", dir);
}

static void cleanup(void)
{
    unlink(path);
    char old[128];
    snprintf(old, sizeof(old), "%s.oldbin", path);
    unlink(old);
    rmdir(dir);
}

static void write_file(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(pidfile, missing_file_is_created_once_written, .init = mkdir_tmp, .fini = cleanup)
{
    char err[256];
    pid_t holder = -1;
    cr_assert(sg_pidfile_lock(path, &holder, err, sizeof(err)));
    cr_assert_eq(access(path, F_OK), -1);          /* not before listening */
    cr_assert(sg_pidfile_write(path, &holder, err, sizeof(err)), "%s", err);
    cr_assert_eq(sg_pidfile_read(path), getpid());
    sg_pidfile_remove(path);
    cr_assert_eq(access(path, F_OK), -1);
}

Test(pidfile, a_held_lock_refuses_and_names_the_holder, .init = mkdir_tmp, .fini = cleanup)
{
    write_file(path, "4242\n");
    int fd = open(path, O_RDWR);                    /* another open file: another holder */
    cr_assert(fd >= 0);
    cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
    char err[256];
    pid_t holder = 0;
    cr_assert_not(sg_pidfile_lock(path, &holder, err, sizeof(err)));
    cr_assert_eq(holder, 4242);
    cr_assert(strstr(err, "pid 4242"), "%s", err);
    cr_assert_not(sg_pidfile_write(path, &holder, err, sizeof(err)));
    cr_assert_eq(sg_pidfile_read(path), 4242);      /* left as it was */
    close(fd);
}

Test(pidfile, a_stale_file_is_taken_over, .init = mkdir_tmp, .fini = cleanup)
{
    write_file(path, "999999\nmore text than a pid\n");
    char err[256];
    pid_t holder = -1;
    cr_assert(sg_pidfile_lock(path, &holder, err, sizeof(err)), "%s", err);
    cr_assert(sg_pidfile_write(path, &holder, err, sizeof(err)), "%s", err);
    cr_assert_eq(sg_pidfile_read(path), getpid());
    FILE *f = fopen(path, "r");
    char buf[64] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char want[32];
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    cr_assert_str_eq(buf, want);                    /* truncated, not overwritten in place */
}

Test(pidfile, the_lock_follows_a_rename, .init = mkdir_tmp, .fini = cleanup)
{
    char err[256], old[128];
    pid_t holder;
    snprintf(old, sizeof(old), "%s.oldbin", path);
    cr_assert(sg_pidfile_write(path, &holder, err, sizeof(err)));
    cr_assert(sg_pidfile_rename(path, old));
    int fd = open(old, O_RDWR);
    cr_assert(fd >= 0);
    cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), -1);  /* still held, under the new name */
    close(fd);
    sg_pidfile_remove(old);
    cr_assert_eq(access(old, F_OK), -1);
}

Test(listen_fds, nginx_format)
{
    int fds[8];
    cr_assert_eq(sg_listeners_parse_fds("3;4;5;", fds, 8), 3);
    cr_assert(fds[0] == 3 && fds[1] == 4 && fds[2] == 5);
    cr_assert_eq(sg_listeners_parse_fds("7", fds, 8), 1);
    cr_assert_eq(fds[0], 7);
    cr_assert_eq(sg_listeners_parse_fds("6:8", fds, 8), 2);
    cr_assert_eq(sg_listeners_parse_fds("", fds, 8), 0);
    cr_assert_eq(sg_listeners_parse_fds(";;", fds, 8), 0);
    cr_assert_eq(sg_listeners_parse_fds("1;2;3;4", fds, 2), 2);   /* bounded */
}

Test(listen_fds, anything_else_is_refused)
{
    int fds[8];
    cr_assert_eq(sg_listeners_parse_fds("3;x;", fds, 8), 0);
    cr_assert_eq(sg_listeners_parse_fds("-1", fds, 8), 0);
    cr_assert_eq(sg_listeners_parse_fds("3 4", fds, 8), 0);
    cr_assert_eq(sg_listeners_parse_fds("99999999999999999999", fds, 8), 0);
}
