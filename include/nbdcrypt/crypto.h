/* nbdcrypt crypto module (src/crypto): secure memory, the XTS sector engine,
 * hashes and HMAC, the LUKS anti-forensic splitter, key derivation and
 * randomness.  Knows nothing of LUKS2 JSON, disks or key providers.
 *
 * The crypto backend boundary (as cryptsetup's lib/crypto_backend): every
 * cipher, hash, HMAC, KDF and random call of the library goes through this
 * header.  One file per library implements it: src/crypto/backend_gcrypt.c
 * (libgcrypt, the default) or src/crypto/backend_openssl.c, chosen at build
 * time with -DNBDCRYPT_CRYPTO_BACKEND=gcrypt|openssl.  TLS and X.509 (the KMIP
 * transport) stay on OpenSSL whatever the backend.
 */
#ifndef NBDCRYPT_CRYPTO_H
#define NBDCRYPT_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/error.h"

/* ---- secure memory (src/crypto/secmem.c) ---------------------------------
 * Key material lives only here: page-aligned mappings that are mlock()ed and
 * excluded from core dumps (MADV_DONTDUMP), zeroed on allocation and wiped on
 * free.  Safe to call from any thread. */

/* Allocate n zeroed bytes of locked, non-dumpable memory.  NULL with errno set
 * (ENOMEM, or EPERM/EAGAIN when the memory cannot be locked). Free with secmem_free. */
void *secmem_alloc(size_t n);

/* Wipe and release a secmem_alloc() block of n bytes.  NULL is ignored. */
void secmem_free(void *p, size_t n);

/* Make this process non-dumpable (prctl PR_SET_DUMPABLE 0) and disable core
 * files; called once by the CLI and the filter at start-up.  0 or -errno. */
int secmem_harden_process(void);

/* ---- the backend (src/crypto/backend_*.c) --------------------------------- */

/* Initialise the backend once per process (thread-safe, idempotent; every
 * function below calls it, so calling it is only needed to see an error
 * early).  libgcrypt: version check and, unless another user in the process
 * initialised libgcrypt first, its secure memory routed to secmem_alloc.
 * 0 or -errno. */
int crypto_backend_init(struct nbdc_error *err);

/* "libgcrypt 1.10.1" or "openssl 3.0.19": the library and its run-time version. */
const char *crypto_backend_name(void);

/* True when cipher key schedules and hash states holding secrets are in
 * locked, non-dumpable memory (libgcrypt on our allocator).  False for the
 * OpenSSL backend and for libgcrypt initialised by someone else first
 * (docs/security.md, "Key schedules"). */
bool crypto_backend_schedules_secure(void);

/* Zero the CPU's vector registers (xmm/ymm/zmm, all that the CPU has) of the
 * calling thread, after key material went through them outside a cipher
 * context (key derivation, unwrap, AF merge).  New threads inherit the
 * register file of their creator, so the main thread calls this before it
 * starts workers.  A no-op on CPUs without SSE. */
void crypto_wipe_cpu_registers(void);

/* ---- randomness (src/crypto/backend_*.c) --------------------------------- */

/* Fill buf with n bytes of key-grade randomness (libgcrypt backend: the
 * kernel's getrandom; OpenSSL: its private DRBG).  0 or -EIO. */
int crypto_random(void *buf, size_t n, struct nbdc_error *err);

/* A random (version 4) UUID in lower-case text, NUL-terminated. */
#define CRYPTO_UUID_SIZE 37
int crypto_uuid_v4(char out[CRYPTO_UUID_SIZE], struct nbdc_error *err);

/* ---- XTS sector engine (src/crypto/xts.c) --------------------------------
 * aes-xts-plain64 as LUKS2/dm-crypt use it: key = data key || tweak key
 * (32 bytes for AES-128-XTS, 64 bytes for AES-256-XTS); each sector is one XTS
 * operation; the IV of sector n is LE64(iv_base + n * sector_size / 512) ||
 * zero(8), i.e. IVs count 512-byte units whatever the sector size.
 * A context is NOT thread-safe: give each thread its own (xts_dup). */

struct xts_ctx;

/* Create a context with the key schedule expanded once.  key_len 32 or 64;
 * sector_size a power of two in 512..4096.  The key is copied into secure
 * memory owned by the context. */
int xts_new(struct xts_ctx **out, const uint8_t *key, size_t key_len, uint32_t sector_size,
            struct nbdc_error *err);

/* A new independent context with the same key and sector size (for another thread). */
int xts_dup(const struct xts_ctx *ctx, struct xts_ctx **out, struct nbdc_error *err);

/* Wipe and free.  NULL is ignored. */
void xts_free(struct xts_ctx *ctx);

uint32_t xts_sector_size(const struct xts_ctx *ctx);

/* Encrypt/decrypt len bytes in place (len a multiple of the sector size; in
 * and out may be equal or must not overlap).  first_unit is the IV of the
 * first sector in 512-byte units, i.e. (byte offset within the segment / 512)
 * plus the segment's iv_tweak.  0 or -EINVAL/-EIO. */
