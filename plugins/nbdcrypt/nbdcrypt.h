/* nbdkit-nbdcrypt-filter: state shared between the filter's files.
 * nbdcrypt.c holds the callbacks and the data path, unlock.c the key
 * options and the opening of a volume through the plugin, export.c the
 * table of exports (one volume each) and the per-thread cipher state,
 * lock.c the image locks. */
#ifndef NBDCRYPT_FILTER_H
#define NBDCRYPT_FILTER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"

struct volume;
struct nbdcrypt_online;
struct rangelock_hold;
struct keys_config;

/* Largest plugin request the filter issues for one client write: a write
 * bigger than this is encrypted and written in chunks of this size (a
 * multiple of every sector size), which caps the per-thread buffer. */
#define NBDCRYPT_CHUNK (256u * 1024)

/* A failed unlock of an export is tried again at most once per this many
 * seconds, counted from the end of the last attempt (DESIGN.md section 6). */
#define NBDCRYPT_RETRY_SECONDS 5

/* The most exports one server keeps a volume for (a plugin that takes any
 * export name must not let clients grow the table without bound). */
#define NBDCRYPT_MAX_EXPORTS 1024

/* The unlocked data segment, fixed once the volume is open. */
struct nbdcrypt_segment {
  uint64_t offset;      /* bytes from the start of the plugin's disk */
  uint64_t iv_tweak;    /* 512-byte units added to every sector's IV */
  uint32_t sector_size; /* encryption sector, 512..4096 */
  bool dynamic;         /* the segment ends where the plugin's disk does */
  uint64_t size;        /* bytes, when not dynamic */
  char uuid[48];        /* the disk's LUKS2 uuid (40 bytes in the header) */
};

/* ---- unlock.c --------------------------------------------------------- */

/* .config for the filter's own keys; 1 if handled, 0 if not ours, -1 error. */
int nbdcrypt_config_key(const char *key, const char *value);
/* Load the key configuration (called from .config_complete); -1 on error. */
int nbdcrypt_config_finish(void);
bool nbdcrypt_discard(void);
/* nbdcrypt-header: the detached header file (absolute), or NULL. */
const char *nbdcrypt_header_path(void);
/* For the online recrypt: the key configuration (may be NULL) and the
 * passphrase or key file given to the filter (false when none). */
const struct keys_config *nbdcrypt_keys_config(void);
/* volume_open on dev with the filter's keys (the online recrypt's start). */
struct bdev;
int nbdcrypt_volume_open(struct bdev *dev, struct volume **out, struct nbdc_error *e);
bool nbdcrypt_secret(const uint8_t **data, size_t *len);
/* .after_fork: move the secret into pages locked by this process. */
void nbdcrypt_after_fork_relock(void);
/* .unload: wipe the secret, free the key configuration. */
void nbdcrypt_options_free(void);

/* Open the volume on the plugin behind next (prepared, get_size not yet
 * called) with the configured keys: a master cipher context for its data
 * segment and the segment.  The volume itself (and its copy of the volume
 * key) is closed before this returns: the cipher contexts, whose key and
 * schedules are in secure memory, are all the data path needs.  0, or a
 * negative errno with e set. */
int nbdcrypt_volume_unlock(nbdkit_next *next, struct xts_ctx **master_xts,
                           struct nbdcrypt_segment *segment, struct nbdc_error *e);

/* ---- export.c --------------------------------------------------------- */

/* One export (by the name nbdkit gives .open, "" for the default export):
 * its volume, unlocked on the first connection, kept until .unload.  A
 * connection's handle is its export.  The fields above `unlocked` are
 * written once, before unlocked is release-stored, and never again: the
 * data path reads them without a lock. */
struct nbdcrypt_export {
  struct nbdcrypt_segment segment;
  struct xts_ctx *master_xts; /* cloned per thread with xts_dup */
  /* During and after an online recrypt (online.c): the new key's context
   * (NULL otherwise) and the recrypt's state; logical bytes below the
   * boundary it gives are under the new key. */
  struct xts_ctx *new_master;
  struct nbdcrypt_online *online;
  /* Shared by aligned requests, exclusive for a read-modify-write: one per
   * disk (by LUKS2 uuid), so that two export names of one image (a plugin
   * that ignores the name) exclude each other, while other disks never
   * wait for it.  Points at own_rmw_lock or at another export's. */
  pthread_rwlock_t *rmw_lock;
  atomic_bool unlocked;
  char *name;
  pthread_mutex_t lock;            /* the unlock and the fields below */
  bool image_locked;               /* nbdcrypt_lock_export succeeded */
  bool attempted;                  /* an unlock was tried and failed */
  struct timespec last_end;        /* when that attempt ended */
  char last_error[NBDC_ERROR_MAX]; /* and what it said */
  pthread_rwlock_t own_rmw_lock;
  struct nbdcrypt_export *next_export; /* the table, under its own lock */
};

