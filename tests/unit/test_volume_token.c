/* volume: one nbdcrypt token's JSON text on its own, as cryptsetup's token
 * plugin receives it: what volume_token_check accepts and the message it
 * gives for each malformed token; volume_token_secret fetches the KEK of a
 * native provider and names a missing provider or KEK. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/volume.h"

#define KEK_ID "759f7e39-44f0-4451-8507-95ea75d9b6b1"
#define WRAPPED                                                                                    \
  "\"wrapped\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\",\"iv\":\"AAAAAAAAAAAAAAAA\","      \
  "\"tag\":\"AAAAAAAAAAAAAAAAAAAAAA==\""

static void test_accepts_what_nbdcrypt_writes(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct volume_token_info info;
  const char *kek = "{\"type\":\"nbdcrypt\",\"keyslots\":[\"3\"],\"provider\":\"local\","
                    "\"kek_id\":\"" KEK_ID "\",\"mode\":\"kek\"}";
  assert_int_equal(volume_token_check(kek, &info, &err), 0);
  assert_int_equal(info.keyslot, 3);
  assert_string_equal(info.provider, "local");
  assert_string_equal(info.kek_id, KEK_ID);
  assert_false(info.kms_wrapped);

  const char *wrapped = "{\"type\":\"nbdcrypt\",\"keyslots\":[\"31\"],\"provider\":\"kms\","
                        "\"kek_id\":\"17\",\"mode\":\"kms-wrapped\"," WRAPPED "}\n";
  assert_int_equal(volume_token_check(wrapped, &info, &err), 0);
  assert_int_equal(info.keyslot, 31);
  assert_true(info.kms_wrapped);

  /* Fields a newer nbdcrypt might add are accepted, as LUKS2 does. */
  const char *newer = "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"p\","
                      "\"kek_id\":\"k\",\"mode\":\"kek\",\"comment\":\"x\"}";
  assert_int_equal(volume_token_check(newer, NULL, &err), 0);
}

struct bad_case {
  const char *json;
  const char *message;
};

