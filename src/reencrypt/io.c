/* The engine's shared view of a data device without a second reader (an NBD
 * export, the filter's next plugin): a mutex lets the worker threads and the
 * engine's thread share it, and the whole-operation metadata lock is the
 * engine's (no-op locking here).  Large requests are split once, by
 * bdev_pread/bdev_pwrite of the inner device (bdev_set_max_request). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reencrypt/internal.h"

struct shared {
  struct bdev *inner;
  pthread_mutex_t *mu;
};

static int shared_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                        struct nbdc_error *err)
{
  struct shared *w = opaque;
  pthread_mutex_lock(w->mu);
  int r = bdev_pread(w->inner, buf, count, offset, err);
  pthread_mutex_unlock(w->mu);
  return r;
}

static int shared_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                         struct nbdc_error *err)
{
  struct shared *w = opaque;
  pthread_mutex_lock(w->mu);
  int r = bdev_pwrite(w->inner, buf, count, offset, err);
  pthread_mutex_unlock(w->mu);
  return r;
}

static int shared_flush(void *opaque, struct nbdc_error *err)
{
  struct shared *w = opaque;
  pthread_mutex_lock(w->mu);
  int r = bdev_flush(w->inner, err);
  pthread_mutex_unlock(w->mu);
  return r;
}

static int shared_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  struct shared *w = opaque;
  pthread_mutex_lock(w->mu);
  int r = bdev_get_size(w->inner, size, err);
  pthread_mutex_unlock(w->mu);
  return r;
}

static int shared_resize(void *opaque, uint64_t size, struct nbdc_error *err)
{
  struct shared *w = opaque;
  pthread_mutex_lock(w->mu);
  int r = bdev_resize(w->inner, size, err);
  pthread_mutex_unlock(w->mu);
  return r;
}

static int shared_zero(void *opaque, uint64_t offset, uint64_t len, struct nbdc_error *err)
{
  struct shared *w = opaque;
  pthread_mutex_lock(w->mu);
  int r = bdev_zero(w->inner, offset, len, err);
  pthread_mutex_unlock(w->mu);
  return r;
}

static void shared_readahead(void *opaque, uint64_t offset, uint64_t len)
{
  struct shared *w = opaque;
  pthread_mutex_lock(w->mu);
  bdev_readahead(w->inner, offset, len);
  pthread_mutex_unlock(w->mu);
}

/* The engine holds the real lock for the whole operation. */
static int shared_lock(void *opaque, bool exclusive, struct nbdc_error *err)
{
  (void)opaque, (void)exclusive, (void)err;
  return 0;
}

static int shared_unlock(void *opaque, struct nbdc_error *err)
{
  (void)opaque, (void)err;
  return 0;
}

static void shared_close(void *opaque)
{
  free(opaque);
}

int reenc_bdev_shared(struct bdev *inner, pthread_mutex_t *mu, struct bdev **out,
                      struct nbdc_error *err)
{
  struct bdev_ops ops = {
      .pread = shared_pread,
      .pwrite = shared_pwrite,
      .flush = shared_flush,
      .get_size = shared_size,
      .lock = shared_lock,
      .unlock = shared_unlock,
      .close = shared_close,
      .resize = bdev_can_resize(inner) ? shared_resize : NULL,
      .readahead = shared_readahead,
      .zero = bdev_can_zero(inner) ? shared_zero : NULL,
  };
  struct shared *w = calloc(1, sizeof *w);
  if (!w)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  w->inner = inner;
  w->mu = mu;
  int r = bdev_from_ops(&ops, w, bdev_name(inner), bdev_readonly(inner), out, err);
  if (r < 0)
    free(w);
  return r;
}
