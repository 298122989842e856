/* The libgcrypt crypto backend (include/nbdcrypt/crypto.h, "the crypto
 * backend boundary"), the default: XTS, hashes, HMAC and PBKDF2 through
 * libgcrypt, randomness from the kernel (getrandom).
 *
 * Secure memory.  libgcrypt keeps what a handle opened with
 * GCRY_CIPHER_SECURE / GCRY_MD_FLAG_SECURE holds (key schedules, hash states
 * over secrets) in "secure" allocations.  Its own secure pool is only
 * mlock()ed; we route secure allocations to secmem_alloc instead (locked and
 * MADV_DONTDUMP, wiped on free) with gcry_set_allocation_handler.  That is
 * process-wide, so it is done only when nobody in the process has started
 * initialising libgcrypt before us (GCRYCTL_ANY_INITIALIZATION_P): the
 * cryptsetup token plugin runs inside cryptsetup, the filter inside nbdkit,
 * and another user of libgcrypt there (libcryptsetup built with the gcrypt
 * backend, libsystemd) keeps its own set-up; our handles then live in
 * libgcrypt's own secure pool (crypto_backend_schedules_secure says false).
 * Debian 12's libcryptsetup12 links OpenSSL, not libgcrypt.
 *
 * XTS.  A libgcrypt cipher handle is not thread-safe: one per xts context,
 * and the callers give each thread its own context (xts_dup).  One setiv and
 * one encrypt per sector: libgcrypt's XTS treats one call as one data unit
 * (the tweak of the next 16-byte block is the previous one times alpha), so
 * a call over many sectors does NOT give LUKS's plain64 IVs (checked: the
 * second 4096-byte sector of a two-sector call differs from the sector
 * encrypted alone with IV 8, and a second call without setiv does not
 * continue at the next sector either).  One handle serves both directions:
 * libgcrypt derives the decryption schedule from the encryption one, inside
 * the handle.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <gcrypt.h>

#include "crypto/internal.h"
#include "nbdcrypt/crypto.h"

#define NEED_LIBGCRYPT_VERSION "1.9.0" /* VAES/AVX2 XTS, GCRY_KDF_PBKDF2 */
#define XTS_IV_LEN             16

/* ---- allocations: secure ones on secmem_alloc (secblock.c) ---------------- */

static void *gc_alloc_secure(size_t n)
{
  return secblock_alloc(n);
}

static int gc_is_secure(const void *p)
{
  return secblock_is(p);
}

static void gc_free(void *p)
{
  if (p && !secblock_free(p))
    free(p);
}

static void *gc_alloc(size_t n)
{
  return malloc(n);
}

static void *gc_realloc(void *p, size_t n)
{
  void *q;
  if (!p)
    return malloc(n);
  return secblock_realloc(p, n, &q) ? q : realloc(p, n);
}

/* ---- initialisation --------------------------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_code;
static char init_msg[160];
static bool own_allocator;
static char backend_name[64] = "libgcrypt";

static void gc_init(void)
{
  /* Somebody else in this process (the program we are loaded into) started
   * with libgcrypt: keep its set-up, only check the version. */
  bool foreign = gcry_control(GCRYCTL_ANY_INITIALIZATION_P) != 0;
  if (!foreign)
    gcry_set_allocation_handler(gc_alloc, gc_alloc_secure, gc_is_secure, gc_realloc, gc_free);
  const char *version = gcry_check_version(NEED_LIBGCRYPT_VERSION);
  if (!version) {
    init_code = ENOTSUP;
    snprintf(init_msg, sizeof init_msg, "libgcrypt %s is too old (at least %s is needed)",
             gcry_check_version(NULL), NEED_LIBGCRYPT_VERSION);
    return;
  }
  snprintf(backend_name, sizeof backend_name, "libgcrypt %s", version);
  if (!foreign) {
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    own_allocator = true;
  }
}

int crypto_backend_init(struct nbdc_error *err)
{
  pthread_once(&init_once, gc_init);
  if (init_code)
    return nbdc_error_set(err, init_code, "%s", init_msg);
  return 0;
}

const char *crypto_backend_name(void)
{
  pthread_once(&init_once, gc_init);
  return backend_name;
}

