/* An in-memory block device for tests and fuzzers (include/nbdcrypt/blockdev.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/internal.h"

#define MEMORY_NAME "memory"

struct memory_dev {
  uint8_t *data;
  uint64_t size;
  bool file_like; /* grows on a write past the end, can be resized */
};

static int memory_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                        struct nbdc_error *err)
{
  struct memory_dev *m = opaque;
  if (offset > m->size || count > m->size - offset)
    return bdev_error_beyond_end(err, MEMORY_NAME, offset, m->size);
  memcpy(buf, m->data + offset, count);
  return 0;
}

static int memory_get_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  (void)err;
  *size = ((struct memory_dev *)opaque)->size;
  return 0;
}

/* Grow (zero-filled) or shrink, as ftruncate does a file. */
static int memory_resize(void *opaque, uint64_t size, struct nbdc_error *err)
{
  struct memory_dev *m = opaque;
  if (size > SIZE_MAX)
    return nbdc_error_set(err, ENOSPC, "memory device of %" PRIu64 " bytes is too large", size);
  uint8_t *data = realloc(m->data, size ? (size_t)size : 1);
  if (!data)
    return nbdc_error_set(err, ENOSPC, "out of memory resizing " MEMORY_NAME " to %" PRIu64, size);
  if (size > m->size)
    memset(data + m->size, 0, (size_t)(size - m->size));
  m->data = data;
  m->size = size;
  return 0;
}

/* A file-like device grows on a write past its end, as a file does. */
static int memory_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                         struct nbdc_error *err)
{
  struct memory_dev *m = opaque;
  if (offset > SIZE_MAX - count)
    return nbdc_error_set(err, ENOSPC,
                          "write beyond the largest " MEMORY_NAME " device (offset %" PRIu64 ")",
                          offset);
  if (offset + count > m->size && !m->file_like)
    return nbdc_error_set(err, ENOSPC,
                          "write beyond end of device " MEMORY_NAME " (offset %" PRIu64
                          ", size %" PRIu64 ")",
                          offset, m->size);
  if (offset + count > m->size) {
    int r = memory_resize(m, offset + count, err);
    if (r < 0)
      return r;
  }
  memcpy(m->data + offset, buf, count);
  return 0;
}

static void memory_close(void *opaque)
{
  struct memory_dev *m = opaque;
  if (m)
    free(m->data);
  free(m);
}

static const struct bdev_ops memory_ops = {
    .pread = memory_pread,
    .pwrite = memory_pwrite,
    .get_size = memory_get_size,
    .close = memory_close,
};

static int memory_open(uint64_t size, bool file_like, struct bdev **out, struct nbdc_error *err)
{
  *out = NULL;
  if (size > SIZE_MAX)
    return nbdc_error_set(err, ENOMEM, "memory device of %" PRIu64 " bytes is too large", size);
  struct memory_dev *m = calloc(1, sizeof *m);
  if (!m || !(m->data = calloc(1, size ? (size_t)size : 1))) {
    free(m);
    return nbdc_error_set(err, ENOMEM, "out of memory for a %" PRIu64 "-byte memory device", size);
  }
  m->size = size;
  m->file_like = file_like;
  /* no second reader: its users share it under a mutex */
  struct bdev_ops ops = memory_ops;
  if (file_like)
    ops.resize = memory_resize;
  int r = bdev_from_ops(&ops, m, MEMORY_NAME, false, out, err);
  if (r < 0)
    memory_close(m);
  return r;
}

int bdev_open_memory(uint64_t size, struct bdev **out, struct nbdc_error *err)
{
  return memory_open(size, false, out, err);
}

int bdev_open_memory_file(uint64_t size, struct bdev **out, struct nbdc_error *err)
{
  return memory_open(size, true, out, err);
}
