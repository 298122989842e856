/* Names of KMIP tags, types, operations, reasons and states; the tag -> type
 * table the decoder enforces; the masked trace dump of a TTLV tree. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "nbdcrypt/kmip.h"
#include "kmip/internal.h"

struct tag_info {
  uint32_t tag;
  int type; /* required type, 0 when the tag may carry several */
  const char *name;
};

/* Sorted by tag for bsearch-free linear lookups: the table is small. */
static const struct tag_info tag_table[] = {
    {KMIP_TAG_ACTIVATION_DATE, KMIP_TYPE_DATE_TIME, "Activation Date"},
    {0x420007, KMIP_TYPE_BOOLEAN, "Asynchronous Indicator"},
    {KMIP_TAG_ATTRIBUTE, KMIP_TYPE_STRUCTURE, "Attribute"},
    {KMIP_TAG_ATTRIBUTE_INDEX, KMIP_TYPE_INTEGER, "Attribute Index"},
    {KMIP_TAG_ATTRIBUTE_NAME, KMIP_TYPE_TEXT_STRING, "Attribute Name"},
    {KMIP_TAG_ATTRIBUTE_VALUE, 0, "Attribute Value"},
    {0x42000C, KMIP_TYPE_STRUCTURE, "Authentication"},
    {KMIP_TAG_BATCH_COUNT, KMIP_TYPE_INTEGER, "Batch Count"},
    {0x42000E, KMIP_TYPE_ENUMERATION, "Batch Error Continuation Option"},
    {KMIP_TAG_BATCH_ITEM, KMIP_TYPE_STRUCTURE, "Batch Item"},
    {0x420010, KMIP_TYPE_BOOLEAN, "Batch Order Option"},
    {KMIP_TAG_BLOCK_CIPHER_MODE, KMIP_TYPE_ENUMERATION, "Block Cipher Mode"},
    {KMIP_TAG_COMPROMISE_OCCURRENCE_DATE, KMIP_TYPE_DATE_TIME, "Compromise Occurrence Date"},
    {KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, KMIP_TYPE_ENUMERATION, "Cryptographic Algorithm"},
    {KMIP_TAG_CRYPTOGRAPHIC_LENGTH, KMIP_TYPE_INTEGER, "Cryptographic Length"},
    {KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS, KMIP_TYPE_STRUCTURE, "Cryptographic Parameters"},
    {KMIP_TAG_CRYPTOGRAPHIC_USAGE_MASK, KMIP_TYPE_INTEGER, "Cryptographic Usage Mask"},
    {0x420038, KMIP_TYPE_ENUMERATION, "Hashing Algorithm"},
    {KMIP_TAG_INITIAL_DATE, KMIP_TYPE_DATE_TIME, "Initial Date"},
    {KMIP_TAG_IV_COUNTER_NONCE, KMIP_TYPE_BYTE_STRING, "IV/Counter/Nonce"},
    {KMIP_TAG_KEY_BLOCK, KMIP_TYPE_STRUCTURE, "Key Block"},
    {0x420041, KMIP_TYPE_ENUMERATION, "Key Compression Type"},
    {KMIP_TAG_KEY_FORMAT_TYPE, KMIP_TYPE_ENUMERATION, "Key Format Type"},
    {KMIP_TAG_KEY_MATERIAL, 0, "Key Material"},
    {KMIP_TAG_KEY_VALUE, 0, "Key Value"},
    {0x420046, KMIP_TYPE_STRUCTURE, "Key Wrapping Data"},
    {KMIP_TAG_MAXIMUM_ITEMS, KMIP_TYPE_INTEGER, "Maximum Items"},
    {KMIP_TAG_MAXIMUM_RESPONSE_SIZE, KMIP_TYPE_INTEGER, "Maximum Response Size"},
    {KMIP_TAG_NAME, KMIP_TYPE_STRUCTURE, "Name"},
    {KMIP_TAG_NAME_TYPE, KMIP_TYPE_ENUMERATION, "Name Type"},
    {KMIP_TAG_NAME_VALUE, KMIP_TYPE_TEXT_STRING, "Name Value"},
    {KMIP_TAG_OBJECT_TYPE, KMIP_TYPE_ENUMERATION, "Object Type"},
    {KMIP_TAG_OPERATION, KMIP_TYPE_ENUMERATION, "Operation"},
    {KMIP_TAG_PADDING_METHOD, KMIP_TYPE_ENUMERATION, "Padding Method"},
    {KMIP_TAG_PROTOCOL_VERSION, KMIP_TYPE_STRUCTURE, "Protocol Version"},
    {KMIP_TAG_PROTOCOL_VERSION_MAJOR, KMIP_TYPE_INTEGER, "Protocol Version Major"},
    {KMIP_TAG_PROTOCOL_VERSION_MINOR, KMIP_TYPE_INTEGER, "Protocol Version Minor"},
    {KMIP_TAG_QUERY_FUNCTION, KMIP_TYPE_ENUMERATION, "Query Function"},
    {KMIP_TAG_REQUEST_HEADER, KMIP_TYPE_STRUCTURE, "Request Header"},
    {KMIP_TAG_REQUEST_MESSAGE, KMIP_TYPE_STRUCTURE, "Request Message"},
    {KMIP_TAG_REQUEST_PAYLOAD, KMIP_TYPE_STRUCTURE, "Request Payload"},
    {KMIP_TAG_RESPONSE_HEADER, KMIP_TYPE_STRUCTURE, "Response Header"},
    {KMIP_TAG_RESPONSE_MESSAGE, KMIP_TYPE_STRUCTURE, "Response Message"},
    {KMIP_TAG_RESPONSE_PAYLOAD, KMIP_TYPE_STRUCTURE, "Response Payload"},
    {KMIP_TAG_RESULT_MESSAGE, KMIP_TYPE_TEXT_STRING, "Result Message"},
    {KMIP_TAG_RESULT_REASON, KMIP_TYPE_ENUMERATION, "Result Reason"},
    {KMIP_TAG_RESULT_STATUS, KMIP_TYPE_ENUMERATION, "Result Status"},
    {KMIP_TAG_REVOCATION_MESSAGE, KMIP_TYPE_TEXT_STRING, "Revocation Message"},
    {KMIP_TAG_REVOCATION_REASON, KMIP_TYPE_STRUCTURE, "Revocation Reason"},
    {KMIP_TAG_REVOCATION_REASON_CODE, KMIP_TYPE_ENUMERATION, "Revocation Reason Code"},
    {0x420083, KMIP_TYPE_ENUMERATION, "Key Role Type"},
    {KMIP_TAG_SERVER_INFORMATION, KMIP_TYPE_STRUCTURE, "Server Information"},
    {KMIP_TAG_STATE, KMIP_TYPE_ENUMERATION, "State"},
    {KMIP_TAG_SYMMETRIC_KEY, KMIP_TYPE_STRUCTURE, "Symmetric Key"},
    {KMIP_TAG_TEMPLATE_ATTRIBUTE, KMIP_TYPE_STRUCTURE, "Template-Attribute"},
    {KMIP_TAG_TIME_STAMP, KMIP_TYPE_DATE_TIME, "Time Stamp"},
    {KMIP_TAG_UNIQUE_BATCH_ITEM_ID, KMIP_TYPE_BYTE_STRING, "Unique Batch Item ID"},
    {KMIP_TAG_UNIQUE_IDENTIFIER, KMIP_TYPE_TEXT_STRING, "Unique Identifier"},
    {KMIP_TAG_VENDOR_IDENTIFICATION, KMIP_TYPE_TEXT_STRING, "Vendor Identification"},
    {KMIP_TAG_DATA, KMIP_TYPE_BYTE_STRING, "Data"},
    {0x4200C5, KMIP_TYPE_BOOLEAN, "Random IV"},
    {0x4200CD, KMIP_TYPE_INTEGER, "IV Length"},
    {KMIP_TAG_TAG_LENGTH, KMIP_TYPE_INTEGER, "Tag Length"},
    {KMIP_TAG_LOCATED_ITEMS, KMIP_TYPE_INTEGER, "Located Items"},
    {KMIP_TAG_AE_ADDITIONAL_DATA, KMIP_TYPE_BYTE_STRING, "AE Additional Data"},
    {KMIP_TAG_AE_TAG, KMIP_TYPE_BYTE_STRING, "AE Tag"},
};

