/* LUKS2 keyslots: validation, unlocking and adding "luks2" keyslots
 * (reference/luks2.md "Unlocking a luks2 keyslot"); "reencrypt" keyslots are
 * only validated so that their areas are accounted for. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "luks2/luks2_internal.h"

#define ARGON2_MEMORY_MAX UINT32_C(4194304) /* KiB: 4 GiB */
#define ARGON2_CPUS_MAX   4

struct keyslot_handler {
  const char *type;
  int (*validate)(struct json_object *keyslot, const char *what, struct nbdc_error *err);
};

static int validate_area_common(struct json_object *area, const char *what, uint64_t *offset,
                                uint64_t *size, struct nbdc_error *err)
{
  int r = luks2_json_get_u64_str(area, "offset", what, offset, err);
  if (r == 0)
    r = luks2_json_get_u64_str(area, "size", what, size, err);
  if (r < 0)
    return nbdc_error_prefix(err, "area");
  return 0;
}

static int validate_kdf(struct json_object *kdf, const char *what, struct nbdc_error *err)
{
  const char *type;
  int64_t v;
  uint8_t salt[KDF_SALT_MAX];
  int r = luks2_json_get_str(kdf, "type", what, &type, err);
  if (r < 0)
    return r;
  if (strcmp(type, "pbkdf2") == 0) {
    const char *hash;
    r = luks2_json_get_str(kdf, "hash", what, &hash, err);
    if (r < 0)
      return r;
    if (!luks2_hash_allowed(hash))
      return nbdc_error_set(err, EINVAL, "%s: kdf hash '%.32s' not allowed", what, hash);
    r = luks2_json_get_int(kdf, "iterations", what, 1, UINT32_MAX, &v, err);
  } else if (strcmp(type, "argon2i") == 0 || strcmp(type, "argon2id") == 0) {
    r = luks2_json_get_int(kdf, "time", what, 1, UINT32_MAX, &v, err);
    if (r == 0)
      r = luks2_json_get_int(kdf, "memory", what, 8, ARGON2_MEMORY_MAX, &v, err);
    if (r == 0)
      r = luks2_json_get_int(kdf, "cpus", what, 1, ARGON2_CPUS_MAX, &v, err);
  } else {
    return nbdc_error_set(err, EINVAL, "%s: kdf type '%.32s' not allowed", what, type);
  }
  if (r == 0)
    r = luks2_json_get_b64(kdf, "salt", what, salt, 1, sizeof salt, NULL, err);
  return r;
}

static int luks2_type_validate(struct json_object *keyslot, const char *what,
                               struct nbdc_error *err)
{
  int64_t key_size, area_key_size, stripes, priority;
  const char *s;
  int r = luks2_json_get_int(keyslot, "key_size", what, 0, INT32_MAX, &key_size, err);
  if (r < 0)
    return r;
  if (key_size != 32 && key_size != 64)
    return nbdc_error_set(err, EINVAL, "%s: key_size %" PRId64 " not allowed (32 or 64)", what,
                          key_size);
  if (json_object_object_get_ex(keyslot, "priority", NULL)) {
    r = luks2_json_get_int(keyslot, "priority", what, 0, 2, &priority, err);
    if (r < 0)
      return r;
  }

  struct json_object *af = luks2_json_get(keyslot, "af", json_type_object);
  if (!af)
    return nbdc_error_set(err, EINVAL, "%s: af missing or not an object", what);
  r = luks2_json_get_str(af, "type", what, &s, err);
  if (r < 0)
    return r;
  if (strcmp(s, "luks1") != 0)
    return nbdc_error_set(err, EINVAL, "%s: af type '%.32s' not supported", what, s);
  /* Like cryptsetup 2.6, require an integer but always merge 4000 stripes:
   * the stored value never sizes anything. */
  r = luks2_json_get_int(af, "stripes", what, 0, UINT32_MAX, &stripes, err);
  if (r < 0)
    return r;
  r = luks2_json_get_str(af, "hash", what, &s, err);
  if (r < 0)
    return r;
  if (!luks2_hash_allowed(s))
    return nbdc_error_set(err, EINVAL, "%s: af hash '%.32s' not allowed", what, s);

