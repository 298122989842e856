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
 *
 * On CPUs with VAES and AVX-512 (and the default provider, never FIPS) a
 * 256-bit key is instead run by the VAES code below: the same XTS-AES, four
 * blocks per instruction and 16 blocks in flight, about twice OpenSSL 3.0's
 * AES-NI XTS (which has no VAES path before 3.2).  Its round keys live in
 * secure memory.  NBDCRYPT_XTS_IMPL=openssl in the environment forces the
 * OpenSSL path (benchmarks and tests compare the two).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XTS_HAVE_VAES 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define XTS_HAVE_VAES 0
#endif

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

/* Expanded AES-256 schedules for the VAES path (secure memory). */
struct xts_vaes_keys {
  uint8_t enc[15][16];   /* data key, encryption */
  uint8_t dec[15][16];   /* data key, equivalent inverse cipher */
  uint8_t tweak[15][16]; /* tweak key, encryption */
};

struct xts_ctx {
  struct xts_impl impl;
  struct xts_vaes_keys *vaes; /* NULL: OpenSSL provider path */
  void *enc;                  /* provider cipher contexts */
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

/* ---- VAES + AVX-512 path ------------------------------------------------- */
#if XTS_HAVE_VAES

#define VAES_TARGET __attribute__((target("aes,avx2,avx512f,vaes")))

/* One step of the AES-256 key expansion (FIPS-197 5.2, as in Intel's AES-NI
 * white paper): a is the even round key, b the odd one. */
VAES_TARGET static inline __m128i aes256_next_even(__m128i a, __m128i assist)
{
  assist = _mm_shuffle_epi32(assist, 0xff);
  a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
  a = _mm_xor_si128(a, _mm_slli_si128(a, 8));
  return _mm_xor_si128(a, assist);
}

VAES_TARGET static inline __m128i aes256_next_odd(__m128i even, __m128i b)
{
  __m128i assist = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(even, 0), 0xaa);
  b = _mm_xor_si128(b, _mm_slli_si128(b, 4));
  b = _mm_xor_si128(b, _mm_slli_si128(b, 8));
  return _mm_xor_si128(b, assist);
}

VAES_TARGET static void aes256_expand(uint8_t rk[15][16], const uint8_t *key)
{
  __m128i a = _mm_loadu_si128((const __m128i *)key);
  __m128i b = _mm_loadu_si128((const __m128i *)(key + 16));
  _mm_storeu_si128((__m128i *)rk[0], a);
  _mm_storeu_si128((__m128i *)rk[1], b);
#define AES256_STEP(i, rcon)                                                                       \
  a = aes256_next_even(a, _mm_aeskeygenassist_si128(b, rcon));                                     \
  _mm_storeu_si128((__m128i *)rk[i], a);                                                           \
  if (i < 14) {                                                                                    \
    b = aes256_next_odd(a, b);                                                                     \
    _mm_storeu_si128((__m128i *)rk[i + 1], b);                                                     \
  }
  AES256_STEP(2, 0x01)
  AES256_STEP(4, 0x02)
  AES256_STEP(6, 0x04)
  AES256_STEP(8, 0x08)
  AES256_STEP(10, 0x10)
  AES256_STEP(12, 0x20)
  AES256_STEP(14, 0x40)
#undef AES256_STEP
}

/* Round keys of the equivalent inverse cipher (FIPS-197 5.3.5). */
VAES_TARGET static void aes256_inverse(uint8_t dec[15][16], const uint8_t enc[15][16])
{
  _mm_storeu_si128((__m128i *)dec[0], _mm_loadu_si128((const __m128i *)enc[14]));
  for (int i = 1; i < 14; i++)
    _mm_storeu_si128((__m128i *)dec[i],
                     _mm_aesimc_si128(_mm_loadu_si128((const __m128i *)enc[14 - i])));
  _mm_storeu_si128((__m128i *)dec[14], _mm_loadu_si128((const __m128i *)enc[0]));
}

/* Each 128-bit lane of t (an XTS tweak, little-endian) times x^k in
 * GF(2^128) mod x^128 + x^7 + x^2 + x + 1, where k (0..4) is given per
 * 64-bit half in kv (both halves of a lane equal). */
