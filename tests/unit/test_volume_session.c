/* volume session: the header is loaded once, a KEK is fetched once for
 * several binds, a commit is refused when the header changed underneath,
 * the cached KEKs are wiped, and volume_rekey fetches only what it needs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "counting_bdev.h"
#include "unit_tmpdir.h"
#include "nbdcrypt/volume.h"

/* Reads of the primary header's first block: one per header load. */

struct fixture {
  char dir[256];
  struct keys_config *cfg;
  struct counting_bdev c;
  struct bdev *dev;        /* counting, over c.inner */
  char kek_a[KEYS_ID_MAX]; /* the KEK the disk is formatted with */
  char kek_b[KEYS_ID_MAX]; /* another KEK of the same provider */
};

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof *f);
  struct nbdc_error err = {0};
  char json[1024];
  assert_int_equal(unit_tmpdir_make(f->dir, sizeof f->dir, "volume-session"), 0);
  snprintf(json, sizeof json,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": "
           "\"%s/keystore.json\"}}, \"default_provider\": \"local\"}",
           f->dir);
  assert_int_equal(keys_config_parse(json, "test", &f->cfg, &err), 0);
  assert_int_equal(bdev_open_memory(32u << 20, &f->c.inner, &err), 0);
  assert_int_equal(counting_bdev_wrap(&f->c, &f->dev, &err), 0);
  struct volume_format_opts fo = {.cfg = f->cfg, .label = "t"};
  if (volume_format(f->c.inner, &fo, f->kek_a, &err) < 0)
    fail_msg("volume_format: %s", err.msg);
  struct keys_provider *p = NULL;
  assert_int_equal(keys_provider_open_role(f->cfg, "local", KEYS_ROLE_ADMIN, &p, &err), 0);
  assert_int_equal(keys_kek_create(p, "second", f->kek_b, &err), 0);
  keys_provider_close(p);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  bdev_close(f->dev);
  bdev_close(f->c.inner);
  keys_config_free(f->cfg);
  assert_int_equal(unit_tmpdir_remove(f->dir), 0);
  free(f);
  return 0;
}

static struct volume_session *open_unlocked(struct fixture *f)
{
  struct nbdc_error err = {0};
  struct volume_session *s = NULL;
  struct volume_session_opts so = {.cfg = f->cfg};
  if (volume_session_open(f->dev, &so, &s, &err) < 0)
    fail_msg("volume_session_open: %s", err.msg);
  if (volume_session_unlock(s, NULL, 0, -1, &err) < 0)
    fail_msg("volume_session_unlock: %s", err.msg);
  return s;
}

static int keyslot_count(struct bdev *dev)
{
  struct nbdc_error err = {0};
  struct luks2_hdr *hdr = NULL;
  if (luks2_load(dev, &hdr, &err) < 0)
    fail_msg("luks2_load: %s", err.msg);
  int ids[LUKS2_MAX_KEYSLOTS];
  int n = (int)luks2_keyslot_list(hdr, ids, LUKS2_MAX_KEYSLOTS);
  luks2_free(hdr);
  return n;
}

/* Open, unlock, two binds and a commit: one load, one read back by the
 * commit's seqid check; nothing else reads the header. */
static void test_header_loaded_once(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  f->c.header_reads = 0;
  struct volume_session *s = open_unlocked(f);
  assert_int_equal(f->c.header_reads, 1);
  struct keys_provider *p = NULL;
  assert_int_equal(volume_session_provider(s, NULL, KEYS_ROLE_SERVE, &p, &err), 0);
  int slot1 = -1, slot2 = -1;
  if (volume_session_bind(s, p, f->kek_b, false, &slot1, &err) < 0 ||
      volume_session_bind(s, p, f->kek_a, false, &slot2, &err) < 0)
    fail_msg("bind: %s", err.msg);
  assert_int_equal(f->c.header_reads, 1);
  if (volume_session_commit(s, &err) < 0)
    fail_msg("commit: %s", err.msg);
  assert_int_equal(f->c.header_reads, 2);
  if (volume_session_verify(s, slot1, &err) < 0 || volume_session_verify(s, slot2, &err) < 0)
    fail_msg("verify: %s", err.msg);
  assert_int_equal(f->c.header_reads, 2);
  volume_session_close(s);
  assert_int_equal(keyslot_count(f->c.inner), 3);
}

/* The unlock fetches KEK a; two binds to KEK b fetch it once; a bind to KEK
 * a and the verifications fetch nothing; the provider is opened once, by
 * the unlock, and its handle handed out again. */
