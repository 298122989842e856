/* nbdcrypt KMIP client module (src/kmip): TTLV codec, request/response
 * messages, TLS transport and the client operations nbdcrypt needs.
 * Knows nothing of disks, LUKS2 or key providers.  All state lives in the
 * handles; errors are per call (struct nbdc_error); no process globals.
 * Facts and server quirks: docs/kmip.md.
 */
#ifndef NBDCRYPT_KMIP_H
#define NBDCRYPT_KMIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/error.h"

/* ---- TTLV codec (src/kmip/ttlv.c) ---------------------------------------- */

#define KMIP_MAX_DEPTH        16         /* structures nested deeper are refused */
#define KMIP_MAX_MESSAGE_SIZE (1u << 20) /* default bound of one message, bytes */

enum kmip_type {
  KMIP_TYPE_STRUCTURE = 0x01,
  KMIP_TYPE_INTEGER = 0x02,
  KMIP_TYPE_LONG_INTEGER = 0x03,
  KMIP_TYPE_BIG_INTEGER = 0x04,
  KMIP_TYPE_ENUMERATION = 0x05,
  KMIP_TYPE_BOOLEAN = 0x06,
  KMIP_TYPE_TEXT_STRING = 0x07,
  KMIP_TYPE_BYTE_STRING = 0x08,
  KMIP_TYPE_DATE_TIME = 0x09,
  KMIP_TYPE_INTERVAL = 0x0A,
};

/* Tags used by nbdcrypt (KMIP 1.4 section 9.1.3.1). */
enum kmip_tag {
  KMIP_TAG_ACTIVATION_DATE = 0x420001,
  KMIP_TAG_ATTRIBUTE = 0x420008,
  KMIP_TAG_ATTRIBUTE_INDEX = 0x420009,
  KMIP_TAG_ATTRIBUTE_NAME = 0x42000A,
  KMIP_TAG_ATTRIBUTE_VALUE = 0x42000B,
  KMIP_TAG_BATCH_COUNT = 0x42000D,
  KMIP_TAG_BATCH_ITEM = 0x42000F,
  KMIP_TAG_BLOCK_CIPHER_MODE = 0x420011,
  KMIP_TAG_COMPROMISE_OCCURRENCE_DATE = 0x420021,
  KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM = 0x420028,
  KMIP_TAG_CRYPTOGRAPHIC_LENGTH = 0x42002A,
  KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS = 0x42002B,
  KMIP_TAG_CRYPTOGRAPHIC_USAGE_MASK = 0x42002C,
  KMIP_TAG_INITIAL_DATE = 0x420039,
  KMIP_TAG_IV_COUNTER_NONCE = 0x42003D,
  KMIP_TAG_KEY_BLOCK = 0x420040,
  KMIP_TAG_KEY_FORMAT_TYPE = 0x420042,
  KMIP_TAG_KEY_MATERIAL = 0x420043,
  KMIP_TAG_KEY_VALUE = 0x420045,
  KMIP_TAG_MAXIMUM_ITEMS = 0x42004F,
  KMIP_TAG_MAXIMUM_RESPONSE_SIZE = 0x420050,
  KMIP_TAG_NAME = 0x420053,
  KMIP_TAG_NAME_TYPE = 0x420054,
  KMIP_TAG_NAME_VALUE = 0x420055,
  KMIP_TAG_OBJECT_TYPE = 0x420057,
  KMIP_TAG_OPERATION = 0x42005C,
  KMIP_TAG_PADDING_METHOD = 0x42005F,
  KMIP_TAG_PROTOCOL_VERSION = 0x420069,
  KMIP_TAG_PROTOCOL_VERSION_MAJOR = 0x42006A,
  KMIP_TAG_PROTOCOL_VERSION_MINOR = 0x42006B,
  KMIP_TAG_QUERY_FUNCTION = 0x420074,
  KMIP_TAG_REQUEST_HEADER = 0x420077,
  KMIP_TAG_REQUEST_MESSAGE = 0x420078,
  KMIP_TAG_REQUEST_PAYLOAD = 0x420079,
  KMIP_TAG_RESPONSE_HEADER = 0x42007A,
  KMIP_TAG_RESPONSE_MESSAGE = 0x42007B,
  KMIP_TAG_RESPONSE_PAYLOAD = 0x42007C,
  KMIP_TAG_RESULT_MESSAGE = 0x42007D,
  KMIP_TAG_RESULT_REASON = 0x42007E,
  KMIP_TAG_RESULT_STATUS = 0x42007F,
  KMIP_TAG_REVOCATION_MESSAGE = 0x420080,
  KMIP_TAG_REVOCATION_REASON = 0x420081,
  KMIP_TAG_REVOCATION_REASON_CODE = 0x420082,
  KMIP_TAG_SERVER_INFORMATION = 0x420088,
  KMIP_TAG_STATE = 0x42008D,
  KMIP_TAG_SYMMETRIC_KEY = 0x42008F,
  KMIP_TAG_TEMPLATE_ATTRIBUTE = 0x420091,
  KMIP_TAG_TIME_STAMP = 0x420092,
  KMIP_TAG_UNIQUE_BATCH_ITEM_ID = 0x420093,
  KMIP_TAG_UNIQUE_IDENTIFIER = 0x420094,
  KMIP_TAG_VENDOR_IDENTIFICATION = 0x42009D,
  KMIP_TAG_DATA = 0x4200C2,
  KMIP_TAG_TAG_LENGTH = 0x4200CE,
  KMIP_TAG_LOCATED_ITEMS = 0x4200D5,
  KMIP_TAG_AE_ADDITIONAL_DATA = 0x4200FE,
  KMIP_TAG_AE_TAG = 0x4200FF,
};

