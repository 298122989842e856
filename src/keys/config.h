/* Private to src/keys: what provider.c needs from a parsed configuration. */
#ifndef NBDCRYPT_KEYS_CONFIG_H
#define NBDCRYPT_KEYS_CONFIG_H

#include "nbdcrypt/keys.h"

struct json_object;

/* Find provider name: its type ("native", "kmip") and its JSON object (both
 * borrowed from cfg; a native provider's "keystore" is already absolute).
 * false if there is no such provider. */
bool keys_config_find(const struct keys_config *cfg, const char *name, const char **type,
                      struct json_object **conf);

#endif
