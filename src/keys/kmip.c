/* Placeholder until the KMIP client module lands (issue: KMIP client module). */
#include <errno.h>

#include "keys/provider.h"

int keys_kmip_open(const char *name, struct json_object *conf, const char *origin,
                   const struct keys_provider_ops **ops, void **state, struct nbdc_error *err)
{
  (void)conf;
  (void)ops;
  (void)state;
  return nbdc_error_set(err, ENOTSUP, "provider %s in %s: the kmip provider type is not built",
                        name, origin);
}