  struct json_object *area = luks2_json_get(keyslot, "area", json_type_object);
  uint64_t offset = 0, size = 0;
  if (!area)
    return nbdc_error_set(err, EINVAL, "%s: area missing or not an object", what);
  r = luks2_json_get_str(area, "type", what, &s, err);
  if (r < 0)
    return r;
  if (strcmp(s, "raw") != 0)
    return nbdc_error_set(err, EINVAL, "%s: area type '%.32s' not supported", what, s);
  r = validate_area_common(area, what, &offset, &size, err);
  if (r < 0)
    return r;
  r = luks2_json_get_str(area, "encryption", what, &s, err);
  if (r < 0)
    return r;
  if (strcmp(s, "aes-xts-plain64") != 0)
    return nbdc_error_set(err, EINVAL, "%s: area cipher '%.64s' not allowed (only aes-xts-plain64)",
                          what, s);
  r = luks2_json_get_int(area, "key_size", what, 0, INT32_MAX, &area_key_size, err);
  if (r < 0)
    return r;
  if (area_key_size != 32 && area_key_size != 64)
    return nbdc_error_set(err, EINVAL, "%s: area key_size %" PRId64 " not allowed (32 or 64)", what,
                          area_key_size);
  if (offset % LUKS2_AREA_ALIGN)
    return nbdc_error_set(err, EINVAL, "%s: area offset %" PRIu64 " not aligned to 4096", what,
                          offset);
  size_t needed = af_split_sectors_bytes((size_t)key_size, LUKS2_STRIPES);
  if (size < needed)
    return nbdc_error_set(err, EINVAL,
                          "%s: area size %" PRIu64 " smaller than the %zu bytes of key material",
                          what, size, needed);

  struct json_object *kdf = luks2_json_get(keyslot, "kdf", json_type_object);
  if (!kdf)
    return nbdc_error_set(err, EINVAL, "%s: kdf missing or not an object", what);
  return validate_kdf(kdf, what, err);
}

/* cryptsetup's in-progress re-encryption keyslot: we never open it, but its
 * area must be well-formed so that it is never given to another keyslot. */
static int reencrypt_type_validate(struct json_object *keyslot, const char *what,
                                   struct nbdc_error *err)
{
  struct json_object *area = luks2_json_get(keyslot, "area", json_type_object);
  uint64_t offset = 0, size = 0;
  const char *s;
  if (!area)
    return nbdc_error_set(err, EINVAL, "%s: area missing or not an object", what);
  int r = luks2_json_get_str(area, "type", what, &s, err);
  if (r == 0)
    r = validate_area_common(area, what, &offset, &size, err);
  return r;
}

static const struct keyslot_handler keyslot_handlers[] = {
    {"luks2", luks2_type_validate},
    {"reencrypt", reencrypt_type_validate},
};

int luks2_keyslot_validate(struct json_object *jobj_hdr, struct json_object *keyslot, int id,
                           struct nbdc_error *err)
{
  (void)jobj_hdr;
  char what[32];
  const char *type;
  snprintf(what, sizeof what, "keyslot %d", id);
  int r = luks2_json_get_str(keyslot, "type", what, &type, err);
  if (r < 0)
    return r;
  for (size_t i = 0; i < sizeof keyslot_handlers / sizeof keyslot_handlers[0]; i++)
    if (strcmp(keyslot_handlers[i].type, type) == 0)
      return keyslot_handlers[i].validate(keyslot, what, err);
  return nbdc_error_set(err, EINVAL, "%s: type '%.32s' not supported", what, type);
}

