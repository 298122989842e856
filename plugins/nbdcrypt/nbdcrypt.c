/* nbdkit-nbdcrypt-filter: serve the plaintext view of a LUKS2 disk that
 * lives on any nbdkit plugin (DESIGN.md section 6).
 *
 * Data path: one plugin call per client request (a write larger than
 * NBDCRYPT_CHUNK is split into chunk-sized plugin writes, never per sector).
 * Reads decrypt in place in the client's buffer; writes encrypt into a
 * per-thread buffer with a per-thread cipher context.
 *
 * Exports: the handle of a connection is its export (export.c), whose
 * volume was unlocked in .prepare; every callback below reads the segment
 * and cipher key through it.
 *
 * Locking: requests not aligned to the encryption sector are served by
 * read-modify-write of the partial sectors under an exclusive rwlock.
 * Aligned writes and all reads take it shared: an aligned write can never
 * land inside a read-modify-write, and a read never sees a sector half way
 * through one (a torn ciphertext sector would decrypt to garbage even in the
 * bytes the writer did not touch).  The lock is one per disk (export.c): a
 * plugin that ignores the export name (file file=) serves one image under
 * every name a client picks, and a read-modify-write under one name must
 * still exclude writes under another; other disks never wait for it. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/rangelock.h"

#include "nbdcrypt.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static void rwlock_release(pthread_rwlock_t **lock)
{
  if (*lock)
    pthread_rwlock_unlock(*lock);
}

static pthread_rwlock_t *rwlock_take(pthread_rwlock_t *lock, bool exclusive)
{
  if (exclusive)
    pthread_rwlock_wrlock(lock);
  else
    pthread_rwlock_rdlock(lock);
  return lock;
}

#define CLEANUP_RWLOCK __attribute__((cleanup(rwlock_release), unused))

/* A client request's hold against the online recrypt's hotzone (online.c). */
struct range_hold {
  const struct nbdcrypt_export *x;
  struct rangelock_hold h;
};

static void range_release(struct range_hold *r)
{
  if (r->x)
    nbdcrypt_online_leave(r->x, &r->h);
}

#define CLEANUP_RANGE __attribute__((cleanup(range_release)))

static void nbdcrypt_load(void)
{
  if (nbdcrypt_state_init() == -1)
    nbdkit_debug("nbdcrypt: pthread_key_create failed");
  int r = secmem_harden_process();
  if (r < 0)
    nbdkit_debug("nbdcrypt: cannot make the process non-dumpable: %s", strerror(-r));
}

static void nbdcrypt_unload(void)
{
  nbdcrypt_state_free();
  nbdcrypt_options_free();
  nbdcrypt_lock_free();
}

static int nbdcrypt_config(nbdkit_next_config *next, nbdkit_backend *nxdata, const char *key,
                           const char *value)
{
  int r = nbdcrypt_lock_config_key(key, value);
  if (r == -1)
    return -1;
  if (r == 1)
    return 0;
  r = nbdcrypt_online_config_key(key, value);
  if (r == -1)
    return -1;
  if (r == 1)
    return 0;
  r = nbdcrypt_config_key(key, value);
  if (r == -1)
    return -1;
  if (r == 1)
    return 0;
  return next(nxdata, key, value);
}

static int nbdcrypt_config_complete(nbdkit_next_config_complete *next, nbdkit_backend *nxdata)
{
  if (nbdcrypt_config_finish() == -1)
    return -1;
  return next(nxdata);
}