/* The export named name, created (not yet unlocked) on first use; never
 * freed before .unload.  No I/O (.open).  NULL after nbdkit_error. */
struct nbdcrypt_export *nbdcrypt_export_get(const char *name);
/* Unlock x through next (.prepare) unless it is unlocked already.  A failed
 * attempt is repeated at most once per NBDCRYPT_RETRY_SECONDS; in between
 * its error is repeated.  0, or -1 after nbdkit_error naming the export. */
int nbdcrypt_export_unlock(struct nbdcrypt_export *x, nbdkit_next *next, bool readonly);
/* Bytes export x (unlocked) has on a plugin disk of plugin_size bytes; -1
 * after nbdkit_error. */
int64_t nbdcrypt_export_size(const struct nbdcrypt_export *x, int64_t plugin_size);

/* This thread's cipher context for export x and a buffer of at least len
 * bytes (len <= NBDCRYPT_CHUNK), created on first use, made again when the
 * thread last served another export, freed when the thread exits.  NULL
 * with *err set after nbdkit_error. */
struct nbdcrypt_thread {
  const struct nbdcrypt_export *export; /* whose key xts holds */
  struct xts_ctx *xts;
  struct xts_ctx *xts_new; /* of export->new_master, when it has one */
  uint8_t *buf;
  size_t buf_size;
  struct nbdcrypt_thread *prev, *next; /* all live thread states */
};
struct nbdcrypt_thread *nbdcrypt_thread_get(const struct nbdcrypt_export *x, size_t len, int *err);

int nbdcrypt_state_init(void);  /* .load */
void nbdcrypt_state_free(void); /* .unload: every export's DEK and every context */

/* ---- lock.c: one writer per disk (docs/decisions.md) --------------------
 * The filter takes, on the image files under the plugin, the same locks as
 * the nbdcrypt CLI (and qemu): a CLI operation that rewrites the disk and
 * the server exclude each other. */

/* Watch the plugin's keys (file=, dir=) and take nbdcrypt-lock=; never
 * consumes a plugin key.  1 if the key was ours, 0 if not, -1 on error. */
int nbdcrypt_lock_config_key(const char *key, const char *value);
/* .get_ready: lock every image named by file=.  -1 after nbdkit_error
 * (naming the image and who holds it). */
int nbdcrypt_lock_ready(void);
/* Before the first unlock of an export: with dir=, lock DIR/EXPORTNAME
 * (kept until .unload).  0 (also when there is nothing to lock), or -1 after
 * nbdkit_error. */
int nbdcrypt_lock_export(const char *exportname, bool readonly);
/* .unload: release every lock. */
void nbdcrypt_lock_free(void);

/* ---- online.c: online re-encryption ----------------------------------- */

/* nbdcrypt-reencrypt=recrypt|resume|no and nbdcrypt-reencrypt-hotzone=SIZE;
 * 1 if handled, 0 if not ours, -1 error. */
int nbdcrypt_online_config_key(const char *key, const char *value);
bool nbdcrypt_online_wanted(void);                         /* nbdcrypt-reencrypt=recrypt */
bool nbdcrypt_online_resume_allowed(void);                 /* not nbdcrypt-reencrypt=no */
void nbdcrypt_online_set_backend(nbdkit_backend *backend); /* .after_fork */
/* .get_ready: the server's thread model (the plugin's and every filter's
 * tightest); under NBDKIT_THREAD_MODEL_PARALLEL the engine's workers read
 * through its plugin context while it writes. */
void nbdcrypt_online_set_thread_model(int thread_model);
/* Start (resume: only resume) the recrypt of export x in its own thread and
 * wait until it serves: x's segment, master_xts, new_master and online are
 * set.  0, or -errno with e set (nothing started). */
int nbdcrypt_online_start(struct nbdcrypt_export *x, bool readonly, bool resume,
                          struct nbdc_error *e);
/* .cleanup: stop the recrypt at a resumable point, close its context. */
void nbdcrypt_online_stop(struct nbdcrypt_export *x);
/* Data path: hold logical [offset, offset+len) against the hotzone (write:
 * the request changes the disk) and get the boundary (bytes below it under
 * the new key; 0 without a recrypt); -1 with *err = EIO when the range is a
 * hotzone left half way by an error.  Every successful enter is matched by
 * one leave. */
int nbdcrypt_online_enter(const struct nbdcrypt_export *x, struct rangelock_hold *h,
                          uint64_t offset, uint64_t len, bool write, uint64_t *boundary, int *err);
void nbdcrypt_online_leave(const struct nbdcrypt_export *x, struct rangelock_hold *h);
/* .cleanup: every export's recrypt (export.c). */
void nbdcrypt_exports_stop_online(void);

#endif
