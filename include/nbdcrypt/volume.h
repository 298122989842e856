/* nbdcrypt volume (src/volume): the glue between a LUKS2 container and the
 * key providers, shared by the CLI and the filter.  Token -> provider -> KEK
 * -> keyslot -> DEK; the KEK is wiped as soon as the keyslot is open, the DEK
 * stays in secure memory until volume_close. */
#ifndef NBDCRYPT_VOLUME_H
#define NBDCRYPT_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/blockdev.h"
#include "nbdcrypt/error.h"
#include "nbdcrypt/keys.h"
#include "nbdcrypt/luks2.h"

struct volume;

#define VOLUME_UUID_MAX 40 /* a disk uuid with its NUL */

struct volume_unlock_opts {
  const struct keys_config *cfg; /* providers for nbdcrypt tokens (may be NULL with a passphrase) */
  const uint8_t *passphrase;     /* non-NULL: unlock a passphrase keyslot instead of tokens */
  size_t passphrase_len;
  int keyslot; /* -1: any */
  /* Also open LUKS1 disks (passphrase or key file only; volume_hdr is then
   * NULL, see volume_luks1).  Without it a LUKS1 disk is refused with
   * -ENOTSUP "disk UUID is LUKS1; convert it to LUKS2 first (nbdcrypt enroll --convert)". */
  bool allow_luks1;
  /* dev holds a detached header (cryptsetup --header): its keyslots and
   * metadata only, the data segment being on another device, its offset
   * counted from that device's start (usually 0). */
  bool detached;
  bool keep_secret; /* keep the keyslot secret (a KEK, or the unwrapped secret) for
                       volume_secret: a caller that binds a new key to the same KEK
                       does not fetch it again */
  /* Optional: the provider a token names, opened (or found) by the caller
   * and borrowed (not closed); NULL: each token's provider is opened and
   * closed around its use. */
  int (*open_provider)(void *opaque, const char *name, struct keys_provider **out,
                       struct nbdc_error *err);
  void *provider_opaque;
};

/* Load and validate the header on dev and unlock the volume key.  A disk
 * with a requirement flag (mid re-encryption) is refused: -EBUSY "... is in
 * the middle of ...".  Error messages name the disk uuid, the provider, the
 * KEK id and the reason. */
int volume_open(struct bdev *dev, const struct volume_unlock_opts *opts, struct volume **out,
                struct nbdc_error *err);
void volume_close(struct volume *vol);
/* volume_open on a header the caller loaded already (under its lock): hdr is
 * the volume's from here on, also on failure. */
int volume_open_hdr(struct bdev *dev, struct luks2_hdr *hdr, const struct volume_unlock_opts *opts,
                    struct volume **out, struct nbdc_error *err);
/* Hand the volume's header to the caller (who frees it); the volume keeps
 * its key, but its header accessors must not be used after this. */
struct luks2_hdr *volume_release_hdr(struct volume *vol);
/* With keep_secret: the secret that opened the keyslot (borrowed secure
 * memory, NULL without keep_secret or for a passphrase), and whether the
 * token was kms-wrapped (then it is the unwrapped secret, not the KEK). */
const uint8_t *volume_secret(const struct volume *vol, size_t *len);
bool volume_kms_wrapped(const struct volume *vol);

/* The LUKS2 header; NULL for a LUKS1 disk (volume_luks1). */
const struct luks2_hdr *volume_hdr(const struct volume *vol);
struct luks2_hdr *volume_hdr_mut(struct volume *vol);
const struct luks2_segment *volume_segment(const struct volume *vol);

/* The LUKS1 header of a LUKS1 disk, else NULL.  Borrowed. */
struct luks1_hdr;
const struct luks1_hdr *volume_luks1(const struct volume *vol);
/* The disk's uuid, LUKS1 or LUKS2.  Borrowed. */
const char *volume_uuid(const struct volume *vol);

/* How the volume was unlocked: provider name and KEK id ("" for a
 * passphrase), and the keyslot opened.  Borrowed. */
const char *volume_provider(const struct volume *vol);
const char *volume_kek_id(const struct volume *vol);
int volume_keyslot(const struct volume *vol);

/* The volume key, borrowed secure memory, valid until volume_close. */
const uint8_t *volume_key(const struct volume *vol, size_t *len);

/* Bytes of data the volume exposes on a device of dev_size bytes (segment
 * size, or dev_size - offset for a dynamic segment; 0 if the device is too
 * small). -EINVAL when the device is smaller than the segment. */
int volume_data_size(const struct volume *vol, uint64_t dev_size, uint64_t *size,
                     struct nbdc_error *err);