void luks2_keyslot_area(struct json_object *keyslot, uint64_t *offset, uint64_t *size)
{
  struct json_object *area = luks2_json_get(keyslot, "area", json_type_object);
  *offset = *size = 0;
  luks2_parse_u64(json_object_get_string(luks2_json_get(area, "offset", json_type_string)), offset);
  luks2_parse_u64(json_object_get_string(luks2_json_get(area, "size", json_type_string)), size);
}

static struct json_object *keyslot_get(const struct luks2_hdr *hdr, int id)
{
  char key[12];
  if (id < 0 || id >= LUKS2_MAX_KEYSLOTS)
    return NULL;
  snprintf(key, sizeof key, "%d", id);
  return luks2_json_get(luks2_json_get(hdr->jobj, "keyslots", json_type_object), key,
                        json_type_object);
}

static int json_int(struct json_object *obj, const char *key)
{
  return (int)json_object_get_int64(luks2_json_get(obj, key, json_type_int));
}

static const char *json_str(struct json_object *obj, const char *key)
{
  const char *s = json_object_get_string(luks2_json_get(obj, key, json_type_string));
  return s ? s : "";
}

int luks2_keyslot_info(const struct luks2_hdr *hdr, int id, struct luks2_keyslot_info *info)
{
  struct json_object *ks = keyslot_get(hdr, id);
  if (!ks)
    return -ENOENT;
  memset(info, 0, sizeof *info);
  info->id = id;
  snprintf(info->type, sizeof info->type, "%s", json_str(ks, "type"));
  info->key_size = (size_t)json_int(ks, "key_size");
  info->priority = luks2_json_get(ks, "priority", json_type_int) ? json_int(ks, "priority") : 1;
  snprintf(info->kdf, sizeof info->kdf, "%s",
           json_str(luks2_json_get(ks, "kdf", json_type_object), "type"));
  luks2_keyslot_area(ks, &info->area_offset, &info->area_size);
  info->digest = luks2_digest_by_keyslot(hdr->jobj, id);
  return 0;
}

size_t luks2_keyslot_list(const struct luks2_hdr *hdr, int ids[], size_t max)
{
  size_t n = 0;
  for (int id = 0; id < LUKS2_MAX_KEYSLOTS; id++) {
    if (!keyslot_get(hdr, id))
      continue;
    if (n < max)
      ids[n] = id;
    n++;
  }
  return n;
}

/* KDF parameters of a validated keyslot. */
static int keyslot_kdf_params(struct json_object *ks, struct kdf_params *p, const char *what,
                              struct nbdc_error *err)
{
  struct json_object *kdf = luks2_json_get(ks, "kdf", json_type_object);
  memset(p, 0, sizeof *p);
  p->type = kdf_type_from_name(json_str(kdf, "type"));
  if (p->type == KDF_PBKDF2) {
    snprintf(p->hash, sizeof p->hash, "%s", json_str(kdf, "hash"));
    p->iterations =
        (uint32_t)json_object_get_int64(luks2_json_get(kdf, "iterations", json_type_int));
  } else {
    p->time = (uint32_t)json_int(kdf, "time");
    p->memory_kib = (uint32_t)json_int(kdf, "memory");
    p->cpus = (uint32_t)json_int(kdf, "cpus");
  }
  return luks2_json_get_b64(kdf, "salt", what, p->salt, 1, sizeof p->salt, &p->salt_len, err);
}

int luks2_keyslot_kdf(const struct luks2_hdr *hdr, int id, struct kdf_params *out,
                      struct nbdc_error *err)
{
  struct json_object *ks = keyslot_get(hdr, id);
  if (!ks)
    return nbdc_error_set(err, ENOENT, "no keyslot %d", id);
  char what[32];
  snprintf(what, sizeof what, "keyslot %d", id);
  return keyslot_kdf_params(ks, out, what, err);
}

/* Decrypt keyslot ks's area with secret and AF-merge it into vk (key_size
 * bytes of secure memory).  Does not check the digest. */
