/* LUKS2 on disk: the two copies of binary header + JSON area, their
 * checksums and seqid, recovery from the good copy, and the commit order
 * (reference/luks2.md "Binary header"). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "luks2/luks2_internal.h"

/* Offsets within the 4096-byte binary header (big-endian integers). */
enum {
  OFF_MAGIC = 0,
  OFF_VERSION = 6,
  OFF_HDR_SIZE = 8,
  OFF_SEQID = 16,
  OFF_LABEL = 24,
  OFF_CSUM_ALG = 72,
  OFF_SALT = 104,
  OFF_UUID = 168,
  OFF_SUBSYSTEM = 208,
  OFF_HDR_OFFSET = 256,
  OFF_CSUM = 448,
};

static const uint8_t magic_primary[LUKS2_MAGIC_LEN] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
static const uint8_t magic_secondary[LUKS2_MAGIC_LEN] = {'S', 'K', 'U', 'L', 0xba, 0xbe};

const uint64_t luks2_hdr_sizes[9] = {
    16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304,
};

bool luks2_hdr_size_allowed(uint64_t hdr_size)
{
  for (size_t i = 0; i < sizeof luks2_hdr_sizes / sizeof luks2_hdr_sizes[0]; i++)
    if (luks2_hdr_sizes[i] == hdr_size)
      return true;
  return false;
}

static uint64_t get_be64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

/* A fixed-size text field must be NUL-terminated within its length. */
static bool get_text(const uint8_t *bin, size_t off, size_t len, char *out)
{
  if (!memchr(bin + off, '\0', len))
    return false;
  memcpy(out, bin + off, len);
  return true;
}

/* sha(bin with csum zeroed || json area) into csum (zero-padded to 64). */
static int hdr_checksum(const char *alg, const uint8_t *bin, const uint8_t *area, size_t area_len,
                        uint8_t csum[LUKS2_CSUM_LEN], struct nbdc_error *err)
{
  uint8_t zeroed[LUKS2_BIN_HDR_SIZE];
  memcpy(zeroed, bin, sizeof zeroed);
  memset(zeroed + OFF_CSUM, 0, LUKS2_CSUM_LEN);
  memset(csum, 0, LUKS2_CSUM_LEN);

  size_t md_len = crypto_hash_size(alg);
  struct crypto_hash *h = NULL;
  struct nbdc_error e = {0};
  int r = md_len == 0 || md_len > LUKS2_CSUM_LEN ? -EINVAL : crypto_hash_new(&h, alg, false, &e);
  if (r == 0) {
    crypto_hash_write(h, zeroed, sizeof zeroed);
    crypto_hash_write(h, area, area_len);
    r = crypto_hash_final(h, csum, md_len, &e);
  }
  crypto_hash_free(h);
  if (r < 0)
    return nbdc_error_set(err, EIO, "cannot compute the %s header checksum", alg);
  return 0;
}

/* One header copy as read from disk. */
struct hdr_copy {
  bool magic; /* the right magic was found: this looks like a LUKS2 copy */
  bool ok;    /* fully valid, JSON included */
  bool luks1;
  uint64_t offset;
  uint64_t hdr_size;
  uint64_t seqid;
  char label[LUKS2_LABEL_LEN];
  char subsystem[LUKS2_LABEL_LEN];
  char uuid[LUKS2_UUID_LEN];
  struct json_object *jobj;
  struct nbdc_error err; /* why it is not ok */
};

static const char *copy_name(bool secondary)
{
  return secondary ? "secondary" : "primary";
}

/* Read and fully check the copy at offset.  expect_size != 0 requires that
 * hdr_size (the primary's, when reading the secondary it announced). */
