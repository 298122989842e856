/* Opening and creating nbdcrypt volumes: LUKS2 header + key providers. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "nbdcrypt/luks1.h"
#include "nbdcrypt/volume.h"
#include "volume/token.h"

#define SECRET_SIZE         32 /* keyslot secret: a KEK, or a random kms-wrapped secret */
#define VOLUME_KEY_SIZE     64 /* AES-256-XTS */
#define KEYSLOT_PBKDF2_ITER 1000

struct volume {
  struct luks2_hdr *hdr;   /* NULL for a LUKS1 disk */
  struct luks1_hdr *luks1; /* a LUKS1 disk (volume_unlock_opts.allow_luks1) */
  char uuid[LUKS1_UUID_SIZE];
  struct luks2_segment segment;
  uint8_t *key; /* secmem */
  size_t key_len;
  int keyslot;
  char provider[KEYS_NAME_MAX];
  char kek_id[KEYS_ID_MAX];
  bool kms_wrapped;
  uint8_t *secret; /* secmem: the keyslot secret, kept with keep_secret */
  size_t secret_len;
};

void volume_close(struct volume *vol)
{
  if (!vol)
    return;
  secmem_free(vol->key, vol->key_len);
  secmem_free(vol->secret, vol->secret_len);
  luks2_free(vol->hdr);
  free(vol->luks1);
  free(vol);
}

const struct luks2_hdr *volume_hdr(const struct volume *vol)
{
  return vol->hdr;
}

struct luks2_hdr *volume_hdr_mut(struct volume *vol)
{
  return vol->hdr;
}

struct luks2_hdr *volume_release_hdr(struct volume *vol)
{
  struct luks2_hdr *hdr = vol->hdr;
  vol->hdr = NULL;
  return hdr;
}

const uint8_t *volume_secret(const struct volume *vol, size_t *len)
{
  *len = vol->secret_len;
  return vol->secret;
}

bool volume_kms_wrapped(const struct volume *vol)
{
  return vol->kms_wrapped;
}

const struct luks1_hdr *volume_luks1(const struct volume *vol)
{
  return vol->luks1;
}

const char *volume_uuid(const struct volume *vol)
{
  return vol->luks1 ? vol->uuid : luks2_uuid(vol->hdr);
}

const struct luks2_segment *volume_segment(const struct volume *vol)
{
  return &vol->segment;
}

const uint8_t *volume_key(const struct volume *vol, size_t *len)
{
  if (len)
    *len = vol->key_len;
  return vol->key;
}

const char *volume_provider(const struct volume *vol)
{
  return vol->provider;
}

const char *volume_kek_id(const struct volume *vol)
{
  return vol->kek_id;
}

int volume_keyslot(const struct volume *vol)
{
  return vol->keyslot;
}

int volume_segment_data_size(const struct luks2_segment *seg, const char *uuid, uint64_t dev_size,
                             uint64_t *size, struct nbdc_error *err)
{
  if (dev_size < seg->offset)
    return nbdc_error_set(
        err, EINVAL, "disk %s is truncated: %" PRIu64 " bytes, but its data starts at %" PRIu64,
        uuid, dev_size, seg->offset);
  if (seg->dynamic) {
    uint64_t avail = dev_size - seg->offset;
    *size = avail - avail % seg->sector_size;
    return 0;
  }
  if (dev_size - seg->offset < seg->size)
    return nbdc_error_set(err, EINVAL,
                          "disk %s is truncated: its data segment needs %" PRIu64
                          " bytes at offset %" PRIu64 " but the device has %" PRIu64,
                          uuid, seg->size, seg->offset, dev_size);
  *size = seg->size;
  return 0;
}

int volume_data_size(const struct volume *vol, uint64_t dev_size, uint64_t *size,
                     struct nbdc_error *err)
{
  return volume_segment_data_size(&vol->segment, volume_uuid(vol), dev_size, size, err);
}

int volume_xts_new(const struct volume *vol, struct xts_ctx **out, struct nbdc_error *err)
{
  return xts_new(out, vol->key, vol->key_len, vol->segment.sector_size, err);
}

