/* The range lock: disjoint holds never wait, overlapping ones that conflict
 * do (EXCL with all, ZONE with client writes and ZONE, never client reads),
 * and a waiting EXCL or ZONE hold is not starved by a stream of
 * overlapping client requests (the online recrypt's hotzone against client
 * requests). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "nbdcrypt/rangelock.h"

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void shared_holds_coexist(void **state)
{
  (void)state;
  struct rangelock l;
  rangelock_init(&l);
  struct rangelock_hold a, b;
  rangelock_lock(&l, &a, 0, 4096, RANGELOCK_READ);
  assert_true(rangelock_trylock(&l, &b, 0, 8192, RANGELOCK_READ));
  assert_int_equal(rangelock_shared_count(&l), 2);
  rangelock_unlock(&l, &b);
  rangelock_unlock(&l, &a);
  assert_int_equal(rangelock_shared_count(&l), 0);
  rangelock_destroy(&l);
}

static void exclusive_conflicts_only_on_overlap(void **state)
{
  (void)state;
  struct rangelock l;
  rangelock_init(&l);
  struct rangelock_hold x, s;
  rangelock_lock(&l, &x, 1 << 20, 1 << 20, RANGELOCK_EXCL);
  /* before, after, and touching the boundaries without overlap */
  assert_true(rangelock_trylock(&l, &s, 0, 1 << 20, RANGELOCK_READ));
  rangelock_unlock(&l, &s);
  assert_true(rangelock_trylock(&l, &s, 2 << 20, 4096, RANGELOCK_EXCL));
  rangelock_unlock(&l, &s);
  /* inside, straddling either end, covering it */
  assert_false(rangelock_trylock(&l, &s, (1 << 20) + 512, 512, RANGELOCK_READ));
  assert_false(rangelock_trylock(&l, &s, (1 << 20) - 512, 1024, RANGELOCK_READ));
  assert_false(rangelock_trylock(&l, &s, (2 << 20) - 512, 1024, RANGELOCK_EXCL));
  assert_false(rangelock_trylock(&l, &s, 0, UINT64_MAX, RANGELOCK_READ));
  /* an empty range never conflicts */
  assert_true(rangelock_trylock(&l, &s, (1 << 20) + 4096, 0, RANGELOCK_EXCL));
  rangelock_unlock(&l, &s);
  rangelock_unlock(&l, &x);
  assert_true(rangelock_trylock(&l, &s, (1 << 20) + 512, 512, RANGELOCK_READ));
  rangelock_unlock(&l, &s);
  rangelock_destroy(&l);
}

struct waiter {
  struct rangelock *l;
  uint64_t offset, len;
  enum rangelock_mode mode;
  atomic_bool got;
  long hold_ms;
};

static void *waiter_main(void *p)
{
  struct waiter *w = p;
  struct rangelock_hold h;
  rangelock_lock(w->l, &h, w->offset, w->len, w->mode);
  atomic_store(&w->got, true);
  sleep_ms(w->hold_ms);
  rangelock_unlock(w->l, &h);
  return NULL;
}

static void shared_waits_for_exclusive_then_proceeds(void **state)
{
  (void)state;
  struct rangelock l;
  rangelock_init(&l);
  struct rangelock_hold x;
  rangelock_lock(&l, &x, 0, 65536, RANGELOCK_EXCL);
  struct waiter w = {.l = &l, .offset = 4096, .len = 4096};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
  sleep_ms(100);
  assert_false(atomic_load(&w.got));
  rangelock_unlock(&l, &x);
  pthread_join(t, NULL);
  assert_true(atomic_load(&w.got));
  assert_true(l.shared_waits >= 1);
  rangelock_destroy(&l);
}

/* Clients keep overlapping shared holds alive in turns (each new one
 * granted before the previous is released): without the writer preference
 * the exclusive request would wait forever; with it, it is granted once the
 * holds that were there before it are gone, and a shared request that does
 * not overlap it is granted meanwhile. */
struct churn {
  struct rangelock *l;
  atomic_bool stop;
  atomic_long grants;
};

static void *churn_main(void *p)
{
  struct churn *c = p;
  struct rangelock_hold holds[2];
  int cur = 0;
  rangelock_lock(c->l, &holds[cur], 0, 8192, RANGELOCK_READ);
  for (int i = 0; i < 100000 && !atomic_load(&c->stop); i++) {
    struct rangelock_hold *next = &holds[cur ^ 1];
    uint64_t off = (uint64_t)(i % 2) * 4096;
    if (!rangelock_trylock(c->l, next, off, 8192, RANGELOCK_READ)) {
      /* a writer waits: let go of the old hold first, then queue */
      rangelock_unlock(c->l, &holds[cur]);
      rangelock_lock(c->l, next, off, 8192, RANGELOCK_READ);
    } else {
      rangelock_unlock(c->l, &holds[cur]);
    }
    atomic_fetch_add(&c->grants, 1);
    cur ^= 1;
    sleep_ms(1);
  }
  rangelock_unlock(c->l, &holds[cur]);
  return NULL;
}

