/* A volume session: one open of a volume for a change (lock, header loaded
 * and validated once, providers opened once, each KEK fetched once), the
 * change made in memory and committed with luks2_write's seqid check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdcrypt/luks1.h"
#include "nbdcrypt/volume.h"
#include "volume/token.h"

#define SESSION_MAX_PROVIDERS 8
#define SESSION_MAX_KEKS      8

struct session_provider {
  char name[KEYS_NAME_MAX]; /* as asked ("" : the default) */
  enum keys_role role;
  struct keys_provider *p;
};

struct session_kek {
  char provider[KEYS_NAME_MAX];
  char kek_id[KEYS_ID_MAX];
  uint8_t *kek; /* secmem, KEYS_KEK_SIZE bytes allocated */
  size_t len;   /* 0: wiped */
};

struct volume_session {
  struct bdev *dev; /* where the header and keyslots are */
  struct volume_session_opts opts;
  bool locked;
  struct luks2_hdr *hdr; /* before unlock the session's, after it the volume's */
  bool luks1;            /* no LUKS2 header: a LUKS1 disk (or nothing) */
  struct volume *vol;
  struct session_provider providers[SESSION_MAX_PROVIDERS];
  size_t nproviders;
  struct session_kek keks[SESSION_MAX_KEKS];
  size_t nkeks;
};

/* A session on dev holding its metadata lock, one held from the load to the
 * last write (luks2_write's own nests inside it); an NBD export has none:
 * the seqid check guards.  *s is set (to close) even when the lock fails,
 * unless it cannot be allocated. */
static int session_new(struct bdev *dev, const struct volume_session_opts *opts,
                       struct volume_session **sp, struct volume_session **out,
                       struct nbdc_error *err)
{
  *out = NULL;
  struct volume_session *s = *sp = calloc(1, sizeof *s);
  if (!s)
    return nbdc_error_set(err, ENOMEM, "out of memory");
  s->dev = dev;
  s->opts = *opts;
  int r = bdev_lock(dev, true, err);
  s->locked = r == 0;
  if (r == -ENOTSUP || r == -EOPNOTSUPP) {
    nbdc_error_clear(err);
    r = 0;
  }
  return r;
}

int volume_session_open(struct bdev *dev, const struct volume_session_opts *opts,
                        struct volume_session **out, struct nbdc_error *err)
{
  struct volume_session *s;
  int r = session_new(dev, opts, &s, out, err);
  if (r < 0)
    goto fail;
  r = luks2_load(dev, &s->hdr, err);
  if (r == -ENODATA) {
    /* no LUKS2 header: volume_session_unlock's volume_open reads a LUKS1
     * one (or refuses it, or says what the disk holds) */
    nbdc_error_clear(err);
    s->luks1 = true;
    r = 0;
  }
  if (r < 0)
    goto fail;
  *out = s;
  return 0;
fail:
  volume_session_close(s);
  return r;
}

int volume_session_create(struct bdev *dev, const struct volume_session_opts *opts,
                          const struct luks2_format_params *params, struct volume_session **out,
                          struct nbdc_error *err)
{
  struct volume_session *s;
  int r = session_new(dev, opts, &s, out, err);
  if (r == 0)
    r = volume_create(params, &s->vol, err);
  if (r < 0) {
    volume_session_close(s);
    return r;
  }
  s->hdr = volume_hdr_mut(s->vol);
  *out = s;
  return 0;
}

static int session_open_provider(void *opaque, const char *name, struct keys_provider **out,
                                 struct nbdc_error *err)
{
  return volume_session_provider(opaque, name, KEYS_ROLE_SERVE, out, err);
}

