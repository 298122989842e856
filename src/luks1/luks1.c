/* LUKS1 phdr parsing and keyslot unlocking (include/nbdcrypt/luks1.h).
 * The phdr comes from a disk an attacker may have written: every field is
 * checked before it sizes a read or an allocation. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "nbdcrypt/crypto.h"
#include "nbdcrypt/luks1.h"

/* Offsets within the phdr (big-endian integers). */
enum {
  OFF_MAGIC = 0,
  OFF_VERSION = 6,
  OFF_CIPHER_NAME = 8,
  OFF_CIPHER_MODE = 40,
  OFF_HASH_SPEC = 72,
  OFF_PAYLOAD = 104,
  OFF_KEY_BYTES = 108,
  OFF_MK_DIGEST = 112,
  OFF_MK_SALT = 132,
  OFF_MK_ITER = 164,
  OFF_UUID = 168,
  OFF_KEYBLOCK = 208,
  KEYBLOCK_SIZE = 48,
  KB_ACTIVE = 0,
  KB_ITER = 4,
  KB_SALT = 8,
  KB_OFFSET = 40,
  KB_STRIPES = 44,
};

static const uint8_t luks_magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};

static uint32_t get_be32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

bool luks1_detect(const uint8_t *buf, size_t len)
{
  return len >= 8 && memcmp(buf + OFF_MAGIC, luks_magic, sizeof luks_magic) == 0 &&
         buf[OFF_VERSION] == 0 && buf[OFF_VERSION + 1] == 1;
}

static bool get_text(const uint8_t *buf, size_t off, size_t len, char *out)
{
  if (!memchr(buf + off, '\0', len))
    return false;
  memcpy(out, buf + off, len);
  return true;
}

uint64_t luks1_key_material_size(const struct luks1_hdr *hdr)
{
  uint64_t n = (uint64_t)hdr->key_bytes * LUKS1_STRIPES;
  return (n + LUKS1_SECTOR_SIZE - 1) / LUKS1_SECTOR_SIZE * LUKS1_SECTOR_SIZE;
}

uint64_t luks1_payload_offset(const struct luks1_hdr *hdr)
{
  return (uint64_t)hdr->payload_offset * LUKS1_SECTOR_SIZE;
}

int luks1_active_keyslots(const struct luks1_hdr *hdr)
{
  int n = 0;
  for (int i = 0; i < LUKS1_NUM_KEYS; i++)
    n += hdr->keyslots[i].active;
  return n;
}