int volume_token_parse(const struct luks2_hdr *hdr, int id, struct volume_token *out,
                       struct nbdc_error *err)
{
  char what[32];
  snprintf(what, sizeof what, "token %d", id);
  struct json_object *token = luks2_token_get(hdr, id);
  if (!token) {
    memset(out, 0, sizeof *out);
    out->id = id;
    out->keyslot = -1;
    return nbdc_error_set(err, ENOENT, "%s does not exist", what);
  }
  return volume_token_from_json(token, what, id, out, err);
}

bool volume_token_of_keyslot(const struct luks2_hdr *hdr, int keyslot, struct volume_token *out)
{
  for (int id = luks2_token_next(hdr, -1, VOLUME_TOKEN_TYPE); id >= 0;
       id = luks2_token_next(hdr, id, VOLUME_TOKEN_TYPE))
    if (volume_token_parse(hdr, id, out, NULL) == 0 && out->keyslot == keyslot)
      return true;
  return false;
}

/* Why keyslot has no nbdcrypt token: it does not exist, or it is bound to no KEK. */
static int volume_no_token_for(const struct luks2_hdr *hdr, int keyslot, struct nbdc_error *err)
{
  struct luks2_keyslot_info ki;
  int ids[LUKS2_MAX_KEYSLOTS];
  size_t n = luks2_keyslot_list(hdr, ids, LUKS2_MAX_KEYSLOTS);
  char have[4 * LUKS2_MAX_KEYSLOTS + 8] = "";
  for (size_t i = 0, used = 0; i < n && used < sizeof have; i++)
    used += (size_t)snprintf(have + used, sizeof have - used, "%s%d", i ? ", " : "", ids[i]);
  if (luks2_keyslot_info(hdr, keyslot, &ki) < 0)
    return nbdc_error_set(err, ENOENT, "disk %s has no keyslot %d (its keyslots: %s)",
                          luks2_uuid(hdr), keyslot, n ? have : "none");
  return nbdc_error_set(err, ENOKEY,
                        "disk %s: keyslot %d is bound to no KEK (no nbdcrypt token: a passphrase "
                        "or key file keyslot); unlock it with a passphrase",
                        luks2_uuid(hdr), keyslot);
}

int volume_unlock_keyslot(const struct luks2_hdr *hdr, struct bdev *dev,
                          const struct keys_config *cfg, int keyslot, uint8_t **key,
                          size_t *key_len, struct nbdc_error *err)
{
  struct volume_token tok;
  if (!volume_token_of_keyslot(hdr, keyslot, &tok))
    return volume_no_token_for(hdr, keyslot, err);
  uint8_t *secret = NULL;
  size_t secret_len = 0;
  int r = volume_token_secret_of(cfg, &tok, &secret, &secret_len, err);
  if (r < 0)
    return nbdc_error_prefix(err, "keyslot %d (provider %s, kek %s)", keyslot, tok.provider,
                             tok.kek_id);
  r = luks2_keyslot_open(hdr, dev, keyslot, secret, secret_len, key, key_len, NULL, err);
  secmem_free(secret, secret_len);
  return r;
}

int volume_kek_states(const struct luks2_hdr *hdr, const struct keys_config *cfg,
                      struct volume_kek_status *out, size_t max, size_t *count,
                      struct nbdc_error *err)
{
  *count = 0;
  if (!cfg)
    return nbdc_error_set(err, EINVAL, "no key provider configuration");
  for (int id = luks2_token_next(hdr, -1, VOLUME_TOKEN_TYPE); id >= 0 && *count < max;
       id = luks2_token_next(hdr, id, VOLUME_TOKEN_TYPE)) {
    struct volume_token tok;
    struct volume_kek_status *s = &out[*count];
    struct nbdc_error e = {0};
    memset(s, 0, sizeof *s);
    int r = volume_token_parse(hdr, id, &tok, &e);
    s->keyslot = tok.keyslot;
    snprintf(s->provider, sizeof s->provider, "%s", tok.provider);
    snprintf(s->kek_id, sizeof s->kek_id, "%s", tok.kek_id);
    s->kms_wrapped = tok.kms_wrapped;
    struct keys_provider *p = NULL;
    if (r == 0)
      r = keys_provider_open(cfg, tok.provider, &p, &e);
    if (r == 0)
      r = keys_kek_get_state(p, tok.kek_id, &s->state, &e);
    keys_provider_close(p);
    if (r < 0) {
      s->state = 0;
      snprintf(s->error, sizeof s->error, "%s", e.msg);
    }
    (*count)++;
  }
  return 0;
}

