/* LUKS2 JSON metadata: parsing of the JSON area and validation, once, at load
 * (reference/luks2.md "JSON rules").  Nothing reads a header field before it
 * passed through here, so the rest of the module may trust types, ranges and
 * references.  Every count is bounded before it is used. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "luks2/luks2_internal.h"

#define LUKS2_MAX_FLAGS 32 /* config.flags, requirements, segment flags */

struct json_object *luks2_json_get(struct json_object *obj, const char *key, json_type type)
{
  struct json_object *val;
  if (!obj || !json_object_object_get_ex(obj, key, &val) || !json_object_is_type(val, type))
    return NULL;
  return val;
}

bool luks2_parse_u64(const char *s, uint64_t *out)
{
  uint64_t v = 0;
  if (!s || !*s)
    return false;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9')
      return false;
    unsigned digit = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - digit) / 10)
      return false;
    v = v * 10 + digit;
  }
  *out = v;
  return true;
}

int luks2_parse_id(const char *s, int max)
{
  uint64_t v;
  if (!s || strlen(s) > 3 || (s[0] == '0' && s[1] != '\0') || !luks2_parse_u64(s, &v) ||
      v >= (uint64_t)max)
    return -1;
  return (int)v;
}

/* The JSON text of a value for messages, cut to a readable length. */
static const char *json_show(struct json_object *val, char *buf, size_t len)
{
  const char *s = json_object_to_json_string_ext(val, LUKS2_JSON_PRINT_OPTS);
  snprintf(buf, len, "%s", s ? s : "?");
  if (strlen(s ? s : "") >= len && len > 4)
    memcpy(buf + len - 4, "...", 4);
  return buf;
}

int luks2_json_get_u64_str(struct json_object *obj, const char *key, const char *what,
                           uint64_t *out, struct nbdc_error *err)
{
  struct json_object *val;
  char shown[48];
  *out = 0;
  if (!json_object_object_get_ex(obj, key, &val))
    return nbdc_error_set(err, EINVAL, "%s: missing %s", what, key);
  if (!json_object_is_type(val, json_type_string))
    return nbdc_error_set(err, EINVAL, "%s: %s %s is not a decimal string", what, key,
                          json_show(val, shown, sizeof shown));
  if (!luks2_parse_u64(json_object_get_string(val), out))
    return nbdc_error_set(err, EINVAL, "%s: %s %s is not a decimal number below 2^64", what, key,
                          json_show(val, shown, sizeof shown));
  return 0;
}

int luks2_json_get_int(struct json_object *obj, const char *key, const char *what, int64_t min,
                       int64_t max, int64_t *out, struct nbdc_error *err)
{
  struct json_object *val;
  char shown[48];
  *out = 0;
  if (!json_object_object_get_ex(obj, key, &val))
    return nbdc_error_set(err, EINVAL, "%s: missing %s", what, key);
  if (!json_object_is_type(val, json_type_int))
    return nbdc_error_set(err, EINVAL, "%s: %s %s is not an integer", what, key,
                          json_show(val, shown, sizeof shown));
  int64_t v = json_object_get_int64(val);
  /* json-c keeps values above INT64_MAX as unsigned; get_int64 saturates. */
  if (v < min || v > max || (v == INT64_MAX && json_object_get_uint64(val) != (uint64_t)v))
    return nbdc_error_set(err, EINVAL, "%s: %s %s out of range %" PRId64 "..%" PRId64, what, key,
                          json_show(val, shown, sizeof shown), min, max);
  *out = v;
  return 0;
}

int luks2_json_get_str(struct json_object *obj, const char *key, const char *what, const char **out,
                       struct nbdc_error *err)
{
  struct json_object *val;
  char shown[48];
  *out = "";
  if (!json_object_object_get_ex(obj, key, &val))
    return nbdc_error_set(err, EINVAL, "%s: missing %s", what, key);
  if (!json_object_is_type(val, json_type_string))
    return nbdc_error_set(err, EINVAL, "%s: %s %s is not a string", what, key,
                          json_show(val, shown, sizeof shown));
  *out = json_object_get_string(val);
  return 0;
}

