/* probe_signatures and probe_describe: signatures built by hand (no mkfs)
 * in an in-memory device, found through the memfd copy, including one in
 * the device's tail; an all-zero device holds none; the wording. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/probe.h"

#define MIB (UINT64_C(1) << 20)

static struct bdev *memory_dev(uint64_t size)
{
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  if (bdev_open_memory(size, &dev, &err) != 0)
    fail_msg("bdev_open_memory: %s", err.msg);
  return dev;
}

static void put(struct bdev *dev, uint64_t offset, const void *buf, size_t len)
{
  struct nbdc_error err = {0};
  if (bdev_pwrite(dev, buf, len, offset, &err) != 0)
    fail_msg("bdev_pwrite: %s", err.msg);
}

static struct probe_result probe_ok(struct bdev *dev)
{
  struct nbdc_error err = {0};
  struct probe_result res;
  if (probe_signatures(dev, &res, &err) != 0)
    fail_msg("probe_signatures: %s", err.msg);
  return res;
}

/* A Linux swap area of version 1 (util-linux's swap prober: magic at the
 * end of the first 4 KiB page, version and last page in the header). */
static void put_swap(struct bdev *dev)
{
  uint8_t hdr[12] = {0};
  hdr[0] = 1;    /* version, little endian */
  hdr[4] = 0xff; /* last_page = 255 */
  put(dev, 1024, hdr, sizeof hdr);
  put(dev, 4096 - 10, "SWAPSPACE2", 10);
}

/* An MBR with one Linux partition of 1 MiB at sector 2048. */
static void put_mbr(struct bdev *dev)
{
  uint8_t mbr[512] = {0};
  uint8_t *entry = mbr + 446;
  entry[4] = 0x83;
  entry[8] = 0x00, entry[9] = 0x08;   /* start LBA 2048 */
  entry[12] = 0x00, entry[13] = 0x08; /* 2048 sectors */
  mbr[510] = 0x55, mbr[511] = 0xaa;
  put(dev, 0, mbr, sizeof mbr);
}

static void test_zero_device_holds_nothing(void **state)
{
  (void)state;
  struct bdev *dev = memory_dev(64 * MIB);
  struct probe_result res = probe_ok(dev);
  assert_int_equal(res.count, 0);
  assert_false(res.more);
  char words[64] = "x";
  probe_describe_all(&res, words, sizeof words);
  assert_string_equal(words, "");
  bdev_close(dev);
}

static void test_swap_found_and_named(void **state)
{
  (void)state;
  struct bdev *dev = memory_dev(64 * MIB);
  put_swap(dev);
  struct probe_result res = probe_ok(dev);
  assert_int_equal(res.count, 1);
  assert_false(res.sig[0].partition_table);
  assert_string_equal(res.sig[0].type, "swap");
  assert_int_equal(res.sig[0].offset, 4096 - 10);
  char words[128];
  probe_describe_all(&res, words, sizeof words);
  assert_string_equal(words, "a swap area");
  bdev_close(dev);
}

static void test_mbr_found_and_named(void **state)
{
  (void)state;
  struct bdev *dev = memory_dev(64 * MIB);
  put_mbr(dev);
  struct probe_result res = probe_ok(dev);
  assert_int_equal(res.count, 1);
  assert_true(res.sig[0].partition_table);
  assert_string_equal(res.sig[0].type, "dos");
  char words[128];
  probe_describe_all(&res, words, sizeof words);
  assert_string_equal(words, "a dos partition table");
  bdev_close(dev);
}

/* A device smaller than head + tail is copied whole; one larger has a hole
 * in the middle, and what sits there is not seen (documented limit). */
static void test_middle_of_large_device_is_not_read(void **state)
{
  (void)state;
  struct bdev *dev = memory_dev(64 * MIB);
  uint8_t hdr[12] = {0};
  hdr[0] = 1;
  hdr[4] = 0xff;
  put(dev, 32 * MIB + 1024, hdr, sizeof hdr);
  put(dev, 32 * MIB + 4096 - 10, "SWAPSPACE2", 10);
  assert_int_equal(probe_ok(dev).count, 0);
  bdev_close(dev);
}

static void test_describe_wording(void **state)
{
  (void)state;
  struct probe_result res = {.count = 3};
  res.sig[0] = (struct probe_signature){.type = "ext4", .usage = "filesystem"};
  res.sig[1] = (struct probe_signature){
      .type = "crypto_LUKS", .version = "2", .usage = "crypto", .uuid = "1234"};
  res.sig[2] = (struct probe_signature){.partition_table = true, .type = "gpt"};
  char words[256];
  probe_describe_all(&res, words, sizeof words);
  assert_string_equal(words,
                      "an ext4 filesystem, a LUKS2 header (uuid 1234) and a gpt partition table");
  res.count = 1;
  res.sig[0] = (struct probe_signature){.type = "xfs", .usage = "filesystem"};
  probe_describe_all(&res, words, sizeof words);
  assert_string_equal(words, "an xfs filesystem");
  res.sig[0] = (struct probe_signature){.type = "linux_raid_member", .usage = "raid"};
  probe_describe_all(&res, words, sizeof words);
  assert_string_equal(words, "a RAID member (linux_raid_member)");
  res.more = true;
  probe_describe_all(&res, words, sizeof words);
  assert_string_equal(words, "a RAID member (linux_raid_member) and more");
  /* a short buffer is cut, never overrun */
  char tiny[8];
  probe_describe_all(&res, tiny, sizeof tiny);
  assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zero_device_holds_nothing),
      cmocka_unit_test(test_swap_found_and_named),
      cmocka_unit_test(test_mbr_found_and_named),
      cmocka_unit_test(test_middle_of_large_device_is_not_read),
      cmocka_unit_test(test_describe_wording),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
