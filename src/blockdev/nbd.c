/* NBD exports through libnbd (include/nbdcrypt/blockdev.h).
 *
 * One synchronous libnbd handle per bdev (a bdev is used by one thread at a
 * time).  bdev_pread/bdev_pwrite split requests into chunks no larger than
 * 32 MiB or the server's advertised maximum block size, whichever is smaller
 * (bdev_set_max_request): NBD servers refuse larger requests (nbdkit's limit
 * is 64 MiB).  No optional capability: an export cannot be resized, and one
 * connection is not shared between threads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "blockdev/internal.h"

#define NBD_CHUNK_MAX ((size_t)32 << 20)

struct nbd_dev {
  struct nbd_handle *nbd;
  char *uri;
  uint64_t size;
  size_t chunk;
  bool can_flush;
};

/* libnbd keeps the last error per thread: copy it into err at once. */
static int nbd_dev_error(struct nbdc_error *err, const char *fmt_what, const char *uri)
{
  int code = nbd_get_errno();
  const char *text = nbd_get_error();
  return nbdc_error_set(err, code > 0 ? code : EIO, "%s %s: %s", fmt_what, uri,
                        text ? text : "unknown libnbd error");
}

static int nbd_dev_pread(void *opaque, void *buf, size_t count, uint64_t offset,
                         struct nbdc_error *err)
{
  struct nbd_dev *d = opaque;
  /* libnbd would refuse this too, with a less useful message. */
  if (offset > d->size || count > d->size - offset)
    return bdev_error_beyond_end(err, d->uri, offset, d->size);
  if (nbd_pread(d->nbd, buf, count, offset, 0) == -1) {
    char what[128];
    snprintf(what, sizeof what, "read of %zu bytes at offset %" PRIu64 " from", count, offset);
    return nbd_dev_error(err, what, d->uri);
  }
  return 0;
}

static int nbd_dev_pwrite(void *opaque, const void *buf, size_t count, uint64_t offset,
                          struct nbdc_error *err)
{
  struct nbd_dev *d = opaque;
  if (offset > d->size || count > d->size - offset)
    return nbdc_error_set(err, ENOSPC,
                          "write beyond end of device %s (offset %" PRIu64 ", size %" PRIu64 ")",
                          d->uri, offset, d->size);
  if (nbd_pwrite(d->nbd, buf, count, offset, 0) == -1) {
    char what[128];
    snprintf(what, sizeof what, "write of %zu bytes at offset %" PRIu64 " to", count, offset);
    return nbd_dev_error(err, what, d->uri);
  }
  return 0;
}

static int nbd_dev_flush(void *opaque, struct nbdc_error *err)
{
  struct nbd_dev *d = opaque;
  if (!d->can_flush)
    return 0;
  if (nbd_flush(d->nbd, 0) == -1)
    return nbd_dev_error(err, "cannot flush", d->uri);
  return 0;
}

static int nbd_dev_get_size(void *opaque, uint64_t *size, struct nbdc_error *err)
{
  (void)err;
  *size = ((struct nbd_dev *)opaque)->size;
  return 0;
}

static void nbd_dev_close(void *opaque)
{
  struct nbd_dev *d = opaque;
  if (!d)
    return;
  if (d->nbd) {
    /* A clean NBD_CMD_DISC; the server flushes as it sees fit. */
    if (nbd_aio_is_ready(d->nbd))
      nbd_shutdown(d->nbd, 0);
    nbd_close(d->nbd);
  }
  free(d->uri);
  free(d);
}

static const struct bdev_ops nbd_ops_rw = {
    .pread = nbd_dev_pread,
    .pwrite = nbd_dev_pwrite,
    .flush = nbd_dev_flush,
    .get_size = nbd_dev_get_size,
    .close = nbd_dev_close,
};

static const struct bdev_ops nbd_ops_ro = {
    .pread = nbd_dev_pread,
    .get_size = nbd_dev_get_size,
    .close = nbd_dev_close,
};

int bdev_open_nbd(const char *uri, unsigned flags, struct bdev **out, struct nbdc_error *err)
{
  *out = NULL;
  struct nbd_dev *d = calloc(1, sizeof *d);
  if (!d || !(d->uri = strdup(uri))) {
    free(d);
    return nbdc_error_set(err, ENOMEM, "out of memory opening %s", uri);
  }
  int r = 0;
  d->nbd = nbd_create();
  if (!d->nbd) {
    r = nbd_dev_error(err, "cannot create a libnbd handle for", uri);
    goto fail;
  }
  /* The user names the target: let the URI refer to local files such as
   * tls-psk-file, as nbdcopy and nbdinfo do. */
  if (nbd_set_uri_allow_local_file(d->nbd, true) == -1 || nbd_connect_uri(d->nbd, uri) == -1) {
    r = nbd_dev_error(err, "cannot connect to", uri);
    goto fail;
  }
  int64_t size = nbd_get_size(d->nbd);
  if (size < 0) {
    r = nbd_dev_error(err, "cannot get the size of", uri);
    goto fail;
  }
  d->size = (uint64_t)size;
  d->chunk = NBD_CHUNK_MAX;
  int64_t max_block = nbd_get_block_size(d->nbd, LIBNBD_SIZE_MAXIMUM);
  if (max_block > 0 && (uint64_t)max_block < d->chunk)
    d->chunk = (size_t)max_block;
  int ro = nbd_is_read_only(d->nbd);
  if (ro == -1) {
    r = nbd_dev_error(err, "cannot tell whether the export is read-only:", uri);
    goto fail;
  }
  bool readonly = ro == 1 || (flags & BDEV_RDONLY);
  d->can_flush = !readonly && nbd_can_flush(d->nbd) == 1;
  size_t chunk = d->chunk;
  r = bdev_from_ops(readonly ? &nbd_ops_ro : &nbd_ops_rw, d, uri, readonly, out, err);
  if (r == 0) {
    bdev_set_max_request(*out, chunk);
    return 0;
  }
fail:
  nbd_dev_close(d);
  return r;
}