static int read_copy(struct bdev *dev, uint64_t dev_size, uint64_t offset, bool secondary,
                     uint64_t expect_size, struct hdr_copy *c)
{
  uint8_t bin[LUKS2_BIN_HDR_SIZE];
  struct nbdc_error *err = &c->err;
  char where[64];
  if (secondary)
    snprintf(where, sizeof where, "secondary header at offset %" PRIu64, offset);
  else
    snprintf(where, sizeof where, "primary header");

  memset(c, 0, sizeof *c);
  c->offset = offset;
  if (dev_size < LUKS2_BIN_HDR_SIZE || offset > dev_size - LUKS2_BIN_HDR_SIZE)
    return nbdc_error_set(err, ENODATA, "%s: beyond the end of the device", where);
  int r = bdev_pread(dev, bin, sizeof bin, offset, err);
  if (r < 0)
    return nbdc_error_prefix(err, "%s", where);

  if (memcmp(bin + OFF_MAGIC, secondary ? magic_secondary : magic_primary, LUKS2_MAGIC_LEN) != 0)
    return nbdc_error_set(err, ENODATA, "%s: no LUKS2 magic", where);
  unsigned version = (unsigned)bin[OFF_VERSION] << 8 | bin[OFF_VERSION + 1];
  if (version == 1 && !secondary) {
    c->luks1 = true;
    return nbdc_error_set(err, ENODATA, "LUKS1 header found; only LUKS2 is supported");
  }
  c->magic = true;
  if (version != 2)
    return nbdc_error_set(err, EINVAL, "%s: unsupported version %u", where, version);

  c->hdr_size = get_be64(bin + OFF_HDR_SIZE);
  c->seqid = get_be64(bin + OFF_SEQID);
  uint64_t hdr_offset = get_be64(bin + OFF_HDR_OFFSET);
  if (!luks2_hdr_size_allowed(c->hdr_size))
    return nbdc_error_set(err, EINVAL, "%s: hdr_size %" PRIu64 " not allowed", where, c->hdr_size);
  if (expect_size && c->hdr_size != expect_size)
    return nbdc_error_set(err, EINVAL, "%s: hdr_size %" PRIu64 " differs from primary %" PRIu64,
                          where, c->hdr_size, expect_size);
  if (secondary && c->hdr_size != offset)
    return nbdc_error_set(err, EINVAL, "%s: hdr_size %" PRIu64 " does not match its offset", where,
                          c->hdr_size);
  if (hdr_offset != offset)
    return nbdc_error_set(err, EINVAL, "%s: hdr_offset %" PRIu64 " does not match its position",
                          where, hdr_offset);
  char csum_alg[LUKS2_CSUM_ALG_LEN];
  if (!get_text(bin, OFF_LABEL, LUKS2_LABEL_LEN, c->label))
    return nbdc_error_set(err, EINVAL, "%s: label not NUL-terminated", where);
  if (!get_text(bin, OFF_SUBSYSTEM, LUKS2_LABEL_LEN, c->subsystem))
    return nbdc_error_set(err, EINVAL, "%s: subsystem not NUL-terminated", where);
  if (!get_text(bin, OFF_UUID, LUKS2_UUID_LEN, c->uuid))
    return nbdc_error_set(err, EINVAL, "%s: uuid not NUL-terminated", where);
  if (!get_text(bin, OFF_CSUM_ALG, LUKS2_CSUM_ALG_LEN, csum_alg))
    return nbdc_error_set(err, EINVAL, "%s: checksum algorithm not NUL-terminated", where);
  if (!luks2_hash_allowed(csum_alg))
    return nbdc_error_set(err, EINVAL, "%s: checksum algorithm '%s' not allowed", where, csum_alg);

  size_t area_len = (size_t)(c->hdr_size - LUKS2_BIN_HDR_SIZE);
  if (offset + c->hdr_size > dev_size)
    return nbdc_error_set(err, EINVAL, "%s: JSON area beyond the end of the device", where);
  uint8_t *area = malloc(area_len);
  if (!area)
    return nbdc_error_set(err, ENOMEM, "%s: out of memory for %zu-byte JSON area", where, area_len);
  uint8_t csum[LUKS2_CSUM_LEN];
  r = bdev_pread(dev, area, area_len, offset + LUKS2_BIN_HDR_SIZE, err);
  if (r < 0)
    r = nbdc_error_prefix(err, "%s", where);
  if (r == 0)
    r = hdr_checksum(csum_alg, bin, area, area_len, csum, err);
  if (r == 0 && memcmp(csum, bin + OFF_CSUM, LUKS2_CSUM_LEN) != 0)
    r = nbdc_error_set(err, EINVAL, "%s: checksum mismatch", where);
  if (r == 0) {
    r = luks2_json_parse_area((const char *)area, area_len, &c->jobj, err);
    if (r == 0)
      r = luks2_json_validate(c->jobj, c->hdr_size, err);
    if (r < 0) {
      r = nbdc_error_prefix(err, "%s", where);
      if (err->code != ENOMEM && err->code != EIO)
        r = -(err->code = EINVAL);
    }
  }
  free(area);
  if (r < 0) {
    json_object_put(c->jobj);
    c->jobj = NULL;
    return r;
  }
  c->ok = true;
  return 0;
}

