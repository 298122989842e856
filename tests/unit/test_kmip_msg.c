/* KMIP messages: request header order, batch item ids, response parsing
 * (including session-layer errors without an Operation), result errors,
 * server strings, client options, and the masked trace. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbdcrypt/kmip.h"
#include "kmip/client.h"
#include "kmip/internal.h"

static struct kmip_tree *decode_enc(struct kmip_enc *enc)
{
  struct nbdc_error err = {0};
  struct kmip_tree *tree = NULL;
  assert_int_equal(kmip_enc_finish(enc, &err), 0);
  if (kmip_decode(enc->data, enc->len, 0, &tree, &err) != 0)
    fail_msg("decode: %s", err.msg);
  return tree;
}

static void test_request_header_order_and_batch_ids(void **state)
{
  (void)state;
  struct kmip_enc enc;
  kmip_enc_init(&enc, 0);
  kmip_msg_begin_request(&enc, 1, 4, 2);
  kmip_msg_begin_item(&enc, KMIP_OP_CREATE, 1);
  kmip_enc_enum(&enc, KMIP_TAG_OBJECT_TYPE, 2);
  kmip_msg_end_item(&enc);
  kmip_msg_begin_item(&enc, KMIP_OP_ACTIVATE, 2);
  kmip_msg_end_item(&enc);
  kmip_msg_end_request(&enc);
  struct kmip_tree *tree = decode_enc(&enc);
  const struct kmip_item *root = kmip_tree_root(tree);
  assert_int_equal(root->tag, KMIP_TAG_REQUEST_MESSAGE);
  const struct kmip_item *hdr = root->child;
  assert_int_equal(hdr->tag, KMIP_TAG_REQUEST_HEADER);
  /* Protocol Version first, Batch Count last (spec order; no Time Stamp) */
  assert_int_equal(hdr->child->tag, KMIP_TAG_PROTOCOL_VERSION);
  assert_int_equal(hdr->child->child->integer, 1);
  assert_int_equal(hdr->child->child->next->integer, 4);
  assert_int_equal(hdr->child->next->tag, KMIP_TAG_BATCH_COUNT);
  assert_int_equal(hdr->child->next->integer, 2);
  assert_null(hdr->child->next->next);
  const struct kmip_item *bi = hdr->next;
  for (uint32_t n = 1; n <= 2; n++, bi = bi->next) {
    assert_int_equal(bi->tag, KMIP_TAG_BATCH_ITEM);
    assert_int_equal(bi->child->tag, KMIP_TAG_OPERATION);
    assert_int_equal(bi->child->integer, n == 1 ? KMIP_OP_CREATE : KMIP_OP_ACTIVATE);
    const struct kmip_item *id = bi->child->next;
    assert_int_equal(id->tag, KMIP_TAG_UNIQUE_BATCH_ITEM_ID);
    assert_int_equal(id->length, 4);
    const uint8_t want[4] = {0, 0, 0, (uint8_t)n};
    assert_memory_equal(id->bytes, want, 4);
    assert_int_equal(id->next->tag, KMIP_TAG_REQUEST_PAYLOAD);
  }
  assert_null(bi);
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

