/* Private to src/reencrypt. */
#ifndef NBDCRYPT_REENCRYPT_INTERNAL_H
#define NBDCRYPT_REENCRYPT_INTERNAL_H

#include <pthread.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/reencrypt.h"

/* Bytes of each old 4 KiB block kept in the checksum table ("head16"). */
#define REENC_HEAD_LEN 16u

/* A bdev over inner (not owned) that several threads may share: every call
 * into inner holds mu (a bdev is used by one thread at a time).  For a data
 * device without a second reader (NBD, the filter's next plugin); no-op
 * locking (the engine holds inner's lock for the whole run). */
int reenc_bdev_shared(struct bdev *inner, pthread_mutex_t *mu, struct bdev **out,
                      struct nbdc_error *err);

/* Worker threads that read a range, keep the first REENC_HEAD_LEN bytes of
 * each old 4 KiB block and convert the range (decrypt with old, encrypt with
 * new; either may be NULL) in the caller's buffer.  Workers read through
 * their own second reader of dev (bdev_open_reader: files) when it has one,
 * else through dev itself (which must then be safe to share:
 * reenc_bdev_shared).  nworkers 0: one per online CPU. */
struct reenc_pipe;
int reenc_pipe_new(struct reenc_pipe **out, struct bdev *dev, const struct xts_ctx *old_xts,
                   const struct xts_ctx *new_xts, uint64_t iv_tweak, size_t nworkers,
                   struct nbdc_error *err);
/* Start filling buf with logical bytes [logical, logical+len) read at phys,
 * converted; heads (may be NULL) gets len/4096 (rounded up) entries. */
void reenc_pipe_fill(struct reenc_pipe *p, uint8_t *buf, uint8_t *heads, uint64_t logical,
                     uint64_t len, uint64_t phys);
/* Wait for the fill to finish: 0, or the first worker's error. */
int reenc_pipe_wait(struct reenc_pipe *p, struct nbdc_error *err);
/* Wait for a fill in progress, stop the threads, free.  NULL is ignored. */
void reenc_pipe_free(struct reenc_pipe *p);

#endif
