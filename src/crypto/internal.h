/* Helpers shared by the files of the crypto module only, and the backend
 * boundary's private half: what src/crypto/backend_gcrypt.c and
 * src/crypto/backend_openssl.c implement besides the public functions of
 * include/nbdcrypt/crypto.h (hashes, HMAC, randomness, backend init). */
#ifndef NBDCRYPT_CRYPTO_INTERNAL_H
#define NBDCRYPT_CRYPTO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/error.h"

/* One XTS key in the backend's cipher context(s): both directions, the key
 * schedule expanded once.  Not thread-safe. */
struct xts_be;

/* key_len 32 or 64, already validated (halves differ). */
int xts_be_new(struct xts_be **out, const uint8_t *key, size_t key_len, struct nbdc_error *err);
void xts_be_free(struct xts_be *be);

/* len a multiple of sector (validated); one XTS data unit per sector, the IV
 * of sector i LE64(first_unit + i * sector / 512) || zero(8). */
int xts_be_run(struct xts_be *be, int enc, uint8_t *out, const uint8_t *in, size_t len,
               uint32_t sector, uint64_t first_unit, struct nbdc_error *err);

/* PBKDF2-HMAC(hash); arguments validated by kdf_pbkdf2 (lengths fit an int,
 * iterations >= 1, secret/salt may be empty but not NULL). */
int pbkdf2_be(const char *hash, const uint8_t *secret, size_t secret_len, const uint8_t *salt,
              size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len,
              struct nbdc_error *err);

/* Secure blocks for a backend's allocation hooks (secblock.c): each its own
 * secmem_alloc mapping, tracked so a hook can tell one from a malloc block.
 * secblock_free and secblock_realloc return false, doing nothing, when p is
 * not one; secblock_realloc's *out is NULL when the new block cannot be had
 * (p is then left as it was, as realloc does). */
void *secblock_alloc(size_t n);
bool secblock_is(const void *p);
bool secblock_free(void *p);
bool secblock_realloc(void *p, size_t n, void **out);

#endif
