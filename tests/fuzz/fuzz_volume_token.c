/* libFuzzer target for volume_token_check: the input is the JSON text of one
 * LUKS2 token, as cryptsetup hands it to our token plugin and as a header on
 * an untrusted disk carries it.  A token that passes must describe one
 * keyslot, a provider and a KEK id that fit their buffers, or the target
 * aborts; every refusal must say why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/volume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  struct volume_token_info info;
  memset(&info, 0xa5, sizeof info);
  struct nbdc_error err = {0};
  int r = volume_token_check(text, &info, &err);
  if (r == 0) {
    if (info.keyslot < 0 || info.keyslot >= LUKS2_MAX_KEYSLOTS ||
        !memchr(info.provider, '\0', sizeof info.provider) || !info.provider[0] ||
        !memchr(info.kek_id, '\0', sizeof info.kek_id) || !info.kek_id[0])
      abort();
  } else if (r != -EINVAL || !err.msg[0]) {
    abort();
  }
  free(text);
  return 0;
}
