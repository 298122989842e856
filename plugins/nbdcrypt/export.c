/* nbdkit-nbdcrypt-filter: one volume per export, and the per-thread cipher
 * state.
 *
 * One nbdkit may serve many disks (file dir=, a plugin that picks the image
 * by export name): each export name nbdkit gives .open is its own volume,
 * with its own DEK.  .open, where no I/O is allowed, finds or creates the
 * export's entry and makes it the connection's handle; .prepare unlocks it
 * through that connection's plugin context on the first connection, and the
 * volume then stays until .unload, so later connections cost nothing.  No
 * plugin is ever opened outside a connection: a manual context has no
 * export name (the file plugin's dir= mode crashes on it, the nbd plugin's
 * dynamic-export= asserts) or the wrong one.
 *
 * A failed unlock (the KMS is down, a KEK is missing, the export is not an
 * nbdcrypt disk) refuses that export only.  It is tried again at most once
 * per NBDCRYPT_RETRY_SECONDS counted from the end of the last attempt, so a
 * slow KMS is not hammered by a client that reconnects at once; connections
 * in between fail with the last attempt's error.  Connections that arrive
 * while an attempt runs wait for it on x->lock (at most its KMS time-outs)
 * and then, finding it failed inside the window, fail with its error: they
 * never start a second attempt, and on a healthy KMS they are served as soon
 * as the one unlock is done (test-filter-hung-kms-one-attempt.sh).
 *
 * The table is only walked at .open and at an unlock (control path).  The
 * data path reads the segment, master context and read-modify-write lock
 * through the handle, without a lock: they are written once before
 * `unlocked` is release-stored. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/luks2.h"
#include "nbdcrypt/reencrypt.h"
#include "nbdcrypt/volume.h"

#include "nbdcrypt.h"

/* ---- the table of exports ---------------------------------------------- */

static pthread_mutex_t exports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nbdcrypt_export *exports; /* under exports_lock */
static size_t exports_count;            /* under exports_lock */

struct nbdcrypt_export *nbdcrypt_export_get(const char *name)
{
  pthread_mutex_lock(&exports_lock);
  struct nbdcrypt_export *x;
  for (x = exports; x; x = x->next_export)
    if (strcmp(x->name, name) == 0)
      goto out;
  if (exports_count >= NBDCRYPT_MAX_EXPORTS) {
    nbdkit_error("nbdcrypt: export '%s': refused: this server already serves %d exports, "
                 "the most it keeps",
                 name, NBDCRYPT_MAX_EXPORTS);
    goto out;
  }
  x = calloc(1, sizeof *x);
  if (!x || !(x->name = strdup(name))) {
    nbdkit_error("nbdcrypt: export '%s': %m", name);
    free(x);
    x = NULL;
    goto out;
  }
  pthread_mutex_init(&x->lock, NULL);
  pthread_rwlock_init(&x->own_rmw_lock, NULL);
  x->next_export = exports;
  exports = x;
  exports_count++;
out:
  pthread_mutex_unlock(&exports_lock);
  return x;
}

static double seconds_since(const struct timespec *then)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - then->tv_sec) + (double)(now.tv_nsec - then->tv_nsec) / 1e9;
}

/* Give x (just unlocked) the read-modify-write lock of an export of the
 * same disk, or its own.  Another export's rmw_lock is only set, after its
 * segment, under exports_lock. */
static void share_rmw_lock(struct nbdcrypt_export *x)
{
  const char *uuid = x->segment.uuid;
  pthread_mutex_lock(&exports_lock);
  x->rmw_lock = &x->own_rmw_lock;
  for (const struct nbdcrypt_export *y = exports; y; y = y->next_export) {
    if (y != x && y->rmw_lock && strcmp(y->segment.uuid, uuid) == 0) {
      x->rmw_lock = y->rmw_lock;
      nbdkit_debug("nbdcrypt: export '%s' is disk %s, as export '%s': one lock for both", x->name,
                   uuid, y->name);
      break;
    }
  }
  pthread_mutex_unlock(&exports_lock);
}

