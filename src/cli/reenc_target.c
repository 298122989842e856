/* The re-encryption commands' devices: opened here, with the image lock of a
 * data writer, then handed to the engine (reenc_run), which sees bdevs only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/progress.h"

__attribute__((weak)) int cli_reenc_wrap_target(struct reenc_target *t, struct nbdc_error *err)
{
  (void)t, (void)err;
  return 0;
}

/* Test hook: NBDCRYPT_TEST_HOTZONE_DELAY_MS=N pauses N ms (at most 10 s)
 * after each zone, so that a test can signal or inspect a run at a known
 * point.  The CLI's, not the library's: the engine reads no environment. */
struct delay {
  long ms;
  volatile sig_atomic_t *stop;
};

static void delay_zone_done(void *opaque, uint64_t offset, uint64_t len, uint64_t done)
{
  (void)offset, (void)len, (void)done;
  struct delay *d = opaque;
  if (d->ms <= 0 || (d->stop && *d->stop))
    return;
  struct timespec ts = {d->ms / 1000, (d->ms % 1000) * 1000000L};
  nanosleep(&ts, NULL); /* a signal ends it early */
}

static long delay_ms(void)
{
  const char *s = getenv("NBDCRYPT_TEST_HOTZONE_DELAY_MS");
  if (!s || !*s)
    return 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v < 0)
    return 0;
  return v > 10000 ? 10000 : v;
}

int cli_reenc_run(const char *target, const char *header, struct reenc_opts *ro, bool *half_way,
                  struct nbdc_error *err)
{
  *half_way = false;
  struct reenc_target t;
  bool created = false;
  int r = reenc_target_open(target, header, ro->mode, &t, &created, err);
  if (r == -EBUSY && ro->mode == REENC_RECRYPT)
  /* the server holds it: the recrypt can run there, while it serves */
  {
    char msg[NBDC_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    nbdc_error_set(err, EBUSY,
                   "%.300s; to recrypt a disk while it is served, let its server do it: filter "
                   "key nbdcrypt-reencrypt=recrypt (nbdcrypt serve --recrypt)",
                   msg);
  }
  if (r < 0)
    return r;
  struct delay d = {.ms = delay_ms(), .stop = ro->stop};
  struct reenc_hooks hooks = {.opaque = &d, .zone_done = delay_zone_done};
  if (d.ms > 0 && !ro->hooks)
    ro->hooks = &hooks;
  r = cli_reenc_wrap_target(&t, err);
  if (r == 0)
    r = reenc_run(&t, ro, err);
  *half_way = r < 0 && t.half_way;
  if (ro->hooks == &hooks)
    ro->hooks = NULL;
  bool remove_header =
      header && ((r < 0 && created && !t.header_used) || (r == 0 && t.header_released));
  reenc_target_close(&t);
  if (remove_header && unlink(header) != 0 && errno != ENOENT && r == 0)
    r = nbdc_error_set(err, errno, "cannot remove %s: %s", header, strerror(errno));
  return r;
}
