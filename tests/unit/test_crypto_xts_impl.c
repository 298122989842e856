/* XTS engine implementations agree: the default engine (VAES + AVX-512 on
 * CPUs that have it, src/crypto/xts.c) against the OpenSSL provider path
 * (NBDCRYPT_XTS_IMPL=openssl) and against EVP sector by sector, over random
 * keys and data, every sector size, IVs that carry across 32 bits and wrap
 * at 2^64, unaligned and in-place buffers, encrypt and decrypt.  On a CPU
 * without VAES both engines are OpenSSL's and this still checks the EVP
 * equivalence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "nbdcrypt/crypto.h"

#define MAX_LEN (64u * 1024)

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
  /* splitmix64: reproducible test data */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static void fill_random(uint8_t *buf, size_t n)
{
  for (size_t i = 0; i < n; i++)
    buf[i] = (uint8_t)rng();
}

static struct xts_ctx *make_ctx(const uint8_t *key, size_t key_len, uint32_t sector, int openssl)
{
  if (openssl)
    assert_int_equal(setenv("NBDCRYPT_XTS_IMPL", "openssl", 1), 0);
  else
    assert_int_equal(unsetenv("NBDCRYPT_XTS_IMPL"), 0);
  struct nbdc_error err = {0};
  struct xts_ctx *ctx = NULL;
  assert_int_equal(xts_new(&ctx, key, key_len, sector, &err), 0);
  assert_int_equal(unsetenv("NBDCRYPT_XTS_IMPL"), 0);
  return ctx;
}

/* Reference: one EVP call per sector with the plain64 IV. */
static void evp_sectors(const uint8_t *key, size_t key_len, uint32_t sector, uint64_t unit,
                        const uint8_t *in, uint8_t *out, size_t len, int enc)
{
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  assert_non_null(c);
  const EVP_CIPHER *cipher = key_len == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();
  for (size_t off = 0; off < len; off += sector, unit += sector / 512) {
    uint8_t iv[16] = {0};
    for (int b = 0; b < 8; b++)
      iv[b] = (uint8_t)(unit >> (8 * b));
    int outl = 0;
    assert_int_equal(EVP_CipherInit_ex(c, cipher, NULL, key, iv, enc), 1);
    assert_int_equal(EVP_CipherUpdate(c, out + off, &outl, in + off, (int)sector), 1);
    assert_int_equal(outl, (int)sector);
  }
  EVP_CIPHER_CTX_free(c);
}

static void check_case(size_t key_len, uint32_t sector, uint64_t unit, size_t len, size_t align)
{
  uint8_t key[64];
  do
    fill_random(key, key_len);
  while (memcmp(key, key + key_len / 2, key_len / 2) == 0);

  uint8_t *plain = malloc(MAX_LEN + 64);
  uint8_t *ref = malloc(MAX_LEN + 64);
  uint8_t *a = malloc(MAX_LEN + 64);
  uint8_t *b = malloc(MAX_LEN + 64);
  assert_non_null(plain);
  assert_non_null(ref);
  assert_non_null(a);
  assert_non_null(b);
  fill_random(plain, len);
  evp_sectors(key, key_len, sector, unit, plain, ref, len, 1);

  struct xts_ctx *fast = make_ctx(key, key_len, sector, 0);
  struct xts_ctx *ossl = make_ctx(key, key_len, sector, 1);
  struct nbdc_error err = {0};

  /* Out of place, destination at an odd alignment. */
  assert_int_equal(xts_encrypt(fast, a + align, plain, len, unit, &err), 0);
  assert_memory_equal(a + align, ref, len);
  assert_int_equal(xts_encrypt(ossl, b, plain, len, unit, &err), 0);
  assert_memory_equal(b, ref, len);

  /* In place, both directions, source at an odd alignment. */
  memcpy(b + align, ref, len);
  assert_int_equal(xts_decrypt(fast, b + align, b + align, len, unit, &err), 0);
  assert_memory_equal(b + align, plain, len);
  assert_int_equal(xts_encrypt(fast, b + align, b + align, len, unit, &err), 0);
  assert_memory_equal(b + align, ref, len);
  assert_int_equal(xts_decrypt(ossl, a, ref, len, unit, &err), 0);
  assert_memory_equal(a, plain, len);

  /* A different IV gives a different ciphertext (the tweak is used). */
  assert_int_equal(xts_encrypt(fast, a, plain, sector, unit + 1, &err), 0);
  assert_memory_not_equal(a, ref, sector);

  xts_free(fast);
  xts_free(ossl);
  free(plain);
  free(ref);
  free(a);
  free(b);
}

static void test_engines_agree_every_sector_size(void **state)
{
  (void)state;
  static const uint64_t units[] = {
      0, 1, 0xff, UINT64_C(0xfffffff8), UINT64_C(0x123456789a), UINT64_MAX - 7, UINT64_MAX};
  for (uint32_t sector = 512; sector <= 4096; sector *= 2)
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
      check_case(64, sector, units[u], sector, u % 3);
      check_case(64, sector, units[u], MAX_LEN, (u + 1) % 5);
      check_case(32, sector, units[u], 4 * sector, u % 2);
    }
}

static void test_engines_agree_random_cases(void **state)
{
  (void)state;
  for (int i = 0; i < 200; i++) {
    const uint32_t sector = 512u << (rng() % 4);
    const size_t sectors = 1 + rng() % (MAX_LEN / sector);
    check_case(64, sector, rng(), sectors * sector, rng() % 64);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_engines_agree_every_sector_size),
      cmocka_unit_test(test_engines_agree_random_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
