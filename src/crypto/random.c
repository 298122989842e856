/* Randomness from the OpenSSL private CSPRNG (include/nbdcrypt/crypto.h). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "nbdcrypt/crypto.h"

int crypto_random(void *buf, size_t n, struct nbdc_error *err)
{
  uint8_t *p = buf;
  while (n > 0) {
    int chunk = n > INT_MAX ? INT_MAX : (int)n;
    if (RAND_priv_bytes(p, chunk) != 1) {
      unsigned long e = ERR_get_error();
      char text[256];
      ERR_error_string_n(e, text, sizeof text);
      ERR_clear_error();
      return nbdc_error_set(err, EIO, "random number generator failed: %s", text);
    }
    p += chunk;
    n -= (size_t)chunk;
  }
  return 0;
}

int crypto_uuid_v4(char out[CRYPTO_UUID_SIZE], struct nbdc_error *err)
{
  uint8_t b[16];
  int r = crypto_random(b, sizeof b, err);
  if (r < 0)
    return r;
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, CRYPTO_UUID_SIZE,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
           b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return 0;
}
