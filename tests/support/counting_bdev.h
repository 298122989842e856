/* A counting block device for tests (tests/support): a bdev over another that
 * counts the reads of its first block, i.e. the loads of a LUKS2 header at
 * offset 0 (each load reads the primary header's first block once). */
#ifndef NBDCRYPT_TESTS_COUNTING_BDEV_H
#define NBDCRYPT_TESTS_COUNTING_BDEV_H

#include "nbdcrypt/blockdev.h"

struct counting_bdev {
  struct bdev *inner; /* borrowed: closed by the caller after the wrapper */
  int header_reads;   /* reads at offset 0 */
};

/* *out: a bdev over c->inner counting into c (both must outlive it). */
int counting_bdev_wrap(struct counting_bdev *c, struct bdev **out, struct nbdc_error *err);

#endif