int luks1_parse(const uint8_t *buf, size_t len, struct luks1_hdr *out, struct nbdc_error *err)
{
  memset(out, 0, sizeof *out);
  if (len < 8 || memcmp(buf + OFF_MAGIC, luks_magic, sizeof luks_magic) != 0)
    return nbdc_error_set(err, ENODATA, "no LUKS header");
  unsigned version = (unsigned)buf[OFF_VERSION] << 8 | buf[OFF_VERSION + 1];
  if (version != 1)
    return nbdc_error_set(err, ENODATA, "LUKS version %u, not LUKS1", version);
  if (len < LUKS1_PHDR_SIZE)
    return nbdc_error_set(err, EINVAL, "LUKS1 header truncated: %zu of %d bytes", len,
                          LUKS1_PHDR_SIZE);

  if (!get_text(buf, OFF_CIPHER_NAME, LUKS1_NAME_SIZE, out->cipher_name))
    return nbdc_error_set(err, EINVAL, "LUKS1 header: cipher name not NUL-terminated");
  if (!get_text(buf, OFF_CIPHER_MODE, LUKS1_NAME_SIZE, out->cipher_mode))
    return nbdc_error_set(err, EINVAL, "LUKS1 header: cipher mode not NUL-terminated");
  if (!get_text(buf, OFF_HASH_SPEC, LUKS1_NAME_SIZE, out->hash_spec))
    return nbdc_error_set(err, EINVAL, "LUKS1 header: hash spec not NUL-terminated");
  if (!get_text(buf, OFF_UUID, LUKS1_UUID_SIZE, out->uuid))
    return nbdc_error_set(err, EINVAL, "LUKS1 header: uuid not NUL-terminated");
  snprintf(out->cipher, sizeof out->cipher, "%s-%s", out->cipher_name, out->cipher_mode);
  out->payload_offset = get_be32(buf + OFF_PAYLOAD);
  out->key_bytes = get_be32(buf + OFF_KEY_BYTES);
  memcpy(out->mk_digest, buf + OFF_MK_DIGEST, LUKS1_DIGEST_SIZE);
  memcpy(out->mk_digest_salt, buf + OFF_MK_SALT, LUKS1_SALT_SIZE);
  out->mk_digest_iterations = get_be32(buf + OFF_MK_ITER);

  if (strcmp(out->cipher_name, "aes") != 0 || strcmp(out->cipher_mode, "xts-plain64") != 0)
    return nbdc_error_set(err, EINVAL,
                          "LUKS1 header: cipher %s-%s not supported (only aes-xts-plain64)",
                          out->cipher_name, out->cipher_mode);
  if (out->key_bytes != 32 && out->key_bytes != 64)
    return nbdc_error_set(err, EINVAL,
                          "LUKS1 header: key size %" PRIu32
                          " bytes not supported for aes-xts-plain64 (32 or 64)",
                          out->key_bytes);
  size_t hlen = crypto_hash_size(out->hash_spec);
  if (hlen < LUKS1_DIGEST_SIZE)
    return nbdc_error_set(err, EINVAL, "LUKS1 header: hash spec '%s' not supported",
                          out->hash_spec);
  if (out->mk_digest_iterations == 0)
    return nbdc_error_set(err, EINVAL, "LUKS1 header: master key digest iterations is 0");
  if (out->payload_offset == 0)
    return nbdc_error_set(err, EINVAL,
                          "LUKS1 header: payload offset 0 (a detached header; its data is on "
                          "another device)");

  uint64_t material = luks1_key_material_size(out);
  uint64_t payload = luks1_payload_offset(out);
  for (int i = 0; i < LUKS1_NUM_KEYS; i++) {
    const uint8_t *kb = buf + OFF_KEYBLOCK + i * KEYBLOCK_SIZE;
    struct luks1_keyslot *ks = &out->keyslots[i];
    uint32_t state = get_be32(kb + KB_ACTIVE);
    if (state != LUKS1_KEY_ENABLED && state != LUKS1_KEY_DISABLED)
      return nbdc_error_set(err, EINVAL,
                            "LUKS1 header: keyslot %d state 0x%08" PRIx32
                            " is neither enabled nor disabled",
                            i, state);
    ks->active = state == LUKS1_KEY_ENABLED;
    ks->iterations = get_be32(kb + KB_ITER);
    memcpy(ks->salt, kb + KB_SALT, LUKS1_SALT_SIZE);
    ks->key_material_offset = get_be32(kb + KB_OFFSET);
    ks->stripes = get_be32(kb + KB_STRIPES);
    /* Inactive keyslots keep their layout too (cryptsetup checks both). */
    if (ks->stripes != LUKS1_STRIPES)
      return nbdc_error_set(err, EINVAL,
                            "LUKS1 header: keyslot %d has %" PRIu32 " stripes, expected %d", i,
                            ks->stripes, LUKS1_STRIPES);
    uint64_t start = (uint64_t)ks->key_material_offset * LUKS1_SECTOR_SIZE;
    if (start < LUKS1_PHDR_SIZE)
      return nbdc_error_set(err, EINVAL,
                            "LUKS1 header: keyslot %d key material at sector %" PRIu32
                            " overlaps the header",
                            i, ks->key_material_offset);
    if (start + material > payload)
      return nbdc_error_set(err, EINVAL,
                            "LUKS1 header: keyslot %d key material (sectors %" PRIu32 "..%" PRIu64
                            ") reaches past the payload offset %" PRIu32,
                            i, ks->key_material_offset, (start + material) / LUKS1_SECTOR_SIZE - 1,
                            out->payload_offset);
    for (int j = 0; j < i; j++) {
      uint64_t other = (uint64_t)out->keyslots[j].key_material_offset * LUKS1_SECTOR_SIZE;
      if (start < other + material && other < start + material)
        return nbdc_error_set(err, EINVAL,
                              "LUKS1 header: key material of keyslots %d and %d overlaps", j, i);
    }
    if (ks->active && ks->iterations == 0)
      return nbdc_error_set(err, EINVAL, "LUKS1 header: keyslot %d iterations is 0", i);
  }
  return 0;
}

int luks1_load(struct bdev *dev, struct luks1_hdr *out, struct nbdc_error *err)
{
  uint8_t buf[LUKS1_PHDR_SIZE];
  uint64_t dev_size;
  int r = bdev_get_size(dev, &dev_size, err);
  if (r < 0)
    return r;
  if (dev_size < 8)
    return nbdc_error_set(err, ENODATA, "no LUKS header (device of %" PRIu64 " bytes)", dev_size);
  size_t n = dev_size < sizeof buf ? (size_t)dev_size : sizeof buf;
  if ((r = bdev_pread(dev, buf, n, 0, err)) < 0)
    return r;
  if ((r = luks1_parse(buf, n, out, err)) < 0)
    return r;
  if (dev_size < luks1_payload_offset(out))
    return nbdc_error_set(err, EINVAL,
                          "LUKS1 disk %s is truncated: %" PRIu64
                          " bytes, but its data starts at %" PRIu64,
                          out->uuid, dev_size, luks1_payload_offset(out));
  return 0;
}