#define nbdcrypt_config_help                                                                       \
  "nbdcrypt-config=<FILE>       Key providers (JSON; default as for the nbdcrypt command).\n"      \
  "nbdcrypt-header=<FILE>       Detached LUKS2 header (cryptsetup --header); the plugin's\n"       \
  "                             disk holds the data only.\n"                                       \
  "nbdcrypt-passphrase=<SECRET> Unlock a passphrase keyslot: +FILE, -FD, - (prompt) or SECRET\n"   \
  "                             (an inline SECRET is printed by nbdkit -v: use +FILE or -FD).\n"   \
  "nbdcrypt-keyfile=<FILE>      Unlock a keyslot with the exact bytes of FILE.\n"                  \
  "nbdcrypt-keyslot=<N>         Only try keyslot N (default: any).\n"                              \
  "nbdcrypt-allow-revoked=<BOOL> Unlock with a revoked KEK, with a warning (rescue).\n"            \
  "nbdcrypt-discard=<BOOL>      Pass trim to the plugin (default false: reveals unused blocks).\n" \
  "nbdcrypt-lock=<BOOL>         Lock the file= and dir= images as qemu does (default true).\n"     \
  "nbdcrypt-lock=readonly       Lock file= images as a read-only server (with nbdkit -r).\n"       \
  "nbdcrypt-reencrypt=recrypt   Deep recrypt (new volume key) while serving; resume (default)\n"   \
  "                             resumes a recrypt left half way; no refuses such a disk.\n"        \
  "nbdcrypt-reencrypt-hotzone=<SIZE> Bytes rewritten at a time online (16M..256M, default 16M)."

static int nbdcrypt_get_ready(int thread_model)
{
  nbdcrypt_online_set_thread_model(thread_model);
  return nbdcrypt_lock_ready();
}

/* No unlock here: there is no connection, hence no export name, and no
 * plugin is opened outside a connection (export.c). */
static int nbdcrypt_after_fork(nbdkit_backend *backend)
{
  nbdcrypt_online_set_backend(backend);
  nbdcrypt_after_fork_relock();
  return 0;
}

/* The plugin is still there: stop online recrypts at a resumable point. */
static void nbdcrypt_cleanup(nbdkit_backend *backend)
{
  (void)backend;
  nbdcrypt_exports_stop_online();
}

/* No I/O is allowed here: find the export (exportname is canonical, the
 * default export already resolved by nbdkit) and make it the handle. */
static void *nbdcrypt_open(nbdkit_next_open *next, nbdkit_context *ctx, int readonly,
                           const char *exportname, int is_tls)
{
  (void)is_tls;
  if (next(ctx, readonly, exportname) == -1)
    return NULL;
  return nbdcrypt_export_get(exportname);
}

/* The first place a connection may read the disk: unlock its export on the
 * export's first connection (rate-limited retries after a failure).  A
 * failure here is answered NBD_REP_ERR_UNKNOWN without a message by nbdkit
 * (docs/decisions.md): the cause is in the server's log. */
static int nbdcrypt_prepare(nbdkit_next *next, void *handle, int readonly)
{
  return nbdcrypt_export_unlock(handle, next, readonly);
}

static int64_t nbdcrypt_get_size(nbdkit_next *next, void *handle)
{
  return nbdcrypt_export_size(handle, next->get_size(next));
}

/* Minimum 1: the filter serves any alignment by its own read-modify-write,
 * which fails a write whose read fails.  Advertising the sector instead
 * makes clients pad on their own: nbdfuse then refuses byte-granular
 * writes, and qemu 7.2 ignores an error of its padding read and writes
 * zeroes over the bytes it could not read.  Preferred: the encryption
 * sector (aligned requests skip the read-modify-write), or the plugin's
 * when larger.  The filter's plugin requests are whole sectors at sector
 * offsets, so a plugin minimum up to the sector size is met; a larger one
 * is passed on. */
static int nbdcrypt_block_size(nbdkit_next *next, void *handle, uint32_t *minimum,
                               uint32_t *preferred, uint32_t *maximum)
{
  const struct nbdcrypt_export *x = handle;
  if (next->block_size(next, minimum, preferred, maximum) == -1)
    return -1;
  const uint32_t sector_size = x->segment.sector_size;
  if (*minimum == 0) { /* the plugin has no constraints */
    *minimum = 1;
    *preferred = sector_size;
    *maximum = 0xffffffff;
  } else {
    *minimum = *minimum <= sector_size ? 1 : *minimum;
    *preferred = MAX(*minimum, MAX(*preferred, sector_size));
    if (*maximum != 0xffffffff && *maximum < *preferred)
      *preferred = MAX(*minimum, *maximum);
  }
  return 0;
}

static int nbdcrypt_can_trim(nbdkit_next *next, void *handle)
{
  (void)handle;
  if (!nbdcrypt_discard())
    return 0;
  return next->can_trim(next);
}

/* Zeroes are written encrypted by .zero (they must not reach the plugin as
 * plaintext zeroes), so never fast. */
