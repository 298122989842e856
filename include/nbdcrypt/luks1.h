/* nbdcrypt LUKS1 module (src/luks1): reading LUKS1 disks as cryptsetup 1.x,
 * `cryptsetup luksFormat --type luks1`, `qemu-img create -f luks` and
 * nbdkit's luks filter make them (the "LUKS1 On-Disk Format Specification",
 * version 1.2.3; docs/luks1.md).  The 592-byte phdr, its eight keyslots,
 * unlocking a keyslot with a passphrase or key file (PBKDF2 with the header's
 * hash, key material in the header's cipher, AF merge, master key digest).
 * Only aes-xts-plain64 is accepted.  Knows blockdev and crypto; nothing of
 * LUKS2, key providers or nbdkit.  Writes only for a conversion to LUKS2
 * (luks1_keep_keyslot_above). */
#ifndef NBDCRYPT_LUKS1_H
#define NBDCRYPT_LUKS1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/error.h"

#define LUKS1_PHDR_SIZE     592
#define LUKS1_NUM_KEYS      8
#define LUKS1_SALT_SIZE     32
#define LUKS1_DIGEST_SIZE   20
#define LUKS1_STRIPES       4000
#define LUKS1_SECTOR_SIZE   512
#define LUKS1_KEY_ENABLED   0x00AC71F3u
#define LUKS1_KEY_DISABLED  0x0000DEADu
#define LUKS1_NAME_SIZE     32
#define LUKS1_UUID_SIZE     40
#define LUKS1_KEYSLOT_ALIGN 4096 /* bytes: cryptsetup and qemu align key material */

struct luks1_keyslot {
  bool active;
  uint32_t iterations;
  uint8_t salt[LUKS1_SALT_SIZE];
  uint32_t key_material_offset; /* 512-byte sectors */
  uint32_t stripes;
};

struct luks1_hdr {
  char cipher_name[LUKS1_NAME_SIZE]; /* "aes" */
  char cipher_mode[LUKS1_NAME_SIZE]; /* "xts-plain64" */
  char hash_spec[LUKS1_NAME_SIZE];   /* "sha256", "sha1", ... */
  char cipher[2 * LUKS1_NAME_SIZE];  /* "aes-xts-plain64" */
  uint32_t payload_offset;           /* 512-byte sectors */
  uint32_t key_bytes;
  uint8_t mk_digest[LUKS1_DIGEST_SIZE];
  uint8_t mk_digest_salt[LUKS1_SALT_SIZE];
  uint32_t mk_digest_iterations;
  char uuid[LUKS1_UUID_SIZE];
  struct luks1_keyslot keyslots[LUKS1_NUM_KEYS];
};

/* True when buf (len bytes from offset 0 of a disk) starts with the LUKS
 * magic and version 1. */
bool luks1_detect(const uint8_t *buf, size_t len);

/* Parse and validate a phdr (buf: at least LUKS1_PHDR_SIZE bytes): magic,
 * version 1, NUL-terminated names, cipher aes-xts-plain64 with a 32- or
 * 64-byte key, a hash PBKDF2 and AF can use, digest iterations >= 1, each
 * keyslot enabled or disabled (nothing else), 4000 stripes, iterations >= 1,
 * key material after the phdr, before the payload and not overlapping
 * another keyslot's, a payload offset (0, a detached header, is refused).
 * -EINVAL with a message naming the field; -ENODATA when buf is not LUKS1. */
int luks1_parse(const uint8_t *buf, size_t len, struct luks1_hdr *out, struct nbdc_error *err);

/* Read the phdr from dev and parse it; a device shorter than the phdr or
 * than the payload offset is refused ("truncated"). */
int luks1_load(struct bdev *dev, struct luks1_hdr *out, struct nbdc_error *err);

/* Bytes of key material of one keyslot: key_bytes * stripes rounded up to
 * 512-byte sectors. */
uint64_t luks1_key_material_size(const struct luks1_hdr *hdr);

/* Byte offset of the encrypted data (payload_offset * 512). */
uint64_t luks1_payload_offset(const struct luks1_hdr *hdr);

/* Unlock keyslot (0..7, or -1: each active keyslot in turn) with secret:
 * PBKDF2-hash_spec(secret, salt, iterations), key material decrypted with
 * the header's cipher (IV = sector within the material), AF merge, then the
 * master key checked against mk_digest.  *mk is secure memory of *mk_len
 * (= key_bytes) bytes, freed with secmem_free; *opened (may be NULL) the
 * keyslot used.  -EPERM "no keyslot matches the passphrase" / "keyslot N:
 * wrong passphrase"; -ENOENT "keyslot N is not active". */
int luks1_keyslot_open(const struct luks1_hdr *hdr, struct bdev *dev, int keyslot,
                       const uint8_t *secret, size_t secret_len, uint8_t **mk, size_t *mk_len,
                       int *opened, struct nbdc_error *err);

/* Check mk against the header's master key digest: 0 or -EPERM. */
int luks1_mk_verify(const struct luks1_hdr *hdr, const uint8_t *mk, size_t mk_len,
                    struct nbdc_error *err);

/* Number of active keyslots. */
int luks1_active_keyslots(const struct luks1_hdr *hdr);

/* First step of a conversion to LUKS2, which overwrites [0, above): keep
 * active keyslot usable as a LUKS1 keyslot whose key material lies at or
 * beyond byte above.  If it lies below, its material is copied to the area
 * of the first inactive keyslot at or beyond above (flushed), then the phdr
 * is rewritten with that keyslot active (same iterations and salt) and the
 * old one disabled.  Every other active keyslot below above is disabled in
 * the same phdr write.  The phdr on dev must still equal hdr (-EBUSY else);
 * hdr is updated; *moved_to is the keyslot now holding the passphrase.  A
 * crash at any point leaves a LUKS1 disk that the passphrase opens.
 * -ENOSPC when no inactive keyslot lies far enough. */
int luks1_keep_keyslot_above(struct bdev *dev, struct luks1_hdr *hdr, int keyslot, uint64_t above,
                             int *moved_to, struct nbdc_error *err);

#endif