int luks1_mk_verify(const struct luks1_hdr *hdr, const uint8_t *mk, size_t mk_len,
                    struct nbdc_error *err)
{
  uint8_t digest[LUKS1_DIGEST_SIZE];
  int r = kdf_pbkdf2(hdr->hash_spec, mk, mk_len, hdr->mk_digest_salt, LUKS1_SALT_SIZE,
                     hdr->mk_digest_iterations, digest, sizeof digest, err);
  if (r < 0)
    return r;
  bool ok = crypto_memeq(digest, hdr->mk_digest, sizeof digest);
  nbdc_wipe(digest, sizeof digest);
  return ok ? 0 : nbdc_error_set(err, EPERM, "master key digest mismatch");
}

/* One keyslot: 0 with *mk filled, -EPERM for a wrong passphrase, or another
 * error (device, memory). */
static int open_one(const struct luks1_hdr *hdr, struct bdev *dev, int slot, const uint8_t *secret,
                    size_t secret_len, uint8_t *mk, struct nbdc_error *err)
{
  const struct luks1_keyslot *ks = &hdr->keyslots[slot];
  size_t kb = hdr->key_bytes;
  size_t material = (size_t)luks1_key_material_size(hdr);
  uint8_t *derived = secmem_alloc(kb);
  uint8_t *split = secmem_alloc(material);
  struct xts_ctx *xts = NULL;
  int r;
  if (!derived || !split) {
    r = nbdc_error_set(err, errno ? errno : ENOMEM, "cannot allocate secure memory: %s",
                       strerror(errno ? errno : ENOMEM));
    goto out;
  }
  r = kdf_pbkdf2(hdr->hash_spec, secret, secret_len, ks->salt, LUKS1_SALT_SIZE, ks->iterations,
                 derived, kb, err);
  if (r == 0)
    r = bdev_pread(dev, split, material, (uint64_t)ks->key_material_offset * LUKS1_SECTOR_SIZE,
                   err);
  if (r == 0)
    r = xts_new(&xts, derived, kb, LUKS1_SECTOR_SIZE, err);
  if (r == 0)
    r = xts_decrypt(xts, split, split, material, 0, err);
  if (r == 0)
    r = af_merge(split, kb, LUKS1_STRIPES, hdr->hash_spec, mk, err);
  if (r == 0)
    r = luks1_mk_verify(hdr, mk, kb, err);
  if (r == -EPERM)
    nbdc_error_set(err, EPERM, "keyslot %d: wrong passphrase", slot);
out:
  xts_free(xts);
  secmem_free(derived, kb);
  secmem_free(split, material);
  crypto_wipe_cpu_registers();
  return r;
}

int luks1_keyslot_open(const struct luks1_hdr *hdr, struct bdev *dev, int keyslot,
                       const uint8_t *secret, size_t secret_len, uint8_t **mk, size_t *mk_len,
                       int *opened, struct nbdc_error *err)
{
  *mk = NULL;
  if (keyslot >= LUKS1_NUM_KEYS)
    return nbdc_error_set(err, ENOENT, "keyslot %d does not exist (LUKS1 has keyslots 0..7)",
                          keyslot);
  if (keyslot >= 0 && !hdr->keyslots[keyslot].active)
    return nbdc_error_set(err, ENOENT, "keyslot %d is not active", keyslot);
  if (luks1_active_keyslots(hdr) == 0)
    return nbdc_error_set(err, ENOKEY, "no active keyslot");
  uint8_t *key = secmem_alloc(hdr->key_bytes);
  if (!key)
    return nbdc_error_set(err, errno, "cannot allocate secure memory: %s", strerror(errno));
  int r = -EPERM;
  for (int i = keyslot >= 0 ? keyslot : 0; i < LUKS1_NUM_KEYS; i++) {
    if (!hdr->keyslots[i].active)
      continue;
    r = open_one(hdr, dev, i, secret, secret_len, key, err);
    if (r == 0) {
      *mk = key;
      *mk_len = hdr->key_bytes;
      if (opened)
        *opened = i;
      return 0;
    }
    if (r != -EPERM || keyslot >= 0)
      break;
  }
  secmem_free(key, hdr->key_bytes);
  if (r == -EPERM && keyslot < 0)
    nbdc_error_set(err, EPERM, "no keyslot matches the passphrase");
  return r;
}

