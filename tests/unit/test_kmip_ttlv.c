/* TTLV codec: round trips of every type, the reference Get request byte for
 * byte, and malformed input that must be refused without reading outside it. */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/kmip.h"
#include "kmip/internal.h"

/* reference/kmip.md: Get request for unique id "1" at protocol 1.2 */
static const uint8_t get_request_ref[120] = {
    0x42, 0x00, 0x78, 0x01, 0x00, 0x00, 0x00, 0x70, /* Request Message */
    0x42, 0x00, 0x77, 0x01, 0x00, 0x00, 0x00, 0x38, /* Request Header */
    0x42, 0x00, 0x69, 0x01, 0x00, 0x00, 0x00, 0x20, /* Protocol Version */
    0x42, 0x00, 0x6A, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x42, 0x00, 0x6B, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
    0x42, 0x00, 0x0D, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x42, 0x00, 0x0F, 0x01, 0x00, 0x00, 0x00, 0x28, /* Batch Item */
    0x42, 0x00, 0x5C, 0x05, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00,
    0x42, 0x00, 0x79, 0x01, 0x00, 0x00, 0x00, 0x10, /* Request Payload */
    0x42, 0x00, 0x94, 0x07, 0x00, 0x00, 0x00, 0x01, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void test_get_request_matches_reference(void **state)
{
  (void)state;
  struct kmip_enc enc;
  kmip_enc_init(&enc, 0);
  kmip_msg_begin_request(&enc, 1, 2, 1);
  kmip_msg_begin_item(&enc, KMIP_OP_GET, 0);
  kmip_enc_text(&enc, KMIP_TAG_UNIQUE_IDENTIFIER, "1", 1);
  kmip_msg_end_item(&enc);
  kmip_msg_end_request(&enc);
  struct nbdc_error err = {0};
  assert_int_equal(kmip_enc_finish(&enc, &err), 0);
  assert_int_equal(enc.len, sizeof get_request_ref);
  assert_memory_equal(enc.data, get_request_ref, sizeof get_request_ref);
  kmip_enc_free(&enc);
}

/* kB of the mapping holding addr that are locked in memory (/proc/self/smaps). */
static long locked_kib(const void *addr)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  assert_non_null(f);
  char line[512];
  bool inside = false;
  long locked = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[8];
    /* a mapping's first line: "lo-hi perms offset dev inode [path]" */
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) {
      inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
      continue;
    }
    if (inside && sscanf(line, "Locked: %ld kB", &locked) == 1)
      break;
  }
  fclose(f);
  return locked;
}

/* Requests may carry a secret to encrypt (kms-wrapped keyslots): the
 * encoder's buffer is locked memory, also after it grew. */
static void test_encoder_buffer_is_locked(void **state)
{
  (void)state;
  static const uint8_t secret[32] = {0x5e};
  struct kmip_enc enc;
  kmip_enc_init(&enc, 0);
  kmip_enc_bytes(&enc, KMIP_TAG_DATA, secret, sizeof secret);
  assert_true(locked_kib(enc.data) >= 4);
  uint8_t big[5000] = {0};
  kmip_enc_bytes(&enc, KMIP_TAG_DATA, big, sizeof big); /* grows past the first 256 bytes */
  assert_true(enc.cap >= 5000);
  assert_true(locked_kib(enc.data) >= 8);
  kmip_enc_free(&enc);
  assert_null(enc.data);
}

