/* Secure memory: zeroed, locked, excluded from dumps, wiped on free, many
 * and large allocations, and a hardened process. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "nbdcrypt/crypto.h"

static size_t page_size(void)
{
  return (size_t)sysconf(_SC_PAGESIZE);
}

static void test_alloc_is_zeroed_and_writable(void **state)
{
  (void)state;
  static const size_t sizes[] = {0, 1, 32, 64, 4064, 4065, 4096, 10000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint8_t *p = secmem_alloc(sizes[i]);
    assert_non_null(p);
    for (size_t j = 0; j < sizes[i]; j++)
      assert_int_equal(p[j], 0);
    memset(p, 0xee, sizes[i]);
    secmem_free(p, sizes[i]);
  }
  secmem_free(NULL, 10);
}

/* The pages are resident and locked: mincore reports them, and /proc says VmLck grew. */
static long vm_locked_kib(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  assert_non_null(f);
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmLck: %ld kB", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

static void test_alloc_is_locked(void **state)
{
  (void)state;
  long before = vm_locked_kib();
  size_t n = 256000; /* AF material of a 64-byte key */
  uint8_t *p = secmem_alloc(n);
  assert_non_null(p);
  long during = vm_locked_kib();
  assert_true(during - before >= (long)(n / 1024));
  unsigned char vec[128];
  uint8_t *base = (uint8_t *)((uintptr_t)p & ~(uintptr_t)(page_size() - 1));
  assert_int_equal(mincore(base, page_size() * 8, vec), 0);
  for (int i = 0; i < 8; i++)
    assert_true(vec[i] & 1);
  secmem_free(p, n);
  assert_int_equal(vm_locked_kib(), before);
}

/* After free the mapping is gone (the wipe happens before munmap); reading
 * the old address must fault.  Checked in a child so the test survives. */
static void test_free_unmaps(void **state)
{
  (void)state;
  uint8_t *p = secmem_alloc(64);
  assert_non_null(p);
  memset(p, 0x5c, 64);
  secmem_free(p, 64);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL); /* cmocka's handler would catch the fault */
    volatile uint8_t v = *(volatile uint8_t *)p;
    _exit(v == 0x5c ? 1 : 2);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGSEGV);
}

static void test_many_allocations(void **state)
{
  (void)state;
  enum { COUNT = 200 };
  uint8_t *blocks[COUNT];
  for (int i = 0; i < COUNT; i++) {
    blocks[i] = secmem_alloc(64);
    assert_non_null(blocks[i]);
    memset(blocks[i], i, 64);
  }
  for (int i = 0; i < COUNT; i++)
    for (int j = 0; j < 64; j++)
      assert_int_equal(blocks[i][j], (uint8_t)i);
  for (int i = 0; i < COUNT; i += 2)
    secmem_free(blocks[i], 64);
  for (int i = 1; i < COUNT; i += 2)
    secmem_free(blocks[i], 64);
}

static void *alloc_free_loop(void *arg)
{
  uintptr_t id = (uintptr_t)arg;
  for (int i = 0; i < 300; i++) {
    size_t n = 16 + (size_t)(i % 7) * 100;
    uint8_t *p = secmem_alloc(n);
    if (!p)
      return (void *)1;
    memset(p, (int)id, n);
    for (size_t j = 0; j < n; j++)
      if (p[j] != (uint8_t)id)
        return (void *)2;
    secmem_free(p, n);
  }
  return NULL;
}

static void test_threads(void **state)
{
  (void)state;
  pthread_t threads[4];
  for (uintptr_t t = 0; t < 4; t++)
    assert_int_equal(pthread_create(&threads[t], NULL, alloc_free_loop, (void *)(t + 1)), 0);
  for (int t = 0; t < 4; t++) {
    void *result = (void *)9;
    assert_int_equal(pthread_join(threads[t], &result), 0);
    assert_null(result);
  }
}

/* Past RLIMIT_MEMLOCK the allocation fails cleanly with errno set. */
static void test_lock_limit_fails_cleanly(void **state)
{
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit small = {64 * 1024, 64 * 1024};
    if (setrlimit(RLIMIT_MEMLOCK, &small) != 0)
      _exit(3);
    /* root's CAP_IPC_LOCK ignores the limit: become nobody first. */
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      _exit(4);
    errno = 0;
    void *p = secmem_alloc(1024 * 1024);
    if (p)
      _exit(1);
    void *small_block = secmem_alloc(64); /* still fine below the limit */
    if (!small_block)
      _exit(5);
    secmem_free(small_block, 64);
    _exit(errno == ENOMEM || errno == EPERM || errno == EAGAIN ? 0 : 2);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_harden_process(void **state)
{
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (secmem_harden_process() != 0)
      _exit(1);
    struct rlimit core;
    if (getrlimit(RLIMIT_CORE, &core) != 0 || core.rlim_cur != 0 || core.rlim_max != 0)
      _exit(2);
    _exit(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : 3);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc_is_zeroed_and_writable),
      cmocka_unit_test(test_alloc_is_locked),
      cmocka_unit_test(test_free_unmaps),
      cmocka_unit_test(test_many_allocations),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_lock_limit_fails_cleanly),
      cmocka_unit_test(test_harden_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
