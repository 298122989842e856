/* The native keystore: round trips, file modes, refusals, the file format,
 * corrupt files and concurrent creators. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/crypto.h"
#include "nbdcrypt/keys.h"

#define UUID_V4_RE "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
#define RFC3339_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"

/* base64 of bytes 0..31 and of 16 zero bytes */
#define KEY_0_31  "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY_SHORT "AAAAAAAAAAAAAAAAAAAAAA=="

static char tmpdir[512];
static unsigned case_counter;

static int make_tmpdir(void **state)
{
  (void)state;
  if (unit_tmpdir_make(tmpdir, sizeof tmpdir, "keys-native") < 0)
    return -1;
  umask(022); /* the keystore must be 0600 whatever the umask */
  return 0;
}

static int remove_tmpdir(void **state)
{
  (void)state;
  return unit_tmpdir_remove(tmpdir);
}

/* A fresh directory for one test: tmpdir/caseN. */
static void case_dir(char *dir, size_t size)
{
  snprintf(dir, size, "%s/case%u", tmpdir, ++case_counter);
  assert_int_equal(mkdir(dir, 0700), 0);
}

static void write_file_mode(const char *path, const char *text, mode_t mode)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_true(fputs(text, f) >= 0);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(chmod(path, mode), 0);
}

struct native {
  struct keys_config *cfg;
  struct keys_provider *p;
};

static void open_native(struct native *n, const char *keystore)
{
  char text[1024];
  struct nbdc_error err = {0};
  snprintf(text, sizeof text,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": \"%s\"}}}", keystore);
  assert_int_equal(keys_config_parse(text, "test", &n->cfg, &err), 0);
  if (keys_provider_open(n->cfg, "local", &n->p, &err) != 0)
    fail_msg("open: %s", err.msg);
}

static void close_native(struct native *n)
{
  keys_provider_close(n->p);
  keys_config_free(n->cfg);
}

static void create_ok(struct native *n, const char *name, char id[KEYS_ID_MAX])
{
  struct nbdc_error err = {0};
  if (keys_kek_create(n->p, name, id, &err) != 0)
    fail_msg("create %s: %s", name ? name : "(null)", err.msg);
}

static bool matches(const char *re, const char *s)
{
  regex_t rx;
  assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
  bool ok = regexec(&rx, s, 0, NULL, 0) == 0;
  regfree(&rx);
  return ok;
}

static mode_t mode_of(const char *path)
{
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return st.st_mode & 07777;
}