VAES_TARGET static inline __m512i gf_mul_xk(__m512i t, __m512i kv)
{
  const __m512i shifted = _mm512_sllv_epi64(t, kv);
  /* The k bits shifted out of each half (a shift by 64 gives 0). */
  const __m512i out = _mm512_srlv_epi64(t, _mm512_sub_epi64(_mm512_set1_epi64(64), kv));
  /* The low half's bits carry into the high half; the high half's bits
   * wrap round to the low half reduced by the polynomial (h * 0x87,
   * carry-less: h ^ h<<1 ^ h<<2 ^ h<<7). */
  const __m512i swapped = _mm512_shuffle_epi32(out, (_MM_PERM_ENUM)0x4e);
  const __m512i reduced = _mm512_xor_si512(
      _mm512_xor_si512(swapped, _mm512_slli_epi64(swapped, 1)),
      _mm512_xor_si512(_mm512_slli_epi64(swapped, 2), _mm512_slli_epi64(swapped, 7)));
  return _mm512_xor_si512(shifted, _mm512_mask_blend_epi64(0xaa, reduced, swapped));
}

#define VAES_ROUNDS_ENC(x0, x1, x2, x3, rk)                                                        \
  do {                                                                                             \
    for (int r_ = 1; r_ < 14; r_++) {                                                              \
      x0 = _mm512_aesenc_epi128(x0, rk[r_]);                                                       \
      x1 = _mm512_aesenc_epi128(x1, rk[r_]);                                                       \
      x2 = _mm512_aesenc_epi128(x2, rk[r_]);                                                       \
      x3 = _mm512_aesenc_epi128(x3, rk[r_]);                                                       \
    }                                                                                              \
    x0 = _mm512_aesenclast_epi128(x0, rk[14]);                                                     \
    x1 = _mm512_aesenclast_epi128(x1, rk[14]);                                                     \
    x2 = _mm512_aesenclast_epi128(x2, rk[14]);                                                     \
    x3 = _mm512_aesenclast_epi128(x3, rk[14]);                                                     \
  } while (0)

#define VAES_ROUNDS_DEC(x0, x1, x2, x3, rk)                                                        \
  do {                                                                                             \
    for (int r_ = 1; r_ < 14; r_++) {                                                              \
      x0 = _mm512_aesdec_epi128(x0, rk[r_]);                                                       \
      x1 = _mm512_aesdec_epi128(x1, rk[r_]);                                                       \
      x2 = _mm512_aesdec_epi128(x2, rk[r_]);                                                       \
      x3 = _mm512_aesdec_epi128(x3, rk[r_]);                                                       \
    }                                                                                              \
    x0 = _mm512_aesdeclast_epi128(x0, rk[14]);                                                     \
    x1 = _mm512_aesdeclast_epi128(x1, rk[14]);                                                     \
    x2 = _mm512_aesdeclast_epi128(x2, rk[14]);                                                     \
    x3 = _mm512_aesdeclast_epi128(x3, rk[14]);                                                     \
  } while (0)

/* len bytes of whole sectors; sector is a multiple of 512, so every sector
 * is a whole number of 16-block (256-byte) groups and no ciphertext
 * stealing is needed. */
