/* LUKS AF splitter: round trips, sensitivity of the merge to every stripe,
 * and known answers computed independently with Python's hashlib. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/crypto.h"

#define STRIPES 4000

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
  assert_int_equal(strlen(hex), 2 * n);
  for (size_t i = 0; i < n; i++) {
    char byte[3] = {hex[2 * i], hex[2 * i + 1], 0};
    out[i] = (uint8_t)strtoul(byte, NULL, 16);
  }
}

static void test_split_merge_round_trip(void **state)
{
  (void)state;
  static const size_t key_lens[] = {32, 64};
  static const char *hashes[] = {"sha1", "sha256", "sha512"};
  for (size_t k = 0; k < 2; k++) {
    for (size_t h = 0; h < 3; h++) {
      size_t key_len = key_lens[k];
      size_t mat_len = af_split_sectors_bytes(key_len, STRIPES);
      uint8_t *key = secmem_alloc(key_len), *back = secmem_alloc(key_len);
      uint8_t *mat = secmem_alloc(mat_len);
      assert_true(key && back && mat);
      struct nbdc_error err = {0};
      assert_int_equal(crypto_random(key, key_len, &err), 0);
      assert_int_equal(af_split(key, key_len, STRIPES, hashes[h], mat, &err), 0);
      /* The split material is not the key repeated or zero. */
      assert_memory_not_equal(mat, key, key_len);
      assert_int_equal(af_merge(mat, key_len, STRIPES, hashes[h], back, &err), 0);
      assert_memory_equal(back, key, key_len);
      /* Merging with another hash gives another key. */
      assert_int_equal(af_merge(mat, key_len, STRIPES, h == 1 ? "sha1" : "sha256", back, &err), 0);
      assert_memory_not_equal(back, key, key_len);
      secmem_free(key, key_len);
      secmem_free(back, key_len);
      secmem_free(mat, mat_len);
    }
  }
}

/* Splitting the same key twice gives different material (random stripes). */
static void test_split_is_randomised(void **state)
{
  (void)state;
  uint8_t key[64] = {1, 2, 3};
  size_t n = 64 * STRIPES;
  uint8_t *a = secmem_alloc(n), *b = secmem_alloc(n);
  assert_true(a && b);
  struct nbdc_error err = {0};
  assert_int_equal(af_split(key, 64, STRIPES, "sha256", a, &err), 0);
  assert_int_equal(af_split(key, 64, STRIPES, "sha256", b, &err), 0);
  assert_memory_not_equal(a, b, 64);
  assert_memory_not_equal(a + n - 64, b + n - 64, 64);
  secmem_free(a, n);
  secmem_free(b, n);
}

static void test_flipped_bit_anywhere_changes_key(void **state)
{
  (void)state;
  const size_t key_len = 64;
  size_t n = key_len * STRIPES;
  uint8_t key[64], back[64];
  uint8_t *mat = secmem_alloc(n);
  assert_non_null(mat);
  struct nbdc_error err = {0};
  assert_int_equal(crypto_random(key, sizeof key, &err), 0);
  assert_int_equal(af_split(key, key_len, STRIPES, "sha256", mat, &err), 0);
  /* First byte, a byte in a last (short) sha1-style chunk, first and last stripes, middle. */
  static const size_t positions[] = {0, 63, 64, 1000, 127999, 128000, 255935, 255936, 255999};
  for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++) {
    for (int bit = 0; bit < 8; bit += 7) {
      mat[positions[p]] ^= (uint8_t)(1u << bit);
      assert_int_equal(af_merge(mat, key_len, STRIPES, "sha256", back, &err), 0);
      if (memcmp(back, key, key_len) == 0)
        fail_msg("flipping bit %d of byte %zu did not change the merged key", bit, positions[p]);
      mat[positions[p]] ^= (uint8_t)(1u << bit);
    }
  }
  assert_int_equal(af_merge(mat, key_len, STRIPES, "sha256", back, &err), 0);
  assert_memory_equal(back, key, key_len);
  nbdc_wipe(key, sizeof key);
  nbdc_wipe(back, sizeof back);
  secmem_free(mat, n);
}

/* Known answers: af_merge over a fixed byte pattern, 4000 stripes.  The
 * expected keys were computed once, independently of this code, with a short
 * python3 hashlib script implementing reference/luks2.md step 4:
 *   diffuse(b): for chunk j of digest size d: H(BE32(j) || chunk)[:len(chunk)]
 *   buf = 0; for i < 3999: buf = diffuse(buf ^ s_i); key = s_3999 ^ buf
 *   pattern byte i = (i*131 + (i>>8)*17 + 5) & 0xff */
static void test_merge_known_answers(void **state)
{
  (void)state;
  static const struct {
    const char *hash;
    size_t key_len;
    const char *key_hex;
  } kats[] = {
      {"sha256", 64,
       "0e58b1dd81644c27c40edc0381b7cf7511239a139925f1f2e029f4b1532b4e81"
       "ae7d3c8c01e2ea0f35fc68eed54f4c60d1c86b7436ce82f54cd464a0614ec233"},
      /* sha1: 32 = 20 + a short last chunk of 12 */
      {"sha1", 32, "3b6f6e8a9d14f6b8cd73cb2b27216f7336e55a18437c0878b418202aebd0a732"},
      {"sha512", 64,
       "39ae14b6c86ec6b946a7fac8446979c3ad6474d52d2e67c84bd05fd8382237fc"
       "11b05aaf4a5746838c00f921222f907e2f790d7a3005561b9ce6b2cde3e1d7b8"},
  };
  for (size_t t = 0; t < sizeof kats / sizeof kats[0]; t++) {
    size_t n = kats[t].key_len * STRIPES;
    uint8_t *mat = malloc(n);
    assert_non_null(mat);
    for (size_t i = 0; i < n; i++)
      mat[i] = (uint8_t)((i * 131 + (i >> 8) * 17 + 5) & 0xff);
    uint8_t expect[64], got[64];
    hex_to_bytes(kats[t].key_hex, expect, kats[t].key_len);
    struct nbdc_error err = {0};
    assert_int_equal(af_merge(mat, kats[t].key_len, STRIPES, kats[t].hash, got, &err), 0);
    if (memcmp(got, expect, kats[t].key_len) != 0)
      fail_msg("af_merge known answer for %s/%zu differs", kats[t].hash, kats[t].key_len);
    free(mat);
  }
}

static void test_sectors_bytes_and_errors(void **state)
{
  (void)state;
  assert_int_equal(af_split_sectors_bytes(64, 4000), 256000);
  assert_int_equal(af_split_sectors_bytes(32, 4000), 128000);
  assert_int_equal(af_split_sectors_bytes(33, 1), 512);
  assert_int_equal(af_split_sectors_bytes(16, 33), 1024);

  uint8_t key[32] = {0}, mat[64] = {0};
  struct nbdc_error err = {0};
  assert_int_equal(af_split(key, 32, 2, "no-such-hash", mat, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "unknown af hash 'no-such-hash'"));
  assert_int_equal(af_merge(mat, 32, 0, "sha256", key, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "bad af stripes 0"));
  assert_int_equal(af_merge(mat, 0, 2, "sha256", key, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "bad af key length 0"));
  assert_int_equal(af_merge(mat, 32, 2, "shake256", key, &err), -EINVAL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_merge_round_trip),
      cmocka_unit_test(test_split_is_randomised),
      cmocka_unit_test(test_flipped_bit_anywhere_changes_key),
      cmocka_unit_test(test_merge_known_answers),
      cmocka_unit_test(test_sectors_bytes_and_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
