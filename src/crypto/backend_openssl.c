/* The OpenSSL crypto backend (include/nbdcrypt/crypto.h, "the crypto backend
 * boundary"): XTS, hashes, HMAC, PBKDF2 and randomness through libcrypto 3.
 * Built with -DNBDCRYPT_CRYPTO_BACKEND=openssl, for deployments that mandate
 * OpenSSL (its FIPS provider).
 *
 * XTS: the key schedule is expanded once, in xts_be_new: OpenSSL's XTS
 * provider keeps an encryption or a decryption schedule depending on the
 * direction given with the key, so a context holds two cipher contexts, one
 * per direction.  Per sector only the IV is reset (an init with a NULL key
 * does not touch the schedule), then the whole sector is one update call.
 * Nothing is allocated on the data path.
 *
 * The per-sector calls go straight to the provider's cipher functions
 * (OSSL_PROVIDER_query_operation), not through EVP_*Init_ex/EVP_*Update:
 * on OpenSSL 3.0 EVP's IV reset asks the provider for the IV length through
 * OSSL_PARAM every time (string compares), ~70 ns a sector, which is 10% of
 * the cipher work on a 4096-byte sector (bench/REPORT.md).  The cipher is
 * still fetched through EVP, so the provider and properties are the ones
 * EVP would use, and the fetched EVP_CIPHER keeps that provider loaded.  XTS
 * has no cheaper public way to change the tweak (OSSL_CIPHER_PARAM_IV is
 * ignored by the XTS provider).
 *
 * Secure memory.  The provider allocates its cipher contexts, which hold
 * the expanded key schedules, and hash states with OPENSSL_zalloc, i.e. on
 * the ordinary heap.  CRYPTO_set_mem_functions routes OpenSSL's allocations
 * through ours: ordinary ones stay plain malloc/realloc/free (no header, so
 * code that frees OpenSSL memory with free() keeps working), and those made
 * while this thread is inside a key-handling call (ossl_secure_depth: cipher
 * context creation and key set-up, secure hash states, PBKDF2) come from
 * OpenSSL's secure heap (CRYPTO_secure_malloc: one mlock()ed, MADV_DONTDUMP
 * arena, set up on first use, i.e. after nbdkit forked; PBKDF2 allocates on
 * every iteration, so a mapping per allocation would be far too slow) or,
 * when that is full, from secmem_alloc, recorded so that free and realloc
 * tell them apart.
 * It is process-wide and OpenSSL refuses it once anything in the process
 * allocated through OpenSSL: it is tried from an ELF constructor of this
 * file (the CLI, and the filter when nbdkit loads it), and when refused (the
 * cryptsetup token plugin inside libcryptsetup, which uses OpenSSL; a plugin
 * of nbdkit that initialised OpenSSL first) the contexts stay on the heap
 * and crypto_backend_schedules_secure() says so (docs/security.md).
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "crypto/internal.h"
#include "nbdcrypt/crypto.h"

#define XTS_IV_LEN 16

/* Like nbdc_error_set, with the oldest queued OpenSSL error appended as
 * ": <reason>"; the OpenSSL error queue of this thread is cleared. */
__attribute__((format(printf, 3, 4))) static int ossl_error(struct nbdc_error *err, int code,
                                                            const char *fmt, ...)
{
  char what[NBDC_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);

  unsigned long e = ERR_peek_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  if (reason)
    return nbdc_error_set(err, code, "%.*s: %s", NBDC_ERROR_MAX - 64, what, reason);
  return nbdc_error_set(err, code, "%s", what);
}

/* ---- secure allocations ----------------------------------------------------- */

static _Thread_local int ossl_secure_depth;
static bool own_allocator;

#define SECURE_HEAP_SIZE (4 << 20) /* bytes: a power of two */

static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static _Atomic bool heap_ready; /* read by every free, on any thread */

static void secure_heap_init(void)
{
  /* 1: locked; 2: could not lock (RLIMIT_MEMLOCK), still MADV_DONTDUMP. */
  heap_ready = CRYPTO_secure_malloc_init(SECURE_HEAP_SIZE, 16) != 0;
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
  if (ossl_secure_depth <= 0)
    return malloc(n);
  void *p = heap_ready ? CRYPTO_secure_malloc(n, file, line) : NULL;
  return p ? p : secblock_alloc(n);
}

static void ossl_free(void *p, const char *file, int line)
{
  if (!p)
    return;
  if (heap_ready && CRYPTO_secure_allocated(p)) {
    CRYPTO_secure_clear_free(p, CRYPTO_secure_actual_size(p), file, line);
    return;
  }
  if (!secblock_free(p))
    free(p);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
  if (!p)
    return ossl_malloc(n, file, line);
  if (heap_ready && CRYPTO_secure_allocated(p)) {
    size_t old = CRYPTO_secure_actual_size(p);
    void *q = CRYPTO_secure_malloc(n, file, line);
    if (!q)
      q = secblock_alloc(n);
    if (q)
      memcpy(q, p, old < n ? old : n);
    CRYPTO_secure_clear_free(p, old, file, line);
    return q;
  }
  void *q;
  return secblock_realloc(p, n, &q) ? q : realloc(p, n);
}

