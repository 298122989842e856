/* Private to src/keys: the provider vtable each provider type implements. */
#ifndef NBDCRYPT_KEYS_PROVIDER_H
#define NBDCRYPT_KEYS_PROVIDER_H

#include "nbdcrypt/keys.h"

struct json_object;

/* Operations of one provider type.  state is what the type's open returned.
 * An op left NULL answers -ENOTSUP "provider P (type T) cannot ...". */
struct keys_provider_ops {
  const char *type;
  int (*kek_create)(void *state, const char *name, char id_out[KEYS_ID_MAX],
                    struct nbdc_error *err);
  int (*kek_get)(void *state, const char *id, uint8_t **kek, struct nbdc_error *err);
  int (*kek_list)(void *state, const char *prefix, struct keys_kek_info **list, size_t *count,
                  struct nbdc_error *err);
  int (*kek_state)(void *state, const char *id, enum keys_kek_state *kek_state,
                   struct nbdc_error *err);
  int (*kek_revoke)(void *state, const char *id, bool compromised, struct nbdc_error *err);
  int (*kek_destroy)(void *state, const char *id, struct nbdc_error *err);
  int (*kek_wrap)(void *state, const char *id, const uint8_t *plain, size_t plain_len,
                  uint8_t **cipher, size_t *cipher_len, uint8_t iv[12], uint8_t tag[16],
                  struct nbdc_error *err);
  int (*kek_unwrap)(void *state, const char *id, const uint8_t *cipher, size_t cipher_len,
                    const uint8_t iv[12], const uint8_t tag[16], uint8_t **plain, size_t *plain_len,
                    struct nbdc_error *err);
  void (*close)(void *state);
};

/* Constructor of a provider type: name is the provider's name, conf its
 * validated-as-object JSON from the configuration (borrowed), origin the
 * configuration's origin for messages, role the identity wanted. */
typedef int (*keys_provider_ctor)(const char *name, struct json_object *conf, const char *origin,
                                  enum keys_role role, const struct keys_provider_ops **ops,
                                  void **state, struct nbdc_error *err);

/* src/keys/native.c (one identity: the file's owner) */
int keys_native_open(const char *name, struct json_object *conf, const char *origin,
                     enum keys_role role, const struct keys_provider_ops **ops, void **state,
                     struct nbdc_error *err);
/* src/keys/kmip.c */
int keys_kmip_open(const char *name, struct json_object *conf, const char *origin,
                   enum keys_role role, const struct keys_provider_ops **ops, void **state,
                   struct nbdc_error *err);

#endif
