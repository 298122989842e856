/* LUKS2 keyslots: add and open with each KDF, wrong secrets, priorities,
 * removal wiping the area, the 32-keyslot and keyslots-area limits, and the
 * area decrypted and AF-merged here independently with OpenSSL. */
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

#define MIB         (UINT64_C(1) << 20)
#define HDR         UINT64_C(16384)
#define DATA_OFFSET (16 * MIB)
#define DEV_SIZE    (17 * MIB)
#define AREA_SIZE   UINT64_C(258048)

static const uint8_t secret[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t other_secret[] = "correct horse battery staple";

struct fixture {
  struct bdev *dev;
  struct luks2_hdr *hdr;
  uint8_t vk[64];
};

static struct kdf_params pbkdf2_params(void)
{
  return (struct kdf_params){.type = KDF_PBKDF2, .hash = "sha256", .iterations = 1000};
}

static int setup_with(void **state, uint64_t data_offset, size_t vk_len)
{
  struct fixture *f = calloc(1, sizeof *f);
  struct nbdc_error err = {0};
  assert_non_null(f);
  for (size_t i = 0; i < sizeof f->vk; i++)
    f->vk[i] = (uint8_t)(0xa5 ^ (i * 13));
  assert_int_equal(bdev_open_memory(DEV_SIZE, &f->dev, &err), 0);
  struct luks2_format_params p = {
      .volume_key_size = vk_len, .sector_size = 4096, .data_offset = data_offset};
  assert_int_equal(luks2_format(&p, f->vk, vk_len, &f->hdr, &err), 0);
  *state = f;
  return 0;
}

static int setup(void **state)
{
  return setup_with(state, DATA_OFFSET, 64);
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  luks2_free(f->hdr);
  bdev_close(f->dev);
  free(f);
  return 0;
}

static void add_slot(struct fixture *f, int want, const uint8_t *s, size_t len,
                     const struct kdf_params *kdf, int expect_id)
{
  struct nbdc_error err = {0};
  int added = -2;
  int r = luks2_keyslot_add(f->hdr, f->dev, want, f->vk, 64, s, len, kdf, &added, &err);
  if (r != 0)
    fail_msg("luks2_keyslot_add: %s", err.msg);
  assert_int_equal(added, expect_id);
}

static void open_ok(struct fixture *f, const struct luks2_hdr *hdr, int slot, const uint8_t *s,
                    size_t len, int expect_opened)
{
  struct nbdc_error err = {0};
  uint8_t *vk = NULL;
  size_t vk_len = 0;
  int opened = -2;
  int r = luks2_keyslot_open(hdr, f->dev, slot, s, len, &vk, &vk_len, &opened, &err);
  if (r != 0)
    fail_msg("luks2_keyslot_open: %s", err.msg);
  assert_int_equal(vk_len, 64);
  assert_memory_equal(vk, f->vk, 64);
  assert_int_equal(opened, expect_opened);
  secmem_free(vk, vk_len);
}

static void round_trip(void **state, const struct kdf_params *kdf, const char *kdf_name)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  add_slot(f, -1, secret, sizeof secret, kdf, 0);
  open_ok(f, f->hdr, -1, secret, sizeof secret, 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);

  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  open_ok(f, loaded, -1, secret, sizeof secret, 0);
  open_ok(f, loaded, 0, secret, sizeof secret, 0);
  struct luks2_keyslot_info info;
  assert_int_equal(luks2_keyslot_info(loaded, 0, &info), 0);
  assert_string_equal(info.type, "luks2");
  assert_string_equal(info.kdf, kdf_name);
  assert_int_equal(info.key_size, 64);
  assert_int_equal(info.priority, 1);
  assert_int_equal(info.area_offset, 2 * HDR);
  assert_int_equal(info.area_size, AREA_SIZE);
  assert_int_equal(luks2_volume_key_size(loaded), 64);
  luks2_free(loaded);
}

static void pbkdf2_round_trip(void **state)
{
  struct kdf_params kdf = pbkdf2_params();
  round_trip(state, &kdf, "pbkdf2");
}

static void argon2i_round_trip(void **state)
{
  struct kdf_params kdf = {.type = KDF_ARGON2I, .time = 4, .memory_kib = 32, .cpus = 1};
  round_trip(state, &kdf, "argon2i");
}

