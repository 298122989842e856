/* Private to src/reencrypt: one run of the engine, shared by the loop
 * (engine.c) and the code that starts or resumes an operation (start.c). */
#ifndef NBDCRYPT_REENCRYPT_ENGINE_H
#define NBDCRYPT_REENCRYPT_ENGINE_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "nbdcrypt/luks2.h"
#include "nbdcrypt/reencrypt.h"
#include "reencrypt/internal.h"

#define MIB             (UINT64_C(1024) * 1024)
#define DEFAULT_HOTZONE (64 * MIB)
#define MAX_HOTZONE     (256 * MIB)
#define BLOCK           4096u
#define CSUM_LEN        32u
#define CSUM_SLOT       (MAX_HOTZONE / BLOCK * CSUM_LEN) /* 2 MiB */
#define KEY_SIZE        64
#define MARKER_MAGIC    "NBDCRYPT-SHIFT1"
#define MARKER_ENCRYPT  1
#define MARKER_DECRYPT  2

struct reenc {
  const struct reenc_opts *opts;
  struct reenc_target *t;
  const char *target;         /* the data device's name in messages */
  const char *header_name;    /* the detached header's, or NULL */
  bool detached;              /* t->header given */
  struct bdev *raw_dev, *dev; /* data device (dev: raw_dev, or shared by the workers) */
  struct bdev *hdev;          /* header device: dev, or the detached one */
  bool dev_locked, hdev_locked;
  struct luks2_hdr *hdr;
  struct reenc_state st;
  uint8_t *old_key, *new_key; /* secmem */
  size_t old_len, new_len;
  /* recrypt: the KEK that opened the old key (secmem), so that binding the
   * new key to the same KEK does not fetch it again */
  uint8_t *old_kek;
  size_t old_kek_len;
  char old_kek_provider[KEYS_NAME_MAX], old_kek_id[KEYS_ID_MAX];
  struct xts_ctx *old_xts, *new_xts;
  int old_digest, new_digest;
  uint8_t *buf; /* bufs[0] */
  size_t buf_size;
  uint8_t *bufs[2], *heads[2];
  uint8_t *sums;
  struct reenc_pipe *pipe;
  pthread_mutex_t io_mu; /* no second reader: the workers share dev */
  uint64_t hotzone;
  uint64_t csum_base; /* two table slots at the end of the keyslots area */
};

/* The marker block after a moved chunk: lets a run that finds no readable
 * header (first header write torn, or the last step of decrypt) finish. */
struct marker {
  char magic[16];
  uint32_t kind;
  uint32_t pad;
  uint64_t data_size;
  uint64_t chunk_size;
  uint64_t tail_offset;
  uint8_t chunk_sha[32];
};

static inline int fail_nomem(struct nbdc_error *err)
{
  return nbdc_error_set(err, ENOMEM, "out of memory");
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

/* ---- engine.c ---- */

/* One atomic header commit of the current state (both copies, each flushed). */
int reenc_commit(struct reenc *re, struct nbdc_error *err);
/* Place the checksum slots at the end of the keyslots area (re->csum_base);
 * ENOSPC when a keyslot reaches into them or the area is too small. */
int reenc_place_checksums(struct reenc *re, struct nbdc_error *err);
/* SHA-256 of the chunk_size bytes at phys (read into re->buf). */
int reenc_chunk_sha(struct reenc *re, uint64_t phys, uint8_t out[32], struct nbdc_error *err);
/* Write and flush the marker block after the tail chunk. */
int reenc_marker_write(struct reenc *re, uint32_t kind, const uint8_t chunk_sha[32],
                       struct nbdc_error *err);

/* ---- start.c ---- */

/* Each sets re->st, the keys and ciphers and the header (re->hdr) for a new
 * operation and commits its first state; re->hdr is the header reenc_run
 * loaded on entry to recrypt and decrypt (it is not loaded again).  encrypt resumes from the marker
 * m when it is given. */
int reenc_start_recrypt(struct reenc *re, struct nbdc_error *err);
int reenc_start_encrypt(struct reenc *re, const struct marker *m, struct nbdc_error *err);
int reenc_start_decrypt(struct reenc *re, struct nbdc_error *err);
/* Pick up the operation in progress from re->hdr's progress record. */
int reenc_resume(struct reenc *re, struct nbdc_error *err);

/* ---- hooks (engine.c) ---- */
int reenc_hook_started(struct reenc *re, struct nbdc_error *err);
int reenc_hook_begin(struct reenc *re, uint64_t offset, uint64_t len, struct nbdc_error *err);
void reenc_hook_done(struct reenc *re, uint64_t offset, uint64_t len);

#endif
