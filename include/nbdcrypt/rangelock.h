/* nbdcrypt range lock (src/util/rangelock.c): holds on byte ranges in four
 * modes.  Client requests hold their range READ or WRITE (neither conflicts
 * with itself or the other: overlapping client requests are the client's
 * business).  The online re-encryption (plugins/nbdcrypt) holds a hotzone
 * ZONE from before it reads the zone's old blocks until their new form is
 * written: client writes there wait (the engine would overwrite them with
 * what it read), client reads do not (the old blocks are intact until they
 * are rewritten).  It rewrites the zone a piece at a time, each piece held
 * EXCL, which conflicts with every other hold: a read never sees a piece
 * half written.  So only requests that touch the hotzone ever wait, and
 * reads only for one piece.
 *
 * Conflicts: EXCL with READ, WRITE and EXCL; ZONE with WRITE and ZONE (an
 * EXCL piece lies inside the engine's own ZONE).
 * Fairness: a waiting request blocks new holds that overlap and conflict
 * with it (it waits only for the holders that were there before it), so a
 * stream of client requests cannot starve the re-encryption; requests that
 * do not overlap it are never delayed.  Holds are caller-allocated (on the
 * stack): no allocation, no failure. */
#ifndef NBDCRYPT_RANGELOCK_H
#define NBDCRYPT_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum rangelock_mode { RANGELOCK_READ, RANGELOCK_WRITE, RANGELOCK_ZONE, RANGELOCK_EXCL };

struct rangelock_hold {
  uint64_t offset, len; /* [offset, offset+len); len 0 is never a conflict */
  enum rangelock_mode mode;
  bool granted;
  struct rangelock_hold *prev, *next;
};

struct rangelock {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct rangelock_hold *held;    /* granted holds */
  struct rangelock_hold *waiting; /* ZONE and EXCL requests not yet granted */
  uint64_t shared_waits;          /* READ and WRITE requests that had to wait (statistics) */
  uint64_t shared_grants;         /* READ and WRITE requests granted (statistics) */
};

void rangelock_init(struct rangelock *l);
void rangelock_destroy(struct rangelock *l);

/* Block until [offset, offset+len) can be held, then hold it (h is the
 * caller's until rangelock_unlock). */
void rangelock_lock(struct rangelock *l, struct rangelock_hold *h, uint64_t offset, uint64_t len,
                    enum rangelock_mode mode);
/* As rangelock_lock, but never waits: false when it would have to. */
bool rangelock_trylock(struct rangelock *l, struct rangelock_hold *h, uint64_t offset, uint64_t len,
                       enum rangelock_mode mode);
void rangelock_unlock(struct rangelock *l, struct rangelock_hold *h);

/* Number of READ and WRITE holds granted now (client requests in flight). */
unsigned rangelock_shared_count(struct rangelock *l);

#endif