int luks2_load(struct bdev *dev, struct luks2_hdr **out, struct nbdc_error *err)
{
  struct hdr_copy *copies = calloc(2, sizeof *copies);
  struct hdr_copy *primary = &copies[0], *secondary = &copies[1];
  uint64_t dev_size;
  int r;

  *out = NULL;
  if (!copies)
    return nbdc_error_set(err, ENOMEM, "out of memory loading the LUKS2 header");
  r = bdev_get_size(dev, &dev_size, err);
  if (r < 0)
    goto out;
  if (dev_size < LUKS2_BIN_HDR_SIZE) {
    r = nbdc_error_set(err, ENODATA, "no LUKS2 header (device of %" PRIu64 " bytes)", dev_size);
    goto out;
  }

  r = read_copy(dev, dev_size, 0, false, 0, primary);
  if (primary->luks1) {
    r = nbdc_error_set(err, ENODATA, "%s", primary->err.msg);
    goto out;
  }
  if (r == -EIO || r == -ENOMEM) {
    *err = primary->err;
    goto out;
  }
  if (primary->ok) {
    r = read_copy(dev, dev_size, primary->hdr_size, true, primary->hdr_size, secondary);
  } else {
    /* A bad primary cannot say where the secondary is: try every allowed
     * size, keeping the first good copy (or the first with its magic). */
    struct hdr_copy probe;
    for (size_t i = 0; i < sizeof luks2_hdr_sizes / sizeof luks2_hdr_sizes[0]; i++) {
      r = read_copy(dev, dev_size, luks2_hdr_sizes[i], true, 0, &probe);
      if (probe.ok || (probe.magic && !secondary->magic) || r == -EIO || r == -ENOMEM) {
        json_object_put(secondary->jobj);
        *secondary = probe;
      } else {
        json_object_put(probe.jobj);
      }
      if (probe.ok || r == -EIO || r == -ENOMEM)
        break;
    }
    if (!secondary->magic && !secondary->ok && secondary->err.code == 0)
      nbdc_error_set(&secondary->err, ENODATA, "secondary header: not found");
  }
  if (!primary->ok && !secondary->ok && (r == -EIO || r == -ENOMEM)) {
    *err = secondary->err;
    goto out;
  }

  if (!primary->ok && !secondary->ok) {
    if (!primary->magic && !secondary->magic)
      r = nbdc_error_set(err, ENODATA, "no LUKS2 header");
    else
      r = nbdc_error_set(err, EINVAL, "%s", primary->magic ? primary->err.msg : secondary->err.msg);
    goto out;
  }

  /* As cryptsetup: both copies and the keyslots area must be on the device. */
  struct hdr_copy *good = primary->ok ? primary : secondary;
  uint64_t ks_start, ks_end;
  luks2_keyslots_area(good->jobj, good->hdr_size, &ks_start, &ks_end);
  if (dev_size < ks_end) {
    r = nbdc_error_set(err, EINVAL,
                       "device of %" PRIu64 " bytes too small: LUKS2 metadata and keyslots "
                       "areas need %" PRIu64,
                       dev_size, ks_end);
    goto out;
  }

  struct luks2_hdr *hdr = calloc(1, sizeof *hdr);
  if (!hdr) {
    r = nbdc_error_set(err, ENOMEM, "out of memory loading the LUKS2 header");
    goto out;
  }
  struct hdr_copy *use = primary;
  if (primary->ok && secondary->ok) {
    if (secondary->seqid > primary->seqid)
      use = secondary;
    if (secondary->seqid != primary->seqid) {
      hdr->has_warning = true;
      snprintf(hdr->warning, sizeof hdr->warning,
               "%s header at offset %" PRIu64 ": seqid %" PRIu64 " older than %" PRIu64,
               copy_name(use == primary), use == primary ? secondary->offset : primary->offset,
               use == primary ? secondary->seqid : primary->seqid, use->seqid);
    }
  } else {
    use = primary->ok ? primary : secondary;
    hdr->has_warning = true;
    snprintf(hdr->warning, sizeof hdr->warning, "%s",
             primary->ok ? secondary->err.msg : primary->err.msg);
  }
  hdr->jobj = use->jobj;
  use->jobj = NULL;
  hdr->hdr_size = use->hdr_size;
  hdr->seqid = use->seqid;
  hdr->on_disk = true;
  hdr->disk_seqid = use->seqid;
  memcpy(hdr->label, use->label, sizeof hdr->label);
  memcpy(hdr->subsystem, use->subsystem, sizeof hdr->subsystem);
  memcpy(hdr->uuid, use->uuid, sizeof hdr->uuid);
  *out = hdr;
  r = 0;

out:
  json_object_put(primary->jobj);
  json_object_put(secondary->jobj);
  free(copies);
  return r;
}

