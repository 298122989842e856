/* luks2_format: the metadata of a new container, shaped like cryptsetup
 * 2.6.1's luksFormat output, and the parameter checks. */
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

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/luks2.h"

#define MIB (UINT64_C(1) << 20)

static uint8_t vk[64];

static struct luks2_hdr *format_ok(const struct luks2_format_params *p)
{
  struct nbdc_error err = {0};
  struct luks2_hdr *hdr = NULL;
  int r = luks2_format(p, vk, p->volume_key_size, &hdr, &err);
  if (r != 0)
    fail_msg("luks2_format: %s", err.msg);
  return hdr;
}

static const char *member_text(struct json_object *obj, const char *key)
{
  struct json_object *val;
  assert_true(json_object_object_get_ex(obj, key, &val));
  return json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
}

static void defaults_match_cryptsetup(void **state)
{
  (void)state;
  struct luks2_format_params p = {.volume_key_size = 64, .sector_size = 4096};
  struct luks2_hdr *hdr = format_ok(&p);
  struct json_object *md = luks2_metadata(hdr);
  assert_string_equal(member_text(md, "keyslots"), "{}");
  assert_string_equal(member_text(md, "tokens"), "{}");
  assert_string_equal(member_text(md, "segments"),
                      "{\"0\":{\"type\":\"crypt\",\"offset\":\"16777216\",\"size\":\"dynamic\","
                      "\"iv_tweak\":\"0\",\"encryption\":\"aes-xts-plain64\",\"sector_size\":4096}"
                      "}");
  assert_string_equal(member_text(md, "config"),
                      "{\"json_size\":\"12288\",\"keyslots_size\":\"16744448\"}");
  /* Top-level order as cryptsetup writes it. */
  const char *order[] = {"keyslots", "tokens", "segments", "digests", "config"};
  size_t i = 0;
  json_object_object_foreach(md, key, section)
  {
    (void)section;
    assert_true(i < 5);
    assert_string_equal(key, order[i++]);
  }
  assert_int_equal(i, 5);

  struct json_object *digests, *digest, *val;
  assert_true(json_object_object_get_ex(md, "digests", &digests));
  assert_int_equal(json_object_object_length(digests), 1);
  assert_true(json_object_object_get_ex(digests, "0", &digest));
  assert_string_equal(member_text(digest, "type"), "\"pbkdf2\"");
  assert_string_equal(member_text(digest, "keyslots"), "[]");
  assert_string_equal(member_text(digest, "segments"), "[\"0\"]");
  assert_string_equal(member_text(digest, "hash"), "\"sha256\"");
  assert_true(json_object_object_get_ex(digest, "iterations", &val));
  assert_true(json_object_is_type(val, json_type_int));
  assert_true(json_object_get_int(val) >= 1000);

  /* The digest value is PBKDF2-SHA256(vk, salt, iterations), 32 bytes. */
  uint8_t salt[48], expect[48], computed[32];
  assert_true(json_object_object_get_ex(digest, "salt", &val));
  assert_int_equal(strlen(json_object_get_string(val)), 44);
  EVP_DecodeBlock(salt, (const unsigned char *)json_object_get_string(val), 44);
  int iterations = json_object_get_int(json_object_object_get(digest, "iterations"));
  assert_true(json_object_object_get_ex(digest, "digest", &val));
  assert_int_equal(strlen(json_object_get_string(val)), 44);
  EVP_DecodeBlock(expect, (const unsigned char *)json_object_get_string(val), 44);
  assert_int_equal(
      PKCS5_PBKDF2_HMAC((const char *)vk, 64, salt, 32, iterations, EVP_sha256(), 32, computed), 1);
  assert_memory_equal(computed, expect, 32);

  assert_int_equal(luks2_hdr_size(hdr), 16384);
  assert_int_equal(luks2_keyslots_size(hdr), 16744448);
  assert_int_equal(luks2_volume_key_size(hdr), 64);
  assert_int_equal(luks2_keyslot_list(hdr, NULL, 0), 0);
  assert_int_equal(luks2_token_next(hdr, -1, NULL), -1);
  luks2_free(hdr);
}

