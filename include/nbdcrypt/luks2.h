/* nbdcrypt LUKS2 module (src/luks2): the on-disk container, compatible with
 * cryptsetup 2.6 both ways (reference/luks2.md).  Binary header and checksums,
 * JSON validated once at load, keyslots (pbkdf2/argon2i/argon2id, AF 4000
 * stripes, area aes-xts-plain64), pbkdf2 digests, tokens, segments.
 * Knows blockdev and crypto; nothing of key providers or nbdkit.
 * A luks2_hdr is not thread-safe. */
#ifndef NBDCRYPT_LUKS2_H
#define NBDCRYPT_LUKS2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/error.h"

struct json_object;
struct luks2_hdr;

#define LUKS2_BIN_HDR_SIZE        4096
#define LUKS2_MAX_KEYSLOTS        32
#define LUKS2_MAX_TOKENS          32
#define LUKS2_MAX_SEGMENTS        32
#define LUKS2_MAX_DIGESTS         8
#define LUKS2_STRIPES             4000
#define LUKS2_DEFAULT_HDR_SIZE    16384
#define LUKS2_DEFAULT_DATA_OFFSET (16u * 1024 * 1024)

/* ---- load / write (src/luks2/disk.c) ------------------------------------- */

/* Read both header copies (primary at 0; secondary at hdr_size, or searched at
 * each allowed size when the primary is unusable), verify checksums, take the
 * valid copy with the higher seqid, and validate its JSON (reference/luks2.md
 * "JSON rules"; cipher, key size and sector size allow-listed).
 * Errors: -ENODATA "no LUKS2 header" (not LUKS, or LUKS1), -EINVAL corrupt or
 * disallowed header (message names the field), -EIO device errors.
 * A copy that is corrupt while the other is good loads with a warning (see
 * luks2_load_warning) and is repaired by the next luks2_write. */
int luks2_load(struct bdev *dev, struct luks2_hdr **out, struct nbdc_error *err);

/* The warning recorded at load, e.g. "secondary header copy at offset 16384:
 * checksum mismatch"; NULL when both copies were good. */
const char *luks2_load_warning(const struct luks2_hdr *hdr);

void luks2_free(struct luks2_hdr *hdr);

/* Commit: seqid+1, then primary and secondary copies (csum 0, JSON area,
 * checksum, header), each followed by a flush; the device is locked
 * exclusively (bdev_lock: flock for files) for the duration; the lock nests,
 * so a caller that holds it from luks2_load on keeps it.  Keyslot areas of
 * removed keyslots are wiped after the new header is durable.
 * Compare-and-swap: a header loaded from the device (not one fresh from
 * luks2_format) is written only if the device still holds the seqid and
 * uuid it was loaded with; else -EBUSY "concurrent LUKS2 metadata update:
 * seqid of IMAGE moved from X to Y since it was loaded; nothing written"
 * and the device is untouched.  A change is thus: bdev_lock, luks2_load,
 * change, luks2_write, bdev_unlock. */
int luks2_write(struct bdev *dev, struct luks2_hdr *hdr, struct nbdc_error *err);

/* ---- new containers (src/luks2/format.c) --------------------------------- */

struct luks2_format_params {
  const char *label;      /* NULL: empty */
  const char *uuid;       /* NULL: a random UUID */
  size_t volume_key_size; /* 64 (AES-256-XTS) or 32 */
  uint32_t sector_size;   /* power of two in 512..4096 */
  uint64_t hdr_size;      /* 0: 16384; one of the nine allowed sizes */
  uint64_t data_offset;   /* 0: 16 MiB; keyslots area = [2*hdr_size, data_offset) */
  uint64_t data_size;     /* 0: "dynamic" (to the end of the device) */
};

/* Build an in-memory header: config, one aes-xts-plain64 data segment,
 * a pbkdf2-sha256 digest of vk, no keyslots or tokens.  Nothing is written
 * until luks2_write. */
