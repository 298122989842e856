/* File backend: sparse creation, odd-offset round trips, reads past the end,
 * read-only refusal, flock exclusion, the optional capabilities (resize,
 * second reader, holes), and the generic wrappers (request splitting). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/blockdev.h"

static char tmpdir[4096];

static int setup(void **state)
{
  (void)state;
  return unit_tmpdir_make(tmpdir, sizeof tmpdir, "bdev-file");
}

static int teardown(void **state)
{
  (void)state;
  return unit_tmpdir_remove(tmpdir);
}

static void path_in_tmp(char *out, size_t n, const char *name)
{
  snprintf(out, n, "%s/%s", tmpdir, name);
  unlink(out);
}

static void test_create_sparse(void **state)
{
  (void)state;
  char path[4200];
  path_in_tmp(path, sizeof path, "sparse.img");
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  const uint64_t size = UINT64_C(1) << 30;
  assert_int_equal(bdev_open(path, BDEV_CREATE, size, &dev, &err), 0);
  uint64_t got = 0;
  assert_int_equal(bdev_get_size(dev, &got, &err), 0);
  assert_int_equal(got, size);
  assert_string_equal(bdev_name(dev), path);
  assert_false(bdev_readonly(dev));
  bdev_close(dev);

  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, size);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_true((uint64_t)st.st_blocks * 512 < 1024 * 1024); /* sparse */

  /* BDEV_CREATE on an existing file opens it as it is. */
  assert_int_equal(bdev_open(path, BDEV_CREATE, 4096, &dev, &err), 0);
  assert_int_equal(bdev_get_size(dev, &got, &err), 0);
  assert_int_equal(got, size);
  bdev_close(dev);

  /* Without BDEV_CREATE a missing file is an error naming it. */
  char missing[4200];
  path_in_tmp(missing, sizeof missing, "missing.img");
  assert_int_equal(bdev_open(missing, 0, 0, &dev, &err), -ENOENT);
  assert_null(dev);
  assert_non_null(strstr(err.msg, missing));
  /* Creating read-only makes no sense. */
  assert_int_equal(bdev_open(missing, BDEV_CREATE | BDEV_RDONLY, 4096, &dev, &err), -EINVAL);
  assert_int_equal(access(missing, F_OK), -1);
}

static void test_round_trip_odd_offsets(void **state)
{
  (void)state;
  char path[4200];
  path_in_tmp(path, sizeof path, "rw.img");
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_open(path, BDEV_CREATE, 1 << 20, &dev, &err), 0);
  static const struct {
    uint64_t offset;
    size_t len;
  } cases[] = {{0, 1}, {1, 511}, {513, 4095}, {12345, 65537}, {(1 << 20) - 7, 7}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    uint8_t *w = malloc(cases[c].len), *r = malloc(cases[c].len);
    assert_true(w && r);
    for (size_t i = 0; i < cases[c].len; i++)
      w[i] = (uint8_t)(i * 3 + c + 1);
    assert_int_equal(bdev_pwrite(dev, w, cases[c].len, cases[c].offset, &err), 0);
    assert_int_equal(bdev_pread(dev, r, cases[c].len, cases[c].offset, &err), 0);
    assert_memory_equal(r, w, cases[c].len);
    free(w);
    free(r);
  }
  assert_int_equal(bdev_flush(dev, &err), 0);
  bdev_close(dev);

  /* Independently: the bytes are in the file where we wrote them. */
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 12345, SEEK_SET), 0);
  uint8_t b[2];
  assert_int_equal(fread(b, 1, 2, f), 2);
  assert_int_equal(b[0], (uint8_t)(0 * 3 + 3 + 1));
  assert_int_equal(b[1], (uint8_t)(1 * 3 + 3 + 1));
  fclose(f);
}

static void test_read_beyond_end(void **state)
{
  (void)state;
  char path[4200];
  path_in_tmp(path, sizeof path, "short.img");
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_open(path, BDEV_CREATE, 8192, &dev, &err), 0);
  uint8_t buf[4096];
  assert_int_equal(bdev_pread(dev, buf, sizeof buf, 4096, &err), 0);
  assert_int_equal(bdev_pread(dev, buf, sizeof buf, 6144, &err), -EIO);
  assert_int_equal(err.code, EIO);
  char expect[4400];
  snprintf(expect, sizeof expect, "read beyond end of device %s (offset 6144, size 8192)", path);
  assert_string_equal(err.msg, expect);
  assert_int_equal(bdev_pread(dev, buf, 1, 8192, &err), -EIO);
  assert_non_null(strstr(err.msg, "read beyond end of device"));
  /* Overflowing offsets are refused before any I/O. */
  assert_int_equal(bdev_pread(dev, buf, 16, UINT64_MAX - 4, &err), -EINVAL);
  bdev_close(dev);
}

