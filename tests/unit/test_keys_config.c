/* Key provider configuration: where it is found, what is valid, what each
 * mistake says. */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/keys.h"
#include "keys/config.h"

static char tmpdir[PATH_MAX];

static int make_tmpdir(void **state)
{
  (void)state;
  if (unit_tmpdir_make(tmpdir, sizeof tmpdir, "keys-config") < 0)
    return -1;
  unsetenv("NBDCRYPT_CONFIG");
  return 0;
}

static int remove_tmpdir(void **state)
{
  (void)state;
  return unit_tmpdir_remove(tmpdir);
}

static void write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
}

/* Parse text expecting failure with -EINVAL and a message containing want. */
static void expect_parse_error(const char *text, const char *want)
{
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  int r = keys_config_parse(text, "/etc/test/config.json", &cfg, &err);
  if (r != -EINVAL || !strstr(err.msg, want))
    fail_msg("config %s: got %d \"%s\", wanted -EINVAL with \"%s\"", text, r, err.msg, want);
  assert_null(cfg);
  assert_non_null(strstr(err.msg, "/etc/test/config.json"));
}

static const char *keystore_of(const struct keys_config *cfg, const char *name)
{
  const char *type;
  struct json_object *conf, *keystore;
  assert_true(keys_config_find(cfg, name, &type, &conf));
  assert_string_equal(type, "native");
  assert_true(json_object_object_get_ex(conf, "keystore", &keystore));
  return json_object_get_string(keystore);
}

static void test_parse_two_providers(void **state)
{
  (void)state;
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  const char *text = "{\"providers\": {"
                     "  \"corp-kms\": {\"type\": \"kmip\", \"servers\": [\"kms1:5696\"]},"
                     "  \"local\": {\"type\": \"native\", \"keystore\": \"/var/lib/ks.json\"}},"
                     " \"default_provider\": \"local\"}";
  assert_int_equal(keys_config_parse(text, "/etc/test/config.json", &cfg, &err), 0);
  assert_string_equal(keys_config_origin(cfg), "/etc/test/config.json");
  assert_string_equal(keys_config_default_provider(cfg), "local");
  assert_int_equal(keys_config_provider_count(cfg), 2);
  assert_string_equal(keys_config_provider_name(cfg, 0), "corp-kms");
  assert_string_equal(keys_config_provider_name(cfg, 1), "local");
  assert_null(keys_config_provider_name(cfg, 2));
  assert_string_equal(keystore_of(cfg, "local"), "/var/lib/ks.json");

  /* The kmip provider's object is kept whole for its constructor. */
  const char *type;
  struct json_object *conf, *servers;
  assert_true(keys_config_find(cfg, "corp-kms", &type, &conf));
  assert_string_equal(type, "kmip");
  assert_true(json_object_object_get_ex(conf, "servers", &servers));
  assert_int_equal(json_object_array_length(servers), 1);
  keys_config_free(cfg);
}

static void test_single_provider_is_default(void **state)
{
  (void)state;
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(
      keys_config_parse("{\"providers\": {\"only\": {\"type\": \"native\", \"keystore\": \"/k\"}}}",
                        "test", &cfg, &err),
      0);
  assert_string_equal(keys_config_default_provider(cfg), "only");
  keys_config_free(cfg);
}

static void test_unknown_fields_accepted(void **state)
{
  (void)state;
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  const char *text = "{\"providers\": {\"l\": {\"type\": \"native\", \"keystore\": \"/k\", "
                     "\"future\": [1, 2]}}, \"comment\": \"hello\", \"version\": 7}";
  assert_int_equal(keys_config_parse(text, "test", &cfg, &err), 0);
  assert_string_equal(keys_config_default_provider(cfg), "l");
  keys_config_free(cfg);
}