static void test_round_trip_every_type(void **state)
{
  (void)state;
  static const uint8_t bytes[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  static const uint8_t big_neg[3] = {0xFF, 0x00, 0x01}; /* -65535 */
  static const uint8_t big_pos[9] = {0x01, 0, 0, 0, 0, 0, 0, 0, 0};
  struct kmip_enc enc;
  kmip_enc_init(&enc, 0);
  kmip_enc_begin(&enc, 0x540001);
  kmip_enc_integer(&enc, 0x540002, -7);
  kmip_enc_integer(&enc, 0x540002, INT32_MAX);
  kmip_enc_long(&enc, 0x540003, INT64_MIN);
  kmip_enc_big(&enc, 0x540004, big_neg, sizeof big_neg);
  kmip_enc_big(&enc, 0x540004, big_pos, sizeof big_pos);
  kmip_enc_enum(&enc, 0x540005, 0xFFFFFFFFu);
  kmip_enc_bool(&enc, 0x540006, true);
  kmip_enc_bool(&enc, 0x540006, false);
  kmip_enc_text(&enc, 0x540007, "h\xc3\xa9llo", 6);
  kmip_enc_text(&enc, 0x540007, "", 0);
  kmip_enc_bytes(&enc, 0x540008, bytes, sizeof bytes);
  kmip_enc_bytes(&enc, 0x540008, bytes, 8);
  kmip_enc_datetime(&enc, 0x540009, 1700000000);
  kmip_enc_interval(&enc, 0x54000A, 86400);
  kmip_enc_begin(&enc, 0x54000B); /* empty structure */
  kmip_enc_end(&enc);
  kmip_enc_end(&enc);
  struct nbdc_error err = {0};
  assert_int_equal(kmip_enc_finish(&enc, &err), 0);
  assert_int_equal(enc.len % 8, 0);

  struct kmip_tree *tree;
  assert_int_equal(kmip_decode(enc.data, enc.len, 0, &tree, &err), 0);
  const struct kmip_item *root = kmip_tree_root(tree);
  assert_int_equal(root->tag, 0x540001);
  assert_int_equal(root->type, KMIP_TYPE_STRUCTURE);
  assert_int_equal(root->length, enc.len - 8);
  const struct kmip_item *it = root->child;
  assert_int_equal(it->type, KMIP_TYPE_INTEGER);
  assert_int_equal(it->integer, -7);
  it = it->next;
  assert_int_equal(it->integer, INT32_MAX);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_LONG_INTEGER);
  assert_true(it->integer == INT64_MIN);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_BIG_INTEGER);
  assert_int_equal(it->length, 8);
  static const uint8_t big_neg_enc[8] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01};
  assert_memory_equal(it->bytes, big_neg_enc, 8);
  it = it->next;
  assert_int_equal(it->length, 16);
  assert_int_equal(it->bytes[0], 0);
  assert_int_equal(it->bytes[7], 1);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_ENUMERATION);
  assert_true(it->integer == 0xFFFFFFFFll);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_BOOLEAN);
  assert_int_equal(it->integer, 1);
  it = it->next;
  assert_int_equal(it->integer, 0);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_TEXT_STRING);
  assert_int_equal(it->length, 6);
  assert_memory_equal(it->bytes, "h\xc3\xa9llo", 6);
  it = it->next;
  assert_int_equal(it->length, 0);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_BYTE_STRING);
  assert_int_equal(it->length, 11);
  assert_memory_equal(it->bytes, bytes, 11);
  it = it->next;
  assert_int_equal(it->length, 8);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_DATE_TIME);
  assert_int_equal(it->integer, 1700000000);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_INTERVAL);
  assert_int_equal(it->integer, 86400);
  it = it->next;
  assert_int_equal(it->type, KMIP_TYPE_STRUCTURE);
  assert_null(it->child);
  assert_null(it->next);
  assert_int_equal(kmip_item_find(root, 0x540009)->integer, 1700000000);
  assert_int_equal(kmip_item_next_same(kmip_item_find(root, 0x540006))->integer, 0);
  assert_null(kmip_item_find(root, 0x54FFFF));

  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

