/* Opening the devices of a re-encryption by name, for the CLI and test
 * programs (include/nbdcrypt/reencrypt.h); the engine itself only sees
 * opened bdevs. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "nbdcrypt/luks2.h"
#include "nbdcrypt/reencrypt.h"

int reenc_target_open(const char *target, const char *header_path, enum reenc_mode mode,
                      struct reenc_target *t, bool *created, struct nbdc_error *err)
{
  *t = (struct reenc_target){.name = target, .header_name = header_path};
  *created = false;
  /* the image lock of a data writer, before anything is read */
  int r = bdev_open(target, BDEV_LOCK_WRITE, 0, &t->data, err);
  if (r < 0 || !header_path)
    return r;
  if (bdev_is_uri(header_path)) {
    r = nbdc_error_set(err, EINVAL, "--header must be a file, not %s", header_path);
    goto fail;
  }
  struct stat sb;
  bool exists = stat(header_path, &sb) == 0;
  if (!exists && mode != REENC_ENCRYPT) {
    r = nbdc_error_set(err, ENOENT, "header file %s does not exist", header_path);
    goto fail;
  }
  r = bdev_open(header_path, (exists ? 0 : BDEV_CREATE) | BDEV_LOCK_WRITE,
                LUKS2_DEFAULT_DATA_OFFSET, &t->header, err);
  if (r < 0)
    goto fail;
  *created = !exists;
  return 0;
fail:
  reenc_target_close(t);
  return r;
}

void reenc_target_close(struct reenc_target *t)
{
  if (!t)
    return;
  bdev_close(t->header);
  bdev_close(t->data);
  t->header = t->data = NULL;
}
