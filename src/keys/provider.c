/* The provider interface: a name, its type's operations and the state the
 * type's constructor returned.  Public calls dispatch to the operations; an
 * operation a type leaves NULL answers -ENOTSUP naming provider and type. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keys/config.h"
#include "keys/provider.h"

struct keys_provider {
  char *name;
  const struct keys_provider_ops *ops;
  void *state;
};

static const struct {
  const char *type;
  keys_provider_ctor open;
} provider_types[] = {
    {"native", keys_native_open},
    {"kmip", keys_kmip_open},
};

static _Atomic unsigned long provider_opens;

unsigned long keys_provider_open_count(void)
{
  return provider_opens;
}

int keys_provider_open(const struct keys_config *cfg, const char *name, struct keys_provider **out,
                       struct nbdc_error *err)
{
  return keys_provider_open_role(cfg, name, KEYS_ROLE_SERVE, out, err);
}

int keys_provider_open_role(const struct keys_config *cfg, const char *name, enum keys_role role,
                            struct keys_provider **out, struct nbdc_error *err)
{
  if (!cfg || !out)
    return nbdc_error_set(err, EINVAL, "keys_provider_open: no configuration");
  if (!name)
    name = keys_config_default_provider(cfg);

  const char *type;
  struct json_object *conf;
  if (!keys_config_find(cfg, name, &type, &conf))
    return nbdc_error_set(err, ENOENT, "no provider %s in %s", name, keys_config_origin(cfg));

  keys_provider_ctor open = NULL;
  for (size_t i = 0; i < sizeof provider_types / sizeof provider_types[0]; i++)
    if (strcmp(provider_types[i].type, type) == 0)
      open = provider_types[i].open;
  if (!open)
    return nbdc_error_set(err, ENOTSUP, "provider %s in %s: type %s is not supported", name,
                          keys_config_origin(cfg), type);

  struct keys_provider *p = calloc(1, sizeof *p);
  if (!p || !(p->name = strdup(name))) {
    free(p);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  if (role != KEYS_ROLE_SERVE && role != KEYS_ROLE_ADMIN) {
    free(p->name);
    free(p);
    return nbdc_error_set(err, EINVAL, "provider %s: unknown role %d", name, (int)role);
  }
  int r = open(name, conf, keys_config_origin(cfg), role, &p->ops, &p->state, err);
  if (r < 0) {
    free(p->name);
    free(p);
    return r;
  }
  provider_opens++;
  *out = p;
  return 0;
}

void keys_provider_close(struct keys_provider *p)
{
  if (!p)
    return;
  if (p->ops && p->ops->close)
    p->ops->close(p->state);
  free(p->name);
  free(p);
}

const char *keys_provider_name(const struct keys_provider *p)
{
  return p->name;
}

const char *keys_provider_type(const struct keys_provider *p)
{
  return p->ops->type;
}

static int provider_cannot(const struct keys_provider *p, const char *what, struct nbdc_error *err)
{
  return nbdc_error_set(err, ENOTSUP, "provider %s (type %s) cannot %s", p->name, p->ops->type,
                        what);
}

/* Arguments every operation needs: a provider and, where given, a KEK id. */
static int provider_check(const struct keys_provider *p, const char *id, bool need_id,
                          struct nbdc_error *err)
{
  if (!p)
    return nbdc_error_set(err, EINVAL, "no key provider");
  if (need_id && (!id || id[0] == '\0'))
    return nbdc_error_set(err, EINVAL, "no kek id given (provider %s)", p->name);
  if (need_id && strlen(id) >= KEYS_ID_MAX)
    return nbdc_error_set(err, EINVAL, "kek id of %zu bytes is too long (provider %s, at most %d)",
                          strlen(id), p->name, KEYS_ID_MAX - 1);
  return 0;
}

int keys_kek_create(struct keys_provider *p, const char *name, char id_out[KEYS_ID_MAX],
                    struct nbdc_error *err)
{
  int r = provider_check(p, NULL, false, err);
  if (r < 0)
    return r;
  if (!id_out)
    return nbdc_error_set(err, EINVAL, "keys_kek_create: no place for the new id");
  id_out[0] = '\0';
  if (!p->ops->kek_create)
    return provider_cannot(p, "create keys", err);
  if (name && strlen(name) >= KEYS_NAME_MAX)
    return nbdc_error_set(err, EINVAL, "kek name of %zu bytes is too long (at most %d)",
                          strlen(name), KEYS_NAME_MAX - 1);
  return p->ops->kek_create(p->state, name, id_out, err);
}

static _Atomic unsigned long kek_gets;

unsigned long keys_kek_get_count(void)
{
  return kek_gets;
}

