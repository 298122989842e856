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

/* Read token id of hdr (type nbdcrypt) into out. */
int volume_token_parse(const struct luks2_hdr *hdr, int id, struct volume_token *out,
                       struct nbdc_error *err);

/* Build the JSON of tok (new reference in *out). */
int volume_token_build(const struct volume_token *tok, struct json_object **out,
                       struct nbdc_error *err);

#endif
