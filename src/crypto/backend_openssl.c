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
 * What is NOT protected here (docs/security.md, "Key schedules"): the
 * provider allocates its cipher contexts, which hold the expanded key
 * schedules, and the EVP_MD_CTX states with OPENSSL_zalloc, i.e. on the
 * ordinary heap: a core dump of the process can contain them.
 * CRYPTO_set_mem_functions could route them elsewhere, but it is process-wide
 * and refused once anything in the process allocated through OpenSSL (inside
 * nbdkit, a plugin using OpenSSL; inside cryptsetup, libcryptsetup itself), so
 * it is not used.  The libgcrypt backend has no such gap.
 */
#include <errno.h>
#include <inttypes.h>
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
#include <openssl/hmac.h>
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
  return false;
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
  be->enc = be->impl.newctx(be->impl.provctx);
  be->dec = be->impl.newctx(be->impl.provctx);
  if (!be->enc || !be->dec) {
    xts_be_free(be);
    return nbdc_error_set(err, ENOMEM, "out of memory for an xts cipher context");
  }
  if (be->impl.einit(be->enc, key, key_len, NULL, 0, NULL) != 1 ||
      be->impl.dinit(be->dec, key, key_len, NULL, 0, NULL) != 1) {
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
  for (size_t off = 0; off < len; off += sector) {
    for (int b = 0; b < 8; b++)
      iv[b] = (uint8_t)(unit >> (8 * b));
    size_t outl = 0;
    if (init(cctx, NULL, 0, iv, sizeof iv, NULL) != 1 ||
        be->impl.update(cctx, out + off, &outl, sector, in + off, sector) != 1 || outl != sector)
      return ossl_error(err, EIO, "xts %s failed at 512-byte unit %" PRIu64,
                        enc ? "encrypt" : "decrypt", unit);
    unit += units_per_sector;
  }
  return 0;
}

/* ---- hashes and HMAC ------------------------------------------------------------ */

struct crypto_hash {
  EVP_MD *md;
  EVP_MD_CTX *ctx;
  size_t size;
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
  (void)secure; /* EVP_MD_CTX states are on the heap (see the top of this file) */
  *out = NULL;
  struct crypto_hash *h = OPENSSL_zalloc(sizeof *h);
  if (!h)
    return nbdc_error_set(err, ENOMEM, "out of memory for a hash state");
  h->md = md_fetch(name, &h->size);
  if (!h->md) {
    crypto_hash_free(h);
    return nbdc_error_set(err, EINVAL, "unknown hash '%s'", name ? name : "(null)");
  }
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1) {
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
  if (EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1)
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

int crypto_hmac(const char *name, const uint8_t *key, size_t key_len, const void *data, size_t len,
                uint8_t *out, size_t out_len, struct nbdc_error *err)
{
  size_t size = 0;
  EVP_MD *md = md_fetch(name, &size);
  if (!md)
    return nbdc_error_set(err, EINVAL, "unknown hmac hash '%s'", name ? name : "(null)");
  if (out_len > size || key_len > INT_MAX) {
    EVP_MD_free(md);
    return nbdc_error_set(err, EINVAL, "bad hmac-%s output length %zu", name, out_len);
  }
  static const uint8_t empty[1];
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  int ok =
      HMAC(md, key ? key : empty, (int)key_len, data ? data : empty, len, mac, &mac_len) != NULL;
  EVP_MD_free(md);
  if (ok)
    memcpy(out, mac, out_len);
  OPENSSL_cleanse(mac, sizeof mac);
  if (!ok)
    return ossl_error(err, EIO, "hmac-%s failed", name);
  return 0;
}

/* ---- PBKDF2 ----------------------------------------------------------------- */

int pbkdf2_be(const char *hash, const uint8_t *secret, size_t secret_len, const uint8_t *salt,
              size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len,
              struct nbdc_error *err)
{
  EVP_MD *md = EVP_MD_fetch(NULL, hash, NULL);
  if (!md)
    return ossl_error(err, EINVAL, "unknown pbkdf2 hash '%s'", hash);
  int ok = PKCS5_PBKDF2_HMAC((const char *)secret, (int)secret_len, salt, (int)salt_len,
                             (int)iterations, md, (int)out_len, out) == 1;
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
