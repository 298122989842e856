/* The nbdcrypt LUKS2 token (DESIGN.md section 2): what a disk records about
 * the KEK that protects one of its keyslots.
 *   {"type": "nbdcrypt", "keyslots": ["1"], "provider": "local",
 *    "kek_id": "7f3e...", "mode": "kek"}
 * mode "kms-wrapped" adds "wrapped", "iv" and "tag" (base64). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "nbdcrypt/volume.h"
#include "volume/token.h"

static const char *token_string(struct json_object *token, const char *field)
{
  struct json_object *v;
  if (!json_object_object_get_ex(token, field, &v) || !json_object_is_type(v, json_type_string))
    return NULL;
  return json_object_get_string(v);
}

/* A string field of 1 to size-1 bytes, copied into out[size]. */
static int token_name(struct json_object *token, const char *what, const char *field, char *out,
                      size_t size, struct nbdc_error *err)
{
  const char *text = token_string(token, field);
  if (!text)
    return nbdc_error_set(err, EINVAL, "%s: \"%s\" is missing or not a string", what, field);
  size_t len = strlen(text);
  if (len == 0 || len >= size)
    return nbdc_error_set(err, EINVAL, "%s: \"%s\" must be 1 to %zu characters", what, field,
                          size - 1);
  memcpy(out, text, len + 1);
  return 0;
}

/* A base64 field of min to max bytes. */
static int token_b64(struct json_object *token, const char *what, const char *field, uint8_t *out,
                     size_t min, size_t max, size_t *out_len, struct nbdc_error *err)
{
  const char *text = token_string(token, field);
  if (!text)
    return nbdc_error_set(err, EINVAL, "%s: kms-wrapped token has no \"%s\" string", what, field);
  size_t len = 0;
  if (base64_decode(text, out, max, &len) < 0 || len < min)
    return nbdc_error_set(err, EINVAL,
                          min == max ? "%s: \"%s\" is not base64 of %zu bytes"
                                     : "%s: \"%s\" is not base64 of %zu to %zu bytes",
                          what, field, min, max);
  *out_len = len;
  return 0;
}

/* Exactly one keyslot, as a canonical decimal string: the keyslot the KEK
 * (or the secret it unwraps) opens. */
static int token_keyslot(struct json_object *token, const char *what, int *keyslot,
                         struct nbdc_error *err)
{
  struct json_object *slots;
  if (!json_object_object_get_ex(token, "keyslots", &slots) ||
      !json_object_is_type(slots, json_type_array))
    return nbdc_error_set(err, EINVAL, "%s: \"keyslots\" is missing or not an array", what);
  if (json_object_array_length(slots) != 1)
    return nbdc_error_set(err, EINVAL, "%s: \"keyslots\" must name exactly one keyslot, not %zu",
                          what, json_object_array_length(slots));
  struct json_object *first = json_object_array_get_idx(slots, 0);
  const char *text =
      json_object_is_type(first, json_type_string) ? json_object_get_string(first) : "";
  char *end;
  long slot = strtol(text, &end, 10);
  if (!*text || *end || (text[0] == '0' && text[1]) || !(text[0] >= '0' && text[0] <= '9') ||
      slot < 0 || slot >= LUKS2_MAX_KEYSLOTS)
    return nbdc_error_set(err, EINVAL,
                          "%s: keyslot \"%.16s\" is not a keyslot id (\"0\" to \"%d\")", what, text,
                          LUKS2_MAX_KEYSLOTS - 1);
  *keyslot = (int)slot;
  return 0;
}

/* The one parser of our token, for tokens read from a header and for token
 * text handed over by cryptsetup: every field nbdcrypt writes is required and
 * checked; fields it does not know are accepted (as LUKS2 does). */
int volume_token_from_json(struct json_object *token, const char *what, int id,
                           struct volume_token *out, struct nbdc_error *err)
{
  memset(out, 0, sizeof *out);
  out->id = id;
  out->keyslot = -1;
  if (!json_object_is_type(token, json_type_object))
    return nbdc_error_set(err, EINVAL, "%s is not a JSON object", what);
  const char *type = token_string(token, "type");
  if (!type || strcmp(type, VOLUME_TOKEN_TYPE) != 0)
    return nbdc_error_set(err, EINVAL, "%s: \"type\" is not \"" VOLUME_TOKEN_TYPE "\"", what);
  int keyslot = -1;
  int r = token_keyslot(token, what, &keyslot, err);
  if (r == 0)
    r = token_name(token, what, "provider", out->provider, sizeof out->provider, err);
  if (r == 0)
    r = token_name(token, what, "kek_id", out->kek_id, sizeof out->kek_id, err);
  if (r < 0)
    return r;

