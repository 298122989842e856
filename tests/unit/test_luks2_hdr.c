/* LUKS2 binary header and its two copies: round trip, checksums computed
 * independently here with OpenSSL over the bytes on "disk", seqid, recovery
 * from one good copy and repair by the next write, label, uuid, requirements. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/luks2.h"

#define HDR         UINT64_C(16384)
#define DATA_OFFSET (UINT64_C(1) << 20)
#define DEV_SIZE    (UINT64_C(2) << 20)
#define TEST_UUID   "0b2f6c1e-7a4d-4c3b-9e8f-112233445566"

struct fixture {
  struct bdev *dev;
  struct luks2_hdr *hdr;
  uint8_t vk[64];
};

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof *f);
  struct nbdc_error err = {0};
  assert_non_null(f);
  for (size_t i = 0; i < sizeof f->vk; i++)
    f->vk[i] = (uint8_t)(i * 7 + 1);
  assert_int_equal(bdev_open_memory(DEV_SIZE, &f->dev, &err), 0);
  struct luks2_format_params p = {.label = "my-disk",
                                  .uuid = TEST_UUID,
                                  .volume_key_size = 64,
                                  .sector_size = 4096,
                                  .data_offset = DATA_OFFSET};
  assert_int_equal(luks2_format(&p, f->vk, 64, &f->hdr, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  luks2_free(f->hdr);
  bdev_close(f->dev);
  free(f);
  return 0;
}

static uint64_t be64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void read_dev(struct bdev *dev, void *buf, size_t len, uint64_t off)
{
  struct nbdc_error err = {0};
  assert_int_equal(bdev_pread(dev, buf, len, off, &err), 0);
}

static void write_dev(struct bdev *dev, const void *buf, size_t len, uint64_t off)
{
  struct nbdc_error err = {0};
  assert_int_equal(bdev_pwrite(dev, buf, len, off, &err), 0);
}

/* sha256(bin with csum zeroed || JSON area) computed here, not by src/luks2. */
static void expected_csum(const uint8_t *copy, size_t hdr_size, uint8_t out[32])
{
  uint8_t *tmp = malloc(hdr_size);
  assert_non_null(tmp);
  memcpy(tmp, copy, hdr_size);
  memset(tmp + 448, 0, 64);
  unsigned len = 0;
  assert_int_equal(EVP_Digest(tmp, hdr_size, out, &len, EVP_sha256(), NULL), 1);
  assert_int_equal(len, 32);
  free(tmp);
}

