/* nbdkit-nbdcrypt-filter: online re-encryption (docs/reencrypt.md, "Online").
 *
 * nbdcrypt-reencrypt=recrypt (or resume, the default, for a disk left half
 * way by an online or offline recrypt) runs the engine (reenc_run with hooks) in a
 * thread of its own while the export serves.  The engine reads and writes
 * the raw disk through a shared plugin context of its own, opened with the
 * export's name on the export's first connection and closed at .cleanup.
 *
 * Routing: logical [0, boundary) is under the new key, the rest under the
 * old one (the progress record's segments).  A range lock
 * (src/util/rangelock.c) orders client requests and the engine: a client
 * request holds its range READ or WRITE and reads the boundary inside the
 * hold.  The engine holds a hotzone ZONE from before it reads the zone's
 * old blocks until their new form is written: client writes there wait
 * (the engine would overwrite them with what it read), client reads go on
 * with the old key.  The engine writes the new form a piece (REENC_PIECE)
 * at a time, each held EXCL, and moves the boundary past the piece before
 * it lets go of it: a read never sees a piece half way, and the boundary
 * inside a client's hold never moves.  A hotzone a crash left half way
 * (old and new blocks mixed) is held EXCL until it is recovered.  Client
 * writes are therefore under the key the header's record gives their block
 * at every crash point: [0, done) new, the hotzone in progress is written
 * new by the engine before any client writes it (recovery keeps blocks
 * that do not match their old head16 entry), the rest old.
 *
 * Client I/O keeps priority: before it takes a hotzone the engine waits
 * while client requests are in flight or ended less than YIELD_IDLE_MS ago,
 * in YIELD_STEP_MS sleeps, at most YIELD_SHARE_PCT of the time the previous
 * hotzone took and at most YIELD_MAX_MS: under a continuous client load the
 * recrypt still gets about 87 % of its time, and an idle disk is recrypted
 * at full speed.
 *
 * Under NBDKIT_THREAD_MODEL_PARALLEL the engine's workers read the next zone
 * through the engine's context (a second reader) while the engine writes;
 * under serialize_requests its requests go one at a time; a server that
 * allows no two busy handles (serialize_all_requests, serialize_connections)
 * refuses the online recrypt. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/rangelock.h"
#include "nbdcrypt/luks2.h"
#include "nbdcrypt/reencrypt.h"
#include "nbdcrypt/volume.h"

#include "nbdcrypt.h"

#define YIELD_IDLE_MS 2
#define YIELD_STEP_MS 2
#define YIELD_MAX_MS  1000
/* at most this share of the zone's own time is yielded (bench/REPORT-online.md,
 * 4 GiB, two workers reading through the context: 25 % kept clients at
 * 0.62-0.64 but the recrypt took 2.0-2.6x offline under load, 10 % let fio
 * fall to 0.44-0.50, 15 % kept clients at 0.56-0.62 and the recrypt at 1.6-2.04x) */
#define YIELD_SHARE_PCT 15u
#define IO_SPLIT        (4u * 1024 * 1024)
#define NZONES          2

struct nbdcrypt_online {
  struct nbdcrypt_export *x;
  struct rangelock rl;
  atomic_uint_fast64_t boundary; /* logical bytes under the new key */
  /* zones a failed run left half way (old and new blocks mixed) */
  atomic_uint_fast64_t poison_off[NZONES], poison_len[NZONES];
  atomic_int_fast64_t last_client_ns; /* end of the last client request */
  nbdkit_next *ctx;                   /* the engine's plugin context */
  bool can_cache;                     /* ctx has a native cache (read-ahead) */
  struct bdev *dev;
  pthread_t thread;
  bool thread_started;
  volatile sig_atomic_t stop;
  bool resume_only;
  struct volume *old_volume; /* a new recrypt: the disk unlocked with the filter's keys */
  /* the start handshake with the connection that unlocks */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state; /* 0 starting, 1 ready (serving), -1 failed before ready */
  struct nbdc_error err;
  /* engine thread only */
  struct rangelock_hold zone[NZONES];
  bool zone_held[NZONES];
  struct rangelock_hold piece; /* the piece of a zone being written (EXCL) */
  uint64_t zone_start_ns[NZONES];
  uint64_t hz_ns;    /* how long the last zone held its range */
  uint64_t yield_ns; /* total time waited for clients */
  uint64_t hotzones;
  int last_decile;
  uint64_t start_done;
  uint64_t t0_ns;
};

