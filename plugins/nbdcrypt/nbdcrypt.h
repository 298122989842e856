/* nbdkit-nbdcrypt-filter: state shared between the filter's files.
 * nbdcrypt.c holds the callbacks and the data path, unlock.c the key
 * options, the per-export unlock and the per-thread cipher state, lock.c the
 * image locks. */
#ifndef NBDCRYPT_FILTER_H
#define NBDCRYPT_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "nbdcrypt/crypto.h"

/* Largest plugin request the filter issues for one client write: a write
 * bigger than this is encrypted and written in chunks of this size (a
 * multiple of every sector size), which caps the per-thread buffer. */
#define NBDCRYPT_CHUNK (256u * 1024)

/* The unlocked data segment, fixed once the volume is open. */
struct nbdcrypt_segment {
  uint64_t offset;      /* bytes from the start of the plugin's disk */
  uint64_t iv_tweak;    /* 512-byte units added to every sector's IV */
  uint32_t sector_size; /* encryption sector, 512..4096 */
};

/* ---- unlock.c --------------------------------------------------------- */

/* .config for the filter's own keys; 1 if handled, 0 if not ours, -1 error. */
int nbdcrypt_config_key(const char *key, const char *value);
/* Load the key configuration (called from .config_complete); -1 on error. */
int nbdcrypt_config_finish(void);
bool nbdcrypt_discard(void);

/* Unlock the volume through next (prepared, not yet used for I/O); once
 * unlocked this is a no-op.  rate_limited: refuse to retry within a few
 * seconds of a failed attempt and repeat its error.  0, or -1 after
 * nbdkit_error. */
int nbdcrypt_unlock(nbdkit_next *next, bool rate_limited);
/* Unlock once per server through a manual context (.after_fork).  A failure
 * is logged and remembered; connections retry.  Always 0. */
int nbdcrypt_unlock_at_start(nbdkit_backend *backend);

/* The segment; only valid after a successful nbdcrypt_unlock. */
const struct nbdcrypt_segment *nbdcrypt_segment_get(void);
/* Bytes the export has on a plugin disk of plugin_size bytes; -1 after
 * nbdkit_error. */
int64_t nbdcrypt_export_size(int64_t plugin_size);

/* This thread's cipher context and a buffer of at least len bytes (len <=
 * NBDCRYPT_CHUNK), created on first use and freed when the thread exits.
 * NULL with *err set after nbdkit_error. */
struct nbdcrypt_thread {
  struct xts_ctx *xts;
  uint8_t *buf;
  size_t buf_size;
  struct nbdcrypt_thread *prev, *next; /* all live thread states */
};
struct nbdcrypt_thread *nbdcrypt_thread_get(size_t len, int *err);

int nbdcrypt_state_init(void);  /* .load */
void nbdcrypt_state_free(void); /* .unload: wipes the DEK and every context */
void nbdcrypt_after_fork_relock(void);

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

#endif
