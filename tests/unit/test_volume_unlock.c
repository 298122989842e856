/* volume: format a disk bound to a native KEK, unlock it again, and the
 * failures a user meets: wrong KEK, KEK gone, provider unknown, disk mid
 * re-encryption, passphrase keyslots. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/volume.h"

struct fixture {
  char dir[256];
  struct keys_config *cfg;
  struct bdev *dev;
};

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof *f);
  struct nbdc_error err = {0};
  char json[1024];
  assert_int_equal(unit_tmpdir_make(f->dir, sizeof f->dir, "volume-unlock"), 0);
  snprintf(json, sizeof json,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": "
           "\"%s/keystore.json\"}, \"other\": {\"type\": \"native\", \"keystore\": "
           "\"%s/other.json\"}}, \"default_provider\": \"local\"}",
           f->dir, f->dir);
  assert_int_equal(keys_config_parse(json, "test", &f->cfg, &err), 0);
  assert_int_equal(bdev_open_memory(32u << 20, &f->dev, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  bdev_close(f->dev);
  keys_config_free(f->cfg);
  assert_int_equal(unit_tmpdir_remove(f->dir), 0);
  free(f);
  return 0;
}

static void format_disk(struct fixture *f, uint32_t sector_size, char kek_id[KEYS_ID_MAX])
{
  struct nbdc_error err = {0};
  struct volume_format_opts fo = {.cfg = f->cfg, .sector_size = sector_size, .label = "t"};
  int r = volume_format(f->dev, &fo, kek_id, &err);
  if (r < 0)
    fail_msg("volume_format: %s", err.msg);
}

static void test_format_then_open(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX];
  format_disk(f, 4096, kek_id);

  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  int r = volume_open(f->dev, &uo, &vol, &err);
  if (r < 0)
    fail_msg("volume_open: %s", err.msg);
  assert_string_equal(volume_provider(vol), "local");
  assert_string_equal(volume_kek_id(vol), kek_id);
  size_t len;
  const uint8_t *key = volume_key(vol, &len);
  assert_int_equal(len, 64);
  static const uint8_t zero[64];
  assert_memory_not_equal(key, zero, 64);
  assert_int_equal(volume_segment(vol)->sector_size, 4096);
  assert_int_equal(volume_segment(vol)->offset, 16u << 20);
  uint64_t size;
  assert_int_equal(volume_data_size(vol, 32u << 20, &size, &err), 0);
  assert_int_equal(size, 16u << 20);
  /* A device shorter than the data offset is a truncated disk. */
  assert_int_equal(volume_data_size(vol, 1u << 20, &size, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "truncated"));

  /* The volume key opens the keyslot's digest; another does not. */
  assert_int_equal(luks2_digest_verify(volume_hdr(vol), key, len, &err), 0);
  uint8_t other[64];
  memcpy(other, key, 64);
  other[7] ^= 1;
  assert_int_equal(luks2_digest_verify(volume_hdr(vol), other, 64, &err), -EPERM);
  volume_close(vol);
}

static void test_kek_missing_names_disk_provider_and_kek(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX];
  format_disk(f, 512, kek_id);

  struct keys_provider *p = NULL;
  assert_int_equal(keys_provider_open(f->cfg, "local", &p, &err), 0);
  assert_int_equal(keys_kek_destroy(p, kek_id, &err), 0);
  keys_provider_close(p);

  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  assert_true(volume_open(f->dev, &uo, &vol, &err) < 0);
  assert_null(vol);
  assert_non_null(strstr(err.msg, kek_id));
  assert_non_null(strstr(err.msg, "local"));
  assert_non_null(strstr(err.msg, "disk "));
}

static void test_wrong_kek_is_refused(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX], other_id[KEYS_ID_MAX];
  struct keys_provider *p = NULL;
  assert_int_equal(keys_provider_open(f->cfg, "local", &p, &err), 0);
  assert_int_equal(keys_kek_create(p, "other", other_id, &err), 0);
  keys_provider_close(p);
  format_disk(f, 4096, kek_id);

  /* Point the disk's token at another existing KEK: the keyslot must refuse it. */
  struct luks2_hdr *hdr = NULL;
  assert_int_equal(luks2_load(f->dev, &hdr, &err), 0);
  int id = luks2_token_next(hdr, -1, "nbdcrypt");
  assert_true(id >= 0);
  struct json_object *tok = json_tokener_parse(
      json_object_to_json_string_ext(luks2_token_get(hdr, id), JSON_C_TO_STRING_PLAIN));
  json_object_object_add(tok, "kek_id", json_object_new_string(other_id));
  assert_int_equal(luks2_token_remove(hdr, id, &err), 0);
  assert_int_equal(luks2_token_add(hdr, id, tok, NULL, &err), 0);
  assert_int_equal(luks2_write(f->dev, hdr, &err), 0);
  luks2_free(hdr);

  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  assert_int_equal(volume_open(f->dev, &uo, &vol, &err), -EPERM);
  assert_non_null(strstr(err.msg, other_id));
  assert_non_null(strstr(err.msg, "wrong KEK"));

  /* A passphrase that is not the KEK fails the same way. */
  static const uint8_t wrong[32] = {1, 2, 3};
  struct volume_unlock_opts po = {.passphrase = wrong, .passphrase_len = 32, .keyslot = -1};
  assert_true(volume_open(f->dev, &po, &vol, &err) < 0);
  assert_int_equal(err.code, EPERM);
  assert_non_null(strstr(err.msg, "passphrase"));
}

