/* Converting an open LUKS1 volume to LUKS2 in place, with a keyslot bound to
 * a KEK (docs/luks1.md, "Conversion").  The data does not move: the LUKS2
 * data segment starts at the LUKS1 payload offset, aes-xts-plain64, 512-byte
 * sectors, IV = sector number, the same volume key.
 *
 * The new metadata is built on an in-memory device first, then written in
 * an order where a crash at any point leaves a disk that opens: the LUKS1
 * keyslot that opened is first kept (moved if need be) beyond everything
 * LUKS2 writes, so the LUKS1 header stays valid until its first sector is
 * replaced; the secondary LUKS2 header is complete before that, so from then
 * on LUKS2 loads (from the secondary while the primary is incomplete).
 * tests/integration/test-luks1-convert-crash.sh stops the CLI at every
 * write of it (nbdcrypt-faults, a fault-injecting bdev under dev). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/luks1.h"
#include "nbdcrypt/volume.h"

#define CONVERT_HDR_SIZE UINT64_C(16384)
#define CONVERT_ALIGN    UINT64_C(4096)

/* Copy [from, to) of the staging device to dev, then flush. */
static int copy_range(struct bdev *staging, struct bdev *dev, uint64_t from, uint64_t to,
                      struct nbdc_error *err)
{
  enum { CHUNK = 1 << 20 };
  uint8_t *buf = malloc(CHUNK);
  if (!buf)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  int r = 0;
  for (uint64_t off = from; off < to && r == 0;) {
    size_t n = to - off < CHUNK ? (size_t)(to - off) : CHUNK;
    r = bdev_pread(staging, buf, n, off, err);
    if (r == 0)
      r = bdev_pwrite(dev, buf, n, off, err);
    off += n;
  }
  free(buf);
  if (r == 0)
    r = bdev_flush(dev, err);
  return r;
}

static int wipe_range(struct bdev *dev, uint64_t from, uint64_t to, struct nbdc_error *err)
{
  enum { CHUNK = 65536 };
  uint8_t buf[CHUNK];
  int r = 0;
  for (uint64_t off = from; off < to && r == 0;) {
    size_t n = to - off < CHUNK ? (size_t)(to - off) : CHUNK;
    r = crypto_random(buf, n, err);
    if (r == 0)
      r = bdev_pwrite(dev, buf, n, off, err);
    off += n;
  }
  if (r == 0)
    r = bdev_flush(dev, err);
  return r;
}

int volume_convert_luks1(struct volume *vol, struct bdev *dev, struct keys_provider *provider,
                         const char *kek_id, bool kms_wrapped, const uint8_t *passphrase,
                         size_t passphrase_len, int *kek_keyslot, bool *converted,
                         struct nbdc_error *err)
{
  *converted = false;
  const struct luks1_hdr *h = volume_luks1(vol);
  if (!h)
    return nbdc_error_set(err, EINVAL, "disk %s is not LUKS1", volume_uuid(vol));
  size_t key_len;
  const uint8_t *key = volume_key(vol, &key_len);
  uint64_t payload = luks1_payload_offset(h);
  uint64_t area = af_split_sectors_bytes(key_len, LUKS2_STRIPES);
  area = (area + CONVERT_ALIGN - 1) / CONVERT_ALIGN * CONVERT_ALIGN;
  /* Two header copies, the KEK keyslot and the passphrase keyslot; and the
   * LUKS1 keyslot kept through the conversion beyond them. */
  uint64_t need = 2 * CONVERT_HDR_SIZE + 2 * area;
  if (payload % CONVERT_ALIGN)
    return nbdc_error_set(err, EINVAL,
                          "LUKS1 disk %s: payload offset %" PRIu64
                          " is not a multiple of 4096, which LUKS2 needs; not converted",
                          volume_uuid(vol), payload);
  if (payload < need + luks1_key_material_size(h))
    return nbdc_error_set(err, ENOSPC,
                          "LUKS1 disk %s: payload offset %" PRIu64
                          " leaves too little room for LUKS2 metadata (%" PRIu64
                          " bytes of headers and keyslots, plus the LUKS1 keyslot kept during "
                          "the conversion); not converted",
                          volume_uuid(vol), payload, need);

  /* Only [0, need) of it is written: a large payload offset costs no more. */
  uint64_t staging_size = payload < need + CONVERT_ALIGN ? payload : need + CONVERT_ALIGN;
  struct bdev *staging = NULL;
  struct luks2_hdr *hdr = NULL;
  int r = bdev_open_memory(staging_size, &staging, err);
  if (r < 0)
    return r;