/* Check one copy's bytes field by field and its checksum. */
static void check_copy(struct bdev *dev, uint64_t offset, bool secondary, uint64_t seqid)
{
  uint8_t *copy = malloc(HDR);
  assert_non_null(copy);
  read_dev(dev, copy, HDR, offset);
  const uint8_t magic1[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
  const uint8_t magic2[6] = {'S', 'K', 'U', 'L', 0xba, 0xbe};
  assert_memory_equal(copy, secondary ? magic2 : magic1, 6);
  assert_int_equal(copy[6], 0);
  assert_int_equal(copy[7], 2);
  assert_int_equal(be64(copy + 8), HDR);
  assert_int_equal(be64(copy + 16), seqid);
  assert_string_equal((const char *)copy + 24, "my-disk");
  assert_string_equal((const char *)copy + 72, "sha256");
  assert_string_equal((const char *)copy + 168, TEST_UUID);
  assert_int_equal(be64(copy + 256), offset);
  for (size_t i = 264; i < 448; i++)
    assert_int_equal(copy[i], 0);
  uint8_t csum[32];
  expected_csum(copy, HDR, csum);
  assert_memory_equal(copy + 448, csum, 32);
  for (size_t i = 480; i < 4096; i++)
    assert_int_equal(copy[i], 0);
  /* JSON area: '{', compact JSON, NUL padding to the end. */
  const char *json = (const char *)copy + 4096;
  assert_int_equal(json[0], '{');
  size_t len = strnlen(json, HDR - 4096);
  assert_true(len < HDR - 4096);
  for (size_t i = 4096 + len; i < HDR; i++)
    assert_int_equal(copy[i], 0);
  assert_null(strchr(json, '\n'));
  assert_null(strstr(json, ": "));
  free(copy);
}

static void format_write_load_round_trip(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_seqid(f->hdr), 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  assert_int_equal(luks2_seqid(f->hdr), 1);

  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_null(luks2_load_warning(loaded));
  assert_string_equal(luks2_uuid(loaded), TEST_UUID);
  assert_string_equal(luks2_label(loaded), "my-disk");
  assert_int_equal(luks2_hdr_size(loaded), HDR);
  assert_int_equal(luks2_seqid(loaded), 1);
  assert_int_equal(luks2_keyslots_size(loaded), DATA_OFFSET - 2 * HDR);
  assert_string_equal(
      json_object_to_json_string_ext(luks2_metadata(loaded), JSON_C_TO_STRING_PLAIN),
      json_object_to_json_string_ext(luks2_metadata(f->hdr), JSON_C_TO_STRING_PLAIN));

  struct luks2_segment seg;
  assert_int_equal(luks2_data_segment(loaded, &seg, &err), 0);
  assert_int_equal(seg.id, 0);
  assert_int_equal(seg.offset, DATA_OFFSET);
  assert_true(seg.dynamic);
  assert_int_equal(seg.size, 0);
  assert_int_equal(seg.iv_tweak, 0);
  assert_int_equal(seg.sector_size, 4096);
  assert_string_equal(seg.cipher, "aes-xts-plain64");
  assert_int_equal(luks2_digest_verify(loaded, f->vk, 64, &err), 0);
  luks2_free(loaded);
}

static void both_copies_checksummed_on_disk(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  check_copy(f->dev, 0, false, 1);
  check_copy(f->dev, HDR, true, 1);

  /* Same JSON area in both copies, different salts. */
  uint8_t *a = malloc(HDR), *b = malloc(HDR);
  assert_non_null(a);
  assert_non_null(b);
  read_dev(f->dev, a, HDR, 0);
  read_dev(f->dev, b, HDR, HDR);
  assert_memory_equal(a + 4096, b + 4096, HDR - 4096);
  assert_memory_not_equal(a + 104, b + 104, 64);
  free(a);
  free(b);
}

static void seqid_increments_per_write(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  for (int i = 0; i < 3; i++)
    assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  check_copy(f->dev, 0, false, 3);
  check_copy(f->dev, HDR, true, 3);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_seqid(loaded), 3);
  assert_int_equal(luks2_write(f->dev, loaded, &err), 0);
  assert_int_equal(luks2_seqid(loaded), 4);
  check_copy(f->dev, 0, false, 4);
  luks2_free(loaded);
}

static void flip_byte(struct bdev *dev, uint64_t off)
{
  uint8_t b;
  read_dev(dev, &b, 1, off);
  b ^= 0x01;
  write_dev(dev, &b, 1, off);
}

static void primary_corrupt_loads_secondary_and_write_repairs(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  flip_byte(f->dev, 4096 + 20); /* inside the primary JSON */

  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_non_null(luks2_load_warning(loaded));
  assert_non_null(strstr(luks2_load_warning(loaded), "primary header"));
  assert_non_null(strstr(luks2_load_warning(loaded), "checksum mismatch"));
  assert_int_equal(luks2_seqid(loaded), 2);
  assert_string_equal(luks2_uuid(loaded), TEST_UUID);

  assert_int_equal(luks2_write(f->dev, loaded, &err), 0);
  assert_null(luks2_load_warning(loaded));
  check_copy(f->dev, 0, false, 3);
  check_copy(f->dev, HDR, true, 3);
  luks2_free(loaded);
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_null(luks2_load_warning(loaded));
  luks2_free(loaded);
}

static void secondary_corrupt_loads_primary_with_warning(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  flip_byte(f->dev, HDR + 4096 + 30);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_string_equal(luks2_load_warning(loaded),
                      "secondary header at offset 16384: checksum mismatch");
  assert_int_equal(luks2_write(f->dev, loaded, &err), 0);
  check_copy(f->dev, HDR, true, 2);
  luks2_free(loaded);
}

static void both_copies_corrupt_is_einval(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  flip_byte(f->dev, 4096 + 20);
  flip_byte(f->dev, HDR + 4096 + 20);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), -EINVAL);
  assert_null(loaded);
  assert_string_equal(err.msg, "primary header: checksum mismatch");
}

