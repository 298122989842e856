/* The fault-injecting bdev of tests/support/fault_bdev.h. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fault_bdev.h"

#define FAULT_PIECE (4u * 1024 * 1024)

struct fault {
  struct bdev *inner;
  bool own_inner;
  struct fault_plan *plan;
};

/* Count one write; 0 to go on, 1 for a torn write, -EIO to fail it. */
static int fault_count(struct fault *f, const char *what, uint64_t offset, struct nbdc_error *err)
{
  struct fault_plan *p = f->plan;
  p->writes++;
  if (p->tripped)
    return nbdc_error_set(err, EIO, "%s: injected write failure (%s at offset %" PRIu64 ", test)",
                          bdev_name(f->inner), what, offset);
  if (p->action == FAULT_NONE || p->writes < p->at)
    return 0;
  p->tripped = true;
  if (p->action == FAULT_KILL)
    raise(SIGKILL);
  if (p->action == FAULT_TORN)
    return 1;
  return nbdc_error_set(err, EIO, "%s: injected write failure (%s at offset %" PRIu64 ", test)",
                        bdev_name(f->inner), what, offset);
}

static int fault_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                       struct nbdc_error *err)
{
  struct fault *f = opaque;
  return bdev_pread(f->inner, buf, count, offset, err);
}

static int fault_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                        struct nbdc_error *err)
{
  struct fault *f = opaque;
  int r = fault_count(f, "write", offset, err);
  if (r < 0)
    return r;
  if (r == 1) {
    size_t half = count / 2 / 512 * 512;
    if (half)
      bdev_pwrite(f->inner, buf, half, offset, NULL);
    return nbdc_error_set(err, EIO,
                          "%s: injected write failure (torn write at offset %" PRIu64 ", test)",
                          bdev_name(f->inner), offset);
  }
  return bdev_pwrite(f->inner, buf, count, offset, err);
}

static int fault_flush(void *opaque, struct nbdc_error *err)
{
  struct fault *f = opaque;
  if (f->plan->tripped)
    return nbdc_error_set(err, EIO, "%s: injected flush failure (test)", bdev_name(f->inner));
  return bdev_flush(f->inner, err);
}

static int fault_get_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  struct fault *f = opaque;
  return bdev_get_size(f->inner, size, err);
}

static int fault_lock(void *opaque, bool exclusive, struct nbdc_error *err)
{
  struct fault *f = opaque;
  return bdev_lock(f->inner, exclusive, err);
}

static int fault_unlock(void *opaque, struct nbdc_error *err)
{
  struct fault *f = opaque;
  return bdev_unlock(f->inner, err);
}

static void fault_close(void *opaque)
{
  struct fault *f = opaque;
  if (f->own_inner)
    bdev_close(f->inner);
  free(f);
}

static int fault_resize(void *opaque, uint64_t size, struct nbdc_error *err)
{
  struct fault *f = opaque;
  int r = fault_count(f, "resize", size, err);
  if (r < 0)
    return r;
  if (r == 1)
    return nbdc_error_set(err, EIO, "%s: injected resize failure (test)", bdev_name(f->inner));
  return bdev_resize(f->inner, size, err);
}

static int fault_zero(void *opaque, uint64_t offset, uint64_t len, struct nbdc_error *err)
{
  struct fault *f = opaque;
  int r = fault_count(f, "zeroing", offset, err);
  if (r < 0)
    return r;
  if (r == 1)
    return nbdc_error_set(err, EIO, "%s: injected zeroing failure (test)", bdev_name(f->inner));
  return bdev_zero(f->inner, offset, len, err);
}

static int fault_open_reader(void *opaque, struct bdev **out, struct nbdc_error *err)
{
  struct fault *f = opaque;
  return bdev_open_reader(f->inner, out, err);
}

static void fault_readahead(void *opaque, uint64_t offset, uint64_t len)
{
  struct fault *f = opaque;
  bdev_readahead(f->inner, offset, len);
}

int fault_bdev_wrap(struct bdev *inner, bool own_inner, struct fault_plan *plan, size_t piece,
                    struct bdev **out, struct nbdc_error *err)
{
  *out = NULL;
  struct bdev_ops ops = {
      .pread = fault_pread,
      .pwrite = fault_pwrite,
      .flush = fault_flush,
      .get_size = fault_get_size,
      .lock = fault_lock,
      .unlock = fault_unlock,
      .close = fault_close,
      .resize = bdev_can_resize(inner) ? fault_resize : NULL,
      .open_reader = bdev_has_reader(inner) ? fault_open_reader : NULL,
      .readahead = fault_readahead,
      .zero = bdev_can_zero(inner) ? fault_zero : NULL,
  };
  struct fault *f = calloc(1, sizeof *f);
  if (!f)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  *f = (struct fault){.inner = inner, .own_inner = own_inner, .plan = plan};
  int r = bdev_from_ops(&ops, f, bdev_name(inner), bdev_readonly(inner), out, err);
  if (r < 0) {
    free(f);
    return r;
  }
  if (!piece)
    piece = FAULT_PIECE;
  size_t inner_max = bdev_max_request(inner);
  bdev_set_max_request(*out, inner_max && inner_max < piece ? inner_max : piece);
  return 0;
}
