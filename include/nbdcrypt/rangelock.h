/* nbdcrypt range lock (src/util/rangelock.c): shared and exclusive holds on
 * byte ranges.  The online re-encryption (plugins/nbdcrypt) takes the
 * hotzone exclusively while it rewrites it; client requests take their own
 * range shared, so only those that touch the hotzone wait, and requests
 * elsewhere never do.
 *
 * Fairness: a waiting exclusive request blocks new shared holds that overlap
 * it (it waits only for the holders that were there before it), so a stream
 * of client requests cannot starve the re-encryption; shared requests that
 * do not overlap it are never delayed.  Holds are caller-allocated (on the
 * stack): no allocation, no failure. */
#ifndef NBDCRYPT_RANGELOCK_H
#define NBDCRYPT_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct rangelock_hold {
  uint64_t offset, len; /* [offset, offset+len); len 0 is never a conflict */
  bool exclusive;
  bool granted;
  struct rangelock_hold *prev, *next;
};

struct rangelock {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct rangelock_hold *held;    /* granted holds */
  struct rangelock_hold *waiting; /* exclusive requests not yet granted */
  uint64_t shared_waits;          /* shared requests that had to wait (statistics) */
  uint64_t shared_grants;         /* shared requests granted (statistics) */
};

void rangelock_init(struct rangelock *l);
void rangelock_destroy(struct rangelock *l);

/* Block until [offset, offset+len) can be held, then hold it (h is the
 * caller's until rangelock_unlock). */
void rangelock_lock(struct rangelock *l, struct rangelock_hold *h, uint64_t offset, uint64_t len,
                    bool exclusive);
/* As rangelock_lock, but never waits: false when it would have to. */
bool rangelock_trylock(struct rangelock *l, struct rangelock_hold *h, uint64_t offset, uint64_t len,
                       bool exclusive);
void rangelock_unlock(struct rangelock *l, struct rangelock_hold *h);

/* Number of shared holds granted now (client requests in flight). */
unsigned rangelock_shared_count(struct rangelock *l);

#endif