static void primary_magic_wiped_finds_secondary_by_search(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct luks2_hdr *hdr = NULL;
  /* A 64 KiB header: the secondary sits at 65536, the fourth allowed offset. */
  struct luks2_format_params p = {
      .volume_key_size = 64, .sector_size = 512, .hdr_size = 65536, .data_offset = DATA_OFFSET};
  assert_int_equal(luks2_format(&p, f->vk, 64, &hdr, &err), 0);
  assert_int_equal(luks2_write(f->dev, hdr, &err), 0);
  uint8_t zero[8] = {0};
  write_dev(f->dev, zero, sizeof zero, 0);

  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_hdr_size(loaded), 65536);
  assert_string_equal(luks2_uuid(loaded), luks2_uuid(hdr));
  assert_string_equal(luks2_load_warning(loaded), "primary header: no LUKS2 magic");
  luks2_free(loaded);
  luks2_free(hdr);
}

static void corrupt_primary_hdr_size_is_not_trusted(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  const uint8_t size_64k[8] = {0, 0, 0, 0, 0, 1, 0, 0};
  write_dev(f->dev, size_64k, sizeof size_64k, 8);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_hdr_size(loaded), HDR);
  assert_string_equal(luks2_load_warning(loaded), "primary header: checksum mismatch");
  luks2_free(loaded);
}

static void newer_copy_wins(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  uint8_t *old = malloc(HDR);
  assert_non_null(old);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  read_dev(f->dev, old, HDR, HDR); /* secondary at seqid 1 */
  assert_int_equal(luks2_requirement_set(f->hdr, "x-test", true, &err), 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  write_dev(f->dev, old, HDR, HDR); /* stale secondary */

  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_seqid(loaded), 2);
  assert_string_equal(luks2_load_warning(loaded),
                      "secondary header at offset 16384: seqid 1 older than 2");
  const char *names[4];
  assert_int_equal(luks2_requirements(loaded, names, 4), 1);
  luks2_free(loaded);

  /* Now the primary is the stale one. */
  read_dev(f->dev, old, HDR, 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0); /* seqid 3 */
  write_dev(f->dev, old, HDR, 0);                         /* primary back to 2 */
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_seqid(loaded), 3);
  assert_string_equal(luks2_load_warning(loaded),
                      "primary header at offset 0: seqid 2 older than 3");
  luks2_free(loaded);
  free(old);
}

static void no_header_is_enodata(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), -ENODATA);
  assert_string_equal(err.msg, "no LUKS2 header");
  assert_null(loaded);

  const uint8_t luks1[8] = {'L', 'U', 'K', 'S', 0xba, 0xbe, 0, 1};
  write_dev(f->dev, luks1, sizeof luks1, 0);
  assert_int_equal(luks2_load(f->dev, &loaded, &err), -ENODATA);
  assert_string_equal(err.msg, "LUKS1 header found; only LUKS2 is supported");

  /* The keyslots area must be on the device too (cryptsetup: "too small"). */
  struct luks2_format_params big = {
      .volume_key_size = 64, .sector_size = 4096, .data_offset = 2 * DEV_SIZE};
  struct luks2_hdr *hdr = NULL;
  assert_int_equal(luks2_format(&big, f->vk, 64, &hdr, &err), 0);
  assert_int_equal(luks2_write(f->dev, hdr, &err), 0);
  luks2_free(hdr);
  assert_int_equal(luks2_load(f->dev, &loaded, &err), -EINVAL);
  assert_string_equal(err.msg, "device of 2097152 bytes too small: LUKS2 metadata and keyslots "
                               "areas need 4194304");

  struct bdev *tiny;
  assert_int_equal(bdev_open_memory(1024, &tiny, &err), 0);
  assert_int_equal(luks2_load(tiny, &loaded, &err), -ENODATA);
  bdev_close(tiny);
}

