/* Signature probe (include/nbdcrypt/probe.h).
 *
 * libblkid probes a file descriptor, and our targets are bdevs: a file, a
 * block device, or an NBD URI that only libnbd can read.  So every target is
 * probed the same way: a memfd as large as the device, sparse, holding the
 * device's first PROBE_HEAD_BYTES and last PROBE_TAIL_BYTES.  blkid reads
 * zeros in the hole, which matches nothing.  The chains and flags are those
 * cryptsetup sets before luksFormat (lib/utils_blkid.c,
 * blk_set_chains_for_wipes), and blkid_do_probe is stepped until it reports
 * nothing more, as cryptsetup's tools_detect_signatures does, so every
 * signature is named, not just the first.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <blkid.h>

#include "nbdcrypt/probe.h"

#define PROBE_CHUNK (1u << 20)

/* Copy [offset, offset + len) of dev to the same offset of fd. */
static int probe_copy(struct bdev *dev, int fd, uint64_t offset, uint64_t len, uint8_t *buf,
                      struct nbdc_error *err)
{
  while (len > 0) {
    size_t n = len < PROBE_CHUNK ? (size_t)len : PROBE_CHUNK;
    int r = bdev_pread(dev, buf, n, offset, err);
    if (r < 0)
      return nbdc_error_prefix(err, "cannot probe %s for signatures", bdev_name(dev));
    size_t done = 0;
    while (done < n) {
      ssize_t w = pwrite(fd, buf + done, n - done, (off_t)(offset + done));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return nbdc_error_set(err, w < 0 ? errno : EIO,
                              "cannot copy %s into memory to probe it: %s", bdev_name(dev),
                              w < 0 ? strerror(errno) : "no progress");
      done += (size_t)w;
    }
    offset += n;
    len -= n;
  }
  return 0;
}

/* The memfd image of dev described at the top of this file; -errno or fd. */
static int probe_image(struct bdev *dev, uint64_t size, struct nbdc_error *err)
{
  if (size > INT64_MAX)
    return nbdc_error_set(err, EFBIG, "%s is too large to probe: %" PRIu64 " bytes", bdev_name(dev),
                          size);
  int fd = memfd_create("nbdcrypt-probe", MFD_CLOEXEC);
  if (fd < 0)
    return nbdc_error_set(err, errno, "cannot create a memfd to probe %s: %s", bdev_name(dev),
                          strerror(errno));
  uint8_t *buf = malloc(PROBE_CHUNK);
  int r = 0;
  if (!buf)
    r = nbdc_error_set(err, ENOMEM, "out of memory probing %s", bdev_name(dev));
  else if (ftruncate(fd, (off_t)size) != 0)
    r = nbdc_error_set(err, errno, "cannot size a memfd to %" PRIu64 " bytes to probe %s: %s", size,
                       bdev_name(dev), strerror(errno));
  uint64_t head = size < PROBE_HEAD_BYTES ? size : PROBE_HEAD_BYTES;
  if (r == 0)
    r = probe_copy(dev, fd, 0, head, buf, err);
  uint64_t tail = size - head < PROBE_TAIL_BYTES ? size - head : PROBE_TAIL_BYTES;
  if (r == 0 && tail > 0)
    r = probe_copy(dev, fd, size - tail, tail, buf, err);
  free(buf);
  if (r < 0) {
    close(fd);
    return r;
  }
  return fd;
}

static void probe_value(blkid_probe pr, const char *name, char *out, size_t len)
{
  const char *value = NULL;
  out[0] = '\0';
  if (blkid_probe_lookup_value(pr, name, &value, NULL) == 0 && value)
    snprintf(out, len, "%s", value);
}

/* The signature blkid_do_probe just reported; false if it has neither TYPE
 * nor PTTYPE (then it is not one we can name). */