/* Before anything in the process allocates through OpenSSL, if we can. */
__attribute__((constructor)) static void ossl_allocator_install(void)
{
  own_allocator = CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) == 1;
}

#define SECURE_BEGIN() (pthread_once(&heap_once, secure_heap_init), ossl_secure_depth++)
#define SECURE_END()   (ossl_secure_depth--)

/* ---- backend ---------------------------------------------------------------- */

int crypto_backend_init(struct nbdc_error *err)
{
  (void)err; /* libcrypto 3 initialises itself on first use */
  return 0;
}

const char *crypto_backend_name(void)
{
  static char name[64];
  if (!name[0])
    snprintf(name, sizeof name, "openssl %s", OpenSSL_version(OPENSSL_VERSION_STRING));
  return name;
}

bool crypto_backend_schedules_secure(void)
{
  return own_allocator;
}

/* ---- XTS ---------------------------------------------------------------------- */

/* The provider's implementation of the cipher, looked up per context. */
struct xts_impl {
  EVP_CIPHER *cipher; /* fetched: holds the provider */
  void *provctx;
  OSSL_FUNC_cipher_newctx_fn *newctx;
  OSSL_FUNC_cipher_encrypt_init_fn *einit;
  OSSL_FUNC_cipher_decrypt_init_fn *dinit;
  OSSL_FUNC_cipher_update_fn *update;
  OSSL_FUNC_cipher_freectx_fn *freectx;
};

struct xts_be {
  struct xts_impl impl;
  void *enc; /* provider cipher contexts */
  void *dec;
};

/* True when name is one of the colon-separated names in names. */
static int name_in(const char *names, const char *name)
{
  const size_t len = strlen(name);
  for (const char *p = names; p && *p;) {
    const char *end = strchr(p, ':');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == len && OPENSSL_strncasecmp(p, name, len) == 0)
      return 1;
    p = end ? end + 1 : NULL;
  }
  return 0;
}

/* Fetch the cipher as EVP would and find its provider functions. */
static int xts_impl_get(struct xts_impl *impl, size_t key_len, struct nbdc_error *err)
{
  const char *name = key_len == 64 ? "AES-256-XTS" : "AES-128-XTS";
  impl->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
  if (!impl->cipher)
    return ossl_error(err, ENOENT, "cipher %s is not available", name);
  const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(impl->cipher);
  int no_store = 0;
  const OSSL_ALGORITHM *algs = OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_store);
  for (const OSSL_ALGORITHM *a = algs; a && a->algorithm_names; a++) {
    if (!name_in(a->algorithm_names, name))
      continue;
    for (const OSSL_DISPATCH *f = a->implementation; f->function_id != 0; f++) {
      switch (f->function_id) {
      case OSSL_FUNC_CIPHER_NEWCTX:
        impl->newctx = OSSL_FUNC_cipher_newctx(f);
        break;
      case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
        impl->einit = OSSL_FUNC_cipher_encrypt_init(f);
        break;
      case OSSL_FUNC_CIPHER_DECRYPT_INIT:
        impl->dinit = OSSL_FUNC_cipher_decrypt_init(f);
        break;
      case OSSL_FUNC_CIPHER_UPDATE:
        impl->update = OSSL_FUNC_cipher_update(f);
        break;
      case OSSL_FUNC_CIPHER_FREECTX:
        impl->freectx = OSSL_FUNC_cipher_freectx(f);
        break;
      default:
        break;
      }
    }
    break;
  }
  if (algs)
    OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
  if (!impl->newctx || !impl->einit || !impl->dinit || !impl->update || !impl->freectx)
    return nbdc_error_set(err, ENOENT, "provider %s has no usable %s implementation",
                          OSSL_PROVIDER_get0_name(prov), name);
  impl->provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
  return 0;
}

void xts_be_free(struct xts_be *be)
{
  if (!be)
    return;
  /* The provider's freectx cleanses the context holding the schedule. */
  if (be->impl.freectx) {
    if (be->enc)
      be->impl.freectx(be->enc);
    if (be->dec)
      be->impl.freectx(be->dec);
  }
  EVP_CIPHER_free(be->impl.cipher);
  OPENSSL_cleanse(be, sizeof *be);
  OPENSSL_free(be);
}

