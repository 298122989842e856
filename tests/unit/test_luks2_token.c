/* LUKS2 tokens: add, get, iterate, remove, the nbdcrypt token's fields and
 * the errors for malformed tokens; tokens survive a write and a load. */
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

static const uint8_t secret[32] = "token-test-secret-32-bytes-long!";

struct fixture {
  struct bdev *dev;
  struct luks2_hdr *hdr;
};

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof *f);
  struct nbdc_error err = {0};
  uint8_t vk[64];
  assert_non_null(f);
  memset(vk, 0x3c, sizeof vk);
  vk[0] = 1;
  assert_int_equal(bdev_open_memory(UINT64_C(2) << 20, &f->dev, &err), 0);
  struct luks2_format_params p = {
      .volume_key_size = 64, .sector_size = 512, .data_offset = UINT64_C(1) << 20};
  assert_int_equal(luks2_format(&p, vk, 64, &f->hdr, &err), 0);
  struct kdf_params kdf = {.type = KDF_PBKDF2, .hash = "sha256", .iterations = 1000};
  for (int i = 0; i < 2; i++)
    assert_int_equal(
        luks2_keyslot_add(f->hdr, f->dev, -1, vk, 64, secret, sizeof secret, &kdf, NULL, &err), 0);
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

/* Add the token JSON text; returns the result and leaves err filled. */
static int add_text(struct fixture *f, int id, const char *text, int *added, struct nbdc_error *err)
{
  struct json_object *tok = json_tokener_parse(text);
  assert_non_null(tok);
  int r = luks2_token_add(f->hdr, id, tok, added, err);
  if (r < 0)
    json_object_put(tok); /* ownership passes only on success */
  return r;
}

#define KEK_TOKEN                                                                                  \
  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"1\"],\"provider\":\"corp-kms\","                         \
  "\"kek_id\":\"7f3e01\",\"mode\":\"kek\"}"
#define WRAPPED_TOKEN                                                                              \
  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"local\",\"kek_id\":\"k2\","          \
  "\"mode\":\"kms-wrapped\",\"wrapped\":\"AAECAw==\",\"iv\":\"AAAAAAAAAAAAAAAA\","                 \
  "\"tag\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}"

static void add_get_next_remove(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  int id = -2;
  assert_int_equal(luks2_token_next(f->hdr, -1, NULL), -1);
  assert_int_equal(add_text(f, -1, KEK_TOKEN, &id, &err), 0);
  assert_int_equal(id, 0);
  assert_int_equal(add_text(f, 5, WRAPPED_TOKEN, &id, &err), 0);
  assert_int_equal(id, 5);
  assert_int_equal(add_text(f, -1, "{\"type\":\"systemd-tpm2\",\"keyslots\":[]}", &id, &err), 0);
  assert_int_equal(id, 1);
  assert_int_equal(add_text(f, -1,
                            "{\"type\":\"luks2-keyring\",\"keyslots\":[\"0\"],"
                            "\"key_description\":\"d\"}",
                            &id, &err),
                   0);
  assert_int_equal(id, 2);

  assert_int_equal(luks2_token_next(f->hdr, -1, NULL), 0);
  assert_int_equal(luks2_token_next(f->hdr, 0, NULL), 1);
  assert_int_equal(luks2_token_next(f->hdr, -1, "nbdcrypt"), 0);
  assert_int_equal(luks2_token_next(f->hdr, 0, "nbdcrypt"), 5);
  assert_int_equal(luks2_token_next(f->hdr, 5, "nbdcrypt"), -1);
  assert_int_equal(luks2_token_next(f->hdr, -1, "nothing"), -1);

  struct json_object *tok = luks2_token_get(f->hdr, 0);
  assert_non_null(tok);
  assert_string_equal(json_object_get_string(json_object_object_get(tok, "kek_id")), "7f3e01");
  assert_null(luks2_token_get(f->hdr, 3));
  assert_null(luks2_token_get(f->hdr, 99));

  assert_int_equal(add_text(f, 0, KEK_TOKEN, &id, &err), -EEXIST);
  assert_int_equal(add_text(f, 32, KEK_TOKEN, &id, &err), -EINVAL);

  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_string_equal(
      json_object_to_json_string_ext(luks2_token_get(loaded, 5), JSON_C_TO_STRING_PLAIN),
      WRAPPED_TOKEN);
  assert_int_equal(luks2_token_remove(loaded, 5, &err), 0);
  assert_int_equal(luks2_token_remove(loaded, 5, &err), -ENOENT);
  assert_string_equal(err.msg, "token 5: no such token");
  assert_int_equal(luks2_token_next(loaded, 2, NULL), -1);
  luks2_free(loaded);
}

