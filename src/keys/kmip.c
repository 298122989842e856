/* The kmip key provider: KEKs are AES-256 keys on a KMIP server (or a
 * cluster of replicas tried in order), reached through src/kmip.
 *
 * Configuration (DESIGN.md section 3):
 *   {"type": "kmip", "servers": ["host:port", ...], "ca": PEM, "cert": PEM,
 *    "key": PEM, "admin": {"cert": PEM, "key": PEM}, "timeout_ms": 5000,
 *    "kmip_version": "1.4", "operation_policy": NAME, "trace": false}
 * cert/key is the serving identity; admin (optional) the one of KEYS_ROLE_ADMIN.
 * create = Create + Activate (the Name attribute carries the label),
 * get = Get (Raw), list = Locate + Get Attributes, wrap/unwrap = Encrypt /
 * Decrypt with AES-GCM inside the KMS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/kmip.h"
#include "keys/provider.h"

#define KMIP_PROVIDER_MAX_SERVERS 16

struct kmip_provider {
  char *name;
  struct kmip_client *client;
};

static int kmip_field_string(const char *name, const char *origin, struct json_object *conf,
                             const char *field, bool required, const char **out,
                             struct nbdc_error *err)
{
  struct json_object *v;
  *out = NULL;
  if (!json_object_object_get_ex(conf, field, &v)) {
    if (required)
      return nbdc_error_set(err, EINVAL, "provider %s in %s: field %s is missing", name, origin,
                            field);
    return 0;
  }
  if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
    return nbdc_error_set(err, EINVAL, "provider %s in %s: field %s must be a non-empty string",
                          name, origin, field);
  *out = json_object_get_string(v);
  return 0;
}

static int kmip_parse_options(const char *name, struct json_object *conf, const char *origin,
                              enum keys_role role, struct kmip_client_options *opts,
                              const char *servers[KMIP_PROVIDER_MAX_SERVERS],
                              struct nbdc_error *err)
{
  static const char *const known[] = {"type",
                                      "servers",
                                      "ca",
                                      "cert",
                                      "key",
                                      "admin",
                                      "timeout_ms",
                                      "protocol",
                                      "kmip_version",
                                      "trace",
                                      "operation_policy"};
  json_object_object_foreach(conf, field, value)
  {
    (void)value;
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      ok = ok || strcmp(field, known[i]) == 0;
    if (!ok)
      return nbdc_error_set(err, EINVAL,
                            "provider %s in %s: unknown field %s (kmip knows servers, ca, cert, "
                            "key, admin, timeout_ms, kmip_version, trace, operation_policy)",
                            name, origin, field);
  }

  struct json_object *arr;
  if (!json_object_object_get_ex(conf, "servers", &arr))
    return nbdc_error_set(err, EINVAL, "provider %s in %s: field servers is missing", name, origin);
  if (!json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0)
    return nbdc_error_set(err, EINVAL,
                          "provider %s in %s: servers must be a non-empty array of \"host:port\"",
                          name, origin);
  size_t n = json_object_array_length(arr);
  if (n > KMIP_PROVIDER_MAX_SERVERS)
    return nbdc_error_set(err, EINVAL, "provider %s in %s: %zu servers, at most %d", name, origin,
                          n, KMIP_PROVIDER_MAX_SERVERS);
  for (size_t i = 0; i < n; i++) {
    struct json_object *s = json_object_array_get_idx(arr, i);
    if (!json_object_is_type(s, json_type_string) || json_object_get_string_len(s) == 0)
      return nbdc_error_set(err, EINVAL, "provider %s in %s: servers[%zu] must be \"host:port\"",
                            name, origin, i);
    servers[i] = json_object_get_string(s);
  }
  opts->servers = servers;
  opts->server_count = n;

  int r;
  if ((r = kmip_field_string(name, origin, conf, "ca", true, &opts->ca, err)) < 0 ||
      (r = kmip_field_string(name, origin, conf, "cert", true, &opts->cert, err)) < 0 ||
      (r = kmip_field_string(name, origin, conf, "key", true, &opts->key, err)) < 0 ||
      (r = kmip_field_string(name, origin, conf, "operation_policy", false, &opts->operation_policy,
                             err)) < 0)
    return r;

  /* "admin": {"cert", "key"}, the identity of the commands that manage keys */
  struct json_object *admin;
  if (json_object_object_get_ex(conf, "admin", &admin)) {
    if (!json_object_is_type(admin, json_type_object))
      return nbdc_error_set(err, EINVAL,
                            "provider %s in %s: admin must be an object {\"cert\": PEM, \"key\": "
                            "PEM}",
                            name, origin);
    json_object_object_foreach(admin, afield, avalue)
    {
      (void)avalue;
      if (strcmp(afield, "cert") != 0 && strcmp(afield, "key") != 0)
        return nbdc_error_set(err, EINVAL,
                              "provider %s in %s: unknown field admin.%s (admin knows cert, key)",
                              name, origin, afield);
    }
    const char *cert, *key;
    if ((r = kmip_field_string(name, origin, admin, "cert", true, &cert, err)) < 0 ||
        (r = kmip_field_string(name, origin, admin, "key", true, &key, err)) < 0)
      return nbdc_error_set(err, EINVAL,
                            "provider %s in %s: admin needs cert and key (non-empty strings)", name,
                            origin);
    if (role == KEYS_ROLE_ADMIN) {
      opts->cert = cert;
      opts->key = key;
    }
  }

  struct json_object *v;
  opts->timeout_ms = 5000;
  if (json_object_object_get_ex(conf, "timeout_ms", &v)) {
    int64_t t = json_object_get_int64(v);
    if (!json_object_is_type(v, json_type_int) || t < 1 || t > 600000)
      return nbdc_error_set(err, EINVAL,
                            "provider %s in %s: timeout_ms must be an integer from 1 to 600000",
                            name, origin);
    opts->timeout_ms = (int)t;
  }
  /* kmip_version: the highest version offered (negotiated down with Discover
   * Versions); "protocol" is its older name. */
  const char *version, *protocol;
  if ((r = kmip_field_string(name, origin, conf, "kmip_version", false, &version, err)) < 0 ||
      (r = kmip_field_string(name, origin, conf, "protocol", false, &protocol, err)) < 0)
    return r;
  if (version && protocol && strcmp(version, protocol) != 0)
    return nbdc_error_set(err, EINVAL,
                          "provider %s in %s: kmip_version \"%s\" and protocol \"%s\" disagree "
                          "(protocol is the old name of kmip_version: keep one)",
                          name, origin, version, protocol);
  if (!version)
    version = protocol;
  opts->max_version = (struct kmip_version){1, KMIP_VERSION_MAX_MINOR};
  if (version) {
    if (strlen(version) != 3 || strncmp(version, "1.", 2) != 0 || version[2] < '0' ||
        version[2] > '0' + KMIP_VERSION_MAX_MINOR)
      return nbdc_error_set(err, EINVAL,
                            "provider %s in %s: kmip_version \"%s\" (use \"1.0\" to \"1.%d\"; "
                            "2.0 is not supported)",
                            name, origin, version, KMIP_VERSION_MAX_MINOR);
    opts->max_version.minor = version[2] - '0';
  }
  if (json_object_object_get_ex(conf, "trace", &v)) {
    if (!json_object_is_type(v, json_type_boolean))
      return nbdc_error_set(err, EINVAL, "provider %s in %s: trace must be true or false", name,
                            origin);
    opts->trace = json_object_get_boolean(v);
  }
  return 0;
}

