/* Adversarial LUKS2 headers for luks2_load, in the spirit of cryptsetup's
 * luks2-validation-test: every row of the table below starts from a GOOD
 * header that this file builds itself (JSON shaped exactly like cryptsetup
 * 2.6.1's, binary headers and sha256 checksums computed here with OpenSSL, so
 * that a mutation of the JSON reaches the JSON validator and is not stopped by
 * a checksum), applies one mutation, writes both copies to a memory device
 * and calls luks2_load.  A row either must load (and then may check more), or
 * must fail with the expected errno and a message naming the problem: one of
 * the '|'-separated words of `expect`, matched case-insensitively.
 * Nothing here uses src/luks2 to build headers.
 *
 * Set NBDCRYPT_VALIDATION_DUMP=DIR to also write every case's image to
 * DIR/<case>.img, e.g. to compare against `cryptsetup luksDump`.
 *
 * Against that oracle (cryptsetup 2.6.1): every "loads_" row loads there too,
 * and every "rejects_" row is rejected there too EXCEPT the rows marked
 * .stricter, which cryptsetup's loader accepts and we refuse on purpose:
 * allow-listed ciphers, key sizes, sector sizes and KDF parameters
 * (reference/luks2.md: forged null-cipher headers), counts and ids bounded
 * before use (CVE-2020-14382), digest and priority fields checked at load
 * rather than at use, our own token's fields, a data segment at offset 0
 * (legal for cryptsetup's detached headers; here it would overlay the header,
 * which always shares the device) and offset+size that wraps 2^64. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/luks2.h"

#define KIB         UINT64_C(1024)
#define MIB         (KIB * KIB)
#define DATA_OFFSET (16 * MIB)
#define DEV_SIZE    (20 * MIB)
#define AREA_SIZE   UINT64_C(258048) /* 64-byte key * 4000 stripes, 4 KiB-aligned */
#define TEST_UUID   "3f4c8a2e-1b7d-4e0a-9c55-0d2b6e8f1a93"
#define TEST_LABEL  "validation"
#define SEQID       UINT64_C(7)
#define CSUM_OFFSET 448

/* expect_errno: 0 means EINVAL (a corrupt or disallowed header), ANY_ERRNO any
 * negative return. */
#define ANY_ERRNO (-1)

/* ---- the good baseline --------------------------------------------------- */

#define SALT_B64 "jheR9tGrV+veUT/gtQPKZxA5h0KHEJcpMpjT3/jQ+XM="

/* cryptsetup 2.6.1's luksFormat --type luks2 --pbkdf pbkdf2 layout, plus a
 * second (argon2id) keyslot and one of our tokens bound to it. */
static json_object *baseline_json(uint64_t hdr_size)
{
  uint64_t ks0 = 2 * hdr_size;
  uint64_t ks1 = ks0 + AREA_SIZE;
  char text[4096];
  int n = snprintf(
      text, sizeof text,
      "{\"keyslots\":{"
      "\"0\":{\"type\":\"luks2\",\"key_size\":64,"
      "\"af\":{\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha256\"},"
      "\"area\":{\"type\":\"raw\",\"offset\":\"%" PRIu64 "\",\"size\":\"258048\","
      "\"encryption\":\"aes-xts-plain64\",\"key_size\":64},"
      "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,"
      "\"salt\":\"" SALT_B64 "\"}},"
      "\"1\":{\"type\":\"luks2\",\"key_size\":64,"
      "\"af\":{\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha256\"},"
      "\"area\":{\"type\":\"raw\",\"offset\":\"%" PRIu64 "\",\"size\":\"258048\","
      "\"encryption\":\"aes-xts-plain64\",\"key_size\":64},"
      "\"kdf\":{\"type\":\"argon2id\",\"time\":4,\"memory\":1048576,\"cpus\":4,"
      "\"salt\":\"" SALT_B64 "\"}}},"
      "\"tokens\":{\"0\":{\"type\":\"nbdcrypt\",\"keyslots\":[\"1\"],\"provider\":\"local\","
      "\"kek_id\":\"kek-0001\",\"mode\":\"kek\"}},"
      "\"segments\":{\"0\":{\"type\":\"crypt\",\"offset\":\"%" PRIu64 "\",\"size\":\"dynamic\","
      "\"iv_tweak\":\"0\",\"encryption\":\"aes-xts-plain64\",\"sector_size\":4096}},"
      "\"digests\":{\"0\":{\"type\":\"pbkdf2\",\"keyslots\":[\"0\",\"1\"],\"segments\":[\"0\"],"
      "\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"" SALT_B64 "\","
      "\"digest\":\"cRvQ9tOpWj5so1TrEZZkf3ZZDvVTQm2FjNSwrtKUIrk=\"}},"
      "\"config\":{\"json_size\":\"%" PRIu64 "\",\"keyslots_size\":\"%" PRIu64 "\"}}",
      ks0, ks1, DATA_OFFSET, hdr_size - 4096, DATA_OFFSET - 2 * hdr_size);
  assert_true(n > 0 && (size_t)n < sizeof text);
  json_object *root = json_tokener_parse(text);
  assert_non_null(root);
  return root;
}

/* ---- JSON editing by dotted path ("segments.0.offset") ------------------- */

static json_object *jget(json_object *root, const char *path)
{
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  json_object *cur = root;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save)) {
    json_object *next = NULL;
    if (!json_object_object_get_ex(cur, tok, &next))
      fail_msg("test bug: no JSON path %s", path);
    cur = next;
  }
  return cur;
}

/* Set path to the JSON value `value` (JSON text), or delete it when NULL. */
static void jset(json_object *root, const char *path, const char *value)
{
  char parent[256];
  snprintf(parent, sizeof parent, "%s", path);
  char *dot = strrchr(parent, '.');
  const char *key = path;
  json_object *obj = root;
  if (dot) {
    *dot = '\0';
    key = path + (dot - parent) + 1;
    obj = jget(root, parent);
  }
  if (!value) {
    if (!json_object_object_get_ex(obj, key, NULL))
      fail_msg("test bug: deleting missing JSON path %s", path);
    json_object_object_del(obj, key);
    return;
  }
  json_object *val = json_tokener_parse(value);
  if (!val && strcmp(value, "null") != 0)
    fail_msg("test bug: bad JSON value %s", value);
  json_object_object_add(obj, key, val);
}

static void jset_u64(json_object *root, const char *path, uint64_t v)
{
  char text[32];
  snprintf(text, sizeof text, "\"%" PRIu64 "\"", v);
  jset(root, path, text);
}

/* Rename id `from` of section (keyslots, segments, tokens, digests) to `to`,
 * following references, so only the id itself is wrong. */
static void replace_refs(json_object *section, const char *field, const char *from, const char *to)
{
  json_object_object_foreach(section, key, obj)
  {
    (void)key;
    json_object *arr = NULL;
    if (!json_object_object_get_ex(obj, field, &arr) || !json_object_is_type(arr, json_type_array))
      continue;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
      const char *s = json_object_get_string(json_object_array_get_idx(arr, i));
      if (s && strcmp(s, from) == 0)
        json_object_array_put_idx(arr, i, json_object_new_string(to));
    }
  }
}

static void rename_id(json_object *root, const char *section, const char *from, const char *to)
{
  json_object *sec = jget(root, section);
  json_object *obj = json_object_get(jget(sec, from));
  json_object_object_del(sec, from);
  json_object_object_add(sec, to, obj);
  if (strcmp(section, "keyslots") == 0) {
    replace_refs(jget(root, "digests"), "keyslots", from, to);
    replace_refs(jget(root, "tokens"), "keyslots", from, to);
  } else if (strcmp(section, "segments") == 0) {
    replace_refs(jget(root, "digests"), "segments", from, to);
  }
}

/* ---- binary image ----------------------------------------------------------- */

struct image {
  uint64_t hdr_size;  /* size of one copy, and the hdr_size field */
  uint64_t seqid[2];  /* seqid written into each copy */
  uint8_t *copy[2];   /* primary, secondary: hdr_size bytes each */
  uint64_t offset[2]; /* where each copy is written on the device */
  char *text;         /* the JSON text written into both areas */
};

