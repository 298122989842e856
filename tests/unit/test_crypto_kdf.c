/* Key derivation: PBKDF2-HMAC-SHA256 vectors of RFC 7914 section 11,
 * Argon2i/Argon2id known answers from the reference argon2 command (Debian
 * package argon2, run once; the values are pasted below), and the bounds that
 * protect us from hostile headers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/crypto.h"

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
  assert_int_equal(strlen(hex), 2 * n);
  for (size_t i = 0; i < n; i++) {
    char byte[3] = {hex[2 * i], hex[2 * i + 1], 0};
    out[i] = (uint8_t)strtoul(byte, NULL, 16);
  }
}

static struct kdf_params pbkdf2_params(const char *hash, uint32_t iterations, const char *salt)
{
  struct kdf_params p = {.type = KDF_PBKDF2, .iterations = iterations};
  strcpy(p.hash, hash);
  p.salt_len = strlen(salt);
  memcpy(p.salt, salt, p.salt_len);
  return p;
}

static void test_pbkdf2_sha256_rfc7914(void **state)
{
  (void)state;
  static const struct {
    const char *password, *salt;
    uint32_t iterations;
    const char *dk;
  } vectors[] = {
      {"passwd", "salt", 1,
       "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
       "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"},
      {"Password", "NaCl", 80000,
       "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
       "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"},
  };
  for (size_t v = 0; v < 2; v++) {
    uint8_t expect[64], got[64];
    hex_to_bytes(vectors[v].dk, expect, sizeof expect);
    struct kdf_params p = pbkdf2_params("sha256", vectors[v].iterations, vectors[v].salt);
    struct nbdc_error err = {0};
    assert_int_equal(kdf_derive(&p, (const uint8_t *)vectors[v].password,
                                strlen(vectors[v].password), got, sizeof got, &err),
                     0);
    assert_memory_equal(got, expect, sizeof expect);
    memset(got, 0, sizeof got);
    assert_int_equal(kdf_pbkdf2("sha256", (const uint8_t *)vectors[v].password,
                                strlen(vectors[v].password), (const uint8_t *)vectors[v].salt,
                                strlen(vectors[v].salt), vectors[v].iterations, got, 32, &err),
                     0);
    assert_memory_equal(got, expect, 32);
  }
}

/* Generated with: echo -n PASSWORD | argon2 SALT -id|-i -t T -k MEM -p P -l LEN -r */
static void test_argon2_known_answers(void **state)
{
  (void)state;
  static const struct {
    enum kdf_type type;
    const char *password, *salt;
    uint32_t time, memory_kib, cpus;
    size_t len;
    const char *out;
  } vectors[] = {
      {KDF_ARGON2ID, "password", "somesaltsomesalt", 2, 64, 2, 32,
       "c263317d002f84b5342fa66fa169e4bce6a356a13f19193346322ef3522e0702"},
      {KDF_ARGON2I, "password", "somesaltsomesalt", 2, 64, 2, 32,
       "d135fff9726ab676e6a4d8ce90c7112d4906f6f7e761a6bc78274471014eb411"},
      {KDF_ARGON2ID, "correct horse battery staple", "0123456789abcdef0123456789abcdef", 3, 256, 4,
       64,
       "0b9ee39fe7833a99c30e54e6d50ce063d1285518181bbb66e3f5d3efe2913fc4"
       "11fdcd698426bcf824ae9bc624d85bcff32c9e88995351b5cd844b3a6498c3ba"},
      {KDF_ARGON2I, "correct horse battery staple", "0123456789abcdef0123456789abcdef", 1, 32, 1,
       64,
       "f9b5aeb8e9ff614cbe85338c18ac28cd6c07239fdf223c7706f92725cd737e00"
       "adecced8e107397bdc8992e2b2b118303012903af1f59074126c37f26bfddffc"},
  };
  for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
    struct kdf_params p = {.type = vectors[v].type,
                           .time = vectors[v].time,
                           .memory_kib = vectors[v].memory_kib,
                           .cpus = vectors[v].cpus};
    p.salt_len = strlen(vectors[v].salt);
    memcpy(p.salt, vectors[v].salt, p.salt_len);
    uint8_t expect[64], got[64];
    hex_to_bytes(vectors[v].out, expect, vectors[v].len);
    struct nbdc_error err = {0};
    int r = kdf_derive(&p, (const uint8_t *)vectors[v].password, strlen(vectors[v].password), got,
                       vectors[v].len, &err);
    if (r != 0)
      fail_msg("argon2 vector %zu: %s", v, err.msg);
    if (memcmp(got, expect, vectors[v].len) != 0)
      fail_msg("argon2 vector %zu (%s) differs from the reference", v,
               kdf_type_name(vectors[v].type));
  }
}

