/* Private to src/kmip: the round trip the operations (ops.c) share. */
#ifndef NBDCRYPT_KMIP_CLIENT_H
#define NBDCRYPT_KMIP_CLIENT_H

#include "nbdcrypt/kmip.h"
#include "kmip/internal.h"

/* A finished exchange: the response bytes, their tree and parsed items. */
struct kmip_call {
  uint8_t *buf;
  size_t len;
  struct kmip_tree *tree;
  struct kmip_response resp;
};

/* Send req (a whole Request Message with one batch item) to the first
 * server that answers; on success call->resp.items[0] is a Success that
 * matches want (kmip_msg_check).  Free with kmip_call_free (wipes the bytes). */
int kmip_client_call(struct kmip_client *client, const struct kmip_expect *want,
                     const struct kmip_enc *req, struct kmip_call *call, struct nbdc_error *err);
void kmip_call_free(struct kmip_call *call);

/* Decode call->buf (call->len bytes, at most max) into call->tree and
 * call->resp: what the client does with every answer before
 * kmip_msg_check.  The fuzz target tests/fuzz/fuzz_kmip_msg.c enters here. */
int kmip_call_parse(struct kmip_call *call, size_t max, struct nbdc_error *err);

/* The payload readers of ops.c, for a payload kmip_msg_check accepted:
 * the raw key of a Get, the State of a Get Attributes, the versions of a
 * Discover Versions (returns how many, at most max). */
int kmip_answer_key(const struct kmip_item *payload, const char *server, const char *id,
                    uint8_t *key, size_t key_max, size_t *key_len, struct nbdc_error *err);
int kmip_answer_state(const struct kmip_item *payload, const char *server, const char *id,
                      enum kmip_state *state, struct nbdc_error *err);
size_t kmip_answer_versions(const struct kmip_item *payload, struct kmip_version *versions,
                            size_t max);

size_t kmip_client_max_message(const struct kmip_client *client);
const char *kmip_client_operation_policy(const struct kmip_client *client);

/* Version negotiation state: ops.c runs Discover Versions under the
 * negotiation lock and stores the result here. */
struct kmip_version kmip_client_max_version(const struct kmip_client *client);
bool kmip_client_version(struct kmip_client *client, struct kmip_version *version);
void kmip_client_set_version(struct kmip_client *client, struct kmip_version version);
void kmip_client_negotiation_lock(struct kmip_client *client);
void kmip_client_negotiation_unlock(struct kmip_client *client);

#endif