static const struct tag_info *tag_lookup(uint32_t tag)
{
  for (size_t i = 0; i < sizeof tag_table / sizeof tag_table[0]; i++)
    if (tag_table[i].tag == tag)
      return &tag_table[i];
  return NULL;
}

int kmip_tag_type(uint32_t tag)
{
  const struct tag_info *t = tag_lookup(tag);
  return t ? t->type : 0;
}

const char *kmip_tag_name(uint32_t tag, char buf[16])
{
  const struct tag_info *t = tag_lookup(tag);
  if (t)
    return t->name;
  snprintf(buf, 16, "tag 0x%06" PRIx32, tag & 0xFFFFFF);
  return buf;
}

const char *kmip_type_name(enum kmip_type type)
{
  static const char *const names[] = {
      NULL,      "Structure",  "Integer",    "LongInteger", "BigInteger", "Enumeration",
      "Boolean", "TextString", "ByteString", "DateTime",    "Interval",
  };
  if (type >= 1 && type <= 0x0A)
    return names[type];
  return "unknown";
}

const char *kmip_operation_name(uint32_t op)
{
  switch (op) {
  case KMIP_OP_CREATE:
    return "Create";
  case 0x02:
    return "CreateKeyPair";
  case 0x03:
    return "Register";
  case 0x04:
    return "ReKey";
  case 0x05:
    return "DeriveKey";
  case KMIP_OP_LOCATE:
    return "Locate";
  case KMIP_OP_GET:
    return "Get";
  case KMIP_OP_GET_ATTRIBUTES:
    return "GetAttributes";
  case 0x0C:
    return "GetAttributeList";
  case 0x0D:
    return "AddAttribute";
  case 0x0E:
    return "ModifyAttribute";
  case 0x0F:
    return "DeleteAttribute";
  case KMIP_OP_ACTIVATE:
    return "Activate";
  case KMIP_OP_REVOKE:
    return "Revoke";
  case KMIP_OP_DESTROY:
    return "Destroy";
  case KMIP_OP_QUERY:
    return "Query";
  case KMIP_OP_DISCOVER_VERSIONS:
    return "DiscoverVersions";
  case KMIP_OP_ENCRYPT:
    return "Encrypt";
  case KMIP_OP_DECRYPT:
    return "Decrypt";
  case 0x21:
    return "Sign";
  case 0x22:
    return "SignatureVerify";
  case 0x23:
    return "MAC";
  default:
    return "unknown";
  }
}