enum kmip_operation {
  KMIP_OP_CREATE = 0x01,
  KMIP_OP_LOCATE = 0x08,
  KMIP_OP_GET = 0x0A,
  KMIP_OP_GET_ATTRIBUTES = 0x0B,
  KMIP_OP_ACTIVATE = 0x12,
  KMIP_OP_REVOKE = 0x13,
  KMIP_OP_DESTROY = 0x14,
  KMIP_OP_QUERY = 0x18,
  KMIP_OP_DISCOVER_VERSIONS = 0x1E,
  KMIP_OP_ENCRYPT = 0x1F,
  KMIP_OP_DECRYPT = 0x20,
};

/* Result Reason values (KMIP 1.4 section 9.1.3.2.29). */
enum kmip_reason {
  KMIP_REASON_ITEM_NOT_FOUND = 0x01,
  KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL = 0x03,
  KMIP_REASON_INVALID_MESSAGE = 0x04,
  KMIP_REASON_OPERATION_NOT_SUPPORTED = 0x05,
  KMIP_REASON_INVALID_FIELD = 0x07,
  KMIP_REASON_PERMISSION_DENIED = 0x0C,
  KMIP_REASON_GENERAL_FAILURE = 0x100,
};

/* Encoder: a growable buffer plus a stack of open structures.  The first
 * failure (ENOMEM, message too large, depth, unbalanced end) sticks and is
 * reported by kmip_enc_finish; the add functions can be called unchecked. */
struct kmip_enc {
  uint8_t *data;
  size_t len;
  size_t cap;
  size_t max;                  /* bound of the message, KMIP_MAX_MESSAGE_SIZE by default */
  size_t open[KMIP_MAX_DEPTH]; /* offsets of the open structures' headers */
  unsigned depth;
  int error; /* first failure as -errno, 0 if none */
};

/* Initialise an empty encoder (max 0 means KMIP_MAX_MESSAGE_SIZE). */
void kmip_enc_init(struct kmip_enc *enc, size_t max);
/* Wipe and release the buffer (requests may carry secrets).  Safe twice. */
void kmip_enc_free(struct kmip_enc *enc);