static void test_readonly_refusal(void **state)
{
  (void)state;
  char path[4200];
  path_in_tmp(path, sizeof path, "ro.img");
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_open(path, BDEV_CREATE, 4096, &dev, &err), 0);
  uint8_t data[512];
  memset(data, 0x77, sizeof data);
  assert_int_equal(bdev_pwrite(dev, data, sizeof data, 0, &err), 0);
  bdev_close(dev);

  assert_int_equal(bdev_open(path, BDEV_RDONLY, 0, &dev, &err), 0);
  assert_true(bdev_readonly(dev));
  uint8_t zero[512] = {0};
  assert_int_equal(bdev_pwrite(dev, zero, sizeof zero, 0, &err), -EROFS);
  assert_int_equal(err.code, EROFS);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "read-only"));
  uint8_t back[512];
  assert_int_equal(bdev_pread(dev, back, sizeof back, 0, &err), 0);
  assert_memory_equal(back, data, sizeof data);
  assert_int_equal(bdev_flush(dev, &err), 0);
  bdev_close(dev);

  /* A file without write permission cannot be opened read-write (unless root). */
  assert_int_equal(chmod(path, 0400), 0);
  if (geteuid() != 0) {
    assert_int_equal(bdev_open(path, 0, 0, &dev, &err), -EACCES);
    assert_non_null(strstr(err.msg, path));
  }
}

/* flock locks belong to the open file description: two opens of the same
 * file in one process exclude each other like two processes would. */
static void test_flock_exclusion(void **state)
{
  (void)state;
  char path[4200];
  path_in_tmp(path, sizeof path, "lock.img");
  struct nbdc_error err = {0};
  struct bdev *a = NULL, *b = NULL;
  assert_int_equal(bdev_open(path, BDEV_CREATE, 4096, &a, &err), 0);
  assert_int_equal(bdev_open(path, 0, 0, &b, &err), 0);

  assert_int_equal(bdev_lock(a, true, &err), 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(bdev_lock(b, true, &err), -EBUSY);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  assert_true(waited >= 1.5 && waited < 5.0); /* bounded retry of about 2 s */
  char expect[4400];
  snprintf(expect, sizeof expect, "%s is locked by another process", path);
  assert_string_equal(err.msg, expect);
  assert_int_equal(bdev_lock(b, false, &err), -EBUSY); /* shared vs exclusive */

  assert_int_equal(bdev_unlock(a, &err), 0);
  assert_int_equal(bdev_lock(b, true, &err), 0);
  assert_int_equal(bdev_unlock(b, &err), 0);

  /* Shared locks coexist. */
  assert_int_equal(bdev_lock(a, false, &err), 0);
  assert_int_equal(bdev_lock(b, false, &err), 0);
  assert_int_equal(bdev_unlock(a, &err), 0);
  assert_int_equal(bdev_unlock(b, &err), 0);

  /* Closing releases the lock. */
  assert_int_equal(bdev_lock(a, true, &err), 0);
  bdev_close(a);
  assert_int_equal(bdev_lock(b, true, &err), 0);
  bdev_close(b);
}

static void test_not_a_file(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_open(tmpdir, BDEV_RDONLY, 0, &dev, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "not a regular file or a block device"));
  assert_int_equal(bdev_open("", 0, 0, &dev, &err), -EINVAL);
  assert_int_equal(bdev_open(tmpdir, 0x80, 0, &dev, &err), -EINVAL);
}