int luks2_json_get_b64(struct json_object *obj, const char *key, const char *what, uint8_t *out,
                       size_t min, size_t max, size_t *out_len, struct nbdc_error *err)
{
  const char *text = NULL;
  int r = luks2_json_get_str(obj, key, what, &text, err);
  if (r < 0)
    return r;
  size_t len = 0;
  r = base64_decode(text, out, max, &len);
  if (r == -ENOSPC || (r == 0 && len > max))
    return nbdc_error_set(err, EINVAL, "%s: %s longer than %zu bytes", what, key, max);
  if (r < 0)
    return nbdc_error_set(err, EINVAL, "%s: %s is not valid base64", what, key);
  if (len < min)
    return nbdc_error_set(err, EINVAL, "%s: %s is %zu bytes, shorter than %zu", what, key, len,
                          min);
  if (out_len)
    *out_len = len;
  return 0;
}

struct json_object *luks2_json_u64_new(uint64_t v)
{
  char buf[24];
  snprintf(buf, sizeof buf, "%" PRIu64, v);
  return json_object_new_string(buf);
}

bool luks2_json_array_has_id(struct json_object *arr, int id)
{
  size_t n = arr ? json_object_array_length(arr) : 0;
  for (size_t i = 0; i < n; i++) {
    struct json_object *el = json_object_array_get_idx(arr, i);
    if (json_object_is_type(el, json_type_string) &&
        luks2_parse_id(json_object_get_string(el), 1000) == id)
      return true;
  }
  return false;
}

bool luks2_json_array_del_id(struct json_object *arr, int id)
{
  size_t n = arr ? json_object_array_length(arr) : 0;
  for (size_t i = 0; i < n; i++) {
    struct json_object *el = json_object_array_get_idx(arr, i);
    if (json_object_is_type(el, json_type_string) &&
        luks2_parse_id(json_object_get_string(el), 1000) == id) {
      json_object_array_del_idx(arr, i, 1);
      return true;
    }
  }
  return false;
}

bool luks2_hash_allowed(const char *name)
{
  static const char *const allowed[] = {"sha1", "sha224", "sha256", "sha384", "sha512"};
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
    if (strcmp(name, allowed[i]) == 0)
      return true;
  return false;
}

void luks2_keyslots_area(struct json_object *jobj, uint64_t hdr_size, uint64_t *start,
                         uint64_t *end)
{
  uint64_t keyslots_size = 0;
  struct json_object *config = luks2_json_get(jobj, "config", json_type_object);
  struct json_object *val = luks2_json_get(config, "keyslots_size", json_type_string);
  if (!val || !luks2_parse_u64(json_object_get_string(val), &keyslots_size))
    keyslots_size = 0;
  *start = 2 * hdr_size;
  *end = *start + keyslots_size;
}

int luks2_json_parse_area(const char *area, size_t area_len, struct json_object **out,
                          struct nbdc_error *err)
{
  if (area_len == 0 || area[0] != '{')
    return nbdc_error_set(err, EINVAL, "JSON area does not start with '{'");
  size_t json_len = strnlen(area, area_len);
  if (json_len > INT32_MAX)
    return nbdc_error_set(err, EINVAL, "JSON area too large");