static void put_be64(uint8_t *p, uint64_t v)
{
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void sha256(const uint8_t *buf, size_t len, uint8_t out[32])
{
  unsigned int out_len = 0;
  assert_int_equal(EVP_Digest(buf, len, out, &out_len, EVP_sha256(), NULL), 1);
  assert_int_equal(out_len, 32);
}

/* Binary header of copy i (reference/luks2.md table), checksum left zero. */
static void img_binary(struct image *img, int i)
{
  uint8_t *h = img->copy[i];
  memset(h, 0, LUKS2_BIN_HDR_SIZE);
  memcpy(h, i == 0 ? "LUKS\xba\xbe" : "SKUL\xba\xbe", 6);
  h[7] = 2;
  put_be64(h + 8, img->hdr_size);
  put_be64(h + 16, img->seqid[i]);
  memcpy(h + 24, TEST_LABEL, sizeof TEST_LABEL);
  memcpy(h + 72, "sha256", 6);
  for (int k = 0; k < 64; k++)
    h[104 + k] = (uint8_t)(k * 7 + i * 13 + 1); /* salt, different per copy */
  memcpy(h + 168, TEST_UUID, sizeof TEST_UUID);
  put_be64(h + 256, img->offset[i]);
}

/* JSON area of copy i: text, then NUL bytes. */
static void img_area(struct image *img, int i, const char *text, size_t len)
{
  uint64_t area = img->hdr_size - LUKS2_BIN_HDR_SIZE;
  if (len > area)
    fail_msg("test bug: JSON of %zu bytes does not fit a %" PRIu64 "-byte area", len, area);
  memset(img->copy[i] + LUKS2_BIN_HDR_SIZE, 0, area);
  memcpy(img->copy[i] + LUKS2_BIN_HDR_SIZE, text, len);
}

/* sha256(binary header with csum zeroed || JSON area) into the csum field. */
static void img_seal(struct image *img, int i)
{
  uint8_t digest[32];
  memset(img->copy[i] + CSUM_OFFSET, 0, 64);
  sha256(img->copy[i], img->hdr_size, digest);
  memcpy(img->copy[i] + CSUM_OFFSET, digest, sizeof digest);
}

static void img_build(struct image *img, int i, json_object *root)
{
  const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
  img_binary(img, i);
  img_area(img, i, text, strlen(text));
  img_seal(img, i);
}

/* Rewrite both JSON areas with text (len bytes) and reseal. */
static void img_both_areas(struct image *img, const char *text, size_t len)
{
  for (int i = 0; i < 2; i++) {
    img_area(img, i, text, len);
    img_seal(img, i);
  }
}

/* ---- byte-level mutations (after sealing) --------------------------------- */

static void corrupt_primary_csum(struct image *img)
{
  img->copy[0][CSUM_OFFSET + 5] ^= 0x40;
}

static void corrupt_secondary_csum(struct image *img)
{
  img->copy[1][CSUM_OFFSET + 5] ^= 0x40;
}

static void corrupt_both_csums(struct image *img)
{
  corrupt_primary_csum(img);
  corrupt_secondary_csum(img);
}

/* A JSON byte changed after sealing: the checksum must catch it. */
static void corrupt_both_json_unsealed(struct image *img)
{
  for (int i = 0; i < 2; i++)
    img->copy[i][LUKS2_BIN_HDR_SIZE + 2] ^= 0x01;
}

static void destroy_primary(struct image *img)
{
  memset(img->copy[0], 0, LUKS2_BIN_HDR_SIZE);
}

static void destroy_secondary(struct image *img)
{
  memset(img->copy[1], 0, LUKS2_BIN_HDR_SIZE);
}

static void destroy_both(struct image *img)
{
  destroy_primary(img);
  destroy_secondary(img);
}

static void stray_bytes_after_json(struct image *img)
{
  size_t len = strlen(img->text);
  char *buf = calloc(1, len + 64);
  assert_non_null(buf);
  memcpy(buf, img->text, len);
  memcpy(buf + len + 40, "junk", 4); /* NULs, then non-NUL bytes */
  img_both_areas(img, buf, len + 44);
  free(buf);
}

static void stray_byte_right_after_json(struct image *img)
{
  size_t len = strlen(img->text);
  char *buf = calloc(1, len + 2);
  assert_non_null(buf);
  memcpy(buf, img->text, len);
  buf[len] = '}';
  img_both_areas(img, buf, len + 1);
  free(buf);
}

static void json_leading_space(struct image *img)
{
  size_t len = strlen(img->text);
  char *buf = calloc(1, len + 2);
  assert_non_null(buf);
  buf[0] = ' ';
  memcpy(buf + 1, img->text, len);
  img_both_areas(img, buf, len + 1);
  free(buf);
}

static void json_top_level_array(struct image *img)
{
  size_t len = strlen(img->text);
  char *buf = calloc(1, len + 3);
  assert_non_null(buf);
  buf[0] = '[';
  memcpy(buf + 1, img->text, len);
  buf[len + 1] = ']';
  img_both_areas(img, buf, len + 2);
  free(buf);
}

static void json_truncated(struct image *img)
{
  img_both_areas(img, img->text, strlen(img->text) / 2);
}

static void json_area_empty(struct image *img)
{
  img_both_areas(img, "", 0);
}

/* The whole JSON area filled with a valid-looking but unterminated object. */
static void json_fills_area_unterminated(struct image *img)
{
  size_t len = img->hdr_size - LUKS2_BIN_HDR_SIZE;
  char *buf = malloc(len);
  assert_non_null(buf);
  memset(buf, ' ', len);
  buf[0] = '{';
  img_both_areas(img, buf, len);
  free(buf);
}

/* An unknown top-level field nested depth arrays deep. */
static void nest_unknown_field(struct image *img, int depth)
{
  size_t len = strlen(img->text);
  size_t total = len + 8 + 2 * (size_t)depth;
  char *buf = malloc(total + 1);
  assert_non_null(buf);
  memcpy(buf, img->text, len - 1); /* without the closing brace */
  size_t pos = len - 1;
  memcpy(buf + pos, ",\"x\":", 5);
  pos += 5;
  memset(buf + pos, '[', (size_t)depth);
  pos += (size_t)depth;
  memset(buf + pos, ']', (size_t)depth);
  pos += (size_t)depth;
  buf[pos++] = '}';
  img_both_areas(img, buf, pos);
  free(buf);
}

static void nested_16(struct image *img)
{
  nest_unknown_field(img, 16);
}

static void nested_5000(struct image *img)
{
  nest_unknown_field(img, 5000);
}

/* The metadata of `cryptsetup reencrypt --encrypt --init-only
 * --reduce-device-size 32M` (cryptsetup 2.6.1, 64 MiB device): encryption in
 * place, not started.  Backup segments overlap each other and the header (one
 * starts at 0), a "reencrypt" keyslot has a datashift area, key_size 1 and
 * priority 0.  cryptsetup exempts backup segments and reencrypt keyslots from
 * the layout rules, and luksDump shows the header; refusal comes from the
 * online-reencrypt-v2 requirement. */
static const char cryptsetup_encrypt_midway[] =
    "{\"keyslots\":{\"0\":{\"type\":\"luks2\",\"key_size\":64,\"af\":{\"type\":\"luks1\",\"stripes"
    "\":4000,\"hash\":\"sha256\"},\"area\":{\"type\":\"raw\",\"offset\":\"32768\",\"size\":\"258048"
    "\",\"encryption\":\"aes-xts-plain64\",\"key_size\":64},\"kdf\":{\"type\":\"argon2id\",\"ti"
    "me\":4,\"memory\":32,\"cpus\":1,\"salt\":\"MF7lo6ba6ipfQqyciof+o/E3ZzbU/FW1Ndsm5sRty"
    "P0=\"}},\"1\":{\"area\":{\"offset\":\"290816\",\"size\":\"4096\",\"type\":\"datashift\",\"shif"
    "t_size\":\"16777216\"},\"type\":\"reencrypt\",\"key_size\":1,\"mode\":\"encrypt\",\"direct"
    "ion\":\"backward\",\"priority\":0}},\"tokens\":{},\"segments\":{\"0\":{\"type\":\"linear\","
    "\"offset\":\"50331648\",\"size\":\"16777216\"},\"1\":{\"type\":\"linear\",\"offset\":\"167772"
    "16\",\"size\":\"16777216\"},\"2\":{\"type\":\"linear\",\"offset\":\"50331648\",\"size\":\"1677"
    "7216\",\"flags\":[\"backup-moved-segment\"]},\"3\":{\"type\":\"linear\",\"offset\":\"0\",\"s"
    "ize\":\"33554432\",\"flags\":[\"backup-previous\"]},\"4\":{\"type\":\"crypt\",\"offset\":\"1"
    "6777216\",\"size\":\"dynamic\",\"iv_tweak\":\"0\",\"encryption\":\"aes-xts-plain64\",\"sec"
    "tor_size\":512,\"flags\":[\"backup-final\"]}},\"digests\":{\"0\":{\"type\":\"pbkdf2\",\"ke"
    "yslots\":[\"0\"],\"segments\":[\"4\"],\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"F+Z"
    "jotC9rsZnj1fNc2kBtJWooOeg4TYqCoVAmN1aZPk=\",\"digest\":\"N8Gfmp6B3rW1lXLpHp27FUk"
    "dltI2644RP2fY1jkdtZ8=\"},\"1\":{\"type\":\"pbkdf2\",\"keyslots\":[\"1\"],\"segments\":[],"
    "\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"YXYmhrn8dVO2guRBqSZPiFIJZzFXU11wdr"
    "xB/IUgVIE=\",\"digest\":\"aXpnWur/PcctsAwLEv2DzVlh7J9XZsLuhy295euVjBU=\"}},\"confi"
    "g\":{\"json_size\":\"12288\",\"keyslots_size\":\"16744448\",\"requirements\":{\"mandator"
    "y\":[\"online-reencrypt-v2\"]}}}";

static void cryptsetup_encrypt_midway_json(struct image *img)
{
  img_both_areas(img, cryptsetup_encrypt_midway, strlen(cryptsetup_encrypt_midway));
}

static void bad_magic_both(struct image *img)
{
  for (int i = 0; i < 2; i++) {
    memcpy(img->copy[i], "LUKZ\xba\xbe", 6);
    img_seal(img, i);
  }
}

/* What a LUKS1 disk looks like at these offsets: version 1 at 0, keyslot
 * material (here: nothing) where a LUKS2 secondary would be. */
static void luks1_header(struct image *img)
{
  img->copy[0][7] = 1;
  memset(img->copy[1], 0, img->hdr_size);
}

static void version_3_both(struct image *img)
{
  for (int i = 0; i < 2; i++) {
    img->copy[i][7] = 3;
    img_seal(img, i);
  }
}

static void hdr_size_field_20k_both(struct image *img)
{
  for (int i = 0; i < 2; i++) {
    put_be64(img->copy[i] + 8, 20 * KIB);
    img_seal(img, i);
  }
}

static void hdr_offset_wrong_both(struct image *img)
{
  for (int i = 0; i < 2; i++) {
    put_be64(img->copy[i] + 256, img->offset[i] + 4096);
    img_seal(img, i);
  }
}

static void csum_alg_unknown_both(struct image *img)
{
  for (int i = 0; i < 2; i++) {
    memcpy(img->copy[i] + 72, "nohash9", 8);
    img_seal(img, i);
  }
}

static void label_unterminated_both(struct image *img)
{
  for (int i = 0; i < 2; i++) {
    memset(img->copy[i] + 24, 'L', 48);
    img_seal(img, i);
  }
}

/* Both copies valid, one with a higher seqid and an extra token 5 that marks
 * which copy the loader took. */
static void newer_copy(struct image *img, int newer)
{
  json_object *root = json_tokener_parse(img->text);
  assert_non_null(root);
  jset(root, "tokens.5",
       "{\"type\":\"nbdcrypt\",\"keyslots\":[\"0\"],\"provider\":\"local\","
       "\"kek_id\":\"kek-newer\",\"mode\":\"kek\"}");
  img->seqid[newer] = SEQID + 1;
  img_build(img, newer, root);
  json_object_put(root);
}

static void secondary_newer(struct image *img)
{
  newer_copy(img, 1);
}

static void primary_newer(struct image *img)
{
  newer_copy(img, 0);
}

/* Copy i checksum-valid but with metadata that fails validation (no
 * keyslots object), optionally newer: cryptsetup 2.6.1 then loads the other
 * copy whatever the seqids say. */
static void invalid_json_copy(struct image *img, int i, uint64_t seqid)
{
  json_object *root = json_tokener_parse(img->text);
  assert_non_null(root);
  jset(root, "keyslots", NULL);
  img->seqid[i] = seqid;
  img_build(img, i, root);
  json_object_put(root);
}

static void primary_json_invalid(struct image *img)
{
  invalid_json_copy(img, 0, SEQID);
}

static void primary_json_invalid_newer(struct image *img)
{
  invalid_json_copy(img, 0, SEQID + 1);
}

static void secondary_json_invalid_newer(struct image *img)
{
  invalid_json_copy(img, 1, SEQID + 1);
}

/* ---- JSON mutations needing more than path edits ------------------------- */

static void json_size_mismatch(json_object *root, uint64_t hdr_size)
{
  jset_u64(root, "config.json_size", hdr_size - 8192);
}

static void keyslot_id_word(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  rename_id(root, "keyslots", "1", "one");
}

static void keyslot_id_negative(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  rename_id(root, "keyslots", "1", "-1");
}

static void keyslot_id_32(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  rename_id(root, "keyslots", "1", "32");
}

static void segment_id_hex(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  rename_id(root, "segments", "0", "0x0");
}

static void token_id_fraction(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  rename_id(root, "tokens", "0", "1.5");
}

static void token_id_32(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  rename_id(root, "tokens", "0", "32");
}

static void digest_id_empty(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  rename_id(root, "digests", "0", "");
}

/* n keyslots 0..n-1, areas packed from the start of the keyslots area, all in
 * digest 0. */
static void many_keyslots(json_object *root, uint64_t hdr_size, int n)
{
  json_object *keyslots = jget(root, "keyslots");
  json_object *digest_ks = json_object_new_array();
  json_object *tmpl = NULL;
  assert_int_equal(json_object_deep_copy(jget(keyslots, "0"), &tmpl, NULL), 0);
  for (int i = 0; i < n; i++) {
    char id[16];
    char off[32];
    snprintf(id, sizeof id, "%d", i);
    snprintf(off, sizeof off, "%" PRIu64, 2 * hdr_size + (uint64_t)i * AREA_SIZE);
    json_object *ks = NULL;
    assert_int_equal(json_object_deep_copy(tmpl, &ks, NULL), 0);
    json_object_object_add(jget(ks, "area"), "offset", json_object_new_string(off));
    json_object_object_add(keyslots, id, ks);
    json_object_array_add(digest_ks, json_object_new_string(id));
  }
  json_object_put(tmpl);
  json_object_object_add(jget(root, "digests.0"), "keyslots", digest_ks);
}

static void keyslots_32(json_object *root, uint64_t hdr_size)
{
  many_keyslots(root, hdr_size, 32);
}

static void keyslots_33(json_object *root, uint64_t hdr_size)
{
  many_keyslots(root, hdr_size, 33);
}

static void tokens_33(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  json_object *tokens = jget(root, "tokens");
  for (int i = 1; i < 33; i++) {
    char id[16];
    snprintf(id, sizeof id, "%d", i);
    json_object *tok = NULL;
    assert_int_equal(json_object_deep_copy(jget(tokens, "0"), &tok, NULL), 0);
    json_object_object_add(tokens, id, tok);
  }
}

/* n digests: 0 is the real one, the others copies of it for keyslot- and
 * segment-less digests (old volume keys), as cryptsetup allows. */
static void many_digests(json_object *root, int n)
{
  json_object *digests = jget(root, "digests");
  for (int i = 1; i < n; i++) {
    char id[16];
    snprintf(id, sizeof id, "%d", i);
    json_object *dig = NULL;
    assert_int_equal(json_object_deep_copy(jget(digests, "0"), &dig, NULL), 0);
    json_object_object_add(dig, "keyslots", json_object_new_array());
    json_object_object_add(dig, "segments", json_object_new_array());
    json_object_object_add(digests, id, dig);
  }
}

static void digests_9(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  many_digests(root, 9);
}

/* 33 segments of 4 KiB, the last dynamic, all in digest 0. */
static void segments_33(json_object *root, uint64_t hdr_size)
{
  (void)hdr_size;
  json_object *segments = jget(root, "segments");
  json_object *digest_segs = json_object_new_array();
  for (int i = 0; i < 33; i++) {
    char id[16];
    snprintf(id, sizeof id, "%d", i);
    json_object *seg = NULL;
    assert_int_equal(json_object_deep_copy(jget(segments, "0"), &seg, NULL), 0);
    char num[32];
    snprintf(num, sizeof num, "%" PRIu64, DATA_OFFSET + (uint64_t)i * 4096);
    json_object_object_add(seg, "offset", json_object_new_string(num));
    json_object_object_add(seg, "size", json_object_new_string(i == 32 ? "dynamic" : "4096"));
    json_object_object_add(segments, id, seg);
    json_object_array_add(digest_segs, json_object_new_string(id));
  }
  json_object_object_add(jget(root, "digests.0"), "segments", digest_segs);
}

/* ---- checks for rows that load ------------------------------------------ */

struct loaded {
  struct image *img;
  struct bdev *dev;
  struct luks2_hdr *hdr;
};

static void check_baseline(struct loaded *l)
{
  assert_null(luks2_load_warning(l->hdr));
  assert_int_equal(luks2_hdr_size(l->hdr), l->img->hdr_size);
  assert_int_equal(luks2_seqid(l->hdr), SEQID);
  assert_string_equal(luks2_uuid(l->hdr), TEST_UUID);
  assert_string_equal(luks2_label(l->hdr), TEST_LABEL);
  assert_int_equal(luks2_keyslots_size(l->hdr), DATA_OFFSET - 2 * l->img->hdr_size);
  int ids[LUKS2_MAX_KEYSLOTS];
  assert_int_equal(luks2_keyslot_list(l->hdr, ids, LUKS2_MAX_KEYSLOTS), 2);
  assert_int_equal(ids[0], 0);
  assert_int_equal(ids[1], 1);
  struct luks2_keyslot_info info;
  assert_int_equal(luks2_keyslot_info(l->hdr, 1, &info), 0);
  assert_string_equal(info.kdf, "argon2id");
  assert_int_equal(info.area_offset, 2 * l->img->hdr_size + AREA_SIZE);
  assert_int_equal(info.area_size, AREA_SIZE);
  assert_int_equal(luks2_token_next(l->hdr, -1, "nbdcrypt"), 0);
  struct luks2_segment seg;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_data_segment(l->hdr, &seg, &err), 0);
  assert_int_equal(seg.offset, DATA_OFFSET);
  assert_true(seg.dynamic);
  assert_int_equal(seg.sector_size, 4096);
  assert_string_equal(seg.cipher, "aes-xts-plain64");
  assert_int_equal(luks2_volume_key_size(l->hdr), 64);
}