static void test_memory_device(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_open_memory(65536, &dev, &err), 0);
  uint8_t buf[100];
  memset(buf, 0xa1, sizeof buf);
  assert_int_equal(bdev_pwrite(dev, buf, sizeof buf, 65436, &err), 0);
  uint8_t back[100];
  assert_int_equal(bdev_pread(dev, back, sizeof back, 65436, &err), 0);
  assert_memory_equal(back, buf, sizeof buf);
  assert_int_equal(bdev_pread(dev, back, sizeof back, 65437, &err), -EIO);
  assert_string_equal(err.msg, "read beyond end of device memory (offset 65437, size 65536)");
  assert_int_equal(bdev_pwrite(dev, buf, sizeof buf, 65437, &err), -ENOSPC);
  assert_int_equal(bdev_lock(dev, true, &err), -ENOTSUP);
  assert_non_null(strstr(err.msg, "memory does not support locking"));
  uint64_t size = 0;
  assert_int_equal(bdev_get_size(dev, &size, &err), 0);
  assert_int_equal(size, 65536);
  bdev_close(dev);
  bdev_close(NULL);
}

/* bdev_from_ops: caller-supplied operations, errors named even if the op is silent. */
static int silent_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                        struct nbdc_error *err)
{
  (void)opaque, (void)buf, (void)count, (void)offset, (void)err;
  return -EIO;
}

static int fixed_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  (void)err;
  *size = *(uint64_t *)opaque;
  return 0;
}

static int closed_count;

static void count_close(void *opaque)
{
  (void)opaque;
  closed_count++;
}

static void test_from_ops(void **state)
{
  (void)state;
  uint64_t size = 1234;
  const struct bdev_ops ops = {.pread = silent_pread, .get_size = fixed_size, .close = count_close};
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_from_ops(&ops, &size, "next plugin", false, &dev, &err), 0);
  assert_true(bdev_readonly(dev)); /* no pwrite */
  uint8_t buf[16];
  assert_int_equal(bdev_pread(dev, buf, sizeof buf, 0, &err), -EIO);
  assert_string_equal(err.msg,
                      "read of 16 bytes at offset 0 from next plugin failed: Input/output error");
  assert_int_equal(bdev_pwrite(dev, buf, sizeof buf, 0, &err), -EROFS);
  assert_non_null(strstr(err.msg, "next plugin is read-only"));
  uint64_t got = 0;
  assert_int_equal(bdev_get_size(dev, &got, &err), 0);
  assert_int_equal(got, 1234);
  bdev_close(dev);
  assert_int_equal(closed_count, 1);

  const struct bdev_ops missing = {.get_size = fixed_size};
  assert_int_equal(bdev_from_ops(&missing, &size, "broken", false, &dev, &err), -EINVAL);
  assert_null(dev);
}

/* A file has every optional capability; a block of it made a hole reads as
 * zeros and is no longer allocated; a second reader sees what was written. */
