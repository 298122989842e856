/* Backends of the blockdev module; bdev_open dispatches to them. */
#ifndef NBDCRYPT_BLOCKDEV_INTERNAL_H
#define NBDCRYPT_BLOCKDEV_INTERNAL_H

#include <stdint.h>

#include "nbdcrypt/blockdev.h"

int bdev_open_file(const char *path, unsigned flags, uint64_t create_size, struct bdev **out,
                   struct nbdc_error *err);
int bdev_open_nbd(const char *uri, unsigned flags, struct bdev **out, struct nbdc_error *err);

/* The one wording of a read past the end, shared by every backend. */
int bdev_error_beyond_end(struct nbdc_error *err, const char *name, uint64_t offset, uint64_t size);

#endif
