/* A fault-injecting block device for tests (tests/support): a bdev over
 * another that fails, or stops the process, at the N-th write.  Writes are
 * counted in pieces of at most `piece` bytes (bdev_set_max_request splits
 * larger ones), and a resize or a zeroing (a hole) counts as one write, so that every point of a
 * run between two writes can be reached by some N.  The engine's worker
 * threads only read: the counter is touched by one thread. */
#ifndef NBDCRYPT_TESTS_FAULT_BDEV_H
#define NBDCRYPT_TESTS_FAULT_BDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbdcrypt/blockdev.h"

enum fault_action {
  FAULT_NONE = 0,
  FAULT_FAIL, /* the N-th write and every later write, resize and flush fail with EIO */
  FAULT_TORN, /* as FAULT_FAIL, but the N-th write puts its first half (512-byte
                 aligned) on the device first */
  FAULT_KILL, /* the process kills itself with SIGKILL at the N-th write (before it) */
};

/* One plan shared by every device of a run (data and detached header). */
struct fault_plan {
  enum fault_action action;
  long at;      /* 1-based number of the write that triggers the action */
  long writes;  /* writes seen so far (counted even without an action) */
  bool tripped; /* the action happened */
};

/* Wrap inner; with own_inner, closing the wrapper closes inner.  piece: 0
 * for 4 MiB.  The wrapper has inner's capabilities (second readers are
 * inner's own: reads are never faulted). */
int fault_bdev_wrap(struct bdev *inner, bool own_inner, struct fault_plan *plan, size_t piece,
                    struct bdev **out, struct nbdc_error *err);

#endif
