/* Test tool: run libnbdcrypt's XTS sector engine over stdin.
 *   xts-tool decrypt|encrypt KEYFILE SECTOR_SIZE FIRST_UNIT < in > out
 * KEYFILE holds the raw 32- or 64-byte key; FIRST_UNIT is the IV of the first
 * sector in 512-byte units.  Input length must be a multiple of SECTOR_SIZE.
 * Used by the cryptsetup interop tests as an independent decryption path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/crypto.h"

int main(int argc, char **argv)
{
  if (argc != 5 || (strcmp(argv[1], "decrypt") != 0 && strcmp(argv[1], "encrypt") != 0)) {
    fprintf(stderr, "usage: xts-tool decrypt|encrypt KEYFILE SECTOR_SIZE FIRST_UNIT\n");
    return 2;
  }
  bool decrypt = strcmp(argv[1], "decrypt") == 0;
  uint32_t sector_size = (uint32_t)strtoul(argv[3], NULL, 10);
  uint64_t unit = strtoull(argv[4], NULL, 10);

  uint8_t *key = secmem_alloc(64);
  FILE *kf = fopen(argv[2], "rb");
  if (!key || !kf) {
    perror(argv[2]);
    return 1;
  }
  size_t key_len = fread(key, 1, 64, kf);
  fclose(kf);

  struct nbdc_error err = {0};
  struct xts_ctx *ctx = NULL;
  if (xts_new(&ctx, key, key_len, sector_size, &err) < 0) {
    fprintf(stderr, "xts-tool: %s\n", err.msg);
    return 1;
  }
  secmem_free(key, 64);

  size_t chunk = (size_t)sector_size * 256, n;
  uint8_t *buf = malloc(chunk);
  if (!buf)
    return 1;
  while ((n = fread(buf, 1, chunk, stdin)) > 0) {
    if (n % sector_size) {
      fprintf(stderr, "xts-tool: input is not a multiple of %u bytes\n", sector_size);
      return 1;
    }
    int r = decrypt ? xts_decrypt(ctx, buf, buf, n, unit, &err)
                    : xts_encrypt(ctx, buf, buf, n, unit, &err);
    if (r < 0) {
      fprintf(stderr, "xts-tool: %s\n", err.msg);
      return 1;
    }
    fwrite(buf, 1, n, stdout);
    unit += n / 512;
  }
  free(buf);
  xts_free(ctx);
  return 0;
}
