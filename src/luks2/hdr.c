/* Read access to a loaded (validated) header, and the requirement flags. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "luks2/luks2_internal.h"

void luks2_free(struct luks2_hdr *hdr)
{
  if (!hdr)
    return;
  json_object_put(hdr->jobj);
  free(hdr);
}

const char *luks2_uuid(const struct luks2_hdr *hdr)
{
  return hdr->uuid;
}

const char *luks2_label(const struct luks2_hdr *hdr)
{
  return hdr->label;
}

uint64_t luks2_hdr_size(const struct luks2_hdr *hdr)
{
  return hdr->hdr_size;
}

uint64_t luks2_seqid(const struct luks2_hdr *hdr)
{
  return hdr->seqid;
}

uint64_t luks2_keyslots_size(const struct luks2_hdr *hdr)
{
  uint64_t start, end;
  luks2_keyslots_area(hdr->jobj, hdr->hdr_size, &start, &end);
  return end - start;
}

struct json_object *luks2_metadata(const struct luks2_hdr *hdr)
{
  return hdr->jobj;
}

static int data_segment(const struct luks2_hdr *hdr, bool detached, struct luks2_segment *out,
                        struct nbdc_error *err)
{
  struct json_object *segments = luks2_json_get(hdr->jobj, "segments", json_type_object);
  int count = json_object_object_length(segments);
  if (count != 1)
    return nbdc_error_set(err, EINVAL, "%d segments: not a plain single-segment container", count);
  json_object_object_foreach(segments, key, seg)
  {
    const char *type = json_object_get_string(luks2_json_get(seg, "type", json_type_string));
    if (strcmp(type, "crypt") != 0)
      return nbdc_error_set(err, EINVAL, "segment %s: type '%s', expected crypt", key, type);
    const char *size_text = json_object_get_string(luks2_json_get(seg, "size", json_type_string));
    const char *cipher =
        json_object_get_string(luks2_json_get(seg, "encryption", json_type_string));
    memset(out, 0, sizeof *out);
    out->id = luks2_parse_id(key, LUKS2_MAX_SEGMENTS);
    luks2_parse_u64(json_object_get_string(luks2_json_get(seg, "offset", json_type_string)),
                    &out->offset);
    out->dynamic = strcmp(size_text, "dynamic") == 0;
    if (!out->dynamic)
      luks2_parse_u64(size_text, &out->size);
    luks2_parse_u64(json_object_get_string(luks2_json_get(seg, "iv_tweak", json_type_string)),
                    &out->iv_tweak);
    out->sector_size =
        (uint32_t)json_object_get_int64(luks2_json_get(seg, "sector_size", json_type_int));
    snprintf(out->cipher, sizeof out->cipher, "%s", cipher);
    struct json_object *flags = luks2_json_get(seg, "flags", json_type_array);
    size_t n = flags ? json_object_array_length(flags) : 0;
    for (size_t i = 0; i < n; i++) {
      const char *flag = json_object_get_string(json_object_array_get_idx(flags, i));
      if (flag && strncmp(flag, "backup-", 7) == 0)
        return nbdc_error_set(err, EINVAL,
                              "segment %s: flag '%.32s' marks a re-encryption backup, not data",
                              key, flag);
    }
    if (out->offset == 0 && !detached)
      return nbdc_error_set(err, EINVAL,
                            "segment %s: data at offset 0 (a detached header): the data is not "
                            "on this device",
                            key);
  }
  return 0;
}

int luks2_data_segment(const struct luks2_hdr *hdr, struct luks2_segment *out,
                       struct nbdc_error *err)
{
  return data_segment(hdr, false, out, err);
}

int luks2_data_segment_detached(const struct luks2_hdr *hdr, struct luks2_segment *out,
                                struct nbdc_error *err)
{
  return data_segment(hdr, true, out, err);
}

bool luks2_detached_header(const struct luks2_hdr *hdr)
{
  struct json_object *segments = luks2_json_get(hdr->jobj, "segments", json_type_object);
  json_object_object_foreach(segments, key, seg)
  {
    (void)key;
    const char *type = json_object_get_string(luks2_json_get(seg, "type", json_type_string));
    uint64_t offset = UINT64_MAX;
    luks2_parse_u64(json_object_get_string(luks2_json_get(seg, "offset", json_type_string)),
                    &offset);
    if (type && strcmp(type, "crypt") == 0 && offset == 0)
      return true;
  }
  return false;
}

size_t luks2_volume_key_size(const struct luks2_hdr *hdr)
{
  struct json_object *segments = luks2_json_get(hdr->jobj, "segments", json_type_object);
  struct json_object *keyslots = luks2_json_get(hdr->jobj, "keyslots", json_type_object);
  struct json_object *digests = luks2_json_get(hdr->jobj, "digests", json_type_object);
  json_object_object_foreach(segments, skey, seg)
  {
    (void)seg;
    int digest = luks2_digest_by_segment(hdr->jobj, luks2_parse_id(skey, LUKS2_MAX_SEGMENTS));
    if (digest < 0)
      continue;
    char dkey[12];
    snprintf(dkey, sizeof dkey, "%d", digest);
    struct json_object *arr = luks2_json_get(luks2_json_get(digests, dkey, json_type_object),
                                             "keyslots", json_type_array);
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n; i++) {
      const char *kkey = json_object_get_string(json_object_array_get_idx(arr, i));
      struct json_object *ks = luks2_json_get(keyslots, kkey, json_type_object);
      struct json_object *ks_size = luks2_json_get(ks, "key_size", json_type_int);
      if (ks_size)
        return (size_t)json_object_get_int64(ks_size);
    }
    break;
  }
  return hdr->format_vk_size;
}

static struct json_object *requirements_array(const struct luks2_hdr *hdr)
{
  struct json_object *config = luks2_json_get(hdr->jobj, "config", json_type_object);
  struct json_object *req = luks2_json_get(config, "requirements", json_type_object);
  return luks2_json_get(req, "mandatory", json_type_array);
}

size_t luks2_requirements(const struct luks2_hdr *hdr, const char *names[], size_t max)
{
  struct json_object *arr = requirements_array(hdr);
  size_t n = arr ? json_object_array_length(arr) : 0;
  for (size_t i = 0; i < n && i < max; i++)
    names[i] = json_object_get_string(json_object_array_get_idx(arr, i));
  return n;
}

int luks2_requirement_set(struct luks2_hdr *hdr, const char *name, bool present,
                          struct nbdc_error *err)
{
  if (!name || !*name)
    return nbdc_error_set(err, EINVAL, "empty requirement name");
  struct json_object *config = luks2_json_get(hdr->jobj, "config", json_type_object);
  struct json_object *req = luks2_json_get(config, "requirements", json_type_object);
  struct json_object *arr = requirements_array(hdr);
  size_t n = arr ? json_object_array_length(arr) : 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), name) != 0)
      continue;
    if (present)
      return 0;
    json_object_array_del_idx(arr, i, 1);
    /* cryptsetup drops the empty containers too. */
    if (json_object_array_length(arr) == 0) {
      json_object_object_del(req, "mandatory");
      if (json_object_object_length(req) == 0)
        json_object_object_del(config, "requirements");
    }
    return 0;
  }
  if (!present)
    return 0;
  if (n >= 32)
    return nbdc_error_set(err, ENOSPC, "too many requirement flags to add '%s'", name);
  if (!req) {
    req = json_object_new_object();
    if (!req || json_object_object_add(config, "requirements", req) < 0) {
      json_object_put(req);
      return nbdc_error_set(err, ENOMEM, "out of memory adding requirement '%s'", name);
    }
  }
  if (!arr) {
    arr = json_object_new_array();
    if (!arr || json_object_object_add(req, "mandatory", arr) < 0) {
      json_object_put(arr);
      return nbdc_error_set(err, ENOMEM, "out of memory adding requirement '%s'", name);
    }
  }
  struct json_object *str = json_object_new_string(name);
  if (!str || json_object_array_add(arr, str) < 0) {
    json_object_put(str);
    return nbdc_error_set(err, ENOMEM, "out of memory adding requirement '%s'", name);
  }
  return 0;
}
