/* KMIP operations: request payloads in the field order PyKMIP insists on,
 * and the parts of each response nbdcrypt uses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "nbdcrypt/kmip.h"
#include "kmip/client.h"
#include "kmip/internal.h"

#define OBJECT_TYPE_SYMMETRIC_KEY 2
#define ALGORITHM_AES             3
#define KEY_FORMAT_RAW            1
#define MODE_GCM                  9
#define NAME_TYPE_TEXT            1
#define USAGE_KEK                 (0x04 | 0x08 | 0x10 | 0x20) /* Encrypt|Decrypt|WrapKey|UnwrapKey */

size_t kmip_answer_versions(const struct kmip_item *payload, struct kmip_version *versions,
                            size_t max)
{
  size_t count = 0;
  for (const struct kmip_item *it = kmip_item_find(payload, KMIP_TAG_PROTOCOL_VERSION);
       it && count < max; it = kmip_item_next_same(it)) {
    const struct kmip_item *maj = kmip_item_find(it, KMIP_TAG_PROTOCOL_VERSION_MAJOR);
    const struct kmip_item *min = kmip_item_find(it, KMIP_TAG_PROTOCOL_VERSION_MINOR);
    if (!maj || !min)
      continue;
    versions[count].major = (int)maj->integer;
    versions[count].minor = (int)min->integer;
    count++;
  }
  return count;
}

/* Discover Versions at version v, offering 1.max down to 1.0 (or, with
 * offer false, nothing: the server then lists all it speaks). */
