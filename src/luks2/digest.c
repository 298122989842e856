/* LUKS2 digests: the check that a candidate volume key is the right one.
 * One type, "pbkdf2" (all cryptsetup writes), behind a small handler table. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "luks2/luks2_internal.h"

#define DIGEST_MIN_LEN 16
#define DIGEST_MAX_LEN 64

struct digest_handler {
  const char *type;
  int (*validate)(struct json_object *digest, const char *what, struct nbdc_error *err);
  int (*verify)(struct json_object *digest, const uint8_t *vk, size_t vk_len,
                struct nbdc_error *err);
};

static int pbkdf2_validate(struct json_object *digest, const char *what, struct nbdc_error *err)
{
  const char *hash;
  int64_t iterations;
  uint8_t buf[DIGEST_MAX_LEN];
  int r = luks2_json_get_str(digest, "hash", what, &hash, err);
  if (r < 0)
    return r;
  if (!luks2_hash_allowed(hash))
    return nbdc_error_set(err, EINVAL, "%s: hash '%.32s' not allowed", what, hash);
  r = luks2_json_get_int(digest, "iterations", what, 1, UINT32_MAX, &iterations, err);
  if (r == 0)
    r = luks2_json_get_b64(digest, "salt", what, buf, 1, KDF_SALT_MAX, NULL, err);
  if (r == 0)
    r = luks2_json_get_b64(digest, "digest", what, buf, DIGEST_MIN_LEN, DIGEST_MAX_LEN, NULL, err);
  return r;
}

static int pbkdf2_verify(struct json_object *digest, const uint8_t *vk, size_t vk_len,
                         struct nbdc_error *err)
{
  const char *hash = json_object_get_string(luks2_json_get(digest, "hash", json_type_string));
  uint32_t iterations =
      (uint32_t)json_object_get_int64(luks2_json_get(digest, "iterations", json_type_int));
  uint8_t salt[KDF_SALT_MAX], expected[DIGEST_MAX_LEN], computed[DIGEST_MAX_LEN];
  size_t salt_len, digest_len;
  int r = luks2_json_get_b64(digest, "salt", "digest", salt, 1, sizeof salt, &salt_len, err);
  if (r == 0)
    r = luks2_json_get_b64(digest, "digest", "digest", expected, DIGEST_MIN_LEN, sizeof expected,
                           &digest_len, err);
  if (r == 0)
    r = kdf_pbkdf2(hash, vk, vk_len, salt, salt_len, iterations, computed, digest_len, err);
  if (r == 0 && !crypto_memeq(computed, expected, digest_len))
    r = nbdc_error_set(err, EPERM, "volume key does not match the digest");
  nbdc_wipe(computed, sizeof computed);
  return r;
}

static const struct digest_handler digest_handlers[] = {
    {"pbkdf2", pbkdf2_validate, pbkdf2_verify},
};

static const struct digest_handler *digest_handler(const char *type)
{
  for (size_t i = 0; i < sizeof digest_handlers / sizeof digest_handlers[0]; i++)
    if (strcmp(digest_handlers[i].type, type) == 0)
      return &digest_handlers[i];
  return NULL;
}

/* An array of ids that must all name members of section. */
static int validate_refs(struct json_object *owner, const char *key, struct json_object *section,
                         const char *ref_what, int max, const char *what, struct nbdc_error *err)
{
  struct json_object *arr;
  if (!json_object_object_get_ex(owner, key, &arr))
    return nbdc_error_set(err, EINVAL, "%s: missing %s", what, key);
  if (!json_object_is_type(arr, json_type_array))
    return nbdc_error_set(err, EINVAL, "%s: %s is not an array", what, key);
  size_t n = json_object_array_length(arr);
  if (n > (size_t)max)
    return nbdc_error_set(err, EINVAL, "%s: %s has %zu entries, at most %d allowed", what, key, n,
                          max);
  for (size_t i = 0; i < n; i++) {
    struct json_object *el = json_object_array_get_idx(arr, i);
    if (!json_object_is_type(el, json_type_string) ||
        luks2_parse_id(json_object_get_string(el), max) < 0)
      return nbdc_error_set(err, EINVAL, "%s: %s entry %zu is not a %s id", what, key, i, ref_what);
    const char *id = json_object_get_string(el);
    if (!json_object_object_get_ex(section, id, NULL))
      return nbdc_error_set(err, EINVAL, "%s: %s names missing %s %s", what, key, ref_what, id);
    for (size_t j = 0; j < i; j++)
      if (strcmp(json_object_get_string(json_object_array_get_idx(arr, j)), id) == 0)
        return nbdc_error_set(err, EINVAL, "%s: %s lists %s %s twice", what, key, ref_what, id);
  }
  return 0;
}

/* Exported for tokens too: see luks2_internal.h. */
int luks2_validate_keyslot_refs(struct json_object *jobj_hdr, struct json_object *owner,
                                const char *what, struct nbdc_error *err)
{
  return validate_refs(owner, "keyslots", luks2_json_get(jobj_hdr, "keyslots", json_type_object),
                       "keyslot", LUKS2_MAX_KEYSLOTS, what, err);
}

int luks2_digest_validate(struct json_object *jobj_hdr, struct json_object *digest, int id,
                          struct nbdc_error *err)
{
  char what[32];
  const char *type;
  snprintf(what, sizeof what, "digest %d", id);
  int r = luks2_json_get_str(digest, "type", what, &type, err);
  if (r < 0)
    return r;
  const struct digest_handler *h = digest_handler(type);
  if (!h)
    return nbdc_error_set(err, EINVAL, "%s: type '%.32s' not supported", what, type);
  r = luks2_validate_keyslot_refs(jobj_hdr, digest, what, err);
  if (r == 0)
    r = validate_refs(digest, "segments", luks2_json_get(jobj_hdr, "segments", json_type_object),
                      "segment", LUKS2_MAX_SEGMENTS, what, err);
  if (r == 0)
    r = h->validate(digest, what, err);
  return r;
}

