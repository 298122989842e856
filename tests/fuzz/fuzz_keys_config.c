/* libFuzzer target for the key provider configuration parser: any text
 * either loads (every provider has a name and a type, the default provider
 * is one of them, each native provider opens: its keystore path is
 * absolute) or is refused with a message naming the origin.  kmip providers
 * are not opened: that loads TLS files from the paths in the input. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/keys.h"
#include "keys/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  int r = keys_config_parse(text, "/fuzz/config.json", &cfg, &err);
  if (r == 0) {
    size_t n = keys_config_provider_count(cfg);
    const char *def = keys_config_default_provider(cfg);
    bool found = false;
    if (n == 0 || !def)
      abort();
    for (size_t i = 0; i < n; i++) {
      const char *name = keys_config_provider_name(cfg, i);
      const char *type;
      struct json_object *conf;
      if (!name || !keys_config_find(cfg, name, &type, &conf))
        abort();
      found = found || strcmp(name, def) == 0;
      if (strcmp(type, "native") == 0) {
        struct keys_provider *p = NULL;
        if (keys_provider_open(cfg, name, &p, &err) != 0)
          abort();
        keys_provider_close(p);
      } else if (strcmp(type, "kmip") != 0) {
        abort();
      }
    }
    if (!found)
      abort();
    keys_config_free(cfg);
  } else if (!strstr(err.msg, "/fuzz/config.json") && r != -ENOMEM) {
    abort();
  }
  free(text);
  return 0;
}
