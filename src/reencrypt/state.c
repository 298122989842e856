/* The progress record: a token of type nbdcrypt-reencrypt whose fields are
 * authenticated by HMAC-SHA256 keyed from both volume keys, so a forged or
 * altered record is refused before any recovery acts on it (the lesson of
 * CVE-2021-4122). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/reencrypt.h"

#define MAC_LEN     32
#define CANON_MAX   1024
#define MAC_CONTEXT "nbdcrypt-reencrypt-v1 progress key"

static const char *mode_name(enum reenc_mode m)
{
  return m == REENC_RECRYPT ? "recrypt" : m == REENC_ENCRYPT ? "encrypt" : "decrypt";
}

static const char *phase_name(enum reenc_phase p)
{
  return p == REENC_PHASE_PREPARE ? "prepare" : p == REENC_PHASE_MAIN ? "main" : "final";
}

/* Every field, in a fixed order and format: what the MAC covers. */
static int canonical(const struct reenc_state *st, char *out, size_t max)
{
  char sha_hex[65];
  for (size_t i = 0; i < 32; i++)
    snprintf(sha_hex + 2 * i, 3, "%02x", st->checksum_sha[i]);
  int n =
      snprintf(out, max,
               "v1|%s|%s|%s|%d|%d|%" PRIu32 "|%" PRIu64 "|%" PRIu64 "|%" PRIu64 "|%" PRIu64
               "|%" PRIu64 "|%" PRIu64 "|%" PRIu64 "|%" PRIu64 "|%s|%" PRIu64 "|%" PRIu64 "|%d|%d",
               mode_name(st->mode), phase_name(st->phase), st->backward ? "backward" : "forward",
               st->detached, st->size_dynamic, st->sector_size, st->data_size, st->old_offset,
               st->new_offset, st->iv_tweak, st->done, st->hotzone_offset, st->hotzone_size,
               st->checksum_offset, sha_hex, st->tail_offset, st->chunk_size, st->old_keyslot,
               st->new_keyslot);
  if (n > 0 && (size_t)n < max && st->checksum == REENC_CHECKSUM_HEAD16)
    n += snprintf(out + n, max - (size_t)n, "|head16");
  return n > 0 && (size_t)n < max ? n : -1;
}

static int compute_mac(const struct reenc_state *st, const uint8_t *old_key, size_t old_len,
                       const uint8_t *new_key, size_t new_len, uint8_t mac[MAC_LEN],
                       struct nbdc_error *err)
{
  char text[CANON_MAX];
  int n = canonical(st, text, sizeof text);
  if (n < 0)
    return nbdc_error_set(err, EINVAL, "progress record too long");
  uint8_t *mac_key = secmem_alloc(MAC_LEN);
  if (!mac_key)
    return nbdc_error_set(err, ENOMEM, "cannot allocate secure memory");
  /* mac key = SHA-256(context || len || old key || len || new key) */
  struct crypto_hash *md = NULL;
  struct nbdc_error e = {0};
  uint8_t lens[2] = {(uint8_t)old_len, (uint8_t)new_len};
  int ok = crypto_hash_new(&md, "sha256", true, &e) == 0;
  if (ok) {
    crypto_hash_write(md, MAC_CONTEXT, sizeof MAC_CONTEXT);
    crypto_hash_write(md, &lens[0], 1);
    crypto_hash_write(md, old_key, old_len);
    crypto_hash_write(md, &lens[1], 1);
    crypto_hash_write(md, new_key, new_len);
    ok = crypto_hash_final(md, mac_key, MAC_LEN, &e) == 0;
  }
  crypto_hash_free(md);
  if (ok)
    ok = crypto_hmac("sha256", mac_key, MAC_LEN, text, (size_t)n, mac, MAC_LEN, &e) == 0;
  secmem_free(mac_key, MAC_LEN);
  nbdc_wipe(text, sizeof text);
  if (!ok)
    return nbdc_error_set(err, EIO, "cannot compute the progress record's HMAC");
  return 0;
}

static struct json_object *u64_str(uint64_t v)
{
  char s[24];
  snprintf(s, sizeof s, "%" PRIu64, v);
  return json_object_new_string(s);
}

