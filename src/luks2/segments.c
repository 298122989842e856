/* Segments and digests as re-encryption needs them: a header describing a
 * disk half way (done part, rest, moved chunk) in cryptsetup's shape. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "luks2/luks2_internal.h"

int luks2_digest_add(struct luks2_hdr *hdr, const uint8_t *vk, size_t vk_len, int *id,
                     struct nbdc_error *err)
{
  struct json_object *digests = luks2_json_get(hdr->jobj, "digests", json_type_object);
  int free_id = -1;
  for (int i = 0; i < LUKS2_MAX_DIGESTS && free_id < 0; i++) {
    char key[12];
    snprintf(key, sizeof key, "%d", i);
    if (!json_object_object_get_ex(digests, key, NULL))
      free_id = i;
  }
  if (free_id < 0)
    return nbdc_error_set(err, ENOSPC, "all %d digests are in use", LUKS2_MAX_DIGESTS);
  struct json_object *digest = NULL;
  int r = luks2_digest_create(vk, vk_len, -1, &digest, err);
  if (r < 0)
    return r;
  char key[12];
  snprintf(key, sizeof key, "%d", free_id);
  if (json_object_object_add(digests, key, digest) < 0) {
    json_object_put(digest);
    return nbdc_error_set(err, ENOMEM, "out of memory adding digest %d", free_id);
  }
  if (!hdr->format_vk_size)
    hdr->format_vk_size = vk_len;
  *id = free_id;
  return 0;
}

static struct json_object *spec_json(const struct luks2_segment_spec *s)
{
  struct json_object *seg = json_object_new_object();
  if (!seg)
    return NULL;
  json_object_object_add(seg, "type", json_object_new_string(s->crypt ? "crypt" : "linear"));
  json_object_object_add(seg, "offset", luks2_json_u64_new(s->offset));
  json_object_object_add(
      seg, "size", s->dynamic ? json_object_new_string("dynamic") : luks2_json_u64_new(s->size));
  if (s->crypt) {
    json_object_object_add(seg, "iv_tweak", luks2_json_u64_new(s->iv_tweak));
    json_object_object_add(seg, "encryption", json_object_new_string("aes-xts-plain64"));
    json_object_object_add(seg, "sector_size", json_object_new_int((int)s->sector_size));
  }
  return seg;
}

int luks2_segments_set(struct luks2_hdr *hdr, const struct luks2_segment_spec *specs, size_t n,
                       struct nbdc_error *err)
{
  if (n == 0 || n > LUKS2_MAX_SEGMENTS)
    return nbdc_error_set(err, EINVAL, "%zu segments (1..%d allowed)", n, LUKS2_MAX_SEGMENTS);
  struct json_object *backup = NULL;
  if (json_object_deep_copy(hdr->jobj, &backup, NULL) != 0)
    return nbdc_error_set(err, ENOMEM, "out of memory copying the metadata");

  struct json_object *segments = json_object_new_object();
  int r = 0;
  if (!segments) {
    r = nbdc_error_set(err, ENOMEM, "out of memory building segments");
    goto out;
  }
  struct json_object *digests = luks2_json_get(hdr->jobj, "digests", json_type_object);
  json_object_object_foreach(digests, dkey, digest)
  {
    (void)dkey;
    struct json_object *arr = json_object_new_array();
    if (!arr || json_object_object_add(digest, "segments", arr) < 0) {
      json_object_put(arr);
      json_object_put(segments);
      r = nbdc_error_set(err, ENOMEM, "out of memory building segments");
      goto out;
    }
  }
  for (size_t i = 0; i < n; i++) {
    char key[12];
    snprintf(key, sizeof key, "%zu", i);
    struct json_object *seg = spec_json(&specs[i]);
    if (!seg || json_object_object_add(segments, key, seg) < 0) {
      json_object_put(seg);
      json_object_put(segments);
      r = nbdc_error_set(err, ENOMEM, "out of memory building segments");
      goto out;
    }
    if (!specs[i].crypt)
      continue;
    char digest_key[12];
    snprintf(digest_key, sizeof digest_key, "%d", specs[i].digest);
    struct json_object *arr = luks2_json_get(luks2_json_get(digests, digest_key, json_type_object),
                                             "segments", json_type_array);
    if (!arr) {
      json_object_put(segments);
      r = nbdc_error_set(err, EINVAL, "segment %zu: no digest %d", i, specs[i].digest);
      goto out;
    }
    json_object_array_add(arr, json_object_new_string(key));
  }
  json_object_object_add(hdr->jobj, "segments", segments);
  r = luks2_json_validate(hdr->jobj, hdr->hdr_size, err);
out:
  if (r < 0) {
    json_object_put(hdr->jobj);
    hdr->jobj = backup;
  } else {
    json_object_put(backup);
  }
  return r;
}
