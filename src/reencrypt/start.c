/* Starting a re-encryption: the keys and keyslots of the new state, the
 * first header commit, and picking a run up again from its progress record.
 * What happens after is engine.c's. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "nbdcrypt/keys.h"
#include "nbdcrypt/luks2.h"
#include "nbdcrypt/volume.h"
#include "reencrypt/engine.h"
#include "volume/token.h"

/* ---- keys ---- */

/* Unlock keyslot slot: by the caller's callback, else through its nbdcrypt
 * token (as volume_open does). */
static int unlock_slot(struct reenc *re, int slot, uint8_t **key, size_t *key_len,
                       struct nbdc_error *err)
{
  if (re->opts->unlock)
    return re->opts->unlock(re->opts->unlock_opaque, re->hdr, re->hdev, slot, key, key_len, err);
  return volume_unlock_keyslot(re->hdr, re->hdev, re->opts->cfg, slot, key, key_len, err);
}

/* The header lent to the volume, back to re->hdr; the volume closed. */
static void give_back_hdr(struct reenc *re, struct volume *own)
{
  if (own && !re->hdr)
    re->hdr = volume_release_hdr(own);
  volume_close(own);
}

/* The old volume: the caller's (borrowed), or opened here through cfg on
 * re->hdr (lent to the volume until give_back_hdr: loaded once), keeping
 * the KEK that opens it (fetched once). */
static int open_old_volume(struct reenc *re, const struct volume **vol, struct volume **own,
                           struct nbdc_error *err)
{
  *own = NULL;
  if (re->opts->old_volume) {
    *vol = re->opts->old_volume;
    return 0;
  }
  struct volume_unlock_opts uo = {.cfg = re->opts->cfg, .keyslot = -1, .keep_secret = true};
  struct luks2_hdr *hdr = re->hdr;
  re->hdr = NULL;
  int r =
      hdr ? volume_open_hdr(re->hdev, hdr, &uo, own, err) : volume_open(re->hdev, &uo, own, err);
  *vol = *own;
  size_t len = 0;
  const uint8_t *kek = r == 0 ? volume_secret(*own, &len) : NULL;
  if (kek && !volume_kms_wrapped(*own)) {
    if (!(re->old_kek = secmem_alloc(len))) {
      r = nbdc_error_set(err, ENOMEM, "cannot allocate secure memory");
      give_back_hdr(re, *own);
      *own = NULL;
      *vol = NULL;
      return r;
    }
    memcpy(re->old_kek, kek, len);
    re->old_kek_len = len;
    snprintf(re->old_kek_provider, sizeof re->old_kek_provider, "%s", volume_provider(*own));
    snprintf(re->old_kek_id, sizeof re->old_kek_id, "%s", volume_kek_id(*own));
  }
  return r;
}

/* Add a keyslot for the new key bound to a KEK (a new one when kek_id is
 * NULL), and its token; *keyslot (may be NULL) receives its id. */
static int bind_new_key(struct reenc *re, const char *provider_name, const char *kek_id,
                        bool kms_wrapped, int *keyslot, struct nbdc_error *err)
{
  struct keys_provider *p = NULL;
  char created[KEYS_ID_MAX];
  int slot = -1;
  /* Creating a KEK or wrapping with it is the admin identity's (as rekey). */
  enum keys_role role = !kek_id || kms_wrapped ? KEYS_ROLE_ADMIN : KEYS_ROLE_SERVE;
  int r = keys_provider_open_role(re->opts->cfg, provider_name, role, &p, err);
  if (r < 0)
    return r;
  if (!kek_id) {
    char name[KEYS_NAME_MAX];
    snprintf(name, sizeof name, "nbdcrypt %s", luks2_uuid(re->hdr));
    if ((r = keys_kek_create(p, name, created, err)) < 0)
      goto out;
    kek_id = created;
  }
  if (!kms_wrapped && re->old_kek && strcmp(keys_provider_name(p), re->old_kek_provider) == 0 &&
      strcmp(kek_id, re->old_kek_id) == 0)
    r = volume_bind_key_kek(re->hdr, re->hdev, re->new_key, re->new_len, p, kek_id, re->old_kek,
                            re->old_kek_len, &slot, err);
  else
    r = volume_bind_key(re->hdr, re->hdev, re->new_key, re->new_len, p, kek_id, kms_wrapped, &slot,
                        err);
  if (r == 0 && keyslot)
    *keyslot = slot;
out:
  keys_provider_close(p);
  return r;
}