static int keyslot_unlock(struct bdev *dev, struct json_object *ks, int id, const uint8_t *secret,
                          size_t secret_len, uint8_t *vk, struct nbdc_error *err)
{
  char what[32];
  snprintf(what, sizeof what, "keyslot %d", id);
  struct json_object *area = luks2_json_get(ks, "area", json_type_object);
  size_t key_size = (size_t)json_int(ks, "key_size");
  size_t area_key_size = (size_t)json_int(area, "key_size");
  size_t split_len = af_split_sectors_bytes(key_size, LUKS2_STRIPES);
  uint64_t area_offset, area_size;
  luks2_keyslot_area(ks, &area_offset, &area_size);

  struct kdf_params kdf;
  uint8_t *area_key = secmem_alloc(area_key_size);
  uint8_t *split = secmem_alloc(split_len);
  uint8_t *cipher = malloc(split_len);
  struct xts_ctx *xts = NULL;
  int r;
  if (!area_key || !split || !cipher) {
    r = nbdc_error_set(err, ENOMEM, "%s: out of (secure) memory", what);
    goto out;
  }
  r = keyslot_kdf_params(ks, &kdf, what, err);
  if (r == 0)
    r = kdf_derive(&kdf, secret, secret_len, area_key, area_key_size, err);
  if (r == 0)
    r = bdev_pread(dev, cipher, split_len, area_offset, err);
  if (r == 0)
    r = xts_new(&xts, area_key, area_key_size, 512, err);
  if (r == 0)
    r = xts_decrypt(xts, split, cipher, split_len, 0, err);
  if (r == 0)
    r = af_merge(split, key_size, LUKS2_STRIPES,
                 json_str(luks2_json_get(ks, "af", json_type_object), "hash"), vk, err);
  if (r < 0)
    r = nbdc_error_prefix(err, "%s", what);
out:
  xts_free(xts);
  nbdc_wipe(&kdf, sizeof kdf);
  secmem_free(area_key, area_key_size);
  secmem_free(split, split_len);
  free(cipher);
  /* The slot secret, the area key and the volume key went through vector
   * registers in the kdf and the af merge (crypto.h). */
  crypto_wipe_cpu_registers();
  return r;
}

/* Try one keyslot: 0 with *vk set, -EPERM for a wrong secret, or an error. */
static int keyslot_try(const struct luks2_hdr *hdr, struct bdev *dev, int id, const uint8_t *secret,
                       size_t secret_len, uint8_t **vk, size_t *vk_len, struct nbdc_error *err)
{
  struct json_object *ks = keyslot_get(hdr, id);
  if (strcmp(json_str(ks, "type"), "luks2") != 0)
    return nbdc_error_set(err, EINVAL, "keyslot %d: type '%s' cannot be opened", id,
                          json_str(ks, "type"));
  int digest = luks2_digest_by_keyslot(hdr->jobj, id);
  if (digest < 0)
    return nbdc_error_set(err, EINVAL, "keyslot %d: no digest", id);
  size_t key_size = (size_t)json_int(ks, "key_size");
  uint8_t *key = secmem_alloc(key_size);
  if (!key)
    return nbdc_error_set(err, ENOMEM, "keyslot %d: out of secure memory", id);
  int r = keyslot_unlock(dev, ks, id, secret, secret_len, key, err);
  if (r == 0)
    r = luks2_digest_check(hdr->jobj, digest, key, key_size, err);
  if (r == -EPERM)
    r = nbdc_error_set(err, EPERM, "keyslot %d: wrong secret", id);
  if (r < 0) {
    secmem_free(key, key_size);
    return r;
  }
  *vk = key;
  *vk_len = key_size;
  return 0;
}