static void check_hdr_size(struct loaded *l)
{
  assert_null(luks2_load_warning(l->hdr));
  assert_int_equal(luks2_hdr_size(l->hdr), l->img->hdr_size);
}

static void check_no_warning(struct loaded *l)
{
  assert_null(luks2_load_warning(l->hdr));
}

/* A copy on the device is intact: magic, hdr_size, seqid, own offset and a
 * checksum that verifies (computed here, not by src/luks2). */
static void verify_copy_on_device(struct bdev *dev, int i, uint64_t hdr_size, uint64_t seqid)
{
  uint64_t offset = i == 0 ? 0 : hdr_size;
  uint8_t *buf = malloc(hdr_size);
  assert_non_null(buf);
  struct nbdc_error err = {0};
  assert_int_equal(bdev_pread(dev, buf, hdr_size, offset, &err), 0);
  assert_memory_equal(buf, i == 0 ? "LUKS\xba\xbe" : "SKUL\xba\xbe", 6);
  assert_int_equal(buf[6] << 8 | buf[7], 2);
  assert_int_equal(get_be64(buf + 8), hdr_size);
  assert_int_equal(get_be64(buf + 16), seqid);
  assert_int_equal(get_be64(buf + 256), offset);
  assert_string_equal((const char *)buf + 72, "sha256");
  uint8_t stored[64];
  uint8_t digest[32];
  memcpy(stored, buf + CSUM_OFFSET, sizeof stored);
  memset(buf + CSUM_OFFSET, 0, 64);
  sha256(buf, hdr_size, digest);
  assert_memory_equal(stored, digest, sizeof digest);
  for (size_t k = sizeof digest; k < sizeof stored; k++)
    assert_int_equal(stored[k], 0);
  assert_int_equal(buf[LUKS2_BIN_HDR_SIZE], '{');
  free(buf);
}

