/* A counting block device for tests: see counting_bdev.h. */
#include "counting_bdev.h"

static int counting_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                          struct nbdc_error *err)
{
  struct counting_bdev *c = opaque;
  if (offset == 0)
    c->header_reads++;
  return bdev_pread(c->inner, buf, count, offset, err);
}

static int counting_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                           struct nbdc_error *err)
{
  struct counting_bdev *c = opaque;
  return bdev_pwrite(c->inner, buf, count, offset, err);
}

static int counting_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  struct counting_bdev *c = opaque;
  return bdev_get_size(c->inner, size, err);
}

int counting_bdev_wrap(struct counting_bdev *c, struct bdev **out, struct nbdc_error *err)
{
  static const struct bdev_ops ops = {
      .pread = counting_pread, .pwrite = counting_pwrite, .get_size = counting_size};
  return bdev_from_ops(&ops, c, "counting", false, out, err);
}
