/* Image locks: which roles exclude each other, the bytes they hold (qemu's
 * layout, read back with F_OFD_GETLK from an independent descriptor), the
 * message naming the holder, release on close, and nesting of the metadata
 * lock. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/blockdev.h"

static char tmpdir[4096];
static char image[4200];

static int setup(void **state)
{
  (void)state;
  if (unit_tmpdir_make(tmpdir, sizeof tmpdir, "bdev-imagelock") != 0)
    return -1;
  snprintf(image, sizeof image, "%s/disk.img", tmpdir);
  int fd = open(image, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, 1 << 20) != 0)
    return -1;
  close(fd);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  return unit_tmpdir_remove(tmpdir);
}

/* Does another open file description hold byte (any lock)? */
static bool byte_held(off_t byte)
{
  int fd = open(image, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
  assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
  close(fd);
  return fl.l_type != F_UNLCK;
}

static unsigned held_mask(off_t base)
{
  unsigned m = 0;
  for (int i = 0; i < 4; i++)
    if (byte_held(base + i))
      m |= 1u << i;
  return m;
}

static void test_bytes_of_each_role(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev_image_lock *lock = NULL;
  /* writer: perms read|write|resize, unshares write|resize */
  assert_int_equal(bdev_image_lock_path(image, BDEV_LOCK_WRITER, &lock, &err), 0);
  assert_int_equal(held_mask(100), 0x1 | 0x2 | 0x8);
  assert_int_equal(held_mask(200), 0x2 | 0x8);
  bdev_image_unlock(lock);
  assert_int_equal(held_mask(100) | held_mask(200), 0);
  /* server: read|write, unshares write|resize */
  assert_int_equal(bdev_image_lock_path(image, BDEV_LOCK_SERVER, &lock, &err), 0);
  assert_int_equal(held_mask(100), 0x1 | 0x2);
  assert_int_equal(held_mask(200), 0x2 | 0x8);
  bdev_image_unlock(lock);
  assert_int_equal(bdev_image_lock_path(image, BDEV_LOCK_SERVER_RO, &lock, &err), 0);
  assert_int_equal(held_mask(100), 0x1);
  assert_int_equal(held_mask(200), 0x2 | 0x8);
  bdev_image_unlock(lock);
  assert_int_equal(held_mask(100) | held_mask(200), 0);
}

static void test_roles_exclude(void **state)
{
  (void)state;
  static const struct {
    enum bdev_lock_role first, second;
    bool coexist;
  } cases[] = {
      {BDEV_LOCK_SERVER, BDEV_LOCK_WRITER, false},
      {BDEV_LOCK_WRITER, BDEV_LOCK_SERVER, false},
      {BDEV_LOCK_SERVER, BDEV_LOCK_SERVER, false},
      {BDEV_LOCK_WRITER, BDEV_LOCK_WRITER, false},
      {BDEV_LOCK_SERVER_RO, BDEV_LOCK_WRITER, false},
      {BDEV_LOCK_SERVER_RO, BDEV_LOCK_SERVER, false},
      {BDEV_LOCK_SERVER_RO, BDEV_LOCK_SERVER_RO, true},
  };
  char pid_text[64];
  snprintf(pid_text, sizeof pid_text, "(pid %d, ", (int)getpid());
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct nbdc_error err = {0};
    struct bdev_image_lock *a = NULL, *b = NULL;
    assert_int_equal(bdev_image_lock_path(image, cases[i].first, &a, &err), 0);
    int r = bdev_image_lock_path(image, cases[i].second, &b, &err);
    if (cases[i].coexist) {
      assert_int_equal(r, 0);
    } else {
      assert_int_equal(r, -EBUSY);
      assert_null(b);
      assert_non_null(strstr(err.msg, "is in use by another process"));
      assert_non_null(strstr(err.msg, image));
      /* the holder is this process, found through /proc/self/fdinfo */
      assert_non_null(strstr(err.msg, pid_text));
    }
    bdev_image_unlock(b);
    bdev_image_unlock(a);
    /* a refused attempt left no byte behind */
    assert_int_equal(held_mask(100) | held_mask(200), 0);
  }
}

static void test_open_flag_and_close(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL, *other = NULL;
  assert_int_equal(bdev_open(image, BDEV_LOCK_WRITE, 0, &dev, &err), 0);
  assert_int_equal(bdev_open(image, BDEV_LOCK_WRITE, 0, &other, &err), -EBUSY);
  assert_null(other);
  assert_non_null(strstr(err.msg, "is in use by another process"));
  /* a plain open (shallow rekey, info) is not refused */
  assert_int_equal(bdev_open(image, 0, 0, &other, &err), 0);
  bdev_close(other);
  struct bdev_image_lock *server = NULL;
  assert_int_equal(bdev_image_lock_path(image, BDEV_LOCK_SERVER, &server, &err), -EBUSY);
  bdev_close(dev);
  assert_int_equal(bdev_image_lock_path(image, BDEV_LOCK_SERVER, &server, &err), 0);
  assert_int_equal(bdev_open(image, BDEV_LOCK_WRITE, 0, &dev, &err), -EBUSY);
  bdev_image_unlock(server);

  /* a memory device has nothing to lock */
  assert_int_equal(bdev_open_memory(4096, &dev, &err), 0);
  assert_int_equal(bdev_image_lock(dev, BDEV_LOCK_WRITER, &err), 0);
  bdev_close(dev);
}

static void test_not_a_file(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev_image_lock *lock = NULL;
  assert_int_equal(bdev_image_lock_path(tmpdir, BDEV_LOCK_SERVER, &lock, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "not a regular file or a block device"));
  char missing[4300];
  snprintf(missing, sizeof missing, "%s/missing.img", tmpdir);
  assert_int_equal(bdev_image_lock_path(missing, BDEV_LOCK_SERVER, &lock, &err), -ENOENT);
  assert_null(lock);
}

/* luks2_write's own lock/unlock inside an outer hold must not release it. */
static void test_metadata_lock_nests(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  assert_int_equal(bdev_open(image, 0, 0, &dev, &err), 0);
  assert_int_equal(bdev_lock(dev, true, &err), 0);
  assert_int_equal(bdev_lock(dev, true, &err), 0);
  assert_int_equal(bdev_unlock(dev, &err), 0);
  int fd = open(image, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1); /* still held */
  assert_int_equal(bdev_unlock(dev, &err), 0);
  assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0); /* released by the outermost */
  flock(fd, LOCK_UN);
  /* shared outer, exclusive inner: upgraded */
  assert_int_equal(bdev_lock(dev, false, &err), 0);
  assert_int_equal(bdev_lock(dev, true, &err), 0);
  assert_int_equal(flock(fd, LOCK_SH | LOCK_NB), -1);
  assert_int_equal(bdev_unlock(dev, &err), 0);
  assert_int_equal(bdev_unlock(dev, &err), 0);
  assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
  close(fd);
  bdev_close(dev);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_of_each_role),  cmocka_unit_test(test_roles_exclude),
      cmocka_unit_test(test_open_flag_and_close), cmocka_unit_test(test_not_a_file),
      cmocka_unit_test(test_metadata_lock_nests),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
