/* nbdkit-nbdcrypt-filter: the key options, and opening a volume through
 * the plugin with them (export.c decides when: once per export, on its
 * first connection, with retries). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/keys.h"
#include "nbdcrypt/volume.h"

#include "nbdcrypt.h"

#define NBDCRYPT_KEYFILE_MAX (8u * 1024 * 1024) /* as cryptsetup's default */

/* ---- options ------------------------------------------------------------ */

static char *config_path;       /* nbdcrypt-config, absolute */
static char *header_path;       /* nbdcrypt-header, absolute */
static uint8_t *secret;         /* nbdcrypt-passphrase / nbdcrypt-keyfile, secmem */
static size_t secret_len;       /* bytes of secret in use */
static size_t secret_alloc;     /* bytes allocated (secmem_free needs it) */
static const char *secret_from; /* which key gave it, for error messages */
static int keyslot = -1;        /* nbdcrypt-keyslot */
static bool discard;            /* nbdcrypt-discard */
static bool allow_revoked;      /* nbdcrypt-allow-revoked */
static struct keys_config *keys_cfg;

static void secret_free(void)
{
  secmem_free(secret, secret_alloc);
  secret = NULL;
  secret_len = secret_alloc = 0;
  secret_from = NULL;
}

/* Keep a copy of len bytes of src in secure memory. */
static int secret_set(const char *key, const void *src, size_t len)
{
  if (secret) {
    nbdkit_error("%s: only one of nbdcrypt-passphrase and nbdcrypt-keyfile may be given, once",
                 key);
    return -1;
  }
  if (len == 0) {
    nbdkit_error("%s: the secret is empty", key);
    return -1;
  }
  secret = secmem_alloc(len);
  if (!secret) {
    nbdkit_error("%s: cannot allocate secure memory: %m", key);
    return -1;
  }
  memcpy(secret, src, len);
  secret_len = secret_alloc = len;
  secret_from = key;
  return 0;
}

static int read_passphrase(const char *key, const char *value)
{
  char *password = NULL;
  if (nbdkit_read_password(value, &password) == -1)
    return -1;
  size_t len = strlen(password);
  int r = secret_set(key, password, len);
  nbdc_wipe(password, len);
  free(password);
  return r;
}

/* A key file is used byte for byte, as cryptsetup --key-file does (binary
 * keys may contain NUL bytes, which nbdkit_read_password cannot carry). */
static int read_keyfile(const char *key, const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error("%s: %s: %m", key, path);
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
      (uint64_t)st.st_size > NBDCRYPT_KEYFILE_MAX) {
    nbdkit_error("%s: %s: not a regular file of 1 to %u bytes", key, path, NBDCRYPT_KEYFILE_MAX);
    close(fd);
    return -1;
  }
  size_t len = (size_t)st.st_size;
  uint8_t *buf = secmem_alloc(len);
  if (!buf) {
    nbdkit_error("%s: cannot allocate secure memory: %m", key);
    close(fd);
    return -1;
  }
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      nbdkit_error("%s: %s: short read", key, path);
      secmem_free(buf, len);
      close(fd);
      return -1;
    }
    got += (size_t)n;
  }
  close(fd);
  int r = secret_set(key, buf, len);
  secmem_free(buf, len);
  return r;
}

