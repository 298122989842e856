/* The nbdcrypt LUKS2 token (DESIGN.md section 2): what a disk records about
 * the KEK that protects one of its keyslots.
 *   {"type": "nbdcrypt", "keyslots": ["1"], "provider": "local",
 *    "kek_id": "7f3e...", "mode": "kek"}
 * mode "kms-wrapped" adds "wrapped", "iv" and "tag" (base64). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "volume/token.h"

static const char *token_string(struct json_object *token, const char *field)
{
  struct json_object *v;
  if (!json_object_object_get_ex(token, field, &v) || !json_object_is_type(v, json_type_string))
    return NULL;
  return json_object_get_string(v);
}

static int token_b64(struct json_object *token, int id, const char *field, uint8_t *out,
                     size_t out_max, size_t *out_len, struct nbdc_error *err)
{
  const char *text = token_string(token, field);
  if (!text)
    return nbdc_error_set(err, EINVAL, "token %d: kms-wrapped token has no \"%s\"", id, field);
  if (base64_decode(text, out, out_max, out_len) < 0)
    return nbdc_error_set(err, EINVAL, "token %d: \"%s\" is not valid base64 of at most %zu bytes",
                          id, field, out_max);
  return 0;
}

int volume_token_parse(const struct luks2_hdr *hdr, int id, struct volume_token *out,
                       struct nbdc_error *err)
{
  struct json_object *token = luks2_token_get(hdr, id);
  memset(out, 0, sizeof *out);
  out->id = id;
  out->keyslot = -1;
  if (!token)
    return nbdc_error_set(err, ENOENT, "token %d does not exist", id);

  const char *provider = token_string(token, "provider");
  const char *kek_id = token_string(token, "kek_id");
  const char *mode = token_string(token, "mode");
  if (!provider || !*provider || strlen(provider) >= sizeof out->provider)
    return nbdc_error_set(err, EINVAL, "token %d: missing or bad \"provider\"", id);
  if (!kek_id || !*kek_id || strlen(kek_id) >= sizeof out->kek_id)
    return nbdc_error_set(err, EINVAL, "token %d: missing or bad \"kek_id\"", id);
  snprintf(out->provider, sizeof out->provider, "%s", provider);
  snprintf(out->kek_id, sizeof out->kek_id, "%s", kek_id);

  if (!mode || strcmp(mode, "kek") == 0) {
    out->kms_wrapped = false;
  } else if (strcmp(mode, "kms-wrapped") == 0) {
    out->kms_wrapped = true;
    size_t iv_len, tag_len;
    int r =
        token_b64(token, id, "wrapped", out->wrapped, sizeof out->wrapped, &out->wrapped_len, err);
    if (r < 0)
      return r;
    if ((r = token_b64(token, id, "iv", out->iv, sizeof out->iv, &iv_len, err)) < 0)
      return r;
    if ((r = token_b64(token, id, "tag", out->tag, sizeof out->tag, &tag_len, err)) < 0)
      return r;
    if (iv_len != sizeof out->iv || tag_len != sizeof out->tag)
      return nbdc_error_set(err, EINVAL, "token %d: iv must be 12 and tag 16 bytes", id);
  } else {
    return nbdc_error_set(err, EINVAL, "token %d: unknown mode \"%s\"", id, mode);
  }

  struct json_object *slots;
  if (json_object_object_get_ex(token, "keyslots", &slots) &&
      json_object_is_type(slots, json_type_array) && json_object_array_length(slots) > 0) {
    struct json_object *first = json_object_array_get_idx(slots, 0);
    const char *text = json_object_get_string(first);
    char *end;
    long slot = strtol(text ? text : "", &end, 10);
    if (text && *text && !*end && slot >= 0 && slot < LUKS2_MAX_KEYSLOTS)
      out->keyslot = (int)slot;
  }
  if (out->keyslot < 0)
    return nbdc_error_set(err, EINVAL, "token %d: no keyslot", id);
  return 0;
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