/* Loaded from the good copy with a warning naming the bad one; luks2_write
 * then leaves both copies checksum-valid with seqid+1. */
static void check_repaired(struct loaded *l, const char *bad_copy)
{
  const char *warning = luks2_load_warning(l->hdr);
  assert_non_null(warning);
  if (!strcasestr(warning, bad_copy))
    fail_msg("load warning \"%s\" does not name the %s copy", warning, bad_copy);
  uint64_t seqid = luks2_seqid(l->hdr);
  struct nbdc_error err = {0};
  int rc = luks2_write(l->dev, l->hdr, &err);
  if (rc != 0)
    fail_msg("luks2_write failed (%d): %s", rc, err.msg);
  for (int i = 0; i < 2; i++)
    verify_copy_on_device(l->dev, i, l->img->hdr_size, seqid + 1);
}

static void check_primary_repaired(struct loaded *l)
{
  check_repaired(l, "primary");
}

static void check_secondary_repaired(struct loaded *l)
{
  check_repaired(l, "secondary");
}

static void check_secondary_found(struct loaded *l)
{
  const char *warning = luks2_load_warning(l->hdr);
  assert_non_null(warning);
  if (!strcasestr(warning, "primary"))
    fail_msg("load warning \"%s\" does not name the primary copy", warning);
  assert_int_equal(luks2_hdr_size(l->hdr), l->img->hdr_size);
  assert_string_equal(luks2_uuid(l->hdr), TEST_UUID);
}

static void check_newer_taken(struct loaded *l)
{
  assert_int_equal(luks2_seqid(l->hdr), SEQID + 1);
  json_object *tok = luks2_token_get(l->hdr, 5);
  assert_non_null(tok);
  json_object *kek_id = NULL;
  assert_true(json_object_object_get_ex(tok, "kek_id", &kek_id));
  assert_string_equal(json_object_get_string(kek_id), "kek-newer");
}

static void check_older_taken(struct loaded *l)
{
  assert_non_null(luks2_load_warning(l->hdr));
  assert_int_equal(luks2_seqid(l->hdr), SEQID);
  int ids[LUKS2_MAX_KEYSLOTS];
  assert_int_equal(luks2_keyslot_list(l->hdr, ids, LUKS2_MAX_KEYSLOTS), 2);
}

static void check_requirement_listed(struct loaded *l)
{
  const char *names[4];
  assert_int_equal(luks2_requirements(l->hdr, names, 4), 1);
  assert_string_equal(names[0], "x-future-feature");
}

/* Loads, but says why it must not be used as a plain container. */
static void check_midway_reencryption(struct loaded *l)
{
  const char *names[4];
  assert_int_equal(luks2_requirements(l->hdr, names, 4), 1);
  assert_string_equal(names[0], "online-reencrypt-v2");
  struct luks2_segment seg;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_data_segment(l->hdr, &seg, &err), -EINVAL);
  assert_true(err.msg[0] != '\0');
}

static void check_32_keyslots(struct loaded *l)
{
  int ids[LUKS2_MAX_KEYSLOTS + 1];
  assert_int_equal(luks2_keyslot_list(l->hdr, ids, LUKS2_MAX_KEYSLOTS + 1), 32);
  assert_int_equal(ids[31], 31);
}

static void check_sector_1024(struct loaded *l)
{
  struct luks2_segment seg;
  struct nbdc_error err = {0};
  assert_int_equal(luks2_data_segment(l->hdr, &seg, &err), 0);
  assert_int_equal(seg.sector_size, 1024);
}

static void check_key_size_32(struct loaded *l)
{
  assert_int_equal(luks2_volume_key_size(l->hdr), 32);
}

static void check_requirements_empty(struct loaded *l)
{
  const char *names[4];
  assert_int_equal(luks2_requirements(l->hdr, names, 4), 0);
}

/* ---- the table -------------------------------------------------------------- */

struct edit {
  const char *path;
  const char *json; /* JSON text of the new value; NULL deletes path */
};

struct vcase {
  const char *name;
  uint64_t hdr_size; /* 0: 16 KiB */
  uint64_t dev_size; /* 0: DEV_SIZE; copies are cut to fit */
  struct edit edits[4];
  void (*mutate)(json_object *root, uint64_t hdr_size);
  void (*raw)(struct image *img);
  const char *expect; /* NULL: must load; else '|'-separated words, one must occur */
  int expect_errno;   /* 0: EINVAL; ANY_ERRNO: any failure */
  void (*check)(struct loaded *l);
  bool stricter; /* cryptsetup 2.6.1 loads this one; we refuse it on purpose */
  /* Refusing at use is enough: the header may load if luks2_data_segment
   * then fails with errno and message as above. */
  bool or_at_use;
};

#define U64_OVER "\"18446744073709551616\"" /* 2^64 */
#define U64_NEAR "\"18446744073709547520\"" /* 2^64 - 4096 */
#define SEG1_JSON(off, size)                                                                       \
  "{\"type\":\"crypt\",\"offset\":\"" off "\",\"size\":\"" size "\",\"iv_tweak\":\"0\","           \
  "\"encryption\":\"aes-xts-plain64\",\"sector_size\":4096}"

#define HDR_OK(kib)                                                                                \
  {                                                                                                \
    .name = "loads_hdr_size_" #kib "k", .hdr_size = (kib)*KIB, .check = check_hdr_size             \
  }
#define HDR_JSON_SIZE_BAD(kib)                                                                     \
  {                                                                                                \
    .name = "rejects_hdr_size_" #kib "k_json_size_mismatch", .hdr_size = (kib)*KIB,                \
    .mutate = json_size_mismatch, .expect = "json_size|json area|metadata size"                    \
  }
#define SECONDARY_ONLY(kib)                                                                        \
  {                                                                                                \
    .name = "loads_secondary_at_" #kib "k_when_primary_destroyed", .hdr_size = (kib)*KIB,          \
    .raw = destroy_primary, .check = check_secondary_found                                         \
  }