VAES_TARGET static void vaes_xts(const struct xts_vaes_keys *k, uint8_t *out, const uint8_t *in,
                                 size_t len, size_t sector, uint64_t unit, uint64_t unit_step,
                                 int enc)
{
  const uint8_t(*keys)[16] = enc ? k->enc : k->dec;
  __m512i rk[15];
  for (int i = 0; i < 15; i++)
    rk[i] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)keys[i]));
  const __m512i lane_k = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i four = _mm512_set1_epi64(4);

  for (size_t off = 0; off < len; off += sector, unit += unit_step) {
    /* T = AES-enc(tweak key, LE64(unit) || 0) */
    __m128i t = _mm_xor_si128(_mm_set_epi64x(0, (long long)unit),
                              _mm_loadu_si128((const __m128i *)k->tweak[0]));
    for (int r = 1; r < 14; r++)
      t = _mm_aesenc_si128(t, _mm_loadu_si128((const __m128i *)k->tweak[r]));
    t = _mm_aesenclast_si128(t, _mm_loadu_si128((const __m128i *)k->tweak[14]));
    /* Lanes hold the tweaks of blocks j..j+3: T x^j .. T x^(j+3). */
    __m512i tw = gf_mul_xk(_mm512_broadcast_i32x4(t), lane_k);
    const uint8_t *src = in + off;
    uint8_t *dst = out + off;
    for (size_t b = 0; b < sector; b += 256) {
      const __m512i t0 = tw;
      const __m512i t1 = gf_mul_xk(t0, four);
      const __m512i t2 = gf_mul_xk(t1, four);
      const __m512i t3 = gf_mul_xk(t2, four);
      tw = gf_mul_xk(t3, four);
      __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(src + b), t0);
      __m512i x1 = _mm512_xor_si512(_mm512_loadu_si512(src + b + 64), t1);
      __m512i x2 = _mm512_xor_si512(_mm512_loadu_si512(src + b + 128), t2);
      __m512i x3 = _mm512_xor_si512(_mm512_loadu_si512(src + b + 192), t3);
      x0 = _mm512_xor_si512(x0, rk[0]);
      x1 = _mm512_xor_si512(x1, rk[0]);
      x2 = _mm512_xor_si512(x2, rk[0]);
      x3 = _mm512_xor_si512(x3, rk[0]);
      if (enc)
        VAES_ROUNDS_ENC(x0, x1, x2, x3, rk);
      else
        VAES_ROUNDS_DEC(x0, x1, x2, x3, rk);
      _mm512_storeu_si512(dst + b, _mm512_xor_si512(x0, t0));
      _mm512_storeu_si512(dst + b + 64, _mm512_xor_si512(x1, t1));
      _mm512_storeu_si512(dst + b + 128, _mm512_xor_si512(x2, t2));
      _mm512_storeu_si512(dst + b + 192, _mm512_xor_si512(x3, t3));
    }
  }
  /* Clear the vector registers that held round keys and tweaks (upper
   * halves of zmm0-15 and the rest of zmm16-31 are cleared by the
   * compiler's vzeroupper only in part; do it explicitly for 0-15). */
  _mm256_zeroall();
}

/* The CPU has AES-NI, AVX-512F and VAES, and the OS saves the AVX-512 state
 * (XCR0: SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM). */
static int cpu_has_vaes(void)
{
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d))
    return 0;
  const unsigned aesni = 1u << 25, osxsave = 1u << 27;
  if ((c & (aesni | osxsave)) != (aesni | osxsave))
    return 0;
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  (void)xcr0_hi;
  if ((xcr0_lo & 0xe6) != 0xe6)
    return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
    return 0;
  const unsigned avx512f = 1u << 16, vaes = 1u << 9;
  return (b & avx512f) && (c & vaes);
}

/* VAES is used for 256-bit keys on such a CPU with OpenSSL's default
 * provider (a FIPS provider keeps the cipher), unless
 * NBDCRYPT_XTS_IMPL=openssl. */
static int vaes_wanted(const struct xts_impl *impl, size_t key_len)
{
  if (key_len != 64)
    return 0;
  const char *force = getenv("NBDCRYPT_XTS_IMPL");
  if (force && strcmp(force, "openssl") == 0)
    return 0;
  const char *prov = OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(impl->cipher));
  if (!prov || strcmp(prov, "default") != 0)
    return 0;
  return cpu_has_vaes();
}

static int vaes_setup(struct xts_ctx *ctx)
{
  ctx->vaes = secmem_alloc(sizeof *ctx->vaes);
  if (!ctx->vaes)
    return -1;
  aes256_expand(ctx->vaes->enc, ctx->key);
  aes256_inverse(ctx->vaes->dec, ctx->vaes->enc);
  aes256_expand(ctx->vaes->tweak, ctx->key + 32);
  return 0;
}
#else
static int vaes_wanted(const struct xts_impl *impl, size_t key_len)
{
  (void)impl;
  (void)key_len;
  return 0;
}
static int vaes_setup(struct xts_ctx *ctx)
{
  (void)ctx;
  return -1;
}
static void vaes_xts(const struct xts_vaes_keys *k, uint8_t *out, const uint8_t *in, size_t len,
                     size_t sector, uint64_t unit, uint64_t unit_step, int enc)
{
  (void)k, (void)out, (void)in, (void)len, (void)sector, (void)unit, (void)unit_step, (void)enc;
}
#endif

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
  secmem_free(ctx->vaes, sizeof *ctx->vaes);
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
  if (vaes_wanted(&ctx->impl, key_len)) {
    if (vaes_setup(ctx) < 0) {
      int code = errno ? errno : ENOMEM;
      xts_free(ctx);
      return nbdc_error_set(err, code, "cannot allocate locked memory for the xts key schedule");
    }
    *out = ctx;
    return 0;
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

  if (ctx->vaes) {
    vaes_xts(ctx->vaes, out, in, len, ctx->sector_size, first_unit, ctx->units_per_sector, enc);
    return 0;
  }
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