static void label_and_uuid(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct luks2_hdr *hdr = NULL;
  struct luks2_format_params p = {.uuid = "0B2F6C1E-7A4D-4C3B-9E8F-AABBCCDDEEFF",
                                  .volume_key_size = 64,
                                  .sector_size = 4096,
                                  .data_offset = DATA_OFFSET};
  assert_int_equal(luks2_format(&p, f->vk, 64, &hdr, &err), 0);
  assert_string_equal(luks2_uuid(hdr), "0b2f6c1e-7a4d-4c3b-9e8f-aabbccddeeff");
  assert_string_equal(luks2_label(hdr), "");
  luks2_free(hdr);

  p.uuid = "not-a-uuid";
  assert_int_equal(luks2_format(&p, f->vk, 64, &hdr, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "not-a-uuid"));

  p.uuid = NULL;
  assert_int_equal(luks2_format(&p, f->vk, 64, &hdr, &err), 0);
  const char *u = luks2_uuid(hdr);
  assert_int_equal(strlen(u), 36);
  assert_int_equal(u[14], '4'); /* version 4 */
  for (size_t i = 0; i < 36; i++)
    assert_true(u[i] == '-' || (u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f'));
  struct luks2_hdr *other = NULL;
  assert_int_equal(luks2_format(&p, f->vk, 64, &other, &err), 0);
  assert_string_not_equal(luks2_uuid(other), u);
  luks2_free(other);
  luks2_free(hdr);

  char label[60];
  memset(label, 'x', sizeof label - 1);
  label[sizeof label - 1] = '\0';
  p.label = label;
  assert_int_equal(luks2_format(&p, f->vk, 64, &hdr, &err), -EINVAL);
  label[47] = '\0';
  assert_int_equal(luks2_format(&p, f->vk, 64, &hdr, &err), 0);
  assert_int_equal(luks2_write(f->dev, hdr, &err), 0);
  luks2_free(hdr);
  assert_int_equal(luks2_load(f->dev, &hdr, &err), 0);
  assert_string_equal(luks2_label(hdr), label);
  luks2_free(hdr);
}

static void requirements_round_trip(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  const char *names[4];
  assert_int_equal(luks2_requirements(f->hdr, names, 4), 0);
  assert_int_equal(luks2_requirement_set(f->hdr, "nbdcrypt-reencrypt", true, &err), 0);
  assert_int_equal(luks2_requirement_set(f->hdr, "nbdcrypt-reencrypt", true, &err), 0);
  assert_int_equal(luks2_requirement_set(f->hdr, "other", true, &err), 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);

  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_requirements(loaded, names, 4), 2);
  assert_string_equal(names[0], "nbdcrypt-reencrypt");
  assert_string_equal(names[1], "other");
  struct json_object *config;
  assert_true(json_object_object_get_ex(luks2_metadata(loaded), "config", &config));
  assert_string_equal(json_object_to_json_string_ext(config, JSON_C_TO_STRING_PLAIN),
                      "{\"json_size\":\"12288\",\"keyslots_size\":\"1015808\","
                      "\"requirements\":{\"mandatory\":[\"nbdcrypt-reencrypt\",\"other\"]}}");

  assert_int_equal(luks2_requirement_set(loaded, "nbdcrypt-reencrypt", false, &err), 0);
  assert_int_equal(luks2_requirement_set(loaded, "other", false, &err), 0);
  assert_int_equal(luks2_requirements(loaded, names, 4), 0);
  assert_string_equal(json_object_to_json_string_ext(config, JSON_C_TO_STRING_PLAIN),
                      "{\"json_size\":\"12288\",\"keyslots_size\":\"1015808\"}");
  luks2_free(loaded);
}

static void write_refuses_invalid_metadata(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct json_object *segments;
  assert_true(json_object_object_get_ex(luks2_metadata(f->hdr), "segments", &segments));
  struct json_object *seg = json_object_object_get(segments, "0");
  json_object_object_add(seg, "encryption", json_object_new_string("cipher_null-ecb"));
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "segment 0: cipher 'cipher_null-ecb' not allowed"));
  /* Nothing reached the device. */
  uint8_t magic[6];
  read_dev(f->dev, magic, sizeof magic, 0);
  assert_memory_equal(magic, "\0\0\0\0\0\0", 6);
}

/* The segments of `cryptsetup reencrypt --init-only` (checked with 2.6.1):
 * backup copies overlapping the data segment, marked by a "backup-" flag. */