void kmip_enc_begin(struct kmip_enc *enc, uint32_t tag); /* open a Structure */
void kmip_enc_end(struct kmip_enc *enc);                 /* close the innermost Structure */
void kmip_enc_integer(struct kmip_enc *enc, uint32_t tag, int32_t value);
void kmip_enc_long(struct kmip_enc *enc, uint32_t tag, int64_t value);
/* Big Integer: len bytes of big-endian two's complement, sign-extended to a multiple of 8. */
void kmip_enc_big(struct kmip_enc *enc, uint32_t tag, const uint8_t *value, size_t len);
void kmip_enc_enum(struct kmip_enc *enc, uint32_t tag, uint32_t value);
void kmip_enc_bool(struct kmip_enc *enc, uint32_t tag, bool value);
void kmip_enc_text(struct kmip_enc *enc, uint32_t tag, const char *value, size_t len);
void kmip_enc_bytes(struct kmip_enc *enc, uint32_t tag, const uint8_t *value, size_t len);
void kmip_enc_datetime(struct kmip_enc *enc, uint32_t tag, int64_t seconds);
void kmip_enc_interval(struct kmip_enc *enc, uint32_t tag, uint32_t seconds);

/* 0 when every structure is closed and nothing failed; else -errno with a message. */
int kmip_enc_finish(const struct kmip_enc *enc, struct nbdc_error *err);

/* One decoded item.  bytes points into the buffer given to kmip_decode
 * (Text String, Byte String, Big Integer); integer holds Integer, Long
 * Integer, Enumeration, Boolean (0/1), Date-Time and Interval values. */
struct kmip_item {
  uint32_t tag;
  enum kmip_type type;
  uint32_t length; /* value length as encoded, padding excluded */
  const uint8_t *bytes;
  int64_t integer;
  unsigned depth;                /* 1 for the outermost item */
  const struct kmip_item *child; /* first child of a Structure */
  const struct kmip_item *next;  /* next sibling */
};

struct kmip_tree;

/* Decode exactly one item filling buf[0..len).  Refuses truncated items,
 * lengths beyond the buffer or beyond max (0: KMIP_MAX_MESSAGE_SIZE), nesting
 * deeper than KMIP_MAX_DEPTH, unknown types, wrong lengths for fixed-size
 * types, a type other than the one a known tag requires, non-zero padding,
 * booleans other than 0/1, and text strings with a NUL or invalid UTF-8.
 * Never reads outside buf.  The tree borrows buf: keep it alive and
 * unchanged until kmip_tree_free.  -EBADMSG (or -EMSGSIZE / -ENOMEM). */
int kmip_decode(const uint8_t *buf, size_t len, size_t max, struct kmip_tree **out,
                struct nbdc_error *err);
void kmip_tree_free(struct kmip_tree *tree);
const struct kmip_item *kmip_tree_root(const struct kmip_tree *tree);

/* First child of parent with tag, or NULL.  kmip_item_next_same: the next sibling with the same
 * tag. */
const struct kmip_item *kmip_item_find(const struct kmip_item *parent, uint32_t tag);
const struct kmip_item *kmip_item_next_same(const struct kmip_item *item);

/* Total length of a message from its first 8 bytes (header of the outer
 * Structure): 8 + announced length.  -EBADMSG if not a Structure or the
 * length is not a multiple of 8, -EMSGSIZE beyond max (0: default). */
int kmip_frame_length(const uint8_t header[8], size_t max, size_t *total, struct nbdc_error *err);

/* Name of a tag/type/operation/result reason for traces and messages ("0x42abcd"
 * style text in buf for an unknown tag; the others return "unknown"). */
const char *kmip_tag_name(uint32_t tag, char buf[16]);
const char *kmip_type_name(enum kmip_type type);
const char *kmip_operation_name(uint32_t op);
const char *kmip_reason_name(uint32_t reason);

/* Print the tree to stream f (a FILE *), one item per line, with the values
 * of Key Material, Data and IV/Counter/Nonce (and everything inside them)
 * replaced by "<masked N bytes>". */