static int discover(struct kmip_client *c, struct kmip_version v, bool offer,
                    struct kmip_version *versions, size_t max, size_t *count,
                    struct nbdc_error *err)
{
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want = {
      .operation = KMIP_OP_DISCOVER_VERSIONS, .version = v, .payload_optional = true};
  *count = 0;
  kmip_enc_init(&enc, kmip_client_max_message(c));
  kmip_msg_begin_request(&enc, v.major, v.minor, 1);
  kmip_msg_begin_item(&enc, KMIP_OP_DISCOVER_VERSIONS, 0);
  for (int minor = kmip_client_max_version(c).minor; offer && minor >= 0; minor--) {
    kmip_enc_begin(&enc, KMIP_TAG_PROTOCOL_VERSION);
    kmip_enc_integer(&enc, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
    kmip_enc_integer(&enc, KMIP_TAG_PROTOCOL_VERSION_MINOR, minor);
    kmip_enc_end(&enc);
  }
  kmip_msg_end_item(&enc);
  kmip_msg_end_request(&enc);
  int r = kmip_client_call(c, &want, &enc, &call, err);
  kmip_enc_free(&enc);
  if (r < 0)
    return r;
  for (const struct kmip_item *it =
           kmip_item_find(call.resp.items[0].payload, KMIP_TAG_PROTOCOL_VERSION);
       it && *count < max; it = kmip_item_next_same(it)) {
    const struct kmip_item *maj = kmip_item_find(it, KMIP_TAG_PROTOCOL_VERSION_MAJOR);
    const struct kmip_item *min = kmip_item_find(it, KMIP_TAG_PROTOCOL_VERSION_MINOR);
    if (!maj || !min)
      continue;
    versions[*count].major = (int)maj->integer;
    versions[*count].minor = (int)min->integer;
    (*count)++;
  }
  kmip_call_free(&call);
  return 0;
}

int kmip_client_negotiate(struct kmip_client *c, struct kmip_version *used, struct nbdc_error *err)
{
  if (kmip_client_version(c, used))
    return 0;
  kmip_client_negotiation_lock(c);
  int r = 0;
  if (!kmip_client_version(c, used)) {
    struct kmip_version max = kmip_client_max_version(c);
    struct kmip_version theirs[16];
    size_t n = 0;
    if (max.minor == 0) {
      /* KMIP 1.0 has no Discover Versions */
      kmip_client_set_version(c, max);
    } else if ((r = discover(c, max, true, theirs, 16, &n, err)) == -ENOTSUP) {
      kmip_client_set_version(c, max); /* a server without it: speak our best */
      r = 0;
    } else if (r == 0) {
      struct kmip_version chosen;
      if (kmip_version_choose(theirs, n, max, &chosen) < 0) {
        char list[128] = "";
        size_t len = 0;
        for (size_t i = 0; i < n && len < sizeof list - 16; i++)
          len += (size_t)snprintf(list + len, sizeof list - len, "%s%d.%d", i ? ", " : "",
                                  theirs[i].major, theirs[i].minor);
        r = nbdc_error_set(err, EPROTO,
                           "kms %s: no common KMIP version (we speak 1.0 to 1.%d, the server %s%s)",
                           kmip_client_server(c), max.minor, n ? "lists " : "lists none", list);
      } else {
        kmip_client_set_version(c, chosen);
      }
    }
    if (r == 0)
      (void)kmip_client_version(c, used);
  }
  kmip_client_negotiation_unlock(c);
  return r;
}

/* Negotiate, open a request at the negotiated version and say what its
 * answer must match (op, version, and the object id when it names one). */
static int begin(struct kmip_client *c, struct kmip_enc *enc, struct kmip_expect *want, uint32_t op,
                 const char *id, struct nbdc_error *err)
{
  struct kmip_version v;
  int r = kmip_client_negotiate(c, &v, err);
  if (r < 0)
    return r;
  *want = (struct kmip_expect){.operation = op, .version = v, .unique_id = id};
  kmip_enc_init(enc, kmip_client_max_message(c));
  kmip_msg_begin_request(enc, v.major, v.minor, 1);
  kmip_msg_begin_item(enc, op, 0);
  if (id)
    kmip_enc_text(enc, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
  return 0;
}

/* Close the request, run it, free it. */
static int run(struct kmip_client *c, const struct kmip_expect *want, struct kmip_enc *enc,
               struct kmip_call *call, struct nbdc_error *err)
{
  kmip_msg_end_item(enc);
  kmip_msg_end_request(enc);
  int r = kmip_client_call(c, want, enc, call, err);
  kmip_enc_free(enc);
  return r;
}

static int check_id(const char *id, struct nbdc_error *err)
{
  if (!id || !*id || strlen(id) >= KMIP_ID_MAX)
    return nbdc_error_set(err, EINVAL, "kmip: bad unique identifier \"%s\"", id ? id : "");
  return 0;
}

static void enc_name_attribute(struct kmip_enc *enc, const char *name)
{
  kmip_enc_begin(enc, KMIP_TAG_ATTRIBUTE);
  kmip_enc_text(enc, KMIP_TAG_ATTRIBUTE_NAME, "Name", 4);
  kmip_enc_begin(enc, KMIP_TAG_ATTRIBUTE_VALUE);
  kmip_enc_text(enc, KMIP_TAG_NAME_VALUE, name, strlen(name));
  kmip_enc_enum(enc, KMIP_TAG_NAME_TYPE, NAME_TYPE_TEXT);
  kmip_enc_end(enc);
  kmip_enc_end(enc);
}

static void enc_attribute_enum(struct kmip_enc *enc, const char *name, uint32_t value)
{
  kmip_enc_begin(enc, KMIP_TAG_ATTRIBUTE);
  kmip_enc_text(enc, KMIP_TAG_ATTRIBUTE_NAME, name, strlen(name));
  kmip_enc_enum(enc, KMIP_TAG_ATTRIBUTE_VALUE, value);
  kmip_enc_end(enc);
}

static void enc_attribute_int(struct kmip_enc *enc, const char *name, int32_t value)
{
  kmip_enc_begin(enc, KMIP_TAG_ATTRIBUTE);
  kmip_enc_text(enc, KMIP_TAG_ATTRIBUTE_NAME, name, strlen(name));
  kmip_enc_integer(enc, KMIP_TAG_ATTRIBUTE_VALUE, value);
  kmip_enc_end(enc);
}

static const struct kmip_item *payload(const struct kmip_call *call)
{
  return call->resp.items[0].payload;
}

static int simple_id_op(struct kmip_client *c, uint32_t op, const char *id, struct nbdc_error *err)
{
  int r = check_id(id, err);
  if (r < 0)
    return r;
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  if ((r = begin(c, &enc, &want, op, id, err)) < 0)
    return r;
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  kmip_call_free(&call);
  return 0;
}

int kmip_discover_versions(struct kmip_client *c, struct kmip_version *versions, size_t max,
                           size_t *count, struct nbdc_error *err)
{
  struct kmip_version v;
  *count = 0;
  int r = kmip_client_negotiate(c, &v, err);
  if (r < 0)
    return r;
  return discover(c, v, false, versions, max, count, err);
}

int kmip_query(struct kmip_client *c, uint32_t *ops, size_t max_ops, size_t *op_count, char *vendor,
               size_t vendor_size, struct nbdc_error *err)
{
  struct kmip_enc enc;
  struct kmip_call call;
  *op_count = 0;
  if (vendor && vendor_size)
    vendor[0] = '\0';
  struct kmip_expect want;
  int r = begin(c, &enc, &want, KMIP_OP_QUERY, NULL, err);
  if (r < 0)
    return r;
  kmip_enc_enum(&enc, KMIP_TAG_QUERY_FUNCTION, 1); /* Query Operations */
  kmip_enc_enum(&enc, KMIP_TAG_QUERY_FUNCTION, 2); /* Query Objects */
  kmip_enc_enum(&enc, KMIP_TAG_QUERY_FUNCTION, 3); /* Query Server Information */
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  for (const struct kmip_item *o = kmip_item_find(payload(&call), KMIP_TAG_OPERATION);
       o && *op_count < max_ops; o = kmip_item_next_same(o))
    ops[(*op_count)++] = (uint32_t)o->integer;
  if (vendor && vendor_size && kmip_item_find(payload(&call), KMIP_TAG_VENDOR_IDENTIFICATION))
    (void)kmip_payload_text(payload(&call), KMIP_TAG_VENDOR_IDENTIFICATION, vendor, vendor_size,
                            NULL);
  kmip_call_free(&call);
  return 0;
}

int kmip_create_aes256(struct kmip_client *c, const char *name, char id_out[KMIP_ID_MAX],
                       struct nbdc_error *err)
{
  if (name && (!*name || strlen(name) > 1024))
    return nbdc_error_set(err, EINVAL, "kmip: key name must be 1 to 1024 bytes");
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  int r = begin(c, &enc, &want, KMIP_OP_CREATE, NULL, err);
  if (r < 0)
    return r;
  want.object_type = OBJECT_TYPE_SYMMETRIC_KEY;
  kmip_enc_enum(&enc, KMIP_TAG_OBJECT_TYPE, OBJECT_TYPE_SYMMETRIC_KEY);
  kmip_enc_begin(&enc, KMIP_TAG_TEMPLATE_ATTRIBUTE);
  enc_attribute_enum(&enc, "Cryptographic Algorithm", ALGORITHM_AES);
  enc_attribute_int(&enc, "Cryptographic Length", 256);
  enc_attribute_int(&enc, "Cryptographic Usage Mask", USAGE_KEK);
  if (name)
    enc_name_attribute(&enc, name);
  const char *policy = kmip_client_operation_policy(c);
  if (policy) {
    kmip_enc_begin(&enc, KMIP_TAG_ATTRIBUTE);
    kmip_enc_text(&enc, KMIP_TAG_ATTRIBUTE_NAME, "Operation Policy Name", 21);
    kmip_enc_text(&enc, KMIP_TAG_ATTRIBUTE_VALUE, policy, strlen(policy));
    kmip_enc_end(&enc);
  }
  kmip_enc_end(&enc);
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  r = kmip_payload_text(payload(&call), KMIP_TAG_UNIQUE_IDENTIFIER, id_out, KMIP_ID_MAX, err);
  kmip_call_free(&call);
  if (r < 0)
    return nbdc_error_prefix(err, "kms %s: Create", kmip_client_server(c));
  return 0;
}

int kmip_activate(struct kmip_client *c, const char *id, struct nbdc_error *err)
{
  return simple_id_op(c, KMIP_OP_ACTIVATE, id, err);
}

int kmip_destroy(struct kmip_client *c, const char *id, struct nbdc_error *err)
{
  return simple_id_op(c, KMIP_OP_DESTROY, id, err);
}

int kmip_answer_key(const struct kmip_item *payload, const char *server, const char *id,
                    uint8_t *key, size_t key_max, size_t *key_len, struct nbdc_error *err)
{
  const struct kmip_item *block =
      kmip_item_find(kmip_item_find(payload, KMIP_TAG_SYMMETRIC_KEY), KMIP_TAG_KEY_BLOCK);
  const struct kmip_item *format = kmip_item_find(block, KMIP_TAG_KEY_FORMAT_TYPE);
  const struct kmip_item *material =
      kmip_item_find(kmip_item_find(block, KMIP_TAG_KEY_VALUE), KMIP_TAG_KEY_MATERIAL);
  if (!block)
    return nbdc_error_set(err, EBADMSG, "kms %s: object %s is not a symmetric key", server, id);
  if (!format || format->integer != KEY_FORMAT_RAW || !material ||
      material->type != KMIP_TYPE_BYTE_STRING)
    return nbdc_error_set(err, EBADMSG, "kms %s: key %s did not come back as a raw key", server,
                          id);
  if (material->length != 256 / 8)
    return nbdc_error_set(err, EBADMSG,
                          "kms %s: Get answer: Key Material is %u bytes, expected 32 "
                          "(Cryptographic Length 256)",
                          server, material->length);
  if (material->length > key_max)
    return nbdc_error_set(err, ENOSPC, "kms %s: key %s is %u bytes, more than the %zu expected",
                          server, id, material->length, key_max);
  memcpy(key, material->bytes, material->length);
  *key_len = material->length;
  return 0;
}

int kmip_get_key(struct kmip_client *c, const char *id, uint8_t *key, size_t key_max,
                 size_t *key_len, struct nbdc_error *err)
{
  int r = check_id(id, err);
  if (r < 0)
    return r;
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  if ((r = begin(c, &enc, &want, KMIP_OP_GET, id, err)) < 0)
    return r;
  want.object_type = OBJECT_TYPE_SYMMETRIC_KEY;
  want.algorithm = ALGORITHM_AES;
  want.length = 256;
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  r = kmip_answer_key(payload(&call), kmip_client_server(c), id, key, key_max, key_len, err);
  kmip_call_free(&call);
  return r;
}

void kmip_ids_free(char **ids, size_t count)
{
  if (!ids)
    return;
  for (size_t i = 0; i < count; i++)
    free(ids[i]);
  free(ids);
}

int kmip_locate(struct kmip_client *c, const char *name, size_t max_items, char ***ids_out,
                size_t *count_out, struct nbdc_error *err)
{
  *ids_out = NULL;
  *count_out = 0;
  if (max_items > INT32_MAX)
    return nbdc_error_set(err, EINVAL, "kmip: locate max items %zu too large", max_items);
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  int r = begin(c, &enc, &want, KMIP_OP_LOCATE, NULL, err);
  if (r < 0)
    return r;
  if (max_items)
    kmip_enc_integer(&enc, KMIP_TAG_MAXIMUM_ITEMS, (int32_t)max_items);
  if (name)
    enc_name_attribute(&enc, name);
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  size_t n = 0;
  for (const struct kmip_item *u = kmip_item_find(payload(&call), KMIP_TAG_UNIQUE_IDENTIFIER); u;
       u = kmip_item_next_same(u))
    n++;
  char **ids = calloc(n ? n : 1, sizeof *ids);
  if (!ids) {
    kmip_call_free(&call);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  size_t k = 0;
  for (const struct kmip_item *u = kmip_item_find(payload(&call), KMIP_TAG_UNIQUE_IDENTIFIER); u;
       u = kmip_item_next_same(u)) {
    ids[k] = strndup((const char *)u->bytes, u->length);
    if (!ids[k]) {
      kmip_ids_free(ids, k);
      kmip_call_free(&call);
      return nbdc_error_set(err, ENOMEM, "out of memory");
    }
    k++;
  }
  kmip_call_free(&call);
  *ids_out = ids;
  *count_out = n;
  return 0;
}

int kmip_get_info(struct kmip_client *c, const char *id, char *name, size_t name_size,
                  uint32_t *state, int64_t *initial_date, struct nbdc_error *err)
{
  int r = check_id(id, err);
  if (r < 0)
    return r;
  if (name_size)
    name[0] = '\0';
  *state = 0;
  *initial_date = -1;
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  if ((r = begin(c, &enc, &want, KMIP_OP_GET_ATTRIBUTES, id, err)) < 0)
    return r;
  kmip_enc_text(&enc, KMIP_TAG_ATTRIBUTE_NAME, "Name", 4);
  kmip_enc_text(&enc, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
  kmip_enc_text(&enc, KMIP_TAG_ATTRIBUTE_NAME, "Initial Date", 12);
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  for (const struct kmip_item *a = kmip_item_find(payload(&call), KMIP_TAG_ATTRIBUTE); a;
       a = kmip_item_next_same(a)) {
    const struct kmip_item *an = kmip_item_find(a, KMIP_TAG_ATTRIBUTE_NAME);
    const struct kmip_item *av = kmip_item_find(a, KMIP_TAG_ATTRIBUTE_VALUE);
    if (!an || !av)
      continue;
    if (an->length == 4 && memcmp(an->bytes, "Name", 4) == 0 && !name[0] && name_size)
      (void)kmip_payload_text(av, KMIP_TAG_NAME_VALUE, name, name_size, NULL);
    else if (an->length == 5 && memcmp(an->bytes, "State", 5) == 0 &&
             av->type == KMIP_TYPE_ENUMERATION)
      *state = (uint32_t)av->integer;
    else if (an->length == 12 && memcmp(an->bytes, "Initial Date", 12) == 0 &&
             av->type == KMIP_TYPE_DATE_TIME)
      *initial_date = av->integer;
  }
  kmip_call_free(&call);
  return 0;
}

int kmip_answer_state(const struct kmip_item *payload, const char *server, const char *id,
                      enum kmip_state *state, struct nbdc_error *err)
{
  const struct kmip_item *value = NULL;
  int count = 0;
  for (const struct kmip_item *a = kmip_item_find(payload, KMIP_TAG_ATTRIBUTE); a;
       a = kmip_item_next_same(a)) {
    const struct kmip_item *an = kmip_item_find(a, KMIP_TAG_ATTRIBUTE_NAME);
    if (an && an->length == 5 && memcmp(an->bytes, "State", 5) == 0) {
      value = kmip_item_find(a, KMIP_TAG_ATTRIBUTE_VALUE);
      count++;
    }
  }
  if (count == 0)
    return nbdc_error_set(err, EBADMSG, "kms %s: Get Attributes answer: State of %s is missing",
                          server, id);
  if (count > 1)
    return nbdc_error_set(err, EBADMSG,
                          "kms %s: Get Attributes answer: %d States for %s, expected 1", server,
                          count, id);
  if (!value || value->type != KMIP_TYPE_ENUMERATION)
    return nbdc_error_set(err, EBADMSG,
                          "kms %s: Get Attributes answer: State of %s is not an Enumeration",
                          server, id);
  if (value->integer < KMIP_STATE_PRE_ACTIVE || value->integer > KMIP_STATE_DESTROYED_COMPROMISED)
    return nbdc_error_set(err, EBADMSG,
                          "kms %s: Get Attributes answer: State of %s is %lld, expected 1 to 6",
                          server, id, (long long)value->integer);
  *state = (enum kmip_state)value->integer;
  return 0;
}

int kmip_get_state(struct kmip_client *c, const char *id, enum kmip_state *state,
                   struct nbdc_error *err)
{
  int r = check_id(id, err);
  if (r < 0)
    return r;
  *state = 0;
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  if ((r = begin(c, &enc, &want, KMIP_OP_GET_ATTRIBUTES, id, err)) < 0)
    return r;
  kmip_enc_text(&enc, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  r = kmip_answer_state(payload(&call), kmip_client_server(c), id, state, err);
  kmip_call_free(&call);
  return r;
}

int kmip_revoke(struct kmip_client *c, const char *id, uint32_t reason_code, const char *message,
                struct nbdc_error *err)
{
  int r = check_id(id, err);
  if (r < 0)
    return r;
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  if ((r = begin(c, &enc, &want, KMIP_OP_REVOKE, id, err)) < 0)
    return r;
  kmip_enc_begin(&enc, KMIP_TAG_REVOCATION_REASON);
  kmip_enc_enum(&enc, KMIP_TAG_REVOCATION_REASON_CODE, reason_code);
  if (message && *message)
    kmip_enc_text(&enc, KMIP_TAG_REVOCATION_MESSAGE, message, strlen(message));
  kmip_enc_end(&enc);
  if (reason_code == KMIP_REVOKE_KEY_COMPROMISE)
    kmip_enc_datetime(&enc, KMIP_TAG_COMPROMISE_OCCURRENCE_DATE, (int64_t)time(NULL));
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  kmip_call_free(&call);
  return 0;
}

/* Cryptographic Parameters for AES-GCM with a 16-byte tag, fields in spec
 * order (PyKMIP answers InvalidMessage otherwise). */
static void enc_gcm_params(struct kmip_enc *enc)
{
  kmip_enc_begin(enc, KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS);
  kmip_enc_enum(enc, KMIP_TAG_BLOCK_CIPHER_MODE, MODE_GCM);
  kmip_enc_enum(enc, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, ALGORITHM_AES);
  kmip_enc_integer(enc, KMIP_TAG_TAG_LENGTH, 16);
  kmip_enc_end(enc);
}

static int gcm_check(struct kmip_client *c, const char *id, const char *what,
                     struct nbdc_error *err)
{
  int r = check_id(id, err);
  if (r < 0)
    return r;
  struct kmip_version max = kmip_client_max_version(c), v;
  if (max.minor < 4)
    return nbdc_error_set(err, ENOTSUP,
                          "kmip: %s with AES-GCM needs protocol 1.4 (configured for at most 1.%d)",
                          what, max.minor);
  if ((r = kmip_client_negotiate(c, &v, err)) < 0)
    return r;
  if (v.minor < 4)
    return nbdc_error_set(err, ENOTSUP,
                          "kms %s: %s with AES-GCM needs protocol 1.4 (negotiated 1.%d)",
                          kmip_client_server(c), what, v.minor);
  return 0;
}

int kmip_encrypt_gcm(struct kmip_client *c, const char *id, const uint8_t *plain, size_t plain_len,
                     const uint8_t *aad, size_t aad_len, uint8_t iv[12], uint8_t tag[16],
                     uint8_t **cipher, size_t *cipher_len, struct nbdc_error *err)
{
  *cipher = NULL;
  *cipher_len = 0;
  int r = gcm_check(c, id, "encrypt", err);
  if (r < 0)
    return r;
  /* our own IV: PyKMIP would make a 16-byte one, we want the standard 12 */
  if (RAND_bytes(iv, 12) != 1)
    return nbdc_error_set(err, EIO, "kmip: no random bytes for an IV");
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  if ((r = begin(c, &enc, &want, KMIP_OP_ENCRYPT, id, err)) < 0)
    return r;
  enc_gcm_params(&enc);
  kmip_enc_bytes(&enc, KMIP_TAG_DATA, plain, plain_len);
  kmip_enc_bytes(&enc, KMIP_TAG_IV_COUNTER_NONCE, iv, 12);
  if (aad && aad_len)
    kmip_enc_bytes(&enc, KMIP_TAG_AE_ADDITIONAL_DATA, aad, aad_len);
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  const struct kmip_item *data = kmip_item_find(payload(&call), KMIP_TAG_DATA);
  const struct kmip_item *ae_tag = kmip_item_find(payload(&call), KMIP_TAG_AE_TAG);
  const struct kmip_item *ret_iv = kmip_item_find(payload(&call), KMIP_TAG_IV_COUNTER_NONCE);
  if (!data || data->length != plain_len)
    r = nbdc_error_set(err, EBADMSG, "kms %s: Encrypt answered without %zu bytes of data",
                       kmip_client_server(c), plain_len);
  else if (!ae_tag || ae_tag->length != 16)
    r = nbdc_error_set(err, EBADMSG, "kms %s: Encrypt answered without a 16-byte AE Tag",
                       kmip_client_server(c));
  else if (ret_iv && (ret_iv->length != 12 || memcmp(ret_iv->bytes, iv, 12) != 0))
    r = nbdc_error_set(err, EBADMSG, "kms %s: Encrypt used another IV than ours",
                       kmip_client_server(c));
  else if (!(*cipher = malloc(plain_len ? plain_len : 1)))
    r = nbdc_error_set(err, ENOMEM, "out of memory");
  else {
    memcpy(*cipher, data->bytes, plain_len);
    *cipher_len = plain_len;
    memcpy(tag, ae_tag->bytes, 16);
  }
  kmip_call_free(&call);
  return r;
}

int kmip_decrypt_gcm(struct kmip_client *c, const char *id, const uint8_t *cipher,
                     size_t cipher_len, const uint8_t *aad, size_t aad_len, const uint8_t iv[12],
                     const uint8_t tag[16], uint8_t *plain, size_t plain_max, size_t *plain_len,
                     struct nbdc_error *err)
{
  int r = gcm_check(c, id, "decrypt", err);
  if (r < 0)
    return r;
  struct kmip_enc enc;
  struct kmip_call call;
  struct kmip_expect want;
  if ((r = begin(c, &enc, &want, KMIP_OP_DECRYPT, id, err)) < 0)
    return r;
  enc_gcm_params(&enc);
  kmip_enc_bytes(&enc, KMIP_TAG_DATA, cipher, cipher_len);
  kmip_enc_bytes(&enc, KMIP_TAG_IV_COUNTER_NONCE, iv, 12);
  if (aad && aad_len)
    kmip_enc_bytes(&enc, KMIP_TAG_AE_ADDITIONAL_DATA, aad, aad_len);
  kmip_enc_bytes(&enc, KMIP_TAG_AE_TAG, tag, 16);
  r = run(c, &want, &enc, &call, err);
  if (r < 0)
    return r;
  const struct kmip_item *data = kmip_item_find(payload(&call), KMIP_TAG_DATA);
  if (!data)
    r = nbdc_error_set(err, EBADMSG, "kms %s: Decrypt answered without data",
                       kmip_client_server(c));
  else if (data->length > plain_max)
    r = nbdc_error_set(err, ENOSPC, "kms %s: Decrypt answered %u bytes, more than %zu",
                       kmip_client_server(c), data->length, plain_max);
  else {
    memcpy(plain, data->bytes, data->length);
    *plain_len = data->length;
  }
  kmip_call_free(&call);
  return r;
}