static int digest_by(struct json_object *jobj_hdr, const char *key, int id)
{
  struct json_object *digests = luks2_json_get(jobj_hdr, "digests", json_type_object);
  json_object_object_foreach(digests, dkey, digest)
  {
    if (luks2_json_array_has_id(luks2_json_get(digest, key, json_type_array), id))
      return luks2_parse_id(dkey, LUKS2_MAX_DIGESTS);
  }
  return -1;
}

int luks2_digest_by_keyslot(struct json_object *jobj_hdr, int keyslot)
{
  return digest_by(jobj_hdr, "keyslots", keyslot);
}

int luks2_digest_by_segment(struct json_object *jobj_hdr, int segment)
{
  return digest_by(jobj_hdr, "segments", segment);
}

int luks2_digest_check(struct json_object *jobj_hdr, int digest, const uint8_t *vk, size_t vk_len,
                       struct nbdc_error *err)
{
  char key[12];
  snprintf(key, sizeof key, "%d", digest);
  struct json_object *digests = luks2_json_get(jobj_hdr, "digests", json_type_object);
  struct json_object *obj = luks2_json_get(digests, key, json_type_object);
  if (!obj)
    return nbdc_error_set(err, ENOENT, "digest %d: no such digest", digest);
  const struct digest_handler *h =
      digest_handler(json_object_get_string(luks2_json_get(obj, "type", json_type_string)));
  if (!h)
    return nbdc_error_set(err, EINVAL, "digest %d: type not supported", digest);
  return h->verify(obj, vk, vk_len, err);
}

int luks2_digest_verify(const struct luks2_hdr *hdr, const uint8_t *vk, size_t vk_len,
                        struct nbdc_error *err)
{
  /* The data segment: the crypt segment with the lowest id. */
  struct json_object *segments = luks2_json_get(hdr->jobj, "segments", json_type_object);
  int best = -1;
  json_object_object_foreach(segments, key, seg)
  {
    const char *type = json_object_get_string(luks2_json_get(seg, "type", json_type_string));
    int id = luks2_parse_id(key, LUKS2_MAX_SEGMENTS);
    if (strcmp(type, "crypt") == 0 && (best < 0 || id < best))
      best = id;
  }
  int digest = best < 0 ? -1 : luks2_digest_by_segment(hdr->jobj, best);
  if (digest < 0)
    return nbdc_error_set(err, EINVAL, "no digest for the data segment");
  size_t expect = luks2_volume_key_size(hdr);
  if (expect && vk_len != expect)
    return nbdc_error_set(err, EPERM, "volume key of %zu bytes, expected %zu", vk_len, expect);
  return luks2_digest_check(hdr->jobj, digest, vk, vk_len, err);
}

int luks2_digest_create(const uint8_t *vk, size_t vk_len, int segment, struct json_object **out,
                        struct nbdc_error *err)
{
  uint8_t salt[LUKS2_KDF_SALT_LEN], value[32];
  char *salt_b64 = NULL, *value_b64 = NULL;
  struct json_object *digest = NULL;
  int r = crypto_random(salt, sizeof salt, err);
  if (r == 0)
    r = kdf_pbkdf2("sha256", vk, vk_len, salt, sizeof salt, LUKS2_DIGEST_ITER, value, sizeof value,
                   err);
  if (r < 0)
    return r;
  salt_b64 = base64_encode(salt, sizeof salt);
  value_b64 = base64_encode(value, sizeof value);
  digest = json_object_new_object();
  struct json_object *keyslots = json_object_new_array();
  struct json_object *segments = json_object_new_array();
  if (!salt_b64 || !value_b64 || !digest || !keyslots || !segments) {
    json_object_put(keyslots);
    json_object_put(segments);
    r = nbdc_error_set(err, ENOMEM, "out of memory creating a digest");
    goto out;
  }
  json_object_object_add(digest, "type", json_object_new_string("pbkdf2"));
  json_object_object_add(digest, "keyslots", keyslots);
  json_object_object_add(digest, "segments", segments);
  if (segment >= 0) {
    char id[12];
    snprintf(id, sizeof id, "%d", segment);
    json_object_array_add(segments, json_object_new_string(id));
  }
  json_object_object_add(digest, "hash", json_object_new_string("sha256"));
  json_object_object_add(digest, "iterations", json_object_new_int(LUKS2_DIGEST_ITER));
  json_object_object_add(digest, "salt", json_object_new_string(salt_b64));
  json_object_object_add(digest, "digest", json_object_new_string(value_b64));
  *out = digest;
  digest = NULL;
out:
  json_object_put(digest);
  free(salt_b64);
  free(value_b64);
  return r;
}

int luks2_digest_find(const struct luks2_hdr *hdr, const uint8_t *vk, size_t vk_len,
                      struct nbdc_error *err)
{
  struct json_object *digests = luks2_json_get(hdr->jobj, "digests", json_type_object);
  json_object_object_foreach(digests, key, digest)
  {
    (void)digest;
    int id = luks2_parse_id(key, LUKS2_MAX_DIGESTS);
    if (id < 0)
      continue;
    struct nbdc_error check_err = {0};
    int r = luks2_digest_check(hdr->jobj, id, vk, vk_len, &check_err);
    if (r == 0)
      return id;
    if (r != -EPERM) {
      if (err)
        *err = check_err;
      return r;
    }
  }
  return nbdc_error_set(err, EPERM, "volume key does not match any digest");
}