static const struct vcase cases[] = {
    {.name = "loads_baseline", .check = check_baseline},

    /* binary header and checksums */
    {.name = "loads_primary_bad_csum_and_write_repairs",
     .raw = corrupt_primary_csum,
     .check = check_primary_repaired},
    {.name = "loads_secondary_bad_csum_and_write_repairs",
     .raw = corrupt_secondary_csum,
     .check = check_secondary_repaired},
    {.name = "loads_secondary_destroyed_and_write_repairs",
     .raw = destroy_secondary,
     .check = check_secondary_repaired},
    {.name = "rejects_both_csums_bad", .raw = corrupt_both_csums, .expect = "checksum"},
    {.name = "rejects_json_changed_after_checksum",
     .raw = corrupt_both_json_unsealed,
     .expect = "checksum"},
    {.name = "rejects_both_copies_destroyed",
     .raw = destroy_both,
     .expect = "luks2|header",
     .expect_errno = ENODATA},
    {.name = "rejects_bad_magic", .raw = bad_magic_both, .expect = "luks", .expect_errno = ENODATA},
    {.name = "rejects_luks1", .raw = luks1_header, .expect = "luks1", .expect_errno = ENODATA},
    {.name = "rejects_version_3",
     .raw = version_3_both,
     .expect = "version",
     .expect_errno = ANY_ERRNO},
    {.name = "rejects_hdr_size_not_allowed",
     .raw = hdr_size_field_20k_both,
     .expect = "hdr_size|header size|metadata size|20480",
     .expect_errno = ANY_ERRNO},
    {.name = "rejects_hdr_offset_wrong", .raw = hdr_offset_wrong_both, .expect = "offset"},
    {.name = "rejects_csum_alg_unknown",
     .raw = csum_alg_unknown_both,
     .expect = "nohash9|checksum|csum"},
    /* cryptsetup 2.6.1 forces a terminating NUL on the label and loads; it
     * never writes such a label, so refusing a forged one costs nothing. */
    {.name = "rejects_label_unterminated",
     .stricter = true,
     .raw = label_unterminated_both,
     .expect = "label"},
    {.name = "loads_secondary_when_primary_json_invalid_and_write_repairs",
     .raw = primary_json_invalid,
     .check = check_primary_repaired},
    {.name = "loads_older_valid_copy_over_newer_invalid_primary",
     .raw = primary_json_invalid_newer,
     .check = check_older_taken},
    {.name = "loads_older_valid_copy_over_newer_invalid_secondary",
     .raw = secondary_json_invalid_newer,
     .check = check_older_taken},
    {.name = "loads_higher_seqid_secondary", .raw = secondary_newer, .check = check_newer_taken},
    {.name = "loads_higher_seqid_primary", .raw = primary_newer, .check = check_newer_taken},
    SECONDARY_ONLY(16),
    SECONDARY_ONLY(32),
    SECONDARY_ONLY(64),
    SECONDARY_ONLY(512),
    SECONDARY_ONLY(4096),

    /* JSON area framing */
    {.name = "rejects_stray_bytes_after_json",
     .raw = stray_bytes_after_json,
     .expect = "after|trailing|nul|stray|padding|garbage"},
    {.name = "rejects_byte_right_after_json",
     .raw = stray_byte_right_after_json,
     .expect = "after|trailing|nul|stray|padding|garbage|json"},
    {.name = "rejects_json_not_starting_with_brace", .raw = json_leading_space, .expect = "json"},
    {.name = "rejects_json_top_level_array", .raw = json_top_level_array, .expect = "json"},
    {.name = "rejects_json_truncated", .raw = json_truncated, .expect = "json"},
    {.name = "rejects_json_area_empty", .raw = json_area_empty, .expect = "json"},
    {.name = "rejects_json_unterminated_fills_area",
     .raw = json_fills_area_unterminated,
     .expect = "json"},

    {.name = "loads_unknown_field_nested_16_deep", .raw = nested_16, .check = check_no_warning},
    {.name = "rejects_json_nested_5000_deep", .raw = nested_5000, .expect = "json|depth|nest"},
    {.name = "rejects_device_smaller_than_header",
     .dev_size = 8192,
     .expect = "device|end|short|size",
     .expect_errno = ANY_ERRNO},
    /* Primary intact, the device ends inside the secondary: cryptsetup
     * 2.6.1 refuses ("device too small, need at least 16777216 bytes"): the
     * metadata and keyslots areas must fit on the device. */
    {.name = "rejects_device_smaller_than_metadata",
     .dev_size = 20480,
     .expect = "small|device|end|size",
     .expect_errno = ANY_ERRNO},
    /* json_size and hdr_size: every allowed size, matching and not */
    HDR_OK(16),
    HDR_OK(32),
    HDR_OK(64),
    HDR_OK(128),
    HDR_OK(256),
    HDR_OK(512),
    HDR_OK(1024),
    HDR_OK(2048),
    HDR_OK(4096),
    HDR_JSON_SIZE_BAD(16),
    HDR_JSON_SIZE_BAD(32),
    HDR_JSON_SIZE_BAD(64),
    HDR_JSON_SIZE_BAD(128),
    HDR_JSON_SIZE_BAD(256),
    HDR_JSON_SIZE_BAD(512),
    HDR_JSON_SIZE_BAD(1024),
    HDR_JSON_SIZE_BAD(2048),
    HDR_JSON_SIZE_BAD(4096),
    {.name = "rejects_json_size_of_whole_hdr",
     .edits = {{"config.json_size", "\"16384\""}},
     .expect = "json_size"},

    /* mandatory top-level objects */
    {.name = "rejects_missing_keyslots", .edits = {{"keyslots", NULL}}, .expect = "keyslots"},
    {.name = "rejects_missing_tokens", .edits = {{"tokens", NULL}}, .expect = "tokens"},
    {.name = "rejects_missing_segments", .edits = {{"segments", NULL}}, .expect = "segments"},
    {.name = "rejects_missing_digests", .edits = {{"digests", NULL}}, .expect = "digests"},
    {.name = "rejects_missing_config", .edits = {{"config", NULL}}, .expect = "config"},
    {.name = "rejects_keyslots_not_object", .edits = {{"keyslots", "[]"}}, .expect = "keyslots"},
    {.name = "rejects_segments_null", .edits = {{"segments", "null"}}, .expect = "segments"},

    /* missing fields */
    {.name = "rejects_segment_missing_type",
     .edits = {{"segments.0.type", NULL}},
     .expect = "type"},
    {.name = "rejects_segment_missing_offset",
     .edits = {{"segments.0.offset", NULL}},
     .expect = "offset"},
    {.name = "rejects_segment_missing_size",
     .edits = {{"segments.0.size", NULL}},
     .expect = "size"},
    {.name = "rejects_segment_missing_iv_tweak",
     .edits = {{"segments.0.iv_tweak", NULL}},
     .expect = "iv_tweak"},
    {.name = "rejects_segment_missing_encryption",
     .edits = {{"segments.0.encryption", NULL}},
     .expect = "encryption"},
    {.name = "rejects_segment_missing_sector_size",
     .edits = {{"segments.0.sector_size", NULL}},
     .expect = "sector_size"},
    {.name = "rejects_keyslot_missing_type",
     .edits = {{"keyslots.0.type", NULL}},
     .expect = "type"},
    {.name = "rejects_keyslot_missing_key_size",
     .edits = {{"keyslots.0.key_size", NULL}},
     .expect = "key_size"},
    {.name = "rejects_keyslot_missing_kdf", .edits = {{"keyslots.0.kdf", NULL}}, .expect = "kdf"},
    {.name = "rejects_keyslot_missing_af", .edits = {{"keyslots.0.af", NULL}}, .expect = "af"},
    {.name = "rejects_keyslot_missing_area",
     .edits = {{"keyslots.0.area", NULL}},
     .expect = "area"},
    {.name = "rejects_kdf_missing_type",
     .edits = {{"keyslots.0.kdf.type", NULL}},
     .expect = "type"},
    {.name = "rejects_kdf_missing_salt",
     .edits = {{"keyslots.0.kdf.salt", NULL}},
     .expect = "salt"},
    {.name = "rejects_pbkdf2_missing_hash",
     .edits = {{"keyslots.0.kdf.hash", NULL}},
     .expect = "hash"},
    {.name = "rejects_pbkdf2_missing_iterations",
     .edits = {{"keyslots.0.kdf.iterations", NULL}},
     .expect = "iterations"},
    {.name = "rejects_argon2_missing_memory",
     .edits = {{"keyslots.1.kdf.memory", NULL}},
     .expect = "memory"},
    {.name = "rejects_af_missing_hash", .edits = {{"keyslots.0.af.hash", NULL}}, .expect = "hash"},
    {.name = "rejects_af_missing_stripes",
     .edits = {{"keyslots.0.af.stripes", NULL}},
     .expect = "stripes"},
    {.name = "rejects_area_missing_offset",
     .edits = {{"keyslots.0.area.offset", NULL}},
     .expect = "offset"},
    {.name = "rejects_area_missing_size",
     .edits = {{"keyslots.0.area.size", NULL}},
     .expect = "size"},
    {.name = "rejects_area_missing_encryption",
     .edits = {{"keyslots.0.area.encryption", NULL}},
     .expect = "encryption"},
    {.name = "rejects_area_missing_key_size",
     .edits = {{"keyslots.0.area.key_size", NULL}},
     .expect = "key_size"},
    {.name = "rejects_digest_missing_type", .edits = {{"digests.0.type", NULL}}, .expect = "type"},
    {.name = "rejects_digest_missing_keyslots",
     .edits = {{"digests.0.keyslots", NULL}},
     .expect = "keyslots"},
    {.name = "rejects_digest_missing_segments",
     .edits = {{"digests.0.segments", NULL}},
     .expect = "segments"},
    {.name = "rejects_digest_missing_salt",
     .stricter = true,
     .edits = {{"digests.0.salt", NULL}},
     .expect = "salt"},
    {.name = "rejects_digest_missing_digest",
     .stricter = true,
     .edits = {{"digests.0.digest", NULL}},
     .expect = "digest"},
    {.name = "rejects_digest_missing_hash",
     .stricter = true,
     .edits = {{"digests.0.hash", NULL}},
     .expect = "hash"},
    {.name = "rejects_digest_missing_iterations",
     .stricter = true,
     .edits = {{"digests.0.iterations", NULL}},
     .expect = "iterations"},
    {.name = "rejects_config_missing_json_size",
     .edits = {{"config.json_size", NULL}},
     .expect = "json_size"},
    {.name = "rejects_config_missing_keyslots_size",
     .edits = {{"config.keyslots_size", NULL}},
     .expect = "keyslots_size"},
    {.name = "rejects_token_missing_type", .edits = {{"tokens.0.type", NULL}}, .expect = "type"},
    {.name = "rejects_token_missing_keyslots",
     .edits = {{"tokens.0.keyslots", NULL}},
     .expect = "keyslots"},

    /* wrong JSON types: decimal strings given as integers */
    {.name = "rejects_segment_offset_integer",
     .edits = {{"segments.0.offset", "16777216"}},
     .expect = "offset"},
    {.name = "rejects_segment_size_integer",
     .edits = {{"segments.0.size", "1048576"}},
     .expect = "size"},
    {.name = "rejects_segment_iv_tweak_integer",
     .edits = {{"segments.0.iv_tweak", "0"}},
     .expect = "iv_tweak"},
    {.name = "rejects_area_offset_integer",
     .edits = {{"keyslots.0.area.offset", "32768"}},
     .expect = "offset"},
    {.name = "rejects_area_size_integer",
     .edits = {{"keyslots.0.area.size", "258048"}},
     .expect = "size"},
    {.name = "rejects_json_size_integer",
     .edits = {{"config.json_size", "12288"}},
     .expect = "json_size"},
    {.name = "rejects_keyslots_size_integer",
     .edits = {{"config.keyslots_size", "16744448"}},
     .expect = "keyslots_size"},
    /* ... and integers given as strings */
    {.name = "rejects_keyslot_key_size_string",
     .edits = {{"keyslots.0.key_size", "\"64\""}},
     .expect = "key_size"},
    {.name = "rejects_area_key_size_string",
     .edits = {{"keyslots.0.area.key_size", "\"64\""}},
     .expect = "key_size"},
    {.name = "rejects_sector_size_string",
     .edits = {{"segments.0.sector_size", "\"4096\""}},
     .expect = "sector_size"},
    {.name = "rejects_kdf_iterations_string",
     .edits = {{"keyslots.0.kdf.iterations", "\"1000\""}},
     .expect = "iterations"},
    {.name = "rejects_digest_iterations_string",
     .stricter = true,
     .edits = {{"digests.0.iterations", "\"1000\""}},
     .expect = "iterations"},
    {.name = "rejects_argon2_time_string",
     .edits = {{"keyslots.1.kdf.time", "\"4\""}},
     .expect = "time"},
    {.name = "rejects_argon2_cpus_string",
     .edits = {{"keyslots.1.kdf.cpus", "\"4\""}},
     .expect = "cpus"},
    {.name = "rejects_af_stripes_string",
     .edits = {{"keyslots.0.af.stripes", "\"4000\""}},
     .expect = "stripes"},
    {.name = "rejects_keyslot_priority_string",
     .stricter = true,
     .edits = {{"keyslots.0.priority", "\"1\""}},
     .expect = "priority"},
    {.name = "rejects_digest_keyslots_integers",
     .edits = {{"digests.0.keyslots", "[0,1]"}},
     .expect = "keyslot"},
    {.name = "rejects_token_keyslots_string",
     .edits = {{"tokens.0.keyslots", "\"1\""}},
     .expect = "keyslots"},
    {.name = "rejects_segment_offset_hex",
     .edits = {{"segments.0.offset", "\"0x1000000\""}},
     .expect = "offset"},
    {.name = "rejects_segment_offset_empty",
     .edits = {{"segments.0.offset", "\"\""}},
     .expect = "offset"},
    {.name = "rejects_segment_size_with_suffix",
     .edits = {{"segments.0.size", "\"1048576k\""}},
     .expect = "size"},

    /* uint64 overflow, negatives, sums that wrap */
    {.name = "rejects_segment_offset_2_64",
     .edits = {{"segments.0.offset", U64_OVER}},
     .expect = "offset"},
    {.name = "rejects_segment_size_2_64",
     .edits = {{"segments.0.size", U64_OVER}},
     .expect = "size"},
    {.name = "rejects_segment_iv_tweak_2_64",
     .edits = {{"segments.0.iv_tweak", U64_OVER}},
     .expect = "iv_tweak"},
    {.name = "rejects_area_offset_2_64",
     .edits = {{"keyslots.0.area.offset", U64_OVER}},
     .expect = "offset"},
    {.name = "rejects_area_size_2_64",
     .edits = {{"keyslots.0.area.size", U64_OVER}},
     .expect = "size"},
    {.name = "rejects_json_size_2_64",
     .edits = {{"config.json_size", U64_OVER}},
     .expect = "json_size"},
    {.name = "rejects_keyslots_size_2_64",
     .edits = {{"config.keyslots_size", U64_OVER}},
     .expect = "keyslots_size"},
    {.name = "rejects_segment_offset_negative",
     .edits = {{"segments.0.offset", "\"-16777216\""}},
     .expect = "offset"},
    {.name = "rejects_area_size_negative",
     .edits = {{"keyslots.0.area.size", "\"-258048\""}},
     .expect = "size"},
    {.name = "rejects_segment_offset_plus_size_wraps",
     .stricter = true,
     .edits = {{"segments.0.offset", U64_NEAR}, {"segments.0.size", "\"8192\""}},
     .expect = "segment|offset|size|overflow"},
    {.name = "rejects_area_offset_plus_size_wraps",
     .edits = {{"keyslots.1.area.offset", U64_NEAR}},
     .expect = "area|offset|keyslot|overflow"},
    {.name = "rejects_keyslots_size_wraps_after_header",
     .edits = {{"config.keyslots_size", U64_NEAR}},
     .expect = "keyslots_size|keyslots area"},
    {.name = "rejects_key_size_negative",
     .edits = {{"keyslots.0.key_size", "-64"}},
     .expect = "key_size"},
    {.name = "rejects_sector_size_over_uint32",
     .edits = {{"segments.0.sector_size", "4294971392"}},
     .expect = "sector_size"},
    {.name = "rejects_kdf_iterations_negative",
     .stricter = true,
     .edits = {{"keyslots.0.kdf.iterations", "-1000"}},
     .expect = "iterations"},
    {.name = "rejects_kdf_iterations_over_uint32",
     .stricter = true,
     .edits = {{"keyslots.0.kdf.iterations", "4294968296"}},
     .expect = "iterations"},

    /* keyslot areas and the keyslots area */
    {.name = "rejects_overlapping_keyslot_areas",
     .edits = {{"keyslots.1.area.offset", "\"36864\""}},
     .expect = "overlap"},
    {.name = "rejects_identical_keyslot_areas",
     .edits = {{"keyslots.1.area.offset", "\"32768\""}},
     .expect = "overlap"},
    {.name = "rejects_keyslot_area_after_keyslots_area",
     .edits = {{"keyslots.1.area.offset", "\"16777216\""}},
     .expect = "area"},
    {.name = "rejects_keyslot_area_crossing_keyslots_end",
     .edits = {{"keyslots.1.area.offset", "\"16773120\""}},
     .expect = "area"},
    {.name = "rejects_keyslot_area_in_secondary_header",
     .edits = {{"keyslots.1.area.offset", "\"16384\""}},
     .expect = "area"},
    {.name = "rejects_area_smaller_than_key_material",
     .stricter = true,
     .edits = {{"keyslots.1.area.size", "\"4096\""}},
     .expect = "size"},
    {.name = "rejects_area_offset_unaligned",
     .stricter = true,
     .edits = {{"keyslots.1.area.offset", "\"290817\""}},
     .expect = "offset|align"},
    {.name = "rejects_keyslots_size_unaligned",
     .edits = {{"config.keyslots_size", "\"16744449\""}},
     .expect = "keyslots_size"},
    {.name = "rejects_keyslots_size_over_128m",
     .dev_size = 136 * MIB,
     .edits = {{"config.keyslots_size", "\"134221824\""}, {"segments.0.offset", "\"134254592\""}},
     .expect = "keyslots_size"},
    {.name = "rejects_keyslots_area_into_segment",
     .edits = {{"config.keyslots_size", "\"16748544\""}},
     .expect = "keyslots|segment|overlap"},

    /* segments */
    /* cryptsetup's detached-header layout; on our single device the data
     * would overlay the header, so it must never be used as the data segment. */
    {.name = "rejects_segment_offset_zero",
     .stricter = true,
     .or_at_use = true,
     .edits = {{"segments.0.offset", "\"0\""}},
     .expect = "offset|segment"},
    /* A "backup-" flag (cryptsetup re-encryption) must not exempt the only
     * data segment from the layout rules. */
    {.name = "rejects_backup_flag_on_data_segment_over_header",
     .or_at_use = true,
     .edits = {{"segments.0.offset", "\"0\""}, {"segments.0.flags", "[\"backup-final\"]"}},
     .expect = "offset|segment|backup|header"},
    {.name = "rejects_backup_segment_overlapping_data_segment",
     .stricter = true,
     .edits = {{"segments.0.size", "\"1048576\""},
               {"segments.1", "{\"type\":\"crypt\",\"offset\":\"16777216\",\"size\":\"dynamic\","
                              "\"iv_tweak\":\"0\",\"encryption\":\"aes-xts-plain64\","
                              "\"sector_size\":4096,\"flags\":[\"backup-final\"]}"},
               {"digests.0.segments", "[\"0\",\"1\"]"}},
     .or_at_use = true,
     .expect = "segment|backup|reencrypt|overlap"},
    {.name = "rejects_segment_offset_in_keyslots_area",
     .edits = {{"segments.0.offset", "\"65536\""}},
     .expect = "offset|segment|keyslots"},
    {.name = "rejects_segment_offset_unaligned",
     .edits = {{"segments.0.offset", "\"16777217\""}},
     .expect = "offset"},
    {.name = "rejects_segment_size_not_sector_multiple",
     .edits = {{"segments.0.size", "\"1049088\""}},
     .expect = "size|sector"},
    {.name = "rejects_segment_size_unaligned",
     .edits = {{"segments.0.size", "\"1000\""}, {"segments.0.sector_size", "512"}},
     .expect = "size"},
    {.name = "loads_two_adjacent_segments",
     .edits = {{"segments.0.size", "\"1048576\""},
               {"segments.1", SEG1_JSON("17825792", "dynamic")},
               {"digests.0.segments", "[\"0\",\"1\"]"}},
     .check = check_no_warning},
    {.name = "rejects_overlapping_segments",
     .edits = {{"segments.0.size", "\"1048576\""},
               {"segments.1", SEG1_JSON("17301504", "dynamic")},
               {"digests.0.segments", "[\"0\",\"1\"]"}},
     .expect = "overlap"},
    {.name = "rejects_dynamic_segment_not_last",
     .edits = {{"segments.1", SEG1_JSON("17825792", "1048576")},
               {"digests.0.segments", "[\"0\",\"1\"]"}},
     .expect = "dynamic"},
    {.name = "rejects_segment_size_zero",
     .edits = {{"segments.0.size", "\"0\""}},
     .expect = "size"},

    /* dangling references */
    {.name = "rejects_digest_names_missing_keyslot",
     .edits = {{"digests.0.keyslots", "[\"0\",\"1\",\"7\"]"}},
     .expect = "keyslot"},
    {.name = "rejects_digest_names_missing_segment",
     .edits = {{"digests.0.segments", "[\"0\",\"3\"]"}},
     .expect = "segment"},
    {.name = "rejects_token_names_missing_keyslot",
     .edits = {{"tokens.0.keyslots", "[\"9\"]"}},
     .expect = "keyslot"},
    {.name = "rejects_keyslot_in_no_digest",
     .edits = {{"digests.0.keyslots", "[\"0\"]"}},
     .expect = "digest"},
    {.name = "rejects_keyslot_in_two_digests",
     .edits = {{"digests.1", "{\"type\":\"pbkdf2\",\"keyslots\":[\"1\"],\"segments\":[],"
                             "\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"" SALT_B64 "\","
                             "\"digest\":\"cRvQ9tOpWj5so1TrEZZkf3ZZDvVTQm2FjNSwrtKUIrk=\"}"}},
     .expect = "digest"},
    {.name = "rejects_crypt_segment_in_no_digest",
     .edits = {{"digests.0.segments", "[]"}},
     .expect = "segment"},

    /* ids and counts */
    {.name = "rejects_keyslot_id_word", .mutate = keyslot_id_word, .expect = "one"},
    {.name = "rejects_keyslot_id_negative", .mutate = keyslot_id_negative, .expect = "-1"},
    {.name = "rejects_keyslot_id_32", .stricter = true, .mutate = keyslot_id_32, .expect = "32"},
    {.name = "rejects_segment_id_hex", .mutate = segment_id_hex, .expect = "0x0"},
    {.name = "rejects_token_id_fraction", .mutate = token_id_fraction, .expect = "1.5"},
    {.name = "rejects_token_id_32", .stricter = true, .mutate = token_id_32, .expect = "32"},
    {.name = "rejects_digest_id_empty",
     .stricter = true,
     .mutate = digest_id_empty,
     .expect = "digest"},
    {.name = "loads_32_keyslots", .mutate = keyslots_32, .check = check_32_keyslots},
    {.name = "rejects_33_keyslots", .stricter = true, .mutate = keyslots_33, .expect = "keyslot"},
    {.name = "rejects_33_tokens", .stricter = true, .mutate = tokens_33, .expect = "token"},
    {.name = "rejects_9_digests", .stricter = true, .mutate = digests_9, .expect = "digest"},
    {.name = "rejects_33_segments", .stricter = true, .mutate = segments_33, .expect = "segment"},

    /* allow-lists: cipher, key size, sector size */
    {.name = "rejects_segment_cipher_null",
     .stricter = true,
     .edits = {{"segments.0.encryption", "\"cipher_null-ecb\""}},
     .expect = "cipher_null-ecb"},
    {.name = "rejects_segment_cipher_cbc_essiv",
     .stricter = true,
     .edits = {{"segments.0.encryption", "\"aes-cbc-essiv:sha256\""}},
     .expect = "aes-cbc-essiv:sha256"},
    {.name = "rejects_area_cipher_null",
     .stricter = true,
     .edits = {{"keyslots.0.area.encryption", "\"cipher_null-ecb\""}},
     .expect = "cipher_null-ecb"},
    {.name = "rejects_key_size_48",
     .stricter = true,
     .edits = {{"keyslots.0.key_size", "48"}, {"keyslots.1.key_size", "48"}},
     .expect = "key_size|key size"},
    {.name = "rejects_area_key_size_48",
     .stricter = true,
     .edits = {{"keyslots.0.area.key_size", "48"}},
     .expect = "key_size|key size"},
    {.name = "loads_key_size_32",
     .edits = {{"keyslots.0.key_size", "32"}, {"keyslots.1.key_size", "32"}},
     .check = check_key_size_32},
    {.name = "rejects_sector_size_256",
     .edits = {{"segments.0.sector_size", "256"}},
     .expect = "sector_size|sector size"},
    {.name = "rejects_sector_size_8192",
     .stricter = true,
     .edits = {{"segments.0.sector_size", "8192"}},
     .expect = "sector_size|sector size"},
    {.name = "rejects_sector_size_3000",
     .edits = {{"segments.0.sector_size", "3000"}},
     .expect = "sector_size|sector size"},
    {.name = "loads_sector_size_1024",
     .edits = {{"segments.0.sector_size", "1024"}},
     .check = check_sector_1024},
    {.name = "loads_sector_size_512", .edits = {{"segments.0.sector_size", "512"}}},

    /* kdf and af */
    {.name = "rejects_kdf_type_unknown",
     .stricter = true,
     .edits = {{"keyslots.0.kdf.type", "\"scrypt\""}},
     .expect = "scrypt|kdf"},
    {.name = "rejects_pbkdf2_iterations_0",
     .stricter = true,
     .edits = {{"keyslots.0.kdf.iterations", "0"}},
     .expect = "iterations"},
    {.name = "rejects_pbkdf2_hash_unknown",
     .stricter = true,
     .edits = {{"keyslots.0.kdf.hash", "\"nohash9\""}},
     .expect = "nohash9|hash"},
    {.name = "rejects_argon2_memory_4tib",
     .stricter = true,
     .edits = {{"keyslots.1.kdf.memory", "4294967296"}},
     .expect = "memory"},
    {.name = "rejects_argon2_time_0",
     .stricter = true,
     .edits = {{"keyslots.1.kdf.time", "0"}},
     .expect = "time"},
    {.name = "rejects_argon2_cpus_0",
     .stricter = true,
     .edits = {{"keyslots.1.kdf.cpus", "0"}},
     .expect = "cpus"},
    {.name = "loads_argon2i", .edits = {{"keyslots.1.kdf.type", "\"argon2i\""}}},
    {.name = "rejects_af_type_unknown",
     .edits = {{"keyslots.0.af.type", "\"luks9\""}},
     .expect = "luks9|af"},
    /* cryptsetup 2.6.1 loads, dumps AND unlocks a keyslot whose af.stripes is
     * 3999 (checked with luksDump/--test-passphrase): it validates only that
     * stripes is an integer and always merges 4000 stripes.  We follow it, so
     * such a header is not locked out; the unlock path must still use 4000. */
    {.name = "loads_af_stripes_3999", .edits = {{"keyslots.0.af.stripes", "3999"}}},

    /* tokens and requirements */
    {.name = "rejects_token_type_reserved_prefix",
     .stricter = true,
     .edits = {{"tokens.0.type", "\"luks2-foo\""}},
     .expect = "luks2-"},
    {.name = "rejects_nbdcrypt_token_missing_kek_id",
     .stricter = true,
     .edits = {{"tokens.0.kek_id", NULL}},
     .expect = "kek_id"},
    {.name = "rejects_nbdcrypt_token_missing_provider",
     .stricter = true,
     .edits = {{"tokens.0.provider", NULL}},
     .expect = "provider"},
    {.name = "rejects_nbdcrypt_token_bad_mode",
     .stricter = true,
     .edits = {{"tokens.0.mode", "\"plaintext\""}},
     .expect = "mode"},
    /* cryptsetup's own built-in token type must keep loading. */
    {.name = "loads_luks2_keyring_token",
     .edits = {{"tokens.1", "{\"type\":\"luks2-keyring\",\"keyslots\":[\"0\"],"
                            "\"key_description\":\"nbdcrypt:test\"}"}}},
    {.name = "loads_foreign_token_type",
     .edits = {{"tokens.1", "{\"type\":\"systemd-tpm2\","
                            "\"keyslots\":[\"0\"],\"x\":1}"}}},
    {.name = "rejects_requirements_not_object",
     .edits = {{"config.requirements", "[\"online-reencrypt\"]"}},
     .expect = "requirements"},
    {.name = "rejects_requirements_mandatory_not_array",
     .edits = {{"config.requirements", "{\"mandatory\":\"online-reencrypt\"}"}},
     .expect = "mandatory|requirements"},
    {.name = "rejects_requirements_mandatory_not_strings",
     .edits = {{"config.requirements", "{\"mandatory\":[1]}"}},
     .expect = "mandatory|requirements"},
    /* luksDump still works on a header with a requirement it does not know;
     * refusing to USE it is the caller's job, with the name in hand. */
    {.name = "loads_unknown_mandatory_requirement",
     .edits = {{"config.requirements", "{\"mandatory\":[\"x-future-feature\"]}"}},
     .check = check_requirement_listed},
    {.name = "loads_requirements_empty",
     .edits = {{"config.requirements", "{\"mandatory\":[]}"}},
     .check = check_requirements_empty},

    {.name = "loads_cryptsetup_encrypt_in_place_midway",
     .dev_size = 64 * MIB,
     .raw = cryptsetup_encrypt_midway_json,
     .check = check_midway_reencryption},
    /* unknown things are accepted */
    {.name = "loads_unknown_top_level_and_fields",
     .edits = {{"x-vendor", "{\"a\":[1,2,3]}"},
               {"segments.0.x-note", "\"hello\""},
               {"keyslots.0.x-note", "{}"},
               {"config.x-note", "null"}},
     .check = check_no_warning},
};

