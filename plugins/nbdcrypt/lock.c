/* nbdkit-nbdcrypt-filter: image locks (placeholder until the lock module
 * lands: takes no lock). */
#include <stdbool.h>

#include "nbdcrypt.h"

int nbdcrypt_lock_config_key(const char *key, const char *value)
{
  (void)key;
  (void)value;
  return 0;
}

int nbdcrypt_lock_ready(void)
{
  return 0;
}

int nbdcrypt_lock_export(const char *exportname, bool readonly)
{
  (void)exportname;
  (void)readonly;
  return 0;
}

void nbdcrypt_lock_free(void) {}