static void expect_rejected(struct fixture *f, const char *text, const char *message)
{
  struct nbdc_error err = {0};
  int id = -2;
  assert_int_equal(add_text(f, -1, text, &id, &err), -EINVAL);
  assert_int_equal(id, -2);
  if (!strstr(err.msg, message))
    fail_msg("for %s: expected \"%s\" in \"%s\"", text, message, err.msg);
  assert_null(luks2_token_get(f->hdr, 0));
}

static void malformed_tokens_rejected(void **state)
{
  struct fixture *f = *state;
  expect_rejected(f, "{\"keyslots\":[\"0\"]}", "token 0: missing type");
  expect_rejected(f, "{\"type\":7,\"keyslots\":[\"0\"]}", "token 0: type 7 is not a string");
  expect_rejected(f, "{\"type\":\"\",\"keyslots\":[\"0\"]}", "token 0: type is empty");
  expect_rejected(f, "{\"type\":\"x\"}", "token 0: missing keyslots");
  expect_rejected(f, "{\"type\":\"x\",\"keyslots\":\"0\"}", "keyslots is not an array");
  expect_rejected(f, "{\"type\":\"x\",\"keyslots\":[0]}", "keyslots entry 0 is not a keyslot id");
  expect_rejected(f, "{\"type\":\"x\",\"keyslots\":[\"7\"]}", "names missing keyslot 7");
  expect_rejected(f, "{\"type\":\"x\",\"keyslots\":[\"01\"]}", "not a keyslot id");
  expect_rejected(f, "{\"type\":\"x\",\"keyslots\":[\"1\",\"1\"]}", "lists keyslot 1 twice");
  expect_rejected(f, "{\"type\":\"luks2-foo\",\"keyslots\":[]}", "reserved");
  expect_rejected(f, "{\"type\":\"luks2-keyring\",\"keyslots\":[]}", "key_description");
  expect_rejected(f, "[1]", "not an object");
}

static void nbdcrypt_token_fields(void **state)
{
  struct fixture *f = *state;
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"kek_id\":\"k\",\"mode\":\"kek\"}",
                  "token 0: missing provider");
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"\",\"kek_id\":\"k\","
                  "\"mode\":\"kek\"}",
                  "token 0: provider is empty");
  expect_rejected(
      f, "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\",\"mode\":\"kek\"}",
      "token 0: missing kek_id");
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\",\"kek_id\":5,"
                  "\"mode\":\"kek\"}",
                  "token 0: kek_id 5 is not a string");
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\",\"kek_id\":\"k\","
                  "\"mode\":\"plain\"}",
                  "token 0: mode 'plain' not \"kek\" or \"kms-wrapped\"");
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[],\"provider\":\"p\",\"kek_id\":\"k\","
                  "\"mode\":\"kek\"}",
                  "token 0: no keyslots");
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\",\"kek_id\":\"k\","
                  "\"mode\":\"kms-wrapped\",\"iv\":\"AAAA\",\"tag\":\"AAAA\"}",
                  "token 0: missing wrapped");
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\",\"kek_id\":\"k\","
                  "\"mode\":\"kms-wrapped\",\"wrapped\":\"AAAA\",\"iv\":\"!!\",\"tag\":\"AAAA\"}",
                  "token 0: iv is not valid base64");
  expect_rejected(f,
                  "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\",\"kek_id\":\"k\","
                  "\"mode\":\"kms-wrapped\",\"wrapped\":\"AAAA\",\"iv\":\"AAAA\",\"tag\":[]}",
                  "token 0: tag [] is not a string");
}

static void thirty_two_tokens_max(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  int id;
  for (int i = 0; i < LUKS2_MAX_TOKENS; i++) {
    assert_int_equal(add_text(f, -1, "{\"type\":\"x\",\"keyslots\":[\"0\"]}", &id, &err), 0);
    assert_int_equal(id, i);
  }
  assert_int_equal(add_text(f, -1, "{\"type\":\"x\",\"keyslots\":[\"0\"]}", &id, &err), -ENOSPC);
  assert_int_equal(luks2_write(f->dev, f->hdr, &err), 0);
  struct luks2_hdr *loaded = NULL;
  assert_int_equal(luks2_load(f->dev, &loaded, &err), 0);
  assert_int_equal(luks2_token_next(loaded, 30, "x"), 31);
  luks2_free(loaded);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(add_get_next_remove, setup, teardown),
      cmocka_unit_test_setup_teardown(malformed_tokens_rejected, setup, teardown),
      cmocka_unit_test_setup_teardown(nbdcrypt_token_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(thirty_two_tokens_max, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
