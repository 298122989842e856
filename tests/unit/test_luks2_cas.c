/* luks2_write is a compare-and-swap on the on-disk header: a header loaded
 * before another writer committed is refused and nothing is written; a
 * header fresh from luks2_format is exempt; a copy torn by a crash does not
 * count as a newer header. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/luks2.h"

#define DEV_SIZE    (UINT64_C(2) << 20)
#define DATA_OFFSET (UINT64_C(1) << 20)

static void make_header(uint8_t fill, struct luks2_hdr **out)
{
  struct nbdc_error err = {0};
  uint8_t vk[64];
  memset(vk, fill, sizeof vk);
  vk[0] = 1;
  struct luks2_format_params p = {
      .volume_key_size = 64, .sector_size = 512, .data_offset = DATA_OFFSET};
  assert_int_equal(luks2_format(&p, vk, 64, out, &err), 0);
}

static struct bdev *formatted_device(void)
{
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  struct luks2_hdr *hdr = NULL;
  assert_int_equal(bdev_open_memory(DEV_SIZE, &dev, &err), 0);
  make_header(0x3c, &hdr);
  assert_int_equal(luks2_write(dev, hdr, &err), 0);
  luks2_free(hdr);
  return dev;
}

static void add_token(struct luks2_hdr *hdr, const char *name)
{
  struct nbdc_error err = {0};
  char text[128];
  snprintf(text, sizeof text, "{\"type\": \"test-%s\", \"keyslots\": []}", name);
  struct json_object *tok = json_tokener_parse(text);
  assert_non_null(tok);
  assert_int_equal(luks2_token_add(hdr, -1, tok, NULL, &err), 0);
}

static bool has_token(const struct luks2_hdr *hdr, const char *name)
{
  char type[64];
  snprintf(type, sizeof type, "test-%s", name);
  return luks2_token_next(hdr, -1, type) >= 0;
}

/* The metadata area (both copies and the keyslots area). */
static uint8_t *snapshot(struct bdev *dev)
{
  struct nbdc_error err = {0};
  uint8_t *buf = malloc(DATA_OFFSET);
  assert_non_null(buf);
  assert_int_equal(bdev_pread(dev, buf, DATA_OFFSET, 0, &err), 0);
  return buf;
}

static void test_lost_update_refused(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = formatted_device();
  struct luks2_hdr *a = NULL, *b = NULL;
  assert_int_equal(luks2_load(dev, &a, &err), 0);
  assert_int_equal(luks2_load(dev, &b, &err), 0);
  assert_int_equal(luks2_seqid(a), 1);

  add_token(a, "a");
  assert_int_equal(luks2_write(dev, a, &err), 0);
  uint8_t *before = snapshot(dev);

  add_token(b, "b");
  assert_int_equal(luks2_write(dev, b, &err), -EBUSY);
  assert_string_equal(err.msg, "concurrent LUKS2 metadata update: seqid of memory moved from 1 "
                               "to 2 since it was loaded; nothing written");
  uint8_t *after = snapshot(dev);
  assert_memory_equal(before, after, DATA_OFFSET);

  struct luks2_hdr *now = NULL;
  assert_int_equal(luks2_load(dev, &now, &err), 0);
  assert_int_equal(luks2_seqid(now), 2);
  assert_true(has_token(now, "a"));
  assert_false(has_token(now, "b"));

  /* the winner may go on writing: its loaded seqid follows its writes */
  add_token(a, "a2");
  assert_int_equal(luks2_write(dev, a, &err), 0);
  /* and the loser, reloaded, may write too */
  luks2_free(b);
  assert_int_equal(luks2_load(dev, &b, &err), 0);
  add_token(b, "b");
  assert_int_equal(luks2_write(dev, b, &err), 0);
  luks2_free(now);
  assert_int_equal(luks2_load(dev, &now, &err), 0);
  assert_true(has_token(now, "a") && has_token(now, "a2") && has_token(now, "b"));
  assert_int_equal(luks2_seqid(now), 4);

  luks2_free(now);
  luks2_free(a);
  luks2_free(b);
  free(before);
  free(after);
  bdev_close(dev);
}

static void test_reformatted_or_wiped(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = formatted_device();
  struct luks2_hdr *old = NULL, *fresh = NULL;
  assert_int_equal(luks2_load(dev, &old, &err), 0);
  /* a fresh header (format --force) is written over whatever is there */
  make_header(0x5a, &fresh);
  assert_int_equal(luks2_write(dev, fresh, &err), 0);
  assert_int_equal(luks2_seqid(fresh), 1);
  /* same seqid, another uuid: still a concurrent update */
  uint8_t *before = snapshot(dev);
  assert_int_equal(luks2_write(dev, old, &err), -EBUSY);
  assert_non_null(strstr(err.msg, "memory was formatted again (uuid "));
  assert_non_null(strstr(err.msg, "nothing written"));
  uint8_t *after = snapshot(dev);
  assert_memory_equal(before, after, DATA_OFFSET);

  /* no header any more */
  memset(after, 0, 2 * 16384);
  assert_int_equal(bdev_pwrite(dev, after, 2 * 16384, 0, &err), 0);
  assert_int_equal(luks2_write(dev, fresh, &err), -EBUSY);
  assert_non_null(strstr(err.msg, "memory no longer holds the header loaded at seqid 1"));
  struct luks2_hdr *none = NULL;
  assert_int_equal(luks2_load(dev, &none, &err), -ENODATA);

  luks2_free(old);
  luks2_free(fresh);
  free(before);
  free(after);
  bdev_close(dev);
}

/* A crash inside the primary copy's write leaves it torn (checksum wrong, a
 * higher seqid in its binary header); the next writer must not take it for
 * someone else's commit. */
static void test_torn_copy_is_not_an_update(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = formatted_device();
  struct luks2_hdr *hdr = NULL;
  assert_int_equal(luks2_load(dev, &hdr, &err), 0);
  /* seqid 1 -> 7 in the primary's binary header, checksum now wrong */
  uint8_t seqid[8] = {0, 0, 0, 0, 0, 0, 0, 7};
  assert_int_equal(bdev_pwrite(dev, seqid, sizeof seqid, 16, &err), 0);
  add_token(hdr, "after-crash");
  assert_int_equal(luks2_write(dev, hdr, &err), 0);
  struct luks2_hdr *now = NULL;
  assert_int_equal(luks2_load(dev, &now, &err), 0);
  assert_null(luks2_load_warning(now)); /* both copies repaired */
  assert_true(has_token(now, "after-crash"));
  luks2_free(now);
  luks2_free(hdr);
  bdev_close(dev);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lost_update_refused),
      cmocka_unit_test(test_reformatted_or_wiped),
      cmocka_unit_test(test_torn_copy_is_not_an_update),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