/* Whether keyslot id unlocks a segment (not an unbound key). */
static bool keyslot_bound(const struct luks2_hdr *hdr, int id)
{
  char key[12];
  int digest = luks2_digest_by_keyslot(hdr->jobj, id);
  if (digest < 0)
    return false;
  snprintf(key, sizeof key, "%d", digest);
  struct json_object *d =
      luks2_json_get(luks2_json_get(hdr->jobj, "digests", json_type_object), key, json_type_object);
  struct json_object *segs = luks2_json_get(d, "segments", json_type_array);
  return segs && json_object_array_length(segs) > 0;
}

int luks2_keyslot_open(const struct luks2_hdr *hdr, struct bdev *dev, int keyslot,
                       const uint8_t *secret, size_t secret_len, uint8_t **vk, size_t *vk_len,
                       int *opened, struct nbdc_error *err)
{
  *vk = NULL;
  *vk_len = 0;
  if (keyslot >= 0) {
    if (!keyslot_get(hdr, keyslot))
      return nbdc_error_set(err, ENOENT, "keyslot %d: no such keyslot", keyslot);
    int r = keyslot_try(hdr, dev, keyslot, secret, secret_len, vk, vk_len, err);
    if (r == 0 && opened)
      *opened = keyslot;
    return r;
  }

  /* Priority high first, then normal; "ignore" keyslots only by id. */
  int failure = 0;
  struct nbdc_error first_failure = {0};
  for (int priority = 2; priority >= 1; priority--) {
    for (int id = 0; id < LUKS2_MAX_KEYSLOTS; id++) {
      struct luks2_keyslot_info info;
      if (luks2_keyslot_info(hdr, id, &info) < 0 || info.priority != priority ||
          strcmp(info.type, "luks2") != 0 || !keyslot_bound(hdr, id))
        continue;
      struct nbdc_error try_err = {0};
      int r = keyslot_try(hdr, dev, id, secret, secret_len, vk, vk_len, &try_err);
      if (r == 0) {
        if (opened)
          *opened = id;
        return 0;
      }
      if (r != -EPERM && !failure) {
        failure = r;
        first_failure = try_err;
      }
    }
  }
  if (failure) {
    if (err)
      *err = first_failure;
    return failure;
  }
  return nbdc_error_set(err, EPERM, "no keyslot matches the secret");
}

/* ---- adding ---- */

static uint64_t round_up(uint64_t v, uint64_t align)
{
  return (v + align - 1) / align * align;
}

/* First 4096-aligned gap of size bytes in the keyslots area that is free of
 * keyslot areas and of areas still waiting to be wiped. */
static int area_allocate(const struct luks2_hdr *hdr, uint64_t size, uint64_t *offset,
                         struct nbdc_error *err)
{
  struct luks2_wipe used[LUKS2_MAX_KEYSLOTS + LUKS2_MAX_WIPES];
  size_t n = 0;
  uint64_t start, end;
  luks2_keyslots_area(hdr->jobj, hdr->hdr_size, &start, &end);
  struct json_object *keyslots = luks2_json_get(hdr->jobj, "keyslots", json_type_object);
  json_object_object_foreach(keyslots, key, ks)
  {
    (void)key;
    if (n >= LUKS2_MAX_KEYSLOTS)
      break;
    luks2_keyslot_area(ks, &used[n].offset, &used[n].size);
    n++;
  }
  for (size_t i = 0; i < hdr->n_wipes; i++)
    used[n++] = hdr->wipes[i];

  uint64_t cand = round_up(start, LUKS2_AREA_ALIGN);
  for (bool moved = true; moved;) {
    moved = false;
    if (cand + size > end || cand + size < cand)
      return nbdc_error_set(
          err, ENOSPC,
          "no free %" PRIu64 "-byte area in the keyslots area [%" PRIu64 ", %" PRIu64 ")%s", size,
          start, end, hdr->n_wipes ? " (removed keyslots are freed by the next write)" : "");
    for (size_t i = 0; i < n; i++) {
      if (cand < used[i].offset + used[i].size && used[i].offset < cand + size) {
        cand = round_up(used[i].offset + used[i].size, LUKS2_AREA_ALIGN);
        moved = true;
      }
    }
  }
  *offset = cand;
  return 0;
}