int reenc_state_to_json(const struct reenc_state *st, const uint8_t *old_key, size_t old_len,
                        const uint8_t *new_key, size_t new_len, struct json_object **out,
                        struct nbdc_error *err)
{
  uint8_t mac[MAC_LEN];
  int r = compute_mac(st, old_key, old_len, new_key, new_len, mac, err);
  if (r < 0)
    return r;
  char *mac_b64 = base64_encode(mac, sizeof mac);
  char *sha_b64 = base64_encode(st->checksum_sha, sizeof st->checksum_sha);
  struct json_object *o = json_object_new_object();
  struct json_object *slots = json_object_new_array();
  if (!mac_b64 || !sha_b64 || !o || !slots) {
    free(mac_b64);
    free(sha_b64);
    json_object_put(o);
    json_object_put(slots);
    return nbdc_error_set(err, ENOMEM, "out of memory building the progress record");
  }
  char id[12];
  if (st->old_keyslot >= 0) {
    snprintf(id, sizeof id, "%d", st->old_keyslot);
    json_object_array_add(slots, json_object_new_string(id));
  }
  if (st->new_keyslot >= 0) {
    snprintf(id, sizeof id, "%d", st->new_keyslot);
    json_object_array_add(slots, json_object_new_string(id));
  }
  json_object_object_add(o, "type", json_object_new_string(REENC_TOKEN_TYPE));
  json_object_object_add(o, "keyslots", slots);
  json_object_object_add(o, "mode", json_object_new_string(mode_name(st->mode)));
  json_object_object_add(o, "phase", json_object_new_string(phase_name(st->phase)));
  json_object_object_add(o, "direction",
                         json_object_new_string(st->backward ? "backward" : "forward"));
  json_object_object_add(o, "detached", json_object_new_boolean(st->detached));
  json_object_object_add(o, "size_dynamic", json_object_new_boolean(st->size_dynamic));
  json_object_object_add(o, "sector_size", json_object_new_int((int)st->sector_size));
  json_object_object_add(o, "data_size", u64_str(st->data_size));
  json_object_object_add(o, "old_offset", u64_str(st->old_offset));
  json_object_object_add(o, "new_offset", u64_str(st->new_offset));
  json_object_object_add(o, "iv_tweak", u64_str(st->iv_tweak));
  json_object_object_add(o, "done", u64_str(st->done));
  json_object_object_add(o, "hotzone_offset", u64_str(st->hotzone_offset));
  json_object_object_add(o, "hotzone_size", u64_str(st->hotzone_size));
  json_object_object_add(o, "checksum_offset", u64_str(st->checksum_offset));
  json_object_object_add(o, "checksum_sha256", json_object_new_string(sha_b64));
  json_object_object_add(
      o, "checksum",
      json_object_new_string(st->checksum == REENC_CHECKSUM_HEAD16 ? "head16" : "sha256"));
  json_object_object_add(o, "tail_offset", u64_str(st->tail_offset));
  json_object_object_add(o, "chunk_size", u64_str(st->chunk_size));
  json_object_object_add(o, "old_keyslot", json_object_new_int(st->old_keyslot));
  json_object_object_add(o, "new_keyslot", json_object_new_int(st->new_keyslot));
  json_object_object_add(o, "hmac_sha256", json_object_new_string(mac_b64));
  free(mac_b64);
  free(sha_b64);
  *out = o;
  return 0;
}

static int get_u64(struct json_object *o, const char *key, uint64_t *v, struct nbdc_error *err)
{
  struct json_object *f;
  const char *s;
  char *end;
  if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, json_type_string) ||
      !(s = json_object_get_string(f)) || !*s || *s < '0' || *s > '9')
    return nbdc_error_set(err, EINVAL, "progress record: %s missing or not a decimal string", key);
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || *end)
    return nbdc_error_set(err, EINVAL, "progress record: %s '%.24s' out of range", key, s);
  *v = x;
  return 0;
}

static int get_int(struct json_object *o, const char *key, int min, int max, int *v,
                   struct nbdc_error *err)
{
  struct json_object *f;
  if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, json_type_int))
    return nbdc_error_set(err, EINVAL, "progress record: %s missing or not an integer", key);
  int64_t x = json_object_get_int64(f);
  if (x < min || x > max)
    return nbdc_error_set(err, EINVAL, "progress record: %s %" PRId64 " out of range", key, x);
  *v = (int)x;
  return 0;
}

static int get_enum(struct json_object *o, const char *key, const char *const names[], int n,
                    int *v, struct nbdc_error *err)
{
  struct json_object *f;
  const char *s = NULL;
  if (json_object_object_get_ex(o, key, &f) && json_object_is_type(f, json_type_string))
    s = json_object_get_string(f);
  for (int i = 0; s && i < n; i++)
    if (strcmp(s, names[i]) == 0) {
      *v = i;
      return 0;
    }
  return nbdc_error_set(err, EINVAL, "progress record: %s '%.24s' not known", key, s ? s : "");
}

static int get_bool(struct json_object *o, const char *key, bool *v, struct nbdc_error *err)
{
  struct json_object *f;
  if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, json_type_boolean))
    return nbdc_error_set(err, EINVAL, "progress record: %s missing or not a boolean", key);
  *v = json_object_get_boolean(f);
  return 0;
}

int reenc_state_keyslots(struct json_object *token, int *old_keyslot, int *new_keyslot,
                         struct nbdc_error *err)
{
  int r = get_int(token, "old_keyslot", -1, 31, old_keyslot, err);
  if (r == 0)
    r = get_int(token, "new_keyslot", -1, 31, new_keyslot, err);
  return r;
}

