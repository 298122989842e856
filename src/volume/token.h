/* Private to src/volume: the nbdcrypt token in and out of JSON. */
#ifndef NBDCRYPT_VOLUME_TOKEN_H
#define NBDCRYPT_VOLUME_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/keys.h"
#include "nbdcrypt/luks2.h"

#define VOLUME_TOKEN_TYPE "nbdcrypt"

struct volume_token {
  int id;
  int keyslot;
  char provider[KEYS_NAME_MAX];
  char kek_id[KEYS_ID_MAX];
  bool kms_wrapped;
  uint8_t wrapped[128]; /* kms-wrapped: the keyslot secret encrypted by the KMS */
  size_t wrapped_len;
  uint8_t iv[12];
  uint8_t tag[16];
};

/* Read token object token (named what in errors, id recorded in out) into
 * out, checked as volume_token_check does (src/volume/token.c). */
int volume_token_from_json(struct json_object *token, const char *what, int id,
                           struct volume_token *out, struct nbdc_error *err);

/* Read token id of hdr (type nbdcrypt) into out, checked the same way
 * (src/volume/volume.c). */
int volume_token_parse(const struct luks2_hdr *hdr, int id, struct volume_token *out,
                       struct nbdc_error *err);

/* The nbdcrypt token of hdr that binds keyslot (one that reads and checks
 * cleanly) into out: true, or false when there is none. */
bool volume_token_of_keyslot(const struct luks2_hdr *hdr, int keyslot, struct volume_token *out);

/* The keyslot secret tok stands for: the KEK itself (mode kek) or the secret
 * the provider unwraps with the KEK (mode kms-wrapped).  *secret is secure
 * memory of *secret_len bytes, freed with secmem_free. */
int volume_token_secret_of(const struct keys_config *cfg, const struct volume_token *tok,
                           uint8_t **secret, size_t *secret_len, struct nbdc_error *err);
/* The same through a provider the caller opened (tok->provider's). */
int volume_token_secret_from(const struct keys_config *cfg, struct keys_provider *provider,
                             const struct volume_token *tok, uint8_t **secret, size_t *secret_len,
                             struct nbdc_error *err);

/* The KEK state rules (src/volume/token.c): binding a disk to kek_id needs
 * an Active KEK; unlocking takes Active, Deactivated (warning through cfg)
 * and Compromised only when cfg allows it (warning).  -EKEYREVOKED naming
 * the KEK, the provider and the state; else the provider's error. */
int volume_kek_check_bind(struct keys_provider *provider, const char *kek_id,
                          struct nbdc_error *err);
int volume_kek_check_unlock(const struct keys_config *cfg, struct keys_provider *provider,
                            const char *kek_id, struct nbdc_error *err);

/* Build the JSON of tok (new reference in *out). */
int volume_token_build(const struct volume_token *tok, struct json_object **out,
                       struct nbdc_error *err);

#endif