static int new_random_key(struct reenc *re, struct nbdc_error *err)
{
  re->new_len = KEY_SIZE;
  if (!(re->new_key = secmem_alloc(re->new_len)))
    return nbdc_error_set(err, ENOMEM, "cannot allocate secure memory");
  int r = crypto_random(re->new_key, re->new_len, err);
  if (r == 0 && crypto_memeq(re->new_key, re->new_key + 32, 32))
    r = nbdc_error_set(err, EIO, "random generator produced a degenerate key");
  return r;
}

static int make_ciphers(struct reenc *re, struct nbdc_error *err)
{
  int r = 0;
  if (re->old_key && !re->old_xts)
    r = xts_new(&re->old_xts, re->old_key, re->old_len, re->st.sector_size, err);
  if (r == 0 && re->new_key && !re->new_xts)
    r = xts_new(&re->new_xts, re->new_key, re->new_len, re->st.sector_size, err);
  return r;
}

/* ---- starting ---- */

/* What a recrypt does with each keyslot of the old key.  A keyslot bound to a
 * KEK by an nbdcrypt token gets a keyslot of the new key bound to the same
 * KEK (unless --kek/--provider move the key to one KEK, as rekey does); a
 * keyslot no token binds (an operator's passphrase or key file) gets a
 * keyslot of the new key with the same secret, KDF and costs when one of the
 * given passphrases opens it, else it is dropped, only when the operator
 * agreed.  Everything here is decided before anything is written. */
struct slot_plan {
  int id;
  bool bound; /* by an nbdcrypt token: tok */
  struct volume_token tok;
  int pass; /* unbound: index of the passphrase that opens it, or -1 */
};

static int plan_keyslots(struct reenc *re, int old_slot, struct slot_plan plan[], size_t *n_plan,
                         struct nbdc_error *err)
{
  const struct reenc_opts *o = re->opts;
  int ids[LUKS2_MAX_KEYSLOTS];
  size_t n = luks2_keyslot_list(re->hdr, ids, LUKS2_MAX_KEYSLOTS);
  *n_plan = 0;
  for (size_t i = 0; i < n; i++) {
    struct luks2_keyslot_info ki;
    if (luks2_keyslot_info(re->hdr, ids[i], &ki) < 0 || ki.digest != re->old_digest ||
        ids[i] == old_slot)
      continue;
    struct slot_plan *p = &plan[(*n_plan)++];
    *p = (struct slot_plan){.id = ids[i], .pass = -1};
    p->bound = volume_token_of_keyslot(re->hdr, ids[i], &p->tok);
  }

  /* Each passphrase must open a keyslot of the old key that no token binds. */
  for (size_t k = 0; k < o->n_passphrases; k++) {
    bool opened = false;
    for (size_t i = 0; i < *n_plan && !opened; i++) {
      struct slot_plan *p = &plan[i];
      if (p->bound || p->pass >= 0)
        continue;
      uint8_t *vk = NULL;
      size_t vk_len = 0;
      struct nbdc_error e = {0};
      int r = luks2_keyslot_open(re->hdr, re->hdev, p->id, o->passphrases[k].data,
                                 o->passphrases[k].len, &vk, &vk_len, NULL, &e);
      if (r == 0) {
        opened = vk_len == re->old_len && crypto_memeq(vk, re->old_key, vk_len);
        secmem_free(vk, vk_len);
        if (opened)
          p->pass = (int)k;
      } else if (r != -EPERM) {
        return nbdc_error_set(err, -r, "keyslot %d: %s", p->id, e.msg);
      }
    }
    if (!opened)
      return nbdc_error_set(err, EPERM,
                            "the passphrase in %s opens no keyslot of disk %s that is bound to "
                            "no KEK",
                            o->passphrases[k].name, luks2_uuid(re->hdr));
  }