const char *luks2_load_warning(const struct luks2_hdr *hdr)
{
  return hdr && hdr->has_warning ? hdr->warning : NULL;
}

/* Write one copy: header with csum zeroed, JSON area, header with csum, flush. */
static int write_copy(struct bdev *dev, const struct luks2_hdr *hdr, uint64_t seqid, bool secondary,
                      const uint8_t *area, size_t area_len, struct nbdc_error *err)
{
  uint8_t bin[LUKS2_BIN_HDR_SIZE];
  uint64_t offset = secondary ? hdr->hdr_size : 0;
  memset(bin, 0, sizeof bin);
  memcpy(bin + OFF_MAGIC, secondary ? magic_secondary : magic_primary, LUKS2_MAGIC_LEN);
  bin[OFF_VERSION + 1] = 2;
  put_be64(bin + OFF_HDR_SIZE, hdr->hdr_size);
  put_be64(bin + OFF_SEQID, seqid);
  /* Text fields stay NUL-terminated: bin is zeroed and one byte is spared. */
  memcpy(bin + OFF_LABEL, hdr->label, strnlen(hdr->label, LUKS2_LABEL_LEN - 1));
  memcpy(bin + OFF_CSUM_ALG, "sha256", sizeof "sha256");
  memcpy(bin + OFF_UUID, hdr->uuid, strnlen(hdr->uuid, LUKS2_UUID_LEN - 1));
  memcpy(bin + OFF_SUBSYSTEM, hdr->subsystem, strnlen(hdr->subsystem, LUKS2_LABEL_LEN - 1));
  put_be64(bin + OFF_HDR_OFFSET, offset);
  int r = crypto_random(bin + OFF_SALT, LUKS2_SALT_LEN, err);
  if (r == 0)
    r = bdev_pwrite(dev, bin, sizeof bin, offset, err);
  if (r == 0)
    r = bdev_pwrite(dev, area, area_len, offset + LUKS2_BIN_HDR_SIZE, err);
  if (r == 0)
    r = hdr_checksum("sha256", bin, area, area_len, bin + OFF_CSUM, err);
  if (r == 0)
    r = bdev_pwrite(dev, bin, sizeof bin, offset, err);
  if (r == 0)
    r = bdev_flush(dev, err);
  if (r < 0)
    return nbdc_error_prefix(err, "writing %s header", copy_name(secondary));
  return 0;
}

/* Overwrite removed keyslot areas with random bytes once the header that no
 * longer references them is durable. */
static int wipe_pending(struct bdev *dev, struct luks2_hdr *hdr, struct nbdc_error *err)
{
  enum { CHUNK = 65536 };
  if (hdr->n_wipes == 0)
    return 0;
  uint8_t *buf = malloc(CHUNK);
  if (!buf)
    return nbdc_error_set(err, ENOMEM, "out of memory wiping keyslot areas");
  int r = 0;
  for (size_t i = 0; i < hdr->n_wipes && r == 0; i++) {
    const struct luks2_wipe *w = &hdr->wipes[i];
    for (uint64_t done = 0; done < w->size && r == 0;) {
      size_t n = w->size - done < CHUNK ? (size_t)(w->size - done) : CHUNK;
      r = crypto_random(buf, n, err);
      if (r == 0)
        r = bdev_pwrite(dev, buf, n, w->offset + done, err);
      done += n;
    }
    if (r < 0)
      r = nbdc_error_prefix(err, "wiping removed keyslot area at offset %" PRIu64, w->offset);
  }
  if (r == 0)
    r = bdev_flush(dev, err);
  if (r == 0)
    hdr->n_wipes = 0;
  free(buf);
  return r;
}