/* ---- runner ------------------------------------------------------------------ */

static bool any_word_in(const char *msg, const char *words)
{
  char buf[256];
  snprintf(buf, sizeof buf, "%s", words);
  char *save = NULL;
  for (char *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
    if (strcasestr(msg, w))
      return true;
  return false;
}

/* Bytes of copy i that fit on a device of dev_size bytes. */
static uint64_t copy_len_on_device(const struct image *img, int i, uint64_t dev_size)
{
  if (img->offset[i] >= dev_size)
    return 0;
  uint64_t room = dev_size - img->offset[i];
  return img->hdr_size < room ? img->hdr_size : room;
}

static void dump_image(const struct vcase *c, const struct image *img, uint64_t dev_size)
{
  const char *dir = getenv("NBDCRYPT_VALIDATION_DUMP");
  if (!dir)
    return;
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.img", dir, c->name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)dev_size), 0);
  for (int i = 0; i < 2; i++) {
    uint64_t len = copy_len_on_device(img, i, dev_size);
    assert_int_equal(pwrite(fd, img->copy[i], len, (off_t)img->offset[i]), (ssize_t)len);
  }
  close(fd);
  snprintf(path, sizeof path, "%s/cases.txt", dir);
  FILE *list = fopen(path, "a");
  assert_non_null(list);
  fprintf(list, "%s %s\n", c->name, !c->expect ? "load" : c->stricter ? "stricter" : "reject");
  fclose(list);
}

/* Everything a case allocates, freed in teardown so that a failing case
 * (cmocka longjmps out of it) leaks nothing under ASan. */
struct run {
  const struct vcase *c;
  struct image img;
  struct bdev *dev;
  struct luks2_hdr *hdr;
};

static int case_setup(void **state)
{
  struct run *r = calloc(1, sizeof *r);
  if (!r)
    return -1;
  r->c = *state;
  *state = r;
  return 0;
}

static int case_teardown(void **state)
{
  struct run *r = *state;
  luks2_free(r->hdr);
  bdev_close(r->dev);
  for (int i = 0; i < 2; i++)
    free(r->img.copy[i]);
  free(r->img.text);
  free(r);
  return 0;
}

static void run_case(void **state)
{
  struct run *r = *state;
  const struct vcase *c = r->c;
  struct image *img = &r->img;
  img->hdr_size = c->hdr_size ? c->hdr_size : LUKS2_DEFAULT_HDR_SIZE;
  img->seqid[0] = img->seqid[1] = SEQID;
  img->offset[1] = img->hdr_size;

  json_object *root = baseline_json(img->hdr_size);
  for (size_t i = 0; i < sizeof c->edits / sizeof c->edits[0] && c->edits[i].path; i++)
    jset(root, c->edits[i].path, c->edits[i].json);
  if (c->mutate)
    c->mutate(root, img->hdr_size);
  img->text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
  for (int i = 0; i < 2; i++)
    img->copy[i] = malloc(img->hdr_size);
  if (!img->text || !img->copy[0] || !img->copy[1]) {
    json_object_put(root);
    fail_msg("out of memory");
  }
  for (int i = 0; i < 2; i++)
    img_build(img, i, root);
  json_object_put(root);
  if (c->raw)
    c->raw(img);
  uint64_t dev_size = c->dev_size ? c->dev_size : DEV_SIZE;
  dump_image(c, img, dev_size);

  struct nbdc_error err = {0};
  int rc = bdev_open_memory(dev_size, &r->dev, &err);
  if (rc != 0)
    fail_msg("bdev_open_memory: %s", err.msg);
  for (int i = 0; i < 2; i++) {
    uint64_t len = copy_len_on_device(img, i, dev_size);
    if (len)
      assert_int_equal(bdev_pwrite(r->dev, img->copy[i], len, img->offset[i], &err), 0);
  }

  nbdc_error_clear(&err);
  rc = luks2_load(r->dev, &r->hdr, &err);
  if (!c->expect) {
    if (rc != 0)
      fail_msg("%s: must load, failed (%d): %s", c->name, rc, err.msg);
    assert_non_null(r->hdr);
    if (c->check) {
      struct loaded l = {.img = img, .dev = r->dev, .hdr = r->hdr};
      c->check(&l);
    }
    return;
  }
  if (rc == 0 && c->or_at_use) {
    struct luks2_segment seg;
    rc = luks2_data_segment(r->hdr, &seg, &err);
    if (rc == 0)
      fail_msg("%s: must be refused (%s) at load or by luks2_data_segment, but neither did",
               c->name, c->expect);
  }
  if (rc == 0)
    fail_msg("%s: must fail (%s), but loaded", c->name, c->expect);
  int want = c->expect_errno == 0 ? EINVAL : c->expect_errno;
  if (want != ANY_ERRNO && rc != -want)
    fail_msg("%s: errno %d (want %d), message: %s", c->name, -rc, want, err.msg);
  if (!any_word_in(err.msg, c->expect))
    fail_msg("%s: message \"%s\" names none of \"%s\"", c->name, err.msg, c->expect);
}

int main(void)
{
  size_t n = sizeof cases / sizeof cases[0];
  struct CMUnitTest *tests = calloc(n, sizeof *tests);
  if (!tests)
    return 1;
  for (size_t i = 0; i < n; i++)
    tests[i] = (struct CMUnitTest){.name = cases[i].name,
                                   .test_func = run_case,
                                   .setup_func = case_setup,
                                   .teardown_func = case_teardown,
                                   .initial_state = (void *)&cases[i]};
  int failed = _cmocka_run_group_tests("luks2_validation", tests, n, NULL, NULL);
  free(tests);
  return failed;
}
