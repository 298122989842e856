/* Throughput of nbdcrypt's XTS engine (src/crypto/xts.c and the backend it
 * was built with) as the filter calls it: 256 KiB requests (nbdcopy's
 * default request size) of 4096- and 512-byte sectors, encrypt and decrypt
 * in place, for about half a CPU second each (thread CPU time, so other load
 * on the machine matters less).  Prints
 * "xts_<backend>_<dir>_<sector>_MBps<TAB>value" lines for bench/run.sh,
 * <backend> "libgcrypt" or "openssl".
 *
 * Built with -DXTS_SPEED_RAW_GCRYPT (bench/run.sh does for the libgcrypt
 * build) it also measures libgcrypt called directly, in the same process and
 * interleaved with ours: one gcry_cipher_setiv and one in-place
 * gcry_cipher_encrypt/decrypt per sector on a handle opened without
 * (xts_raw_...) and with GCRY_CIPHER_SECURE (xts_rawsecure_..., its schedule
 * in our secure memory, as ours): the difference is what our wrapper costs.
 *
 * "xts-speed count ours|raw|rawsecure SECTOR REQUESTS [decrypt]" runs a fixed
 * number of requests and prints nothing: for instruction counts under
 * valgrind --tool=callgrind, which noise on the machine does not move. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"

#ifdef XTS_SPEED_RAW_GCRYPT
#include <gcrypt.h>
#endif

#define REQUEST (256u * 1024)

static double seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum engine { OURS, RAW, RAW_SECURE };
static const char *const engine_names[] = {"ours", "raw", "rawsecure"};

struct engine_ctx {
  enum engine which;
  struct xts_ctx *xts;
#ifdef XTS_SPEED_RAW_GCRYPT
  gcry_cipher_hd_t h;
#endif
};

static int engine_open(struct engine_ctx *c, enum engine which, uint32_t sector_size)
{
  uint8_t key[64];
  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (uint8_t)(i * 7 + 1);
  struct nbdc_error e = {0};
  c->which = which;
  /* Ours always: it initialises the backend (and libgcrypt's allocator). */
  if (xts_new(&c->xts, key, sizeof key, sector_size, &e) < 0) {
    fprintf(stderr, "xts-speed: %s\n", e.msg);
    return -1;
  }
  if (which == OURS)
    return 0;
#ifdef XTS_SPEED_RAW_GCRYPT
  if (gcry_cipher_open(&c->h, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_XTS,
                       which == RAW_SECURE ? GCRY_CIPHER_SECURE : 0) ||
      gcry_cipher_setkey(c->h, key, sizeof key)) {
    fprintf(stderr, "xts-speed: cannot open a libgcrypt handle\n");
    return -1;
  }
  return 0;
#else
  fprintf(stderr, "xts-speed: built without XTS_SPEED_RAW_GCRYPT\n");
  return -1;
#endif
}

static void engine_close(struct engine_ctx *c)
{
#ifdef XTS_SPEED_RAW_GCRYPT
  if (c->which != OURS)
    gcry_cipher_close(c->h);
#endif
  xts_free(c->xts);
}

/* One 256 KiB request of sector_size sectors in place, from 512-byte unit. */
static int engine_request(struct engine_ctx *c, int enc, uint8_t *buf, uint32_t sector_size,
                          uint64_t unit)
{
  struct nbdc_error e = {0};
  if (c->which == OURS) {
    int r = enc ? xts_encrypt(c->xts, buf, buf, REQUEST, unit, &e)
                : xts_decrypt(c->xts, buf, buf, REQUEST, unit, &e);
    if (r < 0)
      fprintf(stderr, "xts-speed: %s\n", e.msg);
    return r;
  }
#ifdef XTS_SPEED_RAW_GCRYPT
  uint8_t iv[16] = {0};
  for (size_t off = 0; off < REQUEST; off += sector_size) {
    memcpy(iv, &unit, 8); /* little-endian plain64 */
    if (gcry_cipher_setiv(c->h, iv, sizeof iv) ||
        (enc ? gcry_cipher_encrypt(c->h, buf + off, sector_size, NULL, 0)
             : gcry_cipher_decrypt(c->h, buf + off, sector_size, NULL, 0)))
      return -1;
    unit += sector_size / 512;
  }
#endif
  return 0;
}

/* Rate of one engine in MB/s over about half a CPU second. */
static double measure(enum engine which, uint32_t sector_size, int enc)
{
  struct engine_ctx c = {0};
  uint8_t *buf = aligned_alloc(4096, REQUEST);
  if (!buf || engine_open(&c, which, sector_size) < 0) {
    free(buf);
    return -1;
  }
  memset(buf, 0x5a, REQUEST);
  uint64_t bytes = 0, unit = 0;
  const double start = seconds();
  double elapsed = 0;
  while (elapsed < 0.5) {
    for (int i = 0; i < 64; i++) {
      if (engine_request(&c, enc, buf, sector_size, unit) < 0) {
        free(buf);
        engine_close(&c);
        return -1;
      }
      unit += REQUEST / 512;
      bytes += REQUEST;
    }
    elapsed = seconds() - start;
  }
  free(buf);
  engine_close(&c);
  return (double)bytes / elapsed / 1e6;
}

static int count(const char *engine, uint32_t sector_size, long requests, int enc)
{
  enum engine which;
  for (which = OURS; which <= RAW_SECURE; which++)
    if (strcmp(engine, engine_names[which]) == 0)
      break;
  if (which > RAW_SECURE)
    return 2;
  struct engine_ctx c = {0};
  uint8_t *buf = aligned_alloc(4096, REQUEST);
  if (!buf || engine_open(&c, which, sector_size) < 0) {
    free(buf);
    return 1;
  }
  memset(buf, 0x5a, REQUEST);
  uint64_t unit = 0;
  for (long i = 0; i < requests; i++, unit += REQUEST / 512)
    if (engine_request(&c, enc, buf, sector_size, unit) < 0)
      return 1;
  free(buf);
  engine_close(&c);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc >= 4 && strcmp(argv[1], "count") == 0)
    return count(argv[2], (uint32_t)atoi(argv[3]), argc > 4 ? atol(argv[4]) : 1000,
                 !(argc > 5 && strcmp(argv[5], "decrypt") == 0));
  static const uint32_t sizes[] = {4096, 512};
  const char *backend = crypto_backend_name();
  const int len = (int)strcspn(backend, " ");
#ifdef XTS_SPEED_RAW_GCRYPT
  const enum engine last = RAW_SECURE;
#else
  const enum engine last = OURS;
#endif
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int enc = 1; enc >= 0; enc--) {
      /* Interleaved, best of three each: the machine's noise hits all alike. */
      double best[3] = {0};
      for (int rep = 0; rep < 3; rep++)
        for (enum engine w = OURS; w <= last; w++) {
          double v = measure(w, sizes[i], enc);
          if (v < 0)
            return 1;
          if (v > best[w])
            best[w] = v;
        }
      for (enum engine w = OURS; w <= last; w++)
        printf("xts_%.*s_%s_%u_MBps\t%.0f\n", w == OURS ? len : (int)strlen(engine_names[w]),
               w == OURS ? backend : engine_names[w], enc ? "encrypt" : "decrypt", sizes[i],
               best[w]);
    }
  return 0;
}