static void explicit_geometry(void **state)
{
  (void)state;
  struct luks2_format_params p = {.label = "data",
                                  .volume_key_size = 32,
                                  .sector_size = 512,
                                  .hdr_size = 32768,
                                  .data_offset = 4 * MIB,
                                  .data_size = 100 * MIB};
  struct luks2_hdr *hdr = format_ok(&p);
  assert_int_equal(luks2_hdr_size(hdr), 32768);
  assert_int_equal(luks2_keyslots_size(hdr), 4 * MIB - 65536);
  assert_string_equal(member_text(luks2_metadata(hdr), "config"),
                      "{\"json_size\":\"28672\",\"keyslots_size\":\"4128768\"}");
  struct luks2_segment seg;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_data_segment(hdr, &seg, &err), 0);
  assert_int_equal(seg.offset, 4 * MIB);
  assert_int_equal(seg.size, 100 * MIB);
  assert_false(seg.dynamic);
  assert_int_equal(seg.sector_size, 512);
  assert_int_equal(luks2_volume_key_size(hdr), 32);
  assert_int_equal(luks2_digest_verify(hdr, vk, 32, &err), 0);

  /* Written and loaded back on a device of the right size. */
  struct bdev *dev;
  assert_int_equal(bdev_open_memory(4 * MIB, &dev, &err), 0);
  assert_int_equal(luks2_write(dev, hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(dev, &loaded, &err), 0);
  assert_string_equal(luks2_label(loaded), "data");
  assert_int_equal(luks2_seqid(loaded), 1);
  assert_int_equal(luks2_data_segment(loaded, &seg, &err), 0);
  assert_int_equal(seg.size, 100 * MIB);
  luks2_free(loaded);
  bdev_close(dev);
  luks2_free(hdr);
}

static void keyslots_area_capped_at_128_mib(void **state)
{
  (void)state;
  struct luks2_format_params p = {
      .volume_key_size = 64, .sector_size = 4096, .data_offset = 256 * MIB};
  struct luks2_hdr *hdr = format_ok(&p);
  assert_int_equal(luks2_keyslots_size(hdr), 128 * MIB);
  struct luks2_segment seg;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_data_segment(hdr, &seg, &err), 0);
  assert_int_equal(seg.offset, 256 * MIB);
  luks2_free(hdr);
}

static void expect_einval(struct luks2_format_params p, size_t vk_len, const char *message)
{
  struct nbdc_error err = {0};
  struct luks2_hdr *hdr = (struct luks2_hdr *)&err;
  assert_int_equal(luks2_format(&p, vk, vk_len, &hdr, &err), -EINVAL);
  assert_null(hdr);
  if (!strstr(err.msg, message))
    fail_msg("expected \"%s\" in \"%s\"", message, err.msg);
}

static void bad_parameters(void **state)
{
  (void)state;
  const struct luks2_format_params good = {.volume_key_size = 64, .sector_size = 4096};
  struct luks2_format_params p = good;
  p.volume_key_size = 48;
  expect_einval(p, 48, "volume key size 48 not allowed");
  expect_einval(good, 32, "volume key of 32 bytes, expected 64");
  p = good;
  p.sector_size = 1000;
  expect_einval(p, 64, "sector size 1000 not allowed");
  p.sector_size = 8192;
  expect_einval(p, 64, "sector size 8192 not allowed");
  p.sector_size = 256;
  expect_einval(p, 64, "sector size 256 not allowed");
  p = good;
  p.hdr_size = 20000;
  expect_einval(p, 64, "header size 20000 not allowed");
  p.hdr_size = 8 * MIB;
  expect_einval(p, 64, "header size 8388608 not allowed");
  p = good;
  p.data_offset = 16 * MIB + 512;
  expect_einval(p, 64, "data offset 16777728 not aligned to 4096");
  p.data_offset = 32768;
  expect_einval(p, 64, "leaves no keyslots area");
  p = good;
  p.data_size = 4096 * 10 + 512;
  expect_einval(p, 64, "data size 41472 not a multiple of sector size 4096");
  p = good;
  p.uuid = "0b2f6c1e-7a4d-4c3b-9e8f-11223344556g";
  expect_einval(p, 64, "not of the form 8-4-4-4-12");
}

int main(void)
{
  for (size_t i = 0; i < sizeof vk; i++)
    vk[i] = (uint8_t)(i + 100);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_match_cryptsetup),
      cmocka_unit_test(explicit_geometry),
      cmocka_unit_test(keyslots_area_capped_at_128_mib),
      cmocka_unit_test(bad_parameters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