int nbdcrypt_config_key(const char *key, const char *value)
{
  if (strcmp(key, "nbdcrypt-config") == 0) {
    free(config_path);
    config_path = NULL;
    /* nbdkit_realpath's own message ("realpath: ...") names neither the key
     * nor what the file is for. */
    char *abs = realpath(value, NULL);
    if (!abs) {
      nbdkit_error("nbdcrypt-config=%s: cannot use this key provider configuration: %s", value,
                   strerror(errno));
      return -1;
    }
    config_path = abs;
    return 1;
  }
  if (strcmp(key, "nbdcrypt-header") == 0) {
    if (header_path) {
      nbdkit_error("nbdcrypt-header: given twice (one disk, one header)");
      return -1;
    }
    /* Absolute: nbdkit changes to / when it forks.  A missing file is refused here. */
    header_path = realpath(value, NULL);
    if (!header_path) {
      nbdkit_error("nbdcrypt-header=%s: cannot use the detached header: %m", value);
      return -1;
    }
    return 1;
  }
  if (strcmp(key, "nbdcrypt-passphrase") == 0)
    return read_passphrase(key, value) == 0 ? 1 : -1;
  if (strcmp(key, "nbdcrypt-keyfile") == 0)
    return read_keyfile(key, value) == 0 ? 1 : -1;
  if (strcmp(key, "nbdcrypt-keyslot") == 0) {
    int n;
    if (nbdkit_parse_int("nbdcrypt-keyslot", value, &n) == -1)
      return -1;
    if (n < 0 || n >= 32) {
      nbdkit_error("nbdcrypt-keyslot: %d is not a keyslot number (0..31)", n);
      return -1;
    }
    keyslot = n;
    return 1;
  }
  if (strcmp(key, "nbdcrypt-allow-revoked") == 0) {
    int b = nbdkit_parse_bool(value);
    if (b == -1)
      return -1;
    allow_revoked = b;
    return 1;
  }
  if (strcmp(key, "nbdcrypt-discard") == 0) {
    int b = nbdkit_parse_bool(value);
    if (b == -1)
      return -1;
    discard = b;
    return 1;
  }
  return 0;
}

/* -D nbdcrypt.kmip=1: trace the KMIP exchange on stderr (key material, data
 * and IVs masked).  The KMIP client reads NBDCRYPT_KMIP_TRACE when a provider
 * connects, which happens after configuration. */
NBDKIT_DLL_PUBLIC int nbdcrypt_debug_kmip;

/* What the library allowed but the operator must see even without -v
 * (nbdkit has no warning level: errors always reach the log). */
static void filter_warn(void *ctx, const char *msg)
{
  (void)ctx;
  nbdkit_error("nbdcrypt: warning: %s", msg);
}

int nbdcrypt_config_finish(void)
{
  if (nbdcrypt_debug_kmip)
    setenv("NBDCRYPT_KMIP_TRACE", "1", 1);
  /* With a passphrase and no explicit configuration, no provider is needed:
   * a missing default keystore must not stop a cryptsetup-made disk. */
  if (secret && !config_path)
    return 0;
  struct nbdc_error e = {0};
  if (keys_config_load(config_path, &keys_cfg, &e) < 0) {
    nbdkit_error("nbdcrypt-config: %s", e.msg);
    return -1;
  }
  nbdkit_debug("nbdcrypt: key configuration from %s", keys_config_origin(keys_cfg));
  keys_config_set_warn(keys_cfg, filter_warn, NULL);
  keys_config_set_allow_revoked(keys_cfg, allow_revoked);
  if (allow_revoked)
    filter_warn(
        NULL,
        "nbdcrypt-allow-revoked=true: disks bound to a deactivated or compromised kek unlock");
  return 0;
}

const struct keys_config *nbdcrypt_keys_config(void)
{
  return keys_cfg;
}

int nbdcrypt_volume_open(struct bdev *dev, struct volume **out, struct nbdc_error *e)
{
  struct volume_unlock_opts opts = {
      .cfg = keys_cfg,
      .passphrase = secret,
      .passphrase_len = secret_len,
      .keyslot = keyslot,
  };
  return volume_open(dev, &opts, out, e);
}

bool nbdcrypt_secret(const uint8_t **data, size_t *len)
{
  *data = secret;
  *len = secret_len;
  return secret != NULL;
}

bool nbdcrypt_discard(void)
{
  return discard;
}

const char *nbdcrypt_header_path(void)
{
  return header_path;
}

/* ---- opening a volume ----------------------------------------------------- */

/* The plugin seen as a read-only block device for the header and keyslots. */
static int next_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                      struct nbdc_error *err)
{
  nbdkit_next *next = opaque;
  int e = 0;
  /* count <= NBDCRYPT_CHUNK: bdev_pread splits (bdev_set_max_request) */
  if (next->pread(next, buf, (uint32_t)count, offset, 0, &e) == -1)
    return nbdc_error_set(err, e ? e : EIO,
                          "plugin read of %zu bytes at offset %" PRIu64 " failed: %s", count,
                          offset, strerror(e ? e : EIO));
  return 0;
}