int luks2_format(const struct luks2_format_params *params, const uint8_t *vk, size_t vk_len,
                 struct luks2_hdr **out, struct nbdc_error *err);

/* ---- accessors (src/luks2/hdr.c) ----------------------------------------- */

const char *luks2_uuid(const struct luks2_hdr *hdr);
const char *luks2_label(const struct luks2_hdr *hdr);
uint64_t luks2_hdr_size(const struct luks2_hdr *hdr); /* one copy: binary + JSON area */
uint64_t luks2_seqid(const struct luks2_hdr *hdr);
uint64_t luks2_keyslots_size(const struct luks2_hdr *hdr);

/* The validated metadata JSON, borrowed.  Read-only for callers: change it
 * only through this API. */
struct json_object *luks2_metadata(const struct luks2_hdr *hdr);

struct luks2_segment {
  int id;
  uint64_t offset; /* bytes from the start of the device */
  uint64_t size;   /* bytes; 0 when dynamic */
  bool dynamic;
  uint64_t iv_tweak; /* 512-byte units */
  uint32_t sector_size;
  char cipher[32]; /* "aes-xts-plain64" */
};

/* The data segment of a plain (not mid-reencryption) container: exactly one
 * crypt segment.  -EINVAL with a message otherwise.  A detached header (see
 * luks2_detached_header) is refused too, since its data is not on this
 * device, but *out is filled for display. */
int luks2_data_segment(const struct luks2_hdr *hdr, struct luks2_segment *out,
                       struct nbdc_error *err);
/* The same for a header kept apart from its data (cryptsetup --header): the
 * segment's offset counts from the start of the data device, so offset 0
 * (the usual) is accepted, as is any other. */
int luks2_data_segment_detached(const struct luks2_hdr *hdr, struct luks2_segment *out,
                                struct nbdc_error *err);

/* True when a crypt segment starts at offset 0: a cryptsetup detached header
 * (--header), whose data lives on another device.  Such a header loads (as
 * in cryptsetup) but is never served from the device that holds it: the data
 * would overwrite the header. */
bool luks2_detached_header(const struct luks2_hdr *hdr);

/* Volume key size in bytes (from the keyslots/digest of the data segment). */
size_t luks2_volume_key_size(const struct luks2_hdr *hdr);

/* Mandatory requirement flags (config.requirements.mandatory).  Returns the
 * count; names[i] borrowed from hdr.  */
size_t luks2_requirements(const struct luks2_hdr *hdr, const char *names[], size_t max);
int luks2_requirement_set(struct luks2_hdr *hdr, const char *name, bool present,
                          struct nbdc_error *err);

/* ---- keyslots (src/luks2/keyslot.c) -------------------------------------- */

struct luks2_keyslot_info {
  int id;
  char type[16]; /* "luks2" ... */
  size_t key_size;
  int priority; /* 0 ignore, 1 normal, 2 high */
  char kdf[16]; /* "pbkdf2", "argon2i", "argon2id" */
  uint64_t area_offset;
  uint64_t area_size;
  int digest; /* id of the digest (volume key) it is assigned to; -1 none */
};

/* Fill info for keyslot id; -ENOENT if none. */
int luks2_keyslot_info(const struct luks2_hdr *hdr, int id, struct luks2_keyslot_info *info);

/* KDF parameters (type, costs, salt) of luks2 keyslot id, e.g. to protect
 * another key with the same secret at the same cost.  -ENOENT if none. */
int luks2_keyslot_kdf(const struct luks2_hdr *hdr, int id, struct kdf_params *out,
                      struct nbdc_error *err);

/* Ids of existing keyslots in ascending order; returns the count. */
size_t luks2_keyslot_list(const struct luks2_hdr *hdr, int ids[], size_t max);

/* Unlock: keyslot id, or -1 to try every keyslot (priority high, normal; never
 * "ignore" ones).  On success *vk is secure memory of *vk_len bytes that the
 * caller frees with secmem_free, and *opened (may be NULL) the slot used.
 * -EPERM "no keyslot matches the secret" (or "keyslot N: wrong secret"). */