void kmip_tree_dump(const struct kmip_tree *tree, void *f, const char *prefix);

/* ---- client (src/kmip/client.c) ------------------------------------------ */

struct kmip_client;

struct kmip_version {
  int major;
  int minor;
};

struct kmip_client_options {
  const char *const *servers; /* "host:port" (IPv6 as "[addr]:port"), tried in order */
  size_t server_count;
  const char *ca;                  /* PEM file of the CA(s) that sign the servers' certificates */
  const char *cert;                /* PEM client certificate (the identity) */
  const char *key;                 /* PEM private key of cert */
  int timeout_ms;                  /* connect, handshake and each round trip; 0: 5000 */
  int protocol_minor;              /* deprecated: same as max_version 1.protocol_minor */
  struct kmip_version max_version; /* highest offered ({0, 0}: 1.4); negotiated, see below */
  size_t max_message_size;         /* 0: KMIP_MAX_MESSAGE_SIZE */
  bool trace;                      /* dump TTLV exchanged to stderr (also NBDCRYPT_KMIP_TRACE=1) */
  const char *operation_policy;    /* Operation Policy Name given to created keys (NULL: none) */
};

/* Validate options and load the TLS credentials (no connection yet: that
 * happens at the first operation).  Free with kmip_client_free.  A handle
 * may be shared between threads: operations are serialised inside it. */
int kmip_client_new(const struct kmip_client_options *opts, struct kmip_client **out,
                    struct nbdc_error *err);
void kmip_client_free(struct kmip_client *client);

/* The server that answered the last operation ("host:port"), "" if none. */
const char *kmip_client_server(const struct kmip_client *client);

/* Every operation below returns 0, or a negative errno with err naming the
 * server and the operation.  A KMIP failure (Result Status not Success) is
 * returned as is, without trying another server: "kms HOST:PORT: Get failed:
 * ItemNotFound (message)", with -ENOENT for ItemNotFound, -EACCES for
 * PermissionDenied and AuthenticationNotSuccessful, -ENOTSUP for
 * OperationNotSupported, -EINVAL for InvalidField/InvalidMessage and -EIO for
 * the rest.  A transport failure (refused, reset, time-out, TLS) moves to the
 * next server; when every server failed: -EHOSTUNREACH (or the errno of a
 * single server) "all KMIP servers failed: A: why; B: why". */

/* Discover Versions: the server's protocol versions, best first (the request
 * lists none, so the server names every version it speaks). */
int kmip_discover_versions(struct kmip_client *client, struct kmip_version *versions, size_t max,
                           size_t *count, struct nbdc_error *err);

/* Versions this client speaks: 1.0 to 1.4.  KMIP 2.0 re-encodes every
 * attribute (Create, Locate, Get Attributes) and is not offered: docs/kmip.md. */
#define KMIP_VERSION_MAX_MINOR 4

/* The protocol version of the client's requests.  Before the first operation
 * of a handle it asks the server with Discover Versions (listing 1.max down
 * to 1.0) and keeps the first version the server answers, the highest both
 * speak; with max_version 1.0 (which has no Discover Versions) it uses 1.0.
 * A server without Discover Versions (OperationNotSupported) is spoken to at
 * max_version.  -EPROTO "no common KMIP version" when the server lists none
 * of ours.  The handle negotiates once; a cluster's servers are assumed to
 * speak the same versions. */
int kmip_client_negotiate(struct kmip_client *client, struct kmip_version *used,
                          struct nbdc_error *err);

/* Query (Operations, Objects, Server Information): operations supported
 * (up to max_ops) and the vendor identification (NUL-terminated, may be ""). */
int kmip_query(struct kmip_client *client, uint32_t *ops, size_t max_ops, size_t *op_count,
               char *vendor, size_t vendor_size, struct nbdc_error *err);

#define KMIP_ID_MAX 128