static void test_parse_errors(void **state)
{
  (void)state;
  expect_parse_error("{\"providers\": ", "not valid JSON");
  expect_parse_error("{\"providers\": {}} trailing", "not valid JSON");
  expect_parse_error("{\n\n  \"providers\": {,}}", "line 3");
  expect_parse_error("[1, 2]", "the configuration is not a JSON object");
  expect_parse_error("{}", "field providers is missing");
  expect_parse_error("{\"providers\": [\"local\"]}", "field providers is not an object");
  expect_parse_error("{\"providers\": {}}", "field providers is empty");
  expect_parse_error("{\"providers\": {\"local\": \"native\"}}",
                     "field providers.local is not an object");
  expect_parse_error("{\"providers\": {\"kms\": [\"kmip\"]}}",
                     "field providers.kms is not an object");
  expect_parse_error("{\"providers\": {\"local\": {\"keystore\": \"/k\"}}}",
                     "field providers.local.type is missing");
  expect_parse_error("{\"providers\": {\"local\": {\"type\": 3}}}",
                     "field providers.local.type is not a string");
  expect_parse_error("{\"providers\": {\"vault\": {\"type\": \"hashicorp\"}}}",
                     "field providers.vault.type: unknown provider type \"hashicorp\"");
  expect_parse_error("{\"providers\": {\"local\": {\"type\": \"native\"}}}",
                     "field providers.local.keystore is missing");
  expect_parse_error("{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": 5}}}",
                     "field providers.local.keystore is not a string");
  expect_parse_error("{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": \"\"}}}",
                     "field providers.local.keystore is empty");
  expect_parse_error("{\"providers\": {\"a\": {\"type\": \"native\", \"keystore\": \"/k\"}},"
                     " \"default_provider\": \"b\"}",
                     "field default_provider: no provider \"b\" in providers");
  expect_parse_error("{\"providers\": {\"a\": {\"type\": \"native\", \"keystore\": \"/k\"}},"
                     " \"default_provider\": 1}",
                     "field default_provider is not a string");
  expect_parse_error("{\"providers\": {\"a\": {\"type\": \"native\", \"keystore\": \"/k\"},"
                     " \"b\": {\"type\": \"kmip\"}, \"c\": {\"type\": \"kmip\"}}}",
                     "no default_provider and 3 providers");
}

static void test_relative_keystore_from_file_dir(void **state)
{
  (void)state;
  char path[PATH_MAX + 32], want[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/config.json", tmpdir);
  write_file(path, "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": "
                   "\"keys/ks.json\"}}}");
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(keys_config_load(path, &cfg, &err), 0);
  assert_string_equal(keys_config_origin(cfg), path);
  snprintf(want, sizeof want, "%s/keys/ks.json", tmpdir);
  assert_string_equal(keystore_of(cfg, "local"), want);
  keys_config_free(cfg);

  /* From a string, relative to the directory of origin. */
  assert_int_equal(keys_config_parse("{\"providers\": {\"l\": {\"type\": \"native\", \"keystore\":"
                                     " \"ks.json\"}}}",
                                     "/srv/conf/nbdcrypt.json", &cfg, &err),
                   0);
  assert_string_equal(keystore_of(cfg, "l"), "/srv/conf/ks.json");
  keys_config_free(cfg);
}

static void test_explicit_path_missing(void **state)
{
  (void)state;
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/no-such-config.json", tmpdir);
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(keys_config_load(path, &cfg, &err), -ENOENT);
  assert_null(cfg);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "does not exist"));
}

static void test_env_config(void **state)
{
  (void)state;
  char path[PATH_MAX + 32], other[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/env-config.json", tmpdir);
  write_file(path, "{\"providers\": {\"envp\": {\"type\": \"native\", \"keystore\": \"/k\"}}}");
  snprintf(other, sizeof other, "%s/explicit.json", tmpdir);
  write_file(other, "{\"providers\": {\"explicit\": {\"type\": \"native\", \"keystore\": "
                    "\"/k\"}}}");

  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(setenv("NBDCRYPT_CONFIG", path, 1), 0);
  assert_int_equal(keys_config_load(NULL, &cfg, &err), 0);
  assert_string_equal(keys_config_origin(cfg), path);
  assert_string_equal(keys_config_default_provider(cfg), "envp");
  keys_config_free(cfg);

  /* An explicit path wins over the environment. */
  assert_int_equal(keys_config_load(other, &cfg, &err), 0);
  assert_string_equal(keys_config_default_provider(cfg), "explicit");
  keys_config_free(cfg);

  /* A missing file named by the environment is an error naming it. */
  snprintf(path, sizeof path, "%s/missing-env.json", tmpdir);
  assert_int_equal(setenv("NBDCRYPT_CONFIG", path, 1), 0);
  cfg = NULL;
  assert_int_equal(keys_config_load(NULL, &cfg, &err), -ENOENT);
  assert_null(cfg);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "NBDCRYPT_CONFIG"));
  unsetenv("NBDCRYPT_CONFIG");
}

