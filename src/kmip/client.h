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

/* Send req (a whole Request Message with one batch item for op) to the
 * first server that answers; on success call->resp.items[0] is a Success
 * of op with a payload.  Free with kmip_call_free (wipes the bytes). */
int kmip_client_call(struct kmip_client *client, uint32_t op, const struct kmip_enc *req,
                     struct kmip_call *call, struct nbdc_error *err);
void kmip_call_free(struct kmip_call *call);

int kmip_client_minor(const struct kmip_client *client);
size_t kmip_client_max_message(const struct kmip_client *client);

#endif
