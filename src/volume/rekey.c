/* Shallow re-key (vSphere's "shallow recrypt"): same DEK, new KEK. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nbdcrypt/volume.h"
#include "volume/token.h"

/* The keyslot already bound to provider/kek_id by an nbdcrypt token, or -1. */
static int bound_keyslot(const struct luks2_hdr *hdr, const char *provider, const char *kek_id,
                         bool kms_wrapped)
{
  for (int id = luks2_token_next(hdr, -1, VOLUME_TOKEN_TYPE); id >= 0;
       id = luks2_token_next(hdr, id, VOLUME_TOKEN_TYPE)) {
    struct volume_token tok;
    if (volume_token_parse(hdr, id, &tok, NULL) == 0 && strcmp(tok.provider, provider) == 0 &&
        strcmp(tok.kek_id, kek_id) == 0 && tok.kms_wrapped == kms_wrapped)
      return tok.keyslot;
  }
  return -1;
}

/* Prove that keyslot opens with the new binding before anything old goes
 * (with the KEK the bind used: not fetched again). */
static int verify_binding(struct volume_session *s, int keyslot, struct nbdc_error *err)
{
  int r = volume_session_verify(s, keyslot, err);
  if (r < 0)
    nbdc_error_prefix(err, "the new keyslot %d does not open; the disk still has its old keyslots",
                      keyslot);
  return r;
}

/* A KEK this rekey created goes again when the rekey fails before any
 * header on the device depends on it, so a failed rekey leaves no orphaned
 * key in the KMS.  A keyslot step 1 already committed for it is removed
 * first (the old keyslots are all still there).  KMIP refuses to destroy an
 * active key: revoke it first (a provider without revoke answers -ENOTSUP). */
static void undo_created_kek(struct bdev *dev, struct luks2_hdr *hdr, int new_slot,
                             struct keys_provider *provider, const char *kek_id,
                             struct nbdc_error *err)
{
  struct nbdc_error e = {0};
  char what[NBDC_ERROR_MAX];
  if (hdr && new_slot >= 0 &&
      (luks2_keyslot_remove(hdr, new_slot, &e) < 0 || luks2_write(dev, hdr, &e) < 0)) {
    snprintf(what, sizeof what,
             "kek %s created for this rekey is kept: its keyslot %d could not be removed (%.200s)",
             kek_id, new_slot, e.msg);
  } else {
    (void)keys_kek_revoke(provider, kek_id, &e);
    nbdc_error_clear(&e);
    if (keys_kek_destroy(provider, kek_id, &e) == 0)
      snprintf(what, sizeof what, "kek %s created for this rekey was destroyed", kek_id);
    else
      snprintf(what, sizeof what, "kek %s created for this rekey could not be destroyed: %.200s",
               kek_id, e.msg);
  }
  char msg[NBDC_ERROR_MAX];
  snprintf(msg, sizeof msg, "%s", err->msg);
  nbdc_error_set(err, err->code ? err->code : EIO, "%.*s; %s", NBDC_ERROR_MAX / 2, msg, what);
}

int volume_rekey(struct bdev *dev, const struct volume_rekey_opts *opts,
                 char kek_id_out[KEYS_ID_MAX], int *removed, struct nbdc_error *err)
{
  struct keys_provider *provider = NULL;
  struct volume_session *s = NULL;
  struct volume_session_opts so = {.cfg = opts->cfg, .detached = opts->detached};
  int r, new_slot;
  bool created = false, committed_removal = false;
  int written_slot = -1; /* keyslot step 1 committed in this run */

  *removed = 0;
  /* The lock held from the load to the last write, the header loaded once. */
  if ((r = volume_session_open(dev, &so, &s, err)) < 0)
    return r;
  if ((r = volume_session_unlock(s, NULL, 0, -1, err)) < 0)
    goto out;
  struct luks2_hdr *hdr = volume_session_hdr(s);
  enum keys_role role = !opts->kek_id || opts->kms_wrapped ? KEYS_ROLE_ADMIN : KEYS_ROLE_SERVE;
  if ((r = volume_session_provider(s, opts->provider, role, &provider, err)) < 0)
    goto out;

  if (opts->kek_id) {
    snprintf(kek_id_out, KEYS_ID_MAX, "%s", opts->kek_id);
  } else {
    char name[KEYS_NAME_MAX];
    snprintf(name, sizeof name, "nbdcrypt %s", luks2_uuid(hdr));
    if ((r = keys_kek_create(provider, name, kek_id_out, err)) < 0)
      goto out;
    created = true;
  }

  /* Step 1: the new binding, unless an interrupted run already made it.
   * Until step 2 every old keyslot stays, so the disk never needs the new
   * KEK before then. */
  new_slot = bound_keyslot(hdr, keys_provider_name(provider), kek_id_out, opts->kms_wrapped);
  if (new_slot < 0) {
    if ((r = volume_session_bind(s, provider, kek_id_out, opts->kms_wrapped, &new_slot, err)) < 0)
      goto out;
    if ((r = volume_session_commit(s, err)) < 0)
      goto out;
    written_slot = new_slot;
  }
  if ((r = verify_binding(s, new_slot, err)) < 0)
    goto out;

  /* Step 2: every other KEK-bound keyslot goes, with its tokens. */
  int stale[LUKS2_MAX_KEYSLOTS], nstale = 0;
  for (int id = luks2_token_next(hdr, -1, VOLUME_TOKEN_TYPE); id >= 0;
       id = luks2_token_next(hdr, id, VOLUME_TOKEN_TYPE)) {
    struct volume_token tok;
    if (volume_token_parse(hdr, id, &tok, NULL) < 0 || tok.keyslot == new_slot)
      continue;
    bool seen = false;
    for (int i = 0; i < nstale; i++)
      seen |= stale[i] == tok.keyslot;
    if (!seen && nstale < LUKS2_MAX_KEYSLOTS)
      stale[nstale++] = tok.keyslot;
  }
  for (int i = 0; i < nstale; i++)
    if ((r = volume_session_remove(s, stale[i], err)) < 0)
      goto out;
  /* From here on the disk may hold only the new binding: the KEK stays. */
  committed_removal = nstale > 0;
  if (nstale > 0 && (r = volume_session_commit(s, err)) < 0)
    goto out;
  *removed = nstale;
  r = 0;
out:
  if (r < 0 && created && !committed_removal) {
    undo_created_kek(dev, s ? volume_session_hdr(s) : NULL, written_slot, provider, kek_id_out,
                     err);
  } else if (r < 0 && created) {
    char msg[NBDC_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    nbdc_error_set(err, err->code, "%.*s; rerun with --kek %s to finish", NBDC_ERROR_MAX / 2, msg,
                   kek_id_out);
  }
  volume_session_close(s);
  return r;
}