static int nbdcrypt_can_zero(nbdkit_next *next, void *handle)
{
  (void)handle;
  (void)next;
  return NBDKIT_ZERO_NATIVE;
}

static int nbdcrypt_can_fast_zero(nbdkit_next *next, void *handle)
{
  (void)next;
  (void)handle;
  return 0;
}

/* Ciphertext extents say nothing true about plaintext zeroes. */
static int nbdcrypt_can_extents(nbdkit_next *next, void *handle)
{
  (void)next;
  (void)handle;
  return 0;
}

static int nbdcrypt_can_cache(nbdkit_next *next, void *handle)
{
  (void)next;
  (void)handle;
  return NBDKIT_CACHE_EMULATE;
}

static bool is_aligned(uint64_t v, uint32_t sector_size)
{
  return (v & (sector_size - 1)) == 0;
}

static uint64_t round_down(uint64_t v, uint32_t sector_size)
{
  return v & ~(uint64_t)(sector_size - 1);
}

static uint64_t round_up(uint64_t v, uint32_t sector_size)
{
  return round_down(v + sector_size - 1, sector_size);
}

/* IV of the sector at byte offset pos of the export (512-byte units). */
static uint64_t iv_unit(const struct nbdcrypt_segment *seg, uint64_t pos)
{
  return seg->iv_tweak + pos / 512;
}

static int crypt_error(const char *what, uint64_t pos, const struct nbdc_error *e, int *err)
{
  nbdkit_error("nbdcrypt: %s at offset %" PRIu64 ": %s", what, pos, e->msg);
  *err = EIO;
  return -1;
}

/* En- or decrypt len bytes (whole sectors) at export offset pos: those below
 * boundary with the new key of an online recrypt, the rest with the old. */
static int crypt_sectors(const struct nbdcrypt_segment *seg, struct nbdcrypt_thread *t,
                         uint64_t boundary, uint8_t *out, const uint8_t *in, uint32_t len,
                         uint64_t pos, bool enc, struct nbdc_error *e)
{
  uint32_t split = boundary <= pos ? 0 : (uint32_t)MIN(boundary - pos, (uint64_t)len);
  int r = 0;
  if (split > 0) {
    if (!t->xts_new)
      return nbdc_error_set(e, EIO, "internal error: no new key for a recrypted range");
    r = enc ? xts_encrypt(t->xts_new, out, in, split, iv_unit(seg, pos), e)
            : xts_decrypt(t->xts_new, out, in, split, iv_unit(seg, pos), e);
  }
  if (r == 0 && split < len)
    r = enc ? xts_encrypt(t->xts, out + split, in + split, len - split, iv_unit(seg, pos + split),
                          e)
            : xts_decrypt(t->xts, out + split, in + split, len - split, iv_unit(seg, pos + split),
                          e);
  return r;
}

/* Read and decrypt len bytes (whole sectors) at export offset pos into buf. */
static int read_sectors(nbdkit_next *next, const struct nbdcrypt_segment *seg,
                        struct nbdcrypt_thread *t, uint64_t boundary, uint8_t *buf, uint32_t len,
                        uint64_t pos, int *err)
{
  if (next->pread(next, buf, len, seg->offset + pos, 0, err) == -1) {
    nbdkit_error("nbdcrypt: plugin read of %" PRIu32 " bytes at export offset %" PRIu64
                 " failed: %s",
                 len, pos, strerror(*err));
    return -1;
  }
  struct nbdc_error e = {0};
  if (crypt_sectors(seg, t, boundary, buf, buf, len, pos, false, &e) < 0)
    return crypt_error("decryption", pos, &e, err);
  return 0;
}

