/* nbdcrypt re-encryption (src/reencrypt): deep recrypt (new DEK), encrypt a
 * plaintext image in place and decrypt it back, crash-safe and resumable.
 * Progress lives in the LUKS2 header under the mandatory requirement flag
 * REENC_REQUIREMENT, in a token of type REENC_TOKEN_TYPE whose parameters are
 * authenticated by an HMAC keyed from the old and new volume keys
 * (docs/reencrypt.md explains the layout and the write order). */
#ifndef NBDCRYPT_REENCRYPT_H
#define NBDCRYPT_REENCRYPT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/keys.h"
#include "nbdcrypt/luks2.h"

struct json_object;
struct volume;

#define REENC_REQUIREMENT "nbdcrypt-reencrypt-v1"
#define REENC_TOKEN_TYPE  "nbdcrypt-reencrypt"
#define REENC_SHIFT       (16u * 1024 * 1024) /* data offset of an encrypted file */

enum reenc_mode { REENC_RECRYPT = 1, REENC_ENCRYPT, REENC_DECRYPT };
enum reenc_phase { REENC_PHASE_PREPARE = 1, REENC_PHASE_MAIN, REENC_PHASE_FINAL };
/* What the checksum table holds per old 4 KiB block of the hotzone: its
 * SHA-256 (records of the first version), or its first 16 bytes ("head16",
 * docs/reencrypt.md says why that is enough). */
enum reenc_checksum { REENC_CHECKSUM_SHA256 = 0, REENC_CHECKSUM_HEAD16 };

/* The progress record (one token).  Offsets in bytes; "logical" counts from
 * the first data byte, "physical" from the start of the data device. */
struct reenc_state {
  enum reenc_mode mode;
  enum reenc_phase phase;
  bool backward;     /* backward: [done, data_size) is done; else [0, done) */
  bool detached;     /* header in another file; data stays in place */
  bool size_dynamic; /* the final data segment is "dynamic" */
  uint32_t sector_size;
  uint64_t data_size;  /* logical bytes converted */
  uint64_t old_offset; /* physical offset of logical 0 before */
  uint64_t new_offset; /* ... and after */
  uint64_t iv_tweak;   /* of the original/final segment, 512-byte units */
  uint64_t done;
  uint64_t hotzone_offset; /* logical; hotzone_size 0: none in progress */
  uint64_t hotzone_size;
  uint64_t checksum_offset; /* header device: table entry per old 4 KiB block */
  uint8_t checksum_sha[32]; /* SHA-256 of that table */
  enum reenc_checksum checksum;
  uint64_t tail_offset; /* datashift: physical home of the moved first chunk */
  uint64_t chunk_size;
  int old_keyslot, new_keyslot; /* -1 when plaintext on that side */
};

/* The token JSON for st, with its HMAC keyed from old_key and new_key (either
 * may be NULL/0 for plaintext).  *out is a new reference. */
int reenc_state_to_json(const struct reenc_state *st, const uint8_t *old_key, size_t old_len,
                        const uint8_t *new_key, size_t new_len, struct json_object **out,
                        struct nbdc_error *err);

/* The keyslot ids a token names, NOT authenticated: only to choose which
 * keyslots to unlock before reenc_state_from_json. */
int reenc_state_keyslots(struct json_object *token, int *old_keyslot, int *new_keyslot,
                         struct nbdc_error *err);

/* Parse token into st and check its HMAC with the keys: -EPERM "progress
 * record ... does not match the keys" when it was altered; -EINVAL for a
 * malformed or out-of-range record.  Nothing in st is used unless 0. */
int reenc_state_from_json(struct json_object *token, const uint8_t *old_key, size_t old_len,
                          const uint8_t *new_key, size_t new_len, struct reenc_state *st,
                          struct nbdc_error *err);

