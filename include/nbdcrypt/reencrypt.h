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

#include "nbdcrypt/error.h"
#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/keys.h"

struct json_object;

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

struct reenc_opts {
  enum reenc_mode mode;
  const struct keys_config *cfg;
  const char *provider;    /* encrypt/recrypt: provider of the new KEK (NULL: as before/default) */
  const char *kek_id;      /* encrypt/recrypt: KEK to bind (NULL: recrypt keeps, encrypt creates) */
  bool kms_wrapped;        /* encrypt: token mode kms-wrapped */
  const char *header_path; /* encrypt/decrypt: detached header file */
  uint64_t hotzone;        /* bytes per step (0: 64 MiB; datashift steps at most 16 MiB) */
  bool resume_only;        /* --resume: fail unless an operation is in progress */
  bool drop_unbound;       /* recrypt: allow removing keyslots without an nbdcrypt token
                              (passphrases) that no passphrases[] entry opens */
  const struct reenc_passphrase *passphrases; /* recrypt: each re-protects the new key in a
                                                 keyslot with the same KDF and costs */
  size_t n_passphrases;
  reenc_progress_fn progress;
  void *progress_opaque;
  volatile sig_atomic_t *stop; /* set by a signal handler: stop at the next resumable point */
};

/* Run (or resume) the operation on target (file or NBD URI).  0 when the
 * disk is in its final state; -EPERM when a recrypt would drop keyslots that
 * no nbdcrypt token binds (passphrases), that none of passphrases[] opens, and
 * drop_unbound is false, or when an entry of passphrases[] opens none of
 * them (nothing written either way); -EEXIST
 * for encrypt of a disk already encrypted, -ENODATA for decrypt of a plaintext
 * image (nothing done either way); -EINTR when *stop was set (resumable);
 * other -errno with err filled.  Test hooks: NBDCRYPT_TEST_FAIL_WRITE_AFTER=N
 * makes every write after the N-th fail with EIO; NBDCRYPT_TEST_HOTZONE_DELAY_MS=N
 * pauses after each hotzone.  Uses one worker thread per online CPU. */
int reenc_run(const char *target, const struct reenc_opts *opts, struct nbdc_error *err);

/* ---- online: the engine under a server (plugins/nbdcrypt) ----------------
 * What the server needs to route its clients' requests while an in-place
 * recrypt runs: logical [0, done) is under the new key, the rest under the
 * old one; sector IVs are those of one segment (iv_tweak + logical / 512). */
struct reenc_online_info {
  const char *uuid;
  uint64_t data_offset; /* physical offset of logical 0 */
  uint64_t data_size;
  uint64_t iv_tweak;
  uint32_t sector_size;
  bool size_dynamic;
  uint64_t done;
  const struct xts_ctx *old_xts, *new_xts; /* valid during ready only: xts_dup them */
};

/* Called by the engine thread.  ready: once, after the operation is started
 * (first commit) or resumed (a crashed hotzone recovered), before any
 * hotzone; nonzero stops the run with that -errno.  before_hotzone: before
 * logical [offset, offset+len) is read; from then until after_hotzone no
 * client may read or write that range.  after_hotzone: the hotzone is
 * written under the new key (ok) and the boundary is offset+len; or it
 * failed half way (!ok): the range holds old and new blocks mixed until a
 * resume recovers it from the progress record. */
struct reenc_hooks {
  void *opaque;
  int (*ready)(void *opaque, const struct reenc_online_info *info);
  void (*before_hotzone)(void *opaque, uint64_t offset, uint64_t len);
  void (*after_hotzone)(void *opaque, uint64_t offset, uint64_t len, bool ok);
};

/* Run or resume a recrypt in place on an opened device dev (not owned, not
 * closed; the caller holds the image lock), calling hooks around each
 * hotzone.  Only REENC_RECRYPT (no header_path): encrypt and decrypt move
 * or expose data the client sees (-ENOTSUP).  Hotzones are not read ahead.
 * Returns as reenc_run. */
int reenc_run_bdev(struct bdev *dev, const struct reenc_opts *opts, const struct reenc_hooks *hooks,
                   struct nbdc_error *err);

#endif