static void test_single_item_has_no_batch_id(void **state)
{
  (void)state;
  struct kmip_enc enc;
  kmip_enc_init(&enc, 0);
  kmip_msg_begin_request(&enc, 1, 4, 1);
  kmip_msg_begin_item(&enc, KMIP_OP_QUERY, 0);
  kmip_msg_end_item(&enc);
  kmip_msg_end_request(&enc);
  struct kmip_tree *tree = decode_enc(&enc);
  const struct kmip_item *bi = kmip_item_find(kmip_tree_root(tree), KMIP_TAG_BATCH_ITEM);
  assert_null(kmip_item_find(bi, KMIP_TAG_UNIQUE_BATCH_ITEM_ID));
  assert_non_null(kmip_item_find(bi, KMIP_TAG_REQUEST_PAYLOAD));
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

/* A response; op 0 leaves the Operation out, as pykmip-server does for
 * errors at the session layer. */
static void response(struct kmip_enc *enc, int count_field, uint32_t op, uint32_t status,
                     uint32_t reason, const char *message, int items)
{
  kmip_enc_init(enc, 0);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_MESSAGE);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_HEADER);
  kmip_enc_begin(enc, KMIP_TAG_PROTOCOL_VERSION);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MINOR, 0);
  kmip_enc_end(enc);
  kmip_enc_datetime(enc, KMIP_TAG_TIME_STAMP, 1700000000);
  kmip_enc_integer(enc, KMIP_TAG_BATCH_COUNT, count_field);
  kmip_enc_end(enc);
  for (int i = 0; i < items; i++) {
    kmip_enc_begin(enc, KMIP_TAG_BATCH_ITEM);
    if (op)
      kmip_enc_enum(enc, KMIP_TAG_OPERATION, op);
    if (items > 1) {
      uint8_t id[4] = {0, 0, 0, (uint8_t)(i + 1)};
      kmip_enc_bytes(enc, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, id, 4);
    }
    kmip_enc_enum(enc, KMIP_TAG_RESULT_STATUS, status);
    if (reason)
      kmip_enc_enum(enc, KMIP_TAG_RESULT_REASON, reason);
    if (message)
      kmip_enc_text(enc, KMIP_TAG_RESULT_MESSAGE, message, strlen(message));
    kmip_enc_end(enc);
  }
  kmip_enc_end(enc);
}

static void test_session_error_without_operation(void **state)
{
  (void)state;
  struct kmip_enc enc;
  response(&enc, 1, 0, 1, KMIP_REASON_INVALID_MESSAGE, "Error parsing request", 1);
  struct kmip_tree *tree = decode_enc(&enc);
  struct kmip_response resp;
  struct nbdc_error err = {0};
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), 0);
  assert_int_equal(resp.major, 1);
  assert_int_equal(resp.minor, 0);
  assert_int_equal(resp.count, 1);
  assert_int_equal(resp.items[0].operation, 0);
  assert_null(resp.items[0].payload);
  assert_int_equal(kmip_msg_result_error(&resp.items[0], "127.0.0.1:5696", KMIP_OP_GET, &err),
                   -EINVAL);
  assert_string_equal(err.msg,
                      "kms 127.0.0.1:5696: Get failed: InvalidMessage (Error parsing request)");
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

static void test_result_errors(void **state)
{
  (void)state;
  static const struct {
    uint32_t reason;
    const char *message;
    int code;
    const char *text;
  } cases[] = {
      {KMIP_REASON_ITEM_NOT_FOUND, "Could not locate object: 9", -ENOENT,
       "kms h:1: Get failed: ItemNotFound (Could not locate object: 9)"},
      {KMIP_REASON_PERMISSION_DENIED, "Could not locate object: 1", -EACCES,
       "kms h:1: Get failed: PermissionDenied (Could not locate object: 1)"},
      {KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL, NULL, -EACCES,
       "kms h:1: Get failed: AuthenticationNotSuccessful"},
      {KMIP_REASON_OPERATION_NOT_SUPPORTED, NULL, -ENOTSUP,
       "kms h:1: Get failed: OperationNotSupported"},
      {0x10, "x", -ENOTSUP, "kms h:1: Get failed: KeyFormatTypeNotSupported (x)"},
      {KMIP_REASON_INVALID_FIELD, NULL, -EINVAL, "kms h:1: Get failed: InvalidField"},
      {KMIP_REASON_GENERAL_FAILURE, NULL, -EIO, "kms h:1: Get failed: GeneralFailure"},
      {0, NULL, -EIO, "kms h:1: Get failed: no reason given"},
      {0x999, NULL, -EIO, "kms h:1: Get failed: unknown"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct kmip_enc enc;
    response(&enc, 1, KMIP_OP_GET, 1, cases[i].reason, cases[i].message, 1);
    struct kmip_tree *tree = decode_enc(&enc);
    struct kmip_response resp;
    struct nbdc_error err = {0};
    assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), 0);
    assert_int_equal(kmip_msg_result_error(&resp.items[0], "h:1", KMIP_OP_GET, &err),
                     cases[i].code);
    assert_string_equal(err.msg, cases[i].text);
    kmip_tree_free(tree);
    kmip_enc_free(&enc);
  }
  /* success is no error */
  struct kmip_result ok = {.status = 0};
  struct nbdc_error err = {0};
  assert_int_equal(kmip_msg_result_error(&ok, "h:1", KMIP_OP_GET, &err), 0);
}