int volume_session_unlock(struct volume_session *s, const uint8_t *passphrase,
                          size_t passphrase_len, int keyslot, struct nbdc_error *err)
{
  if (s->vol)
    return nbdc_error_set(err, EINVAL, "volume session: already unlocked");
  struct volume_unlock_opts uo = {.cfg = s->opts.cfg,
                                  .passphrase = passphrase,
                                  .passphrase_len = passphrase_len,
                                  .keyslot = keyslot,
                                  .allow_luks1 = s->opts.allow_luks1,
                                  .detached = s->opts.detached,
                                  .keep_secret = true,
                                  .open_provider = session_open_provider,
                                  .provider_opaque = s};
  int r;
  if (s->luks1) {
    r = volume_open(s->dev, &uo, &s->vol, err);
  } else {
    struct luks2_hdr *hdr = s->hdr;
    s->hdr = NULL; /* the volume's from here on, also on failure */
    r = volume_open_hdr(s->dev, hdr, &uo, &s->vol, err);
    if (r == 0)
      s->hdr = volume_hdr_mut(s->vol);
  }
  if (r < 0)
    return r;
  /* The KEK that opened the volume is not fetched again by a bind. */
  size_t len = 0;
  const uint8_t *secret = volume_secret(s->vol, &len);
  if (secret && len > 0 && len <= KEYS_KEK_SIZE && !volume_kms_wrapped(s->vol) &&
      s->nkeks < SESSION_MAX_KEKS) {
    struct session_kek *k = &s->keks[s->nkeks];
    if ((k->kek = secmem_alloc(KEYS_KEK_SIZE))) {
      memcpy(k->kek, secret, len);
      k->len = len;
      snprintf(k->provider, sizeof k->provider, "%s", volume_provider(s->vol));
      snprintf(k->kek_id, sizeof k->kek_id, "%s", volume_kek_id(s->vol));
      s->nkeks++;
    }
  }
  return 0;
}

struct volume *volume_session_volume(struct volume_session *s)
{
  return s->vol;
}

struct luks2_hdr *volume_session_hdr(struct volume_session *s)
{
  return s->hdr;
}

struct bdev *volume_session_dev(struct volume_session *s)
{
  return s->dev;
}

int volume_session_provider(struct volume_session *s, const char *name, enum keys_role role,
                            struct keys_provider **out, struct nbdc_error *err)
{
  const char *want = name ? name : s->opts.cfg ? keys_config_default_provider(s->opts.cfg) : "";
  if (!want)
    want = "";
  for (size_t i = 0; i < s->nproviders; i++)
    if (s->providers[i].role == role && strcmp(s->providers[i].name, want) == 0) {
      *out = s->providers[i].p;
      return 0;
    }
  if (s->nproviders == SESSION_MAX_PROVIDERS)
    return nbdc_error_set(err, ENOMEM, "volume session: too many key providers");
  struct session_provider *sp = &s->providers[s->nproviders];
  int r = keys_provider_open_role(s->opts.cfg, name, role, &sp->p, err);
  if (r < 0)
    return r;
  snprintf(sp->name, sizeof sp->name, "%s", want);
  sp->role = role;
  s->nproviders++;
  *out = sp->p;
  return 0;
}

int volume_session_kek(struct volume_session *s, struct keys_provider *provider, const char *kek_id,
                       const uint8_t **kek, size_t *len, struct nbdc_error *err)
{
  const char *pname = keys_provider_name(provider);
  struct session_kek *free_slot = NULL;
  for (size_t i = 0; i < s->nkeks; i++) {
    struct session_kek *k = &s->keks[i];
    if (k->len == 0) {
      free_slot = free_slot ? free_slot : k;
      continue;
    }
    if (strcmp(k->provider, pname) == 0 && strcmp(k->kek_id, kek_id) == 0) {
      *kek = k->kek;
      *len = k->len;
      return 0;
    }
  }
  if (!free_slot && s->nkeks == SESSION_MAX_KEKS)
    return nbdc_error_set(err, ENOMEM, "volume session: too many KEKs");
  uint8_t *got = NULL;
  int r = keys_kek_get(provider, kek_id, &got, err);
  if (r < 0)
    return r;
  struct session_kek *k = free_slot ? free_slot : &s->keks[s->nkeks++];
  secmem_free(k->kek, KEYS_KEK_SIZE);
  k->kek = got;
  k->len = KEYS_KEK_SIZE;
  snprintf(k->provider, sizeof k->provider, "%s", pname);
  snprintf(k->kek_id, sizeof k->kek_id, "%s", kek_id);
  *kek = k->kek;
  *len = k->len;
  return 0;
}