/* The same check for a segment alone: what the filter, `nbdcrypt check` and
 * `nbdcrypt info` say of a segment that does not fit its data device of
 * dev_size bytes (it starts beyond its end, or its fixed size is longer than
 * what follows the offset): -EINVAL "disk UUID is truncated: ...". */
int volume_segment_data_size(const struct luks2_segment *seg, const char *uuid, uint64_t dev_size,
                             uint64_t *size, struct nbdc_error *err);

/* An XTS context for the data segment (one per thread). */
int volume_xts_new(const struct volume *vol, struct xts_ctx **out, struct nbdc_error *err);

struct volume_format_opts {
  const struct keys_config *cfg;
  const char *provider; /* NULL: the configuration's default */
  const char *kek_id;   /* NULL: create a new KEK in the provider */
  const char *kek_name; /* label for a new KEK (NULL: "nbdcrypt <uuid>") */
  const char *label;    /* LUKS2 label, may be NULL */
  uint32_t sector_size; /* 0: 4096 */
  bool kms_wrapped;     /* token mode kms-wrapped instead of kek */
  char *uuid_out;       /* non-NULL: receives the new disk's uuid (VOLUME_UUID_MAX bytes) */
};

/* Write a new LUKS2 header to dev: fresh random DEK, a keyslot bound to the
 * KEK (pbkdf2-sha256, 1000 iterations, the KEK or wrapped secret as keyslot
 * secret) and our token.  kek_id_out receives the KEK id used.  A KEK this
 * call created is destroyed again if a later step fails (the message says
 * so, or that it could not be and must be destroyed by hand).  The caller
 * checks first that dev holds nothing to keep (probe_signatures). */
int volume_format(struct bdev *dev, const struct volume_format_opts *opts,
                  char kek_id_out[KEYS_ID_MAX], struct nbdc_error *err);

/* A new volume in memory: a random volume key of params->volume_key_size
 * bytes and a LUKS2 header for it (luks2_format), no keyslot yet. */
int volume_create(const struct luks2_format_params *params, struct volume **out,
                  struct nbdc_error *err);

/* Add a keyslot and nbdcrypt token for KEK kek_id of provider to an open
 * volume (in memory; commit with luks2_write). */
int volume_bind_kek(struct volume *vol, struct bdev *dev, struct keys_provider *provider,
                    const char *kek_id, bool kms_wrapped, int *keyslot, struct nbdc_error *err);

/* Convert an open LUKS1 volume (volume_luks1) to LUKS2 in place, bound to
 * KEK kek_id of provider (a keyslot and nbdcrypt token, as volume_bind_kek)
 * and keeping passphrase (the one that opened vol) in a LUKS2 pbkdf2 keyslot
 * of the LUKS1 keyslot's hash and iterations.  The data does not move: the
 * LUKS2 segment starts at the payload offset (512-byte sectors, IV = sector
 * number, same volume key); the uuid stays.  Refused before anything is
 * written when the payload offset is not 4096-aligned or leaves too little
 * room (-EINVAL/-ENOSPC).  Crash-safe: the disk is a LUKS1 disk that the
 * passphrase opens until *converted is set, a LUKS2 disk after (docs/luks1.md).
 * The other LUKS1 keyslots are dropped; old key material is wiped last.
 * The caller holds the image's writer lock.  *kek_keyslot: the new keyslot. */
int volume_convert_luks1(struct volume *vol, struct bdev *dev, struct keys_provider *provider,
                         const char *kek_id, bool kms_wrapped, const uint8_t *passphrase,
                         size_t passphrase_len, int *kek_keyslot, bool *converted,
                         struct nbdc_error *err);

/* Lower-level pieces for code that manages several volume keys at once
 * (re-encryption).  volume_bind_key: as volume_bind_kek, for any volume key
 * key of key_len bytes whose digest hdr already holds.  volume_unlock_keyslot:
 * open keyslot through its nbdcrypt token (provider -> KEK or unwrap); *key is
 * secure memory the caller frees with secmem_free. */
int volume_bind_key(struct luks2_hdr *hdr, struct bdev *dev, const uint8_t *key, size_t key_len,
                    struct keys_provider *provider, const char *kek_id, bool kms_wrapped,
                    int *keyslot, struct nbdc_error *err);
/* volume_bind_key in mode kek with the KEK's bytes the caller holds already
 * (fetched once, for the unlock): its state is still checked. */
int volume_bind_key_kek(struct luks2_hdr *hdr, struct bdev *dev, const uint8_t *key, size_t key_len,
                        struct keys_provider *provider, const char *kek_id, const uint8_t *kek,
                        size_t kek_len, int *keyslot, struct nbdc_error *err);
