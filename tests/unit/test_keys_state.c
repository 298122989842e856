/* KEK states on the native provider: created Active, revoked to Deactivated
 * or Compromised with a date (KMIP's transitions), read back from the file;
 * a destroyed key is not found; keystores without states read as Active;
 * a state nbdcrypt does not know is refused. */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/keys.h"

#define RFC3339_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
#define KEY_0_31   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define OLD_ID     "5d0b7c9e-1111-4222-8333-444455556666"

static char tmpdir[512];
static unsigned case_counter;

static int make_tmpdir(void **state)
{
  (void)state;
  return unit_tmpdir_make(tmpdir, sizeof tmpdir, "keys-state");
}

static int remove_tmpdir(void **state)
{
  (void)state;
  return unit_tmpdir_remove(tmpdir);
}

struct native {
  char keystore[700];
  struct keys_config *cfg;
  struct keys_provider *p;
};

static void open_native(struct native *n)
{
  char dir[600], text[1024];
  struct nbdc_error err = {0};
  snprintf(dir, sizeof dir, "%s/case%u", tmpdir, ++case_counter);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(n->keystore, sizeof n->keystore, "%s/keystore.json", dir);
  snprintf(text, sizeof text,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": \"%s\"}}}",
           n->keystore);
  assert_int_equal(keys_config_parse(text, "test", &n->cfg, &err), 0);
  if (keys_provider_open(n->cfg, "local", &n->p, &err) != 0)
    fail_msg("open: %s", err.msg);
}

static void close_native(struct native *n)
{
  keys_provider_close(n->p);
  keys_config_free(n->cfg);
}

static enum keys_kek_state state_of(struct native *n, const char *id)
{
  struct nbdc_error err = {0};
  enum keys_kek_state st;
  if (keys_kek_get_state(n->p, id, &st, &err) != 0)
    fail_msg("state of %s: %s", id, err.msg);
  return st;
}

/* The "state" and "revoked" fields of key id as written in the file. */
static void file_fields(struct native *n, const char *id, char *state, char *revoked)
{
  struct json_object *root = json_object_from_file(n->keystore), *keys, *entry, *v;
  assert_non_null(root);
  assert_true(json_object_object_get_ex(root, "keys", &keys));
  assert_true(json_object_object_get_ex(keys, id, &entry));
  snprintf(state, 32, "%s",
           json_object_object_get_ex(entry, "state", &v) ? json_object_get_string(v) : "");
  snprintf(revoked, 40, "%s",
           json_object_object_get_ex(entry, "revoked", &v) ? json_object_get_string(v) : "");
  json_object_put(root);
}

static bool rfc3339(const char *s)
{
  regex_t rx;
  assert_int_equal(regcomp(&rx, RFC3339_RE, REG_EXTENDED | REG_NOSUB), 0);
  bool ok = regexec(&rx, s, 0, NULL, 0) == 0;
  regfree(&rx);
  return ok;
}