static void exclusive_not_starved_by_overlapping_shared(void **state)
{
  (void)state;
  struct rangelock l;
  rangelock_init(&l);
  struct churn c = {.l = &l};
  pthread_t t1, t2;
  assert_int_equal(pthread_create(&t1, NULL, churn_main, &c), 0);
  assert_int_equal(pthread_create(&t2, NULL, churn_main, &c), 0);
  sleep_ms(50);
  struct waiter w = {.l = &l, .offset = 0, .len = 1 << 20, .mode = RANGELOCK_EXCL, .hold_ms = 200};
  pthread_t tw;
  assert_int_equal(pthread_create(&tw, NULL, waiter_main, &w), 0);
  for (int i = 0; i < 200 && !atomic_load(&w.got); i++)
    sleep_ms(10);
  assert_true(atomic_load(&w.got)); /* within 2 s */
  /* while it holds [0, 1 MiB), a request elsewhere is not delayed */
  struct rangelock_hold far;
  assert_true(rangelock_trylock(&l, &far, 2 << 20, 4096, RANGELOCK_READ));
  rangelock_unlock(&l, &far);
  atomic_store(&c.stop, true);
  pthread_join(tw, NULL);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  assert_true(atomic_load(&c.grants) > 0);
  assert_int_equal(rangelock_shared_count(&l), 0);
  rangelock_destroy(&l);
}

/* A ZONE hold lets client reads of its range through, holds back client
 * writes and other ZONE holds there, and an EXCL piece inside it holds back
 * the reads of that piece only. */
static void zone_admits_reads_not_writes(void **state)
{
  (void)state;
  struct rangelock l;
  rangelock_init(&l);
  struct rangelock_hold z, s, piece;
  rangelock_lock(&l, &z, 1 << 20, 1 << 20, RANGELOCK_ZONE);
  assert_true(rangelock_trylock(&l, &s, (1 << 20) + 4096, 4096, RANGELOCK_READ));
  rangelock_unlock(&l, &s);
  assert_false(rangelock_trylock(&l, &s, (1 << 20) + 4096, 4096, RANGELOCK_WRITE));
  assert_false(rangelock_trylock(&l, &s, (2 << 20) - 4096, 8192, RANGELOCK_WRITE));
  assert_false(rangelock_trylock(&l, &s, 1 << 20, 4096, RANGELOCK_ZONE));
  assert_true(rangelock_trylock(&l, &s, 2 << 20, 4096, RANGELOCK_WRITE));
  rangelock_unlock(&l, &s);
  /* the engine's piece: [1 MiB, 1 MiB + 64 KiB) */
  rangelock_lock(&l, &piece, 1 << 20, 65536, RANGELOCK_EXCL);
  assert_false(rangelock_trylock(&l, &s, (1 << 20) + 4096, 4096, RANGELOCK_READ));
  assert_true(rangelock_trylock(&l, &s, (1 << 20) + 65536, 4096, RANGELOCK_READ));
  rangelock_unlock(&l, &s);
  rangelock_unlock(&l, &piece);
  assert_true(rangelock_trylock(&l, &s, (1 << 20) + 4096, 4096, RANGELOCK_READ));
  rangelock_unlock(&l, &s);
  rangelock_unlock(&l, &z);
  assert_true(rangelock_trylock(&l, &s, (1 << 20) + 4096, 4096, RANGELOCK_WRITE));
  rangelock_unlock(&l, &s);
  rangelock_destroy(&l);
}

/* A ZONE request waits for the client writes in flight on its range, and
 * new writes there queue behind it while reads there still go through. */
static void waiting_zone_holds_back_writes_not_reads(void **state)
{
  (void)state;
  struct rangelock l;
  rangelock_init(&l);
  struct rangelock_hold wr, s;
  rangelock_lock(&l, &wr, 8192, 4096, RANGELOCK_WRITE);
  struct waiter w = {.l = &l, .offset = 0, .len = 1 << 20, .mode = RANGELOCK_ZONE, .hold_ms = 0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
  sleep_ms(100);
  assert_false(atomic_load(&w.got));
  assert_false(rangelock_trylock(&l, &s, 65536, 4096, RANGELOCK_WRITE));
  assert_true(rangelock_trylock(&l, &s, 65536, 4096, RANGELOCK_READ));
  rangelock_unlock(&l, &s);
  rangelock_unlock(&l, &wr);
  pthread_join(t, NULL);
  assert_true(atomic_load(&w.got));
  rangelock_destroy(&l);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shared_holds_coexist),
      cmocka_unit_test(exclusive_conflicts_only_on_overlap),
      cmocka_unit_test(shared_waits_for_exclusive_then_proceeds),
      cmocka_unit_test(exclusive_not_starved_by_overlapping_shared),
      cmocka_unit_test(zone_admits_reads_not_writes),
      cmocka_unit_test(waiting_zone_holds_back_writes_not_reads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