/* The caller's KDF parameters checked against cryptsetup's creation limits. */
static int kdf_for_new_keyslot(const struct kdf_params *in, struct kdf_params *out,
                               struct nbdc_error *err)
{
  *out = *in;
  switch (in->type) {
  case KDF_PBKDF2:
    if (!out->hash[0])
      snprintf(out->hash, sizeof out->hash, "sha256");
    if (!memchr(out->hash, '\0', sizeof out->hash) || !luks2_hash_allowed(out->hash))
      return nbdc_error_set(err, EINVAL, "kdf hash '%.31s' not allowed", out->hash);
    if (out->iterations < 1000)
      return nbdc_error_set(err, EINVAL, "pbkdf2 iterations %u below the minimum 1000",
                            out->iterations);
    break;
  case KDF_ARGON2I:
  case KDF_ARGON2ID:
    if (out->time < 4)
      return nbdc_error_set(err, EINVAL, "argon2 time %u below the minimum 4", out->time);
    if (out->memory_kib < 32 || out->memory_kib > ARGON2_MEMORY_MAX)
      return nbdc_error_set(err, EINVAL, "argon2 memory %u KiB outside 32..%u", out->memory_kib,
                            ARGON2_MEMORY_MAX);
    if (out->cpus < 1 || out->cpus > ARGON2_CPUS_MAX)
      return nbdc_error_set(err, EINVAL, "argon2 cpus %u outside 1..%u", out->cpus,
                            ARGON2_CPUS_MAX);
    break;
  default:
    return nbdc_error_set(err, EINVAL, "kdf type %d not supported", (int)in->type);
  }
  out->salt_len = LUKS2_KDF_SALT_LEN;
  return crypto_random(out->salt, out->salt_len, err);
}

/* The keyslot JSON in cryptsetup's field order. */
static struct json_object *keyslot_json(size_t key_size, uint64_t area_offset, uint64_t area_size,
                                        const struct kdf_params *kdf, const char *salt_b64)
{
  struct json_object *ks = json_object_new_object();
  struct json_object *af = json_object_new_object();
  struct json_object *area = json_object_new_object();
  struct json_object *kdf_obj = json_object_new_object();
  if (!ks || !af || !area || !kdf_obj) {
    json_object_put(ks);
    json_object_put(af);
    json_object_put(area);
    json_object_put(kdf_obj);
    return NULL;
  }
  json_object_object_add(ks, "type", json_object_new_string("luks2"));
  json_object_object_add(ks, "key_size", json_object_new_int((int)key_size));
  json_object_object_add(af, "type", json_object_new_string("luks1"));
  json_object_object_add(af, "stripes", json_object_new_int(LUKS2_STRIPES));
  json_object_object_add(af, "hash", json_object_new_string("sha256"));
  json_object_object_add(ks, "af", af);
  json_object_object_add(area, "type", json_object_new_string("raw"));
  json_object_object_add(area, "offset", luks2_json_u64_new(area_offset));
  json_object_object_add(area, "size", luks2_json_u64_new(area_size));
  json_object_object_add(area, "encryption", json_object_new_string("aes-xts-plain64"));
  json_object_object_add(area, "key_size", json_object_new_int((int)key_size));
  json_object_object_add(ks, "area", area);
  json_object_object_add(kdf_obj, "type", json_object_new_string(kdf_type_name(kdf->type)));
  if (kdf->type == KDF_PBKDF2) {
    json_object_object_add(kdf_obj, "hash", json_object_new_string(kdf->hash));
    json_object_object_add(kdf_obj, "iterations", json_object_new_int64(kdf->iterations));
  } else {
    json_object_object_add(kdf_obj, "time", json_object_new_int64(kdf->time));
    json_object_object_add(kdf_obj, "memory", json_object_new_int64(kdf->memory_kib));
    json_object_object_add(kdf_obj, "cpus", json_object_new_int64(kdf->cpus));
  }
  json_object_object_add(kdf_obj, "salt", json_object_new_string(salt_b64));
  json_object_object_add(ks, "kdf", kdf_obj);
  return ks;
}