/* get must fail with code and a message containing each of the strings. */
static void expect_get_error(struct native *n, const char *id, int code, const char *want1,
                             const char *want2)
{
  struct nbdc_error err = {0};
  uint8_t *kek = NULL;
  int r = keys_kek_get(n->p, id, &kek, &err);
  if (r != -code || !strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
    fail_msg("get %s: got %d \"%s\", wanted %d with \"%s\" and \"%s\"", id, r, err.msg, -code,
             want1, want2 ? want2 : "");
  assert_null(kek);
}

static void test_round_trip(void **state)
{
  (void)state;
  char dir[600], keystore[700];
  case_dir(dir, sizeof dir);
  snprintf(keystore, sizeof keystore, "%s/a/b/keystore.json", dir);
  struct native n;
  open_native(&n, keystore);
  struct nbdc_error err = {0};

  /* A missing keystore is an empty one, and reading does not create it. */
  struct keys_kek_info *list = NULL;
  size_t count = 99;
  assert_int_equal(keys_kek_list(n.p, NULL, &list, &count, &err), 0);
  assert_int_equal(count, 0);
  free(list);
  char want[1024];
  /* ... and says so: the list's note, a get's error */
  snprintf(want, sizeof want, "keystore %s does not exist (yet): no KEK was created with it",
           keystore);
  assert_int_equal(err.code, 0);
  assert_string_equal(err.msg, want);
  snprintf(want, sizeof want,
           "kek 00000000-0000-4000-8000-000000000000 not found: keystore %s (provider local) "
           "does not exist; is this the configuration the KEK was created with?",
           keystore);
  expect_get_error(&n, "00000000-0000-4000-8000-000000000000", ENOENT, want, NULL);
  struct stat st;
  snprintf(want, sizeof want, "%s/a", dir);
  assert_int_equal(stat(want, &st), -1);

  char alpha[KEYS_ID_MAX], beta[KEYS_ID_MAX], alpha2[KEYS_ID_MAX], unnamed[KEYS_ID_MAX];
  create_ok(&n, "alpha", alpha);
  create_ok(&n, "beta", beta);
  create_ok(&n, "alpha-2", alpha2);
  create_ok(&n, NULL, unnamed);
  assert_true(matches(UUID_V4_RE, alpha));
  assert_true(matches(UUID_V4_RE, beta));
  assert_string_not_equal(alpha, beta);

  uint8_t *k_alpha = NULL, *k_beta = NULL, *again = NULL;
  assert_int_equal(keys_kek_get(n.p, alpha, &k_alpha, &err), 0);
  assert_int_equal(keys_kek_get(n.p, beta, &k_beta, &err), 0);
  assert_memory_not_equal(k_alpha, k_beta, KEYS_KEK_SIZE);
  assert_int_equal(keys_kek_get(n.p, alpha, &again, &err), 0);
  assert_memory_equal(k_alpha, again, KEYS_KEK_SIZE);
  secmem_free(again, KEYS_KEK_SIZE);

  assert_int_equal(keys_kek_list(n.p, NULL, &list, &count, &err), 0);
  assert_int_equal(count, 4);
  for (size_t i = 0; i < count; i++) {
    assert_string_equal(list[i].state, "active");
    assert_true(matches(RFC3339_RE, list[i].created));
  }
  assert_string_equal(list[0].id, alpha);
  assert_string_equal(list[0].name, "alpha");
  assert_string_equal(list[3].name, "");
  free(list);
  assert_int_equal(keys_kek_list(n.p, "alpha", &list, &count, &err), 0);
  assert_int_equal(count, 2);
  assert_string_equal(list[0].name, "alpha");
  assert_string_equal(list[1].name, "alpha-2");
  assert_string_equal(list[1].id, alpha2);
  free(list);
  assert_int_equal(keys_kek_list(n.p, "zeta", &list, &count, &err), 0);
  assert_int_equal(count, 0);
  free(list);

  /* destroy removes exactly that key. */
  assert_int_equal(keys_kek_destroy(n.p, beta, &err), 0);
  expect_get_error(&n, beta, ENOENT, "not found in keystore", "(provider local)");
  assert_int_equal(keys_kek_destroy(n.p, beta, &err), -ENOENT);
  assert_int_equal(keys_kek_get(n.p, alpha, &again, &err), 0);
  assert_memory_equal(k_alpha, again, KEYS_KEK_SIZE);
  secmem_free(again, KEYS_KEK_SIZE);
  assert_int_equal(keys_kek_list(n.p, NULL, &list, &count, &err), 0);
  assert_int_equal(count, 3);
  free(list);

  /* revoke of an unknown key: not found (states: test_keys_state.c) */
  assert_int_equal(keys_kek_revoke(n.p, beta, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "not found in keystore"));

  secmem_free(k_alpha, KEYS_KEK_SIZE);
  secmem_free(k_beta, KEYS_KEK_SIZE);
  close_native(&n);
}

static void test_modes_and_atomic_write(void **state)
{
  (void)state;
  char dir[600], keystore[700], path[800];
  case_dir(dir, sizeof dir);
  snprintf(keystore, sizeof keystore, "%s/new/sub/keystore.json", dir);
  struct native n;
  open_native(&n, keystore);
  char id[KEYS_ID_MAX];
  create_ok(&n, "first", id);
  create_ok(&n, "second \"quoted\"\n\\ name", id);

  assert_int_equal(mode_of(keystore), 0600);
  snprintf(path, sizeof path, "%s.lock", keystore);
  assert_int_equal(mode_of(path), 0600);
  snprintf(path, sizeof path, "%s/new", dir);
  assert_int_equal(mode_of(path), 0700);
  snprintf(path, sizeof path, "%s/new/sub", dir);
  assert_int_equal(mode_of(path), 0700);

  /* No temporary file is left beside the keystore. */
  DIR *d = opendir(path);
  assert_non_null(d);
  struct dirent *de;
  int entries = 0;
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    entries++;
    if (strcmp(de->d_name, "keystore.json") != 0 && strcmp(de->d_name, "keystore.json.lock") != 0)
      fail_msg("unexpected file %s beside the keystore", de->d_name);
  }
  closedir(d);
  assert_int_equal(entries, 2);

  /* The file has the documented shape, readable by any JSON parser. */
  struct json_object *root = json_object_from_file(keystore);
  assert_non_null(root);
  struct json_object *version, *keys;
  assert_true(json_object_object_get_ex(root, "version", &version));
  assert_true(json_object_is_type(version, json_type_int));
  assert_int_equal(json_object_get_int(version), 1);
  assert_true(json_object_object_get_ex(root, "keys", &keys));
  assert_int_equal(json_object_object_length(keys), 2);
  struct nbdc_error err = {0};
  json_object_object_foreach(keys, kid, entry)
  {
    struct json_object *key, *name, *created;
    assert_true(matches(UUID_V4_RE, kid));
    assert_true(json_object_object_get_ex(entry, "key", &key));
    assert_true(json_object_object_get_ex(entry, "name", &name));
    assert_true(json_object_object_get_ex(entry, "created", &created));
    assert_true(json_object_is_type(name, json_type_string));
    assert_true(matches(RFC3339_RE, json_object_get_string(created)));
    uint8_t raw[64];
    size_t raw_len = 0;
    assert_int_equal(base64_decode(json_object_get_string(key), raw, sizeof raw, &raw_len), 0);
    assert_int_equal(raw_len, KEYS_KEK_SIZE);
    uint8_t *kek = NULL;
    assert_int_equal(keys_kek_get(n.p, kid, &kek, &err), 0);
    assert_memory_equal(kek, raw, KEYS_KEK_SIZE);
    secmem_free(kek, KEYS_KEK_SIZE);
    if (strcmp(kid, id) == 0)
      assert_string_equal(json_object_get_string(name), "second \"quoted\"\n\\ name");
  }
  json_object_put(root);
  close_native(&n);
}

