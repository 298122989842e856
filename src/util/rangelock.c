/* Range lock (include/nbdcrypt/rangelock.h).  A few holds at a time (one
 * per client request in flight, and the hotzone): linked lists are enough. */
#include <stdbool.h>
#include <stdint.h>

#include "nbdcrypt/rangelock.h"

void rangelock_init(struct rangelock *l)
{
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  l->held = l->waiting = NULL;
  l->shared_waits = l->shared_grants = 0;
}

void rangelock_destroy(struct rangelock *l)
{
  pthread_cond_destroy(&l->cv);
  pthread_mutex_destroy(&l->mu);
}

static bool overlap(const struct rangelock_hold *a, const struct rangelock_hold *b)
{
  if (a->len == 0 || b->len == 0)
    return false;
  return a->offset < b->offset + b->len && b->offset < a->offset + a->len;
}

static void list_add(struct rangelock_hold **list, struct rangelock_hold *h)
{
  h->prev = NULL;
  h->next = *list;
  if (*list)
    (*list)->prev = h;
  *list = h;
}

static void list_del(struct rangelock_hold **list, struct rangelock_hold *h)
{
  if (h->prev)
    h->prev->next = h->next;
  else
    *list = h->next;
  if (h->next)
    h->next->prev = h->prev;
  h->prev = h->next = NULL;
}

static bool is_client(enum rangelock_mode m)
{
  return m == RANGELOCK_READ || m == RANGELOCK_WRITE;
}

/* Do modes a and b exclude each other on overlapping ranges?  EXCL and ZONE
 * do not: the engine's EXCL pieces lie inside its own ZONE holds. */
static bool conflict(enum rangelock_mode a, enum rangelock_mode b)
{
  if (a == RANGELOCK_ZONE || b == RANGELOCK_ZONE)
    return a == b || a == RANGELOCK_WRITE || b == RANGELOCK_WRITE;
  return a == RANGELOCK_EXCL || b == RANGELOCK_EXCL; /* else READ and WRITE */
}

/* May h be granted now?  Not while an overlapping hold conflicts with it; a
 * client request also yields to an overlapping waiter it conflicts with (no
 * starvation of the re-encryption). */
static bool grantable(const struct rangelock *l, const struct rangelock_hold *h)
{
  for (const struct rangelock_hold *o = l->held; o; o = o->next)
    if (conflict(o->mode, h->mode) && overlap(o, h))
      return false;
  if (is_client(h->mode))
    for (const struct rangelock_hold *w = l->waiting; w; w = w->next)
      if (conflict(w->mode, h->mode) && overlap(w, h))
        return false;
  return true;
}

static void set_range(struct rangelock_hold *h, uint64_t offset, uint64_t len,
                      enum rangelock_mode mode)
{
  h->offset = offset;
  /* clamp so that offset + len never wraps */
  h->len = len > UINT64_MAX - offset ? UINT64_MAX - offset : len;
  h->mode = mode;
  h->granted = false;
  h->prev = h->next = NULL;
}

void rangelock_lock(struct rangelock *l, struct rangelock_hold *h, uint64_t offset, uint64_t len,
                    enum rangelock_mode mode)
{
  set_range(h, offset, len, mode);
  pthread_mutex_lock(&l->mu);
  if (!grantable(l, h)) {
    if (!is_client(mode))
      list_add(&l->waiting, h);
    else
      l->shared_waits++;
    while (!grantable(l, h))
      pthread_cond_wait(&l->cv, &l->mu);
    if (!is_client(mode))
      list_del(&l->waiting, h);
  }
  if (is_client(mode))
    l->shared_grants++;
  h->granted = true;
  list_add(&l->held, h);
  pthread_mutex_unlock(&l->mu);
}

bool rangelock_trylock(struct rangelock *l, struct rangelock_hold *h, uint64_t offset, uint64_t len,
                       enum rangelock_mode mode)
{
  set_range(h, offset, len, mode);
  pthread_mutex_lock(&l->mu);
  bool ok = grantable(l, h);
  if (ok) {
    if (is_client(mode))
      l->shared_grants++;
    h->granted = true;
    list_add(&l->held, h);
  }
  pthread_mutex_unlock(&l->mu);
  return ok;
}

void rangelock_unlock(struct rangelock *l, struct rangelock_hold *h)
{
  pthread_mutex_lock(&l->mu);
  if (h->granted) {
    list_del(&l->held, h);
    h->granted = false;
    pthread_cond_broadcast(&l->cv);
  }
  pthread_mutex_unlock(&l->mu);
}

unsigned rangelock_shared_count(struct rangelock *l)
{
  pthread_mutex_lock(&l->mu);
  unsigned n = 0;
  for (const struct rangelock_hold *o = l->held; o; o = o->next)
    n += is_client(o->mode);
  pthread_mutex_unlock(&l->mu);
  return n;
}