static bool probe_take(blkid_probe pr, struct probe_signature *sig)
{
  char offset[32];
  memset(sig, 0, sizeof *sig);
  if (blkid_probe_has_value(pr, "PTTYPE")) {
    sig->partition_table = true;
    probe_value(pr, "PTTYPE", sig->type, sizeof sig->type);
    probe_value(pr, "PTUUID", sig->uuid, sizeof sig->uuid);
    probe_value(pr, "PTMAGIC_OFFSET", offset, sizeof offset);
  } else if (blkid_probe_has_value(pr, "TYPE")) {
    probe_value(pr, "TYPE", sig->type, sizeof sig->type);
    probe_value(pr, "VERSION", sig->version, sizeof sig->version);
    probe_value(pr, "USAGE", sig->usage, sizeof sig->usage);
    probe_value(pr, "UUID", sig->uuid, sizeof sig->uuid);
    probe_value(pr, "LABEL", sig->label, sizeof sig->label);
    probe_value(pr, "SBMAGIC_OFFSET", offset, sizeof offset);
  } else {
    return false;
  }
  sig->offset = strtoull(offset, NULL, 10);
  return true;
}

int probe_signatures(struct bdev *dev, struct probe_result *out, struct nbdc_error *err)
{
  memset(out, 0, sizeof *out);
  uint64_t size;
  int r = bdev_get_size(dev, &size, err);
  if (r < 0)
    return r;
  if (size == 0)
    return 0;
  int fd = probe_image(dev, size, err);
  if (fd < 0)
    return fd;

  blkid_probe pr = blkid_new_probe();
  if (!pr) {
    close(fd);
    return nbdc_error_set(err, ENOMEM, "cannot start a libblkid probe of %s", bdev_name(dev));
  }
  r = 0;
  if (blkid_probe_set_device(pr, fd, 0, 0) != 0) {
    r = nbdc_error_set(err, EIO, "libblkid cannot probe %s", bdev_name(dev));
    goto out;
  }
  blkid_probe_enable_partitions(pr, 1);
  blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
  blkid_probe_enable_superblocks(pr, 1);
  blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE |
                                            BLKID_SUBLKS_USAGE | BLKID_SUBLKS_VERSION |
                                            BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_BADCSUM);
  /* Bounded: blkid steps through its finite list of probers. */
  for (;;) {
    int pr_r = blkid_do_probe(pr);
    if (pr_r == 1)
      break;
    if (pr_r < 0) {
      r = nbdc_error_set(err, EIO, "libblkid failed to probe %s", bdev_name(dev));
      break;
    }
    struct probe_signature sig;
    if (!probe_take(pr, &sig))
      continue;
    if (out->count == PROBE_MAX_SIGNATURES) {
      out->more = true;
      break;
    }
    out->sig[out->count++] = sig;
  }
out:
  blkid_free_probe(pr);
  close(fd);
  return r;
}

static const char *probe_article(const char *word)
{
  return word[0] && strchr("aeiouxAEIOUX", word[0]) ? "an" : "a";
}

void probe_describe(const struct probe_signature *sig, char *buf, size_t len)
{
  const char *t = sig->type;
  if (sig->partition_table)
    snprintf(buf, len, "%s %s partition table", probe_article(t), t);
  else if (strcmp(t, "crypto_LUKS") == 0)
    snprintf(buf, len, "a LUKS%s header%s%s%s", sig->version, sig->uuid[0] ? " (uuid " : "",
             sig->uuid, sig->uuid[0] ? ")" : "");
  else if (strcmp(t, "swap") == 0)
    snprintf(buf, len, "a swap area");
  else if (strcmp(sig->usage, "filesystem") == 0)
    snprintf(buf, len, "%s %s filesystem", probe_article(t), t);
  else if (strcmp(sig->usage, "raid") == 0)
    snprintf(buf, len, "a RAID member (%s)", t);
  else if (strcmp(sig->usage, "crypto") == 0)
    snprintf(buf, len, "%s %s encrypted volume", probe_article(t), t);
  else
    snprintf(buf, len, "%s %s signature", probe_article(t), t);
}

void probe_describe_all(const struct probe_result *res, char *buf, size_t len)
{
  size_t used = 0;
  if (len == 0)
    return;
  buf[0] = '\0';
  for (size_t i = 0; i < res->count && used < len; i++) {
    char one[160];
    probe_describe(&res->sig[i], one, sizeof one);
    const char *sep = i == 0 ? "" : (i + 1 == res->count && !res->more) ? " and " : ", ";
    int n = snprintf(buf + used, len - used, "%s%s", sep, one);
    if (n < 0)
      break;
    used += (size_t)n;
  }
  if (res->more && used < len)
    snprintf(buf + used, len - used, " and more");
}