  char list[LUKS2_MAX_KEYSLOTS * 4] = "";
  size_t used = 0, count = 0;
  for (size_t i = 0; i < *n_plan; i++) {
    if (plan[i].bound || plan[i].pass >= 0)
      continue;
    int w = snprintf(list + used, sizeof list - used, "%s%d", count ? ", " : "", plan[i].id);
    if (w > 0 && (size_t)w < sizeof list - used)
      used += (size_t)w;
    count++;
  }
  if (count == 0 || o->drop_unbound)
    return 0;
  return nbdc_error_set(err, EPERM,
                        "disk %s has %s %s bound to no KEK (a passphrase or key file); a recrypt "
                        "would remove %s with the old key: give %s with --passphrase-file to keep "
                        "%s for the new key, pass --drop-passphrase-keyslots to accept the "
                        "removal, or keep the disk as it is",
                        luks2_uuid(re->hdr), count > 1 ? "keyslots" : "keyslot", list,
                        count > 1 ? "them" : "it", count > 1 ? "their secrets" : "its secret",
                        count > 1 ? "them" : "it");
}

/* Carry the plan out for the new key (in memory and keyslot areas; the
 * caller's commit makes it durable). */
static int bind_planned(struct reenc *re, const struct slot_plan plan[], size_t n_plan,
                        struct nbdc_error *err)
{
  const struct reenc_opts *o = re->opts;
  for (size_t i = 0; i < n_plan; i++) {
    const struct slot_plan *p = &plan[i];
    int r = 0;
    if (p->bound && !o->kek_id && !o->provider) {
      r = bind_new_key(re, p->tok.provider, p->tok.kek_id, p->tok.kms_wrapped, NULL, err);
    } else if (!p->bound && p->pass >= 0) {
      struct kdf_params kdf;
      r = luks2_keyslot_kdf(re->hdr, p->id, &kdf, err);
      if (r == 0)
        r = luks2_keyslot_add(re->hdr, re->hdev, -1, re->new_key, re->new_len,
                              o->passphrases[p->pass].data, o->passphrases[p->pass].len, &kdf, NULL,
                              err);
      if (r < 0)
        nbdc_error_prefix(err, "passphrase of keyslot %d", p->id);
    }
    if (r < 0)
      return r;
  }
  return 0;
}

int reenc_start_recrypt(struct reenc *re, struct nbdc_error *err)
{
  const struct volume *vol = NULL;
  struct volume *own = NULL;
  int r = open_old_volume(re, &vol, &own, err);
  if (r < 0)
    return r;
  struct reenc_state *st = &re->st;
  const struct luks2_segment *seg = volume_segment(vol);
  uint64_t dev_size;
  size_t len;
  const uint8_t *key = volume_key(vol, &len);
  if ((r = bdev_get_size(re->dev, &dev_size, err)) == 0)
    r = volume_data_size(vol, dev_size, &st->data_size, err);
  /* The old key's keyslot and the KEK binding to keep */
  int old_slot = volume_keyslot(vol);
  char provider[KEYS_NAME_MAX], kek_id[KEYS_ID_MAX];
  snprintf(provider, sizeof provider, "%s", volume_provider(vol));
  snprintf(kek_id, sizeof kek_id, "%s", volume_kek_id(vol));
  struct volume_token old_tok;
  bool kms_wrapped =
      volume_token_of_keyslot(volume_hdr(vol), old_slot, &old_tok) && old_tok.kms_wrapped;
  if (r == 0) {
    re->old_len = len;
    if (!(re->old_key = secmem_alloc(len)))
      r = nbdc_error_set(err, ENOMEM, "cannot allocate secure memory");
    else
      memcpy(re->old_key, key, len);
  }
  *st = (struct reenc_state){
      .mode = REENC_RECRYPT,
      .phase = REENC_PHASE_MAIN,
      .size_dynamic = seg->dynamic,
      .sector_size = seg->sector_size,
      .data_size = st->data_size,
      .old_offset = seg->offset,
      .new_offset = seg->offset,
      .iv_tweak = seg->iv_tweak,
      .old_keyslot = old_slot,
      .new_keyslot = -1,
  };
  give_back_hdr(re, own);
  if (r < 0)
    return r;
  if ((r = reenc_place_checksums(re, err)) < 0)
    return r;
  st->checksum_offset = re->csum_base;
  if ((r = new_random_key(re, err)) < 0)
    return r;
  re->old_digest = luks2_digest_find(re->hdr, re->old_key, re->old_len, err);
  if (re->old_digest < 0)
    return re->old_digest;
  if ((r = luks2_digest_add(re->hdr, re->new_key, re->new_len, &re->new_digest, err)) < 0)
    return r;
  const char *use_provider = re->opts->provider ? re->opts->provider : provider;
  const char *use_kek = re->opts->kek_id ? re->opts->kek_id : (re->opts->provider ? NULL : kek_id);
  if (!use_kek && !re->opts->provider)
    use_kek = kek_id;
  struct slot_plan plan[LUKS2_MAX_KEYSLOTS];
  size_t n_plan = 0;
  if ((r = plan_keyslots(re, old_slot, plan, &n_plan, err)) < 0)
    return r;
  if ((r = bind_new_key(re, use_provider[0] ? use_provider : NULL, use_kek,
                        kms_wrapped || re->opts->kms_wrapped, &st->new_keyslot, err)) < 0 ||
      (r = bind_planned(re, plan, n_plan, err)) < 0)
    return r;
  /* the new keyslots must leave the checksum table's place free */
  if ((r = reenc_place_checksums(re, err)) < 0)
    return r;
  if ((r = make_ciphers(re, err)) < 0)
    return r;
  return reenc_commit(re, err);
}

