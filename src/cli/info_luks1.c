/* nbdcrypt info on a LUKS1 disk: what its phdr says, without keys. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "nbdcrypt/luks1.h"

static struct json_object *luks1_json(const struct luks1_hdr *h, uint64_t dev_size)
{
  struct json_object *o = json_object_new_object();
  uint64_t off = luks1_payload_offset(h);
  json_object_object_add(o, "luks2", json_object_new_boolean(0));
  json_object_object_add(o, "luks1", json_object_new_boolean(1));
  json_object_object_add(o, "uuid", json_object_new_string(h->uuid));
  json_object_object_add(o, "device_size", json_object_new_int64((int64_t)dev_size));
  json_object_object_add(o, "cipher", json_object_new_string(h->cipher));
  json_object_object_add(o, "key_bits", json_object_new_int((int)h->key_bytes * 8));
  json_object_object_add(o, "hash", json_object_new_string(h->hash_spec));
  json_object_object_add(o, "sector_size", json_object_new_int(LUKS1_SECTOR_SIZE));
  json_object_object_add(o, "data_offset", json_object_new_int64((int64_t)off));
  uint64_t size = dev_size > off ? (dev_size - off) / LUKS1_SECTOR_SIZE * LUKS1_SECTOR_SIZE : 0;
  json_object_object_add(o, "data_size", json_object_new_int64((int64_t)size));
  json_object_object_add(o, "data_size_dynamic", json_object_new_boolean(1));
  struct json_object *arr = json_object_new_array();
  for (int i = 0; i < LUKS1_NUM_KEYS; i++) {
    const struct luks1_keyslot *ks = &h->keyslots[i];
    if (!ks->active)
      continue;
    struct json_object *k = json_object_new_object();
    json_object_object_add(k, "id", json_object_new_int(i));
    json_object_object_add(k, "type", json_object_new_string("luks1"));
    json_object_object_add(k, "kdf", json_object_new_string("pbkdf2"));
    json_object_object_add(k, "iterations", json_object_new_int64(ks->iterations));
    json_object_object_add(
        k, "key_material_offset",
        json_object_new_int64((int64_t)ks->key_material_offset * LUKS1_SECTOR_SIZE));
    json_object_array_add(arr, k);
  }
  json_object_object_add(o, "keyslots", arr);
  return o;
}

int cli_info_luks1(const char *target, struct bdev *dev, bool json, int *result)
{
  struct luks1_hdr h;
  struct nbdc_error err = {0};
  uint64_t dev_size = 0;
  int r = bdev_get_size(dev, &dev_size, &err);
  if (r == 0)
    r = luks1_load(dev, &h, &err);
  if (r == -ENODATA)
    return 0; /* not LUKS1: the caller reports it as not LUKS2 */
  if (r < 0) {
    if (json) {
      struct json_object *o = json_object_new_object();
      json_object_object_add(o, "luks2", json_object_new_boolean(0));
      json_object_object_add(o, "luks1", json_object_new_boolean(1));
      json_object_object_add(o, "error", json_object_new_string(err.msg));
      printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
      json_object_put(o);
    }
    *result = cli_fail("%s: not a usable LUKS1 disk: %s", target, err.msg);
    return 1;
  }
  struct json_object *o = luks1_json(&h, dev_size);
  if (json) {
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
  } else {
    printf("%s: LUKS1\n", target);
    printf("  uuid:          %s\n", h.uuid);
    printf("  cipher:        %s, %u-bit key\n", h.cipher, h.key_bytes * 8);
    printf("  hash:          %s\n", h.hash_spec);
    printf("  sector size:   %d\n", LUKS1_SECTOR_SIZE);
    printf("  data offset:   %" PRIu64 "\n", luks1_payload_offset(&h));
    printf("  data size:     %" PRId64 " (to the end of the device)\n",
           json_object_get_int64(json_object_object_get(o, "data_size")));
    printf("  keyslots:\n");
    for (int i = 0; i < LUKS1_NUM_KEYS; i++)
      if (h.keyslots[i].active)
        printf("    %d: luks1, pbkdf2-%s, %" PRIu32 " iterations\n", i, h.hash_spec,
               h.keyslots[i].iterations);
    printf("  tokens:        none (LUKS1; convert with nbdcrypt enroll --convert)\n");
  }
  json_object_put(o);
  *result = CLI_OK;
  return 1;
}