static int unlock_with_tokens(struct volume *vol, struct bdev *dev,
                              const struct volume_unlock_opts *opts, struct nbdc_error *err)
{
  const char *uuid = luks2_uuid(vol->hdr);
  char reasons[NBDC_ERROR_MAX] = "";
  int last = -ENOENT, tried = 0;

  for (int id = luks2_token_next(vol->hdr, -1, VOLUME_TOKEN_TYPE); id >= 0;
       id = luks2_token_next(vol->hdr, id, VOLUME_TOKEN_TYPE)) {
    struct volume_token tok;
    struct nbdc_error e = {0};
    uint8_t *secret = NULL;
    size_t secret_len = 0;
    int r = volume_token_parse(vol->hdr, id, &tok, &e);
    if (r == 0 && opts->keyslot >= 0 && tok.keyslot != opts->keyslot)
      continue;
    tried++;
    if (r == 0 && !opts->cfg)
      r = nbdc_error_set(&e, EINVAL, "no key provider configuration");
    if (r == 0 && opts->open_provider) {
      struct keys_provider *p = NULL;
      r = opts->open_provider(opts->provider_opaque, tok.provider, &p, &e);
      if (r == 0)
        r = volume_token_secret_from(opts->cfg, p, &tok, &secret, &secret_len, &e);
    } else if (r == 0) {
      r = volume_token_secret_of(opts->cfg, &tok, &secret, &secret_len, &e);
    }
    if (r == 0) {
      r = luks2_keyslot_open(vol->hdr, dev, tok.keyslot, secret, secret_len, &vol->key,
                             &vol->key_len, &vol->keyslot, &e);
      if (r == 0 && opts->keep_secret) {
        vol->secret = secret;
        vol->secret_len = secret_len;
      } else {
        secmem_free(secret, secret_len);
      }
      if (r == -EPERM)
        nbdc_error_set(&e, EPERM, "the key does not open keyslot %d (wrong KEK?)", tok.keyslot);
    }
    if (r == 0) {
      snprintf(vol->provider, sizeof vol->provider, "%s", tok.provider);
      snprintf(vol->kek_id, sizeof vol->kek_id, "%s", tok.kek_id);
      vol->kms_wrapped = tok.kms_wrapped;
      return 0;
    }
    last = r;
    /* Collect every token's reason; a long list is cut, never overrun. */
    size_t used = strlen(reasons);
    int n = snprintf(reasons + used, sizeof reasons - used, "%sprovider %s, kek %s: %s",
                     used ? "; " : "", tok.provider[0] ? tok.provider : "?",
                     tok.kek_id[0] ? tok.kek_id : "?", e.msg);
    if (n < 0)
      reasons[used] = '\0';
  }
  if (!tried && opts->keyslot >= 0)
    return volume_no_token_for(vol->hdr, opts->keyslot, err);
  if (!tried)
    return nbdc_error_set(err, ENOKEY, "disk %s: no nbdcrypt token; unlock it with a passphrase",
                          uuid);
  return nbdc_error_set(err, -last, "disk %s: cannot unlock (%s)", uuid, reasons);
}

/* A LUKS1 disk (src/luks1): passphrase or key file only, since LUKS1 has no
 * tokens; one aes-xts-plain64 segment of 512-byte sectors from the payload
 * offset to the end of the device, IV = sector number. */