  const char *mode = token_string(token, "mode");
  static const char *const wrap_fields[] = {"wrapped", "iv", "tag"};
  if (!mode) {
    return nbdc_error_set(err, EINVAL, "%s: \"mode\" is missing or not a string", what);
  } else if (strcmp(mode, "kek") == 0) {
    for (size_t i = 0; i < sizeof wrap_fields / sizeof wrap_fields[0]; i++)
      if (json_object_object_get_ex(token, wrap_fields[i], NULL))
        return nbdc_error_set(err, EINVAL, "%s: mode \"kek\" with a \"%s\" field", what,
                              wrap_fields[i]);
  } else if (strcmp(mode, "kms-wrapped") == 0) {
    size_t iv_len, tag_len;
    out->kms_wrapped = true;
    if ((r = token_b64(token, what, "wrapped", out->wrapped, 1, sizeof out->wrapped,
                       &out->wrapped_len, err)) < 0 ||
        (r = token_b64(token, what, "iv", out->iv, sizeof out->iv, sizeof out->iv, &iv_len, err)) <
            0 ||
        (r = token_b64(token, what, "tag", out->tag, sizeof out->tag, sizeof out->tag, &tag_len,
                       err)) < 0)
      return r;
  } else {
    return nbdc_error_set(err, EINVAL, "%s: mode \"%.32s\" is not \"kek\" or \"kms-wrapped\"", what,
                          mode);
  }
  out->keyslot = keyslot;
  return 0;
}

static void token_info(const struct volume_token *tok, struct volume_token_info *info)
{
  if (!info)
    return;
  info->keyslot = tok->keyslot;
  info->kms_wrapped = tok->kms_wrapped;
  memcpy(info->provider, tok->provider, sizeof info->provider);
  memcpy(info->kek_id, tok->kek_id, sizeof info->kek_id);
}

/* Token text as cryptsetup hands it over: one JSON object and nothing else. */
static int token_from_text(const char *json_text, struct volume_token *tok, struct nbdc_error *err)
{
  if (!json_text)
    return nbdc_error_set(err, EINVAL, "nbdcrypt token: no JSON text");
  struct json_tokener *tokener = json_tokener_new();
  if (!tokener)
    return nbdc_error_set(err, ENOMEM, "nbdcrypt token: out of memory");
  json_tokener_set_flags(tokener, JSON_TOKENER_STRICT);
  size_t len = strlen(json_text);
  struct json_object *token = NULL;
  int r = 0;
  if (len > INT_MAX) {
    r = nbdc_error_set(err, EINVAL, "nbdcrypt token: JSON text too long (%zu bytes)", len);
  } else {
    token = json_tokener_parse_ex(tokener, json_text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tokener);
    /* Strict mode also refuses anything but white space after the object. */
    if (!token || jerr != json_tokener_success)
      r = nbdc_error_set(err, EINVAL, "nbdcrypt token: not valid JSON (%s)",
                         jerr == json_tokener_continue ? "unexpected end"
                                                       : json_tokener_error_desc(jerr));
  }
  if (r == 0)
    r = volume_token_from_json(token, "nbdcrypt token", -1, tok, err);
  json_object_put(token);
  json_tokener_free(tokener);
  return r;
}

int volume_token_check(const char *json_text, struct volume_token_info *info,
                       struct nbdc_error *err)
{
  struct volume_token tok;
  int r = token_from_text(json_text, &tok, err);
  if (r == 0)
    token_info(&tok, info);
  return r;
}

/* KMIP's usage rules (KMIP 1.4 section 3.22): an Active key protects and
 * processes; a Deactivated one may still process (decrypt) but never
 * protect; a Compromised one should only process under exceptional
 * circumstances.  We are stricter for Deactivated (issue 12: nothing but
 * Active unlocks by default): binding wants Active; unlock takes Active, and
 * Deactivated or Compromised only with the operator's override, with a
 * warning; anything else (Pre-Active, Destroyed) is refused. */
int volume_kek_check_bind(struct keys_provider *provider, const char *kek_id,
                          struct nbdc_error *err)
{
  enum keys_kek_state st;
  int r = keys_kek_get_state(provider, kek_id, &st, err);
  if (r < 0)
    return r;
  if (st != KEYS_KEK_ACTIVE)
    return nbdc_error_set(err, EKEYREVOKED,
                          "kek %s of provider %s is %s, not active; refusing to bind a disk to it",
                          kek_id, keys_provider_name(provider), keys_kek_state_name(st));
  return 0;
}