static void expect_error(const struct kdf_params *p, const char *needle)
{
  uint8_t out[32];
  struct nbdc_error err = {0};
  int r = kdf_derive(p, (const uint8_t *)"x", 1, out, sizeof out, &err);
  assert_int_equal(r, -EINVAL);
  assert_int_equal(err.code, EINVAL);
  if (!strstr(err.msg, needle))
    fail_msg("expected \"%s\" in \"%s\"", needle, err.msg);
}

static void test_bounds(void **state)
{
  (void)state;
  struct kdf_params p = pbkdf2_params("sha256", 0, "saltsalt");
  expect_error(&p, "bad pbkdf2 iterations 0");
  p = pbkdf2_params("nosuchhash", 1, "saltsalt");
  expect_error(&p, "unknown pbkdf2 hash 'nosuchhash'");
  p = pbkdf2_params("sha256", 1, "saltsalt");
  p.salt_len = KDF_SALT_MAX + 1;
  expect_error(&p, "bad kdf salt length 65");
  memset(p.hash, 'a', sizeof p.hash);
  p.salt_len = 8;
  expect_error(&p, "hash name is not terminated");

  struct kdf_params a = {
      .type = KDF_ARGON2ID, .time = 1, .memory_kib = 32, .cpus = 1, .salt_len = 32};
  a.memory_kib = 31;
  expect_error(&a, "bad argon2id memory 31 KiB");
  a.memory_kib = 4194305;
  expect_error(&a, "bad argon2id memory 4194305 KiB");
  a.memory_kib = 64;
  a.cpus = 0;
  expect_error(&a, "bad argon2id cpus 0");
  a.cpus = 5;
  expect_error(&a, "bad argon2id cpus 5");
  a.cpus = 1;
  a.time = 0;
  a.type = KDF_ARGON2I;
  expect_error(&a, "bad argon2i time 0");
  a.time = 1;
  a.salt_len = 4;
  expect_error(&a, "bad argon2i salt length 4");

  struct kdf_params bad = {.type = 99};
  expect_error(&bad, "unknown kdf type 99");
}

static void test_names_and_memeq(void **state)
{
  (void)state;
  assert_int_equal(kdf_type_from_name("pbkdf2"), KDF_PBKDF2);
  assert_int_equal(kdf_type_from_name("argon2i"), KDF_ARGON2I);
  assert_int_equal(kdf_type_from_name("argon2id"), KDF_ARGON2ID);
  assert_int_equal(kdf_type_from_name("argon2d"), 0);
  assert_int_equal(kdf_type_from_name(NULL), 0);
  assert_string_equal(kdf_type_name(KDF_PBKDF2), "pbkdf2");
  assert_string_equal(kdf_type_name(KDF_ARGON2I), "argon2i");
  assert_string_equal(kdf_type_name(KDF_ARGON2ID), "argon2id");
  assert_true(crypto_memeq("abcd", "abcd", 4));
  assert_false(crypto_memeq("abcd", "abce", 4));
  assert_true(crypto_memeq("a", "b", 0));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pbkdf2_sha256_rfc7914),
      cmocka_unit_test(test_argon2_known_answers),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_names_and_memeq),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