static int open_luks1(struct volume *vol, struct bdev *dev, const struct volume_unlock_opts *opts,
                      struct nbdc_error *err)
{
  const struct luks1_hdr *h = vol->luks1;
  snprintf(vol->uuid, sizeof vol->uuid, "%s", h->uuid);
  vol->segment = (struct luks2_segment){
      .id = 0,
      .offset = luks1_payload_offset(h),
      .dynamic = true,
      .iv_tweak = 0,
      .sector_size = LUKS1_SECTOR_SIZE,
  };
  snprintf(vol->segment.cipher, sizeof vol->segment.cipher, "%.31s", h->cipher);
  if (!opts->allow_luks1)
    return nbdc_error_set(err, ENOTSUP,
                          "disk %s is LUKS1; convert it to LUKS2 first (nbdcrypt enroll --convert)",
                          vol->uuid);
  if (!opts->passphrase)
    return nbdc_error_set(err, ENOKEY,
                          "LUKS1 disk %s has no nbdcrypt token (LUKS1 has no tokens); unlock it "
                          "with a passphrase or key file",
                          vol->uuid);
  int r = luks1_keyslot_open(h, dev, opts->keyslot, opts->passphrase, opts->passphrase_len,
                             &vol->key, &vol->key_len, &vol->keyslot, err);
  if (r < 0)
    return nbdc_error_prefix(err, "LUKS1 disk %s: passphrase", vol->uuid);
  return 0;
}

/* A disk without a LUKS2 header: a LUKS1 disk, the one dispatch point for
 * them; -ENODATA (with err untouched) when it is not LUKS1 either. */
static int volume_open_luks1(struct bdev *dev, const struct volume_unlock_opts *opts,
                             struct volume **out, struct nbdc_error *err)
{
  struct volume *vol = calloc(1, sizeof *vol);
  if (!vol)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  vol->keyslot = -1;
  int r;
  struct nbdc_error e1 = {0};
  vol->luks1 = calloc(1, sizeof *vol->luks1);
  if (!vol->luks1) {
    r = nbdc_error_set(err, ENOMEM, "out of memory");
    goto fail;
  }
  int r1 = luks1_load(dev, vol->luks1, &e1);
  if (r1 != -ENODATA && opts->detached) {
    /* A detached LUKS1 header (payload offset 0, refused by the LUKS1
     * reader) or a whole LUKS1 disk given as a header: not served. */
    char why[NBDC_ERROR_MAX];
    if (r1 < 0)
      snprintf(why, sizeof why, "%s", e1.msg);
    else
      snprintf(why, sizeof why, "LUKS1 disk %s given as the header", vol->luks1->uuid);
    r = nbdc_error_set(
        err, ENOTSUP, "a detached LUKS1 header is not supported, only a detached LUKS2 header (%s)",
        why);
    goto fail;
  }
  if (r1 != -ENODATA) {
    if (r1 < 0)
      *err = e1;
    else
      r1 = open_luks1(vol, dev, opts, err);
    if (r1 < 0) {
      r = r1;
      goto fail;
    }
    *out = vol;
    return 0;
  }
  volume_close(vol);
  return -ENODATA;
fail:
  volume_close(vol);
  return r;
}

int volume_open(struct bdev *dev, const struct volume_unlock_opts *opts, struct volume **out,
                struct nbdc_error *err)
{
  struct luks2_hdr *hdr = NULL;
  *out = NULL;
  int r = luks2_load(dev, &hdr, err);
  if (r == -ENODATA) {
    struct nbdc_error e = {0};
    int r1 = volume_open_luks1(dev, opts, out, &e);
    if (r1 != -ENODATA) {
      *err = e;
      return r1;
    }
  }
  if (r < 0)
    return r;
  return volume_open_hdr(dev, hdr, opts, out, err);
}

int volume_open_hdr(struct bdev *dev, struct luks2_hdr *hdr, const struct volume_unlock_opts *opts,
                    struct volume **out, struct nbdc_error *err)
{
  *out = NULL;
  struct volume *vol = calloc(1, sizeof *vol);
  if (!vol) {
    luks2_free(hdr);
    return nbdc_error_set(err, ENOMEM, "out of memory");
  }
  vol->keyslot = -1;
  vol->hdr = hdr;
  int r;