static void put_be32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

int luks1_keep_keyslot_above(struct bdev *dev, struct luks1_hdr *hdr, int keyslot, uint64_t above,
                             int *moved_to, struct nbdc_error *err)
{
  uint64_t material = luks1_key_material_size(hdr);
  const struct luks1_keyslot *ks = &hdr->keyslots[keyslot];
  uint64_t start = (uint64_t)ks->key_material_offset * LUKS1_SECTOR_SIZE;
  int to = keyslot;
  if (start < above) {
    to = -1;
    for (int i = 0; i < LUKS1_NUM_KEYS && to < 0; i++)
      if (!hdr->keyslots[i].active &&
          (uint64_t)hdr->keyslots[i].key_material_offset * LUKS1_SECTOR_SIZE >= above)
        to = i;
    if (to < 0)
      return nbdc_error_set(err, ENOSPC,
                            "no inactive LUKS1 keyslot has its key material at or beyond byte "
                            "%" PRIu64 " to keep keyslot %d usable while converting; remove a "
                            "keyslot first (cryptsetup luksKillSlot)",
                            above, keyslot);
  }
  uint8_t phdr[LUKS1_PHDR_SIZE];
  int r = bdev_pread(dev, phdr, sizeof phdr, 0, err);
  if (r < 0)
    return r;
  struct luks1_hdr check;
  if ((r = luks1_parse(phdr, sizeof phdr, &check, err)) < 0)
    return nbdc_error_prefix(err, "re-reading the LUKS1 header");
  if (memcmp(&check, hdr, sizeof check) != 0)
    return nbdc_error_set(err, EBUSY,
                          "the LUKS1 header changed since it was read; nothing written");

  bool changed = false;
  if (to != keyslot) {
    /* Copy the key material (its IVs count sectors from its own start, so it
     * is position-independent), make it durable, then point the phdr at it. */
    uint8_t *buf = secmem_alloc((size_t)material);
    if (!buf)
      return nbdc_error_set(err, errno, "cannot allocate secure memory: %s", strerror(errno));
    uint64_t dst = (uint64_t)hdr->keyslots[to].key_material_offset * LUKS1_SECTOR_SIZE;
    r = bdev_pread(dev, buf, (size_t)material, start, err);
    if (r == 0)
      r = bdev_pwrite(dev, buf, (size_t)material, dst, err);
    if (r == 0)
      r = bdev_flush(dev, err);
    secmem_free(buf, (size_t)material);
    if (r < 0)
      return nbdc_error_prefix(err, "copying LUKS1 keyslot %d to keyslot %d", keyslot, to);
    uint8_t *from_kb = phdr + OFF_KEYBLOCK + keyslot * KEYBLOCK_SIZE;
    uint8_t *to_kb = phdr + OFF_KEYBLOCK + to * KEYBLOCK_SIZE;
    memcpy(to_kb + KB_ACTIVE, from_kb + KB_ACTIVE, KB_OFFSET - KB_ACTIVE); /* state, iter, salt */
    put_be32(from_kb + KB_ACTIVE, LUKS1_KEY_DISABLED);
    put_be32(from_kb + KB_ITER, 0);
    memset(from_kb + KB_SALT, 0, LUKS1_SALT_SIZE);
    changed = true;
  }
  /* Other active keyslots whose material the LUKS2 metadata will overwrite
   * go now, so the LUKS1 header never points at overwritten material. */
  for (int i = 0; i < LUKS1_NUM_KEYS; i++) {
    if (i == keyslot || i == to || !hdr->keyslots[i].active ||
        (uint64_t)hdr->keyslots[i].key_material_offset * LUKS1_SECTOR_SIZE >= above)
      continue;
    uint8_t *kb = phdr + OFF_KEYBLOCK + i * KEYBLOCK_SIZE;
    put_be32(kb + KB_ACTIVE, LUKS1_KEY_DISABLED);
    put_be32(kb + KB_ITER, 0);
    memset(kb + KB_SALT, 0, LUKS1_SALT_SIZE);
    changed = true;
  }
  if (changed) {
    if ((r = bdev_pwrite(dev, phdr, sizeof phdr, 0, err)) == 0)
      r = bdev_flush(dev, err);
    if (r < 0)
      return nbdc_error_prefix(err, "writing the LUKS1 header");
    if ((r = luks1_parse(phdr, sizeof phdr, hdr, err)) < 0)
      return r;
  }
  *moved_to = to;
  return 0;
}