int luks2_keyslot_add(struct luks2_hdr *hdr, struct bdev *dev, int keyslot, const uint8_t *vk,
                      size_t vk_len, const uint8_t *secret, size_t secret_len,
                      const struct kdf_params *kdf, int *added, struct nbdc_error *err)
{
  if (vk_len != 32 && vk_len != 64)
    return nbdc_error_set(err, EINVAL, "volume key of %zu bytes (32 or 64 allowed)", vk_len);
  if (bdev_readonly(dev))
    return nbdc_error_set(err, EROFS, "%s is read-only: cannot add a keyslot", bdev_name(dev));
  size_t expect = luks2_volume_key_size(hdr);
  if (expect && expect != vk_len)
    return nbdc_error_set(err, EINVAL, "volume key of %zu bytes, the container uses %zu", vk_len,
                          expect);
  if (keyslot < -1 || keyslot >= LUKS2_MAX_KEYSLOTS)
    return nbdc_error_set(err, EINVAL, "keyslot %d out of range 0..%d", keyslot,
                          LUKS2_MAX_KEYSLOTS - 1);
  if (keyslot >= 0 && keyslot_get(hdr, keyslot))
    return nbdc_error_set(err, EEXIST, "keyslot %d already exists", keyslot);
  for (int id = 0; keyslot < 0 && id < LUKS2_MAX_KEYSLOTS; id++)
    if (!keyslot_get(hdr, id))
      keyslot = id;
  if (keyslot < 0)
    return nbdc_error_set(err, ENOSPC, "all %d keyslots are in use", LUKS2_MAX_KEYSLOTS);

  int digest = luks2_digest_find(hdr, vk, vk_len, err);
  if (digest < 0)
    return digest;

  struct kdf_params params;
  int r = kdf_for_new_keyslot(kdf, &params, err);
  if (r < 0)
    return r;
  size_t split_len = af_split_sectors_bytes(vk_len, LUKS2_STRIPES);
  uint64_t area_size = round_up(split_len, LUKS2_AREA_ALIGN), area_offset = 0;
  r = area_allocate(hdr, area_size, &area_offset, err);
  if (r < 0)
    return r;

  uint8_t *area_key = secmem_alloc(vk_len);
  uint8_t *split = secmem_alloc(split_len);
  uint8_t *cipher = malloc(split_len);
  char *salt_b64 = base64_encode(params.salt, params.salt_len);
  struct xts_ctx *xts = NULL;
  struct json_object *ks = NULL;
  if (!area_key || !split || !cipher || !salt_b64) {
    r = nbdc_error_set(err, ENOMEM, "keyslot %d: out of (secure) memory", keyslot);
    goto out;
  }
  r = kdf_derive(&params, secret, secret_len, area_key, vk_len, err);
  if (r == 0)
    r = af_split(vk, vk_len, LUKS2_STRIPES, "sha256", split, err);
  if (r == 0)
    r = xts_new(&xts, area_key, vk_len, 512, err);
  if (r == 0)
    r = xts_encrypt(xts, cipher, split, split_len, 0, err);
  if (r == 0)
    r = bdev_pwrite(dev, cipher, split_len, area_offset, err);
  if (r == 0)
    r = bdev_flush(dev, err);
  if (r < 0) {
    r = nbdc_error_prefix(err, "keyslot %d", keyslot);
    goto out;
  }

  ks = keyslot_json(vk_len, area_offset, area_size, &params, salt_b64);
  char key[12], dkey[12];
  snprintf(key, sizeof key, "%d", keyslot);
  snprintf(dkey, sizeof dkey, "%d", digest);
  struct json_object *keyslots = luks2_json_get(hdr->jobj, "keyslots", json_type_object);
  struct json_object *darr =
      luks2_json_get(luks2_json_get(luks2_json_get(hdr->jobj, "digests", json_type_object), dkey,
                                    json_type_object),
                     "keyslots", json_type_array);
  struct json_object *id_str = json_object_new_string(key);
  if (!ks || !id_str || json_object_object_add(keyslots, key, ks) < 0) {
    json_object_put(id_str);
    r = nbdc_error_set(err, ENOMEM, "keyslot %d: out of memory", keyslot);
    goto out;
  }
  ks = NULL;
  if (json_object_array_add(darr, id_str) < 0) {
    json_object_put(id_str);
    json_object_object_del(keyslots, key);
    r = nbdc_error_set(err, ENOMEM, "keyslot %d: out of memory", keyslot);
    goto out;
  }
  if (added)
    *added = keyslot;
out:
  json_object_put(ks);
  xts_free(xts);
  nbdc_wipe(&params, sizeof params);
  secmem_free(area_key, vk_len);
  secmem_free(split, split_len);
  free(cipher);
  free(salt_b64);
  crypto_wipe_cpu_registers(); /* as in keyslot_unlock */
  return r;
}