static int header_dev_size_ok(struct reenc *re, struct nbdc_error *err)
{
  uint64_t size;
  int r = bdev_get_size(re->hdev, &size, err);
  if (r == 0 && size < LUKS2_DEFAULT_DATA_OFFSET)
    r = nbdc_error_set(err, ENOSPC, "header file %s is %" PRIu64 " bytes; it needs 16 MiB",
                       bdev_name(re->hdev), size);
  return r;
}

/* A fresh LUKS2 header for encrypt, bound to the KEK, with the state st. */
static int create_header(struct reenc *re, struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  struct luks2_format_params fp = {.volume_key_size = KEY_SIZE, .sector_size = st->sector_size};
  int r = new_random_key(re, err);
  if (r == 0)
    r = luks2_format(&fp, re->new_key, re->new_len, &re->hdr, err);
  if (r < 0)
    return r;
  /* Clear the keyslots area, as cryptsetup does on format. */
  uint8_t *zero = calloc(1, 1024 * 1024);
  if (!zero)
    return fail_nomem(err);
  for (uint64_t off = 0; off < LUKS2_DEFAULT_DATA_OFFSET && r == 0; off += 1024 * 1024)
    r = bdev_pwrite(re->hdev, zero, 1024 * 1024, off, err);
  free(zero);
  if (r < 0)
    return r;
  re->new_digest = luks2_digest_find(re->hdr, re->new_key, re->new_len, err);
  if (re->new_digest < 0)
    return re->new_digest;
  if ((r = reenc_place_checksums(re, err)) < 0)
    return r;
  st->checksum_offset = re->csum_base;
  if ((r = bind_new_key(re, re->opts->provider, re->opts->kek_id, re->opts->kms_wrapped,
                        &re->st.new_keyslot, err)) < 0)
    return r;
  if ((r = make_ciphers(re, err)) < 0)
    return r;
  return reenc_commit(re, err);
}

