/* KMIP request and response messages (KMIP 1.4 section 7). */
#include <errno.h>
#include <string.h>

#include "nbdcrypt/kmip.h"
#include "kmip/internal.h"

void kmip_msg_begin_request(struct kmip_enc *enc, int major, int minor, unsigned batch_count)
{
  kmip_enc_begin(enc, KMIP_TAG_REQUEST_MESSAGE);
  kmip_enc_begin(enc, KMIP_TAG_REQUEST_HEADER);
  kmip_enc_begin(enc, KMIP_TAG_PROTOCOL_VERSION);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MAJOR, major);
  kmip_enc_integer(enc, KMIP_TAG_PROTOCOL_VERSION_MINOR, minor);
  kmip_enc_end(enc);
  /* No Time Stamp: PyKMIP refuses one older than 60 s or in the future,
   * which a host with a skewed clock would trip on. */
  kmip_enc_integer(enc, KMIP_TAG_BATCH_COUNT, (int32_t)batch_count);
  kmip_enc_end(enc);
}

void kmip_msg_begin_item(struct kmip_enc *enc, uint32_t op, uint32_t batch_id)
{
  kmip_enc_begin(enc, KMIP_TAG_BATCH_ITEM);
  kmip_enc_enum(enc, KMIP_TAG_OPERATION, op);
  if (batch_id) {
    uint8_t id[4] = {(uint8_t)(batch_id >> 24), (uint8_t)(batch_id >> 16), (uint8_t)(batch_id >> 8),
                     (uint8_t)batch_id};
    kmip_enc_bytes(enc, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, id, sizeof id);
  }
  kmip_enc_begin(enc, KMIP_TAG_REQUEST_PAYLOAD);
}

void kmip_msg_end_item(struct kmip_enc *enc)
{
  kmip_enc_end(enc);
  kmip_enc_end(enc);
}

void kmip_msg_end_request(struct kmip_enc *enc)
{
  kmip_enc_end(enc);
}

static void copy_text(const struct kmip_item *it, char *out, size_t size)
{
  size_t n = it->length < size - 1 ? it->length : size - 1;
  memcpy(out, it->bytes, n);
  out[n] = '\0';
}

static int parse_item(const struct kmip_item *bi, struct kmip_result *res, struct nbdc_error *err)
{
  memset(res, 0, sizeof *res);
  const struct kmip_item *it = kmip_item_find(bi, KMIP_TAG_OPERATION);
  if (it)
    res->operation = (uint32_t)it->integer;
  it = kmip_item_find(bi, KMIP_TAG_UNIQUE_BATCH_ITEM_ID);
  if (it) {
    if (it->length == 0 || it->length > 4)
      return nbdc_error_set(err, EBADMSG, "kmip response batch item id of %u bytes (we send 4)",
                            it->length);
    res->has_batch_id = true;
    for (uint32_t i = 0; i < it->length; i++)
      res->batch_id = res->batch_id << 8 | it->bytes[i];
  }
  it = kmip_item_find(bi, KMIP_TAG_RESULT_STATUS);
  if (!it)
    return nbdc_error_set(err, EBADMSG, "kmip response batch item without a Result Status");
  res->status = (uint32_t)it->integer;
  it = kmip_item_find(bi, KMIP_TAG_RESULT_REASON);
  if (it)
    res->reason = (uint32_t)it->integer;
  it = kmip_item_find(bi, KMIP_TAG_RESULT_MESSAGE);
  if (it)
    copy_text(it, res->message, sizeof res->message);
  res->payload = kmip_item_find(bi, KMIP_TAG_RESPONSE_PAYLOAD);
  return 0;
}