int reenc_state_from_json(struct json_object *token, const uint8_t *old_key, size_t old_len,
                          const uint8_t *new_key, size_t new_len, struct reenc_state *out,
                          struct nbdc_error *err)
{
  static const char *const modes[] = {"", "recrypt", "encrypt", "decrypt"};
  static const char *const phases[] = {"", "prepare", "main", "final"};
  static const char *const dirs[] = {"forward", "backward"};
  static const char *const checksums[] = {"sha256", "head16"};
  struct reenc_state st = {0};
  int mode = 0, phase = 0, dir = 0, sector = 0, checksum = 0;
  int r = get_enum(token, "mode", modes, 4, &mode, err);
  if (r == 0)
    r = get_enum(token, "phase", phases, 4, &phase, err);
  if (r == 0)
    r = get_enum(token, "direction", dirs, 2, &dir, err);
  if (r == 0 && json_object_object_get_ex(token, "checksum", NULL)) /* absent: sha256 */
    r = get_enum(token, "checksum", checksums, 2, &checksum, err);
  if (r == 0)
    r = get_bool(token, "detached", &st.detached, err);
  if (r == 0)
    r = get_bool(token, "size_dynamic", &st.size_dynamic, err);
  if (r == 0)
    r = get_int(token, "sector_size", 512, 4096, &sector, err);
  if (r == 0)
    r = get_u64(token, "data_size", &st.data_size, err);
  if (r == 0)
    r = get_u64(token, "old_offset", &st.old_offset, err);
  if (r == 0)
    r = get_u64(token, "new_offset", &st.new_offset, err);
  if (r == 0)
    r = get_u64(token, "iv_tweak", &st.iv_tweak, err);
  if (r == 0)
    r = get_u64(token, "done", &st.done, err);
  if (r == 0)
    r = get_u64(token, "hotzone_offset", &st.hotzone_offset, err);
  if (r == 0)
    r = get_u64(token, "hotzone_size", &st.hotzone_size, err);
  if (r == 0)
    r = get_u64(token, "checksum_offset", &st.checksum_offset, err);
  if (r == 0)
    r = get_u64(token, "tail_offset", &st.tail_offset, err);
  if (r == 0)
    r = get_u64(token, "chunk_size", &st.chunk_size, err);
  if (r == 0)
    r = reenc_state_keyslots(token, &st.old_keyslot, &st.new_keyslot, err);
  if (r < 0)
    return r;
  if (mode == 0 || phase == 0)
    return nbdc_error_set(err, EINVAL, "progress record: empty mode or phase");
  st.mode = (enum reenc_mode)mode;
  st.phase = (enum reenc_phase)phase;
  st.backward = dir == 1;
  st.sector_size = (uint32_t)sector;
  st.checksum = (enum reenc_checksum)checksum;

  struct json_object *f;
  size_t len = 0;
  if (!json_object_object_get_ex(token, "checksum_sha256", &f) ||
      base64_decode(json_object_get_string(f), st.checksum_sha, sizeof st.checksum_sha, &len) < 0 ||
      len != sizeof st.checksum_sha)
    return nbdc_error_set(err, EINVAL, "progress record: checksum_sha256 missing or malformed");
  uint8_t stored[MAC_LEN], expect[MAC_LEN];
  if (!json_object_object_get_ex(token, "hmac_sha256", &f) ||
      base64_decode(json_object_get_string(f), stored, sizeof stored, &len) < 0 || len != MAC_LEN)
    return nbdc_error_set(err, EINVAL, "progress record: hmac_sha256 missing or malformed");
  if ((r = compute_mac(&st, old_key, old_len, new_key, new_len, expect, err)) < 0)
    return r;
  if (!crypto_memeq(stored, expect, MAC_LEN))
    return nbdc_error_set(err, EPERM,
                          "progress record of the %s does not match the keys (altered or forged "
                          "header); refusing to act on it",
                          modes[mode]);

  /* Authentic, but still bound every value before it drives any I/O. */
  if (st.sector_size & (st.sector_size - 1))
    return nbdc_error_set(err, EINVAL, "progress record: sector_size %u", st.sector_size);
  if (st.done > st.data_size || st.hotzone_offset > st.data_size ||
      st.hotzone_size > st.data_size - st.hotzone_offset || st.chunk_size > st.data_size ||
      st.data_size > (UINT64_C(1) << 60) || st.old_offset > (UINT64_C(1) << 60) ||
      st.new_offset > (UINT64_C(1) << 60) || st.tail_offset > (UINT64_C(1) << 61))
    return nbdc_error_set(err, EINVAL,
                          "progress record: offsets out of range (done %" PRIu64
                          ", data size %" PRIu64 ")",
                          st.done, st.data_size);
  *out = st;
  return 0;
}