static void test_several_batch_items(void **state)
{
  (void)state;
  struct kmip_enc enc;
  response(&enc, 3, KMIP_OP_ACTIVATE, 0, 0, NULL, 3);
  struct kmip_tree *tree = decode_enc(&enc);
  struct kmip_response resp;
  struct nbdc_error err = {0};
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), 0);
  assert_int_equal(resp.count, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_true(resp.items[i].has_batch_id);
    assert_int_equal(resp.items[i].batch_id, i + 1);
    assert_int_equal(resp.items[i].operation, KMIP_OP_ACTIVATE);
  }
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

static void test_malformed_responses(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct kmip_response resp;
  struct kmip_enc enc;
  struct kmip_tree *tree;

  /* batch count says 2, one item */
  response(&enc, 2, KMIP_OP_GET, 0, 0, NULL, 1);
  tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), -EBADMSG);
  assert_non_null(strstr(err.msg, "announces 2 batch items but has 1"));
  kmip_tree_free(tree);
  kmip_enc_free(&enc);

  /* no batch item at all */
  response(&enc, 0, KMIP_OP_GET, 0, 0, NULL, 0);
  tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), -EBADMSG);
  kmip_tree_free(tree);
  kmip_enc_free(&enc);

  /* a request is not a response */
  kmip_enc_init(&enc, 0);
  kmip_msg_begin_request(&enc, 1, 4, 1);
  kmip_msg_begin_item(&enc, KMIP_OP_GET, 0);
  kmip_msg_end_item(&enc);
  kmip_msg_end_request(&enc);
  tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), -EBADMSG);
  assert_non_null(strstr(err.msg, "Request Message, not a Response Message"));
  kmip_tree_free(tree);
  kmip_enc_free(&enc);

  /* header without protocol version; item without result status */
  kmip_enc_init(&enc, 0);
  kmip_enc_begin(&enc, KMIP_TAG_RESPONSE_MESSAGE);
  kmip_enc_begin(&enc, KMIP_TAG_RESPONSE_HEADER);
  kmip_enc_integer(&enc, KMIP_TAG_BATCH_COUNT, 1);
  kmip_enc_end(&enc);
  kmip_enc_end(&enc);
  tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), -EBADMSG);
  assert_non_null(strstr(err.msg, "Protocol Version"));
  kmip_tree_free(tree);
  kmip_enc_free(&enc);

  kmip_enc_init(&enc, 0);
  kmip_enc_begin(&enc, KMIP_TAG_RESPONSE_MESSAGE);
  kmip_enc_begin(&enc, KMIP_TAG_RESPONSE_HEADER);
  kmip_enc_begin(&enc, KMIP_TAG_PROTOCOL_VERSION);
  kmip_enc_integer(&enc, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
  kmip_enc_integer(&enc, KMIP_TAG_PROTOCOL_VERSION_MINOR, 4);
  kmip_enc_end(&enc);
  kmip_enc_integer(&enc, KMIP_TAG_BATCH_COUNT, 1);
  kmip_enc_end(&enc);
  kmip_enc_begin(&enc, KMIP_TAG_BATCH_ITEM);
  kmip_enc_enum(&enc, KMIP_TAG_OPERATION, KMIP_OP_GET);
  kmip_enc_end(&enc);
  kmip_enc_end(&enc);
  tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), -EBADMSG);
  assert_non_null(strstr(err.msg, "Result Status"));
  kmip_tree_free(tree);
  kmip_enc_free(&enc);

  /* more batch items than we take */
  response(&enc, 17, KMIP_OP_GET, 0, 0, NULL, 17);
  tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), -EBADMSG);
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