/* A keystore written by another program (e.g. Python's json.dump) is read;
 * fields we do not know survive our rewrites. */
static void test_foreign_keystore(void **state)
{
  (void)state;
  char dir[600], keystore[700];
  case_dir(dir, sizeof dir);
  snprintf(keystore, sizeof keystore, "%s/keystore.json", dir);
  write_file_mode(keystore,
                  "{\"version\": 1, \"comment\": \"kept\", \"keys\": "
                  "{\"5d0b7c9e-1111-4222-8333-444455556666\": {\"key\": \"" KEY_0_31 "\", "
                  "\"name\": \"imported\", \"created\": \"2026-11-22T18:00:00Z\", "
                  "\"note\": {\"by\": \"ops\"}}}}",
                  0600);
  struct native n;
  open_native(&n, keystore);
  struct nbdc_error err = {0};
  uint8_t *kek = NULL;
  assert_int_equal(keys_kek_get(n.p, "5d0b7c9e-1111-4222-8333-444455556666", &kek, &err), 0);
  for (int i = 0; i < KEYS_KEK_SIZE; i++)
    assert_int_equal(kek[i], i);
  secmem_free(kek, KEYS_KEK_SIZE);

  char id[KEYS_ID_MAX];
  create_ok(&n, "new", id);
  struct json_object *root = json_object_from_file(keystore);
  assert_non_null(root);
  struct json_object *comment, *keys, *old, *note, *by;
  assert_true(json_object_object_get_ex(root, "comment", &comment));
  assert_string_equal(json_object_get_string(comment), "kept");
  assert_true(json_object_object_get_ex(root, "keys", &keys));
  assert_true(json_object_object_get_ex(keys, "5d0b7c9e-1111-4222-8333-444455556666", &old));
  assert_true(json_object_object_get_ex(old, "note", &note));
  assert_true(json_object_object_get_ex(note, "by", &by));
  assert_string_equal(json_object_get_string(by), "ops");
  json_object_put(root);
  close_native(&n);
}