int xts_encrypt(struct xts_ctx *ctx, uint8_t *out, const uint8_t *in, size_t len,
                uint64_t first_unit, struct nbdc_error *err);
int xts_decrypt(struct xts_ctx *ctx, uint8_t *out, const uint8_t *in, size_t len,
                uint64_t first_unit, struct nbdc_error *err);

/* ---- hashes and HMAC (src/crypto/backend_*.c) ----------------------------
 * Names as LUKS2 writes them: "sha1", "sha256", "sha512", ... (case-insensitive). */

#define CRYPTO_HASH_MAX 64 /* bytes: the largest digest */

/* Digest length of hash name, or 0 if unknown or not fixed-length (XOF). */
size_t crypto_hash_size(const char *name);

struct crypto_hash;

/* A hash state; secure: its state is in secure memory (libgcrypt backend),
 * for hashes over secrets (AF diffusion).  0 or -EINVAL for an unknown hash. */
int crypto_hash_new(struct crypto_hash **out, const char *name, bool secure,
                    struct nbdc_error *err);
void crypto_hash_write(struct crypto_hash *h, const void *data, size_t len);
/* Write the digest (out_len <= crypto_hash_size: cut) and reset the state
 * for the next message.  0 or -EIO. */
int crypto_hash_final(struct crypto_hash *h, uint8_t *out, size_t out_len, struct nbdc_error *err);
/* Wipe and free.  NULL is ignored. */
void crypto_hash_free(struct crypto_hash *h);

/* One-shot digest of data into out (out_len <= the digest length: cut). */
int crypto_hash_once(const char *name, const void *data, size_t len, uint8_t *out, size_t out_len,
                     struct nbdc_error *err);

/* HMAC-name(key, data) into out (out_len <= the digest length: cut). */
int crypto_hmac(const char *name, const uint8_t *key, size_t key_len, const void *data, size_t len,
                uint8_t *out, size_t out_len, struct nbdc_error *err);

/* ---- anti-forensic splitter (src/crypto/af.c) ----------------------------
 * LUKS AF split/merge (reference/luks2.md, "Unlocking a luks2 keyslot"):
 * stripes blocks of key_len bytes, diffused with hash (a hash name as
 * crypto_hash_size takes, such as "sha256").  split_out / split_in hold key_len * stripes bytes;
 * callers pass secure memory. */
int af_split(const uint8_t *key, size_t key_len, unsigned stripes, const char *hash,
             uint8_t *split_out, struct nbdc_error *err);
int af_merge(const uint8_t *split_in, size_t key_len, unsigned stripes, const char *hash,
             uint8_t *key_out, struct nbdc_error *err);

/* Bytes of keyslot area material for a key: ceil(key_len*stripes/512)*512. */
size_t af_split_sectors_bytes(size_t key_len, unsigned stripes);

/* ---- key derivation (src/crypto/kdf.c) ----------------------------------- */

enum kdf_type { KDF_PBKDF2 = 1, KDF_ARGON2I, KDF_ARGON2ID };

#define KDF_SALT_MAX 64

struct kdf_params {
  enum kdf_type type;
  char hash[32];       /* pbkdf2: hash name, e.g. "sha256" */
  uint32_t iterations; /* pbkdf2 */
  uint32_t time;       /* argon2: iterations */
  uint32_t memory_kib; /* argon2 */
  uint32_t cpus;       /* argon2: lanes = threads */
  uint8_t salt[KDF_SALT_MAX];
  size_t salt_len;
};

/* Derive out_len bytes from secret.  Bounds are checked (pbkdf2 iterations
 * >= 1, argon2 memory <= 4 GiB, cpus 1..4 ...) and an error names the bad value. */
int kdf_derive(const struct kdf_params *params, const uint8_t *secret, size_t secret_len,
               uint8_t *out, size_t out_len, struct nbdc_error *err);

/* Parse/format "pbkdf2", "argon2i", "argon2id".  kdf_type_from_name returns 0 if unknown. */
enum kdf_type kdf_type_from_name(const char *name);
const char *kdf_type_name(enum kdf_type type);

/* PBKDF2-HMAC(hash) helper (LUKS2 digests).  0 or -errno. */
int kdf_pbkdf2(const char *hash, const uint8_t *secret, size_t secret_len, const uint8_t *salt,
               size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len,
               struct nbdc_error *err);

/* Constant-time comparison: true when equal. */
bool crypto_memeq(const void *a, const void *b, size_t n);

/* Base64, standard alphabet, padded, no newlines.  base64_encode returns a
 * malloc'ed string (NULL on ENOMEM).  base64_decode writes into the caller's
 * buffer (secure memory for secrets): 0, or -EINVAL for bad input, -ENOSPC if
 * it does not fit in out_max. */
char *base64_encode(const uint8_t *in, size_t len);
/* The same into the caller's buffer (secure memory for secrets): writes
 * (len + 2) / 3 * 4 characters and a NUL, returns the characters written. */
size_t base64_encode_into(const uint8_t *in, size_t len, char *out);
int base64_decode(const char *in, uint8_t *out, size_t out_max, size_t *out_len);

#endif
