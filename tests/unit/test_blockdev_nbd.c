/* NBD backend against a real nbdkit memory server on a Unix socket: round
 * trips (including requests larger than one 32 MiB chunk), a read-only export,
 * reads past the end, and connection errors.  Each test starts its own
 * nbdkit in the foreground with --exit-with-parent and stops it by pid. */
#include <errno.h>
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

#include "nbdcrypt/blockdev.h"

#define EXPORT_SIZE (UINT64_C(64) << 20)

struct server {
  pid_t pid;
  char dir[256];
  char sock[300];
  char pidfile[300];
  char uri[400];
};

static void sleep_ms(long ms)
{
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void server_stop(struct server *s)
{
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    int status;
    for (int i = 0; i < 100 && waitpid(s->pid, &status, WNOHANG) == 0; i++)
      sleep_ms(50);
    if (waitpid(s->pid, &status, WNOHANG) == 0) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &status, 0);
    }
    s->pid = 0;
  }
  unlink(s->sock);
  unlink(s->pidfile);
  rmdir(s->dir);
}

/* Socket paths must stay under 108 bytes: use the test tmpdir when short. */
static int server_start(struct server *s, bool readonly)
{
  memset(s, 0, sizeof *s);
  const char *base = getenv("NBDCRYPT_TEST_TMPDIR");
  if (!base || !*base || strlen(base) > 80)
    base = "/tmp";
  snprintf(s->dir, sizeof s->dir, "%s/bdev-nbd-XXXXXX", base);
  if (!mkdtemp(s->dir))
    return -1;
  snprintf(s->sock, sizeof s->sock, "%s/sock", s->dir);
  snprintf(s->pidfile, sizeof s->pidfile, "%s/pid", s->dir);
  snprintf(s->uri, sizeof s->uri, "nbd+unix:///?socket=%s", s->sock);

  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    const char *argv[16];
    int argc = 0;
    argv[argc++] = "nbdkit";
    argv[argc++] = "-f";
    argv[argc++] = "--exit-with-parent";
    argv[argc++] = "-U";
    argv[argc++] = s->sock;
    argv[argc++] = "-P";
    argv[argc++] = s->pidfile;
    if (readonly)
      argv[argc++] = "--readonly";
    argv[argc++] = "memory";
    argv[argc++] = "64M";
    argv[argc] = NULL;
    execvp("nbdkit", (char *const *)argv);
    _exit(127);
  }
  s->pid = pid;
  /* nbdkit writes the pid file once the socket accepts connections. */
  for (int i = 0; i < 200; i++) {
    struct stat st;
    if (stat(s->pidfile, &st) == 0 && st.st_size > 0)
      return 0;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      s->pid = 0;
      return -1;
    }
    sleep_ms(50);
  }
  server_stop(s);
  return -1;
}

static int setup_rw(void **state)
{
  static struct server s;
  if (server_start(&s, false) != 0)
    return -1;
  *state = &s;
  return 0;
}

static int setup_ro(void **state)
{
  static struct server s;
  if (server_start(&s, true) != 0)
    return -1;
  *state = &s;
  return 0;
}

static int teardown(void **state)
{
  server_stop(*state);
  return 0;
}