static void test_refuses_open_modes(void **state)
{
  (void)state;
  static const mode_t bad_modes[] = {0640, 0604, 0660, 0606, 0610};
  char dir[600], keystore[700];
  case_dir(dir, sizeof dir);
  snprintf(keystore, sizeof keystore, "%s/keystore.json", dir);
  struct native n;
  open_native(&n, keystore);
  char id[KEYS_ID_MAX];
  create_ok(&n, "k", id);

  for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
    char mode_text[16];
    snprintf(mode_text, sizeof mode_text, "mode %04o", (unsigned)bad_modes[i]);
    assert_int_equal(chmod(keystore, bad_modes[i]), 0);
    expect_get_error(&n, id, EPERM, keystore, mode_text);
    expect_get_error(&n, id, EPERM, "chmod 600", NULL);
    /* Nor is it rewritten. */
    char other[KEYS_ID_MAX];
    struct nbdc_error err = {0};
    assert_int_equal(keys_kek_create(n.p, "x", other, &err), -EPERM);
    assert_int_equal(mode_of(keystore), bad_modes[i]);
  }
  assert_int_equal(chmod(keystore, 0400), 0); /* owner-only read is fine */
  uint8_t *kek = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(keys_kek_get(n.p, id, &kek, &err), 0);
  secmem_free(kek, KEYS_KEK_SIZE);
  close_native(&n);
}

static void test_refuses_symlink_dir_and_foreign_owner(void **state)
{
  (void)state;
  char dir[600], real[700], link[700];
  case_dir(dir, sizeof dir);
  snprintf(real, sizeof real, "%s/real.json", dir);
  snprintf(link, sizeof link, "%s/link.json", dir);
  struct native n;
  open_native(&n, real);
  char id[KEYS_ID_MAX];
  create_ok(&n, "k", id);
  close_native(&n);

  assert_int_equal(symlink(real, link), 0);
  open_native(&n, link);
  expect_get_error(&n, id, EPERM, link, "symbolic link");
  close_native(&n);

  open_native(&n, dir);
  expect_get_error(&n, id, EPERM, dir, "not a regular file");
  close_native(&n);

  /* Only root can give a file away; as root, check the owner is enforced. */
  if (geteuid() == 0) {
    assert_int_equal(chown(real, 65534, 65534), 0);
    open_native(&n, real);
    expect_get_error(&n, id, EPERM, real, "owned by uid 65534");
    close_native(&n);
  }
}

static void test_corrupt_keystores(void **state)
{
  (void)state;
  static const struct {
    const char *text;
    const char *want;
  } cases[] = {
      {"{\"version\": 1, \"keys\": {", "is not valid JSON"},
      {"{\"version\": 1, \"keys\": {}} extra", "is not valid JSON"},
      {"[]", "is not a JSON object"},
      {"{\"keys\": {}}", "field version is missing"},
      {"{\"version\": 2, \"keys\": {}}", "version 2 is not supported (expected 1)"},
      {"{\"version\": \"1\", \"keys\": {}}", "is not supported (expected 1)"},
      {"{\"version\": 1}", "field keys is missing"},
      {"{\"version\": 1, \"keys\": []}", "field keys is not an object"},
      {"{\"version\": 1, \"keys\": {\"id-1\": \"x\"}}", "kek id-1 is not an object"},
      {"{\"version\": 1, \"keys\": {\"id-2\": {\"name\": \"n\"}}}", "kek id-2 has no field key"},
      {"{\"version\": 1, \"keys\": {\"id-3\": {\"key\": 7}}}",
       "field key of kek id-3 is not a string"},
      {"{\"version\": 1, \"keys\": {\"id-4\": {\"key\": \"" KEY_SHORT "\"}}}",
       "key of kek id-4 is 16 bytes, expected 32"},
      {"{\"version\": 1, \"keys\": {\"id-5\": {\"key\": \"!!not base64!!\"}}}",
       "field key of kek id-5 is not base64 of 32 bytes"},
      {"{\"version\": 1, \"keys\": {\"id-6\": {\"key\": \"" KEY_0_31 KEY_0_31 "\"}}}",
       "field key of kek id-6 is not base64 of 32 bytes"},
      {"{\"version\": 1, \"keys\": {\"id-7\": {\"key\": \"" KEY_0_31 "\", \"name\": 3}}}",
       "field name of kek id-7 is not a string"},
  };
  char dir[600], keystore[700];
  case_dir(dir, sizeof dir);
  snprintf(keystore, sizeof keystore, "%s/keystore.json", dir);
  struct native n;
  open_native(&n, keystore);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_file_mode(keystore, cases[i].text, 0600);
    expect_get_error(&n, "id-1", EINVAL, keystore, cases[i].want);
    /* A corrupt keystore is never overwritten by create. */
    char id[KEYS_ID_MAX];
    struct nbdc_error err = {0};
    assert_int_equal(keys_kek_create(n.p, "x", id, &err), -EINVAL);
  }
  close_native(&n);
}