static void argon2id_round_trip(void **state)
{
  struct kdf_params kdf = {.type = KDF_ARGON2ID, .time = 4, .memory_kib = 64, .cpus = 2};
  round_trip(state, &kdf, "argon2id");
}

/* Keyslot JSON exactly as cryptsetup 2.6.1 writes it (salt aside). */
static void keyslot_json_matches_cryptsetup(void **state)
{
  struct fixture *f = *state;
  struct kdf_params kdf = pbkdf2_params();
  add_slot(f, -1, secret, sizeof secret, &kdf, 0);
  struct json_object *keyslots, *ks, *kdf_obj, *salt;
  assert_true(json_object_object_get_ex(luks2_metadata(f->hdr), "keyslots", &keyslots));
  assert_true(json_object_object_get_ex(keyslots, "0", &ks));
  assert_true(json_object_object_get_ex(ks, "kdf", &kdf_obj));
  assert_true(json_object_object_get_ex(kdf_obj, "salt", &salt));
  assert_int_equal(strlen(json_object_get_string(salt)), 44); /* 32 bytes */
  char expect[1024];
  snprintf(expect, sizeof expect,
           "{\"type\":\"luks2\",\"key_size\":64,\"af\":{\"type\":\"luks1\",\"stripes\":4000,"
           "\"hash\":\"sha256\"},\"area\":{\"type\":\"raw\",\"offset\":\"32768\",\"size\":"
           "\"258048\",\"encryption\":\"aes-xts-plain64\",\"key_size\":64},\"kdf\":{\"type\":"
           "\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"%s\"}}",
           json_object_get_string(salt));
  assert_string_equal(
      json_object_to_json_string_ext(ks, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
      expect);
  struct json_object *digests, *digest;
  assert_true(json_object_object_get_ex(luks2_metadata(f->hdr), "digests", &digests));
  assert_true(json_object_object_get_ex(digests, "0", &digest));
  assert_string_equal(json_object_to_json_string_ext(json_object_object_get(digest, "keyslots"),
                                                     JSON_C_TO_STRING_PLAIN),
                      "[\"0\"]");
}

static void wrong_secret_is_eperm(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  add_slot(f, -1, secret, sizeof secret, &kdf, 0);
  add_slot(f, 5, other_secret, sizeof other_secret - 1, &kdf, 5);
  uint8_t *vk = (uint8_t *)1;
  size_t vk_len = 1;
  const uint8_t bad[] = "not the secret";
  assert_int_equal(
      luks2_keyslot_open(f->hdr, f->dev, -1, bad, sizeof bad - 1, &vk, &vk_len, NULL, &err),
      -EPERM);
  assert_string_equal(err.msg, "no keyslot matches the secret");
  assert_null(vk);
  assert_int_equal(vk_len, 0);
  assert_int_equal(luks2_keyslot_open(f->hdr, f->dev, 0, other_secret, sizeof other_secret - 1, &vk,
                                      &vk_len, NULL, &err),
                   -EPERM);
  assert_string_equal(err.msg, "keyslot 0: wrong secret");
  assert_int_equal(
      luks2_keyslot_open(f->hdr, f->dev, 3, secret, sizeof secret, &vk, &vk_len, NULL, &err),
      -ENOENT);
  open_ok(f, f->hdr, -1, other_secret, sizeof other_secret - 1, 5);
}

static void set_priority(struct luks2_hdr *hdr, const char *id, int priority)
{
  struct json_object *keyslots, *ks;
  assert_true(json_object_object_get_ex(luks2_metadata(hdr), "keyslots", &keyslots));
  assert_true(json_object_object_get_ex(keyslots, id, &ks));
  json_object_object_add(ks, "priority", json_object_new_int(priority));
}

static void priorities_order_and_ignore(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  add_slot(f, -1, secret, sizeof secret, &kdf, 0);
  add_slot(f, -1, secret, sizeof secret, &kdf, 1);
  open_ok(f, f->hdr, -1, secret, sizeof secret, 0);
  set_priority(f->hdr, "1", 2);
  open_ok(f, f->hdr, -1, secret, sizeof secret, 1);
  set_priority(f->hdr, "1", 0);
  set_priority(f->hdr, "0", 0);
  uint8_t *vk;
  size_t vk_len;
  assert_int_equal(
      luks2_keyslot_open(f->hdr, f->dev, -1, secret, sizeof secret, &vk, &vk_len, NULL, &err),
      -EPERM);
  open_ok(f, f->hdr, 1, secret, sizeof secret, 1); /* by id it still opens */
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  struct luks2_keyslot_info info;
  assert_int_equal(luks2_keyslot_info(loaded, 1, &info), 0);
  assert_int_equal(info.priority, 0);
  luks2_free(loaded);
}

static void remove_wipes_area_after_write(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  add_slot(f, -1, secret, sizeof secret, &kdf, 0);
  add_slot(f, -1, other_secret, sizeof other_secret - 1, &kdf, 1);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);

  struct luks2_keyslot_info info;
  assert_int_equal(luks2_keyslot_info(f->hdr, 0, &info), 0);
  uint8_t *before = malloc(AREA_SIZE), *after = malloc(AREA_SIZE);
  assert_non_null(before);
  assert_non_null(after);
  assert_int_equal(bdev_pread(f->dev, before, AREA_SIZE, info.area_offset, &err), 0);

  assert_int_equal(luks2_keyslot_remove(f->hdr, 0, &err), 0);
  assert_int_equal(luks2_keyslot_info(f->hdr, 0, &info), -ENOENT);
  assert_int_equal(luks2_keyslot_remove(f->hdr, 0, &err), -ENOENT);
  /* Not yet wiped: the header on disk still names keyslot 0. */
  assert_int_equal(bdev_pread(f->dev, after, AREA_SIZE, 2 * HDR, &err), 0);
  assert_memory_equal(before, after, AREA_SIZE);

  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  assert_int_equal(bdev_pread(f->dev, after, AREA_SIZE, 2 * HDR, &err), 0);
  size_t same = 0;
  for (size_t i = 0; i < AREA_SIZE; i++)
    same += before[i] == after[i];
  assert_true(same < AREA_SIZE / 64); /* random bytes: about 1/256 coincide */

  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  int ids[LUKS2_MAX_KEYSLOTS];
  assert_int_equal(luks2_keyslot_list(loaded, ids, LUKS2_MAX_KEYSLOTS), 1);
  assert_int_equal(ids[0], 1);
  uint8_t *vk;
  size_t vk_len;
  assert_int_equal(
      luks2_keyslot_open(loaded, f->dev, -1, secret, sizeof secret, &vk, &vk_len, NULL, &err),
      -EPERM);
  open_ok(f, loaded, -1, other_secret, sizeof other_secret - 1, 1);
  luks2_free(loaded);
  free(before);
  free(after);
}