int luks2_keyslot_remove(struct luks2_hdr *hdr, int keyslot, struct nbdc_error *err)
{
  struct json_object *ks = keyslot_get(hdr, keyslot);
  if (!ks)
    return nbdc_error_set(err, ENOENT, "keyslot %d: no such keyslot", keyslot);
  if (hdr->n_wipes >= LUKS2_MAX_WIPES)
    return nbdc_error_set(err, ENOSPC, "too many pending keyslot removals: write the header first");
  struct luks2_wipe *w = &hdr->wipes[hdr->n_wipes++];
  luks2_keyslot_area(ks, &w->offset, &w->size);

  char key[12];
  snprintf(key, sizeof key, "%d", keyslot);
  json_object_object_del(luks2_json_get(hdr->jobj, "keyslots", json_type_object), key);

  /* Digests drop the reference; one left with neither keyslots nor segments goes. */
  int drop[LUKS2_MAX_TOKENS];
  size_t n_drop = 0;
  struct json_object *digests = luks2_json_get(hdr->jobj, "digests", json_type_object);
  json_object_object_foreach(digests, dkey, digest)
  {
    struct json_object *arr = luks2_json_get(digest, "keyslots", json_type_array);
    struct json_object *segs = luks2_json_get(digest, "segments", json_type_array);
    if (luks2_json_array_del_id(arr, keyslot) && json_object_array_length(arr) == 0 &&
        json_object_array_length(segs) == 0 && n_drop < LUKS2_MAX_TOKENS)
      drop[n_drop++] = luks2_parse_id(dkey, LUKS2_MAX_DIGESTS);
  }
  for (size_t i = 0; i < n_drop; i++) {
    snprintf(key, sizeof key, "%d", drop[i]);
    json_object_object_del(digests, key);
  }

  /* Tokens likewise; a token left without keyslots is removed. */
  n_drop = 0;
  struct json_object *tokens = luks2_json_get(hdr->jobj, "tokens", json_type_object);
  json_object_object_foreach(tokens, tkey, token)
  {
    struct json_object *arr = luks2_json_get(token, "keyslots", json_type_array);
    if (luks2_json_array_del_id(arr, keyslot) && json_object_array_length(arr) == 0 &&
        n_drop < LUKS2_MAX_TOKENS)
      drop[n_drop++] = luks2_parse_id(tkey, LUKS2_MAX_TOKENS);
  }
  for (size_t i = 0; i < n_drop; i++) {
    snprintf(key, sizeof key, "%d", drop[i]);
    json_object_object_del(tokens, key);
  }
  return 0;
}