/* Two processes creating keys at once: the lock makes every key survive. */
static void test_concurrent_creators(void **state)
{
  (void)state;
  enum { PER_CHILD = 20 };
  char dir[600], keystore[700];
  case_dir(dir, sizeof dir);
  snprintf(keystore, sizeof keystore, "%s/keystore.json", dir);

  pid_t pids[2];
  for (int c = 0; c < 2; c++) {
    pids[c] = fork();
    assert_true(pids[c] >= 0);
    if (pids[c] == 0) {
      /* No cmocka asserts in the child: report through the exit status. */
      struct native n = {0};
      char text[1024];
      struct nbdc_error err = {0};
      snprintf(text, sizeof text,
               "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": \"%s\"}}}",
               keystore);
      int status = 0;
      if (keys_config_parse(text, "test", &n.cfg, &err) != 0 ||
          keys_provider_open(n.cfg, NULL, &n.p, &err) != 0) {
        fprintf(stderr, "child %d: %s\n", c, err.msg);
        _exit(2);
      }
      for (int i = 0; i < PER_CHILD && status == 0; i++) {
        char name[32], id[KEYS_ID_MAX];
        snprintf(name, sizeof name, "child%d-%02d", c, i);
        if (keys_kek_create(n.p, name, id, &err) != 0) {
          fprintf(stderr, "child %d: %s\n", c, err.msg);
          status = 1;
        }
      }
      close_native(&n);
      _exit(status);
    }
  }
  for (int c = 0; c < 2; c++) {
    int status = -1;
    /* Bounded wait: 60 s at most, then kill our own child. */
    for (int tries = 0; tries < 600; tries++) {
      pid_t w = waitpid(pids[c], &status, WNOHANG);
      if (w == pids[c])
        break;
      assert_int_equal(w, 0);
      struct timespec ts = {0, 100 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    if (!WIFEXITED(status)) {
      kill(pids[c], SIGKILL);
      waitpid(pids[c], &status, 0);
      fail_msg("child %d did not finish", c);
    }
    assert_int_equal(WEXITSTATUS(status), 0);
  }

  struct native n;
  open_native(&n, keystore);
  struct keys_kek_info *list = NULL;
  size_t count = 0;
  struct nbdc_error err = {0};
  assert_int_equal(keys_kek_list(n.p, NULL, &list, &count, &err), 0);
  assert_int_equal(count, 2 * PER_CHILD);
  for (size_t i = 0; i < count; i++)
    for (size_t j = i + 1; j < count; j++)
      assert_string_not_equal(list[i].id, list[j].id);
  free(list);
  assert_int_equal(keys_kek_list(n.p, "child1-", &list, &count, &err), 0);
  assert_int_equal(count, PER_CHILD);
  free(list);
  close_native(&n);
}

static void test_name_too_long(void **state)
{
  (void)state;
  char dir[600], keystore[700];
  case_dir(dir, sizeof dir);
  snprintf(keystore, sizeof keystore, "%s/keystore.json", dir);
  struct native n;
  open_native(&n, keystore);
  char name[KEYS_NAME_MAX + 1];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  char id[KEYS_ID_MAX];
  struct nbdc_error err = {0};
  assert_int_equal(keys_kek_create(n.p, name, id, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "too long"));
  close_native(&n);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_modes_and_atomic_write),
      cmocka_unit_test(test_foreign_keystore),
      cmocka_unit_test(test_refuses_open_modes),
      cmocka_unit_test(test_refuses_symlink_dir_and_foreign_owner),
      cmocka_unit_test(test_corrupt_keystores),
      cmocka_unit_test(test_concurrent_creators),
      cmocka_unit_test(test_name_too_long),
  };
  return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
