/* nbdcrypt-faults: the nbdcrypt CLI with a fault-injecting bdev
 * (fault_bdev.h) over the devices of recrypt, encrypt and decrypt
 * (cli_reenc_wrap_target) and of enroll, --convert included
 * (cli_wrap_write_bdev), set by the environment of this test binary only
 * (the library reads none); one plan and one write count for all the
 * devices of a run:
 *   NBDCRYPT_TEST_FAIL_WRITE_AT=N   the N-th write (4 MiB pieces, resizes
 *                                   count) and all after it fail with EIO
 *   NBDCRYPT_TEST_KILL_AT_WRITE=N   the process SIGKILLs itself at the N-th
 *   NBDCRYPT_TEST_COUNT_WRITES=FILE at exit, the number of writes seen goes
 *                                   to FILE (to enumerate every N) */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "fault_bdev.h"

static struct fault_plan plan;
static const char *count_file;

static long env_long(const char *name)
{
  const char *s = getenv(name);
  if (!s || !*s)
    return 0;
  char *end;
  long v = strtol(s, &end, 10);
  return *end || v < 0 ? 0 : v;
}

static void write_count(void)
{
  FILE *f = fopen(count_file, "w");
  if (f) {
    fprintf(f, "%ld\n", plan.writes);
    fclose(f);
  }
}

/* The plan from the environment, once per process. */
static void plan_setup(void)
{
  static bool done;
  if (done)
    return;
  done = true;
  long fail = env_long("NBDCRYPT_TEST_FAIL_WRITE_AT"),
       kill = env_long("NBDCRYPT_TEST_KILL_AT_WRITE");
  plan = (struct fault_plan){0};
  if (fail) {
    plan.action = FAULT_FAIL;
    plan.at = fail;
  } else if (kill) {
    plan.action = FAULT_KILL;
    plan.at = kill;
  }
  count_file = getenv("NBDCRYPT_TEST_COUNT_WRITES");
  if (count_file && *count_file)
    atexit(write_count);
}

int cli_wrap_write_bdev(struct bdev **dev, struct nbdc_error *err)
{
  plan_setup();
  struct bdev *wrapped = NULL;
  int r = fault_bdev_wrap(*dev, true, &plan, 0, &wrapped, err);
  if (r < 0)
    return r;
  *dev = wrapped;
  return 0;
}

int cli_reenc_wrap_target(struct reenc_target *t, struct nbdc_error *err)
{
  plan_setup();
  struct bdev *data = NULL, *header = NULL;
  int r = fault_bdev_wrap(t->data, true, &plan, 0, &data, err);
  if (r < 0)
    return r;
  t->data = data;
  if (t->header) {
    if ((r = fault_bdev_wrap(t->header, true, &plan, 0, &header, err)) < 0)
      return r;
    t->header = header;
  }
  return 0;
}
