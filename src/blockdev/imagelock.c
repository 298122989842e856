/* Image locks shared with qemu (include/nbdcrypt/blockdev.h, docs/decisions.md).
 *
 * The layout is qemu's (block/file-posix.c, raw_apply_lock_bytes and
 * raw_check_lock_bytes): open file description locks on single bytes of the
 * image, all of them shared (read) locks.  Holding byte 100+i means "I use
 * permission i"; holding byte 200+i means "I do not let anybody else use
 * permission i".  To take a permission, nobody else may hold its 200 byte;
 * to unshare one, nobody else may hold its 100 byte.  Both sides apply their
 * bytes first and test second, so of two racing openers at worst both fail,
 * never both succeed.  Because qemu-img, qemu-io, qemu-nbd and QEMU itself
 * follow the same rules, they and nbdcrypt exclude each other.
 *
 * OFD locks belong to the open file description, not the process: they are
 * kept across fork (nbdkit going into the background) and released only when
 * the last descriptor of it closes.  The kernel reports no owner for them
 * (l_pid is -1), so the holder's pid is found by scanning /proc/PID/fdinfo,
 * whose "lock:" lines name the inode and the byte range.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blockdev/internal.h"

/* qemu 7.2, include/block/block-common.h: BLK_PERM_* bit numbers. */
enum {
  PERM_CONSISTENT_READ = 0,
  PERM_WRITE = 1,
  PERM_WRITE_UNCHANGED = 2,
  PERM_RESIZE = 3,
  PERM_COUNT = 4,
};
#define LOCK_PERM_BASE   100 /* RAW_LOCK_PERM_BASE */
#define LOCK_SHARED_BASE 200 /* RAW_LOCK_SHARED_BASE: the "unshared" bytes */

#define BIT(p) (1u << (p))

struct role_perms {
  unsigned perm;     /* permissions used */
  unsigned unshared; /* permissions refused to others */
  const char *what;  /* for messages */
};

/* CONSISTENT_READ is never unshared: a qemu reader opened with force-share
 * (qemu-img -U) asks to see the image anyway, and every default qemu reader
 * is already refused because it unshares WRITE, which both roles use. */
static const struct role_perms roles[] = {
    [BDEV_LOCK_WRITER] = {BIT(PERM_CONSISTENT_READ) | BIT(PERM_WRITE) | BIT(PERM_RESIZE),
                          BIT(PERM_WRITE) | BIT(PERM_RESIZE), "rewrite"},
    [BDEV_LOCK_SERVER] = {BIT(PERM_CONSISTENT_READ) | BIT(PERM_WRITE),
                          BIT(PERM_WRITE) | BIT(PERM_RESIZE), "serve"},
    [BDEV_LOCK_SERVER_RO] = {BIT(PERM_CONSISTENT_READ), BIT(PERM_WRITE) | BIT(PERM_RESIZE),
                             "serve"},
};

static const char *const perm_names[PERM_COUNT] = {"consistent read", "write", "write unchanged",
                                                   "resize"};

static int set_byte(int fd, short type, off_t byte)
{
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
  while (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    if (errno != EINTR)
      return -errno;
  }
  return 0;
}

/* 0 if nobody else holds byte; -EAGAIN and *pid (0 unknown) if someone does. */
static int test_byte(int fd, off_t byte, pid_t *pid)
{
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
  while (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
    if (errno != EINTR)
      return -errno;
  }
  if (fl.l_type == F_UNLCK)
    return 0;
  *pid = fl.l_pid > 0 ? fl.l_pid : 0;
  return -EAGAIN;
}

/* One "lock:" line of /proc/PID/fdinfo/FD, e.g.
 * "lock:\t1: OFDLCK ADVISORY  READ -1 fe:00:10952918 100 101". */
static bool lock_line_matches(const char *line, unsigned maj, unsigned min, uint64_t ino,
                              off_t byte)
{
  unsigned lmaj, lmin;
  uint64_t lino;
  char start_s[32], end_s[32];
  const char *p = strstr(line, "OFDLCK");
  if (!p)
    p = strstr(line, "POSIX");
  if (!p)
    return false;
  /* skip the class, the kind and the type to the pid; a line that does not
   * parse does not match */
  int n = sscanf(p, "%*s %*s %*s %*d %x:%x:%" SCNu64 " %31s %31s", // NOLINT(cert-err34-c)
                 &lmaj, &lmin, &lino, start_s, end_s);
  if (n != 5)
    return false;
  if (lmaj != maj || lmin != min || lino != ino)
    return false;
  uint64_t start = strtoull(start_s, NULL, 10);
  uint64_t end = strcmp(end_s, "EOF") == 0 ? UINT64_MAX : strtoull(end_s, NULL, 10);
  return (uint64_t)byte >= start && (uint64_t)byte <= end;
}

static bool fd_holds(int dirfd, const char *fdname, unsigned maj, unsigned min, uint64_t ino,
                     off_t byte)
{
  int fd = openat(dirfd, fdname, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  FILE *f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return false;
  }
  char line[256];
  bool found = false;
  while (!found && fgets(line, sizeof line, f))
    found = strncmp(line, "lock:", 5) == 0 && lock_line_matches(line, maj, min, ino, byte);
  fclose(f);
  return found;
}

/* The pid of a process (not this open file description) holding byte of the
 * file fd refers to, or 0.  Processes of other users are not readable unless
 * we are root: then 0. */