static enum { REENC_AUTO, REENC_ON, REENC_NO } reencrypt_mode = REENC_AUTO;
static uint64_t online_hotzone = 16u * 1024 * 1024;
static nbdkit_backend *the_backend;
static int the_thread_model = NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS;
/* NBDCRYPT_TEST_HOTZONE_DELAY_MS (tests only, as the CLI's): a pause after
 * each zone, so that a test can act while the recrypt is half way. */
static long test_delay_ms;

int nbdcrypt_online_config_key(const char *key, const char *value)
{
  if (strcmp(key, "nbdcrypt-reencrypt") == 0) {
    if (strcmp(value, "recrypt") == 0)
      reencrypt_mode = REENC_ON;
    else if (strcmp(value, "resume") == 0)
      reencrypt_mode = REENC_AUTO;
    else if (strcmp(value, "no") == 0)
      reencrypt_mode = REENC_NO;
    else if (strcmp(value, "encrypt") == 0 || strcmp(value, "decrypt") == 0) {
      nbdkit_error("nbdcrypt-reencrypt=%s: not supported online: %s moves the data the client "
                   "sees (or keeps the header in another file); run nbdcrypt %s offline",
                   value, value, value);
      return -1;
    } else {
      nbdkit_error("nbdcrypt-reencrypt: '%s' is not one of recrypt, resume, no", value);
      return -1;
    }
    return 1;
  }
  if (strcmp(key, "nbdcrypt-reencrypt-hotzone") == 0) {
    int64_t n = nbdkit_parse_size(value);
    if (n == -1)
      return -1;
    if (n % 4096 || n < 16 * 1024 * 1024 || n > 256 * 1024 * 1024) {
      nbdkit_error("nbdcrypt-reencrypt-hotzone: %s must be a multiple of 4096 between 16M "
                   "and 256M",
                   value);
      return -1;
    }
    online_hotzone = (uint64_t)n;
    return 1;
  }
  return 0;
}

bool nbdcrypt_online_wanted(void)
{
  return reencrypt_mode == REENC_ON;
}

bool nbdcrypt_online_resume_allowed(void)
{
  return reencrypt_mode != REENC_NO;
}

void nbdcrypt_online_set_backend(nbdkit_backend *backend)
{
  the_backend = backend;
  const char *d = getenv("NBDCRYPT_TEST_HOTZONE_DELAY_MS");
  if (d && *d) {
    long ms = strtol(d, NULL, 10);
    test_delay_ms = ms > 0 && ms <= 10000 ? ms : 0;
  }
}

void nbdcrypt_online_set_thread_model(int thread_model)
{
  the_thread_model = thread_model;
}

/* the workers read through the engine's context while it writes */
static bool server_parallel(void)
{
  return the_thread_model == NBDKIT_THREAD_MODEL_PARALLEL;
}

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- the raw disk through the engine's own context ------------------------ */

static int ctx_pread(void *opaque, void *buf, size_t count, uint64_t offset, struct nbdc_error *err)
{
  /* bdev_pread/bdev_pwrite split requests at IO_SPLIT (bdev_set_max_request) */
  struct nbdcrypt_online *o = opaque;
  int e = 0;
  if (o->ctx->pread(o->ctx, buf, (uint32_t)count, offset, 0, &e) == -1)
    return nbdc_error_set(err, e ? e : EIO,
                          "plugin read of %zu bytes at offset %" PRIu64 " failed: %s", count,
                          offset, strerror(e ? e : EIO));
  return 0;
}