static void area_of_removed_slot_not_reused_before_write(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  add_slot(f, -1, secret, sizeof secret, &kdf, 0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  assert_int_equal(luks2_keyslot_remove(f->hdr, 0, &err), 0);
  add_slot(f, -1, other_secret, sizeof other_secret - 1, &kdf, 0);
  struct luks2_keyslot_info info;
  assert_int_equal(luks2_keyslot_info(f->hdr, 0, &info), 0);
  assert_int_equal(info.area_offset, 2 * HDR + AREA_SIZE);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0); /* wipes the old area */
  open_ok(f, f->hdr, 0, other_secret, sizeof other_secret - 1, 0);
  /* After the wipe the first area is free again. */
  add_slot(f, -1, secret, sizeof secret, &kdf, 1);
  assert_int_equal(luks2_keyslot_info(f->hdr, 1, &info), 0);
  assert_int_equal(info.area_offset, 2 * HDR);
}

static void thirty_two_keyslots_max(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  for (int i = 0; i < LUKS2_MAX_KEYSLOTS; i++)
    add_slot(f, -1, secret, sizeof secret, &kdf, i);
  int added = -2;
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 64, secret, sizeof secret, &kdf, &added, &err),
      -ENOSPC);
  assert_string_equal(err.msg, "all 32 keyslots are in use");
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, 40, f->vk, 64, secret, sizeof secret, &kdf, &added, &err),
      -EINVAL);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_keyslot_list(loaded, NULL, 0), 32);
  open_ok(f, loaded, 31, secret, sizeof secret, 31);
  luks2_free(loaded);
}

static int setup_small_area(void **state)
{
  /* Keyslots area of 3 * 258048 + 4096 bytes: room for three 64-byte keys. */
  return setup_with(state, 2 * HDR + 3 * AREA_SIZE + 4096, 64);
}