/* One unlock attempt of x, under x->lock. */
static int export_attempt(struct nbdcrypt_export *x, nbdkit_next *next, bool readonly)
{
  struct nbdc_error e = {0};
  struct xts_ctx *xts = NULL;
  struct nbdcrypt_segment segment;
  int r;
  if (nbdcrypt_online_wanted()) {
    r = nbdcrypt_online_start(x, readonly, false, &e);
  } else {
    r = nbdcrypt_volume_unlock(next, &xts, &segment, &e);
    /* A disk left half way by a recrypt (online or offline): resume it. */
    if (r == -EBUSY && strstr(e.msg, REENC_REQUIREMENT)) {
      if (nbdcrypt_online_resume_allowed()) {
        nbdc_error_clear(&e);
        r = nbdcrypt_online_start(x, readonly, true, &e);
      } else {
        nbdc_error_prefix(&e, "nbdcrypt-reencrypt=no");
      }
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &x->last_end);
  if (r < 0) {
    x->attempted = true;
    snprintf(x->last_error, sizeof x->last_error, "%s", e.msg);
    nbdkit_error("nbdcrypt: export '%s': cannot unlock: %s", x->name, e.msg);
    return -1;
  }
  if (!x->online) {
    x->segment = segment;
    x->master_xts = xts;
  }
  share_rmw_lock(x);
  nbdkit_debug("nbdcrypt: unlocked disk %s for export '%s': data offset %" PRIu64
               ", sector size %" PRIu32,
               segment.uuid, x->name, segment.offset, segment.sector_size);
  atomic_store_explicit(&x->unlocked, true, memory_order_release);
  return 0;
}

int nbdcrypt_export_unlock(struct nbdcrypt_export *x, nbdkit_next *next, bool readonly)
{
  if (atomic_load_explicit(&x->unlocked, memory_order_acquire))
    return 0;

  pthread_mutex_lock(&x->lock);
  int r = 0;
  if (atomic_load_explicit(&x->unlocked, memory_order_relaxed))
    goto out;
  if (x->attempted && seconds_since(&x->last_end) < NBDCRYPT_RETRY_SECONDS) {
    nbdkit_error("nbdcrypt: export '%s': cannot unlock: %s (retrying at most every %d s)", x->name,
                 x->last_error, NBDCRYPT_RETRY_SECONDS);
    r = -1;
    goto out;
  }
  /* The image lock (lock.c) is taken before the first unlock and kept; a
   * refusal (a CLI operation holds the image) costs no KMS round trip, so it
   * is asked again on every connection until granted. */
  if (!x->image_locked) {
    if (nbdcrypt_lock_export(x->name, readonly) == -1) {
      nbdkit_error("nbdcrypt: export '%s': refused: cannot lock its image", x->name);
      r = -1;
      goto out;
    }
    x->image_locked = true;
  }
  r = export_attempt(x, next, readonly);
out:
  pthread_mutex_unlock(&x->lock);
  return r;
}

int64_t nbdcrypt_export_size(const struct nbdcrypt_export *x, int64_t plugin_size)
{
  if (plugin_size < 0)
    return -1;
  /* The library's check, so that `nbdcrypt check` and `nbdcrypt info` give
   * the same reason for a disk this refuses. */
  const struct nbdcrypt_segment *seg = &x->segment;
  const struct luks2_segment ls = {
      .offset = seg->offset,
      .size = seg->size,
      .dynamic = seg->dynamic,
      .sector_size = seg->sector_size,
  };
  struct nbdc_error e = {0};
  uint64_t size;
  if (volume_segment_data_size(&ls, seg->uuid, (uint64_t)plugin_size, &size, &e) < 0) {
    nbdkit_error("nbdcrypt: export '%s': %s", x->name, e.msg);
    return -1;
  }
  if (size > INT64_MAX) {
    nbdkit_error("nbdcrypt: export '%s': data size %" PRIu64 " too large", x->name, size);
    return -1;
  }
  return (int64_t)size;
}

void nbdcrypt_exports_stop_online(void)
{
  pthread_mutex_lock(&exports_lock);
  for (struct nbdcrypt_export *x = exports; x; x = x->next_export)
    nbdcrypt_online_stop(x);
  pthread_mutex_unlock(&exports_lock);
}

/* ---- per-thread state ---------------------------------------------------- */

static pthread_key_t thread_key;
static bool thread_key_created;
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nbdcrypt_thread *threads; /* every live state, for .unload */

static void thread_state_free(struct nbdcrypt_thread *t)
{
  xts_free(t->xts);
  xts_free(t->xts_new);
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

static struct nbdcrypt_thread *thread_state_new(int *err)
{
  struct nbdcrypt_thread *t = calloc(1, sizeof *t);
  if (!t) {
    *err = ENOMEM;
    nbdkit_error("nbdcrypt: calloc: %m");
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
  return t;
}

/* Give t a cipher context of export x.  nbdkit's worker threads belong to
 * one connection, hence to one export, so this runs once per thread; the
 * check keeps a context of one export from ever encrypting for another. */
static int thread_state_rekey(struct nbdcrypt_thread *t, const struct nbdcrypt_export *x, int *err)
{
  xts_free(t->xts);
  xts_free(t->xts_new);
  t->xts = t->xts_new = NULL;
  t->export = NULL;
  struct nbdc_error e = {0};
  if (xts_dup(x->master_xts, &t->xts, &e) < 0 ||
      (x->new_master && xts_dup(x->new_master, &t->xts_new, &e) < 0)) {
    *err = e.code ? e.code : ENOMEM;
    nbdkit_error("nbdcrypt: export '%s': cannot create a cipher context for this thread: %s",
                 x->name, e.msg);
    return -1;
  }
  t->export = x;
  return 0;
}

struct nbdcrypt_thread *nbdcrypt_thread_get(const struct nbdcrypt_export *x, size_t len, int *err)
{
  struct nbdcrypt_thread *t = pthread_getspecific(thread_key);
  if (!t && !(t = thread_state_new(err)))
    return NULL;
  if (t->export != x && thread_state_rekey(t, x, err) == -1)
    return NULL;
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

/* ---- load and unload ------------------------------------------------------ */

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
  thread_key_created = false;
  pthread_mutex_lock(&threads_lock);
  while (threads) {
    struct nbdcrypt_thread *t = threads;
    threads = t->next;
    thread_state_free(t);
  }
  pthread_mutex_unlock(&threads_lock);

  pthread_mutex_lock(&exports_lock);
  while (exports) {
    struct nbdcrypt_export *x = exports;
    exports = x->next_export;
    nbdcrypt_online_stop(x);
    xts_free(x->master_xts); /* wipes the key and the schedules */
    xts_free(x->new_master);
    pthread_mutex_destroy(&x->lock);
    pthread_rwlock_destroy(&x->own_rmw_lock);
    free(x->name);
    free(x);
  }
  exports_count = 0;
  pthread_mutex_unlock(&exports_lock);
}