const char *kmip_reason_name(uint32_t reason)
{
  switch (reason) {
  case 0x01:
    return "ItemNotFound";
  case 0x02:
    return "ResponseTooLarge";
  case 0x03:
    return "AuthenticationNotSuccessful";
  case 0x04:
    return "InvalidMessage";
  case 0x05:
    return "OperationNotSupported";
  case 0x06:
    return "MissingData";
  case 0x07:
    return "InvalidField";
  case 0x08:
    return "FeatureNotSupported";
  case 0x09:
    return "OperationCanceledByRequester";
  case 0x0A:
    return "CryptographicFailure";
  case 0x0B:
    return "IllegalOperation";
  case 0x0C:
    return "PermissionDenied";
  case 0x0D:
    return "ObjectArchived";
  case 0x0E:
    return "IndexOutOfBounds";
  case 0x0F:
    return "ApplicationNamespaceNotSupported";
  case 0x10:
    return "KeyFormatTypeNotSupported";
  case 0x11:
    return "KeyCompressionTypeNotSupported";
  case 0x12:
    return "EncodingOptionError";
  case 0x13:
    return "KeyValueNotPresent";
  case 0x14:
    return "AttestationRequired";
  case 0x15:
    return "AttestationFailed";
  case 0x16:
    return "Sensitive";
  case 0x17:
    return "NotExtractable";
  case 0x18:
    return "ObjectAlreadyExists";
  case 0x100:
    return "GeneralFailure";
  default:
    return "unknown";
  }
}

