/* Private to src/reencrypt. */
#ifndef NBDCRYPT_REENCRYPT_INTERNAL_H
#define NBDCRYPT_REENCRYPT_INTERNAL_H

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/reencrypt.h"

struct reenc_faults {
  long writes;
  long fail_after; /* -1: no injection */
};

/* Read NBDCRYPT_TEST_FAIL_WRITE_AFTER. */
void reenc_faults_init(struct reenc_faults *f);

/* A bdev over inner (not owned) splitting large I/O, with no-op locking (the
 * caller holds inner's lock) and the write-failure hook. */
int reenc_bdev_wrap(struct bdev *inner, struct reenc_faults *faults, struct bdev **out,
                    struct nbdc_error *err);

#endif