int volume_session_bind(struct volume_session *s, struct keys_provider *provider,
                        const char *kek_id, bool kms_wrapped, int *keyslot, struct nbdc_error *err)
{
  if (!s->vol || !s->hdr)
    return nbdc_error_set(err, EINVAL, "volume session: no unlocked LUKS2 volume to bind");
  if (kms_wrapped)
    return volume_bind_kek(s->vol, s->dev, provider, kek_id, true, keyslot, err);
  /* The state rule first, as volume_bind_key does, before a fetch. */
  int r = volume_kek_check_bind(provider, kek_id, err);
  if (r < 0)
    return r;
  const uint8_t *kek = NULL;
  size_t kek_len = 0;
  if ((r = volume_session_kek(s, provider, kek_id, &kek, &kek_len, err)) < 0)
    return r;
  size_t key_len = 0;
  const uint8_t *key = volume_key(s->vol, &key_len);
  return volume_bind_key_kek(s->hdr, s->dev, key, key_len, provider, kek_id, kek, kek_len, keyslot,
                             err);
}

int volume_session_verify(struct volume_session *s, int keyslot, struct nbdc_error *err)
{
  struct volume_token tok;
  if (!s->vol || !s->hdr)
    return nbdc_error_set(err, EINVAL, "volume session: no unlocked LUKS2 volume");
  uint8_t *key = NULL;
  size_t key_len = 0;
  int r;
  if (volume_token_of_keyslot(s->hdr, keyslot, &tok) && !tok.kms_wrapped) {
    struct keys_provider *p = NULL;
    const uint8_t *kek = NULL;
    size_t kek_len = 0;
    r = volume_session_provider(s, tok.provider, KEYS_ROLE_SERVE, &p, err);
    if (r == 0)
      r = volume_kek_check_unlock(s->opts.cfg, p, tok.kek_id, err);
    if (r == 0)
      r = volume_session_kek(s, p, tok.kek_id, &kek, &kek_len, err);
    if (r < 0)
      return nbdc_error_prefix(err, "keyslot %d (provider %s, kek %s)", keyslot, tok.provider,
                               tok.kek_id);
    r = luks2_keyslot_open(s->hdr, s->dev, keyslot, kek, kek_len, &key, &key_len, NULL, err);
  } else {
    r = volume_unlock_keyslot(s->hdr, s->dev, s->opts.cfg, keyslot, &key, &key_len, err);
  }
  if (r < 0)
    return r;
  size_t want_len = 0;
  const uint8_t *want = volume_key(s->vol, &want_len);
  bool same = key_len == want_len && crypto_memeq(key, want, key_len);
  secmem_free(key, key_len);
  if (!same)
    return nbdc_error_set(err, EIO, "keyslot %d opens another volume key", keyslot);
  return 0;
}

int volume_session_remove(struct volume_session *s, int keyslot, struct nbdc_error *err)
{
  if (!s->hdr)
    return nbdc_error_set(err, EINVAL, "volume session: no LUKS2 header");
  return luks2_keyslot_remove(s->hdr, keyslot, err);
}

int volume_session_commit(struct volume_session *s, struct nbdc_error *err)
{
  if (!s->hdr)
    return nbdc_error_set(err, EINVAL, "volume session: no LUKS2 header to commit");
  return luks2_write(s->dev, s->hdr, err);
}

void volume_session_forget(struct volume_session *s)
{
  for (size_t i = 0; i < s->nkeks; i++) {
    struct session_kek *k = &s->keks[i];
    if (k->kek)
      memset(k->kek, 0, KEYS_KEK_SIZE);
    /* kept allocated until close; a later fetch reuses the block */
    __asm__ __volatile__("" : : "r"(k->kek) : "memory");
    k->len = 0;
  }
}

void volume_session_close(struct volume_session *s)
{
  if (!s)
    return;
  volume_session_forget(s);
  for (size_t i = 0; i < s->nkeks; i++)
    secmem_free(s->keks[i].kek, KEYS_KEK_SIZE);
  for (size_t i = 0; i < s->nproviders; i++)
    keys_provider_close(s->providers[i].p);
  if (s->vol)
    volume_close(s->vol);
  else
    luks2_free(s->hdr);
  if (s->locked)
    bdev_unlock(s->dev, NULL);
  free(s);
}