int kmip_msg_parse_response(const struct kmip_tree *tree, struct kmip_response *resp,
                            struct nbdc_error *err)
{
  memset(resp, 0, sizeof *resp);
  const struct kmip_item *root = kmip_tree_root(tree);
  char name[16];
  if (!root || root->tag != KMIP_TAG_RESPONSE_MESSAGE)
    return nbdc_error_set(err, EBADMSG, "kmip answer is a %s, not a Response Message",
                          root ? kmip_tag_name(root->tag, name) : "nothing");
  const struct kmip_item *hdr = kmip_item_find(root, KMIP_TAG_RESPONSE_HEADER);
  if (!hdr)
    return nbdc_error_set(err, EBADMSG, "kmip response without a Response Header");
  const struct kmip_item *ver = kmip_item_find(hdr, KMIP_TAG_PROTOCOL_VERSION);
  const struct kmip_item *maj = kmip_item_find(ver, KMIP_TAG_PROTOCOL_VERSION_MAJOR);
  const struct kmip_item *min = kmip_item_find(ver, KMIP_TAG_PROTOCOL_VERSION_MINOR);
  if (!maj || !min)
    return nbdc_error_set(err, EBADMSG, "kmip response header without a Protocol Version");
  resp->major = (int)maj->integer;
  resp->minor = (int)min->integer;
  const struct kmip_item *bc = kmip_item_find(hdr, KMIP_TAG_BATCH_COUNT);
  if (!bc)
    return nbdc_error_set(err, EBADMSG, "kmip response header without a Batch Count");
  size_t n = 0;
  for (const struct kmip_item *bi = kmip_item_find(root, KMIP_TAG_BATCH_ITEM); bi;
       bi = kmip_item_next_same(bi)) {
    if (n == KMIP_MSG_MAX_ITEMS)
      return nbdc_error_set(err, EBADMSG, "kmip response with more than %d batch items",
                            KMIP_MSG_MAX_ITEMS);
    int r = parse_item(bi, &resp->items[n], err);
    if (r < 0)
      return r;
    n++;
  }
  if (bc->integer < 0 || (size_t)bc->integer != n)
    return nbdc_error_set(err, EBADMSG, "kmip response announces %lld batch items but has %zu",
                          (long long)bc->integer, n);
  if (n == 0)
    return nbdc_error_set(err, EBADMSG, "kmip response without a batch item");
  resp->count = n;
  return 0;
}

static int reason_errno(uint32_t reason)
{
  switch (reason) {
  case KMIP_REASON_ITEM_NOT_FOUND:
    return ENOENT;
  case KMIP_REASON_PERMISSION_DENIED:
  case KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL:
    return EACCES;
  case KMIP_REASON_OPERATION_NOT_SUPPORTED:
  case 0x08: /* FeatureNotSupported */
  case 0x10: /* KeyFormatTypeNotSupported */
    return ENOTSUP;
  case KMIP_REASON_INVALID_FIELD:
  case KMIP_REASON_INVALID_MESSAGE:
  case 0x06: /* MissingData */
    return EINVAL;
  default:
    return EIO;
  }
}

int kmip_msg_result_error(const struct kmip_result *res, const char *server, uint32_t op,
                          struct nbdc_error *err)
{
  if (res->status == 0)
    return 0;
  uint32_t shown = res->operation ? res->operation : op;
  const char *reason = res->reason ? kmip_reason_name(res->reason) : "no reason given";
  const char *status = res->status == 1   ? ""
                       : res->status == 2 ? " (operation pending: asynchronous answers unsupported)"
                                          : " (operation undone)";
  if (res->message[0])
    return nbdc_error_set(err, reason_errno(res->reason), "kms %s: %s failed: %s (%s)%s", server,
                          kmip_operation_name(shown), reason, res->message, status);
  return nbdc_error_set(err, reason_errno(res->reason), "kms %s: %s failed: %s%s", server,
                        kmip_operation_name(shown), reason, status);
}

int kmip_payload_text(const struct kmip_item *payload, uint32_t tag, char *out, size_t size,
                      struct nbdc_error *err)
{
  char name[16];
  const struct kmip_item *it = kmip_item_find(payload, tag);
  if (!it || it->type != KMIP_TYPE_TEXT_STRING)
    return nbdc_error_set(err, EBADMSG, "kmip response payload without %s",
                          kmip_tag_name(tag, name));
  if (it->length >= size)
    return nbdc_error_set(err, EBADMSG, "kmip response %s of %u bytes is too long (max %zu)",
                          kmip_tag_name(tag, name), it->length, size - 1);
  copy_text(it, out, size);
  return 0;
}

static const char *object_type_name(uint32_t type)
{
  static const char *const names[] = {NULL,           "Certificate", "SymmetricKey", "PublicKey",
                                      "PrivateKey",   "SplitKey",    "Template",     "SecretData",
                                      "OpaqueObject", "PGPKey"};
  return type >= 1 && type <= 9 ? names[type] : "unknown";
}

static const char *algorithm_name(uint32_t alg)
{
  switch (alg) {
  case 1:
    return "DES";
  case 2:
    return "3DES";
  case 3:
    return "AES";
  case 4:
    return "RSA";
  default:
    return "unknown";
  }
}