static int ctx_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                      struct nbdc_error *err)
{
  /* bdev_pread/bdev_pwrite split requests at IO_SPLIT (bdev_set_max_request) */
  struct nbdcrypt_online *o = opaque;
  int e = 0;
  if (o->ctx->pwrite(o->ctx, buf, (uint32_t)count, offset, 0, &e) == -1)
    return nbdc_error_set(err, e ? e : EIO,
                          "plugin write of %zu bytes at offset %" PRIu64 " failed: %s", count,
                          offset, strerror(e ? e : EIO));
  return 0;
}

static int ctx_flush(void *opaque, struct nbdc_error *err)
{
  struct nbdcrypt_online *o = opaque;
  int e = 0;
  if (o->ctx->flush(o->ctx, 0, &e) == -1)
    return nbdc_error_set(err, e ? e : EIO, "plugin flush failed: %s", strerror(e ? e : EIO));
  return 0;
}

static int ctx_get_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  struct nbdcrypt_online *o = opaque;
  int64_t r = o->ctx->get_size(o->ctx);
  if (r < 0)
    return nbdc_error_set(err, EIO, "cannot get the size of the plugin's disk");
  *size = (uint64_t)r;
  return 0;
}

/* Advisory read-ahead through the plugin's cache (the file plugin's is
 * posix_fadvise WILLNEED); nothing where the plugin has no native cache. */
static void ctx_readahead(void *opaque, uint64_t offset, uint64_t len)
{
  struct nbdcrypt_online *o = opaque;
  if (!o->can_cache)
    return;
  for (uint64_t done = 0; done < len;) {
    uint32_t n = (uint32_t)(len - done < IO_SPLIT ? len - done : IO_SPLIT);
    int e = 0;
    if (o->ctx->cache(o->ctx, n, offset + done, 0, &e) == -1)
      return;
    done += n;
  }
}

/* read-ahead hints go to the engine's own device (the pipeline's hint_dev) */
static const struct bdev_ops ctx_reader_ops = {.pread = ctx_pread, .get_size = ctx_get_size};

/* Under NBDKIT_THREAD_MODEL_PARALLEL the plugin takes concurrent requests on
 * one context: the engine's workers read through the engine's context while
 * the engine writes (nbdkit serializes only the requests of connections, not
 * a filter's own context).  The reader borrows the context: o owns it. */
static int ctx_open_reader(void *opaque, struct bdev **out, struct nbdc_error *err)
{
  struct bdev *dev;
  int r = bdev_from_ops(&ctx_reader_ops, opaque, "plugin disk (reader)", true, &dev, err);
  if (r < 0)
    return r;
  bdev_set_max_request(dev, IO_SPLIT);
  *out = dev;
  return 0;
}

static const struct bdev_ops ctx_ops = {
    .pread = ctx_pread, .pwrite = ctx_pwrite, .flush = ctx_flush, .get_size = ctx_get_size};
static const struct bdev_ops ctx_parallel_ops = {.pread = ctx_pread,
                                                 .pwrite = ctx_pwrite,
                                                 .flush = ctx_flush,
                                                 .get_size = ctx_get_size,
                                                 .open_reader = ctx_open_reader,
                                                 .readahead = ctx_readahead};

/* ---- the engine's hooks (engine thread) ------------------------------------ */