static void test_refuses_malformed_tokens(void **state)
{
  (void)state;
#define T_(fields) "{\"type\":\"nbdcrypt\"," fields "}"
#define OK_SLOT    "\"keyslots\":[\"0\"],"
#define OK_NAMES   "\"provider\":\"local\",\"kek_id\":\"k\","
  static const struct bad_case cases[] = {
      {"", "nbdcrypt token: not valid JSON (unexpected end)"},
      {"{\"type\":", "nbdcrypt token: not valid JSON (unexpected end)"},
      {"[1]", "nbdcrypt token is not a JSON object"},
      {T_(OK_SLOT OK_NAMES "\"mode\":\"kek\"") " x",
       "nbdcrypt token: not valid JSON (unexpected character)"},
      {T_(OK_SLOT OK_NAMES "\"mode\":\"kek\"") "{}",
       "nbdcrypt token: not valid JSON (unexpected character)"},
      {"{\"type\":\"luks2-keyring\",\"keyslots\":[\"0\"]}",
       "nbdcrypt token: \"type\" is not \"nbdcrypt\""},
      {T_(OK_NAMES "\"mode\":\"kek\""), "nbdcrypt token: \"keyslots\" is missing or not an array"},
      {T_("\"keyslots\":[]," OK_NAMES "\"mode\":\"kek\""),
       "nbdcrypt token: \"keyslots\" must name exactly one keyslot, not 0"},
      {T_("\"keyslots\":[\"0\",\"1\"]," OK_NAMES "\"mode\":\"kek\""),
       "nbdcrypt token: \"keyslots\" must name exactly one keyslot, not 2"},
      {T_("\"keyslots\":[\"01\"]," OK_NAMES "\"mode\":\"kek\""),
       "nbdcrypt token: keyslot \"01\" is not a keyslot id (\"0\" to \"31\")"},
      {T_("\"keyslots\":[\"32\"]," OK_NAMES "\"mode\":\"kek\""),
       "nbdcrypt token: keyslot \"32\" is not a keyslot id (\"0\" to \"31\")"},
      {T_("\"keyslots\":[0]," OK_NAMES "\"mode\":\"kek\""),
       "nbdcrypt token: keyslot \"\" is not a keyslot id (\"0\" to \"31\")"},
      {T_(OK_SLOT "\"kek_id\":\"k\",\"mode\":\"kek\""),
       "nbdcrypt token: \"provider\" is missing or not a string"},
      {T_(OK_SLOT "\"provider\":\"\",\"kek_id\":\"k\",\"mode\":\"kek\""),
       "nbdcrypt token: \"provider\" must be 1 to 127 characters"},
      {T_(OK_SLOT "\"provider\":\"local\",\"kek_id\":7,\"mode\":\"kek\""),
       "nbdcrypt token: \"kek_id\" is missing or not a string"},
      {T_(OK_SLOT OK_NAMES "\"x\":1"), "nbdcrypt token: \"mode\" is missing or not a string"},
      {T_(OK_SLOT OK_NAMES "\"mode\":\"plain\""),
       "nbdcrypt token: mode \"plain\" is not \"kek\" or \"kms-wrapped\""},
      {T_(OK_SLOT OK_NAMES "\"mode\":\"kek\",\"iv\":\"AAAAAAAAAAAAAAAA\""),
       "nbdcrypt token: mode \"kek\" with a \"iv\" field"},
      {T_(OK_SLOT OK_NAMES "\"mode\":\"kms-wrapped\""),
       "nbdcrypt token: kms-wrapped token has no \"wrapped\" string"},
      {T_(OK_SLOT OK_NAMES
          "\"mode\":\"kms-wrapped\",\"wrapped\":\"!!\",\"iv\":\"AAAAAAAAAAAAAAAA\","
          "\"tag\":\"AAAAAAAAAAAAAAAAAAAAAA==\""),
       "nbdcrypt token: \"wrapped\" is not base64 of 1 to 128 bytes"},
      {T_(OK_SLOT OK_NAMES "\"mode\":\"kms-wrapped\",\"wrapped\":\"AAAA\",\"iv\":\"AAAAAAAAAAAA\","
                           "\"tag\":\"AAAAAAAAAAAAAAAAAAAAAA==\""),
       "nbdcrypt token: \"iv\" is not base64 of 12 bytes"},
      {T_(OK_SLOT OK_NAMES "\"mode\":\"kms-wrapped\",\"wrapped\":\"AAAA\","
                           "\"iv\":\"AAAAAAAAAAAAAAAA\",\"tag\":\"AAAA\""),
       "nbdcrypt token: \"tag\" is not base64 of 16 bytes"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct nbdc_error err = {0};
    int r = volume_token_check(cases[i].json, NULL, &err);
    if (r != -EINVAL || strcmp(err.msg, cases[i].message) != 0)
      fail_msg("case %zu (%s): %d \"%s\", want -EINVAL \"%s\"", i, cases[i].json, r, err.msg,
               cases[i].message);
  }
  struct nbdc_error err = {0};
  assert_int_equal(volume_token_check(NULL, NULL, &err), -EINVAL);
}

static void test_secret_from_native_provider(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  char dir[256], json[512], token[512];
  assert_int_equal(unit_tmpdir_make(dir, sizeof dir, "volume-token"), 0);
  snprintf(json, sizeof json,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": "
           "\"%s/keystore.json\"}}}",
           dir);
  struct keys_config *cfg = NULL;
  assert_int_equal(keys_config_parse(json, "test", &cfg, &err), 0);
  struct keys_provider *p = NULL;
  char id[KEYS_ID_MAX];
  assert_int_equal(keys_provider_open(cfg, "local", &p, &err), 0);
  assert_int_equal(keys_kek_create(p, "t", id, &err), 0);
  uint8_t *kek = NULL;
  assert_int_equal(keys_kek_get(p, id, &kek, &err), 0);
  keys_provider_close(p);

  snprintf(token, sizeof token,
           "{\"type\":\"nbdcrypt\",\"keyslots\":[\"2\"],\"provider\":\"local\","
           "\"kek_id\":\"%s\",\"mode\":\"kek\"}",
           id);
  struct volume_token_info info = {0};
  uint8_t *secret = NULL;
  size_t secret_len = 0;
  assert_int_equal(volume_token_secret(token, cfg, &info, &secret, &secret_len, &err), 0);
  assert_int_equal(secret_len, KEYS_KEK_SIZE);
  assert_memory_equal(secret, kek, KEYS_KEK_SIZE);
  assert_int_equal(info.keyslot, 2);
  secmem_free(secret, secret_len);
  secmem_free(kek, KEYS_KEK_SIZE);

  /* Unknown KEK and unknown provider: -ENOENT, the token still described. */
  snprintf(token, sizeof token,
           "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"local\","
           "\"kek_id\":\"%s\",\"mode\":\"kek\"}",
           KEK_ID);
  memset(&info, 0, sizeof info);
  assert_int_equal(volume_token_secret(token, cfg, &info, &secret, &secret_len, &err), -ENOENT);
  assert_null(secret);
  assert_non_null(strstr(err.msg, "kek " KEK_ID " not found"));
  assert_string_equal(info.kek_id, KEK_ID);
  const char *elsewhere = "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"corp\","
                          "\"kek_id\":\"k\",\"mode\":\"kek\"}";
  assert_int_equal(volume_token_secret(elsewhere, cfg, &info, &secret, &secret_len, &err), -ENOENT);
  assert_string_equal(err.msg, "no provider corp in test");
  assert_string_equal(info.provider, "corp");

  keys_config_free(cfg);
  assert_int_equal(unit_tmpdir_remove(dir), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepts_what_nbdcrypt_writes),
      cmocka_unit_test(test_refuses_malformed_tokens),
      cmocka_unit_test(test_secret_from_native_provider),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
