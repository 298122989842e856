/* File hygiene of src/keys: a configuration that others could change is
 * refused; a keystore write never shows a file holding keys under a
 * temporary name while it is being written (O_TMPFILE, watched with
 * inotify), leaves nothing behind when it fails, and removes what a killed
 * writer left. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_tmpdir.h"
#include "nbdcrypt/keys.h"

static char tmpdir[512];
static unsigned case_counter;

static int make_tmpdir(void **state)
{
  (void)state;
  return unit_tmpdir_make(tmpdir, sizeof tmpdir, "keys-files");
}

static int remove_tmpdir(void **state)
{
  (void)state;
  return unit_tmpdir_remove(tmpdir);
}

static void case_dir(char *dir, size_t size)
{
  snprintf(dir, size, "%s/case%u", tmpdir, ++case_counter);
  assert_int_equal(mkdir(dir, 0700), 0);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_true(fputs(text, f) >= 0);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(chmod(path, mode), 0);
}

static void test_config_writable_by_others_refused(void **state)
{
  (void)state;
  char dir[600], path[700], text[1024];
  case_dir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/config.json", dir);
  snprintf(text, sizeof text,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": \"%s/ks.json\"}}}",
           dir);
  static const mode_t refused[] = {0666, 0646, 0620, 0602, 0777};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    write_file(path, text, refused[i]);
    struct keys_config *cfg = NULL;
    struct nbdc_error err = {0};
    char want[64];
    snprintf(want, sizeof want, "has mode %04o: group or others can change it", refused[i]);
    if (keys_config_load(path, &cfg, &err) != -EPERM || !strstr(err.msg, want) ||
        !strstr(err.msg, path) || !strstr(err.msg, "chmod go-w"))
      fail_msg("mode %04o: \"%s\"", refused[i], err.msg);
    assert_null(cfg);
  }
  static const mode_t accepted[] = {0644, 0600, 0640, 0400};
  for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
    write_file(path, text, accepted[i]);
    struct keys_config *cfg = NULL;
    struct nbdc_error err = {0};
    if (keys_config_load(path, &cfg, &err) != 0)
      fail_msg("mode %04o refused: %s", accepted[i], err.msg);
    keys_config_free(cfg);
  }
}

struct native {
  char dir[600];
  char keystore[700];
  struct keys_config *cfg;
  struct keys_provider *p;
};

static void open_native(struct native *n)
{
  char text[1024];
  struct nbdc_error err = {0};
  case_dir(n->dir, sizeof n->dir);
  snprintf(n->keystore, sizeof n->keystore, "%s/keystore.json", n->dir);
  snprintf(text, sizeof text,
           "{\"providers\": {\"local\": {\"type\": \"native\", \"keystore\": \"%s\"}}}",
           n->keystore);
  assert_int_equal(keys_config_parse(text, "test", &n->cfg, &err), 0);
  assert_int_equal(keys_provider_open(n->cfg, "local", &n->p, &err), 0);
}

static void close_native(struct native *n)
{
  keys_provider_close(n->p);
  keys_config_free(n->cfg);
}

static void create_ok(struct native *n)
{
  char id[KEYS_ID_MAX];
  struct nbdc_error err = {0};
  if (keys_kek_create(n->p, "k", id, &err) != 0)
    fail_msg("create: %s", err.msg);
}

/* The directory holds exactly keystore.json and keystore.json.lock. */
static void expect_only_keystore(const struct native *n)
{
  DIR *d = opendir(n->dir);
  assert_non_null(d);
  struct dirent *de;
  int entries = 0;
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    entries++;
    if (strcmp(de->d_name, "keystore.json") != 0 && strcmp(de->d_name, "keystore.json.lock") != 0)
      fail_msg("%s left beside the keystore", de->d_name);
  }
  closedir(d);
  assert_int_equal(entries, 2);
}

/* Every name a write gives a temporary file appears only when the file is
 * complete (no write or close through it) and leaves by the rename. */