int xts_be_new(struct xts_be **out, const uint8_t *key, size_t key_len, struct nbdc_error *err)
{
  *out = NULL;
  struct xts_be *be = OPENSSL_zalloc(sizeof *be);
  if (!be)
    return nbdc_error_set(err, ENOMEM, "out of memory for an xts context");
  int r = xts_impl_get(&be->impl, key_len, err);
  if (r < 0) {
    xts_be_free(be);
    return r;
  }
  /* The contexts hold the schedules: secure (the cipher was fetched above,
   * outside, so OpenSSL's long-lived tables stay on the heap). */
  SECURE_BEGIN();
  be->enc = be->impl.newctx(be->impl.provctx);
  be->dec = be->impl.newctx(be->impl.provctx);
  int ok = be->enc && be->dec && be->impl.einit(be->enc, key, key_len, NULL, 0, NULL) == 1 &&
           be->impl.dinit(be->dec, key, key_len, NULL, 0, NULL) == 1;
  SECURE_END();
  if (!be->enc || !be->dec) {
    xts_be_free(be);
    return nbdc_error_set(err, ENOMEM, "out of memory for an xts cipher context");
  }
  if (!ok) {
    xts_be_free(be);
    return ossl_error(err, EINVAL, "cannot set the aes-%zu-xts key", key_len * 4);
  }
  *out = be;
  return 0;
}

int xts_be_run(struct xts_be *be, int enc, uint8_t *out, const uint8_t *in, size_t len,
               uint32_t sector, uint64_t first_unit, struct nbdc_error *err)
{
  void *cctx = enc ? be->enc : be->dec;
  OSSL_FUNC_cipher_encrypt_init_fn *init = enc ? be->impl.einit : be->impl.dinit;
  const uint32_t units_per_sector = sector / 512;
  uint8_t iv[XTS_IV_LEN] = {0};
  uint64_t unit = first_unit;
  for (size_t off = 0; off < len; off += sector, unit += units_per_sector) {
    const uint64_t le = htole64(unit); /* plain64: the unit number, little-endian */
    memcpy(iv, &le, sizeof le);
    size_t outl = 0;
    if (init(cctx, NULL, 0, iv, sizeof iv, NULL) != 1 ||
        be->impl.update(cctx, out + off, &outl, sector, in + off, sector) != 1 || outl != sector)
      return ossl_error(err, EIO, "xts %s failed at 512-byte unit %" PRIu64,
                        enc ? "encrypt" : "decrypt", unit);
  }
  return 0;
}

/* ---- hashes and HMAC ------------------------------------------------------------ */

struct crypto_hash {
  EVP_MD *md;
  EVP_MD_CTX *ctx;
  size_t size;
  bool secure;
};

static EVP_MD *md_fetch(const char *name, size_t *size)
{
  EVP_MD *md = name ? EVP_MD_fetch(NULL, name, NULL) : NULL;
  ERR_clear_error();
  if (!md)
    return NULL;
  int n = EVP_MD_get_size(md);
  if (n <= 0 || n > CRYPTO_HASH_MAX || (EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF)) {
    EVP_MD_free(md);
    return NULL;
  }
  *size = (size_t)n;
  return md;
}

size_t crypto_hash_size(const char *name)
{
  size_t size = 0;
  EVP_MD *md = md_fetch(name, &size);
  EVP_MD_free(md);
  return md ? size : 0;
}

void crypto_hash_free(struct crypto_hash *h)
{
  if (!h)
    return;
  EVP_MD_CTX_free(h->ctx); /* cleanses the state */
  EVP_MD_free(h->md);
  OPENSSL_free(h);
}

int crypto_hash_new(struct crypto_hash **out, const char *name, bool secure, struct nbdc_error *err)
{
  *out = NULL;
  struct crypto_hash *h = OPENSSL_zalloc(sizeof *h);
  if (!h)
    return nbdc_error_set(err, ENOMEM, "out of memory for a hash state");
  h->md = md_fetch(name, &h->size);
  if (!h->md) {
    crypto_hash_free(h);
    return nbdc_error_set(err, EINVAL, "unknown hash '%s'", name ? name : "(null)");
  }
  h->secure = secure;
  if (secure)
    SECURE_BEGIN();
  h->ctx = EVP_MD_CTX_new();
  int ok = h->ctx && EVP_DigestInit_ex(h->ctx, h->md, NULL) == 1;
  if (secure)
    SECURE_END();
  if (!ok) {
    crypto_hash_free(h);
    return ossl_error(err, ENOMEM, "cannot start a %s hash", name);
  }
  *out = h;
  return 0;
}

void crypto_hash_write(struct crypto_hash *h, const void *data, size_t len)
{
  /* Fails only on a broken context; crypto_hash_final then reports it. */
  if (len && EVP_DigestUpdate(h->ctx, data, len) != 1)
    h->size = 0;
}