/* Put the provider's name in front of a KMS error; ItemNotFound reads as the
 * "kek ... not found" every provider reports. */
static int kmip_fail(const struct kmip_provider *kp, const char *id, int r, struct nbdc_error *err)
{
  if (r == -ENOENT && id && err) {
    char detail[NBDC_ERROR_MAX];
    memcpy(detail, err->msg, sizeof detail);
    return nbdc_error_set(err, ENOENT, "kek %s not found in provider %s (%.*s)", id, kp->name,
                          NBDC_ERROR_MAX - 64, detail);
  }
  return nbdc_error_prefix(err, "provider %s", kp->name);
}

static int kmip_kek_create(void *state, const char *name, char id_out[KEYS_ID_MAX],
                           struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  char id[KMIP_ID_MAX];
  int r = kmip_create_aes256(kp->client, name, id, err);
  if (r < 0)
    return kmip_fail(kp, NULL, r, err);
  if (strlen(id) >= KEYS_ID_MAX) {
    (void)kmip_destroy(kp->client, id, NULL);
    return nbdc_error_set(err, EOVERFLOW, "provider %s: kms id of %zu bytes is too long", kp->name,
                          strlen(id));
  }
  r = kmip_activate(kp->client, id, err);
  if (r < 0) {
    /* a PreActive key nobody will use: take it away again, best effort */
    (void)kmip_destroy(kp->client, id, NULL);
    return kmip_fail(kp, id, r, err);
  }
  snprintf(id_out, KEYS_ID_MAX, "%s", id);
  return 0;
}