static void test_tmp_file_never_written_under_a_name(void **state)
{
  (void)state;
  struct native n;
  open_native(&n);
  create_ok(&n);
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  assert_true(in >= 0);
  assert_true(inotify_add_watch(in, n.dir,
                                IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                    IN_MOVED_TO | IN_DELETE | IN_ATTRIB) >= 0);
  enum { WRITES = 8 };
  for (int i = 0; i < WRITES; i++)
    create_ok(&n);

  char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
  ssize_t len = read(in, buf, sizeof buf);
  assert_true(len > 0);
  int created = 0, renamed = 0, moved_to_keystore = 0;
  bool open_name = false;
  char current[NAME_MAX + 1] = "";
  for (char *p = buf; p < buf + len;) {
    const struct inotify_event *ev = (const struct inotify_event *)p;
    p += sizeof *ev + ev->len;
    const char *name = ev->len ? ev->name : "";
    if (strstr(name, ".tmp.")) {
      if (ev->mask & IN_CREATE) {
        assert_false(open_name);
        open_name = true;
        snprintf(current, sizeof current, "%s", name);
        created++;
      } else if (ev->mask & IN_MOVED_FROM) {
        assert_true(open_name);
        assert_string_equal(name, current);
        open_name = false;
        renamed++;
      } else {
        fail_msg("event 0x%x on temporary file %s: written or changed under its name", ev->mask,
                 name);
      }
    } else if (strcmp(name, "keystore.json") == 0 && (ev->mask & IN_MOVED_TO)) {
      moved_to_keystore++;
    }
  }
  close(in);
  assert_false(open_name);
  assert_int_equal(created, WRITES);
  assert_int_equal(renamed, WRITES);
  assert_int_equal(moved_to_keystore, WRITES);
  expect_only_keystore(&n);
  close_native(&n);
}

static char *read_all(const char *path)
{
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char *text = calloc(1, 1 << 16);
  assert_non_null(text);
  assert_true(fread(text, 1, (1 << 16) - 1, f) > 0);
  fclose(f);
  return text;
}

/* A write that fails (file size limit: EFBIG) leaves the old keystore and
 * nothing else. */
static void test_failed_write_leaves_nothing(void **state)
{
  (void)state;
  struct native n;
  open_native(&n);
  create_ok(&n);
  char *before = read_all(n.keystore);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {64, 64};
    if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
      _exit(3);
    char id[KEYS_ID_MAX];
    struct nbdc_error err = {0};
    int r = keys_kek_create(n.p, "too big", id, &err);
    _exit(r == -EFBIG && strstr(err.msg, "cannot write the new keystore") ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  char *after = read_all(n.keystore);
  assert_string_equal(before, after);
  free(before);
  free(after);
  expect_only_keystore(&n);
  close_native(&n);
}

/* A writer killed between naming its file and the rename leaves it; the
 * next write (under the lock) removes it. */
static void test_stale_tmp_removed(void **state)
{
  (void)state;
  struct native n;
  open_native(&n);
  create_ok(&n);
  char stale[800], other[800];
  snprintf(stale, sizeof stale, "%s.tmp.deadbeef", n.keystore);
  snprintf(other, sizeof other, "%s/unrelated.tmp.deadbeef", n.dir);
  write_file(stale, "{\"keys\": \"secret\"}", 0600);
  write_file(other, "not ours", 0600);
  create_ok(&n);
  assert_int_equal(access(stale, F_OK), -1);
  assert_int_equal(access(other, F_OK), 0); /* only the keystore's own */
  assert_int_equal(unlink(other), 0);
  expect_only_keystore(&n);
  close_native(&n);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_writable_by_others_refused),
      cmocka_unit_test(test_tmp_file_never_written_under_a_name),
      cmocka_unit_test(test_failed_write_leaves_nothing),
      cmocka_unit_test(test_stale_tmp_removed),
  };
  return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
