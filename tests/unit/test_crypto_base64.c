/* Base64: RFC 4648 section 10 vectors both ways, strict rejection of bad
 * input, and no write past out_max. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/crypto.h"

static const struct {
  const char *plain, *encoded;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void **state)
{
  (void)state;
  for (size_t v = 0; v < sizeof rfc4648 / sizeof rfc4648[0]; v++) {
    size_t n = strlen(rfc4648[v].plain);
    char *enc = base64_encode((const uint8_t *)rfc4648[v].plain, n);
    assert_non_null(enc);
    assert_string_equal(enc, rfc4648[v].encoded);
    free(enc);
    uint8_t out[16];
    size_t out_len = 99;
    assert_int_equal(base64_decode(rfc4648[v].encoded, out, n, &out_len), 0);
    assert_int_equal(out_len, n);
    assert_memory_equal(out, rfc4648[v].plain, n);
  }
}

static void test_binary_round_trip(void **state)
{
  (void)state;
  uint8_t in[256], out[256];
  for (size_t i = 0; i < sizeof in; i++)
    in[i] = (uint8_t)(255 - i);
  for (size_t n = 0; n <= sizeof in; n += 1 + n / 4) {
    char *enc = base64_encode(in, n);
    assert_non_null(enc);
    assert_int_equal(strlen(enc), (n + 2) / 3 * 4);
    size_t out_len = 0;
    assert_int_equal(base64_decode(enc, out, n, &out_len), 0);
    assert_int_equal(out_len, n);
    assert_memory_equal(out, in, n);
    free(enc);
  }
}

static void test_exact_fit_does_not_overrun(void **state)
{
  (void)state;
  /* 32 bytes encode to 44 characters with one '=': EVP_DecodeBlock alone would write 33. */
  uint8_t key[32], out[33];
  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (uint8_t)(i * 9 + 1);
  char *enc = base64_encode(key, sizeof key);
  assert_non_null(enc);
  assert_int_equal(strlen(enc), 44);
  out[32] = 0xa5;
  size_t out_len = 0;
  assert_int_equal(base64_decode(enc, out, 32, &out_len), 0);
  assert_int_equal(out_len, 32);
  assert_memory_equal(out, key, 32);
  assert_int_equal(out[32], 0xa5);
  assert_int_equal(base64_decode(enc, out, 31, &out_len), -ENOSPC);
  free(enc);
}

static void test_rejects_bad_input(void **state)
{
  (void)state;
  static const char *bad[] = {
      "Zg=",      /* length not a multiple of 4 */
      "Zg",       /* missing padding */
      "Z===",     /* three padding characters */
      "====",     /* padding only */
      "Zm=v",     /* padding in the middle */
      "Zg==Zm9v", /* data after padding */
      "Zm9v\n",   /* newline */
      " Zm9v",    /* leading whitespace */
      "Zm9v ",    /* trailing whitespace */
      "Zm9-",     /* url-safe alphabet */
      "Zm9_",     /* url-safe alphabet */
      "Zm\x80v",  /* non-ascii */
  };
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
    uint8_t out[16];
    size_t out_len = 7;
    int r = base64_decode(bad[b], out, sizeof out, &out_len);
    if (r != -EINVAL)
      fail_msg("base64_decode accepted bad input #%zu (r=%d)", b, r);
    assert_int_equal(out_len, 0);
  }
  uint8_t out[4];
  assert_int_equal(base64_decode(NULL, out, sizeof out, NULL), -EINVAL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc4648_vectors),
      cmocka_unit_test(test_binary_round_trip),
      cmocka_unit_test(test_exact_fit_does_not_overrun),
      cmocka_unit_test(test_rejects_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
