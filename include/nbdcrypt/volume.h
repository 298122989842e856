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

struct volume_unlock_opts {
  const struct keys_config *cfg; /* providers for nbdcrypt tokens (may be NULL with a passphrase) */
  const uint8_t *passphrase;     /* non-NULL: unlock a passphrase keyslot instead of tokens */
  size_t passphrase_len;
  int keyslot;      /* -1: any */
  bool keep_secret; /* keep the keyslot secret (a KEK, or the unwrapped secret) for
                       volume_secret: a caller that binds a new key to the same KEK
                       does not fetch it again */
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

const struct luks2_hdr *volume_hdr(const struct volume *vol);
struct luks2_hdr *volume_hdr_mut(struct volume *vol);
const struct luks2_segment *volume_segment(const struct volume *vol);

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
};

/* Write a new LUKS2 header to dev: fresh random DEK, a keyslot bound to the
 * KEK (pbkdf2-sha256, 1000 iterations, the KEK or wrapped secret as keyslot
 * secret) and our token.  kek_id_out receives the KEK id used.  A KEK this
 * call created is destroyed again if a later step fails (the message says
 * so, or that it could not be and must be destroyed by hand).  The caller
 * checks first that dev holds nothing to keep (probe_signatures). */
int volume_format(struct bdev *dev, const struct volume_format_opts *opts,
                  char kek_id_out[KEYS_ID_MAX], struct nbdc_error *err);

/* Add a keyslot and nbdcrypt token for KEK kek_id of provider to an open
 * volume (in memory; commit with luks2_write). */
int volume_bind_kek(struct volume *vol, struct bdev *dev, struct keys_provider *provider,
                    const char *kek_id, bool kms_wrapped, int *keyslot, struct nbdc_error *err);

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

#endif