/* A successful Get answer at 1.minor: object type, unique id, key block. */
static void get_answer(struct kmip_enc *enc, int minor, uint32_t op, const char *uid,
                       uint32_t object_type, uint32_t algorithm, int32_t length, int items)
{
  static const uint8_t key[32] = {1, 2, 3};
  kmip_enc_init(enc, 0);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_MESSAGE);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_HEADER);
  kmip_enc_begin(enc, KMIP_TAG_PROTOCOL_VERSION);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MINOR, minor);
  kmip_enc_end(enc);
  kmip_enc_integer(enc, KMIP_TAG_BATCH_COUNT, items);
  kmip_enc_end(enc);
  for (int i = 0; i < items; i++) {
    kmip_enc_begin(enc, KMIP_TAG_BATCH_ITEM);
    kmip_enc_enum(enc, KMIP_TAG_OPERATION, op);
    kmip_enc_enum(enc, KMIP_TAG_RESULT_STATUS, 0);
    kmip_enc_begin(enc, KMIP_TAG_RESPONSE_PAYLOAD);
    if (object_type)
      kmip_enc_enum(enc, KMIP_TAG_OBJECT_TYPE, object_type);
    if (uid)
      kmip_enc_text(enc, KMIP_TAG_UNIQUE_IDENTIFIER, uid, strlen(uid));
    kmip_enc_begin(enc, KMIP_TAG_SYMMETRIC_KEY);
    kmip_enc_begin(enc, KMIP_TAG_KEY_BLOCK);
    kmip_enc_enum(enc, KMIP_TAG_KEY_FORMAT_TYPE, 1);
    kmip_enc_begin(enc, KMIP_TAG_KEY_VALUE);
    kmip_enc_bytes(enc, KMIP_TAG_KEY_MATERIAL, key, sizeof key);
    kmip_enc_end(enc);
    if (algorithm)
      kmip_enc_enum(enc, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, algorithm);
    if (length)
      kmip_enc_integer(enc, KMIP_TAG_CRYPTOGRAPHIC_LENGTH, length);
    kmip_enc_end(enc);
    kmip_enc_end(enc);
    kmip_enc_end(enc);
    kmip_enc_end(enc);
  }
  kmip_enc_end(enc);
}

/* Run kmip_msg_check on a crafted answer against what a Get of "5" at 1.4 expects. */
static int check_get(struct kmip_enc *enc, struct nbdc_error *err)
{
  struct kmip_tree *tree = decode_enc(enc);
  struct kmip_response resp;
  int r = kmip_msg_parse_response(tree, &resp, err);
  if (r == 0) {
    struct kmip_expect want = {.operation = KMIP_OP_GET,
                               .version = {1, 4},
                               .unique_id = "5",
                               .object_type = 2,
                               .algorithm = 3,
                               .length = 256};
    r = kmip_msg_check(&resp, &want, "h:1", err);
  }
  kmip_tree_free(tree);
  kmip_enc_free(enc);
  return r;
}

