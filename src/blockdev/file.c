/* Regular files and block devices (include/nbdcrypt/blockdev.h).
 *
 * pread/pwrite loop until the whole request is done (EINTR, short I/O);
 * end of file inside a read is an error, never a silent short buffer.
 * The metadata lock is flock(2) on the open file description, so it excludes
 * another process and also another open of the same file in this process;
 * the image locks of BDEV_LOCK_WRITE (qemu's layout) are in imagelock.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/internal.h"

#define FILE_LOCK_TRIES    20 /* 20 * 100 ms: about 2 s */
#define FILE_LOCK_RETRY_NS 100000000L

struct file_dev {
  int fd;
  bool is_block;
  char *path;
};

static int file_size(struct file_dev *f, uint64_t *size, struct nbdc_error *err)
{
  struct stat st;
  if (fstat(f->fd, &st) != 0)
    return nbdc_error_set(err, errno, "cannot stat %s: %s", f->path, strerror(errno));
  if (f->is_block) {
    uint64_t bytes = 0;
    if (ioctl(f->fd, BLKGETSIZE64, &bytes) != 0)
      return nbdc_error_set(err, errno, "cannot get the size of block device %s: %s", f->path,
                            strerror(errno));
    *size = bytes;
    return 0;
  }
  *size = (uint64_t)st.st_size;
  return 0;
}

static int file_get_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  return file_size(opaque, size, err);
}

static int file_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                      struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  uint8_t *p = buf;
  const uint64_t start = offset;
  while (count > 0) {
    if (offset > INT64_MAX)
      return nbdc_error_set(err, EINVAL, "read offset %" PRIu64 " on %s is out of range", offset,
                            f->path);
    ssize_t n = pread(f->fd, p, count, (off_t)offset);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return nbdc_error_set(err, errno, "read of %zu bytes at offset %" PRIu64 " from %s: %s",
                            count, offset, f->path, strerror(errno));
    }
    if (n == 0) {
      uint64_t size = 0;
      struct nbdc_error ignored = {0};
      file_size(f, &size, &ignored);
      return bdev_error_beyond_end(err, f->path, start, size);
    }
    p += n;
    count -= (size_t)n;
    offset += (uint64_t)n;
  }
  return 0;
}

static int file_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                       struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  const uint8_t *p = buf;
  while (count > 0) {
    if (offset > INT64_MAX)
      return nbdc_error_set(err, EINVAL, "write offset %" PRIu64 " on %s is out of range", offset,
                            f->path);
    ssize_t n = pwrite(f->fd, p, count, (off_t)offset);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return nbdc_error_set(err, errno, "write of %zu bytes at offset %" PRIu64 " to %s: %s", count,
                            offset, f->path, strerror(errno));
    }
    if (n == 0)
      return nbdc_error_set(err, EIO,
                            "write of %zu bytes at offset %" PRIu64 " to %s made no progress",
                            count, offset, f->path);
    p += n;
    count -= (size_t)n;
    offset += (uint64_t)n;
  }
  return 0;
}

static int file_flush(void *opaque, struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  if (fdatasync(f->fd) != 0)
    return nbdc_error_set(err, errno, "cannot flush %s: %s", f->path, strerror(errno));
  return 0;
}

/* Non-blocking attempts with a bounded wait: a header write by another
 * process takes milliseconds, a stuck holder must not hang us. */
static int file_lock(void *opaque, bool exclusive, struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  int op = (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB;
  for (int attempt = 0;; attempt++) {
    if (flock(f->fd, op) == 0)
      return 0;
    if (errno == EINTR)
      continue;
    if (errno != EWOULDBLOCK)
      return nbdc_error_set(err, errno, "cannot lock %s: %s", f->path, strerror(errno));
    if (attempt + 1 >= FILE_LOCK_TRIES)
      return nbdc_error_set(err, EBUSY, "%s is locked by another process", f->path);
    struct timespec wait = {0, FILE_LOCK_RETRY_NS};
    nanosleep(&wait, NULL);
  }
}

static int file_unlock(void *opaque, struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  while (flock(f->fd, LOCK_UN) != 0) {
    if (errno != EINTR)
      return nbdc_error_set(err, errno, "cannot unlock %s: %s", f->path, strerror(errno));
  }
  return 0;
}

static int file_resize(void *opaque, uint64_t size, struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  if (size > INT64_MAX)
    return nbdc_error_set(err, EINVAL, "cannot resize %s to %" PRIu64 " bytes: too large", f->path,
                          size);
  if (ftruncate(f->fd, (off_t)size) != 0 || fsync(f->fd) != 0)
    return nbdc_error_set(err, errno, "cannot resize %s to %" PRIu64 " bytes: %s", f->path, size,
                          strerror(errno));
  return 0;
}

/* Another open file description: its own file position-free reads, no lock. */
static int file_open_reader(void *opaque, struct bdev **out, struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  return bdev_open_file(f->path, BDEV_RDONLY, 0, out, err);
}

/* Cold data: ask for the whole range at once (interleaved reads of several
 * threads would defeat the kernel's sequential readahead). */
static void file_readahead(void *opaque, uint64_t offset, uint64_t len)
{
  struct file_dev *f = opaque;
  if (offset <= INT64_MAX && len <= INT64_MAX)
    posix_fadvise(f->fd, (off_t)offset, (off_t)len, POSIX_FADV_WILLNEED);
}

/* A hole (regular files; the size stays). */
static int file_zero(void *opaque, uint64_t offset, uint64_t len, struct nbdc_error *err)
{
  struct file_dev *f = opaque;
  if (offset > INT64_MAX || len > INT64_MAX - offset)
    return nbdc_error_set(err, EINVAL, "hole at %" PRIu64 " in %s is out of range", offset,
                          f->path);
  if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) != 0)
    return nbdc_error_set(err, errno,
                          "cannot make a hole of %" PRIu64 " bytes at %" PRIu64 " in %s: %s", len,
                          offset, f->path, strerror(errno));
  return 0;
}

