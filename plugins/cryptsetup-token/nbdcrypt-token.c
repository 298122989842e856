/* libcryptsetup-token-nbdcrypt.so: cryptsetup's external token plugin for
 * the "nbdcrypt" LUKS2 token (docs/cryptsetup-token.md).
 *
 * Thin on purpose: cryptsetup hands over the token's JSON, the volume module
 * checks it and asks the provider it names (found through the same
 * configuration as the nbdcrypt command) for the keyslot secret, and
 * cryptsetup opens the keyslot with it.  The secret lives in our secure
 * memory until cryptsetup gives it back through buffer_free.
 *
 * Return values follow libcryptsetup.h: 0 with the secret, -ENOENT when this
 * host cannot unlock the token (no configuration, unknown provider, unknown
 * KEK, bad token: cryptsetup tries its other tokens), -EAGAIN when the KMS
 * cannot be reached ("usable but not ready"), -ENOMEM when no memory can be
 * had.  Every failure is also logged through crypt_log with the reason. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <libcryptsetup.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/keys.h"
#include "nbdcrypt/volume.h"

#define TOKEN_EXPORT __attribute__((visibility("default")))

/* libcryptsetup.h names these symbols but declares no prototypes. */
TOKEN_EXPORT const char *cryptsetup_token_version(void);
TOKEN_EXPORT int cryptsetup_token_open(struct crypt_device *cd, int token, char **buffer,
                                       size_t *buffer_len, void *usrptr);
TOKEN_EXPORT void cryptsetup_token_buffer_free(void *buffer, size_t buffer_len);
TOKEN_EXPORT int cryptsetup_token_validate(struct crypt_device *cd, const char *json);
TOKEN_EXPORT void cryptsetup_token_dump(struct crypt_device *cd, const char *json);

/* crypt_log takes a finished line; cryptsetup's own messages end in '\n'. */
__attribute__((format(printf, 3, 4))) static void token_log(struct crypt_device *cd, int level,
                                                            const char *fmt, ...)
{
  char line[NBDC_ERROR_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  size_t len = strlen(line);
  line[len] = '\n';
  line[len + 1] = '\0';
  crypt_log(cd, level, line);
}

/* Network failures mean the KMS is away, not that the token is unusable. */
static bool token_kms_unreachable(int code)
{
  switch (code) {
  case ECONNREFUSED:
  case ECONNRESET:
  case ECONNABORTED:
  case ETIMEDOUT:
  case EHOSTUNREACH:
  case EHOSTDOWN:
  case ENETUNREACH:
  case ENETDOWN:
    return true;
  default:
    return false;
  }
}

const char *cryptsetup_token_version(void)
{
  return NBDCRYPT_VERSION;
}

int cryptsetup_token_open(struct crypt_device *cd, int token, char **buffer, size_t *buffer_len,
                          void *usrptr)
{
  (void)usrptr;
  const char *json = NULL;
  if (crypt_token_json_get(cd, token, &json) < 0 || !json) {
    token_log(cd, CRYPT_LOG_ERROR, "nbdcrypt token %d: cannot read the token from the header",
              token);
    return -ENOENT;
  }

  struct nbdc_error e = {0};
  struct keys_config *cfg = NULL;
  if (keys_config_load(NULL, &cfg, &e) < 0) {
    token_log(cd, CRYPT_LOG_ERROR,
              "nbdcrypt token %d: cannot load the key provider configuration: %s", token, e.msg);
    return e.code == ENOMEM ? -ENOMEM : -ENOENT;
  }
  token_log(cd, CRYPT_LOG_DEBUG, "nbdcrypt token %d: key providers from %s", token,
            keys_config_origin(cfg));

  struct volume_token_info info = {.keyslot = -1};
  uint8_t *secret = NULL;
  size_t secret_len = 0;
  int r = volume_token_secret(json, cfg, &info, &secret, &secret_len, &e);
  keys_config_free(cfg);
  if (r < 0) {
    bool away = token_kms_unreachable(e.code);
    /* Name the KEK unless the provider's message already does. */
    char named[KEYS_ID_MAX + 8];
    snprintf(named, sizeof named, "kek %s ", info.kek_id);
    if (info.kek_id[0] && !strstr(e.msg, named))
      token_log(cd, CRYPT_LOG_ERROR, "nbdcrypt token %d (provider %s, kek %s): %s%s", token,
                info.provider, info.kek_id, e.msg,
                away ? " (the KMS cannot be reached; try again when it is back)" : "");
    else
      token_log(cd, CRYPT_LOG_ERROR, "nbdcrypt token %d: %s%s", token, e.msg,
                away ? " (the KMS cannot be reached; try again when it is back)" : "");
    if (away)
      return -EAGAIN;
    /* EAGAIN here is mlock's, not the KMS's. */
    return e.code == ENOMEM || e.code == EAGAIN ? -ENOMEM : -ENOENT;
  }
  token_log(cd, CRYPT_LOG_DEBUG, "nbdcrypt token %d: %s secret for keyslot %d from provider %s",
            token, info.kms_wrapped ? "unwrapped" : "kek", info.keyslot, info.provider);
  *buffer = (char *)secret;
  *buffer_len = secret_len;
  return 0;
}

/* The buffer came from secmem_alloc: wiped, unlocked and unmapped. */
void cryptsetup_token_buffer_free(void *buffer, size_t buffer_len)
{
  secmem_free(buffer, buffer_len);
}

int cryptsetup_token_validate(struct crypt_device *cd, const char *json)
{
  struct nbdc_error e = {0};
  if (volume_token_check(json, NULL, &e) < 0) {
    token_log(cd, CRYPT_LOG_ERROR, "%s", e.msg);
    return -EINVAL;
  }
  return 0;
}

/* What luksDump shows under the token: where the KEK lives, never a secret
 * (not even the wrapped one). */
void cryptsetup_token_dump(struct crypt_device *cd, const char *json)
{
  struct nbdc_error e = {0};
  struct volume_token_info info;
  if (volume_token_check(json, &info, &e) < 0) {
    token_log(cd, CRYPT_LOG_ERROR, "%s", e.msg);
    return;
  }
  token_log(cd, CRYPT_LOG_NORMAL, "\tProvider:   %s", info.provider);
  token_log(cd, CRYPT_LOG_NORMAL, "\tKEK id:     %s", info.kek_id);
  token_log(cd, CRYPT_LOG_NORMAL, "\tMode:       %s", info.kms_wrapped ? "kms-wrapped" : "kek");
}