static pid_t find_holder(int own_fd, off_t byte)
{
  struct stat st;
  if (fstat(own_fd, &st) != 0)
    return 0;
  unsigned maj = major(st.st_dev), min = minor(st.st_dev);
  DIR *proc = opendir("/proc");
  if (!proc)
    return 0;
  pid_t self = getpid(), found = 0;
  struct dirent *de;
  while (!found && (de = readdir(proc))) {
    if (!isdigit((unsigned char)de->d_name[0]))
      continue;
    pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fdinfo", (int)pid);
    DIR *fds = opendir(path);
    if (!fds)
      continue;
    struct dirent *fe;
    while (!found && (fe = readdir(fds))) {
      if (!isdigit((unsigned char)fe->d_name[0]))
        continue;
      if (pid == self && strtol(fe->d_name, NULL, 10) == own_fd)
        continue;
      if (fd_holds(dirfd(fds), fe->d_name, maj, min, (uint64_t)st.st_ino, byte))
        found = pid;
    }
    closedir(fds);
  }
  closedir(proc);
  return found;
}

static int in_use(struct nbdc_error *err, const char *name, int fd, off_t byte, pid_t pid,
                  unsigned perm_bit, bool perm_byte)
{
  if (pid == 0)
    pid = find_holder(fd, byte);
  const char *how = perm_byte ? "uses" : "does not share";
  const char *perm = perm_names[perm_bit];
  if (pid == 0)
    return nbdc_error_set(err, EBUSY, "%s is in use by another process, which %s \"%s\"", name, how,
                          perm);
  char comm[64] = "";
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
  FILE *f = fopen(path, "re");
  if (f) {
    if (fgets(comm, sizeof comm, f))
      comm[strcspn(comm, "\n")] = '\0';
    fclose(f);
  }
  return nbdc_error_set(err, EBUSY, "%s is in use by another process (pid %d%s%s), which %s \"%s\"",
                        name, (int)pid, comm[0] ? ", " : "", comm, how, perm);
}

static void release_bytes(int fd)
{
  for (unsigned i = 0; i < PERM_COUNT; i++) {
    set_byte(fd, F_UNLCK, LOCK_PERM_BASE + i);
    set_byte(fd, F_UNLCK, LOCK_SHARED_BASE + i);
  }
}

int bdev_image_lock_fd(int fd, const char *name, enum bdev_lock_role role, struct nbdc_error *err)
{
  if ((unsigned)role >= sizeof roles / sizeof roles[0] || !roles[role].what)
    return nbdc_error_set(err, EINVAL, "bad image lock role %d for %s", (int)role, name);
  const struct role_perms *rp = &roles[role];
  int r = 0;
  off_t byte = 0;
  /* Apply, then test: as qemu's RAW_PL_PREPARE. */
  for (unsigned i = 0; i < PERM_COUNT && r == 0; i++) {
    if (rp->perm & BIT(i))
      r = set_byte(fd, F_RDLCK, byte = LOCK_PERM_BASE + i);
    if (r == 0 && (rp->unshared & BIT(i)))
      r = set_byte(fd, F_RDLCK, byte = LOCK_SHARED_BASE + i);
  }
  if (r < 0) {
    release_bytes(fd);
    return nbdc_error_set(err, -r, "cannot lock byte %d of %s (image lock to %s it): %s", (int)byte,
                          name, rp->what, strerror(-r));
  }
  for (unsigned i = 0; i < PERM_COUNT; i++) {
    pid_t pid = 0;
    bool perm_byte = false;
    if (rp->perm & BIT(i)) /* nobody may refuse us permission i */
      r = test_byte(fd, byte = LOCK_SHARED_BASE + i, &pid);
    if (r == 0 && (rp->unshared & BIT(i))) { /* nobody may be using it */
      perm_byte = true;
      r = test_byte(fd, byte = LOCK_PERM_BASE + i, &pid);
    }
    if (r == -EAGAIN) {
      r = in_use(err, name, fd, byte, pid, i, perm_byte);
      release_bytes(fd);
      return r;
    }
    if (r < 0) {
      release_bytes(fd);
      return nbdc_error_set(err, -r, "cannot test the image locks of %s: %s", name, strerror(-r));
    }
  }
  return 0;
}

struct bdev_image_lock {
  int fd;
};

int bdev_image_lock_path(const char *path, enum bdev_lock_role role, struct bdev_image_lock **out,
                         struct nbdc_error *err)
{
  *out = NULL;
  struct bdev_image_lock *lock = malloc(sizeof *lock);
  if (!lock)
    return nbdc_error_set(err, ENOMEM, "out of memory locking %s", path);
  /* Read locks need only read access. */
  lock->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (lock->fd < 0) {
    int e = errno;
    free(lock);
    return nbdc_error_set(err, e, "cannot open %s to lock it: %s", path, strerror(e));
  }
  struct stat st;
  int r = 0;
  if (fstat(lock->fd, &st) != 0)
    r = nbdc_error_set(err, errno, "cannot stat %s: %s", path, strerror(errno));
  else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    r = nbdc_error_set(err, EINVAL, "%s is not a regular file or a block device", path);
  if (r == 0)
    r = bdev_image_lock_fd(lock->fd, path, role, err);
  if (r < 0) {
    close(lock->fd);
    free(lock);
    return r;
  }
  *out = lock;
  return 0;
}

void bdev_image_unlock(struct bdev_image_lock *lock)
{
  if (!lock)
    return;
  close(lock->fd); /* releases its OFD locks */
  free(lock);
}

int bdev_image_lock(struct bdev *dev, enum bdev_lock_role role, struct nbdc_error *err)
{
  if (!dev)
    return nbdc_error_set(err, EINVAL, "image lock of a missing block device");
  int fd = bdev_fd(dev);
  if (fd < 0)
    return 0; /* NBD: the server owns locking; memory and callers' ops: nothing to lock */
  return bdev_image_lock_fd(fd, bdev_name(dev), role, err);
}