static void test_file_parse_error_names_file(void **state)
{
  (void)state;
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/bad.json", tmpdir);
  write_file(path, "{\"providers\": {\"x\": {\"type\": \"native\"}}}");
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(keys_config_load(path, &cfg, &err), -EINVAL);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "providers.x.keystore"));
}

/* The built-in default applies only when no system configuration exists. */
static bool system_config_exists(void)
{
  struct stat st;
  return stat("/etc/nbdcrypt/config.json", &st) == 0;
}

static void expect_default_keystore(const char *want)
{
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(keys_config_load(NULL, &cfg, &err), 0);
  assert_string_equal(keys_config_origin(cfg), "built-in default");
  assert_string_equal(keys_config_default_provider(cfg), "local");
  assert_int_equal(keys_config_provider_count(cfg), 1);
  assert_string_equal(keystore_of(cfg, "local"), want);
  keys_config_free(cfg);
}

static void test_builtin_default(void **state)
{
  (void)state;
  if (system_config_exists())
    skip();
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  char *saved_xdg = getenv("XDG_DATA_HOME") ? strdup(getenv("XDG_DATA_HOME")) : NULL;

  setenv("XDG_DATA_HOME", "/data/xdg", 1);
  setenv("HOME", "/home/someone", 1);
  expect_default_keystore("/data/xdg/nbdcrypt/keystore.json");

  setenv("XDG_DATA_HOME", "relative/xdg", 1); /* ignored: not absolute */
  expect_default_keystore("/home/someone/.local/share/nbdcrypt/keystore.json");

  unsetenv("XDG_DATA_HOME");
  expect_default_keystore("/home/someone/.local/share/nbdcrypt/keystore.json");

  /* Neither set: the password database's home directory. */
  unsetenv("HOME");
  struct passwd *pw = getpwuid(geteuid());
  if (pw && pw->pw_dir && pw->pw_dir[0] == '/') {
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/.local/share/nbdcrypt/keystore.json", pw->pw_dir);
    expect_default_keystore(want);
  }

  if (saved_home)
    setenv("HOME", saved_home, 1);
  else
    unsetenv("HOME");
  if (saved_xdg)
    setenv("XDG_DATA_HOME", saved_xdg, 1);
  free(saved_home);
  free(saved_xdg);
}

static void test_provider_open_dispatch(void **state)
{
  (void)state;
  struct keys_config *cfg = NULL;
  struct nbdc_error err = {0};
  char text[PATH_MAX + 256];
  snprintf(text, sizeof text,
           "{\"providers\": {\"corp\": {\"type\": \"kmip\"},"
           " \"local\": {\"type\": \"native\", \"keystore\": \"%s/dispatch/ks.json\"}},"
           " \"default_provider\": \"local\"}",
           tmpdir);
  assert_int_equal(keys_config_parse(text, "test-config", &cfg, &err), 0);

  struct keys_provider *p = NULL;
  assert_int_equal(keys_provider_open(cfg, "nope", &p, &err), -ENOENT);
  assert_string_equal(err.msg, "no provider nope in test-config");
  assert_null(p);

  /* NULL: the default provider. */
  assert_int_equal(keys_provider_open(cfg, NULL, &p, &err), 0);
  assert_string_equal(keys_provider_name(p), "local");
  assert_string_equal(keys_provider_type(p), "native");

  /* Operations the native type lacks answer -ENOTSUP naming provider and type. */
  uint8_t plain[32] = {0}, iv[12], tag[16];
  uint8_t *cipher = NULL;
  size_t cipher_len = 0;
  assert_int_equal(keys_kek_wrap(p, "x", plain, sizeof plain, &cipher, &cipher_len, iv, tag, &err),
                   -ENOTSUP);
  assert_non_null(strstr(err.msg, "provider local (type native) cannot wrap"));
  uint8_t *out = NULL;
  size_t out_len = 0;
  assert_int_equal(keys_kek_unwrap(p, "x", plain, sizeof plain, iv, tag, &out, &out_len, &err),
                   -ENOTSUP);
  assert_non_null(strstr(err.msg, "provider local (type native) cannot unwrap"));
  assert_int_equal(keys_kek_revoke(p, "x", &err), -ENOENT);
  assert_non_null(strstr(err.msg, "kek x not found: keystore"));
  keys_provider_close(p);

  /* A kmip provider goes to the kmip constructor, which judges its fields
   * (an empty object is not enough); never to the native one. */
  p = NULL;
  assert_true(keys_provider_open(cfg, "corp", &p, &err) < 0);
  assert_null(p);
  assert_non_null(strstr(err.msg, "corp"));
  assert_null(strstr(err.msg, "keystore"));
  keys_config_free(cfg);
}

