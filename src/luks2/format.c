/* New LUKS2 containers: the metadata cryptsetup's luksFormat would write,
 * before any keyslot (DESIGN.md section 2 for our defaults). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "luks2/luks2_internal.h"

/* Canonical lower-case text UUID; refuses anything else. */
static int uuid_normalize(const char *in, char out[LUKS2_UUID_LEN], struct nbdc_error *err)
{
  if (strlen(in) != 36)
    return nbdc_error_set(err, EINVAL, "uuid '%.40s' is not 36 characters", in);
  for (size_t i = 0; i < 36; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? in[i] != '-' : !isxdigit((unsigned char)in[i]))
      return nbdc_error_set(err, EINVAL, "uuid '%s' is not of the form 8-4-4-4-12 hex digits", in);
    out[i] = (char)tolower((unsigned char)in[i]);
  }
  out[36] = '\0';
  return 0;
}

static struct json_object *segment_json(uint64_t offset, uint64_t size, uint32_t sector_size)
{
  struct json_object *seg = json_object_new_object();
  if (!seg)
    return NULL;
  json_object_object_add(seg, "type", json_object_new_string("crypt"));
  json_object_object_add(seg, "offset", luks2_json_u64_new(offset));
  json_object_object_add(seg, "size",
                         size ? luks2_json_u64_new(size) : json_object_new_string("dynamic"));
  json_object_object_add(seg, "iv_tweak", json_object_new_string("0"));
  json_object_object_add(seg, "encryption", json_object_new_string("aes-xts-plain64"));
  json_object_object_add(seg, "sector_size", json_object_new_int((int)sector_size));
  return seg;
}

int luks2_format(const struct luks2_format_params *params, const uint8_t *vk, size_t vk_len,
                 struct luks2_hdr **out, struct nbdc_error *err)
{
  *out = NULL;
  if (params->volume_key_size != 32 && params->volume_key_size != 64)
    return nbdc_error_set(err, EINVAL, "volume key size %zu not allowed (32 or 64)",
                          params->volume_key_size);
  if (vk_len != params->volume_key_size)
    return nbdc_error_set(err, EINVAL, "volume key of %zu bytes, expected %zu", vk_len,
                          params->volume_key_size);
  uint32_t sector_size = params->sector_size;
  if (sector_size < 512 || sector_size > 4096 || (sector_size & (sector_size - 1)))
    return nbdc_error_set(err, EINVAL, "sector size %u not allowed (512, 1024, 2048 or 4096)",
                          sector_size);
  uint64_t hdr_size = params->hdr_size ? params->hdr_size : LUKS2_DEFAULT_HDR_SIZE;
  if (!luks2_hdr_size_allowed(hdr_size))
    return nbdc_error_set(
        err, EINVAL, "header size %" PRIu64 " not allowed (16 KiB, 32 KiB, ... 4 MiB)", hdr_size);
  uint64_t data_offset =
      params->data_offset ? params->data_offset : (uint64_t)LUKS2_DEFAULT_DATA_OFFSET;
  if (data_offset % LUKS2_AREA_ALIGN || data_offset % sector_size)
    return nbdc_error_set(err, EINVAL, "data offset %" PRIu64 " not aligned to 4096", data_offset);
  if (data_offset <= 2 * hdr_size)
    return nbdc_error_set(err, EINVAL,
                          "data offset %" PRIu64 " leaves no keyslots area after two %" PRIu64
                          "-byte headers",
                          data_offset, hdr_size);
  uint64_t keyslots_size = data_offset - 2 * hdr_size;
  if (keyslots_size > LUKS2_KEYSLOTS_MAX)
    keyslots_size = LUKS2_KEYSLOTS_MAX;
  if (params->data_size % sector_size)
    return nbdc_error_set(err, EINVAL, "data size %" PRIu64 " not a multiple of sector size %u",
                          params->data_size, sector_size);
  if (params->label && strlen(params->label) >= LUKS2_LABEL_LEN)
    return nbdc_error_set(err, EINVAL, "label '%.48s...' longer than %d bytes", params->label,
                          LUKS2_LABEL_LEN - 1);

  struct luks2_hdr *hdr = calloc(1, sizeof *hdr);
  if (!hdr)
    return nbdc_error_set(err, ENOMEM, "out of memory formatting a LUKS2 header");
  int r =
      params->uuid ? uuid_normalize(params->uuid, hdr->uuid, err) : crypto_uuid_v4(hdr->uuid, err);
  if (r < 0)
    goto fail;
  if (params->label)
    snprintf(hdr->label, sizeof hdr->label, "%s", params->label);
  hdr->hdr_size = hdr_size;
  hdr->seqid = 0; /* the first luks2_write makes it 1 */
  hdr->format_vk_size = vk_len;

  struct json_object *digest = NULL;
  r = luks2_digest_create(vk, vk_len, 0, &digest, err);
  if (r < 0)
    goto fail;
  struct json_object *jobj = json_object_new_object();
  struct json_object *segments = json_object_new_object();
  struct json_object *digests = json_object_new_object();
  struct json_object *config = json_object_new_object();
  struct json_object *segment = segment_json(data_offset, params->data_size, sector_size);
  if (!jobj || !segments || !digests || !config || !segment) {
    json_object_put(jobj);
    json_object_put(segments);
    json_object_put(digests);
    json_object_put(config);
    json_object_put(segment);
    json_object_put(digest);
    r = nbdc_error_set(err, ENOMEM, "out of memory formatting a LUKS2 header");
    goto fail;
  }
  json_object_object_add(segments, "0", segment);
  json_object_object_add(digests, "0", digest);
  json_object_object_add(config, "json_size", luks2_json_u64_new(hdr_size - LUKS2_BIN_HDR_SIZE));
  json_object_object_add(config, "keyslots_size", luks2_json_u64_new(keyslots_size));
  json_object_object_add(jobj, "keyslots", json_object_new_object());
  json_object_object_add(jobj, "tokens", json_object_new_object());
  json_object_object_add(jobj, "segments", segments);
  json_object_object_add(jobj, "digests", digests);
  json_object_object_add(jobj, "config", config);
  hdr->jobj = jobj;

  r = luks2_json_validate(jobj, hdr_size, err);
  if (r < 0) {
    r = nbdc_error_prefix(err, "formatted metadata invalid");
    goto fail;
  }
  *out = hdr;
  return 0;
fail:
  luks2_free(hdr);
  return r;
}
