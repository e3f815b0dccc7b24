/* A full disk for some files: preloaded (LD_PRELOAD) into `netc` by
 * tests/faults.rs. Every write or fsync to a file whose name contains
 * $NETC_ENOSPC fails with ENOSPC, as on a full disk; other files (the
 * standard streams, lock files `*.lock`) are written normally. A rename
 * onto a file named exactly $NETC_FAIL_RENAME fails (EIO), as if the run
 * were killed just before it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int full(int fd) {
    const char *pat = getenv("NETC_ENOSPC");
    if (pat == NULL || *pat == 0 || fd < 3) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len >= 5 && strcmp(base + len - 5, ".lock") == 0) return 0;
    return strstr(base, pat) != NULL;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)
#define FULL(fd, fail) if (full(fd)) { errno = ENOSPC; return fail; }

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write); FULL(fd, -1); return real(fd, buf, n);
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev); FULL(fd, -1); return real(fd, iov, cnt);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite); FULL(fd, -1); return real(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    REAL(pwrite64); FULL(fd, -1); return real(fd, buf, n, off);
}
int fsync(int fd) {
    REAL(fsync); FULL(fd, -1); return real(fd);
}
int fdatasync(int fd) {
    REAL(fdatasync); FULL(fd, -1); return real(fd);
}
int rename(const char *from, const char *to) {
    REAL(rename);
    const char *pat = getenv("NETC_FAIL_RENAME");
    const char *base = strrchr(to, '/');
    base = base ? base + 1 : to;
    if (pat != NULL && *pat != 0 && strcmp(base, pat) == 0) { errno = EIO; return -1; }
    return real(from, to);
}