static int nbdcrypt_pread(nbdkit_next *next, void *handle, void *buf, uint32_t count,
                          uint64_t offset, uint32_t flags, int *err)
{
  (void)flags;
  const struct nbdcrypt_export *x = handle;
  const struct nbdcrypt_segment *seg = &x->segment;
  const uint32_t sector_size = seg->sector_size;
  uint8_t *out = buf;

  uint64_t boundary;
  CLEANUP_RANGE struct range_hold hold = {0};
  if (nbdcrypt_online_enter(x, &hold.h, round_down(offset, sector_size),
                            round_up(offset + count, sector_size) - round_down(offset, sector_size),
                            false, &boundary, err) == -1)
    return -1;
  hold.x = x;

  if (is_aligned(offset | count, sector_size)) {
    struct nbdcrypt_thread *t = nbdcrypt_thread_get(x, 0, err);
    if (!t)
      return -1;
    CLEANUP_RWLOCK pthread_rwlock_t *lock = rwlock_take(x->rmw_lock, false);
    return read_sectors(next, seg, t, boundary, out, count, offset, err);
  }

  /* Unaligned: read the covering sectors into the bounce buffer, a chunk
   * at a time, and copy the requested bytes out. */
  const uint64_t start = round_down(offset, sector_size);
  const uint64_t end = round_up(offset + count, sector_size);
  struct nbdcrypt_thread *t = nbdcrypt_thread_get(x, MIN(end - start, NBDCRYPT_CHUNK), err);
  if (!t)
    return -1;
  CLEANUP_RWLOCK pthread_rwlock_t *lock = rwlock_take(x->rmw_lock, false);
  for (uint64_t pos = start; pos < end;) {
    const uint32_t n = (uint32_t)MIN(end - pos, NBDCRYPT_CHUNK);
    if (read_sectors(next, seg, t, boundary, t->buf, n, pos, err) == -1)
      return -1;
    const uint64_t lo = MAX(pos, offset);
    const uint64_t hi = MIN(pos + n, offset + count);
    memcpy(out + (lo - offset), t->buf + (lo - pos), hi - lo);
    pos += n;
  }
  return 0;
}

/* Write count bytes of data (NULL: zeroes) at export offset offset.
 *
 * The covering sector range is encrypted into the thread's buffer and
 * written with one plugin call per chunk; partial head and tail sectors are
 * first read and decrypted (read-modify-write, under the exclusive lock).
 * FUA goes on the single plugin write; when a request needs several, on
 * every one of them if the plugin has native FUA, else on the last only
 * (emulated FUA is a flush, which covers the earlier ones too). */
static int write_data(nbdkit_next *next, const struct nbdcrypt_export *x, const uint8_t *data,
                      uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  const struct nbdcrypt_segment *seg = &x->segment;
  const uint32_t sector_size = seg->sector_size;
  const uint64_t end_byte = offset + count;
  const uint64_t start = round_down(offset, sector_size);
  const uint64_t end = round_up(end_byte, sector_size);
  const bool head_partial = start != offset;
  const bool tail_partial = end != end_byte;
  const bool rmw = head_partial || tail_partial;

  bool fua_each = false, fua_last = false;
  if (flags & NBDKIT_FLAG_FUA) {
    int fua = next->can_fua(next);
    if (fua == -1) {
      *err = EIO;
      return -1;
    }
    if (fua == NBDKIT_FUA_NATIVE)
      fua_each = true;
    else if (fua == NBDKIT_FUA_EMULATE)
      fua_last = true;
  }

  uint64_t boundary;
  CLEANUP_RANGE struct range_hold hold = {0};
  if (nbdcrypt_online_enter(x, &hold.h, start, end - start, true, &boundary, err) == -1)
    return -1;
  hold.x = x;
  struct nbdcrypt_thread *t = nbdcrypt_thread_get(x, MIN(end - start, NBDCRYPT_CHUNK), err);
  if (!t)
    return -1;
  CLEANUP_RWLOCK pthread_rwlock_t *lock = rwlock_take(x->rmw_lock, rmw);

  for (uint64_t pos = start; pos < end;) {
    const uint32_t n = (uint32_t)MIN(end - pos, NBDCRYPT_CHUNK);
    const bool last = pos + n == end;
    struct nbdc_error e = {0};

    if (!rmw && data) {
      if (crypt_sectors(seg, t, boundary, t->buf, data + (pos - offset), n, pos, true, &e) < 0)
        return crypt_error("encryption", pos, &e, err);
    } else {
      if (pos == start && head_partial) {
        if (read_sectors(next, seg, t, boundary, t->buf, sector_size, start, err) == -1)
          return -1;
      }
      /* The tail sector, unless it is the head sector already read. */
      if (last && tail_partial && !(head_partial && end - sector_size == start)) {
        if (read_sectors(next, seg, t, boundary, t->buf + n - sector_size, sector_size,
                         end - sector_size, err) == -1)
          return -1;
      }
      const uint64_t lo = MAX(pos, offset);
      const uint64_t hi = MIN(pos + n, end_byte);
      if (data)
        memcpy(t->buf + (lo - pos), data + (lo - offset), hi - lo);
      else
        memset(t->buf + (lo - pos), 0, hi - lo);
      if (crypt_sectors(seg, t, boundary, t->buf, t->buf, n, pos, true, &e) < 0)
        return crypt_error("encryption", pos, &e, err);
    }

    const uint32_t wflags = (fua_each || (fua_last && last)) ? NBDKIT_FLAG_FUA : 0;
    if (next->pwrite(next, t->buf, n, seg->offset + pos, wflags, err) == -1) {
      nbdkit_error("nbdcrypt: plugin write of %" PRIu32 " bytes at export offset %" PRIu64
                   " failed: %s",
                   n, pos, strerror(*err));
      return -1;
    }
    pos += n;
  }
  return 0;
}