int volume_kek_check_unlock(const struct keys_config *cfg, struct keys_provider *provider,
                            const char *kek_id, struct nbdc_error *err)
{
  enum keys_kek_state st;
  int r = keys_kek_get_state(provider, kek_id, &st, err);
  if (r < 0)
    return r;
  const char *name = keys_provider_name(provider);
  switch (st) {
  case KEYS_KEK_ACTIVE:
    return 0;
  case KEYS_KEK_DEACTIVATED:
  case KEYS_KEK_COMPROMISED:
    if (keys_config_allow_revoked(cfg)) {
      keys_config_warn(cfg,
                       "kek %s of provider %s is %s: unlocking with it only because the "
                       "revoked-kek override is set; rekey the disk to an active kek now",
                       kek_id, name, keys_kek_state_name(st));
      return 0;
    }
    return nbdc_error_set(err, EKEYREVOKED,
                          "kek %s of provider %s is %s, not active; refusing to unlock with it "
                          "(to rescue the data, override with --allow-revoked or "
                          "nbdcrypt-allow-revoked=true and rekey to an active kek)",
                          kek_id, name, keys_kek_state_name(st));
  default:
    return nbdc_error_set(err, EKEYREVOKED,
                          "kek %s of provider %s is %s, not active; refusing to unlock with it",
                          kek_id, name, keys_kek_state_name(st));
  }
}

int volume_token_secret_from(const struct keys_config *cfg, struct keys_provider *provider,
                             const struct volume_token *tok, uint8_t **secret, size_t *secret_len,
                             struct nbdc_error *err)
{
  *secret = NULL;
  *secret_len = 0;
  int r = volume_kek_check_unlock(cfg, provider, tok->kek_id, err);
  if (r < 0)
    return r;
  if (tok->kms_wrapped) {
    r = keys_kek_unwrap(provider, tok->kek_id, tok->wrapped, tok->wrapped_len, tok->iv, tok->tag,
                        secret, secret_len, err);
  } else {
    r = keys_kek_get(provider, tok->kek_id, secret, err);
    if (r == 0)
      *secret_len = KEYS_KEK_SIZE;
  }
  return r;
}

int volume_token_secret_of(const struct keys_config *cfg, const struct volume_token *tok,
                           uint8_t **secret, size_t *secret_len, struct nbdc_error *err)
{
  *secret = NULL;
  *secret_len = 0;
  struct keys_provider *provider = NULL;
  int r = keys_provider_open(cfg, tok->provider, &provider, err);
  if (r < 0)
    return r;
  r = volume_token_secret_from(cfg, provider, tok, secret, secret_len, err);
  keys_provider_close(provider);
  return r;
}

int volume_token_secret(const char *json_text, const struct keys_config *cfg,
                        struct volume_token_info *info, uint8_t **secret, size_t *secret_len,
                        struct nbdc_error *err)
{
  struct volume_token tok;
  *secret = NULL;
  *secret_len = 0;
  int r = token_from_text(json_text, &tok, err);
  if (r < 0)
    return r;
  token_info(&tok, info);
  if (!cfg)
    return nbdc_error_set(err, EINVAL, "no key provider configuration");
  return volume_token_secret_of(cfg, &tok, secret, secret_len, err);
}

static int token_add_b64(struct json_object *token, const char *field, const uint8_t *bytes,
                         size_t len)
{
  char *text = base64_encode(bytes, len);
  if (!text)
    return -ENOMEM;
  json_object_object_add(token, field, json_object_new_string(text));
  free(text);
  return 0;
}

int volume_token_build(const struct volume_token *tok, struct json_object **out,
                       struct nbdc_error *err)
{
  struct json_object *token = json_object_new_object();
  struct json_object *slots = json_object_new_array();
  char slot_text[16];
  if (!token || !slots) {
    json_object_put(token);
    json_object_put(slots);
    return nbdc_error_set(err, ENOMEM, "out of memory building token");
  }
  snprintf(slot_text, sizeof slot_text, "%d", tok->keyslot);
  json_object_array_add(slots, json_object_new_string(slot_text));
  json_object_object_add(token, "type", json_object_new_string(VOLUME_TOKEN_TYPE));
  json_object_object_add(token, "keyslots", slots);
  json_object_object_add(token, "provider", json_object_new_string(tok->provider));
  json_object_object_add(token, "kek_id", json_object_new_string(tok->kek_id));
  json_object_object_add(token, "mode",
                         json_object_new_string(tok->kms_wrapped ? "kms-wrapped" : "kek"));
  if (tok->kms_wrapped && (token_add_b64(token, "wrapped", tok->wrapped, tok->wrapped_len) < 0 ||
                           token_add_b64(token, "iv", tok->iv, sizeof tok->iv) < 0 ||
                           token_add_b64(token, "tag", tok->tag, sizeof tok->tag) < 0)) {
    json_object_put(token);
    return nbdc_error_set(err, ENOMEM, "out of memory building token");
  }
  *out = token;
  return 0;
}