static void logf_export(const struct nbdcrypt_online *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_export(const struct nbdcrypt_online *o, const char *fmt, ...)
{
  char msg[NBDC_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* nbdkit has no info level: errors always reach the log (as warnings) */
  nbdkit_error("nbdcrypt: export '%s': %s", o->x->name, msg);
}

/* Hold [offset, offset+len) for the engine (at most two zones at a time: the
 * engine reads zone k+1 while it writes zone k). */
static int zone_hold(struct nbdcrypt_online *o, uint64_t offset, uint64_t len,
                     enum rangelock_mode mode)
{
  for (int i = 0; i < NZONES; i++)
    if (o->zone_held[i] && o->zone[i].offset == offset && o->zone[i].len == len)
      return 0; /* held already (the hotzone of a resume, from started) */
  for (int i = 0; i < NZONES; i++) {
    if (!o->zone_held[i]) {
      rangelock_lock(&o->rl, &o->zone[i], offset, len, mode);
      o->zone_held[i] = true;
      o->zone_start_ns[i] = now_ns();
      return 0;
    }
  }
  return -EDEADLK;
}

static void zone_release(struct nbdcrypt_online *o, uint64_t offset, bool poison)
{
  for (int i = 0; i < NZONES; i++) {
    if (o->zone_held[i] && o->zone[i].offset == offset) {
      if (poison) {
        atomic_store(&o->poison_off[i], o->zone[i].offset);
        atomic_store(&o->poison_len[i], o->zone[i].len);
      }
      o->hz_ns = now_ns() - o->zone_start_ns[i];
      rangelock_unlock(&o->rl, &o->zone[i]);
      o->zone_held[i] = false;
    }
  }
}

static int hook_started(void *opaque, const struct reenc_info *info)
{
  struct nbdcrypt_online *o = opaque;
  struct nbdcrypt_export *x = o->x;
  const struct reenc_state *st = &info->state;
  struct nbdc_error e = {0};
  if (st->mode != REENC_RECRYPT || st->old_offset != st->new_offset || !info->old_xts ||
      !info->new_xts) {
    nbdc_error_set(&e, ENOTSUP, "only an in-place recrypt runs online");
    goto fail;
  }
  struct xts_ctx *old_xts = NULL, *new_xts = NULL;
  if (xts_dup(info->old_xts, &old_xts, &e) < 0 || xts_dup(info->new_xts, &new_xts, &e) < 0) {
    xts_free(old_xts);
    goto fail;
  }
  /* A hotzone that a crash left half way is recovered first: no client may
   * touch it before (the engine's zone_begin for it finds it held). */
  if (st->hotzone_size)
    zone_hold(o, st->hotzone_offset, st->hotzone_size, RANGELOCK_EXCL);
  pthread_mutex_lock(&o->mu);
  x->segment.offset = st->old_offset;
  x->segment.iv_tweak = st->iv_tweak;
  x->segment.sector_size = st->sector_size;
  x->segment.dynamic = st->size_dynamic;
  x->segment.size = st->data_size;
  snprintf(x->segment.uuid, sizeof x->segment.uuid, "%s", luks2_uuid(info->hdr));
  x->master_xts = old_xts;
  x->new_master = new_xts;
  atomic_store(&o->boundary, st->done);
  o->start_done = st->done;
  o->state = 1;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  o->t0_ns = now_ns();
  logf_export(o,
              "recrypt of disk %s %s at %" PRIu64 "%% (%" PRIu64 " of %" PRIu64 " bytes done; %s)",
              x->segment.uuid, st->done || st->hotzone_size ? "resumed" : "started",
              st->data_size ? st->done * 100 / st->data_size : 100, st->done, st->data_size,
              server_parallel() ? "it reads ahead while it writes (parallel plugin)"
                                : "one plugin request at a time (serialize_requests plugin)");
  return 0;
fail:
  pthread_mutex_lock(&o->mu);
  o->err = e;
  pthread_mutex_unlock(&o->mu);
  return -(e.code ? e.code : EIO);
}

static int hook_begin(void *opaque, uint64_t offset, uint64_t len)
{
  struct nbdcrypt_online *o = opaque;
  return zone_hold(o, offset, len, RANGELOCK_ZONE);
}

static int hook_write_begin(void *opaque, uint64_t offset, uint64_t len)
{
  struct nbdcrypt_online *o = opaque;
  rangelock_lock(&o->rl, &o->piece, offset, len, RANGELOCK_EXCL);
  return 0;
}

/* The piece is in its new form: readers of it use the new key from now on
 * (set before the piece is let go, so no reader holds it meanwhile).  A
 * failed piece leaves its zone mixed: the zone stays held until the engine
 * ends, which poisons it. */
static void hook_write_done(void *opaque, uint64_t offset, uint64_t len, bool ok)
{
  struct nbdcrypt_online *o = opaque;
  if (ok)
    atomic_store(&o->boundary, offset + len);
  rangelock_unlock(&o->rl, &o->piece);
}

static void hook_done(void *opaque, uint64_t offset, uint64_t len, uint64_t done)
{
  struct nbdcrypt_online *o = opaque;
  (void)len;
  atomic_store(&o->boundary, done);
  zone_release(o, offset, false);
  o->hotzones++;
  /* Yield to clients (with this zone released; the next one, which the
   * engine reads meanwhile, stays held): while client requests are in
   * flight or ended less than YIELD_IDLE_MS ago, at most YIELD_SHARE_PCT
   * of the time the zone took. */
  uint64_t cap =
      o->hz_ns < (uint64_t)YIELD_MAX_MS * 1000000u ? o->hz_ns : (uint64_t)YIELD_MAX_MS * 1000000u;
  cap = cap * YIELD_SHARE_PCT / 100;
  uint64_t t0 = now_ns(), waited = 0;
  while (waited < cap && !o->stop) {
    uint64_t now = now_ns(), last = (uint64_t)atomic_load(&o->last_client_ns);
    bool busy = rangelock_shared_count(&o->rl) > 0 ||
                (last <= now && now - last < (uint64_t)YIELD_IDLE_MS * 1000000u);
    if (!busy)
      break;
    sleep_ms(YIELD_STEP_MS);
    waited = now_ns() - t0;
  }
  o->yield_ns += waited;
  if (test_delay_ms > 0 && !o->stop)
    sleep_ms(test_delay_ms);
}

static void progress(void *opaque, uint64_t done, uint64_t total)
{
  struct nbdcrypt_online *o = opaque;
  if (total == 0 || o->state != 1)
    return;
  int decile = (int)(done * 10 / total);
  if (decile <= o->last_decile || decile >= 10)
    return;
  o->last_decile = decile;
  double secs = (double)(now_ns() - o->t0_ns) / 1e9;
  logf_export(o, "recrypt %d%% done (%.1f MiB/s, %.1f s yielded to clients)", decile * 10,
              secs > 0 ? (double)(done - o->start_done) / 1048576.0 / secs : 0.0,
              (double)o->yield_ns / 1e9);
}

static void *engine_main(void *p)
{
  struct nbdcrypt_online *o = p;
  struct reenc_passphrase pass;
  const struct reenc_hooks hooks = {
      .opaque = o,
      .started = hook_started,
      .zone_begin = hook_begin,
      .zone_done = hook_done,
      .write_begin = hook_write_begin,
      .write_done = hook_write_done,
  };
  struct reenc_opts opts = {
      .mode = REENC_RECRYPT,
      .cfg = nbdcrypt_keys_config(),
      .hotzone = online_hotzone,
      .resume_only = o->resume_only,
      .progress = progress,
      .progress_opaque = o,
      .stop = &o->stop,
      .old_volume = o->old_volume,
      .hooks = &hooks,
      /* two conversion threads: one reads while the other converts (with the
       * workers reading through the engine's context, bench/REPORT-online.md:
       * under client load two kept the recrypt near 2x offline, one at 2.3x) */
      .workers = 2,
  };
  if (nbdcrypt_secret(&pass.data, &pass.len)) {
    pass.name = "nbdcrypt-passphrase";
    opts.passphrases = &pass;
    opts.n_passphrases = 1;
  }
  struct nbdc_error e = {0};
  struct reenc_target t = {.data = o->dev,
                           .name = o->x->segment.uuid[0] ? o->x->segment.uuid : NULL};
  int r = reenc_run(&t, &opts, &e);
  /* zones begun and not done are mixed: refused to clients until a resume */
  for (int i = 0; i < NZONES; i++)
    if (o->zone_held[i])
      zone_release(o, o->zone[i].offset, true);
  volume_close(o->old_volume);
  o->old_volume = NULL;
  /* The plugin context was the engine's alone: give it back now (a shared
   * context, not tied to a connection or thread). */
  bdev_close(o->dev);
  o->dev = NULL;
  o->ctx->finalize(o->ctx);
  nbdkit_next_context_close(o->ctx);
  o->ctx = NULL;
  pthread_mutex_lock(&o->mu);
  bool served = o->state == 1;
  if (!served) {
    if (!o->err.code)
      o->err = e;
    o->state = -1;
    pthread_cond_broadcast(&o->cv);
  }
  pthread_mutex_unlock(&o->mu);
  if (!served)
    return NULL;
  double secs = (double)(now_ns() - o->t0_ns) / 1e9;
  if (r == 0)
    logf_export(o,
                "recrypt of disk %s finished: 100%% in %.1f s, %" PRIu64
                " hotzones, %.1f s yielded to clients; the old key is gone",
                o->x->segment.uuid, secs, o->hotzones, (double)o->yield_ns / 1e9);
  else if (r == -EINTR)
    logf_export(o, "recrypt stopped at a resumable point (the next start resumes it)");
  else
    logf_export(o,
                "recrypt failed: %s; the disk is half way: restart the server to resume, or "
                "run nbdcrypt recrypt --resume offline",
                e.msg);
  return NULL;
}

/* ---- start, from the unlocking connection ------------------------------- */

static void online_free(struct nbdcrypt_online *o)
{
  if (!o)
    return;
  volume_close(o->old_volume);
  bdev_close(o->dev);
  if (o->ctx) {
    o->ctx->finalize(o->ctx);
    nbdkit_next_context_close(o->ctx);
  }
  rangelock_destroy(&o->rl);
  pthread_mutex_destroy(&o->mu);
  pthread_cond_destroy(&o->cv);
  free(o);
}

int nbdcrypt_online_start(struct nbdcrypt_export *x, bool readonly, bool resume,
                          struct nbdc_error *e)
{
  if (readonly)
    return nbdc_error_set(e, EROFS,
                          "a read-only server cannot %s a recrypt; serve it read-write, or "
                          "finish it offline with nbdcrypt recrypt --resume",
                          resume ? "resume" : "run");
  if (!the_backend)
    return nbdc_error_set(e, EIO, "internal error: no backend for the recrypt's context");
  /* The engine's context is a handle of its own, used while clients use
   * theirs: a server whose thread model allows no two handles busy at once
   * (a plugin or filter with serialize_all_requests or
   * serialize_connections) cannot run it. */
  if (the_thread_model < NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS)
    return nbdc_error_set(e, ENOTSUP,
                          "cannot %s a recrypt online: the server's thread model is %s (a plugin "
                          "or filter of this server allows no two requests at once); %s",
                          resume ? "resume" : "run",
                          the_thread_model == NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS
                              ? "serialize_all_requests"
                              : "serialize_connections",
                          resume ? "finish it offline with nbdcrypt recrypt --resume"
                                 : "run nbdcrypt recrypt offline");
  struct nbdcrypt_online *o = calloc(1, sizeof *o);
  if (!o)
    return nbdc_error_set(e, ENOMEM, "out of memory");
  o->x = x;
  o->resume_only = resume;
  o->last_decile = 0;
  rangelock_init(&o->rl);
  pthread_mutex_init(&o->mu, NULL);
  pthread_cond_init(&o->cv, NULL);
  int r;
  o->ctx = nbdkit_next_context_open(the_backend, 0, x->name, 1);
  if (!o->ctx) {
    r = nbdc_error_set(e, EIO, "cannot open a plugin context for the recrypt");
    goto fail;
  }
  if (o->ctx->prepare(o->ctx) == -1 || o->ctx->get_size(o->ctx) < 0) {
    nbdkit_next_context_close(o->ctx);
    o->ctx = NULL;
    r = nbdc_error_set(e, EIO, "cannot prepare the plugin context for the recrypt");
    goto fail;
  }
  if (o->ctx->can_write(o->ctx) != 1) {
    r = nbdc_error_set(e, EROFS, "the plugin's disk is not writable: cannot recrypt it");
    goto fail;
  }
  o->ctx->can_flush(o->ctx);
  o->ctx->can_fua(o->ctx);
  o->can_cache = o->ctx->can_cache(o->ctx) == NBDKIT_CACHE_NATIVE;
  if ((r = bdev_from_ops(server_parallel() ? &ctx_parallel_ops : &ctx_ops, o, "plugin disk", false,
                         &o->dev, e)) < 0)
    goto fail;
  bdev_set_max_request(o->dev, IO_SPLIT);
  /* A new recrypt starts from the disk as the filter's keys unlock it; a
   * resume opens the keyslots its progress record names (tokens). */
  if (!resume) {
    r = nbdcrypt_volume_open(o->dev, &o->old_volume, e);
    if (r == -EBUSY && strstr(e->msg, REENC_REQUIREMENT)) {
      nbdc_error_clear(e);
      r = 0; /* half way already: the engine resumes it */
    }
    if (r < 0)
      goto fail;
  }
  /* the engine thread blocks the signals nbdkit handles */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = pthread_create(&o->thread, NULL, engine_main, o);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    r = nbdc_error_set(e, r, "cannot start the recrypt thread: %s", strerror(r));
    goto fail;
  }
  o->thread_started = true;
  pthread_mutex_lock(&o->mu);
  while (o->state == 0)
    pthread_cond_wait(&o->cv, &o->mu);
  int state = o->state;
  pthread_mutex_unlock(&o->mu);
  if (state < 0) {
    pthread_join(o->thread, NULL);
    o->thread_started = false;
    *e = o->err;
    r = -(e->code ? e->code : EIO);
    goto fail;
  }
  x->online = o;
  return 0;
fail:
  online_free(o);
  return r;
}

/* .cleanup: stop the engine at its next resumable point and close its
 * context (the plugin is still loaded here). */
void nbdcrypt_online_stop(struct nbdcrypt_export *x)
{
  struct nbdcrypt_online *o = x->online;
  if (!o)
    return;
  o->stop = 1;
  if (o->thread_started)
    pthread_join(o->thread, NULL);
  o->thread_started = false;
  x->online = NULL;
  /* no client is served any more: the data path no longer reads it */
  online_free(o);
}

/* ---- the data path ---------------------------------------------------------- */

int nbdcrypt_online_enter(const struct nbdcrypt_export *x, struct rangelock_hold *h,
                          uint64_t offset, uint64_t len, bool write, uint64_t *boundary, int *err)
{
  struct nbdcrypt_online *o = x->online;
  if (!o) {
    *boundary = x->new_master ? UINT64_MAX : 0;
    h->granted = false;
    return 0;
  }
  rangelock_lock(&o->rl, h, offset, len, write ? RANGELOCK_WRITE : RANGELOCK_READ);
  for (int i = 0; i < NZONES; i++) {
    uint64_t poff = atomic_load(&o->poison_off[i]), plen = atomic_load(&o->poison_len[i]);
    if (plen && offset < poff + plen && poff < offset + len) {
      rangelock_unlock(&o->rl, h);
      nbdkit_error("nbdcrypt: export '%s': request at %" PRIu64 " touches the hotzone the "
                   "recrypt left half way after an error; restart the server to resume it",
                   x->name, offset);
      *err = EIO;
      return -1;
    }
  }
  *boundary = atomic_load(&o->boundary);
  return 0;
}

void nbdcrypt_online_leave(const struct nbdcrypt_export *x, struct rangelock_hold *h)
{
  struct nbdcrypt_online *o = x->online;
  if (!o || !h->granted)
    return;
  rangelock_unlock(&o->rl, h);
  atomic_store(&o->last_client_ns, (int_fast64_t)now_ns());
}