  struct json_tokener *tok = json_tokener_new();
  if (!tok)
    return nbdc_error_set(err, ENOMEM, "out of memory parsing the JSON area");
  struct json_object *jobj = json_tokener_parse_ex(tok, area, (int)json_len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  if (!jobj || jerr != json_tokener_success) {
    json_object_put(jobj);
    if (jerr == json_tokener_continue)
      return nbdc_error_set(err, EINVAL, "JSON area: metadata truncated at byte %zu", json_len);
    return nbdc_error_set(err, EINVAL, "JSON area: %s near byte %zu", json_tokener_error_desc(jerr),
                          end);
  }
  if (!json_object_is_type(jobj, json_type_object)) {
    json_object_put(jobj);
    return nbdc_error_set(err, EINVAL, "JSON area: metadata is not an object");
  }
  /* After the object only NUL bytes (cryptsetup refuses anything else). */
  for (size_t i = end; i < area_len; i++) {
    if (area[i] != '\0') {
      json_object_put(jobj);
      return nbdc_error_set(err, EINVAL,
                            "JSON area: stray byte 0x%02x at offset %zu after the JSON",
                            (unsigned char)area[i], i);
    }
  }
  *out = jobj;
  return 0;
}

/* ---- sections ---- */

static const struct {
  const char *name;
  const char *what; /* for messages: "keyslot 3" */
  int max;
} luks2_sections[] = {
    {"keyslots", "keyslot", LUKS2_MAX_KEYSLOTS},
    {"tokens", "token", LUKS2_MAX_TOKENS},
    {"segments", "segment", LUKS2_MAX_SEGMENTS},
    {"digests", "digest", LUKS2_MAX_DIGESTS},
    {"config", NULL, 0},
};

static int validate_sections(struct json_object *jobj, struct nbdc_error *err)
{
  for (size_t i = 0; i < sizeof luks2_sections / sizeof luks2_sections[0]; i++) {
    struct json_object *sec;
    if (!json_object_object_get_ex(jobj, luks2_sections[i].name, &sec))
      return nbdc_error_set(err, EINVAL, "metadata: missing '%s' object", luks2_sections[i].name);
    if (!json_object_is_type(sec, json_type_object))
      return nbdc_error_set(err, EINVAL, "metadata: '%s' is not an object", luks2_sections[i].name);
    if (!luks2_sections[i].what)
      continue;
    int count = json_object_object_length(sec);
    if (count > luks2_sections[i].max)
      return nbdc_error_set(err, EINVAL, "metadata: %d %s, at most %d allowed", count,
                            luks2_sections[i].name, luks2_sections[i].max);
    json_object_object_foreach(sec, key, val)
    {
      if (luks2_parse_id(key, luks2_sections[i].max) < 0)
        return nbdc_error_set(err, EINVAL, "%s id '%.32s' is not a decimal number below %d",
                              luks2_sections[i].what, key, luks2_sections[i].max);
      if (!json_object_is_type(val, json_type_object))
        return nbdc_error_set(err, EINVAL, "%s %s is not an object", luks2_sections[i].what, key);
    }
  }
  return 0;
}

/* An optional array of at most LUKS2_MAX_FLAGS strings. */
static int validate_string_array(struct json_object *obj, const char *key, const char *what,
                                 struct nbdc_error *err)
{
  struct json_object *arr;
  if (!json_object_object_get_ex(obj, key, &arr))
    return 0;
  if (!json_object_is_type(arr, json_type_array))
    return nbdc_error_set(err, EINVAL, "%s: %s is not an array", what, key);
  size_t n = json_object_array_length(arr);
  if (n > LUKS2_MAX_FLAGS)
    return nbdc_error_set(err, EINVAL, "%s: %s has %zu entries, at most %d allowed", what, key, n,
                          LUKS2_MAX_FLAGS);
  for (size_t i = 0; i < n; i++)
    if (!json_object_is_type(json_object_array_get_idx(arr, i), json_type_string))
      return nbdc_error_set(err, EINVAL, "%s: %s entry %zu is not a string", what, key, i);
  return 0;
}

static int validate_config(struct json_object *jobj, uint64_t hdr_size, struct nbdc_error *err)
{
  struct json_object *config = luks2_json_get(jobj, "config", json_type_object);
  uint64_t json_size = 0, keyslots_size = 0;
  int r = luks2_json_get_u64_str(config, "json_size", "config", &json_size, err);
  if (r < 0)
    return r;
  if (json_size != hdr_size - LUKS2_BIN_HDR_SIZE)
    return nbdc_error_set(
        err, EINVAL, "config: json_size %" PRIu64 " does not match header size %" PRIu64 " - 4096",
        json_size, hdr_size);
  r = luks2_json_get_u64_str(config, "keyslots_size", "config", &keyslots_size, err);
  if (r < 0)
    return r;
  if (keyslots_size % LUKS2_AREA_ALIGN)
    return nbdc_error_set(err, EINVAL, "config: keyslots_size %" PRIu64 " not aligned to 4096",
                          keyslots_size);
  if (keyslots_size > LUKS2_KEYSLOTS_MAX)
    return nbdc_error_set(err, EINVAL,
                          "config: keyslots_size %" PRIu64 " larger than 128 MiB (%" PRIu64 ")",
                          keyslots_size, LUKS2_KEYSLOTS_MAX);
  r = validate_string_array(config, "flags", "config", err);
  if (r < 0)
    return r;
  struct json_object *req;
  if (json_object_object_get_ex(config, "requirements", &req)) {
    if (!json_object_is_type(req, json_type_object))
      return nbdc_error_set(err, EINVAL, "config: requirements is not an object");
    r = validate_string_array(req, "mandatory", "config.requirements", err);
    if (r < 0)
      return r;
  }
  return 0;
}

/* ---- keyslot areas ---- */

static int validate_areas(struct json_object *jobj, uint64_t hdr_size, struct nbdc_error *err)
{
  struct luks2_wipe areas[LUKS2_MAX_KEYSLOTS];
  int ids[LUKS2_MAX_KEYSLOTS];
  size_t n = 0;
  struct json_object *keyslots = luks2_json_get(jobj, "keyslots", json_type_object);
  uint64_t start, end;
  luks2_keyslots_area(jobj, hdr_size, &start, &end);

  json_object_object_foreach(keyslots, key, val)
  {
    if (n >= LUKS2_MAX_KEYSLOTS)
      return nbdc_error_set(err, EINVAL, "metadata: too many keyslots");
    ids[n] = luks2_parse_id(key, LUKS2_MAX_KEYSLOTS);
    luks2_keyslot_area(val, &areas[n].offset, &areas[n].size);
    if (areas[n].offset < start || areas[n].size > end - start ||
        areas[n].offset - start > end - start - areas[n].size)
      return nbdc_error_set(err, EINVAL,
                            "keyslot %d: area [%" PRIu64 ", +%" PRIu64
                            ") outside the keyslots area [%" PRIu64 ", %" PRIu64 ")",
                            ids[n], areas[n].offset, areas[n].size, start, end);
    for (size_t i = 0; i < n; i++) {
      if (areas[n].offset < areas[i].offset + areas[i].size &&
          areas[i].offset < areas[n].offset + areas[n].size)
        return nbdc_error_set(err, EINVAL,
                              "keyslot %d: area [%" PRIu64 ", +%" PRIu64
                              ") overlaps keyslot %d area [%" PRIu64 ", +%" PRIu64 ")",
                              ids[n], areas[n].offset, areas[n].size, ids[i], areas[i].offset,
                              areas[i].size);
    }
    n++;
  }
  return 0;
}

/* ---- segments ---- */

struct seg_range {
  uint64_t offset;
  uint64_t size; /* 0 = dynamic */
  int id;
  bool backup; /* cryptsetup re-encryption's copies of the old/new segment */
};

static bool segment_is_backup(struct json_object *seg)
{
  struct json_object *flags = luks2_json_get(seg, "flags", json_type_array);
  size_t n = flags ? json_object_array_length(flags) : 0;
  for (size_t i = 0; i < n; i++) {
    const char *flag = json_object_get_string(json_object_array_get_idx(flags, i));
    if (flag && strncmp(flag, "backup-", 7) == 0)
      return true;
  }
  return false;
}

static int validate_crypt_segment(struct json_object *jobj, struct json_object *seg, int id,
                                  uint64_t size, struct nbdc_error *err)
{
  char what[32];
  snprintf(what, sizeof what, "segment %d", id);
  uint64_t iv_tweak = 0;
  int r = luks2_json_get_u64_str(seg, "iv_tweak", what, &iv_tweak, err);
  if (r < 0)
    return r;
  const char *cipher = NULL;
  r = luks2_json_get_str(seg, "encryption", what, &cipher, err);
  if (r < 0)
    return r;
  if (strcmp(cipher, "aes-xts-plain64") != 0)
    return nbdc_error_set(err, EINVAL, "%s: cipher '%.64s' not allowed (only aes-xts-plain64)",
                          what, cipher);
  int64_t sector_size = 0;
  r = luks2_json_get_int(seg, "sector_size", what, 0, INT32_MAX, &sector_size, err);
  if (r < 0)
    return r;
  if (sector_size < 512 || sector_size > 4096 || (sector_size & (sector_size - 1)))
    return nbdc_error_set(err, EINVAL,
                          "%s: sector_size %" PRId64 " not allowed (512, 1024, 2048 or 4096)", what,
                          sector_size);
  if (size % (uint64_t)sector_size)
    return nbdc_error_set(err, EINVAL,
                          "%s: size %" PRIu64 " not a multiple of sector_size %" PRId64, what, size,
                          sector_size);
  if (json_object_object_get_ex(seg, "integrity", NULL))
    return nbdc_error_set(err, EINVAL, "%s: integrity protection not supported", what);
  if (luks2_digest_by_segment(jobj, id) < 0)
    return nbdc_error_set(err, EINVAL, "%s: no digest assigned", what);
  return 0;
}

static int validate_segments(struct json_object *jobj, uint64_t hdr_size, struct nbdc_error *err)
{
  struct json_object *segments = luks2_json_get(jobj, "segments", json_type_object);
  struct seg_range ranges[LUKS2_MAX_SEGMENTS];
  size_t n = 0;
  uint64_t ks_start, ks_end;
  luks2_keyslots_area(jobj, hdr_size, &ks_start, &ks_end);

  if (json_object_object_length(segments) < 1)
    return nbdc_error_set(err, EINVAL, "metadata: no segments");
  json_object_object_foreach(segments, key, seg)
  {
    if (n >= LUKS2_MAX_SEGMENTS)
      return nbdc_error_set(err, EINVAL, "metadata: too many segments");
    int id = luks2_parse_id(key, LUKS2_MAX_SEGMENTS);
    char what[32];
    snprintf(what, sizeof what, "segment %d", id);
    const char *type = NULL, *size_text = NULL;
    uint64_t offset = 0, size = 0;
    int r = luks2_json_get_str(seg, "type", what, &type, err);
    if (r < 0)
      return r;
    r = luks2_json_get_u64_str(seg, "offset", what, &offset, err);
    if (r < 0)
      return r;
    r = luks2_json_get_str(seg, "size", what, &size_text, err);
    if (r < 0)
      return nbdc_error_set(err, EINVAL, "%s: size is missing or not a string", what);
    bool dynamic = strcmp(size_text, "dynamic") == 0;
    if (!dynamic) {
      if (!luks2_parse_u64(size_text, &size) || size == 0)
        return nbdc_error_set(err, EINVAL,
                              "%s: size '%.32s' is not \"dynamic\" or a positive decimal number",
                              what, size_text);
    }
    if (offset % 512)
      return nbdc_error_set(err, EINVAL, "%s: offset %" PRIu64 " not aligned to 512", what, offset);
    if (size % 512)
      return nbdc_error_set(err, EINVAL, "%s: size %" PRIu64 " not aligned to 512", what, size);
    if (!dynamic && offset > UINT64_MAX - size)
      return nbdc_error_set(err, EINVAL, "%s: offset %" PRIu64 " + size %" PRIu64 " overflows",
                            what, offset, size);
    /* Offset 0 is cryptsetup's detached header (--header): the data is on
     * another device.  Anything else must follow the keyslots area. */
    if (offset != 0 && offset < ks_end)
      return nbdc_error_set(err, EINVAL,
                            "%s: offset %" PRIu64 " inside the header and keyslots area (ends at "
                            "%" PRIu64 ")",
                            what, offset, ks_end);
    r = validate_string_array(seg, "flags", what, err);
    if (r < 0)
      return r;
    if (strcmp(type, "crypt") == 0) {
      r = validate_crypt_segment(jobj, seg, id, size, err);
      if (r < 0)
        return r;
    } else if (strcmp(type, "linear") != 0) {
      return nbdc_error_set(err, EINVAL, "%s: type '%.32s' not supported", what, type);
    }
    ranges[n++] = (struct seg_range){
        .id = id, .offset = offset, .size = size, .backup = segment_is_backup(seg)};
  }

  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n; j++) {
      const struct seg_range *a = &ranges[i], *b = &ranges[j];
      if (i == j || a->backup || b->backup)
        continue;
      if (a->size == 0 && b->offset >= a->offset)
        return nbdc_error_set(err, EINVAL,
                              "segment %d: dynamic size but segment %d lies after it at "
                              "offset %" PRIu64,
                              a->id, b->id, b->offset);
      uint64_t a_end = a->size ? a->offset + a->size : UINT64_MAX;
      uint64_t b_end = b->size ? b->offset + b->size : UINT64_MAX;
      if (i < j && a->offset < b_end && b->offset < a_end)
        return nbdc_error_set(err, EINVAL, "segment %d overlaps segment %d", a->id, b->id);
    }
  }
  return 0;
}

