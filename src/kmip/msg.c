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