static void test_encoder_errors(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct kmip_enc enc;

  kmip_enc_init(&enc, 0);
  kmip_enc_begin(&enc, 0x420078);
  assert_int_equal(kmip_enc_finish(&enc, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "unclosed"));
  kmip_enc_free(&enc);

  kmip_enc_init(&enc, 0);
  kmip_enc_end(&enc);
  assert_int_equal(kmip_enc_finish(&enc, &err), -EINVAL);
  kmip_enc_free(&enc);

  kmip_enc_init(&enc, 0);
  for (int i = 0; i < KMIP_MAX_DEPTH + 1; i++)
    kmip_enc_begin(&enc, 0x420001 + (uint32_t)i);
  assert_int_equal(kmip_enc_finish(&enc, &err), -E2BIG);
  kmip_enc_free(&enc);

  kmip_enc_init(&enc, 64);
  uint8_t big[100] = {0};
  kmip_enc_bytes(&enc, KMIP_TAG_DATA, big, sizeof big);
  assert_int_equal(kmip_enc_finish(&enc, &err), -EMSGSIZE);
  kmip_enc_free(&enc);

  kmip_enc_init(&enc, 0);
  kmip_enc_text(&enc, KMIP_TAG_NAME_VALUE, "a\0b", 3);
  assert_int_equal(kmip_enc_finish(&enc, &err), -EINVAL);
  kmip_enc_free(&enc);
  kmip_enc_free(&enc); /* twice is harmless */
}

/* A Get response as pykmip-server sends it (protocol 1.2, time stamp,
 * AES-256 raw key). */
static void build_get_response(struct kmip_enc *enc)
{
  uint8_t key[32];
  for (int i = 0; i < 32; i++)
    key[i] = (uint8_t)(0xA0 + i);
  kmip_enc_init(enc, 0);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_MESSAGE);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_HEADER);
  kmip_enc_begin(enc, KMIP_TAG_PROTOCOL_VERSION);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MINOR, 2);
  kmip_enc_end(enc);
  kmip_enc_datetime(enc, KMIP_TAG_TIME_STAMP, 1700000000);
  kmip_enc_integer(enc, KMIP_TAG_BATCH_COUNT, 1);
  kmip_enc_end(enc);
  kmip_enc_begin(enc, KMIP_TAG_BATCH_ITEM);
  kmip_enc_enum(enc, KMIP_TAG_OPERATION, KMIP_OP_GET);
  kmip_enc_enum(enc, KMIP_TAG_RESULT_STATUS, 0);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_PAYLOAD);
  kmip_enc_enum(enc, KMIP_TAG_OBJECT_TYPE, 2);
  kmip_enc_text(enc, KMIP_TAG_UNIQUE_IDENTIFIER, "1", 1);
  kmip_enc_begin(enc, KMIP_TAG_SYMMETRIC_KEY);
  kmip_enc_begin(enc, KMIP_TAG_KEY_BLOCK);
  kmip_enc_enum(enc, KMIP_TAG_KEY_FORMAT_TYPE, 1);
  kmip_enc_begin(enc, KMIP_TAG_KEY_VALUE);
  kmip_enc_bytes(enc, KMIP_TAG_KEY_MATERIAL, key, sizeof key);
  kmip_enc_end(enc);
  kmip_enc_enum(enc, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, 3);
  kmip_enc_integer(enc, KMIP_TAG_CRYPTOGRAPHIC_LENGTH, 256);
  kmip_enc_end(enc);
  kmip_enc_end(enc);
  kmip_enc_end(enc);
  kmip_enc_end(enc);
  kmip_enc_end(enc);
}