int reenc_start_encrypt(struct reenc *re, const struct marker *m, struct nbdc_error *err)
{
  struct reenc_state *st = &re->st;
  uint64_t size;
  int r = bdev_get_size(re->dev, &size, err);
  if (r < 0)
    return r;
  bool detached = re->detached;
  if (m)
    size = m->data_size;
  if (size == 0 || size % 512)
    return nbdc_error_set(err, EINVAL,
                          "%s: size %" PRIu64 " is not a positive multiple of 512 bytes",
                          re->target, size);
  *st = (struct reenc_state){
      .mode = REENC_ENCRYPT,
      .phase = REENC_PHASE_MAIN,
      .detached = detached,
      .size_dynamic = true,
      .sector_size = size % 4096 ? 512 : 4096,
      .data_size = size,
      .old_keyslot = -1,
      .new_keyslot = -1,
  };
  if (detached) {
    if ((r = header_dev_size_ok(re, err)) < 0)
      return r;
    return create_header(re, err);
  }
  st->backward = true;
  st->new_offset = REENC_SHIFT;
  st->chunk_size = min_u64(REENC_SHIFT, size);
  st->tail_offset = size + REENC_SHIFT;
  st->done = size;
  if (!m) {
    /* marker first (it records the original size), then the copy */
    uint8_t sum[32];
    if ((r = reenc_chunk_sha(re, 0, sum, err)) < 0 ||
        (r = reenc_marker_write(re, MARKER_ENCRYPT, sum, err)) < 0)
      return r;
    if ((r = bdev_pwrite(re->dev, re->buf, st->chunk_size, st->tail_offset, err)) < 0 ||
        (r = bdev_flush(re->dev, err)) < 0)
      return r;
  } else {
    uint8_t sum[32];
    if ((r = reenc_chunk_sha(re, st->tail_offset, sum, err)) < 0)
      return r;
    if (memcmp(sum, m->chunk_sha, 32) != 0) {
      /* the copy was cut short: the original is still in place */
      if ((r = reenc_chunk_sha(re, 0, sum, err)) < 0)
        return r;
      if (memcmp(sum, m->chunk_sha, 32) != 0)
        return nbdc_error_set(err, EIO,
                              "%s: neither the first %" PRIu64 " bytes nor their copy "
                              "at offset %" PRIu64 " match the record; not resuming",
                              re->target, st->chunk_size, st->tail_offset);
      if ((r = bdev_pwrite(re->dev, re->buf, st->chunk_size, st->tail_offset, err)) < 0 ||
          (r = bdev_flush(re->dev, err)) < 0)
        return r;
    }
  }
  return create_header(re, err);
}

int reenc_start_decrypt(struct reenc *re, struct nbdc_error *err)
{
  const struct volume *vol = NULL;
  struct volume *own = NULL;
  struct reenc_state *st = &re->st;
  bool detached = re->detached;
  int r;
  if (detached) {
    /* volume_open refuses detached headers (their data is elsewhere): unlock by hand */
    if (!re->hdr && (r = luks2_load(re->hdev, &re->hdr, err)) < 0)
      return r;
    struct luks2_segment seg;
    luks2_data_segment(re->hdr, &seg, NULL);
    if (!luks2_detached_header(re->hdr))
      return nbdc_error_set(err, EINVAL, "%s is not a detached header (data offset %" PRIu64 ")",
                            re->header_name, seg.offset);
    int ids[LUKS2_MAX_KEYSLOTS];
    size_t n = luks2_keyslot_list(re->hdr, ids, LUKS2_MAX_KEYSLOTS);
    r = -ENOKEY;
    for (size_t i = 0; i < n && r < 0; i++) {
      r = unlock_slot(re, ids[i], &re->old_key, &re->old_len, err);
      if (r == 0)
        st->old_keyslot = ids[i];
    }
    if (r < 0)
      return r;
    uint64_t dev_size;
    if ((r = bdev_get_size(re->dev, &dev_size, err)) < 0)
      return r;
    *st = (struct reenc_state){
        .mode = REENC_DECRYPT,
        .phase = REENC_PHASE_MAIN,
        .detached = true,
        .sector_size = seg.sector_size,
        .data_size = seg.dynamic ? dev_size / seg.sector_size * seg.sector_size : seg.size,
        .iv_tweak = seg.iv_tweak,
        .old_keyslot = st->old_keyslot,
        .new_keyslot = -1,
    };
  } else {
    if ((r = open_old_volume(re, &vol, &own, err)) < 0)
      return r;
    const struct luks2_segment *seg = volume_segment(vol);
    uint64_t dev_size;
    size_t len;
    const uint8_t *key = volume_key(vol, &len);
    *st = (struct reenc_state){
        .mode = REENC_DECRYPT,
        .phase = REENC_PHASE_PREPARE,
        .sector_size = seg->sector_size,
        .old_offset = seg->offset,
        .iv_tweak = seg->iv_tweak,
        .old_keyslot = volume_keyslot(vol),
        .new_keyslot = -1,
    };
    if ((r = bdev_get_size(re->dev, &dev_size, err)) == 0)
      r = volume_data_size(vol, dev_size, &st->data_size, err);
    if (r == 0 && !(re->old_key = secmem_alloc(len)))
      r = nbdc_error_set(err, ENOMEM, "cannot allocate secure memory");
    if (r == 0) {
      memcpy(re->old_key, key, len);
      re->old_len = len;
    }
    give_back_hdr(re, own);
    if (r == 0 && st->data_size == 0)
      r = nbdc_error_set(err, EINVAL, "%s holds no data", re->target);
    if (r == 0 && !re->hdr)
      r = luks2_load(re->hdev, &re->hdr, err);
    if (r < 0)
      return r;
    st->chunk_size = min_u64(REENC_SHIFT, st->data_size);
    st->tail_offset = dev_size;
  }
  re->old_digest = luks2_digest_find(re->hdr, re->old_key, re->old_len, err);
  if (re->old_digest < 0)
    return re->old_digest;
  if ((r = reenc_place_checksums(re, err)) < 0)
    return r;
  st->checksum_offset = re->csum_base;
  if ((r = make_ciphers(re, err)) < 0)
    return r;
  return reenc_commit(re, err);
}