/* Progress callback: work done and total, in bytes. */
typedef void (*reenc_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* A passphrase (exact bytes) an operator gives for a keyslot of the old key
 * that no nbdcrypt token binds; name says where it came from (messages). */
struct reenc_passphrase {
  const uint8_t *data;
  size_t len;
  const char *name;
};

/* The devices an operation runs on, opened by the caller (the CLI opens
 * files or NBD URIs with the image lock of a data writer; the filter hands
 * in its next plugin).  The engine borrows them: it never closes them, and
 * it takes their metadata lock (bdev_lock) for the whole run when they have
 * one.  What the engine needs of data beyond pread/pwrite/flush/get_size is
 * optional (blockdev.h): without resize, operations that move the data
 * (encrypt/decrypt without a detached header) are refused with -ENOTSUP;
 * without open_reader the worker threads share data under a mutex (the
 * engine's calls into data are then serialized); without readahead nothing
 * is hinted. */
struct reenc_target {
  struct bdev *data;       /* the data device, read-write */
  struct bdev *header;     /* a detached header device, or NULL: the header is on data */
  const char *name;        /* messages call the disk this (NULL: bdev_name(data)) */
  const char *header_name; /* ... and the header device this (NULL: bdev_name(header)) */
  /* Set by reenc_run: */
  bool header_used;     /* the engine wrote to header (encrypt: a header file the caller
                           created for this run holds the operation from then on; before
                           that, the caller may remove it) */
  bool header_released; /* decrypt with a detached header is complete: the data is plain
                           in place and header is of no further use (the CLI removes it) */
  bool half_way;        /* on an error: the disk is left in the middle of the operation
                           (resumable by running it again); false when nothing was changed
                           or the disk is in its final state */
};

/* What the engine tells a caller that serves the disk while it is being
 * converted, once the keys and the layout are known and before the first
 * zone is read.  Borrowed for the duration of the call only (xts_dup the
 * contexts to keep them). */
struct reenc_info {
  struct reenc_state state;      /* as committed now (done, offsets, sector size) */
  const struct xts_ctx *old_xts; /* old form's cipher, NULL when plaintext */
  const struct xts_ctx *new_xts; /* new form's cipher, NULL when plaintext */
  const struct luks2_hdr *hdr;   /* the header as the engine holds it */
};

/* Hooks for a caller that serves the disk during the run (the filter's
 * online re-encryption); every member may be NULL, hooks itself too (the
 * CLI).  All are called from the thread running reenc_run.  Offsets are
 * logical (byte 0 = the first data byte), as reenc_state's.
 *
 * The order per zone [off, off+len) is: zone_begin, the engine reads and
 * converts the range (possibly while it writes the previous zone: zone_begin
 * of zone k+1 may come before zone_done of zone k), the engine commits the
 * record naming the zone (in place) and writes its new form, zone_done.
 * Between zone_begin and zone_done, nobody else may read or write the range
 * (a range lock); before zone_begin the range is in the old form, after
 * zone_done in the new form.  In place (recrypt, decrypt with a detached
 * header) the record that names the range done is committed with the next
 * zone or at the end; until then a crash is recovered through the checksum
 * table, which no block in the new form matches, whoever wrote it (the engine
 * or, after zone_done, a client with the new key).  With a data shift the
 * zone is flushed and committed before zone_done. */
struct reenc_hooks {
  void *opaque;
  /* Keys and layout known, before the first zone.  Non-zero (a negative
   * errno) stops the run before anything of the data is rewritten. */
  int (*started)(void *opaque, const struct reenc_info *info);
  /* The range is about to be rewritten: wait for I/O in flight on it and
   * hold back new I/O until zone_done.  May block.  A negative errno stops
   * the run at a resumable point (that error is returned). */
  int (*zone_begin)(void *opaque, uint64_t offset, uint64_t len);
  /* The range is in its new form; done is the new boundary (forward:
   * [0, done) is done; backward: [done, data_size)). */
  void (*zone_done)(void *opaque, uint64_t offset, uint64_t len, uint64_t done);
  /* Optional, for a caller that serves reads of a zone while it is
   * rewritten (in place, forward only): the zone's new form is written in
   * pieces of at most REENC_PIECE bytes, each between write_begin (may
   * block; a negative errno stops the run) and write_done (ok: the piece is
   * in its new form; false: it may be mixed, the run ends with an error).
   * Without them a zone is written in one go. */
  int (*write_begin)(void *opaque, uint64_t offset, uint64_t len);
  void (*write_done)(void *opaque, uint64_t offset, uint64_t len, bool ok);
};

/* The piece of a zone written between write_begin and write_done. */
#define REENC_PIECE (1024u * 1024)

/* Opens keyslot of hdr (on hdev) for a resume: *key secure memory of *len
 * bytes (secmem_alloc), freed by the engine.  0 or a negative errno with err
 * set. */
typedef int (*reenc_unlock_fn)(void *opaque, const struct luks2_hdr *hdr, struct bdev *hdev,
                               int keyslot, uint8_t **key, size_t *len, struct nbdc_error *err);

struct reenc_opts {
  enum reenc_mode mode;
  const struct keys_config *cfg; /* providers: unlock (unless old_volume/unlock say otherwise)
                                    and bind the new key */
  const char *provider; /* encrypt/recrypt: provider of the new KEK (NULL: as before/default) */
  const char *kek_id;   /* encrypt/recrypt: KEK to bind (NULL: recrypt keeps, encrypt creates) */
  bool kms_wrapped;     /* encrypt: token mode kms-wrapped */
  uint64_t hotzone;     /* bytes per step (0: 64 MiB; datashift steps at most 16 MiB) */
  bool resume_only;     /* --resume: fail unless an operation is in progress */
  bool drop_unbound;    /* recrypt: allow removing keyslots without an nbdcrypt token
                           (passphrases) that no passphrases[] entry opens */
  const struct reenc_passphrase *passphrases; /* recrypt: each re-protects the new key in a
                                                 keyslot with the same KDF and costs */
  size_t n_passphrases;
  reenc_progress_fn progress;
  void *progress_opaque;
  volatile sig_atomic_t *stop; /* set by a signal handler: stop at the next resumable point */
  /* A caller that has the disk open already (the filter after its unlock):
   * recrypt/decrypt start from this volume's key, keyslot and KEK binding
   * instead of unlocking the header again through cfg (borrowed; its
   * header must be the one on the device).  NULL: volume_open with cfg. */
  const struct volume *old_volume;
  /* Resume: how the keyslots the progress record names are opened.  NULL:
   * through their nbdcrypt tokens with cfg (volume_unlock_keyslot). */
  reenc_unlock_fn unlock;
  void *unlock_opaque;
  const struct reenc_hooks *hooks; /* NULL: none */
  size_t workers;                  /* conversion threads (0: one per online CPU, at most 8) */
};

/* Run (or resume) the operation on t's devices.  0 when the disk is in its
 * final state; -EPERM when a recrypt would drop keyslots that no nbdcrypt
 * token binds (passphrases), that none of passphrases[] opens, and
 * drop_unbound is false, or when an entry of passphrases[] opens none of
 * them (nothing written either way); -EEXIST for encrypt of a disk already
 * encrypted, -ENODATA for decrypt of a plaintext image (nothing done either
 * way); -ENOTSUP when the operation must move the data and t->data cannot be
 * resized; -EINTR when *stop was set (resumable); other -errno with err
 * filled. */
int reenc_run(struct reenc_target *t, const struct reenc_opts *opts, struct nbdc_error *err);

/* For path-based callers (the CLI, test programs): open target (file or NBD
 * URI) read-write with the image lock of a data writer (BDEV_LOCK_WRITE:
 * -EBUSY when a server, qemu or another writer holds it) and header_path
 * when given (a file; encrypt creates it, 16 MiB, when missing: *created).
 * t->name and t->header_name are the given strings.  Close with
 * reenc_target_close. */
int reenc_target_open(const char *target, const char *header_path, enum reenc_mode mode,
                      struct reenc_target *t, bool *created, struct nbdc_error *err);
void reenc_target_close(struct reenc_target *t);

#endif