static void test_get_response_parses(void **state)
{
  (void)state;
  struct kmip_enc enc;
  build_get_response(&enc);
  struct nbdc_error err = {0};
  assert_int_equal(kmip_enc_finish(&enc, &err), 0);
  struct kmip_tree *tree;
  assert_int_equal(kmip_decode(enc.data, enc.len, 0, &tree, &err), 0);
  struct kmip_response resp;
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), 0);
  assert_int_equal(resp.major, 1);
  assert_int_equal(resp.minor, 2);
  assert_int_equal(resp.count, 1);
  assert_int_equal(resp.items[0].operation, KMIP_OP_GET);
  assert_int_equal(resp.items[0].status, 0);
  const struct kmip_item *km = kmip_item_find(
      kmip_item_find(kmip_item_find(kmip_item_find(resp.items[0].payload, KMIP_TAG_SYMMETRIC_KEY),
                                    KMIP_TAG_KEY_BLOCK),
                     KMIP_TAG_KEY_VALUE),
      KMIP_TAG_KEY_MATERIAL);
  assert_non_null(km);
  assert_int_equal(km->length, 32);
  assert_int_equal(km->bytes[0], 0xA0);
  assert_int_equal(km->depth, 7);
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

/* Every prefix of a real response is refused by the decoder; with the outer
 * length patched to the prefix, decoding or message parsing refuses it. */
static void test_every_truncation_refused(void **state)
{
  (void)state;
  struct kmip_enc enc;
  build_get_response(&enc);
  struct nbdc_error err = {0};
  assert_int_equal(kmip_enc_finish(&enc, &err), 0);
  for (size_t n = 0; n < enc.len; n++) {
    /* an exact-size heap copy so ASan catches any read past the end */
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, enc.data, n);
    struct kmip_tree *tree = NULL;
    assert_int_equal(kmip_decode(copy, n, 0, &tree, &err), -EBADMSG);
    assert_null(tree);
    if (n >= 8 && n % 8 == 0) {
      uint32_t l = (uint32_t)(n - 8);
      copy[4] = (uint8_t)(l >> 24);
      copy[5] = (uint8_t)(l >> 16);
      copy[6] = (uint8_t)(l >> 8);
      copy[7] = (uint8_t)l;
      int r = kmip_decode(copy, n, 0, &tree, &err);
      if (r == 0) {
        struct kmip_response resp;
        assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), -EBADMSG);
        kmip_tree_free(tree);
      } else {
        assert_int_equal(r, -EBADMSG);
      }
    }
    free(copy);
  }
  kmip_enc_free(&enc);
}

/* A malformed input, given as hex, and a word its error must contain. */
struct bad_case {
  const char *name;
  const char *hex;
  const char *expect;
};