/* ---- cross references ---- */

static int validate_digests(struct json_object *jobj, struct nbdc_error *err)
{
  struct json_object *digests = luks2_json_get(jobj, "digests", json_type_object);
  json_object_object_foreach(digests, key, val)
  {
    int r = luks2_digest_validate(jobj, val, luks2_parse_id(key, LUKS2_MAX_DIGESTS), err);
    if (r < 0)
      return r;
  }
  return 0;
}

static int validate_keyslots(struct json_object *jobj, struct nbdc_error *err)
{
  struct json_object *keyslots = luks2_json_get(jobj, "keyslots", json_type_object);
  struct json_object *digests = luks2_json_get(jobj, "digests", json_type_object);
  json_object_object_foreach(keyslots, vkey, vval)
  {
    int r = luks2_keyslot_validate(jobj, vval, luks2_parse_id(vkey, LUKS2_MAX_KEYSLOTS), err);
    if (r < 0)
      return r;
  }
  json_object_object_foreach(keyslots, key, val)
  {
    int id = luks2_parse_id(key, LUKS2_MAX_KEYSLOTS);
    struct json_object *type = luks2_json_get(val, "type", json_type_string);
    if (strcmp(json_object_get_string(type), "luks2") != 0)
      continue;
    /* A luks2 keyslot belongs to exactly one digest, whose keyslots all
     * carry keys of the same size. */
    int n_digests = 0;
    json_object_object_foreach(digests, dkey, digest)
    {
      struct json_object *arr = luks2_json_get(digest, "keyslots", json_type_array);
      if (!luks2_json_array_has_id(arr, id))
        continue;
      n_digests++;
      size_t n = json_object_array_length(arr);
      int64_t key_size = json_object_get_int64(luks2_json_get(val, "key_size", json_type_int));
      for (size_t i = 0; i < n; i++) {
        int other = luks2_parse_id(json_object_get_string(json_object_array_get_idx(arr, i)),
                                   LUKS2_MAX_KEYSLOTS);
        char other_key[12];
        snprintf(other_key, sizeof other_key, "%d", other);
        struct json_object *ks = luks2_json_get(keyslots, other_key, json_type_object);
        struct json_object *ks_type = luks2_json_get(ks, "type", json_type_string);
        if (!ks || strcmp(json_object_get_string(ks_type), "luks2") != 0)
          continue;
        int64_t other_size = json_object_get_int64(luks2_json_get(ks, "key_size", json_type_int));
        if (other_size != key_size)
          return nbdc_error_set(err, EINVAL,
                                "digest %s: keyslot %d key_size %" PRId64
                                " differs from keyslot %d key_size %" PRId64,
                                dkey, id, key_size, other, other_size);
      }
    }
    if (n_digests != 1)
      return nbdc_error_set(err, EINVAL, "keyslot %d: assigned to %d digests, expected 1", id,
                            n_digests);
  }
  return 0;
}