  const char *reqs[8];
  size_t nreqs = luks2_requirements(vol->hdr, reqs, 8);
  if (nreqs > 0) {
    r = nbdc_error_set(err, EBUSY,
                       "disk %s is in the middle of a re-encryption or conversion "
                       "(requirement flag \"%s\"); finish it before serving or changing it",
                       luks2_uuid(vol->hdr), reqs[0]);
    goto fail;
  }
  r = opts->detached ? luks2_data_segment_detached(vol->hdr, &vol->segment, err)
                     : luks2_data_segment(vol->hdr, &vol->segment, err);
  if (r < 0) {
    nbdc_error_prefix(err, "disk %s", luks2_uuid(vol->hdr));
    goto fail;
  }

  if (opts->passphrase) {
    r = luks2_keyslot_open(vol->hdr, dev, opts->keyslot, opts->passphrase, opts->passphrase_len,
                           &vol->key, &vol->key_len, &vol->keyslot, err);
    if (r < 0) {
      nbdc_error_prefix(err, "disk %s: passphrase", luks2_uuid(vol->hdr));
      goto fail;
    }
  } else if ((r = unlock_with_tokens(vol, dev, opts, err)) < 0) {
    goto fail;
  }
  *out = vol;
  return 0;

fail:
  volume_close(vol);
  return r;
}

static int bind_key(struct luks2_hdr *hdr, struct bdev *dev, const uint8_t *key, size_t key_len,
                    struct keys_provider *provider, const char *kek_id, bool kms_wrapped,
                    const uint8_t *kek, size_t kek_len, int *keyslot, struct nbdc_error *err);

int volume_bind_key(struct luks2_hdr *hdr, struct bdev *dev, const uint8_t *key, size_t key_len,
                    struct keys_provider *provider, const char *kek_id, bool kms_wrapped,
                    int *keyslot, struct nbdc_error *err)
{
  return bind_key(hdr, dev, key, key_len, provider, kek_id, kms_wrapped, NULL, 0, keyslot, err);
}

int volume_bind_key_kek(struct luks2_hdr *hdr, struct bdev *dev, const uint8_t *key, size_t key_len,
                        struct keys_provider *provider, const char *kek_id, const uint8_t *kek,
                        size_t kek_len, int *keyslot, struct nbdc_error *err)
{
  if (!kek || kek_len == 0)
    return nbdc_error_set(err, EINVAL, "no KEK given to bind to");
  return bind_key(hdr, dev, key, key_len, provider, kek_id, false, kek, kek_len, keyslot, err);
}