static int nbdcrypt_pwrite(nbdkit_next *next, void *handle, const void *buf, uint32_t count,
                           uint64_t offset, uint32_t flags, int *err)
{
  return write_data(next, handle, buf, count, offset, flags & NBDKIT_FLAG_FUA, err);
}

/* Zeroes are written as encrypted zero sectors; MAY_TRIM is ignored (a
 * trimmed sector reads back as garbage through the cipher). */
static int nbdcrypt_zero(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
  if (flags & NBDKIT_FLAG_FAST_ZERO) {
    *err = ENOTSUP;
    return -1;
  }
  return write_data(next, handle, NULL, count, offset, flags & NBDKIT_FLAG_FUA, err);
}

/* Only with nbdcrypt-discard=true.  Only whole sectors inside the range are
 * trimmed: trimming part of a sector would destroy the rest of it. */
static int nbdcrypt_trim(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
  const struct nbdcrypt_export *x = handle;
  const struct nbdcrypt_segment *seg = &x->segment;
  const uint64_t start = round_up(offset, seg->sector_size);
  const uint64_t end = round_down(offset + count, seg->sector_size);
  if (start >= end)
    return 0;
  uint64_t boundary;
  CLEANUP_RANGE struct range_hold hold = {0};
  if (nbdcrypt_online_enter(x, &hold.h, start, end - start, true, &boundary, err) == -1)
    return -1;
  hold.x = x;
  CLEANUP_RWLOCK pthread_rwlock_t *lock = rwlock_take(x->rmw_lock, false);
  return next->trim(next, (uint32_t)(end - start), seg->offset + start, flags & NBDKIT_FLAG_FUA,
                    err);
}

static int nbdcrypt_flush(nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  (void)handle;
  (void)flags;
  return next->flush(next, 0, err);
}

static struct nbdkit_filter filter = {
    .name = "nbdcrypt",
    .longname = "nbdkit nbdcrypt filter",
    .description = "serve a LUKS2 disk decrypted (XTS-AES), keys from a key provider",
    .load = nbdcrypt_load,
    .unload = nbdcrypt_unload,
    .config = nbdcrypt_config,
    .config_complete = nbdcrypt_config_complete,
    .config_help = nbdcrypt_config_help,
    .get_ready = nbdcrypt_get_ready,
    .after_fork = nbdcrypt_after_fork,
    .cleanup = nbdcrypt_cleanup,
    .open = nbdcrypt_open,
    .prepare = nbdcrypt_prepare,
    .get_size = nbdcrypt_get_size,
    .block_size = nbdcrypt_block_size,
    .can_trim = nbdcrypt_can_trim,
    .can_zero = nbdcrypt_can_zero,
    .can_fast_zero = nbdcrypt_can_fast_zero,
    .can_extents = nbdcrypt_can_extents,
    .can_cache = nbdcrypt_can_cache,
    .pread = nbdcrypt_pread,
    .pwrite = nbdcrypt_pwrite,
    .zero = nbdcrypt_zero,
    .trim = nbdcrypt_trim,
    .flush = nbdcrypt_flush,
};

NBDKIT_REGISTER_FILTER(filter)
