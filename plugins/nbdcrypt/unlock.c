/* nbdkit-nbdcrypt-filter: key options, the once-per-server unlock and the
 * per-thread cipher state.
 *
 * The volume is unlocked once per server, in .after_fork through a manual
 * context into the plugin.  If that fails (the KMS is down, the keystore is
 * missing ...), every new connection retries in .prepare through its own
 * next, at most once per NBDCRYPT_RETRY_SECONDS, and fails with the error of
 * the last attempt in between.  Once open, the volume and its master cipher
 * context never change until .unload, so the data path reads them without a
 * lock. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/keys.h"
#include "nbdcrypt/volume.h"

#include "nbdcrypt.h"

#define NBDCRYPT_RETRY_SECONDS 5
#define NBDCRYPT_KEYFILE_MAX   (8u * 1024 * 1024) /* as cryptsetup's default */

/* ---- options ------------------------------------------------------------ */

static char *config_path;       /* nbdcrypt-config, absolute */
static uint8_t *secret;         /* nbdcrypt-passphrase / nbdcrypt-keyfile, secmem */
static size_t secret_len;       /* bytes of secret in use */
static size_t secret_alloc;     /* bytes allocated (secmem_free needs it) */
static const char *secret_from; /* which key gave it, for error messages */
static int keyslot = -1;        /* nbdcrypt-keyslot */
static bool discard;            /* nbdcrypt-discard */
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
    config_path = nbdkit_realpath(value);
    return config_path ? 1 : -1;
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
  return 0;
}

bool nbdcrypt_discard(void)
{
  return discard;
}

/* ---- the volume --------------------------------------------------------- */

static pthread_mutex_t unlock_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool unlocked; /* release-stored after the fields below are set */
static struct volume *vol;
static struct xts_ctx *master_xts; /* cloned per thread with xts_dup */
static struct nbdcrypt_segment segment;
static bool attempted;                  /* under unlock_lock */
static struct timespec last_attempt;    /* under unlock_lock */
static char last_error[NBDC_ERROR_MAX]; /* under unlock_lock */