static void test_native_states(void **state)
{
  (void)state;
  struct native n;
  open_native(&n);
  struct nbdc_error err = {0};
  char retired[KEYS_ID_MAX], leaked[KEYS_ID_MAX], st[32], revoked[40];
  assert_int_equal(keys_kek_create(n.p, "retired", retired, &err), 0);
  assert_int_equal(keys_kek_create(n.p, "leaked", leaked, &err), 0);

  /* created: Active, and the file says nothing about states */
  assert_int_equal(state_of(&n, retired), KEYS_KEK_ACTIVE);
  file_fields(&n, retired, st, revoked);
  assert_string_equal(st, "");
  assert_string_equal(revoked, "");

  /* revoked (not compromised): Deactivated, with a date */
  assert_int_equal(keys_kek_revoke(n.p, retired, &err), 0);
  assert_int_equal(state_of(&n, retired), KEYS_KEK_DEACTIVATED);
  assert_int_equal(state_of(&n, leaked), KEYS_KEK_ACTIVE);
  file_fields(&n, retired, st, revoked);
  assert_string_equal(st, "deactivated");
  assert_true(rfc3339(revoked));
  /* again without a compromise: refused, as KMIP does */
  assert_int_equal(keys_kek_revoke(n.p, retired, &err), -EPERM);
  assert_non_null(strstr(err.msg, "is deactivated, not active: only a compromise can revoke"));
  assert_int_equal(state_of(&n, retired), KEYS_KEK_DEACTIVATED);

  /* compromised: from Active, and from Deactivated; again is a no-op */
  assert_int_equal(keys_kek_revoke_compromised(n.p, leaked, &err), 0);
  assert_int_equal(state_of(&n, leaked), KEYS_KEK_COMPROMISED);
  assert_int_equal(keys_kek_revoke_compromised(n.p, retired, &err), 0);
  assert_int_equal(state_of(&n, retired), KEYS_KEK_COMPROMISED);
  file_fields(&n, leaked, st, revoked);
  assert_string_equal(st, "compromised");
  assert_true(rfc3339(revoked));
  assert_int_equal(keys_kek_revoke_compromised(n.p, leaked, &err), 0);
  assert_int_equal(keys_kek_revoke(n.p, leaked, &err), -EPERM);

  /* a revoked key can still be fetched: refusing it is the caller's choice */
  uint8_t *kek = NULL;
  assert_int_equal(keys_kek_get(n.p, leaked, &kek, &err), 0);
  secmem_free(kek, KEYS_KEK_SIZE);

  /* list shows the state and the date */
  struct keys_kek_info *list;
  size_t count;
  assert_int_equal(keys_kek_list(n.p, NULL, &list, &count, &err), 0);
  assert_int_equal(count, 2);
  for (size_t i = 0; i < count; i++) {
    assert_string_equal(list[i].state, "compromised");
    assert_true(rfc3339(list[i].revoked));
  }
  free(list);

  /* destroyed: gone, with the not-found error keys_kek_get gives */
  assert_int_equal(keys_kek_destroy(n.p, leaked, &err), 0);
  enum keys_kek_state after = KEYS_KEK_ACTIVE;
  assert_int_equal(keys_kek_get_state(n.p, leaked, &after, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "not found in keystore"));
  assert_int_equal(keys_kek_revoke_compromised(n.p, leaked, &err), -ENOENT);
  close_native(&n);
}

static void write_keystore(struct native *n, const char *entry_fields)
{
  FILE *f = fopen(n->keystore, "w");
  assert_non_null(f);
  fprintf(f,
          "{\"version\": 1, \"keys\": {\"" OLD_ID "\": {\"key\": \"" KEY_0_31
          "\", \"name\": \"old\"%s}}}",
          entry_fields);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(chmod(n->keystore, 0600), 0);
}

static void test_keystore_without_states_reads_active(void **state)
{
  (void)state;
  struct native n;
  open_native(&n);
  write_keystore(&n, ", \"created\": \"2026-11-22T18:00:00Z\"");
  assert_int_equal(state_of(&n, OLD_ID), KEYS_KEK_ACTIVE);
  /* a rewrite for another key keeps it Active without writing a state */
  struct nbdc_error err = {0};
  char id[KEYS_ID_MAX], st[32], revoked[40];
  assert_int_equal(keys_kek_create(n.p, "new", id, &err), 0);
  file_fields(&n, OLD_ID, st, revoked);
  assert_string_equal(st, "");
  assert_int_equal(state_of(&n, OLD_ID), KEYS_KEK_ACTIVE);
  close_native(&n);
}

static void test_unknown_state_refused(void **state)
{
  (void)state;
  static const char *const bad[] = {", \"state\": \"destroyed\"", ", \"state\": \"Active\"",
                                    ", \"state\": 2", ", \"revoked\": 5"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct native n;
    open_native(&n);
    write_keystore(&n, bad[i]);
    struct nbdc_error err = {0};
    enum keys_kek_state st;
    if (keys_kek_get_state(n.p, OLD_ID, &st, &err) != -EINVAL)
      fail_msg("accepted %s", bad[i]);
    assert_non_null(strstr(err.msg, "kek " OLD_ID));
    close_native(&n);
  }
}

static void test_state_names(void **state)
{
  (void)state;
  assert_string_equal(keys_kek_state_name(KEYS_KEK_PRE_ACTIVE), "pre-active");
  assert_string_equal(keys_kek_state_name(KEYS_KEK_ACTIVE), "active");
  assert_string_equal(keys_kek_state_name(KEYS_KEK_DEACTIVATED), "deactivated");
  assert_string_equal(keys_kek_state_name(KEYS_KEK_COMPROMISED), "compromised");
  assert_string_equal(keys_kek_state_name(KEYS_KEK_DESTROYED), "destroyed");
  assert_string_equal(keys_kek_state_name(KEYS_KEK_DESTROYED_COMPROMISED), "destroyed-compromised");
  assert_string_equal(keys_kek_state_name(0), "unknown");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_native_states),
      cmocka_unit_test(test_keystore_without_states_reads_active),
      cmocka_unit_test(test_unknown_state_refused),
      cmocka_unit_test(test_state_names),
  };
  return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
