/* aes-xts-plain64 sector engine (include/nbdcrypt/crypto.h): the checks and
 * the context every backend shares.  The cipher itself is the backend's
 * (xts_be_* in src/crypto/backend_*.c).
 *
 * A context keeps a copy of its key in secure memory for xts_dup: neither
 * libgcrypt nor OpenSSL's providers can copy a context without it, and the
 * copy is in locked, non-dumpable pages like the schedules (libgcrypt).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/internal.h"
#include "nbdcrypt/crypto.h"

struct xts_ctx {
  struct xts_be *be;
  uint8_t *key; /* secmem, key_len bytes: kept for xts_dup */
  size_t key_len;
  uint32_t sector_size;
};

void xts_free(struct xts_ctx *ctx)
{
  if (!ctx)
    return;
  xts_be_free(ctx->be);
  secmem_free(ctx->key, ctx->key_len);
  nbdc_wipe(ctx, sizeof *ctx);
  free(ctx);
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
  if (crypto_memeq(key, key + key_len / 2, key_len / 2))
    return nbdc_error_set(err, EINVAL, "xts key rejected: data key and tweak key halves are equal");
  int r = crypto_backend_init(err);
  if (r < 0)
    return r;

  struct xts_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return nbdc_error_set(err, ENOMEM, "out of memory for an xts context");
  ctx->key_len = key_len;
  ctx->sector_size = sector_size;
  ctx->key = secmem_alloc(key_len);
  if (!ctx->key) {
    int code = errno ? errno : ENOMEM;
    xts_free(ctx);
    return nbdc_error_set(err, code, "cannot allocate locked memory for the xts key");
  }
  memcpy(ctx->key, key, key_len);
  r = xts_be_new(&ctx->be, ctx->key, key_len, err);
  if (r < 0) {
    xts_free(ctx);
    return r;
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
  return xts_be_run(ctx->be, enc, out, in, len, ctx->sector_size, first_unit, err);
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
