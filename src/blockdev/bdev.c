/* The block device handle and its generic wrappers (include/nbdcrypt/blockdev.h).
 *
 * A bdev is a vtable plus a name.  The wrappers check what every backend
 * would otherwise check again (read-only, missing operations, offset
 * overflow) and make sure a failure always leaves a message naming the
 * device, even when a caller-supplied operation did not write one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/internal.h"

__attribute__((format(printf, 3, 4))) static int bdev_failed(struct nbdc_error *err, int r,
                                                             const char *fmt, ...);
static int bdev_check(const struct bdev *dev, size_t count, uint64_t offset, const char *what,
                      struct nbdc_error *err);

struct bdev {
  struct bdev_ops ops;
  void *opaque;
  char *name;
  bool readonly;
  int fd;              /* file backends: for the image locks; else -1 */
  unsigned lock_depth; /* nested bdev_lock holds */
  bool lock_exclusive; /* the held lock is exclusive */
  size_t max_request;  /* 0: no limit */
};

bool bdev_is_uri(const char *target)
{
  static const char *const schemes[] = {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"};
  if (!target)
    return false;
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (strncmp(target, schemes[i], strlen(schemes[i])) == 0)
      return true;
  return false;
}

int bdev_open(const char *target, unsigned flags, uint64_t create_size, struct bdev **out,
              struct nbdc_error *err)
{
  *out = NULL;
  if (!target || !*target)
    return nbdc_error_set(err, EINVAL, "no device given (expected a file path or an NBD URI)");
  if (flags & ~(unsigned)(BDEV_RDONLY | BDEV_CREATE | BDEV_LOCK_WRITE))
    return nbdc_error_set(err, EINVAL, "bad bdev_open flags 0x%x for %s", flags, target);
  /* An NBD export already exists: BDEV_CREATE has nothing to do there. */
  if (bdev_is_uri(target))
    return bdev_open_nbd(target, flags, out, err);
  return bdev_open_file(target, flags, create_size, out, err);
}

int bdev_from_ops(const struct bdev_ops *ops, void *opaque, const char *name, bool readonly,
                  struct bdev **out, struct nbdc_error *err)
{
  *out = NULL;
  if (!ops || !ops->pread || !ops->get_size)
    return nbdc_error_set(err, EINVAL, "block device %s lacks pread or get_size",
                          name ? name : "(unnamed)");
  struct bdev *dev = calloc(1, sizeof *dev);
  if (!dev)
    return nbdc_error_set(err, ENOMEM, "out of memory for block device %s", name ? name : "");
  dev->name = strdup(name ? name : "(unnamed)");
  if (!dev->name) {
    free(dev);
    return nbdc_error_set(err, ENOMEM, "out of memory for block device %s", name ? name : "");
  }
  dev->ops = *ops;
  dev->opaque = opaque;
  dev->readonly = readonly || !ops->pwrite;
  dev->fd = -1;
  *out = dev;
  return 0;
}

void bdev_close(struct bdev *dev)
{
  if (!dev)
    return;
  if (dev->ops.close)
    dev->ops.close(dev->opaque);
  free(dev->name);
  free(dev);
}

void bdev_set_max_request(struct bdev *dev, size_t max_request)
{
  if (dev)
    dev->max_request = max_request;
}

size_t bdev_max_request(const struct bdev *dev)
{
  return dev ? dev->max_request : 0;
}

bool bdev_can_resize(const struct bdev *dev)
{
  return dev && dev->ops.resize && !dev->readonly;
}

int bdev_resize(struct bdev *dev, uint64_t size, struct nbdc_error *err)
{
  if (!dev)
    return nbdc_error_set(err, EINVAL, "resize of a missing block device");
  if (!bdev_can_resize(dev))
    return nbdc_error_set(err, ENOTSUP, "%s cannot grow or shrink", dev->name);
  nbdc_error_clear(err);
  int r = dev->ops.resize(dev->opaque, size, err);
  if (r < 0)
    return bdev_failed(err, r, "resize of %s to %" PRIu64 " bytes", dev->name, size);
  return 0;
}

bool bdev_has_reader(const struct bdev *dev)
{
  return dev && dev->ops.open_reader;
}

int bdev_open_reader(struct bdev *dev, struct bdev **out, struct nbdc_error *err)
{
  *out = NULL;
  if (!dev)
    return nbdc_error_set(err, EINVAL, "second reader of a missing block device");
  if (!dev->ops.open_reader)
    return nbdc_error_set(err, ENOTSUP, "%s has no second reader", dev->name);
  nbdc_error_clear(err);
  int r = dev->ops.open_reader(dev->opaque, out, err);
  if (r < 0)
    return bdev_failed(err, r, "second reader of %s", dev->name);
  if (*out && !(*out)->max_request)
    (*out)->max_request = dev->max_request;
  return 0;
}

void bdev_readahead(struct bdev *dev, uint64_t offset, uint64_t len)
{
  if (dev && dev->ops.readahead)
    dev->ops.readahead(dev->opaque, offset, len);
}

bool bdev_can_zero(const struct bdev *dev)
{
  return dev && dev->ops.zero && !dev->readonly;
}

int bdev_zero(struct bdev *dev, uint64_t offset, uint64_t len, struct nbdc_error *err)
{
  int r = bdev_check(dev, (size_t)0, offset, "zeroing", err);
  if (r < 0)
    return r;
  if (offset > UINT64_MAX - len)
    return nbdc_error_set(err, EINVAL, "zeroing of %" PRIu64 " bytes at %" PRIu64 " overflows", len,
                          offset);
  if (!bdev_can_zero(dev))
    return nbdc_error_set(err, ENOTSUP, "%s cannot make a range read as zeros", dev->name);
  if (len == 0)
    return 0;
  nbdc_error_clear(err);
  r = dev->ops.zero(dev->opaque, offset, len, err);
  if (r < 0)
    return bdev_failed(err, r, "zeroing of %" PRIu64 " bytes at offset %" PRIu64 " of %s", len,
                       offset, dev->name);
  return 0;
}

int bdev_fd(const struct bdev *dev)
{
  return dev ? dev->fd : -1;
}

void bdev_set_fd(struct bdev *dev, int fd)
{
  dev->fd = fd;
}

bool bdev_readonly(const struct bdev *dev)
{
  return !dev || dev->readonly;
}

const char *bdev_name(const struct bdev *dev)
{
  return dev ? dev->name : "(no device)";
}

/* A failed operation that left err empty still gets a sentence. */
__attribute__((format(printf, 3, 4))) static int bdev_failed(struct nbdc_error *err, int r,
                                                             const char *fmt, ...)
{
  if (r >= 0)
    r = -EIO;
  if (err && (err->code == 0 || err->msg[0] == '\0')) {
    char what[NBDC_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return nbdc_error_set(err, -r, "%.*s failed: %s", NBDC_ERROR_MAX / 2, what, strerror(-r));
  }
  if (err)
    err->code = -r;
  return r;
}

static int bdev_check(const struct bdev *dev, size_t count, uint64_t offset, const char *what,
                      struct nbdc_error *err)
{
  if (!dev)
    return nbdc_error_set(err, EINVAL, "%s on a missing block device", what);
  if (offset > UINT64_MAX - count)
    return nbdc_error_set(err, EINVAL, "%s of %zu bytes at offset %" PRIu64 " on %s overflows",
                          what, count, offset, dev->name);
  return 0;
}

int bdev_error_beyond_end(struct nbdc_error *err, const char *name, uint64_t offset, uint64_t size)
{
  return nbdc_error_set(err, EIO,
                        "read beyond end of device %s (offset %" PRIu64 ", size %" PRIu64 ")", name,
                        offset, size);
}

int bdev_pread(struct bdev *dev, void *buf, size_t count, uint64_t offset, struct nbdc_error *err)
{
  int r = bdev_check(dev, count, offset, "read", err);
  if (r < 0 || count == 0)
    return r;
  nbdc_error_clear(err);
  size_t max = dev->max_request ? dev->max_request : count;
  for (size_t done = 0; done < count;) {
    size_t n = count - done < max ? count - done : max;
    r = dev->ops.pread(dev->opaque, (uint8_t *)buf + done, n, offset + done, err);
    if (r < 0)
      return bdev_failed(err, r, "read of %zu bytes at offset %" PRIu64 " from %s", n,
                         offset + done, dev->name);
    done += n;
  }
  return 0;
}

int bdev_pwrite(struct bdev *dev, const void *buf, size_t count, uint64_t offset,
                struct nbdc_error *err)
{
  int r = bdev_check(dev, count, offset, "write", err);
  if (r < 0)
    return r;
  if (dev->readonly || !dev->ops.pwrite)
    return nbdc_error_set(err, EROFS, "%s is read-only: cannot write %zu bytes at offset %" PRIu64,
                          dev->name, count, offset);
  if (count == 0)
    return 0;
  nbdc_error_clear(err);
  size_t max = dev->max_request ? dev->max_request : count;
  for (size_t done = 0; done < count;) {
    size_t n = count - done < max ? count - done : max;
    r = dev->ops.pwrite(dev->opaque, (const uint8_t *)buf + done, n, offset + done, err);
    if (r < 0)
      return bdev_failed(err, r, "write of %zu bytes at offset %" PRIu64 " to %s", n, offset + done,
                         dev->name);
    done += n;
  }
  return 0;
}

int bdev_flush(struct bdev *dev, struct nbdc_error *err)
{
  if (!dev)
    return nbdc_error_set(err, EINVAL, "flush of a missing block device");
  if (!dev->ops.flush || dev->readonly)
    return 0;
  nbdc_error_clear(err);
  int r = dev->ops.flush(dev->opaque, err);
  if (r < 0)
    return bdev_failed(err, r, "flush of %s", dev->name);
  return 0;
}

int bdev_get_size(struct bdev *dev, uint64_t *size, struct nbdc_error *err)
{
  *size = 0;
  if (!dev)
    return nbdc_error_set(err, EINVAL, "size of a missing block device");
  nbdc_error_clear(err);
  int r = dev->ops.get_size(dev->opaque, size, err);
  if (r < 0)
    return bdev_failed(err, r, "size query of %s", dev->name);
  return 0;
}

int bdev_lock(struct bdev *dev, bool exclusive, struct nbdc_error *err)
{
  if (!dev)
    return nbdc_error_set(err, EINVAL, "lock of a missing block device");
  if (!dev->ops.lock)
    return nbdc_error_set(err, ENOTSUP, "%s does not support locking", dev->name);
  if (dev->lock_depth > 0 && (dev->lock_exclusive || !exclusive)) {
    dev->lock_depth++;
    return 0;
  }
  nbdc_error_clear(err);
  int r = dev->ops.lock(dev->opaque, exclusive, err);
  if (r < 0)
    return bdev_failed(err, r, "lock of %s", dev->name);
  dev->lock_exclusive = exclusive;
  dev->lock_depth++;
  return 0;
}

int bdev_unlock(struct bdev *dev, struct nbdc_error *err)
{
  if (!dev)
    return nbdc_error_set(err, EINVAL, "unlock of a missing block device");
  if (!dev->ops.unlock)
    return nbdc_error_set(err, ENOTSUP, "%s does not support locking", dev->name);
  if (dev->lock_depth > 1) {
    dev->lock_depth--;
    return 0;
  }
  nbdc_error_clear(err);
  int r = dev->ops.unlock(dev->opaque, err);
  dev->lock_depth = 0;
  dev->lock_exclusive = false;
  if (r < 0)
    return bdev_failed(err, r, "unlock of %s", dev->name);
  return 0;
}