int crypto_hash_final(struct crypto_hash *h, uint8_t *out, size_t out_len, struct nbdc_error *err)
{
  uint8_t md[EVP_MAX_MD_SIZE];
  size_t size = h->size;
  int ok = size != 0 && out_len <= size && EVP_DigestFinal_ex(h->ctx, md, NULL) == 1;
  if (ok)
    memcpy(out, md, out_len);
  OPENSSL_cleanse(md, sizeof md);
  if (h->secure)
    SECURE_BEGIN();
  int again = EVP_DigestInit_ex(h->ctx, h->md, NULL) == 1;
  if (h->secure)
    SECURE_END();
  if (!again)
    ok = 0;
  else
    h->size = (size_t)EVP_MD_get_size(h->md);
  if (!ok)
    return ossl_error(err, EIO, "hash of %zu bytes failed", out_len);
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

/* HMAC (RFC 2104) over two secure hash states, so that the padded keys and
 * the inner state are in secure memory as with libgcrypt (OpenSSL's HMAC()
 * fetches and allocates on every call). */
int crypto_hmac(const char *name, const uint8_t *key, size_t key_len, const void *data, size_t len,
                uint8_t *out, size_t out_len, struct nbdc_error *err)
{
  size_t size = 0;
  EVP_MD *md = md_fetch(name, &size);
  int block = md ? EVP_MD_get_block_size(md) : 0;
  EVP_MD_free(md);
  if (!md || block <= 0 || block > 256 || (size_t)block < size)
    return nbdc_error_set(err, EINVAL, "unknown hmac hash '%s'", name ? name : "(null)");
  if (out_len > size)
    return nbdc_error_set(err, EINVAL, "bad hmac-%s output length %zu", name, out_len);
  /* pad[block] then inner[CRYPTO_HASH_MAX] */
  const size_t mem_len = (size_t)block + CRYPTO_HASH_MAX;
  uint8_t *pad = secmem_alloc(mem_len);
  if (!pad)
    return nbdc_error_set(err, ENOMEM, "cannot allocate secure memory for hmac-%s", name);
  uint8_t *inner = pad + block;
  struct crypto_hash *h = NULL;
  int r = crypto_hash_new(&h, name, true, err);
  if (r == 0 && key_len > (size_t)block) { /* long keys are hashed first */
    crypto_hash_write(h, key, key_len);
    r = crypto_hash_final(h, pad, size, err);
  } else if (r == 0 && key_len) {
    memcpy(pad, key, key_len);
  }
  if (r == 0) {
    for (int i = 0; i < block; i++)
      pad[i] ^= 0x36;
    crypto_hash_write(h, pad, (size_t)block);
    crypto_hash_write(h, data, len);
    r = crypto_hash_final(h, inner, size, err);
  }
  if (r == 0) {
    for (int i = 0; i < block; i++)
      pad[i] ^= 0x36 ^ 0x5c;
    crypto_hash_write(h, pad, (size_t)block);
    crypto_hash_write(h, inner, size);
    r = crypto_hash_final(h, inner, size, err);
  }
  if (r == 0)
    memcpy(out, inner, out_len);
  crypto_hash_free(h);
  secmem_free(pad, mem_len);
  return r;
}

/* ---- PBKDF2 ----------------------------------------------------------------- */

int pbkdf2_be(const char *hash, const uint8_t *secret, size_t secret_len, const uint8_t *salt,
              size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len,
              struct nbdc_error *err)
{
  EVP_MD *md = EVP_MD_fetch(NULL, hash, NULL);
  if (!md)
    return ossl_error(err, EINVAL, "unknown pbkdf2 hash '%s'", hash);
  /* A first run on nothing secret fills OpenSSL's method caches on the
   * heap; the real one runs with its allocations (the HMAC states keyed
   * with the secret) in secure memory. */
  static const uint8_t zero[16];
  uint8_t scratch[16];
  int ok = PKCS5_PBKDF2_HMAC((const char *)zero, 1, zero, 1, 1, md, 1, scratch) == 1;
  SECURE_BEGIN();
  ok = ok && PKCS5_PBKDF2_HMAC((const char *)secret, (int)secret_len, salt, (int)salt_len,
                               (int)iterations, md, (int)out_len, out) == 1;
  SECURE_END();
  EVP_MD_free(md);
  if (!ok)
    return ossl_error(err, EIO, "pbkdf2-%s failed", hash);
  return 0;
}

/* ---- randomness ------------------------------------------------------------- */

int crypto_random(void *buf, size_t n, struct nbdc_error *err)
{
  uint8_t *p = buf;
  while (n > 0) {
    int chunk = n > INT_MAX ? INT_MAX : (int)n;
    if (RAND_priv_bytes(p, chunk) != 1)
      return ossl_error(err, EIO, "random number generator failed");
    p += chunk;
    n -= (size_t)chunk;
  }
  return 0;
}