  /* 1. The LUKS2 metadata, on the staging device. */
  struct luks2_format_params params = {
      .uuid = volume_uuid(vol),
      .volume_key_size = key_len,
      .sector_size = LUKS1_SECTOR_SIZE,
      .hdr_size = CONVERT_HDR_SIZE,
      .data_offset = payload,
  };
  int slot = -1, pslot = -1;
  struct kdf_params kdf = {.type = KDF_PBKDF2,
                           .iterations = h->keyslots[volume_keyslot(vol)].iterations,
                           .salt_len = LUKS1_SALT_SIZE};
  snprintf(kdf.hash, sizeof kdf.hash, "%s", h->hash_spec);
  r = luks2_format(&params, key, key_len, &hdr, err);
  if (r == 0)
    r = volume_bind_key(hdr, staging, key, key_len, provider, kek_id, kms_wrapped, &slot, err);
  if (r == 0) /* the passphrase stays, in a LUKS2 keyslot of the same hash and cost */
    r = luks2_keyslot_add(hdr, staging, -1, key, key_len, passphrase, passphrase_len, &kdf, &pslot,
                          err);
  if (r == 0)
    r = luks2_write(staging, hdr, err);
  if (r < 0) {
    nbdc_error_prefix(err, "LUKS1 disk %s: building the LUKS2 header", volume_uuid(vol));
    goto out;
  }
  uint64_t end = 2 * CONVERT_HDR_SIZE;
  int ids[LUKS2_MAX_KEYSLOTS];
  size_t n = luks2_keyslot_list(hdr, ids, LUKS2_MAX_KEYSLOTS);
  for (size_t i = 0; i < n; i++) {
    struct luks2_keyslot_info ki;
    if (luks2_keyslot_info(hdr, ids[i], &ki) == 0 && ki.area_offset + ki.area_size > end)
      end = ki.area_offset + ki.area_size;
  }

  /* 2. The LUKS1 keyslot that opened moves beyond [0, end) if need be. */
  struct luks1_hdr *h1 = (struct luks1_hdr *)h;
  int kept = -1;
  if ((r = luks1_keep_keyslot_above(dev, h1, volume_keyslot(vol), end, &kept, err)) < 0) {
    nbdc_error_prefix(err, "LUKS1 disk %s: not converted", volume_uuid(vol));
    goto out;
  }
  /* 3. Keyslot areas, the secondary header, the primary's JSON area: none of
   * it touches the phdr or the kept keyslot, so the disk is still LUKS1. */
  r = copy_range(staging, dev, 2 * CONVERT_HDR_SIZE, end, err);
  if (r == 0)
    r = copy_range(staging, dev, CONVERT_HDR_SIZE, 2 * CONVERT_HDR_SIZE, err);
  if (r == 0)
    r = copy_range(staging, dev, LUKS2_BIN_HDR_SIZE, CONVERT_HDR_SIZE, err);
  if (r < 0) {
    nbdc_error_prefix(err,
                      "LUKS1 disk %s: writing LUKS2 metadata (the disk is still LUKS1, "
                      "its LUKS1 keyslot %d opens it)",
                      volume_uuid(vol), kept);
    goto out;
  }
  /* 4. The switch: the first sector (LUKS2 magic, version 2) replaces the
   * phdr's; from here the disk is LUKS2, from the secondary copy until the
   * rest of the primary binary header is written. */
  *converted = true;
  r = copy_range(staging, dev, 0, LUKS1_SECTOR_SIZE, err);
  if (r == 0)
    r = copy_range(staging, dev, LUKS1_SECTOR_SIZE, LUKS2_BIN_HDR_SIZE, err);
  if (r < 0) {
    nbdc_error_prefix(err,
                      "LUKS1 disk %s: writing the primary LUKS2 header (its secondary copy "
                      "is complete)",
                      volume_uuid(vol));
    goto out;
  }
  /* 5. The LUKS1 key material left beyond the LUKS2 keyslots is wiped. */
  uint64_t old_end = end;
  for (int i = 0; i < LUKS1_NUM_KEYS; i++) {
    uint64_t e = (uint64_t)h1->keyslots[i].key_material_offset * LUKS1_SECTOR_SIZE +
                 luks1_key_material_size(h1);
    if (e > old_end)
      old_end = e;
  }
  if (old_end > payload)
    old_end = payload;
  if ((r = wipe_range(dev, end, old_end, err)) < 0)
    nbdc_error_prefix(err, "disk %s is LUKS2 now, but wiping the old LUKS1 key material failed",
                      volume_uuid(vol));
  if (r == 0 && kek_keyslot)
    *kek_keyslot = slot;
out:
  luks2_free(hdr);
  bdev_close(staging);
  return r;
}