/* Compare-and-swap, as cryptsetup's LUKS2_disk_hdr_write ("Detected attempt
 * for concurrent LUKS2 metadata update"): under the held lock, the device
 * must still carry the header this one was loaded from.  Both copies are
 * read again and checked in full, so a copy torn by a crash (its checksum
 * fails) does not count as a newer header. */
static int check_unchanged(struct bdev *dev, const struct luks2_hdr *hdr, struct nbdc_error *err)
{
  if (!hdr->on_disk)
    return 0;
  struct luks2_hdr *now = NULL;
  struct nbdc_error load_err = {0};
  int r = luks2_load(dev, &now, &load_err);
  if (r == -EIO || r == -ENOMEM) {
    *err = load_err;
    return nbdc_error_prefix(err, "re-reading the LUKS2 header of %s before writing",
                             bdev_name(dev));
  }
  if (r < 0 || !now)
    return nbdc_error_set(err, EBUSY,
                          "concurrent LUKS2 metadata update: %s no longer holds the header "
                          "loaded at seqid %" PRIu64 " (%s); nothing written",
                          bdev_name(dev), hdr->disk_seqid, load_err.msg);
  if (strcmp(now->uuid, hdr->uuid) != 0)
    r = nbdc_error_set(err, EBUSY,
                       "concurrent LUKS2 metadata update: %s was formatted again (uuid %s, now "
                       "%s) since it was loaded; nothing written",
                       bdev_name(dev), hdr->uuid, now->uuid);
  else if (now->seqid != hdr->disk_seqid && now->seqid != hdr->seqid)
    r = nbdc_error_set(err, EBUSY,
                       "concurrent LUKS2 metadata update: seqid of %s moved from %" PRIu64
                       " to %" PRIu64 " since it was loaded; nothing written",
                       bdev_name(dev), hdr->disk_seqid, now->seqid);
  luks2_free(now);
  return r;
}

int luks2_write(struct bdev *dev, struct luks2_hdr *hdr, struct nbdc_error *err)
{
  /* Never write what we would refuse to load. */
  int r = luks2_json_validate(hdr->jobj, hdr->hdr_size, err);
  if (r < 0)
    return nbdc_error_prefix(err, "refusing to write invalid metadata");
  if (bdev_readonly(dev))
    return nbdc_error_set(err, EROFS, "%s is read-only: cannot write the LUKS2 header",
                          bdev_name(dev));

  const char *json = json_object_to_json_string_ext(hdr->jobj, LUKS2_JSON_PRINT_OPTS);
  size_t json_len = strlen(json);
  size_t area_len = (size_t)(hdr->hdr_size - LUKS2_BIN_HDR_SIZE);
  uint8_t *area = calloc(1, area_len);
  if (!area)
    return nbdc_error_set(err, ENOMEM, "out of memory for the %zu-byte JSON area", area_len);
  memcpy(area, json, json_len); /* NOLINT(bugprone-not-null-terminated-result): NUL padded */

  r = bdev_lock(dev, true, err);
  bool locked = r == 0;
  if (r == -ENOTSUP || r == -EOPNOTSUPP) {
    nbdc_error_clear(err);
    r = 0;
  }
  if (r < 0) {
    free(area);
    return nbdc_error_prefix(err, "locking %s", bdev_name(dev));
  }

  r = check_unchanged(dev, hdr, err);
  if (r < 0) {
    if (locked)
      bdev_unlock(dev, NULL);
    free(area);
    return r;
  }

  uint64_t seqid = hdr->seqid + 1;
  /* Whatever happens next, the disk may already hold this seqid. */
  hdr->seqid = seqid;
  r = write_copy(dev, hdr, seqid, false, area, area_len, err);
  if (r == 0)
    r = write_copy(dev, hdr, seqid, true, area, area_len, err);
  if (r == 0)
    r = wipe_pending(dev, hdr, err);
  if (r == 0) {
    hdr->has_warning = false;
    hdr->on_disk = true;
    hdr->disk_seqid = seqid;
  }
  if (locked) {
    struct nbdc_error unlock_err = {0};
    bdev_unlock(dev, &unlock_err);
  }
  free(area);
  return r;
}
