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

  /* Optional capabilities: NULL when the device lacks one (an NBD export,
   * the filter's next plugin, memory); callers must work without them. */
  /* Grow or shrink the device to size bytes, durably (a regular file).  A
   * device that has it also grows when written past its end, as a file. */
  int (*resize)(void *opaque, uint64_t size, struct nbdc_error *err);
  /* A second, independent read-only handle on the same data that another
   * thread may use at the same time as this one (*out owned by the caller). */
  int (*open_reader)(void *opaque, struct bdev **out, struct nbdc_error *err);
  /* Advisory: [offset, offset+len) will be read soon. */
  void (*readahead)(void *opaque, uint64_t offset, uint64_t len);
  /* Make [offset, offset+len) read as zeros without storing them (a hole in
   * a file): keeps a sparse image sparse.  Inside the device's size. */
  int (*zero)(void *opaque, uint64_t offset, uint64_t len, struct nbdc_error *err);
};

enum {
  BDEV_RDONLY = 1 << 0, /* open read-only */
  BDEV_CREATE = 1 << 1, /* file: create it (size create_size) if it does not exist */
  /* file: take the image lock of a data writer (BDEV_LOCK_WRITER) right after
   * the open, before anything is read; held until bdev_close.  Ignored for an
   * NBD URI: its server owns the locking. */
  BDEV_LOCK_WRITE = 1 << 2,
};

/* True when target is an NBD URI (nbd://, nbds://, nbd+unix://, nbds+unix://). */
bool bdev_is_uri(const char *target);

/* Open a file path or NBD URI.  With BDEV_CREATE and a missing file, the file
 * is created sparse with create_size bytes (mode 0600).  *out owned by caller.
 * With BDEV_LOCK_WRITE, -EBUSY "IMAGE is in use by another process (pid N,
 * COMM), which ..." when a server, qemu or another writer holds the image. */
int bdev_open(const char *target, unsigned flags, uint64_t create_size, struct bdev **out,
              struct nbdc_error *err);

/* Wrap caller-supplied operations (e.g. the filter's next plugin).  name is
 * copied and used in error messages; opaque is passed to every op. */
int bdev_from_ops(const struct bdev_ops *ops, void *opaque, const char *name, bool readonly,
                  struct bdev **out, struct nbdc_error *err);

/* Close (calls ops->close) and free.  NULL is ignored. */
void bdev_close(struct bdev *dev);

/* The largest request handed to the backend's pread/pwrite (0: no limit):
 * bdev_pread/bdev_pwrite split larger ones, so that no backend or caller
 * splits again (NBD servers cap the request size; the filter's next plugin
 * is called with at most its chunk).  Set right after opening. */
void bdev_set_max_request(struct bdev *dev, size_t max_request);
size_t bdev_max_request(const struct bdev *dev);

/* The optional capabilities (bdev_ops): */
bool bdev_can_resize(const struct bdev *dev);
/* -ENOTSUP "DEV cannot grow or shrink" without the capability. */
int bdev_resize(struct bdev *dev, uint64_t size, struct nbdc_error *err);
/* -ENOTSUP without the capability (the caller then shares dev between its
 * threads under its own mutex). */
bool bdev_has_reader(const struct bdev *dev);
int bdev_open_reader(struct bdev *dev, struct bdev **out, struct nbdc_error *err);
void bdev_readahead(struct bdev *dev, uint64_t offset, uint64_t len); /* no-op without */
bool bdev_can_zero(const struct bdev *dev);
/* -ENOTSUP without the capability (the caller then writes zeros, or not). */
int bdev_zero(struct bdev *dev, uint64_t offset, uint64_t len, struct nbdc_error *err);

/* Full-length I/O: a short read past the end of the device is an error
 * (-EIO, "... read beyond end of device ..."). */
int bdev_pread(struct bdev *dev, void *buf, size_t count, uint64_t offset, struct nbdc_error *err);
int bdev_pwrite(struct bdev *dev, const void *buf, size_t count, uint64_t offset,
                struct nbdc_error *err);
int bdev_flush(struct bdev *dev, struct nbdc_error *err);
int bdev_get_size(struct bdev *dev, uint64_t *size, struct nbdc_error *err);
/* The metadata lock (flock on files, as cryptsetup takes on image files),
 * held from a header's load to its last write.  Holds nest: each bdev_lock
 * is matched by one bdev_unlock and only the outermost releases it (an inner
 * exclusive request upgrades an outer shared hold for the rest of it).
 * -EBUSY "... is locked by another process" after about 2 s; -ENOTSUP where
 * the backend has no lock (NBD, memory). */
int bdev_lock(struct bdev *dev, bool exclusive, struct nbdc_error *err);
int bdev_unlock(struct bdev *dev, struct nbdc_error *err);
bool bdev_readonly(const struct bdev *dev);
const char *bdev_name(const struct bdev *dev);

/* ---- image locks (src/blockdev/imagelock.c, docs/decisions.md) ----------
 * "One writer per disk", with qemu's image locking layout: open file
 * description locks on bytes 100+i (permission i used) and 200+i
 * (permission i not shared), i = qemu's BLK_PERM bits CONSISTENT_READ 0,
 * WRITE 1, WRITE_UNCHANGED 2, RESIZE 3.  qemu-img, qemu-io and qemu-nbd see
 * these locks and nbdcrypt sees theirs. */
enum bdev_lock_role {
  /* rewrites the data or its key (format, encrypt, decrypt, recrypt,
   * enroll): uses consistent read, write and resize; shares neither write
   * nor resize */
  BDEV_LOCK_WRITER,
  /* serves the disk read-write (the filter): uses consistent read and
   * write; shares neither write nor resize */
  BDEV_LOCK_SERVER,
  /* serves it read-only: uses consistent read; shares neither write nor
   * resize (read-only servers coexist) */
  BDEV_LOCK_SERVER_RO,
};

/* Take the image lock of role on dev, held until bdev_close.  0 without
 * taking anything when dev has no local file (an NBD URI: its server owns
 * the locking; memory and caller-supplied devices).  -EBUSY "IMAGE is in use
 * by another process (pid N, COMM), which uses \"write\"" (or "does not
 * share"; without the pid when it cannot be found). */
int bdev_image_lock(struct bdev *dev, enum bdev_lock_role role, struct nbdc_error *err);

/* The same without a bdev: opens path O_RDONLY (read locks need only read
 * access) and locks it; *out holds the lock until bdev_image_unlock.
 * -EINVAL when path is not a regular file or block device, else as above. */
struct bdev_image_lock;
int bdev_image_lock_path(const char *path, enum bdev_lock_role role, struct bdev_image_lock **out,
                         struct nbdc_error *err);
void bdev_image_unlock(struct bdev_image_lock *lock); /* NULL is ignored */

/* An in-memory device of size bytes (tests, fuzzers): fixed size (-ENOSPC
 * past its end), no optional capability. */
int bdev_open_memory(uint64_t size, struct bdev **out, struct nbdc_error *err);
/* The same standing in for a regular file: it can be resized and grows on a
 * write past its end; still no second reader. */
int bdev_open_memory_file(uint64_t size, struct bdev **out, struct nbdc_error *err);

#endif