int keys_kek_get(struct keys_provider *p, const char *id, uint8_t **kek, struct nbdc_error *err)
{
  int r = provider_check(p, id, true, err);
  if (r < 0)
    return r;
  if (!kek)
    return nbdc_error_set(err, EINVAL, "keys_kek_get: no place for the kek");
  *kek = NULL;
  if (!p->ops->kek_get)
    return provider_cannot(p, "get keys", err);
  kek_gets++;
  return p->ops->kek_get(p->state, id, kek, err);
}

int keys_kek_list(struct keys_provider *p, const char *prefix, struct keys_kek_info **list,
                  size_t *count, struct nbdc_error *err)
{
  int r = provider_check(p, NULL, false, err);
  if (r < 0)
    return r;
  if (!list || !count)
    return nbdc_error_set(err, EINVAL, "keys_kek_list: no place for the list");
  *list = NULL;
  *count = 0;
  if (!p->ops->kek_list)
    return provider_cannot(p, "list keys", err);
  return p->ops->kek_list(p->state, prefix, list, count, err);
}

const char *keys_kek_state_name(enum keys_kek_state state)
{
  switch (state) {
  case KEYS_KEK_PRE_ACTIVE:
    return "pre-active";
  case KEYS_KEK_ACTIVE:
    return "active";
  case KEYS_KEK_DEACTIVATED:
    return "deactivated";
  case KEYS_KEK_COMPROMISED:
    return "compromised";
  case KEYS_KEK_DESTROYED:
    return "destroyed";
  case KEYS_KEK_DESTROYED_COMPROMISED:
    return "destroyed-compromised";
  }
  return "unknown";
}

int keys_kek_get_state(struct keys_provider *p, const char *id, enum keys_kek_state *state,
                       struct nbdc_error *err)
{
  int r = provider_check(p, id, true, err);
  if (r < 0)
    return r;
  if (!state)
    return nbdc_error_set(err, EINVAL, "keys_kek_get_state: no place for the state");
  *state = 0;
  if (!p->ops->kek_state)
    return provider_cannot(p, "tell the state of keys", err);
  return p->ops->kek_state(p->state, id, state, err);
}

static int provider_revoke(struct keys_provider *p, const char *id, bool compromised,
                           struct nbdc_error *err)
{
  int r = provider_check(p, id, true, err);
  if (r < 0)
    return r;
  if (!p->ops->kek_revoke)
    return provider_cannot(p, "revoke keys", err);
  return p->ops->kek_revoke(p->state, id, compromised, err);
}

int keys_kek_revoke(struct keys_provider *p, const char *id, struct nbdc_error *err)
{
  return provider_revoke(p, id, false, err);
}

int keys_kek_revoke_compromised(struct keys_provider *p, const char *id, struct nbdc_error *err)
{
  return provider_revoke(p, id, true, err);
}

int keys_kek_destroy(struct keys_provider *p, const char *id, struct nbdc_error *err)
{
  int r = provider_check(p, id, true, err);
  if (r < 0)
    return r;
  if (!p->ops->kek_destroy)
    return provider_cannot(p, "destroy keys", err);
  return p->ops->kek_destroy(p->state, id, err);
}

int keys_kek_wrap(struct keys_provider *p, const char *id, const uint8_t *plain, size_t plain_len,
                  uint8_t **cipher, size_t *cipher_len, uint8_t iv[12], uint8_t tag[16],
                  struct nbdc_error *err)
{
  int r = provider_check(p, id, true, err);
  if (r < 0)
    return r;
  if (!cipher || !cipher_len || (!plain && plain_len))
    return nbdc_error_set(err, EINVAL, "keys_kek_wrap: missing buffer");
  *cipher = NULL;
  *cipher_len = 0;
  if (!p->ops->kek_wrap)
    return provider_cannot(p, "wrap data with a key", err);
  return p->ops->kek_wrap(p->state, id, plain, plain_len, cipher, cipher_len, iv, tag, err);
}

int keys_kek_unwrap(struct keys_provider *p, const char *id, const uint8_t *cipher,
                    size_t cipher_len, const uint8_t iv[12], const uint8_t tag[16], uint8_t **plain,
                    size_t *plain_len, struct nbdc_error *err)
{
  int r = provider_check(p, id, true, err);
  if (r < 0)
    return r;
  if (!plain || !plain_len || (!cipher && cipher_len))
    return nbdc_error_set(err, EINVAL, "keys_kek_unwrap: missing buffer");
  *plain = NULL;
  *plain_len = 0;
  if (!p->ops->kek_unwrap)
    return provider_cannot(p, "unwrap data with a key", err);
  return p->ops->kek_unwrap(p->state, id, cipher, cipher_len, iv, tag, plain, plain_len, err);
}