static void keyslots_area_full(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  for (int i = 0; i < 3; i++)
    add_slot(f, -1, secret, sizeof secret, &kdf, i);
  int added;
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 64, secret, sizeof secret, &kdf, &added, &err),
      -ENOSPC);
  assert_non_null(strstr(err.msg, "no free 258048-byte area"));
  assert_int_equal(luks2_keyslot_remove(f->hdr, 1, &err), 0);
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 64, secret, sizeof secret, &kdf, &added, &err),
      -ENOSPC);
  assert_non_null(strstr(err.msg, "freed by the next write"));
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  add_slot(f, -1, secret, sizeof secret, &kdf, 1);
}

static void add_checks_key_and_kdf(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  uint8_t wrong_vk[64];
  memcpy(wrong_vk, f->vk, 64);
  wrong_vk[63] ^= 1;
  int added;
  assert_int_equal(luks2_keyslot_add(f->hdr, f->dev, -1, wrong_vk, 64, secret, sizeof secret, &kdf,
                                     &added, &err),
                   -EPERM);
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 48, secret, sizeof secret, &kdf, &added, &err),
      -EINVAL);
  kdf.iterations = 999;
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 64, secret, sizeof secret, &kdf, &added, &err),
      -EINVAL);
  assert_non_null(strstr(err.msg, "999"));
  struct kdf_params argon = {.type = KDF_ARGON2ID, .time = 3, .memory_kib = 32, .cpus = 1};
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 64, secret, sizeof secret, &argon, &added, &err),
      -EINVAL);
  assert_non_null(strstr(err.msg, "time 3"));
  argon.time = 4;
  argon.cpus = 5;
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 64, secret, sizeof secret, &argon, &added, &err),
      -EINVAL);
  kdf = pbkdf2_params();
  add_slot(f, 7, secret, sizeof secret, &kdf, 7);
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, 7, f->vk, 64, secret, sizeof secret, &kdf, &added, &err),
      -EEXIST);
  assert_int_equal(luks2_keyslot_list(f->hdr, NULL, 0), 1);
}

static void digest_verify(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_digest_verify(f->hdr, f->vk, 64, &err), 0);
  uint8_t bad[64];
  memcpy(bad, f->vk, 64);
  bad[0] ^= 0x80;
  assert_int_equal(luks2_digest_verify(f->hdr, bad, 64, &err), -EPERM);
  assert_int_equal(luks2_digest_verify(f->hdr, f->vk, 32, &err), -EPERM);
}

static void removal_updates_tokens(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  add_slot(f, -1, secret, sizeof secret, &kdf, 0);
  add_slot(f, -1, secret, sizeof secret, &kdf, 1);
  struct json_object *t0 = json_tokener_parse(
      "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\",\"kek_id\":\"k\","
      "\"mode\":\"kek\"}");
  struct json_object *t1 = json_tokener_parse("{\"type\":\"other\",\"keyslots\":[\"0\",\"1\"]}");
  int id;
  assert_int_equal(luks2_token_add(f->hdr, -1, t0, &id, &err), 0);
  assert_int_equal(luks2_token_add(f->hdr, -1, t1, &id, &err), 0);
  assert_int_equal(luks2_keyslot_remove(f->hdr, 0, &err), 0);
  assert_null(luks2_token_get(f->hdr, 0));
  assert_string_equal(
      json_object_to_json_string_ext(json_object_object_get(luks2_token_get(f->hdr, 1), "keyslots"),
                                     JSON_C_TO_STRING_PLAIN),
      "[\"1\"]");
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
}

/* Independent unlock: PBKDF2, XTS over 512-byte units from 0 at the area
 * start, and the LUKS AF merge, all written here against OpenSSL. */
static void diffuse(uint8_t *buf, size_t len)
{
  uint8_t out[32];
  for (size_t j = 0, off = 0; off < len; j++, off += 32) {
    size_t chunk = len - off < 32 ? len - off : 32;
    uint8_t iv[4] = {(uint8_t)(j >> 24), (uint8_t)(j >> 16), (uint8_t)(j >> 8), (uint8_t)j};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    EVP_DigestUpdate(ctx, iv, 4);
    EVP_DigestUpdate(ctx, buf + off, chunk);
    EVP_DigestFinal_ex(ctx, out, NULL);
    EVP_MD_CTX_free(ctx);
    memcpy(buf + off, out, chunk);
  }
}