bool crypto_backend_schedules_secure(void)
{
  pthread_once(&init_once, gc_init);
  return own_allocator;
}

static int gc_error(struct nbdc_error *err, int code, gcry_error_t rc, const char *what)
{
  return nbdc_error_set(err, code, "%s: %s", what, gcry_strerror(rc));
}

/* ---- XTS ---------------------------------------------------------------------- */

struct xts_be {
  gcry_cipher_hd_t h;
};

void xts_be_free(struct xts_be *be)
{
  if (!be)
    return;
  gcry_cipher_close(be->h); /* wipes the schedule (and frees it through gc_free) */
  free(be);
}

int xts_be_new(struct xts_be **out, const uint8_t *key, size_t key_len, struct nbdc_error *err)
{
  *out = NULL;
  struct xts_be *be = calloc(1, sizeof *be);
  if (!be)
    return nbdc_error_set(err, ENOMEM, "out of memory for an xts context");
  int algo = key_len == 64 ? GCRY_CIPHER_AES256 : GCRY_CIPHER_AES128;
  gcry_error_t rc = gcry_cipher_open(&be->h, algo, GCRY_CIPHER_MODE_XTS, GCRY_CIPHER_SECURE);
  if (rc) {
    free(be);
    return gc_error(err, ENOMEM, rc, "cannot open an aes-xts cipher handle");
  }
  rc = gcry_cipher_setkey(be->h, key, key_len);
  if (rc) {
    xts_be_free(be);
    char what[64];
    snprintf(what, sizeof what, "cannot set the aes-%zu-xts key", key_len * 4);
    return gc_error(err, EINVAL, rc, what);
  }
  *out = be;
  return 0;
}

int xts_be_run(struct xts_be *be, int enc, uint8_t *out, const uint8_t *in, size_t len,
               uint32_t sector, uint64_t first_unit, struct nbdc_error *err)
{
  const uint32_t units_per_sector = sector / 512;
  /* In place when in == out (libgcrypt's NULL input). */
  const bool in_place = in == out;
  uint8_t iv[XTS_IV_LEN] = {0};
  uint64_t unit = first_unit;
  for (size_t off = 0; off < len; off += sector, unit += units_per_sector) {
    const uint64_t le = htole64(unit); /* plain64: the unit number, little-endian */
    memcpy(iv, &le, sizeof le);
    gcry_error_t rc = gcry_cipher_setiv(be->h, iv, sizeof iv);
    if (!rc) {
      const uint8_t *src = in_place ? NULL : in + off;
      const size_t srclen = in_place ? 0 : sector;
      rc = enc ? gcry_cipher_encrypt(be->h, out + off, sector, src, srclen)
               : gcry_cipher_decrypt(be->h, out + off, sector, src, srclen);
    }
    if (rc)
      return nbdc_error_set(err, EIO, "xts %s failed at 512-byte unit %" PRIu64 ": %s",
                            enc ? "encrypt" : "decrypt", unit, gcry_strerror(rc));
  }
  return 0;
}

/* ---- hashes and HMAC ------------------------------------------------------------ */

struct crypto_hash {
  gcry_md_hd_t h;
  int algo;
  size_t size;
};

/* libgcrypt's algorithm for name with a fixed digest size, or 0. */
static int md_algo(const char *name, size_t *size)
{
  if (!name || crypto_backend_init(NULL) < 0)
    return 0;
  int algo = gcry_md_map_name(name);
  if (!algo)
    return 0;
  unsigned int dlen = gcry_md_get_algo_dlen(algo); /* 0 for XOFs */
  if (dlen == 0 || dlen > CRYPTO_HASH_MAX)
    return 0;
  *size = dlen;
  return algo;
}

size_t crypto_hash_size(const char *name)
{
  size_t size = 0;
  return md_algo(name, &size) ? size : 0;
}

void crypto_hash_free(struct crypto_hash *h)
{
  if (!h)
    return;
  gcry_md_close(h->h);
  free(h);
}