int volume_unlock_keyslot(const struct luks2_hdr *hdr, struct bdev *dev,
                          const struct keys_config *cfg, int keyslot, uint8_t **key,
                          size_t *key_len, struct nbdc_error *err);

/* The KEK of each nbdcrypt token of hdr and its state in its provider, for
 * `nbdcrypt check`: up to max entries in out, *count of them filled.  A
 * token whose provider cannot say has state 0 and the reason in error.
 * Nothing is unlocked.  0, or -EINVAL without a configuration. */
struct volume_kek_status {
  int keyslot;
  char provider[KEYS_NAME_MAX];
  char kek_id[KEYS_ID_MAX];
  bool kms_wrapped;
  enum keys_kek_state state; /* 0: unknown, see error */
  char error[NBDC_ERROR_MAX];
};
int volume_kek_states(const struct luks2_hdr *hdr, const struct keys_config *cfg,
                      struct volume_kek_status *out, size_t max, size_t *count,
                      struct nbdc_error *err);

/* ---- one nbdcrypt token on its own (src/volume/token.c) ----------------------
 * For code that is handed a token's JSON text without the header around it:
 * cryptsetup's token plugin (plugins/cryptsetup-token). */
struct volume_token_info {
  int keyslot;                  /* the keyslot the token opens */
  char provider[KEYS_NAME_MAX]; /* provider name in the host's configuration */
  char kek_id[KEYS_ID_MAX];
  bool kms_wrapped; /* mode "kms-wrapped" (else "kek") */
};

/* Check the JSON text of one nbdcrypt token as strictly as nbdcrypt reads its
 * own: type "nbdcrypt", exactly one keyslot, provider and kek_id, mode "kek"
 * or "kms-wrapped" with wrapped/iv/tag (base64, iv 12 and tag 16 bytes) present
 * exactly in the latter; unknown fields are accepted.  info may be NULL.
 * -EINVAL with a message naming the field. */
int volume_token_check(const char *json_text, struct volume_token_info *info,
                       struct nbdc_error *err);

/* The keyslot secret the token json_text stands for, from the provider of cfg
 * it names: the KEK (mode kek) or the secret the provider unwraps (mode
 * kms-wrapped).  *secret is secure memory of *secret_len bytes, freed with
 * secmem_free.  info (may be NULL) is filled once the token has been parsed,
 * even if the provider then fails.  Errors: -EINVAL a bad token, else the
 * provider's: -ENOENT unknown provider or KEK, a network errno (ECONNREFUSED,
 * ETIMEDOUT, EHOSTUNREACH, ...) when no KMS server answers. */
int volume_token_secret(const char *json_text, const struct keys_config *cfg,
                        struct volume_token_info *info, uint8_t **secret, size_t *secret_len,
                        struct nbdc_error *err);

struct volume_rekey_opts {
  const struct keys_config *cfg;
  const char *provider; /* NULL: the configuration's default */
  const char *kek_id;   /* NULL: create a new KEK in the provider */
  bool kms_wrapped;     /* token mode of the new binding */
  bool detached;        /* dev is a detached header (as volume_unlock_opts) */
};

/* Shallow re-key: bind the volume key to a new KEK and unbind the old ones.
 * Step 1 adds a keyslot and token for the new KEK (one atomic header write)
 * and proves the new keyslot opens; step 2 removes every other KEK-bound
 * keyslot and its token (a second header write; areas wiped after it).
 * Passphrase keyslots (without an nbdcrypt token) are kept.  Safe while the
 * disk is served: data and volume key do not change.  Rerunning with the same
 * --kek after an interruption finishes the job.  kek_id_out receives the new
 * KEK id, *removed the number of keyslots removed. */
int volume_rekey(struct bdev *dev, const struct volume_rekey_opts *opts,
                 char kek_id_out[KEYS_ID_MAX], int *removed, struct nbdc_error *err);

/* ---- a volume session for a change (src/volume/session.c) -------------------
 * Open a volume for change once: volume_session_open takes the metadata lock
 * of dev (the header's device: a detached header, or the disk; an NBD export
 * has none and is guarded by the seqid check alone) and loads and validates
 * the LUKS2 header once.  Providers are opened once per name and role, each
 * KEK is fetched at most once (kept in secure memory, wiped by
 * volume_session_forget and volume_session_close).  The change is made in
 * memory and committed with volume_session_commit (luks2_write: refused with
 * -EBUSY "concurrent LUKS2 metadata update" when the header on dev changed
 * since it was loaded).  The caller holds the image locks. */