static void area_decrypts_independently(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  add_slot(f, -1, secret, sizeof secret, &kdf, 0);

  struct json_object *keyslots, *ks, *kdf_obj, *salt_obj;
  assert_true(json_object_object_get_ex(luks2_metadata(f->hdr), "keyslots", &keyslots));
  assert_true(json_object_object_get_ex(keyslots, "0", &ks));
  assert_true(json_object_object_get_ex(ks, "kdf", &kdf_obj));
  assert_true(json_object_object_get_ex(kdf_obj, "salt", &salt_obj));
  uint8_t salt[48];
  int salt_len = EVP_DecodeBlock(salt, (const unsigned char *)json_object_get_string(salt_obj), 44);
  assert_int_equal(salt_len, 33); /* 32 bytes + one for the '=' pad */

  uint8_t area_key[64];
  assert_int_equal(PKCS5_PBKDF2_HMAC((const char *)secret, sizeof secret, salt, 32, 1000,
                                     EVP_sha256(), sizeof area_key, area_key),
                   1);
  const size_t split_len = 256000;
  uint8_t *area = malloc(split_len), *plain = malloc(split_len);
  assert_non_null(area);
  assert_non_null(plain);
  assert_int_equal(bdev_pread(f->dev, area, split_len, 2 * HDR, &err), 0);
  for (size_t unit = 0; unit < split_len / 512; unit++) {
    uint8_t iv[16] = {0};
    for (int b = 0; b < 8; b++)
      iv[b] = (uint8_t)(unit >> (8 * b));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    assert_int_equal(EVP_DecryptInit_ex(ctx, EVP_aes_256_xts(), NULL, area_key, iv), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, plain + unit * 512, &outl, area + unit * 512, 512), 1);
    assert_int_equal(outl, 512);
    EVP_CIPHER_CTX_free(ctx);
  }
  uint8_t buf[64] = {0};
  for (size_t i = 0; i < 3999; i++) {
    for (size_t b = 0; b < 64; b++)
      buf[b] ^= plain[i * 64 + b];
    diffuse(buf, 64);
  }
  for (size_t b = 0; b < 64; b++)
    buf[b] ^= plain[(size_t)3999 * 64 + b];
  assert_memory_equal(buf, f->vk, 64);
  free(area);
  free(plain);
}

static int setup_vk32(void **state)
{
  return setup_with(state, DATA_OFFSET, 32);
}

static void aes128_xts_volume_key(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct kdf_params kdf = pbkdf2_params();
  int added;
  assert_int_equal(luks2_volume_key_size(f->hdr), 32);
  assert_int_equal(
      luks2_keyslot_add(f->hdr, f->dev, -1, f->vk, 32, secret, sizeof secret, &kdf, &added, &err),
      0);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  struct luks2_keyslot_info info;
  assert_int_equal(luks2_keyslot_info(loaded, 0, &info), 0);
  assert_int_equal(info.key_size, 32);
  assert_int_equal(info.area_size, 131072); /* 128000 rounded up to 4 KiB */
  uint8_t *vk;
  size_t vk_len;
  assert_int_equal(
      luks2_keyslot_open(loaded, f->dev, -1, secret, sizeof secret, &vk, &vk_len, NULL, &err), 0);
  assert_int_equal(vk_len, 32);
  assert_memory_equal(vk, f->vk, 32);
  secmem_free(vk, vk_len);
  luks2_free(loaded);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(pbkdf2_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(argon2i_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(argon2id_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(keyslot_json_matches_cryptsetup, setup, teardown),
      cmocka_unit_test_setup_teardown(wrong_secret_is_eperm, setup, teardown),
      cmocka_unit_test_setup_teardown(priorities_order_and_ignore, setup, teardown),
      cmocka_unit_test_setup_teardown(remove_wipes_area_after_write, setup, teardown),
      cmocka_unit_test_setup_teardown(area_of_removed_slot_not_reused_before_write, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(thirty_two_keyslots_max, setup, teardown),
      cmocka_unit_test_setup_teardown(keyslots_area_full, setup_small_area, teardown),
      cmocka_unit_test_setup_teardown(add_checks_key_and_kdf, setup, teardown),
      cmocka_unit_test_setup_teardown(digest_verify, setup, teardown),
      cmocka_unit_test_setup_teardown(removal_updates_tokens, setup, teardown),
      cmocka_unit_test_setup_teardown(area_decrypts_independently, setup, teardown),
      cmocka_unit_test_setup_teardown(aes128_xts_volume_key, setup_vk32, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
