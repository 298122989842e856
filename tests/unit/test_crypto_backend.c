/* The crypto backend boundary, whichever backend this build has (CI builds
 * and runs this for both): XTS of 64 KiB at 512- and 4096-byte sectors equal
 * to python3-cryptography's aes-xts-plain64 (digests computed with the oracle
 * of tests/integration/lib-filter.sh, xts_py), so the two backends are equal
 * to each other and to an independent implementation; per-thread contexts
 * equal; SHA-1/SHA-256 (FIPS 180), HMAC-SHA256 (RFC 4231 cases 2 and 6) and
 * PBKDF2-HMAC-SHA256 (RFC 7914 section 11 / the usual "password"/"salt"
 * vectors); the backend's secure key schedules. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/crypto.h"

#define DATA_LEN 65536

static void hex(const uint8_t *b, size_t n, char *out)
{
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", b[i]);
}

static void assert_hex(const uint8_t *b, size_t n, const char *want)
{
  char got[2 * 128 + 1];
  assert_true(n <= 128);
  hex(b, n, got);
  assert_string_equal(got, want);
}

static void make_key(uint8_t key[64])
{
  for (int i = 0; i < 64; i++)
    key[i] = (uint8_t)(i * 37 + 11);
}

static uint8_t *make_data(void)
{
  uint8_t *d = malloc(DATA_LEN);
  assert_non_null(d);
  for (size_t i = 0; i < DATA_LEN; i++)
    d[i] = (uint8_t)(i * 131 + 7 + (i >> 8));
  return d;
}

static const struct {
  uint32_t sector;
  uint64_t unit;
  const char *sha256;
} oracle[] = {
    {512, 0, "05f7d75f88f5248ab5ea938294f68c1e435dc2e6e5f90628a4732ae485867220"},
    {512, UINT64_C(0x1234567890),
     "352c0710cd010c76073ffafce330e59247aeeb4cdbe182b48142e8b521445e50"},
    {4096, 0, "c55cb5f3d04750b1196c746ea9d9148c36117065cc3217008279fc74adf120c0"},
    {4096, UINT64_C(0xfffffff8),
     "a89e05e0c3bec6715d3fef438460c4a366bc8fb2380c41764cd6387c4c47f663"},
};

static void test_xts_equals_oracle(void **state)
{
  (void)state;
  uint8_t key[64], sum[32];
  make_key(key);
  uint8_t *plain = make_data(), *buf = malloc(DATA_LEN);
  assert_non_null(buf);
  for (size_t v = 0; v < sizeof oracle / sizeof oracle[0]; v++) {
    struct nbdc_error e = {0};
    struct xts_ctx *x = NULL;
    assert_int_equal(xts_new(&x, key, 64, oracle[v].sector, &e), 0);
    memcpy(buf, plain, DATA_LEN);
    assert_int_equal(xts_encrypt(x, buf, buf, DATA_LEN, oracle[v].unit, &e), 0);
    assert_int_equal(crypto_hash_once("sha256", buf, DATA_LEN, sum, 32, &e), 0);
    assert_hex(sum, 32, oracle[v].sha256);
    assert_int_equal(xts_decrypt(x, buf, buf, DATA_LEN, oracle[v].unit, &e), 0);
    assert_memory_equal(buf, plain, DATA_LEN);
    xts_free(x);
  }
  free(buf);
  free(plain);
}

struct thread_job {
  struct xts_ctx *ctx;
  const uint8_t *plain;
  uint8_t *out;
};

static void *thread_run(void *p)
{
  struct thread_job *j = p;
  struct nbdc_error e = {0};
  for (int round = 0; round < 20; round++) {
    memcpy(j->out, j->plain, DATA_LEN);
    if (xts_encrypt(j->ctx, j->out, j->out, DATA_LEN, 0, &e) < 0)
      return (void *)1;
  }
  return NULL;
}

/* Contexts duplicated for threads encrypt the same, concurrently. */
static void test_xts_threads(void **state)
{
  (void)state;
  uint8_t key[64], sum[32];
  make_key(key);
  uint8_t *plain = make_data();
  struct nbdc_error e = {0};
  struct xts_ctx *master = NULL;
  assert_int_equal(xts_new(&master, key, 64, 4096, &e), 0);
  struct thread_job jobs[4];
  pthread_t tid[4];
  for (int i = 0; i < 4; i++) {
    jobs[i].plain = plain;
    jobs[i].out = malloc(DATA_LEN);
    assert_int_equal(xts_dup(master, &jobs[i].ctx, &e), 0);
    assert_int_equal(pthread_create(&tid[i], NULL, thread_run, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    void *rv = NULL;
    pthread_join(tid[i], &rv);
    assert_null(rv);
    assert_int_equal(crypto_hash_once("sha256", jobs[i].out, DATA_LEN, sum, 32, &e), 0);
    assert_hex(sum, 32, oracle[2].sha256);
    xts_free(jobs[i].ctx);
    free(jobs[i].out);
  }
  xts_free(master);
  free(plain);
}

static void test_hashes(void **state)
{
  (void)state;
  struct nbdc_error e = {0};
  uint8_t md[64];
  assert_int_equal(crypto_hash_size("sha256"), 32);
  assert_int_equal(crypto_hash_size("SHA1"), 20);
  assert_int_equal(crypto_hash_size("sha512"), 64);
  assert_int_equal(crypto_hash_size("no-such-hash"), 0);
  assert_int_equal(crypto_hash_size(NULL), 0);
  assert_int_equal(crypto_hash_once("sha256", "abc", 3, md, 32, &e), 0);
  assert_hex(md, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(crypto_hash_once("sha1", "abc", 3, md, 20, &e), 0);
  assert_hex(md, 20, "a9993e364706816aba3e25717850c26c9cd0d89d");
  /* A state is reset by final and can be used again; secure ones too. */
  struct crypto_hash *h = NULL;
  assert_int_equal(crypto_hash_new(&h, "sha256", true, &e), 0);
  for (int i = 0; i < 2; i++) {
    crypto_hash_write(h, "a", 1);
    crypto_hash_write(h, "bc", 2);
    assert_int_equal(crypto_hash_final(h, md, 16, &e), 0); /* cut */
    assert_hex(md, 16, "ba7816bf8f01cfea414140de5dae2223");
  }
  crypto_hash_free(h);
  assert_int_equal(crypto_hash_new(&h, "no-such-hash", false, &e), -EINVAL);
  assert_null(h);
  assert_non_null(strstr(e.msg, "unknown hash 'no-such-hash'"));
}

static void test_hmac(void **state)
{
  (void)state;
  struct nbdc_error e = {0};
  uint8_t mac[32];
  static const char data2[] = "what do ya want for nothing?";
  assert_int_equal(
      crypto_hmac("sha256", (const uint8_t *)"Jefe", 4, data2, strlen(data2), mac, 32, &e), 0);
  assert_hex(mac, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  /* Case 6: a 131-byte key, longer than the block, is hashed first. */
  uint8_t key6[131];
  memset(key6, 0xaa, sizeof key6);
  static const char data6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
  assert_int_equal(crypto_hmac("sha256", key6, sizeof key6, data6, strlen(data6), mac, 32, &e), 0);
  assert_hex(mac, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  assert_int_equal(crypto_hmac("nope", key6, 4, data6, 4, mac, 32, &e), -EINVAL);
  assert_non_null(strstr(e.msg, "unknown hmac hash 'nope'"));
}

static void test_pbkdf2(void **state)
{
  (void)state;
  struct nbdc_error e = {0};
  uint8_t out[32];
  assert_int_equal(kdf_pbkdf2("sha256", (const uint8_t *)"password", 8, (const uint8_t *)"salt", 4,
                              1, out, 32, &e),
                   0);
  assert_hex(out, 32, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b");
  assert_int_equal(kdf_pbkdf2("sha256", (const uint8_t *)"password", 8, (const uint8_t *)"salt", 4,
                              4096, out, 32, &e),
                   0);
  assert_hex(out, 32, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");
}

/* In this test program nothing initialised the library before us: key
 * schedules must be in our secure memory, with either backend. */
static void test_backend(void **state)
{
  (void)state;
  struct nbdc_error e = {0};
  assert_int_equal(crypto_backend_init(&e), 0);
  const char *name = crypto_backend_name();
  assert_true(strncmp(name, "libgcrypt ", 10) == 0 || strncmp(name, "openssl ", 8) == 0);
  assert_true(crypto_backend_schedules_secure());
  crypto_wipe_cpu_registers(); /* must not fault on this CPU */
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backend),     cmocka_unit_test(test_xts_equals_oracle),
      cmocka_unit_test(test_xts_threads), cmocka_unit_test(test_hashes),
      cmocka_unit_test(test_hmac),        cmocka_unit_test(test_pbkdf2),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