static void test_answer_checked_against_request(void **state)
{
  (void)state;
  static const struct {
    int minor;
    uint32_t op;
    const char *uid;
    uint32_t object_type, algorithm;
    int32_t length;
    int items;
    const char *text; /* NULL: accepted */
  } cases[] = {
      {4, KMIP_OP_GET, "5", 2, 3, 256, 1, NULL},
      {4, KMIP_OP_GET, "7", 2, 3, 256, 1,
       "kms h:1: Get answer: Unique Identifier is \"7\", expected \"5\""},
      {4, KMIP_OP_GET, "55", 2, 3, 256, 1,
       "kms h:1: Get answer: Unique Identifier is \"55\", expected \"5\""},
      {4, KMIP_OP_GET, NULL, 2, 3, 256, 1,
       "kms h:1: Get answer: Unique Identifier is missing, expected \"5\""},
      {4, KMIP_OP_GET, "5", 7, 3, 256, 1,
       "kms h:1: Get answer: Object Type is 7 (SecretData), expected 2 (SymmetricKey)"},
      {4, KMIP_OP_GET, "5", 0, 3, 256, 1,
       "kms h:1: Get answer: Object Type is missing, expected 2"},
      {4, KMIP_OP_GET, "5", 2, 2, 256, 1,
       "kms h:1: Get answer: Cryptographic Algorithm is 2 (3DES), expected 3 (AES)"},
      {4, KMIP_OP_GET, "5", 2, 0, 256, 1,
       "kms h:1: Get answer: Cryptographic Algorithm is missing, expected 3"},
      {4, KMIP_OP_GET, "5", 2, 3, 128, 1,
       "kms h:1: Get answer: Cryptographic Length is 128, expected 256"},
      {4, KMIP_OP_GET, "5", 2, 3, 0, 1,
       "kms h:1: Get answer: Cryptographic Length is missing, expected 256"},
      {4, KMIP_OP_ACTIVATE, "5", 2, 3, 256, 1,
       "kms h:1: Get answer: Operation is Activate, expected Get"},
      {2, KMIP_OP_GET, "5", 2, 3, 256, 1,
       "kms h:1: Get answer: Protocol Version is 1.2, expected 1.4"},
      {4, KMIP_OP_GET, "5", 2, 3, 256, 2, "kms h:1: Get answer: Batch Count is 2, expected 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct kmip_enc enc;
    struct nbdc_error err = {0};
    get_answer(&enc, cases[i].minor, cases[i].op, cases[i].uid, cases[i].object_type,
               cases[i].algorithm, cases[i].length, cases[i].items);
    int r = check_get(&enc, &err);
    if (!cases[i].text) {
      if (r != 0)
        fail_msg("case %zu refused: %s", i, err.msg);
      continue;
    }
    if (r != -EBADMSG)
      fail_msg("case %zu: %d, expected -EBADMSG (%s)", i, r, cases[i].text);
    assert_string_equal(err.msg, cases[i].text);
  }
}

static void test_answer_failure_and_missing_payload(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct kmip_enc enc;
  struct kmip_response resp;
  /* a KMS error at 1.0 without an Operation is the KMS's error, not a mismatch */
  response(&enc, 1, 0, 1, KMIP_REASON_ITEM_NOT_FOUND, "Could not locate object: 5", 1);
  struct kmip_tree *tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), 0);
  struct kmip_expect want = {.operation = KMIP_OP_GET, .version = {1, 4}, .unique_id = "5"};
  assert_int_equal(kmip_msg_check(&resp, &want, "h:1", &err), -ENOENT);
  assert_string_equal(err.msg, "kms h:1: Get failed: ItemNotFound (Could not locate object: 5)");
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
  /* success without a payload: refused unless the operation may do that */
  response(&enc, 1, KMIP_OP_DISCOVER_VERSIONS, 0, 0, NULL, 1);
  tree = decode_enc(&enc);
  assert_int_equal(kmip_msg_parse_response(tree, &resp, &err), 0);
  want = (struct kmip_expect){.operation = KMIP_OP_DISCOVER_VERSIONS, .version = {1, 0}};
  assert_int_equal(kmip_msg_check(&resp, &want, "h:1", &err), -EBADMSG);
  assert_string_equal(err.msg, "kms h:1: DiscoverVersions answer: Response Payload is missing");
  want.payload_optional = true;
  assert_int_equal(kmip_msg_check(&resp, &want, "h:1", &err), 0);
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

