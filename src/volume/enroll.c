/* Enrollment: bind a passphrase disk to a KEK, converting a LUKS1 disk first
 * when asked; one volume session from the load to the write. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nbdcrypt/luks1.h"
#include "nbdcrypt/volume.h"

int volume_enroll(struct bdev *dev, const struct volume_enroll_opts *opts,
                  struct volume_enroll_result *res, struct nbdc_error *err)
{
  struct volume_session *s = NULL;
  struct keys_provider *provider = NULL;
  struct volume_session_opts so = {
      .cfg = opts->cfg, .detached = opts->detached, .allow_luks1 = opts->convert};
  int r;

  memset(res, 0, sizeof *res);
  res->keyslot = -1;
  if ((r = volume_session_open(dev, &so, &s, err)) < 0)
    return r;
  if ((r = volume_session_unlock(s, opts->passphrase, opts->passphrase_len, opts->keyslot, err)) <
      0)
    goto out;
  struct volume *vol = volume_session_volume(s);
  enum keys_role role = !opts->kek_id || opts->kms_wrapped ? KEYS_ROLE_ADMIN : KEYS_ROLE_SERVE;
  if ((r = volume_session_provider(s, opts->provider, role, &provider, err)) < 0)
    goto out;
  snprintf(res->provider, sizeof res->provider, "%s", keys_provider_name(provider));
  if (opts->kek_id) {
    snprintf(res->kek_id, sizeof res->kek_id, "%s", opts->kek_id);
  } else {
    char name[KEYS_NAME_MAX];
    snprintf(name, sizeof name, "nbdcrypt %s", volume_uuid(vol));
    if ((r = keys_kek_create(provider, name, res->kek_id, err)) < 0)
      goto out;
    res->kek_created = true;
  }
  res->was_luks1 = volume_luks1(vol) != NULL;
  if (res->was_luks1) {
    res->luks1_dropped = luks1_active_keyslots(volume_luks1(vol)) - 1;
    r = volume_convert_luks1(vol, dev, provider, res->kek_id, opts->kms_wrapped, opts->passphrase,
                             opts->passphrase_len, &res->keyslot, &res->converted, err);
  } else if ((r = volume_session_bind(s, provider, res->kek_id, opts->kms_wrapped, &res->keyslot,
                                      err)) == 0) {
    r = volume_session_commit(s, err);
  }
  if (r < 0 && res->kek_created && !res->converted) {
    /* The disk never needed the new KEK: its passphrase keyslot stays, the
     * KEK goes (a KMIP key is revoked first: Destroy refuses an active one). */
    struct nbdc_error e = {0};
    (void)keys_kek_revoke(provider, res->kek_id, &e);
    nbdc_error_clear(&e);
    if (keys_kek_destroy(provider, res->kek_id, &e) == 0) {
      res->kek_undo = VOLUME_KEK_DESTROYED;
    } else {
      res->kek_undo = VOLUME_KEK_NOT_DESTROYED;
      snprintf(res->undo_error, sizeof res->undo_error, "%s", e.msg);
    }
  }
out:
  volume_session_close(s);
  return r;
}