/* Resume from the header's progress record: keys first, then the HMAC. */
int reenc_resume(struct reenc *re, struct nbdc_error *err)
{
  int id = luks2_token_next(re->hdr, -1, REENC_TOKEN_TYPE);
  if (id < 0)
    return nbdc_error_set(err, EINVAL,
                          "disk %s carries the %s flag but no progress record; not resuming",
                          luks2_uuid(re->hdr), REENC_REQUIREMENT);
  struct json_object *tok = luks2_token_get(re->hdr, id);
  int old_slot, new_slot, r = reenc_state_keyslots(tok, &old_slot, &new_slot, err);
  if (r < 0)
    return r;
  if (old_slot >= 0 && (r = unlock_slot(re, old_slot, &re->old_key, &re->old_len, err)) < 0)
    return r;
  if (new_slot >= 0 && (r = unlock_slot(re, new_slot, &re->new_key, &re->new_len, err)) < 0)
    return r;
  if ((r = reenc_state_from_json(tok, re->old_key, re->old_len, re->new_key, re->new_len, &re->st,
                                 err)) < 0)
    return r;
  if (re->st.mode != re->opts->mode)
    return nbdc_error_set(err, EBUSY, "disk %s is in the middle of a %s, not a %s",
                          luks2_uuid(re->hdr),
                          re->st.mode == REENC_RECRYPT   ? "recrypt"
                          : re->st.mode == REENC_ENCRYPT ? "encrypt"
                                                         : "decrypt",
                          re->opts->mode == REENC_RECRYPT   ? "recrypt"
                          : re->opts->mode == REENC_ENCRYPT ? "encrypt"
                                                            : "decrypt");
  if (re->st.detached != (re->detached))
    return nbdc_error_set(err, EINVAL, "the operation in progress %s a detached header",
                          re->st.detached ? "uses" : "does not use");
  if (re->old_key) {
    re->old_digest = luks2_digest_find(re->hdr, re->old_key, re->old_len, err);
    if (re->old_digest < 0)
      return re->old_digest;
  }
  if (re->new_key) {
    re->new_digest = luks2_digest_find(re->hdr, re->new_key, re->new_len, err);
    if (re->new_digest < 0)
      return re->new_digest;
  }
  if (re->st.hotzone_size) {
    uint64_t ks_end = 2 * luks2_hdr_size(re->hdr) + luks2_keyslots_size(re->hdr);
    re->csum_base = ks_end - 2 * CSUM_SLOT;
    if (re->st.checksum_offset != re->csum_base &&
        re->st.checksum_offset != re->csum_base + CSUM_SLOT)
      return nbdc_error_set(err, EINVAL, "progress record: checksum table offset %" PRIu64,
                            re->st.checksum_offset);
  } else if ((r = reenc_place_checksums(re, err)) < 0) {
    return r;
  }
  return make_ciphers(re, err);
}