static void test_file_capabilities(void **state)
{
  (void)state;
  char path[4200];
  path_in_tmp(path, sizeof path, "caps.img");
  struct nbdc_error err = {0};
  struct bdev *dev = NULL, *reader = NULL;
  assert_int_equal(bdev_open(path, BDEV_CREATE, 1 << 20, &dev, &err), 0);
  assert_true(bdev_can_resize(dev));
  assert_true(bdev_has_reader(dev));
  assert_true(bdev_can_zero(dev));
  static uint8_t buf[256 * 1024], back[256 * 1024];
  memset(buf, 0x5c, sizeof buf);
  assert_int_equal(bdev_pwrite(dev, buf, sizeof buf, 0, &err), 0);
  assert_int_equal(bdev_flush(dev, &err), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  blkcnt_t written = st.st_blocks;
  assert_int_equal(bdev_zero(dev, 64 * 1024, 128 * 1024, &err), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_true(st.st_blocks <= written - 128 * 1024 / 512);
  assert_int_equal(bdev_open_reader(dev, &reader, &err), 0);
  assert_true(bdev_readonly(reader));
  assert_int_equal(bdev_pread(reader, back, sizeof back, 0, &err), 0);
  memset(buf + 64 * 1024, 0, 128 * 1024);
  assert_memory_equal(back, buf, sizeof buf);
  bdev_readahead(reader, 0, sizeof back); /* advisory: nothing to see */
  bdev_close(reader);
  assert_int_equal(bdev_resize(dev, 3 << 20, &err), 0);
  uint64_t size = 0;
  assert_int_equal(bdev_get_size(dev, &size, &err), 0);
  assert_int_equal(size, 3 << 20);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, 3 << 20);
  bdev_close(dev);
}

/* Without the capabilities the wrappers say so: -ENOTSUP naming the device. */
static void test_missing_capabilities(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL, *reader = NULL;
  assert_int_equal(bdev_open_memory(65536, &dev, &err), 0);
  assert_false(bdev_can_resize(dev));
  assert_false(bdev_has_reader(dev));
  assert_false(bdev_can_zero(dev));
  assert_int_equal(bdev_resize(dev, 4096, &err), -ENOTSUP);
  assert_string_equal(err.msg, "memory cannot grow or shrink");
  assert_int_equal(bdev_open_reader(dev, &reader, &err), -ENOTSUP);
  assert_null(reader);
  assert_int_equal(bdev_zero(dev, 0, 4096, &err), -ENOTSUP);
  bdev_readahead(dev, 0, 4096);
  bdev_close(dev);
  /* the file-like memory device grows on a write past its end */
  assert_int_equal(bdev_open_memory_file(4096, &dev, &err), 0);
  assert_true(bdev_can_resize(dev));
  uint8_t b[512] = {1};
  assert_int_equal(bdev_pwrite(dev, b, sizeof b, 8192, &err), 0);
  uint64_t size = 0;
  assert_int_equal(bdev_get_size(dev, &size, &err), 0);
  assert_int_equal(size, 8192 + 512);
  bdev_close(dev);
}

/* bdev_pread/bdev_pwrite hand the backend at most max_request bytes. */
struct split_rec {
  uint8_t data[10000];
  size_t largest;
  int calls;
};
static int split_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                       struct nbdc_error *err)
{
  (void)err;
  struct split_rec *s = opaque;
  s->calls++;
  if (count > s->largest)
    s->largest = count;
  memcpy(buf, s->data + offset, count);
  return 0;
}
static int split_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                        struct nbdc_error *err)
{
  (void)err;
  struct split_rec *s = opaque;
  s->calls++;
  if (count > s->largest)
    s->largest = count;
  memcpy(s->data + offset, buf, count);
  return 0;
}
static int split_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  (void)opaque, (void)err;
  *size = 10000;
  return 0;
}

static void test_requests_split(void **state)
{
  (void)state;
  static struct split_rec rec;
  const struct bdev_ops ops = {
      .pread = split_pread, .pwrite = split_pwrite, .get_size = split_size};
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_from_ops(&ops, &rec, "split", false, &dev, &err), 0);
  bdev_set_max_request(dev, 1000);
  assert_int_equal(bdev_max_request(dev), 1000);
  uint8_t buf[9500], back[9500];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (uint8_t)(i * 7);
  assert_int_equal(bdev_pwrite(dev, buf, sizeof buf, 300, &err), 0);
  assert_int_equal(rec.calls, 10);
  assert_int_equal(rec.largest, 1000);
  rec.calls = 0;
  assert_int_equal(bdev_pread(dev, back, sizeof back, 300, &err), 0);
  assert_int_equal(rec.calls, 10);
  assert_memory_equal(back, buf, sizeof buf);
  bdev_close(dev);
}

static void test_is_uri(void **state)
{
  (void)state;
  assert_true(bdev_is_uri("nbd://localhost/export"));
  assert_true(bdev_is_uri("nbds://host:10809"));
  assert_true(bdev_is_uri("nbd+unix:///?socket=/tmp/s"));
  assert_true(bdev_is_uri("nbds+unix:///exp?socket=/tmp/s"));
  assert_false(bdev_is_uri("/dev/sda"));
  assert_false(bdev_is_uri("disk.img"));
  assert_false(bdev_is_uri("nbd:localhost"));
  assert_false(bdev_is_uri("http://x"));
  assert_false(bdev_is_uri(NULL));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_sparse),
      cmocka_unit_test(test_round_trip_odd_offsets),
      cmocka_unit_test(test_read_beyond_end),
      cmocka_unit_test(test_readonly_refusal),
      cmocka_unit_test(test_flock_exclusion),
      cmocka_unit_test(test_not_a_file),
      cmocka_unit_test(test_memory_device),
      cmocka_unit_test(test_from_ops),
      cmocka_unit_test(test_is_uri),
      cmocka_unit_test(test_file_capabilities),
      cmocka_unit_test(test_missing_capabilities),
      cmocka_unit_test(test_requests_split),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