/* A required enumeration/integer field of an answer, compared with want. */
static int check_number(const struct kmip_item *parent, uint32_t tag, int64_t want,
                        const char *(*name)(uint32_t), const char *server, const char *op,
                        struct nbdc_error *err)
{
  char tag_name[16];
  const struct kmip_item *it = kmip_item_find(parent, tag);
  if (!it || (it->type != KMIP_TYPE_ENUMERATION && it->type != KMIP_TYPE_INTEGER))
    return nbdc_error_set(err, EBADMSG, "kms %s: %s answer: %s is missing, expected %lld", server,
                          op, kmip_tag_name(tag, tag_name), (long long)want);
  if (it->integer == want)
    return 0;
  if (name)
    return nbdc_error_set(err, EBADMSG, "kms %s: %s answer: %s is %lld (%s), expected %lld (%s)",
                          server, op, kmip_tag_name(tag, tag_name), (long long)it->integer,
                          name((uint32_t)it->integer), (long long)want, name((uint32_t)want));
  return nbdc_error_set(err, EBADMSG, "kms %s: %s answer: %s is %lld, expected %lld", server, op,
                        kmip_tag_name(tag, tag_name), (long long)it->integer, (long long)want);
}

int kmip_msg_check(const struct kmip_response *resp, const struct kmip_expect *want,
                   const char *server, struct nbdc_error *err)
{
  const char *op = kmip_operation_name(want->operation);
  if (resp->count != 1)
    return nbdc_error_set(err, EBADMSG, "kms %s: %s answer: Batch Count is %zu, expected 1", server,
                          op, resp->count);
  const struct kmip_result *res = &resp->items[0];
  /* a failure first: session-layer errors come at 1.0 without an Operation */
  int r = kmip_msg_result_error(res, server, want->operation, err);
  if (r < 0)
    return r;
  if (res->operation != want->operation)
    return nbdc_error_set(err, EBADMSG, "kms %s: %s answer: Operation is %s, expected %s", server,
                          op, kmip_operation_name(res->operation), op);
  if (want->version.major &&
      (resp->major != want->version.major || resp->minor != want->version.minor))
    return nbdc_error_set(err, EBADMSG,
                          "kms %s: %s answer: Protocol Version is %d.%d, expected %d.%d", server,
                          op, resp->major, resp->minor, want->version.major, want->version.minor);
  const struct kmip_item *payload = res->payload;
  if (!payload) {
    if (want->payload_optional)
      return 0;
    return nbdc_error_set(err, EBADMSG, "kms %s: %s answer: Response Payload is missing", server,
                          op);
  }
  if (want->unique_id) {
    const struct kmip_item *uid = kmip_item_find(payload, KMIP_TAG_UNIQUE_IDENTIFIER);
    size_t len = strlen(want->unique_id);
    if (!uid || uid->type != KMIP_TYPE_TEXT_STRING)
      return nbdc_error_set(err, EBADMSG,
                            "kms %s: %s answer: Unique Identifier is missing, expected \"%s\"",
                            server, op, want->unique_id);
    if (uid->length != len || memcmp(uid->bytes, want->unique_id, len) != 0) {
      int shown = uid->length > 64 ? 64 : (int)uid->length;
      return nbdc_error_set(err, EBADMSG,
                            "kms %s: %s answer: Unique Identifier is \"%.*s\"%s, expected \"%s\"",
                            server, op, shown, (const char *)uid->bytes,
                            uid->length > 64 ? "..." : "", want->unique_id);
    }
  }
  if (want->object_type && (r = check_number(payload, KMIP_TAG_OBJECT_TYPE, want->object_type,
                                             object_type_name, server, op, err)) < 0)
    return r;
  if (want->algorithm || want->length) {
    const struct kmip_item *block =
        kmip_item_find(kmip_item_find(payload, KMIP_TAG_SYMMETRIC_KEY), KMIP_TAG_KEY_BLOCK);
    if (!block)
      return nbdc_error_set(err, EBADMSG, "kms %s: %s answer: Symmetric Key/Key Block is missing",
                            server, op);
    if (want->algorithm && (r = check_number(block, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM,
                                             want->algorithm, algorithm_name, server, op, err)) < 0)
      return r;
    if (want->length && (r = check_number(block, KMIP_TAG_CRYPTOGRAPHIC_LENGTH, want->length, NULL,
                                          server, op, err)) < 0)
      return r;
  }
  return 0;
}

int kmip_version_choose(const struct kmip_version *theirs, size_t n, struct kmip_version max,
                        struct kmip_version *out)
{
  bool found = false;
  for (size_t i = 0; i < n; i++) {
    if (theirs[i].major != 1 || theirs[i].minor < 0 || theirs[i].minor > max.minor ||
        max.major != 1)
      continue;
    if (!found || theirs[i].minor > out->minor) {
      *out = theirs[i];
      found = true;
    }
  }
  return found ? 0 : -EPROTO;
}