/* Create an AES-256 symmetric key, usage Encrypt|Decrypt|WrapKey|UnwrapKey,
 * with Name name (NULL: none) and the options' Operation Policy Name.  Its Unique Identifier goes
 * to id_out. */
int kmip_create_aes256(struct kmip_client *client, const char *name, char id_out[KMIP_ID_MAX],
                       struct nbdc_error *err);
int kmip_activate(struct kmip_client *client, const char *id, struct nbdc_error *err);

/* Get an AES-256 symmetric key in Raw format into key (caller's memory,
 * secure memory for a secret): -ENOSPC if longer than key_max, -EBADMSG if
 * the answer is not that key (another Unique Identifier, Object Type,
 * Cryptographic Algorithm or Length, or not Raw), naming the field. */
int kmip_get_key(struct kmip_client *client, const char *id, uint8_t *key, size_t key_max,
                 size_t *key_len, struct nbdc_error *err);

/* Locate the objects named name (NULL: all the identity may see), up to
 * max_items (0: no limit sent).  *ids is a malloc'ed array of malloc'ed
 * strings; free with kmip_ids_free. */
int kmip_locate(struct kmip_client *client, const char *name, size_t max_items, char ***ids,
                size_t *count, struct nbdc_error *err);
void kmip_ids_free(char **ids, size_t count);

/* Get Attributes Name, State and Initial Date of an object.  name/"" if none,
 * *state 0 if not given, *initial_date -1 if not given. */
int kmip_get_info(struct kmip_client *client, const char *id, char *name, size_t name_size,
                  uint32_t *state, int64_t *initial_date, struct nbdc_error *err);

/* KMIP object states (KMIP 1.4 section 3.22). */
enum kmip_state {
  KMIP_STATE_PRE_ACTIVE = 1,
  KMIP_STATE_ACTIVE = 2,
  KMIP_STATE_DEACTIVATED = 3,
  KMIP_STATE_COMPROMISED = 4,
  KMIP_STATE_DESTROYED = 5,
  KMIP_STATE_DESTROYED_COMPROMISED = 6,
};

/* Get Attributes (State) of an object: *state is 1..6; -EBADMSG when the
 * answer has no State, or one outside 1..6, or names another object. */
int kmip_get_state(struct kmip_client *client, const char *id, enum kmip_state *state,
                   struct nbdc_error *err);

/* Revocation Reason Codes */
#define KMIP_REVOKE_UNSPECIFIED            1
#define KMIP_REVOKE_KEY_COMPROMISE         2
#define KMIP_REVOKE_CESSATION_OF_OPERATION 6

int kmip_revoke(struct kmip_client *client, const char *id, uint32_t reason_code,
                const char *message, struct nbdc_error *err);
int kmip_destroy(struct kmip_client *client, const char *id, struct nbdc_error *err);

/* AES-GCM inside the KMS (needs protocol 1.4): iv (12 bytes) is made here
 * and sent, the tag is 16 bytes; aad may be NULL.  encrypt: *cipher is
 * malloc'ed, *cipher_len bytes.  decrypt writes into plain (caller's memory)
 * up to plain_max bytes; a wrong tag or key gives the server's error. */
int kmip_encrypt_gcm(struct kmip_client *client, const char *id, const uint8_t *plain,
                     size_t plain_len, const uint8_t *aad, size_t aad_len, uint8_t iv[12],
                     uint8_t tag[16], uint8_t **cipher, size_t *cipher_len, struct nbdc_error *err);
int kmip_decrypt_gcm(struct kmip_client *client, const char *id, const uint8_t *cipher,
                     size_t cipher_len, const uint8_t *aad, size_t aad_len, const uint8_t iv[12],
                     const uint8_t tag[16], uint8_t *plain, size_t plain_max, size_t *plain_len,
                     struct nbdc_error *err);

/* State names (1 PreActive .. 6 Destroyed Compromised), "unknown" otherwise. */
const char *kmip_state_name(uint32_t state);

#endif