static void test_unknown_provider(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX];
  struct keys_config *cfg = NULL;
  char json[512];
  format_disk(f, 4096, kek_id);
  /* A host whose configuration does not know provider "local". */
  snprintf(json, sizeof json,
           "{\"providers\": {\"elsewhere\": {\"type\": \"native\", \"keystore\": "
           "\"%s/x.json\"}}}",
           f->dir);
  assert_int_equal(keys_config_parse(json, "host", &cfg, &err), 0);
  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = cfg, .keyslot = -1};
  assert_true(volume_open(f->dev, &uo, &vol, &err) < 0);
  assert_non_null(strstr(err.msg, "local"));
  keys_config_free(cfg);
}

static void test_requirement_flag_refused(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX];
  format_disk(f, 4096, kek_id);
  struct luks2_hdr *hdr = NULL;
  assert_int_equal(luks2_load(f->dev, &hdr, &err), 0);
  assert_int_equal(luks2_requirement_set(hdr, "nbdcrypt-reencrypt", true, &err), 0);
  assert_int_equal(luks2_write(f->dev, hdr, &err), 0);
  luks2_free(hdr);

  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  assert_int_equal(volume_open(f->dev, &uo, &vol, &err), -EBUSY);
  assert_non_null(strstr(err.msg, "middle of a re-encryption"));
  assert_non_null(strstr(err.msg, "nbdcrypt-reencrypt"));
}

static void test_not_luks(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  assert_int_equal(volume_open(f->dev, &uo, &vol, &err), -ENODATA);
  assert_non_null(strstr(err.msg, "LUKS2"));
}

static void test_too_small_for_format(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct bdev *small = NULL;
  char kek_id[KEYS_ID_MAX];
  assert_int_equal(bdev_open_memory(8u << 20, &small, &err), 0);
  struct volume_format_opts fo = {.cfg = f->cfg};
  assert_int_equal(volume_format(small, &fo, kek_id, &err), -ENOSPC);
  assert_non_null(strstr(err.msg, "too small"));
  bdev_close(small);
}

/* A header whose data segment starts at 0 (cryptsetup --header): refused on
 * its own device, opened as a detached header, the offset counting on the
 * data device. */
static void test_detached_header_opens_only_as_detached(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  char kek_id[KEYS_ID_MAX];
  format_disk(f, 4096, kek_id);
  struct luks2_hdr *hdr = NULL;
  assert_int_equal(luks2_load(f->dev, &hdr, &err), 0);
  struct luks2_segment_spec spec = {
      .offset = 0, .dynamic = true, .crypt = true, .sector_size = 4096, .digest = 0};
  if (luks2_segments_set(hdr, &spec, 1, &err) < 0 || luks2_write(f->dev, hdr, &err) < 0)
    fail_msg("making a detached header: %s", err.msg);
  luks2_free(hdr);

  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  assert_int_equal(volume_open(f->dev, &uo, &vol, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "detached header"));
  uo.detached = true;
  if (volume_open(f->dev, &uo, &vol, &err) < 0)
    fail_msg("volume_open detached: %s", err.msg);
  assert_string_equal(volume_kek_id(vol), kek_id);
  assert_int_equal(volume_segment(vol)->offset, 0);
  uint64_t size = 0;
  assert_int_equal(volume_data_size(vol, 8u << 20, &size, &err), 0);
  assert_int_equal(size, 8u << 20);
  volume_close(vol);
}

/* The filter's check of a segment against its device, shared by check and info. */
static void test_segment_that_does_not_fit(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  uint64_t size = 1;
  struct luks2_segment far = {.offset = 1ull << 50, .dynamic = true, .sector_size = 4096};
  assert_int_equal(volume_segment_data_size(&far, "U", 32u << 20, &size, &err), -EINVAL);
  assert_string_equal(err.msg, "disk U is truncated: 33554432 bytes, but its data starts at "
                               "1125899906842624");
  struct luks2_segment longer = {.offset = 16u << 20, .size = 1u << 30, .sector_size = 512};
  assert_int_equal(volume_segment_data_size(&longer, "U", 32u << 20, &size, &err), -EINVAL);
  assert_string_equal(err.msg, "disk U is truncated: its data segment needs 1073741824 bytes at "
                               "offset 16777216 but the device has 33554432");
  struct luks2_segment fits = {.offset = 0, .size = 1u << 20, .sector_size = 512};
  assert_int_equal(volume_segment_data_size(&fits, "U", 1u << 20, &size, &err), 0);
  assert_int_equal(size, 1u << 20);
  struct luks2_segment dyn = {.offset = 4096, .dynamic = true, .sector_size = 4096};
  assert_int_equal(volume_segment_data_size(&dyn, "U", 3 * 4096 + 100, &size, &err), 0);
  assert_int_equal(size, 2 * 4096);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_format_then_open, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kek_missing_names_disk_provider_and_kek, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_wrong_kek_is_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_provider, setup, teardown),
      cmocka_unit_test_setup_teardown(test_requirement_flag_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_luks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_too_small_for_format, setup, teardown),
      cmocka_unit_test_setup_teardown(test_detached_header_opens_only_as_detached, setup, teardown),
      cmocka_unit_test(test_segment_that_does_not_fit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
