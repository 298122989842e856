/* Base64, standard alphabet, padded, no newlines (include/nbdcrypt/crypto.h).
 *
 * OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock do the arithmetic; this file adds
 * what they lack: DecodeBlock accepts surrounding whitespace, ignores where
 * '=' appears and always writes 3 bytes per quad, padding included.  So the
 * input is validated strictly first, the padding length is computed here,
 * and the last quad is decoded into a small buffer so that out_max is never
 * overrun.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "nbdcrypt/crypto.h"

char *base64_encode(const uint8_t *in, size_t len)
{
  if (len > (size_t)INT_MAX / 4 * 3 - 3) {
    errno = ENOMEM;
    return NULL;
  }
  size_t out_len = (len + 2) / 3 * 4;
  char *out = malloc(out_len + 1);
  if (!out)
    return NULL;
  if (len == 0) {
    out[0] = '\0';
    return out;
  }
  if (base64_encode_into(in, len, out) != out_len) {
    free(out);
    errno = EIO;
    return NULL;
  }
  return out;
}

size_t base64_encode_into(const uint8_t *in, size_t len, char *out)
{
  if (len == 0 || len > (size_t)INT_MAX / 4 * 3 - 3) {
    out[0] = '\0';
    return 0;
  }
  int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
  return n < 0 ? 0 : (size_t)n;
}

static bool base64_is_alphabet(char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

int base64_decode(const char *in, uint8_t *out, size_t out_max, size_t *out_len)
{
  if (out_len)
    *out_len = 0;
  if (!in)
    return -EINVAL;
  size_t len = strlen(in);
  if (len % 4 != 0 || len > INT_MAX)
    return -EINVAL;
  if (len == 0)
    return 0;

  size_t pad = 0;
  if (in[len - 1] == '=')
    pad = in[len - 2] == '=' ? 2 : 1;
  for (size_t i = 0; i < len - pad; i++)
    if (!base64_is_alphabet(in[i]))
      return -EINVAL;

  size_t decoded = len / 4 * 3 - pad;
  if (decoded > out_max)
    return -ENOSPC;

  size_t full_quads = len / 4 - 1;
  if (full_quads > 0 && EVP_DecodeBlock(out, (const unsigned char *)in, (int)(full_quads * 4)) !=
                            (int)(full_quads * 3))
    return -EINVAL;
  uint8_t last[3];
  int r = EVP_DecodeBlock(last, (const unsigned char *)in + full_quads * 4, 4);
  if (r != 3) {
    nbdc_wipe(last, sizeof last);
    nbdc_wipe(out, full_quads * 3);
    return -EINVAL;
  }
  memcpy(out + full_quads * 3, last, 3 - pad);
  nbdc_wipe(last, sizeof last);
  if (out_len)
    *out_len = decoded;
  return 0;
}
