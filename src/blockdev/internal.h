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

/* The file descriptor of a file backend (image locks), else -1. */
int bdev_fd(const struct bdev *dev);
void bdev_set_fd(struct bdev *dev, int fd);
/* Image locks on an open descriptor (imagelock.c); name for messages. */
int bdev_image_lock_fd(int fd, const char *name, enum bdev_lock_role role, struct nbdc_error *err);

#endif
