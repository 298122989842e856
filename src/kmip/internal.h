/* Private to src/kmip: messages (msg.c), TLS transport (tls.c) and the tag table. */
#ifndef NBDCRYPT_KMIP_INTERNAL_H
#define NBDCRYPT_KMIP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/kmip.h"

/* names.c: required type of a known tag, 0 if unknown or free. */
int kmip_tag_type(uint32_t tag);

/* ---- messages (msg.c) ---------------------------------------------------- */

/* Open a Request Message and write its header (Protocol Version, Batch
 * Count: the spec field order PyKMIP insists on). */
void kmip_msg_begin_request(struct kmip_enc *enc, int major, int minor, unsigned batch_count);
/* Open a Batch Item with Operation op (and Unique Batch Item ID batch_id as
 * 4 big-endian bytes when batch_id != 0), then its Request Payload. */
void kmip_msg_begin_item(struct kmip_enc *enc, uint32_t op, uint32_t batch_id);
void kmip_msg_end_item(struct kmip_enc *enc);    /* close Request Payload and Batch Item */
void kmip_msg_end_request(struct kmip_enc *enc); /* close Request Message */

/* One batch item of a response.  operation is 0 when the server sent none
 * (session-layer errors); message is "" when absent; payload may be NULL. */
struct kmip_result {
  uint32_t operation;
  uint32_t batch_id;
  bool has_batch_id;
  uint32_t status; /* 0 Success, 1 OperationFailed, 2 OperationPending, 3 OperationUndone */
  uint32_t reason; /* 0 when absent */
  char message[256];
  const struct kmip_item *payload;
};

#define KMIP_MSG_MAX_ITEMS 16

/* Parse a decoded Response Message: header (version, batch count) and up to
 * KMIP_MSG_MAX_ITEMS batch items.  -EBADMSG with a message for anything that
 * is not a response. */
struct kmip_response {
  int major;
  int minor;
  size_t count;
  struct kmip_result items[KMIP_MSG_MAX_ITEMS];
};
int kmip_msg_parse_response(const struct kmip_tree *tree, struct kmip_response *resp,
                            struct nbdc_error *err);

/* What the one batch item of an answer must match: the request's operation
 * and protocol version, the Unique Identifier it named, and for Create and
 * Get the object.  Zero / NULL fields are not checked. */
struct kmip_expect {
  uint32_t operation;
  struct kmip_version version;
  const char *unique_id; /* the request named this object */
  uint32_t object_type;  /* Object Type of the payload */
  uint32_t algorithm;    /* Cryptographic Algorithm of the Key Block (Get) */
  int32_t length;        /* Cryptographic Length of the Key Block in bits (Get) */
  bool payload_optional; /* Discover Versions may answer with none */
};

/* Check a parsed response against want: one batch item, a Success (else the
 * KMS's error, as kmip_msg_result_error), then operation, protocol version,
 * payload, Unique Identifier, Object Type, Cryptographic Algorithm and
 * Length.  A mismatch is -EBADMSG "kms SERVER: OP answer: FIELD is X,
 * expected Y". */
int kmip_msg_check(const struct kmip_response *resp, const struct kmip_expect *want,
                   const char *server, struct nbdc_error *err);

/* The highest version in theirs (n entries) that we speak (1.0 to 1.max):
 * 0 and *out, or -EPROTO when there is none. */
int kmip_version_choose(const struct kmip_version *theirs, size_t n, struct kmip_version max,
                        struct kmip_version *out);

/* Turn a failed result into err: "kms SERVER: OP failed: Reason (message)"
 * and the errno of kmip.h.  Returns that negative errno; 0 for Success. */
int kmip_msg_result_error(const struct kmip_result *res, const char *server, uint32_t op,
                          struct nbdc_error *err);

/* Payload helpers: a required child as text (copied, NUL-terminated) or bytes. */
int kmip_payload_text(const struct kmip_item *payload, uint32_t tag, char *out, size_t size,
                      struct nbdc_error *err);

/* ---- TLS transport (tls.c) ----------------------------------------------- */

struct ssl_ctx_st;
struct kmip_conn;

/* An SSL_CTX for a KMIP client: TLS >= 1.2, ECDHE suites preferred, peer
 * verification against ca, client identity cert/key. */
int kmip_tls_ctx_new(const char *ca, const char *cert, const char *key, struct ssl_ctx_st **out,
                     struct nbdc_error *err);
void kmip_tls_ctx_free(struct ssl_ctx_st *ctx);

/* Split "host:port" / "[v6]:port" into host and port (port 1..65535). */
int kmip_split_server(const char *server, char *host, size_t host_size, char *port,
                      size_t port_size, struct nbdc_error *err);

/* Connect with TCP and TLS to host:port within timeout_ms, verifying the
 * server certificate for host (IP or DNS name; SNI for names).  Errors are
 * short ("connection refused", "timed out after 5000 ms", "tls handshake
 * failed: ...") without the server name: the caller prefixes it. */
int kmip_conn_open(struct ssl_ctx_st *ctx, const char *host, const char *port, int timeout_ms,
                   struct kmip_conn **out, struct nbdc_error *err);
void kmip_conn_close(struct kmip_conn *conn);

/* False when the peer has closed the connection (checked without blocking). */
bool kmip_conn_alive(struct kmip_conn *conn);

/* Send req and read one whole response message (bounded by max) within
 * timeout_ms.  *resp is malloc'ed; wipe and free it.  *sent is set once the
 * whole request was written and *got_bytes once any response byte arrived,
 * so the caller knows whether a retry could repeat the operation. */
int kmip_conn_roundtrip(struct kmip_conn *conn, const uint8_t *req, size_t req_len, size_t max,
                        int timeout_ms, uint8_t **resp, size_t *resp_len, bool *got_bytes,
                        struct nbdc_error *err);

#endif
