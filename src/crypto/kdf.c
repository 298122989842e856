/* Key derivation: PBKDF2 (OpenSSL) and Argon2i/Argon2id (libargon2)
 * (include/nbdcrypt/crypto.h).  Parameters come from headers an attacker may
 * have written: every bound is checked before any work or allocation. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include <argon2.h>

#include "crypto/internal.h"
#include "nbdcrypt/crypto.h"

#define KDF_ARGON2_MEMORY_MIN 32u      /* KiB, as cryptsetup */
#define KDF_ARGON2_MEMORY_MAX 4194304u /* KiB = 4 GiB */
#define KDF_ARGON2_CPUS_MAX   4u
#define KDF_ARGON2_SALT_MIN   ARGON2_MIN_SALT_LENGTH
#define KDF_ARGON2_OUT_MIN    ARGON2_MIN_OUTLEN

enum kdf_type kdf_type_from_name(const char *name)
{
  if (!name)
    return 0;
  if (strcmp(name, "pbkdf2") == 0)
    return KDF_PBKDF2;
  if (strcmp(name, "argon2i") == 0)
    return KDF_ARGON2I;
  if (strcmp(name, "argon2id") == 0)
    return KDF_ARGON2ID;
  return 0;
}

const char *kdf_type_name(enum kdf_type type)
{
  switch (type) {
  case KDF_PBKDF2:
    return "pbkdf2";
  case KDF_ARGON2I:
    return "argon2i";
  case KDF_ARGON2ID:
    return "argon2id";
  }
  return "unknown";
}

bool crypto_memeq(const void *a, const void *b, size_t n)
{
  const volatile uint8_t *x = a, *y = b;
  uint8_t d = 0;
  for (size_t i = 0; i < n; i++)
    d |= x[i] ^ y[i];
  return d == 0;
}

int kdf_pbkdf2(const char *hash, const uint8_t *secret, size_t secret_len, const uint8_t *salt,
               size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len,
               struct nbdc_error *err)
{
  if (!hash)
    return nbdc_error_set(err, EINVAL, "pbkdf2 hash is missing");
  if (iterations < 1 || iterations > INT_MAX)
    return nbdc_error_set(err, EINVAL, "bad pbkdf2 iterations %" PRIu32 " (expected 1..%d)",
                          iterations, INT_MAX);
  if (secret_len > INT_MAX || salt_len > INT_MAX)
    return nbdc_error_set(err, EINVAL, "pbkdf2 secret or salt too long");
  if (out_len < 1 || out_len > INT_MAX)
    return nbdc_error_set(err, EINVAL, "bad pbkdf2 output length %zu", out_len);
  if (crypto_hash_size(hash) == 0)
    return nbdc_error_set(err, EINVAL, "unknown pbkdf2 hash '%s'", hash);
  int r = crypto_backend_init(err);
  if (r < 0)
    return r;
  /* Backends want non-NULL pointers even for empty inputs. */
  static const uint8_t empty[1];
  r = pbkdf2_be(hash, secret ? secret : empty, secret_len, salt ? salt : empty, salt_len,
                iterations, out, out_len, err);
  if (r < 0)
    nbdc_wipe(out, out_len);
  return r;
}

static int kdf_argon2(const struct kdf_params *p, const uint8_t *secret, size_t secret_len,
                      uint8_t *out, size_t out_len, struct nbdc_error *err)
{
  const char *name = kdf_type_name(p->type);
  if (p->time < 1)
    return nbdc_error_set(err, EINVAL, "bad %s time %" PRIu32 " (expected >= 1)", name, p->time);
  if (p->memory_kib < KDF_ARGON2_MEMORY_MIN || p->memory_kib > KDF_ARGON2_MEMORY_MAX)
    return nbdc_error_set(err, EINVAL, "bad %s memory %" PRIu32 " KiB (expected %u..%u)", name,
                          p->memory_kib, KDF_ARGON2_MEMORY_MIN, KDF_ARGON2_MEMORY_MAX);
  if (p->cpus < 1 || p->cpus > KDF_ARGON2_CPUS_MAX)
    return nbdc_error_set(err, EINVAL, "bad %s cpus %" PRIu32 " (expected 1..%u)", name, p->cpus,
                          KDF_ARGON2_CPUS_MAX);
  if (p->salt_len < KDF_ARGON2_SALT_MIN)
    return nbdc_error_set(err, EINVAL, "bad %s salt length %zu (expected %d..%d)", name,
                          p->salt_len, KDF_ARGON2_SALT_MIN, KDF_SALT_MAX);
  if (out_len < KDF_ARGON2_OUT_MIN || out_len > UINT32_MAX)
    return nbdc_error_set(err, EINVAL, "bad %s output length %zu", name, out_len);
  if (secret_len > ARGON2_MAX_PWD_LENGTH)
    return nbdc_error_set(err, EINVAL, "%s secret too long (%zu bytes)", name, secret_len);

  static uint8_t empty[1];
  argon2_context ctx = {
      .out = out,
      .outlen = (uint32_t)out_len,
      /* libargon2 takes a non-const password; without ARGON2_FLAG_CLEAR_PASSWORD it
       * only reads it. */
      .pwd = secret ? (uint8_t *)secret : empty,
      .pwdlen = (uint32_t)secret_len,
      .salt = (uint8_t *)p->salt,
      .saltlen = (uint32_t)p->salt_len,
      .t_cost = p->time,
      .m_cost = p->memory_kib,
      .lanes = p->cpus,
      .threads = p->cpus,
      .version = ARGON2_VERSION_13,
      .flags = ARGON2_DEFAULT_FLAGS,
  };
  int r = argon2_ctx(&ctx, p->type == KDF_ARGON2I ? Argon2_i : Argon2_id);
  if (r != ARGON2_OK) {
    nbdc_wipe(out, out_len);
    int code = r == ARGON2_MEMORY_ALLOCATION_ERROR ? ENOMEM : EINVAL;
    return nbdc_error_set(
        err, code, "%s failed (memory %" PRIu32 " KiB, time %" PRIu32 ", cpus %" PRIu32 "): %s",
        name, p->memory_kib, p->time, p->cpus, argon2_error_message(r));
  }
  return 0;
}

int kdf_derive(const struct kdf_params *params, const uint8_t *secret, size_t secret_len,
               uint8_t *out, size_t out_len, struct nbdc_error *err)
{
  if (!params)
    return nbdc_error_set(err, EINVAL, "kdf parameters are missing");
  if (!out || out_len == 0)
    return nbdc_error_set(err, EINVAL, "kdf output buffer is missing");
  if (params->salt_len > KDF_SALT_MAX)
    return nbdc_error_set(err, EINVAL, "bad kdf salt length %zu (at most %d)", params->salt_len,
                          KDF_SALT_MAX);
  switch (params->type) {
  case KDF_PBKDF2:
    if (memchr(params->hash, '\0', sizeof params->hash) == NULL)
      return nbdc_error_set(err, EINVAL, "pbkdf2 hash name is not terminated");
    return kdf_pbkdf2(params->hash, secret, secret_len, params->salt, params->salt_len,
                      params->iterations, out, out_len, err);
  case KDF_ARGON2I:
  case KDF_ARGON2ID:
    return kdf_argon2(params, secret, secret_len, out, out_len, err);
  }
  return nbdc_error_set(err, EINVAL, "unknown kdf type %d", (int)params->type);
}