static void file_close(void *opaque)
{
  struct file_dev *f = opaque;
  if (!f)
    return;
  if (f->fd >= 0)
    close(f->fd);
  free(f->path);
  free(f);
}

static const struct bdev_ops file_ops_rw = {
    .pread = file_pread,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .get_size = file_get_size,
    .lock = file_lock,
    .unlock = file_unlock,
    .close = file_close,
    .resize = file_resize, /* not for block devices: see bdev_open_file */
    .open_reader = file_open_reader,
    .readahead = file_readahead,
    .zero = file_zero, /* not for block devices */
};

static const struct bdev_ops file_ops_ro = {
    .pread = file_pread,
    .get_size = file_get_size,
    .lock = file_lock,
    .unlock = file_unlock,
    .close = file_close,
    .open_reader = file_open_reader,
    .readahead = file_readahead,
};

/* Open, creating the file (sparse, mode 0600) if asked to and missing.
 * *created tells the caller to unlink on a later failure. */
static int file_open_fd(const char *path, unsigned flags, uint64_t create_size, bool *created,
                        struct nbdc_error *err)
{
  *created = false;
  if (flags & BDEV_CREATE) {
    if (create_size > INT64_MAX)
      return nbdc_error_set(err, EINVAL, "cannot create %s with size %" PRIu64 ": too large", path,
                            create_size);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      *created = true;
      if (ftruncate(fd, (off_t)create_size) != 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        *created = false;
        return nbdc_error_set(err, saved, "cannot size new file %s to %" PRIu64 " bytes: %s", path,
                              create_size, strerror(saved));
      }
      return fd;
    }
    if (errno != EEXIST)
      return nbdc_error_set(err, errno, "cannot create %s: %s", path, strerror(errno));
  }
  int fd = open(path, ((flags & BDEV_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0)
    return nbdc_error_set(err, errno, "cannot open %s%s: %s", path,
                          (flags & BDEV_RDONLY) ? " read-only" : "", strerror(errno));
  return fd;
}

int bdev_open_file(const char *path, unsigned flags, uint64_t create_size, struct bdev **out,
                   struct nbdc_error *err)
{
  *out = NULL;
  if ((flags & BDEV_CREATE) && (flags & BDEV_RDONLY))
    return nbdc_error_set(err, EINVAL, "cannot create %s read-only", path);
  struct file_dev *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return nbdc_error_set(err, ENOMEM, "out of memory opening %s", path);
  }
  bool created = false;
  f->fd = file_open_fd(path, flags, create_size, &created, err);
  if (f->fd < 0) {
    int r = f->fd;
    f->fd = -1;
    file_close(f);
    return r;
  }
  struct stat st;
  int r = 0;
  if (fstat(f->fd, &st) != 0)
    r = nbdc_error_set(err, errno, "cannot stat %s: %s", path, strerror(errno));
  else if (S_ISBLK(st.st_mode))
    f->is_block = true;
  else if (!S_ISREG(st.st_mode))
    r = nbdc_error_set(err, EINVAL, "%s is not a regular file or a block device", path);
  if (r == 0) {
    /* A block device has a fixed size. */
    struct bdev_ops ops = (flags & BDEV_RDONLY) ? file_ops_ro : file_ops_rw;
    if (f->is_block) {
      ops.resize = NULL;
      ops.zero = NULL;
    }
    r = bdev_from_ops(&ops, f, path, (flags & BDEV_RDONLY) != 0, out, err);
  }
  if (r < 0) {
    if (created)
      unlink(path);
    file_close(f);
    return r;
  }
  bdev_set_fd(*out, f->fd);
  /* Before the caller reads anything: what it reads stays what it writes. */
  if (flags & BDEV_LOCK_WRITE)
    r = bdev_image_lock(*out, BDEV_LOCK_WRITER, err);
  if (r < 0) {
    bdev_close(*out);
    *out = NULL;
    if (created)
      unlink(path);
  }
  return r;
}
