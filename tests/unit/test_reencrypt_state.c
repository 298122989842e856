/* The progress record: round trip, and any altered field or wrong key is
 * refused before it can drive recovery; the checksum kind is bound too. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "nbdcrypt/reencrypt.h"

static const uint8_t old_key[64] = {1, 2, 3};
static const uint8_t new_key[64] = {4, 5, 6};

static struct reenc_state sample(void)
{
  return (struct reenc_state){.mode = REENC_RECRYPT,
                              .phase = REENC_PHASE_MAIN,
                              .size_dynamic = true,
                              .sector_size = 4096,
                              .data_size = 64u << 20,
                              .old_offset = 16u << 20,
                              .new_offset = 16u << 20,
                              .done = 16u << 20,
                              .hotzone_offset = 16u << 20,
                              .hotzone_size = 16u << 20,
                              .checksum_offset = 12582912,
                              .checksum_sha = {9, 9},
                              .old_keyslot = 0,
                              .new_keyslot = 1};
}

/* Field by field: the struct has padding, which memcmp would compare. */
static void assert_same_state(const struct reenc_state *a, const struct reenc_state *b)
{
  assert_int_equal(a->mode, b->mode);
  assert_int_equal(a->phase, b->phase);
  assert_int_equal(a->backward, b->backward);
  assert_int_equal(a->detached, b->detached);
  assert_int_equal(a->size_dynamic, b->size_dynamic);
  assert_int_equal(a->sector_size, b->sector_size);
  assert_int_equal(a->data_size, b->data_size);
  assert_int_equal(a->old_offset, b->old_offset);
  assert_int_equal(a->new_offset, b->new_offset);
  assert_int_equal(a->iv_tweak, b->iv_tweak);
  assert_int_equal(a->done, b->done);
  assert_int_equal(a->hotzone_offset, b->hotzone_offset);
  assert_int_equal(a->hotzone_size, b->hotzone_size);
  assert_int_equal(a->checksum_offset, b->checksum_offset);
  assert_memory_equal(a->checksum_sha, b->checksum_sha, sizeof a->checksum_sha);
  assert_int_equal(a->checksum, b->checksum);
  assert_int_equal(a->tail_offset, b->tail_offset);
  assert_int_equal(a->chunk_size, b->chunk_size);
  assert_int_equal(a->old_keyslot, b->old_keyslot);
  assert_int_equal(a->new_keyslot, b->new_keyslot);
}

static void round_trip(void **state)
{
  (void)state;
  struct reenc_state st = sample(), back;
  struct json_object *tok = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(reenc_state_to_json(&st, old_key, 64, new_key, 64, &tok, &err), 0);
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), 0);
  assert_same_state(&st, &back);
  json_object_put(tok);
}

static void altered_field_refused(void **state)
{
  (void)state;
  static const char *const fields[] = {"done",      "hotzone_offset", "hotzone_size",
                                       "data_size", "old_offset",     "checksum_offset"};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    struct reenc_state st = sample(), back;
    struct json_object *tok = NULL;
    struct nbdc_error err = {0};
    assert_int_equal(reenc_state_to_json(&st, old_key, 64, new_key, 64, &tok, &err), 0);
    json_object_object_add(tok, fields[i], json_object_new_string("4096"));
    assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), -EPERM);
    assert_non_null(strstr(err.msg, "does not match the keys"));
    json_object_put(tok);
  }
  struct reenc_state st = sample(), back;
  struct json_object *tok = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(reenc_state_to_json(&st, old_key, 64, new_key, 64, &tok, &err), 0);
  json_object_object_add(tok, "direction", json_object_new_string("backward"));
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), -EPERM);
  json_object_put(tok);
}

static void wrong_key_refused(void **state)
{
  (void)state;
  struct reenc_state st = sample(), back;
  struct json_object *tok = NULL;
  struct nbdc_error err = {0};
  uint8_t other[64] = {7};
  assert_int_equal(reenc_state_to_json(&st, old_key, 64, new_key, 64, &tok, &err), 0);
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, other, 64, &back, &err), -EPERM);
  assert_int_equal(reenc_state_from_json(tok, NULL, 0, new_key, 64, &back, &err), -EPERM);
  json_object_put(tok);
}

/* A head16 record keeps its kind; it cannot be passed off as a SHA-256 one
 * (whose table recovery would read differently) by dropping or changing the
 * field, and an unknown kind is refused. */
static void checksum_kind_bound(void **state)
{
  (void)state;
  struct reenc_state st = sample(), back;
  st.checksum = REENC_CHECKSUM_HEAD16;
  struct json_object *tok = NULL, *f;
  struct nbdc_error err = {0};
  assert_int_equal(reenc_state_to_json(&st, old_key, 64, new_key, 64, &tok, &err), 0);
  assert_true(json_object_object_get_ex(tok, "checksum", &f));
  assert_string_equal(json_object_get_string(f), "head16");
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), 0);
  assert_same_state(&st, &back);
  json_object_object_del(tok, "checksum");
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), -EPERM);
  json_object_object_add(tok, "checksum", json_object_new_string("sha256"));
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), -EPERM);
  json_object_object_add(tok, "checksum", json_object_new_string("crc32"));
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "checksum"));
  json_object_put(tok);

  /* A record without the field (first version) reads as SHA-256. */
  st = sample();
  assert_int_equal(reenc_state_to_json(&st, old_key, 64, new_key, 64, &tok, &err), 0);
  json_object_object_del(tok, "checksum");
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), 0);
  assert_int_equal(back.checksum, REENC_CHECKSUM_SHA256);
  json_object_put(tok);
}

static void malformed_refused(void **state)
{
  (void)state;
  struct reenc_state st = sample(), back;
  struct json_object *tok = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(reenc_state_to_json(&st, old_key, 64, new_key, 64, &tok, &err), 0);
  json_object_object_add(tok, "done", json_object_new_int(5));
  assert_int_equal(reenc_state_from_json(tok, old_key, 64, new_key, 64, &back, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "done"));
  json_object_object_del(tok, "hmac_sha256");
  json_object_put(tok);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip),        cmocka_unit_test(altered_field_refused),
      cmocka_unit_test(wrong_key_refused), cmocka_unit_test(checksum_kind_bound),
      cmocka_unit_test(malformed_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