static const struct bad_case bad_cases[] = {
    {"header only 7 bytes", "42007801000000", "shorter"},
    {"outer length beyond buffer",
     "4200780100000010"
     "420094070000000131000000",
     "announces"},
    {"huge outer length", "42007801fffffff8", "announces"},
    {"huge inner length",
     "4200780100000008"
     "42009407fffffff0",
     "beyond"},
    {"inner length beyond parent",
     "4200780100000010"
     "4200940700000010"
     "3100000000000000",
     "beyond"},
    {"structure length not multiple of 8",
     "4200780100000004"
     "00000000",
     "announces"},
    {"inner structure length not multiple of 8",
     "4200780100000010"
     "4200770100000004"
     "0000000000000000",
     "multiple of 8"},
    {"trailing bytes",
     "4200780100000000"
     "0000000000000000",
     "announces"},
    {"two top-level items",
     "4200780100000000"
     "4200780100000000",
     "announces"},
    {"integer padding non-zero",
     "42000D0200000004"
     "0000000100000001",
     "padding"},
    {"text padding non-zero",
     "4200940700000001"
     "3100000000000001",
     "padding"},
    {"byte string padding non-zero",
     "4200C20800000003"
     "010203ff00000000",
     "padding"},
    {"boolean 2",
     "5400060600000008"
     "0000000000000002",
     "boolean"},
    {"boolean high byte",
     "5400060600000008"
     "0100000000000000",
     "boolean"},
    {"integer length 8",
     "42000D0200000008"
     "0000000000000001",
     "wrong length"},
    {"enumeration length 0", "42005C0500000000", "wrong length"},
    {"long integer length 4",
     "5400030300000004"
     "0000000100000000",
     "wrong length"},
    {"date-time length 4",
     "4200920900000004"
     "0000000100000000",
     "wrong length"},
    {"interval length 8",
     "54000A0A00000008"
     "0000000000000001",
     "wrong length"},
    {"boolean length 4",
     "5400060600000004"
     "0000000100000000",
     "wrong length"},
    {"big integer length 0", "5400040400000000", "big integer"},
    {"big integer length 12",
     "540004040000000c"
     "0000000000000000"
     "0000000100000000",
     "big integer"},
    {"type 0x00", "5400010000000000", "unknown item type"},
    {"type 0x0b", "54000b0b00000000", "unknown item type"},
    {"type 0xff", "540001ff00000000", "unknown item type"},
    {"operation as integer",
     "42005C0200000004"
     "0000000a00000000",
     "wrong type"},
    {"unique identifier as byte string",
     "4200940800000001"
     "3100000000000000",
     "wrong type"},
    {"batch count as enumeration",
     "42000D0500000004"
     "0000000100000000",
     "wrong type"},
    {"response header as text", "42007A0700000000", "wrong type"},
    {"key block as byte string", "4200400800000000", "wrong type"},
    {"text with NUL",
     "4200940700000003"
     "3100320000000000",
     "UTF-8"},
    {"text invalid UTF-8",
     "4200940700000002"
     "c328000000000000",
     "UTF-8"},
    {"text overlong UTF-8",
     "4200940700000002"
     "c0af000000000000",
     "UTF-8"},
    {"text truncated UTF-8",
     "4200940700000002"
     "31e2000000000000",
     "UTF-8"},
    {"text surrogate",
     "4200940700000003"
     "eda0800000000000",
     "UTF-8"},
    {"tag outside 42/54 range",
     "0000010200000004"
     "0000000100000000",
     "tag outside"},
    {"grandchild beyond its parent",
     "4200780100000010"
     "4200770100000008"
     "4200690100000008",
     "beyond"},
    {"grandchild with huge length",
     "4200780100000010"
     "4200770100000008"
     "42006901fffffff8",
     "beyond"},
};

static size_t unhex(const char *hex, uint8_t **out)
{
  size_t n = strlen(hex) / 2;
  uint8_t *buf = malloc(n ? n : 1);
  assert_non_null(buf);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
    buf[i] = (uint8_t)v;
  }
  *out = buf;
  return n;
}

static void test_malformed_inputs_refused(void **state)
{
  (void)state;
  size_t ncases = sizeof bad_cases / sizeof bad_cases[0];
  assert_true(ncases >= 30);
  for (size_t i = 0; i < ncases; i++) {
    uint8_t *buf;
    size_t len = unhex(bad_cases[i].hex, &buf);
    struct kmip_tree *tree = NULL;
    struct nbdc_error err = {0};
    int r = kmip_decode(buf, len, 0, &tree, &err);
    if (r != -EBADMSG || !strstr(err.msg, bad_cases[i].expect))
      fail_msg("case '%s': r=%d msg='%s'", bad_cases[i].name, r, err.msg);
    assert_null(tree);
    free(buf);
  }
}

/* Structures nested 16 deep decode; 17 and 200 deep are refused. */
static void nest(size_t depth, uint8_t **buf, size_t *len)
{
  *len = 8 * depth;
  *buf = malloc(*len);
  assert_non_null(*buf);
  for (size_t i = 0; i < depth; i++) {
    uint8_t *p = *buf + 8 * i;
    uint32_t l = (uint32_t)(8 * (depth - i - 1));
    p[0] = 0x54;
    p[1] = 0x00;
    p[2] = 0x01;
    p[3] = KMIP_TYPE_STRUCTURE;
    p[4] = (uint8_t)(l >> 24);
    p[5] = (uint8_t)(l >> 16);
    p[6] = (uint8_t)(l >> 8);
    p[7] = (uint8_t)l;
  }
}

