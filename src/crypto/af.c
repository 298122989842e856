/* LUKS anti-forensic splitter (include/nbdcrypt/crypto.h).
 *
 * As cryptsetup's lib/luks1/af.c, and reference/luks2.md "Unlocking a luks2
 * keyslot": buf = 0; for i < stripes-1: buf = diffuse(buf ^ s_i);
 * key = s_last ^ buf.  diffuse(b) replaces each digest-sized chunk j of b
 * (the last one may be shorter) with H(BE32(j) || chunk), cut to the chunk's
 * length.  The running buffer and digest output are secrets: secure memory.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "nbdcrypt/crypto.h"

/* Far above cryptsetup's 4000; bounds key_len * stripes for callers that
 * pass values read from a header. */
#define AF_STRIPES_MAX 65536
#define AF_KEY_MAX     1024

struct af_state {
  struct crypto_hash *h; /* a secure hash state: it hashes the key's stripes */
  size_t digest_len;
  uint8_t *mem; /* secmem: buf[key_len] then digest[CRYPTO_HASH_MAX] */
  size_t mem_len;
};

static void af_state_free(struct af_state *st)
{
  crypto_hash_free(st->h);
  secmem_free(st->mem, st->mem_len);
}

static int af_state_init(struct af_state *st, size_t key_len, unsigned stripes, const char *hash,
                         struct nbdc_error *err)
{
  memset(st, 0, sizeof *st);
  if (key_len == 0 || key_len > AF_KEY_MAX)
    return nbdc_error_set(err, EINVAL, "bad af key length %zu (expected 1..%d)", key_len,
                          AF_KEY_MAX);
  if (stripes == 0 || stripes > AF_STRIPES_MAX)
    return nbdc_error_set(err, EINVAL, "bad af stripes %u (expected 1..%d)", stripes,
                          AF_STRIPES_MAX);
  if (!hash)
    return nbdc_error_set(err, EINVAL, "af hash is missing");
  /* XOFs and odd digests would make diffuse ill-defined. */
  st->digest_len = crypto_hash_size(hash);
  if (st->digest_len == 0 || st->digest_len > CRYPTO_HASH_MAX)
    return nbdc_error_set(err, EINVAL, "unknown af hash '%s' (or one without a fixed digest size)",
                          hash);
  int r = crypto_hash_new(&st->h, hash, true, err);
  if (r < 0)
    return r;
  st->mem_len = key_len + CRYPTO_HASH_MAX;
  st->mem = secmem_alloc(st->mem_len);
  if (!st->mem) {
    int code = !st->mem && errno ? errno : ENOMEM;
    af_state_free(st);
    return nbdc_error_set(err, code, "cannot allocate af working memory");
  }
  return 0;
}

/* In place: each digest-sized chunk j of buf becomes H(BE32(j) || chunk). */
static int af_diffuse(struct af_state *st, uint8_t *buf, size_t key_len, struct nbdc_error *err)
{
  uint8_t *digest = st->mem + key_len;
  size_t chunks = (key_len + st->digest_len - 1) / st->digest_len;
  for (size_t j = 0; j < chunks; j++) {
    size_t off = j * st->digest_len;
    size_t n = key_len - off < st->digest_len ? key_len - off : st->digest_len;
    uint8_t be[4] = {(uint8_t)(j >> 24), (uint8_t)(j >> 16), (uint8_t)(j >> 8), (uint8_t)j};
    crypto_hash_write(st->h, be, sizeof be);
    crypto_hash_write(st->h, buf + off, n);
    int r = crypto_hash_final(st->h, digest, st->digest_len, err);
    if (r < 0)
      return r;
    memcpy(buf + off, digest, n);
  }
  return 0;
}

static void af_xor(uint8_t *dst, const uint8_t *src, size_t n)
{
  for (size_t i = 0; i < n; i++)
    dst[i] ^= src[i];
}

/* buf = diffuse(...diffuse(s_0) ^ s_1 ...) over the first stripes-1 blocks. */
static int af_accumulate(struct af_state *st, const uint8_t *split, size_t key_len,
                         unsigned stripes, struct nbdc_error *err)
{
  uint8_t *buf = st->mem;
  memset(buf, 0, key_len);
  for (unsigned i = 0; i + 1 < stripes; i++) {
    af_xor(buf, split + (size_t)i * key_len, key_len);
    int r = af_diffuse(st, buf, key_len, err);
    if (r < 0)
      return r;
  }
  return 0;
}

int af_split(const uint8_t *key, size_t key_len, unsigned stripes, const char *hash,
             uint8_t *split_out, struct nbdc_error *err)
{
  struct af_state st;
  int r = af_state_init(&st, key_len, stripes, hash, err);
  if (r < 0)
    return r;
  size_t last = (size_t)(stripes - 1) * key_len;
  r = crypto_random(split_out, last, err);
  if (r == 0)
    r = af_accumulate(&st, split_out, key_len, stripes, err);
  if (r == 0) {
    memcpy(split_out + last, st.mem, key_len);
    af_xor(split_out + last, key, key_len);
  } else {
    nbdc_wipe(split_out, last + key_len);
  }
  af_state_free(&st);
  return r;
}

int af_merge(const uint8_t *split_in, size_t key_len, unsigned stripes, const char *hash,
             uint8_t *key_out, struct nbdc_error *err)
{
  struct af_state st;
  int r = af_state_init(&st, key_len, stripes, hash, err);
  if (r < 0)
    return r;
  r = af_accumulate(&st, split_in, key_len, stripes, err);
  if (r == 0) {
    memcpy(key_out, split_in + (size_t)(stripes - 1) * key_len, key_len);
    af_xor(key_out, st.mem, key_len);
  }
  af_state_free(&st);
  return r;
}

size_t af_split_sectors_bytes(size_t key_len, unsigned stripes)
{
  size_t bytes = key_len * stripes;
  return (bytes + 511) / 512 * 512;
}
