/* nbdcrypt block backends (src/blockdev): one small vtable so the LUKS2 and
 * re-encryption code run unchanged over a regular file, an NBD URI (libnbd),
 * or the filter's next plugin.  A bdev is used by one thread at a time. */
#ifndef NBDCRYPT_BLOCKDEV_H
#define NBDCRYPT_BLOCKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/error.h"

struct bdev;

/* Operations of a backend.  All return 0 or -errno and fill err. */
struct bdev_ops {
  int (*pread)(void *opaque, void *buf, size_t count, uint64_t offset, struct nbdc_error *err);
  int (*pwrite)(void *opaque, const void *buf, size_t count, uint64_t offset,
                struct nbdc_error *err);              /* NULL if read-only */
  int (*flush)(void *opaque, struct nbdc_error *err); /* NULL: nothing to flush */
  int (*get_size)(void *opaque, uint64_t *size, struct nbdc_error *err);
  /* Advisory exclusive lock held while a header is written (flock on files).
   * NULL: no locking available. */
  int (*lock)(void *opaque, bool exclusive, struct nbdc_error *err);
  int (*unlock)(void *opaque, struct nbdc_error *err);
  void (*close)(void *opaque); /* may be NULL */
};

enum {
  BDEV_RDONLY = 1 << 0, /* open read-only */
  BDEV_CREATE = 1 << 1, /* file: create it (size create_size) if it does not exist */
};

/* True when target is an NBD URI (nbd://, nbds://, nbd+unix://, nbds+unix://). */
bool bdev_is_uri(const char *target);

/* Open a file path or NBD URI.  With BDEV_CREATE and a missing file, the file
 * is created sparse with create_size bytes (mode 0600).  *out owned by caller. */
int bdev_open(const char *target, unsigned flags, uint64_t create_size, struct bdev **out,
              struct nbdc_error *err);

/* Wrap caller-supplied operations (e.g. the filter's next plugin).  name is
 * copied and used in error messages; opaque is passed to every op. */
int bdev_from_ops(const struct bdev_ops *ops, void *opaque, const char *name, bool readonly,
                  struct bdev **out, struct nbdc_error *err);

/* Close (calls ops->close) and free.  NULL is ignored. */
void bdev_close(struct bdev *dev);

/* Full-length I/O: a short read past the end of the device is an error
 * (-EIO, "... read beyond end of device ..."). */
int bdev_pread(struct bdev *dev, void *buf, size_t count, uint64_t offset, struct nbdc_error *err);
int bdev_pwrite(struct bdev *dev, const void *buf, size_t count, uint64_t offset,
                struct nbdc_error *err);
int bdev_flush(struct bdev *dev, struct nbdc_error *err);
int bdev_get_size(struct bdev *dev, uint64_t *size, struct nbdc_error *err);
int bdev_lock(struct bdev *dev, bool exclusive, struct nbdc_error *err);
int bdev_unlock(struct bdev *dev, struct nbdc_error *err);
bool bdev_readonly(const struct bdev *dev);
const char *bdev_name(const struct bdev *dev);

/* An in-memory device of size bytes (tests, fuzzers). */
int bdev_open_memory(uint64_t size, struct bdev **out, struct nbdc_error *err);

#endif