static void test_kek_fetched_once(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  unsigned long before = keys_kek_get_count();
  unsigned long opens = keys_provider_open_count();
  struct volume_session *s = open_unlocked(f);
  assert_int_equal(keys_kek_get_count() - before, 1);
  assert_int_equal(keys_provider_open_count() - opens, 1);
  struct keys_provider *p = NULL, *again = NULL;
  assert_int_equal(volume_session_provider(s, "local", KEYS_ROLE_SERVE, &p, &err), 0);
  assert_int_equal(volume_session_provider(s, "local", KEYS_ROLE_SERVE, &again, &err), 0);
  assert_ptr_equal(p, again);
  int b1 = -1, b2 = -1, a1 = -1;
  if (volume_session_bind(s, p, f->kek_b, false, &b1, &err) < 0)
    fail_msg("bind: %s", err.msg);
  assert_int_equal(keys_kek_get_count() - before, 2);
  if (volume_session_bind(s, p, f->kek_b, false, &b2, &err) < 0 ||
      volume_session_bind(s, p, f->kek_a, false, &a1, &err) < 0)
    fail_msg("bind: %s", err.msg);
  assert_int_not_equal(b1, b2);
  if (volume_session_commit(s, &err) < 0)
    fail_msg("commit: %s", err.msg);
  for (int slot = 0; slot < 4; slot++)
    if (volume_session_verify(s, slot, &err) < 0)
      fail_msg("verify keyslot %d: %s", slot, err.msg);
  assert_int_equal(keys_kek_get_count() - before, 2);
  /* the unlock's provider handle served the binds and verifications too,
   * also when named by default (NULL) */
  assert_int_equal(volume_session_provider(s, NULL, KEYS_ROLE_SERVE, &again, &err), 0);
  assert_ptr_equal(p, again);
  assert_int_equal(keys_provider_open_count() - opens, 1);
  volume_session_close(s);

  /* Each new keyslot opens on its own from the disk. */
  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = b2};
  if (volume_open(f->c.inner, &uo, &vol, &err) < 0)
    fail_msg("volume_open keyslot %d: %s", b2, err.msg);
  assert_string_equal(volume_kek_id(vol), f->kek_b);
  volume_close(vol);
}

/* Another writer commits between the session's load and its commit: the
 * commit is refused, and the other writer's header stays. */
static void test_commit_refused_when_header_changed(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct volume_session *s = open_unlocked(f);
  struct keys_provider *p = NULL;
  assert_int_equal(volume_session_provider(s, NULL, KEYS_ROLE_SERVE, &p, &err), 0);
  int slot = -1;
  if (volume_session_bind(s, p, f->kek_b, false, &slot, &err) < 0)
    fail_msg("bind: %s", err.msg);

  struct volume *other = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  if (volume_open(f->c.inner, &uo, &other, &err) < 0)
    fail_msg("volume_open: %s", err.msg);
  struct keys_provider *op = NULL;
  assert_int_equal(keys_provider_open(f->cfg, "local", &op, &err), 0);
  int oslot = -1;
  if (volume_bind_kek(other, f->c.inner, op, f->kek_a, false, &oslot, &err) < 0 ||
      luks2_write(f->c.inner, volume_hdr_mut(other), &err) < 0)
    fail_msg("the other writer: %s", err.msg);
  keys_provider_close(op);
  volume_close(other);

  nbdc_error_clear(&err);
  assert_int_equal(volume_session_commit(s, &err), -EBUSY);
  assert_non_null(strstr(err.msg, "concurrent LUKS2 metadata update"));
  volume_session_close(s);

  /* The disk holds the other writer's two keyslots, not the session's. */
  assert_int_equal(keyslot_count(f->c.inner), 2);
  struct volume *vol = NULL;
  struct volume_unlock_opts uo2 = {.cfg = f->cfg, .keyslot = oslot};
  if (volume_open(f->c.inner, &uo2, &vol, &err) < 0)
    fail_msg("the other writer's keyslot: %s", err.msg);
  volume_close(vol);
}

/* volume_session_forget (also done by close) wipes the cached KEK bytes in
 * place; the next use fetches the KEK again. */
static void test_forget_wipes_keks(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct volume_session *s = open_unlocked(f);
  struct keys_provider *p = NULL;
  assert_int_equal(volume_session_provider(s, NULL, KEYS_ROLE_SERVE, &p, &err), 0);
  const uint8_t *kek = NULL, *cached = NULL;
  size_t len = 0;
  assert_int_equal(volume_session_kek(s, p, f->kek_a, &kek, &len, &err), 0);
  assert_int_equal(len, KEYS_KEK_SIZE);
  unsigned long before = keys_kek_get_count();
  assert_int_equal(volume_session_kek(s, p, f->kek_a, &cached, &len, &err), 0);
  assert_ptr_equal(kek, cached);
  assert_int_equal(keys_kek_get_count(), before); /* the unlock's, not fetched */
  uint8_t copy[KEYS_KEK_SIZE];
  static const uint8_t zero[KEYS_KEK_SIZE];
  memcpy(copy, kek, sizeof copy);
  assert_memory_not_equal(copy, zero, sizeof copy);

  volume_session_forget(s);
  assert_memory_equal(kek, zero, sizeof zero);
  const uint8_t *again = NULL;
  assert_int_equal(volume_session_kek(s, p, f->kek_a, &again, &len, &err), 0);
  assert_int_equal(keys_kek_get_count(), before + 1);
  assert_memory_equal(again, copy, sizeof copy);
  volume_session_close(s);
}

