/* The locked pid file (see pidfile.h). */
#include "server/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int lock_fd = -1;

pid_t sg_pidfile_read(const char *path)
{
    FILE *f = fopen(path, "re");
    long pid = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0) pid = 0;
    fclose(f);
    return (pid_t)pid;
}

/* Opens path (creating it when `create`) and takes its lock without
 * waiting: 1 taken, 0 held by another process, -1 error (errno). */
static int try_lock(const char *path, bool create, int *fd_out)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) return 0;
        errno = e;
        return -1;
    }
    /* The file may have been replaced (renamed away by an upgrade, removed
     * by an exiting process) between open and flock: the lock must be on
     * what the path names now. */
    struct stat a, b;
    if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        close(fd);
        errno = EAGAIN;
        return -2;
    }
    *fd_out = fd;
    return 1;
}

static bool lock_path(const char *path, bool create, pid_t *holder, char *err, size_t errlen)
{
    *holder = 0;
    for (int tries = 0; tries < 10; tries++) {
        int fd = -1;
        int r = try_lock(path, create, &fd);
        if (r == -2) continue;
        if (r == 1) {
            if (lock_fd >= 0 && lock_fd != fd) close(lock_fd);
            lock_fd = fd;
            return true;
        }
        if (r == 0) {
            *holder = sg_pidfile_read(path);
            snprintf(err, errlen, "another streamgate (pid %ld) is running with the pid file \"%s\"",
                     (long)*holder, path);
            return false;
        }
        if (errno == ENOENT && !create) return true;   /* nothing running: written once listening */
        snprintf(err, errlen, "open() \"%s\" failed (%s)", path, strerror(errno));
        return false;
    }
    snprintf(err, errlen, "could not lock \"%s\": it keeps being replaced", path);
    return false;
}

bool sg_pidfile_lock(const char *path, pid_t *holder, char *err, size_t errlen)
{
    return lock_path(path, false, holder, err, errlen);
}

bool sg_pidfile_write(const char *path, pid_t *holder, char *err, size_t errlen)
{
    *holder = 0;
    if (lock_fd < 0 && !lock_path(path, true, holder, err, errlen)) return false;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(lock_fd, 0) < 0 || pwrite(lock_fd, buf, (size_t)n, 0) != n) {
        snprintf(err, errlen, "write() to \"%s\" failed (%s)", path, strerror(errno));
        return false;
    }
    return true;
}

bool sg_pidfile_rename(const char *from, const char *to)
{
    return rename(from, to) == 0;
}

void sg_pidfile_remove(const char *path)
{
    if (lock_fd < 0) return;
    struct stat a, b;
    if (fstat(lock_fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
        unlink(path);
    close(lock_fd);
    lock_fd = -1;
}
