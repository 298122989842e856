/* Random UUIDs (include/nbdcrypt/crypto.h); the randomness is the backend's. */
#include <stdint.h>
#include <stdio.h>

#include "nbdcrypt/crypto.h"

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