static int validate_tokens(struct json_object *jobj, struct nbdc_error *err)
{
  struct json_object *tokens = luks2_json_get(jobj, "tokens", json_type_object);
  json_object_object_foreach(tokens, key, val)
  {
    int r = luks2_token_validate(jobj, val, luks2_parse_id(key, LUKS2_MAX_TOKENS), err);
    if (r < 0)
      return r;
  }
  return 0;
}

int luks2_json_validate(struct json_object *jobj, uint64_t hdr_size, struct nbdc_error *err)
{
  if (!jobj || !json_object_is_type(jobj, json_type_object))
    return nbdc_error_set(err, EINVAL, "metadata is not a JSON object");
  if (!luks2_hdr_size_allowed(hdr_size))
    return nbdc_error_set(err, EINVAL, "header size %" PRIu64 " not allowed", hdr_size);
  int r = validate_sections(jobj, err);
  if (r == 0)
    r = validate_config(jobj, hdr_size, err);
  if (r == 0)
    r = validate_digests(jobj, err);
  if (r == 0)
    r = validate_keyslots(jobj, err);
  if (r == 0)
    r = validate_areas(jobj, hdr_size, err);
  if (r == 0)
    r = validate_segments(jobj, hdr_size, err);
  if (r == 0)
    r = validate_tokens(jobj, err);
  if (r < 0)
    return r;

  size_t json_len = strlen(json_object_to_json_string_ext(jobj, LUKS2_JSON_PRINT_OPTS));
  if (json_len > hdr_size - LUKS2_BIN_HDR_SIZE)
    return nbdc_error_set(err, ENOSPC,
                          "metadata: JSON of %zu bytes does not fit the %" PRIu64 "-byte JSON area",
                          json_len, hdr_size - LUKS2_BIN_HDR_SIZE);
  return 0;
}