const char *kmip_state_name(uint32_t state)
{
  static const char *const names[] = {
      NULL,
      "PreActive",
      "Active",
      "Deactivated",
      "Compromised",
      "Destroyed",
      "DestroyedCompromised",
  };
  if (state >= 1 && state <= 6)
    return names[state];
  return "unknown";
}

/* Values never shown in a trace: the key, the data to (de)crypt, the IV. */
static bool tag_masked(uint32_t tag)
{
  return tag == KMIP_TAG_KEY_MATERIAL || tag == KMIP_TAG_DATA || tag == KMIP_TAG_IV_COUNTER_NONCE;
}

static void dump_item(FILE *f, const char *prefix, const struct kmip_item *it, bool masked)
{
  char name[16];
  fprintf(f, "%s%*s%s (%s", prefix, (int)(2 * (it->depth - 1)), "", kmip_tag_name(it->tag, name),
          kmip_type_name(it->type));
  masked = masked || tag_masked(it->tag);
  if (it->type == KMIP_TYPE_STRUCTURE) {
    fprintf(f, ", %" PRIu32 " bytes)%s\n", it->length, masked ? " <masked>" : "");
    if (!masked)
      for (const struct kmip_item *c = it->child; c; c = c->next)
        dump_item(f, prefix, c, false);
    return;
  }
  if (masked) {
    fprintf(f, ") <masked %" PRIu32 " bytes>\n", it->length);
    return;
  }
  switch (it->type) {
  case KMIP_TYPE_TEXT_STRING:
    fprintf(f, ") \"");
    for (uint32_t i = 0; i < it->length; i++) {
      uint8_t c = it->bytes[i];
      if (c < 0x20 || c == '"' || c == '\\' || c == 0x7F)
        fprintf(f, "\\x%02x", c);
      else
        fputc(c, f);
    }
    fprintf(f, "\"\n");
    break;
  case KMIP_TYPE_BYTE_STRING:
  case KMIP_TYPE_BIG_INTEGER:
    fprintf(f, ", %" PRIu32 " bytes) ", it->length);
    for (uint32_t i = 0; i < it->length && i < 64; i++)
      fprintf(f, "%02x", it->bytes[i]);
    fprintf(f, "%s\n", it->length > 64 ? "..." : "");
    break;
  case KMIP_TYPE_ENUMERATION:
    if (it->tag == KMIP_TAG_OPERATION)
      fprintf(f, ") %s (0x%" PRIx64 ")\n", kmip_operation_name((uint32_t)it->integer), it->integer);
    else if (it->tag == KMIP_TAG_RESULT_REASON)
      fprintf(f, ") %s (0x%" PRIx64 ")\n", kmip_reason_name((uint32_t)it->integer), it->integer);
    else
      fprintf(f, ") 0x%" PRIx64 "\n", it->integer);
    break;
  case KMIP_TYPE_BOOLEAN:
    fprintf(f, ") %s\n", it->integer ? "true" : "false");
    break;
  default:
    fprintf(f, ") %" PRId64 "\n", it->integer);
    break;
  }
}

void kmip_tree_dump(const struct kmip_tree *tree, void *stream, const char *prefix)
{
  const struct kmip_item *root = kmip_tree_root(tree);
  if (root)
    dump_item(stream, prefix ? prefix : "", root, false);
}