/* A Get Attributes payload with the given State attributes (value < 0: an Integer). */
static struct kmip_tree *state_payload(struct kmip_enc *enc, const int64_t *states, int n)
{
  kmip_enc_init(enc, 0);
  kmip_enc_begin(enc, KMIP_TAG_RESPONSE_PAYLOAD);
  kmip_enc_text(enc, KMIP_TAG_UNIQUE_IDENTIFIER, "5", 1);
  for (int i = 0; i < n; i++) {
    kmip_enc_begin(enc, KMIP_TAG_ATTRIBUTE);
    kmip_enc_text(enc, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
    if (states[i] < 0)
      kmip_enc_integer(enc, KMIP_TAG_ATTRIBUTE_VALUE, 2);
    else
      kmip_enc_enum(enc, KMIP_TAG_ATTRIBUTE_VALUE, (uint32_t)states[i]);
    kmip_enc_end(enc);
  }
  kmip_enc_end(enc);
  return decode_enc(enc);
}

static void test_state_answer(void **state)
{
  (void)state;
  static const struct {
    int64_t states[2];
    int n;
    int want; /* state, or 0 for a refusal */
    const char *text;
  } cases[] = {
      {{4}, 1, 4, NULL},
      {{1}, 1, 1, NULL},
      {{6}, 1, 6, NULL},
      {{0}, 0, 0, "kms h:1: Get Attributes answer: State of 5 is missing"},
      {{2, 2}, 2, 0, "kms h:1: Get Attributes answer: 2 States for 5, expected 1"},
      {{-1}, 1, 0, "kms h:1: Get Attributes answer: State of 5 is not an Enumeration"},
      {{7}, 1, 0, "kms h:1: Get Attributes answer: State of 5 is 7, expected 1 to 6"},
      {{0}, 1, 0, "kms h:1: Get Attributes answer: State of 5 is 0, expected 1 to 6"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct kmip_enc enc;
    struct kmip_tree *tree = state_payload(&enc, cases[i].states, cases[i].n);
    struct nbdc_error err = {0};
    enum kmip_state st = 0;
    int r = kmip_answer_state(kmip_tree_root(tree), "h:1", "5", &st, &err);
    if (cases[i].want) {
      assert_int_equal(r, 0);
      assert_int_equal(st, cases[i].want);
    } else {
      assert_int_equal(r, -EBADMSG);
      assert_string_equal(err.msg, cases[i].text);
    }
    kmip_tree_free(tree);
    kmip_enc_free(&enc);
  }
}

static void test_version_choose(void **state)
{
  (void)state;
  struct kmip_version out;
  const struct kmip_version pykmip[] = {{2, 0}, {1, 4}, {1, 3}, {1, 2}, {1, 1}, {1, 0}};
  assert_int_equal(kmip_version_choose(pykmip, 6, (struct kmip_version){1, 4}, &out), 0);
  assert_int_equal(out.major, 1);
  assert_int_equal(out.minor, 4);
  assert_int_equal(kmip_version_choose(pykmip, 6, (struct kmip_version){1, 2}, &out), 0);
  assert_int_equal(out.minor, 2);
  /* the highest, whatever the order */
  const struct kmip_version shuffled[] = {{1, 1}, {1, 3}, {1, 2}};
  assert_int_equal(kmip_version_choose(shuffled, 3, (struct kmip_version){1, 4}, &out), 0);
  assert_int_equal(out.minor, 3);
  /* nothing in common */
  const struct kmip_version only2[] = {{2, 0}, {2, 1}, {1, 5}};
  assert_int_equal(kmip_version_choose(only2, 3, (struct kmip_version){1, 4}, &out), -EPROTO);
  assert_int_equal(kmip_version_choose(pykmip, 0, (struct kmip_version){1, 4}, &out), -EPROTO);
  const struct kmip_version v14[] = {{1, 4}};
  assert_int_equal(kmip_version_choose(v14, 1, (struct kmip_version){1, 2}, &out), -EPROTO);
}

static void test_split_server(void **state)
{
  (void)state;
  char host[64], port[8];
  struct nbdc_error err = {0};
  assert_int_equal(
      kmip_split_server("kms1.example.com:5696", host, sizeof host, port, sizeof port, &err), 0);
  assert_string_equal(host, "kms1.example.com");
  assert_string_equal(port, "5696");
  assert_int_equal(kmip_split_server("[::1]:15696", host, sizeof host, port, sizeof port, &err), 0);
  assert_string_equal(host, "::1");
  assert_string_equal(port, "15696");
  static const char *const bad[] = {"kms",    "kms:",     ":5696",     "kms:0", "kms:65536",
                                    "kms:5x", "a:b:5696", "[::1]5696", "[::1",  "kms:-1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (kmip_split_server(bad[i], host, sizeof host, port, sizeof port, &err) != -EINVAL)
      fail_msg("accepted server '%s'", bad[i]);
    assert_non_null(strstr(err.msg, bad[i]));
  }
}

static void test_client_options_validated(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct kmip_client *c = NULL;
  const char *servers[] = {"127.0.0.1:5696"};
  struct kmip_client_options o = {.servers = servers,
                                  .server_count = 1,
                                  .ca = "/nonexistent/ca.pem",
                                  .cert = "/nonexistent/c.pem",
                                  .key = "/nonexistent/c.key"};
  assert_int_equal(kmip_client_new(&o, &c, &err), -ENOENT);
  assert_non_null(
      strstr(err.msg, "cannot open CA file /nonexistent/ca.pem: No such file or directory"));
  assert_null(c);

  struct kmip_client_options none = o;
  none.server_count = 0;
  assert_int_equal(kmip_client_new(&none, &c, &err), -EINVAL);
  assert_string_equal(err.msg, "kmip: no server given");

  struct kmip_client_options proto = o;
  proto.protocol_minor = 3 + 7;
  assert_int_equal(kmip_client_new(&proto, &c, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "protocol 1.10"));
  proto.protocol_minor = 0;
  proto.max_version = (struct kmip_version){2, 0};
  assert_int_equal(kmip_client_new(&proto, &c, &err), -EINVAL);
  assert_string_equal(err.msg, "kmip: protocol 2.0 not supported (1.0 to 1.4)");

  struct kmip_client_options tmo = o;
  tmo.timeout_ms = -1;
  assert_int_equal(kmip_client_new(&tmo, &c, &err), -EINVAL);

  const char *bad_servers[] = {"127.0.0.1:5696", "nohostport"};
  struct kmip_client_options bs = o;
  bs.servers = bad_servers;
  bs.server_count = 2;
  assert_int_equal(kmip_client_new(&bs, &c, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "nohostport"));

  struct kmip_client_options noca = o;
  noca.ca = NULL;
  assert_int_equal(kmip_client_new(&noca, &c, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "no CA file"));
}

static void test_trace_masks_secrets(void **state)
{
  (void)state;
  static const uint8_t key[32] = {0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe,
                                  0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad,
                                  0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef};
  struct kmip_enc enc;
  kmip_enc_init(&enc, 0);
  kmip_enc_begin(&enc, KMIP_TAG_RESPONSE_PAYLOAD);
  kmip_enc_text(&enc, KMIP_TAG_UNIQUE_IDENTIFIER, "42", 2);
  kmip_enc_begin(&enc, KMIP_TAG_KEY_VALUE);
  kmip_enc_bytes(&enc, KMIP_TAG_KEY_MATERIAL, key, sizeof key);
  kmip_enc_end(&enc);
  kmip_enc_bytes(&enc, KMIP_TAG_DATA, key, 16);
  kmip_enc_bytes(&enc, KMIP_TAG_IV_COUNTER_NONCE, key, 12);
  kmip_enc_bytes(&enc, KMIP_TAG_AE_TAG, key + 4, 4);
  kmip_enc_end(&enc);
  struct kmip_tree *tree = decode_enc(&enc);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  kmip_tree_dump(tree, f, "> ");
  fclose(f);
  assert_non_null(strstr(text, "> Response Payload (Structure"));
  assert_non_null(strstr(text, "Unique Identifier (TextString) \"42\""));
  assert_non_null(strstr(text, "Key Material (ByteString) <masked 32 bytes>"));
  assert_non_null(strstr(text, "Data (ByteString) <masked 16 bytes>"));
  assert_non_null(strstr(text, "IV/Counter/Nonce (ByteString) <masked 12 bytes>"));
  assert_non_null(strstr(text, "AE Tag (ByteString, 4 bytes) deadbeef"));
  /* deadbeef appears once: in the AE Tag, never from the masked items */
  const char *first = strstr(text, "deadbeef");
  assert_null(strstr(first + 1, "deadbeef"));
  free(text);
  kmip_tree_free(tree);
  kmip_enc_free(&enc);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_header_order_and_batch_ids),
      cmocka_unit_test(test_single_item_has_no_batch_id),
      cmocka_unit_test(test_session_error_without_operation),
      cmocka_unit_test(test_result_errors),
      cmocka_unit_test(test_several_batch_items),
      cmocka_unit_test(test_malformed_responses),
      cmocka_unit_test(test_answer_checked_against_request),
      cmocka_unit_test(test_answer_failure_and_missing_payload),
      cmocka_unit_test(test_state_answer),
      cmocka_unit_test(test_version_choose),
      cmocka_unit_test(test_split_server),
      cmocka_unit_test(test_client_options_validated),
      cmocka_unit_test(test_trace_masks_secrets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