static int bind_key(struct luks2_hdr *hdr, struct bdev *dev, const uint8_t *key, size_t key_len,
                    struct keys_provider *provider, const char *kek_id, bool kms_wrapped,
                    const uint8_t *kek, size_t kek_len, int *keyslot, struct nbdc_error *err)
{
  struct volume_token tok = {.keyslot = -1, .kms_wrapped = kms_wrapped};
  uint8_t *secret = NULL, *cipher = NULL;
  size_t secret_len = SECRET_SIZE, cipher_len = 0;
  struct json_object *token_json = NULL;
  int r, slot = -1;

  if (strlen(kek_id) >= sizeof tok.kek_id)
    return nbdc_error_set(err, EINVAL, "kek id too long: %s", kek_id);
  snprintf(tok.provider, sizeof tok.provider, "%s", keys_provider_name(provider));
  snprintf(tok.kek_id, sizeof tok.kek_id, "%s", kek_id);
  if ((r = volume_kek_check_bind(provider, kek_id, err)) < 0)
    return r;

  if (kms_wrapped) {
    secret = secmem_alloc(secret_len);
    if (!secret)
      return nbdc_error_set(err, errno, "cannot allocate secure memory: %s", strerror(errno));
    if ((r = crypto_random(secret, secret_len, err)) < 0)
      goto out;
    r = keys_kek_wrap(provider, kek_id, secret, secret_len, &cipher, &cipher_len, tok.iv, tok.tag,
                      err);
    if (r < 0)
      goto out;
    if (cipher_len > sizeof tok.wrapped) {
      r = nbdc_error_set(err, EINVAL, "wrapped secret too long (%zu bytes)", cipher_len);
      goto out;
    }
    memcpy(tok.wrapped, cipher, cipher_len);
    tok.wrapped_len = cipher_len;
  } else if (kek) {
    /* the caller fetched this KEK already (unlock): not again */
    secret_len = kek_len;
    if (!(secret = secmem_alloc(secret_len)))
      return nbdc_error_set(err, errno, "cannot allocate secure memory: %s", strerror(errno));
    memcpy(secret, kek, kek_len);
  } else if ((r = keys_kek_get(provider, kek_id, &secret, err)) < 0) {
    goto out;
  }

  struct kdf_params kdf = {
      .type = KDF_PBKDF2, .hash = "sha256", .iterations = KEYSLOT_PBKDF2_ITER, .salt_len = 32};
  r = luks2_keyslot_add(hdr, dev, -1, key, key_len, secret, secret_len, &kdf, &slot, err);
  if (r < 0)
    goto out;
  tok.keyslot = slot;
  if ((r = volume_token_build(&tok, &token_json, err)) < 0)
    goto out;
  if ((r = luks2_token_add(hdr, -1, token_json, NULL, err)) < 0) {
    json_object_put(token_json);
    goto out;
  }
  if (keyslot)
    *keyslot = slot;
out:
  if (r < 0 && slot >= 0)
    luks2_keyslot_remove(hdr, slot, NULL);
  secmem_free(secret, secret_len);
  free(cipher);
  return r;
}

int volume_bind_kek(struct volume *vol, struct bdev *dev, struct keys_provider *provider,
                    const char *kek_id, bool kms_wrapped, int *keyslot, struct nbdc_error *err)
{
  return volume_bind_key(vol->hdr, dev, vol->key, vol->key_len, provider, kek_id, kms_wrapped,
                         keyslot, err);
}

/* Zero the metadata and keyslots areas, as cryptsetup does on luksFormat, so
 * no stale keyslot of an earlier header survives. */
static int wipe_metadata_area(struct bdev *dev, uint64_t end, struct nbdc_error *err)
{
  const size_t chunk = 1024 * 1024;
  uint8_t *zero = calloc(1, chunk);
  if (!zero)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  int r = 0;
  for (uint64_t off = 0; off < end && r == 0; off += chunk) {
    size_t n = end - off < chunk ? (size_t)(end - off) : chunk;
    r = bdev_pwrite(dev, zero, n, off, err);
  }
  free(zero);
  return r;
}

/* A format that failed after creating its KEK takes the KEK away again, so no
 * key bound to nothing stays in the KMS, and says so after the reason.  A
 * KMIP key is Active, which Destroy refuses: revoke it first (the native
 * keystore has no revoke and answers -ENOTSUP, which is fine). */
static void format_destroy_new_kek(struct keys_provider *provider, const char *kek_id,
                                   struct nbdc_error *err)
{
  struct nbdc_error e = {0};
  (void)keys_kek_revoke(provider, kek_id, NULL);
  int r = keys_kek_destroy(provider, kek_id, &e);
  if (!err)
    return;
  size_t used = strnlen(err->msg, sizeof err->msg);
  if (r == 0)
    snprintf(err->msg + used, sizeof err->msg - used, "; destroyed the new kek %s in provider %s",
             kek_id, keys_provider_name(provider));
  else
    snprintf(err->msg + used, sizeof err->msg - used,
             "; the new kek %s stays in provider %s, destroy it by hand (%s)", kek_id,
             keys_provider_name(provider), e.msg);
}

