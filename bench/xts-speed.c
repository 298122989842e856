/* Throughput of nbdcrypt's XTS engine (src/crypto/xts.c and the backend it
 * was built with) as the filter calls it: 256 KiB requests (nbdcopy's
 * default request size) of 4096- and 512-byte sectors, encrypt and decrypt
 * in place, for about half a CPU second each (thread CPU time, so other load
 * on the machine matters less).  Prints
 * "xts_<backend>_<dir>_<sector>_MBps<TAB>value" lines for bench/run.sh,
 * <backend> "libgcrypt" or "openssl". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"

#define REQUEST (256u * 1024)

static double seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int measure(uint32_t sector_size, int enc)
{
  uint8_t key[64];
  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (uint8_t)(i * 7 + 1);
  struct nbdc_error e = {0};
  struct xts_ctx *xts = NULL;
  if (xts_new(&xts, key, sizeof key, sector_size, &e) < 0) {
    fprintf(stderr, "xts-speed: %s\n", e.msg);
    return -1;
  }
  uint8_t *buf = aligned_alloc(4096, REQUEST);
  if (!buf) {
    xts_free(xts);
    return -1;
  }
  memset(buf, 0x5a, REQUEST);
  uint64_t bytes = 0, unit = 0;
  const double start = seconds();
  double elapsed = 0;
  while (elapsed < 0.5) {
    for (int i = 0; i < 64; i++) {
      int r = enc ? xts_encrypt(xts, buf, buf, REQUEST, unit, &e)
                  : xts_decrypt(xts, buf, buf, REQUEST, unit, &e);
      if (r < 0) {
        fprintf(stderr, "xts-speed: %s\n", e.msg);
        free(buf);
        xts_free(xts);
        return -1;
      }
      unit += REQUEST / 512;
      bytes += REQUEST;
    }
    elapsed = seconds() - start;
  }
  const char *backend = crypto_backend_name();
  printf("xts_%.*s_%s_%u_MBps\t%.0f\n", (int)strcspn(backend, " "), backend,
         enc ? "encrypt" : "decrypt", sector_size, (double)bytes / elapsed / 1e6);
  free(buf);
  xts_free(xts);
  return 0;
}

int main(void)
{
  static const uint32_t sizes[] = {4096, 512};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int enc = 1; enc >= 0; enc--)
      if (measure(sizes[i], enc) < 0)
        return 1;
  return 0;
}
