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
  json_object_object_add(o, "detached_header", json_object_new_boolean(0));
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

static void luks1_json_error(const char *target, const char *msg)
{
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "target", cli_json_string(target));
  json_object_object_add(o, "luks2", json_object_new_boolean(0));
  json_object_object_add(o, "luks1", json_object_new_boolean(1));
  json_object_object_add(o, "error", cli_json_string(msg));
  cli_json_print(o, true);
}

int cli_info_luks1(const char *target, const char *header, struct bdev *dev, bool json, int *result)
{
  struct luks1_hdr h;
  struct nbdc_error err = {0};
  uint64_t dev_size = 0;
  int r = bdev_get_size(dev, &dev_size, &err);
  if (r == 0)
    r = luks1_load(dev, &h, &err);
  if (r == -ENODATA)
    return 0; /* not LUKS1: the caller reports it as not LUKS2 */
  if (header) {
    /* As volume_open: only a LUKS2 header can be detached. */
    char why[NBDC_ERROR_MAX], msg[NBDC_ERROR_MAX + 96];
    if (r < 0)
      snprintf(why, sizeof why, "%s", err.msg);
    else
      snprintf(why, sizeof why, "LUKS1 disk %s given as the header", h.uuid);
    snprintf(msg, sizeof msg,
             "a detached LUKS1 header is not supported, only a detached LUKS2 header (%s)", why);
    if (json)
      luks1_json_error(target, msg);
    *result = cli_fail("%s: %s", header, msg);
    return 1;
  }
  if (r < 0) {
    if (json)
      luks1_json_error(target, err.msg);
    *result = cli_fail("%s: not a usable LUKS1 disk: %s", target, err.msg);
    return 1;
  }
  struct json_object *o = luks1_json(&h, dev_size);
  json_object_object_add(o, "target", cli_json_string(target));
  *result = CLI_OK;
  if (json) {
    cli_json_print(o, true); /* drops o */
    return 1;
  }
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
  json_object_put(o);
  return 1;
}