static int kmip_kek_get(void *state, const char *id, uint8_t **kek, struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  /* fetched into a larger buffer to notice a key of the wrong size, then
   * handed out exactly as KEYS_KEK_SIZE bytes, as callers free it */
  enum { FETCH_MAX = 64 };
  uint8_t *fetched = secmem_alloc(FETCH_MAX);
  if (!fetched)
    return nbdc_error_set(err, errno ? errno : ENOMEM, "cannot allocate secure memory");
  size_t len = 0;
  int r = kmip_get_key(kp->client, id, fetched, FETCH_MAX, &len, err);
  if (r < 0) {
    secmem_free(fetched, FETCH_MAX);
    if (r == -ENOSPC)
      return nbdc_error_set(err, EINVAL, "provider %s: kek %s is not a 256-bit key", kp->name, id);
    return kmip_fail(kp, id, r, err);
  }
  if (len != KEYS_KEK_SIZE) {
    secmem_free(fetched, FETCH_MAX);
    return nbdc_error_set(err, EINVAL, "provider %s: kek %s is %zu bits, not 256", kp->name, id,
                          len * 8);
  }
  uint8_t *out = secmem_alloc(KEYS_KEK_SIZE);
  if (!out) {
    secmem_free(fetched, FETCH_MAX);
    return nbdc_error_set(err, errno ? errno : ENOMEM, "cannot allocate secure memory");
  }
  memcpy(out, fetched, KEYS_KEK_SIZE);
  secmem_free(fetched, FETCH_MAX);
  *kek = out;
  return 0;
}

