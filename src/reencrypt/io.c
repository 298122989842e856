/* The block I/O layer of re-encryption: wraps a bdev so that large requests
 * are split (NBD servers cap request sizes), the whole-operation flock is not
 * dropped by luks2_write's own lock/unlock, a mutex lets the worker threads
 * share an NBD connection, and test hooks can make writes fail
 * (NBDCRYPT_TEST_FAIL_WRITE_AFTER=N: every write after the N-th) or slow the
 * run down (NBDCRYPT_TEST_HOTZONE_DELAY_MS=N: a pause after each hotzone). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reencrypt/internal.h"

#define IO_MAX (4u * 1024 * 1024)

struct wrap {
  struct bdev *inner;
  struct reenc_faults *faults;
  pthread_mutex_t *mu;
};

static void wrap_enter(struct wrap *w)
{
  if (w->mu)
    pthread_mutex_lock(w->mu);
}

static void wrap_leave(struct wrap *w)
{
  if (w->mu)
    pthread_mutex_unlock(w->mu);
}

static int wrap_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                      struct nbdc_error *err)
{
  struct wrap *w = opaque;
  for (size_t done = 0; done < count;) {
    size_t n = count - done < IO_MAX ? count - done : IO_MAX;
    wrap_enter(w);
    int r = bdev_pread(w->inner, (uint8_t *)buf + done, n, offset + done, err);
    wrap_leave(w);
    if (r < 0)
      return r;
    done += n;
  }
  return 0;
}

static int wrap_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                       struct nbdc_error *err)
{
  struct wrap *w = opaque;
  for (size_t done = 0; done < count;) {
    size_t n = count - done < IO_MAX ? count - done : IO_MAX;
    if (w->faults->fail_after >= 0 && ++w->faults->writes > w->faults->fail_after)
      return nbdc_error_set(err, EIO, "%s: injected write failure at offset %llu (test hook)",
                            bdev_name(w->inner), (unsigned long long)(offset + done));
    wrap_enter(w);
    int r = bdev_pwrite(w->inner, (const uint8_t *)buf + done, n, offset + done, err);
    wrap_leave(w);
    if (r < 0)
      return r;
    done += n;
  }
  return 0;
}

static int wrap_flush(void *opaque, struct nbdc_error *err)
{
  struct wrap *w = opaque;
  wrap_enter(w);
  int r = bdev_flush(w->inner, err);
  wrap_leave(w);
  return r;
}

static int wrap_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  struct wrap *w = opaque;
  wrap_enter(w);
  int r = bdev_get_size(w->inner, size, err);
  wrap_leave(w);
  return r;
}

/* The engine holds the real lock for the whole operation. */
static int wrap_lock(void *opaque, bool exclusive, struct nbdc_error *err)
{
  (void)opaque, (void)exclusive, (void)err;
  return 0;
}

static int wrap_unlock(void *opaque, struct nbdc_error *err)
{
  (void)opaque, (void)err;
  return 0;
}

static void wrap_close(void *opaque)
{
  free(opaque);
}

/* A non-negative decimal from the environment, or -1. */
static long env_long(const char *name)
{
  const char *s = getenv(name);
  if (!s || !*s)
    return -1;
  char *end;
  long v = strtol(s, &end, 10);
  return !*end && v >= 0 ? v : -1;
}

void reenc_faults_init(struct reenc_faults *f)
{
  f->writes = 0;
  f->fail_after = env_long("NBDCRYPT_TEST_FAIL_WRITE_AFTER");
  f->delay_ms = env_long("NBDCRYPT_TEST_HOTZONE_DELAY_MS");
  if (f->delay_ms < 0)
    f->delay_ms = 0;
  if (f->delay_ms > 10000)
    f->delay_ms = 10000;
}

int reenc_bdev_wrap(struct bdev *inner, struct reenc_faults *faults, pthread_mutex_t *mu,
                    struct bdev **out, struct nbdc_error *err)
{
  static const struct bdev_ops ops = {
      .pread = wrap_pread,
      .pwrite = wrap_pwrite,
      .flush = wrap_flush,
      .get_size = wrap_size,
      .lock = wrap_lock,
      .unlock = wrap_unlock,
      .close = wrap_close,
  };
  struct wrap *w = calloc(1, sizeof *w);
  if (!w)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  w->inner = inner;
  w->faults = faults;
  w->mu = mu;
  int r = bdev_from_ops(&ops, w, bdev_name(inner), bdev_readonly(inner), out, err);
  if (r < 0)
    free(w);
  return r;
}
