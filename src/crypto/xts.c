/* aes-xts-plain64 sector engine (include/nbdcrypt/crypto.h).
 *
 * The key schedule is expanded once, in xts_new: OpenSSL's XTS provider keeps
 * an encryption or a decryption schedule depending on the direction given
 * with the key, so a context holds two cipher contexts, one per direction.
 * Per sector only the IV is reset (an init with a NULL key does not touch
 * the schedule), then the whole sector is one update call.  Nothing is
 * allocated on the data path.
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
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include "crypto/internal.h"
#include "nbdcrypt/crypto.h"

#define XTS_IV_LEN 16

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

struct xts_ctx {
  struct xts_impl impl;
  void *enc; /* provider cipher contexts */
  void *dec;
  uint8_t *key; /* secmem, key_len bytes: kept for xts_dup */
  size_t key_len;
  uint32_t sector_size;
  uint32_t units_per_sector; /* sector_size / 512: IVs count 512-byte units */
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
    return crypto_ossl_error(err, ENOENT, "cipher %s is not available", name);
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

void xts_free(struct xts_ctx *ctx)
{
  if (!ctx)
    return;
  /* The provider's freectx cleanses the context holding the schedule. */
  if (ctx->impl.freectx) {
    if (ctx->enc)
      ctx->impl.freectx(ctx->enc);
    if (ctx->dec)
      ctx->impl.freectx(ctx->dec);
  }
  EVP_CIPHER_free(ctx->impl.cipher);
  secmem_free(ctx->key, ctx->key_len);
  OPENSSL_cleanse(ctx, sizeof *ctx);
  OPENSSL_free(ctx);
}

int xts_new(struct xts_ctx **out, const uint8_t *key, size_t key_len, uint32_t sector_size,
            struct nbdc_error *err)
{
  *out = NULL;
  if (!key)
    return nbdc_error_set(err, EINVAL, "xts key is missing");
  if (key_len != 32 && key_len != 64)
    return nbdc_error_set(err, EINVAL,
                          "bad xts key length %zu bytes (expected 32 for aes-128-xts or 64 for "
                          "aes-256-xts)",
                          key_len);
  if (sector_size < 512 || sector_size > 4096 || (sector_size & (sector_size - 1)) != 0)
    return nbdc_error_set(err, EINVAL,
                          "bad xts sector size %" PRIu32 " (expected a power of two in 512..4096)",
                          sector_size);
  /* Equal halves make XTS degenerate; OpenSSL refuses them for encryption. */
  if (CRYPTO_memcmp(key, key + key_len / 2, key_len / 2) == 0)
    return nbdc_error_set(err, EINVAL, "xts key rejected: data key and tweak key halves are equal");

  struct xts_ctx *ctx = OPENSSL_zalloc(sizeof *ctx);
  if (!ctx)
    return nbdc_error_set(err, ENOMEM, "out of memory for an xts context");
  ctx->key_len = key_len;
  ctx->sector_size = sector_size;
  ctx->units_per_sector = sector_size / 512;
  ctx->key = secmem_alloc(key_len);
  if (!ctx->key) {
    int code = errno ? errno : ENOMEM;
    xts_free(ctx);
    return nbdc_error_set(err, code, "cannot allocate locked memory for the xts key");
  }
  memcpy(ctx->key, key, key_len);

  int r = xts_impl_get(&ctx->impl, key_len, err);
  if (r < 0) {
    xts_free(ctx);
    return r;
  }
  ctx->enc = ctx->impl.newctx(ctx->impl.provctx);
  ctx->dec = ctx->impl.newctx(ctx->impl.provctx);
  if (!ctx->enc || !ctx->dec) {
    xts_free(ctx);
    return nbdc_error_set(err, ENOMEM, "out of memory for an xts cipher context");
  }
  if (ctx->impl.einit(ctx->enc, ctx->key, key_len, NULL, 0, NULL) != 1 ||
      ctx->impl.dinit(ctx->dec, ctx->key, key_len, NULL, 0, NULL) != 1) {
    xts_free(ctx);
    return crypto_ossl_error(err, EINVAL, "cannot set the aes-%zu-xts key", key_len * 4);
  }
  *out = ctx;
  return 0;
}

int xts_dup(const struct xts_ctx *ctx, struct xts_ctx **out, struct nbdc_error *err)
{
  if (!ctx) {
    *out = NULL;
    return nbdc_error_set(err, EINVAL, "xts_dup of a missing context");
  }
  return xts_new(out, ctx->key, ctx->key_len, ctx->sector_size, err);
}

uint32_t xts_sector_size(const struct xts_ctx *ctx)
{
  return ctx->sector_size;
}

static int xts_run(struct xts_ctx *ctx, uint8_t *out, const uint8_t *in, size_t len,
                   uint64_t first_unit, int enc, struct nbdc_error *err)
{
  const char *what = enc ? "encrypt" : "decrypt";
  if (!ctx)
    return nbdc_error_set(err, EINVAL, "xts %s with a missing context", what);
  if (len % ctx->sector_size != 0)
    return nbdc_error_set(err, EINVAL,
                          "xts %s length %zu is not a multiple of the sector size %" PRIu32, what,
                          len, ctx->sector_size);
  if (len == 0)
    return 0;
  if (!in || !out)
    return nbdc_error_set(err, EINVAL, "xts %s with a missing buffer", what);
  if (in != out && ((uintptr_t)out < (uintptr_t)in + len && (uintptr_t)in < (uintptr_t)out + len))
    return nbdc_error_set(err, EINVAL, "xts %s buffers overlap partially", what);

  void *cctx = enc ? ctx->enc : ctx->dec;
  OSSL_FUNC_cipher_encrypt_init_fn *init = enc ? ctx->impl.einit : ctx->impl.dinit;
  uint8_t iv[XTS_IV_LEN] = {0};
  const size_t sector = ctx->sector_size;
  uint64_t unit = first_unit;
  for (size_t off = 0; off < len; off += sector) {
    for (int b = 0; b < 8; b++)
      iv[b] = (uint8_t)(unit >> (8 * b));
    size_t outl = 0;
    if (init(cctx, NULL, 0, iv, sizeof iv, NULL) != 1 ||
        ctx->impl.update(cctx, out + off, &outl, sector, in + off, sector) != 1 || outl != sector)
      return crypto_ossl_error(err, EIO, "xts %s failed at 512-byte unit %" PRIu64, what, unit);
    unit += ctx->units_per_sector;
  }
  return 0;
}

int xts_encrypt(struct xts_ctx *ctx, uint8_t *out, const uint8_t *in, size_t len,
                uint64_t first_unit, struct nbdc_error *err)
{
  return xts_run(ctx, out, in, len, first_unit, 1, err);
}

int xts_decrypt(struct xts_ctx *ctx, uint8_t *out, const uint8_t *in, size_t len,
                uint64_t first_unit, struct nbdc_error *err)
{
  return xts_run(ctx, out, in, len, first_unit, 0, err);
}
