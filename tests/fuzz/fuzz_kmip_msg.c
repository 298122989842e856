/* libFuzzer target for the message layer: a response buffer goes through
 * the client's own answer path (kmip_call_parse: decode and parse), then
 * kmip_msg_check against one of the requests nbdcrypt sends (chosen by the
 * last input byte), then that operation's payload reader.  An accepted Get
 * must yield exactly 32 bytes of key; every refusal must say why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/kmip.h"
#include "kmip/client.h"
#include "kmip/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct kmip_expect expectations[] = {
    {.operation = KMIP_OP_GET,
     .version = {1, 4},
     .unique_id = "1",
     .object_type = 2,
     .algorithm = 3,
     .length = 256},
    {.operation = KMIP_OP_GET_ATTRIBUTES, .version = {1, 4}, .unique_id = "1"},
    {.operation = KMIP_OP_DISCOVER_VERSIONS, .version = {1, 4}, .payload_optional = true},
    {.operation = KMIP_OP_CREATE, .version = {1, 4}, .object_type = 2},
    {.operation = KMIP_OP_REVOKE, .version = {1, 4}, .unique_id = "1"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  const struct kmip_expect *want =
      &expectations[data[size - 1] % (sizeof expectations / sizeof expectations[0])];
  size--;
  struct kmip_call call;
  memset(&call, 0, sizeof call);
  call.len = size;
  call.buf = secmem_alloc(size ? size : 1); /* what the transport hands over */
  if (!call.buf)
    return 0;
  memcpy(call.buf, data, size);
  struct nbdc_error err = {0};
  int r = kmip_call_parse(&call, 0, &err);
  if (r == 0)
    r = kmip_msg_check(&call.resp, want, "fuzz:5696", &err);
  if (r == 0) {
    const struct kmip_item *payload = call.resp.items[0].payload;
    if (!payload && !want->payload_optional)
      abort();
    if (want->operation == KMIP_OP_GET) {
      uint8_t key[64];
      size_t key_len = 0;
      r = kmip_answer_key(payload, "fuzz:5696", "1", key, sizeof key, &key_len, &err);
      if (r == 0 && key_len != 32)
        abort();
    } else if (want->operation == KMIP_OP_GET_ATTRIBUTES) {
      enum kmip_state state = 0;
      r = kmip_answer_state(payload, "fuzz:5696", "1", &state, &err);
      if (r == 0 && (state < KMIP_STATE_PRE_ACTIVE || state > KMIP_STATE_DESTROYED_COMPROMISED))
        abort();
    } else if (want->operation == KMIP_OP_DISCOVER_VERSIONS) {
      struct kmip_version versions[4], chosen;
      size_t n = kmip_answer_versions(payload, versions, 4);
      if (n > 4)
        abort();
      if (kmip_version_choose(versions, n, (struct kmip_version){1, 4}, &chosen) == 0 &&
          (chosen.major != 1 || chosen.minor < 0 || chosen.minor > 4))
        abort();
    }
  }
  if (r < 0 && !err.msg[0])
    abort();
  kmip_call_free(&call);
  return 0;
}
