/* Randomness from the OpenSSL private CSPRNG (include/nbdcrypt/crypto.h). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>

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