struct volume_session;
struct volume_session_opts {
  const struct keys_config *cfg;
  bool detached;    /* dev is a detached header (volume_unlock_opts.detached) */
  bool allow_luks1; /* also a LUKS1 disk (volume_unlock_opts.allow_luks1) */
};
int volume_session_open(struct bdev *dev, const struct volume_session_opts *opts,
                        struct volume_session **out, struct nbdc_error *err);
/* Unlock the volume key with a passphrase (non-NULL) or the nbdcrypt tokens,
 * on the header loaded by the open; the KEK that opened it is kept for
 * binds.  Errors as volume_open's. */
/* A session on a new volume instead (volume_create): fresh header in
 * memory, nothing read from dev; bind and commit as for an opened one. */
int volume_session_create(struct bdev *dev, const struct volume_session_opts *opts,
                          const struct luks2_format_params *params, struct volume_session **out,
                          struct nbdc_error *err);
int volume_session_unlock(struct volume_session *s, const uint8_t *passphrase,
                          size_t passphrase_len, int keyslot, struct nbdc_error *err);
/* Borrowed: the unlocked volume (NULL before), its LUKS2 header (NULL for a
 * LUKS1 disk) and the header's device. */
struct volume *volume_session_volume(struct volume_session *s);
struct luks2_hdr *volume_session_hdr(struct volume_session *s);
struct bdev *volume_session_dev(struct volume_session *s);
/* Provider name (NULL: the default) in role, opened on first use; borrowed. */
int volume_session_provider(struct volume_session *s, const char *name, enum keys_role role,
                            struct keys_provider **out, struct nbdc_error *err);
/* KEK kek_id of provider, fetched on first use; borrowed secure memory. */
int volume_session_kek(struct volume_session *s, struct keys_provider *provider, const char *kek_id,
                       const uint8_t **kek, size_t *len, struct nbdc_error *err);
/* Bind the volume key to kek_id (a keyslot and token, as volume_bind_kek),
 * in memory; the KEK comes from the session's cache. */
int volume_session_bind(struct volume_session *s, struct keys_provider *provider,
                        const char *kek_id, bool kms_wrapped, int *keyslot, struct nbdc_error *err);
/* Prove that keyslot (of the committed header) opens to the volume key. */
int volume_session_verify(struct volume_session *s, int keyslot, struct nbdc_error *err);
int volume_session_remove(struct volume_session *s, int keyslot, struct nbdc_error *err);
int volume_session_commit(struct volume_session *s, struct nbdc_error *err);
/* Wipe the cached KEKs now (a later use fetches again). */
void volume_session_forget(struct volume_session *s);
/* Wipe the cached KEKs and the volume key, close providers, unlock. */
void volume_session_close(struct volume_session *s);

struct volume_enroll_opts {
  const struct keys_config *cfg;
  const uint8_t *passphrase; /* the passphrase that opens the disk */
  size_t passphrase_len;
  int keyslot;          /* -1: any */
  const char *provider; /* NULL: the configuration's default */
  const char *kek_id;   /* NULL: create a new KEK in the provider */
  bool kms_wrapped;     /* token mode of the new binding */
  bool detached;        /* dev is a detached header */
  bool convert;         /* a LUKS1 disk is converted to LUKS2 (volume_convert_luks1) */
};
enum volume_kek_undo {
  VOLUME_KEK_KEPT = 0,      /* nothing to undo, or the disk may need the KEK */
  VOLUME_KEK_DESTROYED,     /* the KEK this call created was destroyed again */
  VOLUME_KEK_NOT_DESTROYED, /* ... and could not be: undo_error says why */
};
struct volume_enroll_result {
  char provider[KEYS_NAME_MAX]; /* the provider's name ("" if it did not open) */
  char kek_id[KEYS_ID_MAX];
  int keyslot; /* the new keyslot, -1 if none */
  bool kek_created;
  bool was_luks1;    /* the disk opened as LUKS1 (convert) */
  bool converted;    /* its LUKS2 header was written (even if a later step failed) */
  int luks1_dropped; /* other LUKS1 keyslots not carried over */
  enum volume_kek_undo kek_undo;
  char undo_error[NBDC_ERROR_MAX];
};

/* nbdcrypt enroll: add a keyslot and nbdcrypt token bound to a KEK to a
 * disk that opens with a passphrase (kept), through one volume session on
 * dev (the header's device).  A LUKS1 disk is refused unless opts->convert.
 * A KEK created here is destroyed again when the disk never came to need it
 * (res->kek_undo).  The caller holds the image locks. */
int volume_enroll(struct bdev *dev, const struct volume_enroll_opts *opts,
                  struct volume_enroll_result *res, struct nbdc_error *err);

#endif
