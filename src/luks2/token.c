/* LUKS2 tokens: free-form JSON objects naming keyslots.  Known types are
 * checked by a small handler table; other types are kept as long as they are
 * well-formed, except the "luks2-" prefix that cryptsetup reserves. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "luks2/luks2_internal.h"

struct token_handler {
  const char *type;
  int (*validate)(struct json_object *token, const char *what, struct nbdc_error *err);
};

static int nonempty_string(struct json_object *token, const char *key, const char *what,
                           const char **out, struct nbdc_error *err)
{
  int r = luks2_json_get_str(token, key, what, out, err);
  if (r == 0 && !**out)
    r = nbdc_error_set(err, EINVAL, "%s: %s is empty", what, key);
  return r;
}

static int base64_string(struct json_object *token, const char *key, const char *what,
                         struct nbdc_error *err)
{
  const char *text;
  int r = nonempty_string(token, key, what, &text, err);
  if (r < 0)
    return r;
  size_t max = strlen(text), len;
  uint8_t *buf = malloc(max);
  if (!buf)
    return nbdc_error_set(err, ENOMEM, "%s: out of memory", what);
  r = base64_decode(text, buf, max, &len);
  free(buf);
  if (r < 0)
    return nbdc_error_set(err, EINVAL, "%s: %s is not valid base64", what, key);
  return 0;
}

/* Ours (DESIGN.md section 2): which provider holds the KEK, its id, and how
 * the keyslot secret is derived from it. */
static int nbdcrypt_validate(struct json_object *token, const char *what, struct nbdc_error *err)
{
  const char *s;
  int r = nonempty_string(token, "provider", what, &s, err);
  if (r == 0)
    r = nonempty_string(token, "kek_id", what, &s, err);
  if (r == 0)
    r = luks2_json_get_str(token, "mode", what, &s, err);
  if (r < 0)
    return r;
  if (strcmp(s, "kms-wrapped") == 0) {
    r = base64_string(token, "wrapped", what, err);
    if (r == 0)
      r = base64_string(token, "iv", what, err);
    if (r == 0)
      r = base64_string(token, "tag", what, err);
    if (r < 0)
      return r;
  } else if (strcmp(s, "kek") != 0) {
    return nbdc_error_set(err, EINVAL, "%s: mode '%.32s' not \"kek\" or \"kms-wrapped\"", what, s);
  }
  struct json_object *keyslots = luks2_json_get(token, "keyslots", json_type_array);
  if (json_object_array_length(keyslots) == 0)
    return nbdc_error_set(err, EINVAL, "%s: no keyslots", what);
  return 0;
}

/* cryptsetup's built-in kernel keyring token. */
static int keyring_validate(struct json_object *token, const char *what, struct nbdc_error *err)
{
  const char *s;
  return luks2_json_get_str(token, "key_description", what, &s, err);
}

static const struct token_handler token_handlers[] = {
    {"nbdcrypt", nbdcrypt_validate},
    {"luks2-keyring", keyring_validate},
};

int luks2_token_validate(struct json_object *jobj_hdr, struct json_object *token, int id,
                         struct nbdc_error *err)
{
  char what[32];
  const char *type;
  snprintf(what, sizeof what, "token %d", id);
  if (!json_object_is_type(token, json_type_object))
    return nbdc_error_set(err, EINVAL, "%s: not an object", what);
  int r = nonempty_string(token, "type", what, &type, err);
  if (r == 0)
    r = luks2_validate_keyslot_refs(jobj_hdr, token, what, err);
  if (r < 0)
    return r;
  for (size_t i = 0; i < sizeof token_handlers / sizeof token_handlers[0]; i++)
    if (strcmp(token_handlers[i].type, type) == 0)
      return token_handlers[i].validate(token, what, err);
  /* cryptsetup keeps the prefix for its built-in handlers; an unknown one
   * is a forgery or a newer cryptsetup's, which we cannot honour either. */
  if (strncmp(type, "luks2-", 6) == 0)
    return nbdc_error_set(err, EINVAL, "%s: type '%.32s' is reserved (\"luks2-\" prefix)", what,
                          type);
  return 0;
}

static struct json_object *tokens_section(const struct luks2_hdr *hdr)
{
  return luks2_json_get(hdr->jobj, "tokens", json_type_object);
}

struct json_object *luks2_token_get(const struct luks2_hdr *hdr, int token)
{
  char key[12];
  if (token < 0 || token >= LUKS2_MAX_TOKENS)
    return NULL;
  snprintf(key, sizeof key, "%d", token);
  return luks2_json_get(tokens_section(hdr), key, json_type_object);
}

int luks2_token_add(struct luks2_hdr *hdr, int token, struct json_object *json, int *added,
                    struct nbdc_error *err)
{
  if (token < -1 || token >= LUKS2_MAX_TOKENS)
    return nbdc_error_set(err, EINVAL, "token %d out of range 0..%d", token, LUKS2_MAX_TOKENS - 1);
  if (token >= 0 && luks2_token_get(hdr, token))
    return nbdc_error_set(err, EEXIST, "token %d already exists", token);
  for (int id = 0; token < 0 && id < LUKS2_MAX_TOKENS; id++)
    if (!luks2_token_get(hdr, id))
      token = id;
  if (token < 0)
    return nbdc_error_set(err, ENOSPC, "all %d tokens are in use", LUKS2_MAX_TOKENS);
  int r = luks2_token_validate(hdr->jobj, json, token, err);
  if (r < 0)
    return r;
  char key[12];
  snprintf(key, sizeof key, "%d", token);
  if (json_object_object_add(tokens_section(hdr), key, json) < 0)
    return nbdc_error_set(err, ENOMEM, "token %d: out of memory", token);
  if (added)
    *added = token;
  return 0;
}

int luks2_token_remove(struct luks2_hdr *hdr, int token, struct nbdc_error *err)
{
  if (!luks2_token_get(hdr, token))
    return nbdc_error_set(err, ENOENT, "token %d: no such token", token);
  char key[12];
  snprintf(key, sizeof key, "%d", token);
  json_object_object_del(tokens_section(hdr), key);
  return 0;
}

int luks2_token_next(const struct luks2_hdr *hdr, int after, const char *type)
{
  for (int id = after < 0 ? 0 : after + 1; id < LUKS2_MAX_TOKENS; id++) {
    struct json_object *token = luks2_token_get(hdr, id);
    if (!token)
      continue;
    const char *t = json_object_get_string(luks2_json_get(token, "type", json_type_string));
    if (!type || (t && strcmp(t, type) == 0))
      return id;
  }
  return -1;
}
