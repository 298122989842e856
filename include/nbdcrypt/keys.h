/* nbdcrypt key providers (src/keys): configuration, the provider interface,
 * the native keystore and the kmip provider.  Knows nothing of LUKS2.
 * KEKs are 256-bit keys identified by an id string (a UUID for native, the
 * KMS's Unique Identifier for kmip); they are handed out in secure memory. */
#ifndef NBDCRYPT_KEYS_H
#define NBDCRYPT_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/error.h"

#define KEYS_KEK_SIZE 32
#define KEYS_ID_MAX   128
#define KEYS_NAME_MAX 128

struct keys_config;
struct keys_provider;

/* ---- configuration (src/keys/config.c) ------------------------------------
 * DESIGN.md section 3.  Found by path (--config), else $NBDCRYPT_CONFIG, else
 * /etc/nbdcrypt/config.json; if none exists, the default: one native
 * provider "local" with keystore $XDG_DATA_HOME/nbdcrypt/keystore.json (or
 * ~/.local/share/nbdcrypt/keystore.json), default_provider "local".
 * An explicitly given path (argument or environment) that does not exist is
 * an error.  Errors name the file and the field. */
int keys_config_load(const char *path, struct keys_config **out, struct nbdc_error *err);

/* Parse configuration from a JSON string (tests; origin names it in errors). */
int keys_config_parse(const char *json_text, const char *origin, struct keys_config **out,
                      struct nbdc_error *err);

void keys_config_free(struct keys_config *cfg);

/* Where the configuration came from: a path, or "built-in default". */
const char *keys_config_origin(const struct keys_config *cfg);

/* Run-time settings of the program that loaded cfg, never read from the file.
 * allow_revoked: a Deactivated or Compromised KEK may unlock (an operator's
 * explicit override, meant to rescue data: rekey to an active KEK); off by
 * default.
 * warn: where the library reports what it allowed but the operator must know
 * (a Compromised or Deactivated KEK used to unlock); NULL drops them. */