/* The kmip provider's own fields (src/keys/kmip.c), judged before any TLS
 * file is read: kmip_version, protocol, admin, operation_policy. */
static void test_kmip_fields(void **state)
{
  (void)state;
  static const struct {
    const char *fields;
    const char *text;
  } cases[] = {
      {"\"kmip_version\": \"2.0\"",
       "kmip_version \"2.0\" (use \"1.0\" to \"1.4\"; 2.0 is not supported)"},
      {"\"kmip_version\": \"1.5\"", "kmip_version \"1.5\""},
      {"\"kmip_version\": 1.4", "field kmip_version must be a non-empty string"},
      {"\"kmip_version\": \"1.2\", \"protocol\": \"1.4\"",
       "kmip_version \"1.2\" and protocol \"1.4\" disagree"},
      {"\"admin\": \"alice\"", "admin must be an object"},
      {"\"admin\": {\"cert\": \"a.pem\"}", "admin needs cert and key"},
      {"\"admin\": {\"cert\": \"a.pem\", \"key\": \"a.key\", \"ca\": \"x\"}",
       "unknown field admin.ca (admin knows cert, key)"},
      {"\"operation_policy\": \"\"", "field operation_policy must be a non-empty string"},
      {"\"roles\": {}", "unknown field roles"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"providers\": {\"kms\": {\"type\": \"kmip\", \"servers\": [\"127.0.0.1:1\"], "
             "\"ca\": \"/nonexistent/ca.pem\", \"cert\": \"/nonexistent/c.pem\", \"key\": "
             "\"/nonexistent/c.key\", %s}}}",
             cases[i].fields);
    struct keys_config *cfg = NULL;
    struct keys_provider *p = NULL;
    struct nbdc_error err = {0};
    assert_int_equal(keys_config_parse(text, "test", &cfg, &err), 0);
    for (int role = KEYS_ROLE_SERVE; role <= KEYS_ROLE_ADMIN; role++) {
      if (keys_provider_open_role(cfg, "kms", role, &p, &err) != -EINVAL ||
          !strstr(err.msg, cases[i].text))
        fail_msg("%s (role %d): \"%s\"", cases[i].fields, role, err.msg);
      assert_null(p);
    }
    keys_config_free(cfg);
  }
  /* valid fields get as far as the TLS files */
  char text[1024];
  snprintf(text, sizeof text,
           "{\"providers\": {\"kms\": {\"type\": \"kmip\", \"servers\": [\"127.0.0.1:1\"], "
           "\"ca\": \"/nonexistent/ca.pem\", \"cert\": \"c.pem\", \"key\": \"c.key\", "
           "\"kmip_version\": \"1.2\", \"operation_policy\": \"nbdcrypt\", \"admin\": "
           "{\"cert\": \"a.pem\", \"key\": \"a.key\"}}}}");
  struct keys_config *cfg = NULL;
  struct keys_provider *p = NULL;
  struct nbdc_error err = {0};
  assert_int_equal(keys_config_parse(text, "test", &cfg, &err), 0);
  assert_int_equal(keys_provider_open_role(cfg, "kms", KEYS_ROLE_ADMIN, &p, &err), -ENOENT);
  assert_non_null(
      strstr(err.msg, "cannot open CA file /nonexistent/ca.pem: No such file or directory"));
  keys_config_free(cfg);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_two_providers),
      cmocka_unit_test(test_single_provider_is_default),
      cmocka_unit_test(test_unknown_fields_accepted),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_relative_keystore_from_file_dir),
      cmocka_unit_test(test_explicit_path_missing),
      cmocka_unit_test(test_env_config),
      cmocka_unit_test(test_file_parse_error_names_file),
      cmocka_unit_test(test_builtin_default),
      cmocka_unit_test(test_provider_open_dispatch),
      cmocka_unit_test(test_kmip_fields),
  };
  return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