int volume_create(const struct luks2_format_params *params, struct volume **out,
                  struct nbdc_error *err)
{
  *out = NULL;
  struct volume *vol = calloc(1, sizeof *vol);
  if (!vol)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  vol->keyslot = -1;
  vol->key_len = params->volume_key_size;
  vol->key = secmem_alloc(vol->key_len);
  int r;
  if (!vol->key) {
    r = nbdc_error_set(err, errno, "cannot allocate secure memory: %s", strerror(errno));
    goto fail;
  }
  if ((r = crypto_random(vol->key, vol->key_len, err)) < 0)
    goto fail;
  /* XTS refuses equal key halves; a CSPRNG will not produce them, but check. */
  if (crypto_memeq(vol->key, vol->key + vol->key_len / 2, vol->key_len / 2)) {
    r = nbdc_error_set(err, EIO, "random generator produced a degenerate key");
    goto fail;
  }
  if ((r = luks2_format(params, vol->key, vol->key_len, &vol->hdr, err)) < 0)
    goto fail;
  if ((r = luks2_data_segment(vol->hdr, &vol->segment, err)) < 0)
    goto fail;
  *out = vol;
  return 0;
fail:
  volume_close(vol);
  return r;
}

int volume_format(struct bdev *dev, const struct volume_format_opts *opts,
                  char kek_id_out[KEYS_ID_MAX], struct nbdc_error *err)
{
  struct keys_provider *provider = NULL;
  struct volume_session *s = NULL;
  bool kek_created = false;
  uint64_t dev_size;
  int r;

  struct luks2_format_params params = {
      .label = opts->label,
      .volume_key_size = VOLUME_KEY_SIZE,
      .sector_size = opts->sector_size ? opts->sector_size : 4096,
  };
  /* Checked before a KEK is created for a disk that cannot be written. */
  if (bdev_readonly(dev))
    return nbdc_error_set(err, EROFS, "%s is read-only", bdev_name(dev));
  if ((r = bdev_get_size(dev, &dev_size, err)) < 0)
    return r;
  if (dev_size < (uint64_t)LUKS2_DEFAULT_DATA_OFFSET + params.sector_size)
    return nbdc_error_set(err, ENOSPC,
                          "%s is too small: %" PRIu64 " bytes; a LUKS2 disk needs at least %u "
                          "bytes (16 MiB of header and keyslots, then data)",
                          bdev_name(dev), dev_size, LUKS2_DEFAULT_DATA_OFFSET + params.sector_size);

  /* Creating a KEK and wrapping with it are the admin identity's (docs/kmip.md). */
  enum keys_role role = !opts->kek_id || opts->kms_wrapped ? KEYS_ROLE_ADMIN : KEYS_ROLE_SERVE;
  struct volume_session_opts so = {.cfg = opts->cfg};
  if ((r = volume_session_create(dev, &so, &params, &s, err)) < 0)
    return r;
  if ((r = volume_session_provider(s, opts->provider, role, &provider, err)) < 0)
    goto out;
  const char *uuid = luks2_uuid(volume_session_hdr(s));
  if (opts->uuid_out)
    snprintf(opts->uuid_out, VOLUME_UUID_MAX, "%s", uuid);

  if (opts->kek_id) {
    snprintf(kek_id_out, KEYS_ID_MAX, "%s", opts->kek_id);
  } else {
    char name[KEYS_NAME_MAX];
    if (opts->kek_name)
      snprintf(name, sizeof name, "%s", opts->kek_name);
    else
      snprintf(name, sizeof name, "nbdcrypt %s", uuid);
    if ((r = keys_kek_create(provider, name, kek_id_out, err)) < 0)
      goto out;
    kek_created = true;
  }

  if ((r = wipe_metadata_area(dev, LUKS2_DEFAULT_DATA_OFFSET, err)) < 0)
    goto out;
  if ((r = volume_session_bind(s, provider, kek_id_out, opts->kms_wrapped, NULL, err)) < 0)
    goto out;
  r = volume_session_commit(s, err);
out:
  if (r < 0 && kek_created)
    format_destroy_new_kek(provider, kek_id_out, err);
  volume_session_close(s);
  return r;
}