static void test_round_trip(void **state)
{
  struct server *s = *state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  if (bdev_open(s->uri, 0, 0, &dev, &err) != 0)
    fail_msg("%s", err.msg);
  assert_false(bdev_readonly(dev));
  assert_string_equal(bdev_name(dev), s->uri);
  uint64_t size = 0;
  assert_int_equal(bdev_get_size(dev, &size, &err), 0);
  assert_int_equal(size, EXPORT_SIZE);

  uint8_t small[777], back[777];
  for (size_t i = 0; i < sizeof small; i++)
    small[i] = (uint8_t)(i * 11 + 5);
  assert_int_equal(bdev_pwrite(dev, small, sizeof small, 4097, &err), 0);
  assert_int_equal(bdev_pread(dev, back, sizeof back, 4097, &err), 0);
  assert_memory_equal(back, small, sizeof small);

  /* 40 MiB: more than one 32 MiB chunk in each direction. */
  const size_t big_len = 40u << 20;
  const uint64_t big_off = (20u << 20) + 512;
  uint8_t *big = malloc(big_len), *big_back = malloc(big_len);
  assert_true(big && big_back);
  for (size_t i = 0; i < big_len; i++)
    big[i] = (uint8_t)((i >> 12) ^ i);
  assert_int_equal(bdev_pwrite(dev, big, big_len, big_off, &err), 0);
  assert_int_equal(bdev_flush(dev, &err), 0);
  assert_int_equal(bdev_lock(dev, true, &err), -ENOTSUP);
  bdev_close(dev);

  /* A second connection sees the data. */
  assert_int_equal(bdev_open(s->uri, BDEV_RDONLY, 0, &dev, &err), 0);
  assert_true(bdev_readonly(dev));
  assert_int_equal(bdev_pread(dev, big_back, big_len, big_off, &err), 0);
  assert_memory_equal(big_back, big, big_len);
  assert_int_equal(bdev_pread(dev, back, sizeof back, 4097, &err), 0);
  assert_memory_equal(back, small, sizeof small);
  /* BDEV_RDONLY is honoured even though the export is writable. */
  assert_int_equal(bdev_pwrite(dev, small, sizeof small, 0, &err), -EROFS);
  free(big);
  free(big_back);

  /* Past the end. */
  uint8_t buf[1024];
  assert_int_equal(bdev_pread(dev, buf, sizeof buf, EXPORT_SIZE - 512, &err), -EIO);
  char expect[600];
  snprintf(expect, sizeof expect, "read beyond end of device %s (offset %llu, size %llu)", s->uri,
           (unsigned long long)(EXPORT_SIZE - 512), (unsigned long long)EXPORT_SIZE);
  assert_string_equal(err.msg, expect);
  bdev_close(dev);
}

static void test_readonly_export(void **state)
{
  struct server *s = *state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  if (bdev_open(s->uri, 0, 0, &dev, &err) != 0)
    fail_msg("%s", err.msg);
  assert_true(bdev_readonly(dev));
  uint8_t buf[512] = {1};
  assert_int_equal(bdev_pwrite(dev, buf, sizeof buf, 0, &err), -EROFS);
  assert_int_equal(err.code, EROFS);
  assert_non_null(strstr(err.msg, "is read-only"));
  assert_non_null(strstr(err.msg, s->uri));
  uint8_t zero[512] = {0};
  assert_int_equal(bdev_pread(dev, buf, sizeof buf, 0, &err), 0);
  assert_memory_equal(buf, zero, sizeof zero);
  assert_int_equal(bdev_flush(dev, &err), 0);
  bdev_close(dev);
}

static void test_bad_uri(void **state)
{
  (void)state;
  struct nbdc_error err = {0};
  struct bdev *dev = NULL;
  const char *nowhere = "nbd+unix:///?socket=/nonexistent-dir/nbdcrypt.sock";
  int r = bdev_open(nowhere, 0, 0, &dev, &err);
  assert_true(r < 0);
  assert_null(dev);
  assert_int_equal(err.code, -r);
  assert_non_null(strstr(err.msg, "cannot connect to nbd+unix:///?socket=/nonexistent-dir"));
  /* libnbd's own explanation follows the URI. */
  assert_true(strlen(err.msg) > strlen("cannot connect to ") + strlen(nowhere) + 4);

  r = bdev_open("nbd+unix:///", 0, 0, &dev, &err); /* no socket parameter */
  assert_true(r < 0);
  assert_non_null(strstr(err.msg, "cannot connect to nbd+unix:///"));
}

int main(void)
{
  if (system("nbdkit --version >/dev/null 2>&1") != 0) {
    fprintf(stderr, "nbdkit not found: skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_round_trip, setup_rw, teardown),
      cmocka_unit_test_setup_teardown(test_readonly_export, setup_ro, teardown),
      cmocka_unit_test(test_bad_uri),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