int crypto_hash_new(struct crypto_hash **out, const char *name, bool secure, struct nbdc_error *err)
{
  *out = NULL;
  int r = crypto_backend_init(err);
  if (r < 0)
    return r;
  struct crypto_hash *h = calloc(1, sizeof *h);
  if (!h)
    return nbdc_error_set(err, ENOMEM, "out of memory for a hash state");
  h->algo = md_algo(name, &h->size);
  if (!h->algo) {
    free(h);
    return nbdc_error_set(err, EINVAL, "unknown hash '%s'", name ? name : "(null)");
  }
  gcry_error_t rc = gcry_md_open(&h->h, h->algo, secure ? GCRY_MD_FLAG_SECURE : 0);
  if (rc) {
    free(h);
    return gc_error(err, ENOMEM, rc, "cannot open a hash");
  }
  *out = h;
  return 0;
}

void crypto_hash_write(struct crypto_hash *h, const void *data, size_t len)
{
  if (len)
    gcry_md_write(h->h, data, len);
}

int crypto_hash_final(struct crypto_hash *h, uint8_t *out, size_t out_len, struct nbdc_error *err)
{
  if (out_len > h->size)
    return nbdc_error_set(err, EINVAL, "hash output of %zu bytes is longer than the digest (%zu)",
                          out_len, h->size);
  const unsigned char *md = gcry_md_read(h->h, h->algo);
  if (!md)
    return nbdc_error_set(err, EIO, "hash of %zu bytes failed", out_len);
  memcpy(out, md, out_len);
  gcry_md_reset(h->h);
  return 0;
}

int crypto_hash_once(const char *name, const void *data, size_t len, uint8_t *out, size_t out_len,
                     struct nbdc_error *err)
{
  struct crypto_hash *h = NULL;
  int r = crypto_hash_new(&h, name, false, err);
  if (r < 0)
    return r;
  crypto_hash_write(h, data, len);
  r = crypto_hash_final(h, out, out_len, err);
  crypto_hash_free(h);
  return r;
}

int crypto_hmac(const char *name, const uint8_t *key, size_t key_len, const void *data, size_t len,
                uint8_t *out, size_t out_len, struct nbdc_error *err)
{
  int r = crypto_backend_init(err);
  if (r < 0)
    return r;
  size_t size = 0;
  int algo = md_algo(name, &size);
  if (!algo)
    return nbdc_error_set(err, EINVAL, "unknown hmac hash '%s'", name ? name : "(null)");
  if (out_len > size)
    return nbdc_error_set(err, EINVAL, "bad hmac-%s output length %zu", name, out_len);
  gcry_md_hd_t h;
  gcry_error_t rc = gcry_md_open(&h, algo, GCRY_MD_FLAG_HMAC | GCRY_MD_FLAG_SECURE);
  if (!rc)
    rc = gcry_md_setkey(h, key, key_len);
  else
    h = NULL;
  if (!rc) {
    if (len)
      gcry_md_write(h, data, len);
    const unsigned char *mac = gcry_md_read(h, algo);
    if (mac)
      memcpy(out, mac, out_len);
    else
      rc = GPG_ERR_GENERAL;
  }
  gcry_md_close(h);
  if (rc) {
    char what[48];
    snprintf(what, sizeof what, "hmac-%s failed", name);
    return gc_error(err, EIO, rc, what);
  }
  return 0;
}

/* ---- PBKDF2 ----------------------------------------------------------------- */

int pbkdf2_be(const char *hash, const uint8_t *secret, size_t secret_len, const uint8_t *salt,
              size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len,
              struct nbdc_error *err)
{
  size_t size = 0;
  int algo = md_algo(hash, &size);
  if (!algo)
    return nbdc_error_set(err, EINVAL, "unknown pbkdf2 hash '%s'", hash);
  gcry_error_t rc = gcry_kdf_derive(secret, secret_len, GCRY_KDF_PBKDF2, algo, salt, salt_len,
                                    iterations, out_len, out);
  if (rc) {
    char what[48];
    snprintf(what, sizeof what, "pbkdf2-%s failed", hash);
    return gc_error(err, EIO, rc, what);
  }
  return 0;
}

/* ---- randomness ------------------------------------------------------------- */

int crypto_random(void *buf, size_t n, struct nbdc_error *err)
{
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t got = getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR)
        continue;
      return nbdc_error_set(err, EIO, "random number generator failed: getrandom: %s",
                            strerror(errno));
    }
    p += got;
    n -= (size_t)got;
  }
  return 0;
}