static int kmip_kek_list(void *state, const char *prefix, struct keys_kek_info **list,
                         size_t *count, struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  char **ids;
  size_t n;
  int r = kmip_locate(kp->client, NULL, 0, &ids, &n, err);
  if (r < 0)
    return kmip_fail(kp, NULL, r, err);
  struct keys_kek_info *out = calloc(n ? n : 1, sizeof *out);
  if (!out) {
    kmip_ids_free(ids, n);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char name[KEYS_NAME_MAX];
    uint32_t st;
    int64_t date;
    if (strlen(ids[i]) >= KEYS_ID_MAX)
      continue;
    r = kmip_get_info(kp->client, ids[i], name, sizeof name, &st, &date, err);
    if (r < 0) {
      free(out);
      kmip_ids_free(ids, n);
      return kmip_fail(kp, ids[i], r, err);
    }
    if (prefix && strncmp(name, prefix, strlen(prefix)) != 0)
      continue;
    struct keys_kek_info *info = &out[k++];
    snprintf(info->id, sizeof info->id, "%s", ids[i]);
    snprintf(info->name, sizeof info->name, "%s", name);
    if (st)
      snprintf(info->state, sizeof info->state, "%s", keys_kek_state_name(st));
    if (date >= 0) {
      time_t t = (time_t)date;
      struct tm tm;
      if (gmtime_r(&t, &tm))
        strftime(info->created, sizeof info->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
  }
  kmip_ids_free(ids, n);
  *list = out;
  *count = k;
  return 0;
}

static int kmip_kek_state(void *state, const char *id, enum keys_kek_state *kek_state,
                          struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  enum kmip_state st;
  int r = kmip_get_state(kp->client, id, &st, err);
  if (r < 0)
    return kmip_fail(kp, id, r, err);
  *kek_state = (enum keys_kek_state)st; /* the same numbers, checked 1..6 by kmip_get_state */
  return 0;
}

static int kmip_kek_revoke(void *state, const char *id, bool compromised, struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  int r = compromised ? kmip_revoke(kp->client, id, KMIP_REVOKE_KEY_COMPROMISE,
                                    "compromised (nbdcrypt)", err)
                      : kmip_revoke(kp->client, id, KMIP_REVOKE_CESSATION_OF_OPERATION,
                                    "revoked by nbdcrypt", err);
  return r < 0 ? kmip_fail(kp, id, r, err) : 0;
}

static int kmip_kek_destroy(void *state, const char *id, struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  int r = kmip_destroy(kp->client, id, err);
  return r < 0 ? kmip_fail(kp, id, r, err) : 0;
}

static int kmip_kek_wrap(void *state, const char *id, const uint8_t *plain, size_t plain_len,
                         uint8_t **cipher, size_t *cipher_len, uint8_t iv[12], uint8_t tag[16],
                         struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  int r =
      kmip_encrypt_gcm(kp->client, id, plain, plain_len, NULL, 0, iv, tag, cipher, cipher_len, err);
  return r < 0 ? kmip_fail(kp, id, r, err) : 0;
}

static int kmip_kek_unwrap(void *state, const char *id, const uint8_t *cipher, size_t cipher_len,
                           const uint8_t iv[12], const uint8_t tag[16], uint8_t **plain,
                           size_t *plain_len, struct nbdc_error *err)
{
  struct kmip_provider *kp = state;
  size_t size = cipher_len ? cipher_len : 1;
  uint8_t *buf = secmem_alloc(size);
  if (!buf)
    return nbdc_error_set(err, errno ? errno : ENOMEM, "cannot allocate secure memory");
  size_t len = 0;
  int r =
      kmip_decrypt_gcm(kp->client, id, cipher, cipher_len, NULL, 0, iv, tag, buf, size, &len, err);
  if (r < 0) {
    secmem_free(buf, size);
    return kmip_fail(kp, id, r, err);
  }
  *plain = buf;
  *plain_len = len;
  return 0;
}

static void kmip_close(void *state)
{
  struct kmip_provider *kp = state;
  if (!kp)
    return;
  kmip_client_free(kp->client);
  free(kp->name);
  free(kp);
}

static const struct keys_provider_ops kmip_ops = {
    .type = "kmip",
    .kek_create = kmip_kek_create,
    .kek_get = kmip_kek_get,
    .kek_list = kmip_kek_list,
    .kek_state = kmip_kek_state,
    .kek_revoke = kmip_kek_revoke,
    .kek_destroy = kmip_kek_destroy,
    .kek_wrap = kmip_kek_wrap,
    .kek_unwrap = kmip_kek_unwrap,
    .close = kmip_close,
};

int keys_kmip_open(const char *name, struct json_object *conf, const char *origin,
                   enum keys_role role, const struct keys_provider_ops **ops, void **state,
                   struct nbdc_error *err)
{
  struct kmip_client_options opts = {0};
  const char *servers[KMIP_PROVIDER_MAX_SERVERS];
  int r = kmip_parse_options(name, conf, origin, role, &opts, servers, err);
  if (r < 0)
    return r;
  struct kmip_provider *kp = calloc(1, sizeof *kp);
  if (!kp || !(kp->name = strdup(name))) {
    free(kp);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  r = kmip_client_new(&opts, &kp->client, err);
  if (r < 0) {
    kmip_close(kp);
    return nbdc_error_prefix(err, "provider %s in %s", name, origin);
  }
  *ops = &kmip_ops;
  *state = kp;
  return 0;
}