/* The plugin seen as a read-only block device for the header and keyslots. */
static int next_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                      struct nbdc_error *err)
{
  nbdkit_next *next = opaque;
  uint8_t *p = buf;
  while (count > 0) {
    uint32_t n = count > NBDCRYPT_CHUNK ? NBDCRYPT_CHUNK : (uint32_t)count;
    int e = 0;
    if (next->pread(next, p, n, offset, 0, &e) == -1)
      return nbdc_error_set(err, e ? e : EIO,
                            "plugin read of %" PRIu32 " bytes at offset %" PRIu64 " failed: %s", n,
                            offset, strerror(e ? e : EIO));
    p += n;
    offset += n;
    count -= n;
  }
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

static int attempt_unlock(nbdkit_next *next, struct nbdc_error *e)
{
  /* nbdkit requires get_size before the first pread on a context. */
  if (next->get_size(next) < 0)
    return nbdc_error_set(e, EIO, "cannot get the size of the plugin's disk");

  static const struct bdev_ops ops = {.pread = next_pread, .get_size = next_get_size};
  struct bdev *dev = NULL;
  int r = bdev_from_ops(&ops, next, "plugin disk", true, &dev, e);
  if (r < 0)
    return r;
  struct volume_unlock_opts opts = {
      .cfg = keys_cfg,
      .passphrase = secret,
      .passphrase_len = secret_len,
      .keyslot = keyslot,
  };
  struct volume *v = NULL;
  r = volume_open(dev, &opts, &v, e);
  bdev_close(dev);
  if (r < 0)
    return r;

  const struct luks2_segment *seg = volume_segment(v);
  struct xts_ctx *xts = NULL;
  r = volume_xts_new(v, &xts, e);
  if (r < 0) {
    volume_close(v);
    return r;
  }
  segment.offset = seg->offset;
  segment.iv_tweak = seg->iv_tweak;
  segment.sector_size = seg->sector_size;
  vol = v;
  master_xts = xts;
  nbdkit_debug("nbdcrypt: unlocked disk %s: provider %s, kek %s, keyslot %d, data offset %" PRIu64
               ", sector size %" PRIu32,
               luks2_uuid(volume_hdr(v)), volume_provider(v)[0] ? volume_provider(v) : "-",
               volume_kek_id(v)[0] ? volume_kek_id(v) : "-", volume_keyslot(v), segment.offset,
               segment.sector_size);
  atomic_store_explicit(&unlocked, true, memory_order_release);
  return 0;
}

int nbdcrypt_unlock(nbdkit_next *next, bool rate_limited)
{
  if (atomic_load_explicit(&unlocked, memory_order_acquire))
    return 0;

  pthread_mutex_lock(&unlock_lock);
  int r = 0;
  if (atomic_load_explicit(&unlocked, memory_order_relaxed))
    goto out;

  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (rate_limited && attempted && now.tv_sec - last_attempt.tv_sec < NBDCRYPT_RETRY_SECONDS) {
    nbdkit_error("nbdcrypt: cannot unlock the disk: %s (retrying at most every %d s)", last_error,
                 NBDCRYPT_RETRY_SECONDS);
    r = -1;
    goto out;
  }

  struct nbdc_error e = {0};
  attempted = true;
  last_attempt = now;
  if (attempt_unlock(next, &e) < 0) {
    snprintf(last_error, sizeof last_error, "%s", e.msg);
    nbdkit_error("nbdcrypt: cannot unlock the disk: %s", e.msg);
    r = -1;
  }
out:
  pthread_mutex_unlock(&unlock_lock);
  return r;
}

int nbdcrypt_unlock_at_start(nbdkit_backend *backend)
{
  nbdkit_next *next = nbdkit_next_context_open(backend, 1, "", 1);
  if (!next) {
    nbdkit_error("nbdcrypt: cannot open the plugin to unlock the disk at start; "
                 "connections will retry");
    return 0;
  }
  if (next->prepare(next) == -1) {
    nbdkit_error("nbdcrypt: cannot prepare the plugin to unlock the disk at start; "
                 "connections will retry");
  } else {
    (void)nbdcrypt_unlock(next, false);
    next->finalize(next);
  }
  nbdkit_next_context_close(next);
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

const struct nbdcrypt_segment *nbdcrypt_segment_get(void)
{
  return &segment;
}

int64_t nbdcrypt_export_size(int64_t plugin_size)
{
  if (plugin_size < 0)
    return -1;
  struct nbdc_error e = {0};
  uint64_t size;
  if (volume_data_size(vol, (uint64_t)plugin_size, &size, &e) < 0) {
    nbdkit_error("nbdcrypt: %s", e.msg);
    return -1;
  }
  /* A dynamic segment ends where the plugin's disk does: whole sectors only. */
  size -= size % segment.sector_size;
  if (size > INT64_MAX) {
    nbdkit_error("nbdcrypt: data size %" PRIu64 " too large", size);
    return -1;
  }
  return (int64_t)size;
}

/* ---- per-thread state ---------------------------------------------------- */

static pthread_key_t thread_key;
static bool thread_key_created;
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nbdcrypt_thread *threads; /* every live state, for .unload */

static void thread_state_free(struct nbdcrypt_thread *t)
{
  xts_free(t->xts);
  free(t->buf);
  free(t);
}

static void thread_state_unlink(struct nbdcrypt_thread *t)
{
  pthread_mutex_lock(&threads_lock);
  if (t->prev)
    t->prev->next = t->next;
  else
    threads = t->next;
  if (t->next)
    t->next->prev = t->prev;
  pthread_mutex_unlock(&threads_lock);
}

/* Runs when an nbdkit worker thread exits (its connection closed). */
static void thread_state_destroy(void *p)
{
  struct nbdcrypt_thread *t = p;
  thread_state_unlink(t);
  thread_state_free(t);
}

struct nbdcrypt_thread *nbdcrypt_thread_get(size_t len, int *err)
{
  struct nbdcrypt_thread *t = pthread_getspecific(thread_key);
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t) {
      *err = ENOMEM;
      nbdkit_error("nbdcrypt: calloc: %m");
      return NULL;
    }
    struct nbdc_error e = {0};
    if (xts_dup(master_xts, &t->xts, &e) < 0) {
      *err = e.code ? e.code : ENOMEM;
      nbdkit_error("nbdcrypt: cannot create a cipher context for this thread: %s", e.msg);
      free(t);
      return NULL;
    }
    pthread_mutex_lock(&threads_lock);
    t->next = threads;
    if (threads)
      threads->prev = t;
    threads = t;
    pthread_mutex_unlock(&threads_lock);
    if (pthread_setspecific(thread_key, t) != 0) {
      *err = ENOMEM;
      nbdkit_error("nbdcrypt: pthread_setspecific failed");
      thread_state_unlink(t);
      thread_state_free(t);
      return NULL;
    }
  }
  if (len > t->buf_size) {
    /* At least 64 KiB, whole pages (aligned for plugins that do direct
     * I/O), at most one chunk. */
    size_t size = len < 65536 ? 65536 : (len + 4095) & ~(size_t)4095;
    if (size > NBDCRYPT_CHUNK)
      size = NBDCRYPT_CHUNK;
    if (size < len) {
      *err = EINVAL;
      nbdkit_error("nbdcrypt: internal error: buffer of %zu bytes requested", len);
      return NULL;
    }
    uint8_t *buf = aligned_alloc(4096, size);
    if (!buf) {
      *err = ENOMEM;
      nbdkit_error("nbdcrypt: cannot allocate a %zu byte buffer: %m", size);
      return NULL;
    }
    free(t->buf);
    t->buf = buf;
    t->buf_size = size;
  }
  return t;
}

int nbdcrypt_state_init(void)
{
  if (pthread_key_create(&thread_key, thread_state_destroy) != 0)
    return -1;
  thread_key_created = true;
  return 0;
}

void nbdcrypt_state_free(void)
{
  /* Worker threads have exited by now, so normally nothing is left; free
   * what remains (and stop destructors from running later). */
  if (thread_key_created)
    pthread_key_delete(thread_key);
  pthread_mutex_lock(&threads_lock);
  while (threads) {
    struct nbdcrypt_thread *t = threads;
    threads = t->next;
    thread_state_free(t);
  }
  pthread_mutex_unlock(&threads_lock);
  xts_free(master_xts);
  master_xts = NULL;
  volume_close(vol);
  vol = NULL;
  secret_free();
  keys_config_free(keys_cfg);
  keys_cfg = NULL;
  free(config_path);
  config_path = NULL;
}