static void test_nesting_depth_bounded(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct kmip_tree *tree = NULL;
  uint8_t *buf;
  size_t len;
  nest(16, &buf, &len);
  assert_int_equal(kmip_decode(buf, len, 0, &tree, &err), 0);
  kmip_tree_free(tree);
  free(buf);
  nest(17, &buf, &len);
  assert_int_equal(kmip_decode(buf, len, 0, &tree, &err), -EBADMSG);
  assert_non_null(strstr(err.msg, "deeper than 16"));
  free(buf);
  nest(200, &buf, &len);
  assert_int_equal(kmip_decode(buf, len, 0, &tree, &err), -EBADMSG);
  free(buf);
}

static void test_size_bounds(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct kmip_tree *tree = NULL;
  uint8_t *buf;
  size_t len;
  nest(10, &buf, &len); /* 80 bytes */
  assert_int_equal(kmip_decode(buf, len, 64, &tree, &err), -EMSGSIZE);
  assert_int_equal(kmip_decode(buf, len, 80, &tree, &err), 0);
  kmip_tree_free(tree);
  assert_int_equal(kmip_decode(NULL, 0, 0, &tree, &err), -EBADMSG);

  size_t total = 0;
  assert_int_equal(kmip_frame_length(buf, 0, &total, &err), 0);
  assert_int_equal(total, 80);
  assert_int_equal(kmip_frame_length(buf, 72, &total, &err), -EMSGSIZE);
  static const uint8_t huge[8] = {0x42, 0x00, 0x7B, 0x01, 0xFF, 0xFF, 0xFF, 0xF8};
  assert_int_equal(kmip_frame_length(huge, 0, &total, &err), -EMSGSIZE);
  static const uint8_t odd[8] = {0x42, 0x00, 0x7B, 0x01, 0x00, 0x00, 0x00, 0x09};
  assert_int_equal(kmip_frame_length(odd, 0, &total, &err), -EBADMSG);
  static const uint8_t text[8] = {0x42, 0x00, 0x7B, 0x07, 0x00, 0x00, 0x00, 0x08};
  assert_int_equal(kmip_frame_length(text, 0, &total, &err), -EBADMSG);
  free(buf);
}

/* Every single-byte corruption of a real response is either refused or
 * decodes to a tree; ASan checks nothing is read outside the buffer. */
static void test_byte_flips_never_crash(void **state)
{
  (void)state;
  struct kmip_enc enc;
  build_get_response(&enc);
  struct nbdc_error err = {0};
  assert_int_equal(kmip_enc_finish(&enc, &err), 0);
  static const uint8_t flips[] = {0x01, 0x80, 0xFF};
  size_t refused = 0;
  for (size_t i = 0; i < enc.len; i++) {
    for (size_t f = 0; f < sizeof flips; f++) {
      uint8_t *copy = malloc(enc.len);
      assert_non_null(copy);
      memcpy(copy, enc.data, enc.len);
      copy[i] ^= flips[f];
      struct kmip_tree *tree = NULL;
      if (kmip_decode(copy, enc.len, 0, &tree, &err) == 0) {
        struct kmip_response resp;
        (void)kmip_msg_parse_response(tree, &resp, &err);
        kmip_tree_free(tree);
      } else {
        refused++;
      }
      free(copy);
    }
  }
  assert_true(refused > enc.len); /* most corruptions are caught */
  kmip_enc_free(&enc);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_request_matches_reference),
      cmocka_unit_test(test_round_trip_every_type),
      cmocka_unit_test(test_encoder_buffer_is_locked),
      cmocka_unit_test(test_encoder_errors),
      cmocka_unit_test(test_get_response_parses),
      cmocka_unit_test(test_every_truncation_refused),
      cmocka_unit_test(test_malformed_inputs_refused),
      cmocka_unit_test(test_nesting_depth_bounded),
      cmocka_unit_test(test_size_bounds),
      cmocka_unit_test(test_byte_flips_never_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