typedef void (*keys_warn_fn)(void *ctx, const char *msg);
void keys_config_set_allow_revoked(struct keys_config *cfg, bool allow);
bool keys_config_allow_revoked(const struct keys_config *cfg);
void keys_config_set_warn(struct keys_config *cfg, keys_warn_fn fn, void *ctx);
void keys_config_warn(const struct keys_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *keys_config_default_provider(const struct keys_config *cfg);

/* Number of providers and the name of the i-th (borrowed). */
size_t keys_config_provider_count(const struct keys_config *cfg);
const char *keys_config_provider_name(const struct keys_config *cfg, size_t i);

/* ---- providers (src/keys/provider.c) -------------------------------------- */

/* Open provider name (NULL: the default provider).  -ENOENT "no provider X in
 * <origin>".  A provider handle is safe to use from one thread at a time. */
int keys_provider_open(const struct keys_config *cfg, const char *name, struct keys_provider **out,
                       struct nbdc_error *err);
void keys_provider_close(struct keys_provider *p);

/* Which identity a provider speaks with.  KEYS_ROLE_SERVE (keys_provider_open)
 * only needs Get (and Decrypt for kms-wrapped): serving and unlocking.
 * KEYS_ROLE_ADMIN is for the commands that create, activate, locate, revoke,
 * destroy or wrap; a kmip provider uses its "admin" identity for it when the
 * configuration names one, and its only identity otherwise.  The KMS
 * enforces the split (docs/kmip.md: a pykmip-server operation policy). */
enum keys_role {
  KEYS_ROLE_SERVE = 0,
  KEYS_ROLE_ADMIN = 1,
};
int keys_provider_open_role(const struct keys_config *cfg, const char *name, enum keys_role role,
                            struct keys_provider **out, struct nbdc_error *err);

const char *keys_provider_name(const struct keys_provider *p);
const char *keys_provider_type(const struct keys_provider *p); /* "native", "kmip" */

/* Create a new active 256-bit KEK labelled name (may be NULL); its id is
 * written to id_out (NUL-terminated, at most KEYS_ID_MAX bytes). */
int keys_kek_create(struct keys_provider *p, const char *name, char id_out[KEYS_ID_MAX],
                    struct nbdc_error *err);

/* Fetch KEK id: *kek is secure memory of KEYS_KEK_SIZE bytes, freed by the
 * caller with secmem_free.  -ENOENT "kek ID not found in provider P (...)". */
int keys_kek_get(struct keys_provider *p, const char *id, uint8_t **kek, struct nbdc_error *err);
/* How many keys_kek_get calls of this process reached a provider (tests:
 * a KEK is fetched once). */
unsigned long keys_kek_get_count(void);
/* How many keys_provider_open(_role) calls of this process opened a provider. */
unsigned long keys_provider_open_count(void);

struct keys_kek_info {
  char id[KEYS_ID_MAX];
  char name[KEYS_NAME_MAX];
  char created[40]; /* RFC 3339 UTC, "" if unknown */
  char state[24];   /* keys_kek_state_name of its state ("" if the provider did not say) */
  char revoked[40]; /* RFC 3339 UTC date of the revocation, "" if none or unknown */
};

/* List KEKs whose name starts with prefix (NULL: all).  *list malloc'ed, free().
 * An empty list may come with a note in err->msg (err->code 0) saying why,
 * e.g. a native keystore that does not exist yet. */
int keys_kek_list(struct keys_provider *p, const char *prefix, struct keys_kek_info **list,
                  size_t *count, struct nbdc_error *err);

/* The state of a KEK, the same on every provider: KMIP's object states (KMIP
 * 1.4 section 3.22, same numbers).  A native KEK is Active from its creation
 * until revoked; a destroyed native KEK is gone (keys_kek_get_state -ENOENT). */
enum keys_kek_state {
  KEYS_KEK_PRE_ACTIVE = 1,
  KEYS_KEK_ACTIVE = 2,
  KEYS_KEK_DEACTIVATED = 3,
  KEYS_KEK_COMPROMISED = 4,
  KEYS_KEK_DESTROYED = 5,
  KEYS_KEK_DESTROYED_COMPROMISED = 6,
};

/* "pre-active", "active", "deactivated", "compromised", "destroyed",
 * "destroyed-compromised"; "unknown" for anything else. */
const char *keys_kek_state_name(enum keys_kek_state state);

/* Read the state of KEK id (kmip: Get Attributes State; native: the
 * keystore's record).  -ENOENT "kek ID not found in ..." as keys_kek_get. */
int keys_kek_get_state(struct keys_provider *p, const char *id, enum keys_kek_state *state,
                       struct nbdc_error *err);

/* Revoke a KEK: keys_kek_revoke because it is no longer used (Active ->
 * Deactivated; refused for a KEK that is not Active), keys_kek_revoke_compromised
 * because its secret may be known (-> Compromised, from Active or
 * Deactivated).  The revocation date is recorded (native: "revoked").
 * Destroy: kmip Destroy (a KMS refuses an Active key: revoke first); native:
 * removes the key from the keystore. */
int keys_kek_revoke(struct keys_provider *p, const char *id, struct nbdc_error *err);
int keys_kek_revoke_compromised(struct keys_provider *p, const char *id, struct nbdc_error *err);
int keys_kek_destroy(struct keys_provider *p, const char *id, struct nbdc_error *err);

/* Wrapping inside the provider (token mode "kms-wrapped"): the KEK never
 * leaves it.  wrap: AES-256-GCM of plain under KEK id; iv (12 bytes) and tag
 * (16 bytes) are produced.  unwrap: *plain is secure memory of *plain_len
 * bytes.  -ENOTSUP when the provider cannot do it. */
int keys_kek_wrap(struct keys_provider *p, const char *id, const uint8_t *plain, size_t plain_len,
                  uint8_t **cipher, size_t *cipher_len, uint8_t iv[12], uint8_t tag[16],
                  struct nbdc_error *err);
int keys_kek_unwrap(struct keys_provider *p, const char *id, const uint8_t *cipher,
                    size_t cipher_len, const uint8_t iv[12], const uint8_t tag[16], uint8_t **plain,
                    size_t *plain_len, struct nbdc_error *err);

#endif