static int next_get_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  nbdkit_next *next = opaque;
  int64_t r = next->get_size(next);
  if (r < 0)
    return nbdc_error_set(err, EIO, "cannot get the size of the plugin's disk");
  *size = (uint64_t)r;
  return 0;
}

int nbdcrypt_volume_unlock(nbdkit_next *next, struct xts_ctx **master_xts,
                           struct nbdcrypt_segment *segment, struct nbdc_error *e)
{
  /* nbdkit requires get_size before the first pread on a context. */
  if (next->get_size(next) < 0)
    return nbdc_error_set(e, EIO, "cannot get the size of the plugin's disk");

  /* The header and keyslots: on the plugin's disk, or in the detached
   * header file (nbdcrypt-header=), whose data segment is the plugin's disk. */
  static const struct bdev_ops ops = {.pread = next_pread, .get_size = next_get_size};
  struct bdev *dev = NULL;
  int r = header_path ? bdev_open(header_path, BDEV_RDONLY, 0, &dev, e)
                      : bdev_from_ops(&ops, next, "plugin disk", true, &dev, e);
  if (r < 0)
    return header_path ? nbdc_error_prefix(e, "nbdcrypt-header") : r;
  bdev_set_max_request(dev, NBDCRYPT_CHUNK);
  struct volume_unlock_opts opts = {
      .cfg = keys_cfg,
      .passphrase = secret,
      .passphrase_len = secret_len,
      .keyslot = keyslot,
      .allow_luks1 = true,
      .detached = header_path != NULL,
  };
  struct volume *v = NULL;
  r = volume_open(dev, &opts, &v, e);
  bdev_close(dev);
  if (r < 0) {
    if (header_path)
      nbdc_error_prefix(e, "header %s", header_path);
    return r;
  }

  struct xts_ctx *xts = NULL;
  r = volume_xts_new(v, &xts, e);
  if (r < 0) {
    volume_close(v);
    return r;
  }
  const struct luks2_segment *seg = volume_segment(v);
  segment->offset = seg->offset;
  segment->iv_tweak = seg->iv_tweak;
  segment->sector_size = seg->sector_size;
  segment->dynamic = seg->dynamic;
  segment->size = seg->size;
  snprintf(segment->uuid, sizeof segment->uuid, "%s", volume_uuid(v));
  if (header_path)
    nbdkit_debug(
        "nbdcrypt: disk %s: detached header %s, data on the plugin's disk at offset %" PRIu64,
        segment->uuid, header_path, segment->offset);
  nbdkit_debug("nbdcrypt: disk %s: provider %s, kek %s, keyslot %d, crypto backend %s%s",
               segment->uuid, volume_provider(v)[0] ? volume_provider(v) : "-",
               volume_kek_id(v)[0] ? volume_kek_id(v) : "-", volume_keyslot(v),
               crypto_backend_name(),
               crypto_backend_schedules_secure() ? "" : " (key schedules on the ordinary heap)");
  volume_close(v); /* wipes the volume key: the contexts hold their own */
  /* The key went through vector registers in volume_xts_new (key expansion)
   * and on this thread's unlock path. */
  crypto_wipe_cpu_registers();
  *master_xts = xts;
  return 0;
}

/* Memory locks are not inherited by fork: move the secret (read at .config,
 * before nbdkit daemonizes) into fresh locked pages in this process. */
void nbdcrypt_after_fork_relock(void)
{
  if (!secret)
    return;
  uint8_t *fresh = secmem_alloc(secret_alloc);
  if (!fresh) {
    nbdkit_debug("nbdcrypt: cannot re-lock the secret after fork: %m");
    return;
  }
  memcpy(fresh, secret, secret_alloc);
  secmem_free(secret, secret_alloc);
  secret = fresh;
}

void nbdcrypt_options_free(void)
{
  secret_free();
  keys_config_free(keys_cfg);
  keys_cfg = NULL;
  free(config_path);
  config_path = NULL;
  free(header_path);
  header_path = NULL;
}
