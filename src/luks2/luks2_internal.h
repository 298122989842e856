/* Helpers shared by the files of the luks2 module only. */
#ifndef NBDCRYPT_LUKS2_INTERNAL_H
#define NBDCRYPT_LUKS2_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "nbdcrypt/error.h"
#include "nbdcrypt/luks2.h"

#define LUKS2_MAGIC_LEN       6
#define LUKS2_LABEL_LEN       48
#define LUKS2_CSUM_ALG_LEN    32
#define LUKS2_SALT_LEN        64
#define LUKS2_UUID_LEN        40
#define LUKS2_CSUM_LEN        64
#define LUKS2_KEYSLOTS_MAX    (UINT64_C(128) * 1024 * 1024) /* config.keyslots_size limit */
#define LUKS2_AREA_ALIGN      4096
#define LUKS2_KDF_SALT_LEN    32 /* what cryptsetup writes for keyslots and digests */
#define LUKS2_DIGEST_ITER     1000
#define LUKS2_MAX_WIPES       64
#define LUKS2_JSON_PRINT_OPTS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct luks2_wipe {
  uint64_t offset;
  uint64_t size;
};

struct luks2_hdr {
  struct json_object *jobj; /* validated metadata */
  uint64_t hdr_size;        /* one copy: binary header + JSON area */
  uint64_t seqid;
  /* Loaded from (or written to) a device: luks2_write then requires the
   * device to still hold disk_seqid (or seqid, after a write of ours that
   * failed half way); false for a header fresh from luks2_format. */
  bool on_disk;
  uint64_t disk_seqid;
  char label[LUKS2_LABEL_LEN];
  char subsystem[LUKS2_LABEL_LEN];
  char uuid[LUKS2_UUID_LEN];
  size_t format_vk_size; /* known after luks2_format, before any keyslot */
  bool has_warning;
  char warning[NBDC_ERROR_MAX];
  /* Keyslot areas of removed keyslots, wiped by the next luks2_write. */
  struct luks2_wipe wipes[LUKS2_MAX_WIPES];
  size_t n_wipes;
};

/* ---- disk.c ---- */

/* The nine allowed hdr_size values (16 KiB .. 4 MiB). */
extern const uint64_t luks2_hdr_sizes[9];
bool luks2_hdr_size_allowed(uint64_t hdr_size);

/* ---- json.c: typed access and validation ---- */

/* Member key of obj with JSON type type, or NULL. */
struct json_object *luks2_json_get(struct json_object *obj, const char *key, json_type type);

/* Parse a non-negative decimal string (digits only, at most UINT64_MAX). */
bool luks2_parse_u64(const char *s, uint64_t *out);

/* Id of a keyslot/token/segment/digest: canonical decimal "0".."max-1", or -1. */
int luks2_parse_id(const char *s, int max);

/* A decimal string member as uint64, with an error naming what and key. */
int luks2_json_get_u64_str(struct json_object *obj, const char *key, const char *what,
                           uint64_t *out, struct nbdc_error *err);
/* An integer member within [min, max], with an error naming what and key. */
int luks2_json_get_int(struct json_object *obj, const char *key, const char *what, int64_t min,
                       int64_t max, int64_t *out, struct nbdc_error *err);
/* A string member, with an error naming what and key. */
int luks2_json_get_str(struct json_object *obj, const char *key, const char *what, const char **out,
                       struct nbdc_error *err);

/* New JSON string holding the decimal value v. */
struct json_object *luks2_json_u64_new(uint64_t v);

/* Whether array arr (of decimal strings) contains id. */
bool luks2_json_array_has_id(struct json_object *arr, int id);
/* Remove id from array arr; returns true if it was there. */
bool luks2_json_array_del_id(struct json_object *arr, int id);

/* Decode a base64 member of at most max bytes into out; error names what. */
int luks2_json_get_b64(struct json_object *obj, const char *key, const char *what, uint8_t *out,
                       size_t min, size_t max, size_t *out_len, struct nbdc_error *err);

/* Hash names allowed for AF, PBKDF2 and digests. */
bool luks2_hash_allowed(const char *name);

/* Check the JSON area: '{' first, one JSON object, then only NUL bytes.
 * On success *out is the parsed object (caller owns it). */
int luks2_json_parse_area(const char *area, size_t area_len, struct json_object **out,
                          struct nbdc_error *err);

/* Validate metadata against reference/luks2.md "JSON rules" and the
 * allow-list; hdr_size is the binary header's value. */
int luks2_json_validate(struct json_object *jobj, uint64_t hdr_size, struct nbdc_error *err);

/* Keyslots area [start, end) of metadata jobj. */
void luks2_keyslots_area(struct json_object *jobj, uint64_t hdr_size, uint64_t *start,
                         uint64_t *end);

/* ---- keyslot.c ---- */

/* Validate keyslot id's JSON (type handler). */
int luks2_keyslot_validate(struct json_object *jobj_hdr, struct json_object *keyslot, int id,
                           struct nbdc_error *err);
/* Area offset/size of a validated keyslot. */
void luks2_keyslot_area(struct json_object *keyslot, uint64_t *offset, uint64_t *size);

/* ---- digest.c ---- */

int luks2_digest_validate(struct json_object *jobj_hdr, struct json_object *digest, int id,
                          struct nbdc_error *err);
/* Digest id listing keyslot, or -1. */
int luks2_digest_by_keyslot(struct json_object *jobj_hdr, int keyslot);
/* Digest id listing segment, or -1. */
int luks2_digest_by_segment(struct json_object *jobj_hdr, int segment);
/* Check vk against digest id: 0, -EPERM, or another error. */
int luks2_digest_check(struct json_object *jobj_hdr, int digest, const uint8_t *vk, size_t vk_len,
                       struct nbdc_error *err);
/* Build a new pbkdf2-sha256 digest object of vk assigned to segment (or -1). */
int luks2_digest_create(const uint8_t *vk, size_t vk_len, int segment, struct json_object **out,
                        struct nbdc_error *err);

/* The "keyslots" array of owner (digest or token): at most 32 distinct ids
 * of existing keyslots. */
int luks2_validate_keyslot_refs(struct json_object *jobj_hdr, struct json_object *owner,
                                const char *what, struct nbdc_error *err);

/* ---- token.c ---- */

/* Validate token id's JSON (at load and when adding). */
int luks2_token_validate(struct json_object *jobj_hdr, struct json_object *token, int id,
                         struct nbdc_error *err);

#endif