/* volume_rekey through the session: one Get of the old KEK (unlock), one of
 * the new (bind; the verification uses it again), one provider opened and
 * one header load. */
static void test_rekey_fetches_each_kek_once(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  struct volume_rekey_opts ro = {.cfg = f->cfg, .kek_id = f->kek_b};
  char new_id[KEYS_ID_MAX];
  int removed = -1;
  unsigned long before = keys_kek_get_count();
  f->c.header_reads = 0;
  unsigned long opens = keys_provider_open_count();
  if (volume_rekey(f->dev, &ro, new_id, &removed, &err) < 0)
    fail_msg("volume_rekey: %s", err.msg);
  assert_int_equal(keys_kek_get_count() - before, 2);
  /* one handle for the unlock, the bind and the check (same provider and role) */
  assert_int_equal(keys_provider_open_count() - opens, 1);
  /* one load, and one read back by each of the two commits */
  assert_int_equal(f->c.header_reads, 3);
  assert_string_equal(new_id, f->kek_b);
  assert_int_equal(removed, 1);
  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = -1};
  if (volume_open(f->c.inner, &uo, &vol, &err) < 0)
    fail_msg("volume_open after rekey: %s", err.msg);
  assert_string_equal(volume_kek_id(vol), f->kek_b);
  volume_close(vol);
  assert_int_equal(keyslot_count(f->c.inner), 1);
}

/* volume_enroll on a passphrase disk: one header load (and the commit's
 * read back), one Get (the new KEK, created here), the passphrase keyslot
 * kept, the new keyslot opening the same volume key. */
static void test_enroll_through_session(void **state)
{
  struct fixture *f = *state;
  struct nbdc_error err = {0};
  static const uint8_t pass[] = "correct horse";
  struct luks2_format_params params = {.volume_key_size = 64, .sector_size = 4096};
  struct volume *fresh = NULL;
  assert_int_equal(volume_create(&params, &fresh, &err), 0);
  size_t key_len = 0;
  const uint8_t *key = volume_key(fresh, &key_len);
  uint8_t want[64];
  memcpy(want, key, sizeof want);
  struct kdf_params kdf = {
      .type = KDF_PBKDF2, .hash = "sha256", .iterations = 1000, .salt_len = 32};
  int pslot = -1;
  /* the fixture's disk goes: zeros over its header and keyslots */
  uint8_t *buf = calloc(1, 16u << 20);
  assert_non_null(buf);
  assert_int_equal(bdev_pwrite(f->c.inner, buf, 16u << 20, 0, &err), 0);
  free(buf);
  if (luks2_keyslot_add(volume_hdr_mut(fresh), f->c.inner, -1, key, key_len, pass, sizeof pass - 1,
                        &kdf, &pslot, &err) < 0 ||
      luks2_write(f->c.inner, volume_hdr_mut(fresh), &err) < 0)
    fail_msg("a passphrase disk: %s", err.msg);
  volume_close(fresh);

  struct volume_enroll_opts eo = {
      .cfg = f->cfg, .passphrase = pass, .passphrase_len = sizeof pass - 1, .keyslot = -1};
  struct volume_enroll_result res;
  unsigned long before = keys_kek_get_count();
  f->c.header_reads = 0;
  if (volume_enroll(f->dev, &eo, &res, &err) < 0)
    fail_msg("volume_enroll: %s", err.msg);
  assert_int_equal(keys_kek_get_count() - before, 1);
  assert_int_equal(f->c.header_reads, 2);
  assert_true(res.kek_created);
  assert_false(res.was_luks1);
  assert_string_equal(res.provider, "local");
  assert_int_not_equal(res.keyslot, pslot);
  assert_int_equal(keyslot_count(f->c.inner), 2);

  struct volume *vol = NULL;
  struct volume_unlock_opts uo = {.cfg = f->cfg, .keyslot = res.keyslot};
  if (volume_open(f->c.inner, &uo, &vol, &err) < 0)
    fail_msg("the enrolled keyslot: %s", err.msg);
  assert_string_equal(volume_kek_id(vol), res.kek_id);
  assert_memory_equal(volume_key(vol, NULL), want, sizeof want);
  volume_close(vol);
  struct volume_unlock_opts po = {
      .passphrase = pass, .passphrase_len = sizeof pass - 1, .keyslot = pslot};
  if (volume_open(f->c.inner, &po, &vol, &err) < 0)
    fail_msg("the passphrase keyslot: %s", err.msg);
  volume_close(vol);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_header_loaded_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kek_fetched_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_commit_refused_when_header_changed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_forget_wipes_keks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rekey_fetches_each_kek_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_enroll_through_session, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