static void reencrypt_backup_segments_load(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct json_object *md = luks2_metadata(f->hdr), *segments, *digests, *digest, *seg0;
  assert_true(json_object_object_get_ex(md, "segments", &segments));
  assert_true(json_object_object_get_ex(md, "digests", &digests));
  assert_true(json_object_object_get_ex(digests, "0", &digest));
  assert_true(json_object_object_get_ex(segments, "0", &seg0));
  const char *flags[] = {"backup-previous", "backup-final"};
  for (int i = 0; i < 2; i++) {
    struct json_object *copy = NULL;
    assert_int_equal(json_object_deep_copy(seg0, &copy, NULL), 0);
    struct json_object *arr = json_object_new_array();
    json_object_array_add(arr, json_object_new_string(flags[i]));
    json_object_object_add(copy, "flags", arr);
    json_object_object_add(segments, i == 0 ? "1" : "2", copy);
    json_object_array_add(json_object_object_get(digest, "segments"),
                          json_object_new_string(i == 0 ? "1" : "2"));
  }
  assert_int_equal(luks2_requirement_set(f->hdr, "online-reencrypt-v2", true, &err), 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  struct luks2_segment seg;
  assert_int_equal(luks2_data_segment(loaded, &seg, &err), -EINVAL);
  assert_string_equal(err.msg, "3 segments: not a plain single-segment container");
  luks2_free(loaded);

  /* Without the flag the same copy is an overlapping segment. */
  json_object_object_del(json_object_object_get(segments, "2"), "flags");
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "segment 0: dynamic size but segment 2 lies after it"));
}

/* cryptsetup --header: data segment at offset 0, on another device.  Loads
 * like cryptsetup, and says so; offsets inside the keyslots area do not. */
static void detached_header_loads_and_is_flagged(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_false(luks2_detached_header(f->hdr));
  struct json_object *segments, *seg0;
  assert_true(json_object_object_get_ex(luks2_metadata(f->hdr), "segments", &segments));
  assert_true(json_object_object_get_ex(segments, "0", &seg0));
  json_object_object_add(seg0, "offset", json_object_new_string("0"));
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_true(luks2_detached_header(loaded));
  /* Never served from this device: the data would overwrite the header. */
  struct luks2_segment seg;
  memset(&seg, 0xff, sizeof seg);
  assert_int_equal(luks2_data_segment(loaded, &seg, &err), -EINVAL);
  assert_string_equal(err.msg, "segment 0: data at offset 0 (a detached header): the data is not "
                               "on this device");
  assert_int_equal(seg.offset, 0);
  assert_int_equal(seg.sector_size, 4096);
  luks2_free(loaded);

  json_object_object_add(seg0, "offset", json_object_new_string("65536"));
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "segment 0: offset 65536 inside the header and keyslots area"));
}

static void file_backed_round_trip(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  const char *dir = getenv("NBDCRYPT_TEST_TMPDIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/luks2-hdr-%ld.img", dir ? dir : "/tmp", (long)getpid());
  unlink(path);
  struct bdev *dev = NULL;
  assert_int_equal(bdev_open(path, BDEV_CREATE, DEV_SIZE, &dev, &err), 0);
  assert_int_equal(luks2_write(dev, f->hdr, &err), 0);
  bdev_close(dev);

  assert_int_equal(bdev_open(path, BDEV_RDONLY, 0, &dev, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(dev, &loaded, &err), 0);
  assert_string_equal(luks2_uuid(loaded), TEST_UUID);
  assert_int_equal(luks2_write(dev, loaded, &err), -EROFS);
  luks2_free(loaded);
  bdev_close(dev);
  unlink(path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(format_write_load_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(both_copies_checksummed_on_disk, setup, teardown),
      cmocka_unit_test_setup_teardown(seqid_increments_per_write, setup, teardown),
      cmocka_unit_test_setup_teardown(primary_corrupt_loads_secondary_and_write_repairs, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(secondary_corrupt_loads_primary_with_warning, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(both_copies_corrupt_is_einval, setup, teardown),
      cmocka_unit_test_setup_teardown(primary_magic_wiped_finds_secondary_by_search, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(corrupt_primary_hdr_size_is_not_trusted, setup, teardown),
      cmocka_unit_test_setup_teardown(newer_copy_wins, setup, teardown),
      cmocka_unit_test_setup_teardown(no_header_is_enodata, setup, teardown),
      cmocka_unit_test_setup_teardown(label_and_uuid, setup, teardown),
      cmocka_unit_test_setup_teardown(requirements_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(write_refuses_invalid_metadata, setup, teardown),
      cmocka_unit_test_setup_teardown(reencrypt_backup_segments_load, setup, teardown),
      cmocka_unit_test_setup_teardown(detached_header_loads_and_is_flagged, setup, teardown),
      cmocka_unit_test_setup_teardown(file_backed_round_trip, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
