/* libFuzzer target for luks2_load: the input is the JSON area of a LUKS2
 * header.  Both binary headers and their sha256 checksums are built here for
 * every input (as cryptsetup's OSS-Fuzz targets do), so the fuzzer spends its
 * time in the JSON parser and validator instead of failing the checksum.
 * A header that loads is also exercised through the accessors and written
 * back: luks2_write of a validated header must produce a header that loads
 * again, or the target aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/luks2.h"

#define FUZZ_HDR_SIZE LUKS2_DEFAULT_HDR_SIZE
#define FUZZ_DEV_SIZE (17u * 1024 * 1024) /* past the default 16 MiB data offset */
#define CSUM_OFFSET   448

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_be64(uint8_t *p, uint64_t v)
{
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static void build_copy(uint8_t *copy, int secondary, const uint8_t *json, size_t json_len)
{
  memset(copy, 0, FUZZ_HDR_SIZE);
  memcpy(copy, secondary ? "SKUL\xba\xbe" : "LUKS\xba\xbe", 6);
  copy[7] = 2;
  put_be64(copy + 8, FUZZ_HDR_SIZE);
  put_be64(copy + 16, 1);
  memcpy(copy + 72, "sha256", 6);
  memset(copy + 104, secondary ? 0x5a : 0xa5, 64); /* salt */
  memcpy(copy + 168, "c0ffee00-1111-4222-8333-444455556666", 36);
  put_be64(copy + 256, secondary ? FUZZ_HDR_SIZE : 0);
  memcpy(copy + LUKS2_BIN_HDR_SIZE, json, json_len);
  unsigned int len = 0;
  if (EVP_Digest(copy, FUZZ_HDR_SIZE, copy + CSUM_OFFSET, &len, EVP_sha256(), NULL) != 1)
    abort();
}

/* Everything a caller may do with a header that loaded. */
static void exercise(struct luks2_hdr *hdr)
{
  struct nbdc_error err = {0};
  struct luks2_segment seg;
  (void)luks2_data_segment(hdr, &seg, &err);
  (void)luks2_volume_key_size(hdr);
  (void)luks2_uuid(hdr);
  (void)luks2_label(hdr);
  (void)luks2_load_warning(hdr);
  (void)luks2_keyslots_size(hdr);
  const char *names[8];
  size_t n = luks2_requirements(hdr, names, 8);
  for (size_t i = 0; i < n && i < 8; i++)
    (void)strlen(names[i]);
  int ids[LUKS2_MAX_KEYSLOTS];
  size_t count = luks2_keyslot_list(hdr, ids, LUKS2_MAX_KEYSLOTS);
  for (size_t i = 0; i < count && i < LUKS2_MAX_KEYSLOTS; i++) {
    struct luks2_keyslot_info info;
    (void)luks2_keyslot_info(hdr, ids[i], &info);
  }
  for (int t = luks2_token_next(hdr, -1, NULL), guard = 0; t >= 0 && guard <= LUKS2_MAX_TOKENS;
       t = luks2_token_next(hdr, t, NULL), guard++)
    (void)luks2_token_get(hdr, t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const size_t area = FUZZ_HDR_SIZE - LUKS2_BIN_HDR_SIZE;
  if (size > area)
    size = area;
  static uint8_t copy[FUZZ_HDR_SIZE];
  /* One device for the whole run (allocating 17 MiB per input costs most of
   * the time); everything luks2_load reads or luks2_write writes is
   * rewritten below, so each input still starts from the same bytes. */
  static struct bdev *dev;
  struct nbdc_error err = {0};
  if (!dev && bdev_open_memory(FUZZ_DEV_SIZE, &dev, &err) != 0)
    abort();
  for (int i = 0; i < 2; i++) {
    build_copy(copy, i, data, size);
    if (bdev_pwrite(dev, copy, FUZZ_HDR_SIZE, i ? FUZZ_HDR_SIZE : 0, &err) != 0)
      abort();
  }

  struct luks2_hdr *hdr = NULL;
  if (luks2_load(dev, &hdr, &err) == 0) {
    exercise(hdr);
    if (luks2_write(dev, hdr, &err) != 0) {
      fprintf(stderr, "luks2_write of a loaded header failed: %s\n", err.msg);
      abort();
    }
    luks2_free(hdr);
    hdr = NULL;
    if (luks2_load(dev, &hdr, &err) != 0) {
      fprintf(stderr, "header written by luks2_write does not load: %s\n", err.msg);
      abort();
    }
    exercise(hdr);
    luks2_free(hdr);
  } else if (err.msg[0] == '\0') {
    fprintf(stderr, "luks2_load failed without a message\n");
    abort();
  }
  return 0;
}