int luks2_keyslot_open(const struct luks2_hdr *hdr, struct bdev *dev, int keyslot,
                       const uint8_t *secret, size_t secret_len, uint8_t **vk, size_t *vk_len,
                       int *opened, struct nbdc_error *err);

/* Add a luks2 keyslot protecting vk with secret: KDF (kdf->salt is filled with
 * fresh random bytes here), AF split into 4000 stripes, area encrypted with
 * aes-xts-plain64 and written to dev at the first free space of the keyslots
 * area, keyslot assigned to the digest of vk.  keyslot -1 = lowest free id.
 * Metadata is changed in memory only: commit with luks2_write. */
int luks2_keyslot_add(struct luks2_hdr *hdr, struct bdev *dev, int keyslot, const uint8_t *vk,
                      size_t vk_len, const uint8_t *secret, size_t secret_len,
                      const struct kdf_params *kdf, int *added, struct nbdc_error *err);

/* Remove keyslot id from the metadata (and from digests and tokens; a token
 * left with no keyslot is removed).  Its area is wiped by the next luks2_write,
 * after the header without it is durable. */
int luks2_keyslot_remove(struct luks2_hdr *hdr, int keyslot, struct nbdc_error *err);

/* Check vk against the data segment's digest: 0, or -EPERM. */
int luks2_digest_verify(const struct luks2_hdr *hdr, const uint8_t *vk, size_t vk_len,
                        struct nbdc_error *err);

/* ---- tokens (src/luks2/token.c) ------------------------------------------ */

/* Add a token (JSON object with "type" and "keyslots"; ownership passes to hdr
 * on success).  Validated like a loaded one ("luks2-" types reserved, keyslots
 * must exist, "nbdcrypt" tokens need provider, kek_id and mode).
 * token -1 = lowest free id.  In memory only: commit with luks2_write. */
int luks2_token_add(struct luks2_hdr *hdr, int token, struct json_object *json, int *added,
                    struct nbdc_error *err);
int luks2_token_remove(struct luks2_hdr *hdr, int token, struct nbdc_error *err);

/* Token id's JSON, borrowed; NULL if absent. */
struct json_object *luks2_token_get(const struct luks2_hdr *hdr, int token);

/* Next token id greater than after whose type equals type (NULL: any);
 * -1 when there is none.  Iterate with after = -1. */
int luks2_token_next(const struct luks2_hdr *hdr, int after, const char *type);

/* ---- segments and digests for re-encryption (src/luks2/segments.c) -------
 * Used by src/reencrypt to describe a disk half way through, in
 * cryptsetup's own shape (several crypt/linear segments, two digests). */

struct luks2_segment_spec {
  uint64_t offset;   /* bytes from the start of the data device */
  uint64_t size;     /* bytes; ignored when dynamic */
  bool dynamic;      /* only the last segment */
  bool crypt;        /* false: "linear" (plaintext) */
  uint64_t iv_tweak; /* crypt: 512-byte units */
  uint32_t sector_size;
  int digest; /* crypt: digest id of its key */
};

/* Add a pbkdf2-sha256 digest of vk assigned to no keyslot or segment yet;
 * *id receives its id.  In memory only. */
int luks2_digest_add(struct luks2_hdr *hdr, const uint8_t *vk, size_t vk_len, int *id,
                     struct nbdc_error *err);

/* Id of the digest vk matches, or -EPERM (another -errno, err filled, when a
 * digest cannot be checked). */
int luks2_digest_find(const struct luks2_hdr *hdr, const uint8_t *vk, size_t vk_len,
                      struct nbdc_error *err);

/* Replace all segments by specs[0..n) (ids 0..n-1 in that order) and the
 * digests' segment lists accordingly; the whole metadata is validated again
 * and left unchanged on error.  In memory only. */
int luks2_segments_set(struct luks2_hdr *hdr, const struct luks2_segment_spec *specs, size_t n,
                       struct nbdc_error *err);

#endif
